"""The seams of the pipeline, as typed Protocols.

Each stage receives its collaborators through these interfaces, so the same loop runs on a
microphone and a camera or on replayed recordings, and tests (and users) pass the doubles in
:mod:`edge.testing`.  mypy checks every implementation against them.

    AudioSource -> SpeechStream -> (fusion) <- FaceStage(FaceDetector, FaceCropClassifier)
                                            <- FrameProvider
                          decision -> Sink...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt

from .decision import Decision

__all__ = [
    "Box",
    "FaceBox",
    "roll_of",
    "GrayFrame",
    "AudioBlock",
    "AudioSource",
    "FrameReader",
    "FrameProvider",
    "FaceDetector",
    "ClassifiedFace",
    "FaceCropClassifier",
    "SpeechWindow",
    "SpeechStream",
    "Sink",
    "CountingSink",
]

#: A face box ``(x, y, w, h)`` in frame pixels.
Box: TypeAlias = tuple[int, int, int, int]


class FaceBox(tuple[int, int, int, int]):
    """A :data:`Box` that also carries the face's in-plane turn (``roll``, degrees: the angle
    of the line through the eyes from level, positive when it runs down to the right, i.e. the
    face is turned clockwise in the image).  A detector that finds eyes (BlazeFace) returns these; everything that takes a
    plain box takes one, and :func:`edge.features.face.crop_face` can turn the face upright."""

    roll: float

    def __new__(cls, x: int, y: int, w: int, h: int, roll: float = 0.0) -> FaceBox:
        self = super().__new__(cls, (int(x), int(y), int(w), int(h)))
        self.roll = float(roll)
        return self

    def __getnewargs__(self) -> tuple[int, int, int, int, float]:
        return (*self, self.roll)

    def __repr__(self) -> str:
        return f"FaceBox({', '.join(map(str, self))}, roll={self.roll:.1f})"


def roll_of(box: object) -> float:
    """The face's roll in degrees if ``box`` carries one (:class:`FaceBox`), else 0."""
    return box.roll if isinstance(box, FaceBox) else 0.0


#: A 2-D uint8 grey image.
GrayFrame: TypeAlias = npt.NDArray[np.uint8]
#: Mono float32 audio samples.
AudioBlock: TypeAlias = npt.NDArray[np.float32]


class AudioSource(Protocol):
    """Mono float32 blocks at :attr:`sample_rate`; ``read`` returns ``None`` when nothing arrived
    within ``timeout_s`` (then :attr:`exhausted` tells whether the source has ended)."""

    @property
    def sample_rate(self) -> int: ...
    def start(self) -> None: ...
    def read(self, timeout_s: float | None = None) -> AudioBlock | None: ...
    def close(self) -> None: ...
    @property
    def exhausted(self) -> bool: ...
    @property
    def overflows(self) -> int: ...
    @property
    def dropped_blocks(self) -> int: ...


class FrameReader(Protocol):
    """A camera or a replayed file: ``read`` gives the next grey frame or ``None``."""

    name: str

    def read(self) -> GrayFrame | None: ...
    def reset(self) -> None: ...
    def close(self) -> None: ...
    @property
    def exhausted(self) -> bool: ...


class FrameProvider(Protocol):
    """The latest camera (or replayed) frame for a cycle ending at ``media_s`` seconds."""

    @property
    def available(self) -> bool:
        """False while the camera is gone (being retried): the face modality is unavailable."""
    @property
    def dropped(self) -> int:
        """Frames replaced before anyone used them (the camera runs faster than the loop)."""
    def latest(self, media_s: float) -> GrayFrame | None: ...


class FaceDetector(Protocol):
    """Face boxes in a grey frame, largest first; ``[]`` means no face."""

    def detect(self, gray: GrayFrame) -> list[Box]: ...
    def close(self) -> None: ...


class ClassifiedFace(Protocol):
    @property
    def label(self) -> str: ...
    @property
    def scores(self) -> Mapping[str, float]: ...


class FaceCropClassifier(Protocol):
    """Expression of the face inside a box of a grey frame."""

    @property
    def labels(self) -> tuple[str, ...]: ...
    def classify_crop(self, gray: GrayFrame, box: Sequence[int] | None = None) -> ClassifiedFace: ...


class SpeechWindow(Protocol):
    """One speech window's outcome: ``speech`` is False when the gate found none."""

    @property
    def label(self) -> str: ...
    @property
    def scores(self) -> Mapping[str, float]: ...
    @property
    def speech(self) -> bool: ...


class SpeechStream(Protocol):
    """Audio blocks in, one :class:`SpeechWindow` per completed hop out."""

    @property
    def sample_rate(self) -> int: ...
    def feed(self, block: AudioBlock) -> Sequence[SpeechWindow]: ...
    def flush(self) -> Sequence[SpeechWindow]: ...


class Sink(Protocol):
    """Where decisions go (LEDs, logs, a terminal, later the network)."""

    def write(self, decision: Decision) -> None: ...
    def close(self) -> None: ...


@runtime_checkable
class CountingSink(Protocol):
    """A sink that keeps cumulative counters of its own (the MQTT sink: sent, dropped,
    disconnects); the loop copies them into every decision's ``counters``."""

    @property
    def counters(self) -> Mapping[str, int]: ...
    def write(self, decision: Decision) -> None: ...
    def close(self) -> None: ...
