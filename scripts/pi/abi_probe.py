"""Does a Debian-built NumPy extension still import with the NumPy that pip put in the venv?

picamera2 imports Raspberry Pi OS's python3-simplejpeg, a C extension built against the
distribution's NumPy (1.24, C ABI 9 on Bookworm).  simplejpeg is not in Debian; Debian's
python3-pywt is the same kind of module (built by Debian against NumPy 1.24) and stands in for it.
Prints one JSON object.  With NUMPY_DIR, that folder (an unpacked NumPy wheel) comes first on
sys.path: the control case, which must fail the way a NumPy 2 in the venv would.

Usage: python abi_probe.py [NUMPY_DIR]
"""

from __future__ import annotations

import json
import sys


def probe() -> dict[str, object]:
    r: dict[str, object] = {}
    try:
        import numpy

        r["numpy"] = numpy.__version__
        r["numpy_file"] = numpy.__file__
    except Exception as exc:  # the report names whatever went wrong
        r["numpy"] = f"error: {type(exc).__name__}: {exc}"
        return r
    try:
        import pywt

        coeffs = pywt.dwt(numpy.array([1.0, 2.0, 3.0, 4.0]), "db1")
        r["debian_extension"] = f"pywt {pywt.__version__} from {pywt.__file__}: dwt ok"
        r["debian_extension_ok"] = bool(numpy.allclose(coeffs[0], [2.12132034, 4.94974747]))
    except Exception as exc:
        r["debian_extension"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        r["debian_extension_ok"] = False
    try:
        import pyaudio

        r["pyaudio"] = f"{pyaudio.__version__} from {pyaudio.__file__}"
    except Exception as exc:
        r["pyaudio"] = f"error: {type(exc).__name__}: {exc}"
    return r


if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]):
        sys.exit(print(__doc__))
    if len(sys.argv) > 1:
        sys.path.insert(0, sys.argv[1])
    print(json.dumps(probe()))
