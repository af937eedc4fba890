"""scripts/speech_statistics_screen.py: its views (and the voice clusters' groupings)
standardise what they say they do, and an unseen corpus is scored over the labels it has."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from .script_loader import load_script


def shipped_mfcc():
    """The shipped speech recipe's feature settings (imported here, not at collection)."""
    from convert.speech.recipe import SpeechRecipe

    return SpeechRecipe.load(Path(__file__).parent.parent / "recipes" / "speech.toml").mfcc


def test_a_room_view_removes_each_corpus_level_and_a_fresh_view_does_not():
    """Three corpora whose classes differ the same way but sit at their own level (a microphone's
    gain): standardised per corpus, every unseen corpus is perfectly separated; with the
    training corpora's statistics, the one recorded far louder is called one class."""
    pytest.importorskip("sklearn")
    screen = load_script("speech_statistics_screen")
    rng = np.random.default_rng(0)
    rows, corpus, speaker, label = [], [], [], []
    for name, level in (("a", 0.0), ("b", 1.0), ("c", 30.0)):
        for i in range(60):
            y = ("happy", "sad", "angry")[i % 3] if name != "c" else ("happy", "sad")[i % 2]
            rows.append([level + {"happy": 2.0, "sad": -2.0, "angry": 0.0}[y]
                         + rng.normal(0, 0.3), rng.normal()])
            corpus.append(name)
            speaker.append(f"{name}/{i % 5}")  # every speaker shows every label
            label.append(y)
    got = screen.loco(np.array(rows), np.array(corpus), np.array(speaker), np.array(label))
    assert set(got) == {"room", "speaker", "fresh"}
    # Corpus c has two labels: its UAR is their mean recall, and angry (never heard there)
    # does not count.
    assert min(got["room"].values()) > 0.9
    assert got["fresh"]["c"] == pytest.approx(0.5)  # everything called happy: 30 levels too loud
    assert got["speaker"]["c"] > 0.9


def test_a_test_grouping_standardises_the_unseen_corpus_per_group():
    """An extra view whose groups are the corpora is the room view; one whose groups are the
    emotions standardises the emotions away (a voice clustering that found emotions instead of
    voices), leaving chance."""
    pytest.importorskip("sklearn")
    screen = load_script("speech_statistics_screen")
    rng = np.random.default_rng(1)
    rows, corpus, speaker, label = [], [], [], []
    for name, level in (("a", 0.0), ("b", 5.0), ("c", -5.0)):
        for i in range(90):
            y = ("happy", "sad", "angry")[i % 3]
            rows.append([level + {"happy": 2.0, "sad": -2.0, "angry": 0.0}[y]
                         + rng.normal(0, 0.3), rng.normal()])
            corpus.append(name)
            speaker.append(f"{name}/{i % 5}")
            label.append(y)
    corpus_, label_ = np.array(corpus), np.array(label)
    got = screen.loco(np.array(rows), corpus_, np.array(speaker), label_,
                      {"as rooms": corpus_, "per emotion": np.char.add(corpus_, label_)})
    assert got["as rooms"] == got["room"] and min(got["room"].values()) > 0.9
    speakers = np.array(speaker)
    per_speaker = screen.loco(np.array(rows), corpus_, speakers, label_,
                              {"as speakers": speakers}, groups_trained="speaker")
    assert per_speaker["as speakers"] == per_speaker["speaker"]
    assert max(got["per emotion"].values()) < 0.6


def test_voice_clusters_stay_inside_their_corpus():
    pytest.importorskip("sklearn")
    screen = load_script("speech_statistics_screen")
    rng = np.random.default_rng(2)
    stats = rng.normal(size=(40, 3, 14)) + 100.0  # column 13 stands for F0 (n_ceps = 13)
    corpus = np.array(["a"] * 20 + ["b"] * 20)
    speaker = np.array([f"{c}/{i % 4}" for i, c in enumerate(corpus)])
    for k, want in ((2, 2), (0, 4)):
        got = screen.voice_clusters(stats, corpus, speaker, k, 13)
        for c in ("a", "b"):
            assert all(g.startswith(c + "/") for g in got[corpus == c])
            assert len(set(got[corpus == c])) == want


