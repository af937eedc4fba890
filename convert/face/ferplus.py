"""FER+ crowd votes for FER2013: the training targets they give and the majority-vote metric.

FER+ (Barsoum et al., ICMI 2016) re-labelled every FER2013 image with 10 crowd votes over
:data:`FERPLUS_COLUMNS`.  Our models keep FER2013's seven labels in FER2013's order
(:data:`edge.models.face.FER_LABELS`), so the votes are mapped onto them by one stated rule
(:data:`VOTE_TO_LABEL`):

- each of the seven shared emotions counts for its FER2013 label;
- **contempt counts as disgust** (its nearest label: our set has no contempt);
- **unknown and not-a-face (NF) votes are dropped**.

Training targets (:func:`vote_targets`): a row's target is its mapped votes divided by their
sum.  A row has usable votes only if it was matched (``valid``) and its mapped emotion votes
outnumber its unknown + NF votes (strictly more than half of its votes name an emotion); the
other rows (unmatched, or mostly unknown / not a face) keep their one-hot FER2013 label.

Metric (:func:`majority_labels`, :func:`majority_accuracy`): the FER+ standard figure is
accuracy against the majority vote.  A row's majority is the column with the most votes over
all ten columns; a row is scored only if it was matched, that top column is unique (**ties are
left out**) and it is one of the seven emotions FER2013 shares (**rows whose majority is
contempt, unknown or NF are left out**: contempt is not one of our labels, and unknown / NF
are not expressions).  The row's FER2013 label is not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ConfigError, ImageFileError

__all__ = [
    "FERPLUS_COLUMNS",
    "VOTE_TO_LABEL",
    "FERPLUS_FILE",
    "votes_beside",
    "MAJORITY_PROTOCOL",
    "VOTE_RULE",
    "load_ferplus_votes",
    "vote_matrix",
    "vote_targets",
    "majority_labels",
    "majority_accuracy",
]

#: Vote columns of ``ferplus_votes.npz``, in its order.
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                   "contempt", "unknown", "NF")
#: FER+ column -> FER2013 label name; ``None`` = the vote is dropped.
VOTE_TO_LABEL: dict[str, str | None] = {
    "neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
    "anger": "angry", "disgust": "disgust", "fear": "fear", "contempt": "disgust",
    "unknown": None, "NF": None,
}
#: The votes file's usual name, next to ``fer2013_48.npz``.
FERPLUS_FILE = "ferplus_votes.npz"
VOTE_RULE = ("FER+ votes mapped to our labels: contempt -> disgust, unknown and NF dropped, the "
             "rest to their FER2013 label; a row's target is its mapped votes over their sum if "
             "it was matched and its emotion votes outnumber its unknown + NF votes, else its "
             "one-hot FER2013 label")
MAJORITY_PROTOCOL = ("FER+ majority-vote accuracy: the label is the FER+ column with the most of "
                     "the 10 votes; scored only on matched rows whose top column is unique (ties "
                     "left out) and is one of the 7 emotions we share (majority contempt, unknown "
                     "or NF left out); each figure averages a face with its mirror image "
                     "(the device default) unless marked single_pass")

_NO_VOTES = -1


def votes_beside(fer: str | Path) -> Path:
    """Where the FER+ votes of a ``fer2013_48.npz`` are looked for when none are named."""
    return Path(fer).parent / FERPLUS_FILE


def npz_arrays(path: Path, what: str, keys: tuple[str, ...], flag: str) -> dict[str, Any]:
    """The arrays ``keys`` of the ``.npz`` at ``path``; each way it is not ``what`` (missing,
    not an ``.npz``, pickled objects, a key missing) is one :class:`ImageFileError` naming it."""
    expected = f"not {what}: an .npz with arrays {', '.join(keys)}"
    try:
        data = np.load(path)  # pickled objects refused (allow_pickle=False)
    except FileNotFoundError:
        raise ImageFileError(f"{path}: {what} not found; pass {flag} PATH") from None
    except (ValueError, OSError, EOFError):
        raise ImageFileError(f"{path}: {expected}") from None
    if not isinstance(data, np.lib.npyio.NpzFile):  # an .npy: one array, no keys
        raise ImageFileError(f"{path}: {expected} (it holds a single array)")
    with data:
        missing = [k for k in keys if k not in data.files]
        if missing:
            raise ImageFileError(f"{path}: {expected} (it has no {', '.join(missing)})")
        try:
            return {k: data[k] for k in keys}
        except (ValueError, OSError, EOFError):  # an array of pickled objects, a damaged member
            raise ImageFileError(f"{path}: {expected} (of numbers)") from None


def load_ferplus_votes(path: str | Path, n_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(votes, valid)`` of a ``ferplus_votes.npz``: uint8 ``(N, 10)`` in
    :data:`FERPLUS_COLUMNS` order and bool ``(N,)``, row for row with ``fer2013_48.npz``
    (``n_rows``, when given, must match)."""
    path = Path(path)
    data = npz_arrays(path, "FER+ votes", ("votes", "valid", "columns"), "--ferplus")
    votes, valid = data["votes"], data["valid"].astype(bool)
    columns = tuple(str(c) for c in data["columns"])
    if columns != FERPLUS_COLUMNS:
        raise ImageFileError(f"{path}: vote columns {list(columns)} are not "
                             f"{list(FERPLUS_COLUMNS)}")
    if votes.ndim != 2 or votes.shape[1] != len(FERPLUS_COLUMNS) or len(valid) != len(votes):
        raise ImageFileError(f"{path}: votes {votes.shape} and valid {valid.shape} must be "
                             f"(N, {len(FERPLUS_COLUMNS)}) and (N,)")
    if n_rows is not None and len(votes) != n_rows:
        raise ImageFileError(f"{path}: {len(votes)} rows of votes for {n_rows} FER2013 images; "
                             f"the two files must be aligned row for row")
    return votes, valid


