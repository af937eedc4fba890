"""Prosody and voice-quality frames in NumPy, one per MFCC frame, batch and streaming.

Why: MFCCs describe the spectral envelope (what is said, by whom, through which microphone);
emotion lives as much in *how* it is said: pitch and its movement, loudness, breathiness and
vocal effort.  These are the eGeMAPS-style descriptors (Eyben et al. 2016) that transfer best
across corpora and languages (see the model card).  openSMILE computes them too, but its licence
is non-commercial, so they are computed here, by the same code in training and on the device.

Frame ``i`` is a 40 ms Hann window centred on the centre of MFCC frame ``i``, on the signal as
recorded (no pre-emphasis: pitch and spectral slope need the low frequencies).  Each frame costs
one real FFT and one inverse FFT; every column depends only on the current frame and the previous
one, so :class:`StreamingProsody` needs one frame of state and 12 ms of look-ahead beyond the
MFCC frame (at 16 kHz).

With ``prosody_step`` = k > 1 only every k-th frame (0, k, 2k...) is analysed and held for the
k - 1 frames after it: the FFTs drop k-fold, and jitter, shimmer and flux then compare frames
k hops apart.  The pooled model only reads each column's mean and spread over a 3 s window,
which a 20 ms grid estimates as well as a 10 ms one; a model is trained with the step it runs.

Pitch is Boersma's (1993) normalised autocorrelation: the autocorrelation of the windowed frame
divided by the window's own, the best local maximum between ``F0_MAX`` and ``F0_MIN`` with a small
octave cost favouring shorter lags, refined by parabolic interpolation.  Its height is the voicing
strength ``r``, which also gives the harmonics-to-noise ratio ``10 log10(r / (1 - r))``.

Jitter and shimmer here are *frame-to-frame* (relative change of F0, and change of level in dB,
between consecutive voiced frames), not Praat's cycle-to-cycle measures: at a 10 ms hop they
include fast intonation too.  They are 0 outside voiced runs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Final, Protocol

import numpy as np

__all__ = ["PROSODY_COLUMNS", "Framing", "prosody_frames", "StreamingProsody"]

#: Column names of the prosody frames, in order.
PROSODY_COLUMNS: Final[tuple[str, ...]] = (
    "f0_st",  # F0 in semitones re 27.5 Hz; 0 when unvoiced
    "voicing",  # normalised autocorrelation peak, 0..1
    "hnr_db",  # harmonics-to-noise ratio from the peak, dB (clipped to -10..30)
    "loudness_db",  # frame level, dBFS
    "slope_db_khz",  # spectral slope: linear fit of the dB spectrum over 50-4000 Hz, dB/kHz
    "alpha_ratio_db",  # energy 1-5 kHz over energy 50-1000 Hz, dB
    "hammarberg_db",  # strongest bin 0-2 kHz minus strongest bin 2-5 kHz, dB
    "centroid_khz",  # spectral centroid over 50-7600 Hz, kHz
    "flux_db",  # mean absolute change of the dB spectrum (50-5000 Hz) from the previous frame
    "jitter",  # |F0_t - F0_{t-1}| / F0_t for consecutive voiced frames, else 0
    "shimmer_db",  # |level_t - level_{t-1}| for consecutive voiced frames, else 0
    "voiced",  # 1 when voiced (strength >= threshold and level above the floor), else 0
)

ANALYSIS_S: Final = 0.040
"""Analysis window, seconds: two periods of a 50 Hz voice, the lowest pitch searched."""
F0_MIN: Final = 50.0
F0_MAX: Final = 500.0
VOICING_THRESHOLD: Final = 0.45
"""Voicing strength from which a frame counts as voiced (Praat's default voicing threshold)."""
FLOOR_DBFS: Final = -60.0
"""Frames quieter than this are never voiced (room noise has no pitch worth reporting)."""
OCTAVE_COST: Final = 0.02
"""Strength bonus per octave towards shorter lags, against octave errors (Praat's 0.01/oct is
tuned for a 3-period window; ours is 2 periods, whose peaks at double lags are stronger)."""
_EPS: Final = 1e-12
_CHUNK: Final = 128
"""Frames analysed at once by :func:`prosody_frames` (a size whose buffers fit a CPU cache)."""


class Framing(Protocol):
    """The MFCC framing the prosody frames line up with (:class:`~edge.features.MfccConfig`)."""

    @property
    def sample_rate(self) -> int: ...
    @property
    def frame_length(self) -> int: ...
    @property
    def frame_step(self) -> int: ...
    @property
    def prosody_step(self) -> int: ...
    def num_frames(self, n_samples: int) -> int: ...


@dataclasses.dataclass(frozen=True)
class _Previous:
    """What a frame needs from the one before it (flux, jitter and shimmer)."""

    flux_db: np.ndarray
    f0: float
    level: float
    voiced: bool


class _Analysis:
    """Window, FFT size and band limits for one sample rate and MFCC framing, built once."""

    def __init__(self, sr: int, frame_length: int, frame_step: int) -> None:
        self.hop = frame_step
        self.length = max(int(round(ANALYSIS_S * sr)), frame_length)
        #: Samples before the MFCC frame's start, so both windows share a centre.
        self.left = (self.length - frame_length) // 2
        self.lag_lo = max(2, int(math.floor(sr / F0_MAX)))
        self.lag_hi = min(int(math.ceil(sr / F0_MIN)), self.length // 2)
        # Long enough that the autocorrelation up to lag_hi does not wrap around.
        self.n_fft = 1 << (self.length + self.lag_hi - 1).bit_length()
        self.sr = sr
        self.window = np.hanning(self.length + 2)[1:-1]  # no zero end points
        wspec = np.fft.rfft(self.window, self.n_fft)
        wac = np.fft.irfft(wspec.real**2 + wspec.imag**2, self.n_fft)[: self.lag_hi + 2]
        self.window_ac = wac / wac[0]
        self.lags = np.arange(self.lag_lo, self.lag_hi + 1, dtype=np.float64)
        self.octave_bonus = OCTAVE_COST * np.log2(self.lags * F0_MIN / sr)
        self.freqs = np.fft.rfftfreq(self.n_fft, 1 / sr)
        self.slope_band = self._bins(50, 4000)
        fk = self.freqs[self.slope_band] / 1000.0
        self.slope_weights = (fk - fk.mean()) / np.sum((fk - fk.mean()) ** 2)
        self.low_band, self.high_band = self._bins(50, 1000), self._bins(1000, 5000)
        self.ham_low, self.ham_high = self._bins(0, 2000), self._bins(2000, 5000)
        self.centroid_band = self._bins(50, min(7600, sr / 2))
        self.flux_band = self._bins(50, 5000)
        self.db_bins = max(b.stop for b in (self.slope_band, self.ham_low, self.ham_high,
                                            self.flux_band))

    def _bins(self, lo: float, hi: float) -> slice:
        df = self.sr / self.n_fft
        return slice(int(math.ceil(lo / df)), min(int(math.floor(hi / df)), self.n_fft // 2) + 1)

    def frames(self, frames: np.ndarray, previous: _Previous | None) -> tuple[np.ndarray, _Previous]:
        """``(n, length)`` raw analysis frames -> ``(n, 12)`` features and the state after them."""
        n = frames.shape[0]
        spec = np.fft.rfft(frames * self.window, self.n_fft, axis=1)
        # |X|^2 from the interleaved (re, im) view, as edge.features.mfcc does: cheaper.
        parts = np.square(spec.view(np.float64).reshape(n, -1, 2))
        power = parts[..., 0] + parts[..., 1]

        # Pitch and voicing: Boersma's normalised autocorrelation.
        ac = np.fft.irfft(power, self.n_fft, axis=1)[:, : self.lag_hi + 2]
        r = ac / (ac[:, :1] + _EPS) / self.window_ac
        seg = r[:, self.lag_lo - 1 : self.lag_hi + 2]  # one extra lag each side for the peak test
        a, b, c = seg[:, :-2], seg[:, 1:-1], seg[:, 2:]
        # Only the local maxima are candidates (a few dozen of the ~290 lags), so they alone are
        # refined; the rest stay at -inf for the per-frame argmax.
        rows, cols = np.nonzero((b > a) & (b >= c))
        a, b, c = a[rows, cols], b[rows, cols], c[rows, cols]
        # Every candidate's height and position refined by a parabola through its neighbours,
        # before they are compared: a high voice's peak is narrow, and its value at the nearest
        # whole lag can fall below the (wider) peak an octave down, which would halve F0.
        denom = a - 2 * b + c
        safe = np.where(np.abs(denom) > _EPS, denom, 1.0)
        shift = np.clip(np.where(np.abs(denom) > _EPS, 0.5 * (a - c) / safe, 0.0), -0.5, 0.5)
        height = b - 0.25 * (a - c) * shift
        # A trailing 0 for frames without a candidate (index -1): no shift, no height.
        shift, height = np.append(shift, 0.0), np.append(height, 0.0)
        strength = np.full((n, self.lags.size), -np.inf)
        strength[rows, cols] = height[:-1] - self.octave_bonus[cols]
        best = np.argmax(strength, axis=1)
        # Each frame's best candidate, if it has one: its index among the candidates.
        index = np.full((n, self.lags.size), -1)
        index[rows, cols] = np.arange(rows.size)
        pick = index[np.arange(n), best]
        has_peak = pick >= 0
        lag = self.lags[best] + shift[pick]
        peak = np.clip(height[pick], 0.0, 0.999)

        level = 10 * np.log10(np.mean(frames**2, axis=1) + _EPS)
        voiced = has_peak & (peak >= VOICING_THRESHOLD) & (level > FLOOR_DBFS)
        f0 = np.where(voiced, self.sr / lag, 0.0)
        f0_st = np.where(voiced, 12 * np.log2(np.maximum(f0, 1.0) / 27.5), 0.0)
        hnr = np.clip(10 * np.log10(peak / (1 - peak) + _EPS), -10.0, 30.0)

        # Spectral shape.
        # The dB spectrum only up to the highest band that needs it (the log is costly).
        db = 10 * np.log10(power[:, : self.db_bins] + _EPS)
        slope = db[:, self.slope_band] @ self.slope_weights
        alpha = 10 * np.log10((power[:, self.high_band].sum(1) + _EPS)
                              / (power[:, self.low_band].sum(1) + _EPS))
        hammarberg = db[:, self.ham_low].max(1) - db[:, self.ham_high].max(1)
        p_cent = power[:, self.centroid_band]
        centroid = (p_cent @ self.freqs[self.centroid_band]) / (p_cent.sum(1) + _EPS) / 1000.0

        # Changes from the previous frame (the last one of the previous call when streaming).
        flux_db = db[:, self.flux_band]
        if previous is None:
            prev_db, prev_f0, prev_level, prev_voiced = flux_db[:1], f0[:1], level[:1], voiced[:1]
        else:
            prev_db = previous.flux_db[None, :]
            prev_f0, prev_level = np.array([previous.f0]), np.array([previous.level])
            prev_voiced = np.array([previous.voiced])
        all_db = np.concatenate((prev_db, flux_db))
        flux = np.abs(np.diff(all_db, axis=0)).mean(axis=1)
        both = voiced & np.concatenate((prev_voiced, voiced[:-1]))
        all_f0 = np.concatenate((prev_f0, f0))
        all_level = np.concatenate((prev_level, level))
        jitter = np.where(both, np.abs(np.diff(all_f0)) / np.maximum(f0, 1.0), 0.0)
        shimmer = np.where(both, np.abs(np.diff(all_level)), 0.0)

        out = np.stack([f0_st, peak, hnr, level, slope, alpha, hammarberg, centroid, flux,
                        jitter, shimmer, voiced.astype(np.float64)], axis=1)
        state = _Previous(flux_db[-1].copy(), float(f0[-1]), float(level[-1]), bool(voiced[-1]))
        return out, state


@functools.lru_cache(maxsize=8)
def _analysis(sample_rate: int, frame_length: int, frame_step: int) -> _Analysis:
    """The analysis for one framing, built once (window, its autocorrelation, band limits), as
    :class:`~edge.features.Mfcc` builds its matrices once."""
    return _Analysis(sample_rate, frame_length, frame_step)


def _analysis_of(config: Framing) -> _Analysis:
    return _analysis(config.sample_rate, config.frame_length, config.frame_step)


def prosody_frames(signal: np.ndarray, config: Framing) -> np.ndarray:
    """``(n_frames, 12)`` prosody frames of a mono float signal at ``config.sample_rate``.

    ``n_frames`` is the MFCC frame count for the same signal (the last frame zero-padded), so row
    ``i`` lines up with MFCC frame ``i``.
    """
    x = np.asarray(signal, dtype=np.float64).reshape(-1)
    an = _analysis_of(config)
    n = config.num_frames(x.size)
    padded = np.zeros(an.left + (n - 1) * an.hop + an.length)
    padded[an.left : an.left + x.size] = x
    step = config.prosody_step
    frames = np.lib.stride_tricks.sliding_window_view(padded, an.length)[:: an.hop * step]
    frames = frames[: -(-n // step)]
    # _CHUNK frames at a time, each chunk continuing from the last: the same rows, but the FFT
    # buffers stay in the CPU's cache (a whole clip at once is 6x slower per frame).
    parts, previous = [], None
    for i in range(0, frames.shape[0], _CHUNK):
        rows, previous = an.frames(frames[i : i + _CHUNK], previous)
        parts.append(rows)
    rows = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return rows if step == 1 else np.repeat(rows, step, axis=0)[:n]


class StreamingProsody:
    """Incremental :func:`prosody_frames`: :meth:`process` returns the frames that became
    complete, :meth:`flush` the rest; concatenated they equal the batch form.

    Only the samples of unfinished frames and one frame of state are kept between calls.
    """

    def __init__(self, config: Framing) -> None:
        self.config = config
        self._an = _analysis_of(config)
        self._step = config.prosody_step
        self.reset()

    def reset(self) -> None:
        """Forget all audio seen so far."""
        # The first analysis window starts ``left`` samples before the signal: zeros.
        self._pending = np.zeros(self._an.left)
        self._previous: _Previous | None = None
        self._last: np.ndarray | None = None  # the last analysed frame, held (prosody_step > 1)
        self._frames_out = 0

    def process(self, block: np.ndarray) -> np.ndarray:
        """Add mono float audio; return the newly complete frames, ``(k, 12)``."""
        x = np.asarray(block, dtype=np.float64).reshape(-1)
        if x.size:
            self._pending = np.concatenate((self._pending, x))
        return self._emit(self._ready(self._pending.size))

    def flush(self, total_frames: int) -> np.ndarray:
        """End of the signal: the frames up to ``total_frames`` (the MFCC frame count of the
        whole signal), zero-padded as the batch form pads them; then reset."""
        missing = total_frames - self._frames_out
        out = np.zeros((0, len(PROSODY_COLUMNS)))
        if missing > 0:
            need = (missing - 1) * self._an.hop + self._an.length
            if self._pending.size < need:
                self._pending = np.concatenate((self._pending, np.zeros(need - self._pending.size)))
            out = self._emit(missing)
        self.reset()
        return out

    def _ready(self, available: int) -> int:
        if available < self._an.length:
            return 0
        return 1 + (available - self._an.length) // self._an.hop

    def _emit(self, n: int) -> np.ndarray:
        if n == 0:
            return np.zeros((0, len(PROSODY_COLUMNS)))
        an, step = self._an, self._step
        # The frames to analyse are those whose absolute index is a multiple of the step; the
        # first of them is ``start`` frames into this call (all of them when step is 1).
        start = -self._frames_out % step
        frames = np.lib.stride_tricks.sliding_window_view(self._pending, an.length)[
            start * an.hop : n * an.hop : step * an.hop]
        out = np.empty((n, len(PROSODY_COLUMNS)))
        if start:  # frames held from the previous call's last analysis
            out[: min(start, n)] = self._last
        if frames.shape[0]:
            rows, self._previous = an.frames(frames, self._previous)
            out[start:] = np.repeat(rows, step, axis=0)[: n - start]
            self._last = rows[-1]
        self._pending = self._pending[n * an.hop :].copy()
        self._frames_out += n
        return out

    def __repr__(self) -> str:
        return f"<StreamingProsody frames_out={self._frames_out} pending={self._pending.size} samples>"
