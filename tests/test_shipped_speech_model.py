"""The shipped speech model: its manifest's promises, golden int8 outputs, and the invariance that
training (convert) and the device build the very same model input from the same audio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from convert.speech.corpora import Utterance
from convert.speech.recipe import SpeechRecipe
from edge.labels import COMMON_LABELS
from edge.models.manifest import load_manifest
from edge.models.runtime import QuantizedModel
from edge.models.speech import SPEECH_MODEL_FILE, SpeechClassifier, adaptation_prior, windows_of
from edge.paths import default_model
from edge.sources.audio_file import load_audio

REPO = Path(__file__).resolve().parent.parent
GOLDEN = json.loads((REPO / "tests" / "fixtures" / "golden_speech.json").read_text())


@pytest.fixture(scope="module")
def model_path() -> Path:
    return REPO / "models" / SPEECH_MODEL_FILE


def test_manifest_describes_the_model(model_path):
    m = load_manifest(model_path)  # also checks the sha256
    assert m.sha256 == GOLDEN["model_sha256"], "model changed: regenerate the golden file"
    assert m.labels == COMMON_LABELS and m.task == "speech"
    assert m.input.dtype == "int8" and m.output.dtype == "int8"
    assert m.fusion_map == {label: label for label in COMMON_LABELS}
    assert "CC BY-NC-SA" in m.training["licence"]  # RAVDESS and nEMO: non-commercial
    assert model_path.stat().st_size <= 200 * 1024
    # Leave one corpus out: every corpus scored by a model that never heard it.
    loco = m.metrics["leave_one_corpus_out"]
    assert set(loco["corpora"]) == {"ravdess", "emodb", "nemo", "ased", "emovo"}
    total = m.training["clips"]
    for row in loco["corpora"].values():
        assert row["train_clips"] + row["test_clips"] == total and row["n"] == row["test_clips"]
    assert loco["mean_uar"] == pytest.approx(np.mean([r["uar"] for r in loco["corpora"].values()]))
    # Every test channel the recipe asks for is reported for every unseen corpus, adapted and
    # fresh, and its means are the corpora's.
    channels = SpeechRecipe.load(model_path.with_suffix(".json")).evaluate.channels
    assert set(loco.get("channels", {})) == set(channels)
    for name in channels:
        heard = [r["channels"][name] for r in loco["corpora"].values()]
        assert loco["channels"][name]["mean_uar"] == pytest.approx(
            np.mean([h["uar"] for h in heard]))
        assert loco["channels"][name]["mean_fresh_uar"] == pytest.approx(
            np.mean([h["fresh"]["uar"] for h in heard]))
    cv = m.metrics["cross_validation"]
    assert "speaker-independent" in cv["protocol"] and len(cv["folds"]) == 3
    for a, b in zip(cv["folds"], cv["folds"][1:]):
        assert not set(a["test_speakers"]) & set(b["test_speakers"])
    assert set(cv["mean"]["per_corpus_uar"]) == set(loco["corpora"])
    parity = m.metrics["int8_parity"]["mean"]
    assert abs(parity["float_uar"] - parity["int8_uar"]) <= 0.01  # int8 within 1 point


def test_the_recipe_file_is_the_shipped_models_recipe(model_path):
    assert SpeechRecipe.load(REPO / "recipes" / "speech.toml") == \
        SpeechRecipe.load(model_path.with_suffix(".json"))


def test_default_model_is_the_shipped_one(model_path):
    assert default_model(SPEECH_MODEL_FILE).resolve() == model_path.resolve()


def _windows(clf: SpeechClassifier, name: str):
    frames = clf.mfcc(load_audio(REPO / "demo" / "audio" / name, clf.sample_rate))
    return windows_of(frames, clf.window_frames, clf.hop_frames)


def test_golden_outputs_with_pinned_reference_kernels(model_path):
    with SpeechClassifier(model_path) as clf, \
            QuantizedModel(model_path, reference_kernels=True) as ref:
        for name, rows in GOLDEN["windows"].items():
            wins = _windows(clf, name)
            assert [s for s, _ in wins] == [r["start"] for r in rows]
            for (_, w), row in zip(wins, rows):
                q = ref.quantize(clf.model_input(w)[None])
                assert ref.predict_raw(q)[0].tolist() == row["int8"], name


def test_xnnpack_stays_within_two_lsb_of_the_golden_outputs(model_path):
    # XNNPACK rounds some int8 ops differently from the reference kernels; 2 LSB is the largest
    # difference measured on these clips (1/256 of probability each).
    with SpeechClassifier(model_path) as clf:
        for name, rows in GOLDEN["windows"].items():
            for (_, w), row in zip(_windows(clf, name), rows):
                got = clf.model.predict_raw(clf.model.quantize(clf.model_input(w)[None]))[0]
                assert np.abs(got.astype(int) - np.array(row["int8"])).max() <= 2, name


def test_training_and_device_build_the_same_model_input(model_path):
    from convert.speech.evaluate import clip_windows
    from convert.speech.features import FeatureBank
    from convert.speech.recipe import SpeechRecipe
    from edge.models.speech import SpeechGate

    m = load_manifest(model_path)
    recipe = SpeechRecipe.load(model_path.with_suffix(".json"))  # the recipe that made it
    prior = adaptation_prior(m, str(model_path))
    expected = recipe.preprocessing(prior)
    stored = m.preprocessing.get("adapt_prior")
    again = expected.pop("adapt_prior", None)
    assert (stored is None) == (again is None)
    if stored is not None:  # the prior survives the manifest's JSON round trip
        for key in ("count", "mean", "var"):
            np.testing.assert_allclose(again[key], stored[key], rtol=1e-9)
    assert expected == {k: v for k, v in m.preprocessing.items() if k != "adapt_prior"}
    clips = sorted((REPO / "demo" / "audio").glob("*.flac"))
    bank = FeatureBank([Utterance(p, "happy", "s", "demo") for p in clips], recipe, augment=False)
    if prior is not None:  # a device fresh out of the box standardises with the training data's
        bank = bank.standardize_with(prior)
    x_train, group = clip_windows(bank, recipe, SpeechGate())
    with SpeechClassifier(model_path) as clf:
        for i, p in enumerate(clips):
            device = [clf.model_input(w) for _, w in _windows(clf, p.name)
                      if clf.gate.is_speech(w, clf.config)]
            np.testing.assert_allclose(np.stack(device), x_train[group == i], atol=1e-4)


def test_the_docs_mqtt_example_is_what_the_demo_replay_decides(tmp_path):
    """docs/appliance.md shows the first decision of a replay of the demo conversation "exactly
    as sent"; a new model must bring a new example (scores within XNNPACK's 1 LSB)."""
    import re
    import subprocess
    import sys

    docs = (REPO / "docs" / "appliance.md").read_text()
    block = re.search(r'```json\n(\{"schema": "emotion-edge/decision/1".*?)\n```', docs, re.S)
    assert block, "docs/appliance.md has no decision example"
    shown = json.loads(block[1])
    log = tmp_path / "decisions.jsonl"
    subprocess.run([sys.executable, "-m", "edge", "run", "--fast", "--no-camera", "--mock-gpio",
                    "--audio-file", str(REPO / "demo" / "conversation.flac"),
                    "--log-file", str(log)], check=True, capture_output=True, timeout=120)
    sent = json.loads(log.read_text().splitlines()[0])
    stale = "docs/appliance.md's MQTT example is stale: paste the first line of the replay's log"
    for key in ("schema", "cycle", "media_s", "label", "confidence", "face"):
        assert sent[key] == shown[key], stale
    assert sent["speech"]["label"] == shown["speech"]["label"], stale
    for got, want in ((sent["fused"], shown["fused"]),
                      (sent["speech"]["scores"], shown["speech"]["scores"])):
        assert got.keys() == want.keys(), stale
        assert all(abs(got[k] - want[k]) <= 1 / 256 + 1e-4 for k in got), stale


