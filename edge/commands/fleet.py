"""``emotion-edge fleet``: every device publishing under a prefix on one broker, as a live table.

Subscribes to ``<prefix>/+/decision``, ``<prefix>/+/state`` and ``<prefix>/+/availability``
(the retained state and availability arrive at once, so devices that are quiet or offline show
too) and prints, every ``--interval`` seconds, one row per device: the shown emotion, when it
last changed, the cycle latency p99 (over the decisions this view received, else the device's
own figure from its state), the messages its MQTT queue dropped, and whether it is online.
``--json`` prints the same as one JSON object per line.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from ..outputs.log_reader import finite_number, printable
from ..outputs.mqtt import MACHINE_TAG
from . import _argument

__all__ = ["register", "FleetView", "DeviceRow"]

logger = logging.getLogger(__name__)

#: Cycle latencies kept per device for the p99.
LATENCY_WINDOW = 200
#: Devices shown at most: anyone may publish under the prefix, and each name costs a row.
MAX_DEVICES = 1000
#: Latencies this view must have received before its own p99 replaces the device's (a "p99" of
#: two decisions says little).
MIN_LATENCIES = 20
#: Longest label or device name shown, in characters.
MAX_NAME = 40


#: Machines kept per device (more than one is already the warning).
MAX_MACHINES = 8
#: Two machines are told as publishing at once when each was seen within this of the other.
MACHINE_WINDOW_S = 600.0


def _printable(text: str) -> str:
    """``text`` safe for a terminal and a table row (:func:`printable`, no newline either), cut
    at :data:`MAX_NAME`."""
    clean = printable(text)
    return clean if len(clean) <= MAX_NAME else clean[:MAX_NAME - 3] + "..."


def _label(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"label {value!r} is not a string")
    return value



@dataclasses.dataclass
class DeviceRow:
    device: str
    state: str | None = None
    confidence: float | None = None
    last_change: float | None = None  # wall time the shown emotion last changed
    online: bool | None = None  # None: no availability message seen
    drops: int = 0
    decisions: int = 0
    last_seen: float | None = None
    state_p99_ms: float | None = None
    #: Machines (``machine`` of live states) seen publishing as this device: more than one
    #: means two devices share its id.
    machines: dict[str, float] = dataclasses.field(default_factory=dict)  # -> last seen
    latencies: collections.deque[float] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=LATENCY_WINDOW))

    @property
    def latency_p99_ms(self) -> float | None:
        if self.latencies and (len(self.latencies) >= MIN_LATENCIES
                               or self.state_p99_ms is None):
            ordered = sorted(self.latencies)
            return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        return self.state_p99_ms

    def to_dict(self) -> dict[str, Any]:
        p99 = self.latency_p99_ms
        return {"device": self.device, "state": self.state, "confidence": self.confidence,
                "last_change": self.last_change,
                "latency_p99_ms": None if p99 is None else round(p99, 3), "drops": self.drops,
                "online": self.online, "decisions": self.decisions, "last_seen": self.last_seen,
                "machines": self.machines_now()}

    def machines_now(self) -> list[str]:
        """The machines seen within :data:`MACHINE_WINDOW_S` of the latest: a Pi re-imaged
        while the view runs is one machine after another, not two at once."""
        latest = max(self.machines.values(), default=0.0)
        return sorted(m for m, seen in self.machines.items()
                      if latest - seen <= MACHINE_WINDOW_S)


class FleetView:
    """The devices under ``prefix``, updated from MQTT messages (thread-safe)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.rows: dict[str, DeviceRow] = {}
        self.not_shown: set[str] = set()  # beyond MAX_DEVICES (bounded: counted up to it)
        self.broker_lost_since: float | None = None  # wall time the view's own link went down
        self._lock = threading.Lock()

    @property
    def topics(self) -> list[str]:
        return [f"{self.prefix}/+/{kind}" for kind in ("decision", "state", "availability")]

    def update(self, topic: str, payload: bytes, *, retained: bool = False) -> None:
        """One message; ``retained``: kept by the broker from before the view subscribed."""
        parts = topic.split("/")
        if len(parts) < 3 or "/".join(parts[:-2]) != self.prefix:
            return
        device, kind = parts[-2], parts[-1]
        with self._lock:
            if device not in self.rows and len(self.rows) >= MAX_DEVICES:
                if not self.not_shown:
                    logger.warning("more than %d devices publish under %s; the others are "
                                   "counted, not shown", MAX_DEVICES, self.prefix)
                if len(self.not_shown) < MAX_DEVICES:
                    self.not_shown.add(device)
                return
            row = self.rows.setdefault(device, DeviceRow(device))
            if kind == "availability":
                row.online = payload == b"online"
                return
            try:
                data = json.loads(payload)
                if not isinstance(data, dict):
                    return
                if kind == "decision":
                    self._decision(row, data)
                elif kind == "state":
                    self._state(row, data)
                    machine = data.get("machine")
                    # Live only: a retained state may be a machine that had this id and is gone.
                    if (not retained and isinstance(machine, str) and MACHINE_TAG.fullmatch(machine)
                            and (machine in row.machines or len(row.machines) < MAX_MACHINES)):
                        row.machines[machine] = time.monotonic()
            except (ValueError, TypeError, KeyError, AttributeError, OverflowError,
                    RecursionError):  # [[[[... nested deeper than the JSON parser goes
                logger.debug("skipping a malformed %s message from %s", kind, device)

    @staticmethod
    def _show(row: DeviceRow, label: str | None, confidence: float, at: float,
              since: float | None = None) -> None:
        if row.state != label or row.last_change is None:
            row.last_change = since if since is not None else at
        row.state, row.confidence = label, confidence
        row.last_seen = max(row.last_seen or at, at)

    def _decision(self, row: DeviceRow, data: dict[str, Any]) -> None:
        latency = finite_number(data["latency_ms"]["total"], high=1e6)
        counters = data.get("counters", {})
        drops = int(finite_number(counters.get("mqtt_dropped", row.drops), high=1e15))
        confidence = finite_number(data["confidence"], high=1.0)
        at = finite_number(data["time"])
        row.decisions += 1
        row.latencies.append(latency)
        row.drops = drops
        self._show(row, _label(data["label"]), confidence, at)

    def _state(self, row: DeviceRow, data: dict[str, Any]) -> None:
        p99 = finite_number(data["cycle_p99_ms"], high=1e6)
        counters = data.get("counters", {})
        drops = int(finite_number(counters.get("mqtt_dropped", 0), high=1e15))
        confidence = finite_number(data["confidence"], high=1.0)
        at, since = finite_number(data["time"]), finite_number(data["since"])
        row.state_p99_ms = p99
        row.drops = max(row.drops, drops)
        if row.last_seen is None or at >= row.last_seen:
            self._show(row, _label(data["label"]), confidence, at, since=since)
            row.last_change = since

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            lost = self.broker_lost_since
            devices = [self.rows[d].to_dict() for d in sorted(self.rows)]
            if lost is not None:  # what the broker last said, not known now
                for row in devices:
                    row["online"] = None
            return {"time": round(time.time(), 3), "broker_lost_since": lost,
                    "devices": devices, "devices_not_shown": len(self.not_shown)}


