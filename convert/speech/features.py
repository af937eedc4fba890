"""Training features: MFCC (and prosody) frames of every clip and its augmented variants, computed
once with the device's own :class:`~edge.features.Mfcc` and shared by every fold."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge.features import Mfcc, frame_dbfs, window_input
from edge.features.adapt import RunningStats, blended, inverse_std, speech_frames
from edge.models.speech import SpeechGate, window_starts
from edge.sources.audio_file import load_audio, resample

from .augment import babble_copy, room_copy, voice_copy
from .channels import CHANNELS
from .corpora import Utterance
from .recipe import SpeechRecipe

__all__ = ["FeatureBank", "speech_starts"]

logger = logging.getLogger(__name__)

NEUTRAL = "neutral"
"""The label whose share of a room's speech :meth:`FeatureBank.neutral_weights` sets."""


class FeatureBank:
    """Raw MFCC frames of every clip and its augmented variants, computed once with the device's
    :class:`~edge.features.Mfcc` and shared by all folds."""

    def __init__(self, utts: Sequence[Utterance], recipe: SpeechRecipe, *, augment: bool = True,
                 cache_dir: Path | None = None, channel: str | None = None) -> None:
        """``channel``: each clip as heard through that test channel
        (:data:`~convert.speech.channels.CHANNELS`), one variant, no copies."""
        self.utts = list(utts)
        self.recipe = recipe
        mfcc = Mfcc(recipe.mfcc)
        if channel is not None:
            augment = False
            groups: tuple[str, ...] = (f"{_CHANNEL}{channel}",)
        else:
            groups = ("base",) + tuple(g for g, (setting, _) in _COPY_GROUPS.items()
                                       if augment and getattr(recipe.augment, setting))
        talkers = _talkers(self.utts) if "babble" in groups else {}
        folders = ({g: cache_dir / _cache_key(recipe, augment, g) for g in groups}
                   if cache_dir is not None else {})
        self.variants: list[list[np.ndarray]] = []
        t0 = time.perf_counter()
        hits = 0
        for u in self.utts:
            frames: list[np.ndarray] = []
            entry = _cache_entry(u.path) if folders else None  # read once, for every group
            for group in groups:
                cached = folders[group] / entry if entry is not None else None
                if cached is not None and cached.is_file():
                    with np.load(cached) as z:
                        frames += [z[k] for k in sorted(z.files, key=lambda k: int(k[1:]))]
                    hits += 1
                    continue
                new = [mfcc(s).astype(np.float32)
                       for s in _signals(u.path, recipe, augment, group, talkers.get(u, ()))]
                frames += new
                if cached is not None:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    # Named per process: two runs sharing a cache may compute the same clip.
                    tmp = cached.with_suffix(f".{os.getpid()}.tmp.npz")
                    np.savez(tmp, **{f"v{i}": f for i, f in enumerate(new)})
                    tmp.replace(cached)
            self.variants.append(frames)
        # Shared with subsets (folds), keyed by the clip's index in this bank.
        self._ids = list(range(len(self.utts)))
        self._starts: dict[tuple[int, int, SpeechGate], np.ndarray] = {}
        # Speech statistics per (clip id, variant), computed on first use and shared like _starts.
        self._stats: dict[tuple[int, int], RunningStats] = {}
        # Per clip and variant: (mean, 1/std) the frames are standardised with; None = raw.
        self._norm: list[list[tuple[np.ndarray, np.ndarray]]] | None = None
        # The training data's pooled (mean, 1/std): the view of a device not yet adapted.
        self._fresh: tuple[np.ndarray, np.ndarray] | None = None
        # Per clip and variant: (mean, 1/std) the statistics rows of its windows are
        # standardised with after its frames (adapt.rows); None = as pooled.
        self._rows: list[list[tuple[np.ndarray, np.ndarray]]] | None = None
        logger.info("features for %d clips (%d variants each, %d groups from the cache) in %.1f s",
                    len(self.utts), len(self.variants[0]) if self.variants else 0, hits,
                    time.perf_counter() - t0)

    def speech_starts(self, clip: int, variant: int, gate: SpeechGate) -> np.ndarray:
        """Gated window starts of one clip variant, computed on first use (gating is the
        costly part of drawing training windows)."""
        key = (self._ids[clip], variant, gate)
        if key not in self._starts:
            frames = self.variants[clip][variant]
            if frames.shape[0] < self.recipe.features.window_frames:
                frames = np.pad(frames, ((0, self.recipe.features.window_frames - frames.shape[0]), (0, 0)),
                                mode="wrap")
            self._starts[key] = speech_starts(frames, self.recipe, gate)
        return self._starts[key]

    def subset(self, idx: Sequence[int]) -> FeatureBank:
        new = object.__new__(FeatureBank)
        new.utts = [self.utts[i] for i in idx]
        new.recipe = self.recipe
        new.variants = [self.variants[i] for i in idx]
        new._ids = [self._ids[i] for i in idx]
        new._starts = self._starts
        new._stats = self._stats
        new._norm = None if self._norm is None else [self._norm[i] for i in idx]
        new._fresh = self._fresh
        new._rows = None if self._rows is None else [self._rows[i] for i in idx]
        return new

    # -- deployment standardisation -------------------------------------------------------------

    def _speech_stats(self, clip: int, variant: int) -> RunningStats:
        key = (self._ids[clip], variant)
        if key not in self._stats:
            frames = self.variants[clip][variant]
            if self.silent(clip):  # as recorded: its copies follow the clip
                # The speech mask is relative to the clip's own loudness: a silent clip (2 s of
                # zeros) counted all its frames as speech, and its statistics blew the prior's
                # variance up elevenfold.
                if variant == 0:
                    logger.warning("%s: silent (no frame above the device's %g dBFS floor); left "
                                   "out of the adaptation statistics", self.utts[clip].path,
                                   SpeechGate().threshold_dbfs)
                self._stats[key] = RunningStats.empty(frames.shape[1])
            else:
                self._stats[key] = RunningStats.of(
                    speech_frames(frames, frame_dbfs(frames[:, 0], self.recipe.mfcc)))
        return self._stats[key]

    def silent(self, clip: int) -> bool:
        """Whether no frame of the clip as recorded rises above the device gate's absolute
        floor: nothing the device could ever hear as speech."""
        frames = self.variants[clip][0]
        level = frame_dbfs(frames[:, 0], self.recipe.mfcc)
        return not bool(np.any(level > SpeechGate().threshold_dbfs))

    def speech_frames(self, clip: int) -> float:
        """How many frames of the clip as recorded are speech: those its statistics count."""
        return self._speech_stats(clip, 0).count

    def pooled_stats(self, neutral_share: float = 0.0) -> RunningStats:
        """Statistics of the speech frames of every clip as recorded (the model's prior: what a
        device starts from before it has heard its room); ``neutral_share``: see
        :meth:`neutral_weights`."""
        weights = self.neutral_weights(neutral_share, ["all"] * len(self.utts))
        stats = RunningStats.empty(self.recipe.mfcc.n_columns)
        for clip in range(len(self.utts)):
            stats = stats.merged(_weighted(self._speech_stats(clip, 0), weights[clip]))
        return stats

    def neutral_weights(self, share: float, group: Sequence[str]) -> list[float]:
        """Each clip's weight in its group's statistics (``group``: each clip's), such that neutral
        speech is ``share`` of each group's speech frames: the room a device really hears is
        mostly neutral, while acted corpora are balanced across emotions.  0, or a group
        without neutral clips or with nothing else: every clip weighs 1 (as recorded)."""
        weights = [1.0] * len(self.utts)
        if not share:
            return weights
        frames: dict[tuple[str, bool], float] = {}
        for clip, u in enumerate(self.utts):
            g = (group[clip], u.label == NEUTRAL)
            frames[g] = frames.get(g, 0.0) + self._speech_stats(clip, 0).count
        for clip, u in enumerate(self.utts):
            neutral = frames.get((group[clip], True), 0.0)
            other = frames.get((group[clip], False), 0.0)
            if neutral and other:
                weights[clip] = ((share / neutral if u.label == NEUTRAL else (1 - share) / other)
                                 * (neutral + other))
        return weights

    def standardize_by(self, unit: str | Sequence[str], fresh: RunningStats | None = None,
                       neutral_share: float = 0.0,
                       weights: Sequence[float] | None = None,
                       prior: RunningStats | None = None,
                       prior_frames: float = 0.0) -> FeatureBank:
        """A view whose frames are standardised with their group's own statistics: each corpus
        (or speaker) stands for one deployment that has adapted to its voices.  Each augmented
        variant is standardised with its group's statistics of that variant (a noisy room
        adapts to noisy speech).  ``unit`` is "corpus" or "speaker", or each clip's group (e.g.
        the files of one ``classify`` call).  ``fresh`` (the training data's pooled statistics)
        is kept for :meth:`model_input`'s unadapted view.
        ``neutral_share``: each group's statistics weighted so that neutral speech is that
        share of them (:meth:`neutral_weights`; needs the labels: training, or a test that
        simulates a room).  ``weights``: each clip's weight in its group's statistics, given
        instead (0: the clip is standardised, but its speech is not in the statistics).
        ``prior``: each group's statistics are blended with it, worth ``prior_frames`` frames,
        as a device blends the speech it has heard with its training data's
        (:func:`edge.features.adapt.blended`)."""
        group = ([u.corpus if unit == "corpus" else u.speaker for u in self.utts]
                 if isinstance(unit, str) else list(unit))
        if len(group) != len(self.utts):
            raise ValueError(f"{len(group)} groups for {len(self.utts)} clips")
        if weights is None:
            weights = self.neutral_weights(neutral_share, group)
        elif len(weights) != len(self.utts):
            raise ValueError(f"{len(weights)} weights for {len(self.utts)} clips")
        n_var = len(self.variants[0]) if self.variants else 0
        groups: dict[tuple[str, int], RunningStats] = {}
        for clip in range(len(self.utts)):
            for v in range(n_var):
                g = (group[clip], v)
                groups[g] = groups.get(g, RunningStats.empty(self.recipe.mfcc.n_columns)).merged(
                    _weighted(self._speech_stats(clip, v), weights[clip]))
        affine = {g: _affine(stats) if prior is None
                  else _affine_of(*blended(prior, stats, prior_frames))
                  for g, stats in groups.items()}
        new = self.subset(range(len(self.utts)))
        new._norm = [[affine[(group[clip], v)] for v in range(n_var)]
                     for clip in range(len(self.utts))]
        new._fresh = None if fresh is None else _affine(fresh)
        if self.recipe.adapt.rows:
            by_group: dict[tuple[str, int], RunningStats] = {}
            for clip in range(len(self.utts)):
                for v in range(n_var):
                    g = (group[clip], v)
                    by_group[g] = by_group.get(g, RunningStats.empty(new._row_size)).merged(
                        _weighted(new._clip_rows(clip, v), weights[clip]))
            rows = {g: _affine(stats) for g, stats in by_group.items()}
            new._rows = [[rows[(group[clip], v)] for v in range(n_var)]
                         for clip in range(len(self.utts))]
        return new

    @property
    def _row_size(self) -> int:
        return self.recipe.mfcc.input_rows(0) * self.recipe.mfcc.n_columns

    def _clip_rows(self, clip: int, variant: int) -> RunningStats:
        """The statistics rows of a whole clip variant as this view standardises its frames,
        flattened: one sample of its room's row statistics (none for a silent clip)."""
        if self.silent(clip):
            return RunningStats.empty(self._row_size)
        k = self.recipe.mfcc.input_rows(0)
        rows = self._window(self.variants[clip][variant], self.standardization(clip, variant))[-k:]
        return RunningStats.of(rows.reshape(1, -1))

    def row_stats(self) -> RunningStats:
        """Statistics of the rows of every clip as recorded, as this view standardises its
        frames: what a device not yet adapted standardises the rows with (adapt.rows)."""
        stats = RunningStats.empty(self._row_size)
        for clip in range(len(self.utts)):
            stats = stats.merged(self._clip_rows(clip, 0))
        return stats

    def standardize_with(self, stats: RunningStats, rows: RunningStats | None = None
                         ) -> FeatureBank:
        """A view whose frames are all standardised with ``stats`` (a device that has not yet
        adapted: the training prior), and their windows' statistics rows with ``rows`` (adapt.rows:
        the training data's :meth:`row_stats`; None leaves the rows as pooled)."""
        new = self.subset(range(len(self.utts)))
        affine = _affine(stats)
        new._norm = [[affine] * len(vs) for vs in self.variants]
        new._rows = None
        if rows is not None:
            row_affine = _affine(rows)
            new._rows = [[row_affine] * len(vs) for vs in self.variants]
        return new

    def standardization(self, clip: int, variant: int, fresh: bool = False
                        ) -> tuple[np.ndarray, np.ndarray] | None:
        """(mean, 1/std) this view standardises a clip variant's frames with (``fresh``: as a
        device not yet adapted); None = raw."""
        if self._norm is None:
            return None
        return self._fresh if fresh and self._fresh is not None else self._norm[clip][variant]

    def _window(self, frames: np.ndarray, norm: tuple[np.ndarray, np.ndarray] | None
                ) -> np.ndarray:
        if norm is None:
            return window_input(frames, self.recipe.mfcc)
        mean, scale = norm
        return window_input(frames, self.recipe.mfcc, lambda x: (x - mean) * scale)

    def model_input(self, clip: int, variant: int, start: int, fresh: bool = False) -> np.ndarray:
        """The model's input for the window at ``start`` of a clip variant (padded clips wrap),
        exactly as the device computes it (:func:`edge.features.window_input`); ``fresh``: as a
        device that has not adapted yet computes it (see :meth:`standardize_by`)."""
        w = self.recipe.features.window_frames
        frames = self.variants[clip][variant]
        if frames.shape[0] < w:
            frames = np.pad(frames, ((0, w - frames.shape[0]), (0, 0)), mode="wrap")
        x = self._window(frames[start : start + w], self.standardization(clip, variant, fresh))
        if self._rows is not None:
            # The rows standardised once more with their room's statistics (adapt.rows).
            k = self.recipe.mfcc.input_rows(0)
            row_mean, row_scale = self._rows[clip][variant]
            rows = (x[-k:].reshape(-1) - row_mean) * row_scale
            if self.recipe.mfcc.clip:
                rows = np.clip(rows, -self.recipe.mfcc.clip, self.recipe.mfcc.clip)
            x[-k:] = rows.reshape(k, -1)
        return x


