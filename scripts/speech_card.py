"""Print the speech model card's figures as Markdown tables, from the shipped manifest.

Every number in the model card's speech section comes from here (the manifest's metrics, written
by ``emotion-convert speech``), so the card can be checked against the model:

    .venv/bin/python scripts/speech_card.py [models/speech_emotion_int8.json]

or from a run's ``reports/speech/summary.json`` (what ``--evaluate-only`` leaves).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _pct(v: float) -> str:
    return f"{v:.3f}"


def loco_table(loco: dict[str, Any]) -> str:
    """Each unseen corpus adapted, fresh and per speaker; with ``evaluate.neutral_room``, also in
    a room that mostly hears neutral speech; with ``evaluate.calibration``, also each speaker
    after a calibration recording, and the same clips fresh."""
    room = "mean_neutral_room_uar" in loco
    share = next((r["neutral_room"]["share"] for r in loco["corpora"].values()
                  if "neutral_room" in r), None)
    calibrated = "mean_calibrated_uar" in loco
    rows = ["| unseen corpus | clips | UAR adapted (its own statistics) | UAR fresh (training "
            "statistics) | UAR per speaker | "
            + (f"UAR in a room {share:.0%} neutral | " if room else "")
            + ("UAR after a calibration recording / the same clips fresh | " if calibrated
               else "")
            + "weakest class (adapted) |",
            "|---|---:|---:|---:|---:|" + ("---:|" if room else "")
            + ("---:|" if calibrated else "") + "---|"]

    def after_calibration(c: dict[str, Any] | None) -> str:
        return f"{_pct(c['uar'])} / {_pct(c['fresh']['uar'])} | " if c else "- | "

    def value(v: float | None) -> str:
        return _pct(v) if v is not None else "-"

    for name, r in loco["corpora"].items():
        recall = r["per_class_recall"]
        worst = min(recall, key=recall.__getitem__)
        per = r.get("per_speaker", {}).get("uar")
        rows.append(f"| {name} | {r['n']} | {_pct(r['uar'])} | {_pct(r['fresh']['uar'])} | "
                    f"{value(per)} | "
                    + (f"{value(r.get('neutral_room', {}).get('uar'))} | " if room else "")
                    + (after_calibration(r.get("calibrated")) if calibrated else "")
                    + f"{worst} {recall[worst]:.2f} |")
    rows.append(f"| **mean** | | **{_pct(loco['mean_uar'])}** | {_pct(loco['mean_fresh_uar'])} | "
                f"{value(loco.get('mean_per_speaker_uar'))} | "
                + (f"{_pct(loco['mean_neutral_room_uar'])} | " if room else "")
                + (f"{_pct(loco['mean_calibrated_uar'])} / "
                   f"{_pct(loco['mean_calibrated_fresh_uar'])} | " if calibrated else "") + "|")
    return "\n".join(rows)


def channel_table(loco: dict[str, Any]) -> str:
    """Each unseen corpus clean and through each test channel the LOCO scored
    (``evaluate.channels``), adapted / fresh, by the same fold's model."""
    names = list(loco.get("channels", {}))
    rows = ["| unseen corpus | clean | " + " | ".join(f"through the {c}" for c in names) + " |",
            "|---|---:|" + "---:|" * len(names)]

    def pair(r: dict[str, Any]) -> str:
        return f"{_pct(r['uar'])} / {_pct(r['fresh']['uar'])}"

    for name, r in loco["corpora"].items():
        rows.append(f"| {name} | {pair(r)} | "
                    + " | ".join(pair(r["channels"][c]) for c in names) + " |")
    means = [f"{_pct(loco['mean_uar'])} / {_pct(loco['mean_fresh_uar'])}"] + [
        f"{_pct(m['mean_uar'])} / {_pct(m['mean_fresh_uar'])}" for m in loco["channels"].values()]
    rows.append("| **mean** | " + " | ".join(f"**{v}**" for v in means) + " |")
    return "\n".join(rows)


def cv_table(cv: dict[str, Any]) -> str:
    mean = cv["mean"]
    rows = ["| corpus (its speakers held out) | UAR adapted |", "|---|---:|"]
    for name, uar in mean.get("per_corpus_uar", {}).items():
        rows.append(f"| {name} | {_pct(uar)} |")
    rows.append(f"| **all clips** | **{_pct(mean['uar'])} ± {mean['uar_std']:.3f}** "
                f"(fresh {_pct(mean.get('fresh_uar', mean['uar']))}) |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", type=Path, nargs="?",
                    default=REPO / "models" / "speech_emotion_int8.json",
                    help="a speech manifest, or a run's reports/speech/summary.json (default: "
                    "the shipped model's manifest)")
    path = ap.parse_args().path
    m = json.loads(path.read_text())
    if "metrics" in m:
        metrics = m["metrics"]
        print(f"model {path.name}: sha256 {m['sha256'][:12]}, labels {', '.join(m['labels'])}\n")
    else:  # a run's reports/speech/summary.json (--evaluate-only writes no model)
        metrics = m
        print(f"recipe compared: {path}\n")
    if "leave_one_corpus_out" in metrics:
        loco = metrics["leave_one_corpus_out"]
        minutes = sum(r["seconds"] for r in loco["corpora"].values()) / 60
        print(f"Leave one corpus out ({minutes:.0f} min of training and scoring on 2 cores):\n")
        print(loco_table(loco) + "\n")
        if loco.get("channels"):
            print("The same folds through each test channel, adapted / fresh:\n")
            print(channel_table(loco) + "\n")
    if "cross_validation" in metrics:
        cv = metrics["cross_validation"]
        print(f"{len(cv['folds'])}-fold speaker-independent cross-validation:\n")
        print(cv_table(cv) + "\n")
    if "int8_parity" in metrics:
        p = metrics["int8_parity"]["mean"]
        print(f"int8 vs float (first folds): UAR {p['float_uar']:.3f} -> {p['int8_uar']:.3f}, "
              f"top-1 agreement {p['top1_agreement']:.3f}, largest probability difference "
              f"{p['max_abs_prob_diff']:.3f}\n")
    for name, h in metrics.get("held_out", {}).items():
        print(f"held-out {name}: UAR {h['uar']:.3f} over {h['n']} clips\n")


if __name__ == "__main__":
    main()
