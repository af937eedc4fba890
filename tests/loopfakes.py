"""Small fakes for the loop's collaborators (audio, speech, face, frames, clock).

They follow the real interfaces (edge.audio_sources, edge.speech, edge.face, edge.frames) closely
enough for the loop, and let tests script faults and stage costs without hardware or sleeps.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from edge.speech import NO_SPEECH, SpeechResult

SR = 16000
HOP = 0.5
SPEECH_LABELS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
FACE_LABELS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
SPEECH_MAP = {l: l for l in SPEECH_LABELS} | {"calm": "neutral"}
FACE_MAP = {l: l for l in FACE_LABELS} | {"fear": "fearful", "surprise": "surprised"}


class FakeClock:
    """Manual clock: stages advance it by their scripted cost."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, s: float) -> None:
        self.now += s


def scores(labels, hot, p=0.85):
    rest = (1 - p) / (len(labels) - 1)
    return {l: (p if l == hot else rest) for l in labels}


class ScriptedAudio:
    """Replays ``n_hops`` hop-sized blocks; loud blocks are speech, quiet ones silence.

    ``overflow_at``: hop indices at which the (fake) capture callback overflowed.
    ``forever``: never exhausted (live mic), optional ``pace_s`` real sleep per block.
    """

    sample_rate = SR

    def __init__(self, n_hops=10, *, loud=True, overflow_at=(), forever=False, pace_s=0.0):
        self.n_hops = n_hops
        self.loud = loud
        self.overflow_at = set(overflow_at)
        self.forever = forever
        self.pace_s = pace_s
        self.i = 0
        self.overflows = 0
        self.dropped_blocks = 0
        self.exhausted = False
        self.closed = False

    def read(self, timeout_s=None):
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
        amp = 0.3 if loud else 0.0
        return np.full(int(SR * HOP), amp, dtype=np.float32)

    def close(self):
        self.closed = True


class FakeSpeechStream:
    """One result per hop-sized block: "no speech" for silence, else ``label_at(i)``."""

    sample_rate = SR

    def __init__(self, label_at=lambda i: "angry", clock=None, cost_s=0.0, tail=()):
        self.label_at = label_at
        self.clock = clock
        self.cost_s = cost_s
        self.i = 0
        self.tail = list(tail)  # results the end of the audio still produces (see flush)
        self.flushed = 0

    def feed(self, block):
        if self.clock is not None:
            self.clock.advance(self.cost_s)
        i, self.i = self.i, self.i + 1
        if float(np.sqrt(np.mean(block ** 2))) < 1e-3:
            return [SpeechResult(NO_SPEECH, {}, False, i * HOP)]
        label = self.label_at(i)
        return [SpeechResult(label, scores(SPEECH_LABELS, label), True, i * HOP)]

    def flush(self):
        self.flushed += 1
        return [SpeechResult(lab, scores(SPEECH_LABELS, lab), True, self.i * HOP)
                for lab in self.tail]


class FakeDetector:
    def __init__(self, clock=None, cost_s=0.0):
        self.clock, self.cost_s, self.calls = clock, cost_s, 0

    def detect(self, gray):
        self.calls += 1
        if self.clock is not None:
            self.clock.advance(self.cost_s)
        return [(10, 10, 40, 40)] if gray.mean() > 0 else []


class FakeFace:
    def __init__(self, label, scores):
        self.label, self.scores = label, scores


class FakeFaceClassifier:
    labels = FACE_LABELS

    def __init__(self, label="happy", clock=None, cost_s=0.0, gate: threading.Event | None = None):
        self.label, self.clock, self.cost_s, self.calls = label, clock, cost_s, 0
        self.gate = gate  # when set and cleared, classify blocks: a stalled stage

    def classify_crop(self, gray, box):
        self.calls += 1
        if self.gate is not None:
            self.gate.wait()
        if self.clock is not None:
            self.clock.advance(self.cost_s() if callable(self.cost_s) else self.cost_s)
        return FakeFace(self.label, scores(FACE_LABELS, self.label))


class ScriptedFrames:
    """A frame provider whose camera is present when ``up(media_s)`` is true."""

    def __init__(self, up=lambda t: True):
        self.up = up
        self.available = True
        self.dropped = 0

    def latest(self, media_s):
        self.available = bool(self.up(media_s))
        return np.full((240, 320), 128, np.uint8) if self.available else None
