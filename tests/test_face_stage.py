"""The face stage reuses the last box while the scene around it is still, and detects again when
it moved, when the box is too old, when the frame changed size, when no box is known, and once
more after a face appeared; the budget's reuse_box level still forces reuse."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import CameraConfig
from edge.pipeline.budget import BudgetPolicy, Level, StagePlan
from edge.pipeline.face_stage import FaceStage, redetect_cycles
from edge.testing import FakeDetector, FakeFaceClassifier
from edge.vision.motion import PATCH_CELLS, change_region, patch_change, region_patch

pytest.importorskip("cv2")

FULL = StagePlan(detect=True, classify_face=True, use_face=True)
REUSE = StagePlan(detect=False, classify_face=True, use_face=True)
BOX = (120, 70, 80, 80)
LABELS = ("happy", "sad")


def scene(dx: int = 0, *, offset: float = 0.0, noise: float = 0.0, seed: int = 0,
          size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A grey room with a textured 80x80 'face' at BOX moved right by ``dx`` pixels."""
    w, h = size
    rng = np.random.default_rng(0)
    frame = np.full((h, w), 110.0)
    face = np.kron(rng.uniform(30, 220, (10, 10)), np.ones((8, 8)))  # 8-pixel blobs
    x, y = BOX[0] + dx, BOX[1]
    frame[y : y + 80, x : x + 80] = face
    frame += offset + np.random.default_rng(seed).normal(0, noise, frame.shape) if noise else offset
    return np.clip(frame, 0, 255).astype(np.uint8)


def stage(detector: FakeDetector, **kw: object) -> FaceStage:
    kw.setdefault("redetect_motion", 8.0)
    return FaceStage(detector, FakeFaceClassifier(LABELS), **kw)  # type: ignore[arg-type]


def run(s: FaceStage, frames: list[np.ndarray], plan: StagePlan = FULL) -> list[set[str]]:
    """Each cycle's stage names (``detect`` present = the detector ran)."""
    out = []
    for f in frames:
        report, times = s.run(f, plan)
        assert report.state in ("ok", "no_face")
        out.append(set(times))
    return out


def test_a_still_scene_is_detected_twice_then_the_box_is_reused():
    det = FakeDetector(box=BOX)
    s = stage(det)
    stages = run(s, [scene(noise=3, seed=i) for i in range(6)])
    assert det.calls == 2  # the face appeared, and is confirmed on the next cycle
    assert ["detect" in t for t in stages] == [True, True, False, False, False, False]
    assert all("motion" in t and "face" in t for t in stages[2:])  # tested, still classified
    assert s.classifier.calls == 6 and s.box == BOX
    assert s.last_change is not None and s.last_change < 2  # camera noise, far below 8


def test_a_uniform_change_of_brightness_is_no_motion():
    det = FakeDetector(box=BOX)
    s = stage(det)
    run(s, [scene(), scene(), scene(offset=25), scene(offset=-30)])
    assert det.calls == 2 and s.last_change == pytest.approx(0, abs=0.5)


def test_a_moved_face_is_detected_again():
    det = FakeDetector(box=BOX)
    s = stage(det)
    stages = run(s, [scene(), scene(), scene(), scene(dx=12), scene(dx=12)])
    assert ["detect" in t for t in stages] == [True, True, False, True, False]
    assert s.last_change is not None and s.last_change <= 8  # compared with the new reference


def test_without_gating_every_cycle_detects():
    det = FakeDetector(box=BOX)
    s = stage(det, redetect_motion=0.0)
    stages = run(s, [scene()] * 5)
    assert det.calls == 5 and all("motion" not in t for t in stages)


def test_a_box_is_reused_at_most_redetect_after_cycles():
    det = FakeDetector(box=BOX)
    s = stage(det, redetect_after=3)
    stages = run(s, [scene()] * 10)
    assert ["detect" in t for t in stages] == [True] + [True, False, False, False] * 2 + [True]


