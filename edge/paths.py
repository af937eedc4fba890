"""Where the shipped files live: the models (with their card), the training recipes, and the
systemd unit with its example configuration.

One lookup for all: ``<folder>/`` beside the package (a git clone or editable install), then
``share/emotion-edge/<folder>`` in the data folder of the installation the package itself is in
(a wheel installed into a venv, with ``--prefix``, or system-wide, where Debian's Python puts it
under ``/usr/local``, not ``sys.prefix``), then the same under ``sys.prefix`` and the user's data
folder (``pip install --user``).  For models, ``EMOTION_EDGE_MODELS``, when set, is the one folder
searched: a user who points at a folder must not silently get another model.
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
    """The folders searched for shipped files of ``folder`` ("models", "recipes" or "systemd"),
    in order: beside the package, then the data folders of the installation it is in, of the
    environment and of ``pip install --user`` (``~/.local``)."""
    beside = Path(__file__).resolve().parent.parent  # a clone's root, or site-packages
    candidates = [beside / folder]
    if beside.name in ("site-packages", "dist-packages"):
        # An installation's packages are in <data>/lib/pythonX.Y/site-packages on POSIX.
        candidates.append(beside.parents[2] / "share" / "emotion-edge" / folder)
    candidates.append(Path(sys.prefix) / "share" / "emotion-edge" / folder)
    with contextlib.suppress(KeyError):  # a Python built without user installs
        user = Path(sysconfig.get_path("data", f"{os.name}_user")) / "share" / "emotion-edge"
        candidates.append(user / folder)
    return list(dict.fromkeys(candidates))


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
