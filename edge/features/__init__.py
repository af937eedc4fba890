"""Features computed by the same code in training (``convert``) and on the device.

* :mod:`edge.features.mfcc` - MFCC frames of audio, batch and streaming.
* :mod:`edge.features.prosody` - pitch, voicing and voice-quality frames aligned with them
  (``MfccConfig(prosody=True)`` appends them to the MFCC frames).
* :mod:`edge.features.face` - a face box in a grey frame -> the face network's input.
"""

from __future__ import annotations

from .mfcc import (
    Mfcc,
    MfccConfig,
    StreamingMfcc,
    frame_dbfs,
    mel_filterbank,
    normalize_level,
    normalize_window,
    pool_window,
    window_input,
)
from .prosody import PROSODY_COLUMNS, StreamingProsody, prosody_frames

__all__ = [
    "MfccConfig",
    "Mfcc",
    "StreamingMfcc",
    "mel_filterbank",
    "normalize_window",
    "normalize_level",
    "pool_window",
    "window_input",
    "frame_dbfs",
    "PROSODY_COLUMNS",
    "prosody_frames",
    "StreamingProsody",
]
