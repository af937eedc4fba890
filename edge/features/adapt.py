"""Adapting to one deployment: feature statistics accumulated over the speech a device has heard.

An emotion model trained in studios meets one room, one microphone and the same few voices for
months.  Standardising every feature dimension with the mean and spread of *that* speech (instead
of a studio's) removes what the room, the microphone and the voices share, and leaves what
changes from one utterance to the next: measured leave-one-corpus-out, the largest single lever
for voices a model never heard (see the model card).

:class:`RunningStats` is a mergeable per-dimension mean/variance (Chan et al.'s parallel update,
float64, constant memory whatever the input length).  :class:`DeploymentNormalizer` standardises
with the statistics heard so far, blended with the training data's (the model's manifest carries
them as a prior worth ``prior_frames`` frames), so a fresh device starts as the model was trained
and moves toward its own room as it listens.  Its state is a small JSON file, written atomically,
kept across restarts and removed to reset.  Only counts, means and variances are stored: no audio.

Training uses the same class: each corpus is standardised with its own statistics, as the device
standardises with its room's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError, ModelError

__all__ = ["RunningStats", "DeploymentNormalizer", "read_state", "speech_frames", "speech_mask"]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: Frames this far (dB) below a window's loud frames are pauses, not speech: they are left out of
#: the statistics, which must describe voices, not the room's silence.
SPEECH_RANGE_DB = 30.0
#: Spread below this is treated as this (a constant dimension must not divide by zero).
MIN_STD = 1e-3


def read_state(path: Path) -> RunningStats | None:
    """The statistics heard, from a state file written by :meth:`DeploymentNormalizer.save`;
    ``None`` when there is no file, :class:`~edge.errors.ModelError` when it is unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ModelError(f"{path}: cannot be read ({exc})") from None
    try:
        return RunningStats.from_dict(json.loads(text)["heard"], source=str(path))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: not an adaptation state ({exc})") from None


def speech_mask(level_db: FloatArray) -> npt.NDArray[np.bool_]:
    """Which frames are within :data:`SPEECH_RANGE_DB` of the window's loud level (its 95th
    percentile of ``level_db``, one level per frame)."""
    if level_db.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(level_db > np.percentile(level_db, 95) - SPEECH_RANGE_DB)


def speech_frames(frames: FloatArray, level_db: FloatArray) -> FloatArray:
    """The rows of ``frames`` that :func:`speech_mask` keeps."""
    if frames.shape[0] == 0:
        return frames
    return np.asarray(frames[speech_mask(level_db)])