def test_rank_scaling_undoes_a_monotone_distortion_and_whitening_removes_correlation():
    """A room whose microphone compresses (a cube root of another room's values): the ranks
    match exactly, mean and spread do not.  Whitening leaves each group's columns uncorrelated
    (but for what its shrinkage keeps), z leaves their correlation."""
    screen = load_script("speech_statistics_screen")
    rng = np.random.default_rng(3)
    a = rng.normal(size=(200, 2)) @ np.array([[1.0, 0.8], [0.0, 0.6]])
    x = np.r_[a, np.cbrt(a)]
    groups = np.array(["a"] * 200 + ["b"] * 200)
    rank = screen.standardized(x, groups, "rank")
    np.testing.assert_allclose(rank[:200], rank[200:])
    z = screen.standardized(x, groups, "z")
    assert np.abs(z[:200] - z[200:]).max() > 0.3
    kept = np.corrcoef(z[:200], rowvar=False)[0, 1]
    assert kept > 0.7
    white = screen.standardized(x, groups, "whiten")
    assert abs(np.corrcoef(white[:200], rowvar=False)[0, 1]) < kept / 3


def test_a_room_that_mostly_hears_neutral_speech_moves_the_scale_a_balanced_room_taught():
    """Corpora acted to be balanced, scored in a room that is 90% neutral speech: its statistics
    sit near neutral, so happy (standardised against them) looks as far out as angry did in a
    balanced room.  A regression trained on balanced rooms calls it angry; one trained on rooms
    weighted the same way does not.  The weights make neutral that share of each room."""
    pytest.importorskip("sklearn")
    screen = load_script("speech_statistics_screen")
    rng = np.random.default_rng(3)
    where = {"neutral": 0.0, "happy": 2.0, "sad": -2.0, "angry": 4.0}
    rows, corpus, label = [], [], []
    for name, level in (("a", 0.0), ("b", 3.0), ("c", -3.0)):
        for i in range(120):
            y = tuple(where)[i % 4]
            rows.append([level + where[y] + rng.normal(0, 0.3), rng.normal()])
            corpus.append(name)
            label.append(y)
    x, corpus_, label_ = np.array(rows), np.array(corpus), np.array(label)
    w = screen.neutral_weights(label_, corpus_, 0.9)
    for c in "abc":
        m = corpus_ == c
        assert w[m & (label_ == "neutral")].sum() / w[m].sum() == pytest.approx(0.9)
        assert w[m].sum() == pytest.approx(m.sum())
    z = screen.standardized(x, corpus_, weights=w)
    for c in "abc":
        m = corpus_ == c
        assert np.average(z[m], axis=0, weights=w[m]) == pytest.approx([0, 0], abs=1e-6)
    got = screen.neutral_room(x, corpus_, label_, 0.9)
    assert set(got) == {"as recorded -> S", "S -> S", "fresh S"}
    assert min(got["S -> S"].values()) > 0.95
    assert max(got["as recorded -> S"].values()) < 0.85
    # The balanced room is what the plain room view scores: there, both are right.
    assert min(screen.loco(x, corpus_, corpus_, label_)["room"].values()) > 0.95


def test_temporal_statistics_count_the_rate_and_lengths_of_a_known_rhythm():
    """A clip of 2 s of speech between silences: 8 voiced runs of 200 ms, each followed by
    50 ms unvoiced, and a loudness contour with 5 peaks per second.  The silences around it do
    not count; a clip of one frame, too short for a rate, gives zeros."""
    from edge.features import PROSODY_COLUMNS

    screen = load_script("speech_statistics_screen")
    cfg = shipped_mfcc()
    assert cfg.hop_length_s == pytest.approx(0.01)
    silence, speech = 30, 200
    frames = np.zeros((silence + speech + silence, cfg.n_columns))
    frames[:, 0] = -20.0  # c0, the log energy: silence
    frames[silence:silence + speech, 0] = 20.0
    voiced = np.tile(np.r_[np.ones(20), np.zeros(5)], 8)
    frames[silence:silence + speech, cfg.n_ceps + PROSODY_COLUMNS.index("voiced")] = voiced
    t = np.arange(speech) * cfg.hop_length_s
    frames[silence:silence + speech, cfg.n_ceps + PROSODY_COLUMNS.index("loudness_db")] = (
        -30 + 6 * np.sin(2 * np.pi * 5 * t + 0.3))
    bank = SimpleNamespace(recipe=SimpleNamespace(mfcc=cfg),
                           variants=[(frames,), (frames[silence:silence + 1],)])
    got = screen.temporal_statistics(bank)
    assert got.shape == (2, len(screen.TEMPORAL))
    np.testing.assert_allclose(got[0], [5.0, 4.0, 0.2, 0.0, 0.05, 0.0], atol=1e-9)
    np.testing.assert_array_equal(got[1], 0.0)


