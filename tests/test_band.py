"""Narrowband recordings go to the narrowband model: the meter, the file test, and ``classify``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given
from hypothesis import strategies as st

from convert.speech.channels import telephone
from edge.cli import main
from edge.features import band as band_module
from edge.features.band import METER_RATE, NARROWBAND_DB, BandMeter, recording_band
from edge.sources.audio_file import load_audio

from .helpers import TINY_MFCC, speech_like_noise, tiny_speech_model

WIDE_TOP_HZ = 7600.0


def _level(x: np.ndarray) -> float | None:
    meter = BandMeter()
    meter.feed(x)
    return meter.upper_db


def test_wideband_speech_is_wide_and_the_same_through_a_call_is_narrow():
    x = speech_like_noise(3.0)
    wide, call = _level(x), _level(telephone(x, METER_RATE))
    assert wide is not None and call is not None
    assert wide > NARROWBAND_DB + 10 and call < NARROWBAND_DB - 5, (wide, call)


def test_silence_has_no_band_and_counts_as_wide():
    meter = BandMeter()
    meter.feed(np.zeros(METER_RATE, np.float32))
    assert meter.upper_db is None and meter.band == "wide"
    meter.feed(np.zeros(10, np.float32))  # shorter than a frame: nothing measured yet
    assert meter.band == "wide"


@given(cuts=st.lists(st.integers(0, 8000), max_size=6))
def test_the_level_does_not_depend_on_how_the_signal_is_cut_into_blocks(cuts):
    x = speech_like_noise(0.5, seed=1)
    meter = BandMeter()
    for block in np.split(x, sorted(cuts)):
        meter.feed(block)
    assert meter.samples == x.size
    assert meter.upper_db == pytest.approx(_level(x), abs=1e-9)


def test_a_file_below_the_wide_models_band_is_narrow_by_its_rate(tmp_path):
    low = tmp_path / "call8k.wav"
    sf.write(low, speech_like_noise(2.0, sr=8000), 8000)
    high = tmp_path / "voice16k.wav"
    sf.write(high, speech_like_noise(2.0), METER_RATE)
    assert recording_band(low, WIDE_TOP_HZ) == "narrow"
    assert recording_band(high, WIDE_TOP_HZ) == "wide"
    assert recording_band(high, 9000.0) == "narrow"  # a top edge the file's rate cannot reach


def test_a_call_saved_at_48_khz_is_narrow_by_its_spectrum(tmp_path):
    x = speech_like_noise(2.0, sr=48000)
    path = tmp_path / "call48k.wav"
    sf.write(path, telephone(x, 48000), 48000)
    assert recording_band(path, WIDE_TOP_HZ) == "narrow"
    sf.write(path, x, 48000)
    assert recording_band(path, WIDE_TOP_HZ) == "wide"


def test_only_the_first_minute_is_measured(tmp_path, monkeypatch):
    """A call followed by wideband sound: judged by its start when the limit stops the meter
    there, by the whole file otherwise (so the limit is what decides)."""
    call = telephone(speech_like_noise(1.0), METER_RATE)
    path = tmp_path / "call_then_music.wav"
    sf.write(path, np.concatenate((call, speech_like_noise(3.0, seed=2))), METER_RATE)
    assert recording_band(path, WIDE_TOP_HZ) == "wide"
    monkeypatch.setattr(band_module, "MAX_SECONDS", 1.0)
    assert recording_band(path, WIDE_TOP_HZ) == "narrow"


@pytest.fixture()
def two_models(tmp_path):
    """A wideband and a narrowband tiny model (random weights: their scores tell them apart)."""
    pytest.importorskip("ai_edge_litert")
    (tmp_path / "w").mkdir()
    (tmp_path / "n").mkdir()
    wide, _ = tiny_speech_model(tmp_path / "w", seed=0)
    narrow_config = dataclasses.replace(TINY_MFCC, low_hz=300.0, high_hz=3400.0)
    narrow, _ = tiny_speech_model(tmp_path / "n", config=narrow_config, seed=1)
    files = {"wide": tmp_path / "voice.wav", "rate": tmp_path / "call8k.wav",
             "spectrum": tmp_path / "call16k.wav"}
    voice = speech_like_noise(2.0)
    sf.write(files["wide"], voice, METER_RATE)
    sf.write(files["rate"], speech_like_noise(2.0, sr=8000, seed=3), 8000)
    sf.write(files["spectrum"], telephone(voice, METER_RATE), METER_RATE)
    return wide, narrow, files


def _models_folder(folder: Path, monkeypatch, models: dict[str, Path]) -> None:
    """``folder`` holding each model (with its manifest) under its shipped name, as the one
    folder ``EMOTION_EDGE_MODELS`` points at."""
    folder.mkdir()
    for name, src in models.items():
        (folder / name).write_bytes(src.read_bytes())
        (folder / name).with_suffix(".json").write_bytes(src.with_suffix(".json").read_bytes())
    monkeypatch.setenv("EMOTION_EDGE_MODELS", str(folder))


def _scores(capsys, argv):
    assert main(["classify", "--json", *argv]) == 0
    return {row["path"]: row["scores"] for row in map(json.loads, capsys.readouterr().out.split(
        "\n")[:-1])}


def test_classify_sends_each_recording_to_the_model_its_band_fills(two_models, capsys):
    wide, narrow, files = two_models
    paths = [str(p) for p in files.values()]
    auto = _scores(capsys, ["--model", str(wide), "--narrow-model", str(narrow), *paths])
    only_wide = _scores(capsys, ["--model", str(wide), "--band", "wide", *paths])
    only_narrow = _scores(capsys, ["--model", str(wide), "--narrow-model", str(narrow),
                                   "--band", "narrow", *paths])
    assert only_wide != only_narrow  # the two models do score differently
    for name, path in zip(files, paths):
        expected = only_wide if name == "wide" else only_narrow
        assert auto[path] == expected[path], name
    # A model of your own, without a narrowband one named: every file is scored by it.
    assert _scores(capsys, ["--model", str(wide), *paths]) == only_wide


def test_the_shipped_narrowband_model_is_found_beside_the_speech_model(two_models, tmp_path,
                                                                       monkeypatch, capsys):
    from edge.models.speech import SPEECH_MODEL_FILE, SPEECH_NARROWBAND_MODEL_FILE

    wide, narrow, files = two_models
    _models_folder(tmp_path / "models", monkeypatch,
                   {SPEECH_MODEL_FILE: wide, SPEECH_NARROWBAND_MODEL_FILE: narrow})
    shipped = _scores(capsys, [str(files["spectrum"])])
    named = _scores(capsys, ["--model", str(wide), "--narrow-model", str(narrow),
                             str(files["spectrum"])])
    assert shipped == named
    assert main(["classify", str(files["spectrum"])]) == 0
    assert ", narrowband model," in capsys.readouterr().out


def test_without_a_narrowband_model_every_file_goes_to_the_wideband_one(two_models, tmp_path,
                                                                       monkeypatch, capsys):
    from edge.models.speech import SPEECH_MODEL_FILE

    wide, _, files = two_models
    _models_folder(tmp_path / "models", monkeypatch, {SPEECH_MODEL_FILE: wide})
    paths = [str(p) for p in files.values()]
    assert _scores(capsys, paths) == _scores(capsys, ["--model", str(wide), *paths])


def test_band_narrow_without_a_narrowband_model_is_one_clear_line(two_models, capsys):
    wide, _, files = two_models
    assert main(["classify", "--model", str(wide), "--band", "narrow",
                 str(files["wide"])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--narrow-model" in err[0] and "Traceback" not in err[0]


@pytest.mark.parametrize("flag", ["--model", "--narrow-model"])
def test_a_model_named_but_missing_stops_before_any_file_naming_its_option(two_models, tmp_path,
                                                                           capsys, flag):
    """Even when every file is wideband: a typo in --narrow-model would otherwise pass unseen
    until a call's recording turned up, and then stop the whole call."""
    wide, narrow, files = two_models
    named = {"--model": str(wide), "--narrow-model": str(narrow)} | {flag: str(tmp_path / "nope")}
    argv = [x for kv in named.items() for x in kv]
    assert main(["classify", *argv, str(files["wide"])]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and f"{flag} {tmp_path / 'nope'}" in lines[0]


def test_the_shipped_narrowband_model_hears_the_voice_band_and_takes_a_call():
    """Its manifest's filters span the voice band, it speaks the wideband model's labels, and
    a shipped demo clip through a call goes to it while the clip as recorded does not."""
    from edge.models.manifest import load_manifest
    from edge.models.speech import SPEECH_MODEL_FILE, SPEECH_NARROWBAND_MODEL_FILE

    repo = Path(__file__).resolve().parent.parent
    narrow_path = repo / "models" / SPEECH_NARROWBAND_MODEL_FILE
    wide = load_manifest(repo / "models" / SPEECH_MODEL_FILE)
    narrow = load_manifest(narrow_path)  # also checks the sha256
    assert (narrow.preprocessing["low_hz"], narrow.preprocessing["high_hz"]) == (300.0, 3400.0)
    assert narrow.labels == wide.labels and narrow.task == "speech"
    loco = narrow.metrics["leave_one_corpus_out"]  # its own figures, as the card quotes them
    assert set(loco["corpora"]) == {"ravdess", "emodb", "nemo", "ased", "emovo"}
    assert round(loco["channels"]["telephone"]["mean_uar"], 3) == 0.375
    assert narrow_path.stat().st_size <= 200 * 1024
    clip = repo / "demo" / "audio" / "03a01Fa.flac"
    top = wide.preprocessing["high_hz"]
    assert recording_band(clip, top) == "wide"
    call = telephone(load_audio(clip, METER_RATE), METER_RATE)
    meter = BandMeter()
    meter.feed(call)
    assert meter.band == "narrow"


def test_each_model_calibrates_on_the_recordings_of_its_band(tmp_path, capsys):
    """``--adapt-from`` with a wideband and a narrowband model: each learns only the calibration
    recordings its band would send it (a call's statistics are not the room's); a model that
    gets none says so in one line and classifies with the training data's statistics."""
    pytest.importorskip("ai_edge_litert")
    from edge.features.adapt import RunningStats
    from edge.models.speech import SpeechClassifier

    # normalize="none": a per-window cmvn would cancel the standardisation under test
    wide_config = dataclasses.replace(TINY_MFCC, normalize="none")
    narrow_config = dataclasses.replace(wide_config, low_hz=300.0, high_hz=3400.0)
    prior = RunningStats.of(np.random.default_rng(1).normal(0, 1, (500, wide_config.n_columns)))
    models = {}
    for band, config, seed in (("wide", wide_config, 0), ("narrow", narrow_config, 1)):
        (tmp_path / band).mkdir()
        models[band], _ = tiny_speech_model(tmp_path / band, config=config, seed=seed,
                                            adapt_prior=prior)
    voice = speech_like_noise(3.0, seed=4)
    files = {"wide": tmp_path / "voice.wav", "narrow": tmp_path / "call.wav"}
    sf.write(files["wide"], voice, METER_RATE)
    sf.write(files["narrow"], telephone(voice, METER_RATE), METER_RATE)
    # A loud room and a quiet hiss through a call, 30 s each (so each moves its model's
    # statistics a third of the way), for learning the other band's recording to show.
    calibration = {"wide": tmp_path / "room.wav", "narrow": tmp_path / "call_before.wav"}
    sf.write(calibration["wide"], 3.0 * speech_like_noise(30.0, seed=5), METER_RATE)
    t = np.arange(30 * METER_RATE) / METER_RATE
    hiss = 0.02 * np.random.default_rng(6).standard_normal(t.size) * (1 + np.sin(25 * t))
    sf.write(calibration["narrow"], telephone(hiss.astype(np.float32), METER_RATE), METER_RATE)

    def expected(band, recordings):
        with SpeechClassifier(models[band]) as clf:
            for path in recordings:
                assert clf.observe_file(path) > 0
            return clf.classify_file(files[band]).scores

    def classify(*recordings):
        argv = ["classify", "--json", "--model", str(models["wide"]), "--narrow-model",
                str(models["narrow"]), *(a for r in recordings for a in ("--adapt-from", str(r))),
                *map(str, files.values())]
        assert main(argv) == 0
        out, err = capsys.readouterr()
        return {row["path"]: row["scores"] for row in map(json.loads, out.splitlines())}, err

    both, err = classify(*calibration.values())
    assert not err
    for band, path in files.items():
        assert both[str(path)] == pytest.approx(expected(band, [calibration[band]]), abs=1e-4)
        assert both[str(path)] != pytest.approx(expected(band, calibration.values()), abs=1e-3)

    room_only, err = classify(calibration["wide"])
    assert room_only[str(files["wide"])] == both[str(files["wide"])]
    assert room_only[str(files["narrow"])] == pytest.approx(expected("narrow", []), abs=1e-4)
    assert err.count("\n") == 1 and "no calibration recording in the narrowband" in err


def test_a_recording_sampled_below_the_models_band_is_classified_with_a_warning(two_models,
                                                                                tmp_path, capsys,
                                                                                caplog):
    """Resampling cannot bring back what a low rate never recorded: the file is still
    classified, with one warning saying its result is unreliable; a file that fills the band
    of the model it goes to gets none."""
    import logging

    wide, narrow, files = two_models
    low = tmp_path / "call4k.wav"
    sf.write(low, speech_like_noise(2.0, sr=4000, seed=4), 4000)
    models = ["--model", str(wide), "--narrow-model", str(narrow)]
    with caplog.at_level(logging.WARNING):
        assert main(["classify", "--json", *models, str(low), str(files["rate"]),
                     str(files["wide"])]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and str(low) in warned[0] and "4000 Hz" in warned[0], warned
    assert narrow.name in warned[0] and "unreliable" in warned[0]
    # Forced onto the wideband model, the 8 kHz call is below its band too.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["classify", "--json", *models, "--band", "wide", str(files["rate"])]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "8000 Hz" in warned[0] and wide.name in warned[0], warned
