"""Face expression data: the FER2013 npz and a ``root/<label>/...`` folder of one's own photos.

Both loaders return uint8 grey face crops ``(N, H, W)`` (a photo's face found and cut as the
device cuts it) and integer labels; the shared
:func:`edge.features.face.crop_faces` turns them into network input, the same code the device
uses.  :func:`load_face_data` splits either into train / choose / report.

Protocol for FER2013: train on ``Training``, choose epochs on ``PublicTest``, report
``PrivateTest`` only.  For an image folder the images are split 80/10/10 (stratified, seeded) into
train / choose / report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ConfigError, ImageFileError
from edge.features.face import FacePreprocessConfig, face_patch
from edge.labels import COMMON_LABELS, fusion_map_for
from edge.models.face import FER_LABELS

from .ferplus import (
    load_ferplus_votes,
    majority_labels,
    npz_arrays,
    vote_targets,
    votes_beside,
)

__all__ = ["FaceData", "FaceSplit", "FER_USAGES", "load_face_data", "load_fer",
           "load_image_folder"]

logger = logging.getLogger(__name__)

#: FER2013 usages in protocol order: train on Training, choose on PublicTest, report PrivateTest.
FER_USAGES = ("Training", "PublicTest", "PrivateTest")


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
    data = npz_arrays(npz_path, "FER2013", ("x", "y", "usage"), "--fer")
    usages = data["usage"]
    mask = usages == usage
    x, y = data["x"][mask], data["y"][mask].astype(np.int64)
    if x.dtype != np.uint8 or x.ndim != 3:
        raise ImageFileError(f"{npz_path}: x must be uint8 (N, H, W), got {x.dtype} {x.shape}")
    if ferplus is None:
        return FaceSplit(x, y, FER_LABELS)
    votes, valid = load_ferplus_votes(ferplus, n_rows=len(usages))
    return FaceSplit(x, y, FER_LABELS, votes[mask], valid[mask])


def load_image_folder(
    root: str | Path, *, size: int = 48, labels: tuple[str, ...] | None = None,
    faces: FacePreprocessConfig | None = None,
) -> FaceSplit:
    """Load the images under ``root/<label>/`` (any depth, every format ``classify-face``
    reads) as ``size`` x ``size`` grey faces.

    With ``faces`` (the recipe's crop settings) each image's face is found by the detector
    ``classify-face`` uses and cut out as the device cuts it (:func:`face_patch`), so a photo
    trains on its face, not on the room around it; an image with no face found is taken as a
    face already cropped (FER2013-like), and counted in a warning.  Without, every image is
    taken as a crop.

    A folder is named for its emotion, as the device names it or with a synonym ("Happy",
    "happiness" -> happy; folders meaning one label are merged); label order is ``labels``
    when given (the labels found must be among them), else FER's for its labels, then the
    others sorted.  Warned of, one line each: labels the appliance does not show, files that
    are no image, unreadable images, the same image twice (in two labels: which is it?).  A
    label with fewer than :data:`MIN_PER_LABEL` images is an error naming it: it can be
    neither learnt nor scored.
    """
    from edge.sources.images import read_gray_image
    from edge.sources.kinds import IMAGE_SUFFIXES

    root = Path(root)
    if not root.is_dir():
        raise ImageFileError(f"{root}: image folder not found (expected root/<label>/*.png)")
    by_label: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        by_label.setdefault(_label_of(folder.name), []).append(folder)
    for label, folders in by_label.items():
        if len(folders) > 1 or folders[0].name != label:
            logger.info("%s: label %s", ", ".join(f.name for f in folders), label)
    unshown = sorted(label for label in by_label if fusion_map_for([label])[label] is None)
    if unshown:
        logger.warning("%s: label(s) %s are none of the emotions the appliance shows (%s); "
                       "trained as classes of their own, never shown", root,
                       ", ".join(unshown), ", ".join(COMMON_LABELS))
    named = labels is not None
    if labels is None:
        labels = tuple(name for name in FER_LABELS if name in by_label)
        labels = labels + tuple(sorted(f for f in by_label if f not in labels))
    unknown = set(by_label) - set(labels)
    if unknown:
        raise ConfigError(f"{root}: folders {sorted(unknown)} are not in labels {list(labels)}")
    finder = _FaceFinder(faces, size) if faces is not None else None
    xs: list[np.ndarray] = []
    ys: list[int] = []
    others: list[Path] = []
    seen: dict[str, tuple[str, Path]] = {}  # content hash -> (label, first file)
    twice: list[str] = []
    try:
        for index, label in enumerate(labels):
            files = sorted(p for folder in by_label.get(label, ()) for p in folder.rglob("*")
                           if p.is_file() and not p.name.startswith("."))
            for path in files:
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    others.append(path)
                    continue
                try:
                    # Hashed a block at a time before decoding: a copy is not decoded, and a
                    # video named .jpg is refused by read_gray_image without being read whole.
                    with open(path, "rb") as f:
                        digest = hashlib.file_digest(f, "sha1").hexdigest()
                    if digest in seen:
                        first_label, first = seen[digest]
                        twice.append(f"{path.relative_to(root)} = {first.relative_to(root)}"
                                     + ("" if first_label == label else " (another label!)"))
                        continue
                    image = read_gray_image(path)
                except (ImageFileError, OSError) as exc:
                    logger.warning("skipping %s", exc)
                    continue
                seen[digest] = (label, path)
                xs.append(finder.face(image, path) if finder is not None else
                          _resized(image, size))
                ys.append(index)
    finally:
        if finder is not None:
            finder.close()
    for what, items in (("files that are no image", [str(p.relative_to(root)) for p in others]),
                        ("images found twice, the copy left out", twice)):
        if items:
            logger.warning("%s: %d %s: %s", root, len(items), what, _named(items))
    if finder is not None:
        finder.report(root)
    if not xs:
        raise ImageFileError(f"{root}: no readable images under {root}/<label>/")
    y = np.asarray(ys, dtype=np.int64)
    counts = {label: int(np.sum(y == i)) for i, label in enumerate(labels)}
    logger.info("%s: %s", root, ", ".join(f"{label} {n}" for label, n in counts.items()))
    if not named:  # a folder without a readable image is no class to learn
        kept = [i for i in range(len(labels)) if counts[labels[i]]]
        for i in sorted(set(range(len(labels))) - set(kept)):
            logger.warning("%s/%s has no readable image; not a label", root, labels[i])
        y = np.searchsorted(np.asarray(kept), y)
        labels = tuple(labels[i] for i in kept)
    if len(labels) < 2:
        raise ConfigError(f"{root}: images of one label only ({labels[0]}); a model needs at "
                          f"least two label folders")
    few = [f"{label} ({counts[label]})" for label in labels if counts[label] < MIN_PER_LABEL]
    if few:
        raise ConfigError(f"{root}: too few images of {', '.join(few)} to learn and score it "
                          f"(at least {MIN_PER_LABEL}: a tenth of each label chooses the "
                          f"epochs, a tenth reports); add images or remove the folder")
    return FaceSplit(np.stack(xs), y, tuple(labels))


#: Fewest images of a label an image folder may have.
MIN_PER_LABEL = 10
#: Files named in a warning at most; the others are counted.
MAX_NAMED = 10
#: The device's label names where FER2013's differ (an image folder's labels are FER's).
_FER_NAMES = {"fearful": "fear", "surprised": "surprise"}


def _named(items: list[str]) -> str:
    """The first :data:`MAX_NAMED` of ``items``, and how many more there are."""
    more = len(items) - MAX_NAMED
    return ", ".join(items[:MAX_NAMED]) + (f" and {more} more" if more > 0 else "")


def _label_of(folder: str) -> str:
    """The label a folder's name stands for ("Happy", "happiness" -> "happy"; "fearful" ->
    FER2013's "fear"); a name that is no emotion the device knows is its own label."""
    common = fusion_map_for([folder])[folder]
    return _FER_NAMES.get(common, common) if common is not None else folder


def _resized(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if image.shape == (size, size):
        return image
    return np.asarray(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))


class _FaceFinder:
    """The face of each image, found and cut as ``classify-face`` finds and the device cuts
    it; counts the images in which no face was found."""

    def __init__(self, faces: FacePreprocessConfig, size: int) -> None:
        from edge.commands.classify_face import SCAN_LEVELS
        from edge.vision.detectors import open_face_detector

        self.crop = dataclasses.replace(faces, size=size)
        self.detector = open_face_detector("auto", scan_levels=SCAN_LEVELS)
        self.found = 0
        self.whole: list[Path] = []

    def face(self, image: np.ndarray, path: Path) -> np.ndarray:
        boxes = self.detector.detect(image)
        if not boxes:
            self.whole.append(path)
            return _resized(image, self.crop.size)
        self.found += 1
        return face_patch(image, boxes[0], self.crop)

    def report(self, root: Path) -> None:
        logger.info("%s: a face found and cut out in %d image(s)", root, self.found)
        if self.whole:
            names = [str(p.relative_to(root)) for p in self.whole]
            logger.warning("%s: no face found in %d image(s), each taken whole as a face "
                           "already cropped (check they are): %s", root, len(names),
                           _named(names))

    def close(self) -> None:
        self.detector.close()


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

    def recorded(self) -> dict[str, Any]:
        """What a manifest records of the data (``training``): images per label and a
        fingerprint of the faces as trained (each split's grey levels and labels, so a face
        cut otherwise counts too), for :func:`convert.recipe.warn_if_data_differs`."""
        digest = hashlib.sha256()
        for split in (self.train, self.choose, self.report):
            digest.update(np.ascontiguousarray(split.x).tobytes())
            digest.update(split.y.astype(np.int64).tobytes())
        counts = {label: sum(int(np.sum(split.y == i)) for split in
                             (self.train, self.choose, self.report))
                  for i, label in enumerate(self.labels)}
        return {"images_per_label": counts, "data_fingerprint": digest.hexdigest()[:16]}


def load_face_data(
    *, fer: str | Path | None = None, image_folder: str | Path | None = None,
    size: int = 48, seed: int = 0, ferplus: str | Path | None = None,
    faces: FacePreprocessConfig | None = None,
) -> FaceData:
    """FER2013's own three usages, or an image folder (its faces found and cut with ``faces``,
    or each image whole without; resized to ``size``) split by ``seed``.

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
    data = load_image_folder(image_folder, size=size, faces=faces)
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