def test_modulation_statistics_put_a_known_rate_in_its_band():
    """Speech whose level moves 5 times a second and whose loudness once a second (3 s, between
    silences): c0's power lies in the 4-8 Hz band and the loudness's in 0.5-2 Hz; a clip of
    0.5 s is padded to one spectrum and still says 5 Hz; a clip of one frame gives zeros."""
    from edge.features import PROSODY_COLUMNS

    screen = load_script("speech_statistics_screen")
    cfg = shipped_mfcc()
    silence, speech = 30, 300
    frames = np.zeros((silence + speech + silence, cfg.n_columns))
    frames[:, 0] = -20.0  # c0, the log energy: silence
    t = np.arange(speech) * cfg.hop_length_s
    frames[silence:silence + speech, 0] = 20.0 + 4 * np.sin(2 * np.pi * 5 * t)
    loud = cfg.n_ceps + PROSODY_COLUMNS.index("loudness_db")
    frames[silence:silence + speech, loud] = -30 + 6 * np.sin(2 * np.pi * 1 * t)
    short = frames[silence - 5:silence + 50]
    bank = SimpleNamespace(recipe=SimpleNamespace(mfcc=cfg),
                           variants=[(frames,), (short,), (frames[silence:silence + 1],)])
    got = screen.modulation_statistics(bank)
    bands = len(screen.MODULATION_BANDS)
    assert got.shape == (3, (screen.MODULATION_CEPS + 1) * bands)
    share = np.exp(got.reshape(3, -1, bands))
    assert share[0, 0].argmax() == 2 and share[0, 0, 2] > 0.9  # c0: 4-8 Hz
    assert share[0, -1].argmax() == 0 and share[0, -1, 0] > 0.9  # loudness: 0.5-2 Hz
    assert share[1, 0].argmax() == 2
    np.testing.assert_allclose(share[0].sum(-1)[[0, -1]], 1.0, atol=1e-4)
    np.testing.assert_array_equal(got[2], 0.0)


def test_contour_statistics_read_percentiles_and_slopes_of_a_known_contour():
    """F0 rising 1 semitone per frame over 100 voiced speech frames, then 20 unvoiced speech
    frames at 0 (not counted), loudness a sawtooth that climbs 1 dB a frame and drops 9 at
    once; a clip with no voiced frame takes its corpus's F0 figures; silence is not counted."""
    from edge.features import PROSODY_COLUMNS

    screen = load_script("speech_statistics_screen")
    cfg = shipped_mfcc()
    col = {n: cfg.n_ceps + PROSODY_COLUMNS.index(n) for n in ("f0_st", "voiced", "loudness_db")}
    frames = np.zeros((140, cfg.n_columns))
    frames[:, 0] = 20.0
    frames[120:, 0] = -20.0  # silence, with a loudness far off: not counted
    frames[:100, col["f0_st"]] = 40.0 + np.arange(100)
    frames[:100, col["voiced"]] = 1.0
    frames[:120, col["loudness_db"]] = -40.0 + np.arange(120) % 10
    frames[120:, col["loudness_db"]] = 50.0
    unvoiced = frames.copy()
    unvoiced[:, col["voiced"]] = 0.0
    utts = [SimpleNamespace(corpus="a"), SimpleNamespace(corpus="a")]
    bank = SimpleNamespace(recipe=SimpleNamespace(mfcc=cfg), variants=[(frames,), (unvoiced,)],
                           utts=utts)
    got = screen.contour_statistics(bank)
    n = len(screen.CONTOUR)
    assert got.shape == (2, 2 * n)
    f0 = 40.0 + np.arange(100)
    hop = cfg.hop_length_s
    np.testing.assert_allclose(got[0, :n], [*np.percentile(f0, (20, 50, 80)),
                                            np.ptp(np.percentile(f0, (20, 80))), 1 / hop, 0.0])
    loud = -40.0 + np.arange(120) % 10
    np.testing.assert_allclose(got[0, n:], [*np.percentile(loud, (20, 50, 80)),
                                            np.ptp(np.percentile(loud, (20, 80))), 1 / hop,
                                            -9 / hop])
    np.testing.assert_allclose(got[1], got[0])  # F0 from its corpus; loudness its own (equal)


