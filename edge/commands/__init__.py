"""Sub-commands of the ``emotion-edge`` CLI, one module each.

Each module defines ``register(subparsers)`` that adds its parser and sets ``func`` to a callable
taking the parsed namespace and returning the exit code.  Modules must import heavy dependencies
inside ``func``, not at module level, so ``emotion-edge --help`` stays fast on a Pi.
"""

import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

#: Module names under ``edge.commands``, in the order they appear in ``--help``.
COMMAND_MODULES: tuple[str, ...] = (
    "classify",
    "classify_face",
    "run",
    "check",
    "adapt",
    "inspect",
    "fleet",
    "install_service",
)


def _argument(text: str, kind: type[float] | type[int], ok: Callable[[Any], bool],
              need: str) -> Any:
    """Parse an argparse value as ``kind``; refuse it with ``need`` unless ``ok(value)``."""
    import argparse

    try:
        value = kind(text)
    except ValueError:
        what = "a number" if kind is float else "a whole number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{text!r} {need}")
    return value


def one_line(text: str) -> str:
    """``text`` as one printable line: a file name's control characters (a newline, a terminal's
    escape sequence) written as ``\\n``, ``\\x1b``, and the bytes of a name that is not UTF-8
    as :func:`named` writes them, where printing them raw broke the one-line rule, reached the
    terminal or stopped the batch."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in named(text))


#: The code points ``os.fsdecode`` keeps a name's undecodable bytes as (surrogateescape).
_UNDECODED = (0xDC80, 0xDCFF)


def named(path: Path | str) -> str:
    """A file name as valid UTF-8 text: the bytes of a name that is not UTF-8 (a Windows USB
    stick's Latin-1 "caf\\xe9.wav") written as ``\\xe9``.  This is the ``path`` of ``--json``
    output: the lone surrogates Python keeps such bytes as are not valid JSON text, and U+FFFD,
    used before, made "\\xff.jpg" and "\\xfe.jpg" one name.  (A name that really holds the
    four characters ``\\xe9`` reads the same: rare enough beside names from other systems.)"""
    text = str(path)
    if not any(_UNDECODED[0] <= ord(ch) <= _UNDECODED[1] for ch in text):
        return text
    return "".join(f"\\x{ord(ch) - 0xDC00:02x}" if _UNDECODED[0] <= ord(ch) <= _UNDECODED[1]
                   else ch for ch in text)


def shown(path: Path | str) -> str:
    """``path`` for a line of text (see :func:`one_line`)."""
    return one_line(str(path))


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (``nan``, ``inf``, 0 and negatives are refused)."""
    import math

    return float(_argument(text, float, lambda v: math.isfinite(v) and v > 0,
                           "must be a finite number greater than 0"))


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    return int(_argument(text, int, lambda v: v >= 1, "must be at least 1"))


def thread_count(text: str) -> int:
    """argparse type: interpreter threads, 1..64."""
    return int(_argument(text, int, lambda v: 1 <= v <= 64,
                         "threads: use 1 to 64 (1 suits a Pi best)"))


class Progress:
    """A count on a terminal's stderr ("reading the recordings: 120 of 2000"), for a pass that
    prints nothing until it is done; rewritten at most twice a second, cleared at the end, and
    silent when stderr is not a terminal (a log, a pipe, the journal)."""

    def __init__(self, what: str, total: int) -> None:
        self.what, self.total = what, total
        self._on = total > 1 and sys.stderr.isatty()
        self._shown = 0.0

    def __enter__(self) -> "Progress":
        return self

    def step(self, done: int) -> None:
        if self._on and (now := time.monotonic()) - self._shown >= 0.5:
            self._shown = now
            # The cursor is left at the line's start, so that a warning printed meanwhile
            # writes over the count rather than after it.
            print(f"\033[K{self.what}: {done} of {self.total}\r", end="", file=sys.stderr,
                  flush=True)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._on and self._shown:
            print("\033[K", end="", file=sys.stderr, flush=True)  # the count, cleared
