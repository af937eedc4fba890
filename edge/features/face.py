"""Face preprocessing shared by training and the device: a box in a grey frame -> network input.

Training (``convert.face``) and the device call the same :func:`crop_face`, so a FER2013 image
(already a 48x48 face crop) and a face found by a detector in a camera frame reach the network
through identical code: expand the box by ``margin``, clip to the frame, resize to ``size`` x
``size`` with area interpolation, and scale grey levels to ``[-1, 1]``.  A model trained with
``upright`` also turns each face so its eyes are level first, when the detector found them (a
:class:`~edge.interfaces.FaceBox` with a roll, from BlazeFace; Haar's boxes have none and are
cropped as they are).  The model's manifest records the :class:`FacePreprocessConfig` it was
trained with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import optional
from ..errors import ConfigError, ImageFileError
from ..interfaces import roll_of

__all__ = ["FacePreprocessConfig", "normalise", "crop_face", "crop_faces", "face_patch"]

_NORMALISATIONS = ("minus1_1", "zero_1")


@dataclasses.dataclass(frozen=True)
class FacePreprocessConfig:
    """How a detected face becomes the network's input; recorded in the model manifest.

    Attributes:
        size: side of the square network input, pixels.
        margin: fraction of the box width/height added on every side before cropping
            (0.0 = the detector's box as is); clipped at the frame border.
        normalisation: ``"minus1_1"`` maps grey 0..255 to -1..1, ``"zero_1"`` to 0..1.
        interpolation: OpenCV resize interpolation name (``"area"`` or ``"linear"``).
        upright: turn the face about its box centre so the line through its eyes is level
            before cropping, when the box carries the face's roll (BlazeFace's eye keypoints).
            Left out of the manifest when off, so older devices still read the manifest.
    """

    size: int = 48
    margin: float = 0.0
    normalisation: str = "minus1_1"
    interpolation: str = "area"
    upright: bool = False

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
        if not isinstance(self.upright, bool):
            raise ConfigError(f"face upright {self.upright!r} must be true or false")
        if self.interpolation not in ("area", "linear"):
            raise ConfigError(
                f"face interpolation {self.interpolation!r} is unknown; choose area or linear"
            )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not self.upright:
            del d["upright"]
        d["kind"] = "face_crop"
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FacePreprocessConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known - {"kind"}
        if unknown:
            raise ConfigError(f"unknown face preprocessing keys: {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in d.items() if k in known})




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


def _upright_patch(gray: np.ndarray, box: Sequence[int], margin: float, roll: float) -> np.ndarray:
    """The box (grown by ``margin``) cut from ``gray`` turned upright: a face whose eye line
    runs at ``roll`` degrees (clockwise, image y down) comes out level.  At the frame's own
    resolution; beyond the frame its edge pixels repeat.  ``roll = 0`` gives exactly the
    box's pixels."""
    cv2 = optional.cv2()
    x, y, w, h = (int(v) for v in box)
    out_w, out_h = w + 2 * round(w * margin), h + 2 * round(h * margin)
    c, s = np.cos(np.radians(roll)), np.sin(np.radians(roll))
    # Output pixel d (from the patch centre) comes from frame point centre + R(roll) d, with
    # pixel centres at whole indices on both sides.
    cx, cy = x + (w - 1) / 2, y + (h - 1) / 2
    ox, oy = (out_w - 1) / 2, (out_h - 1) / 2
    back = np.array([[c, -s, cx - c * ox + s * oy],
                     [s, c, cy - s * ox - c * oy]])
    patch: np.ndarray = cv2.warpAffine(gray, back, (out_w, out_h),
                                       flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                       borderMode=cv2.BORDER_REPLICATE)
    return patch


def crop_face(
    gray: np.ndarray, box: Sequence[int] | None, cfg: FacePreprocessConfig
) -> np.ndarray:
    """Crop ``box`` (``None`` = whole image) from a grey frame -> float32 ``(size, size, 1)``;
    with ``cfg.upright``, a box with a roll is turned upright first."""
    return normalise(face_patch(gray, box, cfg), cfg)[:, :, None]


def face_patch(
    gray: np.ndarray, box: Sequence[int] | None, cfg: FacePreprocessConfig
) -> np.ndarray:
    """:func:`crop_face`'s grey levels before normalisation: uint8 ``(size, size)`` (training
    data cut from photos is kept as FER2013's faces are, in grey levels)."""
    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ImageFileError(f"crop_face needs a 2-D uint8 grey image, got {gray.shape} {gray.dtype}")
    if box is None:
        if min(gray.shape) < 2:
            raise ImageFileError(f"a {gray.shape[1]}x{gray.shape[0]} pixel image is too small "
                                 f"to hold a face")
        box = (0, 0, gray.shape[1], gray.shape[0])
    x0, y0, x1, y1 = _expand_box(box, gray.shape, cfg.margin)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ImageFileError(f"face box {tuple(box)} is empty inside a {gray.shape} frame")
    roll = roll_of(box) if cfg.upright else 0.0
    if roll:  # 0 keeps the plain crop (clipped at the frame border), as before ``upright``
        patch = _upright_patch(gray, box, cfg.margin, roll)
    else:
        patch = gray[y0:y1, x0:x1]
    if patch.shape != (cfg.size, cfg.size):
        cv2 = optional.cv2()
        interp = cv2.INTER_AREA if cfg.interpolation == "area" else cv2.INTER_LINEAR
        if patch.shape[0] < cfg.size or patch.shape[1] < cfg.size:
            interp = cv2.INTER_LINEAR  # area interpolation is for shrinking
        patch = cv2.resize(patch, (cfg.size, cfg.size), interpolation=interp)
    return np.asarray(patch, dtype=np.uint8)


def crop_faces(images: np.ndarray, cfg: FacePreprocessConfig) -> np.ndarray:
    """Batch form for training data that are already face crops: ``(N, H, W)`` uint8 -> float32
    ``(N, size, size, 1)``; identical to :func:`crop_face` with the whole image as the box."""
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ImageFileError(f"crop_faces needs (N, H, W) uint8, got {images.shape} {images.dtype}")
    if images.shape[1:] == (cfg.size, cfg.size):
        return normalise(images, cfg)[..., None]  # no resize needed; same arithmetic
    return np.stack([crop_face(im, None, cfg) for im in images])
