"""Would a deployment-level decision rule help on voices the model never heard?  Studied on the
per-clip probabilities that leave-one-corpus-out keeps (``loco_<corpus>_clips.npz``), no training.

Each unseen corpus stands for one deployment.  Rules, applied to all its clips' probabilities:

- **argmax**: what the device does today;
- **EM prior**: the deployment's class prior re-estimated from the probabilities (Saerens et al.
  2002), the probabilities reweighted by it;
- **equalised**: each class's probability divided by its mean over the deployment, so that on
  average no class is favoured (a deployment assumed to hear every emotion equally often);
- **emotions equalised**: the same among the emotions only; each clip's neutral probability,
  and so its emotional mass, is kept;
- **over-calls damped**: as that, but only an emotion called more often than the emotions'
  mean is divided (by its mean over theirs): a pull toward one label is undone, and an emotion
  the deployment rarely or never hears is not raised.

A rule that assumes balanced emotions is also scored where they are not: the corpus subsampled so
that neutral is half, or 70%, of the clips (5 draws each), with accuracy beside UAR; the
corpus's neutral, happy, sad and angry clips alone (the labels of many English corpora), where
the other emotions never occur; and deployments where one emotion (each in turn) is half of
the emotional clips and neutral half of all.  The adapted probabilities keep the whole
corpus's statistics there; the fresh ones do not depend on them, so they are the cleaner test.

Given several report folders (the LOCO of several models on the same clips), each clip's
probabilities are the models' normalised geometric mean, as one graph joining them would give
(the ensemble's own rule): what averaging draws would buy, without building the graph.  The
telephone's views are scored too when every folder kept them.

With ``--branches W ...``, the ensemble's two branches are weighted instead: each window's
probabilities are the softmax of ``W`` times the compact branch's logits plus ``1 - W`` times the
pooled branch's (the shipped graph: ``W = 0.5``), and a clip's are their mean over its windows,
as the device decides.  It needs the window logits that LOCO keeps for an ensemble (runs made
after they were kept).  With ``--linear W ...``, an ensemble with a third, linear branch
(``model.linear_weight``) is scored with that branch weighted ``W`` and the other two ``(1 - W)
/ 2`` each; ``W = 0`` is the compact and pooled branches at equal weights, the shipped graph.

With ``--alone --linear W``, the graph (its linear branch weighted ``W``), each branch alone,
and the graph without each branch (the other two keeping their shares of the weight) are scored
by view: which branch a view's gain or loss comes from.  A run with ``evaluate.neutral_room``
adds that view (a room whose speech is mostly neutral) to every table.

With ``--offsets``, a fixed offset per class is added to the graph's logits, as a bias baked
into the shipped model would be: for each unseen corpus it is fitted on the other corpora's
held-out clips (their labels, each corpus and each of its classes weighing the same in a
cross-entropy over windows), so no label of the corpus it is scored on is used.  It asks whether
the pulls toward one label (the model card's "Why this is short of the targets") are shared
by unseen corpora, so that one correction learned from some would help on another.  A third
row fits each corpus's offsets on its own labels: no device could, so it bounds what any
per-deployment offset or prior (the rules above included) could reach.  With
``--linear W`` as well, the offsets are fitted on and added to the graph with its linear branch
weighted ``W``.

    .venv/bin/python scripts/speech_decision_rules.py [models/reports/speech ...]
    .venv/bin/python scripts/speech_decision_rules.py runs/X [runs/Y ...] --branches 0.3 0.5 0.7
    .venv/bin/python scripts/speech_decision_rules.py runs/X [runs/Y ...] --linear 0 0.15
    .venv/bin/python scripts/speech_decision_rules.py runs/X [runs/Y ...] --offsets [--linear W]
    .venv/bin/python scripts/speech_decision_rules.py runs/X [runs/Y ...] --alone --linear 0.3
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from convert.metrics import classification_metrics  # noqa: E402

Rule = Callable[[np.ndarray, int], np.ndarray]  # probabilities, neutral's column


def em_prior(p: np.ndarray, iters: int = 100) -> np.ndarray:
    """Saerens et al.'s EM: the model was trained with balanced classes (a uniform prior)."""
    k = p.shape[1]
    prior = np.full(k, 1.0 / k)
    q = p
    for _ in range(iters):
        q = p * (prior * k)
        q /= q.sum(axis=1, keepdims=True)
        new = q.mean(axis=0)
        if np.abs(new - prior).max() < 1e-6:
            break
        prior = new
    return q


def equalised(p: np.ndarray) -> np.ndarray:
    return p / np.maximum(p.mean(axis=0), 1e-3)


