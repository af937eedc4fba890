"""Temporal smoothing and hysteresis so the shown emotion does not flicker.

:class:`Smoother` keeps an exponential moving average of the fused distribution; a cycle with no
modality present decays it towards nothing, so the display goes dark after silence instead of
freezing on the last emotion.  The shown label changes only when (a) it has been shown for at least
``min_dwell_s`` and (b) the challenger beats it by ``switch_margin`` (or it falls below
``min_confidence``, and then nothing is shown).  Pure: time is passed in, nothing is read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from ..config import SmoothingConfig

__all__ = ["Smoothed", "Smoother"]


@dataclasses.dataclass(frozen=True)
class Smoothed:
    """What to show: ``label`` (None = nothing) with its smoothed ``confidence``."""

    label: str | None
    confidence: float
    scores: Mapping[str, float]
    changed: bool


class Smoother:
    def __init__(
        self,
        labels: Sequence[str],
        *,
        alpha: float,
        switch_margin: float,
        min_dwell_s: float,
        min_confidence: float,
    ) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.labels = tuple(labels)
        self.alpha = alpha
        self.switch_margin = switch_margin
        self.min_dwell_s = min_dwell_s
        self.min_confidence = min_confidence
        self._avg = dict.fromkeys(self.labels, 0.0)
        self._shown: str | None = None
        self._since = float("-inf")

    @classmethod
    def from_config(cls, labels: Sequence[str], config: SmoothingConfig) -> Smoother:
        return cls(labels, alpha=config.alpha, switch_margin=config.switch_margin,
                   min_dwell_s=config.min_dwell_s, min_confidence=config.min_confidence)

    def update(self, scores: Mapping[str, float] | None, t: float) -> Smoothed:
        """Fold in one cycle's fused ``scores`` (None = no modality) observed at time ``t`` (s)."""
        a = self.alpha
        for label in self.labels:
            target = 0.0 if scores is None else float(scores.get(label, 0.0))
            self._avg[label] = (1.0 - a) * self._avg[label] + a * target
        best = max(self.labels, key=self._avg.__getitem__)
        best_p = self._avg[best]
        shown = self._shown
        new = shown
        if t - self._since >= self.min_dwell_s or shown is None:
            if shown is None:
                new = best if self._showable(best_p) else None
            elif best != shown and self._showable(best_p) and (
                best_p >= self._avg[shown] + self.switch_margin
            ):
                new = best
            elif not self._showable(self._avg[shown]):
                new = best if self._showable(best_p) else None
        changed = new != shown
        if changed:
            self._shown = new
            self._since = t
        confidence = self._avg[new] if new is not None else 0.0
        return Smoothed(label=new, confidence=confidence, scores=dict(self._avg), changed=changed)

    def _showable(self, p: float) -> bool:
        # Above zero too: with min_confidence = 0, nothing heard yet (all zeros) would show the
        # first label, and silence is never an emotion.
        return p > 0.0 and p >= self.min_confidence

    def reset(self) -> None:
        self._avg = dict.fromkeys(self.labels, 0.0)
        self._shown = None
        self._since = float("-inf")

    def __repr__(self) -> str:
        return f"<Smoother shown={self._shown!r} alpha={self.alpha} dwell={self.min_dwell_s}s>"
