"""Adapting to a deployment: running statistics equal batch ones, the state survives restarts and
resets, a corrupt state is a fresh start, and the speech classifier standardises with what it
heard (no audio kept)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edge.errors import ConfigError, ModelError
from edge.features.adapt import DeploymentNormalizer, RunningStats, feature_space, speech_frames

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 60), st.just(3)), elements=finite),
       st.integers(0, 60))
def test_merging_running_statistics_equals_the_batch_statistics(x, cut):
    cut = min(cut, len(x))
    a, b = RunningStats.of(x[:cut]), RunningStats.of(x[cut:])
    both = a.merged(b)
    assert both.count == len(x)
    np.testing.assert_allclose(both.mean, x.mean(axis=0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(both.var, x.var(axis=0), rtol=1e-7, atol=1e-6)
    streamed = RunningStats.empty(3)
    for row in x:
        streamed.update(row[None])
    np.testing.assert_allclose(streamed.var, x.var(axis=0), rtol=1e-7, atol=1e-6)


def test_a_fresh_device_uses_the_prior_and_moves_to_what_it_hears(tmp_path):
    rng = np.random.default_rng(0)
    prior = RunningStats.of(rng.normal(0.0, 1.0, (5000, 2)))
    room = rng.normal([10.0, -5.0], [2.0, 0.5], (20000, 2))
    norm = DeploymentNormalizer(prior, prior_frames=100, state_file=tmp_path / "s.json")
    np.testing.assert_allclose(norm.normalize(np.zeros((1, 2)))[0], -prior.mean / prior.std,
                               atol=1e-9)
    norm.observe(room)
    z = norm.normalize(room)
    assert np.all(np.abs(z.mean(axis=0)) < 0.05) and np.all(np.abs(z.std(axis=0) - 1) < 0.05)
    norm.save()
    state = json.loads((tmp_path / "s.json").read_text())
    assert set(state["heard"]) == {"count", "mean", "var"}  # statistics only, never audio
    again = DeploymentNormalizer(prior, prior_frames=100, state_file=tmp_path / "s.json")
    assert again.frames_heard == pytest.approx(20000)
    np.testing.assert_allclose(again.normalize(room), z)
    again.reset()
    assert again.frames_heard == 0 and not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("content", [b"{not json", b'{"heard": {"count": -1, "mean": [0, 0], '
                                     b'"var": [1, 1]}}', b'{"heard": {"count": 5, "mean": [NaN, 0], '
                                     b'"var": [1, 1]}}',
                                     b'{"heard": {"count": 5, "mean": [0, \xff\xfe]}}',  # not UTF-8
                                     b"{" * 200_000,  # nested past Python's recursion
                                     b"\0" * 4096 + b'{"heard": {}}'])  # zeroed by a power cut
def test_a_damaged_state_is_set_aside_and_a_fresh_start(tmp_path, caplog, content):
    path = tmp_path / "s.json"
    path.write_bytes(content)
    norm = DeploymentNormalizer(RunningStats.of(np.ones((3, 2))), state_file=path)
    assert norm.frames_heard == 0
    assert "starting fresh" in caplog.text and str(path) in caplog.text
    assert (tmp_path / "s.json.damaged").read_bytes() == content  # kept, not written over
    norm.observe(np.ones((10, 2)))
    norm.save()
    assert DeploymentNormalizer(RunningStats.of(np.ones((3, 2))),
                                state_file=path).frames_heard == 10


@pytest.mark.parametrize("content", [b"[models]\nspeech = 'x.tflite'\n", b"RIFF\x00\x00WAVE",
                                     b"\xff\xfe\x00garbage", b"[" * 200_000])
def test_a_file_that_is_not_a_state_is_refused_not_replaced(tmp_path, content):
    """adapt.state_file naming the config or a recording: each save replaced it."""
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"is not an adaptation state .* choose another "
                                          r"adapt.state_file"):
        DeploymentNormalizer(RunningStats.of(np.ones((3, 2))), state_file=path)
    assert path.read_bytes() == content


def test_a_state_file_that_cannot_be_read_is_kept_and_not_written_over(tmp_path, caplog,
                                                                       monkeypatch):
    """Another user's file (e.g. written by `sudo adapt --learn`): a run that cannot read it must
    not replace what it holds with the little it hears."""
    from pathlib import Path

    path = tmp_path / "s.json"
    prior = RunningStats.of(np.ones((3, 2)))
    first = DeploymentNormalizer(prior, state_file=path)
    first.observe(np.zeros((500, 2)))
    first.save()
    kept = path.read_bytes()
    real = Path.read_bytes

    def refuse(self):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    norm = DeploymentNormalizer(prior, state_file=path)
    norm.observe(np.ones((10, 2)))
    norm.save()
    assert real(path) == kept
    assert "is kept" in caplog.text and "Permission denied" in caplog.text


def test_root_is_refused_a_state_in_another_users_folder(tmp_path, monkeypatch):
    """`sudo emotion-edge adapt --learn` in the service's folder: root saved there by path, and
    the service's user could swap the temporary file for a link (root then handed /etc/shadow
    to it).  As root, a state in another user's folder is refused, naming the user to be."""
    import os
    import pwd

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    folder = tmp_path / "service"
    folder.mkdir()
    prior = RunningStats.of(np.ones((3, 2)))
    DeploymentNormalizer(prior, state_file=folder / "s.json").save()  # root's own folder
    if os.getuid() != 0:
        pytest.skip("needs root to give the folder to another user")
    os.chown(folder, 1, 1)
    name = pwd.getpwuid(1).pw_name
    with pytest.raises(ConfigError, match=rf"belongs to {name}.*sudo -u {name} emotion-edge"):
        DeploymentNormalizer(prior, state_file=folder / "s.json")
    with pytest.raises(ConfigError, match="belongs to"):  # a folder not made yet: its parent's
        DeploymentNormalizer(prior, state_file=folder / "new" / "s.json")


