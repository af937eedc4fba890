"""Audio in: reading files, converting sample formats, downmixing and resampling.

Everything that reaches the feature extractor is mono float32 in [-1, 1] at the model's sample
rate; this module is the only place that gets it there, for files (training and replay) and for
live blocks from a microphone alike.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import re
import shlex
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AudioFileError, ConfigError, MissingDependencyError
from ..lifecycle import Closeable
from ..optional import native_path, quiet_native_output
from .kinds import (
    AUDIO_EXTENSIONS,
    FFMPEG_AUDIO_EXTENSIONS,
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    files_in,
)

__all__ = [
    "to_mono_float", "Resampler", "resample", "AudioFileStream", "load_audio", "AUDIO_EXTENSIONS",
    "FFMPEG_AUDIO_EXTENSIONS",
]

logger = logging.getLogger(__name__)

#: Said of a file named "-" that is not there: many tools read standard input from it.
STDIN_HINT = ("; standard input is not read (a recording is read two or three times): save it "
              "to a file and name that")
#: Telling a user how to read the FFmpeg formats.
FFMPEG_HINT = "pip install 'emotion-edge[formats]' (PyAV)"
#: Sample rates of files we read, Hz: 1 kHz to 8x 48 kHz (a header may claim anything).
FILE_RATES = (1_000, 384_000)
#: Largest polyphase filter table a :class:`Resampler` builds, in taps (8 bytes each, 16 MB):
#: every common pair of rates needs far less; a rate ratio like 999983/16000 would need GBs.
MAX_RESAMPLER_TAPS = 1 << 21


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
        if self._up * 2 * self._half > MAX_RESAMPLER_TAPS:
            raise ConfigError(
                f"resampling {from_rate} Hz to {to_rate} Hz needs a "
                f"{self._up * 2 * self._half * 8 >> 20} MB filter; convert the audio to a common "
                f"rate (e.g. 16000, 44100 or 48000 Hz) first")
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


def _reason(exc: BaseException) -> str:
    """A reader's words without its error number or the path again: FFmpeg's "[Errno
    1094995529] Invalid data found when processing input: 'x.m4a'" and libsndfile's "Error
    opening '/abs/x.xyz': Format not recognised." -> their middle."""
    return str(getattr(exc, "strerror", None) or getattr(exc, "error_string", None) or exc)