def vote_matrix(labels: tuple[str, ...]) -> np.ndarray:
    """``(10, len(labels))`` 0/1 matrix taking a row of FER+ votes to votes per label
    (:data:`VOTE_TO_LABEL`); a label set without one of the mapped labels is a ConfigError."""
    missing = sorted({t for t in VOTE_TO_LABEL.values() if t is not None} - set(labels))
    if missing:
        raise ConfigError(f"FER+ votes need the FER2013 labels; {missing} are not among "
                          f"{list(labels)}")
    m = np.zeros((len(FERPLUS_COLUMNS), len(labels)), np.float32)
    for i, column in enumerate(FERPLUS_COLUMNS):
        target = VOTE_TO_LABEL[column]
        if target is not None:
            m[i, labels.index(target)] = 1.0
    return m


def vote_targets(
    votes: np.ndarray, valid: np.ndarray, labels: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """``(targets, usable)``: each row's mapped vote distribution over ``labels`` (float32
    ``(N, K)``, rows summing to 1; zeros where not usable) and whether its votes are usable
    (bool ``(N,)``); the rule is the module's."""
    votes = np.asarray(votes, np.float32)
    mapped = votes @ vote_matrix(labels)
    emotion = mapped.sum(1)
    dropped = votes.sum(1) - emotion
    usable = np.asarray(valid, bool) & (emotion > dropped)
    targets = np.zeros_like(mapped)
    targets[usable] = mapped[usable] / emotion[usable, None]
    return targets, usable


def majority_labels(votes: np.ndarray, valid: np.ndarray, labels: tuple[str, ...],
                    min_share: float = 0.0) -> np.ndarray:
    """Each row's majority-vote label index into ``labels``, or -1 where the row is not scored
    (unmatched, a tie for the most votes, or a majority of contempt, unknown or NF).

    ``min_share`` > 0 also leaves out rows whose top column has less than that share of the
    row's votes: ``0.7`` keeps the faces that at least 7 of 10 people read the same way, the
    clear, prototypical expressions that posed photos show."""
    vote_matrix(labels)  # the same label check as the targets
    votes = np.asarray(votes)
    top = votes.argmax(1)
    unique = (votes == votes.max(1, keepdims=True)).sum(1) == 1
    index = np.full(len(FERPLUS_COLUMNS), _NO_VOTES, np.int64)
    for i, column in enumerate(FERPLUS_COLUMNS):
        if column not in ("contempt", "unknown", "NF"):
            index[i] = labels.index(VOTE_TO_LABEL[column] or "")
    out = index[top]
    total = np.maximum(votes.sum(1), 1)
    clear = votes.max(1) >= min_share * total
    out[~(np.asarray(valid, bool) & unique & clear)] = _NO_VOTES
    return out


def majority_accuracy(majority: np.ndarray, predicted: np.ndarray) -> float:
    """Accuracy of ``predicted`` label indices on the rows ``majority`` scores (>= 0)."""
    scored = np.asarray(majority) >= 0
    if not scored.any():
        return 0.0
    return float((np.asarray(predicted)[scored] == np.asarray(majority)[scored]).mean())


def majority_figures(
    prefix: str, majority_choose: np.ndarray, majority_report: np.ndarray,
    choose: tuple[np.ndarray, np.ndarray], report: tuple[np.ndarray, np.ndarray],
) -> dict[str, float]:
    """FER+ majority-vote accuracies, as the manifest names them, from (one pass, mirror)
    probabilities of both splits."""
    out: dict[str, float] = {}
    for split, majority, (single, mirror) in (("choose", majority_choose, choose),
                                              ("report", majority_report, report)):
        out[f"{split}_ferplus_majority_accuracy_{prefix}"] = majority_accuracy(
            majority, mirror.argmax(1))
        out[f"{split}_ferplus_majority_accuracy_{prefix}_single_pass"] = majority_accuracy(
            majority, single.argmax(1))
    return out
