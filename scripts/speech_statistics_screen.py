"""Which window statistics transfer to corpora a model never heard?  A screen in minutes, before
a leave-one-corpus-out run of the real recipe (half an hour or more on 2 cores).

Each clip as recorded (no augmented copies) becomes the pooled branch's statistics over all its
frames, computed by the device's own code (:func:`edge.features.pool_window`, mode
``mean_std_delta``: each column's mean, spread and mean change between adjacent speech frames).
A class-balanced logistic regression is then trained leave one corpus out, on a choice of
those statistics, and scored on the unseen corpus three ways:

- **room**: every corpus standardised with its own statistics (a device adapted to its room);
- **speaker**: every speaker standardised with their own (a device adapted to one voice);
- **fresh**: standardised with the training corpora's statistics (a device not yet adapted).

UAR over the labels the unseen corpus has; the regression predicts every label.  A screen,
not the recipe: utterances, not 3 s windows, and a linear model, not the ensemble.

    .venv/bin/python scripts/speech_statistics_screen.py --data ../shared/data \\
        --cache ~/.cache/emotion-edge/speech
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from convert.speech.corpora import index_corpora, to_fusion_labels  # noqa: E402
from convert.speech.features import FeatureBank  # noqa: E402
from convert.speech.recipe import SpeechRecipe  # noqa: E402
from convert.speech.train import sample_weights  # noqa: E402
from edge.errors import ConfigError  # noqa: E402
from edge.features import frame_dbfs, pool_window  # noqa: E402

VIEWS = ("room", "speaker", "fresh")


def statistics(bank: FeatureBank) -> np.ndarray:
    """(clips, 3, columns): mean, spread and mean change of every column over each clip."""
    cfg = bank.recipe.mfcc
    return np.stack([pool_window(v[0], frame_dbfs(v[0][:, 0], cfg), "mean_std_delta")
                     for v in bank.variants])


def standardized(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for g in np.unique(groups):
        m = groups == g
        out[m] = (x[m] - x[m].mean(0)) / (x[m].std(0) + 1e-6)
    return np.clip(out, -8, 8)


def loco(x: np.ndarray, corpus: np.ndarray, speaker: np.ndarray, label: np.ndarray
         ) -> dict[str, dict[str, float]]:
    from sklearn.linear_model import LogisticRegression

    from convert.metrics import classification_metrics

    out: dict[str, dict[str, float]] = {v: {} for v in VIEWS}
    for held in dict.fromkeys(corpus):
        tr, te = corpus != held, corpus == held
        for view in VIEWS:
            if view == "fresh":
                mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
                xtr, xte = np.clip((x[tr] - mu) / sd, -8, 8), np.clip((x[te] - mu) / sd, -8, 8)
            else:
                g = corpus if view == "room" else speaker
                xtr, xte = standardized(x[tr], g[tr]), standardized(x[te], g[te])
            clf = LogisticRegression(C=0.1, max_iter=2000)
            # Every class counts equally, and every corpus within a class, as in training.
            names, y = np.unique(label[tr], return_inverse=True)
            clf.fit(xtr, label[tr], sample_weight=sample_weights(y, corpus[tr], len(names)))
            labels = list(clf.classes_)  # labels the unseen corpus lacks leave the mean
            out[view][str(held)] = classification_metrics(
                [labels.index(y) for y in label[te]], [labels.index(p) for p in clf.predict(xte)],
                labels)["uar"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", type=Path, default=Path("recipes/speech.toml"))
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--cache", type=Path, help="feature cache (the base clips only)")
    p.add_argument("--ceps", type=int, nargs="+", default=[40, 20, 13],
                   help="cepstra kept (the first N), each screened with and without the change")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print("error: the screen needs scikit-learn: pip install -c constraints.txt scikit-learn",
              file=sys.stderr)
        return 2
    try:
        recipe = SpeechRecipe.load(args.recipe)
        utts = to_fusion_labels(index_corpora(recipe.data.corpora, args.data))
    except (ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bank = FeatureBank(utts, recipe, augment=False, cache_dir=args.cache)
    stats = statistics(bank)
    corpus = np.array([u.corpus for u in utts])
    speaker = np.array([f"{u.corpus}/{u.speaker}" for u in utts])
    label = np.array([u.label for u in utts])
    n_ceps, columns = recipe.mfcc.n_ceps, recipe.mfcc.n_columns
    names = list(dict.fromkeys(corpus))
    print(f"{'statistics':32s} " + "  ".join(f"{v + ' mean':>9s} ({' '.join(n[:5] for n in names)})"
                                            for v in VIEWS))
    for ceps in args.ceps:
        keep = [*range(min(ceps, n_ceps)), *range(n_ceps, columns)]
        for rows, what in (((0, 1), "mean, spread"), ((0, 1, 2), "mean, spread, change")):
            x = stats[:, rows][:, :, keep].reshape(len(utts), -1)
            res = loco(x, corpus, speaker, label)
            print(f"{ceps:2d} cepstra + prosody, {what:20s} " + "  ".join(
                f"{np.mean(list(res[v].values())):9.3f} ("
                + " ".join(f"{res[v][n]:.3f}" for n in names) + ")" for v in VIEWS), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
