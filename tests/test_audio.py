"""Audio in: formats, downmix, resampling (batch == streaming) and clear errors for bad files."""

from __future__ import annotations

import re
import wave
from pathlib import Path

import numpy as np
import pytest

from edge.errors import AudioFileError
from edge.sources.audio_file import (
    AudioFileStream,
    Resampler,
    load_audio,
    resample,
    to_mono_float,
)

from .helpers import importable


def write_wav(path: Path, data: np.ndarray, rate: int) -> Path:
    data = np.asarray(data)
    channels = 1 if data.ndim == 1 else data.shape[1]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(data.dtype.itemsize)
        w.setframerate(rate)
        w.writeframes(data.tobytes())
    return path


def tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * freq * t)


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spec) * rate / x.size)


def test_to_mono_float_scales_and_downmixes():
    i16 = np.array([[32767, -32768], [0, 16384]], dtype=np.int16)
    out = to_mono_float(i16)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [(32767 - 32768) / 2 / 32768, 16384 / 2 / 32768], atol=1e-6)
    np.testing.assert_allclose(to_mono_float(np.array([0, 128, 255], np.uint8)), [-1, 0, 127 / 128])
    np.testing.assert_allclose(to_mono_float(np.array([0.5, -0.25], np.float64)), [0.5, -0.25])


@pytest.mark.parametrize("src", [8000, 22050, 44100, 48000])
def test_resample_keeps_pitch_and_length(src):
    x = tone(440, src, 1.0)
    y = resample(x, src, 16000)
    assert y.size == int(np.ceil(x.size * 16000 / src))
    assert abs(dominant_hz(y, 16000) - 440) < 2
    # A tone above the new Nyquist must not alias into the band.
    if src > 16000:
        hi = resample(tone(7000 * src / 16000 + 500, src, 1.0), src, 16000)
        assert np.sqrt(np.mean(hi[200:-200] ** 2)) < 0.02


@pytest.mark.parametrize("rates", [(48000, 16000), (44100, 16000), (8000, 16000)])
def test_streaming_resampler_equals_batch(rates):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(30000).astype(np.float32) * 0.1
    r = Resampler(*rates)
    parts, i = [], 0
    while i < x.size:
        n = int(rng.integers(1, 3000))
        parts.append(r.process(x[i : i + n]))
        i += n
    parts.append(r.flush())
    np.testing.assert_allclose(np.concatenate(parts), resample(x, *rates), atol=1e-7)


def test_load_audio_stereo_44k_int16_wav(tmp_path):
    left = tone(300, 44100, 0.5)
    stereo = (np.stack([left, left], axis=1) * 32767).astype(np.int16)
    x = load_audio(write_wav(tmp_path / "s.wav", stereo, 44100), 16000)
    assert x.dtype == np.float32 and x.ndim == 1
    assert x.size == int(np.ceil(stereo.shape[0] * 16000 / 44100))
    assert abs(dominant_hz(x, 16000) - 300) < 3


def test_load_audio_flac_fixture(request):
    x = load_audio(request.config.rootpath / "demo" / "audio" / "03a01Wa.flac", 16000)
    assert x.dtype == np.float32 and 1.0 < x.size / 16000 < 4.0
    assert 0.05 < np.abs(x).max() <= 1.0