@pytest.mark.parametrize("name", [SPEECH_MODEL_FILE, "speech_emotion_narrowband_int8.tflite"])
def test_the_shipped_manifests_record_the_data_they_were_trained_on(name, shared_data):
    """The recorded fingerprint is the corpora's as indexed now (it was added after training:
    this holds the claim that it names the same clips)."""
    from convert.speech.pipeline import load_dataset

    manifest = REPO / "models" / Path(name).with_suffix(".json")
    training = json.loads(manifest.read_text())["training"]
    data = load_dataset(SpeechRecipe.load(manifest), root=shared_data)
    assert len(data.utts) == training["clips"] and data.speakers == training["speakers"]
    assert data.recorded() == {"clips_per_corpus": training["clips_per_corpus"],
                               "data_fingerprint": training["data_fingerprint"]}


def test_the_model_cards_speech_tables_are_what_speech_card_prints(model_path):
    """The card's LOCO, telephone and cross-validation tables are scripts/speech_card.py's output
    from the shipped manifest, row for row (the card spells the corpora's names its own way)."""
    from tests.script_loader import load_script

    card_script = load_script("speech_card")
    metrics = load_manifest(model_path).metrics
    loco = metrics["leave_one_corpus_out"]
    printed = "\n".join((card_script.loco_table(loco), card_script.channel_table(loco),
                         card_script.cv_table(metrics["cross_validation"])))
    card = (REPO / "models" / "README.md").read_text()
    section = card.split("## Speech emotion model")[1].split("### Targets (issue 16)")[0]

    def rows(text: str) -> set[tuple[str, ...]]:
        out = set()
        for line in text.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("|") and any(ch.isdigit() for ch in "".join(cells[1:])):
                out.add((cells[0].lower(), *cells[1:]))
        return out

    want = rows(printed)
    assert len(want) >= 18  # 6 rows of each table
    missing = want - rows(section)
    assert not missing, f"rows the card does not show as speech_card.py prints them: {missing}"
