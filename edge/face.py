"""Face preprocessing, detection and classification, shared by training and the device.

Training (``convert.face``) and the device call the same :func:`crop_face`, so a FER2013 image
(already a 48x48 face crop) and a face found by the Haar detector in a camera frame reach the
network through identical code: expand the box by ``margin``, clip to the frame, resize to
``size`` x ``size`` with area interpolation, and scale grey levels to ``[-1, 1]``.

OpenCV and the TFLite interpreter are imported inside the functions that need them, so
``import edge.face`` works on any machine with NumPy.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import (
    ConfigError, ImageFileError, ManifestMismatchError, MissingDependencyError, ModelError,
)

__all__ = [
    "FACE_MODEL_FILE",
    "FACE_TASK",
    "FER_LABELS",
    "FacePreprocessConfig",
    "FaceDetectorConfig",
    "Face",
    "to_gray",
    "normalise",
    "crop_face",
    "crop_faces",
    "HaarFaceDetector",
    "box_iou",
    "DETECTORS",
    "open_face_detector",
    "FaceClassifier",
    "face_probabilities",
    "read_gray_image",
]

logger = logging.getLogger(__name__)

#: File name of the shipped face model (found with :func:`edge.paths.default_model`).
FACE_MODEL_FILE = "face_expression_int8.tflite"
#: Manifest ``task`` of face expression models; :class:`FaceClassifier` refuses any other.
FACE_TASK = "face_expression"

#: FER2013 label order (index = FER class id).
FER_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

_NORMALISATIONS = ("minus1_1", "zero_1")


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise MissingDependencyError(
            "OpenCV is not installed; pip install 'emotion-edge[device]' "
            "(opencv-python-headless>=4.8,<5)"
        ) from None
    return cv2


@dataclasses.dataclass(frozen=True)
class FacePreprocessConfig:
    """How a detected face becomes the network's input; recorded in the model manifest.

    Attributes:
        size: side of the square network input, pixels.
        margin: fraction of the box width/height added on every side before cropping
            (0.0 = the detector's box as is); clipped at the frame border.
        normalisation: ``"minus1_1"`` maps grey 0..255 to -1..1, ``"zero_1"`` to 0..1.
        interpolation: OpenCV resize interpolation name (``"area"`` or ``"linear"``).
    """

    size: int = 48
    margin: float = 0.0
    normalisation: str = "minus1_1"
    interpolation: str = "area"

    def __post_init__(self) -> None:
        if not 8 <= int(self.size) <= 512:
            raise ConfigError(f"face size {self.size!r} is out of range 8..512 pixels")
        if not 0.0 <= float(self.margin) <= 1.0:
            raise ConfigError(f"face margin {self.margin!r} is out of range 0..1")
        if self.normalisation not in _NORMALISATIONS:
            raise ConfigError(
                f"face normalisation {self.normalisation!r} is unknown; choose one of "
                f"{', '.join(_NORMALISATIONS)}"
            )
        if self.interpolation not in ("area", "linear"):
            raise ConfigError(
                f"face interpolation {self.interpolation!r} is unknown; choose area or linear"
            )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["kind"] = "face_crop"
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FacePreprocessConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known - {"kind"}
        if unknown:
            raise ConfigError(f"unknown face preprocessing keys: {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclasses.dataclass(frozen=True)
class FaceDetectorConfig:
    """Haar cascade settings, tuned for 320x240 lores frames.

    Attributes:
        scale_factor: image pyramid step (>1); smaller finds more sizes but costs more.
        min_neighbors: overlapping detections needed to accept a face; higher = fewer false faces.
        min_size: smallest face side searched, pixels (24 suits a face ~1-2 m away at 320x240).
        max_side: frames larger than this (longest side, pixels) are downscaled before detection
            and boxes scaled back, so 640x480 costs about what 320x240 does; 0 disables.
        equalize: equalise the histogram before detection (helps dim indoor light).
        largest_only: return only the largest face (the appliance looks at one person).
    """

    scale_factor: float = 1.15
    min_neighbors: int = 4
    min_size: int = 24
    max_side: int = 320
    equalize: bool = True
    largest_only: bool = True

    def __post_init__(self) -> None:
        if not self.scale_factor > 1.0:
            raise ConfigError(f"detector scale_factor {self.scale_factor!r} must be > 1")
        if self.min_neighbors < 0 or self.min_size < 8 or self.max_side < 0:
            raise ConfigError(
                f"detector min_neighbors/min_size/max_side out of range: {self.min_neighbors}, "
                f"{self.min_size}, {self.max_side}"
            )


@dataclasses.dataclass(frozen=True)
class Face:
    """One classified face: box ``(x, y, w, h)`` in frame pixels, label and probabilities."""

    box: tuple[int, int, int, int]
    label: str
    scores: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [int(v) for v in self.box],
            "label": self.label,
            "scores": {k: round(float(v), 4) for k, v in self.scores.items()},
        }


def to_gray(image: np.ndarray) -> np.ndarray:
    """Return a 2-D uint8 grey image from grey, BGR or BGRX (OpenCV / Picamera2 order) input."""
    image = np.asarray(image)
    if image.ndim == 2:
        gray = image
    elif image.ndim == 3 and image.shape[2] == 1:
        gray = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        cv2 = _cv2()
        code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        gray = cv2.cvtColor(image, code)
    else:
        raise ImageFileError(f"image of shape {image.shape} is neither grey nor BGR/BGRX")
    if gray.dtype != np.uint8:
        raise ImageFileError(f"image dtype {gray.dtype} is not uint8")
    return np.ascontiguousarray(gray)


def normalise(gray: np.ndarray, cfg: FacePreprocessConfig) -> np.ndarray:
    """Grey levels (uint8, any shape) to the network's float range."""
    x = np.asarray(gray, dtype=np.float32) / 255.0
    if cfg.normalisation == "minus1_1":
        x = (x - 0.5) * 2.0
    return x


def _expand_box(
    box: Sequence[int], shape: tuple[int, int], margin: float
) -> tuple[int, int, int, int]:
    x, y, w, h = (int(v) for v in box)
    dx, dy = int(round(w * margin)), int(round(h * margin))
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(shape[1], x + w + dx), min(shape[0], y + h + dy)
    return x0, y0, x1, y1


def crop_face(
    gray: np.ndarray, box: Sequence[int] | None, cfg: FacePreprocessConfig
) -> np.ndarray:
    """Crop ``box`` (``None`` = whole image) from a grey frame -> float32 ``(size, size, 1)``."""
    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ImageFileError(f"crop_face needs a 2-D uint8 grey image, got {gray.shape} {gray.dtype}")
    if box is None:
        box = (0, 0, gray.shape[1], gray.shape[0])
    x0, y0, x1, y1 = _expand_box(box, gray.shape, cfg.margin)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ImageFileError(f"face box {tuple(box)} is empty inside a {gray.shape} frame")
    patch = gray[y0:y1, x0:x1]
    if patch.shape != (cfg.size, cfg.size):
        cv2 = _cv2()
        interp = cv2.INTER_AREA if cfg.interpolation == "area" else cv2.INTER_LINEAR
        if patch.shape[0] < cfg.size or patch.shape[1] < cfg.size:
            interp = cv2.INTER_LINEAR  # area interpolation is for shrinking
        patch = cv2.resize(patch, (cfg.size, cfg.size), interpolation=interp)
    return normalise(patch, cfg)[:, :, None]


def crop_faces(images: np.ndarray, cfg: FacePreprocessConfig) -> np.ndarray:
    """Batch form for training data that are already face crops: ``(N, H, W)`` uint8 -> float32
    ``(N, size, size, 1)``; identical to :func:`crop_face` with the whole image as the box."""
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ImageFileError(f"crop_faces needs (N, H, W) uint8, got {images.shape} {images.dtype}")
    if images.shape[1:] == (cfg.size, cfg.size):
        return normalise(images, cfg)[..., None]  # no resize needed; same arithmetic
    return np.stack([crop_face(im, None, cfg) for im in images])


def read_gray_image(path: str | Path) -> np.ndarray:
    """Read an image file as a 2-D uint8 grey array; raise :class:`ImageFileError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ImageFileError(f"{path}: no such image file")
    cv2 = _cv2()
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if image is None:
        raise ImageFileError(f"{path}: not a readable image (empty, truncated or unknown format)")
    return image


class HaarFaceDetector:
    """OpenCV Haar cascade face detector; boxes are ``(x, y, w, h)``, largest first."""

    def __init__(
        self, config: FaceDetectorConfig | None = None, cascade_path: str | Path | None = None
    ) -> None:
        self.config = config or FaceDetectorConfig()
        cv2 = _cv2()
        if cascade_path is None:
            data = getattr(cv2, "data", None)
            if data is None:
                raise MissingDependencyError(
                    "this OpenCV build ships no Haar cascades (cv2.data is missing); install "
                    "opencv-python-headless>=4.8,<5"
                )
            cascade_path = Path(data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.cascade_path = Path(cascade_path)
        self._cascade = cv2.CascadeClassifier(str(self.cascade_path))
        if self._cascade.empty():
            raise MissingDependencyError(f"{self.cascade_path}: Haar cascade could not be loaded")

    def detect(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Return face boxes in ``gray``'s pixel coordinates; an empty list means no face."""
        cv2 = _cv2()
        cfg = self.config
        scale = 1.0
        small = gray
        longest = max(gray.shape[:2])
        if cfg.max_side and longest > cfg.max_side:
            scale = longest / cfg.max_side
            small = cv2.resize(
                gray,
                (round(gray.shape[1] / scale), round(gray.shape[0] / scale)),
                interpolation=cv2.INTER_AREA,
            )
        if cfg.equalize:
            small = cv2.equalizeHist(small)
        found = self._cascade.detectMultiScale(
            small,
            scaleFactor=cfg.scale_factor,
            minNeighbors=cfg.min_neighbors,
            minSize=(cfg.min_size, cfg.min_size),
        )
        boxes = [
            tuple(int(round(v * scale)) for v in b) for b in (found if len(found) else [])
        ]
        boxes.sort(key=lambda b: b[2] * b[3], reverse=True)
        return boxes[:1] if cfg.largest_only else boxes  # type: ignore[return-value]

    def close(self) -> None:
        """Nothing to release (the cascade is plain memory); detectors share this interface."""

    def __enter__(self) -> "HaarFaceDetector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<HaarFaceDetector {self.cascade_path.name} {self.config}>"


def box_iou(box: Sequence[float], boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one ``(x, y, w, h)`` box with each row of ``boxes`` ``(N, 4)``."""
    box, boxes = np.asarray(box, np.float64), np.asarray(boxes, np.float64).reshape(-1, 4)
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2])
    y1 = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


#: Face detector choices: ``auto`` is BlazeFace when ``emotion-convert blazeface`` has fetched
#: its model into a model folder, else Haar.
DETECTORS = ("auto", "haar", "blazeface")


def open_face_detector(
    kind: str = "auto", *, largest_only: bool = True, num_threads: int = 1,
    runtime: str | None = None,
) -> Any:
    """Open the face detector ``kind`` (see :data:`DETECTORS`); the caller closes it."""
    if kind not in DETECTORS:
        raise ConfigError(
            f"face detector {kind!r} is unknown; choose one of {', '.join(DETECTORS)}")
    model = None
    if kind == "auto":
        from .blazeface import BLAZEFACE_MODEL_FILE
        from .paths import default_model

        try:
            model, kind = default_model(BLAZEFACE_MODEL_FILE), "blazeface"
        except ModelError:
            kind = "haar"
            logger.info("BlazeFace not fetched (`emotion-convert blazeface`); using Haar")
    detector: Any
    if kind == "haar":
        detector = HaarFaceDetector(FaceDetectorConfig(largest_only=largest_only))
    else:
        from .blazeface import BlazeFaceConfig, BlazeFaceDetector

        detector = BlazeFaceDetector(model, BlazeFaceConfig(largest_only=largest_only),
                                     num_threads=num_threads, runtime=runtime)
    logger.info("face detector: %r", detector)
    return detector


def face_probabilities(model: Any, face: np.ndarray, *, mirror: bool = True) -> np.ndarray:
    """Expression probabilities for one preprocessed face ``(size, size, 1)``.

    With ``mirror`` the probabilities of the face and of its left-right mirror image are
    averaged (two invokes).  Expressions are left-right symmetric while a small CNN's errors are
    not, so the average cancels part of them (on FER2013 PrivateTest +1.2 to +1.4 points for
    the face parent and mini-Xception, +0.8 for the shipped model); the second invoke (~0.2 ms
    on x86) is small next to face detection (1.6 ms BlazeFace, 10.5 ms Haar on one x86 core).
    ``emotion-convert face`` measures the shipped model both ways with this same function.
    """
    p = np.asarray(model.predict(face), dtype=np.float64)
    if mirror:
        p = (p + np.asarray(model.predict(np.ascontiguousarray(face[:, ::-1])), np.float64)) / 2
    return p


def _manifest_preprocess(model: Any) -> FacePreprocessConfig:
    try:
        return FacePreprocessConfig.from_dict(model.manifest.preprocessing)
    except (ConfigError, TypeError) as exc:
        raise ManifestMismatchError(f"{model.path}: its manifest's face preprocessing is not "
                                    f"usable ({exc}); re-export the model with emotion-convert "
                                    f"face") from None


class FaceClassifier:
    """Detect faces in grey frames and classify their expression with an int8 model.

    ``model`` is a path to a ``.tflite`` (its manifest beside it) or an open
    :class:`edge.runtime.QuantizedModel`.  Faces are prepared as the manifest's preprocessing
    says (input size, crop margin, ...), the way the model was trained; a ``preprocess`` given
    explicitly (a device pinned to one setting) must equal it, or
    :class:`edge.errors.ManifestMismatchError` names the first field that differs.
    ``detector`` is only needed for :meth:`classify_frame`; without one, :func:`open_face_detector`
    opens the ``auto`` detector on first use.
    ``mirror`` averages each face with its mirror image (see :func:`face_probabilities`).
    """

    def __init__(
        self,
        model: Any,
        *,
        preprocess: FacePreprocessConfig | None = None,
        detector: Any = None,
        num_threads: int = 1,
        runtime: str | None = None,
        mirror: bool = True,
    ) -> None:
        from .runtime import open_model

        self.mirror = bool(mirror)
        self._detector = detector
        self._owns_detector = False
        self._num_threads, self._runtime = num_threads, runtime
        self.model, self._owns_model = open_model(
            model, task=FACE_TASK, num_threads=num_threads, runtime=runtime)
        try:
            self.preprocess = preprocess or _manifest_preprocess(self.model)
            self.model.manifest.check_preprocessing(
                self.preprocess.to_dict(), source=str(self.model.path)
            )
        except Exception:
            self.close()
            raise
        size = self.preprocess.size
        if tuple(self.model.input_shape[1:]) != (size, size, 1):
            self.close()
            raise ManifestMismatchError(
                f"{self.model.path}: input shape {self.model.input_shape} does not fit "
                f"{size}x{size} grey faces"
            )
        self._closed = False

    @property
    def labels(self) -> tuple[str, ...]:
        return self.model.labels

    @property
    def detector(self) -> Any:
        """The detector given, else one opened on first use (``auto``) and closed with this."""
        if self._detector is None:
            self._detector = open_face_detector("auto", num_threads=self._num_threads,
                                                runtime=self._runtime)
            self._owns_detector = True
        return self._detector

    def scores(self, face: np.ndarray) -> dict[str, float]:
        """Probabilities for one preprocessed face ``(size, size, 1)``."""
        p = face_probabilities(self.model, face, mirror=self.mirror)
        return {label: float(v) for label, v in zip(self.labels, p)}

    def classify_crop(
        self, gray: np.ndarray, box: Sequence[int] | None = None
    ) -> Face:
        """Classify the face inside ``box`` (``None``: the whole image is the face)."""
        gray = to_gray(gray)
        if box is None:
            box = (0, 0, gray.shape[1], gray.shape[0])
        scores = self.scores(crop_face(gray, box, self.preprocess))
        label = max(scores, key=scores.__getitem__)
        return Face(tuple(int(v) for v in box), label, scores)  # type: ignore[arg-type]

    def classify_frame(self, frame: np.ndarray) -> list[Face]:
        """Detect and classify faces in a frame; ``[]`` when there is no face (not an error)."""
        gray = to_gray(frame)
        return [self.classify_crop(gray, box) for box in self.detector.detect(gray)]

    def close(self) -> None:
        """Release the model and detector if this classifier opened them; idempotent."""
        self._closed = True
        if self._owns_model and self.model is not None:
            self.model.close()
        if self._owns_detector and self._detector is not None:
            self._detector.close()

    def __enter__(self) -> "FaceClassifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if getattr(self, "_closed", False) else "open"
        return f"<FaceClassifier {self.model.path.name} {self.preprocess.size}px {state}>"
