"""Speech emotion on the device: feature windows (MFCCs, optionally with prosody) -> int8 model ->
per-window and per-file decisions.

A model's manifest fixes its MFCC config and window length (in frames); the hop between windows
comes from the manifest too but may be overridden.  A speech-activity gate turns windows that are
mostly silence into "no speech" instead of a made-up emotion.  File decisions and the streaming form
used by the live loop share the same window positions and the same per-window code path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import AdaptConfig
from ..errors import ConfigError, ManifestMismatchError, ModelError
from ..features import Mfcc, MfccConfig, StreamingMfcc, frame_dbfs, window_input
from ..features.adapt import DeploymentNormalizer, RunningStats, speech_frames
from ..lifecycle import Closeable
from ..sources.audio_file import AudioFileStream
from .manifest import ModelManifest
from .runtime import QuantizedModel, open_model

__all__ = [
    "NO_SPEECH",
    "SPEECH_MODEL_FILE",
    "SPEECH_NARROWBAND_MODEL_FILE",
    "SpeechGate",
    "SpeechResult",
    "FileDecision",
    "Aggregate",
    "window_starts",
    "windows_of",
    "speech_preprocessing",
    "SpeechClassifier",
    "SpeechStream",
]

logger = logging.getLogger(__name__)

#: Recordings shorter than this, in seconds, are classified with a warning.
SHORTEST_RELIABLE_S = 1.0
#: Label of a window or file in which the activity gate found no speech.
NO_SPEECH = "no speech"
#: File name of the shipped speech model in the models folder.
SPEECH_MODEL_FILE = "speech_emotion_int8.tflite"
#: The shipped model for recordings with nothing above the voice band (calls): the same recipe
#: with its mel filters on 300-3400 Hz (``emotion-edge classify --band``).
SPEECH_NARROWBAND_MODEL_FILE = "speech_emotion_narrowband_int8.tflite"
#: An adapting stream writes its state after every this many speech frames (1 min of speech), so
#: a power cut loses at most that; closing the classifier writes it too.
SAVE_EVERY_FRAMES = 6000


@dataclasses.dataclass(frozen=True)
class SpeechGate:
    """Energy-based speech-activity gate applied to each window.

    A window is speech when enough of its frames are above an absolute floor *and* its level
    swings like speech does: syllables rise 15-40 dB above the pauses between them, while a fan,
    hiss or hum is nearly steady.  Relative, not absolute, so a quiet studio corpus and a loud USB
    microphone both pass.
    """

    threshold_dbfs: float = -70.0
    """A frame is active when its (pre-emphasised) level exceeds this, dBFS."""
    min_active: float = 0.2
    """A window is speech when at least this fraction of its frames is active (0..1)."""
    min_range_db: float = 12.0
    """...and the spread between its loud (95th percentile) and quiet (10th) frames is at least
    this, dB."""

    def __post_init__(self) -> None:
        if not -120 <= self.threshold_dbfs <= 0:
            raise ConfigError(f"threshold_dbfs must be in -120..0 dBFS, got {self.threshold_dbfs!r}")
        if not 0 <= self.min_active <= 1:
            raise ConfigError(f"min_active must be in 0..1, got {self.min_active!r}")
        if not 0 <= self.min_range_db <= 60:
            raise ConfigError(f"min_range_db must be in 0..60 dB, got {self.min_range_db!r}")

    def is_speech(self, frames: np.ndarray, config: MfccConfig) -> bool:
        """``frames`` are raw MFCC frames whose column 0 is the log frame energy."""
        if frames.shape[0] == 0:
            return False
        level = frame_dbfs(frames[:, 0], config)
        active = float(np.mean(level > self.threshold_dbfs))
        spread = float(np.percentile(level, 95) - np.percentile(level, 10))
        return active >= self.min_active and spread >= self.min_range_db


@dataclasses.dataclass(frozen=True)
class SpeechResult:
    """One window's outcome: ``label`` is an emotion or :data:`NO_SPEECH`."""

    label: str
    scores: Mapping[str, float]
    speech: bool
    start_s: float = 0.0


@dataclasses.dataclass(frozen=True)
class FileDecision:
    """A whole file's decision: the mean of its speech windows' probabilities."""

    label: str
    scores: Mapping[str, float]
    windows: tuple[SpeechResult, ...] = ()
    """Every window's result for an in-memory signal; empty for a file, whose windows are
    counted, not kept (an hour of audio is 7200 windows)."""
    speech_windows: int = 0
    total_windows: int = 0


