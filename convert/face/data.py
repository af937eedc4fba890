"""Face expression data: the FER2013 npz and a ``root/<label>/*.png|jpg`` image-folder layout.

Both loaders return uint8 grey face crops ``(N, H, W)`` and integer labels; the shared
:func:`edge.features.face.crop_faces` turns them into network input, the same code the device
uses.  :func:`load_face_data` splits either into train / choose / report.

Protocol for FER2013: train on ``Training``, choose epochs on ``PublicTest``, report
``PrivateTest`` only.  For an image folder the images are split 80/10/10 (stratified, seeded) into
train / choose / report.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from edge.errors import ConfigError, ImageFileError
from edge.models.face import FER_LABELS

from .ferplus import load_ferplus_votes, majority_labels, vote_targets, votes_beside

__all__ = ["FaceData", "FaceSplit", "FER_USAGES", "IMAGE_SUFFIXES", "load_face_data", "load_fer",
           "load_image_folder"]

logger = logging.getLogger(__name__)

#: FER2013 usages in protocol order: train on Training, choose on PublicTest, report PrivateTest.
FER_USAGES = ("Training", "PublicTest", "PrivateTest")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclasses.dataclass(frozen=True)
class FaceSplit:
    """Grey face crops ``x`` (uint8, ``(N, H, W)``), labels ``y`` (int64) and label names;
    for FER2013 with FER+ also the crowd ``votes`` (uint8 ``(N, 10)``, :mod:`.ferplus`) and
    ``valid`` (bool ``(N,)``: the row was matched to FER+)."""

    x: np.ndarray
    y: np.ndarray
    labels: tuple[str, ...]
    votes: np.ndarray | None = None
    valid: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: np.ndarray) -> FaceSplit:
        if self.votes is None or self.valid is None:
            return FaceSplit(self.x[index], self.y[index], self.labels)
        return FaceSplit(self.x[index], self.y[index], self.labels, self.votes[index],
                         self.valid[index])

    def vote_targets(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(targets, usable)`` of :func:`.ferplus.vote_targets`, or None without votes."""
        if self.votes is None or self.valid is None:
            return None
        return vote_targets(self.votes, self.valid, self.labels)

    def majority(self, min_share: float = 0.0) -> np.ndarray | None:
        """FER+ majority-vote label per row (-1 = not scored, :func:`.ferplus.majority_labels`,
        ``min_share`` as there), or None without votes."""
        if self.votes is None or self.valid is None:
            return None
        return majority_labels(self.votes, self.valid, self.labels, min_share)


def load_fer(npz_path: str | Path, usage: str, ferplus: str | Path | None = None) -> FaceSplit:
    """Load one FER2013 usage (``Training``, ``PublicTest`` or ``PrivateTest``) from the npz
    with keys ``x`` (uint8 N,48,48), ``y`` (0..6) and ``usage``; with ``ferplus`` (a
    ``ferplus_votes.npz`` aligned row for row) also the FER+ votes of its rows."""
    if usage not in FER_USAGES:
        raise ConfigError(f"FER usage {usage!r} is unknown; choose one of {', '.join(FER_USAGES)}")
    npz_path = Path(npz_path)
    try:
        with np.load(npz_path) as data:
            usages = data["usage"]
            mask = usages == usage
            x, y = data["x"][mask], data["y"][mask].astype(np.int64)
    except FileNotFoundError:
        raise ImageFileError(f"{npz_path}: FER2013 npz not found; pass --fer PATH") from None
    except (KeyError, ValueError, OSError) as exc:
        raise ImageFileError(
            f"{npz_path}: not a FER2013 npz with keys x, y, usage ({exc})"
        ) from None
    if x.dtype != np.uint8 or x.ndim != 3:
        raise ImageFileError(f"{npz_path}: x must be uint8 (N, H, W), got {x.dtype} {x.shape}")
    if ferplus is None:
        return FaceSplit(x, y, FER_LABELS)
    votes, valid = load_ferplus_votes(ferplus, n_rows=len(usages))
    return FaceSplit(x, y, FER_LABELS, votes[mask], valid[mask])