def test_another_models_features_start_fresh_and_each_keeps_its_own_statistics(tmp_path,
                                                                                caplog):
    """Two models with as many dimensions but other features (the wideband and narrowband
    models) take turns on one state file: neither uses the other's statistics, and neither's
    are lost when the other runs."""
    rng = np.random.default_rng(4)
    path = tmp_path / "s.json"
    prior = RunningStats.of(rng.normal(0, 1, (500, 2)))
    wide_room, narrow_room = rng.normal(3, 2, (4000, 2)), rng.normal(-7, 0.5, (1000, 2))

    def run(space, room=None):
        norm = DeploymentNormalizer(prior, state_file=path, space=space)
        if room is not None:
            norm.observe(room)
            norm.save()
        return norm

    run("wide", wide_room)
    caplog.clear()
    narrow = run("narrow")
    assert narrow.frames_heard == 0 and "other features" in caplog.text and str(path) in caplog.text
    narrow.observe(narrow_room)
    narrow.save()
    wide = run("wide")  # back: its own statistics, not the narrowband room's
    assert wide.frames_heard == 4000
    np.testing.assert_allclose(wide.heard.mean, wide_room.mean(axis=0))
    wide.save()
    again = run("narrow")
    assert again.frames_heard == 1000
    np.testing.assert_allclose(again.heard.mean, narrow_room.mean(axis=0))


def test_a_rooms_statistics_outlive_an_upgrade_to_a_model_that_reads_the_same_frames(tmp_path):
    """The statistics describe the raw frames: a model that only standardises, clips, normalises
    or pools its windows otherwise (the 2026-12 upgrade: loudness per window and a change row)
    takes up the room's statistics, also those a release before it saved under the name it gave
    every setting; a model on another band starts fresh, keeping them."""
    from edge.features.adapt import read_statistics
    from edge.features.mfcc import MfccConfig

    base = dict(n_mels=40, n_ceps=40, lifter=0, window="hamming", prosody=True, prosody_step=2)
    before = MfccConfig(**base, high_hz=7600.0, pooling="frames_mean_std", clip=8.0)
    after = MfccConfig(**base, high_hz=7600.0, pooling="frames_mean_std_delta", clip=8.0,
                       normalize_level=True)
    band = MfccConfig(**base, low_hz=300.0, high_hz=3400.0, pooling="frames_mean_std_delta",
                      clip=8.0, normalize_level=True)
    space, aliases = after.statistics_space()
    band_space, band_aliases = band.statistics_space()
    assert before.statistics_space()[0] == space and band_space != space
    room = RunningStats.of(np.random.default_rng(6).normal(2, 1, (700, 3)))
    prior = RunningStats.of(np.ones((3, 3)))
    for saved_as in (feature_space(before.to_dict()), before.statistics_space()[0]):
        path = tmp_path / "s.json"
        path.write_text(json.dumps({"heard": room.to_dict(), "features": saved_as}))
        assert read_statistics(path, space, 3, aliases) is not None
        assert read_statistics(path, band_space, 3, band_aliases) is None
        norm = DeploymentNormalizer(prior, state_file=path, space=space, aliases=aliases)
        assert norm.frames_heard == 700
        norm.save()
        assert json.loads(path.read_text())["features"] == space  # saved under its new name
        other = DeploymentNormalizer(prior, state_file=path, space=band_space,
                                     aliases=band_aliases)
        assert other.frames_heard == 0
        other.save()
        again = DeploymentNormalizer(prior, state_file=path, space=space, aliases=aliases)
        assert again.frames_heard == 700  # kept while the other model ran


