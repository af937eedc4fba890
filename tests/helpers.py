"""Builders shared by tests: tiny models exported through the real conversion code."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from edge.features import MfccConfig
from edge.models.speech import speech_preprocessing

TINY_MFCC = MfccConfig(n_mels=20, n_ceps=13, window="hamming", normalize="cmvn")
TINY_LABELS = ("neutral", "happy", "sad", "angry")


def importable(module: str) -> bool:
    """Whether the optional ``module`` (PyAV, pi-heif) is installed: the cases of the readers it
    serves are run only then."""
    return importlib.util.find_spec(module) is not None


def speech_like_noise(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Wideband noise shaped like speech (falling 6 dB per octave above 500 Hz), syllabic."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    spectrum = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    spectrum /= np.maximum(f, 500.0) / 500.0
    x = np.fft.irfft(spectrum, n)
    x *= 0.5 + 0.5 * np.sin(2 * np.pi * 4 * np.arange(n) / sr)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def tiny_speech_model(out: Path, *, window_frames: int = 50, hop_frames: int = 25,
                      config: MfccConfig = TINY_MFCC, seed: int = 0,
                      adapt_prior: Any = None) -> tuple[Path, Any]:
    """A small random-weight CNN with the speech model's input contract, exported to int8 with
    a manifest exactly as ``emotion-convert speech`` does; returns the path and the float model."""
    import keras

    from convert.export import convert_int8, save_model
    from edge.labels import fusion_map_for

    keras.utils.set_random_seed(seed)
    inp = keras.Input((window_frames, config.n_columns, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(len(TINY_LABELS), activation="softmax")(x))
    rep = np.random.default_rng(seed).standard_normal((64, window_frames, config.n_columns, 1))
    path = out / "tiny_speech.tflite"
    save_model(convert_int8(model, rep.astype(np.float32)), path, name="tiny", task="speech",
               labels=TINY_LABELS,
               preprocessing=speech_preprocessing(config, window_frames, hop_frames,
                                                  adapt_prior=adapt_prior),
               fusion_map=fusion_map_for(TINY_LABELS), metrics={}, training={})
    return path, model
