"""Do formants add to the statistics the pooled branch reads?  A screen before a leave-one-corpus-
out run of the real recipe.

eGeMAPS (Eyben et al. 2016) has the first three formants' frequencies and bandwidths; the
device's 12 prosody columns (:data:`edge.features.PROSODY_COLUMNS`) have none.  Here each clip's
formants are estimated the textbook way, frame by frame on the MFCC framing (25 ms Hamming
windows every 10 ms, pre-emphasis 0.97): autocorrelation LPC of order ``2 + kHz`` (18 at
16 kHz), the roots of the predictor, and of those between ``F_LOW`` and ``F_HIGH`` Hz with a
bandwidth under ``B_MAX`` Hz the three lowest.  Their frequencies (kHz) and log bandwidths are
pooled over the clip's voiced speech frames (the device's speech gate and its voicing column):
mean, spread and mean change between adjacent such frames, as eGeMAPS takes them over voiced
segments.  The statistics are then added to the screen's lines
(:mod:`scripts.speech_statistics_screen`: class-balanced logistic regression, leave one corpus
out, room / speaker / fresh) and each line is scored with and without them.

A screen, not the recipe: utterances, not 3 s windows, and a linear model, not the ensemble.

    .venv/bin/python scripts/speech_formant_screen.py --data ../shared/data \\
        --cache ~/.cache/emotion-edge/speech --formant-cache /tmp/formants.npz
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from speech_statistics_screen import (  # noqa: E402
    ROW_SETS,
    clip_arrays,
    loco,
    prosody_column,
    screen_bank,
    screen_parser,
    statistics,
    statistics_columns,
)

from convert.speech.features import FeatureBank  # noqa: E402
from edge.features import MfccConfig, frame_dbfs  # noqa: E402
from edge.features.adapt import speech_mask  # noqa: E402
from edge.sources.audio_file import load_audio  # noqa: E402

logger = logging.getLogger(__name__)

F_LOW, F_HIGH, B_MAX = 90.0, 5500.0, 600.0
PRE_EMPHASIS = 0.97
FORMANTS = 3
_CHUNK = 256


def _levinson(r: np.ndarray, order: int) -> np.ndarray:
    """Autocorrelation rows ``(n, order + 1)`` -> predictor polynomials ``(n, order + 1)``
    (``a[:, 0] = 1``), Levinson-Durbin over all rows at once."""
    n = r.shape[0]
    a = np.zeros((n, order + 1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    for i in range(1, order + 1):
        acc = np.einsum("nj,nj->n", a[:, :i], r[:, i:0:-1])
        k = -acc / np.maximum(err, 1e-12)
        a[:, 1 : i + 1] = a[:, 1 : i + 1] + k[:, None] * a[:, i - 1 :: -1][:, :i]
        err = err * (1.0 - k * k)
    return a


def formant_frames(signal: np.ndarray, config: MfccConfig) -> np.ndarray:
    """``(n_frames, 2 * FORMANTS)``: F1..F3 in kHz, then log bandwidths (log Hz), NaN where
    not found; row ``i`` lines up with MFCC frame ``i``."""
    sr, length, hop = config.sample_rate, config.frame_length, config.frame_step
    x = np.asarray(signal, dtype=np.float64).reshape(-1)
    x = np.append(x[0], x[1:] - PRE_EMPHASIS * x[:-1])
    n = config.num_frames(x.size)
    padded = np.zeros((n - 1) * hop + length)
    padded[: min(x.size, padded.size)] = x[: padded.size]
    frames = np.lib.stride_tricks.sliding_window_view(padded, length)[::hop][:n]
    order = 2 + sr // 1000
    window = np.hamming(length)
    n_fft = 1 << (2 * length - 1).bit_length()
    out = np.full((n, 2 * FORMANTS), np.nan)
    # Lag-window against ill-conditioning (a Gaussian of 60 Hz, as speech coders use).
    lag_window = np.exp(-0.5 * (2 * np.pi * 60.0 * np.arange(order + 1) / sr) ** 2)
    for s in range(0, n, _CHUNK):
        f = frames[s : s + _CHUNK] * window
        spec = np.fft.rfft(f, n_fft, axis=1)
        r = np.fft.irfft(np.abs(spec) ** 2, n_fft, axis=1)[:, : order + 1] * lag_window
        r[:, 0] *= 1.0 + 1e-9
        live = r[:, 0] > 1e-10
        if not live.any():
            continue
        a = _levinson(r[live], order)
        # The predictor's roots: eigenvalues of its companion matrices, all frames at once.
        comp = np.zeros((a.shape[0], order, order))
        comp[:, 0, :] = -a[:, 1:]
        comp[:, np.arange(1, order), np.arange(order - 1)] = 1.0
        roots = np.linalg.eigvals(comp)
        freq = np.angle(roots) * sr / (2 * np.pi)
        bw = -np.log(np.maximum(np.abs(roots), 1e-12)) * sr / np.pi
        ok = (np.imag(roots) > 0) & (freq > F_LOW) & (freq < F_HIGH) & (bw < B_MAX)
        freq = np.where(ok, freq, np.inf)
        idx = np.argsort(freq, axis=1)[:, :FORMANTS]
        fsel = np.take_along_axis(freq, idx, axis=1)
        bsel = np.take_along_axis(bw, idx, axis=1)
        found = np.isfinite(fsel)
        rows = np.flatnonzero(live) + s
        out[rows, :FORMANTS] = np.where(found, fsel / 1000.0, np.nan)
        out[rows, FORMANTS:] = np.where(found, np.log(np.maximum(bsel, 1.0)), np.nan)
    return out


def pooled_formants(tracks: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``(3, columns)``: mean, spread and mean change of each column over the kept frames where
    it was found (0 where there are none)."""
    cols = tracks.shape[1]
    rows = np.zeros((3, cols))
    for c in range(cols):
        v = tracks[:, c]
        use = keep & np.isfinite(v)
        if use.sum() >= 2:
            rows[0, c], rows[1, c] = v[use].mean(), v[use].std()
        pair = use[1:] & use[:-1]
        if pair.any():
            rows[2, c] = np.abs(np.diff(v))[pair].mean()
    return rows


