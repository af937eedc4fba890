"""Peak memory of ``classify`` and ``run --fast`` against the length of the recording.

Both read, resample and featurise a file a block at a time, so their peak RSS should be the same
for a minute and for an hour.  This makes speech-like recordings (a demo clip repeated) of each
length at 16 kHz mono and 48 kHz stereo, runs each command in a fresh interpreter and prints its
peak RSS side by side::

    python bench/memory_bench.py                 # 1 min, 10 min, 1 h (one file at a time, up to 0.7 GB)
    python bench/memory_bench.py --minutes 1 10  # quicker

Linux only (reads /proc).  Issue 19's target: <= 300 MB for an hour of 48 kHz stereo.  The files are written to a temporary
folder and deleted afterwards.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.sources.audio_file import load_audio, resample  # noqa: E402

# Runs one emotion-edge command in a fresh interpreter and reports its own peak RSS in kB.
# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over fork and exec, so a child would
# report this benchmark's own peak (it holds the recordings it writes).
RUNNER = (
    "import sys\n"
    "from edge.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
    "print('PEAK_RSS_KB', hwm, rc, file=sys.stderr)\n"
)


def write_recording(path: Path, minutes: float, rate: int, channels: int) -> None:
    """The demo clips, resampled to ``rate``, repeated to ``minutes``, written a block at a time."""
    clips = [load_audio(p, 16000) for p in sorted((ROOT / "demo" / "audio").glob("*.flac"))]
    speech = np.concatenate([np.concatenate((c, np.zeros(8000, np.float32))) for c in clips])
    block = resample(speech, 16000, rate) if rate != 16000 else speech
    block = np.stack([block * (1.0 - 0.3 * c) for c in range(channels)], axis=1)
    total = int(minutes * 60 * rate)
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=channels, subtype="PCM_16") as f:
        written = 0
        while written < total:
            n = min(block.shape[0], total - written)
            f.write(block[:n])
            written += n


def peak_rss_mb(args: list[str]) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", RUNNER, *args], cwd=ROOT, text=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    seconds = time.perf_counter() - t0
    for line in proc.stderr.splitlines():
        if line.startswith("PEAK_RSS_KB"):
            _, kb, rc = line.split()
            return int(kb) / 1024, seconds, int(rc)
    raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    args = parser.parse_args()
    formats = [("16 kHz mono", 16000, 1), ("48 kHz stereo", 48000, 2)]
    commands = {
        "classify": lambda p: ["classify", "--json", str(p)],
        # The defaults, not this machine's /etc/emotion-edge/config.toml.
        "run --fast": lambda p: ["run", "--config", "/dev/null", "--fast", "--no-camera",
                                 "--audio-file", str(p)],
    }
    print(f"{'input':>24} | " + " | ".join(f"{c + ' peak RSS':>20}" for c in commands))
    with tempfile.TemporaryDirectory(prefix="ee-membench-") as tmp:
        for minutes in args.minutes:
            for name, rate, channels in formats:
                path = Path(tmp) / f"{minutes:g}min_{rate}_{channels}ch.wav"
                write_recording(path, minutes, rate, channels)
                cells = []
                for make in commands.values():
                    mb, seconds, rc = peak_rss_mb(make(path))
                    cells.append(f"{mb:7.0f} MB ({seconds:5.0f} s)" + ("" if rc == 0 else f" rc={rc}"))
                print(f"{f'{minutes:g} min {name}':>24} | " + " | ".join(f"{c:>20}" for c in cells),
                      flush=True)
                path.unlink()


if __name__ == "__main__":
    main()
