"""The face path of one loop cycle: detect (or reuse the last box), classify (or reuse the last
result), as the budget's :class:`~edge.pipeline.budget.StagePlan` allows.

It receives a detector (``detect(gray) -> [(x, y, w, h), ...]`` largest first) and a classifier
(``classify_crop(gray, box) -> obj with .label, .scores``) in its constructor, so tests pass fakes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..decision import ModalityReport
from .budget import StagePlan

__all__ = ["FaceStage"]


class FaceStage:
    """Stateful only in what it may reuse: the last box and the last result."""

    def __init__(
        self,
        detector: Any,
        classifier: Any,
        *,
        clock: Callable[[], float] = time.perf_counter,
        max_reuse: int = 8,
    ) -> None:
        self.detector = detector
        self.classifier = classifier
        self.clock = clock
        #: A reused box or result older than this many cycles is dropped (the face moved on).
        self.max_reuse = max_reuse
        self._box: tuple[int, int, int, int] | None = None
        self._box_age = 0
        self._result: ModalityReport | None = None
        self._result_age = 0

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.classifier.labels)

    @property
    def has_box(self) -> bool:
        return self._box is not None

    @property
    def has_result(self) -> bool:
        return self._result is not None

    def forget(self) -> None:
        """Drop what may be reused (no frame, camera gone, face modality shed)."""
        self._box = None
        self._result = None

    def run(self, gray: np.ndarray, plan: StagePlan) -> tuple[ModalityReport, dict[str, float]]:
        """One cycle on the latest frame: the face report and stage times in seconds."""
        times: dict[str, float] = {}
        if plan.detect or self._box is None or self._box_age >= self.max_reuse:
            t0 = self.clock()
            boxes = self.detector.detect(gray)
            times["detect"] = self.clock() - t0
            self._box = boxes[0] if boxes else None
            self._box_age = 0
            if self._box is None:
                self._result = None
                return ModalityReport("no_face"), times
        else:
            self._box_age += 1
        if plan.classify_face or self._result is None or self._result_age >= self.max_reuse:
            t0 = self.clock()
            face = self.classifier.classify_crop(gray, self._box)
            times["face"] = self.clock() - t0
            self._result = ModalityReport("ok", face.label, dict(face.scores))
            self._result_age = 0
        else:
            self._result_age += 1
        return self._result, times

    def __repr__(self) -> str:
        return f"<FaceStage box={self._box} reuse_result={self._result is not None}>"
