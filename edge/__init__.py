"""emotion-edge: speech + face emotion recognition on a Raspberry Pi.

``import edge`` needs only NumPy: the interpreter, OpenCV, PyAudio, picamera2 and gpiozero are
imported lazily by the components that use them.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (
    AudioFileError,
    ConfigError,
    DeviceUnavailableError,
    EmotionEdgeError,
    ImageFileError,
    ManifestMismatchError,
    MissingDependencyError,
    ModelError,
)

__all__ = [
    "__version__",
    "AudioFileError",
    "ConfigError",
    "DeviceUnavailableError",
    "EmotionEdgeError",
    "ImageFileError",
    "ManifestMismatchError",
    "MissingDependencyError",
    "ModelError",
]
