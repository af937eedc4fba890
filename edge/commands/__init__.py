"""Sub-commands of the ``emotion-edge`` CLI, one module each.

Each module defines ``register(subparsers)`` that adds its parser and sets ``func`` to a callable
taking the parsed namespace and returning the exit code.  Modules must import heavy dependencies
inside ``func``, not at module level, so ``emotion-edge --help`` stays fast on a Pi.
"""

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


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (``nan``, ``inf``, 0 and negatives are refused)."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number greater than 0")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def thread_count(text: str) -> int:
    """argparse type: interpreter threads, 1..64."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{value} threads: use 1 to 64 (1 suits a Pi best)")
    return value
