"""Which window statistics transfer to corpora a model never heard?  A screen in minutes, before
a leave-one-corpus-out run of the real recipe (half an hour or more on 2 cores).

Each clip as recorded (no augmented copies) becomes the pooled branch's statistics over all its
frames, computed by the device's own code (:func:`edge.features.pool_window`, mode
``mean_std_delta``: each column's mean, spread and mean change between adjacent speech frames).
A class-balanced logistic regression is then trained leave one corpus out, on a choice of
those statistics, and scored on the unseen corpus three ways:

- **room**: every corpus standardised with its own statistics (a device adapted to its room);
- **speaker**: every speaker standardised with their own (a device adapted to one voice);
- **fresh**: standardised with the training corpora's statistics (a device not yet adapted).

``--scaling`` chooses how a room or a speaker is standardised: ``z`` (each column's mean and
spread, what the device does), ``rank`` (each column mapped through its own distribution in the
group to normal scores, which also undoes a monotone distortion such as a microphone's
compression) or ``whiten`` (z, then the group's correlations removed, CORAL-style, shrunk 10%
toward identity).  The fresh view always uses the training corpora's mean and spread.

``--neutral-share S...`` asks what happens in a room that mostly hears neutral speech, as a
device's room does (the corpora are acted to be balanced across emotions).  For each S, the
unseen corpus is standardised with the statistics of a room where neutral clips are S of what
was heard (its neutral clips weighted up, the others down: no clip is dropped, every clip is
scored), by two regressions: one trained as in the room view (each training corpus standardised
as recorded, ``as recorded -> S``), and one trained with each training corpus standardised the
same way, neutral S of its statistics (``S -> S``; training knows its labels).  ``fresh S``:
the latter regression on the unseen corpus standardised with the training corpora's weighted
statistics, what a new device would start from.

``--voices K...`` adds a view per K: the unseen corpus's clips are clustered into K voices
(k-means on each clip's mean cepstra 1-12 and log F0; K = 0 takes its true number of speakers)
and each cluster is standardised with its own statistics, as a device that told voices apart
without a speaker model would; training is standardised per corpus, as in the room view.

``--voiced`` screens each line again with F0, jitter and shimmer taken over the clip's voiced
speech frames only (:func:`voiced_statistics`), as eGeMAPS takes them.

``--temporal`` screens each line again with eGeMAPS's six temporal parameters appended
(:func:`temporal_statistics`: how fast and how evenly the clip is spoken), which no column's
mean, spread or change gives directly.

``--modulation`` screens each line again with each column's modulation spectrum appended
(:func:`modulation_statistics`: how the level's, the first cepstra's and the loudness's power
over the clip is shared among bands from 0.5 to 50 Hz).

``--contours`` screens each line again with eGeMAPS's functionals of the F0 and loudness
contours appended (:func:`contour_statistics`: percentiles, their range, and the rising and
falling slopes).

``--frames`` adds two views per line: each corpus's frames standardised with its own statistics
before they are pooled, as the device standardises a room (**frames**: the statistics then
scaled with the training corpora's mean and spread only), and the statistics standardised per
room after that as well (**both**: what ``adapt.rows`` does).

``--join RUN...`` asks what a linear third member would add to a model: for each line, the
regression on the device's statistics (frames standardised per room, or fresh with the training
corpora's statistics, then pooled, as ``--frames``) gives each unseen clip its probabilities,
joined to those a LOCO run kept (``RUN/loco_<corpus>_clips.npz``) by a weighted geometric mean,
the regression weighing each ``--join-weight`` (0: the run alone, 1: the regression alone).  The
ensemble's graph does it per window with ``model.linear_weight``; the screen per clip.

``--calm-share Q...`` asks whether a room's statistics taken over its calmest speech move less
with how often the room hears neutral speech (a room's mean and spread follow its mix of
emotions, so a calm room makes every clip sound aroused).  The device's statistics (frames
standardised per room, then pooled, as ``--frames``) are computed with each room's statistics
over all its speech, then over the clips whose mean level (c0) lies in its quietest Q of
speech frames (no labels used), and scored in a room as recorded and in one whose speech is
70% neutral; each line's regression is trained on the training corpora as recorded,
standardised the same way.

``--label-rules`` and ``--leave-out`` screen the training data instead, in a table of their
own (room, speaker and fresh views): each rule for the clips outside the fusion label set
(:data:`LABEL_RULES`: RAVDESS calm, EmoDB boredom), and training without each corpus in turn.
Every line scores the same clips by the shipped rule (calm as neutral, boredom not scored), and
every room's statistics take in all its clips, boredom included.

UAR over the labels the unseen corpus has; the regression predicts every label.  A screen,
not the recipe: utterances, not 3 s windows, and a linear model, not the ensemble.

    .venv/bin/python scripts/speech_statistics_screen.py --data ../shared/data \\
        --cache ~/.cache/emotion-edge/speech
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from convert.speech.corpora import (  # noqa: E402
    Utterance,
    fusion_label,
    index_corpora,
    to_fusion_labels,
)
from convert.speech.features import FeatureBank  # noqa: E402
from convert.speech.recipe import SpeechRecipe  # noqa: E402
from convert.speech.train import sample_weights  # noqa: E402
from edge.errors import ConfigError  # noqa: E402
from edge.features import (  # noqa: E402
    PROSODY_COLUMNS,
    MfccConfig,
    frame_dbfs,
    pool_window,
    window_input,
)
from edge.features.adapt import RunningStats, speech_frames, speech_mask  # noqa: E402

logger = logging.getLogger(__name__)

VIEWS = ("room", "speaker", "fresh")
SCALINGS = ("z", "rank", "whiten")
#: What each rule trains a clip outside the fusion label set as ("": left out of training).  The
#: first is the shipped rule (convert.speech.corpora.FUSION_RULE).
LABEL_RULES: dict[str, dict[str, str]] = {
    "shipped (calm neutral)": {"calm": "neutral", "boredom": ""},
    "calm left out": {"calm": "", "boredom": ""},
    "boredom as neutral": {"calm": "neutral", "boredom": "neutral"},
    "boredom as sad": {"calm": "neutral", "boredom": "sad"},
}


def statistics(bank: FeatureBank) -> np.ndarray:
    """(clips, 3, columns): mean, spread and mean change of every column over each clip."""
    cfg = bank.recipe.mfcc
    return np.stack([pool_window(v[0], frame_dbfs(v[0][:, 0], cfg), "mean_std_delta")
                     for v in bank.variants])


#: The statistics rows each screen line takes: mean and spread, then the change row too.
ROW_SETS = (((0, 1), "mean, spread"), ((0, 1, 2), "mean, spread, change"))


def frame_statistics(bank: FeatureBank, clips: np.ndarray | None = None,
                     stats: RunningStats | None = None,
                     weights: list[float] | None = None) -> np.ndarray:
    """(clips, 3, columns): :func:`statistics` of each clip (of ``clips``; None: all) after its
    frames are standardised with its corpus's statistics (``weights``: each clip's weight in
    them; or with ``stats``: a device not yet adapted) and clipped, as the device's window
    input does."""
    room = (bank.standardize_by("corpus", weights=weights) if stats is None
            else bank.standardize_with(stats))
    cfg = dataclasses.replace(bank.recipe.mfcc, pooling="mean_std_delta")
    out = []
    for clip in range(len(bank.utts)) if clips is None else clips:
        norm = room.standardization(int(clip), 0)
        assert norm is not None
        mean, scale = norm
        out.append(window_input(bank.variants[clip][0], cfg,
                                lambda x, m=mean, s=scale: (x - m) * s))
    return np.stack(out)


def statistics_columns(stats: np.ndarray, cfg: MfccConfig, ceps: int,
                       rows: tuple[int, ...] = (0, 1, 2)) -> np.ndarray:
    """(clips, features): ``stats``'s ``rows`` of the first ``ceps`` cepstra and of every
    prosody column, flattened per clip."""
    keep = [*range(min(ceps, cfg.n_ceps)), *range(cfg.n_ceps, cfg.n_columns)]
    return stats[:, rows][:, :, keep].reshape(len(stats), -1)


def prosody_column(cfg: MfccConfig, name: str) -> int:
    """Index of the prosody column ``name`` (:data:`PROSODY_COLUMNS`) in a feature frame."""
    return cfg.n_ceps + PROSODY_COLUMNS.index(name)


def clip_speech(frames: np.ndarray, cfg: MfccConfig) -> np.ndarray:
    """Which of a clip's ``frames`` the device's gate counts as speech (within its range of the
    clip's loud level, read off the level column c0)."""
    return speech_mask(frame_dbfs(frames[:, 0], cfg))


def voiced_speech(frames: np.ndarray, cfg: MfccConfig) -> np.ndarray:
    """Which of a clip's ``frames`` are speech (:func:`clip_speech`) and voiced: the frames
    eGeMAPS takes F0, jitter and shimmer over."""
    return clip_speech(frames, cfg) & (frames[:, prosody_column(cfg, "voiced")] > 0.5)


def voiced_statistics(bank: FeatureBank, stats: np.ndarray) -> np.ndarray:
    """``stats`` with the columns that are 0 outside voiced frames (F0, jitter, shimmer) taken
    over the voiced speech frames only, as eGeMAPS takes them (over all speech frames their
    mean is mostly how much of the clip is voiced, and their spread the jump to 0); a clip
    without two adjacent voiced speech frames gets its corpus's mean."""
    cfg = bank.recipe.mfcc
    cols = [prosody_column(cfg, c) for c in ("f0_st", "jitter", "shimmer_db")]
    out = stats.copy()
    missing = np.zeros(len(stats), dtype=bool)
    for i, v in enumerate(bank.variants):
        frames = v[0]
        keep = voiced_speech(frames, cfg)
        both = keep[1:] & keep[:-1]
        if both.sum() < 1:
            missing[i] = True
            out[i, :, cols] = np.nan
            continue
        x = frames[keep][:, cols]
        out[i, 0, cols], out[i, 1, cols] = x.mean(0), x.std(0)
        out[i, 2, cols] = np.abs(np.diff(frames[:, cols], axis=0))[both].mean(0)
    out[:, :, cols] = corpus_filled(out[:, :, cols], bank)
    logger.info("voiced statistics: %d clips without two adjacent voiced speech frames", missing.sum())
    return out


def corpus_filled(x: np.ndarray, bank: FeatureBank) -> np.ndarray:
    """``x`` (a row per clip of ``bank``) with each NaN, a figure a clip could not give,
    replaced by its corpus's mean over the clips that gave it."""
    corpus = np.array([u.corpus for u in bank.utts])
    out = x.copy()
    for c in np.unique(corpus):
        m = corpus == c
        out[m] = np.where(np.isnan(x[m]), np.nanmean(x[m], axis=0), x[m])
    return out


def speech_span(frames: np.ndarray, cfg: MfccConfig) -> np.ndarray | None:
    """``frames`` from the first speech frame to the last (the corpora's leading and trailing
    silences differ by recording, not by emotion); None with fewer than two speech frames."""
    speech = np.flatnonzero(clip_speech(frames, cfg))
    return frames[speech[0]:speech[-1] + 1] if speech.size >= 2 else None


#: The columns :func:`temporal_statistics` adds, eGeMAPS's temporal parameters.
TEMPORAL = ("loudness peaks / s", "voiced segments / s", "voiced length mean",
            "voiced length spread", "unvoiced length mean", "unvoiced length spread")


def _runs(mask: np.ndarray) -> np.ndarray:
    """Lengths, in frames, of the runs of True in ``mask``."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def temporal_statistics(bank: FeatureBank) -> np.ndarray:
    """(clips, 6): eGeMAPS's temporal parameters (:data:`TEMPORAL`) over each clip's
    :func:`speech_span`: loudness peaks per second, voiced segments per second, and
    the mean and spread of the voiced segments' and of the unvoiced segments' lengths in
    seconds.  Unvoiced segments are the gaps between voiced ones, pauses included."""
    cfg = bank.recipe.mfcc
    loud, voiced_col = prosody_column(cfg, "loudness_db"), prosody_column(cfg, "voiced")
    hop = cfg.hop_length_s
    out = np.zeros((len(bank.variants), len(TEMPORAL)))
    for i, v in enumerate(bank.variants):
        span = speech_span(v[0], cfg)
        if span is None:
            continue
        seconds = len(span) * hop
        # eGeMAPS smooths its contours over 3 frames before it counts peaks, so that one
        # frame's flicker is not a syllable.
        level = np.convolve(span[:, loud], np.ones(3) / 3, mode="same")
        peaks = np.sum((level[1:-1] > level[:-2]) & (level[1:-1] >= level[2:]))
        voiced = span[:, voiced_col] > 0.5
        on, off = _runs(voiced) * hop, _runs(~voiced) * hop
        out[i] = (peaks / seconds, on.size / seconds,
                  on.mean() if on.size else 0.0, on.std() if on.size else 0.0,
                  off.mean() if off.size else 0.0, off.std() if off.size else 0.0)
    return out


#: The modulation bands :func:`modulation_statistics` measures, in Hz (the syllable rate, about
#: 4 Hz, sits in the third), and the columns it measures them on: the level (c0), the spectral
#: envelope's first cepstra, and the loudness.
MODULATION_BANDS = ((0.5, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 16.0), (16.0, 50.0))
MODULATION_CEPS = 13
#: Frames per spectrum: 1.28 s at 10 ms, so the lowest band holds at least one bin.
MODULATION_FRAMES = 128


def modulation_statistics(bank: FeatureBank) -> np.ndarray:
    """(clips, columns x bands): how each column's trajectory over the clip's
    :func:`speech_span` shares its power among :data:`MODULATION_BANDS`, as the log of each
    band's share (Wu, Falk and Chan 2011 found modulation spectra to carry arousal).  The power
    is Welch's: Hann-windowed spans of :data:`MODULATION_FRAMES` frames, half overlapped, a
    shorter span centred and zero-padded.  Shares, not powers, so that the spread row is not
    counted twice."""
    cfg = bank.recipe.mfcc
    cols = [*range(MODULATION_CEPS), prosody_column(cfg, "loudness_db")]
    n = MODULATION_FRAMES
    freqs = np.fft.rfftfreq(n, cfg.hop_length_s)
    masks = np.stack([(freqs >= lo) & (freqs < hi) for lo, hi in MODULATION_BANDS])
    window = np.hanning(n)[:, None]
    out = np.zeros((len(bank.variants), len(cols) * len(MODULATION_BANDS)))
    for i, v in enumerate(bank.variants):
        span = speech_span(v[0], cfg)
        if span is None:
            continue
        span = span[:, cols]
        if len(span) < n:  # centred before it is padded, or the padding is a step
            segments = [np.r_[span - span.mean(0), np.zeros((n - len(span), len(cols)))]]
        else:
            segments = [span[s:s + n] - span[s:s + n].mean(0)
                        for s in range(0, len(span) - n + 1, n // 2)]
        power = sum(np.abs(np.fft.rfft(x * window, axis=0)) ** 2 for x in segments)
        bands = masks.astype(float) @ power  # (bands, columns)
        share = bands / np.maximum(bands.sum(0, keepdims=True), 1e-12)
        out[i] = np.log(share + 1e-6).T.ravel()
    return out


#: What :func:`contour_statistics` takes of each contour, as eGeMAPS's functionals do.
CONTOUR = ("p20", "p50", "p80", "p20-p80 range", "rising slope", "falling slope")


def contour_statistics(bank: FeatureBank) -> np.ndarray:
    """(clips, 12): eGeMAPS's functionals (:data:`CONTOUR`) of F0 (semitones, voiced speech
    frames only) and of loudness (speech frames): the 20th, 50th and 80th percentiles, the range
    between the outer two, and the mean slope, per second, of the rising and of the falling
    steps between adjacent frames.  Percentiles hold where a clip's few outlying frames (a
    pitch jump, a laugh) move its mean and spread.  A clip without two such frames gets its
    corpus's mean for that contour."""
    cfg = bank.recipe.mfcc
    f0, loud = prosody_column(cfg, "f0_st"), prosody_column(cfg, "loudness_db")
    out = np.full((len(bank.variants), 2 * len(CONTOUR)), np.nan)
    for i, v in enumerate(bank.variants):
        frames = v[0]
        for j, (col, keep) in enumerate(((f0, voiced_speech(frames, cfg)),
                                         (loud, clip_speech(frames, cfg)))):
            both = keep[1:] & keep[:-1]
            if both.sum() < 1:
                continue
            x = frames[keep, col]
            step = np.diff(frames[:, col])[both] / cfg.hop_length_s
            p20, p50, p80 = np.percentile(x, (20, 50, 80))
            up, down = step[step > 0], step[step < 0]
            out[i, j * len(CONTOUR):(j + 1) * len(CONTOUR)] = (
                p20, p50, p80, p80 - p20, up.mean() if up.size else 0.0,
                down.mean() if down.size else 0.0)
    return np.nan_to_num(corpus_filled(out, bank))


