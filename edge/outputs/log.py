"""Decisions as text: JSON lines on a stream (the journal), a size-capped rotating file, a terminal.

Each sink has ``write(decision)`` and an idempotent ``close()`` (:class:`edge.interfaces.Sink`).
The JSON lines are the contract read by ``emotion-edge inspect`` (:mod:`edge.outputs.log_reader`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
from pathlib import Path
from typing import IO, Any

from ..decision import Decision
from ..errors import ConfigError
from ..files import begins_zeroed, set_aside_if_zeroed
from ..lifecycle import Closeable

__all__ = ["JsonLinesSink", "RotatingFileSink", "TextSink", "backup_path", "holds_something_else"]

logger = logging.getLogger(__name__)


class JsonLinesSink:
    """One JSON object per line on a text stream (stdout -> journald under systemd)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout

    def write(self, decision: Decision) -> None:
        self.stream.write(decision.to_json() + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass  # the stream belongs to the caller

    def __repr__(self) -> str:
        return f"<JsonLinesSink {getattr(self.stream, 'name', self.stream)!r}>"


#: How every decision line begins, whatever the schema's version.
_DECISION_START = b'{"schema":"emotion-edge/decision/'


def backup_path(path: Path, number: int) -> Path:
    """The rotated log ``path.<number>`` (``decisions.jsonl.1`` is the newest backup).  Not
    ``with_name``: a path with no name ("." given as log.file) is refused later, not here."""
    return path.parent / f"{path.name}.{number}"


def holds_something_else(path: str | Path) -> bool:
    """Whether ``path`` is a file with content that does not begin as a decision log does (a
    recording, the config, the adaptation state named as ``log.file`` by mistake), which the
    log's rotation would rename and delete.  A missing, empty or unreadable file is not, nor
    one a power cut zeroed (the sink sets it aside: :func:`edge.files.set_aside_if_zeroed`)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_DECISION_START))
    except OSError:
        return False
    return not begins_zeroed(path) and head != _DECISION_START[:len(head)]


class RotatingFileSink(Closeable):
    """JSON lines in a file rotated at ``max_bytes`` (``file.1`` ... ``file.<backups>``).

    Meant for tmpfs (``/run/emotion-edge``) so a Pi's SD card is not worn by a log written twice
    a second; the size cap bounds memory there too.
    """

    def __init__(self, path: str | Path, *, max_bytes: int = 1_000_000, backups: int = 2) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._rotation_failed = False
        self._f: IO[str] | None = None
        with contextlib.suppress(OSError):  # a folder that is not there yet: nothing to set aside
            set_aside_if_zeroed(self.path, "decision log")
        if holds_something_else(self.path):
            raise ConfigError(
                f"log.file {self.path} is not a decision log (it does not begin with a "
                f"decision): the log appends to its file, renames and deletes it as it rotates, "
                f"so it writes only to a file of its own; choose another log.file or move "
                f"{self.path} away")
        # Each a configuration error (exit 2): a restart would not mend any of them.
        try:
            self._f = self._open()
        except (FileExistsError, NotADirectoryError) as exc:  # a file where a folder should be
            raise ConfigError(
                f"cannot make the decision log {self.path}: {exc.filename} is a file, not a "
                f"folder; choose another log.file") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ConfigError(
                    f"the decision log {self.path} is a symbolic link, which the log does not "
                    f"follow (in the service's folders its user chooses where one points, and "
                    f"root may be the one writing); name the file itself") from None
            raise ConfigError(
                f"cannot open the decision log {self.path}: {exc}; choose a writable log.file "
                f"(the service may write only under /run/emotion-edge and /var/lib/emotion-edge)"
            ) from None

    def _rotate(self) -> None:
        assert self._f is not None
        self._f.close()
        self._f = None
        try:
            if self.backups == 0:
                self.path.unlink(missing_ok=True)
            elif self.path.exists():
                for i in range(self.backups - 1, 0, -1):
                    src = backup_path(self.path, i)
                    if src.exists():
                        os.replace(src, backup_path(self.path, i + 1))
                os.replace(self.path, backup_path(self.path, 1))
        finally:  # never left closed: a failed rotation still logs on
            self._f = self._open()  # if this fails too, the next decision tries again

    def _open(self) -> IO[str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Not through a link (see edge.files), and readable by the service's group only,
        # whatever the caller's umask: the log is a timeline of a household's moods.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o640)
        return os.fdopen(fd, "a", encoding="utf-8")

    def _follow_the_path(self) -> None:
        """Reopen when the file was deleted or replaced (someone cleaned /run up by hand), or
        when an earlier reopen failed (its folder briefly unwritable): otherwise every later
        decision would go to a file no one can read, or nowhere.  A failed reopen raises (the
        loop counts a sink error) and is tried again at the next decision."""
        if self._f is not None:
            try:
                if os.path.samestat(os.fstat(self._f.fileno()), os.stat(self.path)):
                    return
            except FileNotFoundError:
                pass
            logger.warning("decision log %s was removed or replaced; writing a new one", self.path)
            self._f.close()
            self._f = None
        self._f = self._open()

    def write(self, decision: Decision) -> None:
        if self._closed:
            return
        self._follow_the_path()
        assert self._f is not None
        line = decision.to_json() + "\n"
        if self._f.tell() + len(line) > self.max_bytes and self._f.tell() > 0:
            try:
                self._rotate()
            except OSError as exc:
                # The decision is still written: past the size cap, rather than lost; each
                # later write tries the rotation again.
                if not self._rotation_failed:
                    logger.warning("cannot rotate the decision log %s (%s); it grows past "
                                   "log.max_bytes until the rotation works again", self.path, exc)
                self._rotation_failed = True
            else:
                self._rotation_failed = False
        if self._f is None:  # the rotation's reopen failed too: this decision is a sink error
            self._f = self._open()
        self._f.write(line)
        self._f.flush()

    def _close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __repr__(self) -> str:
        return f"<RotatingFileSink {self.path} max_bytes={self.max_bytes} open={self._f is not None}>"


class TextSink:
    """One human-readable line per decision (``run --text``, the demo)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout

    def write(self, decision: Decision) -> None:
        def part(name: str, rep: Any) -> str:
            if rep.present:
                return f"{name}={rep.label}({max(rep.scores.values()):.2f})"
            return f"{name}={rep.state}"

        shown = f"{decision.label} {decision.confidence:.2f}" if decision.label else "none"
        self.stream.write(
            f"{decision.media_s:7.2f}s  {shown:<16} {part('speech', decision.speech):<24} "
            f"{part('face', decision.face):<22} {decision.latency_ms.get('total', 0.0):6.1f} ms"
            f"{'  OVERRUN' if decision.overrun else ''}"
            f"{'' if decision.level == 'full' else '  [' + decision.level + ']'}\n"
        )
        self.stream.flush()

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "<TextSink>"
