"""``emotion-convert speech``: train, evaluate and export the speech model from a recipe."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from ..recipe import recipe_path
from .channels import CHANNELS

__all__ = ["register", "run_speech", "run_score"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "speech",
        help="train and export the speech emotion model",
        description="Speaker-independent cross-validation, then the shipped model trained on all "
        "speakers, converted to full-integer int8 with a manifest that stores the resolved "
        "recipe.  Without --recipe, the defaults are the RAVDESS recipe.",
    )
    p.add_argument("--recipe", type=recipe_path, metavar="FILE",
                   help="recipe .toml (recipes/speech.toml, or by name: speech, "
                   "speech_compact), or a model manifest .json to reproduce that model")
    p.add_argument("--data", type=Path, metavar="DIR",
                   help="folder the recipe's relative corpus paths are resolved against")
    p.add_argument("--corpus", action="append", metavar="KIND:PATH", default=None,
                   help="train on this corpus instead of the recipe's (repeatable; KIND ravdess, "
                   "emodb or csv)")
    p.add_argument("--csv", type=Path, metavar="FILE",
                   help="your own corpus (path,label,speaker rows): same as --corpus csv:FILE")
    p.add_argument("--test-corpus", action="append", metavar="KIND:PATH", default=[],
                   help="score the shipped model on a corpus it never heard (repeatable)")
    p.add_argument("--out", type=Path, default=Path("runs/speech"),
                   help="output folder (default runs/speech/); to run the model on the "
                   "device, point EMOTION_EDGE_MODELS or models.speech at it")
    p.add_argument("--report-dir", type=Path, default=None,
                   help="where fold results go (default OUT/reports/speech)")
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="keep computed features here and reuse them on the next run (they "
                   "depend only on the recipe's features and [augment], not on train.seed)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE", help="override one recipe value (repeatable)")
    p.add_argument("--epochs", type=int, default=None, help="same as --set train.epochs=N")
    p.add_argument("--folds", type=int, default=None, help="same as --set evaluate.folds=N")
    p.add_argument("--seed", type=int, default=None, help="same as --set train.seed=N")
    p.add_argument("--evaluate-only", action="store_true",
                   help="only the evaluation (reports and a JSON headline), no model: for "
                   "comparing recipes; fold reports are reused by a later run of the same recipe")
    p.add_argument("--reference-only", action="store_true",
                   help="only cross-validate the seed CNN reference (writes "
                   "REPORT_DIR/seed_reference.json; the shipped model is left alone)")
    p.set_defaults(func=run_speech)

    q = sub.add_parser(
        "speech-score",
        help="score a speech model on labelled corpora through the device's classifier",
        description="UAR of an int8 speech model on each corpus (over the common labels both "
        "have), decided exactly as `emotion-edge classify` decides: --adapt adapts to each "
        "corpus's speech first, as `classify` does with a corpus's files in one call; without "
        "it each clip is decided as `classify --fresh` decides.  Prints one JSON object.",
    )
    q.add_argument("--model", type=Path, required=True, metavar="TFLITE")
    q.add_argument("--corpus", action="append", required=True, metavar="KIND:PATH")
    q.add_argument("--data", type=Path, metavar="DIR", help="root of relative corpus paths")
    q.add_argument("--adapt", action="store_true", help="adapt to each corpus first")
    q.add_argument("--channel", choices=sorted(CHANNELS), default=None,
                   help="hear every clip through this test channel first (telephone: a "
                   "narrowband call, 300-3400 Hz, 8 kHz, mu-law)")
    q.set_defaults(func=run_score)


def _overrides(args: argparse.Namespace) -> dict[tuple[str, str], Any]:
    from edge.config import parse_overrides

    out = parse_overrides(args.overrides)
    for attr, setting in (("epochs", ("train", "epochs")), ("folds", ("evaluate", "folds")),
                          ("seed", ("train", "seed"))):
        if getattr(args, attr) is not None:
            out[setting] = getattr(args, attr)
    return out


def run_speech(args: argparse.Namespace) -> int:
    from .pipeline import run
    from .recipe import SpeechRecipe

    overrides = _overrides(args)
    corpora = list(args.corpus or []) + ([f"csv:{args.csv}"] if args.csv else [])
    if corpora:  # part of the recipe, so the manifest names the data the model was trained on
        overrides[("data", "corpora")] = tuple(corpora)
    recipe = SpeechRecipe.load(args.recipe, overrides=overrides)
    out: Path = args.out
    headline = run(recipe, out, args.report_dir or out / "reports" / "speech", root=args.data,
                   test_corpora=args.test_corpus, cache_dir=args.cache,
                   evaluate_only=args.evaluate_only,
                   reference_only=args.reference_only,
                   reproducing=args.recipe if args.recipe and args.recipe.suffix == ".json"
                   else None,
                   command="emotion-convert " + shlex.join(sys.argv[1:]))
    print(json.dumps(headline, indent=1))
    return 0


def run_score(args: argparse.Namespace) -> int:
    from .corpora import corpus_names, index_corpora
    from .pipeline import score_held_out

    corpus_names(args.corpus, args.data)  # two of one name would be one entry of the output
    out: dict[str, Any] = {}
    for spec in args.corpus:
        rows: dict[str, int] = {}  # a CSV's rows it could not use, each warned about
        utts = index_corpora([spec], args.data, rows_left_out=rows)
        m = score_held_out(args.model, utts, utts[0].corpus, None, adapt=args.adapt,
                           channel=args.channel)
        out[utts[0].corpus] = {"uar": round(m["uar"], 4), "accuracy": round(m["accuracy"], 4),
                               "clips": m["n"], "left_out_clips": m["left_out_clips"],
                               "left_out_rows": rows.get(utts[0].corpus, 0),
                               "per_class_recall": {
                                   k: round(v, 3) for k, v in m["per_class_recall"].items()}}
    print(json.dumps({"model": str(args.model), "adapt": args.adapt, "channel": args.channel,
                      "corpora": out}))
    return 0