def print_temporal_means(temporal: np.ndarray, label: np.ndarray) -> None:
    """The mean of each temporal parameter over the clips of each label, all corpora together:
    whether they differ by emotion at all, before the screen asks whether that transfers."""
    print(f"{'temporal parameters, mean':26s}" + "".join(f"{t:>23s}" for t in TEMPORAL))
    for name in np.unique(label):
        print(f"{name:26s}" + "".join(f"{v:23.3f}" for v in temporal[label == name].mean(0)))


def neutral_weights(label: np.ndarray, groups: np.ndarray, share: float) -> np.ndarray:
    """Per-clip weights under which neutral clips are ``share`` of each group's total (a group
    without neutral clips, or with nothing else, keeps equal weights)."""
    w = np.ones(len(label))
    neutral = label == "neutral"
    for g in np.unique(groups):
        m = groups == g
        n, o = (m & neutral).sum(), (m & ~neutral).sum()
        if n and o:
            w[m & neutral] = share * m.sum() / n
            w[m & ~neutral] = (1 - share) * m.sum() / o
    return w


def standardized(x: np.ndarray, groups: np.ndarray, scaling: str = "z",
                 weights: np.ndarray | None = None) -> np.ndarray:
    """``x`` standardised within each group (see ``--scaling``), clipped at 8; ``weights``: each
    clip's weight in its group's mean and spread (z only)."""
    from scipy.stats import norm, rankdata

    out = np.empty_like(x)
    for g in np.unique(groups):
        m = groups == g
        if scaling == "rank":
            out[m] = norm.ppf((rankdata(x[m], axis=0) - 0.5) / m.sum())
            continue
        w = None if weights is None else weights[m]
        mean = np.average(x[m], axis=0, weights=w)
        sd = np.sqrt(np.average((x[m] - mean) ** 2, axis=0, weights=w))
        z = (x[m] - mean) / (sd + 1e-6)
        if scaling == "whiten" and m.sum() > 1:
            # Shrunk toward identity: a speaker has fewer clips than there are columns.
            c = 0.9 * np.corrcoef(z, rowvar=False) + 0.1 * np.eye(z.shape[1])
            w, v = np.linalg.eigh(np.nan_to_num(c))
            z = z @ v @ np.diag(np.maximum(w, 1e-3) ** -0.5) @ v.T
        out[m] = z
    return np.clip(out, -8, 8)


