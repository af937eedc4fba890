"""Training the speech model on the windows the device's gate passes, fresh crops every epoch."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge.errors import ConfigError
from edge.models.speech import SpeechGate

from ..averaging import WeightAverage
from .features import FeatureBank
from .model import EMBEDDING, build_branches, build_model
from .recipe import SpeechRecipe

__all__ = ["train_model", "spec_augment", "mixup_within", "with_adversary", "adversary_ramp",
           "with_arousal", "arousal_of", "HIGH_AROUSAL"]

logger = logging.getLogger(__name__)


def _training_windows(
    bank: FeatureBank, y: np.ndarray, rng: np.random.Generator, gate: SpeechGate
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fresh random windows: ``crops_per_clip`` per clip, each from a random variant, at a start
    the device's gate passes (it never classifies the others), a share ``adapt.fresh_share`` of
    them as a device not yet adapted sees them; returns inputs, labels and the clip each window
    came from."""
    r = bank.recipe
    xs, ys, clips = [], [], []
    share = r.adapt.fresh_share
    for clip, (frames_list, label) in enumerate(zip(bank.variants, y)):
        for _ in range(r.train.crops_per_clip):
            v = int(rng.integers(len(frames_list)))
            starts = bank.speech_starts(clip, v, gate)
            start = int(starts[rng.integers(len(starts))])
            # Drawn only when asked for, so recipes without it keep their random stream.
            fresh = bool(share) and bool(rng.random() < share)
            xs.append(bank.model_input(clip, v, start, fresh))
            ys.append(label)
            clips.append(clip)
    return np.asarray(xs, np.float32)[..., None], np.asarray(ys), np.asarray(clips)


def spec_augment(x: np.ndarray, rng: np.random.Generator, time_masks: int, time_width: int,
                 feature_masks: int, feature_width: int) -> np.ndarray:
    """SpecAugment's masks (Park et al. 2019, without time warping) on windows ``(N, T, F, 1)``,
    in place: ``time_masks`` spans of up to ``time_width`` frames and ``feature_masks`` bands of
    up to ``feature_width`` columns per window, each of random width and place, set to 0 (the
    mean: windows are normalised)."""
    n, frames, columns = x.shape[:3]
    for _ in range(time_masks):
        width = rng.integers(0, min(time_width, frames) + 1, n)
        start = rng.integers(0, frames - width + 1)
        t = np.arange(frames)
        x[(t >= start[:, None]) & (t < (start + width)[:, None])] = 0.0
    for _ in range(feature_masks):
        width = rng.integers(0, min(feature_width, columns) + 1, n)
        start = rng.integers(0, columns - width + 1)
        f = np.arange(columns)
        band = (f >= start[:, None]) & (f < (start + width)[:, None])  # (n, columns)
        x[np.broadcast_to(band[:, None, :], (n, frames, columns))] = 0.0
    return x


