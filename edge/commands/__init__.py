"""Sub-commands of the ``emotion-edge`` CLI, one module each.

Each module defines ``register(subparsers)`` that adds its parser and sets ``func`` to a callable
taking the parsed namespace and returning the exit code.  Modules must import heavy dependencies
inside ``func``, not at module level, so ``emotion-edge --help`` stays fast on a Pi.
"""

from collections.abc import Callable
from pathlib import Path
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


def shown(path: Path | str) -> str:
    """``path`` as text any terminal or JSON parser takes: a name that is not UTF-8 (a Windows
    USB stick's Latin-1 "café.wav") has its undecodable bytes shown as U+FFFD, where printing it
    stopped the batch on a UTF-8 terminal."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


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