def voice_clusters(stats: np.ndarray, corpus: np.ndarray, speaker: np.ndarray, k: int,
                   n_ceps: int) -> np.ndarray:
    """Each clip's voice cluster within its corpus (k-means on its mean cepstra 1-12 and log F0,
    standardised per corpus; ``k`` = 0: the corpus's number of speakers)."""
    from sklearn.cluster import KMeans

    out = np.empty(len(corpus), dtype=object)
    for c in dict.fromkeys(corpus):
        m = corpus == c
        means = stats[m, 0]
        sig = np.c_[means[:, 1:13], np.log(np.maximum(means[:, n_ceps], 1.0))]
        sig = (sig - sig.mean(0)) / (sig.std(0) + 1e-6)
        n = k or len(set(speaker[m]))
        out[m] = [f"{c}/{v}" for v in KMeans(n, n_init=10, random_state=0).fit_predict(sig)]
    return out.astype(str)


def loco(x: np.ndarray, corpus: np.ndarray, speaker: np.ndarray, label: np.ndarray,
         test_groups: dict[str, np.ndarray] | None = None,
         scaling: str = "z", groups_trained: str = "room", train_label: np.ndarray | None = None,
         without: str | None = None, coverage: float = 0.0) -> dict[str, dict[str, float]]:
    """UAR of each unseen corpus in each view; ``test_groups`` adds views whose unseen clips
    are standardised per the given group of each clip (training as in the view
    ``groups_trained``: per corpus, or per speaker).

    ``train_label``: what each clip is trained as (default ``label``; "" leaves it out of
    training), ``without``: a corpus neither trained on nor scored, ``coverage``: the class
    weights' ``train.coverage_power``.  A clip whose ``label`` is "" is not scored.  Every clip
    of a group is in the group's statistics, trained on or scored or not, as a room hears all
    its speech."""
    from sklearn.linear_model import LogisticRegression

    from convert.metrics import classification_metrics

    extra = test_groups or {}
    train_label = label if train_label is None else train_label
    out: dict[str, dict[str, float]] = {v: {} for v in (*VIEWS, *extra)}
    for held in dict.fromkeys(corpus):
        if held == without:
            continue
        rest, te = (corpus != held) & (corpus != without), corpus == held
        fit, score = train_label[rest] != "", label[te] != ""
        mu, sd = x[rest].mean(0), x[rest].std(0) + 1e-6
        # One regression per way of standardising the training corpora: the extra views share
        # the room view's.
        fitted: dict[str, Any] = {}
        for view in out:
            unit = view if view in VIEWS else groups_trained
            if view == "fresh":
                xte = np.clip((x[te] - mu) / sd, -8, 8)
            else:
                g = speaker if view == "speaker" else corpus
                xte = standardized(x[te], extra[view][te] if view in extra else g[te], scaling)
            if unit not in fitted:
                xtr = (np.clip((x[rest] - mu) / sd, -8, 8) if unit == "fresh"
                       else standardized(x[rest], (speaker if unit == "speaker" else corpus)[rest],
                                         scaling))
                # Every class counts equally, and every corpus within a class, as in training.
                ytr = train_label[rest][fit]
                names, y = np.unique(ytr, return_inverse=True)
                fitted[unit] = LogisticRegression(C=0.1, max_iter=2000).fit(
                    xtr[fit], ytr,
                    sample_weight=sample_weights(y, corpus[rest][fit], len(names), 1.0, coverage))
            clf = fitted[unit]
            labels = list(clf.classes_)  # labels the unseen corpus lacks leave the mean
            out[view][str(held)] = classification_metrics(
                [labels.index(y) for y in label[te][score]],
                [labels.index(p) for p in clf.predict(xte[score])], labels)["uar"]
    return out


