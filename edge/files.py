"""The files the appliance writes (the decision log, the adaptation state): one writer each, no
symbolic link followed into another user's file, and a file a power cut damaged moved aside.

One writer per file: advisory locks that keep two processes from writing one log or state.

Two ``run``s given one ``log.file`` rotate it under each other (one renames the file the other
is still appending to, and decisions land in the backups out of order); two given one
``adapt.state_file``, or ``adapt --learn`` while the service runs, each write their own
statistics over the other's, and what one learnt is lost without a word.  Each writer holds an
exclusive ``flock`` on a hidden file beside the one it writes (``.NAME.lock``), so the second
is refused at start with one line.  The lock file stays: removing it would race with a process
about to lock it.  The kernel releases the lock when its holder exits, however it ends, so a
crash never leaves a file locked.

The service's folders belong to its own user, who could plant a symbolic link where root (``sudo
emotion-edge ...``) then writes: lock files are opened without following one, and so is the
decision log (:mod:`edge.outputs.log`).

A file that a power cut left with zeros where its first bytes were (ext4 on an SD card: the
size was written, the data was not) is neither the log nor the state any more, and refusing it
would stop every start until someone comes (the unit does not retry a configuration error): it
is renamed ``NAME.damaged`` and the writer starts fresh, with one warning.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .errors import DeviceUnavailableError
from .lifecycle import Closeable

__all__ = ["FileInUse", "WriterLock", "begins_zeroed", "lock_path", "set_aside_if_zeroed"]

logger = logging.getLogger(__name__)


class FileInUse(DeviceUnavailableError):
    """Another process holds the lock on a file this one would write: busy, like a device (exit
    75, which the service tries again: it may be the one that waits for `adapt --learn`)."""


def lock_path(path: Path) -> Path:
    """The lock file of ``path``: hidden, beside it (its folder is writable for any writer)."""
    return path.with_name(f".{path.name}.lock")


class WriterLock(Closeable):
    """An exclusive lock on writing ``path``, held until :meth:`close` (or the process ends).

    ``setting`` names the configuration key in the refusal, ``fix`` says what to do instead.
    Where no lock file can be made (a read-only or missing folder) the lock is skipped, with a
    debug line: the writer itself then reports why it cannot write there.
    """

    def __init__(self, path: str | Path, *, setting: str, fix: str) -> None:
        import fcntl

        self.path = Path(path)
        self._fd: int | None = None
        # A file named through a link is locked where it is, so two names of one file share a
        # lock; root does not resolve links, which the service's user may have made.
        named = self.path.absolute() if os.geteuid() == 0 else self.path.resolve()
        if not named.name:  # "/": a folder, which the writer refuses with its own words
            return
        lock = lock_path(named)
        try:
            if os.geteuid() != 0:  # root makes nothing in a place it has not checked yet
                lock.parent.mkdir(parents=True, exist_ok=True)  # as the writer would, soon
            # Read-only is enough for flock, and lets another user's process open a lock file
            # that root made (`sudo emotion-edge adapt --learn`), where write access would not.
            fd = os.open(lock, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            logger.debug("no lock for %s (%s): not locked", self.path, exc)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FileInUse(
                f"{setting} {self.path} is in use by another emotion-edge process (the service? "
                f"`systemctl status emotion-edge` tells); {fix}") from None
        except OSError as exc:  # a file system without locks (some network mounts)
            os.close(fd)
            logger.debug("cannot lock %s (%s): not locked", lock, exc)
            return
        self._fd = fd

    @property
    def held(self) -> bool:
        """True while this object holds the lock (False where locking was skipped)."""
        return self._fd is not None

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def __repr__(self) -> str:
        return f"<WriterLock {self.path} {'held' if self.held else 'not held'}>"


#: How many leading zero bytes (or the whole of a shorter file) mean a power cut's damage: ext4
#: loses whole blocks, of 4 KB; 512 bytes of zeros begin no log or state.
ZEROED_BYTES = 512


def begins_zeroed(path: str | Path) -> bool:
    """Whether ``path`` begins with :data:`ZEROED_BYTES` zero bytes (or is all zeros), as a
    power cut leaves a file.  A whole block, not one byte: a raw recording that begins in
    silence, named by mistake, is another file (refused), not a damaged one."""
    try:
        with open(path, "rb") as f:
            head = f.read(ZEROED_BYTES)
    except OSError:
        return False
    return bool(head) and not head.strip(b"\0")


def set_aside_if_zeroed(path: Path, what: str) -> bool:
    """Rename ``path`` to ``NAME.damaged`` when it begins with a block of zero bytes (see the
    module's docstring); True when it did.  ``what`` names the file in the warning."""
    if not begins_zeroed(path):
        return False
    aside = path.with_name(path.name + ".damaged")
    try:
        os.replace(path, aside)
    except OSError as exc:  # its folder read-only, say: the writer reports what it cannot do
        logger.warning("%s %s began with zero bytes (damaged by a power cut?) and cannot be "
                       "moved aside (%s)", what, path, exc.strerror or exc)
        return False
    logger.warning("%s %s began with zero bytes (damaged by a power cut?); moved to %s, "
                   "starting fresh", what, path, aside)
    return True
