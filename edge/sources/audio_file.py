"""Audio in: reading files, converting sample formats, downmixing and resampling.

Everything that reaches the feature extractor is mono float32 in [-1, 1] at the model's sample
rate; this module is the only place that gets it there, for files (training and replay) and for
live blocks from a microphone alike.
"""

from __future__ import annotations

import logging
import math
import wave
from pathlib import Path

import numpy as np

from ..errors import AudioFileError, ConfigError

__all__ = ["to_mono_float", "Resampler", "resample", "load_audio", "AUDIO_EXTENSIONS"]

logger = logging.getLogger(__name__)

#: File types ``load_audio`` reads (with soundfile; WAV also without it).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif")


def to_mono_float(data: np.ndarray) -> np.ndarray:
    """Integer PCM or float samples, ``(n,)`` or ``(n, channels)`` -> mono float32 in [-1, 1].

    Integer input is scaled by its type's full scale (int16 -> /32768); channels are averaged.
    """
    a = np.asarray(data)
    if a.dtype.kind in "iu":
        info = np.iinfo(a.dtype)
        # Unsigned PCM (8-bit WAV) is centred on mid-scale.
        offset = (int(info.max) + 1) // 2 if a.dtype.kind == "u" else 0
        a = (a.astype(np.float32) - offset) / float(max(-int(info.min), offset, 1))
    elif a.dtype.kind == "f":
        a = a.astype(np.float32, copy=False)
    else:
        raise ValueError(f"audio samples must be integer or float, got dtype {a.dtype}")
    if a.ndim == 2:
        a = a.mean(axis=1, dtype=np.float32)
    elif a.ndim != 1:
        raise ValueError(f"audio must be (samples,) or (samples, channels), got shape {a.shape}")
    return a