def neutral_room(x: np.ndarray, corpus: np.ndarray, label: np.ndarray,
                 share: float) -> dict[str, dict[str, float]]:
    """UAR of each unseen corpus standardised as a room whose speech is ``share`` neutral, by a
    regression trained on rooms as recorded and by one trained on rooms weighted the same way;
    and fresh, by the latter, with the training corpora's weighted statistics."""
    from sklearn.linear_model import LogisticRegression

    from convert.metrics import classification_metrics

    weights = neutral_weights(label, corpus, share)
    views = ("as recorded -> S", "S -> S", "fresh S")
    out: dict[str, dict[str, float]] = {v: {} for v in views}
    for held in dict.fromkeys(corpus):
        tr, te = corpus != held, corpus == held
        names, y = np.unique(label[tr], return_inverse=True)
        sw = sample_weights(y, corpus[tr], len(names))
        xte = standardized(x[te], corpus[te], weights=weights[te])
        mean = np.average(x[tr], axis=0, weights=weights[tr])
        sd = np.sqrt(np.average((x[tr] - mean) ** 2, axis=0, weights=weights[tr])) + 1e-6
        as_recorded, weighted = (LogisticRegression(C=0.1, max_iter=2000).fit(
            standardized(x[tr], corpus[tr], weights=w), label[tr], sample_weight=sw)
            for w in (None, weights[tr]))
        for view, clf, test_x in (
                ("as recorded -> S", as_recorded, xte),
                ("S -> S", weighted, xte),
                ("fresh S", weighted, np.clip((x[te] - mean) / sd, -8, 8))):
            labels = list(clf.classes_)
            out[view][str(held)] = classification_metrics(
                [labels.index(v) for v in label[te]],
                [labels.index(p) for p in clf.predict(test_x)], labels)["uar"]
    return out