class Aggregate:
    """Running mean of the speech windows' probabilities: a file's decision in constant memory."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)
        self._sum = np.zeros(len(self.labels))
        self.speech = 0
        self.total = 0

    def add(self, result: SpeechResult) -> None:
        self.total += 1
        if result.speech:
            self.speech += 1
            self._sum += [result.scores[label] for label in self.labels]

    def decision(self, windows: Sequence[SpeechResult] = ()) -> FileDecision:
        if not self.speech:
            return FileDecision(NO_SPEECH, {}, tuple(windows), 0, self.total)
        mean = self._sum / self.speech
        scores = dict(zip(self.labels, (float(v) for v in mean)))
        return FileDecision(self.labels[int(np.argmax(mean))], scores, tuple(windows),
                            self.speech, self.total)


def window_starts(n_frames: int, window: int, hop: int) -> list[int]:
    """Start frames of the windows covering ``n_frames``: every ``hop``, plus one window ending at
    the last frame so the end is never ignored.  A signal shorter than a window gets one window."""
    if n_frames <= window:
        return [0]
    starts = list(range(0, n_frames - window + 1, hop))
    if starts[-1] != n_frames - window:
        starts.append(n_frames - window)
    return starts


def windows_of(frames: np.ndarray, window: int, hop: int) -> list[tuple[int, np.ndarray]]:
    """``(start, (window, columns) frames)`` for each window; short inputs are wrapped around to
    fill one window (repeating the utterance keeps its statistics, unlike zero padding)."""
    if frames.shape[0] < window:
        frames = np.pad(frames, ((0, window - frames.shape[0]), (0, 0)), mode="wrap")
    return [(s, frames[s : s + window]) for s in window_starts(frames.shape[0], window, hop)]


def speech_preprocessing(config: MfccConfig, window_frames: int, hop_frames: int, *,
                         adapt_prior: RunningStats | None = None) -> dict[str, Any]:
    """The manifest's ``preprocessing`` block for a speech model: MFCC fields, flat, plus window
    and hop in frames, so a mismatch names the exact field.  A model trained on frames
    standardised per corpus (``adapt = "deployment"``) carries its training data's statistics as
    the prior a fresh device starts from (see :mod:`edge.features.adapt`)."""
    block: dict[str, Any] = {**config.to_dict(), "window_frames": int(window_frames),
                             "hop_frames": int(hop_frames)}
    if adapt_prior is not None:
        block["adapt"] = "deployment"
        block["adapt_prior"] = adapt_prior.to_dict()
    return block


def adaptation_prior(manifest: ModelManifest, source: str) -> RunningStats | None:
    """The training statistics of a model that adapts to its deployment, else ``None``."""
    mode = manifest.preprocessing.get("adapt", "none")
    if mode == "none":
        return None
    if mode != "deployment" or "adapt_prior" not in manifest.preprocessing:
        raise ModelError(f"{source}: manifest preprocessing adapt={mode!r} is unknown or has no "
                         f"adapt_prior; re-export the model with emotion-convert speech")
    return RunningStats.from_dict(manifest.preprocessing["adapt_prior"], source=source)


def _mfcc_config_of(manifest: ModelManifest, source: str) -> MfccConfig:
    fields = {f.name for f in dataclasses.fields(MfccConfig)}
    try:
        return MfccConfig.from_dict({k: v for k, v in manifest.preprocessing.items() if k in fields})
    except (ConfigError, TypeError) as exc:
        raise ModelError(f"{source}: manifest preprocessing is not a valid MFCC config ({exc})") from None


def _save_fix(exc: OSError) -> str:
    """What to do when the adaptation state cannot be saved, by the cause."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some space on its file system (df -h shows which is full)"
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        return (f"a file stands where a folder of its path should be ({exc.filename}); move it "
                f"away or change adapt.state_file")
    if exc.errno == errno.EROFS:
        return "its file system is read-only; choose adapt.state_file on a writable one"
    return ("make its folder writable by the user the appliance runs as, or change "
            "adapt.state_file")


