"""Test channels: an unseen corpus heard the way the model will also be judged, not as recorded.

Why: every corpus here was recorded on a good microphone, and the model is also judged on phone
recordings; the leave-one-corpus-out protocol can score each unseen corpus a second time through
a channel (``evaluate.channels``), with the same fold's model, so a training choice is seen on
both.  A channel is fixed (no randomness: the same clip always sounds the same), and it is not
one of the training copies (``convert.speech.augment``), so a model that learned those copies is
not scored on its own training distribution.

- ``telephone``: a narrowband call, as ITU-T G.711 carries it: the 300-3400 Hz voice band, 8 kHz
  sampling and 8-bit mu-law companding, then back to the features' rate.  The harshest of the
  phone conditions (a phone's own recording is wideband), and the one a room's standardisation
  cannot undo: the band above 3.4 kHz is gone, not just quieter.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["CHANNELS", "mu_law", "telephone"]

VOICE_BAND_HZ = (300.0, 3400.0)
CALL_RATE = 8000
MU = 255.0


def mu_law(x: np.ndarray) -> np.ndarray:
    """``x`` (full scale +-1) through G.711's 8-bit mu-law: compressed, quantised to 256 levels,
    expanded.  Quiet speech keeps its relative precision, as in a call; clipped at full scale."""
    x = np.clip(x, -1.0, 1.0)
    compressed = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    code = np.round((compressed + 1.0) * 127.5)  # 0..255
    y = code / 127.5 - 1.0
    return np.sign(y) * np.expm1(np.abs(y) * np.log1p(MU)) / MU


def telephone(x: np.ndarray, sr: int) -> np.ndarray:
    """``x`` (mono, ``sr`` Hz) as heard at the far end of a narrowband call, at ``sr`` again
    and of the same length."""
    from math import gcd

    from scipy.signal import butter, resample_poly, sosfiltfilt

    if x.size < 2:
        return np.zeros(x.size, np.float32)
    # Zero-phase, so the band limit delays nothing against the clean clip; a clip shorter than
    # the filter's default edge padding is padded less.
    band = butter(6, VOICE_BAND_HZ, btype="bandpass", fs=sr, output="sos")
    y = sosfiltfilt(band, x.astype(np.float64), padlen=min(3 * (2 * len(band) + 1), x.size - 1))
    g = gcd(sr, CALL_RATE)
    call = mu_law(resample_poly(y, CALL_RATE // g, sr // g))
    back = resample_poly(call, sr // g, CALL_RATE // g)[: x.size]
    return np.pad(back, (0, x.size - back.size)).astype(np.float32)


CHANNELS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {"telephone": telephone}
"""The channels ``evaluate.channels`` may name."""