def test_clips_left_out_of_training_are_still_heard_and_a_corpus_left_out_is_not_scored():
    """Corpus c also heard loud clips that are neither trained on nor scored (label ""): its
    room's statistics take them in, so its own clips all look quiet and are called sad.  Corpus
    a trained with its labels swapped (as a wrong label rule would) confuses b and d; with a
    left out, they are clean again and a has no score.  The rules map only labels outside the
    fusion set."""
    pytest.importorskip("sklearn")
    screen = load_script("speech_statistics_screen")
    rng = np.random.default_rng(4)
    rows, corpus, label = [], [], []
    for name, level in (("a", 0.0), ("b", 3.0), ("c", -3.0), ("d", 1.0)):
        for i in range(80 if name == "c" else 40):
            y = ("happy", "sad")[i % 2] if i < 40 else ""
            rows.append([level + {"happy": 2.0, "sad": -2.0, "": 10.0}[y]
                         + rng.normal(0, 0.3), rng.normal()])
            corpus.append(name)
            label.append(y)
    x, corpus_, label_ = np.array(rows), np.array(corpus), np.array(label)
    heard = screen.loco(x, corpus_, corpus_, label_)
    assert min(heard["room"][c] for c in "abd") > 0.95
    assert heard["room"]["c"] == pytest.approx(0.5)
    swap = {"happy": "sad", "sad": "happy", "": ""}
    swapped = np.array([swap[y] if c == "a" else y for c, y in zip(corpus, label)])
    confused = screen.loco(x, corpus_, corpus_, label_, train_label=swapped)
    assert confused["room"]["b"] < 0.8 and confused["room"]["d"] < heard["room"]["d"]
    without = screen.loco(x, corpus_, corpus_, label_, train_label=swapped, without="a")
    assert set(without["room"]) == {"b", "c", "d"}
    assert min(without["room"][c] for c in "bd") > 0.95

    own = np.array(["calm", "boredom", "anger", "neutral", "surprised"])
    rules = list(screen.LABEL_RULES.values())
    assert list(screen.train_labels(own, rules[0])) == ["neutral", "", "angry", "neutral",
                                                        "surprised"]
    assert list(screen.train_labels(own, rules[1])[:2]) == ["", ""]
    assert [list(screen.train_labels(own, r)[:2]) for r in rules[2:]] == [
        ["neutral", "neutral"], ["neutral", "sad"]]


def test_frame_statistics_pool_the_frames_as_the_room_standardised_them():
    """``--frames``: each clip's frames are standardised with its room's (mean, 1/std) and
    clipped before they are pooled, and its speech frames are still picked by the level it was
    recorded at, as the device's window input picks them."""
    screen = load_script("speech_statistics_screen")
    cfg = shipped_mfcc()
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(120, cfg.n_columns))
    frames[:, 0] = np.r_[np.full(20, -20.0), np.full(100, 20.0)]  # silence, then speech
    frames[20:, 1] = 3.0 + np.arange(100) % 2  # speech alternates 3, 4: change 1 per frame
    mean, scale = np.full(cfg.n_columns, 1.0), np.full(cfg.n_columns, 2.0)
    scale[2] = 100.0  # column 2 goes past the clip at 8 sd
    room = SimpleNamespace(standardization=lambda clip, variant: (mean, scale))
    bank = SimpleNamespace(recipe=SimpleNamespace(mfcc=cfg), variants=[(frames,)], utts=[None],
                           standardize_by=lambda unit, weights=None: room)
    (got,) = screen.frame_statistics(bank)
    assert got.shape == (3, cfg.n_columns)
    # Column 1 over the speech frames: (3.5 - 1) * 2 on average, spread 1, change 2.
    np.testing.assert_allclose(got[:, 1], [5.0, 1.0, 2.0], atol=1e-9)
    assert np.abs(got[0, 2]) <= 8.0 and np.abs(got[1, 2]) <= 8.0
    # c0: (20 - 1) * 2 clipped at 8 in every speech frame; the silent ones (-8) are left out;
    # with loudness per window (the shipped recipe) that level is taken away, as on the device.
    assert got[0, 0] == (0.0 if cfg.normalize_level else 8.0) and got[1, 0] == 0.0