def screen_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every speech screen takes: the recipe, the corpora and the feature cache."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--recipe", type=Path, default=Path("recipes/speech.toml"))
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--cache", type=Path, help="feature cache (the base clips only)")
    return p


def screen_clips(args: argparse.Namespace, own_labels: bool = False,
                 ) -> tuple[SpeechRecipe, list[Utterance]] | None:
    """The recipe and its corpora's clips (on the fusion label set, or with ``own_labels``
    every clip with its corpus's label), after checking scikit-learn is there; ``None`` once
    one error line is printed."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print("error: the screen needs scikit-learn: pip install -c constraints.txt scikit-learn",
              file=sys.stderr)
        return None
    try:
        recipe = SpeechRecipe.load(args.recipe)
        utts = index_corpora(recipe.data.corpora, args.data)
        return recipe, utts if own_labels else to_fusion_labels(utts)
    except (ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def screen_bank(args: argparse.Namespace, own_labels: bool = False) -> FeatureBank | None:
    """The corpora's clips as recorded (no copies), their frames from the feature cache;
    ``None`` once one error line is printed."""
    clips = screen_clips(args, own_labels)
    if clips is None:
        return None
    recipe, utts = clips
    return FeatureBank(utts, recipe, augment=False, cache_dir=args.cache)


def clip_arrays(utts: list[Utterance]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Each clip's corpus, speaker (``corpus/speaker``: ids repeat across corpora) and label,
    and the corpora's names in order."""
    corpus = np.array([u.corpus for u in utts])
    speaker = np.array([f"{u.corpus}/{u.speaker}" for u in utts])
    label = np.array([u.label for u in utts])
    return corpus, speaker, label, list(dict.fromkeys(corpus))


