"""Optional libraries, imported when a component first needs them.

``import edge`` needs only NumPy; OpenCV, PyAudio, Picamera2 and gpiozero are imported here, on
first use.  A library that is missing, or present but broken (a wheel built against another
NumPy raises ``ValueError``, not ``ImportError``), becomes one
:class:`~edge.errors.MissingDependencyError` that names the install step.

They are also noisy: PortAudio lists every ALSA/JACK device it probes, LiteRT announces its
XNNPACK delegate, OpenCV warns about absent cameras, all straight to file descriptor 2.
:func:`quiet_native_output` hides that unless the user asked for ``-v``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType

from .errors import MissingDependencyError

__all__ = ["import_optional", "cv2", "quiet_native_output", "native_path"]

_CV2_HINT = "pip install 'emotion-edge[device]' (opencv-python-headless>=4.8,<5)"


def import_optional(module: str, hint: str) -> ModuleType:
    """Import ``module``; any failure raises :class:`MissingDependencyError` with ``hint``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"{module} is not installed ({exc}); {hint}") from None
    except Exception as exc:  # e.g. a NumPy ABI mismatch: "numpy.dtype size changed"
        raise MissingDependencyError(
            f"{module} is installed but cannot be imported ({type(exc).__name__}: {exc}); {hint}"
        ) from None


#: Largest image OpenCV may decode (grey: one byte a pixel).  Its own default is 2^30: a 1 GB
#: frame, which a small PNG can declare, would exhaust a Pi.  Set before OpenCV first decodes.
MAX_IMAGE_PIXELS = 100_000_000


#: FFmpeg's log level for OpenCV's video reader without ``-v``: AV_LOG_QUIET.  Its decoder
#: threads report a damaged frame ("[mpeg4 @ ...] ac-tex damaged") on fd 2 after ``read()`` has
#: returned, outside any :func:`quiet_native_output` block, so only the level silences them.
#: Read once, when OpenCV first opens a video.
FFMPEG_QUIET = "-8"


def cv2() -> ModuleType:
    """OpenCV (``cv2``), its own warnings (e.g. V4L2 probing) and FFmpeg's shown only with
    ``-v``."""
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))
    if not _verbose():
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", FFMPEG_QUIET)
    module = import_optional("cv2", _CV2_HINT)
    if not _verbose():
        with contextlib.suppress(AttributeError):  # cv2.utils.logging: OpenCV >= 4.5
            module.utils.logging.setLogLevel(module.utils.logging.LOG_LEVEL_ERROR)
    return module


def _verbose() -> bool:
    return logging.getLogger().isEnabledFor(logging.INFO)


# fd 2 and the warnings filters are process-wide: one lock, and only the outermost of nested or
# concurrent blocks redirects and restores (else a second thread would save /dev/null as "the"
# stderr and restore it last, silencing the process for good).
_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved = -1
#: What :func:`quiet_native_output` keeps of a library's text: its first lines are its news.
MAX_HEARD_BYTES = 4096


def _text_sink() -> int:
    """A file descriptor to collect a library's text: in memory where the system allows."""
    if hasattr(os, "memfd_create"):  # Linux
        return os.memfd_create("stderr")
    with tempfile.TemporaryFile() as f:  # elsewhere: a file already unlinked
        return os.dup(f.fileno())


@contextlib.contextmanager
def native_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """``path`` as a native library (FFmpeg, OpenCV, libsndfile, TFLite) must be handed it while
    it opens the file.

    Absolute, since each reads some names as something else: FFmpeg (PyAV, and OpenCV's video
    backend) a name with a colon as a protocol ("10:30.m4a": "Protocol not found"), libsndfile
    "-" as standard input.  A name that is not UTF-8 (a Latin-1 "caf\\xe9.mp4" from a Windows
    USB stick) crashes OpenCV's binding and is refused by TFLite's; it is handed over as
    ``/proc/self/fd/N`` of the file opened here, which the library opens again for itself.
    """
    text = os.path.abspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        if os.path.isdir("/proc/self/fd"):
            fd = os.open(text, os.O_RDONLY)
            try:
                yield f"/proc/self/fd/{fd}"
            finally:
                os.close(fd)
            return
    yield text


@contextlib.contextmanager
def quiet_native_output(what: str = "native library",
                        heard: list[str] | None = None) -> Iterator[None]:
    """Discard what C code writes to stderr (fd 2) inside the block, and turn Python warnings
    raised there into INFO log lines, unless logging is at INFO or below (``-v``).

    ``heard``, when given, receives the text C code wrote (the outermost block's only: a nested
    or concurrent one's goes to the outermost), for a caller that reads a library's warnings
    (libjpeg's "Corrupt JPEG data").  Keep the block short: while any thread is inside one,
    what other threads write to stderr is discarded too.
    """
    global _quiet_depth, _quiet_saved
    if _verbose():
        yield
        return
    sink = None
    with _quiet_lock:
        if _quiet_depth == 0:
            sys.stderr.flush()
            _quiet_saved = os.dup(2)
            sink = _text_sink() if heard is not None else os.open(os.devnull, os.O_WRONLY)
            os.dup2(sink, 2)
        _quiet_depth += 1
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                os.dup2(_quiet_saved, 2)
                os.close(_quiet_saved)
                _quiet_saved = -1
        if sink is not None:
            if heard is not None:
                heard.append(os.pread(sink, MAX_HEARD_BYTES, 0).decode(errors="replace"))
            os.close(sink)
    for w in caught:
        logging.getLogger(__name__).info("%s: %s", what, w.message)
