"""``emotion-edge classify``: speech emotion of audio files, one line per file.

Contract (other tools parse it; keep it stable): with ``--json`` one object per file per line,
``{"path": ..., "label": ..., "scores": {label: probability, ...}}``; ``label`` is "no speech" (with
empty scores) when the activity gate finds none.  A file that cannot be read gives a one-line error
on stderr naming it, the other files are still classified, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..models.runtime import RUNTIMES
from . import positive_float, thread_count

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "classify",
        help="classify the emotion in speech recordings",
        description="Classify each audio file (WAV/FLAC/OGG, any sample rate, mono or stereo).",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.add_argument("--model", type=Path, default=None,
                   help="speech .tflite with its .json manifest beside it (default: shipped model)")
    p.add_argument("--hop", type=positive_float, default=None, metavar="SECONDS",
                   help="hop between analysis windows (default: from the model's manifest)")
    p.add_argument("--runtime", choices=tuple(RUNTIMES), default=None,
                   help="TFLite interpreter (default: first installed)")
    p.add_argument("--threads", type=thread_count, default=1, help="interpreter threads (default 1)")
    p.add_argument("--adapt", action="store_true",
                   help="adapt to these recordings first, as a device adapts to its room: one "
                   "pass over all FILEs gathers feature statistics of their speech, a second "
                   "classifies them (models that support it; give one room or one speaker's "
                   "recordings)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import AudioFileError
    from ..models.speech import SPEECH_MODEL_FILE, SpeechClassifier
    from ..paths import default_model

    model = args.model or default_model(SPEECH_MODEL_FILE)
    failures = 0
    with SpeechClassifier(model, hop_s=args.hop, num_threads=args.threads,
                          runtime=args.runtime) as clf:
        if args.adapt:
            if clf.adaptation is None:
                print(f"emotion-edge: warning: {model} does not adapt (its manifest has no "
                      f"adaptation prior); classifying without --adapt", file=sys.stderr)
            else:
                for path in args.files:
                    try:
                        clf.observe_file(path)
                    except AudioFileError:
                        continue  # reported once, by the classifying pass below
        for path in args.files:
            t0 = time.perf_counter()
            try:
                decision = clf.classify_file(path)
            except AudioFileError as exc:
                print(f"emotion-edge: error: {exc}", file=sys.stderr, flush=True)
                failures += 1
                continue
            ms = (time.perf_counter() - t0) * 1e3
            scores = {k: round(v, 4) for k, v in decision.scores.items()}
            if args.json:
                print(json.dumps({"path": str(path), "label": decision.label, "scores": scores}),
                      flush=True)
            else:
                top = ", ".join(f"{k} {v:.2f}" for k, v in
                                sorted(scores.items(), key=lambda kv: -kv[1])[:3])
                print(f"{path}: {decision.label}  [{top or 'no speech windows'}]  "
                      f"{decision.speech_windows}/{decision.total_windows} speech windows, "
                      f"{ms:.1f} ms", flush=True)
    return 1 if failures else 0
