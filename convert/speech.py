"""Speech emotion training: features from the device's own code, actor-independent folds, int8.

The protocol that makes the numbers honest: folds hold out whole speakers, a clip's decision is the
device's own (mean probability over the speech windows chosen by the device's gate), and nothing
from a test fold is used for anything but scoring (no early stopping on it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.features import Mfcc, MfccConfig, normalize_window
from edge.labels import COMMON_LABELS, fusion_map_for
from edge.models.speech import SpeechGate, speech_preprocessing, window_starts, windows_of
from edge.sources.audio_file import load_audio, resample

from .corpora import Utterance
from .metrics import classification_metrics, mean_metrics

__all__ = [
    "SpeechRecipe",
    "FeatureBank",
    "speaker_folds",
    "build_model",
    "train_model",
    "predict_clips",
    "cross_validate",
    "fusion_map_for",
    "COMMON_LABELS",
]

logger = logging.getLogger(__name__)

@dataclasses.dataclass(frozen=True)
class SpeechRecipe:
    """Everything that defines a speech model; stored in its manifest."""

    mfcc: MfccConfig = MfccConfig(
        n_mels=40, n_ceps=40, window="hamming", lifter=0, normalize="cmn", high_hz=7600.0
    )
    window_frames: int = 300
    """Model input length in frames (3 s at a 10 ms hop)."""
    hop_frames: int = 50
    """Hop between windows on the device and at evaluation (0.5 s)."""
    model: str = "compact"
    """"compact" (ours) or "seed" (the hobby project's CNN, as a reference)."""
    width: int = 48
    """Channels of the compact model's first block (x1.5 per block)."""
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 2e-3
    label_smoothing: float = 0.1
    crops_per_clip: int = 2
    """Random training windows drawn per clip per epoch."""
    speed_factors: tuple[float, ...] = (0.9, 1.1)
    """Speed-perturbed copies of every training clip (1.0 is always included)."""
    noise_snr_db: tuple[float, float] = (10.0, 30.0)
    """Range of SNR for the noisy copy of every clip and speed variant."""
    balance_classes: bool = True
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mfcc"] = self.mfcc.to_dict()
        return d


class FeatureBank:
    """Raw MFCC frames of every clip and its augmented variants, computed once with the device's
    :class:`~edge.features.Mfcc` and shared by all folds."""

    def __init__(self, utts: Sequence[Utterance], recipe: SpeechRecipe, *, augment: bool = True):
        self.utts = list(utts)
        self.recipe = recipe
        mfcc = Mfcc(recipe.mfcc)
        sr = recipe.mfcc.sample_rate
        rng = np.random.default_rng(recipe.seed)
        self.variants: list[list[np.ndarray]] = []
        t0 = time.perf_counter()
        for u in self.utts:
            x = load_audio(u.path, sr)
            signals = [x]
            if augment:
                for f in recipe.speed_factors:
                    # Playing faster by f = resampling to sr / f and reading at sr.
                    signals.append(resample(x, int(round(sr * f)), sr))
                signals += [_add_noise(s, rng, recipe.noise_snr_db) for s in list(signals)]
            self.variants.append([mfcc(s).astype(np.float32) for s in signals])
        # Shared with subsets (folds), keyed by the clip's index in this bank.
        self._ids = list(range(len(self.utts)))
        self._starts: dict[tuple[int, int, SpeechGate], np.ndarray] = {}
        logger.info("features for %d clips (%d variants each) in %.1f s", len(self.utts),
                    len(self.variants[0]) if self.variants else 0, time.perf_counter() - t0)

    def speech_starts(self, clip: int, variant: int, gate: SpeechGate) -> np.ndarray:
        """Gated window starts of one clip variant, computed on first use (gating is the
        costly part of drawing training windows)."""
        key = (self._ids[clip], variant, gate)
        if key not in self._starts:
            frames = self.variants[clip][variant]
            if frames.shape[0] < self.recipe.window_frames:
                frames = np.pad(frames, ((0, self.recipe.window_frames - frames.shape[0]), (0, 0)),
                                mode="wrap")
            self._starts[key] = _speech_starts(frames, self.recipe, gate)
        return self._starts[key]

    def subset(self, idx: Sequence[int]) -> FeatureBank:
        new = object.__new__(FeatureBank)
        new.utts = [self.utts[i] for i in idx]
        new.recipe = self.recipe
        new.variants = [self.variants[i] for i in idx]
        new._ids = [self._ids[i] for i in idx]
        new._starts = self._starts
        return new


def _add_noise(x: np.ndarray, rng: np.random.Generator, snr_range: tuple[float, float]) -> np.ndarray:
    snr = rng.uniform(*snr_range)
    # Noise level relative to the active part of the signal, so leading silence does not inflate it.
    power = np.mean(x[np.abs(x) > 0.1 * np.abs(x).max()] ** 2) if x.size else 0.0
    noise = rng.standard_normal(x.size).astype(np.float32)
    if rng.random() < 0.5:  # brown-ish noise half the time: rooms and fans are not white
        noise = np.cumsum(noise)
        noise -= np.convolve(noise, np.ones(64) / 64, mode="same")
        noise /= noise.std() + 1e-9
    return (x + noise * np.sqrt(power / 10 ** (snr / 10))).astype(np.float32)


def speaker_folds(utts: Sequence[Utterance], k: int) -> list[list[str]]:
    """Split the speakers into ``k`` folds; adjacent speakers go to one fold (RAVDESS numbers
    alternate male/female, so each fold gets both)."""
    speakers = sorted({u.speaker for u in utts})
    if k < 2 or k > len(speakers):
        raise ValueError(f"need 2 <= folds <= {len(speakers)} speakers, got {k}")
    folds: list[list[str]] = [[] for _ in range(k)]
    for i, s in enumerate(speakers):
        folds[(i // 2) % k].append(s)
    return folds


def _speech_starts(frames: np.ndarray, recipe: SpeechRecipe, gate: SpeechGate) -> np.ndarray:
    """Window starts (every 5 frames) that the device's gate passes; all starts if none does."""
    w = recipe.window_frames
    starts = window_starts(frames.shape[0], w, 5)
    speechy = [s for s in starts if gate.is_speech(frames[s : s + w], recipe.mfcc)]
    return np.asarray(speechy or starts)


def _training_windows(
    bank: FeatureBank, y: np.ndarray, rng: np.random.Generator, gate: SpeechGate
) -> tuple[np.ndarray, np.ndarray]:
    r = bank.recipe
    w = r.window_frames
    xs, ys = [], []
    for clip, (frames_list, label) in enumerate(zip(bank.variants, y)):
        for _ in range(r.crops_per_clip):
            v = int(rng.integers(len(frames_list)))
            frames = frames_list[v]
            if frames.shape[0] < w:
                frames = np.pad(frames, ((0, w - frames.shape[0]), (0, 0)), mode="wrap")
            # Train on windows the device's gate would pass: it never classifies the others.
            starts = bank.speech_starts(clip, v, gate)
            s = int(starts[rng.integers(len(starts))])
            xs.append(normalize_window(frames[s : s + w], r.mfcc.normalize))
            ys.append(label)
    return np.asarray(xs, np.float32)[..., None], np.asarray(ys)


def build_model(recipe: SpeechRecipe, n_classes: int) -> Any:
    """Keras model for ``recipe.model``."""
    import keras
    from keras import layers

    shape = (recipe.window_frames, recipe.mfcc.n_ceps, 1)
    inp = keras.Input(shape=shape, name="mfcc")
    if recipe.model == "seed":
        # The hobby project's CNN exactly as printed in its write-up.
        x = layers.Conv2D(256, (4, 4), padding="same", activation="relu")(inp)
        x = layers.MaxPooling2D((4, 4))(x)
        x = layers.BatchNormalization()(x)
        x = layers.Dropout(0.8)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(64, activation="relu")(x)
        x = layers.Dense(32, activation="relu")(x)
        out = layers.Dense(n_classes, activation="softmax")(x)
        return keras.Model(inp, out, name="seed_cnn")
    if recipe.model != "compact":
        raise ValueError(f"unknown speech model {recipe.model!r}; choose compact or seed")
    # Convolution over time with the cepstra as channels: 5x fewer MACs than a 2-D CNN on the
    # same input, and emotion lives in how the spectral envelope moves, not where in it.
    # The input keeps the (frames, ceps, 1) shape of every speech model; a reshape drops the 1.
    x = layers.Reshape((recipe.window_frames, recipe.mfcc.n_ceps))(inp)
    ch = recipe.width
    for block, kernel in enumerate((5, 5, 3, 3)):
        x = layers.Conv1D(ch, kernel, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        if block < 3:
            x = layers.MaxPooling1D(2)(x)
            ch = int(ch * 1.5)
    # Mean and max over time: a window's emotion does not depend on where in it speech is.
    x = layers.Concatenate()([layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])
    x = layers.Dropout(0.3)(x)
    out = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inp, out, name="speech_compact")


def train_model(
    bank: FeatureBank, y: np.ndarray, labels: Sequence[str], recipe: SpeechRecipe,
    gate: SpeechGate | None = None, verbose: bool = False,
) -> Any:
    """Train on every clip of ``bank`` (labels ``y`` as indices) with fresh crops each epoch."""
    import keras

    gate = gate or SpeechGate()
    keras.utils.set_random_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    model = build_model(recipe, len(labels))
    steps = int(np.ceil(len(y) * recipe.crops_per_clip / recipe.batch_size)) * recipe.epochs
    schedule = keras.optimizers.schedules.CosineDecay(recipe.learning_rate, max(steps, 1), alpha=0.02)
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
    )
    counts = np.bincount(y, minlength=len(labels)).astype(float)
    weights = counts.sum() / (len(labels) * np.maximum(counts, 1))
    for epoch in range(recipe.epochs):
        x_ep, y_ep = _training_windows(bank, y, rng, gate)
        sw = weights[y_ep] if recipe.balance_classes else None
        hist = model.fit(x_ep, keras.utils.to_categorical(y_ep, len(labels)), sample_weight=sw,
                         batch_size=recipe.batch_size, epochs=1, shuffle=True, verbose=0)
        if verbose or epoch == recipe.epochs - 1:
            logger.info("epoch %d/%d loss %.3f", epoch + 1, recipe.epochs, hist.history["loss"][-1])
    return model


def clip_windows(
    bank: FeatureBank, recipe: SpeechRecipe, gate: SpeechGate
) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation windows of every clip (original audio only), exactly as the device makes them:
    the gate's speech windows, or all windows of a clip without any (the device would say
    "no speech"; scoring it as a wrong answer would hide nothing, but RAVDESS clips all contain
    speech)."""
    xs, group = [], []
    for i, variants in enumerate(bank.variants):
        wins = windows_of(variants[0], recipe.window_frames, recipe.hop_frames)
        speech = [f for _, f in wins if gate.is_speech(f, recipe.mfcc)] or [f for _, f in wins]
        xs += [normalize_window(f, recipe.mfcc.normalize) for f in speech]
        group += [i] * len(speech)
    return np.asarray(xs, np.float32)[..., None], np.asarray(group)


def predict_clips(model: Any, bank: FeatureBank, recipe: SpeechRecipe, gate: SpeechGate) -> np.ndarray:
    """Clip-level probabilities: the mean over each clip's windows (the device's decision)."""
    x, group = clip_windows(bank, recipe, gate)
    probs = np.asarray(model.predict(x, batch_size=256, verbose=0))
    return np.stack([probs[group == i].mean(axis=0) for i in range(len(bank.utts))])


def cross_validate(
    bank: FeatureBank, labels: Sequence[str], recipe: SpeechRecipe, k: int,
    gate: SpeechGate | None = None, out_dir: Path | None = None, *,
    n_folds: int | None = None, parity_folds: int = 0,
) -> dict[str, Any]:
    """Speaker-independent k-fold: per-fold and mean UAR, accuracy, macro-F1, confusion.

    ``n_folds`` runs only the first folds of the same ``k``-way split (for costly references);
    the first ``parity_folds`` folds also convert their model to int8 and score it with the
    device runtime on the same held-out speakers.
    """
    gate = gate or SpeechGate()
    label_index = {lab: i for i, lab in enumerate(labels)}
    y = np.array([label_index[u.label] for u in bank.utts])
    folds = speaker_folds(bank.utts, k)[:n_folds]
    results, parity = [], []
    for f, test_speakers in enumerate(folds):
        test = [i for i, u in enumerate(bank.utts) if u.speaker in test_speakers]
        train = [i for i, u in enumerate(bank.utts) if u.speaker not in test_speakers]
        assert not {bank.utts[i].speaker for i in train} & set(test_speakers)
        t0 = time.perf_counter()
        model = train_model(bank.subset(train), y[train], labels, recipe, gate)
        probs = predict_clips(model, bank.subset(test), recipe, gate)
        m = classification_metrics(y[test], probs.argmax(1), labels)
        m.update(fold=f, test_speakers=sorted(test_speakers), train_clips=len(train),
                 test_clips=len(test), parameters=int(model.count_params()),
                 seconds=round(time.perf_counter() - t0, 1))
        logger.info("%s fold %d/%d (test %s): UAR %.3f acc %.3f F1 %.3f", recipe.model, f + 1,
                    len(folds), ",".join(sorted(test_speakers)), m["uar"], m["accuracy"],
                    m["macro_f1"])
        results.append(m)
        if f < parity_folds:
            row = int8_parity_of(model, bank.subset(train), bank.subset(test), y[test], labels,
                                 recipe, gate)
            row["fold"] = f
            parity.append(row)
        if out_dir is not None:
            (out_dir / f"{recipe.model}_fold{f}.json").write_text(json.dumps(m, indent=1))
    out: dict[str, Any] = {
        "protocol": f"{k}-fold speaker-independent cross-validation (whole speakers held out)"
        + (f", first {len(folds)} folds" if len(folds) < k else "")
        + "; clip decision = mean probability over the device's speech windows",
        "recipe": recipe.to_dict(),
        "mean": mean_metrics(results),
        "folds": results,
    }
    if parity:
        out["int8_parity"] = {
            "protocol": f"first {len(parity)} folds: the fold's model as float (Keras) and as "
            "int8 (device runtime) on the fold's held-out speakers, clip decisions",
            "mean": {key: float(np.mean([r[key] for r in parity])) for key in
                     ("float_uar", "int8_uar", "top1_agreement", "max_abs_prob_diff")},
            "folds": parity,
        }
    return out


def int8_parity_of(
    model: Any, train: FeatureBank, test: FeatureBank, y_test: np.ndarray,
    labels: Sequence[str], recipe: SpeechRecipe, gate: SpeechGate,
) -> dict[str, Any]:
    """Convert ``model`` with windows of ``train`` as representative data; compare float and
    int8 clip decisions on ``test``."""
    import tempfile

    from edge.models.runtime import QuantizedModel

    from .export import convert_int8, int8_parity, save_model

    x_train, _ = clip_windows(train, recipe, gate)
    x_test, group = clip_windows(test, recipe, gate)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fold.tflite"
        save_model(convert_int8(model, x_train), path, name="fold", task="speech", labels=labels,
                   preprocessing=manifest_preprocessing(recipe), fusion_map=fusion_map_for(labels),
                   metrics={}, training={})
        float_probs = np.asarray(model.predict(x_test, batch_size=256, verbose=0))
        with QuantizedModel(path) as q:
            row = int8_parity(q, float_probs, x_test, y_test[group], labels, group=group)
    logger.info("int8 parity: float UAR %.3f, int8 UAR %.3f, top-1 agreement %.3f",
                row["float_uar"], row["int8_uar"], row["top1_agreement"])
    return row


def manifest_preprocessing(recipe: SpeechRecipe) -> Mapping[str, Any]:
    return speech_preprocessing(recipe.mfcc, recipe.window_frames, recipe.hop_frames)
