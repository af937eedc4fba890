"""Training the face student: augmentation, label smoothing and distillation from a teacher.

Loss = ``(1 - alpha) * CE(label-smoothed ground truth, student)``
``+ alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))``.
Teacher logits are precomputed once for every training image and for its mirror image, so a
horizontal flip during augmentation picks the matching soft targets; small shifts, rotations,
zooms and brightness/contrast changes keep the teacher's targets approximately valid.

The ground truth is the one-hot FER2013 label, or (``ground_truth = "votes"``) a mix of it and
the FER+ crowd votes' distribution (:mod:`convert.face.ferplus` states the mapping).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import typing
from typing import Any

import numpy as np

from edge.config import Section, setting
from edge.errors import ConfigError

from ..averaging import WeightAverage, refit_batch_norm
from ..metrics import classification_metrics

__all__ = ["FINETUNE_TARGETS", "GROUND_TRUTHS", "TrainSection", "train_student", "predict_logits",
           "accuracy", "ground_truth", "finetune_targets", "log_softmax"]

logger = logging.getLogger(__name__)

#: Soft targets for fine-tuning a pruned model (:func:`finetune_targets`).
FINETUNE_TARGETS = ("teacher", "parent", "ensemble")
#: What the hard-label term learns from (:attr:`TrainSection.ground_truth`).
GROUND_TRUTHS = ("labels", "votes")
#: What picks the epoch kept (``choose_by``).
CHOOSE_BY = ("accuracy", "balanced")


@dataclasses.dataclass(frozen=True)
class TrainSection(Section):
    """Optimisation settings of one training stage; as a recipe section, ``[train]`` trains the
    parent, and the other stages (:mod:`convert.face.recipe`) change some defaults.  A bad value
    is a :class:`~edge.errors.ConfigError` naming the section and key."""

    _name: typing.ClassVar[str] = "train"
    #: Added to the recipe's ``run.seed`` for this stage's weights, shuffling and augmentation.
    seed_offset: typing.ClassVar[int] = 0

    epochs: int = setting(
        40, "Passes over the training set (count); the epoch best on the choose split by "
        "choose_by is kept.", min=0, max=10_000)
    batch_size: int = setting(128, "Images per optimisation step (count).", min=1, max=65_536)
    learning_rate: float = setting(
        3e-3, "Peak AdamW learning rate (per step; a 1-epoch warm-up, then cosine decay to 1% "
        "of it).")
    weight_decay: float = setting(
        1e-4, "AdamW decoupled weight decay (fraction of each weight per unit learning rate).",
        min=0.0, max=1.0)
    label_smoothing: float = setting(
        0.1, "Share of the hard-label target spread evenly over all labels (0..1).",
        min=0.0, max=1.0)
    alpha: float = setting(
        0.7, "Weight of the distillation term against the hard labels (0..1; 0 = hard labels "
        "only, as without a teacher).", min=0.0, max=1.0)
    temperature: float = setting(
        3.0, "Distillation temperature T (unitless; > 1 softens both distributions).",
        min=0.05, max=100.0)
    class_weighting: bool = setting(
        False, "Weight the hard-label loss by inverse class frequency, damped by "
        "class_weight_power.")
    class_weight_power: float = setting(
        0.5, "With class_weighting: the power the inverse class frequency is raised to (0.5 = "
        "square-root damped, as every shipped model; 1 = undamped, every class counts the same).",
        min=0.0, max=1.0)
    weigh_distillation: bool = setting(
        False, "With class_weighting: weight the distillation term by the same class weights, "
        "so the teacher's lesson on a rare class counts as much as its label does (false: "
        "every image's distillation term counts the same).")
    augment: bool = setting(
        True, "Random flip, +-10% shift, +-14 degree rotation, +-10% zoom, contrast and "
        "brightness.")
    camera: float = setting(
        0.0, "After augment: a cheap camera's blur, sensor noise, low light and gamma, lost "
        "resolution, JPEG and an occluding patch, each at random (albumentations; "
        "convert/face/camera.py); the value scales how often each effect is drawn (0 = none, "
        "1 = the rates in camera.py).", min=0.0, max=3.0)
    ema_decay: float = setting(
        0.0, "Per-step decay of an average of the weights and BN statistics that is evaluated "
        "and kept (0 = none; 0.999 averages about the last 1000 steps); did not help at 48x48.",
        min=0.0)
    average_from: int = setting(
        0, "From this epoch on (1-based; 0 = never), the weights of every step are averaged "
        "with equal weight (stochastic weight averaging), the batch-norm statistics refitted to "
        "the average over the training images, and each of these epochs evaluates and may keep "
        "the average, never the trained weights; epochs before it are scored, not kept.",
        min=0)
    ground_truth: str = setting(
        "labels", "What the hard-label term learns from: labels (one-hot FER2013 label) or votes "
        "(the FER+ crowd votes mapped to our labels, mixed by vote_weight; rows without usable "
        "votes keep their label; the rule: convert/face/ferplus.py).  With votes, the epoch "
        "kept is the one with the best FER+ majority-vote accuracy on the choose split.",
        choices=GROUND_TRUTHS)
    vote_weight: float = setting(
        1.0, "With ground_truth = votes: share of the vote distribution in the target, the rest "
        "the one-hot FER2013 label (0..1; 1 = votes only).", min=0.0, max=1.0)
    choose_by: str = setting(
        "accuracy", "What picks the epoch kept, on the choose split: accuracy, or balanced (the "
        "mean of accuracy and mean per-class recall, so that an epoch does not win by giving "
        "up the rare classes).", choices=CHOOSE_BY)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.learning_rate > 0:
            raise ConfigError(f"{self._name}.learning_rate {self.learning_rate!r} must be "
                              f"positive, e.g. 1e-3")
        if self.weigh_distillation and not self.class_weighting:
            raise ConfigError(f"{self._name}.weigh_distillation needs {self._name}."
                              f"class_weighting = true: it reuses the class weights")
        if not self.ema_decay < 1.0:
            raise ConfigError(f"{self._name}.ema_decay {self.ema_decay!r} must be in [0, 1): "
                              f"the weight of the old average at each step (0 = no averaging)")
        if self.average_from and self.ema_decay:
            raise ConfigError(f"{self._name}.average_from and {self._name}.ema_decay are two "
                              f"averages of the same weights: set one of them to 0")
        if self.average_from > self.epochs:
            raise ConfigError(f"{self._name}.average_from = {self.average_from} is after the "
                              f"last epoch ({self.epochs}): set it to {self.epochs} or less")


def class_weights(counts: np.ndarray, power: float) -> np.ndarray:
    """Each class's weight per image: its inverse frequency raised to ``power``, scaled so that
    the mean weight over the images is 1 (the loss keeps its size and learning rate)."""
    counts = np.asarray(counts, np.float64)
    weight = (counts.sum() / np.maximum(counts, 1) / len(counts)) ** power
    return (weight / (weight * counts).sum() * counts.sum()).astype(np.float32)


def _augmenter(seed: int) -> Any:
    import keras
    from keras import layers

    return keras.Sequential(
        [
            layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=seed),
            layers.RandomRotation(0.04, fill_mode="nearest", seed=seed + 1),
            layers.RandomZoom((-0.1, 0.1), fill_mode="nearest", seed=seed + 2),
            layers.RandomContrast(0.3, value_range=(-1.0, 1.0), seed=seed + 3),
            layers.RandomBrightness(0.2, value_range=(-1.0, 1.0), seed=seed + 4),
        ],
        name="augment",
    )


def _dataset(x, y, t, tf_, cfg: TrainSection, num_classes: int, class_w, seed: int,
             truth=None):
    """tf.data of (image, target) with target = [smoothed ground truth (one-hot of ``y``, or
    ``truth``) * class weight | teacher logits | flipped teacher logits selected]."""
    import tensorflow as tf

    onehot = np.eye(num_classes, dtype=np.float32)[y] if truth is None else truth
    smooth = onehot * (1.0 - cfg.label_smoothing) + cfg.label_smoothing / num_classes
    smooth = smooth * class_w[y][:, None]
    ds = tf.data.Dataset.from_tensor_slices((x, smooth, t, tf_))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)

    def flip(img, hard, tl, tlf):
        if not cfg.augment:
            return img, tf.concat([hard, tl], -1)
        do = tf.random.uniform(()) < 0.5
        img = tf.where(do, tf.image.flip_left_right(img), img)
        return img, tf.concat([hard, tf.where(do, tlf, tl)], -1)

    ds = ds.map(flip, num_parallel_calls=tf.data.AUTOTUNE).batch(cfg.batch_size)
    if cfg.augment:
        aug = _augmenter(seed)
        ds = ds.map(lambda a, b: (tf.clip_by_value(aug(a, training=True), -1.0, 1.0), b),
                    num_parallel_calls=tf.data.AUTOTUNE)
    if cfg.camera:
        from .camera import apply_camera, camera_effects

        effects = camera_effects(seed + 5, cfg.camera)

        def camera(a, b):
            out = tf.numpy_function(lambda v: apply_camera(v, effects), [a], tf.float32)
            return tf.ensure_shape(out, a.shape), b

        # One call at a time: the effects draw from one seeded generator in batch order.
        ds = ds.map(camera, num_parallel_calls=1)
    return ds.prefetch(tf.data.AUTOTUNE)


def _loss(cfg: TrainSection, num_classes: int):
    import tensorflow as tf

    T = cfg.temperature

    def loss(target, logits):
        hard, teacher = target[:, :num_classes], target[:, num_classes:]
        weight = tf.reduce_sum(hard, -1)  # class weight (smoothed one-hot sums to 1)
        ce = tf.nn.softmax_cross_entropy_with_logits(hard / weight[:, None], logits) * weight
        if cfg.alpha <= 0:
            return ce
        p_t = tf.nn.softmax(teacher / T)
        kd = tf.reduce_sum(p_t * (tf.nn.log_softmax(teacher / T) - tf.nn.log_softmax(logits / T)), -1)
        if cfg.weigh_distillation:
            kd = kd * weight
        return (1.0 - cfg.alpha) * ce + cfg.alpha * (T * T) * kd

    return loss


def predict_logits(model: Any, x: np.ndarray, batch: int = 512) -> np.ndarray:
    return np.concatenate(
        [np.asarray(model(x[i : i + batch], training=False)) for i in range(0, len(x), batch)]
    )


def accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy on the rows whose label ``y`` is >= 0 (-1 = not scored, e.g. a FER+
    majority tie; :func:`convert.face.ferplus.majority_labels`)."""
    return scores(model, x, y)[0]


