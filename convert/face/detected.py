"""Training crops made the way the device makes them: its own detector's box, turned upright.

FER2013's faces were cropped by its makers; the device crops what BlazeFace finds, with
:func:`edge.features.face.crop_face`.  Here each FER2013 image is put on a canvas padded by
half its side (BlazeFace needs some room around a face: on the bare 48x48 image it misses
many), BlazeFace finds the face there, and the crop is cut from the box the device would use,
turned upright by the eye line when the preprocessing says ``upright``.  The padding the
detector sees is the image's mean grey; the padding a crop may reach into repeats the image's
edge pixels, the nearest stand-in for the context a camera frame has.  A face the detector
misses keeps FER's own crop.

The boxes are found once per image (:func:`locate_faces`); the stage's augmentation (shift,
zoom, turn) then jitters every epoch's crops around them.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from edge import optional
from edge.features.face import FacePreprocessConfig, crop_face
from edge.interfaces import FaceBox, FaceDetector

__all__ = ["PAD", "Located", "locate_faces", "detector_crops"]

logger = logging.getLogger(__name__)

#: Canvas padding on every side, as a fraction of the image side.
PAD = 0.5


@dataclasses.dataclass(frozen=True)
class Located:
    """One split's face boxes on the padded canvas (with their rolls) and which were found."""

    boxes: list[FaceBox]
    found: np.ndarray  # bool (N,)

    @property
    def found_rate(self) -> float:
        return float(self.found.mean()) if len(self.found) else 0.0


def _pad(image: np.ndarray) -> int:
    return int(round(image.shape[0] * PAD))


def locate_faces(images: np.ndarray, detector: FaceDetector) -> Located:
    """The detector's largest face box in each ``(N, H, W)`` uint8 image, on the padded canvas;
    FER's own box (the whole image, roll 0) where it finds none."""
    cv2 = optional.cv2()
    boxes, found = [], np.zeros(len(images), bool)
    t0 = time.monotonic()
    for i, image in enumerate(images):
        pad = _pad(image)
        canvas = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                                    value=int(image.mean()))
        got = detector.detect(canvas)
        if got:
            box = got[0]
            boxes.append(box if isinstance(box, FaceBox) else FaceBox(*box))
            found[i] = True
        else:
            boxes.append(FaceBox(pad, pad, image.shape[1], image.shape[0]))
    logger.info("detector found %d of %d faces (%.1f ms each)", found.sum(), len(images),
                (time.monotonic() - t0) / max(1, len(images)) * 1e3)
    return Located(boxes, found)


def detector_crops(images: np.ndarray, located: Located,
                   preprocess: FacePreprocessConfig) -> np.ndarray:
    """Network input ``(N, size, size, 1)`` cut from each image's padded canvas at its box,
    by the device's :func:`~edge.features.face.crop_face`."""
    cv2 = optional.cv2()
    out = np.empty((len(images), preprocess.size, preprocess.size, 1), np.float32)
    for i, (image, box) in enumerate(zip(images, located.boxes)):
        pad = _pad(image)
        canvas = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        out[i] = crop_face(canvas, box, preprocess)
    return out
