"""The device's speech classifier on a tiny model exported through the real conversion code."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edge.cli import main
from edge.errors import ManifestMismatchError, ModelError
from edge.models.runtime import QuantizedModel
from edge.models.speech import NO_SPEECH, SpeechClassifier, SpeechStream

from .helpers import TINY_LABELS, TINY_MFCC, tiny_speech_model

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_speech_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def demo_clips(request):
    return sorted((request.config.rootpath / "demo" / "audio").glob("*.flac"))


def test_classifies_demo_clips(tiny, demo_clips):
    path, _ = tiny
    with SpeechClassifier(path) as clf:
        assert clf.window_frames == 50 and clf.hop_frames == 25
        for clip in demo_clips:
            d = clf.classify_file(clip)
            assert d.label in TINY_LABELS
            assert abs(sum(d.scores.values()) - 1) < 0.05
            assert d.speech_windows >= 1


def test_int8_agrees_with_float_model(tiny):
    path, keras_model = tiny
    x = np.random.default_rng(1).standard_normal((40, 50, 13, 1)).astype(np.float32)
    ref = keras_model.predict(x, verbose=0)
    with QuantizedModel(path) as q:
        got = np.stack([q.predict(xi) for xi in x])
    assert np.abs(got - ref).max() < 0.05
    assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.9


def test_xnnpack_and_reference_kernels_within_one_lsb(tiny):
    path, _ = tiny
    rng = np.random.default_rng(2)
    with QuantizedModel(path) as fast, QuantizedModel(path, reference_kernels=True) as ref:
        for _ in range(10):
            q = fast.quantize(rng.standard_normal((1, 50, 13, 1)))
            diff = np.abs(fast.predict_raw(q).astype(int) - ref.predict_raw(q).astype(int))
            assert diff.max() <= 1


def test_refuses_a_model_whose_feature_config_differs(tiny):
    path, _ = tiny
    with pytest.raises(ManifestMismatchError, match="'n_ceps' is 13 .* 20"):
        SpeechClassifier(path, expected_config=dataclasses.replace(TINY_MFCC, n_ceps=20))
    SpeechClassifier(path, expected_config=TINY_MFCC).close()


def test_refuses_manifest_whose_quantisation_differs_from_the_model(tiny, tmp_path):
    path, _ = tiny
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes())
    data = json.loads(path.with_suffix(".json").read_text())
    data["input"]["zero_point"] += 1
    copy.with_suffix(".json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="input zero_point"):
        SpeechClassifier(copy)


def test_silence_and_steady_noise_are_no_speech(tiny):
    path, _ = tiny
    rng = np.random.default_rng(0)
    with SpeechClassifier(path) as clf:
        for signal in (np.zeros(32000), 0.01 * rng.standard_normal(32000)):
            d = clf.classify_signal(signal.astype(np.float32))
            assert d.label == NO_SPEECH and d.scores == {} and d.speech_windows == 0


@pytest.mark.parametrize("seconds", [0.8, 2.0, 2.6])
def test_stream_then_flush_equals_file_windows(tiny, demo_clips, seconds):
    """Window for window, the live stream decides exactly what the file form decides, including
    the end-aligned last window and a clip shorter than one window."""
    from edge.sources.audio_file import load_audio

    path, _ = tiny
    x = load_audio(demo_clips[0], 16000)[: int(seconds * 16000)]
    with SpeechClassifier(path) as clf:
        batch = clf.classify_signal(x).windows
        stream = SpeechStream(clf)
        rng = np.random.default_rng(3)
        got, i = [], 0
        while i < x.size:
            n = int(rng.integers(100, 5000))
            got += stream.feed(x[i : i + n])
            i += n
        got += stream.flush()
    assert len(got) == len(batch) >= 1
    for a, b in zip(got, batch):
        assert a.start_s == pytest.approx(b.start_s) and a.label == b.label
        assert a.scores.keys() == b.scores.keys()
        for lab in a.scores:
            assert a.scores[lab] == pytest.approx(b.scores[lab], abs=1e-6)


def test_cli_json_contract_and_bad_files(tiny, demo_clips, tmp_path, capsys):
    path, _ = tiny
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    code = main(["classify", "--json", "--model", str(path), str(demo_clips[0]), str(bad),
                 str(demo_clips[1])])
    out, err = capsys.readouterr()
    assert code == 1
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in rows] == [str(demo_clips[0]), str(demo_clips[1])]
    for r in rows:
        assert set(r) == {"path", "label", "scores"}
        assert r["label"] in TINY_LABELS and set(r["scores"]) == set(TINY_LABELS)
    assert len(err.strip().splitlines()) == 1 and "broken.wav" in err


def test_cli_plain_output(tiny, demo_clips, capsys):
    path, _ = tiny
    assert main(["classify", "--model", str(path), str(demo_clips[0])]) == 0
    out = capsys.readouterr().out
    assert out.startswith(str(demo_clips[0])) and "ms" in out


def test_cli_missing_model_is_a_clear_error(tmp_path, capsys, demo_clips):
    assert main(["classify", "--model", str(tmp_path / "nope.tflite"), str(demo_clips[0])]) == 2
    assert "nope.tflite" in capsys.readouterr().err


def test_a_borrowed_model_stays_open_and_a_refused_one_is_named(tiny):
    from edge.models.face import FaceClassifier

    path, _ = tiny
    with QuantizedModel(path) as qm:
        with SpeechClassifier(qm):
            pass
        assert qm.predict(np.zeros(qm.input_shape[1:], np.float32)).shape == (len(TINY_LABELS),)
        # A speech model is not a face model: refused before any face check, naming the file.
        with pytest.raises(ModelError, match=rf"{path.name}: manifest task is 'speech', "
                                             r"expected 'face_expression'"):
            FaceClassifier(qm)
        assert not qm._closed  # the caller's model is the caller's to close
    with pytest.raises(ModelError, match="expected 'face_expression'"):
        FaceClassifier(path)


def test_a_file_is_classified_as_its_whole_signal_and_in_bounded_memory(tiny, tmp_path):
    """classify_file streams; its decision is classify_signal's, and its peak memory does not
    grow with the recording's length (the old whole-file path grew ~linearly)."""
    import tracemalloc

    import soundfile as sf

    from edge.sources.audio_file import load_audio

    from .tinymodels import speech_wav

    path, _ = tiny
    mono = speech_wav(tmp_path / "mono.wav", 20.0)
    x = sf.read(str(mono), dtype="float32")[0]
    files = {}
    for seconds in (20, 80):
        reps = seconds // 20
        stereo = np.stack([np.tile(x, reps), 0.5 * np.tile(x, reps)], axis=1)
        files[seconds] = tmp_path / f"stereo48k_{seconds}s.wav"
        sf.write(str(files[seconds]), _resample_48k(stereo), 48000)
    with SpeechClassifier(path) as clf:
        streamed = clf.classify_file(files[20])
        whole = clf.classify_signal(load_audio(files[20], clf.sample_rate))
        assert streamed.label == whole.label
        assert streamed.total_windows == len(whole.windows) == whole.total_windows
        assert streamed.speech_windows == whole.speech_windows > 0
        for k, v in whole.scores.items():
            assert abs(streamed.scores[k] - v) < 1e-6
        peaks = {}
        for seconds, f in files.items():
            tracemalloc.start()
            clf.classify_file(f)
            peaks[seconds] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    # 4x the audio (80 s of 48 kHz stereo float is 31 MB) must not cost more memory
    assert peaks[80] < 1.3 * peaks[20], peaks


def _resample_48k(stereo16k):
    from edge.sources.audio_file import resample

    return np.stack([resample(stereo16k[:, c], 16000, 48000) for c in range(2)], axis=1)


def test_a_very_short_or_wrongly_scaled_recording_is_classified_with_a_warning(tiny, tmp_path,
                                                                               caplog):
    """A 0.2 s clip came out "fearful 0.59" and a float WAV at 1e20 "angry 0.84", with no word
    that either result means little."""
    import soundfile as sf

    path, _ = tiny
    t = np.arange(48000) / 16000.0
    voice = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype("float32")
    sf.write(str(tmp_path / "short.wav"), voice[:3200], 16000)
    sf.write(str(tmp_path / "scaled.wav"), voice * 1e20, 16000, subtype="FLOAT")
    sf.write(str(tmp_path / "fine.wav"), voice, 16000, subtype="FLOAT")
    with SpeechClassifier(path) as clf:
        for name in ("short", "scaled", "fine"):
            clf.classify_file(tmp_path / f"{name}.wav")
    assert caplog.text.count("short.wav: 0.20 s long") == 1
    assert caplog.text.count("scaled.wav: samples reach ") == 1
    assert "fine.wav" not in caplog.text
