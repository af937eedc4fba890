"""Has the scene around a face box changed?  A test far cheaper than running a face detector.

The region around a box (the box grown by :data:`REGION_MARGIN` of its size on every side, so a
face moving in or out of the box changes it too) is area-averaged to a :data:`PATCH_CELLS`
square patch.  The patch is kept from the frame the box was found in and compared with the same
region of a later frame: the mean absolute difference of the cells, in grey levels, after taking
away the mean difference.  Taking it away makes a uniform change of brightness (a lamp, the
camera's exposure) count as no change: it does not move the face.  Averaging cells of several
pixels makes sensor noise small (see ``FaceStage``).

Because the patch is always ``PATCH_CELLS`` square, a move by a given fraction of the face's
size gives about the same change for a small face far away as for a large one nearby.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from .. import optional
from ..interfaces import GrayFrame

__all__ = ["REGION_MARGIN", "PATCH_CELLS", "Region", "change_region", "region_patch",
           "patch_change"]

#: Fraction of the box's width/height added on every side of the region compared.
REGION_MARGIN = 0.25
#: Cells per side of the patch the region is averaged to.
PATCH_CELLS = 16

Region = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive


def change_region(box: Sequence[int], shape: tuple[int, ...]) -> Region:
    """The region compared for ``box`` ``(x, y, w, h)`` in a frame of ``shape``: the box grown by
    ``REGION_MARGIN`` on every side, cut down to a whole number of pixels per cell (so the
    average takes OpenCV's integer-ratio path, several times faster) and moved inside the frame."""
    x, y, w, h = (int(v) for v in box)
    height, width = shape[:2]
    grow = 1.0 + 2.0 * REGION_MARGIN
    # Pixels per cell: at least one, and no more than the frame holds.
    kx = max(1, min(int(w * grow) // PATCH_CELLS, width // PATCH_CELLS))
    ky = max(1, min(int(h * grow) // PATCH_CELLS, height // PATCH_CELLS))
    rw, rh = min(kx * PATCH_CELLS, width), min(ky * PATCH_CELLS, height)
    x0 = min(max(0, round(x + w / 2 - rw / 2)), width - rw)
    y0 = min(max(0, round(y + h / 2 - rh / 2)), height - rh)
    return x0, y0, x0 + rw, y0 + rh


def region_patch(gray: GrayFrame, region: Region) -> npt.NDArray[np.float32]:
    """``region`` of ``gray`` area-averaged to ``PATCH_CELLS`` x ``PATCH_CELLS`` grey levels."""
    x0, y0, x1, y1 = region
    cv2 = optional.cv2()
    patch = cv2.resize(gray[y0:y1, x0:x1], (PATCH_CELLS, PATCH_CELLS),
                       interpolation=cv2.INTER_AREA)
    return np.asarray(patch, np.float32)


def patch_change(before: npt.NDArray[np.float32], after: npt.NDArray[np.float32]) -> float:
    """Mean absolute difference of two patches in grey levels, their mean difference removed."""
    d = after - before
    return float(np.mean(np.abs(d - d.mean())))
