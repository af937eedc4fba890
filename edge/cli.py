"""``emotion-edge``: the device command line.

Exit status: 0 done; 1 some inputs failed (each named on one stderr line, the others processed),
or the output could not be written (a full disk);
2 a usage or configuration error (one line); 3 an internal error (one line; ``-vv`` adds the
traceback); 75 a device (microphone, GPIO pins, a stuck camera) or a file another run writes
is missing or busy: worth trying again later (one line; the service does, every 10 s, where a
configuration error is left for its user to fix); 130 interrupted; 141 the output pipe was
closed (``| head``).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from . import __version__
from .commands import COMMAND_MODULES, one_line
from .errors import DeviceUnavailableError, EmotionEdgeError

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)

#: The exit status of a device that is missing or busy (sysexits' EX_TEMPFAIL): the unit's
#: RestartPreventExitStatus= tells it from a configuration error (2), which is not retried.
DEVICE_MISSING = 75


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emotion-edge",
        description="Speech + face emotion recognition on a Raspberry Pi.",
    )
    parser.add_argument("--version", action="version", version=f"emotion-edge {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.commands.{name}").register(sub)
    return parser


class _OneLineFormatter(logging.Formatter):
    """Each message one line (:func:`~edge.commands.one_line`: a file name's newline or escape
    sequence written out); a traceback (``-vv``) still follows it on lines of its own."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return one_line(super().formatMessage(record))


class _UserFormatter(_OneLineFormatter):
    """Warnings and errors in the words of the command's own messages ("emotion-edge: warning:
    ..."), so that a user sees one style; -v and -vv add levels and module names for who digs."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return f"emotion-edge: {record.levelname.lower()}: {super().formatMessage(record)}"


def configure_logging(verbosity: int) -> None:
    # The entry point is the only place that configures logging (libraries only get loggers).
    level = logging.WARNING - 10 * min(verbosity, 2)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UserFormatter("%(message)s") if verbosity == 0 else
                         _OneLineFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def standard_streams() -> bool:
    """Make the standard streams safe to use; ``False`` when standard output is closed.

    A closed descriptor 0, 1 or 2 (``2>&-``) is given /dev/null, so that no file this process
    opens takes its number (libsndfile or FFmpeg would then read a recording as standard input,
    or an error meant for stderr would land in the results).  Text the output's encoding cannot
    hold (a name with an "é" under ``LC_ALL=C``) is escaped instead of stopping the batch."""
    closed = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.append(fd)
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    # Python leaves a stream it found closed as None; now that its descriptor is open again,
    # it is a stream again (`--files-from -` with stdin closed reads nothing, not None).
    if sys.stdin is None:
        sys.stdin = open(0, closefd=False)
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):  # a test's capture
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    return 1 not in closed


def main(argv: Sequence[str] | None = None) -> int:
    # Before NumPy loads (no command module imports it at registration): a multi-threaded BLAS
    # only spins on our small matrices and steals the core the interpreter needs.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    output_open = standard_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    if not output_open:
        print("emotion-edge: error: cannot write the output (standard output is closed); "
              "give it somewhere to go: > FILE, or > /dev/null", file=sys.stderr)
        return 1
    try:
        return int(args.func(args) or 0)
    except DeviceUnavailableError as exc:  # EX_TEMPFAIL: a USB microphone unplugged, for now
        print(f"emotion-edge: error: {one_line(str(exc))}", file=sys.stderr)
        return DEVICE_MISSING
    except EmotionEdgeError as exc:
        print(f"emotion-edge: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as a command killed by SIGPIPE does.
        _drop_stdout()
        return 141
    except OSError as exc:
        if exc.errno not in _CANNOT_WRITE or exc.filename is not None:
            return _internal_error(exc, args.command)
        # print() into a full disk or /dev/full: the output's fault, not an input's or a bug.
        _drop_stdout()
        with contextlib.suppress(OSError):  # stderr on the same full disk: the status says it
            print(f"emotion-edge: error: cannot write the output ({exc.strerror})",
                  file=sys.stderr)
        return 1
    except Exception as exc:
        return _internal_error(exc, args.command)


#: What writing the output may fail with: no room (disk, quota, file size limit), the medium.
_CANNOT_WRITE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def _drop_stdout() -> None:
    """stdout to /dev/null, so that the interpreter's last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _internal_error(exc: Exception, command: str) -> int:
    """A bug or an unforeseen input: one line, the traceback with -vv."""
    logger.debug("traceback of the internal error", exc_info=exc)
    print(f"emotion-edge: internal error: {type(exc).__name__}: {one_line(str(exc))} "
          f"(emotion-edge -vv {command} ... shows where; please report it)", file=sys.stderr)
    return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