def train_labels(own: np.ndarray, rule: dict[str, str]) -> np.ndarray:
    """What each clip is trained as under ``rule`` (one of :data:`LABEL_RULES`): its fusion
    label, or the rule's for a label outside the set ("": not trained on)."""
    return np.array([rule[v] if v in rule else fusion_label(v) or "" for v in own])


def join_members(bank: FeatureBank, runs: list[Path], weights: list[float],
                 ceps_list: list[int]) -> int:
    """``--join``: each line's regression joined to each run's kept clip probabilities."""
    from sklearn.linear_model import LogisticRegression

    from convert.metrics import classification_metrics

    corpus, _, label, names = clip_arrays(bank.utts)
    kept = {}
    for run in runs:
        for n in names:
            try:
                with np.load(run / f"loco_{n}_clips.npz") as z:
                    kept[run, n] = (z["y"], [str(v) for v in z["labels"]], z["adapted"],
                                    z["fresh"])
            except OSError as exc:
                print(f"error: {run}: no kept clips of {n} ({exc}); run its LOCO first",
                      file=sys.stderr)
                return 2
            y, labels = kept[run, n][:2]
            if [labels[i] for i in y] != list(label[corpus == n]):
                print(f"error: {run / f'loco_{n}_clips.npz'}: not the screen's clips",
                      file=sys.stderr)
                return 2
    room = frame_statistics(bank)
    fresh = np.empty_like(room)
    for held in names:  # each unseen corpus standardised with the other corpora's statistics
        te = np.flatnonzero(corpus == held)
        prior = bank.subset(np.flatnonzero(corpus != held)).pooled_stats()
        fresh[te] = frame_statistics(bank, te, prior)
    cfg = bank.recipe.mfcc
    print(f"{'regression joined to':75s} {'weight':>6s} {'adapted':>8s} {'fresh':>8s}   per "
          f"corpus, adapted / fresh ({', '.join(names)})")
    for ceps, (rows, what) in itertools.product(ceps_list, ROW_SETS):
        x, xf = (statistics_columns(s, cfg, ceps, rows) for s in (room, fresh))
        probs = {}
        for held in names:
            tr, te = corpus != held, corpus == held
            # Scaled with the training corpora's statistics rows: the graph's batch norm.
            mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
            names_y, y = np.unique(label[tr], return_inverse=True)
            clf = LogisticRegression(C=0.1, max_iter=2000).fit(
                (x[tr] - mu) / sd, label[tr],
                sample_weight=sample_weights(y, corpus[tr], len(names_y), 1.0, 0.0))
            probs[held] = (list(clf.classes_),
                           [clf.predict_proba(np.clip((v[te] - mu) / sd, -8, 8)) for v in (x, xf)])
        for run, w in itertools.product(runs, weights):
            uar = []
            for held in names:
                y, labels, *own = kept[run, held]
                classes, theirs = probs[held]
                order = [classes.index(c) for c in labels]
                uar.append([classification_metrics(y, np.argmax(
                    (1 - w) * np.log(np.maximum(p, 1e-9))
                    + w * np.log(np.maximum(q[:, order], 1e-9)), axis=1), labels)["uar"]
                    for p, q in zip(own, theirs)])
            per = ", ".join(f"{a:.3f} / {f:.3f}" for a, f in uar)
            a, f = np.mean(uar, axis=0)
            print(f"{f'{ceps} cepstra + prosody, {what}: {run}':75s} {w:6.2f} {a:8.3f} "
                  f"{f:8.3f}   {per}", flush=True)
    return 0


def speech_levels(bank: FeatureBank) -> tuple[np.ndarray, np.ndarray]:
    """Each clip's speech frames as recorded (those its room's statistics count) and their mean
    level (c0; infinite for a silent clip, which has none)."""
    cfg = bank.recipe.mfcc
    count = np.array([bank.speech_frames(c) for c in range(len(bank.utts))])
    level = np.array([speech_frames(v[0], frame_dbfs(v[0][:, 0], cfg))[:, 0].mean() if n
                      else np.inf for v, n in zip(bank.variants, count)])
    return count, level


def calm_weights(count: np.ndarray, level: np.ndarray, corpus: np.ndarray, base: list[float],
                 share: float) -> list[float]:
    """``base`` (each clip's weight in its room's statistics) for the clips whose mean speech
    level (``count`` and ``level``: :func:`speech_levels`) is in the room's quietest ``share``
    of its weighted speech frames (in order of level, every clip that starts within it, so a
    room always keeps its quietest clip), 0 for the others: a room's statistics over its
    calmest speech, chosen without labels."""
    w = np.asarray(base, dtype=np.float64)
    out = np.zeros(len(corpus))
    for room in dict.fromkeys(corpus):
        order = np.flatnonzero(corpus == room)
        order = order[np.argsort(level[order], kind="stable")]
        frames = w[order] * count[order]
        before = np.cumsum(frames) - frames
        keep = order[before < share * frames.sum()]
        out[keep] = w[keep]
    return list(out)