@dataclasses.dataclass
class RunningStats:
    """Per-dimension count, mean and sum of squared deviations (``m2``)."""

    count: float
    mean: FloatArray
    m2: FloatArray

    @classmethod
    def empty(cls, dims: int) -> RunningStats:
        return cls(0.0, np.zeros(dims), np.zeros(dims))

    @classmethod
    def of(cls, frames: npt.ArrayLike) -> RunningStats:
        x = np.asarray(frames, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"statistics need (frames, dims), got shape {x.shape}")
        if x.shape[0] == 0:
            return cls.empty(x.shape[1])
        mean = x.mean(axis=0)
        return cls(float(x.shape[0]), mean, ((x - mean) ** 2).sum(axis=0))

    @property
    def dims(self) -> int:
        return int(self.mean.shape[0])

    @property
    def var(self) -> FloatArray:
        return self.m2 / self.count if self.count > 0 else np.ones(self.dims)

    @property
    def std(self) -> FloatArray:
        return np.asarray(np.maximum(np.sqrt(self.var), MIN_STD))

    def merged(self, other: RunningStats) -> RunningStats:
        """Statistics of both sets together (Chan et al. 1979)."""
        if other.count == 0:
            return RunningStats(self.count, self.mean.copy(), self.m2.copy())
        if self.count == 0:
            return RunningStats(other.count, other.mean.copy(), other.m2.copy())
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / n)
        return RunningStats(n, mean, m2)

    def update(self, frames: npt.ArrayLike) -> None:
        """Add ``frames`` ``(n, dims)`` in place."""
        new = self.merged(RunningStats.of(frames))
        self.count, self.mean, self.m2 = new.count, new.mean, new.m2

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": [float(v) for v in self.mean],
                "var": [float(v) for v in self.var]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "statistics") -> RunningStats:
        try:
            count = float(d["count"])
            mean = np.asarray(d["mean"], dtype=np.float64)
            var = np.asarray(d["var"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{source}: not feature statistics ({exc})") from None
        if (mean.ndim != 1 or var.shape != mean.shape or not math.isfinite(count) or count < 0
                or not np.all(np.isfinite(mean)) or not np.all(np.isfinite(var))
                or np.any(var < 0)):
            raise ModelError(f"{source}: feature statistics are malformed (count, mean and var "
                             f"must be finite, var >= 0, mean and var of one length)")
        return cls(count, mean, var * count)


class DeploymentNormalizer:
    """Standardise feature frames with this deployment's statistics, blended with a prior.

    ``prior`` are the training data's statistics, worth ``prior_frames`` frames: with nothing
    heard yet the device standardises as the model was trained; the mean and variance it uses
    move toward its own room's as ``heard / (heard + prior_frames)``.  ``state_file``, when given,
    is read at start (a missing file is a fresh start; a corrupt or mismatched one is logged and
    replaced) and written by :meth:`save`.
    """

    def __init__(self, prior: RunningStats, *, prior_frames: float = 6000.0,
                 state_file: str | Path | None = None) -> None:
        if prior_frames < 0 or not math.isfinite(prior_frames):
            raise ConfigError(f"prior_frames must be a finite count >= 0, got {prior_frames!r}")
        #: The training data's statistics; ``prior_frames``, not their count, is their weight.
        self.prior = prior
        self.prior_frames = float(prior_frames)
        self.state_file = Path(state_file) if state_file is not None else None
        self.heard = RunningStats.empty(prior.dims)
        if self.state_file is not None:
            self._load()
        self._refresh()

    @property
    def dims(self) -> int:
        return self.prior.dims

    @property
    def frames_heard(self) -> float:
        return self.heard.count

    def _refresh(self) -> None:
        # A weighted blend of the two descriptions, not the pooled statistics of both sets: the
        # distance between the studio's mean and the room's must not count as spread.
        n0, n = self.prior_frames, self.heard.count
        if n == 0:
            mean, var = self.prior.mean, self.prior.var
        else:
            a = n / (n0 + n)
            mean = (1 - a) * self.prior.mean + a * self.heard.mean
            var = (1 - a) * self.prior.var + a * self.heard.var
        self._mean = mean
        self._scale = 1.0 / np.maximum(np.sqrt(var), MIN_STD)

    def observe(self, frames: npt.ArrayLike) -> None:
        """Add speech frames ``(n, dims)`` heard by this deployment."""
        x = np.asarray(frames, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dims:
            raise ValueError(f"expected (frames, {self.dims}), got shape {x.shape}")
        if x.shape[0] and np.all(np.isfinite(x)):
            self.heard.update(x)
            self._refresh()

    def normalize(self, frames: npt.ArrayLike) -> FloatArray:
        """``(frames - mean) / std`` per dimension."""
        return np.asarray((np.asarray(frames, dtype=np.float64) - self._mean) * self._scale)

    def reset(self) -> None:
        """Forget everything heard (the prior remains) and remove the state file."""
        self.heard = RunningStats.empty(self.dims)
        self._refresh()
        if self.state_file is not None:
            self.state_file.unlink(missing_ok=True)

    def _load(self) -> None:
        assert self.state_file is not None
        try:
            heard = read_state(self.state_file)
            if heard is not None and heard.dims != self.dims:
                raise ModelError(f"{self.state_file}: {heard.dims} dimensions, the model has "
                                 f"{self.dims}")
        except ModelError as exc:
            logger.warning("adaptation state %s is unusable (%s); starting fresh",
                           self.state_file, exc)
            return
        if heard is None:
            return
        self.heard = heard
        logger.info("adaptation: %.0f s of speech heard before (%s)", heard.count / 100,
                    self.state_file)

    def save(self) -> None:
        """Write the statistics heard to ``state_file`` atomically (a crash leaves the old file)."""
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".adapt-", dir=self.state_file.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"heard": self.heard.to_dict()}, f)
            os.replace(tmp, self.state_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __repr__(self) -> str:
        return (f"<DeploymentNormalizer {self.dims} dims, heard {self.heard.count:.0f} frames, "
                f"prior {self.prior_frames:.0f}>")