def test_the_budgets_reuse_plan_forces_reuse_whatever_moved():
    det = FakeDetector(box=BOX)
    s = stage(det, redetect_after=3)
    run(s, [scene()])
    stages = run(s, [scene(dx=20), scene(dx=-20), scene(dx=20), scene(dx=-20)], plan=REUSE)
    assert ["detect" in t for t in stages] == [False, False, False, True]  # only the age bound
    # and the real policy at its reuse_box level plans exactly that
    policy = BudgetPolicy(0.1, overruns_to_degrade=1, overrun_window=1, recover_after=5,
                          recover_fraction=0.5)
    policy.observe(1.0)
    assert policy.level == Level.REUSE_BOX
    assert policy.plan(have_box=s.has_box, have_face_result=s.has_result).detect is False


def test_with_no_box_known_every_cycle_detects():
    det = FakeDetector(box=BOX)
    s = stage(det)
    dark = np.zeros((240, 320), np.uint8)  # FakeDetector finds nothing in a black frame
    stages = run(s, [dark] * 3, plan=REUSE)
    assert det.calls == 3 and all("detect" in t for t in stages) and s.box is None
    run(s, [scene(), scene(), scene()])
    assert det.calls == 5
    s.forget()
    run(s, [scene()], plan=REUSE)
    assert det.calls == 6


class ScriptedDetector(FakeDetector):
    """Finds what it is told, call by call (then nothing)."""

    def __init__(self, answers: list[list[tuple[int, int, int, int]]]) -> None:
        super().__init__()
        self.answers = answers

    def detect(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        self.calls += 1
        return self.answers.pop(0) if self.answers else []


def test_a_face_found_in_one_frame_only_is_not_kept():
    # A detector's one-frame mistake on a still background: without a second look the box
    # would be reused (and an emotion shown) until the age bound.
    s = stage(ScriptedDetector([[BOX], [], [BOX], [BOX]]))
    states = [s.run(scene(), FULL)[0].state for _ in range(5)]
    assert states == ["ok", "no_face", "ok", "ok", "ok"]
    assert s.detector.calls == 4


def test_a_frame_of_another_size_is_detected_again():
    det = FakeDetector(box=BOX)
    s = stage(det)
    run(s, [scene(), scene(size=(640, 480))], plan=REUSE)
    assert det.calls == 2


def test_from_config_turns_seconds_into_cycles_of_the_hop():
    camera = CameraConfig()
    s = FaceStage.from_config(FakeDetector(), FakeFaceClassifier(LABELS), camera, hop_s=0.5)
    assert s.redetect_after == 8 and s.redetect_motion == camera.redetect_motion > 0
    assert redetect_cycles(4.0, 0.3) == 13
    assert redetect_cycles(0.5, 2.0) == 1  # a hop longer than the bound still reuses once
    with pytest.raises(ValueError, match="redetect_after"):
        FaceStage(FakeDetector(), FakeFaceClassifier(LABELS), redetect_after=0)


def test_the_change_region_holds_whole_cells_inside_the_frame():
    for box in [(0, 0, 30, 30), (300, 220, 20, 20), (10, 10, 300, 220), BOX]:
        x0, y0, x1, y1 = change_region(box, (240, 320))
        assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240
        assert (x1 - x0) % PATCH_CELLS == 0 and (y1 - y0) % PATCH_CELLS == 0
    tiny = np.zeros((10, 12), np.uint8)  # smaller than the patch: the whole frame
    assert region_patch(tiny, change_region((0, 0, 5, 5), tiny.shape)).shape == (16, 16)


def test_patch_change_is_in_grey_levels():
    a = np.zeros((16, 16), np.float32)
    b = a.copy()
    b[:8] = 20  # half the cells 20 levels brighter: after the mean (10), every cell is 10 off
    assert patch_change(a, b) == pytest.approx(10)
    assert patch_change(a, a + 40) == 0
