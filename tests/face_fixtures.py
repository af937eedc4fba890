"""A tiny face expression model trained, pruned and exported by the real pipeline on synthetic
cartoon faces (drawn at test time; no FER images are stored).  Needs TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from convert.face import FaceRecipe

SYNTH_LABELS = ("happy", "sad", "surprise")


def cartoon_face(label: str, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A grey cartoon face whose mouth shape encodes ``label``."""
    import cv2

    img = np.full((size, size), int(rng.integers(40, 90)), np.uint8)
    cx, cy = size // 2 + int(rng.integers(-3, 4)), size // 2 + int(rng.integers(-3, 4))
    cv2.ellipse(img, (cx, cy), (17, 21), 0, 0, 360, int(rng.integers(150, 210)), -1)
    for ex in (cx - 7, cx + 7):
        cv2.circle(img, (ex, cy - 6), 2, 30, -1)
    if label == "happy":
        cv2.ellipse(img, (cx, cy + 6), (8, 5), 0, 0, 180, 30, 2)
    elif label == "sad":
        cv2.ellipse(img, (cx, cy + 11), (8, 5), 0, 180, 360, 30, 2)
    else:
        cv2.circle(img, (cx, cy + 9), 4, 30, -1)
    noise = rng.normal(0, 8, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def write_image_folder(root: Path, per_label: int = 40, seed: int = 0) -> Path:
    import cv2

    rng = np.random.default_rng(seed)
    for label in SYNTH_LABELS:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            cv2.imwrite(str(root / label / f"{i:03d}.png"), cartoon_face(label, rng))
    return root


def tiny_recipe(**sections: dict) -> FaceRecipe:
    """A recipe for ~120 images: a small parent trained 3 epochs, half its channels faded out
    over 1 epoch, 1 epoch of fine-tuning (``sections``: more keys per section, e.g.
    ``prune={"schedule": "one-shot"}``)."""
    from convert.face import FaceRecipe

    tables: dict[str, dict] = {
        "parent": {"widths": (8, 16, 16, 16, 32), "pool_after": (1, 3), "stem_stride": 2},
        "train": {"epochs": 3, "learning_rate": 3e-3},
        "ramp": {"epochs": 1},
        "finetune": {"epochs": 1},
        "prune": {"ratio": 0.5},
        "export": {"calibration_samples": 50, "latency_runs": 3},
    }
    for stage in ("train", "adapt", "ramp", "finetune", "refine"):
        tables[stage] = {"batch_size": 32, "learning_rate": 1e-3, **tables.get(stage, {})}
    for name, values in sections.items():
        tables[name] = {**tables.get(name, {}), **values}
    return FaceRecipe.load(overrides={(name, key): value for name, table in tables.items()
                                      for key, value in table.items()})


@pytest.fixture(scope="session")
def tiny_face_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the whole ``emotion-convert face`` pipeline on ~120 synthetic images."""
    pytest.importorskip("tensorflow")
    from convert.face import load_face_data, run_face_pipeline

    base = tmp_path_factory.mktemp("face")
    folder = write_image_folder(base / "faces")
    report = run_face_pipeline(load_face_data(image_folder=folder), base / "models",
                               tiny_recipe())
    return {"report": report, "model": base / "models" / "face_expression_int8.tflite",
            "folder": folder, "base": base}
