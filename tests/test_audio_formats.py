"""Recordings from phones: M4A/AAC, AMR and a video's sound read through PyAV (FFmpeg), and one
clear line, not a traceback, where PyAV is missing or the file is not audio."""

from __future__ import annotations

import dataclasses
import json
import select
import socket
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from edge.errors import AudioFileError
from edge.sources.audio_file import AudioFileStream, load_audio

from .helpers import TINY_MFCC, speech_like_noise, tiny_speech_model

av = pytest.importorskip("av")


def _sweep(rate: int, seconds: float) -> np.ndarray:
    """A rising tone, 200 Hz to 3 kHz: inside every codec's band, and never the same twice, so
    the lag a codec adds can be found."""
    t = np.arange(int(rate * seconds)) / rate
    phase = 2 * np.pi * (200 * t + (3000 - 200) / (2 * seconds) * t * t)
    return (0.4 * np.sin(phase)).astype(np.float32)


def _encode(path: Path, codec: str, rate: int, x: np.ndarray, *, channels: int = 1,
            video: bool = False) -> Path:
    """``x`` (mono float) encoded with FFmpeg's ``codec``, on ``channels`` identical channels,
    optionally beside a short video track."""
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w") as out:
        # Every stream is added before the first packet: the container's header lists them.
        picture = out.add_stream("mpeg4", rate=10) if video else None
        sound = out.add_stream(codec, rate=rate, layout=layout) if x.size else None
        if picture is not None:
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
            picture.time_base = Fraction(1, 10)
            for i in range(10):
                frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
                frame.pts = i
                out.mux(picture.encode(frame))
            out.mux(picture.encode(None))
        if sound is not None:
            step = sound.codec_context.frame_size or 1024
            fmt = sound.codec_context.format.name
            for i in range(0, x.size, step):
                block = np.repeat(x[None, i:i + step], channels, axis=0)
                if fmt == "s16":
                    block = (block * 32767).astype(np.int16).reshape(1, -1)
                elif not fmt.endswith("p"):
                    block = np.ascontiguousarray(block.T).reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format=fmt,
                                                   layout=layout)
                frame.sample_rate = rate
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return path