def format_table(snapshot: dict[str, Any], now: float | None = None) -> str:
    now = time.time() if now is None else now
    head = f"{'device':<20} {'state':<10} {'last change':<20} {'p99 ms':>8} {'drops':>6}  online"
    lines = [head, "-" * len(head)]
    for row in snapshot["devices"]:
        change = "-"
        if row["last_change"] is not None:
            when = dt.datetime.fromtimestamp(row["last_change"]).strftime("%H:%M:%S")
            change = f"{when} ({_ago(now - row['last_change'])})"
        p99 = "-" if row["latency_p99_ms"] is None else f"{row['latency_p99_ms']:.1f}"
        online = {True: "yes", False: "NO", None: "?"}[row["online"]]
        lines.append(f"{_printable(row['device']):<20} {_printable(row['state'] or 'none'):<10} "
                     f"{change:<20} {p99:>8} {row['drops']:>6}  {online}")
    if not snapshot["devices"]:
        lines.append("(no device has published yet)")
    for row in snapshot["devices"]:
        if len(row.get("machines", ())) > 1:
            lines.append(f"warning: {len(row['machines'])} machines ({', '.join(row['machines'])}) "
                         f"publish as {_printable(row['device'])}: their rows mix; give each "
                         f"its own mqtt.device_id")
    if snapshot.get("devices_not_shown"):
        lines.append(f"(and {snapshot['devices_not_shown']} more devices, not shown: at most "
                     f"{MAX_DEVICES})")
    lost = snapshot.get("broker_lost_since")
    if lost is not None:
        when = dt.datetime.fromtimestamp(lost).strftime("%H:%M:%S")
        lines.append(f"broker connection lost at {when} ({_ago(now - lost)}); reconnecting: "
                     f"the rows are as they were then")
    return "\n".join(lines)


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.0f} h ago"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "fleet",
        help="live table of every device publishing to an MQTT broker",
        description="Subscribe to all devices under the topic prefix and print, every "
        "--interval seconds, device, state, last change, latency p99, drops and online. The "
        "password is read from --password-file, never from the command line.",
    )
    p.add_argument("--broker", required=True, metavar="HOST", help="broker host name or address")
    p.add_argument("--port", type=_port, default=None,
                   help="broker port (1883, 8883 with --tls)")
    p.add_argument("--prefix", default="emotion-edge", help="topic prefix (mqtt.topic_prefix)")
    p.add_argument("--username", default="", help="user name at the broker")
    p.add_argument("--password-file", default="", metavar="FILE",
                   help="file whose first line is the password")
    p.add_argument("--tls", action="store_true", help="connect with TLS")
    p.add_argument("--ca-file", default="", metavar="PEM", help="CA of the broker's certificate")
    p.add_argument("--cert-file", default="", metavar="PEM", help="client certificate")
    p.add_argument("--key-file", default="", metavar="PEM", help="client certificate's key")
    p.add_argument("--json", action="store_true", help="one JSON object per refresh")
    p.add_argument("--interval", type=_seconds(0.05, 3600.0), default=1.0,
                   help="seconds between refreshes (0.05 to 3600)")
    p.add_argument("--duration", type=_seconds(0.0, 10 * 365 * 86400.0), default=0.0,
                   help="stop after this many seconds (default 0: until Ctrl-C)")
    p.add_argument("--once", action="store_true",
                   help="collect for one interval (retained state arrives at once), print, stop")
    p.set_defaults(func=_main)


