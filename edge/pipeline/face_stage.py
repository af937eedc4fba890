"""The face path of one loop cycle: detect (or reuse the last box), classify (or reuse the last
result), as the budget's :class:`~edge.pipeline.budget.StagePlan` allows.

It receives a detector (``detect(gray) -> [(x, y, w, h), ...]`` largest first) and a classifier
(``classify_crop(gray, box) -> obj with .label, .scores``) in its constructor, so tests pass fakes.

Detection is the dearest step of a cycle, and the appliance mostly looks at one person sitting
still, so with ``redetect_motion`` > 0 the stage reuses the last box while the region around it
has not changed (:mod:`edge.vision.motion`: a 16x16 patch of the box and its surroundings against
the same patch when the box was found, in grey levels, a uniform change of brightness removed).
It detects again when that change exceeds ``redetect_motion``, when the box has been reused
``redetect_after`` cycles, when the frame's size changed, when no box is known, and on the cycle
after a face appeared (a detector's one-frame mistake must not be kept while nothing moves).
The classifier still runs on every cycle's frame: only the box is reused.  Under overload the
budget's plan (``detect=False``) forces reuse whatever moved, within the same ``redetect_after``
bound.

A cycle that ran the detector has ``detect`` among its stage times; ``motion`` is the time of the
change test (and of keeping the patch after a detection).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from ..config import CameraConfig
from ..decision import ModalityReport
from ..vision.motion import Region, change_region, patch_change, region_patch
from .budget import StagePlan

__all__ = ["FaceStage", "redetect_cycles"]


def redetect_cycles(redetect_after_s: float, hop_s: float) -> int:
    """``camera.redetect_after_s`` as the number of cycles of ``hop_s`` seconds a box may be
    reused: at least one, so the budget's ``reuse_box`` level still saves detections."""
    return max(1, int(redetect_after_s / hop_s + 1e-9))


class FaceStage:
    """Stateful only in what it may reuse: the last box (with the patch it was found in) and the
    last result.

    The defaults detect on every cycle the budget allows (``redetect_motion=0``);
    :meth:`from_config` applies the configuration.
    """

    def __init__(
        self,
        detector: Any,
        classifier: Any,
        *,
        clock: Callable[[], float] = time.perf_counter,
        max_reuse: int = 8,
        redetect_after: int = 8,
        redetect_motion: float = 0.0,
    ) -> None:
        if redetect_after < 1:
            raise ValueError(f"redetect_after must be >= 1 cycle, got {redetect_after}")
        if not redetect_motion >= 0:
            raise ValueError(f"redetect_motion must be >= 0 grey levels, got {redetect_motion}")
        self.detector = detector
        self.classifier = classifier
        self.clock = clock
        #: A reused result older than this many cycles is dropped (the face moved on).
        self.max_reuse = max_reuse
        #: A box is reused at most this many cycles (still scene or overload), then re-detected.
        self.redetect_after = redetect_after
        #: Change around the box, in grey levels, above which it is re-detected; 0 = every cycle.
        self.redetect_motion = float(redetect_motion)
        #: The change measured by the last test (grey levels), for logs and benchmarks.
        self.last_change: float | None = None
        self._box: tuple[int, int, int, int] | None = None
        self._box_age = 0
        self._confirmed = False  # the cycle before the last detection had a face too
        self._shape: tuple[int, ...] | None = None
        self._region: Region | None = None
        self._reference: npt.NDArray[np.float32] | None = None
        self._result: ModalityReport | None = None
        self._result_age = 0

    @classmethod
    def from_config(cls, detector: Any, classifier: Any, camera: CameraConfig, *, hop_s: float,
                    clock: Callable[[], float] = time.perf_counter) -> FaceStage:
        """The stage as ``[camera]`` configures it, for a loop deciding every ``hop_s`` seconds."""
        return cls(detector, classifier, clock=clock,
                   redetect_after=redetect_cycles(camera.redetect_after_s, hop_s),
                   redetect_motion=camera.redetect_motion)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.classifier.labels)

    @property
    def has_box(self) -> bool:
        return self._box is not None

    @property
    def box(self) -> tuple[int, int, int, int] | None:
        """The box the last cycle classified (found or reused), ``None`` when there was none."""
        return self._box

    @property
    def has_result(self) -> bool:
        return self._result is not None

    def forget(self) -> None:
        """Drop what may be reused (no frame, camera gone, face modality shed)."""
        self._box = None
        self._reference = None
        self._result = None

    def _must_detect(self, gray: np.ndarray, plan: StagePlan, times: dict[str, float]) -> bool:
        if self._box is None or gray.shape != self._shape or self._box_age >= self.redetect_after:
            return True
        if not plan.detect:
            return False  # overloaded: the budget says reuse
        if self._reference is None or self._region is None:
            return True  # not gated: detect on every cycle the budget allows
        if not self._confirmed:
            # A face that just appeared may be a detector's one-frame mistake; on a still
            # background a reused mistake would stay until the age bound.  Look once more.
            return True
        t0 = self.clock()
        self.last_change = patch_change(self._reference, region_patch(gray, self._region))
        times["motion"] = self.clock() - t0
        return self.last_change > self.redetect_motion

    def run(self, gray: np.ndarray, plan: StagePlan) -> tuple[ModalityReport, dict[str, float]]:
        """One cycle on the latest frame: the face report and stage times in seconds."""
        times: dict[str, float] = {}
        if self._must_detect(gray, plan, times):
            t0 = self.clock()
            boxes = self.detector.detect(gray)
            times["detect"] = self.clock() - t0
            found = boxes[0] if boxes else None
            self._confirmed = found is not None and self._box is not None
            self._box = found
            self._box_age = 0
            self._shape = gray.shape
            self._reference = None
            if self._box is None:
                self._result = None
                return ModalityReport("no_face"), times
            if self.redetect_motion > 0:
                t0 = self.clock()
                self._region = change_region(self._box, gray.shape)
                self._reference = region_patch(gray, self._region)
                times["motion"] = times.get("motion", 0.0) + self.clock() - t0
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
        change = "-" if self.last_change is None else f"{self.last_change:.1f}"
        return (f"<FaceStage box={self._box} age={self._box_age}/{self.redetect_after} "
                f"redetect_motion={self.redetect_motion:g} last_change={change} "
                f"reuse_result={self._result is not None}>")
