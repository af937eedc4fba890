"""How far to trust a face model's class offsets (``emotion-convert face-calibrate``): what they
change per class on PrivateTest, how they hold when fitted on half of PublicTest and scored on
the other half, and (``--priors``) what offsets pulled toward a prior in one number do instead.

The model's own probabilities (int8, mirror average, offsets off) come from the device's
function; the offsets are refitted here exactly as ``face-calibrate`` fits them.  Run from the
repository root (the model card's "Class offsets" quotes it)::

    .venv/bin/python scripts/face_offsets_check.py --fer ../shared/data/fer2013/fer2013_48.npz \\
        --halves 3 --priors
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from convert.face.calibrate import (
    accuracy_and_recall,
    choose_label_sets,
    fit_log_offsets,
    log_probabilities,
    network_probabilities,
)
from convert.face.data import load_face_data
from edge.models.face import FACE_MODEL_FILE
from edge.models.runtime import QuantizedModel


def _cells(log_p: np.ndarray, sets: dict[str, np.ndarray]) -> str:
    pred = log_p.argmax(1)
    return ", ".join(f"{name} {a:.3f} / {r:.3f}" for name, (a, r) in
                     ((name, accuracy_and_recall(pred, truth)) for name, truth in sets.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fer", type=Path, required=True, help="fer2013_48.npz")
    ap.add_argument("--model", type=Path, default=Path("models") / FACE_MODEL_FILE)
    ap.add_argument("--halves", type=int, default=3, help="random halves of PublicTest to try")
    ap.add_argument("--priors", action="store_true",
                    help="also one-number offsets toward the FER+ prior and toward uniform "
                    "(scores the 28,709 training faces: a few minutes)")
    args = ap.parse_args()
    data = load_face_data(fer=args.fer)
    with QuantizedModel(args.model) as qm:
        labels = qm.labels
        pub = network_probabilities(qm, data.choose.x)
        priv = network_probabilities(qm, data.report.x)
        train = network_probabilities(qm, data.train.x) if args.priors else None
    sets = choose_label_sets(data.choose)
    report_sets = {**choose_label_sets(data.report), "FER2013 labels": data.report.y}
    offsets = fit_log_offsets(pub, list(sets.values()))
    print("offsets fitted on PublicTest: " + ", ".join(
        f"{k} {v:+.2f}" for k, v in zip(labels, offsets)))
    log_priv = log_probabilities(priv)
    for name, lp in (("without", log_priv), ("with", log_priv + offsets)):
        pred = lp.argmax(1)
        print(f"PrivateTest {name} offsets: {_cells(lp, report_sets)}")
        for set_name in ("FER+ majority", "FER2013 labels"):
            truth = report_sets[set_name]
            print(f"  recall against {set_name}: " + ", ".join(
                f"{label} {np.mean(pred[truth == k] == k):.2f}" for k, label in enumerate(labels)))
        share = np.bincount(pred, minlength=len(labels)) / len(pred)
        print("  share of faces called: " + ", ".join(
            f"{label} {v:.3f}" for label, v in zip(labels, share)))
    changed = np.mean(log_priv.argmax(1) != (log_priv + offsets).argmax(1))
    print(f"PrivateTest decisions changed by the offsets: {changed:.3f}")

    rng = np.random.default_rng(0)
    log_pub = log_probabilities(pub)
    for draw in range(args.halves):
        order = rng.permutation(len(pub))
        fit, held = order[: len(order) // 2], order[len(order) // 2:]
        half = fit_log_offsets(pub[fit], [t[fit] for t in sets.values()])
        held_sets = {name: t[held] for name, t in sets.items()}
        print(f"half {draw}: fitted on {len(fit)} PublicTest faces, the other {len(held)}: "
              f"{_cells(log_pub[held], held_sets)} -> {_cells(log_pub[held] + half, held_sets)}")

    if train is not None:
        majority = data.train.majority()
        assert majority is not None
        crowd = np.bincount(majority[majority >= 0], minlength=len(labels)) / np.sum(majority >= 0)
        mean = train.mean(0)
        called = np.bincount(train.argmax(1), minlength=len(labels)) / len(train)
        for name, v in (("FER+ majority on the training faces", crowd),
                        ("the network's mean prediction there", mean),
                        ("its share of decisions there", called)):
            print(f"{name}: " + ", ".join(f"{label} {x:.3f}" for label, x in zip(labels, v)))
        for target, toward in (("the FER+ prior", np.log(crowd) - np.log(mean)),
                               ("uniform", -np.log(mean))):
            for tau in (0.25, 0.5, 0.75, 1.0):
                print(f"toward {target}, tau {tau}: PrivateTest "
                      f"{_cells(log_priv + tau * toward, report_sets)}")


if __name__ == "__main__":
    main()
