"""Per-class log offsets for a trained face model, fitted on the choose split.

A model taught half by FER2013's single annotator and half by mini-Xception (itself trained on
FER2013's labels) keeps their prior: it calls faces angry, fearful or surprised more often than
the FER+ crowd reads them, and neutral less.  Adding a log offset per class to its probabilities
moves that prior.  The offsets are fitted on the choose split (PublicTest), through the device's
own function with the mirror average, by coordinate search: a move of one class's offset is kept
only if it raises the smallest of the gains in accuracy and in mean per-class recall against
every label set the split has (with FER+ votes: the crowd's majority and the clear faces, which
at least 7 of 10 annotators read the same way; without: the split's own labels).  So no move
buys accuracy with the rare classes' recall, or the other way round.  The report split is never
looked at.  The device applies them (``edge.models.face.FaceClassifier``), from the
manifest's ``calibration``.

``emotion-convert face-calibrate`` fits them for a model already trained (and rewrites its
manifest's int8 figures with them); ``[calibrate] class_offsets = true`` in a recipe makes
``emotion-convert face`` fit them before it measures the model.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CLEAR_SHARE", "accuracy_and_recall", "fit_log_offsets", "label_sets",
           "log_probabilities", "choose_label_sets", "network_probabilities",
           "device_path_label_sets", "with_device_path", "calibration_record", "register"]

logger = logging.getLogger(__name__)

#: Share of the ten FER+ votes a face's majority needs to count as clear (7 of 10).
CLEAR_SHARE = 0.7
#: Moves tried for each class's offset, on each pass.
STEPS = (-0.6, -0.4, -0.3, -0.2, -0.1, -0.05, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6)
#: Passes over the classes (the search had stopped moving by the third on the shipped model).
PASSES = 4
#: Probabilities below this count as this in the logarithm (int8 outputs can be exactly 0).
FLOOR = 1e-6
#: Seed of the whole frames the offsets may also be fitted on (``--frames``): not face-check's
#: default (0), so the check's frames are other backgrounds, sizes, turns and light.
FRAMES_SEED = 1


def _class_recalls(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Recall of each class present in ``truth``, in class order, on the rows it scores
    (>= 0)."""
    keep = truth >= 0
    t, p = truth[keep], pred[keep]
    return np.array([float(np.mean(p[t == c] == c)) for c in np.unique(t)])