def mixup_within(x: np.ndarray, target: np.ndarray, weight: np.ndarray, group: np.ndarray,
                 alpha: float, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mixup inside groups: each row ``i`` of ``x`` (windows), ``target`` and ``weight`` becomes
    ``lam * row_i + (1 - lam) * row_j``, ``j`` drawn from the rows of ``i``'s group (its corpus)
    and ``lam`` from Beta(alpha, alpha), once per row.  New arrays; the inputs are untouched.

    Why within a corpus: the masked loss scores a window over its corpus's labels only, and two
    windows of one corpus share that mask, so the blended target stays a distribution over it.
    The target's mask columns (``target[:, n:]`` of ``[one-hot | mask]``) are equal in both rows
    and blend to themselves."""
    partner = np.arange(len(group))
    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        partner[rows] = rows[rng.integers(len(rows), size=len(rows))]
    lam = rng.beta(alpha, alpha, size=len(group)).astype(np.float32)
    lx = lam.reshape((-1,) + (1,) * (x.ndim - 1))
    mixed_x = x[partner].astype(np.float32, copy=False)  # one copy of the windows, not three
    mixed_x *= 1.0 - lx
    mixed_x += lx * x
    mixed_t = lam[:, None] * target + (1.0 - lam[:, None]) * target[partner]
    mixed_w = lam * weight + (1.0 - lam) * weight[partner]
    return mixed_x, mixed_t.astype(np.float32), mixed_w


def sample_weights(y: np.ndarray, corpus: np.ndarray, n_labels: int,
                   power: float = 1.0, coverage: float = 0.0) -> np.ndarray:
    """Per-clip loss weights: every class counts equally, and within a class every corpus that
    has it counts equally (so one big corpus does not define what "sad" sounds like).  Mean 1.
    With ``power`` < 1 each clip's weight is that weight to the power: a class or corpus with
    few clips then counts less than an equal share (0: every clip the same).  With
    ``coverage`` > 0 each class's clips are also weighted by the share of the corpora that have
    the class, to that power (``train.coverage_power``)."""
    w = np.zeros(len(y))
    n_corpora = len(np.unique(corpus))
    for k in range(n_labels):
        have = np.unique(corpus[y == k])
        for c in have:
            sel = (y == k) & (corpus == c)
            w[sel] = ((1.0 / (len(have) * sel.sum())) ** power
                      * (len(have) / n_corpora) ** coverage)
    return w * len(w) / w.sum() if w.sum() else np.ones(len(y))


def label_masks(y: np.ndarray, corpus: np.ndarray, n_labels: int,
                masked: bool = True) -> np.ndarray:
    """``(clips, labels)``: 1 where the clip's corpus has the label.  The loss is computed over
    these labels only, so a corpus without "disgust" never teaches that disgust does not occur.
    ``masked=False``: 1 everywhere (``train.mask_missing_labels``), every clip scored over every
    label."""
    if not masked:
        return np.ones((len(y), n_labels), np.float32)
    mask = np.zeros((len(y), n_labels), np.float32)
    for c in np.unique(corpus):
        mask[np.ix_(corpus == c, np.unique(y[corpus == c]))] = 1.0
    return mask


def masked_crossentropy(label_smoothing: float) -> Any:
    """Cross-entropy over each example's allowed labels.  ``y_true`` is ``[one-hot | mask]``
    (``2 * labels`` columns); the model's probabilities are renormalised over the mask, which is
    the softmax over the allowed labels' logits, and the smoothing spreads over them only."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="emotion_edge")
    def loss(y_true: Any, y_pred: Any) -> Any:
        n = ops.shape(y_pred)[-1]
        target, mask = y_true[:, :n], y_true[:, n:]
        allowed = ops.sum(mask, axis=-1, keepdims=True)
        target = target * (1.0 - label_smoothing) + mask * (label_smoothing / allowed)
        p = y_pred * mask
        p = p / ops.maximum(ops.sum(p, axis=-1, keepdims=True), 1e-7)
        return -ops.sum(target * ops.log(ops.clip(p, 1e-7, 1.0)), axis=-1)

    return loss


def adversary_ramp(epoch: int, epochs: int, weight: float) -> float:
    """The gradient reversal's scale for ``epoch`` (0-based) of ``epochs``: Ganin et al.'s
    ``weight * (2 / (1 + exp(-10 p)) - 1)`` at the epoch's middle ``p``, so the adversary
    barely pushes while the classifier's features are still forming."""
    p = (epoch + 0.5) / epochs
    return float(weight * (2.0 / (1.0 + np.exp(-10.0 * p)) - 1.0))


HIGH_AROUSAL = ("angry", "happy", "fearful", "surprised")
"""Labels of high arousal for ``train.arousal``; the others (neutral, sad, disgust) are low, as
in Schuller et al.'s cross-corpus study (2010)."""


def arousal_of(labels: Sequence[str]) -> np.ndarray:
    """Each label's arousal: 1 high, 0 low (:data:`HIGH_AROUSAL`)."""
    return np.array([label in HIGH_AROUSAL for label in labels], dtype=int)


def _embedding(network: Any, setting: str) -> Any:
    kind = next((k for k in EMBEDDING if network.name.endswith(k)), None)
    if kind is None:
        raise ConfigError(f"{setting} needs a compact, pooled or ensemble model, not "
                          f"{network.name!r}: set {setting} = 0")
    return network.get_layer(EMBEDDING[kind]).output


def with_arousal(network: Any) -> Any:
    """``network`` with a second output, high or low arousal, read by a small head from the
    network's representation (its ``EMBEDDING`` layer).  The layers are ``network``'s own, so
    training the returned model trains it; the head stays outside it."""
    import keras
    from keras import layers

    h = layers.Dense(32, activation="relu")(_embedding(network, "train.arousal"))
    arousal = layers.Dense(2, activation="softmax", name="arousal")(h)
    return keras.Model(network.inputs, [*network.outputs, arousal], name=network.name)


def with_adversary(network: Any, n_corpora: int) -> tuple[Any, Any]:
    """``network`` (a classifier from :mod:`.model`) with a second output, the corpus as a
    small adversary reads it from the network's representation (its ``EMBEDDING`` layer)
    through a gradient reversal.  Returns the two-output training model and the reversal's
    scale (a variable: assign it each epoch).  The layers are ``network``'s own, so training
    the returned model trains it; the adversary stays outside it."""
    import keras
    from keras import layers, ops

    embedding = _embedding(network, "train.adversary")
    scale = keras.Variable(0.0, trainable=False, name="reversal_scale")

    class GradientReversal(layers.Layer):  # type: ignore[misc]
        def call(self, z: Any) -> Any:
            # Identity forward, gradient times -scale backward.
            return ops.stop_gradient(z * (1.0 + scale)) - scale * z

    z = GradientReversal()(embedding)
    h = layers.Dense(64, activation="relu")(z)
    corpus = layers.Dense(n_corpora, activation="softmax", name="corpus")(h)
    return keras.Model(network.inputs, [*network.outputs, corpus], name=network.name), scale


def _outputs(targets: list[Any]) -> Any:
    """Keras's targets for one output or several."""
    return tuple(targets) if len(targets) > 1 else targets[0]


def train_model(
    bank: FeatureBank, y: np.ndarray, labels: Sequence[str], recipe: SpeechRecipe,
    gate: SpeechGate | None = None, verbose: bool = False,
) -> Any:
    """Train on every clip of ``bank`` (labels ``y`` as indices) with fresh crops each epoch."""
    import keras

    gate = gate or SpeechGate()
    t = recipe.train
    # Keras numbers its models and layers per process, and the numbers land in the .tflite's
    # tensor names: without this, the same weights came out as another file (another sha256)
    # after a run that had trained its folds first.
    keras.backend.clear_session()
    keras.utils.set_random_seed(t.seed)
    rng = np.random.default_rng(t.seed)
    if recipe.model.kind == "ensemble":
        model, trained = build_branches(recipe, len(labels))
    else:
        model = build_model(recipe, len(labels))
        trained = [model]
    steps = int(np.ceil(len(y) * t.crops_per_clip / t.batch_size)) * t.epochs
    corpus = np.array([u.corpus for u in bank.utts])
    names, corpus_index = np.unique(corpus, return_inverse=True)
    scales = []
    adversary = t.adversary if len(names) > 1 else 0.0  # one corpus: nothing to tell apart
    if adversary:
        trained, scales = (list(z) for z in zip(*(with_adversary(m, len(names))
                                                   for m in trained)))
    if t.arousal:
        trained = [with_arousal(m) for m in trained]
    # The emotion first, then the corpus adversary's and the arousal head's, each if asked for.
    losses_of = [masked_crossentropy(t.label_smoothing)]
    losses_of += ["categorical_crossentropy"] * (bool(adversary) + bool(t.arousal))
    loss_weights = [1.0] + [1.0] * bool(adversary) + [t.arousal] * bool(t.arousal)
    for m in trained:
        schedule = keras.optimizers.schedules.CosineDecay(t.learning_rate, max(steps, 1),
                                                          alpha=0.02)
        m.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
                  loss=losses_of if len(losses_of) > 1 else losses_of[0],
                  loss_weights=loss_weights if len(losses_of) > 1 else None)
    arousal = arousal_of(labels)
    weights = (sample_weights(y, corpus, len(labels), t.balance_power, t.coverage_power)
               if t.balance_classes else np.ones(len(y)))
    masks = label_masks(y, corpus, len(labels), t.mask_missing_labels)
    # The linear network may score every clip over every label (model.linear_masked), as a
    # regression does; the others keep train.mask_missing_labels.
    every_label = [m.name.endswith("linear") and not recipe.model.linear_masked for m in trained]
    averages = [WeightAverage(m, None) for m in trained] if t.average_from else []
    for epoch in range(t.epochs):
        x_ep, y_ep, clip_ep = _training_windows(bank, y, rng, gate)
        if t.time_masks or t.feature_masks:
            spec_augment(x_ep, rng, t.time_masks, t.time_mask_frames, t.feature_masks,
                         t.feature_mask_columns)
        target = np.concatenate([keras.utils.to_categorical(y_ep, len(labels)), masks[clip_ep]],
                                axis=1)
        w_ep = weights[clip_ep]
        if t.mixup:  # drawn only when asked for, so recipes without it keep their random stream
            x_ep, target, w_ep = mixup_within(x_ep, target, w_ep, corpus[clip_ep], t.mixup, rng)
        # An ensemble's branches learn apart, on the same windows: each is the model it was
        # measured as on its own (models/README.md), and their errors differ.
        averaging = bool(averages) and epoch + 1 >= t.average_from
        targets: Any = [target]
        if adversary:
            ramp = adversary_ramp(epoch, t.epochs, adversary)
            for scale in scales:
                scale.assign(ramp)
            targets.append(keras.utils.to_categorical(corpus_index[clip_ep], len(names)))
        if t.arousal:
            targets.append(keras.utils.to_categorical(arousal[y_ep], 2))
        unmasked = targets
        if any(every_label):  # built only when a branch learns over every label
            unmasked = [np.concatenate([target[:, : len(labels)], np.ones_like(masks[clip_ep])],
                                       axis=1), *targets[1:]]
        losses = [m.fit(x_ep, _outputs(unmasked if every_label[i] else targets), sample_weight=w_ep,
                        batch_size=t.batch_size, epochs=1, shuffle=True, verbose=0,
                        callbacks=[averages[i].callback] if averaging else None,
                        ).history["loss"][-1] for i, m in enumerate(trained)]
        if verbose or epoch == t.epochs - 1:
            logger.info("epoch %d/%d loss %s", epoch + 1, t.epochs,
                        " ".join(f"{loss:.3f}" for loss in losses))
    for average in averages:  # the branches share no weights: each takes its own average
        average.assign(average.average)
    return model
