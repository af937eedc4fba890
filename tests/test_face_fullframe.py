"""The whole-frame face check: frames are what they claim, and the device path scores them."""

from __future__ import annotations

import numpy as np
import pytest

from convert.face.fullframe import evaluate_full_frames, full_frames, head_shots

pytest.importorskip("cv2")


def test_frames_hold_the_pasted_face_inside_their_box_and_are_reproducible():
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (5, 48, 48)).astype(np.uint8)
    labels = np.arange(5)
    a = list(full_frames(faces, labels, size=(320, 240), n=5, seed=3))
    b = list(full_frames(faces, labels, size=(320, 240), n=5, seed=3))
    assert len(a) == 5 and sorted(f.label for f in a) == list(range(5))
    for fa, fb in zip(a, b):
        assert np.array_equal(fa.frame, fb.frame) and fa.box == fb.box
        x, y, w, h = fa.box
        assert fa.frame.shape == (240, 320) and fa.frame.dtype == np.uint8
        assert 0 <= x and x + w <= 320 and 0 <= y and y + h <= 240 and w >= 240 // 5
        # the face's random texture makes its box far busier than the smooth surroundings
        inside = np.abs(np.diff(fa.frame[y : y + h, x : x + w].astype(float), axis=1)).mean()
        assert inside > 8, inside
        assert abs(fa.angle) <= 20 and 0.5 <= fa.gamma <= 2


def test_head_shots_are_the_face_alone_filling_the_image_and_are_reproducible():
    faces = np.random.default_rng(0).integers(0, 256, (5, 48, 48)).astype(np.uint8)
    faces[:, :, :24] //= 4  # a dark left half, so the face's own layout shows in the shot
    a = list(head_shots(faces, np.arange(5), n=3, seed=3, side=96))
    b = list(head_shots(faces, np.arange(5), n=3, seed=3, side=96))
    assert len(a) == 3 and len({f.label for f in a}) == 3
    for fa, fb in zip(a, b):
        assert np.array_equal(fa.frame, fb.frame) and fa.box == (0, 0, 96, 96)
        assert fa.frame.shape == (96, 96) and fa.frame.dtype == np.uint8 and fa.angle == 0
        assert fa.frame[:, :40].mean() < fa.frame[:, 56:].mean()  # upright, not mirrored


def test_empty_scenes_are_faceless_frames_of_the_size_asked_and_are_reproducible():
    from convert.face.fullframe import empty_scenes

    a = list(empty_scenes(size=(320, 240), n=3, seed=1))
    assert len(a) == 3 and all(f.shape == (240, 320) and f.dtype == np.uint8 for f in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, empty_scenes(size=(320, 240), n=3, seed=1)))
    assert not np.array_equal(a[0], a[1])


def test_group_photos_hold_their_faces_apart_inside_the_photo_and_are_reproducible():
    from convert.face.fullframe import group_photos

    faces = np.random.default_rng(0).integers(0, 256, (30, 48, 48)).astype(np.uint8)
    labels = np.arange(30) % 7
    a = list(group_photos(faces, labels, n=4, seed=2, size=(800, 600)))
    b = list(group_photos(faces, labels, n=4, seed=2, size=(800, 600)))
    for pa, pb in zip(a, b):
        assert np.array_equal(pa.frame, pb.frame) and pa.boxes == pb.boxes
        assert pa.frame.shape == (600, 800) and 3 <= len(pa.boxes) == len(pa.labels) <= 12
        for i, (x, y, w, h) in enumerate(pa.boxes):
            assert 0 <= x and x + w <= 800 and 0 <= y and y + h <= 600
            assert 0.04 * 600 <= w <= 0.15 * 600 * 1.5  # turned: its square's bounding box
            for x2, y2, w2, h2 in pa.boxes[i + 1:]:  # apart
                assert x + w <= x2 or x2 + w2 <= x or y + h <= y2 or y2 + h2 <= y


