"""emotion-convert speech end to end on a tiny synthetic corpus, and the protocol's invariants."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from convert.corpora import Utterance, index_csv
from convert.metrics import classification_metrics
from convert.speech import fusion_map_for, speaker_folds
from edge.errors import ConfigError

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
    with pytest.raises(ValueError):
        speaker_folds(utts, 25)


def test_metrics_by_hand():
    m = classification_metrics([0, 0, 0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 0, 2, 1], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["uar"] == pytest.approx((3 / 4 + 1 / 2 + 1 / 2) / 3)
    assert m["confusion"] == [[3, 1, 0], [1, 1, 0], [0, 1, 1]]
    f1_a, f1_b, f1_c = 2 * 0.75 * 0.75 / 1.5, 2 * (1 / 3) * 0.5 / (1 / 3 + 0.5), 2 * 1 * 0.5 / 1.5
    assert m["macro_f1"] == pytest.approx((f1_a + f1_b + f1_c) / 3)


def test_fusion_map_is_explicit():
    from convert.corpora import RAVDESS_LABELS

    fm = fusion_map_for(RAVDESS_LABELS + ("boredom",))
    assert fm["calm"] == "neutral" and fm["surprised"] == "surprised" and fm["boredom"] is None


def test_csv_index_errors_name_the_row(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label,speaker\nmissing.wav,happy,s1\n")
    with pytest.raises(ConfigError, match=r"bad.csv:2: .*missing.wav"):
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
    code = main(["-q", "speech", "--csv", str(synthetic_corpus), "--out", str(out),
                 "--folds", "2", "--reference-folds", "1", "--epochs", "2", "--width", "16",
                 "--no-augment"])
    assert code == 0
    model = out / "speech_emotion_int8.tflite"
    manifest = load_manifest(model)
    assert manifest.labels == LABELS and manifest.task == "speech"
    assert manifest.input.dtype == "int8" and manifest.output.dtype == "int8"
    assert manifest.preprocessing["window_frames"] == 300
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
                 "--reference-folds", "1", "--reference-only", "--epochs", "1",
                 "--no-augment"]) == 0
    ref = json.loads((out / "reports" / "speech" / "seed_reference.json").read_text())
    assert ref["recipe"]["model"] == "seed" and len(ref["folds"]) == 1
    assert ref["ours_on_same_folds"]["uar"] == pytest.approx(cv["folds"][0]["uar"])
    assert model.read_bytes() == before
