"""emotion-convert speech end to end on a tiny synthetic corpus, and the protocol's invariants."""

from __future__ import annotations

import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convert.metrics import classification_metrics
from convert.speech.corpora import Utterance, index_csv
from convert.speech.evaluate import speaker_folds
from edge.errors import ConfigError
from edge.labels import fusion_map_for

LABELS = ("neutral", "happy", "sad", "angry")


def synth_clip(path: Path, label: int, speaker: int, take: int, rate: int = 22050) -> None:
    """Syllable-like bursts (so the speech gate passes) whose pitch and rate depend on the label."""
    rng = np.random.default_rng(1000 * speaker + 10 * label + take)
    t = np.arange(int(2.6 * rate)) / rate
    f0 = (120 + 40 * label) * (1 + 0.05 * speaker)
    envelope = np.clip(np.sin(2 * np.pi * (2.5 + label) * t), 0, None) ** 2
    x = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6)) * envelope * 0.2
    x = x + 0.001 * rng.standard_normal(t.size)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((x * 32767).astype(np.int16).tobytes())


@pytest.fixture(scope="module")
def synthetic_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    rows = ["path,label,speaker"]
    for speaker in range(4):
        for label, name in enumerate(LABELS):
            for take in range(3):
                p = root / f"s{speaker}_{name}_{take}.wav"
                synth_clip(p, label, speaker, take)
                rows.append(f"{p.name},{name},spk{speaker}")
    (root / "index.csv").write_text("\n".join(rows) + "\n")
    return root / "index.csv"


def test_speaker_folds_hold_out_whole_speakers():
    utts = [Utterance(Path(f"{a}-{i}"), "happy", f"ravdess-{a:02d}", "r")
            for a in range(1, 25) for i in range(3)]
    folds = speaker_folds(utts, 6)
    flat = [s for f in folds for s in f]
    assert sorted(flat) == sorted({u.speaker for u in utts}) and len(flat) == len(set(flat))
    for f in folds:  # RAVDESS: odd actors male, even female -> both in every fold
        parities = {int(s[-2:]) % 2 for s in f}
        assert parities == {0, 1}
    assert all(speaker_folds(utts, 12))  # 24 speakers: 12 pairs, no fold empty
    with pytest.raises(ConfigError, match="24 speakers give at most 12 .*--folds 2 to 12"):
        speaker_folds(utts, 13)
    for n in (2, 3, 5, 10):  # a fold without speakers would train and then fail to score
        few = utts[: 3 * n]
        most = (n + 1) // 2
        if most >= 2:
            assert all(speaker_folds(few, most))
        with pytest.raises(ConfigError, match=f"{n} speakers give at most {most} "):
            speaker_folds(few, most + 1)


