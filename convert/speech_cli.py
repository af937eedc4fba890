"""``emotion-convert speech``: cross-validate, train the shipped model, convert to int8, report."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ConfigError
from edge.models.speech import NO_SPEECH, SPEECH_MODEL_FILE, SpeechClassifier, SpeechGate

from .corpora import RAVDESS_LABELS, Utterance, index_corpus, index_emodb
from .metrics import classification_metrics, plot_confusion

__all__ = ["register", "run_speech"]

logger = logging.getLogger(__name__)

RAVDESS_LICENCE = (
    "RAVDESS (Livingstone & Russo 2018, doi:10.5281/zenodo.1188976), CC BY-NC-SA 4.0: models "
    "trained on it inherit the non-commercial share-alike terms"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "speech",
        help="train and export the speech emotion model",
        description="Speaker-independent cross-validation, then the shipped model trained on all "
        "speakers, converted to full-integer int8 with a manifest.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ravdess", type=Path, metavar="DIR", help="RAVDESS speech root (Actor_NN/)")
    src.add_argument("--csv", type=Path, metavar="FILE", help="your own corpus: path,label,speaker")
    p.add_argument("--emodb", type=Path, metavar="DIR", help="EmoDB root for the cross-corpus figure")
    p.add_argument("--out", type=Path, default=Path("models"), help="output folder (default models/)")
    p.add_argument("--report-dir", type=Path, default=None,
                   help="where fold results go (default OUT/reports/speech)")
    p.add_argument("--folds", type=int, default=6, help="speaker folds (0 skips cross-validation)")
    p.add_argument("--reference-folds", type=int, default=None,
                   help="folds the seed CNN reference is run on (default all; 0 skips it)")
    p.add_argument("--reference-only", action="store_true",
                   help="only cross-validate the seed CNN reference (writes "
                   "REPORT_DIR/seed_reference.json; the shipped model is left alone)")
    p.add_argument("--parity-folds", type=int, default=2,
                   help="folds whose model is also checked as int8 (default 2)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--width", type=int, default=None, help="compact model's first-block channels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-augment", action="store_true", help="no speed/noise augmentation")
    p.set_defaults(func=run_speech)


def _recipe_from(args: argparse.Namespace):
    from .speech import SpeechRecipe

    r = SpeechRecipe(seed=args.seed)
    changes: dict[str, Any] = {}
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.width is not None:
        changes["width"] = args.width
    if args.no_augment:
        changes.update(speed_factors=(), noise_snr_db=(10.0, 30.0))
    return dataclasses.replace(r, **changes)


def _labels_for(utts: Sequence[Utterance]) -> tuple[str, ...]:
    present = {u.label for u in utts}
    ordered = [lab for lab in RAVDESS_LABELS if lab in present]
    return tuple(ordered + sorted(present - set(ordered)))


def run_speech(args: argparse.Namespace) -> int:
    from .export import convert_int8, save_model
    from .speech import (
        FeatureBank,
        clip_windows,
        cross_validate,
        fusion_map_for,
        manifest_preprocessing,
        train_model,
    )

    t_start = time.perf_counter()
    utts = index_corpus("ravdess", args.ravdess) if args.ravdess else index_corpus("csv", args.csv)
    labels = _labels_for(utts)
    if len(labels) < 2:
        raise ConfigError(f"need at least two labels to train, found {labels}")
    recipe = _recipe_from(args)
    gate = SpeechGate()
    out: Path = args.out
    report_dir: Path = args.report_dir or out / "reports" / "speech"
    report_dir.mkdir(parents=True, exist_ok=True)
    corpus_name = "RAVDESS speech" if args.ravdess else str(args.csv)
    logger.info("%d clips, %d speakers, labels %s", len(utts), len({u.speaker for u in utts}), labels)
    bank = FeatureBank(utts, recipe, augment=bool(recipe.speed_factors))

    if args.reference_only:
        ref = _reference(bank, labels, recipe, args, gate, report_dir)
        (report_dir / "seed_reference.json").write_text(json.dumps(ref, indent=1))
        print(json.dumps({"seed_cnn_uar": ref["mean"]["uar"],
                          "ours_on_same_folds": ref["ours_on_same_folds"]}, indent=1))
        return 0

    metrics: dict[str, Any] = {}
    if args.folds:
        cv = cross_validate(bank, labels, recipe, args.folds, gate, report_dir,
                            parity_folds=args.parity_folds)
        metrics["int8_parity"] = cv.pop("int8_parity", None)
        metrics["cross_validation"] = cv
        if args.reference_folds != 0:
            metrics["seed_cnn_reference"] = _reference(bank, labels, recipe, args, gate,
                                                       report_dir, ours=cv)
        plot_confusion(cv["mean"]["confusion"], labels, out / "speech_confusion.png",
                       f"speech, {args.folds}-fold speaker-independent, UAR "
                       f"{cv['mean']['uar']:.3f}")

    logger.info("training the shipped model on all %d clips", len(utts))
    y = np.array([labels.index(u.label) for u in utts])
    model = train_model(bank, y, labels, recipe, gate)
    x_rep, _ = clip_windows(bank, recipe, gate)
    tflite = convert_int8(model, x_rep)
    path = out / SPEECH_MODEL_FILE
    training = {
        "data": corpus_name,
        "clips": len(utts),
        "speakers": len({u.speaker for u in utts}),
        "licence": RAVDESS_LICENCE if args.ravdess else "as of your corpus",
        "recipe": recipe.to_dict(),
        "parameters": int(model.count_params()),
        "command": "emotion-convert speech " + " ".join(_argv_of(args)),
        "seconds": round(time.perf_counter() - t_start),
    }
    save_model(tflite, path, name="speech_emotion", task="speech", labels=labels,
               preprocessing=manifest_preprocessing(recipe), fusion_map=fusion_map_for(labels),
               metrics=metrics, training=training)
    if args.emodb:
        metrics["cross_corpus_emodb"] = cross_corpus(path, args.emodb, labels, out)
        save_model(tflite, path, name="speech_emotion", task="speech", labels=labels,
                   preprocessing=manifest_preprocessing(recipe), fusion_map=fusion_map_for(labels),
                   metrics=metrics, training=training)
    (report_dir / "summary.json").write_text(json.dumps(metrics, indent=1))
    print(json.dumps(_headline(metrics, path), indent=1))
    return 0


def _reference(bank, labels, recipe, args, gate, report_dir, ours=None) -> dict[str, Any]:
    """The seed project's CNN on the first ``--reference-folds`` of the same speaker folds, with
    ours on exactly those folds beside it (from ``ours`` or the fold reports of an earlier run)."""
    from .speech import cross_validate

    n = args.folds if args.reference_folds is None else args.reference_folds
    seed = dataclasses.replace(recipe, model="seed")
    ref = cross_validate(bank, labels, seed, args.folds, gate, report_dir, n_folds=n)
    if ours is not None:
        folds = ours["folds"][:n]
    else:
        folds = [json.loads((report_dir / f"compact_fold{f}.json").read_text()) for f in range(n)]
    ref["ours_on_same_folds"] = {key: float(np.mean([f[key] for f in folds]))
                                 for key in ("uar", "accuracy")}
    return ref


def _argv_of(args: argparse.Namespace) -> list[str]:
    parts = []
    for key in ("ravdess", "csv", "emodb", "out", "folds", "epochs", "width", "seed"):
        v = getattr(args, key, None)
        if v is not None:
            parts.append(f"--{key} {v}")
    return parts


def _headline(metrics: dict[str, Any], path: Path) -> dict[str, Any]:
    h: dict[str, Any] = {"model": str(path), "bytes": path.stat().st_size}
    if "cross_validation" in metrics:
        h["cv_uar"] = metrics["cross_validation"]["mean"]["uar"]
        h["cv_accuracy"] = metrics["cross_validation"]["mean"]["accuracy"]
    if "seed_cnn_reference" in metrics:
        h["seed_cnn_uar"] = metrics["seed_cnn_reference"]["mean"]["uar"]
    if "int8_parity" in metrics:
        h["int8_parity"] = metrics["int8_parity"]["mean"]
    if "cross_corpus_emodb" in metrics:
        h["emodb_uar"] = metrics["cross_corpus_emodb"]["uar"]
    return h


def cross_corpus(model_path: Path, emodb_root: Path, labels: Sequence[str], out: Path) -> dict[str, Any]:
    """The shipped int8 model through the device's own classifier on EmoDB, over the labels both
    corpora share.  Probabilities of labels mapping to the same shared label are summed (calm ->
    neutral); labels with no EmoDB counterpart (surprised) are ignored; EmoDB boredom is left out."""
    from .speech import fusion_map_for

    utts = [u for u in index_emodb(emodb_root)]
    fmap = fusion_map_for(labels)
    shared = [lab for lab in ("neutral", "happy", "sad", "angry", "fearful", "disgust")
              if lab in set(fmap.values())]
    utts = [u for u in utts if u.label in shared]
    y_true, y_pred, no_speech = [], [], 0
    with SpeechClassifier(model_path) as clf:
        for u in utts:
            d = clf.classify_file(u.path)
            if d.label == NO_SPEECH:
                no_speech += 1
                y_pred.append(-1)
            else:
                merged = {s: sum(p for lab, p in d.scores.items() if fmap[lab] == s) for s in shared}
                y_pred.append(shared.index(max(merged, key=merged.get)))
            y_true.append(shared.index(u.label))
    # "no speech" counts as wrong: map it to a class index that never matches.
    y_pred_arr = np.array([p if p >= 0 else (t + 1) % len(shared) for p, t in zip(y_pred, y_true)])
    m = classification_metrics(y_true, y_pred_arr, shared)
    m["protocol"] = ("shipped int8 model via edge.speech.SpeechClassifier on all EmoDB clips of the "
                     "shared labels; calm counts as neutral, surprised ignored, no-speech = wrong")
    m["no_speech_files"] = no_speech
    plot_confusion(m["confusion"], shared, out / "speech_emodb_confusion.png",
                   f"RAVDESS-trained model on EmoDB (German), UAR {m['uar']:.3f}")
    logger.info("cross-corpus EmoDB: UAR %.3f acc %.3f over %d clips", m["uar"], m["accuracy"], len(utts))
    return m
