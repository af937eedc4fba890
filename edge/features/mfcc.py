"""MFCC features in NumPy: the one implementation used by training (``convert``) and the device.

The maths follows python_speech_features 0.6 exactly (pre-emphasis, framing with a zero-padded last
frame, power spectrum, triangular mel filterbank, log, orthonormal DCT-II, sinusoidal lifter, log
frame energy in place of c0), so with its parameters the output matches ``python_speech_features.mfcc``
to 1e-6.  It is faster because the filterbank and the DCT-with-lifter matrix are built once per
config, frames are strided views rather than index copies, and the power spectrum skips the sqrt.

:class:`StreamingMfcc` takes audio blocks of any size and returns only the frames that became
complete; fed a whole signal block by block and flushed, it returns exactly :meth:`Mfcc.compute`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import decimal
import functools
import itertools
import math
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from .adapt import feature_space, speech_mask
from .prosody import PROSODY_COLUMNS, StreamingProsody, prosody_frames

__all__ = [
    "MfccConfig",
    "Mfcc",
    "StreamingMfcc",
    "mel_filterbank",
    "normalize_window",
    "normalize_level",
    "pool_window",
    "window_input",
    "frame_dbfs",
]

_EPS = np.finfo(float).eps
_WINDOWS = ("none", "hamming", "hann")
_NORMALIZATIONS = ("none", "cmn", "cmvn")
_POOLINGS: dict[str, tuple[bool, int]] = {
    # mode: (the window's frames kept, rows of statistics after them)
    "none": (True, 0),
    "mean_std": (False, 2),
    "mean_std_delta": (False, 3),
    "frames_mean_std": (True, 2),
    "frames_mean_std_delta": (True, 3),
}


def _round_half_up(x: float) -> int:
    # python_speech_features rounds 0.5 up (decimal), not to even as round() does: 25 ms at
    # 22.05 kHz is 551.25 samples either way, but 12.5 samples must become 13 to match it.
    return int(decimal.Decimal(x).quantize(decimal.Decimal("1"), rounding=decimal.ROUND_HALF_UP))


@dataclasses.dataclass(frozen=True)
class MfccConfig:
    """How audio becomes MFCC frames.  Every model's manifest stores one; the device refuses a
    model whose config differs from its own.

    The defaults are python_speech_features' defaults, except where noted.
    """

    sample_rate: int = 16000
    """Sample rate of the signal, Hz.  Audio at any other rate is resampled first."""
    win_length_s: float = 0.025
    """Analysis window length, seconds."""
    hop_length_s: float = 0.010
    """Step between successive frames, seconds."""
    n_fft: int = 512
    """FFT size, samples; frames shorter than this are zero-padded."""
    n_mels: int = 26
    """Number of triangular mel filters."""
    n_ceps: int = 13
    """Number of cepstral coefficients kept (c0..c{n_ceps-1})."""
    low_hz: float = 0.0
    """Lowest mel band edge, Hz."""
    high_hz: float | None = None
    """Highest mel band edge, Hz; ``None`` means sample_rate / 2."""
    preemphasis: float = 0.97
    """Pre-emphasis coefficient; 0 disables the filter."""
    lifter: int = 22
    """Sinusoidal cepstral lifter parameter; 0 disables liftering."""
    append_energy: bool = True
    """Replace c0 with the log of the frame's total power-spectrum energy."""
    window: str = "none"
    """Analysis window: "none" (python_speech_features' default), "hamming" or "hann"."""
    normalize: str = "none"
    """Per-window normalisation applied by :func:`normalize_window` before the model:
    "none", "cmn" (subtract each coefficient's mean) or "cmvn" (also divide by its std).  It
    covers the cepstra, and the prosody columns only with ``normalize_prosody``."""
    prosody: bool = False
    """Append the 12 prosody and voice-quality columns of :mod:`edge.features.prosody` (pitch,
    voicing, HNR, loudness, spectral slope...) after the cepstra."""
    prosody_step: int = 1
    """Analyse prosody every this many frames and hold each analysis for the frames up to the
    next (1: every frame; 2 halves the prosody's FFTs on the device)."""
    normalize_prosody: bool = False
    """Apply the per-window normalisation to the prosody columns too: their level (microphone
    gain, the speaker's pitch, the channel's spectral tilt) is then taken away per window, as
    the cepstra's is."""
    normalize_level: bool = False
    """Take each window's level away: the level columns (c0 and, with prosody, ``loudness_db``)
    less their mean over the window's speech frames, after standardisation
    (:func:`normalize_level`).  Loudness normalised per window, so a gain the deployment has
    not yet measured (a fresh device, a phone's automatic gain) does not read as shouting or
    whispering; what is left of loudness is how it moves inside the window."""
    pooling: str = "none"
    """What of the window the model sees: "none", every frame; "mean_std", each column's mean and
    standard deviation over the window's speech frames (2 rows; see :func:`pool_window`);
    "mean_std_delta", those and each column's mean absolute change from one speech frame to the
    next (3 rows); "frames_mean_std" and "frames_mean_std_delta", every frame and then those
    rows (for a model with a branch for each)."""
    clip: float = 0.0
    """Standardised values beyond +-``clip`` are set to +-``clip`` (0: none).  Only after a
    deployment's standardisation (:func:`window_input`): rare extreme frames otherwise set the
    int8 input scale, and a model whose input is not normalised per window keeps few levels."""

    def __post_init__(self) -> None:
        # A config also arrives from a model's JSON manifest: check kinds and bounds before any
        # arithmetic (a NaN, an inf or a string would fail deep inside NumPy, or not at all).
        for name, low, top in (("sample_rate", 0, 384_000), ("n_fft", 0, 65_536),
                               ("n_mels", 0, 512), ("n_ceps", 0, 512), ("lifter", 0, 10_000),
                               ("prosody_step", 1, 10)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= top:
                raise ConfigError(f"{name} must be a whole number in {low}..{top}, got {value!r}")
        for name in ("win_length_s", "hop_length_s", "low_hz", "high_hz", "preemphasis"):
            value = getattr(self, name)
            if value is None and name == "high_hz":
                continue
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        if not 0 <= self.preemphasis < 1:
            raise ConfigError(f"preemphasis must be in 0..1 (exclusive), got {self.preemphasis!r}")
        for name in ("append_energy", "prosody", "normalize_prosody", "normalize_level"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.sample_rate <= 0:
            raise ConfigError(f"sample_rate must be positive, got {self.sample_rate!r}")
        if not 0 < self.win_length_s <= 1 or not 0 < self.hop_length_s <= 1:
            raise ConfigError(
                f"win_length_s and hop_length_s must be in (0, 1] seconds, got "
                f"{self.win_length_s!r} and {self.hop_length_s!r}"
            )
        if self.n_fft < self.frame_length:
            raise ConfigError(
                f"n_fft={self.n_fft} is shorter than the {self.frame_length}-sample window; "
                f"use n_fft >= {1 << (self.frame_length - 1).bit_length()}"
            )
        if not 0 < self.n_ceps <= self.n_mels:
            raise ConfigError(f"n_ceps must be in 1..n_mels={self.n_mels}, got {self.n_ceps!r}")
        nyquist = self.sample_rate / 2
        if not 0 <= self.low_hz < (self.high_hz or nyquist) <= nyquist:
            raise ConfigError(
                f"mel band edges must satisfy 0 <= low_hz < high_hz <= {nyquist:g} Hz, got "
                f"low_hz={self.low_hz!r}, high_hz={self.high_hz!r}"
            )
        if self.window not in _WINDOWS:
            raise ConfigError(f"window {self.window!r} is unknown; choose one of {_WINDOWS}")
        if self.normalize not in _NORMALIZATIONS:
            raise ConfigError(
                f"normalize {self.normalize!r} is unknown; choose one of {_NORMALIZATIONS}"
            )
        if (isinstance(self.clip, bool) or not isinstance(self.clip, (int, float))
                or not math.isfinite(self.clip) or not 0 <= self.clip <= 1000):
            raise ConfigError(f"clip must be a number in 0..1000 (0: none), got {self.clip!r}")
        if self.pooling not in _POOLINGS:
            raise ConfigError(f"pooling {self.pooling!r} is unknown; choose one of "
                              f"{tuple(_POOLINGS)}")

    @property
    def top_hz(self) -> float:
        """The upper edge of the mel filters, Hz: ``high_hz``, else the Nyquist frequency.  A
        recording sampled at less than twice this leaves the top filters empty."""
        return self.high_hz or self.sample_rate / 2

    @property
    def frame_length(self) -> int:
        """Window length in samples."""
        return _round_half_up(self.win_length_s * self.sample_rate)

    @property
    def frame_step(self) -> int:
        """Hop in samples."""
        return _round_half_up(self.hop_length_s * self.sample_rate)

    @property
    def n_columns(self) -> int:
        """Columns of a feature frame: the cepstra, then the prosody columns if any."""
        return self.n_ceps + (len(PROSODY_COLUMNS) if self.prosody else 0)

    def input_rows(self, window_frames: int) -> int:
        """Rows of the model's input for a window of ``window_frames`` frames."""
        frames, stats = _POOLINGS[self.pooling]
        return stats + (window_frames if frames else 0)

    @property
    def normalized_columns(self) -> int:
        """Columns the per-window normalisation covers (the first ones)."""
        return self.n_columns if self.normalize_prosody else self.n_ceps

    @property
    def level_columns(self) -> tuple[int, ...]:
        """Columns that move with the signal's gain, in dB or its natural-log equivalent: c0
        (the log energy, or the sum of the log mel bands) and the prosody's loudness.  The
        others are ratios within a frame or changes between frames."""
        loudness = (self.n_ceps + PROSODY_COLUMNS.index("loudness_db"),) if self.prosody else ()
        return (0, *loudness)

    def num_frames(self, n_samples: int) -> int:
        """Frames a signal of ``n_samples`` gives (the last one zero-padded)."""
        if n_samples <= self.frame_length:
            return 1
        return 1 + math.ceil((n_samples - self.frame_length) / self.frame_step)

    #: Settings :func:`window_input` applies to a window after the deployment's standardisation:
    #: they shape the model's input, not the frames a deployment's statistics describe.
    WINDOW_SETTINGS = ("normalize", "normalize_prosody", "normalize_level", "pooling", "clip")

    def frame_settings(self) -> dict[str, Any]:
        """:meth:`to_dict` without :data:`WINDOW_SETTINGS`: what the raw frames depend on."""
        return {k: v for k, v in self.to_dict().items() if k not in self.WINDOW_SETTINGS}

    def statistics_space(self) -> tuple[str, Collection[str]]:
        """The name of the feature space a deployment's statistics of these frames live in
        (:func:`~edge.features.adapt.feature_space`), and the names releases before 2026-12 gave
        it: they named all of a model's settings, so each choice of the window settings had its
        own, and a room's statistics were lost on an upgrade that changed only those.  The
        earlier names are built when first asked for (:class:`_EarlierNames`)."""
        return feature_space(self.frame_settings()), _EarlierNames(self)

    def with_other_window_settings(self) -> list[MfccConfig]:
        """This config with each other choice of :data:`WINDOW_SETTINGS` (``clip``: off, 8 or
        its own): the configs of models that read these same frames."""
        configs = []
        for normalize, prosody, level, pooling, clip in itertools.product(
                _NORMALIZATIONS, (False, True), (False, True), _POOLINGS, {0.0, 8.0, self.clip}):
            with contextlib.suppress(ConfigError):  # a choice this config cannot take
                configs.append(dataclasses.replace(
                    self, normalize=normalize, normalize_prosody=prosody, normalize_level=level,
                    pooling=pooling, clip=clip))
        return configs

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        # Left out when off: the manifest of a model without prosody (or pooling) stays readable
        # by devices older than the option, and its feature caches stay valid.
        for name in ("prosody", "normalize_prosody", "normalize_level"):
            if not d[name]:
                del d[name]
        if d["prosody_step"] == 1:
            del d["prosody_step"]
        if d["pooling"] == "none":
            del d["pooling"]
        if not d["clip"]:
            del d["clip"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MfccConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ConfigError(
                f"unknown MFCC config field(s) {unknown}; allowed: {sorted(fields)}"
            )
        return cls(**dict(d))


class _EarlierNames(Collection[str]):
    """The names releases before 2026-12 gave a config's statistics space
    (:meth:`MfccConfig.statistics_space`), built on first use: about 120 validated configs, a
    few milliseconds on every speech model's open (tens on a Pi Zero), which only a state file
    saved under another name needs."""

    def __init__(self, config: MfccConfig) -> None:
        self._config = config

    @functools.cached_property
    def _names(self) -> frozenset[str]:
        return frozenset(feature_space(c.to_dict())
                         for c in self._config.with_other_window_settings())

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595 * np.log10(1 + np.asarray(hz, dtype=float) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700 * (10 ** (np.asarray(mel, dtype=float) / 2595.0) - 1)


def mel_filterbank(config: MfccConfig) -> np.ndarray:
    """Triangular mel filters as an ``(n_mels, n_fft // 2 + 1)`` array (python_speech_features'
    bin placement, including its ``floor((n_fft + 1) * f / sr)`` rounding)."""
    mels = np.linspace(_hz_to_mel(config.low_hz), _hz_to_mel(config.top_hz), config.n_mels + 2)
    bins = np.floor((config.n_fft + 1) * _mel_to_hz(mels) / config.sample_rate)
    k = np.arange(config.n_fft // 2 + 1, dtype=float)[None, :]
    left, centre, right = bins[:-2, None], bins[1:-1, None], bins[2:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where((k >= left) & (k < centre), (k - left) / (centre - left), 0.0)
        falling = np.where((k >= centre) & (k < right), (right - k) / (right - centre), 0.0)
    return rising + falling


def _dct_lifter_matrix(config: MfccConfig) -> np.ndarray:
    """``(n_mels, n_ceps)`` matrix: orthonormal DCT-II followed by the lifter, in one product."""
    n = config.n_mels
    k = np.arange(config.n_ceps)[None, :]
    m = np.arange(n)[:, None]
    dct = np.sqrt(2.0 / n) * np.cos(np.pi * k * (2 * m + 1) / (2 * n))
    dct[:, 0] = np.sqrt(1.0 / n)
    if config.lifter > 0:
        lift = 1 + (config.lifter / 2.0) * np.sin(np.pi * np.arange(config.n_ceps) / config.lifter)
        dct = dct * lift[None, :]
    return np.asarray(dct, dtype=np.float64)


class Mfcc:
    """Batch MFCC for one :class:`MfccConfig`; matrices are built once, here."""

    def __init__(self, config: MfccConfig | None = None) -> None:
        self.config = config or MfccConfig()
        c = self.config
        self._fb_t = np.ascontiguousarray(mel_filterbank(c).T)
        self._dct = _dct_lifter_matrix(c)
        self._window = {
            "none": None,
            "hamming": np.hamming(c.frame_length),
            "hann": np.hanning(c.frame_length),
        }[c.window]

    @property
    def n_features(self) -> int:
        """Columns of :meth:`compute`'s frames (cepstra, then prosody if configured)."""
        return self.config.n_columns

    def num_frames(self, n_samples: int) -> int:
        """Frames :meth:`compute` returns for ``n_samples`` (the last one zero-padded)."""
        return self.config.num_frames(n_samples)

    def preemphasize(self, signal: np.ndarray, previous: float | None = None) -> np.ndarray:
        """``y[n] = x[n] - a x[n-1]``; the first sample passes unchanged unless ``previous``
        (the last sample of the preceding block) is given."""
        a = self.config.preemphasis
        out = np.empty_like(signal)
        if signal.size == 0:
            return out
        np.multiply(signal[:-1], -a, out=out[1:])
        out[1:] += signal[1:]
        out[0] = signal[0] if previous is None else signal[0] - a * previous
        return out

    def frames_to_mfcc(self, frames: np.ndarray) -> np.ndarray:
        """Pre-emphasised ``(n, frame_length)`` frames -> ``(n, n_ceps)`` MFCCs."""
        if self._window is not None:
            frames = frames * self._window
        spec = np.fft.rfft(frames, self.config.n_fft, axis=1)
        # |X|^2 from the interleaved (re, im) float view: ~3x cheaper than spec.real**2 + ...
        parts = np.square(spec.view(np.float64).reshape(spec.shape[0], -1, 2))
        power = parts[..., 0] + parts[..., 1]
        power *= 1.0 / self.config.n_fft
        mel = power @ self._fb_t
        # log(0) guard exactly as python_speech_features: only exact zeros become eps (clamping
        # tiny positive values too would change near-silent frames by several units).
        mel[mel == 0] = _EPS
        feat = np.log(mel) @ self._dct
        if self.config.append_energy:
            energy = power.sum(axis=1)
            energy[energy == 0] = _EPS
            feat[:, 0] = np.log(energy)
        return np.asarray(feat)

    def compute(self, signal: np.ndarray) -> np.ndarray:
        """Feature frames of a whole mono float signal at ``config.sample_rate``:
        ``(frames, n_columns)``, the MFCCs then (if configured) the prosody columns."""
        x = np.asarray(signal, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError(f"MFCC needs a mono 1-D signal, got shape {x.shape}")
        flen, step = self.config.frame_length, self.config.frame_step
        n = self.num_frames(x.size)
        padded = np.zeros((n - 1) * step + flen)
        padded[: x.size] = self.preemphasize(x)
        frames = np.lib.stride_tricks.sliding_window_view(padded, flen)[::step]
        ceps = self.frames_to_mfcc(frames)
        if not self.config.prosody:
            return ceps
        return np.concatenate((ceps, prosody_frames(x, self.config)), axis=1)

    __call__ = compute

    def __repr__(self) -> str:
        return f"<Mfcc {self.config}>"


class StreamingMfcc:
    """Incremental MFCC: :meth:`process` returns the frames that became complete.

    ``process`` over consecutive blocks followed by :meth:`flush` returns, concatenated, exactly
    what :meth:`Mfcc.compute` returns for the whole signal.  Only the samples of the unfinished
    frame are kept between calls, so the cost per block is proportional to the block.  With
    prosody, a frame is returned once its (longer, centred) prosody window is complete too:
    12 ms later at 16 kHz.
    """

    def __init__(self, config: MfccConfig | None = None, *, mfcc: Mfcc | None = None) -> None:
        self._mfcc = mfcc or Mfcc(config)
        self.config = self._mfcc.config
        self._prosody = StreamingProsody(self.config) if self.config.prosody else None
        self.reset()

    def reset(self) -> None:
        """Forget all audio seen so far."""
        self._pending = np.zeros(0)  # pre-emphasised samples from the next frame's start
        self._last_sample: float | None = None
        self._samples_seen = 0
        self._frames_out = 0
        # Cepstra whose prosody frames are not complete yet (prosody looks further ahead).
        self._held = np.zeros((0, self.config.n_ceps))
        if self._prosody is not None:
            self._prosody.reset()

    @property
    def frames_out(self) -> int:
        """Frames returned since the last reset."""
        return self._frames_out - self._held.shape[0]

    def process(self, block: np.ndarray) -> np.ndarray:
        """Add ``block`` (mono float) and return the newly complete frames, ``(k, n_columns)``."""
        x = np.asarray(block, dtype=np.float64).reshape(-1)
        if x.size:
            emphasized = self._mfcc.preemphasize(x, self._last_sample)
            self._last_sample = float(x[-1])
            self._samples_seen += x.size
            self._pending = np.concatenate((self._pending, emphasized))
        flen, step = self.config.frame_length, self.config.frame_step
        out = np.zeros((0, self.config.n_ceps))
        if self._pending.size >= flen:
            n = 1 + (self._pending.size - flen) // step
            frames = np.lib.stride_tricks.sliding_window_view(self._pending, flen)[: n * step : step]
            out = self._mfcc.frames_to_mfcc(frames)
            self._pending = self._pending[n * step :].copy()
            self._frames_out += n
        return self._with_prosody(out, None if self._prosody is None else self._prosody.process(x))

    def flush(self) -> np.ndarray:
        """Return the zero-padded frames at the end of the signal, as the batch form does, and
        reset."""
        total = self._mfcc.num_frames(self._samples_seen)
        missing = total - self._frames_out
        out = np.zeros((0, self.config.n_ceps))
        if missing > 0:
            flen, step = self.config.frame_length, self.config.frame_step
            padded = np.zeros((missing - 1) * step + flen)
            padded[: self._pending.size] = self._pending[: padded.size]
            frames = np.lib.stride_tricks.sliding_window_view(padded, flen)[::step]
            out = self._mfcc.frames_to_mfcc(frames)
        out = self._with_prosody(out, None if self._prosody is None else self._prosody.flush(total))
        self.reset()
        return out

    def _with_prosody(self, ceps: np.ndarray, prosody: np.ndarray | None) -> np.ndarray:
        """The cepstra whose prosody frames are ready, joined with them; the rest wait."""
        if prosody is None:
            return ceps
        held = np.concatenate((self._held, ceps))
        k = prosody.shape[0]  # prosody never runs ahead of the cepstra
        self._held = held[k:]
        return np.concatenate((held[:k], prosody), axis=1)

    def __repr__(self) -> str:
        return (
            f"<StreamingMfcc frames_out={self._frames_out} pending={self._pending.size} samples>"
        )


def normalize_window(frames: np.ndarray, mode: str, columns: int | None = None) -> np.ndarray:
    """Per-window normalisation of ``(frames, coeffs)`` before the model (see
    :attr:`MfccConfig.normalize`).  Removing the window's mean cancels microphone and channel
    colouring, which is what makes a model trained in a studio usable on a Pi's microphone.
    Only the first ``columns`` (the cepstra; default all) are normalised."""
    if mode == "none":
        return frames
    n = frames.shape[1] if columns is None else columns
    ceps = frames[:, :n]
    out = ceps - ceps.mean(axis=0, keepdims=True)
    if mode == "cmvn":
        out = out / (ceps.std(axis=0, keepdims=True) + 1e-5)
    if n == frames.shape[1]:
        return np.asarray(out)
    return np.concatenate((out, frames[:, n:]), axis=1)


def normalize_level(frames: np.ndarray, level_db: np.ndarray, columns: Sequence[int], *,
                    keep: np.ndarray | None = None) -> np.ndarray:
    """``frames`` with each of ``columns`` less its mean over the speech frames (picked by
    ``level_db`` as :func:`pool_window` picks them, or given as ``keep``, the mask
    :func:`~edge.features.adapt.speech_mask` returns; see :attr:`MfccConfig.normalize_level`)."""
    keep = speech_mask(level_db) if keep is None else keep
    if not keep.any():  # an empty window: nothing to take away
        return frames
    cols = list(columns)
    # Only the level columns are gathered: a copy of the whole window's speech frames cost
    # as much as the rest of this function on the device's every hop.
    level = frames[:, cols][keep].mean(axis=0)
    out = np.array(frames, copy=True)
    out[:, cols] -= level
    return out


def pool_window(frames: np.ndarray, level_db: np.ndarray, mode: str, *,
                keep: np.ndarray | None = None) -> np.ndarray:
    """A window ``(frames, columns)`` as the model sees it (see :attr:`MfccConfig.pooling`);
    ``level_db`` is each frame's level (:func:`frame_dbfs` of the raw c0), which picks the speech
    frames (or ``keep``, the mask :func:`~edge.features.adapt.speech_mask` returns for it): the
    pauses inside a window say how long the speaker paused, not how they sounded.
    The "_delta" modes add how fast each column moves while the speaker speaks (pairs of
    adjacent speech frames; 0 when there is none), which the mean and spread cannot tell: the
    same spread is a slow glide or a rapid flutter."""
    with_frames, stats = _POOLINGS[mode]
    if not stats:
        return frames
    keep = speech_mask(level_db) if keep is None else keep
    speech = frames[keep]
    rows = [speech.mean(axis=0), speech.std(axis=0)]
    if stats == 3:
        both = keep[1:] & keep[:-1]
        step = np.abs(np.diff(frames, axis=0))[both]
        rows.append(step.mean(axis=0) if step.shape[0] else np.zeros(frames.shape[1]))
    pooled = np.stack(rows)
    return np.concatenate((frames, pooled)) if with_frames else pooled


def window_input(raw: np.ndarray, config: MfccConfig,
                 standardize: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Raw ``(window, n_columns)`` feature frames -> the model's float input without its channel
    axis, in the order the device and training both use: standardised (a deployment's
    statistics, :mod:`edge.features.adapt`) and clipped, normalised per window, pooled."""
    x = raw if standardize is None else standardize(raw)
    if standardize is not None and config.clip:
        x = np.clip(x, -config.clip, config.clip)
    level_db = frame_dbfs(raw[:, 0], config)
    keep = speech_mask(level_db)  # once for both steps: its percentile costs ~30 us a window
    if config.normalize_level:
        x = normalize_level(x, level_db, config.level_columns, keep=keep)
    x = normalize_window(x, config.normalize, config.normalized_columns)
    if config.pooling == "none":
        return x
    return pool_window(x, level_db, config.pooling, keep=keep)


def frame_dbfs(log_energy: np.ndarray, config: MfccConfig) -> np.ndarray:
    """Approximate level of each frame in dBFS from its log power-spectrum energy (the c0 that
    ``append_energy`` writes).  By Parseval the half-spectrum energy / n_fft is about half the
    frame's sum of squares, so mean square = 2 * energy / frame_length."""
    return np.asarray((10.0 / np.log(10.0)) * (log_energy + np.log(2.0 / config.frame_length)))
