"""Still images and frames as 2-D uint8 grey arrays: the one format every frame source delivers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import optional
from ..errors import ImageFileError

__all__ = ["to_gray", "read_gray_image"]


def to_gray(image: np.ndarray) -> np.ndarray:
    """Return a 2-D uint8 grey image from grey, BGR or BGRX (OpenCV / Picamera2 order) input."""
    image = np.asarray(image)
    if image.ndim == 2:
        gray = image
    elif image.ndim == 3 and image.shape[2] == 1:
        gray = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        cv2 = optional.cv2()
        code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        gray = cv2.cvtColor(image, code)
    else:
        raise ImageFileError(f"image of shape {image.shape} is neither grey nor BGR/BGRX")
    if gray.dtype != np.uint8:
        raise ImageFileError(f"image dtype {gray.dtype} is not uint8")
    return np.ascontiguousarray(gray)



def read_gray_image(path: str | Path) -> np.ndarray:
    """Read an image file as a 2-D uint8 grey array; raise :class:`ImageFileError` naming it."""
    path = Path(path)
    if path.is_dir():
        raise ImageFileError(f"{path}: is a folder, not an image; give the files in it "
                             f"(e.g. {path}/*.jpg)")
    if not path.is_file():
        raise ImageFileError(f"{path}: no such image file")
    cv2 = optional.cv2()
    data = np.fromfile(str(path), dtype=np.uint8)
    try:
        with optional.quiet_native_output("OpenCV"):  # "libpng warning: ..." on fd 2
            image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    except cv2.error as exc:  # e.g. a header declaring more pixels than the limit
        limit = optional.MAX_IMAGE_PIXELS // 1_000_000
        if "MAX_IMAGE_PIXELS" in str(exc):
            raise ImageFileError(f"{path}: declares more than {limit} megapixels; scale it "
                                 f"down") from None
        reason = " ".join(str(exc).split())[-160:]
        raise ImageFileError(f"{path}: not a readable image (OpenCV: {reason})") from None
    if image is None:
        raise ImageFileError(f"{path}: not a readable image (empty, truncated or unknown format)")
    return np.asarray(image, dtype=np.uint8)
