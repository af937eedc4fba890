"""Choosing a face detector: by argument, else BlazeFace when its model is there, else Haar."""

from __future__ import annotations

import dataclasses
import logging

from ..config import DETECTORS
from ..errors import ConfigError, ModelError
from ..interfaces import FaceDetector
from .blazeface import BlazeFaceConfig, BlazeFaceDetector
from .haar import FaceDetectorConfig, HaarFaceDetector

__all__ = ["DETECTORS", "open_face_detector"]

logger = logging.getLogger(__name__)


def open_face_detector(
    kind: str = "auto", *, largest_only: bool = True, num_threads: int = 1,
    runtime: str | None = None, retry_margin: float | None = None,
    retry_tiles: float | None = None, spread_looks: bool = False, scan_levels: int = 0,
) -> FaceDetector:
    """Open the face detector ``kind`` (see :data:`DETECTORS`); the caller closes it.

    ``retry_margin`` and ``retry_tiles`` override BlazeFace's later looks at a frame with no
    face, in a border and in tiles (:class:`BlazeFaceConfig`; None = its default, 0 = never);
    ``spread_looks`` makes one of them per frame, in turn (a camera's frames); ``scan_levels``
    looks at a still photo in ever smaller tiles too (its small faces); Haar has neither."""
    if kind not in DETECTORS:
        raise ConfigError(
            f"face detector {kind!r} is unknown; choose one of {', '.join(DETECTORS)}")
    detector: FaceDetector | None = None
    if kind in ("auto", "blazeface"):
        try:
            config = BlazeFaceConfig(largest_only=largest_only, spread_looks=spread_looks,
                                     scan_levels=scan_levels)
            if retry_margin is not None:
                config = dataclasses.replace(config, retry_margin=retry_margin)
            if retry_tiles is not None:
                config = dataclasses.replace(config, retry_tiles=retry_tiles)
            detector = BlazeFaceDetector(None, config, num_threads=num_threads, runtime=runtime)
        except ModelError as exc:
            if kind == "blazeface":
                raise
            # An appliance keeps seeing faces: the slower detector rather than none.
            logger.warning("%s; using the Haar detector", exc)
    if detector is None:
        detector = HaarFaceDetector(FaceDetectorConfig(largest_only=largest_only))
    logger.info("face detector: %r", detector)
    return detector
