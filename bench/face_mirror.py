"""When is the mirror pass worth its invoke?  Accuracy against the share of faces given a second
pass, for thresholds on the first pass's top probability (edge.models.face.MIRROR_BELOW).

FER2013 PublicTest chooses the threshold, PrivateTest reports it; faces cropped as the device
crops a whole-image face, the model run by the device's own ``face_probabilities``::

    python -m bench.face_mirror --fer /path/to/fer2013_48.npz [--model models/face_expression_int8.tflite]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from convert.face.data import load_fer
from edge.features.face import crop_face
from edge.models.face import MIRROR_BELOW, FaceClassifier, apply_log_offsets, face_probabilities

THRESHOLDS = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01)  # 1.01: every face (p <= 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fer", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=Path("models/face_expression_int8.tflite"))
    args = ap.parse_args()
    with FaceClassifier(args.model) as clf:
        index = {name: k for k, name in enumerate(clf.labels)}
        print(f"{args.model.name}; device default MIRROR_BELOW = {MIRROR_BELOW}")
        print(f"{'split':<12} {'threshold':>9} {'accuracy':>9} {'second pass':>12}")
        for split in ("PublicTest", "PrivateTest"):
            s = load_fer(args.fer, split)
            want = np.array([index[s.labels[y]] for y in s.y])
            crops = [crop_face(x, (0, 0, x.shape[1], x.shape[0]), clf.preprocess) for x in s.x]
            # The device decides on the network's own first pass, then applies the manifest's
            # class offsets (if any) to whichever result it keeps.
            single = np.array([face_probabilities(clf.model, c, mirror=False)
                               for c in crops])
            both = np.array([face_probabilities(clf.model, c) for c in crops])
            offsets = np.zeros(len(clf.labels)) if clf.offsets is None else clf.offsets
            for t in THRESHOLDS:
                need = single.max(1) < t
                kept = np.where(need[:, None], both, single)
                pred = apply_log_offsets(kept, offsets).argmax(1)
                name = {0.0: "never", 1.01: "always"}.get(t, f"{t:g}")
                print(f"{split:<12} {name:>9} {np.mean(pred == want):9.4f} {need.mean():12.3f}")


if __name__ == "__main__":
    main()
