"""Late fusion over one explicit label mapping, correct with a modality missing."""

import pytest

from edge.errors import ConfigError
from edge.pipeline.fusion import LabelMap, LateFusion, calibrate

SPEECH = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
FACE = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
SPEECH_MAP = {lab: lab for lab in SPEECH} | {"calm": "neutral"}
FACE_MAP = {lab: lab for lab in FACE} | {"fear": "fearful", "surprise": "surprised"}


def fusion(weights=None, temps=None, overrides=None):
    lm = LabelMap.build({"speech": (SPEECH, SPEECH_MAP), "face": (FACE, FACE_MAP)}, overrides)
    return LateFusion(lm, weights=weights or {"speech": 1.0, "face": 1.0}, temperatures=temps)


def onehot(labels, hot, p=0.9):
    rest = (1 - p) / (len(labels) - 1)
    return {lab: (p if lab == hot else rest) for lab in labels}


def test_common_labels_follow_the_manifests():
    f = fusion()
    assert f.labels == ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def test_calm_and_neutral_add_up():
    f = fusion()
    out = f.fuse({"speech": {"calm": 0.4, "neutral": 0.3, "happy": 0.3}})
    assert out.label == "neutral"
    assert out.scores["neutral"] == pytest.approx(0.7)


def test_one_modality_missing_equals_that_modality_alone():
    f = fusion()
    speech = onehot(SPEECH, "sad")
    only = f.fuse({"speech": speech})
    with_empty_face = f.fuse({"speech": speech, "face": {}})
    assert only.scores == pytest.approx(with_empty_face.scores)
    assert only.label == "sad" and [m.modality for m in only.modalities] == ["speech"]
    assert sum(only.scores.values()) == pytest.approx(1.0)


def test_no_modality_is_no_decision():
    assert fusion().fuse({}) is None
    assert fusion().fuse({"speech": {}, "face": {}}) is None


def test_weights_decide_a_disagreement():
    speech, face = onehot(SPEECH, "angry"), onehot(FACE, "happy")
    assert fusion({"speech": 3.0, "face": 1.0}).fuse({"speech": speech, "face": face}).label == "angry"
    assert fusion({"speech": 1.0, "face": 3.0}).fuse({"speech": speech, "face": face}).label == "happy"


def test_zero_weight_modality_alone_gives_no_decision():
    f = fusion({"speech": 1.0, "face": 0.0})
    assert f.fuse({"face": onehot(FACE, "happy")}) is None


def test_temperature_softens_without_reordering():
    scores = {"a": 0.7, "b": 0.2, "c": 0.1}
    soft = calibrate(scores, 3.0)
    sharp = calibrate(scores, 0.5)
    assert sorted(soft, key=soft.get) == sorted(scores, key=scores.get)
    assert soft["a"] < 0.7 < sharp["a"]
    assert sum(soft.values()) == pytest.approx(1.0)


def test_temperature_changes_the_fused_winner():
    # A confident face vs a mildly confident speech: sharpening speech lets it win.
    speech = {lab: 0.05 for lab in SPEECH} | {"angry": 0.65}
    face = onehot(FACE, "happy", 0.7)
    assert fusion().fuse({"speech": speech, "face": face}).label == "happy"
    hot = fusion(temps={"speech": 0.3}).fuse({"speech": speech, "face": face})
    assert hot.label == "angry"


def test_unmapped_labels_drop_out_and_mass_renormalises():
    f = fusion(overrides={"face": {"disgust": ""}})
    out = f.fuse({"face": {"disgust": 0.8, "happy": 0.2}})
    assert out.scores["happy"] == pytest.approx(1.0)
    assert f.fuse({"face": {"disgust": 1.0}}) is None


def test_a_label_without_a_mapping_is_refused():
    with pytest.raises(ConfigError, match="calm"):
        LabelMap.build({"speech": (SPEECH, {lab: lab for lab in SPEECH if lab != "calm"})})
    with pytest.raises(ConfigError, match="not a face model label"):
        fusion(overrides={"face": {"bored": "neutral"}})


def test_a_face_model_of_two_labels_does_not_outweigh_a_speech_model_of_seven():
    """A face model of one's own knowing only happy and sad put half its weight's mass on each
    at worst (0.5 / 0.5: it cannot tell), where speech spreads its mass over seven: speech
    sure of "angry" (0.45) lost to the face's shrug, and the appliance said only happy or sad."""
    two = ("happy", "sad")
    lm = LabelMap.build({"speech": (SPEECH, SPEECH_MAP), "face": (two, {k: k for k in two})})
    f = LateFusion(lm, weights={"speech": 1.0, "face": 1.0})
    speech = {lab: 0.55 / 7 for lab in SPEECH} | {"angry": 0.45}
    out = f.fuse({"speech": speech, "face": {"happy": 0.5, "sad": 0.5}})
    assert out.label == "angry" and sum(out.scores.values()) == pytest.approx(1.0)
    # happy and sad are still pooled over both: a face sure of "happy" moves the decision
    sure = f.fuse({"speech": speech, "face": {"happy": 0.99, "sad": 0.01}})
    assert sure.label == "happy"


def test_where_every_modality_says_every_label_it_is_the_weighted_linear_pool():
    f = fusion({"speech": 2.0, "face": 1.0})
    speech, face = onehot(SPEECH, "angry", 0.6), onehot(FACE, "fear", 0.7)
    out = f.fuse({"speech": speech, "face": face})
    parts = {m.modality: m.scores for m in out.modalities}
    for label in f.labels:
        assert out.scores[label] == pytest.approx((2 * parts["speech"][label]
                                                   + parts["face"][label]) / 3)


def test_a_modality_weighted_low_does_not_decide_alone_what_only_it_can_say():
    """Pooled over the modalities that can say it alone, "disgust" (which this speech map
    leaves out) was decided by a face weighted 0.05 against speech weighted 1."""
    lm = LabelMap.build({"speech": (SPEECH, SPEECH_MAP), "face": (FACE, FACE_MAP)},
                        {"speech": {"disgust": ""}})
    f = LateFusion(lm, weights={"speech": 1.0, "face": 0.05})
    speech = {lab: 0.5 / 7 for lab in SPEECH} | {"happy": 0.5, "disgust": 0.0}
    face = {lab: 0.4 / 6 for lab in FACE} | {"disgust": 0.6}
    assert f.fuse({"speech": speech, "face": face}).label == "happy"
