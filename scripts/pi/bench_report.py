"""Turn bench.py's instruction counts into a cost table for Raspberry Pi boards.

Usage: python bench_report.py BENCH.json [BENCH.json ...] [--peak-rss NAME=JSON ...]

For each run (one per face detector): the steady-state cycles of the replay (not the first,
whose speech window is filled from empty, nor a final flush without a new hop), the mean
instructions per stage and per whole cycle, then for each board the time that takes at the
board's clock and an IPC range, as ms and as % of the hop (one decision per hop).

Times are instructions / (IPC x clock): an estimate, not a measurement.  IPC (instructions
retired per cycle, one core) depends on the code; the ranges below are stated, not measured:

* Cortex-A53 (Pi Zero 2 W, Pi 3): in-order, 2-wide.  Its best case is NEON kernels written for
  it (XNNPACK ships A53-specific int8 micro-kernels) near 1; interpreter-heavy Python code is
  much lower (branchy, dependent loads).  0.5 - 0.9.
* Cortex-A72 (Pi 4): out-of-order, 3-wide decode.  0.8 - 1.5 (issue 18 assumed 1.0 - 1.5; the
  lower bound is widened for the interpreter-bound parts of a cycle).
* Cortex-A76 (Pi 5): out-of-order, 4-wide, roughly 1.5x the A72's work per clock.  1.2 - 2.2.

To replace a range by a measurement, run ``bench.py`` natively on the board (it then reports
seconds) and divide the emulator's instruction counts by (seconds x clock).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Board:
    name: str
    core: str
    cores: int
    ghz: tuple[float, float]  # slowest and fastest stock clock
    ipc: tuple[float, float]

    def ms(self, instructions: float) -> tuple[float, float]:
        """(fastest, slowest) milliseconds for ``instructions`` on one core."""
        fast = instructions / (self.ipc[1] * self.ghz[1] * 1e9) * 1e3
        slow = instructions / (self.ipc[0] * self.ghz[0] * 1e9) * 1e3
        return fast, slow


BOARDS = (
    Board("Pi 4", "Cortex-A72", 4, (1.5, 1.8), (0.8, 1.5)),
    Board("Pi 5", "Cortex-A76", 4, (2.4, 2.4), (1.2, 2.2)),
    Board("Pi Zero 2 W", "Cortex-A53", 4, (1.0, 1.0), (0.5, 0.9)),
)

#: Stages as the loop reports them in latency_ms, in the order of a cycle.
STAGES = (("speech", "speech per hop (features + model)"), ("frame", "frame"),
          ("motion", "box reuse test (scene moved?)"), ("detect", "face detection"),
          ("face", "face crop + model (mirror if unsure)"),
          ("fusion", "fusion + smoothing"))


def steady_cycles(marks: Sequence[Mapping[str, Any]]) -> list[int]:
    """Indexes of the cycles to average: not the first (its speech window starts empty), only
    cycles that scored a new hop (speech > 0) at the full level."""
    return [i for i, m in enumerate(marks)
            if i > 0 and m["stages"].get("speech", 0) > 0 and m["level"] == "full"]


def summarize(run: Mapping[str, Any]) -> dict[str, Any]:
    """Mean instructions per stage, for the rest of the cycle and for the whole cycle."""
    scale = float(run["scale"])
    marks = run["marks"]
    idx = steady_cycles(marks)
    if not idx:
        raise ValueError("no steady-state cycle in this run")
    # latency_ms holds clock units x 1e3; the clock is instructions x 1e-9.
    per_ms = scale / 1e3
    stages = {k: statistics.fmean(marks[i]["stages"].get(k, 0.0) for i in idx) * per_ms
              for k, _ in STAGES}
    cycle = statistics.fmean((marks[i]["at"] - marks[i - 1]["at"]) * scale for i in idx)
    stages["rest"] = cycle - sum(stages.values())
    start = run["startup"]
    return {"stages": stages, "cycle": cycle, "n": len(idx), "hop_s": float(run["hop_s"]),
            "startup": {k: (v * scale if v is not None else None) for k, v in start.items()}}


def _m(x: float) -> str:
    return f"{x / 1e6:.1f}"


def _range(lo: float, hi: float, fmt: str = "{:.1f}") -> str:
    return f"{fmt.format(lo)}-{fmt.format(hi)}"


def render(runs: Sequence[Mapping[str, Any]], peak_rss: Mapping[str, int] | None = None) -> str:
    out = []
    ipc = "; ".join(f"{b.name} {b.core} {b.cores} cores "
                    f"{_range(*b.ghz, '{:.1f}') if b.ghz[0] != b.ghz[1] else b.ghz[0]} GHz "
                    f"IPC {_range(*b.ipc, '{:.1f}')}" for b in BOARDS)
    out.append(f"pi-bench: guest instructions (arm64, counted by QEMU), one core; {ipc}")
    for run in runs:
        s = summarize(run)
        hop_ms = s["hop_s"] * 1e3
        out.append("")
        out.append(f"detector {run['detector']}: mean of {s['n']} steady cycles; "
                   f"hop {hop_ms:.0f} ms; ms and % of the hop, fastest-slowest")
        head = f"{'stage':<32} {'M insn':>7}"
        for b in BOARDS:
            head += f"  {b.name:>24}"
        out.append(head)
        rows = [(label, s["stages"][key]) for key, label in STAGES]
        rows.append(("loop, audio read, sinks", s["stages"]["rest"]))
        rows.append(("FULL CYCLE", s["cycle"]))
        for label, n in rows:
            line = f"{label:<32} {_m(n):>7}"
            for b in BOARDS:
                lo, hi = b.ms(n)
                line += f"  {_range(lo, hi, '{:.1f}'):>11} ms {_range(100 * lo / hop_ms, 100 * hi / hop_ms, '{:.1f}'):>9}%"
            out.append(line)
        st = s["startup"]
        if st.get("first_decision"):
            parts = [f"interpreter {_m(st['interpreter'])} M", f"imports {_m(st['imports'])} M",
                     f"models and sources ready {_m(st['ready'])} M",
                     f"first decision {_m(st['first_decision'])} M"]
            times = "; ".join(f"{b.name} {_range(*[t / 1e3 for t in b.ms(st['first_decision'])], '{:.2f}')} s"
                              for b in BOARDS)
            out.append(f"start-up (cumulative): {', '.join(parts)} instructions -> {times} "
                       "(plus the first window's 3 s of audio in real time)")
        out.append(f"guest threads seen: {run.get('threads')}")
    if peak_rss:
        out.append("")
        out.append(render_rss(peak_rss))
    return "\n".join(out)


def render_rss(kb: Mapping[str, int]) -> str:
    """Peak RSS (VmHWM, kB) of ``run`` and of an empty interpreter, emulated and native."""
    def mb(key: str) -> str:
        return f"{kb[key] / 1024:.0f} MB" if key in kb else "?"

    lines = ["peak RSS (VmHWM) of `emotion-edge run --fast` on the replay:",
             f"  arm64 under qemu-user  {mb('arm64-run'):>7}  (empty interpreter {mb('arm64-empty')}:"
             " QEMU's own memory and translated code are included, so this is an upper bound)",
             f"  x86-64 natively        {mb('x86-run'):>7}  (empty interpreter {mb('x86-empty')})"]
    if all(k in kb for k in ("arm64-run", "arm64-empty", "x86-empty")):
        estimate = kb["arm64-run"] - kb["arm64-empty"] + kb["x86-empty"]
        lines.append(f"  arm64 estimate without QEMU's overhead: ~{estimate / 1024:.0f} MB "
                     "(emulated run - emulated empty + native empty)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--peak-rss", action="append", default=[], metavar="NAME=JSON",
                   help="peak_rss.py's output for arm64-run, arm64-empty, x86-run, x86-empty")
    args = p.parse_args(argv)
    runs = [json.loads(path.read_text()) for path in args.runs]
    rss = {}
    for item in args.peak_rss:
        name, _, path = item.partition("=")
        if Path(path).is_file():
            rss[name] = int(json.loads(Path(path).read_text())["VmHWM"])
    print(render(runs, rss))
    return 0


if __name__ == "__main__":
    sys.exit(main())
