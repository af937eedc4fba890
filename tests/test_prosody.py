"""Prosody frames: the right pitch and voicing on known signals, aligned with the MFCC frames,
streaming equal to batch, untouched by per-window CMN, and carried through a speech model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import ConfigError
from edge.features import Mfcc, MfccConfig, StreamingMfcc, normalize_window
from edge.features.prosody import PROSODY_COLUMNS, StreamingProsody, prosody_frames

CONFIG = MfccConfig(n_mels=40, n_ceps=40, window="hamming", lifter=0, high_hz=7600.0,
                    normalize="cmn", prosody=True)
SR = CONFIG.sample_rate
COL = {name: i for i, name in enumerate(PROSODY_COLUMNS)}


def voice(f0: float, seconds: float, sr: int = SR, *, level: float = 0.1) -> np.ndarray:
    """A glottal-like harmonic series: 20 harmonics falling 6 dB per octave."""
    t = np.arange(round(seconds * sr)) / sr  # round: int(1001 / 16000 * 16000) is 1000
    harmonics = [h for h in range(1, 21) if h * f0 < sr / 2]
    x = sum(np.sin(2 * np.pi * h * f0 * t) / h for h in harmonics)
    return np.asarray(level * x / max(float(np.max(np.abs(x), initial=0.0)), 1e-12))


@pytest.mark.parametrize("f0", [80.0, 140.0, 220.0, 330.0])
def test_pitch_of_a_harmonic_voice(f0):
    p = prosody_frames(voice(f0, 0.5), CONFIG)
    inner = p[5:-5]
    assert inner[:, COL["voiced"]].min() == 1.0
    semitones = 12 * np.log2(f0 / 27.5)
    np.testing.assert_allclose(inner[:, COL["f0_st"]], semitones, atol=0.3)
    assert inner[:, COL["voicing"]].min() > 0.9
    assert np.abs(inner[:, COL["jitter"]]).max() < 0.01  # a steady pitch has no jitter


def test_noise_and_silence_are_unvoiced():
    noise = np.random.default_rng(0).standard_normal(SR) * 0.1
    p = prosody_frames(noise, CONFIG)
    assert p[:, COL["voiced"]].mean() < 0.1
    silence = prosody_frames(np.zeros(SR), CONFIG)
    assert silence[:, COL["voiced"]].max() == 0.0
    assert silence[:, COL["f0_st"]].max() == 0.0
    assert silence[:, COL["voicing"]].max() == 0.0  # no autocorrelation peak at all
    # White noise is flat, a voice falls with frequency: the slope tells them apart.
    v = prosody_frames(voice(150.0, 1.0), CONFIG)
    assert np.median(v[:, COL["slope_db_khz"]]) < np.median(p[:, COL["slope_db_khz"]]) - 3


def test_louder_is_louder_by_the_gain():
    x = voice(150.0, 0.5)
    quiet, loud = prosody_frames(x, CONFIG), prosody_frames(4 * x, CONFIG)
    diff = loud[5:-5, COL["loudness_db"]] - quiet[5:-5, COL["loudness_db"]]
    np.testing.assert_allclose(diff, 20 * np.log10(4), atol=1e-6)


def test_rows_line_up_with_the_mfcc_frames():
    """Frame i's analysis window is centred on MFCC frame i's centre: a voice starting at a known
    sample turns voiced at the frame whose centre it reaches."""
    onset = 8000  # sample 8000 = the centre of MFCC frame (8000 - 200) / 160 = 48.75
    x = np.concatenate((np.zeros(onset), voice(150.0, 0.5)))
    p = prosody_frames(x, CONFIG)
    assert p.shape == (Mfcc(CONFIG).num_frames(x.size), len(PROSODY_COLUMNS))
    first_voiced = int(np.argmax(p[:, COL["voiced"]] > 0))
    assert abs(first_voiced - 48.75) <= 2.5  # within a quarter of the 40 ms window


def test_mfcc_with_prosody_appends_the_columns():
    x = voice(200.0, 1.0) + np.random.default_rng(1).standard_normal(SR) * 0.01
    plain = dataclasses.replace(CONFIG, prosody=False)
    both = Mfcc(CONFIG)(x)
    assert CONFIG.n_columns == 40 + 12 and plain.n_columns == 40
    assert both.shape == (Mfcc(plain).num_frames(x.size), 52)
    np.testing.assert_array_equal(both[:, :40], Mfcc(plain)(x))
    np.testing.assert_array_equal(both[:, 40:], prosody_frames(x, CONFIG))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 6000), blocks=st.lists(st.integers(1, 1500), min_size=1, max_size=40),
       seed=st.integers(0, 2**16), step=st.sampled_from([1, 2, 3]))
def test_streaming_equals_batch_for_any_blocks(n, blocks, seed, step):
    rng = np.random.default_rng(seed)
    x = voice(float(rng.uniform(70, 400)), n / SR) + rng.standard_normal(n) * 0.02
    config = dataclasses.replace(CONFIG, prosody_step=step)
    stream, parts, i, k = StreamingMfcc(config), [], 0, 0
    while i < x.size:
        size = blocks[k % len(blocks)]
        parts.append(stream.process(x[i : i + size]))
        i, k = i + size, k + 1
    parts.append(stream.flush())
    got = np.concatenate(parts)
    np.testing.assert_allclose(got, Mfcc(config)(x), rtol=0, atol=1e-9)
    assert got.shape[1] == 52


@pytest.mark.parametrize("step", [2, 3])
def test_a_prosody_step_analyses_every_kth_frame_and_holds_it(step):
    """Frames 0, k, 2k... are the every-frame analysis of the same frames, each held for the k - 1
    frames after it; the columns that compare with the previous frame compare with k frames
    earlier."""
    rng = np.random.default_rng(3)
    x = np.concatenate((voice(180.0, 0.6), rng.standard_normal(SR // 2) * 0.05,
                        voice(120.0, 0.4) * np.linspace(0.2, 1.0, int(0.4 * SR))))
    every = prosody_frames(x, CONFIG)
    held = prosody_frames(x, dataclasses.replace(CONFIG, prosody_step=step))
    assert held.shape == every.shape
    analysed = np.arange(0, every.shape[0], step)
    for j in range(1, step):  # the held frames repeat the analysed frame before them
        rows = analysed[analysed + j < every.shape[0]]
        np.testing.assert_array_equal(held[rows + j], held[rows])
    same = [COL[c] for c in PROSODY_COLUMNS if c not in ("flux_db", "jitter", "shimmer_db")]
    np.testing.assert_allclose(held[analysed][:, same], every[analysed][:, same], atol=1e-9)
    # Jitter against the frame k hops back: the every-frame jitter of a signal sampled k-fold.
    f0 = every[analysed, COL["f0_st"]]
    hz = np.where(f0 > 0, 27.5 * 2 ** (f0 / 12), 0.0)
    both = (every[analysed, COL["voiced"]] > 0) & (np.roll(every[analysed, COL["voiced"]], 1) > 0)
    both[0] = False
    expect = np.where(both, np.abs(np.diff(hz, prepend=hz[0])) / np.maximum(hz, 1.0), 0.0)
    np.testing.assert_allclose(held[analysed, COL["jitter"]], expect, atol=1e-9)
    assert held[analysed, COL["jitter"]].max() > 0  # the test saw voiced runs


def test_prosody_frames_wait_for_their_look_ahead():
    """A frame comes out once its centred 40 ms window is complete: 120 samples after the MFCC
    frame's end at 16 kHz, never before, and each frame once."""
    stream = StreamingMfcc(CONFIG)
    assert stream.process(np.zeros(CONFIG.frame_length)).shape == (0, 52)
    assert stream.process(np.zeros(119)).shape == (0, 52)
    assert stream.process(np.zeros(1)).shape == (1, 52)
    prosody = StreamingProsody(CONFIG)
    assert prosody.process(np.zeros(520 + 160 * 9)).shape == (10, len(PROSODY_COLUMNS))
    assert prosody.flush(12).shape == (2, len(PROSODY_COLUMNS))


