"""Box geometry shared by the detectors, the benchmark and the tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["box_iou"]


def box_iou(box: Sequence[float], boxes: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Intersection over union of one ``(x, y, w, h)`` box with each row of ``boxes`` ``(N, 4)``."""
    b, boxes = np.asarray(box, np.float64), np.asarray(boxes, np.float64).reshape(-1, 4)
    x0 = np.maximum(b[0], boxes[:, 0])
    y0 = np.maximum(b[1], boxes[:, 1])
    x1 = np.minimum(b[0] + b[2], boxes[:, 0] + boxes[:, 2])
    y1 = np.minimum(b[1] + b[3], boxes[:, 1] + boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = b[2] * b[3] + boxes[:, 2] * boxes[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