class SpeechClassifier(Closeable):
    """Loads a speech model once and classifies windows, signals and files.

    ``expected_config``, when given, is the MFCC config the device runs with; a model whose manifest
    differs is refused with :class:`~edge.errors.ManifestMismatchError` naming the field.
    """

    def __init__(
        self,
        model: str | Path | QuantizedModel,
        *,
        expected_config: MfccConfig | None = None,
        hop_s: float | None = None,
        gate: SpeechGate | None = None,
        num_threads: int = 1,
        runtime: str | None = None,
        adapt: bool = True,
        adapt_state: str | Path | None = None,
        adapt_prior_frames: float = AdaptConfig.prior_frames,
    ) -> None:
        self.adaptation: DeploymentNormalizer | None = None
        self._save_failed = False  # the last save of the adaptation state failed (said once)
        self.learns = False
        self.model, self._owns_model = open_model(
            model, task="speech", num_threads=num_threads, runtime=runtime)
        try:
            self._configure(expected_config, hop_s, gate)
            prior = adaptation_prior(self.model.manifest, str(self.model.path))
            space, aliases = self.config.statistics_space()
            #: Standardises frames with this deployment's statistics (models trained that way);
            #: ``None`` for models that normalise each window on its own.
            self.adaptation = (None if prior is None else DeploymentNormalizer(
                prior, prior_frames=adapt_prior_frames, state_file=adapt_state if adapt else None,
                # A room's statistics outlive an upgrade to a model that reads the same frames.
                space=space, aliases=aliases))
            #: False: the prior (training) statistics are used as they are, nothing is learnt.
            self.learns = adapt
        except Exception:
            self.close()  # a refused model opened here must not stay open
            raise

    def _configure(
        self, expected_config: MfccConfig | None, hop_s: float | None, gate: SpeechGate | None
    ) -> None:
        """Check the manifest against the model and the device, and derive the window geometry."""
        m = self.model.manifest
        source = str(self.model.path)
        if expected_config is not None:
            m.check_preprocessing(expected_config.to_dict(), source=source)
        self.config = _mfcc_config_of(m, source)
        if not self.config.append_energy:
            raise ModelError(f"{source}: speech models need append_energy=true (the gate uses c0)")
        try:
            self.window_frames = int(m.preprocessing["window_frames"])
            manifest_hop = int(m.preprocessing["hop_frames"])
        except (KeyError, TypeError, ValueError, OverflowError):
            raise ModelError(f"{source}: manifest preprocessing lacks window_frames/hop_frames "
                             f"as whole numbers") from None
        if not 1 <= manifest_hop <= self.window_frames <= 100_000:
            raise ModelError(f"{source}: manifest preprocessing has window_frames="
                             f"{self.window_frames} and hop_frames={manifest_hop}; they need "
                             f"1 <= hop_frames <= window_frames <= 100000")
        want = (1, self.config.input_rows(self.window_frames), self.config.n_columns, 1)
        if tuple(self.model.input_shape) != want:
            raise ManifestMismatchError(
                f"{source}: model input shape {tuple(self.model.input_shape)} does not match the "
                f"manifest's window_frames={self.window_frames}, n_ceps={self.config.n_ceps}, "
                f"prosody={self.config.prosody}, pooling={self.config.pooling!r} {want}"
            )
        if hop_s is None:
            self.hop_frames = manifest_hop
        else:
            self.hop_frames = max(1, int(round(hop_s / self.config.hop_length_s)))
        self.gate = gate or SpeechGate()
        self.mfcc = Mfcc(self.config)

    @property
    def manifest(self) -> ModelManifest:
        return self.model.manifest

    @property
    def labels(self) -> tuple[str, ...]:
        return self.model.labels

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def window_s(self) -> float:
        return self.window_frames * self.config.hop_length_s

    @property
    def hop_s(self) -> float:
        return self.hop_frames * self.config.hop_length_s

    def model_input(self, frames: np.ndarray) -> np.ndarray:
        """Raw ``(window, n_columns)`` feature frames -> the model's float input (normalised)."""
        standardize = None if self.adaptation is None else self.adaptation.normalize
        return window_input(frames, self.config, standardize)[..., None].astype(np.float32)

    def observe(self, frames: np.ndarray) -> None:
        """Let an adapting model learn from speech frames heard (pauses are left out)."""
        if self.adaptation is not None and self.learns and frames.shape[0]:
            level = frame_dbfs(frames[:, 0], self.config)
            self.adaptation.observe(speech_frames(frames, level))

    def observe_signal(self, signal: np.ndarray) -> int:
        """Adapt to the speech windows of a signal (``classify --adapt``'s first pass); returns
        the number of speech windows seen.  Each frame counts once."""
        return self._observe_blocks([signal])

    def observe_file(self, path: str | Path) -> int:
        """:meth:`observe_signal` for a file, read a block at a time; a file that fails part-way
        teaches nothing (its error is what the caller reports)."""
        learning = (self.adaptation.all_or_nothing() if self.adaptation is not None
                    else contextlib.nullcontext())
        with learning, AudioFileStream(path, self.sample_rate) as blocks:
            return self._observe_blocks(blocks)

    def _observe_blocks(self, blocks: Iterable[np.ndarray]) -> int:
        stream = SpeechStream(self, learn=True, score=False)
        return sum(r.speech for block in blocks for r in stream.feed(block)) + sum(
            r.speech for r in stream.flush())

    def classify_frames(self, frames: np.ndarray, start_s: float = 0.0) -> SpeechResult:
        """One window of raw MFCC frames -> :class:`SpeechResult`."""
        if not self.gate.is_speech(frames, self.config):
            return SpeechResult(NO_SPEECH, {}, False, start_s)
        probs = self.model.predict(self.model_input(frames))
        scores = dict(zip(self.labels, (float(p) for p in probs)))
        return SpeechResult(self.labels[int(np.argmax(probs))], scores, True, start_s)

    def classify_signal(self, signal: np.ndarray) -> FileDecision:
        """Classify a mono float signal at :attr:`sample_rate`."""
        frames = self.mfcc(signal)
        step = self.config.hop_length_s
        results = tuple(
            self.classify_frames(w, s * step)
            for s, w in windows_of(frames, self.window_frames, self.hop_frames)
        )
        return aggregate(results, self.labels)

    def classify_file(self, path: str | Path) -> FileDecision:
        """Classify an audio file, read, resampled and featurised a block at a time, so memory
        does not grow with its length; the same decision as :meth:`classify_signal` on the whole
        signal (raises AudioFileError naming the file)."""
        stream = SpeechStream(self, learn=False)
        acc = Aggregate(self.labels)
        with AudioFileStream(path, self.sample_rate) as blocks:
            top = self.config.top_hz
            if blocks.file_rate / 2 < top:
                # Resampling cannot bring back what was never recorded: the model's upper mel
                # bands are empty, as in no recording it was trained on.
                logger.warning("%s: sampled at %d Hz, so nothing above %d Hz was recorded; %s "
                               "hears up to %.0f Hz: this result is unreliable", path,
                               blocks.file_rate, blocks.file_rate // 2, self.model.path.name, top)
            for block in blocks:
                for result in stream.feed(block):
                    acc.add(result)
            if blocks.read_s < SHORTEST_RELIABLE_S:  # what the file held, not what it declares
                # Repeated to fill a window, a syllable or two is scored as if it were a
                # sentence: the model saw utterances of 1.5 to 5 s.
                logger.warning("%s: %.2f s long; under %g s, this result is unreliable", path,
                               blocks.read_s, SHORTEST_RELIABLE_S)
        for result in stream.flush():
            acc.add(result)
        return acc.decision()

    def _close(self) -> None:
        """Keep what adaptation learnt; release the model if this classifier opened it."""
        try:
            self.save_adaptation()
        finally:
            if self._owns_model:
                self.model.close()

    def save_adaptation(self, *, strict: bool = False) -> None:
        """Write the adaptation state, if there is a state file; a failure is logged, not
        raised (the loop must go on with what it has in memory), or with ``strict`` (``adapt
        --learn``, whose one purpose is the file) raised as a ConfigError."""
        if self.adaptation is None:
            return
        try:
            self.adaptation.save()
        except OSError as exc:
            fix = _save_fix(exc)
            if strict:
                self._save_failed = True  # closing tries again, quietly
                raise ConfigError(
                    f"cannot save the adaptation state {self.adaptation.state_file} "
                    f"({exc.strerror or exc}); nothing learnt was kept: {fix}") from None
            # Said once, not at every save (once a minute): the cause rarely goes by itself.
            log = logger.debug if self._save_failed else logger.warning
            log("cannot save the adaptation state %s (%s); learning goes on in memory: %s",
                self.adaptation.state_file, exc.strerror or exc, fix)
            self._save_failed = True
        else:
            if self._save_failed:
                logger.warning("adaptation state %s saved again", self.adaptation.state_file)
            self._save_failed = False

    def __repr__(self) -> str:
        return (
            f"<SpeechClassifier {self.model.path.name} window={self.window_s:g}s "
            f"hop={self.hop_s:g}s labels={len(self.labels)}>"
        )


def aggregate(results: Sequence[SpeechResult], labels: Sequence[str]) -> FileDecision:
    """Mean probability over the speech windows; :data:`NO_SPEECH` when there are none."""
    acc = Aggregate(labels)
    for r in results:
        acc.add(r)
    return acc.decision(results)


class SpeechStream:
    """Streaming form of :meth:`SpeechClassifier.classify_signal` for the live loop.

    :meth:`feed` accepts audio blocks of any size and returns one :class:`SpeechResult` per hop
    once a full window has arrived.  Windows start at the same frames as the batch form's (every
    ``hop_frames`` from the first frame), so a stream and a file of the same audio agree.

    ``learn`` (default: the classifier's ``learns``) lets an adapting model learn from each speech
    window after classifying it, as the live loop does; a file classification leaves it off.
    ``score=False`` only gates and learns (``classify --adapt``'s first pass): the results then
    carry the gate's verdict and no scores.
    """

    def __init__(self, classifier: SpeechClassifier, *, learn: bool | None = None,
                 score: bool = True) -> None:
        self.classifier = classifier
        self.learn = classifier.learns if learn is None else learn
        self.score = score
        self._mfcc = StreamingMfcc(mfcc=classifier.mfcc)
        self.reset()

    def reset(self) -> None:
        """Forget all audio (e.g. after the microphone restarted)."""
        self._mfcc.reset()
        self._buf = np.zeros((0, self.classifier.config.n_columns))
        self._buf_start = 0  # absolute frame index of self._buf[0]
        self._next_start = 0  # absolute frame index at which the next window starts
        self._emitted = 0
        self._observed_until = 0  # absolute frame index up to which adaptation has heard

    def push_frames(self, frames: np.ndarray) -> list[SpeechResult]:
        """Add MFCC frames; return results for the windows they completed."""
        w, hop = self.classifier.window_frames, self.classifier.hop_frames
        buf = np.concatenate((self._buf, frames))
        out: list[SpeechResult] = []
        while self._next_start + w <= self._buf_start + buf.shape[0]:
            s = self._next_start - self._buf_start
            out.append(self._classify(buf[s : s + w], self._next_start))
            self._next_start += hop
        # Keep what the next window and a final end-aligned one (see flush) need: one window.
        keep = min(self._next_start, self._buf_start + buf.shape[0] - w) - self._buf_start
        if keep > 0:
            buf = buf[keep:]
            self._buf_start += keep
        self._buf = buf
        return out

    def _classify(self, frames: np.ndarray, start: int, real: int | None = None) -> SpeechResult:
        """``real``: how many of ``frames`` are audio (a short input's window wraps around)."""
        self._emitted += 1
        clf = self.classifier
        start_s = start * clf.config.hop_length_s
        if self.score:
            result = clf.classify_frames(frames, start_s)
        else:
            speech = clf.gate.is_speech(frames, clf.config)
            result = SpeechResult(NO_SPEECH if not speech else "", {}, speech, start_s)
        if result.speech and self.learn and clf.adaptation is not None:
            # Learn from the frames this window added, after classifying it (each frame once).
            real = frames.shape[0] if real is None else real
            new = frames[max(0, self._observed_until - start) : real]
            self._observed_until = start + real
            before = clf.adaptation.frames_heard
            clf.observe(new)
            if int(clf.adaptation.frames_heard) // SAVE_EVERY_FRAMES > int(before) // SAVE_EVERY_FRAMES:
                clf.save_adaptation()
        return result

    def flush(self) -> list[SpeechResult]:
        """End of the audio: return the remaining windows exactly as the batch form has them (the
        padded last frames, a window aligned to the end, or one wrapped window for audio shorter
        than a window), then reset."""
        out = self.push_frames(self._mfcc.flush())
        w, hop = self.classifier.window_frames, self.classifier.hop_frames
        total = self._buf_start + self._buf.shape[0]
        if 0 < total < w:
            out.append(self._classify(windows_of(self._buf, w, hop)[0][1], 0, total))
        elif total > w and (self._emitted == 0 or self._next_start - hop != total - w):
            out.append(self._classify(self._buf[-w:], total - w))
        self.reset()
        return out

    def feed(self, block: np.ndarray) -> list[SpeechResult]:
        """Add mono float audio at the classifier's sample rate."""
        return self.push_frames(self._mfcc.process(block))

    @property
    def sample_rate(self) -> int:
        return self.classifier.sample_rate

    @property
    def frames_seen(self) -> int:
        return self._buf_start + self._buf.shape[0]

    def __repr__(self) -> str:
        return f"<SpeechStream frames={self.frames_seen} next_window_at={self._next_start}>"
