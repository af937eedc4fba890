"""Audio sources: a live PyAudio microphone and file replay, behind one small interface.

Every source delivers mono float32 blocks at the requested sample rate through
``read(timeout_s)``; ``None`` means nothing arrived in time (check :attr:`exhausted` for the end of
a file).  Sources are context managers; ``close()`` is idempotent.

The microphone adapter runs PyAudio in callback mode: the callback only copies the block into a
bounded ring buffer and never raises (PortAudio calls it on its own real-time thread); when the
consumer falls behind, the oldest block is dropped and counted.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .audio import Resampler, load_audio, to_mono_float
from .errors import ConfigError, DeviceUnavailableError, MissingDependencyError

__all__ = ["AudioSource", "FileAudioSource", "PyAudioSource", "open_audio_source"]

logger = logging.getLogger(__name__)


class AudioSource(Protocol):
    sample_rate: int

    def start(self) -> None: ...
    def read(self, timeout_s: float | None = None) -> np.ndarray | None: ...
    def close(self) -> None: ...
    @property
    def exhausted(self) -> bool: ...
    @property
    def overflows(self) -> int: ...
    @property
    def dropped_blocks(self) -> int: ...


class _SourceBase:
    sample_rate: int

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def overflows(self) -> int:
        return 0

    @property
    def dropped_blocks(self) -> int:
        return 0

    @property
    def exhausted(self) -> bool:
        return False


class FileAudioSource(_SourceBase):
    """Replays a WAV/FLAC file as blocks, paced in real time or as fast as it is read.

    The file is decoded and resampled once at :meth:`start`; bad files raise
    :class:`~edge.errors.AudioFileError` there, naming the file.
    """

    def __init__(
        self,
        path: str | Path,
        sample_rate: int = 16000,
        block_s: float = 0.1,
        *,
        realtime: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if block_s <= 0:
            raise ConfigError(f"block_s must be positive, got {block_s!r}")
        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        self.block = max(1, int(round(block_s * sample_rate)))
        self.realtime = realtime
        self._clock, self._sleep = clock, sleep
        self._signal: np.ndarray | None = None
        self._pos = 0
        self._t0 = 0.0
        self._closed = False

    def start(self) -> None:
        if self._signal is None:
            self._signal = load_audio(self.path, self.sample_rate)
            self._t0 = self._clock()

    @property
    def duration_s(self) -> float:
        self.start()
        assert self._signal is not None
        return self._signal.size / self.sample_rate

    @property
    def exhausted(self) -> bool:
        return self._signal is not None and self._pos >= self._signal.size

    def read(self, timeout_s: float | None = None) -> np.ndarray | None:
        if self._closed:
            return None
        self.start()
        assert self._signal is not None
        if self._pos >= self._signal.size:
            return None
        end = min(self._pos + self.block, self._signal.size)
        if self.realtime:
            # A block is available once its last sample would have been captured.
            due = self._t0 + end / self.sample_rate
            wait = due - self._clock()
            if timeout_s is not None and wait > timeout_s:
                self._sleep(max(timeout_s, 0.0))
                return None
            if wait > 0:
                self._sleep(wait)
        block = self._signal[self._pos : end]
        self._pos = end
        return block

    def close(self) -> None:
        self._closed = True
        self._signal = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"at {self._pos / self.sample_rate:.1f}s"
        return f"<FileAudioSource {self.path.name} {state}>"


def _import_pyaudio() -> Any:
    try:
        import pyaudio
    except ImportError as exc:
        raise MissingDependencyError(
            f"the microphone needs PyAudio ({exc}): sudo apt install portaudio19-dev, then "
            f"pip install 'emotion-edge[mic]'"
        ) from None
    return pyaudio


class PyAudioSource(_SourceBase):
    """Live capture through PortAudio (ALSA on a Pi).

    ``device`` is a substring of the input device's name (case-insensitive), an index, or
    ``None`` for the default (``EMOTION_EDGE_MIC`` is used when set).  The device is opened at
    ``sample_rate`` when it supports it, else at its own default rate with resampling here.
    """

    def __init__(
        self,
        device: str | int | None = None,
        sample_rate: int = 16000,
        block_s: float = 0.1,
        *,
        buffer_s: float = 4.0,
        pyaudio_module: Any = None,
    ) -> None:
        if block_s <= 0 or buffer_s < block_s:
            raise ConfigError(
                f"need 0 < block_s <= buffer_s, got block_s={block_s!r}, buffer_s={buffer_s!r}"
            )
        self.device = device if device is not None else os.environ.get("EMOTION_EDGE_MIC") or None
        self.sample_rate = int(sample_rate)
        self.block_s = block_s
        self._max_blocks = max(1, int(round(buffer_s / block_s)))
        self._ring: collections.deque[np.ndarray] = collections.deque()
        self._cond = threading.Condition()
        self._overflows = 0
        self._dropped = 0
        self._callback_errors = 0
        self._underruns = 0
        self._pa_module = pyaudio_module
        self._pa: Any = None
        self._stream: Any = None
        self._resampler: Resampler | None = None
        self.device_name: str | None = None
        self.device_rate: int | None = None

    # -- device selection -------------------------------------------------------------------
    def _input_devices(self) -> list[dict[str, Any]]:
        devs = []
        for i in range(self._pa.get_device_count()):
            info = self._pa.get_device_info_by_index(i)
            if int(info.get("maxInputChannels", 0)) > 0:
                devs.append(info)
        return devs

    def _choose_device(self) -> dict[str, Any]:
        devices = self._input_devices()
        names = ", ".join(f"{d['index']}: {d['name']}" for d in devices) or "none"
        if not devices:
            raise DeviceUnavailableError(
                "no audio input device found; plug in a USB microphone and check `arecord -l` "
                "(the service user needs the 'audio' group)"
            )
        if self.device is None:
            try:
                return self._pa.get_default_input_device_info()
            except (OSError, IOError):
                return devices[0]
        if isinstance(self.device, int) or str(self.device).isdigit():
            idx = int(self.device)
            for d in devices:
                if int(d["index"]) == idx:
                    return d
            raise DeviceUnavailableError(f"no input device with index {idx}; inputs: {names}")
        matches = [d for d in devices if str(self.device).lower() in str(d["name"]).lower()]
        if not matches:
            raise DeviceUnavailableError(
                f"no input device name contains {self.device!r}; inputs: {names}"
            )
        return matches[0]

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._stream is not None:
            return
        pyaudio = self._pa_module or _import_pyaudio()
        self._pa_module = pyaudio
        self._pa = pyaudio.PyAudio()
        try:
            info = self._choose_device()
            index = int(info["index"])
            rate = self.sample_rate
            try:
                ok = self._pa.is_format_supported(
                    rate, input_device=index, input_channels=1, input_format=pyaudio.paInt16
                )
            except ValueError:
                ok = False
            if not ok:
                rate = int(info.get("defaultSampleRate", 48000))
                self._resampler = Resampler(rate, self.sample_rate)
            self.device_name, self.device_rate = str(info["name"]), rate
            self._stream = self._pa.open(
                format=pyaudio.paInt16,
                channels=1,
                rate=rate,
                input=True,
                input_device_index=index,
                frames_per_buffer=max(1, int(round(self.block_s * rate))),
                stream_callback=self._callback,
            )
            self._stream.start_stream()
        except OSError as exc:
            self.close()
            raise DeviceUnavailableError(
                f"cannot open microphone {self.device or 'default'!r} ({exc}); check `arecord -l` "
                f"and that no other program holds the device"
            ) from None
        except BaseException:
            self.close()
            raise
        logger.info("microphone %r open at %d Hz (model rate %d Hz)", self.device_name, rate,
                    self.sample_rate)

    def _callback(self, in_data: bytes | None, frame_count: int, time_info: Any, status: int):
        # PortAudio's real-time thread: copy, count, never raise, never block for long.
        try:
            if status & getattr(self._pa_module, "paInputOverflow", 2):
                self._overflows += 1
            if in_data:
                block = np.frombuffer(in_data, dtype=np.int16).copy()
                with self._cond:
                    if len(self._ring) >= self._max_blocks:
                        self._ring.popleft()
                        self._dropped += 1
                    self._ring.append(block)
                    self._cond.notify()
        except Exception:  # noqa: BLE001 - a raise here would kill the stream silently
            self._callback_errors += 1
        return (None, getattr(self._pa_module, "paContinue", 0))

    def read(self, timeout_s: float | None = None) -> np.ndarray | None:
        with self._cond:
            if not self._ring and not self._cond.wait_for(lambda: bool(self._ring), timeout_s):
                self._underruns += 1
                return None
            raw = self._ring.popleft()
        x = to_mono_float(raw)
        if self._resampler is not None:
            x = self._resampler.process(x)
        return x

    @property
    def overflows(self) -> int:
        """Blocks PortAudio reported as overflowed (the device had no room: samples lost)."""
        return self._overflows

    @property
    def dropped_blocks(self) -> int:
        """Blocks dropped from the ring buffer because the reader fell behind."""
        return self._dropped

    @property
    def underruns(self) -> int:
        """Reads that timed out with no audio (a stalled or unplugged microphone)."""
        return self._underruns

    @property
    def callback_errors(self) -> int:
        return self._callback_errors

    @property
    def active(self) -> bool:
        return self._stream is not None and bool(self._stream.is_active())

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop_stream()
                stream.close()
            except OSError as exc:  # the device may already be gone
                logger.debug("closing microphone stream: %s", exc)
        pa, self._pa = self._pa, None
        if pa is not None:
            pa.terminate()

    def __repr__(self) -> str:
        state = "open" if self._stream is not None else "closed"
        return (f"<PyAudioSource {self.device_name or self.device or 'default'!r} {state} "
                f"overflows={self._overflows} dropped={self._dropped}>")


def open_audio_source(
    kind: str | None = None, *, path: str | Path | None = None, device: str | int | None = None,
    sample_rate: int = 16000, block_s: float = 0.1, realtime: bool = True,
) -> FileAudioSource | PyAudioSource:
    """Choose a source by argument, then ``EMOTION_EDGE_AUDIO_SOURCE`` ("file" or "pyaudio"),
    then "file" when a path is given, else the microphone."""
    kind = kind or os.environ.get("EMOTION_EDGE_AUDIO_SOURCE") or ("file" if path else "pyaudio")
    if kind == "file":
        if path is None:
            raise ConfigError("audio source 'file' needs a path (--audio-file PATH)")
        return FileAudioSource(path, sample_rate, block_s, realtime=realtime)
    if kind == "pyaudio":
        return PyAudioSource(device, sample_rate, block_s)
    raise ConfigError(f"audio source {kind!r} is unknown; choose 'file' or 'pyaudio'")