def test_bad_files_raise_errors_naming_the_file(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 20)
    good = write_wav(tmp_path / "good.wav", (tone(200, 16000, 1.0) * 20000).astype(np.int16), 16000)
    header_only = tmp_path / "header.wav"
    header_only.write_bytes(good.read_bytes()[:44])
    for path, why in [
        (tmp_path / "missing.wav", "no such file"),
        (empty, "empty"),
        (text, "not a readable audio file"),
        (header_only, "no audio"),
        (tmp_path / ("x" * 300 + ".wav"), "cannot be read \\(File name too long"),
    ]:
        with pytest.raises(AudioFileError, match=why) as info:
            load_audio(path)
        assert str(path) in str(info.value)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_a_recording_cut_short_is_read_as_far_as_it_goes_and_said_once(tmp_path, caplog, suffix):
    """A truncated WAV was refused whole, a cut FLAC too ("unreadable at 179.2 s"): a lecture
    cut short by a dead battery gave nothing.  Now what is there is used, with one warning
    however often the file is read (classify reads it for its band, the room, its emotion)."""
    import logging

    import soundfile as sf

    from edge.sources import audio_file

    audio_file._tell.cache_clear()
    x = (np.random.default_rng(0).uniform(-0.3, 0.3, 16000 * 20)).astype(np.float32)
    whole = tmp_path / f"whole{suffix}"
    sf.write(str(whole), x, 16000, subtype="PCM_16")
    cut = tmp_path / f"cut{suffix}"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    with caplog.at_level(logging.WARNING, logger="edge.sources.audio_file"):
        assert load_audio(whole).size == x.size and not caplog.records
        first = load_audio(cut)
        again = load_audio(cut)
    assert 0.5 * x.size < first.size < 0.65 * x.size and again.size == first.size
    np.testing.assert_allclose(first, load_audio(whole)[: first.size], atol=1e-4)
    (told,) = [r.getMessage() for r in caplog.records]
    assert told.startswith(f"{cut}: "), told
    assert ("of the 20.0 s its header declares" if suffix == ".wav" else "unreadable from") in told