def test_per_window_normalisation_leaves_prosody_alone():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((300, 52)) * 3 + 5
    for mode in ("cmn", "cmvn"):
        out = normalize_window(f, mode, 40)
        np.testing.assert_allclose(out[:, :40].mean(0), 0, atol=1e-9)
        np.testing.assert_array_equal(out[:, 40:], f[:, 40:])
    np.testing.assert_allclose(normalize_window(f, "cmn").mean(0), 0, atol=1e-9)


@pytest.mark.parametrize("bad", [0, -1, 11, 1.5, True])
def test_prosody_step_must_be_a_whole_number_of_frames(bad):
    with pytest.raises(ConfigError, match="prosody_step"):
        dataclasses.replace(CONFIG, prosody_step=bad)
    assert "prosody_step" not in CONFIG.to_dict()  # 1 is left out: older manifests stay valid
    assert dataclasses.replace(CONFIG, prosody_step=2).to_dict()["prosody_step"] == 2


def test_prosody_must_be_a_boolean():
    with pytest.raises(ConfigError, match="prosody"):
        MfccConfig(prosody="yes")  # type: ignore[arg-type]
    assert MfccConfig.from_dict(CONFIG.to_dict()) == CONFIG
    # Manifests written before prosody existed read as without it.
    old = {k: v for k, v in CONFIG.to_dict().items() if k != "prosody"}
    assert MfccConfig.from_dict(old).prosody is False


