"""The live microphone: PyAudio (PortAudio, ALSA on a Pi) in callback mode.

The callback only copies the block into a bounded ring buffer and never raises (PortAudio calls it
on its own real-time thread); when the consumer falls behind, the oldest block is dropped and
counted.  PyAudio is imported when the microphone is started, so this module imports anywhere.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

import numpy as np

from ..errors import ConfigError, DeviceUnavailableError
from ..optional import import_optional, quiet_native_output
from .audio_file import Resampler, to_mono_float
from .base import AudioSourceBase

__all__ = ["PyAudioSource", "PYAUDIO_HINT"]

logger = logging.getLogger(__name__)


#: How to get PyAudio: it has no aarch64 wheel, so on a Pi take Debian's build (the venv sees it
#: with --system-site-packages) rather than compiling it.
PYAUDIO_HINT = ("the microphone needs PyAudio: on Raspberry Pi OS sudo apt install "
                "python3-pyaudio (venv made with --system-site-packages); elsewhere sudo apt "
                "install portaudio19-dev python3-dev, then pip install 'emotion-edge[mic]'")


def _import_pyaudio() -> Any:
    return import_optional("pyaudio", PYAUDIO_HINT)


class PyAudioSource(AudioSourceBase):
    """Live capture through PortAudio (ALSA on a Pi).

    ``device`` is a substring of the input device's name (case-insensitive), an index, or
    ``None`` for the default (``audio.device`` in the configuration).  The device is opened at
    ``sample_rate`` when it supports it, else at its own default rate with resampling here.
    """

    def __init__(
        self,
        device: str | int | None = None,
        sample_rate: int = 16000,
        block_s: float = 0.1,
        *,
        ring_blocks: int = 32,
        pyaudio_module: Any = None,
    ) -> None:
        if block_s <= 0 or ring_blocks < 1:
            raise ConfigError(
                f"need block_s > 0 and ring_blocks >= 1, got block_s={block_s!r}, "
                f"ring_blocks={ring_blocks!r}"
            )
        self.device = device
        self.sample_rate = int(sample_rate)
        self.block_s = block_s
        #: Capacity of the ring buffer, in blocks (``audio.ring_blocks``).
        self._max_blocks = int(ring_blocks)
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
                return dict(self._pa.get_default_input_device_info())
            except OSError:
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
        with quiet_native_output("PortAudio"):  # ALSA/JACK probing lists every device it tries
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
            self._close()  # released, not closed: start() may be tried again
            raise DeviceUnavailableError(
                f"cannot open microphone {self.device or 'default'!r} ({exc}); check `arecord -l` "
                f"and that no other program holds the device"
            ) from None
        except BaseException:
            self._close()  # released, not closed: start() may be tried again
            raise
        logger.info("microphone %r open at %d Hz (model rate %d Hz)", self.device_name, rate,
                    self.sample_rate)

    def _callback(self, in_data: bytes | None, frame_count: int, time_info: Any, status: int
                  ) -> tuple[None, int]:
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

    def _close(self) -> None:
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
