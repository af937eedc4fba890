"""Still images and frames as 2-D uint8 grey arrays: the one format every frame source delivers."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import numpy as np

from .. import optional
from ..errors import ImageFileError
from .kinds import (
    AUDIO_EXTENSIONS,
    FFMPEG_AUDIO_EXTENSIONS,
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    files_in,
)

__all__ = ["to_gray", "read_gray_image"]

logger = logging.getLogger(__name__)

#: ISO base media "ftyp" brands of still pictures: HEIF/HEIC, which iPhones and many Android
#: phones save their photos as, and AVIF.  OpenCV's wheels do not read HEIC; Pillow reads AVIF
#: and, with pi-heif (the ``formats`` extra), HEIC.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1",
                          b"msf1", b"avif", b"avis"})
#: Largest file read as a photo: the whole file is read before it is decoded (a 108-megapixel
#: phone photo is 20-60 MB as JPEG; the decoding limit is 100 megapixels anyway).
MAX_IMAGE_BYTES = 256_000_000

_HEIF_HINT = "pip install 'emotion-edge[formats]' (pi-heif), or save the photo as JPEG"


def to_gray(image: np.ndarray) -> np.ndarray:
    """Return a 2-D uint8 grey image from grey, BGR or BGRX (OpenCV / Picamera2 order) input."""
    image = np.asarray(image)
    if image.ndim == 2:
        gray = image
    elif image.ndim == 3 and image.shape[2] == 1:
        gray = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        cv2 = optional.cv2()
        code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        gray = cv2.cvtColor(image, code)
    else:
        raise ImageFileError(f"image of shape {image.shape} is neither grey nor BGR/BGRX")
    if gray.dtype != np.uint8:
        raise ImageFileError(f"image dtype {gray.dtype} is not uint8")
    return np.ascontiguousarray(gray)



def read_gray_image(path: str | Path) -> np.ndarray:
    """Read an image file as a 2-D uint8 grey array; raise :class:`ImageFileError` naming it."""
    path = Path(path)
    if path.is_dir():
        raise ImageFileError(f"{path}: is a folder, not an image; give the files in it "
                             f"(e.g. {files_in(path, (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES))})")
    if not path.is_file():
        raise ImageFileError(f"{path}: not a regular file" if path.exists() else
                             f"{path}: no such image file")
    cv2 = optional.cv2()
    size = path.stat().st_size
    if size > MAX_IMAGE_BYTES:  # read whole before decoding: a video or disk image named .jpg
        raise ImageFileError(
            f"{path}: {size / 1e6:.0f} MB is more than a photo ({MAX_IMAGE_BYTES // 1_000_000} "
            f"MB at most); a video needs a video suffix ({', '.join(VIDEO_SUFFIXES)})")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:  # permission denied, an I/O error of a failing SD card
        raise ImageFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    heif = _is_heif(data[:64].tobytes())
    if heif:
        # Through Pillow even where OpenCV decodes it (AVIF in OpenCV 4.14): OpenCV leaves
        # the photo as the sensor stored it, a portrait shot lying on its side.
        gray = _read_heif(path)
        if gray is not None:
            return gray
    heard: list[str] = []
    try:
        with optional.quiet_native_output("OpenCV", heard):  # "libpng warning: ..." on fd 2
            image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    except cv2.error as exc:  # e.g. a header declaring more pixels than the limit
        if "MAX_IMAGE_PIXELS" in str(exc):
            raise _too_large(path) from None
        raise ImageFileError(f"{path}: not a readable image (OpenCV: {_reason(exc)})") from None
    if image is None and heif:  # no Pillow
        raise ImageFileError(f"{path}: a HEIC/AVIF photo; reading it needs {_HEIF_HINT}")
    if image is None:
        sound = path.suffix.lower() in (*AUDIO_EXTENSIONS, *FFMPEG_AUDIO_EXTENSIONS, ".mp3")
        raise ImageFileError(
            f"{path}: not a readable image ("
            + ("a recording? `emotion-edge classify` reads those)" if sound else
               "empty, truncated or unknown format)"))
    if data[:12].tobytes().startswith(_MANY_FRAMES_MAGIC) or data[8:12].tobytes() == b"WEBP":
        with contextlib.suppress(cv2.error), optional.native_path(path) as name:
            frames = cv2.imcount(name)
            if frames > 1:
                # The first frame alone: a "no face" of it would read as an answer about all.
                logger.warning("%s: only the first of its %d frames or pages is read; save the "
                               "one to classify as an image of its own, or an animation as a "
                               "video", path, frames)
    damage = next((line.strip() for line in "".join(heard).splitlines()
                   if line.startswith(_DAMAGE_NOTES)), None)
    if damage is not None:
        # libjpeg decodes a damaged JPEG to the end, the damaged rows as grey or smeared
        # stripes: a "no face" there would read as an answer about the photo.
        logger.warning("%s: damaged image (%s); the result is of what could be decoded", path,
                       damage.rstrip("."))
    return np.asarray(image, dtype=np.uint8)


#: Formats that may hold several frames or pages (GIF, TIFF, PNG's APNG; WebP is told apart by
#: its RIFF form type): OpenCV decodes the first.
_MANY_FRAMES_MAGIC = (b"GIF8", b"II*\x00", b"MM\x00*", b"\x89PNG")

#: What libjpeg and libpng say of a damaged file that they decode all the same.
_DAMAGE_NOTES = ("Corrupt JPEG data", "Premature end of JPEG file", "libpng error")


def _is_heif(head: bytes) -> bool:
    """Whether a file starts with an ISO base media ``ftyp`` box naming a still-picture brand
    (major or compatible)."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return False
    end = min(int.from_bytes(head[:4], "big"), len(head))
    brands = {head[8:12]} | {head[i:i + 4] for i in range(16, end - 3, 4)}
    return not brands.isdisjoint(_HEIF_BRANDS)


