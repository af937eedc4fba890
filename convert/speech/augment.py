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

Babble copies put other people talking behind the speaker, as a television or a second
conversation does in a living room or classroom: three clips of other speakers of the same corpus
(never of a corpus a leave-one-corpus-out fold holds out), each through audiomentations'
``AddBackgroundNoise``, together about 5-20 dB under the speaker.

Voice copies move pitch and tempo apart: the speed copies raise both together, as a faster
tape does, but speakers differ in pitch and vocal-tract length (children, and the many voices
of another language's corpus) independently of how fast they talk.  Each copy shifts the
clip's whole spectrum (pitch and formants) by up to 4 semitones and changes its tempo by
-15 to +18% without changing its pitch, through audiomentations' ``PitchShift`` and
``TimeStretch`` (Signalsmith Stretch).

Copies are seeded per clip, so they are the same whichever corpora the clip is trained with and
can be cached.
"""

from __future__ import annotations

import functools
import math
import random
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["babble_copy", "room_copy", "voice_copy"]

RT60_S = (0.15, 0.8)
"""Reverberation time range: a furnished living room to a bare kitchen or classroom."""
DIRECT_TO_REVERB_DB = (-3.0, 12.0)
"""Energy of the direct path over the reverberant tail: across a room to close to the mic."""
SNR_DB = (0.0, 30.0)
BABBLE_TALKERS = 3
BABBLE_SNR_DB = (5.0, 20.0)
"""Level of the speaker over the whole babble: a TV across the room to a loud second talker."""
SEMITONES = (-4.0, 4.0)
"""Pitch and formant shift of a voice copy: about a vocal tract 20% shorter or longer."""
TEMPO = (0.85, 1.18)
"""Tempo of a voice copy against the clip's: within one speaker's slow and fast speech."""


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


@functools.lru_cache(maxsize=8)
def _babble(talkers: tuple[str, ...]) -> Any:
    import audiomentations as am

    # Each talker at the babble's SNR plus 10 log10(talkers) dB, so that the talkers together
    # sit about BABBLE_SNR_DB under the speaker (each is scaled to the mix it joins).
    per = 10 * math.log10(BABBLE_TALKERS)
    return am.Compose([am.AddBackgroundNoise(list(talkers), min_snr_db=BABBLE_SNR_DB[0] + per,
                                             max_snr_db=BABBLE_SNR_DB[1] + per, p=1.0)
                       for _ in range(BABBLE_TALKERS)])


def babble_copy(x: np.ndarray, sr: int, seed: int, talkers: Sequence[Path]) -> np.ndarray:
    """``x`` with three clips drawn from ``talkers`` (other speakers' recordings) talking behind
    it (the same for the same ``seed`` and talkers)."""
    random.seed(seed)  # audiomentations draws from Python's and NumPy's global generators
    np.random.seed(seed % 2**32)
    with warnings.catch_warnings():
        # Corpora are recorded at 16 to 48 kHz: resampling a talker is expected, not news
        # worth a line per file.
        warnings.filterwarnings("ignore", message=".*had to be resampled")
        out = _babble(tuple(sorted(str(t) for t in talkers)))(samples=x.astype(np.float32),
                                                             sample_rate=sr)
    return np.asarray(np.clip(out, -1.0, 1.0), dtype=np.float32)


@functools.lru_cache(maxsize=1)
def _voice() -> Any:
    import audiomentations as am

    return am.Compose([am.PitchShift(min_semitones=SEMITONES[0], max_semitones=SEMITONES[1], p=1.0),
                       am.TimeStretch(min_rate=TEMPO[0], max_rate=TEMPO[1],
                                      leave_length_unchanged=False, p=1.0)])


def voice_copy(x: np.ndarray, sr: int, seed: int) -> np.ndarray:
    """``x`` spoken higher or lower, faster or slower, the two drawn apart (the same for the
    same ``seed``)."""
    random.seed(seed)  # audiomentations draws from Python's and NumPy's global generators
    np.random.seed(seed % 2**32)
    out = _voice()(samples=x.astype(np.float32), sample_rate=sr)
    return np.asarray(np.clip(out, -1.0, 1.0), dtype=np.float32)
