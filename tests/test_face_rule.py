"""scripts/face_rule.py: the paired differences it weighs, its verdict, and that its frames are
face-check's."""

from __future__ import annotations

import numpy as np
import pytest

from tests.script_loader import load_script

rule = load_script("face_rule")


def test_paired_differences_are_zero_for_one_model_and_see_a_better_one():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 2000)
    truth[:100] = -1  # not scored
    noisy = np.where(rng.random(2000) < 0.6, truth, rng.integers(0, 4, 2000))
    same = rule.paired_differences("s", truth, noisy, noisy)
    assert [d.points for d in same] == [0.0, 0.0] and [d.sd for d in same] == [0.0, 0.0]
    better = np.where(rng.random(2000) < 0.1, truth, noisy)  # right on 10% more of the faces
    acc, rec = rule.paired_differences("s", truth, better, noisy)
    assert acc.figure == "accuracy" and rec.figure == "mean recall"
    assert 2 < acc.points < 6 and 2 < rec.points < 6
    assert 0.2 < acc.sd < 0.8  # paired: below the SD of either accuracy alone (about 1.1)
    assert acc.candidate == pytest.approx(np.mean(better[100:] == truth[100:]))


def _diffs(points, sd=1.0):
    settings = ["crops, FER+ majority", "crops, clear faces", "frames, 640x480"]
    return [rule.Difference(s, f, 0.5 + p / 100, 0.5, sd)
            for (s, f), p in zip([(s, f) for s in settings for f in ("accuracy", "mean recall")],
                                 points)]


def test_the_verdict_ships_a_candidate_ahead_on_balance_without_a_loss_noise_cannot_explain():
    assert rule.verdict(_diffs([1, -1.5, 2, 0.5, 1, -1])) == (True, [])
    ships, why = rule.verdict(_diffs([1, -2.5, 2, 0.5, 1, 1]))  # -2.5 SD
    assert not ships and why == ["crops, FER+ majority mean recall is -2.5 points (SD 1.0): "
                                 "below -2 SD or -3 points"]
    ships, why = rule.verdict(_diffs([1, -3.5, 2, 0.5, 1, 1], sd=3.0))  # within SDs, past -3
    assert not ships and "-3.5 points (SD 3.0)" in why[0]
    ships, why = rule.verdict(_diffs([-0.2, 1, 2, 0.5, 1, 1]))
    assert not ships and why == ["crops, FER+ majority accuracy is not ahead (-0.2 points)"]
    ships, why = rule.verdict(_diffs([0.5, -1.9, -1.5, 0.5, 1, -1]))
    assert not ships and why[0].startswith("the mean of the 6 differences is -0.40 points")


@pytest.fixture(scope="module")
def public_test(shared_data):
    """The shipped model, PublicTest's faces with a FER+ majority, those labels and the label
    names: what frame_decisions reads."""
    pytest.importorskip("ai_edge_litert")
    from pathlib import Path

    from convert.face.data import load_fer
    from convert.face.ferplus import votes_beside

    fer = shared_data / "fer2013" / "fer2013_48.npz"
    split = load_fer(fer, "PublicTest", ferplus=votes_beside(fer))
    majority = split.majority()
    keep = majority >= 0
    model = Path(__file__).resolve().parent.parent / "models" / "face_expression_int8.tflite"
    return model, split.x[keep], majority[keep], split.labels


def test_the_frames_are_face_checks(public_test):
    """The decisions the rule weighs through detection give face-check's own figures."""
    from convert.face.fullframe import evaluate_full_frames

    decided = rule.frame_decisions(*public_test, frames=25, seed=0)
    check = evaluate_full_frames(*public_test, n=25, seed=0, detector="blazeface")
    assert list(decided) == list(check["sizes"])
    for condition, (truth, said) in decided.items():
        found = said >= 0
        s = check["sizes"][condition]
        assert np.mean(found) == pytest.approx(s["detected"])
        acc, rec = rule.accuracy_and_recall(truth[found], said[found])
        assert acc == pytest.approx(s["accuracy_when_detected"])
        assert rec == pytest.approx(s["mean_recall_when_detected"])


def test_frames_of_several_seeds_are_each_seeds_frames_in_turn(public_test):
    pooled = rule.pooled_frame_decisions(*public_test, frames=8, seeds=[0, 1])
    one = [rule.frame_decisions(*public_test, frames=8, seed=seed) for seed in (0, 1)]
    assert list(pooled) == list(one[0])
    for condition, (truth, said) in pooled.items():
        assert len(truth) == len(one[0][condition][0]) + len(one[1][condition][0])
        np.testing.assert_array_equal(truth, np.concatenate([o[condition][0] for o in one]))
        np.testing.assert_array_equal(said, np.concatenate([o[condition][1] for o in one]))
    assert not np.array_equal(one[0]["640x480"][0], one[1]["640x480"][0])  # other frames


def test_the_usage_line_in_its_docstring_parses_to_the_candidate_and_the_pooled_seeds():
    """``--seed`` takes several numbers, so a candidate written after them would be read as a
    seed: the documented command must put it where the parser finds it."""
    import shlex

    usage = rule.__doc__.split("repository root:")[1].split("\n\n")[1]
    words = shlex.split(usage.replace("\\\n", " "))
    assert words[1] == "scripts/face_rule.py"
    args = rule.parser().parse_args(words[2:])
    assert args.candidate.name == "face_expression_int8.tflite"
    assert args.seed == [0, 1, 2, 3]
    # The other order documented: after "--".
    args = rule.parser().parse_args(["--fer", "f.npz", "--seed", "0", "1", "--", "c.tflite"])
    assert args.seed == [0, 1] and args.candidate.name == "c.tflite"
