"""The shared MFCC: equal to python_speech_features, streaming equal to batch, built once."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import edge.features.mfcc as features
from edge.errors import ConfigError
from edge.features import (
    Mfcc,
    MfccConfig,
    StreamingMfcc,
    frame_dbfs,
    normalize_window,
    pool_window,
    window_input,
)
from edge.sources.audio_file import load_audio

psf = pytest.importorskip("python_speech_features")

DEMO_CLIPS = ["03a01Wa.flac", "03a01Fa.flac", "03a01Nc.flac", "08a02Tb.flac"]


def psf_mfcc(x: np.ndarray, c: MfccConfig) -> np.ndarray:
    win = {"none": lambda n: np.ones((n,)), "hamming": np.hamming, "hann": np.hanning}[c.window]
    return psf.mfcc(x, samplerate=c.sample_rate, winlen=c.win_length_s, winstep=c.hop_length_s,
                    numcep=c.n_ceps, nfilt=c.n_mels, nfft=c.n_fft, lowfreq=c.low_hz,
                    highfreq=c.high_hz, preemph=c.preemphasis, ceplifter=c.lifter,
                    appendEnergy=c.append_energy, winfunc=win)


@pytest.fixture(scope="module")
def clips(request) -> list[np.ndarray]:
    root = request.config.rootpath / "demo" / "audio"
    return [load_audio(root / name, 16000).astype(np.float64) for name in DEMO_CLIPS]


CONFIGS = [
    MfccConfig(),  # python_speech_features' defaults
    MfccConfig(n_mels=40, n_ceps=40, window="hamming", lifter=0, high_hz=7600.0),
    MfccConfig(n_mels=20, n_ceps=12, window="hann", preemphasis=0.0, append_energy=False,
               low_hz=100.0),
    MfccConfig(sample_rate=22050, n_fft=1024, win_length_s=0.03, hop_length_s=0.015),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.n_mels}x{c.n_ceps}-{c.window}")
def test_matches_python_speech_features_on_real_clips(clips, config):
    mfcc = Mfcc(config)
    for x in clips:
        ours, ref = mfcc(x), psf_mfcc(x, config)
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("n", [0, 1, 399, 400, 401, 560, 561])
def test_matches_python_speech_features_at_frame_boundaries(n):
    x = np.random.default_rng(n).standard_normal(n) * 0.1
    ours = Mfcc()(x)
    assert ours.shape[0] == max(1, Mfcc().num_frames(n))
    if n:
        np.testing.assert_allclose(ours, psf_mfcc(x, MfccConfig()), atol=1e-6)


@pytest.mark.parametrize("config", CONFIGS[:2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_equals_batch_with_random_block_sizes(clips, config, seed):
    rng = np.random.default_rng(seed)
    x = clips[seed % len(clips)]
    stream = StreamingMfcc(config)
    parts, i = [], 0
    while i < x.size:
        n = int(rng.integers(1, 4000))
        parts.append(stream.process(x[i : i + n]))
        i += n
    parts.append(stream.flush())
    np.testing.assert_allclose(np.concatenate(parts), Mfcc(config)(x), rtol=0, atol=1e-9)


def test_streaming_emits_frames_only_once_complete():
    c = MfccConfig()
    stream = StreamingMfcc(c)
    assert stream.process(np.zeros(c.frame_length - 1)).shape == (0, c.n_ceps)
    assert stream.process(np.zeros(1)).shape == (1, c.n_ceps)
    assert stream.process(np.zeros(c.frame_step)).shape == (1, c.n_ceps)
    assert stream.frames_out == 2


def test_filterbank_and_dct_are_built_once_per_config(monkeypatch):
    mfcc = Mfcc(MfccConfig())

    def boom(*a, **k):
        raise AssertionError("matrices rebuilt on the hot path")

    monkeypatch.setattr(features, "mel_filterbank", boom)
    monkeypatch.setattr(features, "_dct_lifter_matrix", boom)
    stream = StreamingMfcc(mfcc=mfcc)
    x = np.random.default_rng(0).standard_normal(8000)
    mfcc(x)
    stream.process(x)
    stream.flush()


def test_config_round_trips_and_rejects_unknown_fields():
    c = CONFIGS[1]
    assert MfccConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="n_filters"):
        MfccConfig.from_dict({**c.to_dict(), "n_filters": 26})


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"n_fft": 256}, "n_fft"),
        ({"n_ceps": 30}, "n_ceps"),
        ({"high_hz": 9000.0}, "high_hz"),
        ({"window": "blackman"}, "window"),
        ({"normalize": "zscore"}, "normalize"),
        ({"pooling": "max"}, "pooling"),
        ({"clip": -1.0}, "clip"),
        ({"sample_rate": 0}, "sample_rate"),
    ],
)
def test_bad_config_values_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        dataclasses.replace(MfccConfig(), **changes)


def test_normalize_window():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((200, 13)) * 3 + 5
    assert np.allclose(normalize_window(f, "cmn").mean(0), 0)
    v = normalize_window(f, "cmvn")
    assert np.allclose(v.mean(0), 0) and np.allclose(v.std(0), 1, atol=1e-3)
    assert normalize_window(f, "none") is f


def test_pooling_keeps_the_speech_frames_statistics_in_the_device_order():
    """mean_std pools each column over the window's speech frames only (a pause inside the window
    does not count), after the deployment's standardisation and the per-window normalisation;
    the speech frames are picked on the raw level, whatever the standardisation did to c0."""
    config = MfccConfig(n_ceps=13, pooling="mean_std")
    rng = np.random.default_rng(3)
    raw = rng.standard_normal((300, 13)) + 2.0
    raw[:, 0] = 12.0  # loud
    raw[100:160, 0] = -5.0  # a pause, far quieter than the speech around it
    level = frame_dbfs(raw[:, 0], config)
    speech = np.r_[0:100, 160:300]

    pooled = pool_window(raw, level, "mean_std")
    assert pooled.shape == (2, 13)
    np.testing.assert_allclose(pooled[0], raw[speech].mean(0))
    np.testing.assert_allclose(pooled[1], raw[speech].std(0))
    assert pool_window(raw, level, "none") is raw

    def standardize(x):
        out = (x - 2.0) * 0.5
        out[:, 0] = 0.0  # a standardisation that flattens c0 must not change which frames count
        return out

    got = window_input(raw, config, standardize)
    np.testing.assert_allclose(got, pool_window(standardize(raw), level, "mean_std"))
    both = window_input(raw, dataclasses.replace(config, pooling="frames_mean_std"), standardize)
    np.testing.assert_allclose(both, np.concatenate((standardize(raw), got)))
    cmn = dataclasses.replace(config, normalize="cmn")
    assert np.allclose(window_input(raw, cmn)[0], raw[speech].mean(0) - raw.mean(0))
    assert config.input_rows(300) == 2 and MfccConfig().input_rows(300) == 300
    assert dataclasses.replace(config, pooling="frames_mean_std").input_rows(300) == 302
    # Left out of manifests when off, kept when on.
    assert "pooling" not in MfccConfig().to_dict() and "clip" not in MfccConfig().to_dict()
    assert MfccConfig.from_dict(config.to_dict()) == config
    # clip: standardised values are bounded before pooling; raw frames are never clipped.
    clipped = dataclasses.replace(config, clip=1.0)
    assert MfccConfig.from_dict(clipped.to_dict()) == clipped
    wide = lambda x: (x - 2.0) * 10.0  # noqa: E731
    np.testing.assert_allclose(window_input(raw, clipped, wide),
                               pool_window(np.clip(wide(raw), -1, 1), level, "mean_std"))
    np.testing.assert_allclose(window_input(raw, clipped), window_input(raw, config))


def test_delta_row_is_how_fast_each_column_moves_within_the_speech():
    """The "_delta" poolings add each column's mean absolute change between adjacent speech
    frames: a flutter and a glide with the same spread differ there, and the jump across a pause
    (the frames on either side are not adjacent in time) does not count."""
    config = MfccConfig(n_ceps=13, pooling="mean_std_delta")
    t = np.arange(300)
    raw = np.zeros((300, 13))
    raw[:, 0] = 12.0  # loud
    raw[100:160, 0] = -5.0  # a pause
    raw[:, 1] = np.where(t % 2, 1.0, -1.0)  # flutter: moves by 2 every frame
    raw[:, 2] = 0.01 * t  # glide: moves by 0.01
    raw[:, 3] = np.where(t < 130, 0.0, 100.0)  # one jump, inside the pause
    level = frame_dbfs(raw[:, 0], config)

    pooled = pool_window(raw, level, "mean_std_delta")
    assert pooled.shape == (3, 13)
    np.testing.assert_allclose(pooled[:2], pool_window(raw, level, "mean_std"))
    np.testing.assert_allclose(pooled[2, 1:4], [2.0, 0.01, 0.0], atol=1e-12)
    np.testing.assert_allclose(pooled[2, 0], 0.0)  # c0 is 12 throughout the speech
    # No two adjacent speech frames (every other frame quiet): the row is 0, not NaN.
    sparse = raw.copy()
    sparse[::2, 0] = -5.0
    sparse[1::2, 0] = 12.0
    assert np.array_equal(pool_window(sparse, frame_dbfs(sparse[:, 0], config),
                                      "mean_std_delta")[2], np.zeros(13))

    assert config.input_rows(300) == 3
    both = dataclasses.replace(config, pooling="frames_mean_std_delta")
    assert both.input_rows(300) == 303
    np.testing.assert_allclose(window_input(raw, both), np.concatenate((raw, pooled)))
    assert MfccConfig.from_dict(both.to_dict()) == both


def test_level_normalisation_takes_a_gain_away_and_keeps_how_loudness_moves(clips):
    """normalize_level: a clip played 20 dB quieter gives the same model input as the clip
    itself (through the device's own MFCC and prosody, standardised with fixed statistics, as a
    fresh device is), where without it the pooled level rows move; the speech frames' level is
    0 on average and its spread is kept; only c0 and the loudness column change."""
    config = MfccConfig(n_mels=40, n_ceps=40, window="hamming", lifter=0, high_hz=7600.0,
                        prosody=True, pooling="frames_mean_std")
    level_on = dataclasses.replace(config, normalize_level=True)
    loudness = 40 + 3  # the prosody's loudness_db column
    assert level_on.level_columns == (0, loudness) and MfccConfig().level_columns == (0,)
    mfcc = Mfcc(config)
    x = clips[0]
    loud, quiet = mfcc(x), mfcc(0.1 * x)
    mean, scale = loud.mean(0), 1.0 / (loud.std(0) + 1e-6)

    def fixed(f):
        return (f - mean) * scale

    off = [window_input(f, config, fixed) for f in (loud, quiet)]
    on = [window_input(f, level_on, fixed) for f in (loud, quiet)]
    stats = slice(-2, None)  # the mean and spread rows after the frames
    # Without it the gain reads as a level: about 20 dB on the loudness column's mean row.
    shift = (off[0][-2, loudness] - off[1][-2, loudness]) / scale[loudness]
    assert 18 < shift < 22
    np.testing.assert_allclose(on[0][stats, [0, loudness]], on[1][stats, [0, loudness]],
                               atol=1e-3)
    np.testing.assert_allclose(on[0][-2, [0, loudness]], 0.0, atol=1e-4)  # mean row
    np.testing.assert_allclose(on[0][-1], off[0][-1], atol=1e-5)  # spread row kept
    others = [c for c in range(config.n_columns) if c not in (0, loudness)]
    np.testing.assert_allclose(on[0][:, others], off[0][:, others])
    assert MfccConfig.from_dict(level_on.to_dict()) == level_on
    assert "normalize_level" not in config.to_dict()


def test_level_normalisation_of_a_silent_window_is_the_window():
    config = MfccConfig(n_ceps=13, normalize_level=True)
    empty = np.zeros((0, 13))
    assert features.normalize_level(empty, np.zeros(0), config.level_columns) is empty
