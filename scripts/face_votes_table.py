"""Print int8 face models side by side on FER2013's two test splits, as the model card's FER+
tables give them: accuracy and mean per-class recall against FER+'s majority vote and against
FER2013's own labels, through the device's classifier (its crop), each face averaged with its
mirror image as in the card's tables.

PublicTest chooses; PrivateTest only reports.  Run from the repository root:

    .venv/bin/python scripts/face_votes_table.py --fer ../shared/data/fer2013/fer2013_48.npz \\
        models/face_expression_int8.tflite runs/other/face_expression_int8.tflite

The FER+ votes are read from ``ferplus_votes.npz`` beside the FER2013 file unless ``--ferplus``
names them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from convert.face.data import FaceSplit, load_face_data
from convert.metrics import classification_metrics
from edge.models.face import FaceClassifier


def _scores(predicted: np.ndarray, truth: np.ndarray,
            labels: tuple[str, ...]) -> tuple[float, float]:
    """Accuracy and mean per-class recall over the rows ``truth`` scores (>= 0)."""
    scored = truth >= 0
    m = classification_metrics(truth[scored], predicted[scored], labels)
    return m["accuracy"], m["uar"]


def _row(model: Path, splits: dict[str, FaceSplit]) -> str:
    cells = [f"`{model}`"]
    with FaceClassifier(model, mirror_below=None) as clf:  # always mirror, as the card's tables
        for split in splits.values():
            if clf.labels != split.labels:
                raise SystemExit(f"{model}: labels {clf.labels} are not FER2013's {split.labels}")
            majority = split.majority()
            if majority is None:
                raise SystemExit("no FER+ votes: pass --ferplus PATH (ferplus_votes.npz)")
            predicted = np.array([clf.labels.index(clf.classify_crop(face).label)
                                  for face in split.x])
            for truth in (majority, split.y):
                acc, recall = _scores(predicted, truth, clf.labels)
                cells.append(f"{acc:.3f} / {recall:.3f}")
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fer", type=Path, required=True, help="fer2013_48.npz")
    ap.add_argument("--ferplus", type=Path, default=None, help="ferplus_votes.npz")
    ap.add_argument("models", type=Path, nargs="+", help="int8 .tflite files with manifests")
    args = ap.parse_args()
    data = load_face_data(fer=args.fer, ferplus=args.ferplus)
    splits = {"PublicTest": data.choose, "PrivateTest": data.report}
    print("accuracy / mean per-class recall, int8, every face averaged with its mirror image")
    print()
    print("| model | PublicTest FER+ majority | PublicTest FER2013 labels | PrivateTest FER+ "
          "majority | PrivateTest FER2013 labels |")
    print("|---|---:|---:|---:|---:|")
    for model in args.models:
        print(_row(model, splits))


if __name__ == "__main__":
    main()
