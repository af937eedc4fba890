"""One decision of the loop, as logged: what was shown, why, and how long it took.

The JSON form (one object per line) is the contract between ``emotion-edge run`` and
``emotion-edge inspect``; it holds scores and timings only, never audio or frames.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["ModalityReport", "Decision", "SCHEMA"]

#: Written into every record so ``inspect`` can tell our lines from other journal output.
SCHEMA = "emotion-edge/decision/1"


@dataclasses.dataclass(frozen=True)
class ModalityReport:
    """One modality's part in a decision.

    ``state`` is ``ok`` (scores present), ``no_speech``, ``no_face``, ``no_frame`` (the camera
    is there but has no frame for this moment: not yet, or a replayed video has ended),
    ``skipped`` (shed by the budget), ``unavailable`` (camera gone) or ``disabled``.
    """

    state: str
    label: str | None = None
    scores: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @property
    def present(self) -> bool:
        return self.state == "ok" and bool(self.scores)

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "label": self.label,
                "scores": {k: round(float(v), 4) for k, v in self.scores.items()}}


@dataclasses.dataclass(frozen=True)
class Decision:
    cycle: int
    time: float  # wall clock, seconds since the epoch
    media_s: float  # audio time at the end of the window, seconds since the loop started
    label: str | None  # shown emotion after smoothing/hysteresis; None = nothing shown
    confidence: float
    fused: Mapping[str, float]  # this cycle's fused distribution (empty: no modality present)
    speech: ModalityReport
    face: ModalityReport
    latency_ms: Mapping[str, float]  # per stage, and "total" for the whole cycle's compute
    overrun: bool
    level: str  # degradation level name (edge.pipeline.budget.Level)
    counters: Mapping[str, int]  # cumulative: overruns, degradations, drops...

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "cycle": self.cycle,
            "time": round(self.time, 3),
            "media_s": round(self.media_s, 3),
            "label": self.label,
            "confidence": round(float(self.confidence), 4),
            "fused": {k: round(float(v), 4) for k, v in self.fused.items()},
            "speech": self.speech.to_dict(),
            "face": self.face.to_dict(),
            "latency_ms": {k: round(float(v), 3) for k, v in self.latency_ms.items()},
            "overrun": self.overrun,
            "level": self.level,
            "counters": dict(self.counters),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))