def _talkers(utts: Sequence[Utterance]) -> dict[Utterance, list[Path]]:
    """Each clip's babble talkers: the clips of the other speakers of its corpus (of its own,
    in a corpus with one speaker), so that no fold hears a held-out corpus in its babble."""
    by_corpus: dict[str, list[Utterance]] = {}
    for u in utts:
        by_corpus.setdefault(u.corpus, []).append(u)
    others: dict[tuple[str, str], list[Path]] = {}  # one list per speaker, shared by their clips
    out = {}
    for u in utts:
        mates = by_corpus[u.corpus]
        if (u.corpus, u.speaker) not in others:
            others[u.corpus, u.speaker] = [m.path for m in mates if m.speaker != u.speaker]
        out[u] = (others[u.corpus, u.speaker]
                  or [m.path for m in mates if m.path != u.path] or [u.path])
    return out


def _signals(path: Path, recipe: SpeechRecipe, augment: bool, group: str,
             talkers: Sequence[Path] = ()) -> list[np.ndarray]:
    """One group of a clip's variants.  "base": the clip as recorded, then its speed-perturbed
    copies, then a noisy copy of each; "room": its room and microphone copies, and "babble" its
    copies with other ``talkers`` behind it, each of the next speed variant in turn; "voice":
    copies of the clip as recorded with its pitch and tempo moved apart.  Noise, rooms, babble
    and voices are seeded by ``augment.seed`` and the file's name, so a clip's copies are the
    same whichever corpora it is trained with (and can be cached); the groups are cached apart,
    so adding copies reuses the base group."""
    sr = recipe.mfcc.sample_rate
    x = load_audio(path, sr)
    if group.startswith(_CHANNEL):
        return [CHANNELS[group.removeprefix(_CHANNEL)](x, sr)]
    if not augment:
        return [x]
    digest = hashlib.sha256(f"{recipe.augment.seed}:{path.name}".encode()).digest()
    seed = int.from_bytes(digest[:8], "little")
    if group == "voice":
        return [voice_copy(x, sr, seed + 201 + i) for i in range(recipe.augment.voice_copies)]
    # Playing faster by f = resampling to sr / f and reading at sr.
    speeds = [x] + [resample(x, int(round(sr * f)), sr) for f in recipe.augment.speed_factors]
    if group == "room":
        return [room_copy(speeds[i % len(speeds)], sr, seed + 1 + i)
                for i in range(recipe.augment.room_copies)]
    if group == "babble":
        return [babble_copy(speeds[i % len(speeds)], sr, seed + 101 + i, talkers)
                for i in range(recipe.augment.babble_copies)]
    if not recipe.augment.noise_snr_db:
        return speeds
    rng = np.random.default_rng(seed)
    low, high = recipe.augment.noise_snr_db
    return speeds + [_add_noise(s, rng, (low, high)) for s in speeds]


