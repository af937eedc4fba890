"""Tiny random-weight int8 speech and face models with real manifests, for end-to-end tests of
``emotion-edge run`` (the shipped models may not exist in a fresh checkout).  Needs TensorFlow."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SPEECH_LABELS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
FACE_LABELS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def _keras(shape, n_out, seed):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input(shape=shape)
    x = tf.keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inp)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    out = tf.keras.layers.Dense(n_out, activation="softmax")(x)
    return tf.keras.Model(inp, out)


def build(folder: str | Path, *, window_frames: int = 100, hop_frames: int = 50) -> tuple[Path, Path]:
    """Write the shipped models' file names (edge.models.speech.SPEECH_MODEL_FILE,
    edge.models.face.FACE_MODEL_FILE) with manifests into ``folder``."""
    from convert.export import convert_int8, save_model
    from edge.features import MfccConfig
    from edge.features.face import FacePreprocessConfig
    from edge.labels import fusion_map_for
    from edge.models.face import FACE_MODEL_FILE
    from edge.models.speech import SPEECH_MODEL_FILE, speech_preprocessing

    folder = Path(folder)
    rng = np.random.default_rng(0)
    mfcc = MfccConfig()
    shape = (window_frames, mfcc.n_ceps, 1)
    speech = folder / SPEECH_MODEL_FILE
    save_model(convert_int8(_keras(shape, len(SPEECH_LABELS), 0),
                            rng.normal(size=(32, *shape)).astype(np.float32)),
               speech, name="tiny-speech", task="speech", labels=SPEECH_LABELS,
               preprocessing=speech_preprocessing(mfcc, window_frames, hop_frames),
               fusion_map=fusion_map_for(SPEECH_LABELS), metrics={}, training={"note": "test"})
    pre = FacePreprocessConfig()
    fshape = (pre.size, pre.size, 1)
    face = folder / FACE_MODEL_FILE
    save_model(convert_int8(_keras(fshape, len(FACE_LABELS), 1),
                            rng.uniform(-1, 1, size=(32, *fshape)).astype(np.float32)),
               face, name="tiny-face", task="face_expression", labels=FACE_LABELS,
               preprocessing=pre.to_dict(), fusion_map=fusion_map_for(FACE_LABELS), metrics={},
               training={"note": "test"})
    return speech, face


def speech_wav(path: str | Path, seconds: float, *, sr: int = 16000,
               silent_after: float | None = None) -> Path:
    """A signal the speech gate accepts (modulated noise plus a 150 Hz tone), then silence."""
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(0)
    x = 0.1 * rng.normal(size=t.size) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    x += 0.2 * np.sin(2 * np.pi * 150 * t)
    if silent_after is not None:
        x[int(silent_after * sr):] = 0.0
    sf.write(str(path), x.astype(np.float32), sr)
    return Path(path)
