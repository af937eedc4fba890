"""Smoothing and hysteresis: the shown emotion follows, without flicker."""

from edge.pipeline.smoothing import Smoother

LABELS = ("neutral", "happy", "sad")


def smoother(**kw):
    args = dict(alpha=0.5, switch_margin=0.1, min_dwell_s=1.0, min_confidence=0.3) | kw
    return Smoother(LABELS, **args)


def dist(label, p=0.9):
    return {lab: (p if lab == label else (1 - p) / 2) for lab in LABELS}


def test_follows_a_steady_input():
    s = smoother()
    shown = [s.update(dist("happy"), t * 0.5).label for t in range(6)]
    assert shown[-1] == "happy"
    assert shown[0] == "happy"  # 0.45 >= min_confidence after one update


def changes(s, inputs):
    labels = [s.update(x, i * 0.5).label for i, x in enumerate(inputs)]
    return sum(a != b for a, b in zip(labels, labels[1:]))


def test_alternating_input_does_not_flicker():
    inputs = [dist("happy" if i % 2 else "sad") for i in range(40)]
    assert changes(smoother(alpha=0.1), inputs) <= 1
    # The same input without hysteresis flickers: the margin and dwell are what hold it.
    assert changes(smoother(alpha=0.1, switch_margin=0.0, min_dwell_s=0.0), inputs) > 10


def test_noisy_input_settles_on_the_majority():
    import random

    rng = random.Random(0)
    inputs = [dist(rng.choice(["happy", "happy", "sad", "neutral"]), 0.8) for _ in range(80)]
    raw = changes(smoother(alpha=1.0, switch_margin=0.0, min_dwell_s=0.0), inputs)
    s = smoother(alpha=0.15, min_dwell_s=1.5)
    shown = [s.update(x, i * 0.5).label for i, x in enumerate(inputs)]
    smoothed = sum(a != b for a, b in zip(shown, shown[1:]))
    assert raw > 30 and smoothed <= raw / 6
    assert shown.count("happy") > 0.7 * len(shown)


def test_dwell_time_holds_a_label():
    s = smoother(alpha=1.0, min_dwell_s=2.0)
    assert s.update(dist("happy"), 0.0).label == "happy"
    assert s.update(dist("sad"), 0.5).label == "happy"  # held: only 0.5 s shown
    assert s.update(dist("sad"), 1.9).label == "happy"
    assert s.update(dist("sad"), 2.0).label == "sad"


def test_margin_required_to_switch():
    s = smoother(alpha=1.0, min_dwell_s=0.0, switch_margin=0.2)
    s.update({"neutral": 0.5, "happy": 0.4, "sad": 0.1}, 0.0)
    assert s.update({"neutral": 0.4, "happy": 0.5, "sad": 0.1}, 1.0).label == "neutral"
    assert s.update({"neutral": 0.3, "happy": 0.6, "sad": 0.1}, 2.0).label == "happy"


def test_silence_fades_to_nothing():
    s = smoother(alpha=0.5, min_dwell_s=0.0)
    for i in range(4):
        s.update(dist("sad"), i)
    out = [s.update(None, 4 + i) for i in range(6)]
    assert out[0].label == "sad"
    assert out[-1].label is None and out[-1].confidence == 0.0
    assert out[1].confidence < out[0].confidence


def test_weak_evidence_shows_nothing():
    s = smoother(alpha=1.0)
    assert s.update({"neutral": 0.34, "happy": 0.33, "sad": 0.33}, 0).label == "neutral"
    s = smoother(alpha=1.0, min_confidence=0.5)
    assert s.update({"neutral": 0.34, "happy": 0.33, "sad": 0.33}, 0).label is None


def test_silence_is_never_an_emotion_even_at_min_confidence_zero():
    """With min_confidence = 0 (allowed), nothing heard yet showed the first label, neutral."""
    s = smoother(min_confidence=0.0, min_dwell_s=0.0)
    assert [s.update(None, i).label for i in range(3)] == [None] * 3
    assert s.update(dist("happy", 0.6), 3).label == "happy"  # then any evidence is shown
