"""OpenCV's Haar cascade face detector: always available, the fallback to BlazeFace."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .. import optional
from ..errors import ConfigError, MissingDependencyError
from ..interfaces import Box, GrayFrame
from ..lifecycle import Closeable

__all__ = ["FaceDetectorConfig", "HaarFaceDetector"]


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




class HaarFaceDetector(Closeable):
    """OpenCV Haar cascade face detector; boxes are ``(x, y, w, h)``, largest first."""

    def __init__(
        self, config: FaceDetectorConfig | None = None, cascade_path: str | Path | None = None
    ) -> None:
        self.config = config or FaceDetectorConfig()
        cv2 = optional.cv2()
        # OpenCV runs detectMultiScale on every core by default; on a Pi that starves the loop's
        # own thread (and the audio callback) for a stage the budget already accounts for.
        cv2.setNumThreads(1)
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

    def detect(self, gray: GrayFrame) -> list[Box]:
        """Return face boxes in ``gray``'s pixel coordinates; an empty list means no face."""
        cv2 = optional.cv2()
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

    def __repr__(self) -> str:
        return f"<HaarFaceDetector {self.cascade_path.name} {self.config}>"
