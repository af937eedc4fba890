"""Issue 17, item 2: training crops made the device's way (its detector, upright) and a cheap
camera's effects as augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from edge.features.face import FacePreprocessConfig, crop_faces
from edge.interfaces import FaceBox
from edge.testing import FakeDetector


class NoFace:
    def detect(self, gray):
        return []

    def close(self) -> None:
        pass


def _faces(n=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


def test_a_face_the_detector_misses_keeps_fers_own_crop():
    pytest.importorskip("cv2")
    from convert.face.detected import detector_crops, locate_faces

    faces = _faces()
    located = locate_faces(faces, NoFace())
    assert located.found_rate == 0.0
    assert all(b == (24, 24, 48, 48) and b.roll == 0.0 for b in located.boxes)
    for cfg in (FacePreprocessConfig(size=48), FacePreprocessConfig(size=64, upright=True)):
        np.testing.assert_array_equal(detector_crops(faces, located, cfg), crop_faces(faces, cfg))


def test_detector_boxes_are_on_the_padded_canvas_and_crops_reach_past_the_image():
    pytest.importorskip("cv2")
    from convert.face.detected import detector_crops, locate_faces

    faces = _faces(2)
    located = locate_faces(faces, FakeDetector(box=(12, 12, 72, 72)))  # beyond the 48x48 face
    assert located.found.all() and isinstance(located.boxes[0], FaceBox)
    x = detector_crops(faces, located, FacePreprocessConfig(size=72))
    # The 48x48 face sits 12 px in; around it the face's own edge pixels repeat.
    np.testing.assert_array_equal(x[0, 12:60, 12:60, 0], crop_faces(faces, FacePreprocessConfig())[0, :, :, 0])
    np.testing.assert_array_equal(x[0, :12, 12, 0], np.repeat(x[0, 12, 12, 0], 12))


@pytest.mark.corpus
def test_blazeface_finds_nearly_every_fer_face_on_its_canvas(shared_data):
    pytest.importorskip("ai_edge_litert")
    from convert.face.data import load_fer
    from convert.face.detected import locate_faces
    from edge.vision.blazeface import BlazeFaceDetector

    faces = load_fer(shared_data / "fer2013" / "fer2013_48.npz", "PublicTest").x[:200]
    with BlazeFaceDetector() as det:
        located = locate_faces(faces, det)
    assert located.found_rate >= 0.95  # 0.996 on all of PublicTest
    rolls = np.array([b.roll for b, f in zip(located.boxes, located.found) if f])
    assert 3.0 < rolls.std() < 25.0  # FER2013 faces lean (13 degrees r.m.s. on PublicTest)


def test_camera_effects_keep_shape_and_range_are_seeded_and_change_images():
    pytest.importorskip("albumentations")
    from convert.face.camera import apply_camera, camera_effects

    x = crop_faces(_faces(64), FacePreprocessConfig())
    a = apply_camera(x, camera_effects(0))
    b = apply_camera(x, camera_effects(0))
    c = apply_camera(x, camera_effects(1))
    assert a.shape == x.shape and a.dtype == np.float32
    assert a.min() >= -1.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    changed = np.abs(a - x).reshape(64, -1).max(1) > 0.02
    assert 0.3 < changed.mean() < 1.0  # each effect is drawn at random: some images untouched


@pytest.mark.slow
def test_a_model_trained_on_upright_detector_crops_tells_the_device_to_turn_faces(tmp_path):
    pytest.importorskip("tensorflow")
    pytest.importorskip("albumentations")
    from convert.face import load_face_data, run_face_pipeline
    from edge.models.manifest import load_manifest

    from .face_fixtures import tiny_recipe
    from .test_face_votes import write_fer

    data = load_face_data(fer=write_fer(tmp_path, (60, 12, 12)))
    recipe = tiny_recipe(input={"crops": "detector", "upright": True},
                         train={"epochs": 1, "camera": 1.0}, ramp={"epochs": 1},
                         finetune={"epochs": 1})
    run_face_pipeline(data, tmp_path / "out", recipe)
    manifest = load_manifest(tmp_path / "out" / "face_expression_int8.tflite")
    assert manifest.preprocessing["upright"] is True
    assert manifest.training["recipe"]["input"] == {"size": 48, "margin": 0.0, "upright": True,
                                                    "crops": "detector"}
    assert manifest.training["recipe"]["train"]["camera"] == 1.0