def formant_statistics(bank: FeatureBank, cache: Path | None) -> np.ndarray:
    """(clips, 3, 6) formant statistics over each clip's voiced speech frames."""
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            if z["stats"].shape[0] == len(bank.utts):
                return z["stats"]
    cfg = bank.recipe.mfcc
    voiced_col = prosody_column(cfg, "voiced")
    out = np.zeros((len(bank.utts), 3, 2 * FORMANTS))
    t0 = time.perf_counter()
    for i, u in enumerate(bank.utts):
        frames = bank.variants[i][0]
        tracks = formant_frames(load_audio(u.path, cfg.sample_rate), cfg)
        if tracks.shape[0] != frames.shape[0]:
            raise RuntimeError(f"{u.path}: {tracks.shape[0]} formant frames, {frames.shape[0]} "
                               f"MFCC frames")
        keep = speech_mask(frame_dbfs(frames[:, 0], cfg)) & (frames[:, voiced_col] > 0.5)
        out[i] = pooled_formants(tracks, keep)
        if i % 1000 == 999:
            logger.info("formants of %d clips in %.0f s", i + 1, time.perf_counter() - t0)
    if cache is not None:
        np.savez(cache, stats=out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = screen_parser(__doc__.split("\n\n")[0])
    p.add_argument("--ceps", type=int, nargs="+", default=[40, 20])
    p.add_argument("--formant-cache", type=Path, help="where the clips' formant statistics are "
                   "kept between runs (.npz)")
    args = p.parse_args(argv)
    bank = screen_bank(args)
    if bank is None:
        return 2
    recipe, utts = bank.recipe, bank.utts
    stats = statistics(bank)
    form = formant_statistics(bank, args.formant_cache)
    corpus, speaker, label, names = clip_arrays(utts)
    print(f"{'statistics':52s} " + "  ".join(
        f"{v + ' mean':>12s} ({' '.join(n[:5] for n in names)})" for v in ("room", "speaker",
                                                                         "fresh")))
    for ceps in args.ceps:
        for rows, what in ROW_SETS:
            base = statistics_columns(stats, recipe.mfcc, ceps, rows)
            for extra, label_ in (("", None), (" + formants", form[:, rows].reshape(len(utts), -1)),
                                  (" + F1-F3 only", form[:, rows][:, :, :FORMANTS]
                                   .reshape(len(utts), -1))):
                x = base if label_ is None else np.concatenate((base, label_), axis=1)
                res = loco(x, corpus, speaker, label, {}, "z")
                print(f"{ceps:2d} cepstra + prosody{extra}, {what:21s} " + "  ".join(
                    f"{np.mean(list(res[v].values())):12.3f} ("
                    + " ".join(f"{res[v][n]:.3f}" for n in names) + ")" for v in res),
                    flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
