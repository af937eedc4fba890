"""A cross-dataset check through detection: FER2013 faces pasted into whole frames.

FER2013 accuracy is measured on faces cropped by its makers; the device sees whole camera frames,
finds the face itself and crops it with its own code.  This builds a labelled set of such frames
from what we have (a FER2013 split's faces pasted at varied sizes, places, in-plane rotations and
lighting, on varied backgrounds, with blur and sensor noise; and head shots, each face alone
filling a 240x240 image under the same lighting, blur and noise) and scores a face model through
the device's own path (``edge.vision.open_face_detector`` + ``FaceClassifier.classify_frame``):

* detection rate: the largest box found overlaps the pasted face (IoU > 0.3);
* false faces: the share of empty scenes (the same backgrounds, lighting, blur and noise, no face)
  in which the detector finds one;
* detection rate by the face's share of the frame height (small faces are what the detector
  misses);
* end-to-end accuracy: the expression is right, a missed or wrong box counting as wrong;
* accuracy when found.

Scored against FER2013's own labels, or with ``--labels ferplus`` against the FER+ majority vote
(the faces without one are left out; :func:`convert.face.ferplus.majority_labels`).

Deterministic for a seed.  PrivateTest faces by default: the split that only reports.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.commands import positive_int

if TYPE_CHECKING:
    from edge.models.face import Face, FaceClassifier

__all__ = ["FullFrame", "GroupPhoto", "background", "turned_face", "paste", "full_frames",
           "head_shots", "group_photos", "empty_scenes", "frame_conditions", "found_faces",
           "evaluate_full_frames", "evaluate_group_photos", "register", "run"]


logger = logging.getLogger(__name__)

#: Frame sizes the device runs at (the Picamera2 lores stream) and a larger webcam one.
FRAME_SIZES: tuple[tuple[int, int], ...] = ((320, 240), (640, 480))
#: A group photo's size (a phone's photo, as classify-face reads it after shrinking: BlazeFace
#: looks at photos of at most 2048 pixels).
GROUP_PHOTO_SIZE = (1600, 1200)
#: The side of a head shot: a portrait photo's face, or a face close to the camera, that fills
#: the image (larger than the faces pasted into frames, at most 3/4 of their height).
HEAD_SHOT_SIDE = 240


@dataclasses.dataclass(frozen=True)
class FullFrame:
    """One grey frame with one pasted face: its box ``(x, y, w, h)`` (the face's rotated square's
    bounding box), label index and how it was made."""

    frame: np.ndarray
    box: tuple[int, int, int, int]
    label: int
    angle: float
    gamma: float


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Noise, a lit gradient, or blurred blobs (a room-like clutter), grey uint8."""
    import cv2

    kind = rng.integers(3)
    if kind == 0:
        bg = rng.normal(rng.uniform(60, 190), 25, (h, w))
    elif kind == 1:
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        a, b, c = rng.uniform(-120, 120, 3)
        bg = 128 + a * xx + b * yy + c * xx * yy + rng.normal(0, 6, (h, w))
    else:
        bg = np.full((h, w), rng.uniform(40, 200))
        for _ in range(int(rng.integers(4, 12))):
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            rw, rh = int(rng.integers(w // 16, w // 3)), int(rng.integers(h // 16, h // 3))
            bg[y : y + rh, x : x + rw] = rng.uniform(0, 255)
        bg = cv2.GaussianBlur(bg, (0, 0), rng.uniform(1, 6))
    return np.clip(bg, 0, 255).astype(np.uint8)


def turned_face(face: np.ndarray, side: int, angle: float, *, limit: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """``face`` resized to ``side`` and turned by ``angle`` degrees with its square: the pixels
    and the mask of the turned square's bounding square (at most ``limit`` pixels wide)."""
    import cv2

    face = cv2.resize(face, (side, side), interpolation=cv2.INTER_LINEAR)
    # Rotate the face with its square, paste only the square's pixels (the corners show
    # background, as a tilted head in a room does).
    diag = int(np.ceil(side * (abs(np.cos(np.radians(angle))) + abs(np.sin(np.radians(angle))))))
    diag = min(diag, limit)
    m = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
    m[:, 2] += (diag - side) / 2
    turned = cv2.warpAffine(face, m, (diag, diag), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.full((side, side), 255, np.uint8), m, (diag, diag)) > 127
    return turned, mask


def paste(frame: np.ndarray, turned: np.ndarray, mask: np.ndarray, x: int, y: int) -> None:
    """Paste :func:`turned_face`'s pixels into ``frame`` (in place) with their corner at x, y."""
    region = frame[y : y + turned.shape[0], x : x + turned.shape[1]]
    region[mask] = turned[mask]


def full_frames(
    faces: np.ndarray, labels: np.ndarray, *, size: tuple[int, int], n: int, seed: int = 0,
    max_angle: float = 20.0,
) -> Iterator[FullFrame]:
    """``min(n, len(faces))`` frames of ``size`` (w, h), each with one of ``faces`` pasted at a
    random place and size (1/5 to 3/4 of the frame height), turned by up to ``max_angle``
    degrees, under a random gamma (0.5-2, dim to bright), with mild blur and sensor noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    pick = rng.permutation(len(faces))[:n]
    for i in pick:
        frame = background(rng, h, w)
        side = int(rng.integers(h // 5, h * 3 // 4))
        angle = float(rng.uniform(-max_angle, max_angle))
        turned, mask = turned_face(faces[i], side, angle, limit=min(h, w) - 1)
        diag = turned.shape[0]
        x, y = int(rng.integers(0, w - diag)), int(rng.integers(0, h - diag))
        paste(frame, turned, mask, x, y)
        out, gamma = _as_photographed(rng, frame)
        yield FullFrame(out, (x, y, diag, diag), int(labels[i]), angle, gamma)


def head_shots(
    faces: np.ndarray, labels: np.ndarray, *, n: int, seed: int = 0, side: int = HEAD_SHOT_SIDE,
) -> Iterator[FullFrame]:
    """``min(n, len(faces))`` upright head shots: each of ``faces`` alone, resized to fill a
    ``side`` x ``side`` image, under :func:`full_frames`' lighting, blur and noise."""
    import cv2

    rng = np.random.default_rng(seed)
    for i in rng.permutation(len(faces))[:n]:
        face = cv2.resize(faces[i], (side, side), interpolation=cv2.INTER_LINEAR)
        out, gamma = _as_photographed(rng, face)
        yield FullFrame(out, (0, 0, side, side), int(labels[i]), 0.0, gamma)


@dataclasses.dataclass(frozen=True)
class GroupPhoto:
    """One grey photo with several pasted faces: their boxes and label indices."""

    frame: np.ndarray
    boxes: list[tuple[int, int, int, int]]
    labels: list[int]


def group_photos(
    faces: np.ndarray, labels: np.ndarray, *, n: int, seed: int = 0,
    size: tuple[int, int] = GROUP_PHOTO_SIZE, per_photo: tuple[int, int] = (3, 12),
    face_height: tuple[float, float] = (0.04, 0.15), max_angle: float = 15.0,
) -> Iterator[GroupPhoto]:
    """``n`` photos of ``size`` (w, h), each with ``per_photo`` faces (a group, a class photo)
    pasted apart from each other, each ``face_height`` of the photo's height (the faces of a
    group photo are a few percent of it), turned by up to ``max_angle`` degrees, under
    :func:`full_frames`' lighting, blur and noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    order = rng.permutation(len(faces))
    used = 0
    for _ in range(n):
        frame = background(rng, h, w)
        boxes: list[tuple[int, int, int, int]] = []
        chosen: list[int] = []
        for _ in range(int(rng.integers(per_photo[0], per_photo[1] + 1))):
            i = int(order[used % len(order)])
            used += 1
            side = int(rng.uniform(*face_height) * h)
            turned, mask = turned_face(faces[i], side, float(rng.uniform(-max_angle, max_angle)),
                                       limit=min(h, w) - 1)
            diag = turned.shape[0]
            for _ in range(20):  # a place clear of the faces already there
                x, y = int(rng.integers(0, w - diag)), int(rng.integers(0, h - diag))
                if all(x + diag <= bx or bx + bw <= x or y + diag <= by or by + bh <= y
                       for bx, by, bw, bh in boxes):
                    paste(frame, turned, mask, x, y)
                    boxes.append((x, y, diag, diag))
                    chosen.append(int(labels[i]))
                    break
        yield GroupPhoto(_as_photographed(rng, frame)[0], boxes, chosen)


def empty_scenes(*, size: tuple[int, int], n: int, seed: int = 0) -> Iterator[np.ndarray]:
    """``n`` frames of ``size`` (w, h) made as :func:`full_frames` makes them, without a face."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield _as_photographed(rng, background(rng, size[1], size[0]))[0]


def _as_photographed(rng: np.random.Generator, frame: np.ndarray) -> tuple[np.ndarray, float]:
    """``frame`` under a random gamma (0.5-2, dim to bright), half the time mildly blurred, with
    sensor noise; and the gamma."""
    import cv2

    gamma = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    out = 255.0 * (frame / 255.0) ** gamma
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.5))
    out = out + rng.normal(0, rng.uniform(1, 6), out.shape)
    return np.clip(out, 0, 255).astype(np.uint8), gamma


#: Bands of the face's height as a share of the frame's, for the detection rate by face size
#: (the detector's input is the frame shrunk to 128 pixels: small faces are what it misses).
FACE_HEIGHT_BANDS: tuple[tuple[str, float], ...] = (
    ("under 0.3", 0.3), ("0.3-0.5", 0.5), ("0.5-0.8", 0.8), ("0.8 and over", float("inf")))


def _height_band(share: float) -> str:
    return next(band for band, upper in FACE_HEIGHT_BANDS if share < upper)


def frame_conditions(max_angle: float = 20.0) -> dict[str, Callable[..., Iterator[FullFrame]]]:
    """What face-check scores, by name: :func:`full_frames` at each of :data:`FRAME_SIZES`
    (faces turned by up to ``max_angle`` degrees) and :func:`head_shots`; each called as
    ``(faces, labels, n=..., seed=...)``."""
    import functools

    conditions: dict[str, Callable[..., Iterator[FullFrame]]] = {
        f"{w}x{h}": functools.partial(full_frames, size=(w, h), max_angle=max_angle)
        for w, h in FRAME_SIZES}
    conditions["head shot"] = head_shots
    return conditions


def found_faces(clf: FaceClassifier, frames: Iterable[FullFrame]
                ) -> Iterator[tuple[FullFrame, Face | None]]:
    """Each of ``frames`` with the face ``clf`` (and its detector) reads on the pasted face: the
    largest box found, if it overlaps the pasted face's box (IoU > 0.3); else None."""
    from edge.vision.boxes import box_iou

    for item in frames:
        got = clf.classify_frame(item.frame)
        found = bool(got) and box_iou(got[0].box, [item.box])[0] > 0.3
        yield item, got[0] if found else None


def evaluate_full_frames(
    model: str | Path, faces: np.ndarray, labels: np.ndarray, label_names: Sequence[str], *,
    n: int = 500, seed: int = 0, detector: str = "auto", max_angle: float = 20.0,
    retry_margin: float | None = None, retry_tiles: float | None = None,
) -> dict[str, Any]:
    """Detection rate and end-to-end accuracy of ``model`` on :func:`full_frames`, per frame size,
    and on :func:`head_shots`, through the device's detector and classifier (``retry_margin``,
    ``retry_tiles``: BlazeFace's later looks, None = its default)."""
    import contextlib

    from edge.errors import ModelError
    from edge.models.face import FaceClassifier
    from edge.vision import open_face_detector

    from ..metrics import classification_metrics

    out: dict[str, Any] = {"model": str(model), "detector": detector, "frames_per_size": n,
                           "seed": seed, "max_angle_deg": max_angle, "sizes": {}}
    conditions = frame_conditions(max_angle)
    opened = open_face_detector(detector, retry_margin=retry_margin, retry_tiles=retry_tiles)
    with contextlib.closing(opened) as det, FaceClassifier(model, detector=det) as clf:
        out["detector"] = type(det).__name__
        names = list(label_names)
        if set(clf.labels) != set(names):
            raise ModelError(f"{model}: labels {list(clf.labels)} are not FER2013's {names}; "
                             "face-check scores a FER2013 face expression model")
        for condition, frames in conditions.items():
            total = 0
            truth: list[int] = []  # the detected faces' labels and decisions, the split's order
            said: list[int] = []
            by_height: dict[str, list[bool]] = {band: [] for band, _ in FACE_HEIGHT_BANDS}
            for item, face in found_faces(clf, frames(faces, labels, n=n, seed=seed)):
                total += 1
                by_height[_height_band(item.box[3] / item.frame.shape[0])].append(face is not None)
                if face is None:
                    continue
                truth.append(item.label)
                said.append(names.index(face.label))
            scored = classification_metrics(truth, said, names)
            found, right = len(truth), int(np.trace(scored["confusion"]))
            # Mean per-class recall: what a set with every expression in equal numbers (posed
            # photo sets) would see; accuracy follows the split's own mix, mostly happy and neutral.
            out["sizes"][condition] = {
                "frames": total, "detected": found / max(total, 1),
                "accuracy": right / max(total, 1), "accuracy_when_detected": right / max(found, 1),
                "mean_recall_when_detected": scored["uar"],
                "recall_when_detected": scored["per_class_recall"],
                "detected_by_face_height": {band: (sum(hits) / len(hits), len(hits))
                                            for band, hits in by_height.items() if hits}}
        out["empty_scenes"] = {
            f"{w}x{h}": sum(bool(det.detect(frame))
                            for frame in empty_scenes(size=(w, h), n=n, seed=seed)) / n
            for w, h in (*FRAME_SIZES, (HEAD_SHOT_SIDE, HEAD_SHOT_SIDE))}
    return out


def evaluate_group_photos(
    model: str | Path, faces: np.ndarray, labels: np.ndarray, label_names: Sequence[str], *,
    n: int = 100, seed: int = 0, scan_levels: Sequence[int] = (0, 2),
) -> dict[str, Any]:
    """Every face of :func:`group_photos` as ``classify-face --all-faces`` finds and reads
    them, with BlazeFace's photo scan at each of ``scan_levels`` side by side (0: the camera's
    looks only): the share of faces found (a box overlapping it, IoU > 0.3), boxes on no face
    per photo, the expression right among all faces and among those found, and the share of
    :func:`empty_scenes` of the same size with a face found."""
    import contextlib

    from edge.models.face import FaceClassifier
    from edge.vision import open_face_detector
    from edge.vision.boxes import box_iou

    names = list(label_names)
    out: dict[str, Any] = {"photos": n, "size": list(GROUP_PHOTO_SIZE), "scan_levels": {}}
    for levels in scan_levels:
        det = open_face_detector("blazeface", largest_only=False, scan_levels=levels)
        with contextlib.closing(det), FaceClassifier(model) as clf:
            faces_n = found = right = false = 0
            for photo in group_photos(faces, labels, n=n, seed=seed):
                boxes = det.detect(photo.frame)
                faces_n += len(photo.boxes)
                matched: set[int] = set()
                for box in boxes:
                    overlap = box_iou(box, photo.boxes) if photo.boxes else np.zeros(1)
                    k = int(np.argmax(overlap))
                    if overlap[k] <= 0.3 or k in matched:
                        false += 1
                        continue
                    matched.add(k)
                    found += 1
                    said = clf.classify_crop(photo.frame, box).label
                    right += names.index(said) == photo.labels[k]
            empty = sum(bool(det.detect(frame)) for frame in
                        empty_scenes(size=GROUP_PHOTO_SIZE, n=n, seed=seed)) / n
        out["scan_levels"][str(levels)] = {
            "faces": faces_n, "found": found / max(faces_n, 1),
            "false_boxes_per_photo": false / n, "accuracy": right / max(faces_n, 1),
            "accuracy_when_found": right / max(found, 1), "empty_scenes_with_a_face": empty}
    return out


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "face-check",
        help="score a face model through detection on whole frames (FER faces pasted in scenes)",
        description="\n\n".join(__doc__.split("\n\n")[1:]) if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", type=Path, default=None,
                   help="face .tflite with its manifest (default: the shipped model)")
    p.add_argument("--fer", type=Path, required=True, help="fer2013_48.npz")
    p.add_argument("--split", default="PrivateTest", choices=("PublicTest", "PrivateTest"))
    p.add_argument("--frames", type=positive_int, default=500,
                   help="frames per frame size (at most the split's faces, each once)")
    p.add_argument("--labels", default="fer2013", choices=("fer2013", "ferplus"),
                   help="score against FER2013's own labels or the FER+ majority vote")
    p.add_argument("--ferplus", type=Path, default=None,
                   help="ferplus_votes.npz for --labels ferplus (default: next to --fer)")
    p.add_argument("--detector", default="auto", choices=("auto", "haar", "blazeface"))
    p.add_argument("--max-angle", type=float, default=20.0, help="in-plane rotation, degrees")
    p.add_argument("--retry-margin", type=float, default=None, metavar="M",
                   help="BlazeFace's second look at a frame with no face, in a grey border M of "
                   "its longest side wide (default 0.5; 0 = never, to measure what it adds)")
    p.add_argument("--retry-tiles", type=float, default=None, metavar="T",
                   help="BlazeFace's last looks, in the frame's four corner tiles, T of its "
                   "sides each (default 0.6; 0 = never)")
    p.add_argument("--group-photos", type=int, default=100, metavar="N",
                   help="also N group photos (3-12 small faces each), read as classify-face "
                   "--all-faces reads photos, with and without its scan of small tiles (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge.models.face import FACE_MODEL_FILE
    from edge.paths import default_model

    from .data import load_fer
    from .ferplus import votes_beside

    if args.labels == "ferplus":
        split = load_fer(args.fer, args.split, ferplus=args.ferplus or votes_beside(args.fer))
        majority = split.majority()
        assert majority is not None  # load_fer was given the votes
        split = split.subset(np.flatnonzero(majority >= 0))
        labels = majority[majority >= 0]
    else:
        split = load_fer(args.fer, args.split)
        labels = split.y
    model = args.model or default_model(FACE_MODEL_FILE)
    result = evaluate_full_frames(model, split.x, labels, split.labels, n=args.frames,
                                  seed=args.seed, detector=args.detector,
                                  max_angle=args.max_angle, retry_margin=args.retry_margin,
                                  retry_tiles=args.retry_tiles)
    if args.group_photos > 0:
        from edge.commands.classify_face import SCAN_LEVELS

        result["group_photos"] = evaluate_group_photos(
            model, split.x, labels, split.labels, n=args.group_photos, seed=args.seed,
            scan_levels=(0, SCAN_LEVELS))
    result["split"] = args.split
    result["labels"] = args.labels
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{model}: {args.split} faces pasted into whole frames ({args.frames} per size, rotated "
          f"up to {args.max_angle:g} deg) and as {HEAD_SHOT_SIDE}x{HEAD_SHOT_SIDE} head shots "
          f"(gamma 0.5-2, blur, noise), {result['detector']}, "
          f"{'FER+ majority' if args.labels == 'ferplus' else 'FER2013'} labels")
    print(f"{'frame':>9} {'detected':>9} {'accuracy':>9} {'when detected':>14} "
          f"{'mean recall when detected':>26}")
    for size, r in result["sizes"].items():
        print(f"{size:>9} {r['detected']:9.3f} {r['accuracy']:9.3f} "
              f"{r['accuracy_when_detected']:14.3f} {r['mean_recall_when_detected']:26.3f}")
    for size, r in result["sizes"].items():
        print(f"{size:>9} detected by the face's share of the frame height: " + ", ".join(
            f"{band} {share:.3f} (n={count})"
            for band, (share, count) in r["detected_by_face_height"].items()))
    print(f"empty scenes ({args.frames} per size) with a face found: " + ", ".join(
        f"{size} {share:.3f}" for size, share in result["empty_scenes"].items()))
    if "group_photos" in result:
        g = result["group_photos"]
        print(f"group photos ({g['photos']}, {g['size'][0]}x{g['size'][1]}, every face; "
              f"classify-face --all-faces):")
        print(f"{'scan levels':>12} {'found':>7} {'false boxes/photo':>18} {'accuracy':>9} "
              f"{'when found':>11} {'empty photos with a face':>25}")
        for levels, r in g["scan_levels"].items():
            print(f"{levels:>12} {r['found']:7.3f} {r['false_boxes_per_photo']:18.2f} "
                  f"{r['accuracy']:9.3f} {r['accuracy_when_found']:11.3f} "
                  f"{r['empty_scenes_with_a_face']:25.3f}")
    return 0