def test_a_prosody_model_runs_on_files_and_refuses_a_plain_one(tmp_path):
    pytest.importorskip("tensorflow")
    import soundfile as sf

    from edge.errors import ManifestMismatchError
    from edge.models.speech import SpeechClassifier
    from tests.helpers import tiny_speech_model

    tiny = MfccConfig(n_mels=20, n_ceps=13, window="hamming", normalize="cmn", prosody=True)
    path, _ = tiny_speech_model(tmp_path, config=tiny)
    x = np.concatenate([voice(f, 0.4) for f in (120.0, 180.0, 240.0)] * 2)
    x = x + np.random.default_rng(2).standard_normal(x.size) * 0.003
    wav = tmp_path / "voice.wav"
    sf.write(wav, x.astype(np.float32), SR)
    with SpeechClassifier(path) as clf:
        assert clf.config.prosody and clf.model.input_shape[2] == 25
        whole, streamed = clf.classify_signal(x.astype(np.float32)), clf.classify_file(wav)
        assert whole.label == streamed.label
        for k, v in whole.scores.items():
            assert streamed.scores[k] == pytest.approx(v, abs=1e-6)
    # The same network's manifest edited to claim no prosody no longer fits its input.
    import json

    manifest = path.with_suffix(".json")
    m = json.loads(manifest.read_text())
    m["preprocessing"]["prosody"] = False
    manifest.write_text(json.dumps(m))
    with pytest.raises(ManifestMismatchError, match="prosody=False"):
        SpeechClassifier(path)


def test_frames_out_counts_what_was_returned():
    stream = StreamingMfcc(CONFIG)
    got = stream.process(np.zeros(CONFIG.frame_length + 50))
    assert got.shape[0] == 0 and stream.frames_out == 0  # the cepstrum waits for its prosody
    got = stream.process(np.zeros(70))
    assert got.shape[0] == 1 and stream.frames_out == 1


def test_normalize_prosody_extends_the_per_window_normalisation():
    both = dataclasses.replace(CONFIG, normalize_prosody=True)
    assert CONFIG.normalized_columns == 40 and both.normalized_columns == 52
    f = np.random.default_rng(3).standard_normal((300, 52)) + 7
    out = normalize_window(f, both.normalize, both.normalized_columns)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-9)
    with pytest.raises(ConfigError, match="normalize_prosody"):
        dataclasses.replace(CONFIG, normalize_prosody=1)
