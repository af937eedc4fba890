"""One exception hierarchy for emotion-edge.

Every error raised on purpose by the package derives from :class:`EmotionEdgeError` and also from
the builtin it most resembles, so callers can catch either (the gpiozero ``exc.py`` pattern).
Messages name the offending file, field or value and say how to fix it.
"""

from __future__ import annotations

__all__ = [
    "EmotionEdgeError",
    "AudioFileError",
    "ImageFileError",
    "ModelError",
    "ManifestMismatchError",
    "ConfigError",
    "DeviceUnavailableError",
    "MissingDependencyError",
]


class EmotionEdgeError(Exception):
    """Root of every error emotion-edge raises on purpose."""


class AudioFileError(EmotionEdgeError, ValueError):
    """An audio file is missing, empty, truncated, corrupt or in an unsupported format."""


class ImageFileError(EmotionEdgeError, ValueError):
    """An image or video file cannot be read."""


class ModelError(EmotionEdgeError, RuntimeError):
    """A model file or its manifest is missing, corrupt or unusable."""


class ManifestMismatchError(ModelError, ValueError):
    """A model's manifest disagrees with the configuration the device runs with."""


class ConfigError(EmotionEdgeError, ValueError):
    """A configuration key is unknown or a value is out of range."""


class DeviceUnavailableError(EmotionEdgeError, OSError):
    """A microphone, camera or GPIO device cannot be opened."""


class MissingDependencyError(EmotionEdgeError, ImportError):
    """An optional dependency is not installed; the message names the install step."""
