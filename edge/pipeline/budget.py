"""The latency budget: a pure state machine that degrades the loop when cycles overrun.

Levels, cheapest last (face work dominates a cycle, so it is shed first and speech never is):

0. ``full``           run the face model every cycle; detect faces whenever the face stage wants
                      (every cycle, or when the scene moved: ``camera.redetect_motion``).
1. ``reuse_box``      reuse the last face box instead of detecting, however the scene moved (detect
                      only when none is known or it is older than ``camera.redetect_after_s``).
2. ``face_alternate`` as 1, and run the face model only every other cycle (reuse its last result).
3. ``no_face``        skip the face modality; fusion carries on with speech alone.

``overruns_to_degrade`` cycles over the deadline among the last ``overrun_window`` step one level
down (a window, not a streak, so a level that overruns every other cycle still degrades); ``recover_after``
consecutive cycles under ``recover_fraction * deadline`` step one level back up.  Every step is
counted and returned so the loop can log it.  No clocks, no I/O: cycle times are passed in.
"""

from __future__ import annotations

import collections
import dataclasses
import enum

from ..config import LoopConfig

__all__ = ["Level", "StagePlan", "BudgetStep", "BudgetPolicy"]


class Level(enum.IntEnum):
    FULL = 0
    REUSE_BOX = 1
    FACE_ALTERNATE = 2
    NO_FACE = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclasses.dataclass(frozen=True)
class StagePlan:
    """What the face path may do this cycle."""

    detect: bool  # may detect (the face stage still reuses a box while the scene is still)
    classify_face: bool
    use_face: bool


@dataclasses.dataclass(frozen=True)
class BudgetStep:
    """The outcome of observing one cycle."""

    overrun: bool
    level: Level
    changed: bool  # the level moved this cycle (degraded or recovered)


class BudgetPolicy:
    def __init__(
        self,
        deadline_s: float,
        *,
        overruns_to_degrade: int,
        overrun_window: int,
        recover_after: int,
        recover_fraction: float,
    ) -> None:
        # No defaults here: LoopConfig holds them (with their meaning and bounds), and
        # from_config is how the device builds a policy.
        if deadline_s <= 0:
            raise ValueError(f"deadline_s must be > 0, got {deadline_s}")
        self.deadline_s = deadline_s
        self.overruns_to_degrade = overruns_to_degrade
        self._recent: collections.deque[bool] = collections.deque(
            maxlen=max(overrun_window, overruns_to_degrade))
        self.recover_after = recover_after
        self.recover_fraction = recover_fraction
        self.level = Level.FULL
        self.overruns = 0
        self.degradations = 0
        self.recoveries = 0
        self._under_streak = 0
        self._cycle = 0

    @classmethod
    def from_config(cls, loop_config: LoopConfig) -> BudgetPolicy:
        return cls(loop_config.deadline_s, overruns_to_degrade=loop_config.overruns_to_degrade,
                   overrun_window=loop_config.overrun_window,
                   recover_after=loop_config.recover_after,
                   recover_fraction=loop_config.recover_fraction)

    def plan(self, *, have_box: bool, have_face_result: bool) -> StagePlan:
        """The face-path plan for the next cycle at the current level."""
        level = self.level
        if level >= Level.NO_FACE:
            return StagePlan(detect=False, classify_face=False, use_face=False)
        detect = level == Level.FULL or not have_box
        classify = True
        if level == Level.FACE_ALTERNATE and have_face_result and self._cycle % 2 == 1:
            classify = False
        return StagePlan(detect=detect, classify_face=classify, use_face=True)

    def observe(self, cycle_s: float) -> BudgetStep:
        """Record one completed cycle's compute time (seconds) and maybe change level."""
        self._cycle += 1
        overrun = cycle_s > self.deadline_s
        changed = False
        self._recent.append(overrun)
        if overrun:
            self.overruns += 1
            self._under_streak = 0
            if sum(self._recent) >= self.overruns_to_degrade and self.level < Level.NO_FACE:
                self.level = Level(self.level + 1)
                self.degradations += 1
                self._recent.clear()  # judge the new level on its own cycles
                changed = True
        else:
            if cycle_s <= self.recover_fraction * self.deadline_s:
                self._under_streak += 1
            else:
                self._under_streak = 0
            if self._under_streak >= self.recover_after and self.level > Level.FULL:
                self.level = Level(self.level - 1)
                self.recoveries += 1
                self._under_streak = 0
                changed = True
        return BudgetStep(overrun=overrun, level=self.level, changed=changed)

    def __repr__(self) -> str:
        return (f"<BudgetPolicy level={self.level.label} deadline={self.deadline_s}s "
                f"overruns={self.overruns} degradations={self.degradations}>")
