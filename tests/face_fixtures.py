"""A tiny face expression model trained, pruned and exported by the real pipeline on synthetic
cartoon faces (drawn at test time; no FER images are stored).  Needs TensorFlow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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


@pytest.fixture(scope="session")
def tiny_face_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the whole ``emotion-convert face`` pipeline on ~120 synthetic images."""
    pytest.importorskip("tensorflow")
    from convert.face import FaceRecipe, load_face_data, run_face_pipeline
    from convert.face_model import StudentSpec
    from convert.face_train import TrainConfig

    base = tmp_path_factory.mktemp("face")
    folder = write_image_folder(base / "faces")
    recipe = FaceRecipe(
        parent=StudentSpec(widths=(8, 16, 16, 16, 32), pool_after=(1, 3), stem_stride=2),
        train=TrainConfig(epochs=3, batch_size=32, learning_rate=3e-3),
        prune_ratio=0.5,
        ramp=TrainConfig(epochs=1, batch_size=32, learning_rate=1e-3),
        finetune=TrainConfig(epochs=1, batch_size=32, learning_rate=1e-3),
        calibration_samples=50,
    )
    data = load_face_data(image_folder=folder)
    report = run_face_pipeline(data, base / "models", recipe=recipe, latency_runs=3)
    return {"report": report, "model": base / "models" / "face_expression_int8.tflite",
            "folder": folder, "base": base}