def load_image_folder(
    root: str | Path, *, size: int = 48, labels: tuple[str, ...] | None = None
) -> FaceSplit:
    """Load ``root/<label>/*.png|jpg`` face crops, resized to ``size`` x ``size`` grey.

    Label order is ``labels`` when given (folders must be a subset), else the FER order for the
    FER label names present, else sorted folder names.  Unreadable files are skipped with a warning
    naming them; an empty folder tree is an error.
    """
    import cv2

    from edge.sources.images import read_gray_image

    root = Path(root)
    if not root.is_dir():
        raise ImageFileError(f"{root}: image folder not found (expected root/<label>/*.png)")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    named = labels is not None
    if labels is None:
        labels = tuple(name for name in FER_LABELS if name in folders)
        labels = labels + tuple(f for f in folders if f not in labels)
        for folder in folders:
            # Every folder is a class: "Happy" beside (or instead of) "happy" would be a new one.
            if folder not in FER_LABELS and folder.strip().lower() in FER_LABELS:
                logger.warning("%s/%s is a label of its own; name it %r to make it FER's",
                               root, folder, folder.strip().lower())
    unknown = set(folders) - set(labels)
    if unknown:
        raise ConfigError(f"{root}: folders {sorted(unknown)} are not in labels {list(labels)}")
    xs, ys = [], []
    for index, label in enumerate(labels):
        folder = root / label
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                image = read_gray_image(path)
            except ImageFileError as exc:
                logger.warning("skipping %s", exc)
                continue
            if image.shape != (size, size):
                image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
            xs.append(image)
            ys.append(index)
    if not xs:
        raise ImageFileError(f"{root}: no readable images under {root}/<label>/")
    y = np.asarray(ys, dtype=np.int64)
    if not named:  # a folder without a readable image is no class to learn
        kept = [i for i in range(len(labels)) if np.any(y == i)]
        for i in sorted(set(range(len(labels))) - set(kept)):
            logger.warning("%s/%s has no readable image; not a label", root, labels[i])
        y = np.searchsorted(np.asarray(kept), y)
        labels = tuple(labels[i] for i in kept)
    if len(labels) < 2:
        raise ConfigError(f"{root}: images of one label only ({labels[0]}); a model needs at "
                          f"least two label folders")
    return FaceSplit(np.stack(xs), y, tuple(labels))


@dataclasses.dataclass(frozen=True)
class FaceData:
    """Train / choose / report splits and a description of the protocol."""

    train: FaceSplit
    choose: FaceSplit
    report: FaceSplit
    protocol: str
    source: str
    #: The FER+ votes file the splits carry, if any.
    votes_source: str | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return self.train.labels


def load_face_data(
    *, fer: str | Path | None = None, image_folder: str | Path | None = None,
    size: int = 48, seed: int = 0, ferplus: str | Path | None = None,
) -> FaceData:
    """FER2013's own three usages, or an image folder (resized to ``size``) split by ``seed``.

    FER2013 comes with its FER+ votes from ``ferplus`` or, by default, from
    ``ferplus_votes.npz`` next to ``fer`` when that file exists (they add the majority-vote
    figures and allow ``ground_truth = "votes"``; they change nothing else)."""
    if (fer is None) == (image_folder is None):
        raise ConfigError("give exactly one of --fer PATH or --image-folder PATH")
    if ferplus is not None and fer is None:
        raise ConfigError(f"{ferplus}: FER+ votes belong to FER2013 rows; give --fer too")
    if fer is not None:
        beside = votes_beside(fer)
        if ferplus is None and beside.is_file():
            ferplus = beside
        training = load_fer(fer, "Training", ferplus)
        if len(np.unique(training.y)) < 2:
            raise ConfigError(f"{fer}: its Training rows have one label only; a model needs "
                              f"at least two")
        return FaceData(
            training, load_fer(fer, "PublicTest", ferplus),
            load_fer(fer, "PrivateTest", ferplus),
            protocol="FER2013: trained on Training, epochs chosen on PublicTest, reported on "
            "PrivateTest (3589 images, never used for any choice)",
            source=f"FER2013 ({Path(fer).name})",
            votes_source=f"FER+ votes ({Path(ferplus).name})" if ferplus is not None else None,
        )
    assert image_folder is not None
    data = load_image_folder(image_folder, size=size)
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for c in range(len(data.labels)):
        idx = rng.permutation(np.flatnonzero(data.y == c))
        n_test = max(1, len(idx) // 10) if len(idx) >= 3 else 0
        n_val = max(1, len(idx) // 10) if len(idx) >= 3 else 0
        parts[2] += idx[:n_test].tolist()
        parts[1] += idx[n_test : n_test + n_val].tolist()
        parts[0] += idx[n_test + n_val :].tolist()
    if not parts[1] or not parts[2]:
        raise ConfigError(f"{image_folder}: too few images to split (need >= 3 per label)")
    train, choose, report = (data.subset(np.array(sorted(p))) for p in parts)
    return FaceData(
        train, choose, report,
        protocol=f"image folder: stratified 80/10/10 split (seed {seed}); epochs chosen on the "
        f"10% choose split, reported on the 10% report split",
        source=f"image folder {image_folder}",
    )
