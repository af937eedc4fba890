"""The JSON manifest that travels beside every ``.tflite`` model.

A model describes itself: its labels, the preprocessing it was trained with, how its int8 tensors
are quantised, its metrics and the protocol they were measured with, the data it was trained on and
that data's licence, and the sha256 of the model file.  The device reads everything from here and
refuses a model whose manifest disagrees with the configuration it runs with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ManifestMismatchError, ModelError

__all__ = [
    "MANIFEST_VERSION",
    "TensorQuant",
    "ModelManifest",
    "manifest_path_for",
    "sha256_of",
    "load_manifest",
    "write_manifest",
]

logger = logging.getLogger(__name__)

#: Bumped when a field changes meaning; older manifests are refused with a message.
MANIFEST_VERSION = 1

#: Larger than any manifest emotion-convert writes by far: refused before it is parsed.
MAX_MANIFEST_BYTES = 4_000_000


@dataclasses.dataclass(frozen=True)
class TensorQuant:
    """Affine quantisation of one tensor: ``real = scale * (q - zero_point)``."""

    dtype: str
    shape: tuple[int, ...]
    scale: float
    zero_point: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorQuant:
        scale = float(d["scale"])
        if not (math.isfinite(scale) and scale >= 0):  # 0: a float tensor
            raise ValueError(f"scale {scale!r} is not a finite number >= 0")
        return cls(
            dtype=str(d["dtype"]),
            shape=tuple(int(v) for v in d["shape"]),
            scale=scale,
            zero_point=int(d["zero_point"]),
        )


@dataclasses.dataclass(frozen=True)
class ModelManifest:
    """Everything the device needs to know about a model, read from ``<model>.json``.

    ``preprocessing`` is the serialised feature configuration (for speech, an
    :class:`edge.features.MfccConfig` plus window settings; for faces, the crop/resize settings).
    ``fusion_map`` maps each of this model's labels to a label of the common fusion label set, or
    to ``None`` when the label has no counterpart (it then takes no part in fusion).
    """

    name: str
    task: str
    labels: tuple[str, ...]
    preprocessing: Mapping[str, Any]
    input: TensorQuant
    output: TensorQuant
    sha256: str
    fusion_map: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    training: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    version: int = MANIFEST_VERSION
    #: What the device does to the model's probabilities after it (face models: a log offset
    #: per class, ``{"log_offsets": {label: offset}}``, fitted after training); {} = nothing.
    calibration: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["labels"] = list(self.labels)
        for key in ("input", "output"):
            d[key]["shape"] = list(d[key]["shape"])
        if not d["calibration"]:
            del d["calibration"]  # manifests written before it existed stay as they were
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "<manifest>") -> ModelManifest:
        version = d.get("version")
        if version != MANIFEST_VERSION:
            raise ModelError(
                f"{source}: manifest version {version!r} is not supported (expected "
                f"{MANIFEST_VERSION}); re-export the model with this emotion-edge's emotion-convert"
            )
        labels = d.get("labels")
        if isinstance(labels, list) and not all(
                isinstance(v, str) and v.isprintable() and 0 < len(v) <= 64 for v in labels):
            # Labels reach the terminal, the log and MQTT: an escape sequence in one would
            # rewrite a screen that `inspect` shows to root.
            raise ModelError(f"{source}: labels must be plain names of 1-64 printable "
                             f"characters, got {labels!r:.200}")
        try:
            return cls(
                name=str(d["name"]),
                task=str(d["task"]),
                labels=tuple(str(v) for v in d["labels"]),
                preprocessing=dict(d["preprocessing"]),
                input=TensorQuant.from_dict(d["input"]),
                output=TensorQuant.from_dict(d["output"]),
                sha256=str(d["sha256"]),
                fusion_map=dict(d.get("fusion_map", {})),
                metrics=dict(d.get("metrics", {})),
                training=dict(d.get("training", {})),
                version=int(version),
                calibration=dict(d.get("calibration", {})),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # int(inf): Overflow
            raise ModelError(f"{source}: manifest field missing or malformed: {exc}") from None

    def check_preprocessing(self, expected: Mapping[str, Any], *, source: str = "model") -> None:
        """Raise :class:`ManifestMismatchError` naming the first field where ``expected`` differs.

        Only the keys present in ``expected`` are compared, so a device may pin a subset.
        """
        for key, want in expected.items():
            if key not in self.preprocessing:
                raise ManifestMismatchError(
                    f"{source}: manifest has no preprocessing field {key!r} (the device expects "
                    f"{want!r}); the model was exported for another feature pipeline"
                )
            have = self.preprocessing[key]
            if not _same(have, want):
                raise ManifestMismatchError(
                    f"{source}: manifest preprocessing field {key!r} is {have!r} but the device is "
                    f"configured with {want!r}; use a model exported with the same setting or "
                    f"change the configuration to match the model"
                )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def manifest_path_for(model_path: str | Path) -> Path:
    """``models/x.tflite`` -> ``models/x.json``."""
    return Path(model_path).with_suffix(".json")


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_manifest(model_path: str | Path, *, verify_hash: bool = True) -> ModelManifest:
    """Read the manifest beside ``model_path`` and (by default) check the model's sha256."""
    model_path = Path(model_path)
    if model_path.is_dir():
        raise ModelError(f"model file {model_path} is a folder; name the .tflite file in it")
    if not model_path.is_file():
        raise ModelError(
            f"model file {model_path} not found; reinstall emotion-edge or point the configuration "
            f"at an existing .tflite"
        )
    mpath = manifest_path_for(model_path)
    try:
        if mpath.stat().st_size > MAX_MANIFEST_BYTES:
            raise ModelError(f"{mpath}: {mpath.stat().st_size} bytes is not a manifest (they are "
                             f"a few KB); re-export the model with emotion-convert")
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"{model_path}: manifest {mpath} not found; every model needs its JSON manifest beside "
            f"it (emotion-convert writes both)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelError(f"{mpath}: manifest is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{mpath}: manifest must be a JSON object")
    manifest = ModelManifest.from_dict(data, source=str(mpath))
    if verify_hash:
        actual = sha256_of(model_path)
        if actual != manifest.sha256:
            raise ModelError(
                f"{model_path}: sha256 {actual[:12]}... does not match its manifest "
                f"({manifest.sha256[:12]}...); the file is corrupt or was replaced without its "
                f"manifest: restore both from the release or re-export them together"
            )
    return manifest


def write_manifest(model_path: str | Path, manifest: ModelManifest) -> Path:
    """Write ``manifest`` beside ``model_path``; its sha256 must match the file."""
    model_path = Path(model_path)
    actual = sha256_of(model_path)
    if manifest.sha256 != actual:
        manifest = dataclasses.replace(manifest, sha256=actual)
    mpath = manifest_path_for(model_path)
    mpath.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n", "utf-8")
    logger.info("wrote %s", mpath)
    return mpath
