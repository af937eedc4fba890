r"""Benchmark of the appliance loop: per-stage compute per cycle and CPU share of one core.

Replays an audio file (speech) and a 320x240 frame with a face through the very loop that
``emotion-edge run`` uses (``edge.pipeline.appliance.build_appliance``), paced in real time and pinned to
one core, and prints per-stage p50/p99 compute, the CPU share of that core, and whether the full
cycle (speech window + face detection + both models + fusion) stays under 10 % of the hop at p99.

    python bench/loop_bench.py                       # shipped models, corpora from ../shared/data
    python bench/loop_bench.py --models DIR --audio a.flac --face-image f.png --seconds 20
    python bench/loop_bench.py --untrained           # shipped architectures, random weights
    python bench/loop_bench.py --tiny                # tiny random models (no shipped ones yet)
    python bench/loop_bench.py --models models --audio demo/conversation.flac \
        --face-image demo/face.jpg --mqtt            # MQTT off and on, side by side, one run

``--mqtt`` starts a Mosquitto of its own (the Debian package) on a loopback port and runs the
loop twice on the same media, the MQTT sink off and on, and prints what publishing adds to a
cycle: the time the loop spends in the sinks' ``write`` (the MQTT sink only queues; a thread
publishes) and the stage compute with the publisher thread running beside it.

Numbers PRINT; nothing here asserts a time (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_DATA = REPO.parent / "shared" / "data"


class TimedSink:
    """Wraps a sink and records the wall time of each ``write`` (what a sink costs the loop)."""

    def __init__(self, sink) -> None:
        self.sink = sink
        self.times: list[float] = []

    @property
    def counters(self):
        return self.sink.counters

    def write(self, d) -> None:
        t0 = time.perf_counter()
        self.sink.write(d)
        self.times.append(time.perf_counter() - t0)

    def close(self) -> None:
        self.sink.close()


class Collect:
    """A sink that keeps every decision's per-stage latency."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self.face_states: list[str] = []

    def write(self, d) -> None:
        self.rows.append(dict(d.latency_ms))
        self.face_states.append(d.face.state)

    def close(self) -> None:
        pass


def speech_audio(data: Path, seconds: float, out: Path) -> Path:
    """Concatenate emodb/RAVDESS clips to ``seconds`` of speech (read-only corpora, temp copy)."""
    import soundfile as sf

    from edge.sources.audio_file import load_audio

    clips = sorted((data / "emodb").glob("*.flac"))[:40] or sorted(
        (data / "ravdess").glob("Actor_01/*.flac"))
    if not clips:
        raise SystemExit(f"no speech clips under {data}; pass --audio FILE")
    parts, total = [], 0
    for clip in clips:
        x = load_audio(clip, 16000)
        parts.append(x)
        total += x.size
        if total >= seconds * 16000:
            break
    sf.write(str(out), np.concatenate(parts)[: int(seconds * 16000)], 16000)
    return out


def face_frame(data: Path, out: Path) -> Path:
    """A FER2013 face (PublicTest split) upscaled to 180 px on a 320x240 grey background."""
    import cv2

    fer = np.load(data / "fer2013" / "fer2013_48.npz")
    idx = int(np.flatnonzero(fer["usage"] == "PublicTest")[3])
    face = cv2.resize(fer["x"][idx], (180, 180), interpolation=cv2.INTER_CUBIC)
    frame = np.full((240, 320), 110, np.uint8)
    frame[30:210, 70:250] = face
    cv2.imwrite(str(out), frame)
    return out


