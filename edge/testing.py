"""Test doubles for every seam of the pipeline, shipped with the package (as gpiozero ships its
mock pins), so users can test their own wiring without a microphone, camera or GPIO.

Each double is typed against the Protocol it stands in for (:mod:`edge.interfaces`) and lets a
test script what the real component would do: faults, stage costs on a manual clock, a camera
that comes and goes.  Nothing here sleeps unless asked to.

    from edge.testing import FakeClock, FakeMicrophone, FakeSpeechStream, FakeCamera
    loop = EmotionLoop(audio=FakeMicrophone(10), speech=FakeSpeechStream(), ...)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np

from .interfaces import AudioBlock, Box, GrayFrame
from .models.speech import NO_SPEECH, SpeechResult

__all__ = [
    "FakeClock",
    "scores_for",
    "FakeMicrophone",
    "FakeSpeechStream",
    "FakeDetector",
    "FakeFace",
    "FakeFaceClassifier",
    "FakeCamera",
    "mock_pin_factory",
]

#: Sample rate of the fake audio, Hz.
SAMPLE_RATE = 16000
#: Seconds of audio per fake block (one speech hop).
HOP_S = 0.5


class FakeClock:
    """A manual clock: stages advance it by their scripted cost."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def scores_for(labels: Sequence[str], hot: str, p: float = 0.85) -> dict[str, float]:
    """Probabilities with ``p`` on ``hot`` and the rest spread evenly."""
    rest = (1 - p) / (len(labels) - 1)
    return {label: (p if label == hot else rest) for label in labels}


class FakeMicrophone:
    """An :class:`~edge.interfaces.AudioSource` of ``n_hops`` hop-long blocks; loud blocks are
    speech, quiet ones silence.

    ``loud``: a bool, or a function of the block index.  ``overflow_at``: block indices at which
    the capture callback "overflowed" (counted as an overflow and a dropped block).
    ``forever``: never exhausted (a live microphone), with an optional real ``pace_s`` per block.
    """

    def __init__(self, n_hops: int = 10, *, loud: bool | Callable[[int], bool] = True,
                 overflow_at: Collection[int] = (), forever: bool = False,
                 pace_s: float = 0.0) -> None:
        self.n_hops = n_hops
        self.loud = loud
        self.overflow_at = set(overflow_at)
        self.forever = forever
        self.pace_s = pace_s
        self.i = 0
        self.overflows = 0
        self.dropped_blocks = 0
        self.exhausted = False
        self.started = False
        self.closed = False

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    def start(self) -> None:
        self.started = True

    def read(self, timeout_s: float | None = None) -> AudioBlock | None:
        if not self.forever and self.i >= self.n_hops:
            self.exhausted = True
            return None
        if self.pace_s:
            time.sleep(self.pace_s)
        if self.i in self.overflow_at:
            self.overflows += 1
            self.dropped_blocks += 1
        loud = self.loud(self.i) if callable(self.loud) else self.loud
        self.i += 1
        return np.full(int(SAMPLE_RATE * HOP_S), 0.3 if loud else 0.0, dtype=np.float32)

    def close(self) -> None:
        self.closed = True


class FakeSpeechStream:
    """A :class:`~edge.interfaces.SpeechStream`: one result per block, "no speech" for silence,
    else ``label_at(i)``; ``cost_s`` advances ``clock`` per block; ``tail`` are the labels the end
    of the audio still produces (:meth:`flush`)."""

    def __init__(self, labels: Sequence[str], label_at: Callable[[int], str] = lambda i: "angry",
                 *, clock: FakeClock | None = None, cost_s: float = 0.0,
                 tail: Sequence[str] = ()) -> None:
        self.labels = tuple(labels)
        self.label_at = label_at
        self.clock = clock
        self.cost_s = cost_s
        self.i = 0
        self.tail = list(tail)
        self.flushed = 0

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    def feed(self, block: AudioBlock) -> list[SpeechResult]:
        if self.clock is not None:
            self.clock.advance(self.cost_s)
        i, self.i = self.i, self.i + 1
        if float(np.sqrt(np.mean(block ** 2))) < 1e-3:
            return [SpeechResult(NO_SPEECH, {}, False, i * HOP_S)]
        label = self.label_at(i)
        return [SpeechResult(label, scores_for(self.labels, label), True, i * HOP_S)]

    def flush(self) -> list[SpeechResult]:
        self.flushed += 1
        return [SpeechResult(lab, scores_for(self.labels, lab), True, self.i * HOP_S)
                for lab in self.tail]


class FakeDetector:
    """A :class:`~edge.interfaces.FaceDetector` that finds one face in any non-black frame."""

    def __init__(self, clock: FakeClock | None = None, cost_s: float = 0.0,
                 box: Box = (10, 10, 40, 40)) -> None:
        self.clock, self.cost_s, self.box, self.calls = clock, cost_s, box, 0
        self.closed = False

    def detect(self, gray: GrayFrame) -> list[Box]:
        self.calls += 1
        if self.clock is not None:
            self.clock.advance(self.cost_s)
        return [self.box] if gray.mean() > 0 else []

    def close(self) -> None:
        self.closed = True


class FakeFace:
    def __init__(self, label: str, scores: Mapping[str, float]) -> None:
        self.label, self.scores = label, scores


class FakeFaceClassifier:
    """A :class:`~edge.interfaces.FaceCropClassifier` that always sees ``label``.

    ``cost_s`` (seconds, or a function returning them) advances ``clock`` per call; ``gate``,
    when given and cleared, blocks each call: a stalled stage.
    """

    def __init__(self, labels: Sequence[str], label: str = "happy", *,
                 clock: FakeClock | None = None,
                 cost_s: float | Callable[[], float] = 0.0,
                 gate: threading.Event | None = None) -> None:
        self._labels = tuple(labels)
        self.label, self.clock, self.cost_s, self.gate, self.calls = label, clock, cost_s, gate, 0

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    def classify_crop(self, gray: GrayFrame, box: Sequence[int] | None = None) -> FakeFace:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait()
        if self.clock is not None:
            self.clock.advance(self.cost_s() if callable(self.cost_s) else self.cost_s)
        return FakeFace(self.label, scores_for(self._labels, self.label))


class FakeCamera:
    """A :class:`~edge.interfaces.FrameProvider` whose camera is there while ``up(media_s)``."""

    def __init__(self, up: Callable[[float], bool] = lambda t: True,
                 size: tuple[int, int] = (320, 240)) -> None:
        self.up = up
        self.size = size
        self.available = True
        self.dropped = 0

    def latest(self, media_s: float) -> GrayFrame | None:
        self.available = bool(self.up(media_s))
        w, h = self.size
        return np.full((h, w), 128, np.uint8) if self.available else None


#: State changes a mock pin remembers: a replay of hours changes the LEDs at every decision.
MOCK_PIN_HISTORY = 1000


def mock_pin_factory() -> Any:
    """gpiozero's ``MockFactory`` with PWM-capable pins (RGB and PWM LEDs need them), each
    keeping its last :data:`MOCK_PIN_HISTORY` states (gpiozero's keep every one, so memory
    grew with the length of a replay)."""
    from collections import deque

    from gpiozero.pins.mock import MockFactory, MockPWMPin

    class BoundedMockPWMPin(MockPWMPin):  # type: ignore[misc]
        def clear_states(self) -> None:
            super().clear_states()
            self.states: deque[Any] = deque(self.states, maxlen=MOCK_PIN_HISTORY)

    return MockFactory(pin_class=BoundedMockPWMPin)
