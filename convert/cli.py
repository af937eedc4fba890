"""``emotion-convert``: train, evaluate and export models on a desktop."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from edge import __version__
from edge.cli import standard_streams
from edge.errors import EmotionEdgeError

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

#: Modules under ``convert`` with ``register(subparsers)``.
COMMAND_MODULES: tuple[str, ...] = ("speech.cli", "face.cli", "face.fullframe", "face.calibrate",
                                    "blazeface_cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emotion-convert",
        description="Train emotion models, check int8 against float, and export them with manifests.",
    )
    parser.add_argument("--version", action="version", version=f"emotion-convert {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--debug", action="store_true",
                        help="debug log, and the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Quieten TensorFlow's C++ start-up chatter before it is imported by a sub-command.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    output_open = standard_streams()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not output_open:
        print("emotion-convert: error: cannot write the output (standard output is closed); "
              "give it somewhere to go: > FILE, or > /dev/null", file=sys.stderr)
        return 1
    try:
        return int(args.func(args) or 0)
    except EmotionEdgeError as exc:
        print(f"emotion-convert: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # The feature cache is written through temporary files, so it holds only whole entries.
        cached = "; a rerun reuses the features already cached" if getattr(
            args, "cache", None) else ""
        print(f"emotion-convert: interrupted{cached}", file=sys.stderr)
        return 130
    except OSError as exc:  # a path given that is missing, a folder, a file, not writable, ...
        where = f": {exc.filename}" if exc.filename else ""
        print(f"emotion-convert: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # training's libraries are an extra, not installed
        print(f"emotion-convert: error: {exc.name or exc} is not installed; training needs the "
              f"convert extra: pip install -c constraints.txt '.[convert]' in the clone, or "
              f"'emotion-edge[convert]'", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug or an unforeseen input: one line, the traceback with --debug
        logging.getLogger(__name__).debug("traceback of the internal error", exc_info=True)
        print(f"emotion-convert: internal error: {type(exc).__name__}: {exc} (emotion-convert "
              f"--debug {args.command} ... shows where; please report it)", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