def test_a_spaces_earlier_names_are_built_only_for_a_state_saved_under_another_name(tmp_path):
    """Building the names earlier releases gave a space validates about 120 configs on every
    speech model's open; a state file under the space's own name, or none, never needs them."""
    from collections.abc import Collection, Iterator

    from edge.features.adapt import read_statistics

    class Unbuilt(Collection[str]):
        def __contains__(self, name: object) -> bool:
            raise AssertionError("the earlier names were built")

        def __iter__(self) -> Iterator[str]:
            raise AssertionError("the earlier names were built")

        def __len__(self) -> int:
            raise AssertionError("the earlier names were built")

    room = RunningStats.of(np.random.default_rng(7).normal(2, 1, (300, 3)))
    prior = RunningStats.of(np.ones((3, 3)))
    assert DeploymentNormalizer(prior, space="now", aliases=Unbuilt()).frames_heard == 0
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"heard": room.to_dict(), "features": "now"}))
    assert DeploymentNormalizer(prior, state_file=path, space="now",
                                aliases=Unbuilt()).frames_heard == 300
    assert read_statistics(path, "now", 3, Unbuilt()) is not None
    # Kept under its own name while another model ran: found before the earlier names.
    path.write_text(json.dumps({"heard": RunningStats.of(np.ones((5, 2))).to_dict(),
                                "features": "narrow", "kept": {"now": room.to_dict()}}))
    assert DeploymentNormalizer(prior, state_file=path, space="now",
                                aliases=Unbuilt()).frames_heard == 300
    # Under another name they are asked for, as MfccConfig.statistics_space gives them.
    from edge.features.mfcc import MfccConfig

    config = MfccConfig(prosody=True, pooling="frames_mean_std", clip=8.0)
    space, aliases = config.statistics_space()
    path.write_text(json.dumps({"heard": room.to_dict(), "features": feature_space(
        config.to_dict())}))
    assert DeploymentNormalizer(prior, state_file=path, space=space,
                                aliases=aliases).frames_heard == 300


def test_a_state_written_before_spaces_were_named_is_taken_up(tmp_path):
    path = tmp_path / "s.json"
    stats = RunningStats.of(np.random.default_rng(5).normal(2, 1, (300, 2)))
    path.write_text(json.dumps({"heard": stats.to_dict()}))
    norm = DeploymentNormalizer(RunningStats.of(np.ones((3, 2))), state_file=path, space="wide")
    assert norm.frames_heard == 300
    norm.save()
    assert json.loads(path.read_text())["features"] == "wide"


def test_the_feature_space_follows_the_features_only():
    from edge.features import MfccConfig

    wide = MfccConfig(n_mels=40, n_ceps=40, high_hz=7600.0)
    assert feature_space(wide.to_dict()) == feature_space(MfccConfig(**wide.to_dict()).to_dict())
    assert feature_space(wide.to_dict()) != feature_space(
        MfccConfig(n_mels=40, n_ceps=40, low_hz=300.0, high_hz=3400.0).to_dict())


def test_with_no_prior_weight_the_device_uses_only_what_it_heard():
    rng = np.random.default_rng(2)
    prior = RunningStats.of(rng.normal(3.0, 2.0, (4000, 1)))
    norm = DeploymentNormalizer(prior, prior_frames=0)
    np.testing.assert_allclose(norm.normalize([[3.0 + 2.0]]), [[1.0]], atol=0.1)  # nothing heard
    room = rng.normal(-1.0, 0.5, (4000, 1))
    norm.observe(room)
    np.testing.assert_allclose(norm.normalize([[-1.0 + 0.5]]), [[1.0]], atol=0.1)