_COPY_GROUPS = {"room": ("room_copies", "rooms"), "babble": ("babble_copies", "babble"),
                "voice": ("voice_copies", "voices")}
"""Each group of copies cached apart from the base variants: its [augment] setting (how many
copies), and the name its count has in the group's cache key (kept, so caches stay valid)."""
_CHANNEL = "channel:"
"""Prefix of a test channel's group: the clip heard through it, cached apart."""


def _cache_key(recipe: SpeechRecipe, augment: bool, group: str) -> str:
    """What one group's cached frames depend on: features, its augmentation, seed and this
    file's code."""
    mfcc = recipe.mfcc.frame_settings()  # the window settings are applied later
    settings = dict(recipe.to_dict()["augment"]) if augment else None
    if settings is not None:
        copies = {g: settings.pop(setting) for g, (setting, _) in _COPY_GROUPS.items()}
        settings.pop("seed")  # keyed as "seed" below, as before it had its own setting
        if group in _COPY_GROUPS:
            settings[_COPY_GROUPS[group][1]] = copies[group]
    what = {"mfcc": mfcc, "augment": settings, "seed": recipe.augment.seed, "version": 1}
    if group.startswith(_CHANNEL):  # added later: the other groups' keys stay as they were
        what["channel"] = group.removeprefix(_CHANNEL)
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def _cache_entry(path: Path) -> str:
    """A clip's file name in every group's cache folder: its bytes and file name (its copies'
    seed), not its folder or mtime, so a corpus copied or mounted again keeps its cache
    (hashing all five corpora takes seconds)."""
    name = hashlib.sha256(path.name.encode() + b":" + hashlib.sha256(path.read_bytes()).digest())
    return f"{name.hexdigest()[:24]}.npz"