def build_untrained(folder: Path) -> None:
    """The shipped architectures (convert.speech.model.build_model with the default SpeechRecipe, the
    unpruned face parent convert.face.model.PARENT_SPEC) with random weights, converted to int8.
    Same operators and shapes as the trained models, so the same cost (the face model is the
    parent before 35 % channel pruning: an upper bound)."""
    import keras

    from convert.export import convert_int8, save_model
    from convert.face.model import PARENT_SPEC, build_student
    from convert.speech.model import build_model
    from convert.speech.recipe import SpeechRecipe
    from edge.features.face import FacePreprocessConfig
    from edge.labels import fusion_map_for
    from edge.models.face import FACE_MODEL_FILE
    from edge.models.speech import SPEECH_MODEL_FILE
    from tests.tinymodels import FACE_LABELS, SPEECH_LABELS

    rng = np.random.default_rng(0)
    recipe = SpeechRecipe()
    speech = build_model(recipe, len(SPEECH_LABELS))
    shape = (recipe.features.window_frames, recipe.mfcc.n_columns, 1)
    save_model(convert_int8(speech, rng.normal(size=(32, *shape)).astype(np.float32)),
               folder / SPEECH_MODEL_FILE, name="untrained-speech", task="speech",
               labels=SPEECH_LABELS, preprocessing=recipe.preprocessing(),
               fusion_map=fusion_map_for(SPEECH_LABELS), metrics={}, training={})
    logits = build_student(PARENT_SPEC)
    face = keras.Sequential([logits, keras.layers.Softmax()])
    pre = FacePreprocessConfig()
    fshape = (pre.size, pre.size, 1)
    save_model(convert_int8(face, rng.uniform(-1, 1, size=(32, *fshape)).astype(np.float32)),
               folder / FACE_MODEL_FILE, name="untrained-face", task="face", labels=FACE_LABELS,
               preprocessing=pre.to_dict(), fusion_map=fusion_map_for(FACE_LABELS), metrics={},
               training={})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, help="folder with speech/face *_int8.tflite")
    ap.add_argument("--tiny", action="store_true", help="build tiny random models (needs TF)")
    ap.add_argument("--untrained", action="store_true",
                    help="build the shipped architectures with random weights (needs TF)")
    ap.add_argument("--audio", type=Path, help="speech recording (default: emodb clips)")
    ap.add_argument("--face-image", type=Path, help="320x240 frame with a face (default: FER)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seconds", type=float, default=30.0, help="audio length to replay")
    ap.add_argument("--fast", action="store_true", help="do not pace in real time")
    ap.add_argument("--cores", type=int, default=1, help="pin to this many cores (0 = no pin)")
    ap.add_argument("--mqtt", action="store_true",
                    help="run twice, MQTT sink off and on (own Mosquitto on loopback), and "
                    "compare")
    ap.add_argument("--repeat", type=int, default=1,
                    help="with --mqtt: alternate off/on this many times and pool the cycles")
    ap.add_argument("--wall", action="store_true",
                    help="time stages by wall clock (default: the loop thread's CPU time, which "
                    "other processes on a shared machine do not inflate)")
    args = ap.parse_args(argv)

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if args.cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cores]))
    with tempfile.TemporaryDirectory(prefix="loop_bench_") as tmp:
        return _bench(args, Path(tmp))


def _bench(args: argparse.Namespace, tmp: Path) -> int:
    if args.tiny or args.untrained:
        if args.tiny:
            from tests import tinymodels

            tinymodels.build(tmp)
        else:
            build_untrained(tmp)
        os.environ["EMOTION_EDGE_MODELS"] = str(tmp)
    elif args.models:
        os.environ["EMOTION_EDGE_MODELS"] = str(args.models)
    audio = args.audio or speech_audio(args.data, args.seconds, tmp / "speech.wav")
    image = args.face_image or face_frame(args.data, tmp / "face.png")

    if not args.mqtt:
        _report(args, *_run(args, audio, image, {}))
        return 0
    from tests.mqtt_broker import PASSWORD, USER, Mosquitto

    broker = Mosquitto(tmp / "mosquitto")
    try:
        mqtt = {("mqtt", k): v for k, v in (
            ("enabled", True), ("host", "127.0.0.1"), ("port", broker.port),
            ("device_id", "bench"), ("username", USER),
            ("password_file", str(broker.password_file)))}
        assert PASSWORD  # the broker's password file holds it
        results: dict[str, list] = {"MQTT off": [], "MQTT on": []}
        for i in range(args.repeat):  # alternating, so drift on a shared machine hits both
            for name, extra in (("MQTT off", {}), ("MQTT on", mqtt)):
                print(f"--- {name} ({i + 1}/{args.repeat})")
                results[name].append(_run(args, audio, image, extra))
                _report(args, *results[name][-1])
    finally:
        broker.stop()
    print(f"--- side by side (ms per cycle, {args.repeat} alternating run(s) of each pooled)")
    print(f"{'':<34} {'MQTT off':>10} {'MQTT on':>10} {'added':>8}")
    lines = {}
    for name, runs in results.items():
        total = np.concatenate([[r["total"] for r in run[2].rows] for run in runs])
        sinks = np.concatenate([run[3][: len(run[2].rows)] for run in runs]) * 1e3
        both = total + sinks
        lines[name] = {"sink writes p50": np.percentile(sinks, 50),
                       "sink writes p99": np.percentile(sinks, 99),
                       "stage compute p50": np.percentile(total, 50),
                       "stage compute p99": np.percentile(total, 99),
                       "compute + sink writes p99": np.percentile(both, 99)}
    for key in lines["MQTT off"]:
        off, on = lines["MQTT off"][key], lines["MQTT on"][key]
        print(f"{key:<34} {off:10.3f} {on:10.3f} {on - off:+8.3f}")
    write_p99 = lines["MQTT on"]["sink writes p99"] - lines["MQTT off"]["sink writes p99"]
    added = (lines["MQTT on"]["compute + sink writes p99"]
             - lines["MQTT off"]["compute + sink writes p99"])
    counters = results["MQTT on"][-1][1].counters
    print(f"MQTT: {counters.get('mqtt_sent', 0)} messages acknowledged by the last decision, "
          f"{counters.get('mqtt_dropped', 0)} dropped, {counters.get('mqtt_disconnects', 0)} "
          f"disconnects")
    verdict = "PASS" if write_p99 <= 0.2 else "FAIL"
    print(f"publishing adds {write_p99:.3f} ms to the sink writes at p99 ({added:+.3f} ms to "
          f"compute + sink writes at p99, run-to-run noise included); target <= 0.2 ms: "
          f"{verdict}")
    return 0