def _read_heif(path: Path) -> np.ndarray | None:
    """A HEIC/HEIF or AVIF photo through Pillow, upright, as grey, bounded like OpenCV's;
    ``None`` without Pillow."""
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError:
        return None
    try:
        import pi_heif
    except Exception:  # absent or broken: Pillow alone still reads AVIF
        pi_heif = None
    else:
        pi_heif.register_heif_opener()
    try:
        with warnings.catch_warnings(), Image.open(path) as picture:
            # Our own limit is checked below; Pillow's DecompressionBombWarning is not wanted.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            width, height = picture.size
            if width * height > optional.MAX_IMAGE_PIXELS:
                raise _too_large(path)
            # libheif applies a HEIC's rotation itself and resets its EXIF orientation to 1;
            # Pillow's AVIF reader leaves the rotation in the EXIF orientation.
            upright = ImageOps.exif_transpose(picture)
            gray = upright.convert("L")
    except ImageFileError:
        raise
    except Image.DecompressionBombError:
        raise _too_large(path) from None
    except UnidentifiedImageError:
        if pi_heif is None:
            raise ImageFileError(f"{path}: a HEIC photo; reading it needs {_HEIF_HINT}") from None
        raise ImageFileError(f"{path}: not a readable HEIC/AVIF image") from None
    except (OSError, EOFError, ValueError, SyntaxError, RuntimeError) as exc:  # damaged, cut
        raise ImageFileError(f"{path}: not a readable HEIC/AVIF image ({_reason(exc)})") from None
    return np.asarray(gray, dtype=np.uint8)


def _too_large(path: Path) -> ImageFileError:
    """The one error for a picture past :data:`edge.optional.MAX_IMAGE_PIXELS`, whichever
    decoder found it."""
    return ImageFileError(f"{path}: declares more than "
                          f"{optional.MAX_IMAGE_PIXELS // 1_000_000} megapixels; scale it down")


def _reason(exc: BaseException) -> str:
    """A decoder's message on one line, its last 160 characters (where the cause is)."""
    return " ".join(str(exc).split())[-160:]
