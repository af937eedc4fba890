"""Room and microphone copies of a training clip, through audiomentations.

Why: the corpora are studio or home recordings on good microphones; a Pi hears a room through a
cheap USB microphone, and the model is also judged on phone recordings.  Each copy passes the
clip through a random room (reverberation), a random microphone (seven-band EQ, then half the
time a telephone-like or small-capsule band limit), a lossy codec (MP3 at 16-48 kbit/s, like a
phone call or a messaging app) and coloured noise at 0-30 dB SNR.  Per-deployment standardisation
removes what a room does on average; these copies teach what it does to each utterance.

The room is the one transform audiomentations does not offer without measured impulse responses
on disk or pyroomacoustics: a stochastic response (a direct path, then exponentially decaying
noise with a random RT60 of 0.15-0.8 s, Moorer 1979), convolved with SciPy.

Copies are seeded per clip, so they are the same whichever corpora the clip is trained with and
can be cached.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

__all__ = ["room_copy"]

RT60_S = (0.15, 0.8)
"""Reverberation time range: a furnished living room to a bare kitchen or classroom."""
DIRECT_TO_REVERB_DB = (-3.0, 12.0)
"""Energy of the direct path over the reverberant tail: across a room to close to the mic."""
SNR_DB = (0.0, 30.0)


def _stochastic_room(rng: np.random.Generator, sr: int) -> np.ndarray:
    rt60 = rng.uniform(*RT60_S)
    n = int(rt60 * sr)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    tail[: int(0.002 * sr)] = 0.0  # first reflections arrive after the direct sound
    drr = 10 ** (rng.uniform(*DIRECT_TO_REVERB_DB) / 10)
    tail *= np.sqrt(1.0 / (drr * np.sum(tail**2)))
    tail[0] = 1.0
    return tail


def _pipeline() -> Any:
    import audiomentations as am  # training only (convert extra)

    return am.Compose([
        am.SevenBandParametricEQ(min_gain_db=-8.0, max_gain_db=8.0, p=0.8),
        am.OneOf([
            # Telephone band, small MEMS/electret capsules, and a muffled (covered) microphone.
            am.BandPassFilter(min_center_freq=900.0, max_center_freq=1500.0,
                              min_bandwidth_fraction=1.5, max_bandwidth_fraction=1.99),
            am.HighPassFilter(min_cutoff_freq=150.0, max_cutoff_freq=400.0),
            am.LowPassFilter(min_cutoff_freq=3000.0, max_cutoff_freq=6000.0),
        ], p=0.5),
        am.Mp3Compression(min_bitrate=16, max_bitrate=48, p=0.5),
        am.AddColorNoise(min_snr_db=SNR_DB[0], max_snr_db=SNR_DB[1], p=0.8),
    ])


_PIPELINE: Any = None


def room_copy(x: np.ndarray, sr: int, seed: int) -> np.ndarray:
    """``x`` as heard through a random room and microphone (the same for the same ``seed``)."""
    from scipy.signal import fftconvolve

    global _PIPELINE
    if _PIPELINE is None:
        _PIPELINE = _pipeline()
    rng = np.random.default_rng(seed)
    y = fftconvolve(x.astype(np.float64), _stochastic_room(rng, sr))[: x.size]
    # Keep the clip's level: reverberation adds energy, the microphone chain must see speech
    # at the level it was recorded at.
    y *= np.sqrt(np.mean(x.astype(np.float64) ** 2) / max(np.mean(y**2), 1e-20))
    # audiomentations draws from Python's and NumPy's global generators.
    random.seed(seed)
    np.random.seed(seed % 2**32)
    out = _PIPELINE(samples=y.astype(np.float32), sample_rate=sr)
    return np.asarray(np.clip(out, -1.0, 1.0), dtype=np.float32)
