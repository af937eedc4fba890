"""What BlazeFace's later looks cost: a frame without a face (the appliance's cycle with nobody in
view) with the later looks as a camera makes them (one per frame, in turn), as a still image gets
them (a grey border, then four corner tiles), and with one look, side by side in one run (not a
test).

A frame whose face the first look finds costs the same every way, so this is the whole of the
later looks' cost.  Frames are :func:`convert.face.fullframe.empty_scenes` (backgrounds, lighting,
blur and noise without a face).  The interpreter runs with one thread; timings are medians of
interleaved repeats.

Run: ``python -m bench.face_looks``.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.speech_bench import interleaved  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    from convert.face.fullframe import empty_scenes
    from edge.vision.blazeface import BlazeFaceConfig, BlazeFaceDetector

    detectors = {"camera": BlazeFaceDetector(None, BlazeFaceConfig(spread_looks=True)),
                 "still image": BlazeFaceDetector(),
                 "one look": BlazeFaceDetector(None, BlazeFaceConfig(retry_margin=0,
                                                                     retry_tiles=0))}
    print(f"BlazeFace on frames without a face, 1 thread, {args.frames} frames, median of "
          f"{args.repeats} interleaved repeats; ms per frame (x one look)")
    print(f"{'frame':>8} " + " ".join(f"{name:>16}" for name in detectors))
    for size in ((320, 240), (640, 480)):
        frames = list(empty_scenes(size=size, n=args.frames, seed=1))
        t = interleaved({name: (lambda d=d, frames=frames: [d.detect(f) for f in frames])
                         for name, d in detectors.items()}, args.repeats, 1)
        print(f"{size[0]}x{size[1]:<4} " + " ".join(
            f"{t[name] / args.frames * 1e3:8.2f} ({t[name] / t['one look']:4.1f}x)"
            for name in detectors))
    for d in detectors.values():
        d.close()


if __name__ == "__main__":
    main()