def test_non_finite_frames_are_not_learnt():
    norm = DeploymentNormalizer(RunningStats.of(np.ones((3, 2))))
    norm.observe(np.array([[np.nan, 1.0]]))
    assert norm.frames_heard == 0
    with pytest.raises(ModelError):
        RunningStats.from_dict({"count": 1, "mean": [0.0], "var": [-1.0]})


def test_speech_frames_leave_out_the_pauses():
    frames = np.arange(10.0)[:, None]
    level = np.array([-20.0] * 5 + [-90.0] * 5)
    assert speech_frames(frames, level).ravel().tolist() == [0, 1, 2, 3, 4]


@pytest.fixture(scope="module")
def adapting_model(tmp_path_factory):
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    from edge.features import MfccConfig

    from .helpers import tiny_speech_model

    # normalize="none": a per-window cmvn would cancel any per-dimension standardisation
    config = MfccConfig(n_mels=20, n_ceps=13, window="hamming", normalize="none")
    prior = RunningStats.of(np.random.default_rng(1).normal(0, 5, (500, config.n_ceps)))
    path, _ = tiny_speech_model(tmp_path_factory.mktemp("adapt"), adapt_prior=prior,
                                config=config)
    return path


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    bursts = np.clip(np.sin(2 * np.pi * 3 * t), 0, None) ** 2
    return (0.3 * bursts * np.sin(2 * np.pi * 180 * t) + 1e-3 * rng.standard_normal(t.size)
            ).astype(np.float32)


def test_the_stream_learns_each_speech_frame_once_and_keeps_it_across_restarts(adapting_model,
                                                                                tmp_path):
    from edge.models.speech import SpeechClassifier, SpeechStream

    state = tmp_path / "state.json"
    x = _speechlike(6.0)
    with SpeechClassifier(adapting_model, adapt_state=state) as clf:
        stream = SpeechStream(clf)
        results = [r for i in range(0, x.size, 1600) for r in stream.feed(x[i:i + 1600])]
        results += stream.flush()
        assert any(r.speech for r in results)
        heard = clf.adaptation.frames_heard
        # every frame at most once: no more than the signal's frames, though windows overlap
        assert 0 < heard <= clf.mfcc.num_frames(x.size)
    assert state.is_file()  # written when the classifier closed
    with SpeechClassifier(adapting_model, adapt_state=state) as again:
        assert again.adaptation.frames_heard == heard
    with SpeechClassifier(adapting_model, adapt_state=state, adapt=False) as frozen:
        frozen.observe_signal(x)
        assert frozen.adaptation.frames_heard == 0  # adapt.enabled = false learns nothing


def test_adapting_changes_the_model_input_as_the_statistics_say(adapting_model):
    from edge.models.speech import SpeechClassifier

    with SpeechClassifier(adapting_model) as clf:
        frames = clf.mfcc(_speechlike(3.0, seed=2))[: clf.window_frames]
        before = clf.model_input(frames)
        assert clf.observe_signal(_speechlike(30.0, seed=3)) > 0
        after = clf.model_input(frames)
        np.testing.assert_allclose(after[..., 0], clf.adaptation.normalize(frames), atol=1e-5)
        assert not np.allclose(before, after)


def _wav(path, signal):
    import soundfile as sf

    sf.write(str(path), signal, 16000)
    return path