def calm_rooms(bank: FeatureBank, shares: list[float], ceps_list: list[int]) -> int:
    """``--calm-share``: the device's statistics (frames standardised per room, then pooled)
    with each room's statistics over all its speech and over its calmest ``shares``, in a room
    as recorded (balanced) and in one whose speech is 70% neutral; one regression per line,
    trained on the training corpora as recorded standardised the same way."""
    from sklearn.linear_model import LogisticRegression

    from convert.metrics import classification_metrics

    corpus, _, label, names = clip_arrays(bank.utts)
    rooms = {"balanced": bank.neutral_weights(0.0, list(corpus)),
             "70% neutral": bank.neutral_weights(0.7, list(corpus))}
    count, level = speech_levels(bank)  # once: every share and room orders by them
    print(f"{'room statistics':60s} " + "  ".join(
        f"{v + ' mean':>9s} ({' '.join(n[:5] for n in names)})" for v in rooms))
    for share in (1.0, *shares):
        stats = {room: frame_statistics(bank, weights=w if share == 1.0
                                        else calm_weights(count, level, corpus, w, share))
                 for room, w in rooms.items()}
        for ceps in ceps_list:
            x = {room: statistics_columns(s, bank.recipe.mfcc, ceps) for room, s in stats.items()}
            res: dict[str, dict[str, float]] = {room: {} for room in rooms}
            for held in names:
                tr, te = corpus != held, corpus == held
                names_y, y = np.unique(label[tr], return_inverse=True)
                clf = LogisticRegression(C=0.1, max_iter=2000).fit(
                    x["balanced"][tr], label[tr],
                    sample_weight=sample_weights(y, corpus[tr], len(names_y), 1.0, 0.0))
                classes = list(clf.classes_)
                for room in rooms:
                    res[room][str(held)] = classification_metrics(
                        [classes.index(v) for v in label[te]],
                        [classes.index(v) for v in clf.predict(x[room][te])], classes)["uar"]
            what = "all its speech" if share == 1.0 else f"its calmest {share:g}"
            print_views(f"{ceps:2d} cepstra + prosody, mean, spread, change: {what}", res, names)
    return 0


def print_views(title: str, res: dict[str, dict[str, float]], names: list[str],
                base: dict[str, dict[str, float]] | None = None) -> None:
    """One line of the screen: each view's mean and its corpora ("-" for one not scored); with
    ``base``, each view's mean change against it over the corpora this line scored."""
    line = f"{title:60s} " + "  ".join(
        f"{np.mean(list(res[v].values())):9.3f} ("
        + " ".join(f"{res[v][n]:.3f}" if n in res[v] else "  -  " for n in names) + ")"
        for v in res)
    if base is not None:
        line += "  change " + " ".join(
            f"{np.mean([res[v][n] - base[v][n] for n in res[v]]):+.3f}" for v in res)
    print(line, flush=True)


def training_data(args: argparse.Namespace) -> int:
    """``--label-rules``, ``--leave-out``: the training data screened (module docstring)."""
    bank = screen_bank(args, own_labels=True)
    if bank is None:
        return 2
    recipe, utts = bank.recipe, bank.utts
    stats = statistics(bank)
    corpus, speaker, own, names = clip_arrays(utts)
    shipped = train_labels(own, next(iter(LABEL_RULES.values())))  # scored by it, always
    lines = [(rule, train_labels(own, r), None)
             for rule, r in list(LABEL_RULES.items())[: None if args.label_rules else 1]]
    if args.leave_out:
        lines += [(f"trained without {n}", shipped, n) for n in names]
    print(f"{'training data':60s} " + "  ".join(
        f"{v + ' mean':>9s} ({' '.join(n[:5] for n in names)})" for v in VIEWS))
    for ceps in args.ceps:
        for rows, what in ROW_SETS:
            x = statistics_columns(stats, recipe.mfcc, ceps, rows)
            base: dict[str, dict[str, float]] | None = None
            for title, train, without in lines:
                res = loco(x, corpus, speaker, shipped, train_label=train, without=without)
                print_views(f"{ceps:2d} cepstra, {what}: {title}", res, names, base)
                base = base or res  # the first line: the shipped rule, every corpus
    return 0


