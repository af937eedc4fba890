"""Does reusing the face box while the scene is still cost accuracy?  A replay benchmark (not a
test): detect on every cycle against motion-gated detection (``camera.redetect_motion``), side by
side in one run on the same frames.

Replays are scenes of one person followed over loop cycles (one frame per cycle, 320x240 like the
device's camera): a FER2013 face (PrivateTest by default, the split that only reports) pasted into
a room made by ``convert.face.fullframe`` (background, tilt, blur, sensor noise).  The person sits
still (swaying by a random walk of 1% of the face size per cycle), now and then drifts (6% per
cycle in place, 3% in size, 2 degrees of tilt) for a few cycles, sometimes jumps to another place,
leaves the frame for a few cycles and comes back elsewhere, or changes expression (another face of
the split, pasted at the same place).  The lights flicker (a gain of 1 +- 2% per frame, drawn
afresh) and sometimes change (a gamma step); the noise is new in every frame.

Each frame goes through the device's :class:`~edge.pipeline.face_stage.FaceStage` with the
device's detector and face model, at the budget's full level, once per mode.  Per mode:

* accuracy: cycles with a face whose reported expression is the pasted face's FER2013 label; a
  missed face, or a box (found or reused) that does not overlap the face (IoU <= 0.3), is wrong;
* found: cycles with a face whose box overlaps it;
* false face: cycles without a face that still report one (a stale box);
* detector calls per cycle, and the host time of detection and of the change test per cycle;
* against every cycle: cycles only this mode got right, and only the other.

Run: ``python -m bench.face_replay --fer ../shared/data/fer2013/fer2013_48.npz``
(``--split PublicTest --thresholds 2,4,6,8,12`` is how the default threshold was chosen).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from convert.face.fullframe import background, paste, turned_face  # noqa: E402
from edge.config import CameraConfig  # noqa: E402
from edge.pipeline.budget import StagePlan  # noqa: E402
from edge.pipeline.face_stage import FaceStage, redetect_cycles  # noqa: E402
from edge.vision.boxes import box_iou  # noqa: E402
from edge.vision.motion import Region, change_region, patch_change, region_patch  # noqa: E402

#: The budget's full level: the stage may detect and classifies every cycle.
FULL = StagePlan(detect=True, classify_face=True, use_face=True)
#: Seconds per cycle: the shipped speech model's hop (camera.redetect_after_s is converted by it).
HOP_S = 0.5


@dataclasses.dataclass(frozen=True)
class Scenes:
    """How the replays' scenes behave: per-cycle chances of each event, how the person moves (in
    fractions of the face size per cycle, tilt in degrees), how long each phase lasts (cycles,
    drawn from [low, high)) and the lights' frame-to-frame flicker (standard deviation of a
    gain)."""

    p_leave: float = 0.02
    p_jump: float = 0.02
    p_expression: float = 0.04
    p_light: float = 0.03
    sway: float = 0.01
    drift: float = 0.06
    drift_scale: float = 0.03
    drift_tilt: float = 2.0
    still_cycles: tuple[int, int] = (4, 30)
    drift_cycles: tuple[int, int] = (2, 8)
    away_cycles: tuple[int, int] = (2, 8)
    flicker: float = 0.02


#: A person who does not move, in a room where nothing happens: only noise and flicker.
MOTIONLESS = Scenes(p_leave=0, p_jump=0, p_expression=0, p_light=0, sway=0,
                    still_cycles=(10**6, 10**6 + 1))


@dataclasses.dataclass(frozen=True)
class ReplayFrame:
    """One cycle's frame: the face's box (``None`` when nobody is there), its label index and
    what the scene did this cycle (``still``, ``drift``, ``jump``, ``away``, ``back``,
    ``expression``, ``light``)."""

    frame: np.ndarray
    box: tuple[int, int, int, int] | None
    label: int
    replay: int
    event: str


class _Person:
    """Where the face is, how large and turned; kept inside the frame."""

    def __init__(self, rng: np.random.Generator, size: tuple[int, int]) -> None:
        self.rng, (self.w, self.h) = rng, size
        self.place()

    def place(self) -> None:
        rng, w, h = self.rng, self.w, self.h
        self.side = float(rng.uniform(h / 5, h * 3 / 4))
        self.angle = float(rng.uniform(-20, 20))
        self.cx, self.cy = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        self.clamp()

    def move(self, step: float, scale: float = 0.0, tilt: float = 0.0) -> None:
        rng = self.rng
        self.cx += rng.normal(0, step * self.side)
        self.cy += rng.normal(0, step * self.side)
        self.side *= float(np.exp(rng.normal(0, scale))) if scale else 1.0
        if tilt:
            self.angle = float(np.clip(self.angle + rng.normal(0, tilt), -20, 20))
        self.clamp()

    def clamp(self) -> None:
        self.side = float(np.clip(self.side, self.h / 5, self.h * 3 / 4))
        half = self.side * 0.72  # half the turned square's bounding square at 20 degrees
        self.cx = float(np.clip(self.cx, half, self.w - half))
        self.cy = float(np.clip(self.cy, half, self.h - half))


def replay_frames(
    faces: np.ndarray, labels: np.ndarray, *, size: tuple[int, int] = (320, 240),
    replays: int = 8, cycles: int = 60, seed: int = 0, scenes: Scenes = Scenes(),
) -> Iterator[ReplayFrame]:
    """``replays`` scenes of ``cycles`` frames each (see the module's description)."""
    import cv2

    rng = np.random.default_rng(seed)
    w, h = size
    for r in range(replays):
        room = background(rng, h, w)
        noise = rng.uniform(1, 6)
        blur = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else 0.0
        gamma = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        person = _Person(rng, size)
        face = int(rng.integers(len(faces)))
        still, left = True, int(rng.integers(*scenes.still_cycles))
        away = 0
        for _ in range(cycles):
            if away:
                away -= 1
                event = "away" if away else "back"
                if not away:
                    person.place()
            else:
                u = rng.random()
                if u < scenes.p_leave:
                    away, event = int(rng.integers(*scenes.away_cycles)), "away"
                elif u < scenes.p_leave + scenes.p_jump:
                    person.place()
                    event = "jump"
                elif u < scenes.p_leave + scenes.p_jump + scenes.p_expression:
                    face, event = int(rng.integers(len(faces))), "expression"
                elif u < (scenes.p_leave + scenes.p_jump + scenes.p_expression
                           + scenes.p_light):
                    gamma = float(np.clip(gamma * np.exp(rng.uniform(-0.5, 0.5)), 0.4, 2.5))
                    event = "light"
                else:
                    event = "still" if still else "drift"
                left -= 1
                if left <= 0:
                    still = not still
                    left = int(rng.integers(*(scenes.still_cycles if still
                                                else scenes.drift_cycles)))
                if still:
                    person.move(scenes.sway)
                else:
                    person.move(scenes.drift, scenes.drift_scale, scenes.drift_tilt)
            frame = room.copy()
            box: tuple[int, int, int, int] | None = None
            if not away:
                turned, mask = turned_face(faces[face], int(round(person.side)), person.angle,
                                           limit=min(h, w) - 1)
                diag = turned.shape[0]
                x = int(np.clip(round(person.cx - diag / 2), 0, w - diag))
                y = int(np.clip(round(person.cy - diag / 2), 0, h - diag))
                paste(frame, turned, mask, x, y)
                box = (x, y, diag, diag)
            gain = 1.0 + rng.normal(0, scenes.flicker)
            out: np.ndarray = 255.0 * (frame / 255.0) ** gamma * gain
            if blur:
                out = cv2.GaussianBlur(out, (0, 0), blur)
            noisy = out + rng.normal(0, noise, out.shape)
            yield ReplayFrame(np.clip(noisy, 0, 255).astype(np.uint8), box,
                              int(labels[face]) if box else -1, r, event)


class CountingDetector:
    """A detector's calls, counted per mode (modes share one detector)."""

    def __init__(self, detector: Any) -> None:
        self.detector, self.calls = detector, 0

    def detect(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        self.calls += 1
        return list(self.detector.detect(gray))


@dataclasses.dataclass
class _Tally:
    cycles: int = 0
    face_cycles: int = 0
    right: int = 0
    found: int = 0
    empty_cycles: int = 0
    false_face: int = 0
    detect_s: float = 0.0
    motion_s: float = 0.0
    only_this: int = 0
    only_every: int = 0


def evaluate_replays(
    frames: Sequence[ReplayFrame] | Iterator[ReplayFrame], stages: dict[str, FaceStage],
    label_names: Sequence[str], *, reference: str | None = None,
) -> dict[str, Any]:
    """Run every frame through each of ``stages`` (name -> stage, each with its own
    :class:`CountingDetector`) and score them; ``reference`` (a name) is the mode the others are
    paired against (cycle by cycle)."""
    tallies = {name: _Tally() for name in stages}
    for item in frames:
        right_by_mode: dict[str, bool] = {}
        for name, stage in stages.items():
            t = tallies[name]
            report, times = stage.run(item.frame, FULL)
            t.cycles += 1
            t.detect_s += times.get("detect", 0.0)
            t.motion_s += times.get("motion", 0.0)
            box = stage.box if report.state == "ok" else None
            if item.box is None:
                t.empty_cycles += 1
                t.false_face += int(box is not None)
                continue
            t.face_cycles += 1
            hit = box is not None and bool(box_iou(box, [item.box])[0] > 0.3)
            right = hit and report.label == label_names[item.label]
            t.found += int(hit)
            t.right += int(right)
            right_by_mode[name] = right
        if reference is not None and right_by_mode:
            for name, right in right_by_mode.items():
                tallies[name].only_this += int(right and not right_by_mode[reference])
                tallies[name].only_every += int(right_by_mode[reference] and not right)
    out: dict[str, Any] = {}
    for name, stage in stages.items():
        t = tallies[name]
        calls = stage.detector.calls
        out[name] = {
            "cycles": t.cycles, "face_cycles": t.face_cycles, "empty_cycles": t.empty_cycles,
            "accuracy": t.right / max(t.face_cycles, 1), "found": t.found / max(t.face_cycles, 1),
            "false_face": t.false_face / max(t.empty_cycles, 1),
            "detector_calls_per_cycle": calls / max(t.cycles, 1),
            "detect_ms_per_cycle": 1e3 * t.detect_s / max(t.cycles, 1),
            "motion_ms_per_cycle": 1e3 * t.motion_s / max(t.cycles, 1),
            "redetect_motion": stage.redetect_motion, "redetect_after": stage.redetect_after,
            "right_only_here": t.only_this, "right_only_in_reference": t.only_every,
            "accuracy_change_95": _paired_interval(t.only_this, t.only_every, t.face_cycles),
        }
    return out


def calibrate(
    faces: np.ndarray, labels: np.ndarray, detector: Any, classifier: Any,
    thresholds: Sequence[float], *, replays: int, cycles: int, seed: int, redetect_after: int,
) -> dict[str, Any]:
    """The two sides of ``camera.redetect_motion``, in grey levels of the change test.

    ``motionless``: the change on scenes where nothing moves (only sensor noise, and flicker of
    0, 2 and 5% of the light), against the first frame, in the true box's region.  ``moves``:
    a stage that never re-detects on motion (only after ``redetect_after`` cycles) records the
    change and how far the face has moved since its box was found (IoU of the true boxes); per
    threshold, the share of moves (IoU <= 0.8) and departures (nobody there) it would miss, and
    the share of still cycles (IoU > 0.9, no expression or light change) it would re-detect."""
    out: dict[str, Any] = {"motionless": {}, "thresholds": {}}
    for flicker in (0.0, 0.02, 0.05):
        changes = []
        ref: tuple[int, Region, np.ndarray] | None = None
        for item in replay_frames(faces, labels, replays=replays, cycles=cycles, seed=seed,
                                  scenes=dataclasses.replace(MOTIONLESS, flicker=flicker)):
            assert item.box is not None
            if ref is None or ref[0] != item.replay:
                region = change_region(item.box, item.frame.shape)
                ref = (item.replay, region, region_patch(item.frame, region))
                continue
            changes.append(patch_change(ref[2], region_patch(item.frame, ref[1])))
        p50, p95, top = np.percentile(changes, [50, 95, 100])
        out["motionless"][f"{flicker:g}"] = {"n": len(changes), "p50": p50, "p95": p95,
                                             "max": top}
    stage = FaceStage(CountingDetector(detector), classifier, redetect_after=redetect_after,
                      redetect_motion=float("inf"))
    samples = []  # (change, IoU of the true boxes or -1 when nobody is there, confounded)
    found_at: tuple[int, int, int, int] | None = None
    events: set[str] = set()
    for item in replay_frames(faces, labels, replays=replays, cycles=cycles, seed=seed):
        _, times = stage.run(item.frame, FULL)
        if "detect" in times:
            found_at, events = item.box, set()
        elif "motion" in times and found_at is not None and stage.last_change is not None:
            events.add(item.event)
            overlap = float(box_iou(found_at, [item.box])[0]) if item.box is not None else -1.0
            samples.append((stage.last_change, overlap, bool(events & {"expression", "light"})))
    change = np.array([c for c, _, _ in samples], np.float64)
    iou = np.array([i for _, i, _ in samples], np.float64)
    confounded = np.array([x for _, _, x in samples], bool)
    moved: np.ndarray = (iou >= 0) & (iou <= 0.8)
    gone: np.ndarray = iou < 0
    still: np.ndarray = (iou > 0.9) & ~confounded
    out["tests"] = {"moves": int(moved.sum()), "departures": int(gone.sum()),
                    "still": int(still.sum())}
    for t in thresholds:
        out["thresholds"][f"{t:g}"] = {
            "moves_missed": float(np.mean(change[moved] <= t)) if moved.any() else 0.0,
            "departures_missed": float(np.mean(change[gone] <= t)) if gone.any() else 0.0,
            "still_redetected": float(np.mean(change[still] > t)) if still.any() else 0.0}
    return out


def _print_calibration(c: dict[str, Any]) -> None:
    print("change test on motionless scenes (sensor noise only, and flicker of the light), "
          "grey levels:")
    for flicker, r in c["motionless"].items():
        print(f"  flicker {100 * float(flicker):3.0f}%: p50 {r['p50']:.2f}  p95 {r['p95']:.2f}  "
              f"max {r['max']:.2f}  ({r['n']} tests)")
    n = c["tests"]
    print("change test against how far the face moved since its box was found:")
    print(f"  {'threshold':>9} {'moves missed':>13} {'departures missed':>18} "
          f"{'still re-detected':>18}")
    print(f"  {'':>9} {'(IoU<=0.8, ' + str(n['moves']) + ')':>13} "
          f"{'(nobody, ' + str(n['departures']) + ')':>18} "
          f"{'(IoU>0.9, ' + str(n['still']) + ')':>18}")
    for t, r in c["thresholds"].items():
        print(f"  {t:>9} {r['moves_missed']:13.3f} {r['departures_missed']:18.3f} "
              f"{r['still_redetected']:18.3f}")


def _paired_interval(gained: int, lost: int, n: int) -> tuple[float, float]:
    """95% interval of an accuracy change measured on the same ``n`` cycles, from the cycles
    only one of the two modes got right (the normal approximation of a paired difference)."""
    if n == 0:
        return 0.0, 0.0
    diff = (gained - lost) / n
    se = np.sqrt(max(gained + lost - (gained - lost) ** 2 / n, 0.0)) / n
    return diff - 1.96 * se, diff + 1.96 * se


def _thresholds(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fer", type=Path, required=True, help="fer2013_48.npz")
    ap.add_argument("--split", default="PrivateTest", choices=("PublicTest", "PrivateTest"))
    ap.add_argument("--model", type=Path, default=None,
                    help="face .tflite with its manifest (default: the shipped model)")
    ap.add_argument("--detector", default="auto", choices=("auto", "haar", "blazeface"))
    ap.add_argument("--replays", type=int, default=100)
    ap.add_argument("--cycles", type=int, default=60, help="cycles (frames) per replay")
    ap.add_argument("--thresholds", type=_thresholds, default=[],
                    help="more camera.redetect_motion values to run beside the default, e.g. 2,4,8")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calibrate", action="store_true",
                    help="instead: the change test's values on still and moving scenes, for "
                    "choosing the threshold (run it on PublicTest)")
    ap.add_argument("--one-look", action="store_true",
                    help="BlazeFace without the device's later looks at a frame with no face "
                    "(camera.close_faces and camera.far_faces off), to measure what they add")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)

    from convert.face.data import load_fer
    from edge.models.face import FACE_MODEL_FILE, FaceClassifier
    from edge.paths import default_model
    from edge.vision import open_face_detector

    split = load_fer(args.fer, args.split)
    model = args.model or default_model(FACE_MODEL_FILE)
    camera = CameraConfig()
    after = redetect_cycles(camera.redetect_after_s, HOP_S)
    start = time.perf_counter()
    # The device's detector: its later looks take turns, one per faceless cycle.
    later = 0.0 if args.one_look else None
    with contextlib.closing(open_face_detector(args.detector, retry_margin=later,
                                               retry_tiles=later, spread_looks=True)) as det, \
            FaceClassifier(model) as clf:
        def stage(motion: float) -> FaceStage:
            return FaceStage(CountingDetector(det), clf, redetect_after=after,
                             redetect_motion=motion)

        if args.calibrate:
            thresholds = sorted({*args.thresholds, camera.redetect_motion})
            c = calibrate(split.x, split.y, det, clf, thresholds, replays=args.replays,
                          cycles=args.cycles, seed=args.seed, redetect_after=after)
            if args.json:
                print(json.dumps(c, indent=2))
            else:
                print(f"{args.split} faces, {args.replays} replays x {args.cycles} cycles, "
                      f"seed {args.seed}")
                _print_calibration(c)
            return 0
        stages = {"every cycle": stage(0.0),
                  f"gated {camera.redetect_motion:g} (default)": stage(camera.redetect_motion)}
        stages.update({f"gated {t:g}": stage(t) for t in args.thresholds
                       if t != camera.redetect_motion})
        frames = replay_frames(split.x, split.y, replays=args.replays, cycles=args.cycles,
                               seed=args.seed)
        result = evaluate_replays(frames, stages, split.labels, reference="every cycle")
        detector = type(det).__name__
    info = {"model": str(model), "detector": detector, "split": args.split,
            "replays": args.replays, "cycles_per_replay": args.cycles, "seed": args.seed,
            "hop_s": HOP_S, "redetect_after_s": camera.redetect_after_s,
            "seconds": round(time.perf_counter() - start, 1), "modes": result}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    every = result["every cycle"]
    print(f"{Path(model).name}, {detector}: {args.replays} replays x {args.cycles} cycles of "
          f"{args.split} faces at 320x240 ({every['face_cycles']} cycles with a face, "
          f"{every['empty_cycles']} without); box reused at most {after} cycles "
          f"({camera.redetect_after_s:g} s at a {HOP_S:g} s hop); {info['seconds']} s")
    print(f"{'mode':<20} {'accuracy':>8} {'found':>6} {'false face':>10} {'detects/cycle':>13} "
          f"{'detect ms':>9} {'test ms':>7} {'right only here / only every':>29}")
    for name, r in result.items():
        print(f"{name:<20} {r['accuracy']:8.3f} {r['found']:6.3f} {r['false_face']:10.3f} "
              f"{r['detector_calls_per_cycle']:13.3f} {r['detect_ms_per_cycle']:9.3f} "
              f"{r['motion_ms_per_cycle']:7.3f} "
              f"{r['right_only_here']:>14d} / {r['right_only_in_reference']}")
    for name, r in result.items():
        if name != "every cycle":
            low, high = r["accuracy_change_95"]
            calls = r["detector_calls_per_cycle"] / every["detector_calls_per_cycle"]
            print(f"{name}: {calls:.2f}x the detector calls; accuracy "
                  f"{r['accuracy'] - every['accuracy']:+.3f} "
                  f"(paired 95% interval {low:+.3f} to {high:+.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
