"""Count the appliance loop's arm64 instructions per stage, run inside the emulated Pi.

``scripts/pi/bench.sh`` runs this under qemu-aarch64 with the ``insn_counter`` plugin, which keeps
the number of guest instructions executed so far in a shared page (``--counter``).  The loop
takes its stage timer from its constructor (``build_appliance(clock=...)``); here that clock reads
the instruction count, so every ``latency_ms`` field of a decision holds *millions of
instructions* instead of milliseconds: speech (MFCC + speech model for the hop), detect, face
(crop + face model, again mirrored when the first pass is unsure), fusion (fusion + smoothing).  A last sink records
the count after every decision, so the difference between two decisions is the whole cycle:
the stages plus reading and decoding the audio block, the sinks (JSON log, LEDs on mock pins)
and the loop itself.

Usage (inside the guest): python bench.py --counter PATH --out OUT.json [--detector NAME]
      [--audio demo/conversation.flac] [--image demo/face.jpg]

Without ``--counter`` (for example natively on a real Pi) the clock is ``time.perf_counter``
and the same JSON holds seconds: the instruction counts from the emulator divided by the times
measured on the board give the board's real IPC.
"""

from __future__ import annotations

import argparse
import io
import json
import mmap
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any


class InstructionClock:
    """``clock()`` for the loop: guest instructions executed so far, x 1e-9 (so 1 "ms" of
    latency is 1e6 instructions)."""

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            self._page = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)

    def count(self) -> int:
        return int(struct.unpack_from("<Q", self._page, 0)[0])

    def threads(self) -> int:
        return int(struct.unpack_from("<Q", self._page, 8)[0])

    def __call__(self) -> float:
        return self.count() * 1e-9


class MarkSink:
    """The last sink: the clock after each decision has been fully written out."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.marks: list[dict[str, Any]] = []

    def write(self, decision: Any) -> None:
        self.marks.append({"at": self.clock(), "cycle": decision.cycle,
                           "level": decision.level, "label": decision.label,
                           "stages": dict(decision.latency_ms)})

    def close(self) -> None:
        pass


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--counter", help="insn_counter's page (omit: wall clock, in seconds)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--detector", default="blazeface", choices=("blazeface", "haar"))
    p.add_argument("--audio", default="demo/conversation.flac")
    p.add_argument("--image", default="demo/face.jpg")
    args = p.parse_args()

    clock: Any = InstructionClock(args.counter) if args.counter else time.perf_counter
    at_start = clock()  # interpreter start-up, before the project is imported

    from edge.config import load_config
    from edge.pipeline.appliance import ReplayMedia, build_appliance
    from edge.testing import mock_pin_factory

    config = load_config(None, env={}, overrides={
        ("camera", "detector"): args.detector,
        # The emulator is 10-50x slower than a Pi: open the budget so the loop never degrades
        # and every cycle runs the full face path.
        ("loop", "deadline_s"): 5.0, ("loop", "overruns_to_degrade"): 100,
        ("loop", "overrun_window"): 100,
    })
    at_import = clock()
    marks = MarkSink(clock)
    log = io.StringIO()
    media = ReplayMedia(audio=Path(args.audio), image=Path(args.image), fast=True)
    with build_appliance(config, media=media, pin_factory=mock_pin_factory(), stdout=log,
                         extra_sinks=(marks,), clock=clock) as app:
        at_ready = clock()
        summary = app.run()
    result = {
        "unit": "instructions" if args.counter else "seconds",
        "scale": 1e9 if args.counter else 1.0,
        "detector": args.detector,
        "hop_s": app.hop_s,
        "cycles": summary.cycles,
        "counters": summary.counters,
        "startup": {"interpreter": at_start, "imports": at_import, "ready": at_ready,
                    "first_decision": marks.marks[0]["at"] if marks.marks else None},
        "marks": marks.marks,
        "threads": clock.threads() if args.counter else None,
        "decisions_logged": len(log.getvalue().splitlines()),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
