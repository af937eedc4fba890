"""Class offsets: fitted so that accuracy and mean recall rise together, stored in the manifest,
applied by the device's own function, and refused in one line when they do not fit the model."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from convert.face.calibrate import fit_log_offsets
from edge.errors import ManifestMismatchError
from edge.models.face import apply_log_offsets


def _biased_classifier(n: int = 3000, classes: int = 4, seed: int = 0):
    """Faces of ``classes`` equally common classes scored by a classifier that knows the
    evidence but carries a wrong prior (the first class 6x too likely, the last 6x too rare)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, n)
    evidence = rng.normal(0.0, 1.0, (n, classes))
    evidence[np.arange(n), truth] += 1.2
    bias = np.linspace(np.log(6), -np.log(6), classes)
    logits = evidence + bias
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True), truth, bias


def _acc_recall(p, truth):
    pred = p.argmax(1)
    return np.mean(pred == truth), np.mean([np.mean(pred[truth == c] == c)
                                            for c in np.unique(truth)])


def test_offsets_undo_a_wrong_prior_and_hold_on_new_faces():
    p, truth, bias = _biased_classifier()
    offsets = fit_log_offsets(p, [truth])
    assert np.corrcoef(offsets, -bias)[0, 1] > 0.9  # the search found the prior's direction
    fresh_p, fresh_truth, _ = _biased_classifier(seed=1)  # faces it was not fitted on
    before = _acc_recall(fresh_p, fresh_truth)
    after = _acc_recall(apply_log_offsets(fresh_p, offsets), fresh_truth)
    assert after[0] > before[0] + 0.03 and after[1] > before[1] + 0.03, (before, after)


def test_a_move_that_buys_accuracy_with_recall_is_not_kept():
    """Two label sets that disagree on which way the prior should move: no move raises both,
    so nothing is moved."""
    p, truth, _ = _biased_classifier()
    flipped = np.where(truth >= 0, p.shape[1] - 1 - truth, -1)
    offsets = fit_log_offsets(p, [truth, flipped])
    pred, moved = p.argmax(1), apply_log_offsets(p, offsets).argmax(1)
    for labels in (truth, flipped):
        assert (np.mean(moved == labels) >= np.mean(pred == labels) - 1e-12)


def test_a_recall_floor_keeps_every_class_within_it_and_no_floor_changes_nothing():
    """The biased classifier's unconstrained offsets take recall from its over-called class;
    with a floor, no class of the first label set loses more than the floor allows, and a floor
    of 1 gives the unconstrained search's offsets."""
    p, truth, _ = _biased_classifier()

    def recalls(q):
        pred = q.argmax(1)
        return np.array([np.mean(pred[truth == c] == c) for c in range(p.shape[1])])

    free = fit_log_offsets(p, [truth])
    own = recalls(p)
    assert (recalls(apply_log_offsets(p, free)) < own - 0.05).any()  # the floor has work to do
    floored = fit_log_offsets(p, [truth], max_recall_drop=0.05)
    assert (recalls(apply_log_offsets(p, floored)) >= own - 0.05 - 1e-12).all()
    assert np.any(floored != 0)  # it still moves the prior where it may
    assert _acc_recall(apply_log_offsets(p, floored), truth)[0] > _acc_recall(p, truth)[0]
    np.testing.assert_array_equal(fit_log_offsets(p, [truth], max_recall_drop=1.0), free)


def test_applying_offsets_is_a_prior_shift_of_each_row():
    p = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    q = apply_log_offsets(p, [0.0, np.log(2), 0.0])
    np.testing.assert_allclose(q.sum(1), 1.0)
    np.testing.assert_allclose(q[0], np.array([0.5, 0.6, 0.2]) / 1.3)
    np.testing.assert_allclose(apply_log_offsets(p, np.zeros(3)), p)


@pytest.fixture()
def calibrated_model(tmp_path):
    """The shipped face model's graph with a manifest whose offsets favour one label hugely."""
    pytest.importorskip("ai_edge_litert")
    from pathlib import Path

    from edge.models.face import FACE_MODEL_FILE

    repo = Path(__file__).resolve().parent.parent
    src = repo / "models" / FACE_MODEL_FILE
    model = tmp_path / FACE_MODEL_FILE
    model.write_bytes(src.read_bytes())
    manifest = json.loads(src.with_suffix(".json").read_text())
    manifest["calibration"] = {"log_offsets": {label: 0.0 for label in manifest["labels"]}}
    manifest["calibration"]["log_offsets"]["sad"] = 2.5

    def write(calibration):
        model.with_suffix(".json").write_text(json.dumps({**manifest, "calibration": calibration}))
        return model
    return write, manifest


