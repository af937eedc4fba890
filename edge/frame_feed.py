"""Frame providers for the loop: the latest frame for a cycle ending at ``media_s`` seconds.

* :class:`StillFrames` — one image stands in for the camera (``run --image``).
* :class:`MediaTimeFrames` — a replayed video, read in step with the *audio* clock, so real-time
  and ``--fast`` replays see the same frames for the same cycle (deterministic).
* :class:`GrabberFrames` — the live camera: :class:`edge.frames.LatestFrameGrabber` runs capture
  on its own thread, keeps only the newest frame, counts drops and reopens a failed camera with
  backoff; this adapter only asks it for the newest frame.

All provide ``latest(media_s)``, ``available`` (False while the camera is gone) and ``dropped``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["StillFrames", "MediaTimeFrames", "GrabberFrames", "open_video_replay", "open_camera"]

logger = logging.getLogger(__name__)


class StillFrames:
    def __init__(self, gray: np.ndarray) -> None:
        self.gray = gray
        self.available = True
        self.dropped = 0

    @classmethod
    def from_file(cls, path: str | Path) -> "StillFrames":
        from .face import read_gray_image

        return cls(read_gray_image(path))

    def latest(self, media_s: float) -> np.ndarray | None:
        return self.gray

    def __repr__(self) -> str:
        return f"<StillFrames {self.gray.shape[1]}x{self.gray.shape[0]}>"


class MediaTimeFrames:
    """Frames of ``source`` (``read() -> grey | None`` at ``fps``) up to the audio time.

    Frames between two cycles are read and skipped (counted in ``dropped``), as a live camera's
    grabber would replace them; after the video ends the face modality is missing.
    """

    def __init__(self, source: Any, fps: float) -> None:
        if not fps or fps <= 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        self.source = source
        self.fps = float(fps)
        self.available = True
        self.dropped = 0
        self._next_index = 0
        self._frame: np.ndarray | None = None
        self._ended = False

    def latest(self, media_s: float) -> np.ndarray | None:
        read = 0
        while not self._ended and self._next_index / self.fps <= media_s:
            frame = self.source.read()
            if frame is None:
                self._ended = True
                self._frame = None
                logger.info("video replay ended at %.1f s", self._next_index / self.fps)
                break
            self._frame = frame
            self._next_index += 1
            read += 1
        self.dropped += max(0, read - 1)
        return self._frame

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> "MediaTimeFrames":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<MediaTimeFrames at frame {self._next_index} fps={self.fps:g} ended={self._ended}>"


class GrabberFrames:
    """Adapter from :class:`edge.frames.LatestFrameGrabber` to the loop's frame provider."""

    def __init__(self, grabber: Any) -> None:
        self.grabber = grabber

    @property
    def available(self) -> bool:
        return bool(self.grabber.available)

    @property
    def dropped(self) -> int:
        return int(self.grabber.dropped)

    def latest(self, media_s: float) -> np.ndarray | None:
        return self.grabber.latest()

    def close(self) -> None:
        self.grabber.close()

    def __enter__(self) -> "GrabberFrames":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<GrabberFrames {self.grabber!r}>"


def open_video_replay(path: str | Path) -> MediaTimeFrames:
    from .frames import VideoFileSource

    source = VideoFileSource(path)
    return MediaTimeFrames(source, source.fps)


def open_camera(camera_config: Any) -> GrabberFrames:
    from .frames import LatestFrameGrabber, open_frame_source

    source = open_frame_source(camera_config)
    grabber = LatestFrameGrabber(source, retry_initial_s=camera_config.retry_initial_s,
                                 retry_max_s=camera_config.retry_max_s)
    grabber.start()
    return GrabberFrames(grabber)