def emotions_equalised(p: np.ndarray, neutral: int) -> np.ndarray:
    """Each clip's neutral probability kept and its emotional mass (``1 - p[neutral]``) spread
    over the emotions in proportion to their :func:`equalised` probabilities: the emotions
    equalised among themselves, neutral left to the model."""
    return _neutral_kept(p, equalised(p), neutral)


def over_calls_damped(p: np.ndarray, neutral: int) -> np.ndarray:
    """As :func:`emotions_equalised`, but only an emotion called more often than the emotions'
    mean (over the deployment) is divided, by its mean over theirs: a pull toward one label is
    undone, and an emotion the deployment rarely or never hears is not raised."""
    m = p.mean(axis=0)
    emotions = np.arange(p.shape[1]) != neutral
    return _neutral_kept(p, p / np.maximum(m, m[emotions].mean()), neutral)


def _neutral_kept(p: np.ndarray, q: np.ndarray, neutral: int) -> np.ndarray:
    """``p``'s neutral column, and its emotional mass shared as ``q`` shares it."""
    q = q.copy()
    q[:, neutral] = 0.0
    q *= ((1.0 - p[:, neutral]) / np.maximum(q.sum(axis=1), 1e-12))[:, None]
    q[:, neutral] = p[:, neutral]
    return q


RULES: dict[str, Rule] = {"argmax": lambda p, _: p, "EM prior": lambda p, _: em_prior(p),
                          "equalised": lambda p, _: equalised(p),
                          "emotions equalised": emotions_equalised,
                          "over-calls damped": over_calls_damped}

#: The labels of a deployment that hears four of the seven (as many English corpora are
#: labelled): a rule that raises the emotions it rarely calls is tested where some never occur.
FOUR = ("neutral", "happy", "sad", "angry")


def score(y: np.ndarray, p: np.ndarray, labels: list[str]) -> tuple[float, float]:
    pred = p.argmax(axis=1)
    return classification_metrics(y, pred, labels)["uar"], float(np.mean(pred == y))