class Resampler:
    """Band-limited rational resampling (Kaiser-windowed sinc, polyphase), batch or streaming.

    Feed consecutive blocks to :meth:`process` and call :meth:`flush` at the end: the result equals
    :func:`resample` on the whole signal.  ``half_width`` input samples either side contribute to
    each output sample (at the lower of the two rates); 16 gives >60 dB stop-band, far below the
    noise floor of any microphone we use.
    """

    def __init__(self, from_rate: int, to_rate: int, *, half_width: int = 16) -> None:
        if from_rate <= 0 or to_rate <= 0:
            raise ConfigError(f"sample rates must be positive, got {from_rate} -> {to_rate}")
        g = math.gcd(int(from_rate), int(to_rate))
        self.from_rate, self.to_rate = int(from_rate), int(to_rate)
        self._up, self._down = self.to_rate // g, self.from_rate // g
        cutoff = min(1.0, self._up / self._down)  # fraction of the input Nyquist kept
        # Widen the kernel when decimating so the anti-alias filter keeps its length in output
        # samples.
        self._half = int(math.ceil(half_width / cutoff))
        offsets = np.arange(-self._half + 1, self._half + 1)  # input taps around floor(t)
        phases = np.arange(self._up) / self._up  # fractional position of t
        d = offsets[None, :] - phases[:, None]
        beta = 8.6
        window = np.kaiser(2 * self._half + 1, beta)
        w = np.interp(d, np.arange(-self._half, self._half + 1), window)
        self._table = (cutoff * np.sinc(cutoff * d) * w).astype(np.float64)  # (up, taps)
        self.reset()

    def reset(self) -> None:
        # Input is conceptually preceded by zeros; keep them so the first outputs need no branch.
        self._buf = np.zeros(self._half - 1 + 1)  # holds samples from absolute index _buf_start
        self._buf_start = -(self._half - 1) - 1
        self._n_in = 0
        self._k = 0  # next output index

    @property
    def identity(self) -> bool:
        return self._up == self._down

    def _emit(self, k_end: int) -> np.ndarray:
        if k_end <= self._k:
            return np.zeros(0, dtype=np.float32)
        ks = np.arange(self._k, k_end)
        base = (ks * self._down) // self._up  # floor of input position
        phase = (ks * self._down) % self._up
        idx = (base - self._buf_start)[:, None] + np.arange(-self._half + 1, self._half + 1)
        out = np.einsum("ij,ij->i", self._buf[idx], self._table[phase])
        self._k = k_end
        # Drop input no longer needed by the next output.
        keep_from = (self._k * self._down) // self._up - self._half + 1
        drop = keep_from - self._buf_start
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start += drop
        return np.asarray(out, dtype=np.float32)

    def process(self, block: np.ndarray) -> np.ndarray:
        """Add mono float samples; return the output samples that became computable."""
        x = np.asarray(block, dtype=np.float64).reshape(-1)
        if self.identity:
            self._n_in += x.size
            return x.astype(np.float32)
        self._buf = np.concatenate((self._buf, x))
        self._n_in += x.size
        # Output k needs input up to floor(k*down/up) + half.
        last_in = self._n_in - 1
        k_end = ((last_in - self._half) * self._up) // self._down + 1
        return self._emit(max(k_end, self._k))

    def flush(self) -> np.ndarray:
        """Return the remaining output (input is zero-padded past its end) and reset."""
        if self.identity:
            self.reset()
            return np.zeros(0, dtype=np.float32)
        total = -(-self._n_in * self._up // self._down)  # ceil
        self._buf = np.concatenate((self._buf, np.zeros(self._half + 1)))
        out = self._emit(total)
        self.reset()
        return out

    def __repr__(self) -> str:
        return f"<Resampler {self.from_rate} -> {self.to_rate} Hz>"


def resample(x: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample a whole mono signal; ``len(out) == ceil(len(x) * to_rate / from_rate)``."""
    if from_rate == to_rate:
        return np.asarray(x, dtype=np.float32)
    r = Resampler(from_rate, to_rate)
    return np.concatenate((r.process(x), r.flush()))


def _read_wav_stdlib(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        width, channels, rate, n = w.getsampwidth(), w.getnchannels(), w.getframerate(), w.getnframes()
        raw = w.readframes(n)
    if len(raw) < n * width * channels:
        raise AudioFileError(
            f"{path}: truncated WAV ({len(raw) // max(width * channels, 1)} of {n} frames present)"
        )
    if width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        data = (b[:, 0].astype(np.int32) | b[:, 1].astype(np.int32) << 8 | b[:, 2].astype(np.int32) << 16)
        data = ((data << 8) >> 8).astype(np.int32) << 8  # sign-extend, scale to int32
    else:
        dtypes = {1: np.uint8, 2: np.int16, 4: np.int32}
        if width not in dtypes:
            raise AudioFileError(f"{path}: {8 * width}-bit WAV samples are not supported")
        data = np.frombuffer(raw, dtypes[width])
    return data.reshape(-1, channels), rate


def _declared_wav_frames(path: Path) -> int | None:
    """Frames a RIFF/WAVE header promises (libsndfile silently reads what is there)."""
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes()
    except (wave.Error, EOFError, OSError):
        return None  # e.g. WAVE_FORMAT_EXTENSIBLE float, which the stdlib refuses; trust libsndfile


def load_audio(path: str | Path, sample_rate: int | None = 16000) -> np.ndarray:
    """Read an audio file as mono float32 at ``sample_rate`` (``None`` keeps the file's rate).

    Raises :class:`AudioFileError` naming the file when it is missing, empty, truncated, not
    audio or in an unsupported format.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioFileError(f"{path}: file is empty")
    try:
        import soundfile
    except ImportError:  # pragma: no cover - soundfile is an install requirement
        soundfile = None
    if soundfile is not None:
        try:
            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except (RuntimeError, soundfile.LibsndfileError, TypeError, ValueError) as exc:
            raise AudioFileError(
                f"{path}: not a readable audio file ({exc}); supported: WAV, FLAC, OGG, AIFF"
            ) from None
        if path.suffix.lower() == ".wav":
            declared = _declared_wav_frames(path)
            if declared is not None and declared > data.shape[0]:
                raise AudioFileError(
                    f"{path}: truncated WAV ({data.shape[0]} of {declared} frames present)"
                )
    elif path.suffix.lower() == ".wav":
        try:
            data, rate = _read_wav_stdlib(path)
        except (wave.Error, EOFError) as exc:
            raise AudioFileError(f"{path}: not a readable WAV file ({exc})") from None
    else:
        raise AudioFileError(f"{path}: reading {path.suffix} needs soundfile: pip install soundfile")
    if data.shape[0] == 0:
        raise AudioFileError(f"{path}: contains no audio samples")
    mono = to_mono_float(data)
    if not np.all(np.isfinite(mono)):
        raise AudioFileError(f"{path}: contains NaN or infinite samples")
    if sample_rate is not None and rate != sample_rate:
        logger.debug("resampling %s from %d to %d Hz", path, rate, sample_rate)
        mono = resample(mono, rate, sample_rate)
    return mono