class _FFmpegFile:
    """PyAV (FFmpeg) behind the same small part of ``soundfile.SoundFile``, for what libsndfile
    does not read: AAC in M4A/MP4 (phones' voice memos), AMR and 3GP (phone calls), WMA, WebM,
    and the sound of a video.  Decodes one packet at a time, so memory stays bounded."""

    def __init__(self, path: Path) -> None:
        from ..optional import import_optional
        av = self._av = import_optional("av", FFMPEG_HINT)
        self.path = path
        # Only local files: FFmpeg recognises a playlist (HLS) by its content, and the URLs it
        # names must never be fetched (FFmpeg's own check blocks most; this blocks them all).
        try:
            with native_path(path) as name:
                self._container = av.open(name, options={"protocol_whitelist": "file"},
                                          metadata_errors="ignore")
        except (av.FFmpegError, UnicodeDecodeError) as exc:
            raise AudioFileError(f"{path}: not a readable audio file ({_reason(exc)})") from None
        try:
            self._open_stream()
        except AudioFileError:
            self._container.close()
            raise
        except (av.FFmpegError, ValueError, TypeError, ZeroDivisionError) as exc:
            self._container.close()  # e.g. a header with no channel layout, or a rate of 0
            raise AudioFileError(f"{path}: not a readable audio file ({_reason(exc)})") from None
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._ended = False

    def _open_stream(self) -> None:
        if not self._container.streams.audio:
            raise AudioFileError(f"{self.path}: has no sound ({self._container.format.name} "
                                 f"with no audio stream)")
        stream = self._container.streams.audio[0]
        if stream.codec_context is None:
            raise AudioFileError(f"{self.path}: FFmpeg has no decoder for its sound")
        self.samplerate = int(stream.rate or stream.codec_context.sample_rate or 0)
        self.channels = int(stream.channels)
        if self.channels < 1:
            raise AudioFileError(f"{self.path}: its audio stream declares no channels")
        # FFmpeg knows a stream's length only from the container's header (an estimate for raw
        # AMR or AAC); 0 would mean "no audio", so an unknown length counts as 1 frame.
        seconds = (float(stream.duration * stream.time_base) if stream.duration
                   else self._container.duration / 1e6 if self._container.duration else 0.0)
        self.frames = max(1, int(round(seconds * self.samplerate)))
        #: Whether the stream's own header gave its length (an MP4's does; a raw AAC or AMR
        #: stream's is estimated from its bit rate).
        self.exact_length = bool(stream.duration)
        # Packed float32 at the stream's own rate and layout; to_mono_float downmixes, as it
        # does for every other reader.
        self._convert = self._av.AudioResampler(format="flt", layout=stream.layout,
                                                rate=self.samplerate)
        self._frames = self._container.decode(stream)

    def read(self, frames: int, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        try:
            while self._pending_n < frames and not self._ended:
                frame = next(self._frames, None)
                for packed in self._convert.resample(frame):  # None flushes the converter
                    a = packed.to_ndarray().reshape(-1, self.channels)
                    self._pending.append(a)
                    self._pending_n += a.shape[0]
                self._ended = frame is None
        except self._av.FFmpegError as exc:
            raise RuntimeError(str(exc)) from None  # AudioFileStream names the file and time
        data = (np.concatenate(self._pending) if self._pending
                else np.zeros((0, self.channels), np.float32))
        out, rest = data[:frames], data[frames:]
        self._pending, self._pending_n = ([rest] if rest.size else []), rest.shape[0]
        return out

    def close(self) -> None:
        self._container.close()


class _WaveFile:
    """The stdlib's WAV reader behind the small part of ``soundfile.SoundFile`` used here (for
    installs without libsndfile)."""

    _DTYPES = {1: np.uint8, 2: np.int16, 4: np.int32}

    def __init__(self, path: Path) -> None:
        self._w = wave.open(str(path), "rb")
        self._width, self.channels = self._w.getsampwidth(), self._w.getnchannels()
        self.samplerate, self.frames = self._w.getframerate(), self._w.getnframes()
        if self._width not in (1, 2, 3, 4):
            self._w.close()
            raise AudioFileError(f"{path}: {8 * self._width}-bit WAV samples are not supported")

    def read(self, frames: int, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        raw = self._w.readframes(frames)
        if self._width == 3:
            b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
            data = ((b[:, 0] | b[:, 1] << 8 | b[:, 2] << 16) << 8).astype(np.int32)  # sign via <<8
        else:
            data = np.frombuffer(raw, self._DTYPES[self._width])
        return to_mono_float(data.reshape(-1, self.channels))[:, None]

    def close(self) -> None:
        self._w.close()


#: Formats whose header gives libsndfile their exact length: FLAC's STREAMINFO.  (For AIFF,
#: AU, CAF or W64 it counts the samples there are, so a cut one cannot be told from the frame
#: count; MP3's is an estimate; Ogg has none to give.)
EXACT_LENGTH_SUFFIXES = frozenset({".flac"})
#: libsndfile's frame count of a file that declares no length (SF_COUNT_MAX, 2**63 - 1).
UNKNOWN_LENGTH = 2**62
#: Sample magnitude past which a float recording's scale is wrong (a float WAV holds -1..1; a
#: little over 1 is clipping a recorder let through, 1e20 is not audio).
OUT_OF_RANGE = 4.0
#: A file may end this share of its promised length early without a word (encoder padding).
SHORT_TOLERANCE = 0.01
#: ... and an MP3 this share: without a Xing header its length is guessed from its size.
MP3_TOLERANCE = 0.05


@functools.lru_cache(maxsize=256)
def _tell(path: str, damage: str) -> None:
    """Warn of a damaged file once: classify reads a file two or three times (its band, what
    the room sounds like, its emotion), and each reading finds the same damage."""
    logger.warning("%s: %s", path, damage)


#: Data sizes from which a WAV header's length is a streaming writer's placeholder.
_UNKNOWN_WAV_SIZE = 0x7FFF0000


#: The largest Ogg page (a 27-byte header, 255 lacing values, 255 segments of 255 bytes).
_OGG_MAX_PAGE = 27 + 255 + 255 * 255


def _ogg_crc(page: bytes) -> int:
    """Ogg's page checksum: CRC-32 of polynomial 0x04C11DB7, unreflected, initial value 0,
    over the page with its checksum field zeroed."""
    crc = 0
    for byte in page[:22] + bytes(4) + page[26:]:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _OGG_CRC_TABLE[(crc >> 24) ^ byte]
    return crc


def _ogg_crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else r << 1
        table.append(r & 0xFFFFFFFF)
    return table


_OGG_CRC_TABLE = _ogg_crc_table()


def _ogg_unterminated(path: Path) -> bool:
    """Whether an Ogg file (Opus, Vorbis, FLAC in Ogg) ends without its end-of-stream mark: cut
    short, or still being written.  Ogg declares no length up front, and both readers quietly
    read what pages there are; but every writer marks the last page of a stream.  So the last
    whole page (its checksum right: the capture pattern also occurs inside pages' data) must
    carry the mark; bytes after it (an ID3 tag some taggers append) do not count.  Only the
    file's last 64 KiB are read."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"OggS":
                return False
            size = f.seek(0, 2)
            f.seek(max(0, size - _OGG_MAX_PAGE))
            tail = f.read()
    except OSError:
        return False  # the reader has said what is wrong with it
    for start in reversed([m.start() for m in re.finditer(b"OggS", tail)]):
        if start + 27 > len(tail):
            continue
        segments = tail[start + 26]
        lacing = tail[start + 27 : start + 27 + segments]
        end = start + 27 + segments + sum(lacing)
        if (len(lacing) == segments and end <= len(tail)
                and _ogg_crc(tail[start:end]) == int.from_bytes(tail[start + 22 : start + 26],
                                                                 "little")):
            return not tail[start + 5] & 0x04  # header_type's end-of-stream flag
    return True  # no whole page at the end: the file stops in the middle of one


def _unfinished_wav(path: Path) -> bool:
    """Whether a RIFF/WAVE file was left as a recorder that stopped (a crash, a power cut)
    before writing the sizes in leaves it: the RIFF size 0 or a placeholder, and a data chunk
    of 0 bytes with bytes after it.  (A finished empty WAV has a true RIFF size, and may have
    other chunks after its empty data.)  The chunks are walked from the start, not searched
    for, so that "data" inside another chunk does not count."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
            size = f.seek(0, 2)
    except OSError:
        return False
    riff = int.from_bytes(head[4:8], "little")
    if riff not in (0, 0xFFFFFFFF) and riff < _UNKNOWN_WAV_SIZE:
        return False
    at = 12  # after "RIFF", its size and "WAVE"
    while at + 8 <= len(head):
        chunk, length = head[at : at + 4], int.from_bytes(head[at + 4 : at + 8], "little")
        if chunk == b"data":
            return length == 0 and size > at + 8
        at += 8 + length + (length & 1)  # chunks are padded to even sizes
    return False


def _declared_wav_frames(path: Path) -> int | None:
    """Frames a RIFF/WAVE header promises (libsndfile silently reads what is there)."""
    try:
        with wave.open(str(path), "rb") as w:
            frames = w.getnframes()
            size = frames * w.getsampwidth() * w.getnchannels()
    except (wave.Error, EOFError, OSError, RuntimeError):
        # WAVE_FORMAT_EXTENSIBLE float, which the stdlib refuses, or an empty data chunk before
        # a LIST chunk, where its chunk reader fails to seek (RuntimeError): trust libsndfile.
        return None
    # A writer that could not seek back (ffmpeg or arecord into a pipe) leaves a placeholder of
    # 0xFFFFFFFF or 0x7FFFFFFF bytes: the length is unknown, not promised.
    return None if size >= _UNKNOWN_WAV_SIZE else frames


class AudioFileStream(Closeable):
    """An audio file as consecutive mono float32 blocks at ``sample_rate``, decoded and resampled
    a block at a time, so memory is bounded by the block, not by the file's length.

    Opening checks the file (missing, empty, truncated, not audio) and raises
    :class:`~edge.errors.AudioFileError` naming it; a fault found later in the file (NaN samples,
    a corrupt stretch) raises the same, with the time.  The blocks, concatenated, are exactly what
    :func:`load_audio` returns.
    """

    def __init__(self, path: str | Path, sample_rate: int | None = 16000, *,
                 block_frames: int = 1 << 14) -> None:
        self.path = Path(path)
        try:
            if self.path.is_dir():
                sounds = (*AUDIO_EXTENSIONS, ".mp3", *FFMPEG_AUDIO_EXTENSIONS)
                raise AudioFileError(f"{self.path}: is a folder, not an audio file; give the "
                                     f"files in it (e.g. {files_in(self.path, sounds)}, or "
                                     f"--files-from LIST)")
            if not self.path.is_file():
                raise AudioFileError(
                    f"{self.path}: not a regular file" if self.path.exists() else
                    f"{self.path}: a symbolic link to nothing (dangling, or a loop)"
                    if self.path.is_symlink() else
                    f"{self.path}: no such file" + STDIN_HINT * (str(self.path) == "-"))
            if self.path.stat().st_size == 0:
                raise AudioFileError(f"{self.path}: file is empty")
            # libsndfile says only "System error" of a file it may not open, and offers a
            # conversion that would fail the same way.
            with open(self.path, "rb"):
                pass
        except OSError as exc:  # permission, a name too long, a folder it may not enter
            raise AudioFileError(f"{self.path}: cannot be read ({exc.strerror or exc})") from None
        self._chatty = False  # a reader that writes to stderr itself (mpg123)
        #: Frames the file's header promises, where it is exact (a WAV's, a container's); a file
        #: that ends short of it was cut or damaged, and is read as far as it goes.
        self._promised: int | None = None
        self._tolerance = SHORT_TOLERANCE  # the share of it a file may lack without a word
        self._file = self._open()
        #: An Ogg file without its end-of-stream mark (Ogg promises no length to compare with).
        self._unterminated = _ogg_unterminated(self.path)
        self.file_rate = int(self._file.samplerate)
        #: Rate of the blocks returned.
        self.sample_rate = self.file_rate if sample_rate is None else int(sample_rate)
        self.block_frames = int(block_frames)
        low, high = FILE_RATES
        try:
            if not low <= self.file_rate <= high:
                raise ConfigError(f"sample rate {self.file_rate} Hz is not supported (use "
                                  f"{low}..{high} Hz)")
            self._resampler = (None if self.sample_rate == self.file_rate
                               else Resampler(self.file_rate, self.sample_rate))
        except ConfigError as exc:
            self._file.close()
            raise AudioFileError(f"{self.path}: {exc}") from None
        self._frames_read = 0
        #: What is wrong with the file past its start (cut short, a damaged stretch), once
        #: found; the audio before it is read all the same.
        self.damage: str | None = None
        #: The largest sample magnitude read so far (a float file's beyond about 1 is not audio).
        self.peak = 0.0
        self._ended = False
        self._pending = np.zeros(0, np.float32)  # output samples read ahead by read(n)
        if self.file_frames == 0:
            self.close()
            raise AudioFileError(f"{self.path}: contains no audio samples")

    def _open(self) -> Any:
        try:
            import soundfile
        except ImportError:  # pragma: no cover - soundfile is an install requirement
            if self.path.suffix.lower() != ".wav":
                raise AudioFileError(f"{self.path}: reading {self.path.suffix} needs soundfile: "
                                     f"pip install soundfile") from None
            try:
                return _WaveFile(self.path)
            except (wave.Error, EOFError) as exc:
                raise AudioFileError(f"{self.path}: not a readable WAV file ({exc})") from None
        try:
            # mpg123 inside libsndfile writes its own notes to stderr ("Trying to resync...",
            # "Xing stream size off"): what matters of them is said below, once, naming the file.
            with quiet_native_output("libsndfile"), native_path(self.path) as name:
                f = soundfile.SoundFile(name)
        except (RuntimeError, soundfile.LibsndfileError, TypeError, ValueError) as exc:
            return self._open_ffmpeg(exc)
        self._chatty = self.path.suffix.lower() == ".mp3"
        if f.frames >= UNKNOWN_LENGTH:
            # A FLAC written into a pipe (arecord | flac -) declares no length; libsndfile then
            # fails on its last second ("psf_fseek() failed"), FFmpeg reads it to the end.
            try:
                stream = _FFmpegFile(self.path)
            except (MissingDependencyError, AudioFileError):
                return f  # read as far as libsndfile goes, with a warning there
            f.close()
            return stream
        if f.frames == 0 and f.format in ("WAV", "WAVEX") and _unfinished_wav(self.path):
            return self._read_unfinished_wav(f)
        if self.path.suffix.lower() == ".wav":
            # libsndfile reads what is there of a cut WAV, and counts only that.
            self._promised = _declared_wav_frames(self.path)
        elif self.path.suffix.lower() in EXACT_LENGTH_SUFFIXES:
            self._promised = int(f.frames)
        elif self._chatty:  # an estimate, exact only with a Xing header: a looser tolerance
            self._promised, self._tolerance = int(f.frames), MP3_TOLERANCE
        return f

    def _read_unfinished_wav(self, f: Any) -> Any:
        """A WAV whose header declares no samples: a recorder that stopped before it wrote the
        sizes in (a crash, a power cut) leaves them 0, with the samples after the header.
        libsndfile believes the header; FFmpeg reads to the end of the file."""
        try:
            stream = _FFmpegFile(self.path)
        except MissingDependencyError:
            f.close()
            raise AudioFileError(
                f"{self.path}: its header declares no samples (a recorder that never finished "
                f"the file?); {FFMPEG_HINT} reads what follows it, or repair it: "
                f"{self._conversion('fixed.wav')}") from None
        except AudioFileError:
            return f  # nothing FFmpeg can read either: "contains no audio samples"
        f.close()
        _tell(str(self.path), "its header declares no samples (a recorder that never finished "
              "the file?); read to the end of the file")
        return stream

    def _open_ffmpeg(self, soundfile_error: Exception) -> _FFmpegFile:
        """The file through FFmpeg, once libsndfile has refused it."""
        # FFmpeg's reason is the better one for these ("has no sound"); libsndfile's is only
        # "format not recognised".
        phone_format = self.path.suffix.lower() in (*FFMPEG_AUDIO_EXTENSIONS, *VIDEO_SUFFIXES)
        try:
            f = _FFmpegFile(self.path)
            self._promised = f.frames if f.exact_length else None
            return f
        except MissingDependencyError:
            if phone_format:
                raise AudioFileError(
                    f"{self.path}: reading {self.path.suffix} needs PyAV: {FFMPEG_HINT}, or "
                    f"convert it first ({self._conversion()})") from None
        except AudioFileError:
            if phone_format:
                raise  # FFmpeg's reason: libsndfile's says only "format not recognised"
        if self.path.suffix.lower() in IMAGE_SUFFIXES:
            raise AudioFileError(f"{self.path}: an image, not a recording; `emotion-edge "
                                 f"classify-face` reads images")
        raise AudioFileError(
            f"{self.path}: not a readable audio file ({_reason(soundfile_error)}); supported: "
            f"WAV, FLAC, OGG, AIFF, MP3, and with PyAV M4A/AAC, AMR, 3GP, WMA, WebM (convert "
            f"others first, e.g. {self._conversion()})") from None

    def _conversion(self, out: str = "out.wav") -> str:
        """The FFmpeg command that rewrites this file as one libsndfile reads, the path quoted
        as the shell needs it."""
        return f"ffmpeg -i {shlex.quote(str(self.path))} {out}"

    @property
    def file_frames(self) -> int:
        """Frames in the file at its own rate, as its header tells."""
        return int(self._file.frames)

    @property
    def duration_s(self) -> float:
        """The length the file declares (an estimate for some formats)."""
        return self.file_frames / self.file_rate

    @property
    def read_s(self) -> float:
        """The length read so far, at the file's own rate: at the end, what the file held."""
        return self._frames_read / self.file_rate

    def _decode(self) -> np.ndarray | None:
        """The next block at :attr:`sample_rate`, or ``None`` at the end."""
        if self._ended:
            return None
        try:
            # mpg123 writes "Trying to resync..." as it reads a damaged MP3.  While a read is
            # quiet, other threads' stderr is too (a replayed MP3 in `run`): a block takes a
            # millisecond or two, and the damage itself is told below, once.
            with quiet_native_output("libsndfile") if self._chatty else contextlib.nullcontext():
                data = self._file.read(self.block_frames, dtype="float32", always_2d=True)
        except (RuntimeError, ValueError) as exc:  # libsndfile on a corrupt stretch
            at = self._frames_read / self.file_rate
            if self._frames_read == 0:
                raise AudioFileError(f"{self.path}: unreadable at {at:.1f} s ({exc})") from None
            # What was read is kept: a recording damaged near its end still says most of what
            # it holds.
            self.damage = f"unreadable from {at:.1f} s ({exc}); only the {at:.1f} s before it used"
            _tell(str(self.path), self.damage)
            data = np.zeros((0, 1), np.float32)
        if data.shape[0] == 0:
            self._ended = True
            if self._frames_read == 0:
                raise AudioFileError(f"{self.path}: contains no audio samples")
            self._check_end()
            return self._resampler.flush() if self._resampler is not None else None
        with np.errstate(over="ignore", invalid="ignore"):  # inf - inf: refused just below
            mono = to_mono_float(data)
        if not np.all(np.isfinite(mono)):
            bad = self._frames_read + int(np.argmin(np.isfinite(mono)))
            raise AudioFileError(f"{self.path}: contains NaN or infinite samples (at "
                                 f"{bad / self.file_rate:.1f} s)")
        if mono.size:
            self.peak = max(self.peak, float(np.max(np.abs(mono))))
        self._frames_read += data.shape[0]
        return mono if self._resampler is None else self._resampler.process(mono)

    def _check_end(self) -> None:
        """At the end: say so when the samples were far out of range (only a float file's can
        be), and when the file ended well short of what its header promised or, in Ogg, without
        its end mark (a recorder that lost power, a copy cut off), once, and only if no damage
        was said before."""
        if self.peak > OUT_OF_RANGE:
            _tell(str(self.path), f"samples reach {self.peak:.3g}, far beyond the +-1 of audio: "
                  "the file's float scale is wrong, so what it is found to hold is unreliable")
        promised = self._promised
        if self.damage is not None:
            return
        if self._unterminated:
            self.damage = (f"ends at {self._frames_read / self.file_rate:.1f} s without the "
                           f"end-of-stream mark every Ogg writer leaves (cut short, damaged, or "
                           f"still being written); what is there is used")
            _tell(str(self.path), self.damage)
        elif promised is None:
            return
        elif promised - self._frames_read > max(self._tolerance * promised, self.file_rate / 2):
            self.damage = (f"ends at {self._frames_read / self.file_rate:.1f} s of the "
                           f"{promised / self.file_rate:.1f} s its header declares (cut short or "
                           f"damaged); what is there is used")
            _tell(str(self.path), self.damage)

    def __iter__(self) -> Iterator[np.ndarray]:
        """The remaining audio, a block at a time (closes the file at the end)."""
        if self._pending.size:
            pending, self._pending = self._pending, np.zeros(0, np.float32)
            yield pending
        while (block := self._decode()) is not None:
            if block.size:
                yield block
        self.close()

    def read(self, n: int) -> np.ndarray:
        """Up to ``n`` samples (fewer only at the end, empty after it)."""
        while self._pending.size < n:
            block = self._decode()
            if block is None:
                break
            self._pending = np.concatenate((self._pending, block))
        out, self._pending = self._pending[:n], self._pending[n:]
        return out

    @property
    def exhausted(self) -> bool:
        return self._ended and self._pending.size == 0

    def _close(self) -> None:
        self._file.close()

    def __repr__(self) -> str:
        return f"<AudioFileStream {self.path.name} {self.file_rate} -> {self.sample_rate} Hz>"


def load_audio(path: str | Path, sample_rate: int | None = 16000) -> np.ndarray:
    """Read a whole audio file as mono float32 at ``sample_rate`` (``None`` keeps the file's rate).

    For training clips and tests; long recordings go through :class:`AudioFileStream`.  Raises
    :class:`AudioFileError` naming the file when it is missing, empty, truncated, not audio or in
    an unsupported format.
    """
    with AudioFileStream(path, sample_rate) as stream:
        blocks = list(stream)
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