def test_a_calibration_recording_standardises_every_file(adapting_model, tmp_path, capsys):
    """``classify --adapt-from``: the statistics of the recording's speech are blended with the
    training data's as the device blends what it hears (``adapt.prior_frames``), for every
    file; an unreadable recording is one line naming it, and the files are still classified;
    a recording without speech changes nothing."""
    from edge.cli import main
    from edge.config import AdaptConfig
    from edge.models.speech import SpeechClassifier

    files = [_wav(tmp_path / f"f{i}.wav", _speechlike(3.0, seed=10 + i)) for i in range(2)]
    calibration = _wav(tmp_path / "me.wav", 3.0 * _speechlike(8.0, seed=3))

    def classify(*extra):
        code = main(["classify", "--json", "--model", str(adapting_model), *extra,
                     *map(str, files)])
        captured = capsys.readouterr()
        return code, [json.loads(line)["scores"] for line in captured.out.splitlines()], \
            captured.err

    _, fresh, _ = classify("--fresh")
    code, calibrated, err = classify("--adapt-from", str(calibration))
    assert code == 0 and not err
    prior_frames = AdaptConfig().prior_frames
    with SpeechClassifier(adapting_model, adapt_prior_frames=prior_frames) as clf:
        assert clf.observe_file(calibration) > 0
        expected = [clf.classify_file(f).scores for f in files]
        heard, prior = clf.adaptation.heard, clf.adaptation.prior
        # A few seconds of speech move the statistics part of the way, not all of it.
        share = heard.count / (heard.count + prior_frames)
        assert 0 < share < 0.5
        np.testing.assert_allclose(clf.adaptation._mean,
                                   (1 - share) * prior.mean + share * heard.mean)
    for got, want in zip(calibrated, expected):
        assert got == pytest.approx(want, abs=1e-4)
    assert any(got != pytest.approx(before, abs=1e-3) for got, before in zip(calibrated, fresh))

    damaged = tmp_path / "damaged.wav"
    damaged.write_bytes(b"RIFF not really")
    code, scores, err = classify("--adapt-from", str(damaged), "--adapt-from", str(calibration))
    assert code == 1 and len(scores) == 2
    assert err.count("\n") == 1 and "calibration recording" in err and "damaged.wav" in err
    for got, want in zip(scores, expected):
        assert got == pytest.approx(want, abs=1e-4)

    code, scores, err = classify("--adapt-from", str(damaged))  # nothing readable: said so
    assert code == 1 and len(scores) == 2 and "no speech" not in err
    assert "damaged.wav" in err and "no readable calibration recording" in err
    for got, want in zip(scores, fresh):
        assert got == pytest.approx(want, abs=1e-6)

    silent = _wav(tmp_path / "silence.wav", np.zeros(32000, np.float32))
    code, scores, err = classify("--adapt-from", str(silent))
    assert code == 0 and "no speech in the calibration recording" in err
    for got, want in zip(scores, fresh):
        assert got == pytest.approx(want, abs=1e-6)


def test_classify_adapts_to_the_files_of_one_call_by_default(adapting_model, tmp_path, capsys):
    """Without a flag ``classify`` hears its files as a device hears its room: their speech
    statistics blended with the training data's, then each file classified; ``--adapt`` says
    the same, ``--fresh`` classifies each file with the training data's statistics alone.  A
    model without an adaptation prior classifies as before, warning only when asked to adapt."""
    from edge.cli import main
    from edge.config import AdaptConfig
    from edge.models.speech import SpeechClassifier

    from .helpers import tiny_speech_model

    files = [_wav(tmp_path / f"f{i}.wav", (1.0 + i) * _speechlike(4.0, seed=20 + i))
             for i in range(3)]

    def classify(*extra, model=adapting_model):
        code = main(["classify", "--json", "--model", str(model), *extra, *map(str, files)])
        captured = capsys.readouterr()
        assert code == 0
        return [json.loads(line)["scores"] for line in captured.out.splitlines()], captured.err

    default, err = classify()
    assert not err
    with SpeechClassifier(adapting_model, adapt_prior_frames=AdaptConfig().prior_frames) as clf:
        assert sum(clf.observe_file(f) for f in files) > 0
        expected = [clf.classify_file(f).scores for f in files]
    with SpeechClassifier(adapting_model) as clf:
        fresh = [clf.classify_file(f).scores for f in files]
    for got, want in zip(default, expected, strict=True):
        assert got == pytest.approx(want, abs=1e-4)
    assert classify("--adapt")[0] == default
    assert classify("--fresh")[0] == [pytest.approx(f, abs=1e-4) for f in fresh]
    assert any(d != pytest.approx(f, abs=1e-3) for d, f in zip(default, fresh))

    plain, _ = tiny_speech_model(tmp_path / "plain")
    assert classify(model=plain)[1] == ""
    assert "does not adapt" in classify("--adapt", model=plain)[1]


