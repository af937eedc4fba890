"""What a media file is, by its name: the recording and picture readers each name the other
command when given the other kind (a photo to ``classify``, a recording to ``classify-face``)."""

from __future__ import annotations

import itertools
import os
import shlex
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

__all__ = ["AUDIO_EXTENSIONS", "FFMPEG_AUDIO_EXTENSIONS", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES",
           "files_in"]

#: File types ``load_audio`` reads (with soundfile; WAV also without it).  A folder of a corpus
#: is searched for these.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif")
#: What phones and other recorders save and libsndfile does not read; with PyAV (FFmpeg)
#: installed, ``load_audio`` reads these, and any other file FFmpeg knows, through it.
FFMPEG_AUDIO_EXTENSIONS = (".m4a", ".aac", ".mp4", ".3gp", ".amr", ".wma", ".webm", ".opus",
                           ".mka", ".mov", ".mkv")
#: Still pictures.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".heic",
                  ".heif", ".avif", ".pgm", ".ppm")
#: Videos ``classify-face`` samples frames from (OpenCV's FFmpeg reads them): phones' MP4, MOV
#: and 3GP, camcorders' AVCHD (.mts, .m2ts) and broadcast .ts, the web's WebM and FLV.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".3gp",
                  ".mts", ".m2ts", ".ts", ".wmv", ".flv")


#: Entries of a folder looked at to say what it holds (a corpus folder may hold 100,000).
_LOOKED_AT = 1000


def files_in(folder: Path, suffixes: Sequence[str]) -> str:
    """How to name the files of ``folder`` that a command given the folder reads: a glob of
    the most common of ``suffixes`` among its first entries (``audio/*.flac``), so the hint
    names what is there rather than always ``*.wav``."""
    try:
        with os.scandir(folder) as entries:
            # As written (a camera's .JPG): a shell's glob is case-sensitive.
            found = Counter(os.path.splitext(e.name)[1]
                            for e in itertools.islice(entries, _LOOKED_AT))
    except OSError:
        found = Counter()
    common = [s for s, _ in found.most_common() if s.lower() in suffixes]
    return shlex.quote(str(folder)) + f"/*{common[0] if common else suffixes[0]}"