def neutral_heavy(y: np.ndarray, neutral_id: int, share: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Indices of all neutral clips and enough others that neutral is ``share`` of them."""
    neutral, other = np.flatnonzero(y == neutral_id), np.flatnonzero(y != neutral_id)
    n_other = min(other.size, int(round(neutral.size * (1 - share) / share)))
    return np.concatenate((neutral, rng.choice(other, n_other, replace=False)))


def one_emotion_half(y: np.ndarray, neutral_id: int, emotion: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Indices of a deployment where ``emotion`` is half of the emotional clips, the other
    emotions share the other half equally, and neutral is half of all."""
    others = [np.flatnonzero(y == c) for c in np.unique(y) if c not in (neutral_id, emotion)]
    if not others:  # the corpus's one emotion: it is all of the emotional clips already
        return np.arange(y.size)
    mine = np.flatnonzero(y == emotion)
    each = max(1, mine.size // len(others))
    rest = np.concatenate([rng.choice(o, min(each, o.size), replace=False) for o in others])
    emotional = np.concatenate((rng.choice(mine, min(mine.size, rest.size), replace=False), rest))
    neutral = np.flatnonzero(y == neutral_id)
    return np.concatenate((emotional, rng.choice(neutral, min(neutral.size, emotional.size),
                                                 replace=False)))


def load(files: list[Path], kind: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One corpus's labels and probabilities: the normalised geometric mean over ``files``
    (the same clips scored by several models)."""
    logs = []
    for f in files:
        with np.load(f) as z:
            y_f, labels_f = z["y"], [str(s) for s in z["labels"]]
            logs.append(np.log(np.maximum(z[kind], 1e-9)))
        if len(logs) == 1:
            y, labels = y_f, labels_f
        elif labels_f != labels or not np.array_equal(y_f, y):
            sys.exit(f"{f}: not the same clips as {files[0]}; compare LOCO runs on the same data")
    p = np.exp(np.mean(logs, axis=0))
    return y, p / p.sum(axis=1, keepdims=True), labels


VIEWS = ("adapted", "fresh", "telephone_adapted", "telephone_fresh", "neutral_room")


def corpus_name(clips_file: Path) -> str:
    """The corpus a kept LOCO clips file (``loco_<corpus>_clips.npz``) holds."""
    return clips_file.name[len("loco_"):-len("_clips.npz")]


def clip_files(folder: Path) -> list[Path]:
    """The kept LOCO clips files in ``folder``, one per unseen corpus, in name order."""
    files = sorted(folder.glob("loco_*_clips.npz"))
    if not files:
        sys.exit(f"{folder}: no loco_*_clips.npz; run emotion-convert speech with "
                 "evaluate.loco = true first")
    return files


def views_kept(files: list[Path]) -> list[str]:
    """The views (:data:`VIEWS` order) whose probabilities every file holds: the telephone's
    only when each LOCO was asked for it."""
    kept = set(VIEWS)
    for f in files:
        with np.load(f) as z:
            kept &= set(z.files)
    return [v for v in VIEWS if v in kept]


def window_logits(z: Mapping[str, np.ndarray], view: str, w: float,
                  linear: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The graph's logits per window of ``view`` with the compact branch weighted ``w`` against
    the pooled one, and those two ``1 - linear`` against a linear third branch, if the run has
    one; and each window's clip."""
    return weighted_logits(z, view, ((1 - linear) * w, (1 - linear) * (1 - w), linear))


def weighted_logits(z: Mapping[str, np.ndarray], view: str,
                    weights: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Each window's logits of ``view`` as the branches' (compact, pooled, linear) weighted by
    ``weights``, of which a two-branch run uses the first two; and each window's clip."""
    logits = z[f"{view}_window_logits"]
    w = np.asarray(weights[:logits.shape[1]], dtype=np.float64)
    return np.tensordot(logits, w, axes=([1], [0])), z[f"{view}_window_group"]


def clip_probabilities(logit: np.ndarray, group: np.ndarray, n_clips: int) -> np.ndarray:
    """The mean of each clip's window probabilities: every clip has a window (the device's
    gate falls back to all of them)."""
    e = np.exp(logit - logit.max(axis=1, keepdims=True))
    probs = e / e.sum(axis=1, keepdims=True)
    total = np.zeros((n_clips, probs.shape[1]))
    np.add.at(total, group, probs)
    return total / np.bincount(group, minlength=n_clips)[:, None]


def fit_offsets(corpora: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The per-class logit offset minimising cross-entropy over the windows of ``corpora``
    (logits, each window's label), each corpus and each class in it weighing the same."""
    logit = np.concatenate([lg for lg, _ in corpora])
    y = np.concatenate([yw for _, yw in corpora])
    weights = []
    for _, yw in corpora:
        _, inverse, counts = np.unique(yw, return_inverse=True, return_counts=True)
        weights.append(1.0 / (counts[inverse] * counts.size * len(corpora)))
    weight = np.concatenate(weights)
    rows = np.arange(y.size)

    def loss(b: np.ndarray) -> tuple[float, np.ndarray]:
        shifted = logit + b
        top = shifted.max(axis=1, keepdims=True)
        log_total = np.log(np.exp(shifted - top).sum(axis=1, keepdims=True)) + top
        grad = (weight[:, None] * np.exp(shifted - log_total)).sum(axis=0)
        np.subtract.at(grad, y, weight)
        return float(weight @ (log_total[:, 0] - shifted[rows, y])), grad

    b: np.ndarray = np.asarray(minimize(loss, np.zeros(logit.shape[1]), jac=True,
                                        method="L-BFGS-B").x, dtype=np.float64)
    return b - float(b.mean())  # only differences between classes change a decision


def window_clips(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """Each corpus's kept LOCO clips in ``folder``, read once, by corpus name; they must hold
    the window logits that an ensemble's LOCO keeps."""
    clips = {}
    for f in clip_files(folder):
        with np.load(f) as z:
            if "adapted_window_logits" not in z.files:
                sys.exit(f"{f}: no window logits; they are kept for an ensemble's LOCO "
                         "since --branches exists: run the LOCO again")
            clips[corpus_name(f)] = dict(z)
    return clips


def print_row(folder: Path, key: str, corpora: list[str],
              uar: dict[str, list[float]]) -> list[float]:
    """One folder's row: the LOCO mean of each view (nan where a corpus lacks it) and each
    corpus's adapted and fresh figures; returns the means."""
    means = [float(np.mean(uar[v])) if len(uar[v]) == len(corpora) else float("nan")
             for v in VIEWS]
    room = uar["neutral_room"] if len(uar["neutral_room"]) == len(corpora) else []
    per = ", ".join(f"{n} {a:.3f} / {b:.3f}" + (f" / {room[i]:.3f}" if room else "")
                    for i, (n, a, b) in enumerate(zip(corpora, uar["adapted"], uar["fresh"])))
    print(f"| {folder} | {key} | " + " | ".join(f"{m:.3f}" for m in means) + f" | {per} |")
    return means


def print_table_head(key: str, align: str) -> None:
    print(f"| run | {key} | " + " | ".join(VIEWS)
          + " | per corpus (adapted / fresh [/ neutral_room]) |")
    print(f"|---|{align}|" + "---:|" * len(VIEWS) + "---|")


def print_means(table: list[tuple[str, list[list[float]]]]) -> None:
    """The mean over folders of each key's rows, when there are several folders."""
    for key, rows in table:
        if len(rows) > 1:
            print(f"| mean | {key} | " + " | ".join(f"{m:.3f}" for m in np.mean(rows, axis=0))
                  + " | |")


def require_linear_branch(folder: Path, clips: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Exit with one line unless every clip file of ``folder`` kept a linear branch's logits."""
    if any(z["adapted_window_logits"].shape[1] < 3 for z in clips.values()):
        sys.exit(f"{folder}: --linear needs the LOCO of an ensemble with a linear branch "
                 "(model.linear_weight)")


def weigh_branches(folders: list[Path], weights: list[float], linear: bool = False) -> None:
    """LOCO mean UAR per branch weight (the compact branch's, or with ``linear`` the linear
    branch's), by view, for each folder and their mean."""
    graphs = [(f"{w:.2f}", ((1 - w) / 2, (1 - w) / 2, w) if linear else (w, 1 - w, 0.0))
              for w in weights]
    score_graphs(folders, graphs, "linear weight" if linear else "compact weight", "---:", linear)


BRANCHES = ("compact", "pooled", "linear")


def branches_alone(folders: list[Path], linear: float) -> None:
    """LOCO mean UAR by view of the graph with its linear branch weighted ``linear``, of each
    branch alone, and of the graph without each branch (the other two keeping their shares of
    the weight): which branch a view's gain or loss comes from."""
    graph = ((1 - linear) / 2, (1 - linear) / 2, linear)
    graphs = [("graph", graph)]
    graphs += [(f"{name} alone", tuple(float(i == j) for j in range(3)))
               for i, name in enumerate(BRANCHES)]
    graphs += [(f"without {name}", tuple(0.0 if i == j else w / (1 - graph[i])
                                         for j, w in enumerate(graph)))
               for i, name in enumerate(BRANCHES)]
    score_graphs(folders, graphs, "branches", "---", needs_linear=True)


def score_graphs(folders: list[Path], graphs: list[tuple[str, tuple[float, ...]]], key: str,
                 align: str, needs_linear: bool) -> None:
    """One row per folder and graph (a name and its branches' weights), by view, under the
    column ``key`` aligned ``align``, and each graph's mean over the folders."""
    print_table_head(key, align)
    table: list[tuple[str, list[list[float]]]] = [(name, []) for name, _ in graphs]
    for folder in folders:
        clips = window_clips(folder)
        if needs_linear:
            require_linear_branch(folder, clips)
        for (_, weights), (name, rows) in zip(graphs, table):
            uar: dict[str, list[float]] = {v: [] for v in VIEWS}
            for z in clips.values():
                y, labels = z["y"], [str(s) for s in z["labels"]]
                for v in VIEWS:
                    if f"{v}_window_logits" in z:
                        probs = clip_probabilities(*weighted_logits(z, v, weights), len(y))
                        uar[v].append(score(y, probs, labels)[0])
            rows.append(print_row(folder, name, list(clips), uar))
    print_means(table)


def class_offsets(folders: list[Path], linear: float = 0.0) -> None:
    """LOCO mean UAR by view without and with offsets fitted on the other corpora, on the graph
    with its linear branch (if any) weighted ``linear``; and with offsets fitted on each corpus's
    own labels, the bound for any offset or prior a deployment could learn."""
    print_table_head("offsets", "---")
    table: list[tuple[str, list[list[float]]]] = [("none", []), ("fitted", []),
                                                  ("own labels", [])]
    for folder in folders:
        clips = window_clips(folder)
        if len(clips) < 2:
            sys.exit(f"{folder}: offsets need the LOCO of 2 or more corpora (loco_*_clips.npz)")
        if linear:
            require_linear_branch(folder, clips)
        uar: dict[str, dict[str, list[float]]] = {k: {v: [] for v in VIEWS} for k, _ in table}
        for name, z in clips.items():
            y, labels = z["y"], [str(s) for s in z["labels"]]
            for clean in ("adapted", "fresh"):
                # The telephone is scored with the offsets of the clean view: a device does
                # not know what channel it will hear.
                offsets = fit_offsets([(lg, other["y"][g]) for other_name, other in clips.items()
                                       if other_name != name
                                       for lg, g in [window_logits(other, clean, 0.5, linear)]])
                for v in (clean, f"telephone_{clean}"):
                    if f"{v}_window_logits" not in z:
                        continue
                    logit, group = window_logits(z, v, 0.5, linear)
                    # Fitted on this corpus's own labels: not a rule a device could use, but a
                    # bound on what any per-deployment prior or offset could reach.
                    own = fit_offsets([(logit, y[group])])
                    for k, b in (("none", 0.0), ("fitted", offsets), ("own labels", own)):
                        uar[k][v].append(score(y, clip_probabilities(logit + b, group, len(y)),
                                               labels)[0])
        for k, rows in table:
            rows.append(print_row(folder, k, list(clips), uar[k]))
    print_means(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, default=[Path("models/reports/speech")],
                        help="LOCO report folders holding loco_<corpus>_clips.npz")
    parser.add_argument("--branches", nargs="+", type=float, metavar="W",
                        help="weigh the ensemble's compact branch W and its pooled one 1 - W")
    parser.add_argument("--linear", nargs="+", type=float, metavar="W",
                        help="weigh an ensemble's linear branch W, the other two (1 - W) / 2 "
                             "each (W = 0: the shipped graph)")
    parser.add_argument("--offsets", action="store_true",
                        help="add a per-class logit offset fitted on the other corpora")
    parser.add_argument("--alone", action="store_true",
                        help="score each branch alone and the graph without each (the linear "
                             "branch weighted by one --linear W)")
    args = parser.parse_args()
    folders = args.folders
    if args.alone:
        if args.branches or args.offsets or not args.linear or len(args.linear) > 1:
            sys.exit("--alone takes one --linear weight (the graph's: 0.3 for the shipped "
                     "recipe) and no --branches or --offsets")
        branches_alone(folders, args.linear[0])
        return
    if args.offsets:
        if args.branches or (args.linear and len(args.linear) > 1):
            sys.exit("--offsets takes at most one --linear weight and no --branches")
        class_offsets(folders, linear=args.linear[0] if args.linear else 0.0)
        return
    for option, weights in (("--branches", args.branches), ("--linear", args.linear)):
        if weights:
            if not all(0.0 <= w <= 1.0 for w in weights):
                sys.exit(f"{option} {weights}: each weight must be between 0 and 1")
            weigh_branches(folders, weights, linear=option == "--linear")
            return
    corpora = [[f.name for f in clip_files(folder)] for folder in folders]
    for folder, names in zip(folders, corpora):
        if names != corpora[0]:
            sys.exit(f"{folder}: corpora {names} are not those of {folders[0]} ({corpora[0]})")
    files = [[folder / name for folder in folders] for name in corpora[0]]
    corpus_names = [corpus_name(f[0]) for f in files]
    print("| rule | probabilities | LOCO UAR | neutral 50%: UAR / accuracy | "
          "neutral 70%: UAR / accuracy | four labels: UAR / accuracy | "
          "one emotion half: UAR / accuracy | per corpus |\n|---|---|---:|---:|---:|---:|---:|---|")
    for kind in views_kept([f for same_clips in files for f in same_clips]):
        corpus_probs = [load(same_clips, kind) for same_clips in files]  # read once, every rule
        for name, rule in RULES.items():
            full, heavy, four, half = [], {0.5: [], 0.7: []}, [], []
            for y, p, labels in corpus_probs:
                neutral = labels.index("neutral")
                full.append(score(y, rule(p, neutral), labels)[0])
                rng = np.random.default_rng(0)
                for share, rows in heavy.items():
                    for _ in range(5):
                        idx = neutral_heavy(y, neutral, share, rng)
                        rows.append(score(y[idx], rule(p[idx], neutral), labels))
                idx = np.flatnonzero(np.isin(y, [labels.index(c) for c in FOUR if c in labels]))
                four.append(score(y[idx], rule(p[idx], neutral), labels))
                for emotion in np.unique(y[y != neutral]):
                    idx = one_emotion_half(y, neutral, emotion, np.random.default_rng(emotion))
                    half.append(score(y[idx], rule(p[idx], neutral), labels))
            cells = [f"{np.mean([r[0] for r in rows]):.3f} / {np.mean([r[1] for r in rows]):.3f}"
                     for rows in (*heavy.values(), four, half)]
            per = ", ".join(f"{n} {u:.3f}" for n, u in zip(corpus_names, full))
            print(f"| {name} | {kind} | {np.mean(full):.3f} | {' | '.join(cells)} | {per} |")


if __name__ == "__main__":
    main()