def test_the_appliance_learns_recordings_into_its_state(adapting_model, tmp_path, capsys):
    """``emotion-edge adapt --learn``: the recordings' speech joins the state the appliance
    resumes from, as if it had heard them; an unreadable one is one line, the others are learnt."""
    from edge.cli import main
    from edge.models.speech import SpeechClassifier

    state = tmp_path / "adapt.json"
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"[models]\nspeech = '{adapting_model}'\n[adapt]\nstate_file = '{state}'\n")
    room = _wav(tmp_path / "room.wav", _speechlike(8.0, seed=4))
    damaged = tmp_path / "damaged.wav"
    damaged.write_bytes(b"RIFF not really")

    assert main(["adapt", "--config", str(cfg), "--learn", str(damaged), str(room)]) == 1
    captured = capsys.readouterr()
    assert "damaged.wav" in captured.err and "room.wav:" in captured.err
    with SpeechClassifier(adapting_model) as clf:
        clf.observe_file(room)
        expected = clf.adaptation.heard
    with SpeechClassifier(adapting_model, adapt_state=state) as resumed:
        assert resumed.adaptation.frames_heard == expected.count > 0
        np.testing.assert_allclose(resumed.adaptation.heard.mean, expected.mean)
    assert f"{expected.count / 100:.0f} s of speech heard" in captured.out
    # Learning again adds to it.
    assert main(["adapt", "--config", str(cfg), "--learn", str(room), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["speech_s"] == pytest.approx(round(2 * expected.count / 100, 1))

    assert main(["adapt", "--config", str(cfg), "--set", "adapt.enabled=false",
                 "--learn", str(room)]) == 2
    assert "adapt.enabled = false" in capsys.readouterr().err


def test_a_phone_call_is_not_learnt_as_the_room(adapting_model, tmp_path, capsys):
    """The appliance's microphone is wideband: a call saved at 8 kHz would teach it the
    statistics of a phone line.  It is named and left out; the room's recording is learnt."""
    import soundfile as sf

    from edge.cli import main
    from edge.models.speech import SpeechClassifier

    state = tmp_path / "adapt.json"
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"[models]\nspeech = '{adapting_model}'\n[adapt]\nstate_file = '{state}'\n")
    room = _wav(tmp_path / "room.wav", _speechlike(8.0, seed=4))
    call = tmp_path / "call.wav"
    sf.write(str(call), _speechlike(8.0, seed=5)[::2], 8000)
    assert main(["adapt", "--config", str(cfg), "--learn", str(call), str(room)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert sum("call.wav" in line for line in err) == 1
    assert any("call.wav" in line and "not learnt" in line for line in err)
    with SpeechClassifier(adapting_model) as clf:
        clf.observe_file(room)
        expected = clf.adaptation.heard.count
    with SpeechClassifier(adapting_model, adapt_state=state) as resumed:
        assert resumed.adaptation.frames_heard == expected > 0


def test_adapt_on_a_state_file_it_cannot_read_says_whose_it_is(adapting_model, tmp_path, capsys,
                                                               monkeypatch):
    """`adapt` (show or --learn) as a user who cannot read the service's file: one line naming
    the user to run it as, not a reset that would throw the statistics away; the file stays."""
    from pathlib import Path

    from edge.cli import main

    state = tmp_path / "adapt.json"
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"[models]\nspeech = '{adapting_model}'\n[adapt]\nstate_file = '{state}'\n")
    room = _wav(tmp_path / "room.wav", _speechlike(4.0, seed=4))
    assert main(["adapt", "--config", str(cfg), "--learn", str(room)]) == 0
    capsys.readouterr()
    kept = state.read_bytes()
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: (_ for _ in ()).throw(
        PermissionError(13, "Permission denied", str(self))) if self == state else real(self))
    for argv in ([], ["--learn", str(room)]):
        assert main(["adapt", "--config", str(cfg), *argv]) == 2
        err = capsys.readouterr().err
        assert "sudo -u emotion-edge" in err and "--reset" not in err, err
    assert real(state) == kept


def test_a_state_that_cannot_be_saved_is_said_once_with_the_fix(adapting_model, tmp_path,
                                                                  caplog):
    """The appliance saves every minute: an unwritable folder is one warning naming the fix,
    not one per minute; a save that works again says so."""
    import logging

    from edge.models.speech import SpeechClassifier

    folder = tmp_path / "state"
    folder.write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING, logger="edge.models.speech"):
        clf = SpeechClassifier(adapting_model, adapt_state=folder / "adapt.json")
        for _ in range(3):
            clf.save_adaptation()
        folder.unlink()
        clf.save_adaptation()
        clf.close()
    warned = [r.getMessage() for r in caplog.records if r.name == "edge.models.speech"]
    assert len(warned) == 2 and "adapt.state_file" in warned[0] and "saved again" in warned[1]


