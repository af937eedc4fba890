"""The live camera: Picamera2 or an OpenCV capture, and a thread that keeps only the latest frame.

* :class:`Picamera2Source` - the Raspberry Pi camera via Picamera2 (apt ``python3-picamera2``),
  reading the lores YUV420 stream whose Y plane *is* the grey frame (no colour conversion).
* :class:`OpenCVCaptureSource` - a USB camera by index (``/dev/videoN``) via OpenCV.

The backend is chosen by ``camera.source`` in the configuration (``auto``: Picamera2 when
importable, else OpenCV, with a warning at the fallback).  Hardware libraries are imported inside
the adapters, so this module imports anywhere.

:class:`LatestFrameGrabber` runs ``read()`` on its own thread, keeps only the newest frame (the
loop should classify what the camera sees now, not a queue of old frames), counts the frames it
dropped, and turns a failing camera into ``available = False`` plus retries with exponential
backoff instead of an exception in the loop.  :class:`GrabberFrames` hands its newest frame to
the loop.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Self

import numpy as np

from .. import optional
from ..config import CAMERA_BACKENDS, CameraConfig
from ..errors import (
    ConfigError,
    DeviceUnavailableError,
    EmotionEdgeError,
    MissingDependencyError,
)
from ..interfaces import FrameReader
from ..lifecycle import Closeable
from .base import FrameSource
from .images import to_gray

__all__ = [
    "Picamera2Source",
    "OpenCVCaptureSource",
    "open_frame_source",
    "RotatedFrames",
    "LatestFrameGrabber",
    "GrabberFrames",
    "open_camera",
]

logger = logging.getLogger(__name__)

#: How to get Picamera2 (apt only).  "numpy.dtype size changed" means pip put a NumPy 2 in the
#: venv over the NumPy 1.24 apt's simplejpeg was built for (the Pi constraints pin 1.26, same ABI).
PICAMERA2_HINT = (
    "on Raspberry Pi OS run `sudo apt install python3-picamera2` and create the venv with "
    "--system-site-packages (picamera2 is not installable from pip); if it says \"numpy.dtype "
    "size changed\", reinstall with `make pi-install` so the venv's NumPy keeps the ABI of "
    "apt's (docs/appliance.md, \"Install on a Raspberry Pi\")"
)


class Picamera2Source(FrameSource):
    """The Pi camera through Picamera2: a video configuration with a small YUV420 lores stream.

    The Y (luma) plane of the lores stream is the grey frame; its array may be wider than the
    image (row stride), so it is cut to ``lores_size``.  ``main_size`` is the full-resolution
    stream the ISP needs anyway (lores must not be larger than main).
    """

    def __init__(
        self,
        camera_num: int = 0,
        *,
        lores_size: tuple[int, int] = (320, 240),
        main_size: tuple[int, int] = (640, 480),
        picamera2_class: Any = None,
    ) -> None:
        super().__init__()
        self.camera_num = int(camera_num)
        self.lores_size = (int(lores_size[0]), int(lores_size[1]))
        self.main_size = (int(main_size[0]), int(main_size[1]))
        if self.lores_size[0] > self.main_size[0] or self.lores_size[1] > self.main_size[1]:
            self.main_size = self.lores_size
        self.name = f"picamera2:{self.camera_num}"
        self._cls = picamera2_class
        self._cam: Any = None

    def _open(self) -> None:
        cls = self._cls
        if cls is None:
            cls = optional.import_optional("picamera2", PICAMERA2_HINT).Picamera2
        try:
            cam = cls(self.camera_num)
            config = cam.create_video_configuration(
                main={"size": self.main_size, "format": "XRGB8888"},
                lores={"size": self.lores_size, "format": "YUV420"},
            )
            cam.configure(config)
            cam.start()
        except (RuntimeError, OSError, IndexError) as exc:
            raise DeviceUnavailableError(
                f"{self.name}: camera cannot be opened ({exc}); check the ribbon cable and that "
                f"no other process (rpicam-hello, another emotion-edge) holds the camera"
            ) from None
        self._cam = cam

    def _read(self) -> np.ndarray | None:
        if self._cam is None:
            self._open()
        try:
            yuv = self._cam.capture_array("lores")
        except (RuntimeError, OSError) as exc:
            raise DeviceUnavailableError(f"{self.name}: capture failed ({exc})") from None
        w, h = self.lores_size
        return np.ascontiguousarray(yuv[:h, :w])

    def _release(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.stop()
            finally:
                cam.close()


class OpenCVCaptureSource(FrameSource):
    """A camera by index (``/dev/videoN``) through OpenCV; frames converted to grey."""

    def __init__(self, index: int = 0, *, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.index = int(index)
        self.size = (int(width), int(height))
        self.name = f"opencv:{self.index}"
        self._cap: Any = None

    def _open(self) -> None:
        cv2 = optional.cv2()
        cap = cv2.VideoCapture(self.index)
        if not cap.isOpened():
            cap.release()
            raise DeviceUnavailableError(
                f"{self.name}: camera /dev/video{self.index} cannot be opened; check it is "
                f"plugged in and the user is in the 'video' group"
            )
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        # A one-frame driver buffer keeps what we read close to "now".
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap

    def _read(self) -> np.ndarray | None:
        if self._cap is None:
            self._open()
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise DeviceUnavailableError(f"{self.name}: camera stopped delivering frames")
        return to_gray(frame)

    def _release(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


def open_frame_source(config: CameraConfig | None = None, *, backend: str | None = None
                      ) -> FrameSource:
    """Open the camera chosen by ``backend``, else ``config.source``; ``auto`` is Picamera2 when
    it can be imported, else OpenCV (with a warning saying why)."""
    config = config or CameraConfig()
    choice = backend or config.source
    if choice == "auto":
        try:
            optional.import_optional("picamera2", PICAMERA2_HINT)
        except MissingDependencyError as exc:
            logger.warning("falling back to the OpenCV camera %d: %s", config.index, exc)
            choice = "opencv"
        else:
            choice = "picamera2"
    size = (config.width, config.height)
    source: FrameSource
    if choice == "picamera2":
        source = Picamera2Source(config.index, lores_size=size)
    elif choice == "opencv":
        source = OpenCVCaptureSource(config.index, width=size[0], height=size[1])
    else:
        raise ConfigError(
            f"camera backend {choice!r} is unknown; choose one of {', '.join(CAMERA_BACKENDS)}"
        )
    return RotatedFrames(source, config.rotate) if config.rotate else source


class RotatedFrames(FrameSource):
    """The frames of ``source`` turned clockwise by ``degrees`` (90, 180 or 270): a camera
    mounted upside down or on its side.  A grey 320x240 frame turns in microseconds."""

    _CODES = {90: "ROTATE_90_CLOCKWISE", 180: "ROTATE_180", 270: "ROTATE_90_COUNTERCLOCKWISE"}

    def __init__(self, source: FrameSource, degrees: int) -> None:
        super().__init__()
        if degrees not in self._CODES:
            raise ConfigError(f"camera.rotate = {degrees!r}; choose 0, 90, 180 or 270")
        self.source = source
        self.degrees = degrees
        self.name = f"{source.name} turned {degrees}°"
        cv2 = optional.cv2()
        code = getattr(cv2, self._CODES[degrees])
        self._rotate = functools.partial(cv2.rotate, rotateCode=code)

    def _read(self) -> np.ndarray | None:
        frame = self.source.read()
        self.exhausted = self.source.exhausted
        return None if frame is None else self._rotate(frame)

    def reset(self) -> None:
        self.source.reset()

    def _release(self) -> None:
        self.source.close()


#: A frame older than this is not shown to the face stage: the camera counts as lost.
STALE_S = 2.0
#: No frame for this long while the camera is not failing: its driver is stuck (see
#: :meth:`GrabberFrames.latest`).
STUCK_S = 30.0


class LatestFrameGrabber(Closeable):
    """Read ``source`` on a background thread and keep only the newest frame.

    * :meth:`latest` returns the newest frame (``None`` before the first one and while the
      source is failing); frames replaced before anyone asked for them are counted in
      ``dropped``.
    * A source error (camera unplugged, driver hiccup) never reaches the caller: ``available``
      turns False, ``failures`` counts it, ``last_error`` keeps the message, the device is
      released (``source.reset()``) and reopened after ``retry_initial_s``, doubling up to
      ``retry_max_s`` while it keeps failing.
    * When the source ends (a replayed file), the thread stops and ``exhausted`` is True.
    """

    def __init__(
        self,
        source: FrameReader,
        *,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 10.0,
        idle_s: float = 0.005,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if retry_initial_s <= 0 or retry_max_s < retry_initial_s:
            raise ConfigError(
                f"grabber retry times must satisfy 0 < initial <= max, got "
                f"{retry_initial_s!r}, {retry_max_s!r}"
            )
        self.source = source
        self.retry_initial_s = float(retry_initial_s)
        self.retry_max_s = float(retry_max_s)
        self.idle_s = float(idle_s)
        self._stop = threading.Event()
        # Interruptible waits so close() never hangs for a whole backoff.
        self._sleep = sleep or (lambda s: self._stop.wait(s))
        self._lock = threading.Lock()
        self._frame: np.ndarray | None = None
        self._taken = True
        #: When the newest frame came (monotonic), or the grabber started.
        self._frame_at = time.monotonic()
        self._thread: threading.Thread | None = None
        self.available = True
        self.exhausted = False
        self.dropped = 0
        self.frames = 0
        self.failures = 0
        self.last_error: str | None = None

    def start(self) -> LatestFrameGrabber:
        """Start the capture thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"frames-{self.source.name}", daemon=True
            )
            self._thread.start()
        return self

    def _run(self) -> None:
        backoff = self.retry_initial_s
        while not self._stop.is_set():
            try:
                frame = self.source.read()
            except MissingDependencyError as exc:
                # A missing camera library does not come back by retrying: say so once, stop.
                self._fail(str(exc))
                logger.error("camera disabled: %s", exc)
                return
            except EmotionEdgeError as exc:
                self._fail(str(exc))
            except Exception as exc:  # a driver may raise anything; the loop must survive it
                self._fail(f"{type(exc).__name__}: {exc}")
            else:
                if frame is None:
                    if self.source.exhausted:
                        self.exhausted = True
                        logger.info("%s ended after %d frames", self.source.name, self.frames)
                        return
                    self._sleep(self.idle_s)
                    continue
                with self._lock:
                    if not self._taken:
                        self.dropped += 1
                    self._frame, self._taken = frame, False
                    self._frame_at = time.monotonic()
                    self.frames += 1
                if not self.available:
                    logger.warning("%s is back after %d failure(s)", self.source.name,
                                   self.failures)
                self.available = True
                backoff = self.retry_initial_s
                continue
            self._sleep(backoff)
            backoff = min(backoff * 2.0, self.retry_max_s)

    def _fail(self, message: str) -> None:
        with self._lock:
            self._frame, self._taken = None, True
        if self.available:
            logger.warning("camera failure, retrying with backoff: %s", message)
        self.available = False
        self.failures += 1
        self.last_error = message
        try:
            self.source.reset()
        except Exception as exc:  # releasing a dead device may fail too; keep retrying
            logger.debug("reset of %s failed: %s", self.source.name, exc)

    @property
    def silent_s(self) -> float:
        """Seconds since the newest frame came (or since the grabber was made)."""
        return time.monotonic() - self._frame_at

    def latest(self) -> np.ndarray | None:
        """The newest frame, or ``None`` when there is none (not started, failing, ended early)
        or it is older than :data:`STALE_S`: a driver stuck inside ``read()`` would otherwise
        have its last frame scored again every cycle, as if the face were still there."""
        with self._lock:
            self._taken = True
            if self.frames and self.silent_s > STALE_S and not self.exhausted:
                return None
            return self._frame

    def wait_for_frame(self, timeout_s: float) -> np.ndarray | None:
        """Block until a frame is available or ``timeout_s`` passes (start-up, tests)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            frame = self.latest()
            if frame is not None or self.exhausted:
                return frame
            time.sleep(0.005)
        return None

    def _close(self) -> None:
        """Stop the thread and close the source."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            # Briefly: a driver stuck in read() never returns, and the service has 5 s to stop
            # (TimeoutStopSec) with the adaptation state still to save after this.
            thread.join(timeout=1.0)
        self.source.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __repr__(self) -> str:
        state = "ended" if self.exhausted else ("ok" if self.available else "failing")
        return (f"<LatestFrameGrabber {self.source.name} {state} frames={self.frames} "
                f"dropped={self.dropped} failures={self.failures}>")


