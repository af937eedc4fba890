"""Assembling the appliance from the configuration: models, sources, fusion, sinks, loop.

:func:`build_appliance` is the only place that knows which concrete classes make up a running
device; ``emotion-edge run`` and ``bench/loop_bench.py`` call it, tests build the loop from fakes.
Everything opened here is registered on an :class:`contextlib.ExitStack`, so closing the
:class:`Appliance` releases the interpreters, the microphone, the camera and the LEDs, in reverse
order, whatever failed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..config import Config
from ..errors import ConfigError
from ..files import WriterLock
from ..interfaces import AudioSource, FaceDetector, FrameProvider, Sink
from ..lifecycle import Closeable
from ..models.face import FACE_MODEL_FILE, FaceClassifier
from ..models.speech import SPEECH_MODEL_FILE, SpeechClassifier, SpeechStream
from ..outputs.leds import LedSink
from ..outputs.log import JsonLinesSink, RotatingFileSink, TextSink
from ..outputs.mqtt import MqttSink
from ..outputs.notify import Notifier
from ..paths import default_model
from ..sources.camera import open_camera
from ..sources.microphone import PyAudioSource
from ..sources.replay import FileAudioSource, StillFrames, open_video_replay
from ..vision.detectors import open_face_detector
from .budget import BudgetPolicy
from .face_stage import FaceStage
from .fusion import LabelMap, LateFusion
from .loop import EmotionLoop, LoopSummary
from .smoothing import Smoother

__all__ = ["ReplayMedia", "Appliance", "build_appliance", "lock_written_files",
           "open_decision_models", "open_speech_model"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ReplayMedia:
    """Recordings to replay instead of the microphone and camera."""

    audio: Path | None = None
    video: Path | None = None
    image: Path | None = None
    fast: bool = False  # as fast as possible instead of real time


class Appliance(Closeable):
    """A built loop and everything it holds open; a context manager."""

    def __init__(self, loop: EmotionLoop, stack: contextlib.ExitStack, *,
                 labels: tuple[str, ...], hop_s: float) -> None:
        self.loop = loop
        self.labels = labels
        #: Seconds between decisions: the speech model's hop, or ``loop.hop_s`` when set.
        self.hop_s = hop_s
        self._stack = stack

    def run(self) -> LoopSummary:
        return self.loop.run()

    def _close(self) -> None:
        """Sinks first (LEDs dark), then sources and models."""
        self.loop.close()
        self._stack.close()

    def __repr__(self) -> str:
        return f"<Appliance {self.loop!r} labels={list(self.labels)}>"


def _model_path(configured: str, filename: str) -> Path:
    return Path(configured) if configured else default_model(filename)


def unshown_labels(config: Config, fusion: LateFusion) -> dict[str, list[str]]:
    """Each model's labels its manifest leaves out of fusion (no common label) and the
    configuration does not map: a model of one's own with "confused" or "pain" loses what
    those labels win without a word (the configuration's own "" is a choice, not a loss)."""
    chosen = {"speech": config.fusion.speech_map, "face": config.fusion.face_map}
    out = {}
    for modality, mapping in fusion.label_map.modalities.items():
        unshown = [label for label, common in mapping.items()
                   if common is None and label not in chosen[modality]]
        if unshown:
            out[modality] = unshown
    return out


def _label_map(config: Config, speech: SpeechClassifier, face: FaceClassifier | None
               ) -> LabelMap:
    declared = {"speech": (speech.labels, speech.manifest.fusion_map)}
    if face is not None:
        declared["face"] = (face.labels, face.model.manifest.fusion_map)
    return LabelMap.build(declared, {"speech": config.fusion.speech_map,
                                     "face": config.fusion.face_map})


def _frames(config: Config, media: ReplayMedia | None, stack: contextlib.ExitStack
            ) -> FrameProvider | None:
    if media is not None and media.image is not None:
        return StillFrames.from_file(media.image)
    if media is not None and media.video is not None:
        return stack.enter_context(open_video_replay(media.video))
    if media is not None and media.audio is not None:
        return None  # replaying audio alone: no camera
    return stack.enter_context(open_camera(config.camera))


#: What a second writer of a file the appliance writes is told to do instead.
_STOP_THE_OTHER = "stop it first (sudo systemctl stop emotion-edge), or give this run its own"


def lock_written_files(config: Config, stack: contextlib.ExitStack) -> None:
    """Take the locks on the files this run writes, ``log.file`` and (adapting)
    ``adapt.state_file``, before anything is opened: a second run on either is refused with one
    line where it would rotate the other's log under it or write its statistics over the other's
    (:mod:`edge.files`).  ``stack`` releases them."""
    files = {}
    if config.log.file:
        files["log.file"] = Path(config.log.file)
    if config.adapt.enabled and config.adapt.state_file:
        files["adapt.state_file"] = Path(config.adapt.state_file)
    if len(files) == 2 and len({p.resolve() for p in files.values()}) == 1:
        raise ConfigError(f"log.file and adapt.state_file both name {files['log.file']}: the log "
                          f"would append decisions to the statistics and each save would "
                          f"replace the log; give each a file of its own")
    for setting, path in files.items():
        stack.enter_context(WriterLock(path, setting=setting, fix=f"{_STOP_THE_OTHER} {setting}"))


def open_speech_model(config: Config, *, learn: bool = True) -> SpeechClassifier:
    """The device's speech model as configured; with ``learn``, adapting as ``[adapt]`` says
    and keeping what it learns in ``adapt.state_file`` (``emotion-edge adapt --learn`` teaches
    it recordings through this same door)."""
    speech = SpeechClassifier(
        _model_path(config.models.speech, SPEECH_MODEL_FILE), hop_s=config.loop.hop_s or None,
        num_threads=config.loop.num_threads, adapt=config.adapt.enabled and learn,
        adapt_state=(config.adapt.state_file or None) if learn else None,
        adapt_prior_frames=config.adapt.prior_frames)
    if speech.hop_s > speech.window_s:
        logger.warning("loop.hop_s = %g is longer than the speech model's %g s window: %g s of "
                       "every hop is never heard", speech.hop_s, speech.window_s,
                       speech.hop_s - speech.window_s)
    return speech


def open_decision_models(
    config: Config, stack: contextlib.ExitStack, *, use_face: bool, learn: bool = True,
) -> tuple[SpeechClassifier, FaceClassifier | None, FaceDetector | None, LateFusion]:
    """The models, the face detector and the fusion the loop decides with, each refused with one
    clear line if it does not fit (a speech model given as the face model, labels that do not fit
    the outputs, a fusion map onto an unknown label).  ``emotion-edge check`` opens exactly these,
    with ``learn=False`` (it must not touch the adaptation state).  ``stack`` closes them."""
    speech = stack.enter_context(open_speech_model(config, learn=learn))
    face: FaceClassifier | None = None
    detector: FaceDetector | None = None
    if use_face:
        face = stack.enter_context(FaceClassifier(
            _model_path(config.models.face, FACE_MODEL_FILE),
            num_threads=config.loop.num_threads))
        detector = stack.enter_context(contextlib.closing(open_face_detector(
            config.camera.detector, num_threads=config.loop.num_threads,
            retry_margin=None if config.camera.close_faces else 0.0,
            retry_tiles=None if config.camera.far_faces else 0.0, spread_looks=True)))
    label_map = _label_map(config, speech, face)
    present = label_map.modalities
    weights = {"speech": config.fusion.speech_weight, "face": config.fusion.face_weight}
    temperatures = {"speech": config.fusion.speech_temperature,
                    "face": config.fusion.face_temperature}
    fusion = LateFusion(
        label_map,
        weights={m: w for m, w in weights.items() if m in present},
        temperatures={m: t for m, t in temperatures.items() if m in present},
    )
    return speech, face, detector, fusion


def build_appliance(
    config: Config,
    *,
    media: ReplayMedia | None = None,
    pin_factory: Any = None,
    notifier: Notifier | None = None,
    stdout: IO[str] | None = None,
    text: bool = False,
    extra_sinks: tuple[Sink, ...] = (),
    clock: Callable[[], float] = time.perf_counter,
    stop_event: threading.Event | None = None,
) -> Appliance:
    """Load the models, open the sources and sinks, and wire the loop.

    Raises :class:`~edge.errors.ModelError` for a missing or corrupt model before anything is
    opened, so a broken install fails fast with one clear line.  ``clock`` times the stages (the
    benchmark passes ``time.thread_time`` to measure compute rather than wall time).
    """
    stack = contextlib.ExitStack()
    try:
        lock_written_files(config, stack)
        use_face = (config.camera.enabled if media is None or media.audio is None
                    else media.video is not None or media.image is not None)
        if use_face and not config.camera.enabled:  # a replay's picture, but speech only asked
            logger.warning("the replay's %s is not used: camera.enabled = false (--no-camera) "
                           "makes this run speech only",
                           "video" if media is not None and media.video is not None else "image")
            use_face = False
        speech, face, detector, fusion = open_decision_models(config, stack, use_face=use_face)
        logger.info("fusion over %s", ", ".join(fusion.labels))
        for modality, labels in unshown_labels(config, fusion).items():
            logger.warning("the %s model's label(s) %s are none of the emotions shown: fusion "
                           "leaves them out (map them in [fusion] %s_map)", modality,
                           ", ".join(labels), modality)

        audio: AudioSource
        if media is not None and media.audio is not None:
            audio = FileAudioSource(media.audio, speech.sample_rate, config.audio.block_s,
                                    realtime=not media.fast)
        else:
            audio = PyAudioSource(config.audio.device or None, speech.sample_rate,
                                  config.audio.block_s,
                                  ring_blocks=config.audio.ring_blocks)
        audio.start()  # bad files fail here, naming the file
        stack.callback(audio.close)
        frames = _frames(config, media, stack) if use_face else None

        sinks: list[Sink] = []
        out = stdout if stdout is not None else sys.stdout
        if text:
            sinks.append(TextSink(out))
        elif config.log.stdout:
            sinks.append(JsonLinesSink(out))
        if config.log.file:
            sinks.append(RotatingFileSink(config.log.file, max_bytes=config.log.max_bytes,
                                          backups=config.log.backups))
            stack.callback(sinks[-1].close)
        if config.leds.mode != "none":
            sinks.append(LedSink(config.leds, fusion.labels, pin_factory=pin_factory,
                                 min_confidence=config.smoothing.min_confidence))
            stack.callback(sinks[-1].close)
        if config.mqtt.enabled:
            # Last: the loop closes sinks in order, so the LEDs are dark before MQTT says offline.
            sinks.append(MqttSink(config.mqtt))
            stack.callback(sinks[-1].close)
            logger.info("publishing decisions to %s", sinks[-1])
        sinks.extend(extra_sinks)
        loop = EmotionLoop(
            audio=audio,
            speech=SpeechStream(speech),
            fusion=fusion,
            smoother=Smoother.from_config(fusion.labels, config.smoothing),
            budget=BudgetPolicy.from_config(config.loop),
            sinks=sinks,
            face=(FaceStage.from_config(detector, face, config.camera, hop_s=speech.hop_s,
                                        clock=clock) if face is not None else None),
            frames=frames,
            notifier=notifier,
            clock=clock,
            stop_event=stop_event,
            status_interval_s=config.loop.status_interval_s,
        )
        stack.enter_context(contextlib.closing(loop))
    except BaseException:
        stack.close()
        raise
    return Appliance(loop, stack, labels=fusion.labels, hop_s=speech.hop_s)

