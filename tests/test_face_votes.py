"""FER+ votes: the vote -> target rule, the majority-vote metric, and the pipeline that uses them."""

from __future__ import annotations

import re

import numpy as np
import pytest

from convert.face.ferplus import (
    FERPLUS_COLUMNS,
    majority_accuracy,
    majority_labels,
    vote_targets,
)
from edge.errors import ConfigError, ImageFileError
from edge.models.face import FER_LABELS

from .face_fixtures import cartoon_face, tiny_recipe

# Columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF.
VOTES = np.array([
    [0, 6, 0, 0, 0, 1, 0, 2, 1, 0],  # happy, with contempt counted as disgust, unknown dropped
    [4, 0, 0, 0, 0, 0, 0, 0, 3, 3],  # mostly unknown / not a face: no usable votes, yet
    #                                  neutral has the most votes, so the metric scores it
    [9, 1, 0, 0, 0, 0, 0, 0, 0, 0],  # not matched to FER+ (valid False)
    [0, 0, 0, 0, 5, 0, 0, 0, 0, 5],  # half not a face: not more than half emotion votes
    [0, 0, 0, 4, 0, 0, 4, 0, 0, 2],  # sadness and fear tie for the most votes
    [0, 0, 0, 0, 0, 2, 0, 6, 2, 0],  # majority contempt
    [1, 0, 0, 0, 0, 0, 0, 0, 2, 7],  # majority not a face
    [7, 0, 3, 0, 0, 0, 0, 0, 0, 0],  # neutral
], np.uint8)
VALID = np.array([True, True, False, True, True, True, True, True])
L = {name: i for i, name in enumerate(FER_LABELS)}


def test_votes_map_to_our_labels_with_contempt_as_disgust_and_unknown_nf_dropped():
    targets, usable = vote_targets(VOTES, VALID, FER_LABELS)
    assert usable.tolist() == [True, False, False, False, True, True, False, True]
    expected = np.zeros(len(FER_LABELS))
    expected[L["happy"]], expected[L["disgust"]] = 6 / 9, 3 / 9
    np.testing.assert_allclose(targets[0], expected)
    np.testing.assert_allclose(targets[5][L["disgust"]], 1.0)  # 2 disgust + 6 contempt
    np.testing.assert_allclose(targets[7][[L["neutral"], L["surprise"]]], [0.7, 0.3])
    np.testing.assert_allclose(targets[usable].sum(1), 1.0)
    assert not targets[~usable].any()


def test_majority_is_the_unique_top_column_among_our_seven_emotions():
    majority = majority_labels(VOTES, VALID, FER_LABELS)
    assert majority.tolist() == [L["happy"], L["neutral"], -1, -1, -1, -1, -1, L["neutral"]]
    # Row 3 ties anger with NF; row 4 ties sadness with fear; 5 is contempt, 6 not a face.
    predicted = np.array([L["happy"], L["sad"], 0, 0, 0, 0, 0, L["neutral"]])
    assert majority_accuracy(majority, predicted) == pytest.approx(2 / 3)
    assert majority_accuracy(np.full(3, -1), np.zeros(3)) == 0.0


def test_clear_majority_keeps_the_faces_most_people_read_the_same_way():
    # Row 0: 6 of 10 happy; row 1: 4 of 10 neutral; row 7: 7 of 10 neutral.
    clear = majority_labels(VOTES, VALID, FER_LABELS, min_share=0.7)
    assert clear.tolist() == [-1, -1, -1, -1, -1, -1, -1, L["neutral"]]
    assert majority_labels(VOTES, VALID, FER_LABELS, min_share=0.6)[0] == L["happy"]
    assert majority_labels(VOTES, VALID, FER_LABELS, min_share=0.0).tolist() == (
        majority_labels(VOTES, VALID, FER_LABELS).tolist())


def test_votes_need_the_fer_labels():
    with pytest.raises(ConfigError, match="FER\\+ votes need the FER2013 labels"):
        vote_targets(VOTES, VALID, ("happy", "sad", "surprise"))


def test_ground_truth_mixes_votes_and_label_and_falls_back_to_the_label():
    from convert.face.train import TrainSection, ground_truth

    y = np.array([L["angry"]] * len(VOTES))
    votes = vote_targets(VOTES, VALID, FER_LABELS)
    assert ground_truth(TrainSection(), y, votes, 7) is None  # today's default: labels
    mixed = ground_truth(TrainSection(ground_truth="votes", vote_weight=0.25), y, votes, 7)
    assert mixed is not None
    onehot = np.eye(7)[y]
    np.testing.assert_allclose(mixed[0], 0.25 * votes[0][0] + 0.75 * onehot[0])
    np.testing.assert_allclose(mixed[~votes[1]], onehot[~votes[1]])
    with pytest.raises(ConfigError, match="needs FER\\+ votes"):
        ground_truth(TrainSection(ground_truth="votes"), y, None, 7)