def test_the_shipped_model_reads_group_photos_through_the_photo_scan(shared_data):
    """The scan of small tiles is what finds a group photo's faces; it adds no face to empty
    photos (face-check prints the same side by side on 100 photos)."""
    pytest.importorskip("ai_edge_litert")
    from pathlib import Path

    from convert.face.data import load_fer
    from convert.face.fullframe import evaluate_group_photos

    split = load_fer(shared_data / "fer2013" / "fer2013_48.npz", "PrivateTest")
    model = Path(__file__).resolve().parent.parent / "models" / "face_expression_int8.tflite"
    r = evaluate_group_photos(model, split.x, split.y, split.labels, n=6, seed=0)["scan_levels"]
    assert r["0"]["found"] < 0.2 and r["2"]["found"] > 0.7, r
    assert r["2"]["accuracy_when_found"] > 0.3, r  # well above chance (1/7)
    assert r["2"]["false_boxes_per_photo"] <= 1 and r["2"]["empty_scenes_with_a_face"] == 0, r


def test_the_shipped_model_is_scored_through_detection(shared_data):
    pytest.importorskip("ai_edge_litert")
    from pathlib import Path

    from convert.face.data import load_fer

    split = load_fer(shared_data / "fer2013" / "fer2013_48.npz", "PrivateTest")
    model = Path(__file__).resolve().parent.parent / "models" / "face_expression_int8.tflite"
    r = evaluate_full_frames(model, split.x, split.y, split.labels, n=40, seed=0)
    for size in ("320x240", "640x480", "head shot"):
        s = r["sizes"][size]
        assert s["detected"] >= 0.6, r  # BlazeFace finds most pasted faces
        assert s["accuracy"] <= s["detected"]
        assert s["accuracy_when_detected"] > 0.3, r  # well above chance (1/7)
        assert 0 < s["mean_recall_when_detected"] <= 1
    assert all(share <= 0.05 for share in r["empty_scenes"].values()), r  # few false faces


def test_face_check_scores_found_faces_by_accuracy_and_by_mean_recall(monkeypatch):
    """Three faces of one class and one of another, a model that always answers the first:
    accuracy 3/4 counts the common class thrice, mean recall (1 + 0) / 2 counts each once; a
    face found at the wrong place is missed."""
    import types

    import edge.models.face
    import edge.vision
    from convert.face import fullframe
    from edge.errors import ModelError

    box = (10, 10, 60, 60)
    items = [fullframe.FullFrame(np.zeros((240, 320), np.uint8), box, label, 0.0, 1.0)
             for label in (1, 1, 1, 0, 0)]  # calm, calm, calm, tense, tense
    monkeypatch.setattr(fullframe, "full_frames", lambda *a, **k: iter(items))
    monkeypatch.setattr(fullframe, "head_shots", lambda *a, **k: iter(items))
    answers = iter([box, box, box, box, (200, 150, 60, 60)] * 3)  # the last: elsewhere

    class Model:
        labels = ("calm", "tense")

        def __init__(self, model, detector):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def classify_frame(self, frame):
            return [types.SimpleNamespace(box=next(answers), label="calm")]

    monkeypatch.setattr(edge.models.face, "FaceClassifier", Model)
    seen = iter([[], [box], [], []] * 3)  # one empty scene in four gets a face, at each size
    monkeypatch.setattr(edge.vision, "open_face_detector", lambda name, **k: types.SimpleNamespace(
        close=lambda: None, detect=lambda frame: next(seen)))
    r = evaluate_full_frames("m.tflite", np.zeros((5, 48, 48)), np.zeros(5), ("tense", "calm"),
                             n=4)
    assert list(r["sizes"]) == ["320x240", "640x480", "head shot"]
    assert r["empty_scenes"] == {"320x240": 0.25, "640x480": 0.25, "240x240": 0.25}
    for s in r["sizes"].values():
        assert s["detected"] == pytest.approx(4 / 5)
        assert s["accuracy_when_detected"] == pytest.approx(3 / 4)
        assert s["accuracy"] == pytest.approx(3 / 5)
        assert s["recall_when_detected"] == {"tense": 0.0, "calm": 1.0}
        assert s["mean_recall_when_detected"] == pytest.approx(0.5)
        # the 60-pixel face in a 240-pixel frame: a quarter of its height
        assert s["detected_by_face_height"] == {"under 0.3": (pytest.approx(4 / 5), 5)}
    with pytest.raises(ModelError, match="FER2013"):
        evaluate_full_frames("m.tflite", np.zeros((5, 48, 48)), np.zeros(5), ("calm", "sad"))