class GrabberFrames(Closeable):
    """Adapter from :class:`LatestFrameGrabber` to the loop's frame provider."""

    def __init__(self, grabber: LatestFrameGrabber) -> None:
        self.grabber = grabber

    @property
    def available(self) -> bool:
        """False while the camera fails, and while it gives no new frame (stuck); a camera
        still starting (no frame yet: a Pi camera takes a second or two) is not lost."""
        g = self.grabber
        return bool(g.available) and (g.exhausted or not g.frames or g.silent_s <= STALE_S)

    @property
    def dropped(self) -> int:
        return int(self.grabber.dropped)

    def latest(self, media_s: float) -> np.ndarray | None:
        if (self.grabber.available and not self.grabber.exhausted
                and self.grabber.silent_s > STUCK_S):
            # Not failing (that is retried with backoff), yet no frame for this long: the
            # driver is stuck inside read(), which nothing here can interrupt.  A restart
            # reopens it (exit 75: the service is started again).
            raise DeviceUnavailableError(
                f"{self.grabber.source.name} gave no frame for {self.grabber.silent_s:.0f} s: its "
                f"driver is stuck; stopping so that the camera is opened afresh")
        return self.grabber.latest()

    def _close(self) -> None:
        self.grabber.close()

    def __repr__(self) -> str:
        return f"<GrabberFrames {self.grabber!r}>"


def open_camera(camera_config: CameraConfig) -> GrabberFrames:
    """The configured camera, read on its own thread, as the loop's frame provider."""
    source = open_frame_source(camera_config)
    grabber = LatestFrameGrabber(source, retry_initial_s=camera_config.retry_initial_s,
                                 retry_max_s=camera_config.retry_max_s)
    grabber.start()
    return GrabberFrames(grabber)
