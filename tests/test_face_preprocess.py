"""Face preprocessing is one function shared by training and the device."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import ConfigError, ImageFileError, ManifestMismatchError
from edge.features.face import FacePreprocessConfig, crop_face, crop_faces, normalise
from edge.sources.images import to_gray


def test_training_batch_equals_device_crop():
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (5, 48, 48), dtype=np.uint8)
    cfg = FacePreprocessConfig()
    batch = crop_faces(faces, cfg)
    assert batch.shape == (5, 48, 48, 1) and batch.dtype == np.float32
    for face, x in zip(faces, batch):
        np.testing.assert_array_equal(crop_face(face, None, cfg), x)


def test_training_batch_equals_device_crop_when_resizing():
    pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    faces = rng.integers(0, 256, (3, 96, 96), dtype=np.uint8)
    cfg = FacePreprocessConfig()
    np.testing.assert_array_equal(
        crop_faces(faces, cfg), np.stack([crop_face(f, (0, 0, 96, 96), cfg) for f in faces])
    )


def test_normalisation_ranges():
    g = np.array([0, 255], np.uint8)
    np.testing.assert_allclose(normalise(g, FacePreprocessConfig()), [-1.0, 1.0])
    np.testing.assert_allclose(normalise(g, FacePreprocessConfig(normalisation="zero_1")), [0, 1])


def test_crop_takes_the_box_with_margin_clipped_to_the_frame():
    pytest.importorskip("cv2")
    frame = np.zeros((240, 320), np.uint8)
    frame[100:148, 200:248] = 255  # a white 48x48 "face"
    cfg = FacePreprocessConfig()
    assert crop_face(frame, (200, 100, 48, 48), cfg).min() == 1.0
    wide = crop_face(frame, (200, 100, 48, 48), FacePreprocessConfig(margin=0.25))
    assert wide.min() == -1.0 and wide.max() == 1.0  # margin brings in the black surround
    edge = crop_face(frame, (300, 220, 48, 48), cfg)  # box hangs over the corner: clipped
    assert edge.shape == (48, 48, 1)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ConfigError, match="margin"):
        FacePreprocessConfig(margin=2.0)
    with pytest.raises(ConfigError, match="normalisation"):
        FacePreprocessConfig(normalisation="imagenet")
    with pytest.raises(ImageFileError, match="2-D uint8"):
        crop_face(np.zeros((4, 4, 3), np.float32), None, FacePreprocessConfig())
    with pytest.raises(ConfigError, match="unknown face preprocessing keys"):
        FacePreprocessConfig.from_dict({"size": 48, "colour": True})


def test_config_round_trips_through_the_manifest_dict():
    cfg = FacePreprocessConfig(size=64, margin=0.1)
    assert FacePreprocessConfig.from_dict(cfg.to_dict()) == cfg


def test_to_gray_accepts_bgr_and_bgrx():
    pytest.importorskip("cv2")
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 1] = 200
    assert to_gray(bgr).shape == (4, 4)
    assert to_gray(np.dstack([bgr, np.zeros((4, 4), np.uint8)])).shape == (4, 4)


def _int8_face_model(tmp_path, preprocess):
    """A 3-label int8 face model (GAP + dense) exported with ``preprocess`` in its manifest."""
    tf = pytest.importorskip("tensorflow")
    from convert.export import convert_int8, save_model

    size = preprocess.size
    inp = tf.keras.Input((size, size, 1))
    out = tf.keras.layers.Dense(3, activation="softmax")(
        tf.keras.layers.GlobalAveragePooling2D()(inp))
    rng = np.random.default_rng(0)
    path = tmp_path / "face.tflite"
    save_model(convert_int8(tf.keras.Model(inp, out),
                            rng.uniform(-1, 1, (16, size, size, 1)).astype(np.float32)),
               path, name="t", task="face_expression", labels=("a", "b", "c"),
               preprocessing=preprocess.to_dict(), fusion_map={}, metrics={}, training={})
    return path


def test_manifest_with_other_preprocessing_is_refused(tmp_path):
    from edge.models.face import FaceClassifier

    path = _int8_face_model(tmp_path, FacePreprocessConfig(margin=0.2))
    # A device pinned to another setting is refused; by default the manifest's own is used.
    with pytest.raises(ManifestMismatchError, match="field 'margin' is 0.2 but the device is "
                                                    "configured with 0.0"):
        FaceClassifier(path, preprocess=FacePreprocessConfig())
    for pinned in (None, FacePreprocessConfig(margin=0.2)):
        with FaceClassifier(path, preprocess=pinned) as clf:
            assert clf.preprocess.margin == 0.2
            assert set(clf.classify_crop(np.zeros((48, 48), np.uint8)).scores) == {"a", "b", "c"}


def test_the_classifier_follows_the_manifests_input_size(tmp_path):
    from edge.models.face import FaceClassifier

    path = _int8_face_model(tmp_path, FacePreprocessConfig(size=64))
    with FaceClassifier(path) as clf:  # a 48x48 FER face is scaled up to the model's 64x64
        assert clf.preprocess.size == 64
        assert set(clf.classify_crop(np.zeros((48, 48), np.uint8)).scores) == {"a", "b", "c"}
    with pytest.raises(ManifestMismatchError, match="field 'size' is 64 but the device is "
                                                    "configured with 48"):
        FaceClassifier(path, preprocess=FacePreprocessConfig())
