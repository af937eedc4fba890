"""The PyAudio microphone adapter: real PortAudio on an ALSA ``null`` device, and a fake PyAudio
for the callback's bookkeeping (overflow, drops, never raising)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

from edge.errors import DeviceUnavailableError
from edge.sources.microphone import PyAudioSource


class FakeStream:
    def __init__(self, callback):
        self.callback, self.active, self.closed = callback, False, False

    def start_stream(self):
        self.active = True

    def stop_stream(self):
        self.active = False

    def is_active(self):
        return self.active

    def close(self):
        self.closed = True


class FakePyAudio:
    """Just enough of pyaudio.PyAudio for the adapter: two input devices, one output."""

    devices = [
        {"index": 0, "name": "bcm2835 Headphones", "maxInputChannels": 0, "defaultSampleRate": 48000.0},
        {"index": 1, "name": "USB PnP Sound Device: Audio (hw:2,0)", "maxInputChannels": 1,
         "defaultSampleRate": 48000.0},
        {"index": 2, "name": "default", "maxInputChannels": 32, "defaultSampleRate": 44100.0},
    ]

    def __init__(self, supported_rates=(16000,)):
        self.supported_rates = supported_rates
        self.opened = None
        self.terminated = False

    def get_device_count(self):
        return len(self.devices)

    def get_device_info_by_index(self, i):
        return self.devices[i]

    def get_default_input_device_info(self):
        return self.devices[2]

    def is_format_supported(self, rate, **kw):
        if rate not in self.supported_rates:
            raise ValueError("Invalid sample rate")
        return True

    def open(self, **kw):
        self.opened = kw
        self.stream = FakeStream(kw["stream_callback"])
        return self.stream

    def terminate(self):
        self.terminated = True


def fake_module(pa: FakePyAudio) -> types.SimpleNamespace:
    return types.SimpleNamespace(PyAudio=lambda: pa, paInt16=8, paContinue=0, paInputOverflow=2)


def test_device_chosen_by_name_substring_and_blocks_converted():
    pa = FakePyAudio()
    with PyAudioSource("usb pnp", 16000, 0.1, pyaudio_module=fake_module(pa)) as mic:
        assert pa.opened["input_device_index"] == 1 and pa.opened["rate"] == 16000
        assert pa.opened["frames_per_buffer"] == 1600
        block = (np.arange(1600) - 800).astype(np.int16)
        pa.stream.callback(block.tobytes(), 1600, {}, 0)
        got = mic.read(timeout_s=1)
        np.testing.assert_allclose(got, block / 32768.0)
        assert mic.read(timeout_s=0.01) is None and mic.underruns == 1
    assert pa.terminated and pa.stream.closed


def test_unknown_device_lists_the_inputs():
    pa = FakePyAudio()
    with pytest.raises(DeviceUnavailableError, match="'seeed'.*USB PnP Sound Device"):
        PyAudioSource("seeed", pyaudio_module=fake_module(pa)).start()
    assert pa.terminated


def test_ring_buffer_drops_oldest_and_counts_overflow():
    pa = FakePyAudio()
    with PyAudioSource(None, 16000, 0.1, ring_blocks=3, pyaudio_module=fake_module(pa)) as mic:
        for i in range(5):
            status = 2 if i == 4 else 0  # paInputOverflow on the last block
            pa.stream.callback(np.full(1600, i, np.int16).tobytes(), 1600, {}, status)
        assert mic.dropped_blocks == 2 and mic.overflows == 1
        firsts = [mic.read(0.1)[0] * 32768 for _ in range(3)]
        assert firsts == [2, 3, 4]  # the oldest two were dropped


def test_callback_never_raises():
    pa = FakePyAudio()
    with PyAudioSource(None, pyaudio_module=fake_module(pa)) as mic:
        result = pa.stream.callback(b"\x01", 1, {}, 0)  # odd byte count: frombuffer fails
        assert result == (None, 0) and mic.callback_errors == 1


def test_resamples_when_the_device_lacks_the_model_rate():
    pa = FakePyAudio(supported_rates=(48000,))
    with PyAudioSource("usb", 16000, 0.1, pyaudio_module=fake_module(pa)) as mic:
        assert pa.opened["rate"] == 48000 and mic.device_rate == 48000
        t = np.arange(4800 * 4) / 48000
        x = (0.5 * np.sin(2 * np.pi * 500 * t) * 32767).astype(np.int16)
        for i in range(4):
            pa.stream.callback(x[i * 4800 : (i + 1) * 4800].tobytes(), 4800, {}, 0)
        out = np.concatenate([mic.read(0.1) for _ in range(4)])
        assert 4800 < out.size <= 6400  # 16 kHz, minus the filter's look-ahead


REAL_PORTAUDIO = textwrap.dedent(
    """
    import json, time
    from edge.sources.microphone import PyAudioSource
    from edge.errors import DeviceUnavailableError
    out = {}
    with PyAudioSource("default", 16000, 0.1, ring_blocks=5) as mic:
        blocks = [mic.read(timeout_s=2.0) for _ in range(3)]
        out["shapes"] = [None if b is None else list(b.shape) for b in blocks]
        out["dtype"] = str(blocks[0].dtype)
        time.sleep(0.3)  # ALSA's null device delivers as fast as it can: the ring must drop
        out["dropped"] = mic.dropped_blocks
        out["active"] = mic.active
    out["closed_active"] = mic.active
    try:
        PyAudioSource("no-such-mic").start()
    except DeviceUnavailableError as e:
        out["error"] = str(e)
    print(json.dumps(out))
    """
)


def test_real_portaudio_on_alsa_null_device(tmp_path):
    pytest.importorskip("pyaudio")
    (tmp_path / ".asoundrc").write_text("pcm.!default { type null }\n")
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", REAL_PORTAUDIO], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shapes"] == [[1600]] * 3 and out["dtype"] == "float32"
    assert out["dropped"] > 0 and out["active"] and not out["closed_active"]
    assert "no-such-mic" in out["error"] and "default" in out["error"]
