"""Where does wideband speech end and a call begin?  The measurement behind
:data:`edge.features.band.NARROWBAND_DB`, the threshold ``emotion-edge classify`` picks its
narrowband model by.

Clips drawn from each corpus (the same draw every run) are measured twice with the device's
:class:`edge.features.band.BandMeter`: as recorded, and through the narrowband call that
leave-one-corpus-out scores (:func:`convert.speech.channels.telephone`, resampled back to
16 kHz as a call recorder would save it).  Printed per corpus: the upper band's level against
the voice band (dB; low percentiles for the recorded clips, high ones through the call) and
the share of clips the threshold calls narrowband.

    .venv/bin/python scripts/speech_band_screen.py --data ../shared/data [--clips 200]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from convert.speech.channels import telephone  # noqa: E402
from convert.speech.corpora import index_corpora  # noqa: E402
from convert.speech.recipe import SpeechRecipe  # noqa: E402
from edge.errors import AudioFileError  # noqa: E402
from edge.features.band import METER_RATE, NARROWBAND_DB, BandMeter  # noqa: E402
from edge.sources.audio_file import load_audio  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def upper_db(signal: np.ndarray) -> float:
    meter = BandMeter()
    meter.feed(signal)
    level = meter.upper_db
    return float("nan") if level is None else level


def screen(data: Path, clips: int, seed: int = 0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Per corpus: the upper band's level (dB) of each drawn clip, as recorded and by phone."""
    specs = SpeechRecipe.load(REPO / "recipes" / "speech.toml").data.corpora
    by_corpus: dict[str, list[Path]] = {}
    for u in index_corpora(specs, data):
        by_corpus.setdefault(u.corpus, []).append(Path(u.path))
    rng = np.random.default_rng(seed)
    rows = []
    for corpus, paths in by_corpus.items():
        drawn = rng.choice(len(paths), size=min(clips, len(paths)), replace=False)
        clean, call = [], []
        for i in sorted(drawn):
            try:
                x = load_audio(paths[i], METER_RATE)
            except AudioFileError as exc:
                print(f"skipped: {exc}", file=sys.stderr)
                continue
            clean.append(upper_db(x))
            call.append(upper_db(telephone(x, METER_RATE)))
        rows.append((corpus, np.array(clean), np.array(call)))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="the corpora's folder")
    ap.add_argument("--clips", type=int, default=200, help="clips drawn per corpus")
    args = ap.parse_args(argv)
    print(f"upper band (4.3-7 kHz) against the voice band, dB; narrowband below "
          f"{NARROWBAND_DB:g}\n")
    print("| corpus | clips | as recorded: min / 1% / median | called narrowband | "
          "through a call: median / 99% / max | called narrowband |")
    print("|---|---:|---:|---:|---:|---:|")
    for corpus, clean, call in screen(args.data, args.clips):
        c, t = clean[np.isfinite(clean)], call[np.isfinite(call)]
        print(f"| {corpus} | {clean.size} | {c.min():.1f} / {np.percentile(c, 1):.1f} / "
              f"{np.median(c):.1f} | {np.mean(clean < NARROWBAND_DB):.1%} | "
              f"{np.median(t):.1f} / {np.percentile(t, 99):.1f} / {t.max():.1f} | "
              f"{np.mean(call < NARROWBAND_DB):.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