def test_a_recording_that_fails_part_way_teaches_nothing(adapting_model, tmp_path):
    """A recording reported as failed (NaN samples 20 s in) had what came before the failure
    learnt, and counted again once the file was fixed.  A recording cut short is no failure:
    what is there is learnt, and classified, with a warning."""
    import soundfile as sf

    from edge.errors import AudioFileError
    from edge.models.speech import SpeechClassifier

    x = _speechlike(30.0, seed=6)
    whole = tmp_path / "whole.flac"
    sf.write(str(whole), x, 16000)
    broken = x.copy()
    broken[16000 * 20] = np.nan
    failing = tmp_path / "failing.wav"
    sf.write(str(failing), broken, 16000, subtype="FLOAT")
    cut = tmp_path / "cut.flac"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.8)])
    with SpeechClassifier(adapting_model) as clf:
        with pytest.raises(AudioFileError, match="NaN"):
            clf.observe_file(failing)
        assert clf.adaptation.frames_heard == 0
        windows = clf.observe_file(whole)
        assert windows > 0 and clf.adaptation.frames_heard > 0
        assert 0 < clf.observe_file(cut) < windows


def test_adapt_learn_says_when_nothing_could_be_kept(adapting_model, tmp_path, capsys):
    """It printed "learnt" and exited 0 with the state file in a place it could not write."""
    from edge.cli import main

    (tmp_path / "a-file").write_text("")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"[models]\nspeech = '{adapting_model}'\n[adapt]\n"
                   f"state_file = '{tmp_path / 'a-file' / 'adapt.json'}'\n")
    room = _wav(tmp_path / "room.wav", _speechlike(8.0, seed=4))
    assert main(["adapt", "--config", str(cfg), "--learn", str(room)]) == 2
    err = capsys.readouterr().err
    assert "nothing learnt was kept" in err and "Traceback" not in err
    assert "a file stands where a folder of its path should be" in err  # not "make it writable"


def test_a_full_disk_is_named_as_one(adapting_model, tmp_path, monkeypatch, caplog):
    import errno
    import os

    from edge.models.speech import SpeechClassifier

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with SpeechClassifier(adapting_model, adapt_state=tmp_path / "s.json") as clf:
        monkeypatch.setattr(os, "fsync", full)
        clf.save_adaptation()
        monkeypatch.undo()
    assert "No space left on device" in caplog.text and "free some space" in caplog.text
    assert "writable" not in caplog.text