def _weighted(stats: RunningStats, weight: float) -> RunningStats:
    """``stats`` counted ``weight`` times (fractional counts merge as weights)."""
    return stats if weight == 1.0 else RunningStats(stats.count * weight, stats.mean,
                                                    stats.m2 * weight)


def _affine(stats: RunningStats) -> tuple[np.ndarray, np.ndarray]:
    return _affine_of(stats.mean, stats.var)


def _affine_of(mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return mean.astype(np.float32), inverse_std(var).astype(np.float32)


def _add_noise(x: np.ndarray, rng: np.random.Generator, snr_range: tuple[float, float]) -> np.ndarray:
    snr = rng.uniform(*snr_range)
    # Noise level relative to the active part of the signal, so leading silence does not inflate it.
    power = np.mean(x[np.abs(x) > 0.1 * np.abs(x).max()] ** 2) if x.size else 0.0
    noise = rng.standard_normal(x.size).astype(np.float32)
    if rng.random() < 0.5:  # brown-ish noise half the time: rooms and fans are not white
        noise = np.cumsum(noise)
        noise -= np.convolve(noise, np.ones(64) / 64, mode="same")
        noise /= noise.std() + 1e-9
    return (x + noise * np.sqrt(power / 10 ** (snr / 10))).astype(np.float32)


def speech_starts(frames: np.ndarray, recipe: SpeechRecipe, gate: SpeechGate) -> np.ndarray:
    """Window starts (every 5 frames) that the device's gate passes; all starts if none does."""
    w = recipe.features.window_frames
    starts = window_starts(frames.shape[0], w, 5)
    speechy = [s for s in starts if gate.is_speech(frames[s : s + w], recipe.mfcc)]
    return np.asarray(speechy or starts)