def test_a_joined_regression_decides_where_the_run_it_joins_cannot(tmp_path, capsys):
    """``--join``: the regression's clip probabilities, reordered to the run's labels, are
    joined to the run's kept ones by a weighted geometric mean; weight 0 is the run alone."""
    pytest.importorskip("sklearn")
    screen = load_script("speech_statistics_screen")
    cfg = shipped_mfcc()
    rng = np.random.default_rng(2)
    labels = ["sad", "happy", "angry"]  # not in sorted order: the join must reorder
    utts, variants = [], []
    for name in ("a", "b", "c"):
        for i in range(150):  # enough clips for the screen's regularisation (C = 0.1)
            label = labels[i % 3]
            frames = rng.normal(size=(30, cfg.n_columns))
            frames[:, 0] = 20.0  # all speech
            frames[:, 1] += {"happy": 4.0, "sad": -4.0, "angry": 0.0}[label]
            utts.append(SimpleNamespace(corpus=name, speaker=f"{name}/{i % 5}", label=label))
            variants.append((frames,))
    unit = SimpleNamespace(standardization=lambda clip, variant: (np.zeros(cfg.n_columns),
                                                                  np.ones(cfg.n_columns)))
    bank = SimpleNamespace(recipe=SimpleNamespace(mfcc=cfg), utts=utts, variants=variants,
                           standardize_by=lambda u, weights=None: unit,
                           standardize_with=lambda stats: unit,
                           subset=lambda clips: SimpleNamespace(pooled_stats=lambda: None))
    run = tmp_path / "run"
    run.mkdir()
    for name in ("a", "b", "c"):
        y = np.array([labels.index(u.label) for u in utts if u.corpus == name])
        flat = np.full((y.size, 3), 1 / 3)
        np.savez(run / f"loco_{name}_clips.npz", labels=labels, y=y, adapted=flat, fresh=flat)
    assert screen.join_members(bank, [run], [0.0, 0.15], [20]) == 0
    got = {}
    for line in capsys.readouterr().out.splitlines()[1:]:
        w, adapted, fresh = re.search(r" (\d\.\d\d) +(\d\.\d{3}) +(\d\.\d{3})   ", line).groups()
        got["change" in line, float(w)] = (float(adapted), float(fresh))
    for change in (False, True):
        assert got[change, 0.0] == (0.333, 0.333)  # the run alone calls every clip "sad"
        assert min(got[change, 0.15]) > 0.8  # labels reordered wrongly would give far less
    (run / "loco_c_clips.npz").unlink()
    assert screen.join_members(bank, [run], [0.15], [20]) == 2
    assert "no kept clips of c" in capsys.readouterr().err


def test_a_rooms_calmest_speech_is_its_quietest_clips_up_to_the_share_of_what_it_heard():
    """``--calm-share``: within each room, the clips of lowest mean speech level are kept, in
    order, while the weighted speech frames before them are within the share (a room keeps its
    quietest clip whatever the share); the others, and a silent clip, weigh 0."""
    screen = load_script("speech_statistics_screen")
    cfg = shipped_mfcc()
    levels = [40.0, 10.0, 30.0, 20.0, 25.0, 15.0]  # rooms a, a, a, a, b, b
    variants = []
    for level in levels:
        frames = np.zeros((10, cfg.n_columns))
        frames[:, 0] = level  # every frame at the clip's level: all of them speech
        variants.append((frames,))
    corpus = np.array(["a"] * 4 + ["b"] * 2)
    counts = [10.0, 10.0, 10.0, 10.0, 10.0, 0.0]  # b's second clip is silent
    bank = SimpleNamespace(recipe=SimpleNamespace(mfcc=cfg), variants=variants, utts=levels,
                           speech_frames=lambda c: counts[c])
    heard = screen.speech_levels(bank)
    np.testing.assert_allclose(heard[1], [*levels[:5], np.inf])  # the silent clip has none
    # Room a heard 40 frames (base weight 1): its quietest half is the clips at 10 and 20.
    # Room b's one clip with speech holds all of it, and is kept.
    assert screen.calm_weights(*heard, corpus, [1.0] * 6, 0.5) == [0, 1, 0, 1, 1, 0]
    # Weighted, it heard 60: the clips at 10, 20 and 30 (weights 1, 1, 1) fill its half.
    assert screen.calm_weights(*heard, corpus, [3.0, 1, 1, 1, 2, 2], 0.5) == [0, 1, 1, 1, 2, 0]
    assert screen.calm_weights(*heard, corpus, [1.0] * 6, 0.2) == [0, 1, 0, 0, 1, 0]
