"""A simulated fleet: N appliances replaying in real time against one Mosquitto on loopback.

Each device is a real ``emotion-edge run`` process (``--audio-file``, no camera, mock GPIO) with
MQTT on, under its own device id.  A subscriber with a persistent session (QoS 1) records every
decision.  At the end it prints, per device: decisions made, received, missing, repeated
(QoS 1 is at least once), whether the order was kept, the device's MQTT counters and its CPU;
and the broker's CPU.

    python bench/fleet_bench.py                        # 10 devices, 5 minutes (the issue's target)
    python bench/fleet_bench.py --devices 3 --seconds 20
    python bench/fleet_bench.py --restart-after 120 --down 10   # an outage in the middle

Needs the Debian mosquitto package (scripts/install-system-deps.sh).  Numbers PRINT; nothing
here asserts (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PREFIX = "fleet-bench"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (``/proc/<pid>/stat``), 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def long_audio(source: Path, seconds: float, out: Path) -> Path:
    import soundfile as sf

    audio, rate = sf.read(str(source), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    reps = int(np.ceil(seconds * rate / mono.size))
    sf.write(str(out), np.tile(mono, reps)[: int(seconds * rate)], rate)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=300.0, help="audio each device replays")
    ap.add_argument("--audio", type=Path, default=REPO / "demo" / "conversation.flac")
    ap.add_argument("--queue-size", type=int, default=1000, help="mqtt.queue_size")
    ap.add_argument("--restart-after", type=float, default=0.0, metavar="S",
                    help="stop the broker this many seconds in, for --down seconds (0: never)")
    ap.add_argument("--down", type=float, default=5.0, help="seconds the broker stays down")
    args = ap.parse_args(argv)

    from tests.mqtt_broker import Mosquitto, Subscriber

    with tempfile.TemporaryDirectory(prefix="fleet_bench_") as tmp_name:
        tmp = Path(tmp_name)
        audio = long_audio(args.audio, args.seconds, tmp / "fleet.wav")
        broker = Mosquitto(tmp / "mosquitto")
        assert broker.proc is not None
        sub = Subscriber(broker, f"{PREFIX}/+/decision", session="fleet-bench-watcher")
        broker_cpu0 = cpu_seconds(broker.proc.pid)
        names = [f"dev-{i:02d}" for i in range(args.devices)]
        t0 = time.perf_counter()
        procs = {
            name: subprocess.Popen(
                [sys.executable, "-m", "edge", "run", "--audio-file", str(audio), "--no-camera",
                 "--mock-gpio", "--set", "leds.mode=none", "--set", "log.stdout=false",
                 "--set", f"mqtt.topic_prefix={PREFIX}",
                 "--set", f"mqtt.queue_size={args.queue_size}",
                 *broker.config_overrides(name)],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for name in names}
        cpu = {name: 0.0 for name in names}
        restarted = False
        while any(p.poll() is None for p in procs.values()):
            if args.restart_after and not restarted and time.perf_counter() - t0 > \
                    args.restart_after:
                broker_cpu0 -= cpu_seconds(broker.proc.pid)  # keep the first run's CPU
                broker.restart(args.down)
                broker_cpu0 += cpu_seconds(broker.proc.pid)
                restarted = True
            for name, p in procs.items():
                cpu[name] = max(cpu[name], cpu_seconds(p.pid))
            time.sleep(1.0)
        wall = time.perf_counter() - t0
        broker_cpu = cpu_seconds(broker.proc.pid) - broker_cpu0
        made = {}
        for name, p in procs.items():
            err = p.stderr.read() if p.stderr else ""
            # "1 decision over" when a device made only one.
            summary = [line for line in err.splitlines() if re.search(r" decisions? over ", line)]
            made[name] = int(summary[-1].split()[1]) if summary else -1
        time.sleep(1.0)
        sub.close()
        broker.stop()

    received: dict[str, list[dict]] = {name: [] for name in names}
    for topic, payload, _ in sub.messages:
        received.setdefault(topic.split("/")[1], []).append(json.loads(payload))
    print(f"fleet benchmark: {args.devices} devices x {args.seconds:.0f} s of audio in real time, "
          f"one Mosquitto on loopback, {wall:.0f} s wall, {os.cpu_count()} CPU(s)"
          + (f", broker down for {args.down:g} s after {args.restart_after:g} s"
             if args.restart_after else ""))
    print(f"{'device':<8} {'made':>6} {'received':>9} {'missing':>8} {'repeated':>9} "
          f"{'order':>6} {'sent':>6} {'dropped':>8} {'CPU %':>6}")
    lost = 0
    for name in names:
        cycles = [r["cycle"] for r in received[name]]
        first = list(dict.fromkeys(cycles))
        missing = len(set(range(made[name])) - set(cycles))
        lost += missing
        counters = received[name][-1]["counters"] if received[name] else {}
        print(f"{name:<8} {made[name]:>6} {len(cycles):>9} {missing:>8} "
              f"{len(cycles) - len(first):>9} {'kept' if first == sorted(first) else 'BROKEN':>6}"
              f" {counters.get('mqtt_sent', 0):>6} {counters.get('mqtt_dropped', 0):>8} "
              f"{100 * cpu[name] / wall:6.1f}")
    print(f"broker CPU: {100 * broker_cpu / wall:.1f} % of one core ({broker_cpu:.2f} s)")
    print(f"messages lost within the queue bound: {lost}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