def test_the_device_applies_the_manifests_offsets(calibrated_model):
    from edge.models.face import FaceClassifier, face_probabilities

    write, manifest = calibrated_model
    offsets = manifest["calibration"]["log_offsets"]
    face = np.random.default_rng(0).uniform(-1, 1, (64, 64, 1)).astype(np.float32)
    with FaceClassifier(write({"log_offsets": offsets})) as clf:
        raw = face_probabilities(clf.model, face, mirror_below=clf.mirror_below)
        shifted = clf.scores(face)
    with FaceClassifier(write({"log_offsets": offsets}), apply_offsets=False) as clf:
        np.testing.assert_allclose(list(clf.scores(face).values()), raw)
    expected = apply_log_offsets(raw, [offsets[label] for label in clf.labels])
    np.testing.assert_allclose([shifted[label] for label in clf.labels], expected, atol=1e-12)
    assert shifted["sad"] > raw[clf.labels.index("sad")]
    with FaceClassifier(write({})) as clf:  # no calibration: the network's own probabilities
        np.testing.assert_allclose(list(clf.scores(face).values()), raw)


@pytest.mark.parametrize("offsets, why", [
    ({"sad": 9.0}, "within"),
    ({"sad": float("nan")}, "within"),
    ({"sadness": 0.5}, "unknown"),
    ({"sad": "lots"}, "must map labels to numbers"),
    (["sad"], "must map labels to numbers"),
])
def test_offsets_that_do_not_fit_the_model_are_one_clear_line(calibrated_model, offsets, why):
    from edge.models.face import FaceClassifier

    write, _ = calibrated_model
    model = write({"log_offsets": offsets})
    with pytest.raises(ManifestMismatchError, match=why) as info:
        FaceClassifier(model)
    assert str(model) in str(info.value) and "\n" not in str(info.value)


def test_a_manifest_without_calibration_is_written_as_before(tmp_path):
    from edge.models.manifest import ModelManifest, TensorQuant

    q = TensorQuant("int8", (1, 7), 0.1, 0)
    m = ModelManifest("m", "face_expression", ("a",), {}, q, q, "0" * 64)
    assert "calibration" not in m.to_dict()
    with_offsets = dataclasses.replace(m, calibration={"log_offsets": {"a": 0.5}})
    assert ModelManifest.from_dict(with_offsets.to_dict()) == with_offsets


def test_face_calibrate_refuses_a_model_with_other_labels_in_one_line(calibrated_model, tmp_path,
                                                                      capsys):
    pytest.importorskip("cv2")
    from convert.cli import main

    from .test_face_votes import write_fer

    write, manifest = calibrated_model
    model = write({})
    other = json.loads(model.with_suffix(".json").read_text())
    other["labels"] = list(reversed(other["labels"]))
    model.with_suffix(".json").write_text(json.dumps(other))
    before = model.with_suffix(".json").read_text()
    (tmp_path / "fer").mkdir()
    assert main(["face-calibrate", "--fer", str(write_fer(tmp_path / "fer")),
                 "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "are not FER2013's" in err[0] and str(model) in err[0]
    assert model.with_suffix(".json").read_text() == before  # nothing rewritten


def test_the_device_path_rows_are_what_face_check_scores(shared_data):
    """Offsets fitted with ``--frames`` see the faces face-check reads: with the manifest's
    offsets applied, their accuracy at each size is face-check's at the same seed, and each
    frame size is its own label set beside the crops'."""
    pytest.importorskip("ai_edge_litert")
    from pathlib import Path

    from convert.face.calibrate import device_path_label_sets, with_device_path
    from convert.face.data import load_fer
    from convert.face.ferplus import votes_beside
    from convert.face.fullframe import evaluate_full_frames
    from edge.models.face import FACE_MODEL_FILE

    fer = shared_data / "fer2013" / "fer2013_48.npz"
    split = load_fer(fer, "PublicTest", ferplus=votes_beside(fer))
    majority = split.majority()
    model = Path(__file__).resolve().parent.parent / "models" / FACE_MODEL_FILE
    offsets = json.loads(model.with_suffix(".json").read_text())["calibration"]["log_offsets"]
    probs, sets = device_path_label_sets(model, split.x, majority, frames=30, seed=0)
    keep = majority >= 0
    check = evaluate_full_frames(model, split.x[keep], majority[keep], split.labels, n=30,
                                 seed=0, detector="blazeface")
    moved = apply_log_offsets(probs, [offsets[label] for label in split.labels]).argmax(1)
    assert list(sets) == ["FER+ majority, 320x240 frames", "FER+ majority, 640x480 frames"]
    for truth, size in zip(sets.values(), ("320x240", "640x480")):
        rows = truth >= 0
        assert rows.sum() == round(check["sizes"][size]["detected"] * 30)
        assert np.mean(moved[rows] == truth[rows]) == pytest.approx(
            check["sizes"][size]["accuracy_when_detected"])
    crops = {"crops": np.array([0, 1, -1])}
    both, all_sets = with_device_path(np.eye(7)[:3], crops, probs, sets)
    assert both.shape == (3 + len(probs), 7) and list(all_sets)[0] == "crops"
    assert (all_sets["crops"][3:] == -1).all()
    assert all((truth[:3] == -1).all() for name, truth in all_sets.items() if name != "crops")
