"""Base classes of the sources: lifecycle written once (:class:`edge.lifecycle.Closeable`)."""

from __future__ import annotations

from typing import Self

from ..errors import DeviceUnavailableError
from ..interfaces import GrayFrame
from ..lifecycle import Closeable

__all__ = ["AudioSourceBase", "FrameSource"]


class AudioSourceBase(Closeable):
    """Base of the audio sources: entering starts the source; counters default to zero."""

    sample_rate: int

    def start(self) -> None:
        """Open the device or file; idempotent."""

    def __enter__(self) -> Self:
        self.start()
        return self

    @property
    def overflows(self) -> int:
        return 0

    @property
    def dropped_blocks(self) -> int:
        return 0

    @property
    def exhausted(self) -> bool:
        return False


class FrameSource(Closeable):
    """Base of the frame sources: subclasses implement ``_read`` and ``_release``."""

    name = "frames"

    def __init__(self) -> None:
        self.exhausted = False
        self.frames_read = 0

    def read(self) -> GrayFrame | None:
        """The next grey uint8 frame, or ``None`` (no frame now, or ended: see ``exhausted``)."""
        if self._closed:
            raise DeviceUnavailableError(f"{self.name}: frame source is closed")
        if self.exhausted:
            return None
        frame = self._read()
        if frame is not None:
            self.frames_read += 1
        return frame

    def reset(self) -> None:
        """Release the device so the next :meth:`read` opens it again (after a failure)."""
        self._release()

    def _close(self) -> None:
        self._release()

    def _read(self) -> GrayFrame | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _release(self) -> None:
        pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("ended" if self.exhausted else "open")
        return f"<{type(self).__name__} {self.name} {state} frames={self.frames_read}>"
