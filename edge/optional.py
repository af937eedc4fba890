"""Optional libraries, imported when a component first needs them.

``import edge`` needs only NumPy; OpenCV, PyAudio, Picamera2 and gpiozero are imported here, on
first use.  A library that is missing, or present but broken (a wheel built against another
NumPy raises ``ValueError``, not ``ImportError``), becomes one
:class:`~edge.errors.MissingDependencyError` that names the install step.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

__all__ = ["import_optional", "cv2"]

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


def cv2() -> ModuleType:
    """OpenCV (``cv2``)."""
    return import_optional("cv2", _CV2_HINT)
