"""Where the shipped models live.

``EMOTION_EDGE_MODELS``, when set, is the one folder searched: a user who points at a folder must
not silently get another model.  Otherwise: ``models/`` beside the package (a git clone or
editable install), then ``<prefix>/share/emotion-edge/models`` (a wheel install).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import ModelError

__all__ = ["model_dirs", "default_model"]


def model_dirs() -> list[Path]:
    env = os.environ.get("EMOTION_EDGE_MODELS")
    if env:
        return [Path(env)]
    return [
        Path(__file__).resolve().parent.parent / "models",
        Path(sys.prefix) / "share" / "emotion-edge" / "models",
    ]


def default_model(filename: str) -> Path:
    """Return the first existing ``filename`` in :func:`model_dirs`."""
    searched = model_dirs()
    for d in searched:
        candidate = d / filename
        if candidate.is_file():
            return candidate
    raise ModelError(
        f"model {filename} not found in {', '.join(str(d) for d in searched)}; set "
        f"EMOTION_EDGE_MODELS to the folder holding it or pass --model PATH"
    )
