"""Corpus indexers on the real corpora (skipped without ../shared/data), and the MFCC check on
real RAVDESS clips."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from convert.speech.corpora import RAVDESS_LABELS, index_emodb, index_ravdess
from edge.features import Mfcc, MfccConfig
from edge.sources.audio_file import load_audio

pytestmark = pytest.mark.corpus


def test_ravdess_index(shared_data):
    utts = index_ravdess(shared_data / "ravdess")
    assert len(utts) == 1440
    assert len({u.speaker for u in utts}) == 24
    counts = Counter(u.label for u in utts)
    assert set(counts) == set(RAVDESS_LABELS)
    assert counts["neutral"] == 96 and counts["angry"] == 192  # neutral has no strong intensity


def test_emodb_index(shared_data):
    utts = index_emodb(shared_data / "emodb")
    assert len(utts) == 535 and len({u.speaker for u in utts}) == 10
    assert Counter(u.label for u in utts)["angry"] == 127


def test_mfcc_matches_python_speech_features_on_ravdess(shared_data):
    psf = pytest.importorskip("python_speech_features")
    paths = sorted((shared_data / "ravdess").glob("Actor_0[1-4]/*.flac"))[::37]
    mfcc = Mfcc(MfccConfig())
    for p in paths:
        x = load_audio(p, 16000).astype(np.float64)
        np.testing.assert_allclose(mfcc(x), psf.mfcc(x, 16000), rtol=0, atol=1e-6)
