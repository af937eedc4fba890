"""``emotion-convert``: train, evaluate and export models on a desktop."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from edge import __version__
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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Quieten TensorFlow's C++ start-up chatter before it is imported by a sub-command.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except EmotionEdgeError as exc:
        print(f"emotion-convert: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
