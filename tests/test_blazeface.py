"""BlazeFace short-range: anchors, decoder, weighted NMS, fetching, and detection when fetched."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.errors import ConfigError, ModelError
from edge.paths import default_model
from edge.vision.blazeface import (
    BLAZEFACE_MODEL_FILE,
    BLAZEFACE_SHA256,
    BlazeFaceConfig,
    BlazeFaceDetector,
    decode_detections,
    short_range_anchors,
    weighted_nms,
)
from edge.vision.detectors import open_face_detector

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def blazeface_model() -> Path:
    return default_model(BLAZEFACE_MODEL_FILE)  # shipped: missing is a failure, not a skip


@pytest.fixture(scope="module")
def demo_face(blazeface_model: Path) -> tuple[np.ndarray, Any]:
    """The demo frame in grey and the one face the detector finds in it: what the tests below
    cut, shrink and turn."""
    pytest.importorskip("cv2")
    from edge.sources.images import read_gray_image

    gray = read_gray_image(REPO / "demo" / "face.jpg")
    with BlazeFaceDetector(blazeface_model) as det:
        (box,) = det.detect(gray)
    return gray, box


def test_the_shipped_detector_matches_its_manifest_and_notice():
    import json

    from edge.models.manifest import sha256_of

    manifest = json.loads((REPO / "models" / "face_detection_short_range.json").read_text())
    assert manifest["sha256"] == sha256_of(REPO / "models" / BLAZEFACE_MODEL_FILE)
    assert manifest["sha256"] == BLAZEFACE_SHA256
    notice = (REPO / "models" / "face_detection_short_range.LICENSE.txt").read_text()
    assert "Apache License 2.0" in notice and BLAZEFACE_SHA256 in notice
    assert "END OF TERMS AND CONDITIONS" in (REPO / "models" / "LICENSE-Apache-2.0.txt").read_text()


def test_a_damaged_copy_is_refused_at_load_and_auto_falls_back_to_haar(tmp_path, monkeypatch,
                                                                         caplog):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("cv2")
    from edge.vision.haar import HaarFaceDetector

    damaged = tmp_path / BLAZEFACE_MODEL_FILE
    data = bytearray((REPO / "models" / BLAZEFACE_MODEL_FILE).read_bytes())
    data[-100] ^= 0xFF  # one weight byte: loads fine, detects wrongly
    damaged.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=f"{damaged}: sha256 .* is not BlazeFace"):
        BlazeFaceDetector(damaged)
    monkeypatch.setenv("EMOTION_EDGE_MODELS", str(tmp_path))
    with caplog.at_level("WARNING"), open_face_detector("auto") as det:
        assert isinstance(det, HaarFaceDetector)
    assert "using the Haar detector" in caplog.text and "sha256" in caplog.text
    with pytest.raises(ModelError, match="sha256"):
        open_face_detector("blazeface")


def test_anchors_follow_mediapipe_short_range_layout():
    a = short_range_anchors()
    assert a.shape == (896, 2)
    # 16x16 grid, 2 anchors per cell, row-major; then 8x8 grid, 6 per cell.
    assert np.allclose(a[0], [1 / 32, 1 / 32]) and np.allclose(a[1], a[0])
    assert np.allclose(a[2], [3 / 32, 1 / 32])
    assert np.allclose(a[32], [1 / 32, 3 / 32])
    assert np.allclose(a[511], [31 / 32, 31 / 32])
    assert np.allclose(a[512:518], [1 / 16, 1 / 16])
    assert np.allclose(a[-1], [15 / 16, 15 / 16])


def test_decoder_places_the_box_at_its_anchor_plus_the_offset():
    anchors = short_range_anchors()
    reg = np.zeros((896, 16), np.float32)
    logits = np.full(896, -10.0, np.float32)
    k = 600  # on the 8x8 grid
    reg[k, :4] = [6.4, -12.8, 32.0, 38.4]  # dx, dy, w, h in input pixels
    logits[k] = 3.0
    boxes, scores = decode_detections(reg, logits, anchors, 0.5)
    assert boxes.shape == (1, 4)
    cx, cy = anchors[k] + np.array([0.05, -0.1])
    assert np.allclose(boxes[0], [cx - 0.125, cy - 0.15, 0.25, 0.3], atol=1e-6)
    assert scores[0] == pytest.approx(1 / (1 + np.exp(-3.0)))
    # A threshold above every score keeps nothing (and huge logits do not overflow).
    logits[k] = 1e6
    assert decode_detections(reg, logits, anchors, 0.5)[0].shape == (1, 4)
    assert decode_detections(reg, np.full(896, -1e6, np.float32), anchors, 0.5)[0].shape == (0, 4)


def test_weighted_nms_merges_overlaps_by_score_and_keeps_separate_faces():
    boxes = np.array([[0.10, 0.10, 0.20, 0.20], [0.12, 0.10, 0.20, 0.20],
                      [0.60, 0.60, 0.10, 0.10]])
    scores = np.array([0.6, 0.9, 0.7])
    out = weighted_nms(boxes, scores, 0.3)
    assert len(out) == 2
    merged, best = out[0]
    assert best == pytest.approx(0.9)
    assert merged[0] == pytest.approx((0.10 * 0.6 + 0.12 * 0.9) / 1.5)
    assert np.allclose(out[1][0], boxes[2]) and out[1][1] == pytest.approx(0.7)
    assert weighted_nms(np.zeros((0, 4)), np.zeros(0), 0.3) == []


@pytest.mark.parametrize("kwargs", [{"score_threshold": 1.0}, {"iou_threshold": 0.0},
                                    {"min_size": -1}, {"retry_margin": -0.1},
                                    {"retry_margin": 3.0}, {"retry_tiles": 0.3},
                                    {"retry_tiles": 1.0}, {"retry_score": 0.4},
                                    {"retry_score": 1.0}, {"scan_levels": -1},
                                    {"scan_levels": 4}])
def test_config_rejects_out_of_range_values(kwargs):
    with pytest.raises(ConfigError):
        BlazeFaceConfig(**kwargs)


def test_missing_model_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTION_EDGE_MODELS", str(tmp_path))
    with pytest.raises(ModelError, match="emotion-convert blazeface"):
        BlazeFaceDetector()
    with pytest.raises(ModelError, match="none.tflite.*emotion-convert blazeface"):
        BlazeFaceDetector(tmp_path / "none.tflite")


def test_a_model_that_is_not_blazeface_is_refused():
    pytest.importorskip("ai_edge_litert")
    with pytest.raises(ModelError, match="not BlazeFace"):
        BlazeFaceDetector(REPO / "models" / "face_expression_int8.tflite")


def _fake_wheel(path: Path, data: bytes) -> Path:
    from convert.blazeface_cli import MEMBER

    with zipfile.ZipFile(path, "w") as z:
        z.writestr(MEMBER, data)
        z.writestr("mediapipe/__init__.py", "")
    return path


def test_extract_checks_the_sha256_before_writing_anything(tmp_path):
    from convert.blazeface_cli import extract_blazeface

    wheel = _fake_wheel(tmp_path / "mediapipe-0.10.21-fake.whl", b"not the model")
    out = tmp_path / "models"
    with pytest.raises(ModelError, match="sha256"):
        extract_blazeface(wheel, out)
    assert not out.exists()
    path = extract_blazeface(wheel, out, sha256=hashlib.sha256(b"not the model").hexdigest())
    assert path.read_bytes() == b"not the model"
    assert "Apache" in (out / "face_detection_short_range.LICENSE.txt").read_text()
    assert sorted(p.name for p in out.iterdir()) == [
        "face_detection_short_range.LICENSE.txt", BLAZEFACE_MODEL_FILE]


def test_fetch_command_reports_a_bad_wheel_in_one_line(tmp_path, capsys):
    from convert.cli import main

    bad = tmp_path / "bad.whl"
    bad.write_text("html error page")
    assert main(["blazeface", "--wheel", str(bad), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.whl" in err[0] and "not a wheel" in err[0]
    empty = _fake_wheel(tmp_path / "other.whl", b"")
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("other/file.txt", "")
    assert main(["blazeface", "--wheel", str(empty), "--out", str(tmp_path / "m")]) == 2
    assert "mediapipe==0.10.21" in capsys.readouterr().err


def test_open_face_detector_auto_falls_back_to_haar(tmp_path, monkeypatch):
    pytest.importorskip("cv2")
    from edge.vision.detectors import open_face_detector
    from edge.vision.haar import HaarFaceDetector

    monkeypatch.setenv("EMOTION_EDGE_MODELS", str(tmp_path))
    with open_face_detector("auto") as det:
        assert isinstance(det, HaarFaceDetector)
    with pytest.raises(ConfigError, match="retina"):
        open_face_detector("retina")
    with pytest.raises(ModelError, match="emotion-convert blazeface"):
        open_face_detector("blazeface")


def test_open_face_detector_auto_uses_fetched_blazeface(blazeface_model, tmp_path, monkeypatch):
    from edge.vision.detectors import open_face_detector

    (tmp_path / BLAZEFACE_MODEL_FILE).write_bytes(blazeface_model.read_bytes())
    monkeypatch.setenv("EMOTION_EDGE_MODELS", str(tmp_path))
    with open_face_detector("auto", largest_only=False) as det:
        assert isinstance(det, BlazeFaceDetector) and not det.config.largest_only


def test_blank_frames_have_no_face(blazeface_model):
    with BlazeFaceDetector(blazeface_model) as det:
        assert det.detect(np.full((240, 320), 100, np.uint8)) == []
        assert det.detect(np.zeros((480, 640), np.uint8)) == []
        with pytest.raises(ValueError, match="2-D grey"):
            det.detect(np.zeros((240, 320, 3), np.uint8))
    with pytest.raises(ModelError, match="closed"):
        det.detect(np.zeros((240, 320), np.uint8))


def test_a_huge_photo_is_looked_at_shrunk_with_boxes_in_its_own_pixels(blazeface_model,
                                                                        demo_face):
    """A 12000x9000 photo letterboxed at its own size took 590 MB; its face must still be found
    where it is."""
    import tracemalloc

    import cv2

    gray, (bx, by, bw, bh) = demo_face
    big = cv2.resize(gray, (gray.shape[1] * 8, gray.shape[0] * 8), interpolation=cv2.INTER_LINEAR)
    with BlazeFaceDetector(blazeface_model) as det:
        ((x, y, w, h),) = det.detect(big)
        assert max(abs(x - 8 * bx), abs(y - 8 * by), abs(w - 8 * bw), abs(h - 8 * bh)) <= 16
        flat = np.full((9000, 12000), 128, np.uint8)
        tracemalloc.start()
        try:
            assert det.detect(flat) == []
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 60e6, peak


def test_finds_the_demo_face_where_haar_does(demo_face):
    from edge.vision.haar import HaarFaceDetector

    gray, (bx, by, bw, bh) = demo_face
    (hx, hy, hw, hh), = HaarFaceDetector().detect(gray)
    assert abs((bx + bw / 2) - (hx + hw / 2)) < hw / 4
    assert abs((by + bh / 2) - (hy + hh / 2)) < hh / 4
    assert 0.6 < bw / hw < 1.5


def test_a_face_that_fills_the_image_is_found_by_the_second_look(blazeface_model, demo_face):
    """The demo face cut close (its box's middle 70%: brows to chin) and enlarged fills the image;
    the short-range model misses it in one look and finds it in a grey border, and the box it
    gives is the face's, clipped to the image."""
    cv2 = pytest.importorskip("cv2")
    gray, (x, y, w, h) = demo_face
    cx, cy, half = x + w // 2, y + h // 2, round(0.35 * w)
    head = cv2.resize(gray[cy - half:cy + half, cx - half:cx + half], (240, 240))
    with BlazeFaceDetector(blazeface_model, BlazeFaceConfig(retry_margin=0, retry_tiles=0)) as once:
        assert once.detect(head) == []
    with BlazeFaceDetector(blazeface_model) as det:
        (bx, by, bw, bh), = det.detect(head)
        # An image with no face still has none after the second look.
        assert det.detect(np.full((240, 240), 128, np.uint8)) == []
    assert bx >= 0 and by >= 0 and bx + bw <= 240 and by + bh <= 240
    assert bw > 0.7 * 240 and bh > 0.7 * 240  # the face, not a feature inside it


def test_a_small_face_is_found_in_the_tiles_once(blazeface_model, demo_face):
    """The demo frame at 0.6 of its size in a 320x240 frame, its 41-pixel face in the middle,
    where all four tiles overlap.  Two looks miss it; each tile finds it, and it is returned
    once, at its place, even when every face is asked for."""
    cv2 = pytest.importorskip("cv2")
    from edge.vision.boxes import box_iou

    gray, (x, y, w, h) = demo_face
    small = cv2.resize(gray, (192, 144), interpolation=cv2.INTER_AREA)
    left, top = round(160 - 0.6 * (x + w / 2)), round(120 - 0.6 * (y + h / 2))
    frame = np.full((240, 320), 110, np.uint8)
    frame[top:top + 144, left:left + 192] = small[:240 - top, :320 - left]
    where = (left + 0.6 * x, top + 0.6 * y, 0.6 * w, 0.6 * h)
    with BlazeFaceDetector(blazeface_model, BlazeFaceConfig(retry_tiles=0)) as two_looks:
        assert two_looks.detect(frame) == []
    with BlazeFaceDetector(blazeface_model, BlazeFaceConfig(largest_only=False)) as det:
        found = det.detect(frame)
    assert len(found) == 1 and box_iou(found[0], [where])[0] > 0.5, (found, where)


def test_a_group_photos_small_faces_are_found_each_once_by_the_photo_scan(blazeface_model,
                                                                         demo_face):
    """A class photo: the demo frame 4 x 3 times in a 1600x900 photo, each face 5% of its
    width.  The camera's looks find none of the 12 (the corner tiles are 0.6 of the
    photo); the scan of small tiles finds each, once, at its place."""
    cv2 = pytest.importorskip("cv2")
    from edge.vision.boxes import box_iou

    gray, (x, y, w, h) = demo_face
    cell = cv2.resize(gray, (400, 300), interpolation=cv2.INTER_AREA)
    photo = np.tile(cell, (3, 4))
    scale = 400 / gray.shape[1]
    faces = [(c * 400 + scale * x, r * 300 + scale * y, scale * w, scale * h)
             for r in range(3) for c in range(4)]
    with BlazeFaceDetector(blazeface_model, BlazeFaceConfig(largest_only=False)) as camera:
        assert camera.detect(photo) == []
    with BlazeFaceDetector(blazeface_model, BlazeFaceConfig(largest_only=False,
                                                           scan_levels=2)) as det:
        found = det.detect(photo)
    with BlazeFaceDetector(blazeface_model, BlazeFaceConfig(scan_levels=2)) as one:
        (largest,) = one.detect(photo)  # without --all-faces: one of them
    assert len(found) == 12, found
    assert sorted(int(np.argmax(box_iou(box, faces))) for box in found) == list(range(12))
    assert all(box_iou(box, faces).max() > 0.5 for box in [*found, largest]), found


def test_a_camera_makes_one_later_look_per_faceless_frame_in_turn(blazeface_model, demo_face):
    """With ``spread_looks`` a frame with no face costs two invokes (the first look and one
    later look), and the looks take turns: a small face is found within the five frames of a
    round (border, then each tile), and the look that found it stays on it in the next frames
    (the appliance confirms a new face on the next frame); a blank frame never gets a face."""
    cv2 = pytest.importorskip("cv2")
    gray = demo_face[0]
    small = cv2.resize(gray, (160, 120), interpolation=cv2.INTER_AREA)
    frame = np.full((240, 320), 110, np.uint8)
    frame[:120, :160] = small  # a 34-pixel face in the top-left tile only
    with BlazeFaceDetector(blazeface_model, BlazeFaceConfig(spread_looks=True)) as det:
        invokes = []
        real = det._invoke
        det._invoke = lambda x: invokes.append(1) or real(x)
        blank = np.full((240, 320), 110, np.uint8)
        for _ in range(5):
            assert det.detect(blank) == []
        assert len(invokes) == 10
        found_at = [i for i in range(5) if det.detect(frame)]
    assert found_at == [1, 2, 3, 4], found_at  # the border's turn, then the top-left tile's


@pytest.mark.corpus
def test_blazeface_finds_fer_faces_anywhere_in_the_frame(blazeface_model, shared_data):
    cv2 = pytest.importorskip("cv2")
    from convert.face.data import load_fer
    from edge.vision.boxes import box_iou

    faces = load_fer(shared_data / "fer2013" / "fer2013_48.npz", "PublicTest").x[:40]
    hits = 0
    with BlazeFaceDetector(blazeface_model) as det:
        for i, face in enumerate(faces):
            # Frame sizes, face sizes and positions vary, including a tall frame (letterbox).
            h, w = ((240, 320), (480, 640), (320, 240))[i % 3]
            side = (100, 180, 90)[i % 3]
            frame = np.full((h, w), 90, np.uint8)
            x, y = (i * 37) % (w - side), (i * 23) % (h - side)
            frame[y : y + side, x : x + side] = cv2.resize(face, (side, side))
            boxes = det.detect(frame)
            assert len(boxes) <= 1
            if boxes:
                hits += box_iou(boxes[0], [(x, y, side, side)])[0] > 0.3
    assert hits >= 30, f"BlazeFace found only {hits}/40 FER faces"


def _detector_finding(kind: str):
    from edge.config import CameraConfig, Config
    from edge.service.checks import check_face_detector

    return check_face_detector(Config(camera=CameraConfig(detector=kind)))


def test_check_warns_when_the_shipped_detector_is_missing(tmp_path, monkeypatch):
    pytest.importorskip("cv2")
    assert _detector_finding("auto").status == "ok"
    assert _detector_finding("haar").status == "ok"
    monkeypatch.setenv("EMOTION_EDGE_MODELS", str(tmp_path))
    f = _detector_finding("auto")
    assert f.status == "warning" and "Haar" in f.detail and "emotion-convert blazeface" in f.fix
    f = _detector_finding("blazeface")
    assert f.status == "problem" and "emotion-convert blazeface" in f.detail + f.fix


def test_check_refuses_a_fetched_file_with_the_wrong_sha256(blazeface_model, tmp_path,
                                                            monkeypatch):
    monkeypatch.setenv("EMOTION_EDGE_MODELS", str(tmp_path))
    copy = tmp_path / BLAZEFACE_MODEL_FILE
    copy.write_bytes(blazeface_model.read_bytes())
    assert _detector_finding("auto").status == "ok"
    # Same graph, one byte of the flatbuffer's tail changed: it still loads, but is not ours.
    data = bytearray(copy.read_bytes())
    data[-1] ^= 1
    copy.write_bytes(bytes(data))
    f = _detector_finding("auto")
    assert f.status == "warning" and "sha256" in f.detail and "Haar" in f.detail
    assert _detector_finding("blazeface").status == "problem"


def test_classifier_uses_the_detector_it_is_given_and_leaves_it_open(blazeface_model, demo_face,
                                                                   monkeypatch):
    pytest.importorskip("ai_edge_litert")
    from edge.errors import ConfigError
    from edge.models.face import FaceClassifier
    from edge.vision import open_face_detector

    monkeypatch.setenv("EMOTION_EDGE_MODELS", str(blazeface_model.parent))
    frame = demo_face[0]
    with open_face_detector("auto") as detector:
        assert isinstance(detector, BlazeFaceDetector)
        with FaceClassifier(REPO / "models" / "face_expression_int8.tflite",
                            detector=detector) as clf:
            assert len(clf.classify_frame(frame)) == 1
        assert len(detector.detect(frame)) == 1  # the classifier did not close it
    with pytest.raises(ModelError, match="closed"):
        detector.detect(frame)
    with FaceClassifier(REPO / "models" / "face_expression_int8.tflite") as clf:
        with pytest.raises(ConfigError, match="open_face_detector"):
            clf.classify_frame(frame)


def test_classify_face_cli_detector_choice(tmp_path, monkeypatch, capsys):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("cv2")
    import json

    from edge.cli import main

    monkeypatch.setenv("EMOTION_EDGE_MODELS", str(tmp_path))  # BlazeFace not fetched here
    model = str(REPO / "models" / "face_expression_int8.tflite")
    face = str(REPO / "demo" / "face.jpg")
    assert main(["classify-face", "--json", "--detector", "haar", "--model", model, face]) == 0
    (out,) = capsys.readouterr().out.strip().splitlines()
    assert len(json.loads(out)["faces"]) == 1
    assert main(["classify-face", "--detector", "blazeface", "--model", model, face]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "emotion-convert blazeface" in err[0]


def test_eye_roll_is_the_eye_lines_turn_whichever_eye_comes_first():
    from edge.vision.blazeface import eye_roll

    assert eye_roll(np.array([0.0, 0.0, 1.0, 0.0])) == 0.0
    assert eye_roll(np.array([0.0, 0.0, 1.0, 1.0])) == pytest.approx(45.0)
    assert eye_roll(np.array([1.0, 1.0, 0.0, 0.0])) == pytest.approx(45.0)  # mirrored
    assert eye_roll(np.array([0.0, 1.0, 1.0, 0.0])) == pytest.approx(-45.0)


def test_decoder_adds_keypoints_at_their_anchor_when_asked():
    anchors = short_range_anchors()
    reg = np.zeros((896, 16), np.float32)
    logits = np.full(896, -10.0, np.float32)
    logits[5] = 10.0
    reg[5, :4] = [0, 0, 32, 32]
    reg[5, 4:8] = [-8, -4, 8, 4]  # right eye up-left of the anchor, left eye down-right
    boxes, _ = decode_detections(reg, logits, anchors, 0.5, keypoints=True)
    assert boxes.shape == (1, 16)
    np.testing.assert_allclose(boxes[0, 4:8], np.r_[anchors[5] + [-8 / 128, -4 / 128],
                                                    anchors[5] + [8 / 128, 4 / 128]])
    merged = weighted_nms(np.repeat(boxes, 2, axis=0), np.array([0.9, 0.6]), 0.3)
    assert len(merged) == 1 and merged[0][0].shape == (16,)


@pytest.mark.parametrize("turn", [-20.0, 20.0])
def test_blazeface_measures_how_far_a_face_is_turned(blazeface_model, demo_face, turn):
    cv2 = pytest.importorskip("cv2")
    from edge.interfaces import FaceBox

    gray, (x, y, w, h) = demo_face
    with BlazeFaceDetector(blazeface_model) as det:
        # The demo face is small (68 px of 320): its keypoints are coarse.  Nearer the camera:
        gray = cv2.resize(gray[max(0, y - h):y + 2 * h, max(0, x - w):x + 2 * w], None, fx=2, fy=2)
        (level,) = det.detect(gray)
        h, w = gray.shape
        centre = (level[0] + level[2] / 2, level[1] + level[3] / 2)
        # cv2 turns counter-clockwise for a positive angle: the eye line then rises to the right.
        turned = cv2.warpAffine(gray, cv2.getRotationMatrix2D(centre, turn, 1.0), (w, h),
                                borderMode=cv2.BORDER_REPLICATE)
        (found,) = det.detect(turned)
    assert isinstance(level, FaceBox) and isinstance(found, FaceBox)
    assert abs(level.roll) < 8
    assert found.roll - level.roll == pytest.approx(-turn, abs=5)


def test_the_appliance_looks_again_unless_camera_close_and_far_faces_are_off():
    pytest.importorskip("ai_edge_litert")
    import contextlib

    from edge.config import CameraConfig, Config
    from edge.pipeline.appliance import open_decision_models

    default = BlazeFaceConfig()
    assert default.retry_margin > 0 and default.retry_tiles > 0
    for close_faces, far_faces in ((True, True), (False, True), (True, False)):
        config = Config(camera=CameraConfig(detector="blazeface", close_faces=close_faces,
                                            far_faces=far_faces))
        with contextlib.ExitStack() as stack:
            _, _, detector, _ = open_decision_models(config, stack, use_face=True, learn=False)
            assert isinstance(detector, BlazeFaceDetector)
            assert detector.config.spread_looks  # a camera's later looks take turns
            assert detector.config.retry_margin == (default.retry_margin if close_faces else 0)
            assert detector.config.retry_tiles == (default.retry_tiles if far_faces else 0)


def test_a_panoramas_scan_does_not_look_at_the_same_tiles_twice(blazeface_model):
    """In a strip 2048 x 120 the short side caps the tiles of both levels at 120: the second
    level looked at the first's tiles again."""
    with BlazeFaceDetector(blazeface_model, BlazeFaceConfig(scan_levels=2)) as det:
        looks = det._scan(np.zeros((120, 2048), np.uint8))
    assert len(looks) == len(range(0, 2048 - 120, 60)) + 1  # one row of 120-pixel tiles
