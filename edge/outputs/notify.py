"""systemd's sd_notify protocol in pure Python: READY=1, STATUS=, WATCHDOG=1, STOPPING=1.

A datagram to the AF_UNIX socket named by ``$NOTIFY_SOCKET``; a leading ``@`` means a Linux
abstract socket (a NUL byte on the wire).  Outside systemd (no ``NOTIFY_SOCKET``) every call is a
cheap no-op, so the same loop runs under a terminal, in tests and as a service.  Send errors are
logged once and never raised: a broken notify socket must not take the appliance down (the
watchdog will, if the loop really is stuck).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

from ..lifecycle import Closeable

__all__ = ["Notifier", "watchdog_interval_s"]

logger = logging.getLogger(__name__)


def watchdog_interval_s(env: Mapping[str, str] | None = None) -> float | None:
    """systemd's watchdog timeout for this process in seconds, or None when not enabled."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # meant for another process (e.g. our parent)
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None


#: How long READY=1 and STOPPING=1, each sent once, wait for room in systemd's queue.
ONCE_TIMEOUT_S = 2.0


class Notifier(Closeable):
    """Sends notifications to ``address`` (default ``$NOTIFY_SOCKET``; None disables)."""

    def __init__(self, address: str | None = None, *, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = address if address is not None else env.get("NOTIFY_SOCKET") or None
        self.sent = 0
        #: Messages not sent because the receiver's queue was full.
        self.dropped = 0
        self._sock: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def _target(self) -> str:
        assert self.address is not None
        return "\0" + self.address[1:] if self.address.startswith("@") else self.address

    def notify(self, *, wait: bool = False, **fields: object) -> bool:
        """Send ``KEY=value`` lines, e.g. ``notify(READY=1, STATUS="ok")``; True if sent.

        The loop's own messages (WATCHDOG, STATUS) never wait: with the receiver's queue full
        (a busy systemd; 10 datagrams on many kernels) a blocking send would stop the decisions
        until it drains, and the next cycle sends them again.  ``wait`` (READY, STOPPING: sent
        once) waits up to :data:`ONCE_TIMEOUT_S` for room instead."""
        if self.address is None:
            return False
        message = "\n".join(f"{k}={v}" for k, v in fields.items()).encode("utf-8")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # A timeout, not MSG_DONTWAIT: with a timeout set, Python waits for room first.
            self._sock.settimeout(ONCE_TIMEOUT_S if wait else 0.0)
            self._sock.sendto(message, self._target())
        except (BlockingIOError, TimeoutError):
            self.dropped += 1
            logger.debug("systemd's notify socket is full; %s not sent", message[:20])
            return False
        except OSError as exc:
            if not self._failed:
                logger.warning("cannot notify systemd at %s: %s", self.address, exc)
                self._failed = True
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify(wait=True, READY=1, **({"STATUS": status} if status else {}))

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text.replace("\n", " "))

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def stopping(self) -> bool:
        return self.notify(wait=True, STOPPING=1)

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __repr__(self) -> str:
        return f"<Notifier address={self.address!r} sent={self.sent}>"