def accuracy_and_recall(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Accuracy and mean recall over the classes present, on the rows ``truth`` scores (>= 0)."""
    keep = truth >= 0
    return float(np.mean(pred[keep] == truth[keep])), float(np.mean(_class_recalls(pred, truth)))


def log_probabilities(probs: np.ndarray) -> np.ndarray:
    """``log(probs)`` with :data:`FLOOR` under it: the scale the offsets are added on."""
    return np.log(np.maximum(np.asarray(probs, dtype=np.float64), FLOOR))


def _figures(log_p: np.ndarray, label_sets: Sequence[np.ndarray]) -> np.ndarray:
    pred = log_p.argmax(axis=1)
    return np.array([v for truth in label_sets for v in accuracy_and_recall(pred, truth)])


def fit_log_offsets(probs: np.ndarray, label_sets: Sequence[np.ndarray], *,
                    max_recall_drop: float = 1.0) -> np.ndarray:
    """Offsets ``(classes,)`` for ``probs`` ``(faces, classes)``: coordinate search from zero,
    keeping a move only if it raises the smallest gain over every (accuracy, mean recall) of
    ``label_sets`` (each ``(faces,)``, -1 = not scored), and refusing a move that leaves any
    class's recall on the first label set more than ``max_recall_drop`` below its recall
    without offsets (1 = no floor): a mean over classes would otherwise let one rare class pay
    for the others.  Deterministic."""
    log_p = log_probabilities(probs)
    base = _figures(log_p, label_sets)
    floor = _class_recalls(log_p.argmax(axis=1), label_sets[0]) - max_recall_drop - 1e-12

    def worst(offsets: np.ndarray) -> float:
        pred = (log_p + offsets).argmax(axis=1)
        if (_class_recalls(pred, label_sets[0]) < floor).any():
            return -np.inf
        return float((_figures(log_p + offsets, label_sets) - base).min())

    offsets = np.zeros(log_p.shape[1])
    best = worst(offsets)
    for _ in range(PASSES):
        moved = False
        for k in range(log_p.shape[1]):
            for step in STEPS:
                trial = offsets.copy()
                trial[k] += step
                score = worst(trial)
                if score > best + 1e-12:
                    best, offsets, moved = score, trial, True
        if not moved:
            break
    return offsets


def label_sets(labels: np.ndarray, majority: np.ndarray | None,
               clear: np.ndarray | None) -> dict[str, np.ndarray]:
    """The label sets the offsets are fitted against, by name: the FER+ majority and the clear
    faces (majority with at least :data:`CLEAR_SHARE` of the votes) when there are votes, else
    the split's own labels."""
    if majority is None or clear is None:
        return {"labels": np.asarray(labels)}
    return {"FER+ majority": majority, f"clear faces (>= {CLEAR_SHARE:.0%} of votes)": clear}


def choose_label_sets(split: Any) -> dict[str, np.ndarray]:
    """:func:`label_sets` of a :class:`~convert.face.data.FaceSplit`."""
    return label_sets(split.y, split.majority(), split.majority(min_share=CLEAR_SHARE))


def network_probabilities(model: Any, faces: np.ndarray, *, mirror: bool = True) -> np.ndarray:
    """The int8 ``model``'s own probabilities (offsets off) for grey ``faces`` ``(N, H, W)``,
    cropped as its manifest says, through the device's function: what the offsets are fitted
    on."""
    from edge.features.face import FacePreprocessConfig, crop_faces
    from edge.models.face import face_probabilities

    preprocess = FacePreprocessConfig.from_dict(model.manifest.preprocessing)
    return np.stack([face_probabilities(model, x, mirror=mirror)
                     for x in crop_faces(faces, preprocess)])


def device_path_label_sets(
    model: str | Path, faces: np.ndarray, majority: np.ndarray, *, frames: int,
    seed: int = FRAMES_SEED, detector: str = "blazeface",
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The network's own probabilities (offsets off) of the faces the device finds and reads
    in ``frames`` whole frames at each of face-check's sizes, ``faces`` with a ``majority``
    label (-1: none; left out) pasted as ``face-check`` pastes them; and one label set per
    size, each scoring its own rows (-1 elsewhere), in the order of the rows."""
    import contextlib

    from edge.models.face import FaceClassifier
    from edge.vision import open_face_detector

    from .fullframe import FRAME_SIZES, found_faces, full_frames

    keep = majority >= 0
    faces, labels = faces[keep], majority[keep]
    probs: list[list[float]] = []
    truth: list[int] = []
    where: list[str] = []  # each row's label set
    with contextlib.closing(open_face_detector(detector)) as det, \
            FaceClassifier(model, detector=det, apply_offsets=False) as clf:
        for w, h in FRAME_SIZES:
            for item, face in found_faces(clf, full_frames(faces, labels, size=(w, h),
                                                           n=frames, seed=seed)):
                if face is not None:
                    probs.append([face.scores[label] for label in clf.labels])
                    truth.append(item.label)
                    where.append(f"FER+ majority, {w}x{h} frames")
        classes = len(clf.labels)
    t, at = np.array(truth, dtype=int), np.array(where)
    sets = {name: np.where(at == name, t, -1) for name in dict.fromkeys(where)}
    return np.array(probs, dtype=np.float64).reshape(-1, classes), sets


def with_device_path(crop_probs: np.ndarray, crop_sets: dict[str, np.ndarray],
                     path_probs: np.ndarray, path_sets: dict[str, np.ndarray]
                     ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The crops' and the device path's probabilities as one set of rows, and every label set
    over all of them (-1 on the other's rows), the crops' first."""
    n, m = len(crop_probs), len(path_probs)
    sets = {name: np.concatenate([truth, np.full(m, -1)]) for name, truth in crop_sets.items()}
    sets.update({name: np.concatenate([np.full(n, -1), truth])
                 for name, truth in path_sets.items()})
    return np.concatenate([crop_probs, path_probs]), sets


def calibration_record(offsets: np.ndarray, labels: Sequence[str], probs: np.ndarray,
                       label_sets: dict[str, np.ndarray], split: str, *,
                       max_recall_drop: float = 1.0, frames: int = 0) -> dict[str, Any]:
    """The manifest's ``calibration``: the offsets and how they were found, with the choose
    split's figures before and after, and each class's recall on the first label set."""
    log_p = log_probabilities(probs)
    before = _figures(log_p, list(label_sets.values()))
    after = _figures(log_p + offsets, list(label_sets.values()))
    figures = {name: {"before": [round(float(before[2 * i]), 4), round(float(before[2 * i + 1]), 4)],
                      "after": [round(float(after[2 * i]), 4), round(float(after[2 * i + 1]), 4)]}
               for i, name in enumerate(label_sets)}
    first_name, first = next(iter(label_sets.items()))
    present = [labels[c] for c in np.unique(first[first >= 0])]
    recalls = zip(present, _class_recalls(log_p.argmax(axis=1), first),
                  _class_recalls((log_p + offsets).argmax(axis=1), first))
    return {
        "log_offsets": {label: round(float(v), 4) for label, v in zip(labels, offsets)},
        "fitted_on": f"{split} ({len(probs)} faces), int8 with the mirror average"
                     + (f": its own crops and the faces the device's detector finds in {frames} "
                        f"whole frames per size (seed {FRAMES_SEED})" if frames else ""),
        "method": "coordinate search (convert.face.calibrate): a move is kept only if it raises "
                  "the smallest gain in accuracy and mean per-class recall over the label sets"
                  + (f", and leaves every class's {first_name} recall within "
                     f"{max_recall_drop:g} of its recall without offsets"
                     if max_recall_drop < 1 else ""),
        "max_recall_drop": max_recall_drop,
        "choose_accuracy_and_mean_recall": figures,
        "choose_class_recall": {name: {"before": round(float(b), 4), "after": round(float(a), 4)}
                                for name, b, a in recalls},
    }


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "face-calibrate",
        help="fit a face model's per-class offsets on PublicTest and write them to its manifest",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--model", type=Path, default=None,
                   help="face .tflite with its manifest (default: the shipped model); its "
                   "manifest is rewritten")
    p.add_argument("--fer", type=Path, required=True, help="fer2013_48.npz")
    p.add_argument("--ferplus", type=Path, default=None,
                   help="ferplus_votes.npz (default: next to --fer)")
    p.add_argument("--max-recall-drop", type=float, default=1.0, metavar="SHARE",
                   help="refuse offsets that leave any class's FER+ majority recall on PublicTest "
                   "more than this below the network's own (0-1; default 1 = no floor; "
                   "[calibrate] max_recall_drop in a recipe)")
    p.add_argument("--frames", type=int, default=0, metavar="N",
                   help="also fit on the device's path: PublicTest faces pasted into N whole "
                   "frames per size, as face-check pastes them (another seed), read through "
                   "BlazeFace and the device's crop (default 0 = FER's crops only; [calibrate] "
                   "frames in a recipe)")
    p.add_argument("--confusion", type=Path, default=None, metavar="PNG",
                   help="also draw the report split's confusion matrix with the offsets here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from edge.errors import ConfigError
    from edge.models.face import FACE_MODEL_FILE, apply_log_offsets
    from edge.models.manifest import write_manifest
    from edge.models.runtime import QuantizedModel
    from edge.paths import default_model

    from ..metrics import classification_metrics, plot_confusion
    from .data import load_face_data
    from .ferplus import majority_figures

    if args.frames < 0:
        raise ConfigError(f"--frames {args.frames}: a number of frames per size, 0 or more")
    if not 0.0 <= args.max_recall_drop <= 1.0:
        raise ConfigError(f"--max-recall-drop {args.max_recall_drop:g}: a share of a class's "
                          f"faces, between 0 and 1 (1 = no floor)")
    path = Path(args.model or default_model(FACE_MODEL_FILE))
    data = load_face_data(fer=args.fer, ferplus=args.ferplus)
    with QuantizedModel(path) as qm:
        if qm.labels != data.labels:
            raise ConfigError(f"{path}: labels {list(qm.labels)} are not FER2013's "
                              f"{list(data.labels)}; face-calibrate fits FER2013 models")
        raw = {name: {mirror: network_probabilities(qm, split.x, mirror=mirror)
                      for mirror in (True, False)}
               for name, split in (("choose", data.choose), ("report", data.report))}
        manifest = qm.manifest
    label_sets = choose_label_sets(data.choose)
    fit_probs = raw["choose"][True]
    split_name = "PublicTest" if data.source.startswith("FER2013") else "the choose split"
    if args.frames:
        majority = data.choose.majority()
        if majority is None:
            raise ConfigError(f"--frames {args.frames}: the device's path is scored against the "
                              f"FER+ majority; give --ferplus (ferplus_votes.npz)")
        fit_probs, label_sets = with_device_path(
            fit_probs, label_sets, *device_path_label_sets(path, data.choose.x, majority,
                                                           frames=args.frames))
    offsets = fit_log_offsets(fit_probs, list(label_sets.values()),
                              max_recall_drop=args.max_recall_drop)
    calibration = calibration_record(offsets, manifest.labels, fit_probs, label_sets,
                                     split_name, max_recall_drop=args.max_recall_drop,
                                     frames=args.frames)
    p = {name: {mirror: apply_log_offsets(v, offsets) for mirror, v in by.items()}
         for name, by in raw.items()}
    metrics = dict(manifest.metrics)
    m = classification_metrics(data.report.y, p["report"][True].argmax(1), manifest.labels)
    if args.confusion is not None:
        plot_confusion(m["confusion"], manifest.labels, args.confusion,
                       f"face int8 + mirror + class offsets, {data.source.split(' (')[0]} report "
                       f"split (n={m['n']}): acc {m['accuracy']:.3f}")
    metrics.update({
        "report_accuracy_int8": m["accuracy"],
        "report_uar_int8": m["uar"],
        "report_macro_f1_int8": m["macro_f1"],
        "report_accuracy_int8_single_pass": float(np.mean(
            p["report"][False].argmax(1) == data.report.y)),
        "choose_accuracy_int8": float(np.mean(p["choose"][True].argmax(1) == data.choose.y)),
        "choose_accuracy_int8_single_pass": float(np.mean(
            p["choose"][False].argmax(1) == data.choose.y)),
    })
    majority_choose, majority_report = data.choose.majority(), data.report.majority()
    if majority_choose is not None and majority_report is not None:
        metrics.update(majority_figures(
            "int8", majority_choose, majority_report,
            (p["choose"][False], p["choose"][True]), (p["report"][False], p["report"][True])))
    training = dict(manifest.training)
    training["recipe"] = {**training.get("recipe", {}), "calibrate": {
        "class_offsets": True, "max_recall_drop": args.max_recall_drop, "frames": args.frames}}
    write_manifest(path, dataclasses.replace(manifest, metrics=metrics, training=training,
                                             calibration=calibration))
    print(f"{path}: log offsets " + ", ".join(
        f"{k} {v:+.2f}" for k, v in calibration["log_offsets"].items()))
    for name, fig in calibration["choose_accuracy_and_mean_recall"].items():
        print(f"  {split_name} {name}: accuracy / mean recall "
              f"{fig['before'][0]:.3f} / {fig['before'][1]:.3f} -> "
              f"{fig['after'][0]:.3f} / {fig['after'][1]:.3f}")
    print(f"  {split_name} recall per class: " + ", ".join(
        f"{k} {v['before']:.2f} -> {v['after']:.2f}"
        for k, v in calibration["choose_class_recall"].items()))
    return 0
