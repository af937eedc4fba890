"""Choosing a face detector: by argument, else BlazeFace when its model is there, else Haar."""

from __future__ import annotations

import logging

from ..config import DETECTORS
from ..errors import ConfigError, ModelError
from ..interfaces import FaceDetector
from ..paths import default_model
from .blazeface import BLAZEFACE_MODEL_FILE, BlazeFaceConfig, BlazeFaceDetector
from .haar import FaceDetectorConfig, HaarFaceDetector

__all__ = ["DETECTORS", "open_face_detector"]

logger = logging.getLogger(__name__)


def open_face_detector(
    kind: str = "auto", *, largest_only: bool = True, num_threads: int = 1,
    runtime: str | None = None,
) -> FaceDetector:
    """Open the face detector ``kind`` (see :data:`DETECTORS`); the caller closes it."""
    if kind not in DETECTORS:
        raise ConfigError(
            f"face detector {kind!r} is unknown; choose one of {', '.join(DETECTORS)}")
    model = None
    if kind == "auto":
        try:
            model, kind = default_model(BLAZEFACE_MODEL_FILE), "blazeface"
        except ModelError:
            kind = "haar"
            logger.info("BlazeFace not fetched (`emotion-convert blazeface`); using Haar")
    detector: FaceDetector
    if kind == "haar":
        detector = HaarFaceDetector(FaceDetectorConfig(largest_only=largest_only))
    else:
        detector = BlazeFaceDetector(model, BlazeFaceConfig(largest_only=largest_only),
                                     num_threads=num_threads, runtime=runtime)
    logger.info("face detector: %r", detector)
    return detector
