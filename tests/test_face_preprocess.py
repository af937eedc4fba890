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


def _eye_bar(roll_deg: float, size: int = 200) -> np.ndarray:
    """A frame with one bright bar (an "eye line") through its centre at ``roll_deg``."""
    img = np.zeros((size, size), np.uint8)
    th = np.radians(roll_deg)
    for t in np.linspace(-40, 40, 400):
        x, y = round(size / 2 + t * np.cos(th)), round(size / 2 + t * np.sin(th))
        img[y - 1 : y + 2, x - 1 : x + 2] = 255
    return img


@pytest.mark.parametrize("roll", [-25.0, -15.0, 20.0, 30.0])
def test_upright_crop_levels_the_eye_line_and_plain_crop_does_not(roll):
    pytest.importorskip("cv2")
    from edge.interfaces import FaceBox

    frame = _eye_bar(roll)
    box = FaceBox(50, 50, 100, 100, roll=roll)
    cfg = FacePreprocessConfig(size=100, upright=True)

    def rows_spanned(x):
        rows = np.where(x[:, :, 0].max(1) > 0.0)[0]
        return rows.max() - rows.min()

    assert rows_spanned(crop_face(frame, box, cfg)) <= 6
    # An 80-pixel bar at 15 degrees or more spans over 20 rows when nothing turns it.
    assert rows_spanned(crop_face(frame, box, FacePreprocessConfig(size=100))) > 18
    # The wrong turn makes it worse, not better: the sign is checked, not only the size.
    wrong = FaceBox(50, 50, 100, 100, roll=-roll)
    assert rows_spanned(crop_face(frame, wrong, cfg)) > 36


def test_upright_with_roll_zero_or_a_plain_box_is_the_plain_crop():
    pytest.importorskip("cv2")
    from edge.interfaces import FaceBox

    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (120, 160), dtype=np.uint8)
    up, plain = FacePreprocessConfig(size=48, upright=True), FacePreprocessConfig(size=48)
    for box in [(10, 20, 60, 70), FaceBox(10, 20, 60, 70), FaceBox(130, 90, 60, 60)]:
        np.testing.assert_array_equal(crop_face(frame, box, up), crop_face(frame, box, plain))


def test_upright_crop_of_an_unturned_face_near_the_border_repeats_the_edge():
    pytest.importorskip("cv2")
    from edge.features.face import _upright_patch

    frame = np.arange(100 * 120, dtype=np.uint32).reshape(100, 120).astype(np.uint8)
    np.testing.assert_array_equal(_upright_patch(frame, (10, 20, 30, 40), 0.0, 0.0),
                                  frame[20:60, 10:40])
    out = _upright_patch(frame, (100, 80, 40, 40), 0.0, 0.0)
    assert out.shape == (40, 40)
    np.testing.assert_array_equal(out[:20, :20], frame[80:, 100:])
    np.testing.assert_array_equal(out[25, 30], frame[99, 119])


def test_upright_is_left_out_of_the_manifest_when_off_and_read_when_on():
    assert "upright" not in FacePreprocessConfig().to_dict()
    on = FacePreprocessConfig(upright=True)
    assert on.to_dict()["upright"] is True
    assert FacePreprocessConfig.from_dict(on.to_dict()) == on
    old = {"size": 64, "margin": 0.0, "normalisation": "minus1_1", "interpolation": "area",
           "kind": "face_crop"}
    assert FacePreprocessConfig.from_dict(old).upright is False
    with pytest.raises(ConfigError, match="upright"):
        FacePreprocessConfig(upright="yes")  # type: ignore[arg-type]


def test_face_box_is_a_plain_box_that_also_carries_its_roll():
    import json
    import pickle

    from edge.interfaces import FaceBox, roll_of

    box = FaceBox(1, 2, 3, 4, roll=-7.5)
    assert box == (1, 2, 3, 4) and tuple(box) == (1, 2, 3, 4)
    x, y, w, h = box
    assert (x, y, w, h) == (1, 2, 3, 4)
    assert json.dumps(box) == "[1, 2, 3, 4]"
    again = pickle.loads(pickle.dumps(box))
    assert again == box and again.roll == -7.5
    assert roll_of(box) == -7.5 and roll_of((1, 2, 3, 4)) == 0.0


def test_an_image_too_small_to_hold_a_face_says_so():
    """`classify-face --whole-image` on a 1x1 image said "face box (0, 0, 1, 1) is empty inside
    a (1, 1) frame", of a box the user never gave."""
    with pytest.raises(ImageFileError, match="a 1x1 pixel image is too small to hold a face"):
        crop_face(np.zeros((1, 1), np.uint8), None, FacePreprocessConfig())
    assert crop_face(np.zeros((2, 2), np.uint8), None, FacePreprocessConfig()).ndim == 3
