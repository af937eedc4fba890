"""BlazeFace short-range face detection: MediaPipe's ``face_detection_short_range.tflite``
(Apache-2.0) run by our own interpreter, with our own SSD anchors and box decoder.

The model ships in ``models/`` with its manifest, Apache-2.0 notice and provenance; it was taken
out of the ``mediapipe==0.10.21`` wheel by ``emotion-convert blazeface`` (``pip download
--no-deps``, never installed), which can fetch it again.  Its sha256 is checked at load.  It looks for faces
within ~2 m of the camera in a 128x128 RGB image; grey frames are fed as three equal channels.
The detector has the same ``detect(gray) -> [(x, y, w, h), ...]`` contract as
:class:`edge.vision.haar.HaarFaceDetector`, largest face first.

Decoding follows MediaPipe's ``face_detection_short_range`` graph: 896 anchors on a 16x16 grid
(2 per cell, stride 8) and an 8x8 grid (6 per cell, stride 16), all of unit size; box offsets are
in input pixels (scale 128); scores are sigmoids; overlapping boxes are merged by weighted
non-maximum suppression (IoU 0.3).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import optional
from ..errors import ConfigError, ModelError
from ..interfaces import Box, FaceBox, GrayFrame, roll_of
from ..lifecycle import Closeable
from ..models.manifest import sha256_of
from ..models.runtime import open_interpreter
from ..paths import default_model
from .boxes import box_iou

__all__ = [
    "BLAZEFACE_MODEL_FILE",
    "BLAZEFACE_SHA256",
    "BlazeFaceConfig",
    "BlazeFaceDetector",
    "short_range_anchors",
    "decode_detections",
    "eye_roll",
    "weighted_nms",
]

logger = logging.getLogger(__name__)

BLAZEFACE_MODEL_FILE = "face_detection_short_range.tflite"
#: sha256 of the file inside mediapipe-0.10.21 (identical in every platform's wheel).
BLAZEFACE_SHA256 = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
INPUT_SIZE = 128
#: Longest side a frame is looked at with: a larger photo is shrunk to it first (it is shrunk to
#: 128 in the end; detection is unchanged, memory and time are not spent on its pixels).
MAX_DETECT_SIDE = 2048


@dataclasses.dataclass(frozen=True)
class BlazeFaceConfig:
    """Detection settings.

    Attributes:
        score_threshold: lowest face probability kept (MediaPipe's default 0.5).
        iou_threshold: boxes overlapping more than this are merged into one face.
        min_size: smallest face side returned, in frame pixels (0 = any).
        largest_only: return only the largest face (the appliance looks at one person).
        box_scale: the box is scaled by this about its centre ...
        box_shift: ... and its centre moved down by this fraction of its height (negative = up).
            BlazeFace's box runs from the eyebrows to the chin; these two map it onto the
            framing of FER2013 faces, which the expression model was trained on and which
            Haar's box already matches.  Fitted on FER2013 PublicTest faces pasted into frames
            (BlazeFace's box: 0.89 of the face's side, 12% of it low).
        retry_margin: when a frame has no face, look again with it set in a grey border this
            fraction of its longest side wide (0 = never).  A face that fills the frame (a head
            shot, someone close to the lens) is larger than the faces the short-range model
            finds well: it finds 90% of FER2013's faces enlarged to fill the image in one look,
            97-98% in two (``emotion-convert face-check``, models/README.md).
        retry_tiles: when the border finds no face either, look at the frame's four corner
            tiles, each this share of its width and height (0 = never).  The model sees the
            frame shrunk to 128 pixels, so a face under a third of its height (someone two or
            more metres from a 320x240 camera) is often too small for it; in a tile it is
            larger: faces under a third of the frame's height are found 78-89% of the time
            instead of 34-42%.  Four more invokes, on frames with no face only.
        spread_looks: make one later look per faceless frame, in turn (the border, then each
            tile), instead of all of them.  For a camera, whose next frame comes a cycle later,
            this keeps a frame with nobody in view at two invokes and still finds a small face
            within five frames; the look that found a face stays first for the next frame.  A
            still image gets every look at once.
        retry_score: the later looks' lowest face probability, higher than the first's: the
            border's straight edges can themselves look like a face's outline to the model, and
            four tiles are four more chances of a false face.
        scan_levels: for still photos (``classify-face``; 0 for a camera): also look at the
            photo in overlapping square tiles, at this many finer levels, each tile half the
            previous level's side (the first ``retry_tiles`` of the longest side).  The faces of
            a group photo or of someone far off in a landscape are a few percent of the photo:
            shrunk to 128 pixels in one look they are a pixel or two wide.  With
            ``largest_only`` the tiles are looked at only when no other look found a face;
            otherwise always, so that every face of a group is found.
    """

    score_threshold: float = 0.5
    iou_threshold: float = 0.3
    min_size: int = 0
    largest_only: bool = True
    box_scale: float = 1.12
    box_shift: float = -0.07
    retry_margin: float = 0.5
    retry_tiles: float = 0.6
    spread_looks: bool = False
    retry_score: float = 0.7
    scan_levels: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.score_threshold < 1.0:
            raise ConfigError(
                f"BlazeFace score_threshold {self.score_threshold!r} must be in (0, 1)")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ConfigError(f"BlazeFace iou_threshold {self.iou_threshold!r} must be in (0, 1]")
        if self.min_size < 0:
            raise ConfigError(f"BlazeFace min_size {self.min_size!r} must be >= 0")
        if not 0.5 <= self.box_scale <= 2.0 or not -0.5 <= self.box_shift <= 0.5:
            raise ConfigError(f"BlazeFace box_scale {self.box_scale!r} must be in [0.5, 2] and "
                              f"box_shift {self.box_shift!r} in [-0.5, 0.5]")
        if not 0.0 <= self.retry_margin <= 2.0:
            raise ConfigError(f"BlazeFace retry_margin {self.retry_margin!r} must be in [0, 2]")
        if self.retry_tiles and not 0.5 <= self.retry_tiles < 1.0:
            raise ConfigError(f"BlazeFace retry_tiles {self.retry_tiles!r} must be 0 or in "
                              f"[0.5, 1)")
        if not 0 <= self.scan_levels <= MAX_SCAN_LEVELS:
            raise ConfigError(f"BlazeFace scan_levels {self.scan_levels!r} must be in "
                              f"[0, {MAX_SCAN_LEVELS}]")
        if not self.score_threshold <= self.retry_score < 1.0:
            raise ConfigError(f"BlazeFace retry_score {self.retry_score!r} must be in "
                              f"[score_threshold ({self.score_threshold!r}), 1)")


#: Finest tiles of a photo's scan, in pixels of the photo as detected: a face in a smaller
#: tile would be a few pixels of the photo, too few to read an expression from.
MIN_SCAN_TILE = 96
#: Levels of a scan at most: the third's tiles are 0.075 of the photo's side, ~500 invokes.
MAX_SCAN_LEVELS = 3


def _contained(boxes: list[Box], share: float = 0.5) -> list[Box]:
    """``boxes`` without those lying more than ``share`` inside a larger one: a tile's edge
    cuts a face into a part that another tile sees whole, and the part, much smaller than the
    whole face, overlaps it too little for :func:`_distinct` to take it for the same face."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True):
        x0, y0, w, h = box[:4]
        inside = [max(0, min(x0 + w, k[0] + k[2]) - max(x0, k[0]))
                  * max(0, min(y0 + h, k[1] + k[3]) - max(y0, k[1])) for k in kept]
        if not inside or max(inside) <= share * w * h:
            kept.append(box)
    return kept


#: One look at a frame: the boxes it finds, in the frame's coordinates.
Look = Callable[[], list[Box]]


def _distinct(boxes: list[Box], iou_threshold: float) -> list[Box]:
    """``boxes`` without those overlapping a larger one by more than ``iou_threshold``: a face
    seen in two overlapping tiles is kept once, by its larger box (the other may be cut by a
    tile's edge)."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True):
        if not kept or box_iou(box, kept).max() <= iou_threshold:
            kept.append(box)
    return kept


def short_range_anchors() -> np.ndarray:
    """Anchor centres ``(896, 2)`` as ``(x, y)`` in [0, 1], in the model's output order.

    MediaPipe's SSD anchor options for this model: 4 layers, strides 8, 16, 16, 16, one aspect
    ratio plus one interpolated scale per layer, fixed anchor size.  Layers of equal stride share
    a grid, so there are 2 anchors per cell on the 16x16 grid and 6 on the 8x8 grid.
    """
    centres = []
    for stride, per_cell in ((8, 2), (16, 6)):
        n = INPUT_SIZE // stride
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def decode_detections(
    regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, score_threshold: float,
    *, keypoints: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(K, 4)`` as ``(x, y, w, h)`` in [0, 1] input coordinates and their scores ``(K,)``
    for the anchors scoring at least ``score_threshold``; with ``keypoints``, each row goes on
    with the 6 keypoints' ``(x, y)`` (``(K, 16)``: right eye, left eye, nose tip, mouth centre,
    right ear, left ear; "right" is the person's).

    ``regressors`` is ``(896, 16)`` (box centre offset, size, then 6 keypoints, in input pixels);
    ``logits`` is ``(896,)``.
    """
    # Clipping as MediaPipe does (score_clipping_thresh 100) keeps exp() finite.
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100.0, 100.0)))
    keep = scores >= score_threshold
    r = regressors[keep].astype(np.float64) / INPUT_SIZE
    a = anchors[keep]
    w, h = r[:, 2], r[:, 3]
    boxes = np.stack([a[:, 0] + r[:, 0] - w / 2, a[:, 1] + r[:, 1] - h / 2, w, h], axis=1)
    if keypoints:
        points = r[:, 4:16] + np.tile(a, 6)
        boxes = np.concatenate([boxes, points], axis=1)
    return boxes, scores[keep]


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float
) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted NMS: the best box and every box overlapping it above
    ``iou_threshold`` are merged into their score-weighted mean; repeat on the rest.
    Returns ``[(box, score), ...]`` best first (score = the best box's).  Columns after the
    first 4 (keypoints) are merged with the same weights."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores = boxes[order], scores[order]
    out = []
    while len(boxes):
        overlap = box_iou(boxes[0, :4].tolist(), boxes[:, :4]) > iou_threshold
        overlap[0] = True
        w = scores[overlap]
        out.append(((boxes[overlap] * w[:, None]).sum(0) / w.sum(), float(scores[0])))
        boxes, scores = boxes[~overlap], scores[~overlap]
    return out


def eye_roll(eyes: np.ndarray) -> float:
    """Degrees the line through two eyes ``(x0, y0, x1, y1)`` turns clockwise from level (image
    y down), in (-90, 90]: which eye is which does not matter (a mirrored camera swaps them)."""
    dx, dy = float(eyes[2] - eyes[0]), float(eyes[3] - eyes[1])
    if dx < 0 or (dx == 0 and dy < 0):
        dx, dy = -dx, -dy
    return float(np.degrees(np.arctan2(dy, dx)))


def _starts(length: int, tile: int) -> list[int]:
    """Where tiles of ``tile`` pixels start along ``length``, half a tile apart, the last one
    flush with the end."""
    starts = list(range(0, length - tile, max(1, tile // 2)))
    return starts + [length - tile]


class BlazeFaceDetector(Closeable):
    """Face boxes ``(x, y, w, h)`` in frame pixels, largest first, from BlazeFace short-range;
    each a :class:`~edge.interfaces.FaceBox` whose ``roll`` is the turn of the eye line.

    ``model`` is the ``.tflite`` path (default: ``face_detection_short_range.tflite`` in the model
    folders, see :mod:`edge.paths`).  The frame is letterboxed to a square (so faces keep their
    shape), resized to 128x128 and scaled to [-1, 1].
    """

    def __init__(
        self,
        model: str | Path | None = None,
        config: BlazeFaceConfig | None = None,
        *,
        num_threads: int = 1,
        runtime: str | None = None,
    ) -> None:
        self.config = config or BlazeFaceConfig()
        if model is None:
            model = default_model(BLAZEFACE_MODEL_FILE, otherwise=(
                "reinstall emotion-edge, or fetch BlazeFace again with `emotion-convert "
                "blazeface`"))
        self.path = Path(model)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: BlazeFace model not found; fetch it with "
                             f"`emotion-convert blazeface --out {self.path.parent}`")
        # The decoder below is written for this one file: any other (a damaged copy, a
        # different BlazeFace) would give wrong boxes without an error.
        digest = sha256_of(self.path)
        if digest != BLAZEFACE_SHA256:
            raise ModelError(f"{self.path}: sha256 {digest[:12]}... is not BlazeFace short-range "
                             f"from mediapipe 0.10.21; fetch it again with `emotion-convert "
                             f"blazeface --out {self.path.parent}`")
        self.runtime, self._interpreter = open_interpreter(
            self.path, num_threads=num_threads, runtime=runtime)
        self._in = self._interpreter.get_input_details()[0]
        outs = {d["name"]: d for d in self._interpreter.get_output_details()}
        shapes = {name: tuple(int(v) for v in d["shape"]) for name, d in outs.items()}
        if (tuple(int(v) for v in self._in["shape"]) != (1, INPUT_SIZE, INPUT_SIZE, 3)
                or shapes.get("regressors") != (1, 896, 16)
                or shapes.get("classificators") != (1, 896, 1)):
            raise ModelError(
                f"{self.path}: not BlazeFace short-range (input {tuple(self._in['shape'])}, "
                f"outputs {shapes}); fetch the right file with `emotion-convert blazeface`")
        self._regressors = outs["regressors"]["index"]
        self._classificators = outs["classificators"]["index"]
        self._anchors = short_range_anchors()
        # Interpreters are not thread-safe.
        self._lock = threading.Lock()
        self._turn = 0  # the next later look, with config.spread_looks
        # Pay XNNPACK's weight packing at load, not in the first real-time cycle.
        self._invoke(np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), np.float32))

    def _invoke(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if self._closed:
                raise ModelError(f"{self.path}: BlazeFace detector is closed")
            self._interpreter.set_tensor(self._in["index"], x)
            self._interpreter.invoke()
            return (self._interpreter.get_tensor(self._regressors)[0],
                    self._interpreter.get_tensor(self._classificators)[0, :, 0])

    def detect(self, gray: GrayFrame) -> list[Box]:
        """Return face boxes in ``gray``'s pixel coordinates; an empty list means no face.

        A frame with no face is looked at again: in a grey border (``config.retry_margin``), so
        a face that fills it is found, then in four corner tiles (``config.retry_tiles``), so a
        small face is: up to five more invokes for an empty frame (one, in turn, with
        ``config.spread_looks``), none for a frame whose face the first look finds."""
        if gray.ndim != 2:
            raise ValueError(f"BlazeFace expects a 2-D grey frame, got shape {gray.shape}")
        if max(gray.shape) > MAX_DETECT_SIDE:
            return self._detect_shrunk(gray)
        cfg = self.config
        found = self._detect(gray, 0, 0, cfg.score_threshold)
        if not found:
            border, tiles = self._later_looks(gray)
            if cfg.spread_looks:
                looks = border + tiles
                if looks:
                    found = looks[self._turn % len(looks)]()
                    # The look that found a face is the next frame's too: the face is likely
                    # still there, and the appliance confirms a new face on the next frame.
                    if not found:
                        self._turn += 1
            else:
                if border:  # at most one
                    found = border[0]()
                if not found and tiles:
                    found = _distinct([box for look in tiles for box in look()],
                                      cfg.iou_threshold)
        if cfg.scan_levels and not (found and cfg.largest_only):
            found = _contained(_distinct(found + [box for look in self._scan(gray)
                                                  for box in look()], cfg.iou_threshold))
        found.sort(key=lambda b: b[2] * b[3], reverse=True)
        return found[:1] if cfg.largest_only else found

    def _detect_shrunk(self, gray: GrayFrame) -> list[Box]:
        """:meth:`detect` on a copy shrunk to :data:`MAX_DETECT_SIDE` pixels, boxes given back
        in ``gray``'s pixels: the looks letterbox the frame at its own size before shrinking it
        to 128, which for a 12000x9000 photo took 590 MB."""
        cv2 = optional.cv2()
        h, w = gray.shape
        scale = MAX_DETECT_SIDE / max(h, w)
        small = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=cv2.INTER_AREA)
        out: list[Box] = []
        for box in self.detect(small):
            x0, y0 = round(box[0] / scale), round(box[1] / scale)
            x1 = min(w, round((box[0] + box[2]) / scale))
            y1 = min(h, round((box[1] + box[3]) / scale))
            out.append(FaceBox(x0, y0, x1 - x0, y1 - y0, roll=roll_of(box)))
        return out

    def _later_looks(self, gray: GrayFrame) -> tuple[list[Look], list[Look]]:
        """The looks at a frame the first look found no face in: in a grey border (at most
        one), and in each of the four corner tiles (``config.retry_tiles`` of each side, so
        they overlap), each giving boxes in ``gray``'s coordinates."""
        cfg = self.config
        border: list[Look] = []
        if cfg.retry_margin:
            margin = round(cfg.retry_margin * max(gray.shape))
            border.append(lambda: self._detect(gray, margin, 128, cfg.retry_score))
        tiles: list[Look] = []
        if cfg.retry_tiles:
            h, w = gray.shape
            th, tw = round(h * cfg.retry_tiles), round(w * cfg.retry_tiles)
            tiles = [functools.partial(self._detect_in_tile, gray, x0, y0, tw, th)
                     for y0 in (0, h - th) for x0 in (0, w - tw)]
        return border, tiles

    def _scan(self, gray: GrayFrame) -> list[Look]:
        """A photo's scan (``config.scan_levels``): square tiles overlapping by half, each
        level's half the side of the one before, none under :data:`MIN_SCAN_TILE` pixels."""
        h, w = gray.shape
        looks: list[Look] = []
        side = max(h, w) * (self.config.retry_tiles or 0.6)
        previous = 0
        for _ in range(self.config.scan_levels):
            side /= 2
            t = min(round(side), h, w)
            if t < MIN_SCAN_TILE:
                break
            if t == previous:  # a strip of a panorama: the short side caps both levels
                continue
            previous = t
            for y0 in _starts(h, t):
                looks += [functools.partial(self._detect_in_tile, gray, x0, y0, t, t)
                          for x0 in _starts(w, t)]
        return looks

    def _detect_in_tile(self, gray: GrayFrame, x0: int, y0: int, tw: int, th: int) -> list[Box]:
        return [FaceBox(b[0] + x0, b[1] + y0, b[2], b[3], roll=roll_of(b))
                for b in self._detect(gray[y0:y0 + th, x0:x0 + tw], 0, 0, self.config.retry_score)]

    def _detect(self, gray: GrayFrame, border: int, fill: int, threshold: float) -> list[Box]:
        """Faces in ``gray`` letterboxed to a square with ``border`` more pixels of ``fill`` on
        every side, scored at ``threshold``; boxes clipped to ``gray``."""
        cv2 = optional.cv2()
        h, w = gray.shape
        side = max(h, w) + 2 * border
        square = np.full((side, side), fill, np.uint8)
        top, left = (side - h) // 2, (side - w) // 2
        square[top:top + h, left:left + w] = gray
        small = cv2.resize(square, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
        x = small.astype(np.float32) * (2.0 / 255.0) - 1.0
        regressors, logits = self._invoke(np.repeat(x[None, :, :, None], 3, axis=-1))
        cfg = self.config
        boxes, scores = decode_detections(regressors, logits, self._anchors, threshold,
                                          keypoints=True)
        found: list[Box] = []
        for box, _ in weighted_nms(boxes, scores, cfg.iou_threshold):
            cx, cy, bw, bh = (box[0] + box[2] / 2, box[1] + box[3] * (0.5 + cfg.box_shift),
                              box[2] * cfg.box_scale, box[3] * cfg.box_scale)
            bx, by, bw, bh = np.array([cx - bw / 2, cy - bh / 2, bw, bh]) * side
            x0, y0 = max(0, round(bx - left)), max(0, round(by - top))
            x1, y1 = min(w, round(bx + bw - left)), min(h, round(by + bh - top))
            if x1 - x0 >= max(cfg.min_size, 1) and y1 - y0 >= max(cfg.min_size, 1):
                found.append(FaceBox(x0, y0, x1 - x0, y1 - y0, roll=eye_roll(box[4:8])))
        return found

    def close(self) -> None:
        """Release the interpreter; idempotent (under the lock: a cycle may be invoking)."""
        with self._lock:
            super().close()

    def _close(self) -> None:
        self._interpreter = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<BlazeFaceDetector {self.path.name} {self.config} {state}>"
