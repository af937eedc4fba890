"""Does a face model hold when the crop is the device's and not FER2013's?  Accuracy of face
models on one FER2013 split cropped two ways, side by side: FER's own crops, and the crop the
device cuts from BlazeFace's box on a padded canvas, turned upright when the model's manifest
says ``upright`` (:mod:`convert.face.detected`, the crops ``input.crops = "detector"`` trains
on).  Each model runs through the device's ``FaceClassifier.scores`` (mirror rule included)::

    python -m bench.face_crops --fer /path/to/fer2013_48.npz [--split PublicTest] MODEL.tflite...

PublicTest chooses between models; PrivateTest only reports.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from convert.face.data import FER_USAGES, load_fer
from convert.face.detected import detector_crops, locate_faces
from edge.features.face import crop_faces
from edge.models.face import FaceClassifier
from edge.vision.blazeface import BlazeFaceDetector


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", type=Path, nargs="+", help="face .tflite files with manifests")
    ap.add_argument("--fer", type=Path, required=True)
    ap.add_argument("--split", default="PublicTest", choices=FER_USAGES[1:])
    args = ap.parse_args()
    split = load_fer(args.fer, args.split)
    with BlazeFaceDetector() as detector:
        located = locate_faces(split.x, detector)
    rolls = np.abs([b.roll for b, f in zip(located.boxes, located.found) if f])
    print(f"{args.split}: {len(split)} faces, BlazeFace found {located.found_rate:.3f} "
          f"on the padded canvas; their eye lines lean {np.sqrt(np.mean(rolls ** 2)):.1f} "
          f"degrees (root mean square), 95% within {np.percentile(rolls, 95):.1f}")
    print(f"{'model':<48} {'FER crops':>10} {'device crops':>13}")
    for path in args.models:
        with FaceClassifier(path) as clf:
            want = np.array([clf.labels.index(split.labels[y]) for y in split.y])
            row = []
            for crops in (crop_faces(split.x, clf.preprocess),
                          detector_crops(split.x, located, clf.preprocess)):
                scores = [clf.scores(c) for c in crops]
                pred = np.array([clf.labels.index(max(s, key=s.__getitem__)) for s in scores])
                row.append(float(np.mean(pred == want)))
        print(f"{str(path)[-48:]:<48} {row[0]:10.4f} {row[1]:13.4f}")


if __name__ == "__main__":
    main()
