"""The replay benchmark (bench/face_replay.py): its scenes are what they claim, and it runs the
real face stage side by side in every mode."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")

from bench.face_replay import (  # noqa: E402
    MOTIONLESS,
    CountingDetector,
    evaluate_replays,
    main,
    replay_frames,
)
from edge.pipeline.face_stage import FaceStage  # noqa: E402
from edge.testing import FakeDetector, FakeFaceClassifier  # noqa: E402

LABELS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def faces(n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 48, 48)).astype(np.uint8), np.arange(n) % 7


def test_replays_are_reproducible_and_their_boxes_hold_the_face():
    x, y = faces()
    a = list(replay_frames(x, y, replays=4, cycles=50, seed=2))
    b = list(replay_frames(x, y, replays=4, cycles=50, seed=2))
    assert len(a) == 200 and [r.replay for r in a[::50]] == [0, 1, 2, 3]
    for fa, fb in zip(a, b):
        assert np.array_equal(fa.frame, fb.frame) and fa.box == fb.box
        assert fa.frame.shape == (240, 320) and fa.frame.dtype == np.uint8
        if fa.box is None:
            assert fa.label == -1 and fa.event == "away"
            continue
        bx, by, bw, bh = fa.box
        assert 0 <= bx and bx + bw <= 320 and 0 <= by and by + bh <= 240 and bw >= 240 // 5
        assert 0 <= fa.label < 7
    events = {f.event for f in a}
    assert {"still", "drift", "away", "back"} <= events, events
    assert sum(f.box is None for f in a) > 0  # the person leaves now and then


def test_a_motionless_scene_keeps_its_box():
    x, y = faces()
    boxes = {f.box for f in replay_frames(x, y, replays=1, cycles=20, seed=1, scenes=MOTIONLESS)}
    assert len(boxes) == 1


def test_every_mode_sees_the_same_frames_and_is_counted_apart():
    x, y = faces()
    frames = list(replay_frames(x, y, replays=2, cycles=12, seed=0))
    det = FakeDetector(box=(100, 60, 80, 80))
    clf = FakeFaceClassifier(LABELS)
    stages = {"every cycle": FaceStage(CountingDetector(det), clf, redetect_motion=0.0),
              "gated": FaceStage(CountingDetector(det), clf, redetect_motion=1e6)}
    r = evaluate_replays(frames, stages, LABELS, reference="every cycle")
    every, gated = r["every cycle"], r["gated"]
    assert every["cycles"] == gated["cycles"] == 24
    assert every["face_cycles"] + every["empty_cycles"] == 24
    assert every["detector_calls_per_cycle"] == 1.0
    assert det.calls == 24 + stages["gated"].detector.calls
    # never "moved" (threshold out of reach): cycles 0 (found) and 1 (confirmed), then after
    # every 8 reuses: 10 and 19
    assert gated["detector_calls_per_cycle"] == pytest.approx(4 / 24)
    assert every["right_only_here"] == every["right_only_in_reference"] == 0
    low, high = gated["accuracy_change_95"]
    assert low <= gated["accuracy"] - every["accuracy"] <= high


def test_the_benchmark_runs_on_fer_faces_through_the_shipped_models(shared_data, capsys):
    pytest.importorskip("ai_edge_litert")
    fer = shared_data / "fer2013" / "fer2013_48.npz"
    assert main(["--fer", str(fer), "--replays", "1", "--cycles", "6"]) == 0
    out = capsys.readouterr().out
    assert "every cycle" in out and "(default)" in out and "the detector calls" in out
    assert main(["--fer", str(fer), "--split", "PublicTest", "--calibrate", "--replays", "1",
                 "--cycles", "6", "--thresholds", "4"]) == 0
    out = capsys.readouterr().out
    assert "flicker" in out and "moves missed" in out
