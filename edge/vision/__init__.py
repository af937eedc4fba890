"""Finding faces in frames: Haar (OpenCV, always there) and BlazeFace (a TFLite model)."""

from __future__ import annotations

from .blazeface import BlazeFaceConfig, BlazeFaceDetector
from .boxes import box_iou
from .detectors import DETECTORS, open_face_detector
from .haar import FaceDetectorConfig, HaarFaceDetector

__all__ = [
    "DETECTORS",
    "open_face_detector",
    "box_iou",
    "HaarFaceDetector",
    "FaceDetectorConfig",
    "BlazeFaceDetector",
    "BlazeFaceConfig",
]