def test_accuracy_leaves_out_unscored_rows():
    from convert.face.train import accuracy

    logits = np.eye(7, dtype=np.float32)[[0, 1, 2, 3]]
    model = lambda x, training=False: logits[x[:, 0].astype(int)]  # noqa: E731
    x = np.arange(4, dtype=np.float32)[:, None]
    assert accuracy(model, x, np.array([0, -1, 2, 0])) == pytest.approx(2 / 3)


def write_fer(root, n_per_usage=(8, 4, 4), seed=0):
    """A tiny FER2013 npz and its FER+ votes (each image's votes all name its label)."""
    rng = np.random.default_rng(seed)
    kinds = ("happy", "sad", "surprise")
    column = {"happy": "happiness", "sad": "sadness", "surprise": "surprise"}
    x, y, usage, votes = [], [], [], []
    for name, n in zip(("Training", "PublicTest", "PrivateTest"), n_per_usage):
        for i in range(n):
            kind = kinds[i % 3]
            x.append(cartoon_face(kind, rng))
            y.append(L[kind])
            usage.append(name)
            v = np.zeros(10, np.uint8)
            v[FERPLUS_COLUMNS.index(column[kind])] = 8
            v[FERPLUS_COLUMNS.index("NF")] = 2
            votes.append(v)
    fer = root / "fer2013_48.npz"
    np.savez(fer, x=np.stack(x), y=np.array(y, np.uint8), usage=np.array(usage))
    valid = np.ones(len(y), bool)
    valid[0] = False
    np.savez(root / "ferplus_votes.npz", votes=np.stack(votes), valid=valid,
             columns=np.array(FERPLUS_COLUMNS))
    return fer


def test_fer_loads_its_votes_row_for_row(tmp_path):
    pytest.importorskip("cv2")
    from convert.face.data import load_face_data

    fer = write_fer(tmp_path)
    data = load_face_data(fer=fer)  # ferplus_votes.npz next to it is found
    assert data.votes_source == "FER+ votes (ferplus_votes.npz)"
    assert [len(s.votes) for s in (data.train, data.choose, data.report)] == [8, 4, 4]
    assert data.train.valid.tolist() == [False] + [True] * 7
    np.testing.assert_array_equal(data.choose.majority(), data.choose.y)
    (tmp_path / "short").mkdir()
    np.savez(tmp_path / "short" / "v.npz", votes=np.zeros((3, 10), np.uint8),
             valid=np.ones(3, bool), columns=np.array(FERPLUS_COLUMNS))
    with pytest.raises(ImageFileError, match="must be aligned row for row"):
        load_face_data(fer=fer, ferplus=tmp_path / "short" / "v.npz")


def test_the_previous_recipe_learns_from_the_labels_alone():
    from convert.face import FaceRecipe

    recipe = FaceRecipe.load("recipes/face_v1.toml")
    stages = (recipe.train, recipe.adapt, recipe.ramp, recipe.finetune, recipe.refine)
    assert {s.ground_truth for s in stages} == {"labels"}


def test_offsets_on_the_device_path_without_votes_are_refused_before_training(tmp_path):
    """``calibrate.frames`` scores the device's path against the FER+ majority: without votes
    the run stops in one named line at once, not after its training."""
    pytest.importorskip("cv2")
    from convert.face import load_face_data, run_face_pipeline
    from edge.errors import ConfigError

    fer = write_fer(tmp_path)
    (tmp_path / "ferplus_votes.npz").unlink()
    data = load_face_data(fer=fer)
    recipe = tiny_recipe(calibrate={"class_offsets": True, "frames": 10})
    with pytest.raises(ConfigError, match="give --ferplus"):
        run_face_pipeline(data, tmp_path / "out", recipe)
    assert not list((tmp_path / "out").rglob("*.keras"))  # nothing was trained


