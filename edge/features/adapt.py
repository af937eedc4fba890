"""Adapting to one deployment: feature statistics accumulated over the speech a device has heard.

An emotion model trained in studios meets one room, one microphone and the same few voices for
months.  Standardising every feature dimension with the mean and spread of *that* speech (instead
of a studio's) removes what the room, the microphone and the voices share, and leaves what
changes from one utterance to the next: measured leave-one-corpus-out, the largest single lever
for voices a model never heard (see the model card).

:class:`RunningStats` is a mergeable per-dimension mean/variance (Chan et al.'s parallel update,
float64, constant memory whatever the input length).  :class:`DeploymentNormalizer` standardises
with the statistics heard so far, blended with the training data's (the model's manifest carries
them as a prior worth ``prior_frames`` frames), so a fresh device starts as the model was trained
and moves toward its own room as it listens.  Its state is a small JSON file, written atomically,
kept across restarts and removed to reset.  Only counts, means and variances are stored: no audio.
Statistics mean something only in the feature space that gathered them: the file names that
space (:func:`feature_space`), and a model with other features (another release, the narrowband
model) starts its own statistics while the file keeps the others for when it comes back.

Training uses the same class: each corpus is standardised with its own statistics, as the device
standardises with its room's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..config import AdaptConfig
from ..errors import ConfigError, ModelError
from ..files import begins_zeroed, set_aside_if_zeroed

__all__ = ["RunningStats", "DeploymentNormalizer", "begins_as_a_state", "blended", "feature_space",
           "check_statistics_file", "inverse_std", "read_state", "read_statistics",
           "save_statistics", "speech_frames", "speech_mask"]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: Frames this far (dB) below a window's loud frames are pauses, not speech: they are left out of
#: the statistics, which must describe voices, not the room's silence.
SPEECH_RANGE_DB = 30.0
#: Spread below this is treated as this (a constant dimension must not divide by zero).
MIN_STD = 1e-3


def feature_space(features: Mapping[str, Any]) -> str:
    """A short name for the feature space described by ``features`` (the settings a speech
    model's frames depend on, :meth:`~edge.features.mfcc.MfccConfig.frame_settings`): statistics
    gathered in one space mean nothing in another, even with as many dimensions (other mel
    filters, another band), and keep their meaning for every model that reads the same frames.
    Releases before 2026-12 named a space by all of a model's settings, those applied to each
    window after standardisation too: such names are the space's ``aliases`` below."""
    text = json.dumps(dict(features), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclasses.dataclass
class _State:
    """A state file: the statistics last used, the feature space they belong to (``None`` in
    files written before spaces were named), and other spaces' statistics, kept as stored."""

    heard: RunningStats
    space: str | None
    kept: dict[str, Any]

    def heard_in(self, space: str | None, aliases: Collection[str], dims: int) -> bool:
        """Whether the statistics last used are of the space ``space`` (or one of its earlier
        names, ``aliases``) with ``dims`` columns; an unnamed space on either side takes any of
        as many."""
        return self.heard.dims == dims and (self.space is None or space is None
                                            or self.space in _names(space, aliases))


class StateUnreadable(ModelError):
    """The state file is there but cannot be read (its permissions): not to be written over."""


def _read(path: Path) -> _State | None:
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):  # nothing saved yet (or cannot be)
        return None
    except OSError as exc:
        raise StateUnreadable(f"{path}: cannot be read ({exc})") from None
    try:
        doc = json.loads(data.decode("utf-8"))
        heard = RunningStats.from_dict(doc["heard"], source=str(path))
        space, kept = doc.get("features"), doc.get("kept", {})
        if not (space is None or isinstance(space, str)) or not isinstance(kept, dict):
            raise ValueError("'features' must be a string and 'kept' an object")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        # ValueError includes a damaged byte (UnicodeDecodeError); RecursionError a file of
        # nested brackets: either is a file to start afresh from, not a failure to start.
        raise ModelError(f"{path}: not an adaptation state ({exc})") from None
    return _State(heard, space, kept)


def read_state(path: Path) -> RunningStats | None:
    """The statistics heard, from a state file written by :meth:`DeploymentNormalizer.save`;
    ``None`` when there is no file, :class:`~edge.errors.ModelError` when it is unusable."""
    state = _read(path)
    return None if state is None else state.heard


def read_statistics(path: Path, space: str | None, dims: int,
                    aliases: Collection[str] = ()) -> RunningStats | None:
    """What a state file (:meth:`DeploymentNormalizer.save`, :func:`save_statistics`) holds for
    the feature space ``space`` (or one of its earlier names, ``aliases``) with ``dims``
    columns: its main statistics or kept ones; ``None`` when it holds none for that space.
    Raises :class:`~edge.errors.ModelError` when the file is missing or is not a state."""
    state = _read(path)
    if state is None:
        raise ModelError(f"{path}: no such file")
    if state.heard_in(space, aliases, dims):
        return state.heard
    entry = next((state.kept[n] for n in _names(space, aliases) if n in state.kept), None)
    stats = None if entry is None else RunningStats.from_dict(entry, source=str(path))
    return stats if stats is not None and stats.dims == dims else None


def _names(space: str | None, aliases: Collection[str]) -> Iterator[str]:
    """A space's name first, then its earlier ones, asked for only when the name is not the one
    sought (building them costs: :class:`~edge.features.mfcc.MfccConfig.statistics_space`);
    none for an unnamed space."""
    if space is not None:
        yield space
        yield from (a for a in aliases if a != space)


def check_statistics_file(path: Path, setting: str) -> None:
    """Refuse, before any work, a place :func:`save_statistics` must not write: not a ``.json``
    (a recording named where the file should be), a file there that is not a state (it would be
    replaced), a folder that does not exist, or, as root, another user's folder."""
    if path.suffix.lower() != ".json":
        raise ConfigError(f"{setting} {path}: name a .json file (the statistics are JSON; "
                          f"--adapt-from reads a .json as statistics)")
    if path.exists():
        try:
            if not path.is_file():
                raise ModelError(f"{path}: not a file")
            _read(path)
        except ModelError:  # another JSON, a recording, a folder: it would be replaced
            raise ConfigError(f"{setting} {path} exists and is not adaptation statistics; "
                              f"name another file, or move it away") from None
    if not path.parent.is_dir():
        raise ConfigError(f"{setting} {path}: the folder {path.parent} does not exist; "
                          f"create it first")
    _refuse_root_in_anothers_folder(path, setting)


def save_statistics(path: Path, normalizers: Sequence[DeploymentNormalizer]) -> None:
    """Write what ``normalizers`` heard into one state file, each model's feature space its
    own entry, as a device's ``adapt.state_file`` holds them: a device can start from it, and
    ``classify --adapt-from FILE`` standardises exactly as the call that saved it did.  Readable
    by all (0644), as a configuration is: it holds counts, means and variances, never audio."""
    first, *others = normalizers
    writer = DeploymentNormalizer(first.prior, prior_frames=first.prior_frames, space=first.space)
    writer.heard = first.heard
    writer._kept = {n.space or f"unnamed-{n.dims}": n.heard.to_dict() for n in others}
    writer.state_file = Path(path)
    writer.save()
    os.chmod(path, 0o644)


def speech_mask(level_db: FloatArray) -> npt.NDArray[np.bool_]:
    """Which frames are within :data:`SPEECH_RANGE_DB` of the window's loud level (its 95th
    percentile of ``level_db``, one level per frame)."""
    if level_db.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(level_db > np.percentile(level_db, 95) - SPEECH_RANGE_DB)


def speech_frames(frames: FloatArray, level_db: FloatArray) -> FloatArray:
    """The rows of ``frames`` that :func:`speech_mask` keeps."""
    if frames.shape[0] == 0:
        return frames
    return np.asarray(frames[speech_mask(level_db)])


@dataclasses.dataclass
class RunningStats:
    """Per-dimension count, mean and sum of squared deviations (``m2``)."""

    count: float
    mean: FloatArray
    m2: FloatArray

    @classmethod
    def empty(cls, dims: int) -> RunningStats:
        return cls(0.0, np.zeros(dims), np.zeros(dims))

    @classmethod
    def of(cls, frames: npt.ArrayLike) -> RunningStats:
        x = np.asarray(frames, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"statistics need (frames, dims), got shape {x.shape}")
        if x.shape[0] == 0:
            return cls.empty(x.shape[1])
        mean = x.mean(axis=0)
        return cls(float(x.shape[0]), mean, ((x - mean) ** 2).sum(axis=0))

    @property
    def dims(self) -> int:
        return int(self.mean.shape[0])

    @property
    def var(self) -> FloatArray:
        return self.m2 / self.count if self.count > 0 else np.ones(self.dims)

    @property
    def std(self) -> FloatArray:
        return np.asarray(np.maximum(np.sqrt(self.var), MIN_STD))

    def merged(self, other: RunningStats) -> RunningStats:
        """Statistics of both sets together (Chan et al. 1979)."""
        if other.count == 0:
            return RunningStats(self.count, self.mean.copy(), self.m2.copy())
        if self.count == 0:
            return RunningStats(other.count, other.mean.copy(), other.m2.copy())
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / n)
        return RunningStats(n, mean, m2)

    def update(self, frames: npt.ArrayLike) -> None:
        """Add ``frames`` ``(n, dims)`` in place."""
        new = self.merged(RunningStats.of(frames))
        self.count, self.mean, self.m2 = new.count, new.mean, new.m2

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": [float(v) for v in self.mean],
                "var": [float(v) for v in self.var]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "statistics") -> RunningStats:
        try:
            count = float(d["count"])
            mean = np.asarray(d["mean"], dtype=np.float64)
            var = np.asarray(d["var"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{source}: not feature statistics ({exc})") from None
        if (mean.ndim != 1 or var.shape != mean.shape or not math.isfinite(count) or count < 0
                or not np.all(np.isfinite(mean)) or not np.all(np.isfinite(var))
                or np.any(var < 0)):
            raise ModelError(f"{source}: feature statistics are malformed (count, mean and var "
                             f"must be finite, var >= 0, mean and var of one length)")
        return cls(count, mean, var * count)


def inverse_std(var: FloatArray) -> FloatArray:
    """The scale a variance standardises with: ``1 / std``, the spread floored at
    :data:`MIN_STD`."""
    return np.asarray(1.0 / np.maximum(np.sqrt(var), MIN_STD))


def blended(prior: RunningStats, heard: RunningStats,
            prior_frames: float) -> tuple[FloatArray, FloatArray]:
    """The mean and variance a device standardises with after hearing ``heard``, starting from
    ``prior`` worth ``prior_frames`` frames: each moves from the prior's toward the heard
    speech's as ``heard / (heard + prior_frames)``."""
    # A weighted blend of the two descriptions, not the pooled statistics of both sets: the
    # distance between the studio's mean and the room's must not count as spread.
    n0, n = prior_frames, heard.count
    if n == 0:
        return prior.mean, prior.var
    a = n / (n0 + n)
    return (1 - a) * prior.mean + a * heard.mean, (1 - a) * prior.var + a * heard.var


def begins_as_a_state(path: Path) -> bool:
    """Whether ``path`` begins as a state file does (a JSON object), or as one a power cut
    zeroed: one that does not is another file named by mistake, not a damaged state."""
    try:
        with open(path, "rb") as f:
            return f.read(64).lstrip()[:1] == b"{" or begins_zeroed(path)
    except OSError:
        return False


def _refuse_root_in_anothers_folder(path: Path, setting: str = "adapt.state_file") -> None:
    """As root, a state file in a folder of another user's (the service's) is refused: that
    user could have put a link where root then writes (``/etc/shadow`` handed to the service),
    and a file root saved there would be one the appliance cannot read."""
    if os.geteuid() != 0:
        return
    if path.is_symlink():
        raise ConfigError(f"{setting} {path} is a symbolic link, which root does not "
                          f"follow (whoever made it chooses where root writes); name the file "
                          f"itself, or run as the user who made the link")
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("/"))
    st = folder.stat()
    owner = st.st_uid
    if owner == 0 and st.st_mode & 0o022:
        raise ConfigError(f"{setting} {path} is in {folder}, which other users may write "
                          f"in; as root this would write where they decide what a name points "
                          f"to: choose a folder of root's own, or run as the service's user")
    if owner == 0:
        return
    import pwd

    try:
        name = pwd.getpwuid(owner).pw_name
    except KeyError:
        name = str(owner)
    raise ConfigError(f"{setting} {path} is in {folder}, which belongs to {name}; as "
                      f"root this would write there, where {name} decides what a name points "
                      f"to: run it as {name} (sudo -u {name} emotion-edge ...)")


class DeploymentNormalizer:
    """Standardise feature frames with this deployment's statistics, blended with a prior.

    ``prior`` are the training data's statistics, worth ``prior_frames`` frames: with nothing
    heard yet the device standardises as the model was trained; the mean and variance it uses
    move toward its own room's as ``heard / (heard + prior_frames)``.  ``state_file``, when given,
    is read at start (a missing file is a fresh start; a corrupt or mismatched one is logged and
    replaced) and written by :meth:`save`.
    """

    def __init__(self, prior: RunningStats, *, prior_frames: float = AdaptConfig.prior_frames,
                 state_file: str | Path | None = None, space: str | None = None,
                 aliases: Collection[str] = ()) -> None:
        if prior_frames < 0 or not math.isfinite(prior_frames):
            raise ConfigError(f"prior_frames must be a finite count >= 0, got {prior_frames!r}")
        #: The training data's statistics; ``prior_frames``, not their count, is their weight.
        self.prior = prior
        self.prior_frames = float(prior_frames)
        self.state_file = Path(state_file) if state_file is not None else None
        #: The feature space this model's frames live in (:func:`feature_space`); ``None``:
        #: unnamed, any statistics of as many dimensions are taken as its own.
        self.space = space
        #: Earlier names of the same space (:func:`feature_space`): statistics saved under them
        #: are this model's, and are saved again under ``space``.  Kept as given, so that a
        #: collection built on first use is built only for a state file under another name.
        self.aliases = aliases
        self.heard = RunningStats.empty(prior.dims)
        #: Other feature spaces' statistics from the state file, written back unchanged.
        self._kept: dict[str, Any] = {}
        #: Why the state file must not be written (it could not be read), or None.
        self._blocked: str | None = None
        if self.state_file is not None:
            _refuse_root_in_anothers_folder(self.state_file)
            self._load()
        self._refresh()

    @property
    def dims(self) -> int:
        return self.prior.dims

    @property
    def frames_heard(self) -> float:
        return self.heard.count

    @property
    def blocked(self) -> str | None:
        """Why the state file is not written (it exists but could not be read), or None."""
        return self._blocked

    def _refresh(self) -> None:
        mean, var = blended(self.prior, self.heard, self.prior_frames)
        self._mean = mean
        self._scale = inverse_std(var)

    def observe(self, frames: npt.ArrayLike) -> None:
        """Add speech frames ``(n, dims)`` heard by this deployment."""
        x = np.asarray(frames, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dims:
            raise ValueError(f"expected (frames, {self.dims}), got shape {x.shape}")
        if x.shape[0] and np.all(np.isfinite(x)):
            self.heard.update(x)
            self._refresh()

    def normalize(self, frames: npt.ArrayLike) -> FloatArray:
        """``(frames - mean) / std`` per dimension."""
        return np.asarray((np.asarray(frames, dtype=np.float64) - self._mean) * self._scale)

    @contextlib.contextmanager
    def all_or_nothing(self) -> Iterator[None]:
        """What is observed inside is kept only if the block ends normally: a recording that
        fails part-way (a corrupt stretch, Ctrl-C) teaches nothing, as it is reported."""
        before = RunningStats(self.heard.count, self.heard.mean.copy(), self.heard.m2.copy())
        try:
            yield
        except BaseException:
            self.heard = before
            self._refresh()
            raise

    def add(self, heard: RunningStats) -> None:
        """Take ``heard`` as statistics of speech this deployment heard (a saved call's)."""
        if heard.dims != self.dims:
            raise ValueError(f"expected statistics of {self.dims} columns, got {heard.dims}")
        self.heard = self.heard.merged(heard)
        self._refresh()

    def reset(self) -> None:
        """Forget everything heard (the prior remains) and remove the state file."""
        self.heard = RunningStats.empty(self.dims)
        self._refresh()
        if self.state_file is not None:
            self.state_file.unlink(missing_ok=True)

    def _target(self) -> Path:
        """The file read, set aside and replaced: a link's target, so a state kept elsewhere
        through a link stays one (as root there is no link: it is refused at start)."""
        assert self.state_file is not None
        return self.state_file.resolve()

    def _load(self) -> None:
        assert self.state_file is not None
        set_aside_if_zeroed(self._target(), "adaptation state")
        try:
            state = _read(self.state_file)
        except StateUnreadable as exc:
            # Another user's file (written by `sudo ... adapt --learn`, say): what it holds is
            # still there, so this run must not replace it with what little it hears.
            self._blocked = str(exc)
            logger.warning("adaptation state %s; it is kept, and what this run learns is not "
                           "saved (give the file to the user the appliance runs as)", exc)
            return
        except ModelError as exc:
            target = self._target()
            if not begins_as_a_state(target):
                # The config or a recording named by mistake: each save would replace it.
                raise ConfigError(
                    f"adapt.state_file {self.state_file} is not an adaptation state (it does "
                    f"not begin as one); the appliance would replace it with its statistics: "
                    f"choose another adapt.state_file, or move {self.state_file} away") from None
            # A damaged state, or one of a later release: kept aside, not written over.
            aside = target.with_name(target.name + ".damaged")
            try:
                os.replace(target, aside)
            except OSError as why:
                self._blocked = f"{self.state_file} is unusable and cannot be moved aside ({why})"
                logger.warning("adaptation state %s; it is kept, and what this run learns is "
                               "not saved", self._blocked)
                return
            logger.warning("adaptation state %s is unusable (%s); moved to %s, starting fresh",
                           self.state_file, exc, aside)
            return
        if state is None:
            return
        self._kept = state.kept
        if state.heard_in(self.space, self.aliases, self.dims):
            self._resume(state.heard, "")
            return
        # Another model's features: keep its statistics for when it comes back, and take up this
        # model's own if it ran here before.
        self._kept[state.space or f"unnamed-{state.heard.dims}"] = state.heard.to_dict()
        own = next((self._kept.pop(n) for n in _names(self.space, self.aliases)
                    if n in self._kept), None)
        try:
            heard = None if own is None else RunningStats.from_dict(own, source=str(self.state_file))
        except ModelError:
            heard = None
        if heard is not None and heard.dims == self.dims:
            self._resume(heard, ", gathered by this model before another took its place")
            return
        logger.warning("adaptation state %s was gathered by a speech model with other features "
                       "(%s dimensions, the model has %s); starting fresh for this model and "
                       "keeping the other statistics in the file", self.state_file,
                       state.heard.dims, self.dims)

    def _resume(self, heard: RunningStats, how: str) -> None:
        self.heard = heard
        logger.info("adaptation: %.0f s of speech heard before (%s%s)", heard.count / 100,
                    self.state_file, how)

    def save(self) -> None:
        """Write the statistics heard to ``state_file`` atomically (a crash leaves the old file).

        A state file that is a symbolic link stays one: the file it names is replaced."""
        if self.state_file is None or self._blocked is not None:
            return
        target = self._target()
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".adapt-", dir=target.parent)
        try:
            doc: dict[str, Any] = {"heard": self.heard.to_dict()}
            if self.space is not None:
                doc["features"] = self.space
            if self._kept:
                doc["kept"] = self._kept
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f)
                # On the disk before the rename: after a power cut the file is the old one or
                # the new one, never an empty one (which would start the room over).
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __repr__(self) -> str:
        return (f"<DeploymentNormalizer {self.dims} dims, heard {self.heard.count:.0f} frames, "
                f"prior {self.prior_frames:.0f}>")
