"""Photos as phones keep them: HEIC through pi-heif (the ``formats`` extra), AVIF through Pillow,
each turned upright; one clear line, not a traceback, where the reader is missing or the file is
damaged."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge import optional
from edge.cli import main
from edge.errors import ImageFileError
from edge.sources.images import _is_heif, read_gray_image

REPO = Path(__file__).resolve().parent.parent
JPEG = REPO / "demo" / "face.jpg"
HEIC = REPO / "demo" / "phone" / "face.heic"

pytest.importorskip("pi_heif")


def _close(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two grey pictures of the same shape."""
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def test_heic_is_read_upright_and_matches_its_jpeg():
    jpeg, heic = read_gray_image(JPEG), read_gray_image(HEIC)
    # The file stores the pixels on their side (320 high, 240 wide) with an irot box: read as
    # stored, the shapes would differ and the correlation would be meaningless.
    assert heic.shape == jpeg.shape == (240, 320) and heic.dtype == np.uint8
    assert _close(heic, jpeg) > 0.98
    assert np.abs(heic.astype(int) - jpeg.astype(int)).mean() < 4


def test_classify_face_reads_a_heic_photo_as_its_jpeg(capsys):
    code = main(["classify-face", "--json", str(JPEG), str(HEIC)])
    jpeg, heic = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert code == 0 and heic["path"] == str(HEIC)
    assert [f["label"] for f in heic["faces"]] == [f["label"] for f in jpeg["faces"]] == ["happy"]
    assert np.abs(np.subtract(heic["faces"][0]["box"], jpeg["faces"][0]["box"])).max() <= 3


def test_a_damaged_heic_is_one_line_and_the_others_are_still_read(tmp_path, capsys):
    cut = tmp_path / "cut.heic"
    cut.write_bytes(HEIC.read_bytes()[: HEIC.stat().st_size // 2])
    with pytest.raises(ImageFileError, match=r"cut\.heic: not a readable HEIC/AVIF image"):
        read_gray_image(cut)
    code = main(["classify-face", "--json", str(cut), str(HEIC)])
    captured = capsys.readouterr()
    assert code == 1
    assert [json.loads(line)["path"] for line in captured.out.splitlines()] == [str(HEIC)]
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "cut.heic" in err[0] and "Traceback" not in captured.err


def test_without_pi_heif_the_error_names_the_install_step():
    # In a fresh interpreter: once registered, pi-heif's opener stays in Pillow for the process.
    code = ("import sys; sys.modules['pi_heif'] = None\n"
            "from edge.sources.images import read_gray_image\n"
            f"read_gray_image({str(HEIC)!r})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0
    assert "ImageFileError: " in done.stderr
    assert re.search(r"face\.heic: a HEIC photo; .*emotion-edge\[formats\]",
                     done.stderr.splitlines()[-1])


def test_without_pillow_a_heic_still_names_the_install_step(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImageFileError, match=r"face\.heic: a HEIC/AVIF photo; .*\[formats\]"):
        read_gray_image(HEIC)


def test_a_heic_larger_than_the_pixel_limit_is_refused_before_decoding(monkeypatch):
    monkeypatch.setattr(optional, "MAX_IMAGE_PIXELS", 320 * 240 - 1)
    with pytest.raises(ImageFileError, match=r"face\.heic: declares more than .* megapixels"):
        read_gray_image(HEIC)


def test_an_avif_photo_on_its_side_is_turned_upright(tmp_path):
    from PIL import Image, features

    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF codec")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view", as a phone held upright writes
    sideways = tmp_path / "sideways.avif"
    with Image.open(JPEG) as picture:
        picture.rotate(90, expand=True).save(sideways, exif=exif.tobytes(), quality=80)
    gray, jpeg = read_gray_image(sideways), read_gray_image(JPEG)
    assert gray.shape == jpeg.shape and _close(gray, jpeg) > 0.97


@pytest.mark.parametrize("head, expected", [
    (b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00mif1heicmiaf", True),     # an iPhone photo
    (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1heicmiaf", True),     # major brand mif1
    (b"\x00\x00\x00\x20ftypavif\x00\x00\x00\x00avifmif1miafMA1B", True),  # AVIF
    (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", False),        # an MP4 video
    (b"\x00\x00\x00\x18ftypM4A \x00\x00\x02\x00M4A mp42", False),        # a voice memo
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01", False),    # a JPEG
    (b"\x00\x00\x00\x1cftyphe", False),                                   # cut short
])
def test_heif_brands_are_told_from_videos_and_other_images(head, expected):
    assert _is_heif(head) is expected


@given(st.binary(max_size=80))
def test_any_file_head_is_answered_without_an_exception(head):
    assert _is_heif(head) in (True, False)


def test_a_damaged_jpeg_is_said_to_be_damaged_not_silently_faceless(tmp_path, caplog):
    """libjpeg decodes a JPEG with damaged data to the end (grey or smeared stripes) and says so
    on stderr, which is kept quiet: the photo then came out as "no face", a normal answer."""
    import logging

    cv2 = optional.cv2()
    picture = (np.indices((240, 320)).sum(axis=0) % 256).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", picture)
    good = tmp_path / "good.jpg"
    good.write_bytes(encoded.tobytes())
    data = bytearray(encoded.tobytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)  # a stretch of the scan zeroed
    damaged = tmp_path / "damaged.jpg"
    damaged.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="edge.sources.images"):
        assert read_gray_image(good).shape == (240, 320) and not caplog.records
        assert read_gray_image(damaged).shape == (240, 320)
    (told,) = [r.getMessage() for r in caplog.records]
    assert told.startswith(f"{damaged}: damaged image (Corrupt JPEG data"), told


@pytest.mark.parametrize("suffix", [".gif", ".tiff", ".webp", ".png"])
def test_an_animation_or_a_many_page_file_says_only_its_first_frame_is_read(tmp_path, caplog,
                                                                            suffix):
    """Only the first frame of an animated GIF or of a TIFF's pages was read, without a word:
    a "no face" of a black first frame read as an answer about the whole file."""
    import logging

    Image = pytest.importorskip("PIL.Image")
    from edge.sources.images import read_gray_image

    frames = [Image.fromarray(np.full((64, 64), v, np.uint8)) for v in (0, 128, 255)]
    many, one = tmp_path / f"many{suffix}", tmp_path / f"one{suffix}"
    frames[0].save(many, save_all=True, append_images=frames[1:])
    frames[0].save(one)
    with caplog.at_level(logging.WARNING, logger="edge.sources.images"):
        assert read_gray_image(one).max() == 0 and not caplog.records
        assert read_gray_image(many).max() == 0
    (told,) = [r.getMessage() for r in caplog.records]
    assert told.startswith(f"{many}: only the first of its 3 frames or pages is read"), told
