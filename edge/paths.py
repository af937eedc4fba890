"""Where the shipped files live: the models and the systemd unit with its example configuration.

One lookup for both: ``<folder>/`` beside the package (a git clone or editable install), then
``<prefix>/share/emotion-edge/<folder>`` (a wheel install), then the same under the user's data
folder (``pip install --user``).  For models, ``EMOTION_EDGE_MODELS``,
when set, is the one folder searched: a user who points at a folder must not silently get another
model.
"""

from __future__ import annotations

import contextlib
import os
import sys
import sysconfig
from pathlib import Path

from .config import process_setting
from .errors import EmotionEdgeError, ModelError

__all__ = ["shipped_dirs", "model_dirs", "default_model", "shipped_file"]


def shipped_dirs(folder: str) -> list[Path]:
    """The folders searched for shipped files of ``folder`` ("models" or "systemd"), in order:
    beside the package, then the data folders of an installation into the environment and of
    ``pip install --user`` (``~/.local``)."""
    dirs = [Path(__file__).resolve().parent.parent / folder,
            Path(sys.prefix) / "share" / "emotion-edge" / folder]
    with contextlib.suppress(KeyError):  # a Python built without user installs
        user = Path(sysconfig.get_path("data", f"{os.name}_user")) / "share" / "emotion-edge"
        if user / folder not in dirs:
            dirs.append(user / folder)
    return dirs


def model_dirs() -> list[Path]:
    override = process_setting("EMOTION_EDGE_MODELS")
    return [Path(override)] if override else shipped_dirs("models")


def _find(filename: str, searched: list[Path]) -> Path | None:
    return next((d / filename for d in searched if (d / filename).is_file()), None)


#: How to choose another file than a missing shipped model.
NAME_THE_MODEL = ("or name the model file (models.speech / models.face in the config; "
                  "--speech-model / --face-model for run, --model for classify)")


def default_model(filename: str, *, otherwise: str = NAME_THE_MODEL) -> Path:
    """Return the first existing ``filename`` in :func:`model_dirs`; the error names the folders
    searched and ``otherwise``, the other way to a file."""
    searched = model_dirs()
    found = _find(filename, searched)
    if found is None:
        raise ModelError(
            f"model {filename} not found in {', '.join(str(d) for d in searched)}; set "
            f"EMOTION_EDGE_MODELS to the folder holding it, {otherwise}"
        )
    return found


def shipped_file(name: str) -> Path:
    """A file of the ``systemd/`` folder (the unit, the example configuration)."""
    searched = shipped_dirs("systemd")
    found = _find(name, searched)
    if found is None:
        raise EmotionEdgeError(
            f"{name} not found in {', '.join(map(str, searched))}; reinstall emotion-edge")
    return found
