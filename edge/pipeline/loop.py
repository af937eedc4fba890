"""The real-time loop: audio blocks drive the cycles; each speech hop is one decision.

Per cycle: speech window -> streaming MFCC -> speech model (inside ``speech.feed``); the latest
frame -> face detection -> face model (as the budget allows); then fusion -> smoothing -> sinks.
Each stage is timed; the cycle's compute time goes to the :class:`~edge.pipeline.budget.BudgetPolicy`,
which degrades the face path on overruns and recovers it when load drops.

The loop owns no hardware: it receives its collaborators (audio source, speech stream, face stage,
frame provider, fusion, smoother, budget, sinks, notifier, clocks) in its constructor, and the very
same loop runs on a microphone + camera or on replayed recordings.  It ends when the audio source
is exhausted (replay) or when ``stop`` is set (SIGTERM); the sinks are closed in ``finally`` so the
LEDs go dark however it ends.  ``WATCHDOG=1`` is sent only after a completed cycle, so a stalled
loop (or a microphone that stopped delivering) lets systemd's watchdog restart the service.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence

from ..decision import Decision, ModalityReport
from ..interfaces import AudioSource, CountingSink, FrameProvider, Sink, SpeechStream, SpeechWindow
from ..lifecycle import Closeable
from ..outputs.notify import Notifier
from .budget import BudgetPolicy
from .face_stage import FaceStage
from .fusion import LateFusion
from .smoothing import Smoother

__all__ = ["LoopSummary", "EmotionLoop"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class LoopSummary:
    cycles: int = 0
    audio_s: float = 0.0
    counters: dict[str, int] = dataclasses.field(default_factory=dict)
    last_label: str | None = None
    #: Whether frames were read (camera or replayed video/image): False with camera.enabled
    #: = false however it was set, so a summary does not speak of frames that never came.
    watched: bool = False


#: A live microphone silent this long (no blocks at all, not quiet audio) is said in the log.
STALL_WARNING_S = 2.0
#: Counters that ``STATUS=`` names when they are not 0: what makes the appliance less than whole.
STATUS_FAULTS = ("camera_lost", "sink_errors", "audio_timeouts", "audio_dropped_blocks")


class EmotionLoop(Closeable):
    """Audio blocks in, one :class:`~edge.decision.Decision` per speech hop out to the sinks.

    Every collaborator arrives through the constructor, typed by its seam in
    :mod:`edge.interfaces`; :mod:`edge.testing` has a double for each.
    """

    def __init__(
        self,
        *,
        audio: AudioSource,
        speech: SpeechStream,
        fusion: LateFusion,
        smoother: Smoother,
        budget: BudgetPolicy,
        sinks: Sequence[Sink] = (),
        face: FaceStage | None = None,
        frames: FrameProvider | None = None,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock: Callable[[], float] = time.time,
        status_interval_s: float = 1.0,
        read_timeout_s: float = 0.2,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.audio = audio
        self.speech = speech
        self.fusion = fusion
        self.smoother = smoother
        self.budget = budget
        self.sinks = list(sinks)
        self.face = face
        self.frames = frames
        self.notifier = notifier or Notifier(address=None, env={})
        self.clock = clock
        self.wall_clock = wall_clock
        self.status_interval_s = status_interval_s
        self.read_timeout_s = read_timeout_s
        # Given by the caller when a signal may arrive before the loop exists (model loading).
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        self.cycles = 0
        self._stalled_reads = 0  # reads in a row that timed out
        self.counters: dict[str, int] = {
            "overruns": 0, "degradations": 0, "recoveries": 0, "audio_overflows": 0,
            "audio_dropped_blocks": 0, "audio_timeouts": 0, "frame_drops": 0,
            "camera_lost": 0, "sink_errors": 0,
        }
        # Sinks with counters of their own (MQTT: sent, dropped) report them in every decision.
        self._counting = [s for s in self.sinks if isinstance(s, CountingSink)]
        for sink in self._counting:
            self.counters.update(sink.counters)
        self._sink_faults: set[tuple[int, str]] = set()  # (sink, fault) pairs already logged
        self._samples = 0
        self._last_status = float("-inf")
        self._camera_was_available = True
        self._last_label: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to end after the current block (safe from a signal handler)."""
        self.stop_event.set()

    def _close(self) -> None:
        """Close the sinks (LEDs dark)."""
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # one failing sink must not keep the others (LEDs) lit
                logger.error("closing %r failed: %s: %s", sink, type(exc).__name__, exc)
                logger.debug("traceback", exc_info=True)

    def run(self) -> LoopSummary:
        """Run until the audio ends or :meth:`stop`; returns counters for the caller to report."""
        self.notifier.ready(status="running")
        try:
            pending_speech_s = 0.0
            while not self.stop_event.is_set():
                block = self.audio.read(self.read_timeout_s)
                if block is None:
                    if self.audio.exhausted:
                        # The recording ended: its last (or only, if short) window still counts,
                        # as it does for `emotion-edge classify`.
                        for result in self.speech.flush():
                            self._cycle(result, 0.0)
                        break
                    # No audio within the timeout: a live mic stalled. No cycle completes, so no
                    # watchdog ping; systemd restarts us if it lasts.
                    self.counters["audio_timeouts"] += 1
                    self._stalled_reads += 1
                    if self._stalled_reads == math.ceil(STALL_WARNING_S / self.read_timeout_s):
                        # Once per stall: nothing else says it.
                        logger.warning("no audio from the microphone for %g s: stalled or "
                                       "unplugged? the watchdog restarts the service if it "
                                       "lasts, and it starts again once the microphone is back",
                                       STALL_WARNING_S)
                    continue
                if self._stalled_reads * self.read_timeout_s >= STALL_WARNING_S:
                    logger.warning("audio is back after %.1f s",
                                   self._stalled_reads * self.read_timeout_s)
                self._stalled_reads = 0
                t0 = self.clock()
                results = self.speech.feed(block)
                pending_speech_s += self.clock() - t0
                self._samples += len(block)
                for result in results:
                    self._cycle(result, pending_speech_s)
                    pending_speech_s = 0.0
                    if self.stop_event.is_set():
                        break
        finally:
            self.notifier.stopping()
            self.close()
        return LoopSummary(cycles=self.cycles, audio_s=self._media_s(),
                           counters=dict(self.counters), last_label=self._last_label,
                           watched=self.frames is not None)

    # -- one cycle -------------------------------------------------------------------------------

    def _media_s(self) -> float:
        return self._samples / float(self.audio.sample_rate)

    def _speech_report(self, result: SpeechWindow) -> ModalityReport:
        if not result.speech or not result.scores:
            return ModalityReport("no_speech", result.label)
        return ModalityReport("ok", result.label, dict(result.scores))

    def _face_report(self, media_s: float, times: dict[str, float]) -> ModalityReport:
        if self.face is None:
            return ModalityReport("disabled")
        plan = self.budget.plan(have_box=self.face.has_box, have_face_result=self.face.has_result)
        if not plan.use_face:
            self.face.forget()
            return ModalityReport("skipped")
        if self.frames is None:
            return ModalityReport("disabled")
        t0 = self.clock()
        frame = self.frames.latest(media_s)
        times["frame"] = self.clock() - t0
        available = self.frames.available
        if available != self._camera_was_available:
            if not available:
                self.counters["camera_lost"] += 1
                logger.warning("camera unavailable; carrying on with speech alone, retrying")
            else:
                logger.warning("camera is back; face modality restored")
            self._camera_was_available = available
        if frame is None:
            self.face.forget()
            return ModalityReport("unavailable" if not available else "no_frame")
        report, face_times = self.face.run(frame, plan)
        times.update(face_times)
        return report

    def _cycle(self, result: SpeechWindow, speech_s: float) -> None:
        start = self.clock()
        media_s = self._media_s()
        times: dict[str, float] = {"speech": speech_s}
        speech = self._speech_report(result)
        face = self._face_report(media_s, times)
        t0 = self.clock()
        present = {m: r.scores for m, r in (("speech", speech), ("face", face)) if r.present}
        fused = self.fusion.fuse(present)
        shown = self.smoother.update(fused.scores if fused is not None else None, media_s)
        times["fusion"] = self.clock() - t0
        total = speech_s + (self.clock() - start)
        times["total"] = total
        step = self.budget.observe(total)
        if step.changed:
            direction = "degraded" if step.overrun else "recovered"
            logger.warning("cycle %d took %.1f ms (deadline %.1f ms): %s to %s", self.cycles,
                           total * 1e3, self.budget.deadline_s * 1e3, direction, step.level.label)
        self._update_counters()
        decision = Decision(
            cycle=self.cycles,
            time=self.wall_clock(),
            media_s=media_s,
            label=shown.label,
            confidence=shown.confidence,
            fused=dict(fused.scores) if fused is not None else {},
            speech=speech,
            face=face,
            latency_ms={k: v * 1e3 for k, v in times.items()},
            overrun=step.overrun,
            level=step.level.label,
            counters=dict(self.counters),
        )
        for sink in self.sinks:
            try:
                sink.write(decision)
            except BrokenPipeError:
                raise  # stdout's reader went away (`run | head`): the run is over (status 141)
            except Exception as exc:  # a sink fault (full disk, GPIO glitch) must not stop the loop
                self.counters["sink_errors"] += 1
                # One line per sink and kind of fault, not one a cycle: a full disk would fill
                # the journal at 2 lines a second.  The counter keeps the total.
                fault = (id(sink), type(exc).__name__)
                if fault not in self._sink_faults:
                    self._sink_faults.add(fault)
                    logger.error("sink %r failed: %s: %s (further failures of this kind are "
                                 "only counted in sink_errors)", sink, type(exc).__name__, exc)
                    logger.debug("traceback", exc_info=True)
        self.cycles += 1
        self._last_label = shown.label
        self.notifier.watchdog()
        now = self.clock()
        if now - self._last_status >= self.status_interval_s:
            # Health only: `systemctl status` shows STATUS= to every local user, and the
            # emotion is the household's (the decision log and the journal are not theirs).
            faults = ", ".join(f"{name.replace('_', ' ')} {self.counters[name]}"
                               for name in STATUS_FAULTS if self.counters[name])
            if self.notifier.status(f"running, cycle {total * 1e3:.1f} ms, level "
                                    f"{step.level.label}"
                                    + (f"; faults so far: {faults}" if faults else "")):
                self._last_status = now  # only once sent: after a full queue, next cycle

    def _update_counters(self) -> None:
        c = self.counters
        c["overruns"] = self.budget.overruns
        c["degradations"] = self.budget.degradations
        c["recoveries"] = self.budget.recoveries
        for key, value in (("audio_overflows", self.audio.overflows),
                           ("audio_dropped_blocks", self.audio.dropped_blocks)):
            # At 1, 2, 4, 8, ... so far: a microphone that keeps overflowing is told in a few
            # lines, not in one every cycle.
            if value.bit_length() > c[key].bit_length():
                logger.warning("audio %s: %d so far", key.removeprefix("audio_"), value)
            c[key] = value
        if self.frames is not None:
            c["frame_drops"] = self.frames.dropped
        for sink in self._counting:
            c.update(sink.counters)

    def __repr__(self) -> str:
        return (f"<EmotionLoop cycles={self.cycles} level={self.budget.level.label} "
                f"stopped={self.stop_event.is_set()}>")