def _port(text: str) -> int:
    return int(_argument(text, int, lambda v: 1 <= v <= 65535, "is not a port (1 to 65535)"))


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        return float(_argument(text, float, lambda v: low <= v <= high,  # NaN fails too
                               f"is not between {low:g} and {high:g} s"))

    return parse


def _main(args: argparse.Namespace) -> int:
    from ..errors import ConfigError, EmotionEdgeError
    from ..outputs.mqtt import BrokerSettings, connect, new_client, read_password

    if args.password_file and not args.username:
        raise ConfigError("--password-file needs --username")
    if (args.ca_file or args.cert_file or args.key_file) and not args.tls:
        raise ConfigError("--ca-file/--cert-file/--key-file are used only with --tls")
    if bool(args.cert_file) != bool(args.key_file):
        raise ConfigError("--cert-file and --key-file go together; give both or neither")
    from ..config import MqttConfig, check_broker_host

    check_broker_host(args.broker, "--broker", "--port")

    try:
        prefix = MqttConfig(topic_prefix=args.prefix.rstrip("/")).topic_prefix  # its one rule set
    except ConfigError as exc:  # named as the option it came from
        raise ConfigError(str(exc).replace("mqtt.topic_prefix", "--prefix")) from None
    settings = BrokerSettings(
        host=args.broker, port=args.port or (8883 if args.tls else 1883), username=args.username,
        password=read_password(args.password_file, env={}, option="--password-file"),
        tls=args.tls, ca_file=args.ca_file,
        cert_file=args.cert_file, key_file=args.key_file)
    view = FleetView(prefix)
    client = new_client(settings, f"emotion-edge-fleet-{id(view):x}")

    def on_message(_c: Any, _u: Any, message: Any) -> None:
        try:
            view.update(message.topic, message.payload, retained=bool(message.retain))
        except Exception as exc:  # an exception here would end paho's thread: nothing arrives
            logger.debug("skipping a message on %s: %s", message.topic, exc)

    def on_connect(c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            c.subscribe([(topic, 1) for topic in view.topics])
            view.broker_lost_since = None

    def on_disconnect(_c: Any, _u: Any, _f: Any, _reason: Any, _p: Any) -> None:
        if view.broker_lost_since is None:
            view.broker_lost_since = time.time()

    client.on_message = on_message
    problem = connect(client, settings)
    if problem is not None:
        raise EmotionEdgeError(problem)
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.subscribe([(topic, 1) for topic in view.topics])
    client.reconnect_delay_set(1, 30)
    client.loop_start()
    # Ctrl-C (or SIGINT from a script) ends the view after one last picture.  It sets an event
    # rather than raising KeyboardInterrupt anywhere: raised between taking the view's lock and
    # entering its `with` block, the interrupt would leave the lock held and the view hung.
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        _show(view, args, sys.stdout, stop=stop)
    finally:
        signal.signal(signal.SIGINT, previous)
        client.disconnect()
        client.loop_stop()
    return 0


def _show(view: FleetView, args: argparse.Namespace, out: TextIO,
          clock: Callable[[], float] = time.monotonic,
          stop: threading.Event | None = None) -> None:
    start = clock()
    # Redrawn in place on a terminal that can clear; a dumb one (Emacs' shell, a screen
    # reader's console) would show the escape codes as text, so it gets the tables one by one.
    tty = out.isatty() and not args.json and os.environ.get("TERM", "") not in ("dumb", "")
    stop = stop or threading.Event()
    while True:
        stopped = stop.wait(args.interval)
        snapshot = view.snapshot()
        done = stopped or args.once or (args.duration and clock() - start >= args.duration)
        _print(snapshot, args, out, clear=tty)
        if done:
            return


def _print(snapshot: dict[str, Any], args: argparse.Namespace, out: TextIO, *,
           clear: bool = False) -> None:
    if args.json:
        out.write(json.dumps(snapshot, separators=(",", ":")) + "\n")
    else:
        out.write(("\x1b[H\x1b[2J" if clear else "") + format_table(snapshot) + "\n\n")
    out.flush()