def test_adapt_learns_a_recording_named_twice_once_and_resets_in_json(adapting_model, tmp_path,
                                                                    capsys):
    from edge.cli import main

    state = tmp_path / "adapt.json"
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"[models]\nspeech = '{adapting_model}'\n[adapt]\nstate_file = '{state}'\n")
    room = _wav(tmp_path / "room.wav", _speechlike(8.0, seed=4))
    assert main(["adapt", "--config", str(cfg), "--learn", str(room), "--json"]) == 0
    once = json.loads(capsys.readouterr().out)["speech_s"]
    state.unlink()
    assert main(["adapt", "--config", str(cfg), "--learn", str(room),
                 str(tmp_path / "." / "room.wav"), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["speech_s"] == once and "named twice" in captured.err
    assert main(["adapt", "--config", str(cfg), "--reset", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"state_file": str(state), "removed": True}


def test_adapt_waits_for_the_appliance_that_writes_the_state(adapting_model, tmp_path, capsys):
    """While a run holds adapt.state_file (edge.files), ``--learn`` and ``--reset`` are refused
    in one line: the run would write its own statistics over theirs at its next save.  Showing
    what was heard is still allowed."""
    from edge.cli import main
    from edge.files import WriterLock

    state = tmp_path / "adapt.json"
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"[models]\nspeech = '{adapting_model}'\n[adapt]\nstate_file = '{state}'\n")
    room = _wav(tmp_path / "room.wav", _speechlike(8.0, seed=4))
    assert main(["adapt", "--config", str(cfg), "--learn", str(room)]) == 0
    learnt = state.read_bytes()
    capsys.readouterr()
    with WriterLock(state, setting="adapt.state_file", fix="") as service:
        assert service.held
        for change in (["--learn", str(room)], ["--reset"]):
            assert main(["adapt", "--config", str(cfg), *change]) == 75  # busy
            err = capsys.readouterr().err.strip().splitlines()
            assert err == [f"emotion-edge: error: adapt.state_file {state} is in use by another "
                           f"emotion-edge process (the service? `systemctl status emotion-edge` "
                           f"tells); stop the service first (sudo systemctl stop emotion-edge): "
                           f"it would write its own statistics over what this changes; start "
                           f"it again after"]
            assert state.read_bytes() == learnt
        assert main(["adapt", "--config", str(cfg), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["speech_s"] > 0
    assert main(["adapt", "--config", str(cfg), "--reset"]) == 0 and not state.exists()


def test_a_state_file_that_is_a_link_stays_one(tmp_path, monkeypatch):
    """A state kept on other storage through a link: the save replaced the link with a file,
    and the storage it named stopped being updated.  (The user's own link: as root a link is
    refused, whoever made it chooses where root writes.)"""
    import os

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    stored = tmp_path / "usb" / "state.json"
    stored.parent.mkdir()
    link = tmp_path / "speech-adaptation.json"
    link.symlink_to(stored)
    norm = DeploymentNormalizer(RunningStats.of(np.ones((3, 2))), state_file=link)
    norm.observe(np.ones((10, 2)))
    norm.save()
    assert link.is_symlink() and stored.is_file()
    assert DeploymentNormalizer(RunningStats.of(np.ones((3, 2))),
                                state_file=stored).frames_heard == 10


def test_a_run_split_into_calls_classifies_as_one_call_through_saved_statistics(tmp_path, capsys):
    """A collection split into calls (xargs does it past 128 KiB of names) or an interrupted run
    resumed adapted each call to its own share of the files: a tenth of the labels changed.
    --files-from takes any number of files in one call, --save-adaptation keeps the statistics
    that call adapted with, and --adapt-from FILE.json classifies more files with them."""
    from pathlib import Path

    import soundfile as sf

    from edge.cli import main
    from edge.sources.audio_file import load_audio

    demo = Path(__file__).resolve().parent.parent / "demo" / "audio"
    clips = sorted(demo.glob("*.flac"))
    call = tmp_path / "call.wav"  # nothing above 4 kHz: the narrowband model's
    sf.write(str(call), load_audio(clips[0], 8000), 8000)
    files = [*clips, call]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(map(str, files)) + "\n\n")
    stats = tmp_path / "stats.json"

    def classify(*argv):
        code = main(["classify", "--json", *argv])
        out, err = capsys.readouterr()
        return code, out.splitlines(), err

    code, whole, err = classify("--files-from", str(listing), "--save-adaptation", str(stats))
    assert code == 0 and len(whole) == len(files) and f"saved to {stats}" in err
    parts = []
    for chunk in (files[:2], files[2:]):
        code, lines, err = classify("--adapt-from", str(stats), *map(str, chunk))
        assert code == 0 and not err, err
        parts += lines
    assert parts == whole
    _, alone, _ = classify(*map(str, files[:2]))  # adapting to its own two files
    assert alone != whole[:2]

    assert main(["classify", "--fresh", "--save-adaptation", str(stats), str(call)]) == 2
    assert main(["classify", "--files-from", str(tmp_path / "empty.txt")]) == 2
    assert main(["classify", "--files-from", "/dev/zero"]) == 2  # one endless line: refused
    (tmp_path / "empty.txt").write_text("\n")
    assert main(["classify", "--files-from", str(tmp_path / "empty.txt")]) == 2
    code, twice, _ = classify("--adapt-from", str(stats), "--adapt-from", str(stats),
                              *map(str, files[:2]))
    assert twice == whole[:2]  # the same statistics named twice count once

    # Refused before any work, in one line, leaving the file as it was: a recording named
    # where the statistics go (the value left out: the first FILE taken for it), a file that
    # is not statistics, a missing folder; and --adapt-from of what is not statistics.
    before = call.read_bytes()
    other = tmp_path / "other.json"
    other.write_text('{"a": 1}')
    for target, words in ((call, "name a .json file"), (other, "is not adaptation statistics"),
                          (tmp_path / "no" / "s.json", "does not exist")):
        code, lines, err = classify("--save-adaptation", str(target), str(clips[0]))
        assert code == 2 and not lines and err.count("\n") == 1 and words in err, err
    assert call.read_bytes() == before and other.read_text() == '{"a": 1}'
    for named_file, words in ((other, "not adaptation statistics"),
                              (tmp_path / "gone.json", "no such file")):
        code, lines, err = classify("--adapt-from", str(named_file), str(call))
        assert code == 2 and not lines and err.count("\n") == 1 and words in err, err