def main(argv: list[str] | None = None) -> int:
    p = screen_parser(__doc__.split("\n\n")[0])
    p.add_argument("--ceps", type=int, nargs="+", default=[40, 20, 13],
                   help="cepstra kept (the first N), each screened with and without the change")
    p.add_argument("--scaling", choices=SCALINGS, default="z",
                   help="how a room or speaker is standardised (default z: mean and spread)")
    p.add_argument("--voices", type=int, nargs="*", default=[], metavar="K",
                   help="also score the unseen corpus standardised per K voice clusters (0: its "
                   "number of speakers)")
    p.add_argument("--neutral-share", type=float, nargs="*", default=[], metavar="S",
                   help="also score rooms where neutral speech is S of what was heard (0-1)")
    p.add_argument("--voiced", action="store_true",
                   help="also screen F0, jitter and shimmer taken over voiced frames only")
    p.add_argument("--temporal", action="store_true",
                   help="also screen each line with eGeMAPS's six temporal parameters added")
    p.add_argument("--contours", action="store_true",
                   help="also screen each line with percentiles and slopes of F0 and loudness")
    p.add_argument("--modulation", action="store_true",
                   help="also screen each line with each column's modulation band shares added")
    p.add_argument("--frames", action="store_true",
                   help="also screen each line with the frames standardised per room before "
                   "pooling (the device), and with the statistics standardised after that too")
    p.add_argument("--coverage-power", type=float, default=0.0, metavar="P",
                   help="weigh each class by the share of training corpora that act it, to the "
                   "power P (train.coverage_power; the screen's weights are undamped)")
    p.add_argument("--join", type=Path, nargs="+", default=[], metavar="RUN",
                   help="join each line's regression to the clip probabilities these LOCO "
                   "report folders kept, instead of the views")
    p.add_argument("--join-weight", type=float, nargs="+", default=[0.0, 0.15], metavar="W",
                   help="the regression's weight in the join (default 0 and 0.15)")
    p.add_argument("--calm-share", type=float, nargs="+", default=[], metavar="Q",
                   help="screen each room's statistics over its calmest Q of speech (by level) "
                   "instead, in a balanced and a 70%%-neutral room")
    p.add_argument("--label-rules", action="store_true",
                   help="screen the rules for RAVDESS calm and EmoDB boredom instead")
    p.add_argument("--leave-out", action="store_true",
                   help="screen training without each corpus in turn instead")
    args = p.parse_args(argv)
    if args.label_rules or args.leave_out:
        return training_data(args)
    if args.calm_share:
        if not all(0 < q < 1 for q in args.calm_share):
            p.error(f"--calm-share takes shares between 0 and 1, got {args.calm_share}")
        bank = screen_bank(args)
        return 2 if bank is None else calm_rooms(bank, args.calm_share, args.ceps)
    if args.join:
        if not all(0.0 <= w <= 1.0 for w in args.join_weight):
            p.error(f"--join-weight {args.join_weight}: each weight must be between 0 and 1")
        bank = screen_bank(args)
        return 2 if bank is None else join_members(bank, args.join, args.join_weight, args.ceps)
    if args.frames and (args.voiced or args.temporal or args.modulation or args.contours):
        p.error("--frames screens the plain lines: leave out --voiced, --temporal, "
                "--modulation and --contours")
    if any(not 0 < s < 1 for s in args.neutral_share):
        p.error(f"--neutral-share takes shares between 0 and 1, got {args.neutral_share}")
    bank = screen_bank(args)
    if bank is None:
        return 2
    recipe, utts = bank.recipe, bank.utts
    stats = statistics(bank)
    corpus, speaker, label, names = clip_arrays(utts)
    voices = {f"voices {k or 'N'}": voice_clusters(stats, corpus, speaker, k, recipe.mfcc.n_ceps)
              for k in args.voices}
    neutral = [v.replace("S", f"{share:g}") for share in args.neutral_share
               for v in ("as recorded -> S", "S -> S", "fresh S")]
    extras: list[tuple[str, np.ndarray | None]] = [("", None)]
    if args.temporal:
        rhythm = temporal_statistics(bank)
        print_temporal_means(rhythm, label)  # its own table, before the screen's
        print()
        extras.append((" + temporal", rhythm))
    if args.modulation:
        extras.append((" + modulation", modulation_statistics(bank)))
    if args.contours:
        extras.append((" + contours", contour_statistics(bank)))
    framed = ("frames", "both") if args.frames else ()
    frame_stats = frame_statistics(bank) if args.frames else None
    print(f"{'statistics':60s} " + "  ".join(f"{v + ' mean':>9s} ({' '.join(n[:5] for n in names)})"
                                            for v in (*VIEWS, *voices, *neutral, *framed)))
    sets = [("", stats)] + ([("voiced ", voiced_statistics(bank, stats))] if args.voiced else [])
    for (how, st), ceps in ((s, c) for c in args.ceps for s in sets):
        for (rows, what), (plus, extra) in itertools.product(ROW_SETS, extras):
            x = statistics_columns(st, recipe.mfcc, ceps, rows)
            if extra is not None:
                x = np.c_[x, extra]
            what = how + what + plus
            res = loco(x, corpus, speaker, label, voices, args.scaling,
                       coverage=args.coverage_power)
            for share in args.neutral_share:
                res.update({v.replace("S", f"{share:g}"): r for v, r in
                            neutral_room(x, corpus, label, share).items()})
            if frame_stats is not None:
                # The fresh view's scaling is the training corpora's alone: on frames already
                # standardised per room, that is the device's way.
                framed_res = loco(statistics_columns(frame_stats, recipe.mfcc, ceps, rows),
                                  corpus, speaker, label, coverage=args.coverage_power)
                res.update(frames=framed_res["fresh"], both=framed_res["room"])
            print_views(f"{ceps:2d} cepstra + prosody, {what}", res, names)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