def scores(model: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Top-1 accuracy and mean per-class recall (over the classes present) on the rows whose
    label ``y`` is >= 0."""
    y = np.asarray(y)
    scored = y >= 0
    if not scored.any():
        return 0.0, 0.0
    logits = predict_logits(model, x[scored])
    m = classification_metrics(y[scored], logits.argmax(1), [str(c) for c in range(logits.shape[1])])
    return m["accuracy"], m["uar"]


def ground_truth(
    cfg: TrainSection, y: np.ndarray, votes: tuple[np.ndarray, np.ndarray] | None,
    num_classes: int,
) -> np.ndarray | None:
    """The hard-label term's targets ``(N, K)`` for ``cfg.ground_truth`` (None = one-hot ``y``):
    ``vote_weight`` x vote distribution + the rest one-hot label on the rows whose votes are
    usable, the one-hot label on the others.  ``votes`` is ``(targets, usable)`` of
    :func:`convert.face.ferplus.vote_targets`."""
    if cfg.ground_truth == "labels":
        return None
    if votes is None:
        raise ConfigError(f"{cfg._name}.ground_truth = \"votes\" needs FER+ votes: train on "
                          f"FER2013 with --ferplus PATH (ferplus_votes.npz)")
    targets, usable = votes
    onehot = np.eye(num_classes, dtype=np.float32)[y]
    mixed = cfg.vote_weight * targets + (1.0 - cfg.vote_weight) * onehot
    return np.where(usable[:, None], mixed, onehot).astype(np.float32)


def train_student(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    cfg: TrainSection,
    *,
    teacher_logits: np.ndarray | None = None,
    teacher_logits_flipped: np.ndarray | None = None,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    callbacks: list[Any] | None = None,
    keep_best: bool = True,
    seed: int = 0,
    truth: np.ndarray | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place; keep the weights of the epoch with the best validation accuracy
    (``keep_best=False``: keep the last epoch's, e.g. when ``callbacks`` change the model
    during training and only the end state is wanted).  With ``cfg.ema_decay`` the averaged
    weights are the ones evaluated, kept and left in the model.  ``seed`` seeds the weights'
    initialisation, the shuffling and the augmentation.

    ``x`` is preprocessed float ``(N, S, S, 1)``.  ``truth`` (float ``(N, K)``, rows summing
    to 1; :func:`ground_truth`) replaces the one-hot ``y`` in the hard-label term; ``y`` still
    decides the class weights.  ``y_val`` may mark rows not to score with -1.  Returns a
    history dict with per-epoch validation accuracy and the chosen epoch.
    """
    import keras
    import tensorflow as tf

    if cfg.epochs == 0:  # nothing to train (a schedule of 0 steps cannot be built)
        return {"val_accuracy": [], "loss": [], "best_val_accuracy": None}
    keras.utils.set_random_seed(seed)
    # The augmentation draws random numbers inside tf.data maps that run in parallel, so the
    # order of the draws, and the weights, changed from run to run with the same seed; with op
    # determinism those maps run in order (the speech model needs none: no random tf.data ops).
    tf.config.experimental.enable_op_determinism()
    num_classes = int(model.output.shape[-1])
    if teacher_logits is None or cfg.alpha <= 0:
        teacher_logits = np.zeros((len(x), num_classes), np.float32)
        cfg = dataclasses.replace(cfg, alpha=0.0)
    if teacher_logits_flipped is None:
        teacher_logits_flipped = teacher_logits
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    class_w = (class_weights(counts, cfg.class_weight_power) if cfg.class_weighting
               else np.ones(num_classes, np.float32))
    ds = _dataset(x, y, teacher_logits, teacher_logits_flipped, cfg, num_classes, class_w, seed,
                  truth)
    steps = math.ceil(len(x) / cfg.batch_size) * cfg.epochs
    warmup = min(math.ceil(len(x) / cfg.batch_size), max(1, steps // 10))
    schedule = keras.optimizers.schedules.CosineDecay(
        # At least one step of decay: one epoch of one batch is all warm-up otherwise, and
        # Keras refuses a schedule of 0 decay steps.
        cfg.learning_rate * 0.1, max(1, steps - warmup), alpha=0.01,
        warmup_target=cfg.learning_rate, warmup_steps=warmup,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay),
        loss=_loss(cfg, num_classes),
    )
    # The last epochs of a short cosine schedule still move the weights from batch to batch;
    # an exponential average sits nearer the middle of that wandering.
    average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    history: dict[str, Any] = {"val_accuracy": [], "val_recall": [], "loss": []}
    if cfg.ema_decay or cfg.average_from:
        history["val_accuracy_unaveraged"] = []
    best, best_weights = -1.0, None
    for epoch in range(cfg.epochs):
        if cfg.average_from and epoch + 1 == cfg.average_from:
            # A uniform average from late in the schedule: the exponential one from the first
            # step lost its network at 48x48 (models/README.md, "A weight average").
            average = WeightAverage(model, None)
        fit_callbacks = list(callbacks or []) + ([average.callback] if average else [])
        h = model.fit(ds, epochs=1, verbose=0, shuffle=False,  # ds shuffles itself
                      callbacks=fit_callbacks)
        history["loss"].append(float(h.history["loss"][-1]))
        if x_val is not None and y_val is not None:
            # The trained weights' own score, beside the average's (none before it starts).
            unaveraged = accuracy(model, x_val, y_val) if average else None
            if "val_accuracy_unaveraged" in history:
                history["val_accuracy_unaveraged"].append(unaveraged)
            with average.swapped_in() if average else contextlib.nullcontext():
                if average and cfg.average_from:
                    refit_batch_norm(model, x, cfg.batch_size)
                acc, recall = scores(model, x_val, y_val)
                score = acc if cfg.choose_by == "accuracy" else (acc + recall) / 2
                eligible = epoch + 1 >= cfg.average_from
                if keep_best and eligible and score > best:
                    best, best_weights = score, model.get_weights()
                    history["best_epoch"] = epoch + 1
                    history["best_val_accuracy"] = acc
            history["val_accuracy"].append(acc)
            history["val_recall"].append(recall)
            logger.info("epoch %d/%d loss %.4f val acc %.4f mean recall %.4f%s", epoch + 1,
                        cfg.epochs, history["loss"][-1], acc, recall,
                        "" if unaveraged is None else f" (unaveraged {unaveraged:.4f})")
        else:
            logger.info("epoch %d/%d loss %.4f", epoch + 1, cfg.epochs, history["loss"][-1])
    if best_weights is not None:
        model.set_weights(best_weights)
    elif average:
        average.assign(average.average)
        if cfg.average_from:
            refit_batch_norm(model, x, cfg.batch_size)
    history.setdefault("best_val_accuracy", None)
    del tf
    return history


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-probabilities of logits ``(N, classes)``."""
    z = z - z.max(axis=1, keepdims=True)
    return np.asarray(z - np.log(np.exp(z).sum(axis=1, keepdims=True)))


def finetune_targets(
    kind: str, parent: Any, x: np.ndarray, t_logits: Any, t_flip: Any
) -> tuple[Any, Any]:
    """Soft targets (logits for each image and its mirror) for fine-tuning a pruned model:
    ``teacher`` (the distillation teacher's), ``parent`` (the unpruned parent's: the pruned
    model learns to recover exactly what it lost) or ``ensemble`` (both, their
    log-probabilities averaged; the parent alone without a teacher)."""
    if kind not in FINETUNE_TARGETS:
        raise ConfigError(f"fine-tuning targets {kind!r} are unknown; choose one of "
                          f"{', '.join(FINETUNE_TARGETS)}")
    if kind == "teacher":
        return t_logits, t_flip
    p_logits = predict_logits(parent, x)
    p_flip = predict_logits(parent, np.ascontiguousarray(x[:, :, ::-1]))
    if kind == "parent" or t_logits is None:
        return p_logits, p_flip

    # Averaging log-probabilities (not raw logits) because the two networks' logit scales differ.
    return ((log_softmax(t_logits) + log_softmax(p_logits)) / 2,
            (log_softmax(t_flip) + log_softmax(p_flip)) / 2)