def test_csv_rows_that_cannot_be_used_are_named_and_left_out(tmp_path, caplog):
    """Each bad row is one warning naming file:line; the good rows are still indexed."""
    import logging

    import soundfile as sf

    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a", "b"):
        sf.write(clips / f"{name}.wav", np.zeros(1600, np.float32), 16000)
    table = tmp_path / "labels.csv"
    table.write_text("\ufeffpath,label,speaker\n"  # a spreadsheet's byte-order mark
                     "clips/a.wav,Happy,s1\n"
                     "clips/missing.wav,sad,s1\n"
                     "clips/b.wav,,s2\n"
                     "clips/b.wav\n"
                     "./clips/a.wav,happy,s1\n"
                     "clips/b.wav,sad,s2\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="convert.speech.corpora"):
        utts = index_csv(table)
    assert [(u.path.name, u.label, u.speaker) for u in utts] == [("a.wav", "happy", "s1"),
                                                                ("b.wav", "sad", "s2")]
    *warned, total = [r.getMessage() for r in caplog.records]
    assert [w.split(": ")[0] for w in warned] == [f"{table}:{n}" for n in (3, 4, 5, 6)]
    assert "missing.wav does not exist" in warned[0] and "empty label" in warned[1]
    assert "too few fields" in warned[2] and "already row 2" in warned[3]
    assert total == f"{table}: 4 row(s) left out, 2 used"
    table.write_bytes("path,label,speaker\nclips/a.wav,fröhlich,s1\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        index_csv(table)
    with pytest.raises(ConfigError, match="is a folder"):
        index_csv(tmp_path)
    with pytest.raises(ConfigError, match="no such CSV file"):
        index_csv(tmp_path / "none.csv")


def test_a_spreadsheets_csv_is_read_and_its_bad_files_named_together(tmp_path, caplog,
                                                                       monkeypatch):
    """Excel's CSV where the decimal mark is a comma (";"), its capitals, Windows paths; a file
    that is no audio is named at indexing with the other bad rows (it stopped the run later,
    one file per run); when no row's file exists, one line says where they were looked for."""
    import logging

    import soundfile as sf

    clips = tmp_path / "audio"
    clips.mkdir()
    for name in ("a", "b"):
        sf.write(clips / f"{name}.wav", np.zeros(1600, np.float32), 16000)
    sf.write(clips / "empty.wav", np.zeros(0, np.float32), 16000)
    (clips / "notes.wav").write_text("not audio")
    table = tmp_path / "labels.csv"
    table.write_text("Path;Label;Speaker\r\naudio\\a.wav;happy;s1\r\naudio/b.wav;sad;s2\r\n"
                     "audio/empty.wav;sad;s2\r\naudio/notes.wav;happy;s1\r\n")
    with caplog.at_level(logging.WARNING, logger="convert.speech.corpora"):
        utts = index_csv(table)
    assert [(u.path, u.label) for u in utts] == [(clips / "a.wav", "happy"),
                                                 (clips / "b.wav", "sad")]
    warned = [r.getMessage() for r in caplog.records]
    assert "empty.wav: contains no audio samples" in warned[0]
    assert "notes.wav" in warned[1] and warned[-1].endswith("2 row(s) left out, 2 used")

    elsewhere = tmp_path / "lists"
    elsewhere.mkdir()
    (elsewhere / "mine.csv").write_text("path,label,speaker\naudio/a.wav,happy,s1\n")
    monkeypatch.chdir(tmp_path)  # the paths were written from here, not from the CSV's folder
    with pytest.raises(ConfigError, match=r"none of the audio files exists where the rows say "
                                          r".*relative to the current folder"):
        index_csv(elsewhere / "mine.csv")


def test_metrics_by_hand():
    m = classification_metrics([0, 0, 0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 0, 2, 1], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["uar"] == pytest.approx((3 / 4 + 1 / 2 + 1 / 2) / 3)
    assert m["confusion"] == [[3, 1, 0], [1, 1, 0], [0, 1, 1]]
    f1_a, f1_b, f1_c = 2 * 0.75 * 0.75 / 1.5, 2 * (1 / 3) * 0.5 / (1 / 3 + 0.5), 2 * 1 * 0.5 / 1.5
    assert m["macro_f1"] == pytest.approx((f1_a + f1_b + f1_c) / 3)


def test_fusion_map_is_explicit():
    from convert.speech.corpora import RAVDESS_LABELS

    fm = fusion_map_for(RAVDESS_LABELS + ("boredom",))
    assert fm["calm"] == "neutral" and fm["surprised"] == "surprised" and fm["boredom"] is None
    from convert.speech.corpora import FUSION_RULE, fusion_label

    # The training's stated rule is the device's map: one table decides both.
    assert {label: fusion_label(label) for label in FUSION_RULE} == dict(FUSION_RULE)


def test_csv_index_errors_name_the_row(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label,speaker\nmissing.wav,happy,s1\n")
    with pytest.raises(ConfigError, match=r"bad.csv: no usable rows \(1 left out"):
        index_csv(bad)
    bad.write_text("file,emotion\nx.wav,happy\n")
    with pytest.raises(ConfigError, match="path,label,speaker"):
        index_csv(bad)


@pytest.mark.slow
def test_convert_speech_end_to_end(synthetic_corpus, tmp_path):
    pytest.importorskip("tensorflow")
    from convert.cli import main
    from edge.models.manifest import load_manifest
    from edge.models.speech import SpeechClassifier

    out = tmp_path / "models"
    quick = ["--set", "model.width=16", "--set", "augment.speed_factors=[]",
             "--set", "augment.noise_snr_db=[]"]
    code = main(["-q", "speech", "--csv", str(synthetic_corpus), "--out", str(out),
                 "--folds", "2", "--set", "evaluate.reference_folds=1", "--epochs", "2", *quick])
    assert code == 0
    model = out / "speech_emotion_int8.tflite"
    manifest = load_manifest(model)
    assert manifest.labels == LABELS and manifest.task == "speech"
    assert manifest.input.dtype == "int8" and manifest.output.dtype == "int8"
    assert manifest.preprocessing["window_frames"] == 300
    # The manifest stores the resolved recipe: reading it back gives the same recipe.
    from convert.speech.recipe import SpeechRecipe

    again = SpeechRecipe.load(model.with_suffix(".json"))
    assert again.model.width == 16 and again.train.epochs == 2 and not again.augmented
    assert again.data.corpora == (f"csv:{synthetic_corpus}",)
    cv = manifest.metrics["cross_validation"]
    assert len(cv["folds"]) == 2 and 0 <= cv["mean"]["uar"] <= 1
    tested = [set(f["test_speakers"]) for f in cv["folds"]]
    assert not tested[0] & tested[1] and tested[0] | tested[1] == {f"spk{i}" for i in range(4)}
    assert manifest.metrics["int8_parity"]["mean"]["top1_agreement"] >= 0
    assert "seed_cnn_reference" in manifest.metrics
    assert (out / "speech_confusion.png").stat().st_size > 1000
    fold0 = json.loads((out / "reports" / "speech" / "compact_fold0.json").read_text())
    assert fold0["test_clips"] == 24 and fold0["train_clips"] == 24
    with SpeechClassifier(model) as clf:
        d = clf.classify_file(synthetic_corpus.parent / "s0_happy_0.wav")
        assert d.label in LABELS

    # The reference alone, later, on the same folds; the shipped model is left untouched.
    before = model.read_bytes()
    assert main(["-q", "speech", "--csv", str(synthetic_corpus), "--out", str(out), "--folds", "2",
                 "--set", "evaluate.reference_folds=1", "--reference-only", "--epochs", "1",
                 *quick]) == 0
    ref = json.loads((out / "reports" / "speech" / "seed_reference.json").read_text())
    assert ref["recipe"]["model"]["kind"] == "seed" and len(ref["folds"]) == 1
    assert ref["ours_on_same_folds"]["uar"] == pytest.approx(cv["folds"][0]["uar"])
    assert model.read_bytes() == before


@pytest.fixture(scope="module")
def second_room(tmp_path_factory) -> Path:
    """Another 'corpus': other speakers, 3x quieter and high-passed like a cheap microphone, and
    no "sad" clips at all."""
    root = tmp_path_factory.mktemp("room2")
    rows = ["path,label,speaker"]
    for speaker in range(4, 7):
        for label, name in enumerate(LABELS):
            if name == "sad":
                continue
            for take in range(3):
                p = root / f"s{speaker}_{name}_{take}.wav"
                synth_clip(p, label, speaker, take)
                with wave.open(str(p)) as w:
                    rate = w.getframerate()
                    x = np.frombuffer(w.readframes(w.getnframes()), np.int16) / 32768.0
                x = np.diff(x, prepend=0.0) * 0.3  # quieter, and the low end gone
                with wave.open(str(p), "wb") as w:
                    w.setnchannels(1)
                    w.setsampwidth(2)
                    w.setframerate(rate)
                    w.writeframes((x * 32767).astype(np.int16).tobytes())
                rows.append(f"{p.name},{name},room2_{speaker}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def test_a_corpus_without_a_class_does_not_teach_that_it_never_occurs():
    from convert.speech.train import label_masks, sample_weights

    y = np.array([0, 1, 2, 0, 1, 0])
    corpus = np.array(["a", "a", "a", "b", "b", "b"])
    mask = label_masks(y, corpus, 3)
    assert mask.tolist() == [[1, 1, 1]] * 3 + [[1, 1, 0]] * 3
    # train.mask_missing_labels = false: every clip is scored over every label.
    assert label_masks(y, corpus, 3, masked=False).tolist() == [[1, 1, 1]] * 6
    w = sample_weights(y, corpus, 3)
    # class 0 has 1 clip in a and 2 in b: each corpus gives the class half its weight
    assert w[0] == pytest.approx(2 * w[3]) and w[3] == pytest.approx(w[5])
    assert w.mean() == pytest.approx(1.0)


def test_every_class_and_every_corpus_within_it_weighs_the_same():
    """The training's weights (and the statistics screen's, which calls the same function)."""
    from convert.speech.train import sample_weights

    corpus = np.array(["a"] * 6 + ["b"] * 2)
    label = np.array(["x", "x", "x", "x", "y", "y", "x", "y"])
    w = sample_weights(np.unique(label, return_inverse=True)[1], corpus, 2)
    for lab in "xy":
        for c in "ab":
            m = (corpus == c) & (label == lab)
            assert w[m].sum() == pytest.approx(w[label == lab].sum() / 2)
    assert w[label == "x"].sum() == pytest.approx(w[label == "y"].sum())
    # Damped: the rarer class (3 clips of 8) counts for less than an equal share and more than
    # its share of the clips; power 0 weighs every clip the same.
    half = sample_weights(np.unique(label, return_inverse=True)[1], corpus, 2, power=0.5)
    assert 3 / 8 < half[label == "y"].sum() / half.sum() < 1 / 2
    flat = sample_weights(np.unique(label, return_inverse=True)[1], corpus, 2, power=0.0)
    np.testing.assert_allclose(flat, 1.0)
    # train.coverage_power: y is in both corpora, z only in b, so z's clips count half as much
    # at power 1 as without it, against y's.
    three = np.array(["x", "x", "x", "x", "y", "y", "z", "y"])
    yk = np.unique(three, return_inverse=True)[1]
    plain, covered = sample_weights(yk, corpus, 3), sample_weights(yk, corpus, 3, coverage=1.0)
    ratio = (covered[three == "z"].sum() / covered[three == "y"].sum()) / (
        plain[three == "z"].sum() / plain[three == "y"].sum())
    assert ratio == pytest.approx(0.5) and covered.mean() == pytest.approx(1.0)


def test_a_model_trained_per_speaker_is_scored_as_a_device_that_hears_the_whole_room(
        synthetic_corpus, second_room):
    """``adapt.unit = speaker`` standardises each training speaker with their own statistics,
    but a device cannot tell its speakers apart: the unseen corpus is still standardised as one
    room, so the adapted figure measures what a device would do."""
    from convert.speech.corpora import index_corpora
    from convert.speech.evaluate import views
    from convert.speech.features import FeatureBank
    from convert.speech.recipe import SpeechRecipe

    recipe = (SpeechRecipe().replace("features", window_frames=100, hop_frames=50)
              .replace("augment", speed_factors=(), noise_snr_db=())
              .replace("adapt", mode="deployment", unit="speaker"))
    bank = FeatureBank(index_corpora([f"csv:{synthetic_corpus}", f"csv:{second_room}"]), recipe)
    room = second_room.parent.name
    train = bank.subset([i for i, u in enumerate(bank.utts) if u.corpus != room])
    test = bank.subset([i for i, u in enumerate(bank.utts) if u.corpus == room])
    v = views(train, test, recipe)

    def same(a: FeatureBank, b: FeatureBank) -> bool:
        return all(np.array_equal(a.model_input(i, 0, 0), b.model_input(i, 0, 0))
                   for i in range(len(a.utts)))

    assert same(v.train, train.standardize_by("speaker"))
    assert not same(v.train, train.standardize_by("corpus"))
    assert same(v.adapted, test.standardize_by("corpus"))
    assert not same(v.adapted, test.standardize_by("speaker"))


def test_statistics_rows_standardised_per_room_move_only_the_rows(synthetic_corpus, second_room):
    """``adapt.rows``: after its frames, each room's statistics rows are standardised with their
    mean and spread over the room's clips (adapted), or the training data's (fresh).  The
    frames the compact branch reads are untouched; the rows of one room's clips come out
    centred with unit spread."""
    from convert.speech.corpora import index_corpora
    from convert.speech.evaluate import views
    from convert.speech.features import FeatureBank
    from convert.speech.recipe import SpeechRecipe

    base = SpeechRecipe().updated({
        "features": dict(window_frames=400, hop_frames=50, pooling="frames_mean_std_delta",
                         normalize="none", prosody=True),
        "model": dict(kind="ensemble"), "augment": dict(speed_factors=(), noise_snr_db=()),
        "adapt": dict(mode="deployment")})
    recipe = base.replace("adapt", rows=True)
    utts = index_corpora([f"csv:{synthetic_corpus}", f"csv:{second_room}"])
    room = second_room.parent.name
    test_idx = [i for i, u in enumerate(utts) if u.corpus == room]
    train_idx = [i for i, u in enumerate(utts) if u.corpus != room]
    bank, plain = FeatureBank(utts, recipe), FeatureBank(utts, base)
    v = views(bank.subset(train_idx), bank.subset(test_idx), recipe)
    w = views(plain.subset(train_idx), plain.subset(test_idx), base)
    assert v.rows is not None and w.rows is None
    k = 3  # mean, spread and change
    for ours, theirs in ((v.adapted, w.adapted), (v.fresh, w.fresh), (v.train, w.train)):
        a, b = ours.model_input(0, 0, 0), theirs.model_input(0, 0, 0)
        np.testing.assert_array_equal(a[:-k], b[:-k])
        assert not np.allclose(a[-k:], b[-k:])
    # The room's statistics are those of its whole clips' rows (their frames standardised as
    # the room's): through them, those rows come out centred with unit spread.
    from edge.features import window_input

    def whole(b: FeatureBank, i: int) -> np.ndarray:
        mean, scale = b._norm[i][0]
        return window_input(b.variants[i][0], recipe.mfcc, lambda x: (x - mean) * scale)[-k:]

    row_mean, row_scale = v.adapted._rows[0][0]
    rows = np.stack([(whole(v.adapted, i).reshape(-1) - row_mean) * row_scale
                     for i in range(len(test_idx))])
    np.testing.assert_allclose(rows.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(rows.std(0)[rows.std(0) > 0], 1, atol=1e-3)
    window = v.adapted.model_input(3, 0, 0)[-k:].reshape(-1)
    plain_window = w.adapted.model_input(3, 0, 0)[-k:].reshape(-1)
    np.testing.assert_allclose(window, np.clip((plain_window - row_mean) * row_scale, -8, 8),
                               rtol=1e-5, atol=1e-5)
    # A fresh device standardises them with the training data's rows, not the room's.
    fresh_mean, _ = v.fresh._rows[0][0]
    np.testing.assert_allclose(fresh_mean, v.rows.mean, rtol=1e-6)
    assert np.abs(fresh_mean - row_mean).max() > 0.2
    with pytest.raises(ConfigError, match="adapt.rows .* adapt.mode"):
        base.replace("adapt", mode="none", rows=True)


def test_a_room_that_mostly_hears_neutral_speech_is_standardised_with_weighted_statistics(
        synthetic_corpus, second_room):
    """``neutral_share``: each room's statistics weighted so that neutral speech is that share of
    its speech frames, as a device's room mostly hears neutral speech; 0 is as recorded."""
    from convert.speech.corpora import index_corpora
    from convert.speech.features import FeatureBank
    from convert.speech.recipe import SpeechRecipe
    from edge.features import frame_dbfs
    from edge.features.adapt import speech_frames

    recipe = (SpeechRecipe().replace("features", window_frames=100, hop_frames=50)
              .replace("augment", speed_factors=(), noise_snr_db=())
              .replace("adapt", mode="deployment"))
    bank = FeatureBank(index_corpora([f"csv:{synthetic_corpus}", f"csv:{second_room}"]), recipe)
    corpus = np.array([u.corpus for u in bank.utts])
    neutral = np.array([u.label == "neutral" for u in bank.utts])
    speech = [speech_frames(v[0], frame_dbfs(v[0][:, 0], recipe.mfcc)) for v in bank.variants]
    frames = np.array([len(f) for f in speech], float)

    assert bank.neutral_weights(0.0, [u.corpus for u in bank.utts]) == [1.0] * len(bank.utts)
    w = np.array(bank.neutral_weights(0.7, [u.corpus for u in bank.utts]))
    room = bank.standardize_by("corpus", neutral_share=0.7)
    for c in set(corpus):
        m = corpus == c
        heard = w[m] * frames[m]
        assert heard[neutral[m]].sum() / heard.sum() == pytest.approx(0.7)
        assert heard.sum() == pytest.approx(frames[m].sum())  # the room's size is kept
        # The room's statistics are those of its frames, each frame counted with its clip's
        # weight; every clip is still standardised with them.
        x = np.concatenate([speech[i] for i in np.flatnonzero(m)])
        fw = np.repeat(w[m], frames[m].astype(int))
        mean = np.average(x, axis=0, weights=fw)
        std = np.sqrt(np.average((x - mean) ** 2, axis=0, weights=fw))
        first = int(np.flatnonzero(m)[0])
        got_mean, got_scale = room._norm[first][0]
        np.testing.assert_allclose(got_mean, mean, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got_scale, 1 / std, rtol=1e-5)
    # As recorded, the neutral clips are a quarter of each synthetic room, and a room weighted
    # toward them has its mean moved toward theirs.
    plain = bank.standardize_by("corpus")
    assert not np.allclose(plain._norm[0][0][0], room._norm[0][0][0])
    np.testing.assert_array_equal(bank.standardize_by("corpus", neutral_share=0.0)._norm[0][0][0],
                                  plain._norm[0][0][0])
    # Weights given instead: a calibration recording's clips alone make each speaker's
    # statistics (weight 0: standardised, not counted), and they apply to all their clips.
    calibration = np.array([u.label == "neutral" and u.path.stem.endswith("_0")
                            for u in bank.utts])
    own = bank.standardize_by("speaker", weights=calibration.astype(float).tolist())
    for i, u in enumerate(bank.utts):
        x = np.concatenate([speech[j] for j in np.flatnonzero(calibration)
                            if bank.utts[j].speaker == u.speaker])
        np.testing.assert_allclose(own._norm[i][0][0], x.mean(axis=0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(own._norm[i][0][1], 1 / x.std(axis=0), rtol=1e-4)
    # Blended with a prior as a device blends what it heard: each speaker's calibration
    # frames against the prior's weight.
    pooled = bank.pooled_stats()
    blend = bank.standardize_by("speaker", weights=calibration.astype(float).tolist(),
                                prior=pooled, prior_frames=500.0)
    for i, u in enumerate(bank.utts):
        x = np.concatenate([speech[j] for j in np.flatnonzero(calibration)
                            if bank.utts[j].speaker == u.speaker])
        a = len(x) / (len(x) + 500.0)
        np.testing.assert_allclose(blend._norm[i][0][0], (1 - a) * pooled.mean + a * x.mean(axis=0),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(blend._norm[i][0][1], 1 / np.sqrt(
            (1 - a) * pooled.var + a * x.var(axis=0)), rtol=1e-4)
    with pytest.raises(ValueError, match="weights for"):
        bank.standardize_by("speaker", weights=[1.0])
    # Groups given clip by clip (the files of one call) are groups like any other.
    by_clip = bank.standardize_by([u.speaker for u in bank.utts], prior=pooled, prior_frames=500.0,
                                  weights=calibration.astype(float).tolist())
    for i in range(len(bank.utts)):
        for got, want in zip(by_clip._norm[i][0], blend._norm[i][0], strict=True):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="groups for"):
        bank.standardize_by(["a"])
    # A room without neutral speech (or with nothing else) keeps its clips' weights.
    no_neutral = bank.subset(np.flatnonzero(~neutral).tolist())
    assert no_neutral.neutral_weights(0.7, [u.corpus for u in no_neutral.utts]) == [1.0] * int((~neutral).sum())
    # The prior a fresh device starts from is weighted the same way, over all rooms together.
    prior = bank.pooled_stats(0.7)
    wall = np.array(bank.neutral_weights(0.7, ["all"] * len(bank.utts)))
    x = np.concatenate(speech)
    np.testing.assert_allclose(prior.mean, np.average(
        x, axis=0, weights=np.repeat(wall, frames.astype(int))), rtol=1e-6, atol=1e-6)
    assert prior.count == pytest.approx(frames.sum())


@pytest.mark.slow
def test_multi_corpus_training_adapts_and_leaves_one_corpus_out(synthetic_corpus, second_room,
                                                                tmp_path, capsys, monkeypatch):
    pytest.importorskip("tensorflow")
    from convert.cli import main
    from edge.cli import main as edge_main
    from edge.config import AdaptConfig
    from edge.models.manifest import load_manifest
    from edge.models.speech import SpeechClassifier

    out = tmp_path / "models"
    code = main(["-q", "speech", "--corpus", f"csv:{synthetic_corpus}",
                 "--corpus", f"csv:{second_room}", "--out", str(out), "--folds", "2",
                 "--epochs", "2", "--set", "model.width=8", "--set", "augment.speed_factors=[]",
                 "--set", "augment.noise_snr_db=[]", "--set", "adapt.mode=deployment",
                 "--set", "evaluate.loco=true", "--set", "evaluate.parity_folds=1",
                 "--set", "features.prosody=true", "--set", 'evaluate.channels=["telephone"]',
                 "--set", "evaluate.neutral_room=0.7", "--set", "evaluate.calibration=true",
                 "--set", "evaluate.calls=[1,4,1000]", "--test-corpus", f"csv:{second_room}"])
    assert code == 0
    capsys.readouterr()
    model = out / "speech_emotion_int8.tflite"
    m = load_manifest(model)
    # Comparing recipes: --evaluate-only writes no model, and a fold already scored with the same
    # recipe and split is reused, not trained again.
    reports = sorted((out / "reports" / "speech").glob("loco_*.json"))
    stamps = [r.stat().st_mtime_ns for r in reports]
    # Each unseen corpus's clip probabilities are kept, and they are the ones scored; the
    # same through the telephone, where the same model decides differently.
    for report in reports:
        row = json.loads(report.read_text())
        phone = row["channels"]["telephone"]
        with np.load(report.with_name(report.stem + "_clips.npz")) as clips:
            assert clips["adapted"].shape == clips["fresh"].shape == (len(clips["y"]), len(m.labels))
            assert clips["telephone_adapted"].shape == clips["adapted"].shape
            assert not np.allclose(clips["telephone_adapted"], clips["adapted"], atol=1e-3)
            assert len(clips["speaker"]) == row["test_clips"]
            assert row["neutral_room"]["share"] == 0.7
            # A room weighted toward its neutral clips has other statistics: other inputs.
            assert not np.allclose(clips["neutral_room"], clips["adapted"], atol=1e-3)
            # A calibration recording per speaker: two of their three neutral takes, every
            # other in path order; the rest of their clips scored, fresh beside them.
            calibrated = row["calibrated"]
            scored = ~np.isnan(clips["calibrated"]).any(axis=1)
            speakers = set(clips["speaker"])
            assert calibrated["speakers"] == len(speakers)
            assert calibrated["clips"] == scored.sum() == len(clips["y"]) - 2 * len(speakers)
            assert calibrated["calibration_speech_s"] > 0
            assert calibrated["prior_frames"] == AdaptConfig().prior_frames
            assert not np.allclose(clips["calibrated"][scored], clips["adapted"][scored],
                                   atol=1e-3)
            for probs, figure in ((clips["calibrated"][scored], calibrated["uar"]),
                                  (clips["fresh"][scored], calibrated["fresh"]["uar"])):
                got = classification_metrics(clips["y"][scored], probs.argmax(1),
                                             list(clips["labels"]))
                assert got["uar"] == pytest.approx(figure)
            # As classify hears it, in calls of 1, 4 and 1000 files: each call standardised
            # with its own speech blended with the prior.  A call of every clip moves them
            # toward the adapted view, but not all the way; calls of 1 and 4 differ.
            calls = row["calls"]
            assert calls["1000"]["calls"] == 1 and calls["1"]["calls"] == len(clips["y"])
            assert calls["4"]["calls"] == -(-len(clips["y"]) // 4)
            assert calls["1000"]["prior_frames"] == AdaptConfig().prior_frames
            assert not np.allclose(clips["call_1000"], clips["adapted"], atol=1e-3)
            assert not np.allclose(clips["call_1"], clips["call_4"], atol=1e-3)
            for probs, figures in ((clips["adapted"], row), (clips["fresh"], row["fresh"]),
                                   (clips["call_1"], calls["1"]), (clips["call_4"], calls["4"]),
                                   (clips["call_1000"], calls["1000"]),
                                   (clips["neutral_room"], row["neutral_room"]),
                                   (clips["telephone_adapted"], phone),
                                   (clips["telephone_fresh"], phone["fresh"])):
                got = classification_metrics(clips["y"], probs.argmax(1), list(clips["labels"]))
                assert got["uar"] == pytest.approx(figures["uar"])
    assert m.metrics["leave_one_corpus_out"]["mean_neutral_room_uar"] == pytest.approx(np.mean(
        [json.loads(r.read_text())["neutral_room"]["uar"] for r in reports]))
    assert m.metrics["leave_one_corpus_out"]["calls"]["4"]["mean_uar"] == pytest.approx(np.mean(
        [json.loads(r.read_text())["calls"]["4"]["uar"] for r in reports]))
    assert m.metrics["leave_one_corpus_out"]["mean_calibrated_uar"] == pytest.approx(np.mean(
        [json.loads(r.read_text())["calibrated"]["uar"] for r in reports]))
    channel = m.metrics["leave_one_corpus_out"]["channels"]["telephone"]
    assert channel["mean_uar"] == pytest.approx(np.mean(
        [json.loads(r.read_text())["channels"]["telephone"]["uar"] for r in reports]))
    before = model.read_bytes()
    from convert.speech import pipeline

    built: list[str | None] = []  # which banks the run reads: the channels' only when scored

    def bank(*args: Any, **kwargs: Any) -> Any:
        built.append(kwargs.get("channel"))
        return real_bank(*args, **kwargs)

    real_bank = pipeline.FeatureBank
    monkeypatch.setattr(pipeline, "FeatureBank", bank)
    assert main(["-q", "speech", "--corpus", f"csv:{synthetic_corpus}", "--corpus",
                 f"csv:{second_room}", "--out", str(out), "--folds", "0", "--epochs", "2",
                 "--set", "model.width=8", "--set", "augment.speed_factors=[]",
                 "--set", "augment.noise_snr_db=[]", "--set", "adapt.mode=deployment",
                 "--set", "evaluate.loco=true", "--set", "features.prosody=true",
                 "--set", 'evaluate.channels=["telephone"]', "--evaluate-only"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["loco_mean_uar"] == pytest.approx(m.metrics["leave_one_corpus_out"]["mean_uar"])
    assert [r.stat().st_mtime_ns for r in reports] == stamps and model.read_bytes() == before
    assert built == [None]  # every fold reused: the telephone's bank was never built
    assert m.preprocessing["adapt"] == "deployment"
    # The room's statistics cover every column: the cepstra and the 12 prosody columns.
    assert m.preprocessing["prosody"] is True
    assert len(m.preprocessing["adapt_prior"]["mean"]) == m.preprocessing["n_ceps"] + 12
    loco = m.metrics["leave_one_corpus_out"]
    assert set(loco["corpora"]) == {"index", second_room.parent.name}
    for row in loco["corpora"].values():
        assert 0 <= row["uar"] <= 1 and 0 <= row["fresh"]["uar"] <= 1
    # the corpus without "sad" is scored over the labels it has
    room = next(r for name, r in loco["corpora"].items() if "sad" not in r["per_class_recall"])
    assert set(room["per_class_recall"]) == {"neutral", "happy", "angry"}
    assert m.metrics["cross_validation"]["mean"]["fresh_uar"] >= 0
    assert "int8_parity" in m.metrics
    with SpeechClassifier(model, adapt_state=tmp_path / "state.json") as clf:
        assert clf.adaptation is not None and clf.adaptation.frames_heard == 0
        clf.observe_signal(np.zeros(16000, np.float32))  # silence teaches nothing
        assert clf.adaptation.frames_heard == 0
    assert main(["-q", "speech-score", "--model", str(model), "--adapt",
                 "--corpus", f"csv:{second_room}"]) == 0
    scored = json.loads(capsys.readouterr().out)["corpora"][second_room.parent.name]
    assert scored["clips"] == 27 and set(scored["per_class_recall"]) == {"neutral", "happy",
                                                                          "angry"}
    # Decided exactly as `classify` decides, among all the model's labels (this corpus has no
    # "sad", and a clip called sad is wrong), then UAR over the corpus's own labels.
    room_utts = index_csv(second_room)
    assert edge_main(["classify", "--json", "--model", str(model),
                      *(str(u.path) for u in room_utts)]) == 0
    said = {row["path"]: row["label"] for row in map(json.loads,
                                                     capsys.readouterr().out.splitlines())}
    recalls = [np.mean([said[str(u.path)] == label for u in room_utts if u.label == label])
               for label in {"neutral", "happy", "angry"}]
    assert scored["uar"] == pytest.approx(float(np.mean(recalls)), abs=1e-4)
    assert main(["-q", "speech-score", "--model", str(model), "--adapt", "--channel",
                 "telephone", "--corpus", f"csv:{second_room}"]) == 0
    phoned = json.loads(capsys.readouterr().out)
    assert phoned["channel"] == "telephone"
    assert phoned["corpora"][second_room.parent.name]["clips"] == 27

    # The channel is what the classifier hears: one that lets nothing through leaves no speech.
    monkeypatch.setitem(pipeline.CHANNELS, "telephone", lambda x, sr: np.zeros_like(x))
    silent = pipeline.score_held_out(model, index_csv(second_room), "room", None,
                                     adapt=True, channel="telephone")
    assert silent["no_speech_files"] == 27 and "telephone channel" in silent["protocol"]
    files = sorted(second_room.parent.glob("*.wav"))[:6]
    assert edge_main(["classify", "--json", "--adapt", "--model", str(model),
                      *map(str, files)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["path"] for r in lines] == [str(f) for f in files]
    assert all(set(r) == {"path", "label", "scores"} for r in lines)


def _two_rooms_with_prosody(corpus: Path, room: Path, out: Path) -> list[str]:
    """``emotion-convert speech`` arguments of the pooled and ensemble tests: both synthetic
    rooms, no copies, deployment adaptation, prosody, no per-window normalisation, LOCO."""
    return ["-q", "speech", "--corpus", f"csv:{corpus}", "--corpus", f"csv:{room}",
            "--out", str(out), "--set", "augment.speed_factors=[]",
            "--set", "augment.noise_snr_db=[]", "--set", "adapt.mode=deployment",
            "--set", "features.prosody=true", "--set", "features.normalize=none",
            "--set", "evaluate.loco=true"]


@pytest.mark.slow
def test_pooled_model_trains_and_runs_on_the_device_with_the_same_input(synthetic_corpus,
                                                                         second_room, tmp_path):
    """The pooled model (statistics of each window, a dense network) through the whole pipeline:
    int8 with a manifest that says how to pool, and the device computes exactly the input the
    model was trained and scored on."""
    pytest.importorskip("tensorflow")
    from convert.cli import main
    from convert.speech.features import FeatureBank
    from convert.speech.recipe import SpeechRecipe
    from edge.features.adapt import RunningStats
    from edge.models.manifest import load_manifest
    from edge.models.speech import SpeechClassifier, windows_of
    from edge.sources.audio_file import load_audio

    out = tmp_path / "models"
    assert main([*_two_rooms_with_prosody(synthetic_corpus, second_room, out), "--folds", "2",
                 "--epochs", "3", "--set", "evaluate.parity_folds=1",
                 "--set", "features.pooling=mean_std", "--set", "model.kind=pooled",
                 "--set", "model.pooled_width=16", "--set", "model.l2=0.001"]) == 0
    model = out / "speech_emotion_int8.tflite"
    m = load_manifest(model)
    assert m.preprocessing["pooling"] == "mean_std"
    assert m.metrics["int8_parity"]["mean"]["top1_agreement"] >= 0.5
    assert len(m.metrics["leave_one_corpus_out"]["corpora"]) == 2
    recipe = SpeechRecipe.load(model.with_suffix(".json"))
    assert recipe.model.kind == "pooled" and recipe.mfcc.pooling == "mean_std"

    utts = index_csv(synthetic_corpus)[:2]
    bank = FeatureBank(utts, recipe, augment=False)
    prior = RunningStats.from_dict(m.preprocessing["adapt_prior"])
    fresh = bank.standardize_with(prior)
    with SpeechClassifier(model, adapt=False) as clf:
        assert tuple(clf.model.input_shape) == (1, 2, recipe.mfcc.n_columns, 1)
        frames = clf.mfcc(load_audio(utts[0].path, clf.sample_rate))
        np.testing.assert_allclose(frames, bank.variants[0][0], rtol=1e-5, atol=1e-4)
        start, window = windows_of(frames, clf.window_frames, clf.hop_frames)[0]
        np.testing.assert_allclose(clf.model_input(window)[..., 0],
                                   fresh.model_input(0, 0, start), rtol=1e-4, atol=1e-4)
        assert clf.classify_file(utts[0].path).label in m.labels
    with pytest.raises(ConfigError, match="pooling"):
        SpeechRecipe().replace("model", kind="pooled")
    with pytest.raises(ConfigError, match="pooling"):
        SpeechRecipe().replace("features", pooling="mean_std")
    # Each model takes its own pooling, with or without the delta row.
    for kind, pooling in (("pooled", "mean_std_delta"), ("ensemble", "frames_mean_std_delta")):
        ok = SpeechRecipe().updated({"features": {"pooling": pooling, "normalize": "none"},
                                     "model": {"kind": kind}})
        assert ok.mfcc.input_rows(300) == (303 if kind == "ensemble" else 3)
    with pytest.raises(ConfigError, match="'frames_mean_std' or 'frames_mean_std_delta'"):
        SpeechRecipe().updated({"features": {"pooling": "mean_std_delta", "normalize": "none"},
                                "model": {"kind": "ensemble"}})


@pytest.mark.slow
def test_ensemble_is_its_branches_geometric_mean_in_one_int8_graph(synthetic_corpus,
                                                                    second_room, tmp_path):
    """The ensemble trains its two branches apart and ships them as one graph whose output is
    their normalised geometric mean; the device runs it like any window model."""
    pytest.importorskip("tensorflow")
    from convert.cli import main
    from convert.speech.model import build_branches
    from convert.speech.recipe import SpeechRecipe
    from edge.models.manifest import load_manifest
    from edge.models.speech import SpeechClassifier

    recipe = SpeechRecipe().updated({
        "features": {"prosody": True, "normalize": "none", "window_frames": 100,
                     "pooling": "frames_mean_std"},
        "model": {"kind": "ensemble", "width": 4, "pooled_width": 8}})
    combined, (compact, pooled) = build_branches(recipe, 4)
    x = np.random.default_rng(0).normal(size=(16, 102, recipe.mfcc.n_columns, 1)).astype("float32")
    pc, pp = compact.predict(x, verbose=0), pooled.predict(x, verbose=0)
    geometric = np.sqrt(pc * pp)
    np.testing.assert_allclose(combined.predict(x, verbose=0),
                               geometric / geometric.sum(1, keepdims=True), atol=1e-5)
    # What LOCO keeps to study the branches' weight: each branch's logits, in this order.
    from convert.speech.evaluate import _with_branch_logits
    out, *logits = _with_branch_logits(combined).predict(x, verbose=0)
    np.testing.assert_array_equal(out, combined.predict(x, verbose=0))  # the figures unchanged
    for z, probs in zip(logits, (pc, pp), strict=True):
        np.testing.assert_allclose(_softmax(z), probs, atol=1e-5)
    # The compact branch sees the frames' cepstra less their window mean (a constant added to
    # a cepstral column changes nothing there) and the pooled branch only the 2 statistics rows.
    shifted = x.copy()
    shifted[:, :100, 3] += 2.0
    np.testing.assert_allclose(compact.predict(shifted, verbose=0), pc, atol=1e-5)
    np.testing.assert_allclose(pooled.predict(shifted, verbose=0), pp, atol=1e-6)
    stats = x.copy()
    stats[:, 100:, 3] += 2.0
    np.testing.assert_allclose(compact.predict(stats, verbose=0), pc, atol=1e-6)
    assert not np.allclose(pooled.predict(stats, verbose=0), pp, atol=1e-3)
    with pytest.raises(ConfigError, match="pooling"):
        SpeechRecipe().replace("model", kind="ensemble")

    out = tmp_path / "models"
    assert main([*_two_rooms_with_prosody(synthetic_corpus, second_room, out), "--folds", "0",
                 "--epochs", "2", "--set", "features.pooling=frames_mean_std",
                 "--set", "model.kind=ensemble", "--set", "model.width=4",
                 "--set", "model.pooled_width=8"]) == 0
    model = out / "speech_emotion_int8.tflite"
    m = load_manifest(model)
    assert m.training["recipe"]["model"]["kind"] == "ensemble"
    assert len(m.metrics["leave_one_corpus_out"]["corpora"]) == 2
    kept_files = sorted((out / "reports" / "speech").glob("loco_*_clips.npz"))
    assert len(kept_files) == 2
    for kept in kept_files:
        with np.load(kept) as clips:
            for view in ("adapted", "fresh"):
                logits, group = clips[f"{view}_window_logits"], clips[f"{view}_window_group"]
                assert logits.shape[1:] == (2, len(m.labels)) and len(group) == len(logits)
                windows = _softmax(logits.mean(axis=1))  # the graph's rule
                np.testing.assert_allclose(
                    [windows[group == i].mean(axis=0) for i in range(len(clips["y"]))],
                    clips[view], atol=1e-5)
    with SpeechClassifier(model) as clf:
        assert tuple(clf.model.input_shape) == (1, 302, recipe.mfcc.n_columns, 1)
        d = clf.classify_file(synthetic_corpus.parent / "s0_happy_0.wav")
        assert d.label in m.labels and sum(d.scores.values()) == pytest.approx(1, abs=0.05)


def _linear_ensemble_recipe() -> Any:
    """A tiny ensemble with the linear third network on 5 of its cepstra and the prosody."""
    from convert.speech.recipe import SpeechRecipe

    return SpeechRecipe().updated({
        "features": {"prosody": True, "normalize": "none", "window_frames": 100,
                     "pooling": "frames_mean_std_delta"},
        "model": {"kind": "ensemble", "width": 4, "pooled_width": 8, "pooled_rows": 2,
                  "linear_weight": 0.2, "linear_ceps": 5}})


def test_ensemble_with_a_linear_branch_weighs_it_in_one_int8_graph(synthetic_corpus,
                                                                   second_room, tmp_path):
    """model.linear_weight = W: a third, linear network on the statistics rows, its logits
    weighted W in the graph and the other two (1 - W) / 2 each; model.pooled_rows keeps the
    pooled network on the first rows, so that it is the network it was without the change row.
    LOCO keeps the three branches' logits, in that order."""
    pytest.importorskip("tensorflow")
    from convert.cli import main
    from convert.speech.evaluate import _with_branch_logits
    from convert.speech.model import build_branches
    from convert.speech.recipe import SpeechRecipe
    from edge.models.manifest import load_manifest
    from edge.models.speech import SpeechClassifier

    recipe = _linear_ensemble_recipe()
    combined, (compact, pooled, linear) = build_branches(recipe, 4)
    x = np.random.default_rng(0).normal(size=(16, 103, recipe.mfcc.n_columns, 1)).astype("float32")
    out, *logits = _with_branch_logits(combined).predict(x, verbose=0)
    assert len(logits) == 3
    for z, branch in zip(logits, (compact, pooled, linear), strict=True):
        np.testing.assert_allclose(_softmax(z), branch.predict(x, verbose=0), atol=1e-5)
    np.testing.assert_allclose(out, _softmax(0.4 * logits[0] + 0.4 * logits[1] + 0.2 * logits[2]),
                               atol=1e-5)
    pp, pl = pooled.predict(x, verbose=0), linear.predict(x, verbose=0)
    change = x.copy()
    change[:, 102, :] += 3.0  # the change row: the linear network reads it, the pooled does not
    np.testing.assert_allclose(pooled.predict(change, verbose=0), pp, atol=1e-6)
    assert not np.allclose(linear.predict(change, verbose=0), pl, atol=1e-3)
    high = x.copy()
    high[:, 100:, 5:recipe.mfcc.n_ceps] += 3.0  # cepstra above the linear network's 5
    np.testing.assert_allclose(linear.predict(high, verbose=0), pl, atol=1e-6)
    with pytest.raises(ConfigError, match="pooled_rows"):
        recipe.replace("model", pooled_rows=4)
    with pytest.raises(ConfigError, match="linear_weight"):
        SpeechRecipe().replace("model", linear_weight=0.2)

    out_dir = tmp_path / "models"
    assert main([*_two_rooms_with_prosody(synthetic_corpus, second_room, out_dir), "--folds", "0",
                 "--epochs", "2", "--set", "features.pooling=frames_mean_std_delta",
                 "--set", "model.kind=ensemble", "--set", "model.width=4",
                 "--set", "model.pooled_width=8", "--set", "model.pooled_rows=2",
                 "--set", "model.linear_weight=0.2"]) == 0
    model = out_dir / "speech_emotion_int8.tflite"
    m = load_manifest(model)
    assert m.training["recipe"]["model"]["linear_weight"] == 0.2
    for kept in sorted((out_dir / "reports" / "speech").glob("loco_*_clips.npz")):
        with np.load(kept) as clips:
            z, group = clips["adapted_window_logits"], clips["adapted_window_group"]
            assert z.shape[1:] == (3, len(m.labels))
            windows = _softmax(0.4 * z[:, 0] + 0.4 * z[:, 1] + 0.2 * z[:, 2])  # the graph's rule
            np.testing.assert_allclose(
                [windows[group == i].mean(axis=0) for i in range(len(clips["y"]))],
                clips["adapted"], atol=1e-5)
    with SpeechClassifier(model) as clf:
        assert tuple(clf.model.input_shape) == (1, 303, recipe.mfcc.n_columns, 1)
        d = clf.classify_file(synthetic_corpus.parent / "s0_happy_0.wav")
        assert d.label in m.labels and sum(d.scores.values()) == pytest.approx(1, abs=0.05)


def test_a_linear_branch_leaves_the_int8_input_its_whole_range(tmp_path):
    """The linear network keeps some cepstra and the prosody: joining those columns must not
    give the model's int8 input the statistics rows' narrow range, or every frame beyond it
    saturates on the device (a concatenation did: +-2.3 where the frames reach the clip, 8)."""
    pytest.importorskip("tensorflow")
    from convert.export import convert_int8, quant_of
    from convert.speech.model import build_branches

    recipe = _linear_ensemble_recipe()  # 100 frames and 3 statistics rows, linear on 5 cepstra
    combined, _ = build_branches(recipe, 4)
    x = np.random.default_rng(0).normal(size=(64, 103, recipe.mfcc.n_columns, 1)) * 3
    x = np.clip(x, -8, 8).astype("float32")
    x[:, 100:] /= 6  # statistics vary less than frames
    path = tmp_path / "m.tflite"
    path.write_bytes(convert_int8(combined, x))
    inp = quant_of(path)[0]
    scale, zero = inp.scale, inp.zero_point
    assert scale * (-128 - zero) <= x.min() + 0.1 and scale * (127 - zero) >= x.max() - 0.1


def test_a_linear_branch_leaves_the_other_two_as_they_were(synthetic_corpus, second_room):
    """Built and trained last, the linear network changes nothing of the compact and pooled
    networks: joined at equal weights they decide as the ensemble without it, so a run with it
    holds its own control (scripts/speech_decision_rules.py --linear 0)."""
    pytest.importorskip("tensorflow")
    from convert.speech.corpora import index_corpora
    from convert.speech.evaluate import _with_branch_logits
    from convert.speech.features import FeatureBank
    from convert.speech.recipe import SpeechRecipe
    from convert.speech.train import train_model

    two = SpeechRecipe().updated({
        "features": {"prosody": True, "normalize": "none", "window_frames": 100, "hop_frames": 50,
                     "pooling": "frames_mean_std"},
        "augment": {"speed_factors": (), "noise_snr_db": (), "room_copies": 0},
        "model": {"kind": "ensemble", "width": 4, "pooled_width": 8},
        "train": {"epochs": 2, "batch_size": 16}})
    three = two.updated({"features": {"pooling": "frames_mean_std_delta"},
                         "model": {"pooled_rows": 2, "linear_weight": 0.3}})
    utts = index_corpora([f"csv:{synthetic_corpus}", f"csv:{second_room}"])
    y = np.array([LABELS.index(u.label) for u in utts])
    banks = [FeatureBank(utts, r).standardize_by("corpus") for r in (two, three)]
    x2, x3 = (np.stack([b.model_input(i, 0, 0) for i in range(len(utts))])[..., None]
              for b in banks)
    np.testing.assert_array_equal(x3[:, :-1], x2)  # the change row comes last
    plain = train_model(banks[0], y, LABELS, two).predict(x2, verbose=0)
    _, compact, pooled, linear = _with_branch_logits(
        train_model(banks[1], y, LABELS, three)).predict(x3, verbose=0)
    np.testing.assert_allclose(_softmax(0.5 * compact + 0.5 * pooled), plain, atol=1e-5)
    assert not np.allclose(_softmax(linear), plain, atol=1e-2)
    # model.linear_masked = false: the linear network alone learns every clip over every label
    # (the second room has no "sad": its clips now teach that they are not sad).
    every = three.replace("model", linear_masked=False)
    _, compact2, pooled2, linear2 = _with_branch_logits(
        train_model(banks[1], y, LABELS, every)).predict(x3, verbose=0)
    np.testing.assert_allclose(compact2, compact, atol=1e-5)
    np.testing.assert_allclose(pooled2, pooled, atol=1e-5)
    assert not np.allclose(linear2, linear, atol=1e-3)
    with pytest.raises(ConfigError, match="linear_weight"):
        two.replace("model", linear_masked=False)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_pooled_branch_can_read_only_the_low_cepstra_and_the_prosody():
    """model.pooled_ceps = N: the pooled branch reads the statistics of the first N cepstra and
    of every prosody column, nothing of the cepstra above N."""
    pytest.importorskip("tensorflow")
    from convert.speech.model import build_branches
    from convert.speech.recipe import SpeechRecipe

    recipe = SpeechRecipe().updated({
        "features": {"prosody": True, "normalize": "none", "window_frames": 20, "n_ceps": 13,
                     "pooling": "frames_mean_std_delta"},
        "model": {"kind": "ensemble", "width": 4, "pooled_width": 8, "pooled_ceps": 5}})
    _, (_, pooled) = build_branches(recipe, 4)
    x = np.random.default_rng(0).normal(size=(8, 23, recipe.mfcc.n_columns, 1)).astype("float32")
    pp = pooled.predict(x, verbose=0)
    rows = next(layer for layer in pooled.layers if type(layer).__name__ == "PooledRows")
    assert tuple(rows(np.zeros((1, 23, 25), "float32")).shape) == (1, 3 * (5 + 12))
    high = x.copy()
    high[:, 20:, 5:13] += 3.0  # the statistics of cepstra 5..12
    np.testing.assert_allclose(pooled.predict(high, verbose=0), pp, atol=1e-6)
    for column in (4, 13):  # the last cepstrum kept, the first prosody column
        moved = x.copy()
        moved[:, 20:, column] += 3.0
        assert not np.allclose(pooled.predict(moved, verbose=0), pp, atol=1e-3)
    with pytest.raises(ConfigError, match="pooled_ceps"):
        recipe.replace("model", pooled_ceps=14)
    with pytest.raises(ConfigError, match="pooled_ceps"):
        SpeechRecipe().replace("model", pooled_ceps=5)


def test_room_copies_are_seeded_level_kept_and_cached_apart(synthetic_corpus, tmp_path):
    """A room copy is the same for the same clip and seed and keeps the clip's level; adding
    room copies to a recipe reuses the cached base variants and caches the copies apart."""
    pytest.importorskip("audiomentations")
    from convert.speech.augment import room_copy
    from convert.speech.features import FeatureBank
    from convert.speech.recipe import SpeechRecipe
    from edge.sources.audio_file import load_audio

    x = load_audio(sorted(synthetic_corpus.parent.glob("*.wav"))[0], 16000)
    a, b, c = room_copy(x, 16000, 7), room_copy(x, 16000, 7), room_copy(x, 16000, 8)
    assert a.shape == x.shape and np.isfinite(a).all() and np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.allclose(a, x, atol=1e-3)
    assert 0.3 < np.sqrt(np.mean(a**2) / np.mean(x**2)) < 3

    utts = index_csv(synthetic_corpus)[:3]
    cache = tmp_path / "cache"
    base = SpeechRecipe().replace("features", prosody=True).replace(
        "augment", speed_factors=(1.1,), noise_snr_db=())
    plain = FeatureBank(utts, base, cache_dir=cache)
    assert [len(v) for v in plain.variants] == [2, 2, 2]
    assert plain.variants[0][0].shape[1] == 40 + 12
    (first,) = cache.iterdir()
    stamps = {p: p.stat().st_mtime_ns for p in first.iterdir()}
    rooms = FeatureBank(utts, base.replace("augment", room_copies=2), cache_dir=cache)
    assert [len(v) for v in rooms.variants] == [4, 4, 4]
    assert {p: p.stat().st_mtime_ns for p in first.iterdir()} == stamps  # base reused
    assert len(list(cache.iterdir())) == 2
    for got, want in zip(rooms.variants, plain.variants):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    again = FeatureBank(utts, base.replace("augment", room_copies=2), cache_dir=cache)
    for got, want in zip(again.variants, rooms.variants):
        np.testing.assert_array_equal(got[3], want[3])


def test_the_telephone_channel_keeps_the_voice_band_on_mu_law_levels_and_is_cached_apart(
        synthetic_corpus, tmp_path):
    """The telephone test channel passes the voice band and removes what a narrowband call
    cannot carry, its samples sit on G.711's 256 levels, the same clip always sounds the same,
    and a bank heard through it has one variant per clip, cached apart from the clips' own."""
    from convert.speech.channels import mu_law, telephone
    from convert.speech.features import FeatureBank
    from convert.speech.recipe import SpeechRecipe

    sr = 16000
    t = np.arange(sr) / sr

    def gain_db(hz: float) -> float:
        x = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
        y = telephone(x, sr)
        assert y.shape == x.shape and y.dtype == np.float32
        mid = slice(2000, -2000)  # away from the filter's edges
        return float(10 * np.log10(np.mean(y[mid] ** 2) / np.mean(x[mid] ** 2)))

    assert abs(gain_db(1000)) < 1.5 and abs(gain_db(2500)) < 1.5
    assert gain_db(100) < -40 and gain_db(5000) < -40 and gain_db(7000) < -40
    levels = mu_law(np.random.default_rng(0).uniform(-1.2, 1.2, 100_000))
    assert len(np.unique(levels)) == 256 and np.abs(levels).max() <= 1.0
    quiet = np.linspace(-0.01, 0.01, 1001)  # quiet speech keeps its relative precision
    assert np.max(np.abs(mu_law(quiet) - quiet)) < 0.001
    assert telephone(np.ones(5, np.float32), sr).shape == (5,)  # shorter than the filter's pad

    utts = index_csv(synthetic_corpus)[:3]
    cache = tmp_path / "cache"
    recipe = SpeechRecipe().replace("augment", speed_factors=(1.1,), noise_snr_db=())
    clean = FeatureBank(utts, recipe, cache_dir=cache)
    heard = FeatureBank(utts, recipe, cache_dir=cache, channel="telephone")
    assert [len(v) for v in heard.variants] == [1, 1, 1]
    assert len(list(cache.iterdir())) == 2
    assert heard.variants[0][0].shape == clean.variants[0][0].shape
    assert not np.allclose(heard.variants[0][0], clean.variants[0][0], atol=1.0)
    again = FeatureBank(utts, recipe, cache_dir=cache, channel="telephone")
    np.testing.assert_array_equal(again.variants[2][0], heard.variants[2][0])
    for text in ('["telephone"]', "[telephone]", "telephone"):  # TOML's list, or bare
        asked = SpeechRecipe.load(None, overrides={("evaluate", "loco"): "true",
                                                   ("evaluate", "channels"): text})
        assert asked.evaluate.channels == ("telephone",)
    with pytest.raises(ConfigError, match=r"evaluate.channels = 'radio' is not allowed; "
                                          r"choose one of 'telephone'"):
        recipe.replace("evaluate", loco=True, channels=("radio",))
    with pytest.raises(ConfigError, match=r"evaluate.loco = true"):
        recipe.replace("evaluate", loco=False, channels=("telephone",))


def test_the_mel_band_can_be_the_voice_band_and_a_wrong_band_is_refused_at_load():
    from convert.speech.features import _cache_key
    from convert.speech.recipe import SpeechRecipe
    from edge.features.mfcc import mel_filterbank

    wide = SpeechRecipe()
    voice = SpeechRecipe.load(None, overrides={("features", "low_hz"): "300",
                                               ("features", "high_hz"): "3400"})
    assert (voice.mfcc.low_hz, voice.mfcc.high_hz) == (300.0, 3400.0)
    # The manifest's preprocessing carries the band, so the device computes the same filters.
    assert voice.mfcc.to_dict()["low_hz"] == 300.0
    hz = np.arange(voice.mfcc.n_fft // 2 + 1) * voice.mfcc.sample_rate / voice.mfcc.n_fft
    heard = mel_filterbank(voice.mfcc).sum(axis=0) > 0
    assert hz[heard].min() >= 300 - 32 and hz[heard].max() <= 3400
    assert hz[mel_filterbank(wide.mfcc).sum(axis=0) > 0].max() > 7000
    assert _cache_key(voice, True, "base") != _cache_key(wide, True, "base")
    with pytest.raises(ConfigError, match=r"^features: mel band edges .*low_hz=5000.0, "
                                          r"high_hz=3400.0"):
        SpeechRecipe.load(None, overrides={("features", "low_hz"): "5000",
                                           ("features", "high_hz"): "3400"})
    with pytest.raises(ConfigError, match=r"^features: n_ceps"):
        wide.replace("features", n_ceps=48)


def test_babble_copies_mix_other_speakers_of_the_clips_own_corpus(synthetic_corpus, tmp_path):
    """Babble talkers come from the clip's own corpus and other speakers (so a held-out corpus is
    never heard in training); a babble copy is seeded, holds its talkers 5-20 dB under the clip,
    and is cached apart from the base variants."""
    pytest.importorskip("audiomentations")
    import soundfile as sf

    from convert.speech.augment import babble_copy
    from convert.speech.features import _talkers
    from edge.sources.audio_file import load_audio

    utts = index_csv(synthetic_corpus)
    solo = [Utterance(u.path, u.label, "solo", "other") for u in utts[:3]]
    talkers = _talkers(utts + solo)
    for u in utts:
        assert {m.speaker for m in utts if m.path in talkers[u]} == (
            {m.speaker for m in utts} - {u.speaker})
    assert talkers[solo[0]] == [solo[1].path, solo[2].path]  # one speaker: its other clips

    sr = 16000
    tone = tmp_path / "tone.wav"  # a talker whose presence is easy to find: 3 kHz
    sf.write(tone, 0.5 * np.sin(2 * np.pi * 3000 * np.arange(3 * sr) / sr), sr)
    x = load_audio(utts[0].path, sr)
    a, b, c = (babble_copy(x, sr, seed, [tone]) for seed in (7, 7, 8))
    assert a.shape == x.shape and np.array_equal(a, b) and not np.array_equal(a, c)
    noise = a.astype(np.float64) - x
    assert 10 ** -2.2 < np.mean(noise**2) / np.mean(x.astype(np.float64) ** 2) < 10 ** -0.3
    spectrum = np.abs(np.fft.rfft(noise))
    assert spectrum.argmax() == pytest.approx(3000 * x.size / sr, abs=2)

    _one_copy_cached_apart(utts[:3], tmp_path / "cache", babble_copies=1)


def _one_copy_cached_apart(utts: list[Utterance], cache: Path, **copies: int) -> None:
    """With one copy per clip (``copies``), each clip has its base variants (as recorded, one
    speed copy) unchanged, then the copy, which differs from the clip; the copies are cached
    in a group of their own."""
    from convert.speech.features import FeatureBank
    from convert.speech.recipe import SpeechRecipe

    base = SpeechRecipe().replace("augment", speed_factors=(1.1,), noise_snr_db=())
    plain = FeatureBank(utts, base, cache_dir=cache)
    more = FeatureBank(utts, base.replace("augment", **copies), cache_dir=cache)
    assert [len(v) for v in more.variants] == [3] * len(utts) and len(list(cache.iterdir())) == 2
    for got, want in zip(more.variants, plain.variants):
        np.testing.assert_array_equal(got[1], want[1])
        assert got[2].shape != want[0].shape or not np.array_equal(got[2], want[0])


def test_voice_copies_move_pitch_and_tempo_apart(synthetic_corpus, tmp_path):
    """A voice copy is seeded; its pitch moves within 4 semitones and its length within the tempo
    range, the two drawn apart (unlike a speed copy); it is cached apart from the base variants."""
    pytest.importorskip("audiomentations")
    from convert.speech.augment import SEMITONES, TEMPO, voice_copy

    sr = 16000
    t = np.arange(2 * sr) / sr
    x = sum(0.2 / k * np.sin(2 * np.pi * 200 * k * t) for k in (1, 2, 3)).astype(np.float32)

    def f0(y: np.ndarray) -> float:
        mid = y[y.size // 4: 3 * y.size // 4]
        spectrum = np.abs(np.fft.rfft(mid * np.hanning(mid.size), 8 * sr))
        return float(np.argmax(spectrum[: 8 * 300]) / 8)  # strongest peak under 300 Hz, in Hz

    a, b, c = (voice_copy(x, sr, seed) for seed in (7, 7, 8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    shifts, rates = [], []
    for seed in range(8):
        y = voice_copy(x, sr, seed)
        shifts.append(12 * np.log2(f0(y) / 200))
        rates.append(x.size / y.size)
    assert all(SEMITONES[0] - 0.2 < s < SEMITONES[1] + 0.2 for s in shifts)
    assert all(TEMPO[0] - 0.01 < r < TEMPO[1] + 0.01 for r in rates)
    assert np.ptp(shifts) > 2.0 and np.ptp(rates) > 0.1
    # A speed copy's pitch ratio equals its tempo ratio; a voice copy's does not.
    assert abs(np.corrcoef(shifts, 12 * np.log2(rates))[0, 1]) < 0.9

    _one_copy_cached_apart(index_csv(synthetic_corpus)[:3], tmp_path / "cache", voice_copies=1)


def test_spec_augment_masks_bounded_spans_and_bands_and_nothing_else():
    from convert.speech.train import spec_augment

    x = np.random.default_rng(1).normal(1.0, 0.1, (40, 100, 20, 1)).astype(np.float32) + 5.0
    before = x.copy()
    spec_augment(x, np.random.default_rng(0), time_masks=1, time_width=12, feature_masks=1,
                 feature_width=4)
    masked = x == 0.0
    assert np.array_equal(x[~masked], before[~masked])  # only masking, nothing else moves
    for w in masked[..., 0]:
        rows, cols = w.all(axis=1), w.all(axis=0)
        assert rows.sum() <= 12 and cols.sum() <= 4
        if rows.any():  # one contiguous span
            assert np.ptp(np.flatnonzero(rows)) == rows.sum() - 1
        # every masked value lies in a masked span or band
        assert not (w & ~rows[:, None] & ~cols[None, :]).any()
    assert masked.any(axis=(1, 2, 3)).mean() > 0.5
    same = before.copy()
    spec_augment(same, np.random.default_rng(0), 1, 12, 1, 4)
    assert np.array_equal(same, x)  # seeded
    untouched = before.copy()
    spec_augment(untouched, np.random.default_rng(0), 0, 12, 0, 4)
    assert np.array_equal(untouched, before)


def test_mixup_blends_windows_targets_and_weights_only_within_a_corpus():
    """Every blended window is a convex blend of two windows of its own corpus, its target of
    their targets (so it stays over that corpus's labels, the masked loss's), and the mask
    columns are unchanged."""
    from convert.speech.train import mixup_within

    rng = np.random.default_rng(0)
    group = np.repeat([0, 1, 2], [7, 5, 1])
    x = np.broadcast_to(group[:, None, None, None] * 10.0, (13, 6, 4, 1)).astype(np.float32)
    x = x + rng.uniform(0, 1, x.shape).astype(np.float32)  # each corpus in its own band
    labels = np.array([0, 1, 1, 2, 0, 1, 2, 3, 4, 3, 3, 4, 5])
    mask = np.zeros((13, 6), np.float32)
    for g, have in ((0, [0, 1, 2]), (1, [3, 4]), (2, [5])):
        mask[group == g, have[0]:have[-1] + 1] = 1.0
    target = np.concatenate([np.eye(6, dtype=np.float32)[labels], mask], axis=1)
    weight = rng.uniform(0.5, 2.0, 13)
    before = (x.copy(), target.copy(), weight.copy())

    mx, mt, mw = mixup_within(x, target, weight, group, 0.4, np.random.default_rng(1))
    for a, b in zip((x, target, weight), before):
        np.testing.assert_array_equal(a, b)  # the inputs are untouched
    for g in np.unique(group):
        rows = group == g
        assert mx[rows].min() >= x[rows].min() - 1e-4 and mx[rows].max() <= x[rows].max() + 1e-4
        assert mw[rows].min() >= weight[rows].min() - 1e-6
        assert mw[rows].max() <= weight[rows].max() + 1e-6
    np.testing.assert_array_equal(mt[:, 6:], mask)
    np.testing.assert_allclose(mt[:, :6].sum(axis=1), 1.0, rtol=1e-6)
    assert not (mt[:, :6] * (1 - mask)).any()  # no mass on a label the corpus lacks
    np.testing.assert_allclose(mx[group == 2], x[group == 2], rtol=1e-6)  # one window: itself
    assert not np.allclose(mx, x)
    again = mixup_within(x, target, weight, group, 0.4, np.random.default_rng(1))
    np.testing.assert_array_equal(again[0], mx)  # seeded


@pytest.mark.slow
def test_training_is_repeatable_and_its_seed_leaves_the_cached_copies_alone(synthetic_corpus,
                                                                            tmp_path):
    """The same recipe trains the same weights, so two recipes differ by what they change and
    another ``train.seed`` is another draw of one recipe; that seed does not touch the noisy
    copies (their own ``augment.seed``), so drawing again reuses the feature cache."""
    from convert.speech.features import FeatureBank
    from convert.speech.recipe import SpeechRecipe
    from convert.speech.train import train_model

    utts = index_csv(synthetic_corpus)
    y = np.array([LABELS.index(u.label) for u in utts])
    recipe = (SpeechRecipe().replace("features", window_frames=100, hop_frames=50)
              .replace("model", width=4).replace("train", epochs=2, batch_size=16)
              .replace("augment", speed_factors=(), noise_snr_db=(10.0, 30.0)))
    cache = tmp_path / "cache"
    bank = FeatureBank(utts, recipe, cache_dir=cache)
    (key,) = cache.iterdir()
    reseeded = recipe.replace("train", seed=1)
    assert [p.name for p in cache.iterdir()] == [key.name]
    again = FeatureBank(utts, reseeded, cache_dir=cache)
    assert [p.name for p in cache.iterdir()] == [key.name]  # same copies, from the cache
    np.testing.assert_array_equal(again.variants[0][1], bank.variants[0][1])
    # Taking the level away happens per window, after the cache: the cached frames serve it.
    level = recipe.replace("features", normalize_level=True)
    assert level.mfcc.normalize_level and not recipe.mfcc.normalize_level
    FeatureBank(utts[:1], level, cache_dir=cache)
    assert [p.name for p in cache.iterdir()] == [key.name]
    other = FeatureBank(utts[:1], recipe.replace("augment", seed=1), cache_dir=cache)
    assert not np.array_equal(other.variants[0][1], bank.variants[0][1])

    # adapt.fresh_share: a training window standardised as a device not yet adapted sees it.
    prior = bank.pooled_stats()
    both = bank.standardize_by("corpus", prior)
    np.testing.assert_array_equal(both.model_input(0, 1, 0, fresh=True),
                                  bank.standardize_with(prior).model_input(0, 1, 0))
    np.testing.assert_array_equal(both.model_input(0, 1, 0),
                                  bank.standardize_by("corpus").model_input(0, 1, 0))

    def weights(r: SpeechRecipe, on: FeatureBank = bank) -> list[np.ndarray]:
        return train_model(on, y, LABELS, r).get_weights()

    # The names Keras numbers per process end up in the .tflite: a model trained after others
    # (the folds) must carry the same ones, or the same weights make another file.
    names = [[w.path for w in train_model(bank, y, LABELS, recipe).weights] for _ in range(2)]
    assert names[0] == names[1]
    first, second, third = weights(recipe), weights(recipe), weights(reseeded)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not all(np.array_equal(a, c) for a, c in zip(first, third))
    mixed = weights(recipe.replace("train", mixup=0.4))  # the setting reaches training
    assert not all(np.array_equal(a, m) for a, m in zip(first, mixed))
    averaged = weights(recipe.replace("train", average_from=2))
    assert not all(np.array_equal(a, m) for a, m in zip(first, averaged))

    # The corpus adversary reaches training once there are two corpora to tell apart, and the
    # model returned is the classifier alone.
    from dataclasses import replace

    two = [replace(u, corpus=f"room{i % 2}") for i, u in enumerate(utts)]
    rooms = FeatureBank(two, recipe, cache_dir=cache)
    plain = weights(recipe, rooms)
    adversarial = weights(recipe.replace("train", adversary=0.5), rooms)
    assert [a.shape for a in adversarial] == [a.shape for a in plain]
    assert not all(np.array_equal(a, m) for a, m in zip(plain, adversarial))
    # So does the arousal head, alone or beside the adversary, and it stays out of the model.
    for extra in ({"arousal": 0.5}, {"arousal": 0.5, "adversary": 0.5}):
        aroused = weights(recipe.replace("train", **extra), rooms)
        assert [a.shape for a in aroused] == [a.shape for a in plain]
        assert not all(np.array_equal(a, m) for a, m in zip(plain, aroused))
        assert not all(np.array_equal(a, m) for a, m in zip(adversarial, aroused))
    with pytest.raises(ConfigError, match="train.arousal"):
        recipe.replace("train", arousal=0.5, mixup=0.2)


def test_the_corpus_adversary_pushes_the_representation_against_telling_corpora_apart():
    """Gradient reversal: the adversary's loss reaches the classifier's layers scaled by
    -scale (nothing at 0), so a step on them makes the corpora harder to tell apart, and the
    adversary's own gradient does not depend on the scale; the ramp starts near 0 and ends near
    the weight."""
    import keras

    from convert.speech.model import build_branches
    from convert.speech.recipe import SpeechRecipe
    from convert.speech.train import adversary_ramp, with_adversary

    recipe = SpeechRecipe().updated({
        "features": {"prosody": True, "normalize": "none", "window_frames": 20,
                     "pooling": "frames_mean_std"},
        "model": {"kind": "ensemble", "width": 4, "pooled_width": 8}})
    keras.utils.set_random_seed(0)
    _, (compact, pooled) = build_branches(recipe, 4)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 22, recipe.mfcc.n_columns, 1)).astype("float32")
    corpus = keras.utils.to_categorical(rng.integers(0, 3, 32), 3)
    for network in (compact, pooled):
        _check_reversal(network, *with_adversary(network, 3), x, corpus)
    assert adversary_ramp(0, 15, 0.5) < 0.1 and adversary_ramp(14, 15, 0.5) > 0.49
    with pytest.raises(ConfigError, match="train.adversary"):
        with_adversary(keras.Model(compact.inputs, compact.outputs, name="seed_cnn"), 3)


def _check_reversal(network: Any, model: Any, scale: Any, x: np.ndarray,
                    corpus: np.ndarray) -> None:
    import keras
    import tensorflow as tf

    own = {id(v) for v in network.trainable_weights}
    adversary = [v for v in model.trainable_weights if id(v) not in own]
    assert adversary and len(model.trainable_weights) == len(own) + len(adversary)
    weights = network.trainable_weights

    def corpus_loss() -> Any:
        return tf.reduce_mean(keras.losses.categorical_crossentropy(corpus, model(x)[1]))

    def gradients(s: float) -> tuple[list[np.ndarray], list[np.ndarray], float]:
        scale.assign(s)
        with tf.GradientTape() as tape:
            loss = corpus_loss()
        g = tape.gradient(loss, weights + adversary)
        return ([np.zeros(v.shape) if d is None else d.numpy()
                 for v, d in zip(weights, g[: len(weights)])],
                [d.numpy() for d in g[len(weights):]], float(loss))

    zero, adv0, _ = gradients(0.0)
    one, adv1, before = gradients(1.0)
    two, _, _ = gradients(2.0)
    assert all(not z.any() for z in zero) and any(o.any() for o in one)
    for o, t in zip(one, two):
        np.testing.assert_allclose(t, 2 * o, rtol=1e-4, atol=1e-7)
    for a, b in zip(adv0, adv1):  # the adversary's own gradient does not depend on the scale
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # A small step down the (reversed) gradient on the classifier's layers raises the loss.
    for v, d in zip(weights, one):
        v.assign(v - 0.01 * d)
    scale.assign(1.0)
    assert float(corpus_loss()) > before


def test_weight_averaging_keeps_the_mean_of_every_step_from_its_epoch_on():
    """The averaged model is the mean of the weights after each step it saw, batch-norm
    statistics included; steps before it was attached do not count."""
    import keras

    from convert.averaging import WeightAverage

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(),
                              keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
    y = np.random.default_rng(1).normal(size=(32, 2)).astype(np.float32)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # before averaging: not counted
    seen: list[list[np.ndarray]] = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: object = None) -> None:
            seen.append([np.array(v.numpy()) for v in model.weights])

    average = WeightAverage(model, None)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[average.callback, Record()])
    last = [np.array(v.numpy()) for v in model.weights]
    average.assign(average.average)
    assert len(seen) == average.steps == 8
    for got, *steps in zip(model.weights, *seen):
        np.testing.assert_allclose(got.numpy(), np.mean(steps, axis=0), rtol=1e-5, atol=1e-6)
    assert not all(np.allclose(v.numpy(), w) for v, w in zip(model.weights, last))
    moving_mean = [v for v in model.weights if "moving_mean" in v.path]
    assert moving_mean and not np.allclose(moving_mean[0].numpy(), 0.0)  # BN statistics too


def test_weight_averaging_cannot_start_after_the_last_epoch():
    from convert.speech.recipe import SpeechRecipe
    from edge.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train.average_from = 16 .*train.epochs = 15"):
        SpeechRecipe().replace("train", epochs=15, average_from=16)


def test_the_feature_cache_follows_the_clips_bytes_not_their_folder_or_mtime(synthetic_corpus,
                                                                           tmp_path):
    """A corpus copied elsewhere (new folder, new mtimes, as a fresh mount or a plain ``cp``)
    reads its features from the cache; a clip whose bytes change is computed again."""
    import shutil
    import time
    from dataclasses import replace

    from convert.speech.features import FeatureBank
    from convert.speech.recipe import SpeechRecipe

    recipe = SpeechRecipe().replace("augment", speed_factors=(1.1,), noise_snr_db=())
    utts = index_csv(synthetic_corpus)[:3]
    cache = tmp_path / "cache"
    first = FeatureBank(utts, recipe, cache_dir=cache)
    (key,) = cache.iterdir()
    stamps = {p.name: p.stat().st_mtime_ns for p in key.iterdir()}
    assert len(stamps) == 3

    moved = tmp_path / "moved"
    moved.mkdir()
    time.sleep(0.01)
    for u in utts:
        shutil.copy(u.path, moved / u.path.name)  # content only: a new mtime
    again = FeatureBank([replace(u, path=moved / u.path.name) for u in utts], recipe,
                        cache_dir=cache)
    assert {p.name: p.stat().st_mtime_ns for p in key.iterdir()} == stamps  # all from the cache
    for got, want in zip(again.variants, first.variants):
        np.testing.assert_array_equal(got[1], want[1])

    edited = moved / utts[0].path.name
    data = bytearray(edited.read_bytes())
    data[-2:] = b"\x00\x40"  # one sample changed
    edited.write_bytes(bytes(data))
    FeatureBank([replace(utts[0], path=edited)], recipe, cache_dir=cache)
    assert len(list(key.iterdir())) == 4


def test_the_shipped_recipe_is_the_compact_recipe_with_the_ensemble_model():
    """recipes/speech.toml (the ensemble) differs from recipes/speech_compact.toml (the model
    shipped before it) only where the ensemble must: its input (prosody, no per-window
    normalisation outside the graph, the statistics rows, clipped for int8, prosody every
    other frame, loudness per window), its model (with its linear third network), its damped
    balancing weights and room copies (levers measured on the ensemble), and the telephone its
    LOCO is also heard through; so the model card's comparisons between them compare models
    and those levers."""
    from convert.speech.recipe import SpeechRecipe

    repo = Path(__file__).resolve().parent.parent
    compact = SpeechRecipe.load(repo / "recipes" / "speech_compact.toml").to_dict()
    ensemble = SpeechRecipe.load(repo / "recipes" / "speech.toml").to_dict()
    changed = {(section, key) for section in compact for key in compact[section]
               if compact[section][key] != ensemble[section][key]}
    assert changed == {("features", "normalize"), ("features", "prosody"),
                       ("features", "prosody_step"), ("features", "pooling"),
                       ("features", "clip"), ("features", "normalize_level"),
                       ("model", "kind"), ("model", "l2"), ("model", "pooled_rows"),
                       ("model", "linear_weight"),
                       ("model", "linear_ceps"), ("model", "linear_masked"),
                       ("train", "balance_power"), ("augment", "room_copies"),
                       ("evaluate", "channels")}
    assert compact["model"]["kind"] == "compact" and ensemble["model"]["kind"] == "ensemble"
    assert ensemble["model"]["pooled_width"] == 128 and ensemble["model"]["pooled_rows"] == 2
    assert ensemble["features"]["pooling"] == "frames_mean_std_delta"
    assert (compact["train"]["balance_power"], ensemble["train"]["balance_power"]) == (1.0, 0.5)
    assert (compact["augment"]["room_copies"], ensemble["augment"]["room_copies"]) == (0, 2)


def test_a_stray_label_is_named_before_it_becomes_a_class(synthetic_corpus, tmp_path, caplog):
    """A typo ("excited" for one clip) would be a class of its own that weighs as much as any
    other; with the fusion labels a label outside the set is left out.  Both say so."""
    import logging

    from convert.speech.pipeline import load_dataset
    from convert.speech.recipe import SpeechRecipe

    rows = synthetic_corpus.read_text().splitlines()
    clip = tmp_path / "extra.wav"
    clip.write_bytes((synthetic_corpus.parent / rows[1].split(",")[0]).read_bytes())
    table = synthetic_corpus.parent / "typo.csv"
    table.write_text("\n".join([*rows, f"{clip},excited,spk0"]) + "\n")
    for labels, words in (("corpus", ["'excited' has only 1 clip", "'excited' (1 clip(s)) is "
                                      "none of the emotions the appliance shows"]),
                          ("fusion", ["'excited' (1 clip(s), e.g."])):
        recipe = SpeechRecipe.load(None, overrides={("data", "corpora"): f'["csv:{table}"]',
                                                    ("data", "labels"): labels})
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="convert.speech.pipeline"):
            data = load_dataset(recipe)
        warned = [r.getMessage() for r in caplog.records if r.name == "convert.speech.pipeline"]
        assert len(warned) == len(words), (labels, warned)
        assert all(w in line for w, line in zip(words, warned, strict=True)), (labels, warned)
        assert ("excited" in data.labels) == (labels == "corpus")


def test_a_corpus_labelled_with_nouns_reaches_the_emotions_the_device_shows(
        synthetic_corpus, caplog):
    """"anger", "Happiness", "sadness": a spreadsheet's labels.  Each is taken as its emotion,
    at training and by the device's fusion map; a label with none is named at training."""
    import logging

    from convert.speech.pipeline import load_dataset
    from convert.speech.recipe import SpeechRecipe
    from edge.labels import fusion_map_for

    nouns = {"angry": "anger", "happy": "Happiness", "sad": "sadness", "neutral": "neutral"}
    rows = synthetic_corpus.read_text().splitlines()
    relabelled = [rows[0]] + [",".join([p, nouns[lab], spk]) for p, lab, spk in
                              (row.split(",") for row in rows[1:])]
    table = synthetic_corpus.parent / "nouns.csv"
    table.write_text("\n".join(relabelled) + "\n")
    for labels, expected in (("corpus", {"anger", "happiness", "sadness", "neutral"}),
                             ("fusion", {"angry", "happy", "sad", "neutral"})):
        recipe = SpeechRecipe.load(None, overrides={("data", "corpora"): f'["csv:{table}"]',
                                                    ("data", "labels"): labels})
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="convert.speech.pipeline"):
            data = load_dataset(recipe)
        assert set(data.labels) == expected
        assert not [r for r in caplog.records if r.name == "convert.speech.pipeline"]
        assert set(fusion_map_for(data.labels).values()) == {"angry", "happy", "sad", "neutral"}
    assert fusion_map_for(["boredom", "excited"]) == {"boredom": None, "excited": None}


def test_speech_score_names_the_clips_it_leaves_out(synthetic_corpus, tmp_path, caplog):
    """A clip whose label the model cannot show is left out of the score, and said to be; a
    model with fewer than two of the appliance's emotions is refused rather than scored 1.0
    on the one it has."""
    import dataclasses
    import logging

    from convert.speech import pipeline

    from .helpers import tiny_speech_model

    model, _ = tiny_speech_model(tmp_path)
    utts = index_csv(synthetic_corpus)
    bored = dataclasses.replace(utts[0], label="boredom")
    with caplog.at_level(logging.WARNING, logger="convert.speech.pipeline"):
        m = pipeline.score_held_out(model, [*utts, bored], "mine", None)
    assert m["left_out_clips"] == 1 and m["n"] == len(utts)
    assert [r.getMessage() for r in caplog.records] == [
        f"mine: 1 of {len(utts) + 1} clips have a label the model cannot show (boredom 1); "
        f"scored on the other {len(utts)}"]

    manifest_path = model.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text())
    manifest["labels"] = ["neutral", "anxious", "bored", "excited"]
    manifest["fusion_map"] = fusion_map_for(manifest["labels"])
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="fewer than two of its labels"):
        pipeline.score_held_out(model, utts, "mine", None)


def test_speech_score_counts_the_csv_rows_it_left_out(synthetic_corpus, tmp_path, capsys):
    """speech-score's JSON gave the clips scored but not the CSV rows it could not use: a
    researcher reading only the JSON could not tell 60 clips of 60 rows from 60 of 63."""
    from convert.cli import main

    from .helpers import tiny_speech_model

    model, _ = tiny_speech_model(tmp_path)
    rows = synthetic_corpus.read_text().splitlines()
    table = synthetic_corpus.parent / "three_bad.csv"
    table.write_text("\n".join([*rows, "gone.wav,happy,spk0", ",sad,spk1", rows[1]]) + "\n")
    counts = {}
    for csv_file, left in ((synthetic_corpus, 0), (table, 3)):
        assert main(["-q", "speech-score", "--model", str(model),
                     "--corpus", f"csv:{csv_file}"]) == 0
        scored = json.loads(capsys.readouterr().out)["corpora"][csv_file.stem]
        assert scored["left_out_rows"] == left
        counts[left] = scored["clips"]
    assert counts[0] == counts[3] == len(rows) - 1


def test_fold_reports_are_reused_only_for_the_same_data(synthetic_corpus, tmp_path):
    """A CSV edited between two runs (a label changed, clips cut) reused the first run's fold
    reports "(same recipe and split)": a 3-label model's manifest carried a 4-label figure."""
    import dataclasses
    import shutil

    from convert.speech.evaluate import data_fingerprint

    utts = index_csv(synthetic_corpus)
    same = data_fingerprint(utts)
    assert data_fingerprint(list(reversed(utts))) == same
    relabelled = [dataclasses.replace(utts[0], label="sad" if utts[0].label != "sad" else "happy"),
                  *utts[1:]]
    assert data_fingerprint(relabelled) != same
    assert data_fingerprint(utts[:-4]) != same
    moved = tmp_path / "moved"
    shutil.copytree(synthetic_corpus.parent, moved)
    assert data_fingerprint([dataclasses.replace(u, path=moved / u.path.relative_to(
        synthetic_corpus.parent)) for u in utts]) == same  # the same clips elsewhere


def test_the_shipped_recipe_on_one_csv_says_at_once_what_to_set(synthetic_corpus, tmp_path,
                                                                capsys):
    """recipes/speech.toml with one's own CSV computed every clip's features (8 variants each)
    before saying LOCO needs two corpora, and then a second error about evaluate.channels."""
    from convert.cli import main

    repo = Path(__file__).resolve().parent.parent
    assert main(["-q", "speech", "--recipe", str(repo / "recipes" / "speech.toml"),
                 "--csv", str(synthetic_corpus), "--folds", "2", "--out",
                 str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "needs two corpora or more" in line and "--set evaluate.loco=false" in line
    assert "--set 'evaluate.channels=[]'" in line
    assert not (tmp_path / "cache").exists()  # no clip's features were computed


@pytest.mark.slow
def test_some_corpora_left_out_first_then_the_rest_and_row_standardisation_is_not_shipped(
        synthetic_corpus, second_room, tmp_path, capsys):
    """``evaluate.loco_corpora`` scores only the corpora it names (each fold still trained on
    all the others), and a full run into the same folder reuses their reports.  Recipes that
    cannot be shipped (some corpora only; ``adapt.rows``, which the device does not compute) say
    so in one line unless --evaluate-only, and so does a corpus name the data does not have."""
    pytest.importorskip("tensorflow")
    from convert.cli import main

    out = tmp_path / "models"
    room = second_room.parent.name
    args = [*_two_rooms_with_prosody(synthetic_corpus, second_room, out), "--folds", "0",
            "--epochs", "1", "--set", "model.width=8"]
    assert main([*args, "--set", f"evaluate.loco_corpora=[{room!r}]", "--evaluate-only"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["loco_only"] == [room] and list(first["loco_uar"]) == [room]
    reports = out / "reports" / "speech"
    assert [p.name for p in reports.glob("loco_*.json")] == [f"loco_{room}.json"]
    stamp = (reports / f"loco_{room}.json").stat().st_mtime_ns
    assert main([*args, "--evaluate-only"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert "loco_only" not in full and set(full["loco_uar"]) == {"index", room}
    assert full["loco_uar"][room] == first["loco_uar"][room]
    assert (reports / f"loco_{room}.json").stat().st_mtime_ns == stamp  # reused

    for extra, says in (([f"evaluate.loco_corpora=[{room!r}]"], "--evaluate-only"),
                        (["evaluate.loco_corpora=['nowhere']", ], f"index, {room}"),
                        (["features.pooling=frames_mean_std_delta", "model.kind=ensemble",
                          "adapt.rows=true"], "--evaluate-only")):
        assert main([*args, *(a for e in extra for a in ("--set", e))]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert says in line
    assert not list(out.glob("*.tflite"))
    # adapt.rows is measured through the whole leave-one-corpus-out, adapted and fresh.
    rows = tmp_path / "rows"
    rows_args = [a if a != str(out) else str(rows) for a in args]
    ensemble = ["--set", "features.pooling=frames_mean_std_delta", "--set", "model.kind=ensemble"]
    assert main([*rows_args, *ensemble, "--set", "adapt.rows=true", "--evaluate-only"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert set(measured["loco_uar"]) == {"index", room}
    assert 0 <= measured["loco_mean_fresh_uar"] <= 1


def test_a_silent_clip_does_not_teach_the_adaptation_prior(synthetic_corpus, tmp_path, caplog):
    """2 s of digital zeros labelled "sad": all its frames counted as speech (the mask is
    relative to the clip), and the prior every fresh device standardises with moved far."""
    import logging

    import soundfile as sf

    from convert.speech.features import FeatureBank
    from convert.speech.recipe import SpeechRecipe

    recipe = SpeechRecipe.load(None, overrides={("adapt", "mode"): "deployment",
                                                ("augment", "speed_factors"): "[]",
                                                ("augment", "noise_snr_db"): "[]"})
    utts = index_csv(synthetic_corpus)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(32000, np.float32), 16000)
    with_silence = [*utts, Utterance(silent, "sad", "s99", utts[0].corpus)]
    with caplog.at_level(logging.WARNING, logger="convert.speech.features"):
        plain = FeatureBank(utts, recipe, augment=False)
        padded = FeatureBank(with_silence, recipe, augment=False)
        assert padded.speech_frames(len(utts)) == 0
    assert [r.getMessage() for r in caplog.records] == [
        f"{silent}: silent (no frame above the device's -70 dBFS floor); left out of the "
        f"adaptation statistics"]
    assert sum(padded.speech_frames(i) for i in range(len(with_silence))) == sum(
        plain.speech_frames(i) for i in range(len(utts)))


def test_a_model_reproduced_from_its_manifest_says_when_the_data_differs(synthetic_corpus,
                                                                          tmp_path, caplog):
    """`--recipe MANIFEST.json` promised the same model again, but nothing told a researcher
    whose corpus had changed (a CSV edited, a folder half copied) that it could not be."""
    pytest.importorskip("tensorflow")
    import logging

    from convert.cli import main

    out = tmp_path / "models"
    quick = ["--set", "model.width=8", "--set", "augment.speed_factors=[]",
             "--set", "augment.noise_snr_db=[]", "--folds", "0", "--epochs", "1"]
    assert main(["-q", "speech", "--csv", str(synthetic_corpus), "--out", str(out), *quick]) == 0
    manifest = out / "speech_emotion_int8.json"
    training = json.loads(manifest.read_text())["training"]
    assert training["clips_per_corpus"] == {"index": 48}
    assert len(training["data_fingerprint"]) == 16

    def reproduce(csv: Path) -> str:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="convert.recipe"):
            assert main(["speech", "--recipe", str(manifest), "--csv", str(csv), "--out",
                         str(tmp_path / "again"), "--evaluate-only"]) == 0
        return caplog.text

    assert "the data is what" in reproduce(synthetic_corpus)
    header, *rows = synthetic_corpus.read_text().splitlines()

    def elsewhere(name: str, rows: list[str]) -> Path:  # the same corpus name, index
        (tmp_path / name).mkdir()
        csv = tmp_path / name / "index.csv"
        csv.write_text("\n".join([header, *(f"{synthetic_corpus.parent / r}" for r in rows)]))
        return csv

    assert "the data is what" in reproduce(elsewhere("moved", rows))  # a folder is not the data
    told = reproduce(elsewhere("fewer", rows[:-1]))
    assert "the data differs from what" in told and "index: 48 clips then, 47 now" in told
    path, label, speaker = rows[0].split(",")
    other = next(lab for lab in LABELS if lab != label)
    told = reproduce(elsewhere("relabelled", [f"{path},{other},{speaker}", *rows[1:]]))
    assert "the data differs" in told and "with as many clips of each" in told