@pytest.mark.slow
def test_a_model_trained_on_votes_reports_fer_plus_majority_figures(tmp_path):
    pytest.importorskip("tensorflow")
    from convert.face import load_face_data, run_face_pipeline
    from edge.models.manifest import load_manifest

    data = load_face_data(fer=write_fer(tmp_path, (60, 12, 12)))
    recipe = tiny_recipe(train={"ground_truth": "votes", "vote_weight": 0.5, "epochs": 1},
                         ramp={"epochs": 1}, finetune={"epochs": 1, "ground_truth": "votes"},
                         calibrate={"class_offsets": True})
    run_face_pipeline(data, tmp_path / "out", recipe)
    model = tmp_path / "out" / "face_expression_int8.tflite"
    manifest = load_manifest(model)
    m = manifest.metrics
    assert m["ferplus_choose_n"] == m["ferplus_report_n"] == 12
    for split in ("choose", "report"):
        for kind in ("int8", "int8_single_pass", "float", "float_single_pass"):
            assert 0.0 <= m[f"{split}_ferplus_majority_accuracy_{kind}"] <= 1.0
    assert "ties" in m["ferplus_protocol"]
    assert "contempt -> disgust" in manifest.training["ground_truth"]
    assert manifest.training["recipe"]["train"]["ground_truth"] == "votes"
    # The class offsets were fitted on the choose split and are in the manifest; fitting them
    # again on the trained model (`emotion-convert face-calibrate`) finds the same ones.
    offsets = manifest.calibration["log_offsets"]
    assert set(offsets) == set(manifest.labels)
    assert manifest.training["recipe"]["calibrate"] == {"class_offsets": True,
                                                        "max_recall_drop": 1.0, "frames": 0}
    from convert.cli import main

    assert main(["face-calibrate", "--fer", str(tmp_path / "fer2013_48.npz"),
                 "--model", str(model)]) == 0
    again = load_manifest(model)
    assert again.calibration["log_offsets"] == offsets
    assert again.metrics["report_accuracy_int8"] == pytest.approx(m["report_accuracy_int8"])


def test_face_check_scores_against_the_fer_plus_majority(tmp_path, monkeypatch, capsys):
    """``face-check --labels ferplus`` pastes only the faces with a majority and scores them
    against it, not against FER2013's label."""
    import argparse
    import json

    from convert.face import fullframe

    fer = write_fer(tmp_path, (3, 3, 6))
    with np.load(tmp_path / "ferplus_votes.npz") as f:
        votes, valid = f["votes"].copy(), f["valid"]
    private = slice(6, 12)
    votes[private] = 0
    votes[private, FERPLUS_COLUMNS.index("neutral")] = 7  # the crowd reads every face neutral
    votes[10, FERPLUS_COLUMNS.index("fear")] = 7          # ... but one is a tie: left out
    np.savez(tmp_path / "ferplus_votes.npz", votes=votes, valid=valid,
             columns=np.array(FERPLUS_COLUMNS))
    seen = {}

    def fake(model, faces, labels, names, **kw):
        seen.update(faces=faces, labels=labels, names=names)
        return {"detector": "Fake", "sizes": {}}

    monkeypatch.setattr(fullframe, "evaluate_full_frames", fake)
    args = argparse.Namespace(fer=fer, split="PrivateTest", labels="ferplus", ferplus=None,
                              model=tmp_path / "m.tflite", frames=10, seed=0, detector="auto",
                              max_angle=20.0, retry_margin=None, retry_tiles=None,
                              group_photos=0, json=True)
    assert fullframe.run(args) == 0
    assert len(seen["faces"]) == 5
    assert [seen["names"][i] for i in seen["labels"]] == ["neutral"] * 5
    assert json.loads(capsys.readouterr().out)["labels"] == "ferplus"
    fullframe.run(argparse.Namespace(**{**vars(args), "labels": "fer2013"}))
    assert len(seen["faces"]) == 6 and "neutral" not in {seen["names"][i] for i in seen["labels"]}


@pytest.mark.parametrize("make, words", [
    (lambda p: np.save(p.with_suffix(".npy"), np.zeros(3)) or p.with_suffix(".npy").rename(p),
     "(it holds a single array)"),
    (lambda p: p.write_text("hello"), "not FER2013: an .npz with arrays x, y, usage"),
    (lambda p: np.savez(p, x=np.zeros((1, 48, 48), np.uint8)), "(it has no y, usage)"),
    (lambda p: np.savez(p, x=np.array([object()]), y=np.zeros(1), usage=np.array(["PublicTest"])),
     "(of numbers)"),
])
def test_a_file_that_is_not_the_fer_npz_is_one_line(tmp_path, make, words):
    """An .npy named .npz was an internal error, and a file of text passed on NumPy's advice to
    "load it unsafely using allow_pickle"."""
    from convert.face.data import load_fer

    path = tmp_path / "fer.npz"
    make(path)
    with pytest.raises(ImageFileError, match=re.escape(words)) as info:
        load_fer(path, "PublicTest")
    assert str(info.value).startswith(f"{path}: ") and "pickle" not in str(info.value)
