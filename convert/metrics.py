"""Classification metrics and confusion-matrix pictures, in NumPy (matplotlib only to draw)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["confusion_matrix", "classification_metrics", "mean_metrics", "plot_confusion",
           "plot_confusions"]


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """``cm[i, j]`` = examples of true class ``i`` predicted as ``j``."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]
) -> dict[str, Any]:
    """UAR (unweighted average recall = macro recall), accuracy, macro-F1, per-class recall and
    the confusion matrix.  Classes absent from ``y_true`` are left out of the macro averages."""
    cm = confusion_matrix(y_true, y_pred, len(labels))
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm).astype(float)
    present = support > 0
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    n = int(support.sum())
    return {
        "uar": float(recall[present].mean()) if present.any() else 0.0,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "n": n,
        "per_class_recall": {lab: float(r) for lab, r, p in zip(labels, recall, present) if p},
        "labels": list(labels),
        "confusion": cm.tolist(),
    }


def mean_metrics(folds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation of the scalar metrics over folds, and the summed confusion."""
    out: dict[str, Any] = {}
    for key in ("uar", "accuracy", "macro_f1"):
        vals = np.array([f[key] for f in folds], dtype=float)
        out[key] = float(vals.mean())
        out[f"{key}_std"] = float(vals.std())
    out["confusion"] = np.sum([np.asarray(f["confusion"]) for f in folds], axis=0).tolist()
    out["labels"] = list(folds[0]["labels"])
    out["n"] = int(sum(f["n"] for f in folds))
    return out


def plot_confusion(
    cm: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path, title: str
) -> Path:
    """Row-normalised confusion matrix as a PNG (counts in the cells)."""
    return plot_confusions([(cm, title)], labels, path)


def plot_confusions(
    panels: Sequence[tuple[Sequence[Sequence[int]], str]], labels: Sequence[str],
    path: str | Path,
) -> Path:
    """Row-normalised confusion matrices side by side in one PNG, one ``(cm, title)`` each (rows
    without clips stay blank: a corpus that lacks a class)."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    side = 1.0 + 0.7 * len(labels)
    fig, axes = plt.subplots(1, len(panels), figsize=(side * len(panels), side - 0.2), dpi=110,
                             squeeze=False)
    for ax, (cm, title) in zip(axes[0], panels):
        _draw_confusion(ax, np.asarray(cm, dtype=float), labels, title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def _draw_confusion(ax: Any, cm: np.ndarray, labels: Sequence[str], title: str) -> None:
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
