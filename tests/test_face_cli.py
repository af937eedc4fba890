"""``emotion-edge classify-face``: the JSON contract, no-face, bad files, videos, detection."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge.cli import main

from .face_fixtures import SYNTH_LABELS, cartoon_face, tiny_face_run  # noqa: F401  (fixture)
from .test_face_frames import write_video

pytestmark = pytest.mark.slow


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture()
def images(tmp_path):
    cv2 = pytest.importorskip("cv2")
    face = tmp_path / "face.png"
    cv2.imwrite(str(face), cartoon_face("happy", np.random.default_rng(3)))
    plain = tmp_path / "plain.jpg"
    cv2.imwrite(str(plain), np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1)))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG truncated")
    return {"face": face, "plain": plain, "broken": broken}


def test_whole_image_json_contract(tiny_face_run, images, capsys):  # noqa: F811
    code = main(["classify-face", "--json", "--whole-image", "--model",
                 str(tiny_face_run["model"]), str(images["face"]), str(images["plain"])])
    out = lines(capsys.readouterr().out)
    assert code == 0 and [o["path"] for o in out] == [str(images["face"]), str(images["plain"])]
    face = out[0]["faces"][0]
    assert face["box"] == [0, 0, 48, 48]
    assert set(face["scores"]) == set(SYNTH_LABELS) and face["label"] in SYNTH_LABELS
    assert face["label"] == max(face["scores"], key=face["scores"].get)
    assert sum(face["scores"].values()) == pytest.approx(1.0, abs=0.05)
    assert out[1]["faces"][0]["box"] == [0, 0, 320, 240]


def test_no_face_is_an_empty_list_not_an_error(tiny_face_run, images, capsys):  # noqa: F811
    code = main(["classify-face", "--json", "--model", str(tiny_face_run["model"]),
                 str(images["plain"])])
    assert code == 0
    assert lines(capsys.readouterr().out) == [{"path": str(images["plain"]), "faces": []}]


def test_bad_file_is_named_and_others_still_processed(tiny_face_run, images, capsys):  # noqa: F811
    missing = images["face"].parent / "missing.png"
    code = main(["classify-face", "--whole-image", "--model", str(tiny_face_run["model"]),
                 str(images["broken"]), str(images["face"]), str(missing)])
    captured = capsys.readouterr()
    assert code == 1
    err = captured.err.strip().splitlines()
    assert len(err) == 2 and "broken.png" in err[0] and "missing.png" in err[1]
    assert all(line.startswith("emotion-edge: error:") for line in err)
    out = captured.out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(str(images["face"]))


@pytest.mark.parametrize("failure", [PermissionError(13, "Permission denied"), MemoryError()])
def test_a_file_that_fails_to_read_in_any_way_stops_only_itself(
        tiny_face_run, images, capsys, monkeypatch, failure):  # noqa: F811
    """A permission-denied photo (or an SD card's I/O error, or one too big for memory) was an
    internal error that ended the batch, the files after it never read."""
    from edge.sources import images as image_source

    real = np.fromfile

    def fromfile(path, *a, **kw):
        if path.endswith("plain.jpg"):
            raise failure
        return real(path, *a, **kw)

    monkeypatch.setattr(image_source.np, "fromfile", fromfile)
    code = main(["classify-face", "--whole-image", "--model", str(tiny_face_run["model"]),
                 str(images["plain"]), str(images["face"])])
    captured = capsys.readouterr()
    assert code == 1
    (err,) = captured.err.strip().splitlines()
    assert err.startswith(f"emotion-edge: error: {images['plain']}: ")
    assert captured.out.startswith(str(images["face"]))


def test_video_gives_one_object_per_sampled_frame(tiny_face_run, tmp_path, capsys):  # noqa: F811
    video = write_video(tmp_path / "clip.avi", frames=10, fps=10.0)
    code = main(["classify-face", "--json", "--video-fps", "5", "--model",
                 str(tiny_face_run["model"]), str(video)])
    out = lines(capsys.readouterr().out)
    assert code == 0
    assert [o["frame"] for o in out] == [0, 2, 4, 6, 8]
    assert all(o["path"] == str(video) and o["faces"] == [] for o in out)


def test_missing_model_is_one_clear_error(tmp_path, images, capsys):
    code = main(["classify-face", "--model", str(tmp_path / "none.tflite"), str(images["face"])])
    assert code == 2 and "none.tflite" in capsys.readouterr().err


@pytest.mark.corpus
def test_haar_finds_fer_faces_placed_in_a_lores_frame(shared_data):
    cv2 = pytest.importorskip("cv2")
    from convert.face.data import load_fer
    from edge.vision.boxes import box_iou
    from edge.vision.haar import HaarFaceDetector

    faces = load_fer(shared_data / "fer2013" / "fer2013_48.npz", "PublicTest").x[:40]
    detector = HaarFaceDetector()
    hits = 0
    for i, face in enumerate(faces):
        frame = np.full((240, 320), 90, np.uint8)
        x, y = 40 + (i * 13) % 150, 30 + (i * 7) % 80
        frame[y : y + 120, x : x + 120] = cv2.resize(face, (120, 120))
        boxes = detector.detect(frame)
        assert len(boxes) <= 1  # largest face only
        if boxes:
            hits += box_iou(boxes[0], [(x, y, 120, 120)])[0] > 0.3
    assert hits >= 20, f"Haar found only {hits}/40 FER faces"


def test_face_probabilities_average_the_face_and_its_mirror():
    from edge.models.face import face_probabilities

    class LeftBright:  # a "model" that only looks at the left half, so mirroring matters
        def predict(self, face):
            left = float(face[:, : face.shape[1] // 2].mean() > 0)
            return np.array([left, 1.0 - left], np.float32)

    face = np.zeros((48, 48, 1), np.float32)
    face[:, :24] = 1.0
    np.testing.assert_allclose(face_probabilities(LeftBright(), face, mirror=False), [1, 0])
    np.testing.assert_allclose(face_probabilities(LeftBright(), face), [0.5, 0.5])


def test_classifier_and_cli_use_the_mirror_average_by_default(tiny_face_run, images, capsys):  # noqa: F811
    from edge.features.face import FacePreprocessConfig, crop_face
    from edge.models.face import FaceClassifier
    from edge.models.runtime import QuantizedModel
    from edge.sources.images import read_gray_image

    gray = read_gray_image(images["face"])
    with QuantizedModel(tiny_face_run["model"]) as qm:
        face = crop_face(gray, None, FacePreprocessConfig())
        single, mirrored = qm.predict(face), qm.predict(face[:, ::-1])
        with FaceClassifier(qm) as clf:
            both = clf.scores(face)
        with FaceClassifier(qm, mirror=False) as clf:
            one = clf.scores(face)
    from edge.models.face import MIRROR_BELOW

    # The mirror average for a face the first pass is unsure of (the tiny model is unsure).
    default = (single + mirrored) / 2 if single.max() < MIRROR_BELOW else single
    np.testing.assert_allclose(list(both.values()), default, atol=1e-6)
    np.testing.assert_allclose(list(one.values()), single, atol=1e-6)

    # The CLI defaults to the same and --no-mirror gives the single pass.
    model = str(tiny_face_run["model"])
    for flag, want in (([], default), (["--no-mirror"], single)):
        assert main(["classify-face", "--json", "--whole-image", *flag, "--model", model,
                     str(images["face"])]) == 0
        scores = lines(capsys.readouterr().out)[0]["faces"][0]["scores"]
        np.testing.assert_allclose(list(scores.values()), want, atol=6e-5)  # JSON: 4 decimals


def test_every_face_of_a_group_photo_is_read_and_a_video_frame_is_not_scanned(tmp_path,
                                                                                capsys):
    """classify-face --all-faces on a class photo said "no face": its faces were too small
    for the camera's looks.  A video's frames keep the camera's looks (a scan per sampled
    frame would make a minute of video take minutes)."""
    cv2 = pytest.importorskip("cv2")
    from pathlib import Path

    demo = cv2.imread(str(Path(__file__).resolve().parent.parent / "demo" / "face.jpg"))
    photo = np.tile(cv2.resize(demo, (400, 300), interpolation=cv2.INTER_AREA), (3, 4, 1))
    cv2.imwrite(str(tmp_path / "class.jpg"), photo)
    video = tmp_path / "class.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 2.0, (1600, 900))
    writer.write(photo)
    writer.release()
    assert main(["classify-face", "--json", "--all-faces", str(tmp_path / "class.jpg"),
                 str(video)]) == 0
    still, frame = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert len(still["faces"]) == 12 and {f["label"] for f in still["faces"]} == {"happy"}
    assert frame["frame"] == 0 and frame["faces"] == []


def test_an_image_too_small_to_be_a_face_says_so_through_the_command(tmp_path, capsys):
    """The message was in crop_face, but classify_crop made a box of the whole image first,
    so `classify-face --whole-image` still named a box the user never gave."""
    cv2 = pytest.importorskip("cv2")
    cv2.imwrite(str(tmp_path / "dot.png"), np.zeros((1, 1), np.uint8))
    assert main(["classify-face", "--whole-image", str(tmp_path / "dot.png")]) == 1
    err = capsys.readouterr().err
    assert "a 1x1 pixel image is too small to hold a face" in err and "box" not in err, err