def _run(args: argparse.Namespace, audio: Path, image: Path, extra: dict):
    from edge.config import load_config
    from edge.pipeline.appliance import ReplayMedia, build_appliance

    config = load_config(None, env={}, overrides={("leds", "mode"): "none",
                                                   ("log", "stdout"): False, **extra})
    collect = Collect()
    t_load = time.perf_counter()
    clock = time.perf_counter if args.wall else time.thread_time
    app = build_appliance(config, media=ReplayMedia(audio=audio, image=image, fast=args.fast),
                          extra_sinks=(collect,), clock=clock)
    load_s = time.perf_counter() - t_load
    # Every sink but the benchmark's collector, timed per write (wall clock).
    app.loop.sinks = [s if s is collect else TimedSink(s) for s in app.loop.sinks]
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.perf_counter()
    with app:
        summary = app.run()
    wall = time.perf_counter() - wall0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    timed = [s.times for s in app.loop.sinks if isinstance(s, TimedSink)]
    sink_s = ([sum(t) for t in zip(*timed, strict=True)] if timed
              else [0.0] * len(collect.rows))
    return app, summary, collect, sink_s, load_s, cpu, wall


def _report(args, app, summary, collect, sink_s, load_s, cpu, wall) -> None:
    hop_ms = app.hop_s * 1e3
    rows = collect.rows
    print(f"emotion-edge loop benchmark: {summary.cycles} cycles over {summary.audio_s:.1f} s "
          f"of audio, hop {hop_ms:.0f} ms, 320x240 frame, {'fast' if args.fast else 'real time'}"
          f", {len(os.sched_getaffinity(0))} core(s), models loaded in {load_s:.2f} s, stage times "
          f"by {'wall clock' if args.wall else 'thread CPU time'}")
    faces = {s: collect.face_states.count(s) for s in set(collect.face_states)}
    print(f"face states: {faces}   degradations: {summary.counters['degradations']}   "
          f"overruns: {summary.counters['overruns']}")
    print(f"{'stage':<8} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}  cycles")
    stages = ["speech", "frame", "detect", "face", "fusion", "total"]
    for stage in stages:
        v = np.array([r[stage] for r in rows if stage in r])
        if v.size:
            print(f"{stage:<8} {np.percentile(v, 50):9.2f} {np.percentile(v, 99):9.2f} "
                  f"{v.max():9.2f}  {v.size}")
    # Full cycles only: those that ran detection and the face model this cycle.
    full = np.array([r["total"] for r in rows if "detect" in r and "face" in r])
    total = np.array([r["total"] for r in rows])
    print(f"CPU share of one core (whole process, incl. audio decode/pacing): "
          f"{100 * cpu / wall:.1f} %  ({cpu:.2f} s CPU / {wall:.2f} s wall)")
    print(f"loop compute share of one core: {100 * total.sum() / 1e3 / wall:.1f} %")
    if full.size:
        p99 = np.percentile(full, 99)
        verdict = "PASS" if p99 < 0.1 * hop_ms else "FAIL"
        print(f"full cycle (speech + detect + both models + fusion) p99 = {p99:.2f} ms = "
              f"{100 * p99 / hop_ms:.2f} % of the hop; target < 10 %: {verdict}")
    else:
        print("no full cycles (no face detected in the frame?); target not measured")


if __name__ == "__main__":
    sys.exit(main())
