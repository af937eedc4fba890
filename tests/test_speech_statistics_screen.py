"""scripts/speech_statistics_screen.py: its three views standardise what they say they do, and
an unseen corpus is scored over the labels it has."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "speech_statistics_screen.py"


def _script():
    spec = importlib.util.spec_from_file_location("speech_statistics_screen", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_room_view_removes_each_corpus_level_and_a_fresh_view_does_not():
    """Three corpora whose classes differ the same way but sit at their own level (a microphone's
    gain): standardised per corpus, every unseen corpus is perfectly separated; with the
    training corpora's statistics, the one recorded far louder is called one class."""
    pytest.importorskip("sklearn")
    screen = _script()
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

