"""The formant screen's estimates (scripts/speech_formant_screen.py), on vowels of known
formants."""

from __future__ import annotations

import numpy as np
import pytest

from edge.features import MfccConfig

from .script_loader import load_script


def vowel(formants: tuple[float, ...], f0: float = 120.0, sr: int = 16000, seconds: float = 1.0,
          ) -> np.ndarray:
    """A pulse train at ``f0`` through one resonator per formant (bandwidths 80-120 Hz)."""
    from scipy.signal import lfilter

    x = np.zeros(int(sr * seconds))
    x[:: int(sr / f0)] = 1.0
    for f, b in zip(formants, (80.0, 90.0, 120.0)):
        r, theta = np.exp(-np.pi * b / sr), 2 * np.pi * f / sr
        x = lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x)
    x = lfilter([1], [1, -0.95], x)  # the glottal source's fall-off
    x = 0.5 * x / np.abs(x).max()
    return x + 1e-3 * np.random.default_rng(0).standard_normal(x.size)


@pytest.mark.parametrize("formants", [(700.0, 1220.0, 2600.0), (300.0, 2300.0, 3000.0),
                                      (500.0, 900.0, 2400.0)])
def test_the_formants_of_a_vowel_are_found(formants):
    screen = load_script("speech_formant_screen")
    cfg = MfccConfig()
    x = vowel(formants)
    tracks = screen.formant_frames(x, cfg)
    assert tracks.shape == (cfg.num_frames(x.size), 6)
    found = np.nanmedian(tracks[5:-5, :3], axis=0) * 1000
    # A low F1 between two harmonics is pulled toward one (LPC's bias: 336 Hz for 300 at a
    # 120 Hz pitch); F2 and F3 are within 5%.
    error = np.abs(found / np.array(formants) - 1)
    assert np.all(error < [0.15, 0.05, 0.05]), found
    bandwidths = np.exp(np.nanmedian(tracks[5:-5, 3:], axis=0))
    # F1's and F2's resonators are 80 and 90 Hz wide; F3's estimate is rougher (up to 420 Hz
    # for 120), so it is not checked.
    assert np.all(bandwidths[:2] < 200), bandwidths


def test_silence_has_no_formants_and_pools_to_zero():
    screen = load_script("speech_formant_screen")
    cfg = MfccConfig()
    tracks = screen.formant_frames(np.zeros(16000), cfg)
    assert np.isnan(tracks).all()
    pooled = screen.pooled_formants(tracks, np.ones(tracks.shape[0], bool))
    assert pooled.shape == (3, 6) and not pooled.any()
