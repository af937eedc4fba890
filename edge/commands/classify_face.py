"""``emotion-edge classify-face``: facial expression in images and videos.

Contract (other tools parse it; keep it stable): with ``--json`` one object per line per image,
``{"path": ..., "faces": [{"box": [x, y, w, h], "label": ..., "scores": {label: p, ...}}]}``;
for a video one object per sampled frame with an extra ``"frame"`` index and ``"time_s"``, the
frame's own time (frames are sampled by time, ``--video-fps`` a second).  ``faces`` is empty when
no face is found (a normal outcome).  ``--whole-image`` treats each image as an already cropped
face.  A file that cannot be read gives a one-line error on stderr naming it, the other files are
still processed, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
from pathlib import Path
from typing import Any

from ..models.runtime import RUNTIMES
from ..sources.kinds import VIDEO_SUFFIXES
from . import named, one_line, positive_float, shown, thread_count

__all__ = ["register", "run", "VIDEO_SUFFIXES"]



def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "classify-face",
        help="classify facial expressions in images or videos",
        description="Detect faces (largest per frame) and classify their expression.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image or video files")
    p.add_argument("--json", action="store_true", help="one JSON object per image / sampled frame")
    p.add_argument("--whole-image", action="store_true",
                   help="each image is already a cropped face (box = whole image)")
    p.add_argument("--all-faces", action="store_true",
                   help="report every detected face, not only the largest")
    from ..config import DETECTORS

    p.add_argument("--detector", choices=DETECTORS, default="auto",
                   help="face detector (default auto: the shipped BlazeFace, else OpenCV's Haar "
                   "cascade)")
    p.add_argument("--model", type=Path, default=None,
                   help="face .tflite with its .json manifest beside it (default: shipped model)")
    p.add_argument("--video-fps", type=positive_float, default=2.0, metavar="FPS",
                   help="frames per second sampled from videos (default 2)")
    p.add_argument("--runtime", choices=tuple(RUNTIMES), default=None,
                   help="TFLite interpreter (default: first installed)")
    p.add_argument("--threads", type=thread_count, default=1, help="interpreter threads (default 1)")
    p.add_argument("--no-mirror", dest="mirror", action="store_false",
                   help="one invoke per face, never averaged with its mirror image (by default "
                   "a face the model is unsure of is)")
    p.set_defaults(func=run)


def _emit(args: argparse.Namespace, path: Path, faces: list[Any], frame: int | None,
          time_s: float = 0.0) -> None:
    if args.json:
        obj: dict[str, Any] = {"path": named(path)}
        if frame is not None:
            obj["frame"] = frame
            obj["time_s"] = round(time_s, 3)
        obj["faces"] = [f.to_dict() for f in faces]
        _print(json.dumps(obj))
        return
    where = shown(path) if frame is None else f"{shown(path)} [frame {frame}, {time_s:.2f} s]"
    if not faces:
        _print(f"{where}: no face")
        return
    parts = [
        f"{f.label} ({f.scores[f.label]:.2f}) at {','.join(str(v) for v in f.box)}" for f in faces
    ]
    _print(f"{where}: {'; '.join(parts)}")


#: Finer levels a photo is looked at in (BlazeFace's ``scan_levels``): faces down to about 3%
#: of its longest side, as in a group photo.  Not for a video's frames: a minute of video
#: would take a minute more.
SCAN_LEVELS = 2


class _OutputFailed(Exception):
    """Printing a result failed (a closed pipe, a full disk): the command's problem, which
    :func:`edge.cli.main` tells, not the file's."""


def _print(line: str) -> None:
    try:
        print(line, flush=True)
    except OSError as exc:
        raise _OutputFailed from exc


def _classify(clf: Any, gray: Any, whole: bool, detector: Any = None) -> list[Any]:
    return [clf.classify_crop(gray)] if whole else clf.classify_frame(gray, detector)


def run(args: argparse.Namespace) -> int:
    from ..errors import ImageFileError
    from ..interfaces import FaceDetector
    from ..models.face import FACE_MODEL_FILE, FaceClassifier
    from ..paths import default_model
    from ..sources.images import read_gray_image
    from ..sources.replay import VideoFileSource
    from ..vision.blazeface import BlazeFaceDetector
    from ..vision.detectors import open_face_detector

    model = args.model or default_model(FACE_MODEL_FILE)
    failures = 0
    with contextlib.ExitStack() as stack:
        detector: FaceDetector | None = None
        photos: FaceDetector | None = None
        if not args.whole_image:
            opened = functools.partial(
                open_face_detector, args.detector, largest_only=not args.all_faces,
                num_threads=args.threads, runtime=args.runtime)
            detector = stack.enter_context(contextlib.closing(opened()))
            # The photo scan is BlazeFace's: a fallback to Haar (told once, by the first) has
            # none, and photos go through the one detector.
            if isinstance(detector, BlazeFaceDetector):
                photos = stack.enter_context(contextlib.closing(
                    opened(scan_levels=SCAN_LEVELS)))
        clf = stack.enter_context(FaceClassifier(
            model, detector=detector, num_threads=args.threads, runtime=args.runtime,
            mirror=args.mirror))
        for path in args.paths:
            try:
                if path.suffix.lower() in VIDEO_SUFFIXES:
                    with VideoFileSource(path) as video:
                        # By the frames' own times: a phone's variable frame rate would make
                        # every n-th frame sample its slow and fast stretches unevenly.
                        period, due, index = 1.0 / args.video_fps, 0.0, 0
                        while (gray := video.read()) is not None:
                            if video.time_s >= due - 1e-6:
                                _emit(args, path, _classify(clf, gray, args.whole_image), index,
                                      video.time_s)
                                due = (int(video.time_s / period + 1e-6) + 1) * period
                            index += 1
                else:
                    gray = read_gray_image(path)
                    _emit(args, path, _classify(clf, gray, args.whole_image, photos), None)
            except _OutputFailed as exc:
                raise exc.__cause__ from None  # type: ignore[misc]
            except (ImageFileError, OSError, MemoryError) as exc:
                # Errors found past reading (a face too small to crop) may not name the file.
                # One file's problem, whatever it is, is told in one line; the others go on.
                if isinstance(exc, MemoryError):
                    message = "not enough memory to read it; scale it down"
                elif isinstance(exc, ImageFileError):
                    message = str(exc)
                else:
                    message = f"cannot be read ({exc.strerror or exc})"
                where = "" if str(path) in message else f"{path}: "
                print(f"emotion-edge: error: {one_line(where + message)}", file=sys.stderr, flush=True)
                failures += 1
    return 1 if failures else 0
