"""Features computed by the same code in training (``convert``) and on the device.

* :mod:`edge.features.mfcc` - MFCC frames of audio, batch and streaming.
* :mod:`edge.features.face` - a face box in a grey frame -> the face network's input.
"""

from __future__ import annotations

from .mfcc import Mfcc, MfccConfig, StreamingMfcc, frame_dbfs, mel_filterbank, normalize_window

__all__ = [
    "MfccConfig",
    "Mfcc",
    "StreamingMfcc",
    "mel_filterbank",
    "normalize_window",
    "frame_dbfs",
]
