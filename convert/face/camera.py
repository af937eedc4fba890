"""What a cheap camera does to a face, as training augmentation (albumentations).

FER2013's faces are web photos: mostly well lit, sharp and large.  A Pi camera across a room
gives small, soft, noisy, badly lit faces, often JPEG-compressed on the way and sometimes half
hidden by a hand or a cup.  Each training image gets, independently: blur (focus, motion or
defocus), sensor noise, low light and gamma, loss of resolution (a face far away, scaled up),
JPEG compression and one occluding patch; the stage's own augmentation (flip, shift, turn,
zoom) runs before this.  Grey levels are uint8 inside, so the effects act as they do on a
camera's output.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["camera_effects", "apply_camera"]


def camera_effects(seed: int, strength: float = 1.0) -> Any:
    """The seeded albumentations pipeline (one call per image); ``strength`` scales how often
    each effect is drawn (1 = the rates below, capped at always)."""
    # Without this, importing albumentations asks PyPI for a newer version: a training run
    # should not reach the network (and offline it waits for the timeout).
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A

    def p(rate: float) -> float:
        return min(1.0, rate * strength)

    return A.Compose([
        A.OneOf([A.GaussianBlur(sigma_limit=(0.5, 1.5)),
                 A.MotionBlur(blur_limit=(3, 5)),
                 A.Defocus(radius=(1, 2), alias_blur=(0.1, 0.3))], p=p(0.3)),
        A.Downscale(scale_range=(0.35, 0.8), p=p(0.25)),
        A.RandomGamma(gamma_limit=(60, 180), p=p(0.4)),
        A.RandomBrightnessContrast(brightness_limit=(-0.35, 0.1), contrast_limit=(-0.4, 0.1),
                                   p=p(0.4)),
        A.GaussNoise(std_range=(0.01, 0.06), p=p(0.3)),
        A.ImageCompression(quality_range=(25, 90), p=p(0.3)),
        A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(0.15, 0.35),
                        hole_width_range=(0.15, 0.35), fill="random_uniform", p=p(0.2)),
    ], seed=seed)


def apply_camera(batch: np.ndarray, effects: Any) -> np.ndarray:
    """``effects`` on each image of a float batch ``(N, S, S, 1)`` in [-1, 1] (the network's
    input range); returns the same shape and range."""
    grey = np.clip(np.rint((np.asarray(batch, np.float32)[..., 0] + 1.0) * 127.5), 0, 255)
    grey = grey.astype(np.uint8)
    out = np.stack([effects(image=image)["image"] for image in grey])
    return (out.astype(np.float32) / 127.5 - 1.0)[..., None]