@pytest.mark.parametrize("subtype", ["VORBIS", "OPUS"])
def test_an_ogg_recording_cut_short_is_read_as_far_as_it_goes_and_said_once(tmp_path, caplog,
                                                                             subtype):
    """Ogg declares no length, and both readers quietly read the pages there are: a voice memo
    cut off by a full card came out as if it were whole.  Its last page lacks the end-of-stream
    mark every writer sets; that is said once, and what is there is used."""
    import logging

    import soundfile as sf

    from edge.sources import audio_file

    audio_file._tell.cache_clear()
    x = (np.random.default_rng(2).uniform(-0.3, 0.3, 16000 * 20)).astype(np.float32)
    whole = tmp_path / "whole.ogg"
    sf.write(str(whole), x, 16000, format="OGG", subtype=subtype)
    data = whole.read_bytes()
    for share in (6, 9):  # mid-page, and (nearly always) on a page boundary at 90%
        cut = tmp_path / f"cut{share}.ogg"
        cut.write_bytes(data[: len(data) * share // 10])
    tagged = tmp_path / "tagged.ogg"  # whole, with an ID3v1 tag a tagger appended
    tagged.write_bytes(data + b"TAG" + bytes(125))
    with caplog.at_level(logging.WARNING, logger="edge.sources.audio_file"):
        assert abs(load_audio(whole).size - x.size) < 16000 * 0.1 and not caplog.records
        assert abs(load_audio(tagged).size - x.size) < 16000 * 0.1 and not caplog.records
        first = load_audio(tmp_path / "cut6.ogg")
        again = load_audio(tmp_path / "cut6.ogg")
        load_audio(tmp_path / "cut9.ogg")
    assert 0.4 * x.size < first.size < 0.7 * x.size and again.size == first.size
    told = [r.getMessage() for r in caplog.records]
    assert [t.split(": ")[0] for t in told] == [str(tmp_path / "cut6.ogg"),
                                                str(tmp_path / "cut9.ogg")], told
    assert all("without the end-of-stream mark" in t for t in told), told


def test_a_flac_written_into_a_pipe_is_read_to_its_end(tmp_path, caplog):
    """`arecord | flac -` declares no length (total samples 0): libsndfile failed on its last
    second and it was called damaged; FFmpeg reads it whole."""
    import logging

    import soundfile as sf

    pytest.importorskip("av")
    x = (np.random.default_rng(1).uniform(-0.3, 0.3, 16000 * 5)).astype(np.float32)
    path = tmp_path / "piped.flac"
    sf.write(str(path), x, 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first
    data[21] &= 0xF0  # its 36-bit count of samples (from byte 13 of the block, low nibble on)
    data[22:26] = bytes(4)
    path.write_bytes(bytes(data))
    assert sf.info(str(path)).frames > 2**62  # libsndfile: no length
    with caplog.at_level(logging.WARNING, logger="edge.sources.audio_file"):
        got = load_audio(path)
    assert got.size == x.size and not caplog.records, caplog.text
    np.testing.assert_allclose(got, x, atol=1e-4)


@pytest.mark.parametrize("rate, channels", [(16000, 1), (44100, 2), (48000, 2)])
def test_file_stream_blocks_equal_the_whole_file_resampled(tmp_path, rate, channels):
    import soundfile as sf

    x = np.random.default_rng(3).uniform(-0.5, 0.5, (rate * 3 + 17, channels)).astype(np.float32)
    path = tmp_path / "x.flac"
    sf.write(str(path), x, rate, subtype="PCM_24")
    whole = resample(to_mono_float(sf.read(str(path), dtype="float32", always_2d=True)[0]),
                     rate, 16000)
    with AudioFileStream(path, 16000, block_frames=4000) as stream:
        blocks = list(stream)
    assert len(blocks) > 3  # really read in pieces
    np.testing.assert_allclose(np.concatenate(blocks), whole, atol=1e-6)
    assert stream.closed
    # read(n) hands out the same samples in the caller's block size
    with AudioFileStream(path, 16000, block_frames=4000) as stream:
        parts = []
        while (part := stream.read(1600)).size:
            parts.append(part)
        assert stream.exhausted
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-6)


def test_file_stream_names_a_fault_deep_in_the_file(tmp_path):
    import soundfile as sf

    x = np.zeros(16000 * 5, np.float32)
    x[16000 * 4] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(str(path), x, 16000, subtype="FLOAT")
    with pytest.raises(AudioFileError, match=r"nan\.wav: contains NaN .*at 4\.0 s"):
        load_audio(path)
    with pytest.raises(AudioFileError, match="is a folder"):
        load_audio(tmp_path)


def test_a_folder_given_as_a_recording_is_answered_with_what_it_holds(tmp_path):
    """The hint said `folder/*.wav` of a folder of FLAC files (and `*.flac` of .FLAC ones,
    which a shell's glob does not match), unquoted."""
    folder = tmp_path / "my takes"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.FLAC").write_bytes(b"x")
    (folder / "notes.txt").write_text("x")
    with pytest.raises(AudioFileError, match=re.escape(f"(e.g. '{folder}'/*.FLAC, or "
                                                       f"--files-from LIST)")):
        load_audio(folder)


@pytest.mark.parametrize("rate, why", [
    (999983, "sample rate 999983 Hz is not supported"),  # a header may claim any rate
    (2**31 - 1, "not supported"),
    (96001, "needs a .* MB filter"),  # in range, but no sane filter resamples it to 16 kHz
])
def test_a_rate_the_resampler_cannot_handle_in_bounded_memory_names_the_file(
        tmp_path, rate, why):
    path = write_wav(tmp_path / "odd.wav", np.zeros(4000, np.int16), rate)
    with pytest.raises(AudioFileError, match=why) as info:
        load_audio(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000, 96000, 192000, 384000])
def test_every_common_rate_still_resamples(rate):
    assert Resampler(rate, 16000).from_rate == rate


@pytest.mark.parametrize("placeholder", [0xFFFFFFFF, 0x7FFFFFFF])
def test_a_wav_written_into_a_pipe_is_read_whole(tmp_path, placeholder):
    """ffmpeg or arecord writing into a pipe cannot go back to fill in the sizes: the header
    says 0xFFFFFFFF (or 0x7FFFFFFF) bytes.  That was refused as a truncated WAV."""
    pytest.importorskip("soundfile")
    path = write_wav(tmp_path / "piped.wav",
                     (np.sin(np.arange(16000) / 5.0) * 8000).astype(np.int16), 16000)
    data = bytearray(path.read_bytes())
    assert data[36:40] == b"data"
    data[4:8] = placeholder.to_bytes(4, "little")
    data[40:44] = placeholder.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert load_audio(path, 16000).size == 16000


def test_a_wav_whose_header_was_never_finished_is_read_to_its_end(tmp_path, caplog, monkeypatch):
    """A recorder that crashed before writing the sizes leaves them 0, the samples after the
    header: that was "contains no audio samples".  FFmpeg reads it to the end, with one
    warning; without PyAV the error says what happened and how to repair it."""
    import logging

    import soundfile as sf

    from edge.errors import MissingDependencyError
    from edge.sources import audio_file

    audio_file._tell.cache_clear()
    x = (np.random.default_rng(3).uniform(-0.3, 0.3, 16000 * 2)).astype(np.float32)
    path = tmp_path / "unfinished.wav"
    sf.write(str(path), x, 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    data[4:8] = bytes(4)  # the RIFF size
    data[at : at + 4] = bytes(4)  # the data chunk's size
    path.write_bytes(bytes(data))
    assert sf.info(str(path)).frames == 0
    if importable("av"):
        with caplog.at_level(logging.WARNING, logger="edge.sources.audio_file"):
            got = load_audio(path)
        assert abs(got.size - x.size) <= 16 and "never finished" in caplog.text
        np.testing.assert_allclose(got[: x.size - 16], x[: x.size - 16], atol=1e-3)

    def no_pyav(path):
        raise MissingDependencyError("av is not installed")

    monkeypatch.setattr(audio_file, "_FFmpegFile", no_pyav)
    with pytest.raises(AudioFileError, match="header declares no samples.*ffmpeg -i .*fixed.wav"):
        load_audio(path)


def test_a_link_to_nothing_and_a_name_with_a_space_are_told_as_they_are(tmp_path):
    """A symbolic-link loop said "no such file"; the suggested conversion used the bare name,
    unquoted (`ffmpeg -i sp ace.xyz`), and FFmpeg's and libsndfile's own error numbers and
    paths came along."""
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(AudioFileError, match="a symbolic link to nothing"):
        load_audio(tmp_path / "a")
    odd = tmp_path / "sp ace.xyz"
    odd.write_text("not audio\n" * 10)
    with pytest.raises(AudioFileError) as info:
        load_audio(odd)
    told = str(info.value)
    assert f"ffmpeg -i '{odd}' out.wav" in told and "Errno" not in told
    assert told.count(str(odd)) == 2, told  # where it begins, and in the command


def test_a_wav_of_a_header_alone_is_not_called_unfinished(tmp_path, caplog):
    import logging

    import soundfile as sf

    path = tmp_path / "empty.wav"
    sf.write(str(path), np.zeros(0, np.float32), 16000, subtype="PCM_16")
    with caplog.at_level(logging.WARNING), pytest.raises(AudioFileError, match="no audio"):
        load_audio(path)
    assert "never finished" not in caplog.text


def test_an_empty_wav_with_a_title_is_no_audio_not_an_internal_error(tmp_path):
    """The stdlib's WAV reader, asked for the declared length, raised a bare RuntimeError."""
    import soundfile as sf

    path = tmp_path / "titled.wav"
    with sf.SoundFile(str(path), "w", 16000, 1, "PCM_16") as f:
        f.title = "a title, and no samples"
    with pytest.raises(AudioFileError, match="no audio"):
        load_audio(path)


def test_a_finished_empty_wav_with_a_chunk_after_its_data_is_not_called_unfinished(tmp_path,
                                                                                    caplog):
    """The bytes of a LIST chunk after an empty data chunk were read as samples."""
    import logging
    import struct

    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    info = b"INFO" + b"INAM" + struct.pack("<I", 200) + b"t" * 200
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 0)
            + b"LIST" + struct.pack("<I", len(info)) + info)
    path = tmp_path / "empty_tagged.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with caplog.at_level(logging.WARNING), pytest.raises(AudioFileError, match="no audio"):
        load_audio(path)
    assert "never finished" not in caplog.text