def _matches(decoded: np.ndarray, original: np.ndarray, rate: int) -> float:
    """Correlation of ``decoded`` with ``original`` at the codec's lag (up to 0.2 s)."""
    assert abs(decoded.size - original.size) < 0.2 * rate, (decoded.size, original.size)
    body = original[rate // 4: -rate // 4]
    lags = range(0, rate // 5)
    best = max(lags, key=lambda lag: float(np.dot(decoded[rate // 4 + lag:][:body.size], body)))
    part = decoded[rate // 4 + best:][:body.size]
    return float(np.corrcoef(part, body)[0, 1])


def test_a_voice_memo_in_m4a_reads_like_the_sound_it_holds(tmp_path):
    x = _sweep(44100, 2.0)
    path = _encode(tmp_path / "memo.m4a", "aac", 44100, x, channels=2)
    with AudioFileStream(path, 16000) as stream:
        assert stream.file_rate == 44100
        assert abs(stream.duration_s - 2.0) < 0.1
    # Compared at the file's rate, where the codec's delay is a whole number of samples.
    assert _matches(load_audio(path, None), x, 44100) > 0.95
    assert abs(load_audio(path, 16000).size - 32000) < 0.1 * 16000


def test_an_amr_call_recording_keeps_its_8_khz(tmp_path):
    x = _sweep(8000, 2.0)
    path = _encode(tmp_path / "call.amr", "libopencore_amrnb", 8000, x)
    assert AudioFileStream(path, None).file_rate == 8000
    assert _matches(load_audio(path, 8000), x, 8000) > 0.8


def test_the_sound_of_a_video_is_read_and_a_silent_video_is_named(tmp_path):
    x = _sweep(16000, 1.0)
    clip = _encode(tmp_path / "clip.mp4", "aac", 16000, x, video=True)
    assert _matches(load_audio(clip, 16000), x, 16000) > 0.95
    # .avi too: libsndfile's "format not recognised" hid FFmpeg's reason there.
    for name in ("silent.mp4", "silent.avi"):
        silent = _encode(tmp_path / name, "aac", 16000, np.zeros(0, np.float32), video=True)
        with pytest.raises(AudioFileError, match="has no sound") as info:
            load_audio(silent)
        assert str(silent) in str(info.value)


def test_blocks_are_read_a_packet_at_a_time_and_add_up_to_the_whole(tmp_path):
    path = _encode(tmp_path / "memo.m4a", "aac", 16000, _sweep(16000, 3.0))
    whole = load_audio(path, 16000)
    with AudioFileStream(path, 16000, block_frames=700) as stream:
        blocks = list(stream)
    assert max(b.size for b in blocks) <= 700 and len(blocks) > 40
    np.testing.assert_array_equal(np.concatenate(blocks), whole)


def test_a_damaged_or_foreign_file_is_one_clear_error(tmp_path):
    fake = tmp_path / "memo.m4a"
    fake.write_bytes(b"not a voice memo" * 64)
    # A playlist is text FFmpeg would follow to what it names: the reader must not fetch it.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        playlist = tmp_path / "stream.m3u8"
        playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n"
                            f"http://127.0.0.1:{server.getsockname()[1]}/a.ts\n#EXT-X-ENDLIST\n")
        for path in (fake, playlist):
            with pytest.raises(AudioFileError, match="not a readable audio file") as info:
                load_audio(path)
            assert str(path) in str(info.value) and "\n" not in str(info.value)
        assert select.select([server], [], [], 0.2)[0] == [], "the playlist's URL was fetched"


def test_without_pyav_the_error_names_the_install_step(tmp_path, monkeypatch):
    path = _encode(tmp_path / "memo.m4a", "aac", 16000, _sweep(16000, 1.0))
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 20)
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    with pytest.raises(AudioFileError, match=r"emotion-edge\[formats\]") as info:
        load_audio(path)
    assert str(path) in str(info.value) and f"ffmpeg -i {path} out.wav" in str(info.value)
    with pytest.raises(AudioFileError, match="not a readable audio file.*supported: WAV"):
        load_audio(text)


def test_classify_scores_phone_recordings_and_sends_amr_to_the_narrowband_model(tmp_path, capsys):
    """An AMR call (8 kHz) goes to the narrowband model by its rate; an M4A memo at 44.1 kHz to
    the wideband one; a damaged file is one line on stderr and the others are still scored."""
    pytest.importorskip("ai_edge_litert")
    from edge.cli import main

    (tmp_path / "w").mkdir()
    (tmp_path / "n").mkdir()
    wide, _ = tiny_speech_model(tmp_path / "w", seed=0)
    narrow, _ = tiny_speech_model(
        tmp_path / "n", config=dataclasses.replace(TINY_MFCC, low_hz=300.0, high_hz=3400.0), seed=1)
    memo = _encode(tmp_path / "memo.m4a", "aac", 44100, speech_like_noise(2.0, 44100), channels=2)
    call = _encode(tmp_path / "call.amr", "libopencore_amrnb", 8000, speech_like_noise(2.0, 8000))
    broken = tmp_path / "broken.m4a"
    broken.write_bytes(b"\0" * 512)
    capsys.readouterr()  # what building the tiny models printed

    def scores(*options: str) -> dict[str, dict[str, float]]:
        code = main(["classify", "--json", "--model", str(wide), "--narrow-model", str(narrow),
                     *options, str(memo), str(broken), str(call)])
        out, err = capsys.readouterr()
        assert code == 1 and len(err.strip().splitlines()) == 1 and str(broken) in err, err
        return {row["path"]: row["scores"] for row in map(json.loads, out.splitlines())}

    auto, wide_only, narrow_only = scores(), scores("--band", "wide"), scores("--band", "narrow")
    assert set(auto) == {str(memo), str(call)}
    assert auto[str(memo)] == wide_only[str(memo)] != narrow_only[str(memo)]
    assert auto[str(call)] == narrow_only[str(call)] != wide_only[str(call)]
