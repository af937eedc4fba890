"""Where do arm64 and x86-64 part ways?  Digests of each intermediate of the speech and face paths.

``scripts/pi/check.sh`` runs this inside the emulated Pi and on the host; ``compare.py`` turns
the two JSON files into two rows: ``bit-exact`` (the quantised model inputs, and the reference
kernels' outputs for them, must be identical) and ``divergence`` (which intermediates differ).
Each speech window of the replay and the face crop (and its mirror image) go through the models
with XNNPACK, as on the device, and with TFLite's reference kernels, raw int8 outputs listed, so
a difference is traced to the features or to the kernels.  A fixed random input (NumPy's PCG64
gives the same numbers everywhere) is also run through both.

Usage: python divergence.py DEMO_DIR OUT.json
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np


def digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return f"{a.dtype}{list(a.shape)}:" + hashlib.sha256(a.tobytes()).hexdigest()[:16]


def model_probe(path: Path, rng_seed: int) -> dict[str, str]:
    """Raw int8 outputs for a fixed input, with XNNPACK and with the reference kernels."""
    from edge.models.runtime import open_interpreter

    out = {}
    for name, ref in (("xnnpack", False), ("reference", True)):
        _, interp = open_interpreter(path, reference_kernels=ref)
        d_in = interp.get_input_details()[0]
        rng = np.random.default_rng(rng_seed)
        info = np.iinfo(d_in["dtype"]) if np.issubdtype(d_in["dtype"], np.integer) else None
        if info is not None:
            x = rng.integers(info.min, info.max, size=d_in["shape"], endpoint=True).astype(
                d_in["dtype"])
        else:
            x = rng.uniform(-1, 1, size=d_in["shape"]).astype(d_in["dtype"])
        interp.set_tensor(d_in["index"], x)
        interp.invoke()
        for i, d_out in enumerate(interp.get_output_details()):
            out[f"{name}.out{i}"] = digest(interp.get_tensor(d_out["index"]))
    return out


def raw_outputs(path: Path, inputs: list[np.ndarray]) -> dict[str, list[str]]:
    """Raw int8 outputs for each already-quantised input, with XNNPACK and with the reference
    kernels: the values themselves, so a one-step difference is visible."""
    from edge.models.runtime import open_interpreter

    out: dict[str, list[str]] = {}
    for name, ref in (("xnnpack", False), ("reference", True)):
        _, interp = open_interpreter(path, reference_kernels=ref)
        d_in, d_out = interp.get_input_details()[0], interp.get_output_details()[0]
        rows = []
        for q in inputs:
            interp.set_tensor(d_in["index"], q.reshape(d_in["shape"]))
            interp.invoke()
            rows.append(" ".join(str(int(v)) for v in interp.get_tensor(d_out["index"]).ravel()))
        out[name] = rows
    return out


def main(demo: Path, dest: Path) -> None:
    import cv2

    from edge.features.face import crop_face
    from edge.models.face import FACE_MODEL_FILE, FaceClassifier
    from edge.models.speech import SPEECH_MODEL_FILE, SpeechClassifier
    from edge.paths import default_model
    from edge.sources.audio_file import load_audio
    from edge.sources.images import read_gray_image
    from edge.vision import open_face_detector

    r: dict[str, str] = {}
    speech = SpeechClassifier(default_model(SPEECH_MODEL_FILE), adapt=False)
    signal = load_audio(demo / "conversation.flac", speech.sample_rate)
    r["speech.audio"] = digest(signal)
    frames = speech.mfcc(signal)
    r["speech.mfcc"] = digest(frames)
    window = frames[: speech.window_frames]
    x = speech.model_input(window)
    r["speech.model_input"] = digest(x)
    r["speech.quantized_input"] = digest(speech.model.quantize(x))
    r.update({f"speech.kernels.{k}": v for k, v in model_probe(speech.model.path, 0).items()})
    # Every window the replay scores (the manifest's hop): its quantised input and raw outputs.
    from edge.models.speech import windows_of

    quantized = [speech.model.quantize(speech.model_input(w))
                 for _, w in windows_of(frames, speech.window_frames, speech.hop_frames)]
    r["speech.windows.quantized_input"] = [digest(q) for q in quantized]
    r.update({f"speech.windows.{k}": v
              for k, v in raw_outputs(speech.model.path, quantized).items()})

    gray = read_gray_image(demo / "face.jpg")
    r["face.decoded_gray"] = digest(gray)
    side = max(gray.shape)
    square = np.zeros((side, side), np.uint8)
    square[: gray.shape[0], : gray.shape[1]] = gray
    r["face.resize_area_128"] = digest(cv2.resize(square, (128, 128), interpolation=cv2.INTER_AREA))
    r["face.resize_linear_48"] = digest(cv2.resize(gray, (48, 48), interpolation=cv2.INTER_LINEAR))
    detector = open_face_detector()
    boxes = detector.detect(gray)
    r["face.detector"] = type(detector).__name__
    r["face.boxes"] = json.dumps([[int(v) for v in b] for b in boxes])
    face = FaceClassifier(default_model(FACE_MODEL_FILE))
    if boxes:
        crop = crop_face(gray, boxes[0], face.preprocess)
        r["face.crop"] = digest(crop)
        q = face.model.quantize(crop)
        r["face.quantized_input"] = digest(q)
        mirrored = np.ascontiguousarray(q[:, ::-1])
        r.update({f"face.crop_and_mirror.{k}": v
                  for k, v in raw_outputs(face.model.path, [q, mirrored]).items()})
    r.update({f"face.kernels.{k}": v for k, v in model_probe(face.model.path, 1).items()})
    dest.write_text(json.dumps(r, indent=1) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]):
        sys.exit(print(__doc__))
    if len(sys.argv) != 3:
        sys.exit("usage: python divergence.py DEMO_DIR OUT.json")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
