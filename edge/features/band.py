"""Narrowband or wideband: does a recording hold anything above a telephone's voice band?

Why: a call carries 300-3400 Hz only (G.711 samples at 8 kHz), and a model whose mel filters
reach 7.6 kHz hears the empty band above as a different world: through a telephone the shipped
speech model loses 11 points of leave-one-corpus-out UAR.  A model trained on the voice band
alone gains them back there and loses 3 points on wideband speech (models/README.md,
"Narrowband recordings"), so ``emotion-edge classify`` picks the model each recording fills.

Two tests, the cheap one first:

- the file's sample rate: at 8 kHz nothing above 4 kHz can exist;
- its long-term spectrum: a call saved at 16 kHz or more (upsampled by a phone app, a call
  recorder or a corpus) keeps only the resampler's residue above 4 kHz.  The mean power in
  4.3-7 kHz over the mean power in the voice band has its corpus medians at -15 to -24 dB as
  recorded (1st percentiles -26 to -44) and at -57 to -62 dB through a call (99th percentiles
  -43 to -52), over every clip of the five corpora (``scripts/speech_band_screen.py``; 4.5% of
  ASED's home recordings fall below the threshold as recorded, likely microphones that carry
  little above 4 kHz).  :data:`NARROWBAND_DB` sits between.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np

from ..sources.audio_file import AudioFileStream

__all__ = ["Band", "BandMeter", "NARROWBAND_DB", "band_of", "recording_band"]

logger = logging.getLogger(__name__)

Band = Literal["wide", "narrow"]

#: The band a call carries, and the band above it that wideband speech fills, Hz.
VOICE_BAND_HZ = (300.0, 3400.0)
UPPER_BAND_HZ = (4300.0, 7000.0)
#: Upper band's mean power over the voice band's, dB, below which a recording is narrowband.
NARROWBAND_DB = -38.0
#: The meter's rate: the upper band needs 14 kHz; every file is resampled to this first.
METER_RATE = 16000
#: The spectrum is measured over a recording's first minute: a call does not change its band,
#: and a long recording is not decoded twice.
MAX_SECONDS = 60.0


class BandMeter:
    """The long-term power spectrum of a signal at :data:`METER_RATE`, fed a block at a time.

    Memory stays bounded: one spectrum sum and less than a frame of samples.  Loud frames
    dominate the sums, so pauses hardly count.
    """

    def __init__(self, frame: int = 512) -> None:
        self.frame = int(frame)
        self._window = np.hanning(self.frame)
        freqs = np.fft.rfftfreq(self.frame, 1.0 / METER_RATE)
        self._voice = (freqs >= VOICE_BAND_HZ[0]) & (freqs < VOICE_BAND_HZ[1])
        self._upper = (freqs >= UPPER_BAND_HZ[0]) & (freqs < UPPER_BAND_HZ[1])
        self._power = np.zeros(freqs.size)
        self._tail = np.zeros(0, np.float64)
        self.samples = 0

    def feed(self, block: np.ndarray) -> None:
        """Add mono samples at :data:`METER_RATE` (frames overlap by half, across blocks too)."""
        samples = np.asarray(block, np.float64).ravel()
        self.samples += samples.size
        x = np.concatenate((self._tail, samples))
        hop = self.frame // 2
        n = 0 if x.size < self.frame else 1 + (x.size - self.frame) // hop
        if n:
            frames = np.lib.stride_tricks.sliding_window_view(x, self.frame)[::hop][:n]
            self._power += (np.abs(np.fft.rfft(frames * self._window, axis=1)) ** 2).sum(axis=0)
        self._tail = x[n * hop:]

    @property
    def upper_db(self) -> float | None:
        """Mean power in the upper band over the voice band's, dB; ``None`` while the voice
        band is silent (nothing to judge by)."""
        voice = float(self._power[self._voice].mean())
        if voice <= 0.0:
            return None
        upper = float(self._power[self._upper].mean())
        return 10.0 * float(np.log10(max(upper / voice, 1e-30)))

    @property
    def band(self) -> Band:
        """``narrow`` when the upper band is empty; ``wide`` otherwise or when silent."""
        return band_of(self.upper_db)


def band_of(upper_db: float | None) -> Band:
    """The band an upper-band level (:attr:`BandMeter.upper_db`) stands for."""
    return "narrow" if upper_db is not None and upper_db < NARROWBAND_DB else "wide"


def recording_band(path: str | Path, top_hz: float) -> Band:
    """``narrow`` when the file cannot reach ``top_hz`` (its sample rate is too low) or its
    first minute holds nothing above the voice band; raises AudioFileError naming the file."""
    with AudioFileStream(path, METER_RATE) as stream:
        if stream.file_rate / 2 < top_hz:
            return "narrow"
        meter = BandMeter()
        limit = int(MAX_SECONDS * METER_RATE)
        while meter.samples < limit and (block := stream.read(1 << 14)).size:
            meter.feed(block[: limit - meter.samples])
    logger.debug("%s: upper band %s dB -> %s", path, meter.upper_db, meter.band)
    return meter.band
