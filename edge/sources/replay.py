"""Recordings standing in for the microphone and the camera: replay and tests.

* :class:`FileAudioSource` - an audio file as blocks, in real time or as fast as it is read.
* :class:`VideoFileSource`, :class:`ImageSource` - frames of a video file, or still images.
* :class:`StillFrames` - one image stands in for the camera (``run --image``).
* :class:`MediaTimeFrames` - a replayed video, read in step with the *audio* clock, so real-time
  and ``--fast`` replays see the same frames for the same cycle (deterministic).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .. import optional
from ..errors import ConfigError, ImageFileError
from ..interfaces import AudioBlock, FrameReader
from ..lifecycle import Closeable
from .audio_file import AudioFileStream
from .base import AudioSourceBase, FrameSource
from .images import read_gray_image, to_gray

__all__ = [
    "FileAudioSource",
    "VideoFileSource",
    "ImageSource",
    "StillFrames",
    "MediaTimeFrames",
    "open_video_replay",
]

logger = logging.getLogger(__name__)


class FileAudioSource(AudioSourceBase):
    """Replays an audio file as blocks, paced in real time or as fast as it is read.

    The file is opened at :meth:`start` and decoded and resampled a block at a time (memory does
    not grow with its length); a bad file raises :class:`~edge.errors.AudioFileError` naming it,
    at start or, for a fault further in, at the block that reaches it.
    """

    def __init__(
        self,
        path: str | Path,
        sample_rate: int = 16000,
        block_s: float = 0.1,
        *,
        realtime: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if block_s <= 0:
            raise ConfigError(f"block_s must be positive, got {block_s!r}")
        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        self.block = max(1, int(round(block_s * sample_rate)))
        self.realtime = realtime
        self._clock, self._sleep = clock, sleep
        self._stream: AudioFileStream | None = None
        self._pos = 0
        self._t0 = 0.0

    def start(self) -> None:
        if self._stream is None:
            self._stream = AudioFileStream(self.path, self.sample_rate)
            self._t0 = self._clock()

    @property
    def duration_s(self) -> float:
        self.start()
        assert self._stream is not None
        return self._stream.duration_s

    @property
    def exhausted(self) -> bool:
        return self._stream is not None and self._stream.exhausted

    def read(self, timeout_s: float | None = None) -> AudioBlock | None:
        if self._closed:
            return None
        self.start()
        assert self._stream is not None
        if self.realtime:
            # A block is available once its last sample would have been captured.
            due = self._t0 + (self._pos + self.block) / self.sample_rate
            wait = due - self._clock()
            if timeout_s is not None and wait > timeout_s:
                self._sleep(max(timeout_s, 0.0))
                return None
            if wait > 0:
                self._sleep(wait)
        block = self._stream.read(self.block)
        if block.size == 0:
            return None
        self._pos += block.size
        return block

    def _close(self) -> None:
        if self._stream is not None:
            self._stream.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"at {self._pos / self.sample_rate:.1f}s"
        return f"<FileAudioSource {self.path.name} {state}>"


#: Failed reads in a row after which a video is taken to have ended (a damaged stretch shorter
#: than this is skipped; at the true end each read fails at once).
MAX_UNDECODABLE = 50


class VideoFileSource(FrameSource):
    """Frames of a video file, in order; ``read()`` returns ``None`` at the end.

    Opening checks the file at once, so a missing or unreadable video is an
    :class:`~edge.errors.ImageFileError` naming it, never a silent empty stream.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.name = str(self.path)
        if self.path.is_dir():
            raise ImageFileError(f"{self.path}: is a folder, not a video; give the files in it")
        if not self.path.is_file():
            raise ImageFileError(f"{self.path}: not a regular file" if self.path.exists() else
                                 f"{self.path}: no such video file")
        cv2 = optional.cv2()
        # "moov atom not found" on fd 2
        with optional.quiet_native_output("FFmpeg"), optional.native_path(self.path) as name:
            self._cap = cv2.VideoCapture(name)
        if not self._cap.isOpened():
            self._cap.release()
            raise ImageFileError(f"{self.path}: not a readable video (unknown format or corrupt)")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        #: Frames per second from the container; 25 when the container does not say.
        self.fps = fps if 0.0 < fps < 1000.0 else 25.0
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        #: Time of the frame last read, in seconds from the video's start, from its own
        #: timestamp: a phone's variable frame rate makes frame index / fps drift.
        self.time_s = 0.0
        #: Frames that could not be decoded and were skipped.
        self.damaged = 0
        self._told = 0
        self._cv2 = cv2

    def _read(self) -> np.ndarray | None:
        failed = 0
        while True:
            with optional.quiet_native_output("FFmpeg"):  # "error while decoding MB ..." on fd 2
                ok, frame = self._cap.read()
            if ok and frame is not None:
                break
            failed += 1  # a damaged frame, or the end: past it, decoding may go on
            if failed >= MAX_UNDECODABLE:
                self._ended()
                return None
        if failed:
            if not self.damaged:
                self._told = failed
                logger.warning("%s: %d frame(s) could not be decoded and were skipped (the "
                               "video is damaged there); later ones are counted", self.path,
                               failed)
            self.damaged += failed
        msec = float(self._cap.get(self._cv2.CAP_PROP_POS_MSEC) or 0.0)
        self.time_s = msec / 1000.0 if msec > 0 or self.frames_read == 0 else (
            self.frames_read / self.fps)
        return to_gray(frame)

    def _ended(self) -> None:
        self.exhausted = True
        if self.frames_read == 0:
            raise ImageFileError(f"{self.path}: video has no decodable frames")
        got = self.frames_read + self.damaged
        if self.frame_count > 0 and got < 0.95 * self.frame_count - 1:
            logger.warning("%s: ended after %d of the %d frames its container declares "
                           "(truncated?)", self.path, got, self.frame_count)
        if self.damaged > self._told:
            logger.warning("%s: %d frame(s) in all could not be decoded", self.path,
                           self.damaged)

    def reset(self) -> None:
        # A file cannot "come back"; nothing to reopen.
        pass

    def _release(self) -> None:
        self._cap.release()


class ImageSource(FrameSource):
    """Still images (paths or arrays), each returned once as grey, then ``None``."""

    def __init__(self, images: Iterable[str | Path | np.ndarray]) -> None:
        super().__init__()
        self._items = list(images)
        self._next = 0
        self.name = f"{len(self._items)} image(s)"

    def _read(self) -> np.ndarray | None:
        if self._next >= len(self._items):
            self.exhausted = True
            return None
        item = self._items[self._next]
        self._next += 1
        if isinstance(item, np.ndarray):
            return to_gray(item)
        return read_gray_image(item)


class StillFrames:
    def __init__(self, gray: np.ndarray) -> None:
        self.gray = gray
        self.available = True
        self.dropped = 0

    @classmethod
    def from_file(cls, path: str | Path) -> StillFrames:
        return cls(read_gray_image(path))

    def latest(self, media_s: float) -> np.ndarray | None:
        return self.gray

    def __repr__(self) -> str:
        return f"<StillFrames {self.gray.shape[1]}x{self.gray.shape[0]}>"


class MediaTimeFrames(Closeable):
    """Frames of ``source`` (``read() -> grey | None`` at ``fps``) up to the audio time.

    Frames between two cycles are read and skipped (counted in ``dropped``), as a live camera's
    grabber would replace them; after the video ends the face modality is missing.
    """

    def __init__(self, source: FrameReader, fps: float) -> None:
        if not fps or fps <= 0:
            raise ConfigError(f"fps must be positive, got {fps!r}")
        self.source = source
        self.fps = float(fps)
        self.available = True
        self.dropped = 0
        self._next_index = 0
        self._frame: np.ndarray | None = None
        self._ahead: tuple[np.ndarray, float] | None = None  # read, not yet due
        self._ended = False

    def latest(self, media_s: float) -> np.ndarray | None:
        read = 0
        while not self._ended:
            if self._ahead is None:
                frame = self.source.read()
                if frame is None:
                    self._ended = True
                    self._frame = None
                    logger.info("video replay ended at %.1f s", self._next_index / self.fps)
                    break
                # The frame's own time where the source knows it (a variable frame rate).
                at = getattr(self.source, "time_s", None)
                self._ahead = (frame, self._next_index / self.fps if at is None else at)
                self._next_index += 1
            frame, at = self._ahead
            if at > media_s:
                break
            self._frame, self._ahead = frame, None
            read += 1
        self.dropped += max(0, read - 1)
        return self._frame

    def _close(self) -> None:
        self.source.close()

    def __repr__(self) -> str:
        return f"<MediaTimeFrames at frame {self._next_index} fps={self.fps:g} ended={self._ended}>"


def open_video_replay(path: str | Path) -> MediaTimeFrames:
    source = VideoFileSource(path)
    return MediaTimeFrames(source, source.fps)
