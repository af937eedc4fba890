"""Decisions over MQTT: a sink beside the LEDs and the log, for fleets and Home Assistant.

Topics (``<prefix>`` is ``mqtt.topic_prefix``, ``<id>`` is ``mqtt.device_id`` or the host name):

* ``<prefix>/<id>/decision``: every decision, the same JSON object as the decision log line
  plus ``"device"`` (QoS 1, not retained).
* ``<prefix>/<id>/state``: the current state, retained: published when the shown emotion or a
  modality's label changes, and every ``mqtt.heartbeat_s`` (schema ``emotion-edge/state/1``).
* ``<prefix>/<id>/availability``: ``online`` (retained) once connected; ``offline`` when the
  service stops, and as the last will when it dies or loses the network.
* ``<discovery_prefix>/sensor/emotion_edge_<id>/<sensor>/config``: Home Assistant discovery,
  retained: emotion, confidence, speech emotion, face emotion, cycle latency, one device per Pi.

Only labels, scores, timings and counters leave the device: never audio or frames.

The loop never waits for the network.  :meth:`MqttSink.write` appends to a bounded queue
(``mqtt.queue_size``; when full the oldest message is dropped and counted) and returns; one
publisher thread owns the connection, sends in order with QoS 1 and removes a message only when
the broker acknowledged it.  After an outage it reconnects with exponential backoff and sends
what was queued, in order, before anything newer (at least once: a message whose
acknowledgement was lost in the outage is sent again).  Connection problems are logged once
per distinct cause, not once per attempt.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import importlib.metadata
import itertools
import json
import logging
import os
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import MqttConfig
from ..decision import Decision, ModalityReport
from ..errors import ConfigError
from ..lifecycle import Closeable
from ..optional import import_optional

if TYPE_CHECKING:
    from paho.mqtt.client import Client

__all__ = [
    "PAHO_HINT",
    "PASSWORD_CREDENTIAL",
    "KEY_CREDENTIAL",
    "STATE_SCHEMA",
    "MACHINE_TAG",
    "Topics",
    "BrokerSettings",
    "device_id",
    "read_password",
    "decision_payload",
    "state_payload",
    "discovery_messages",
    "new_client",
    "connect",
    "probe_broker",
    "MqttSink",
]

logger = logging.getLogger(__name__)

PAHO_HINT = "pip install 'emotion-edge[device]' (paho-mqtt 2.x)"
#: The systemd credential (``LoadCredential=mqtt-password:...``) holding the broker password.
PASSWORD_CREDENTIAL = "mqtt-password"
#: The systemd credential holding the TLS client key (``mqtt.key_file``), when one is set.
KEY_CREDENTIAL = "mqtt-client-key"
STATE_SCHEMA = "emotion-edge/state/1"
#: Messages handed to the client and not yet acknowledged by the broker.
MAX_INFLIGHT = 20
#: How long :meth:`MqttSink.close` waits for the queue to drain and ``offline`` to be sent.
CLOSE_TIMEOUT_S = 1.0
#: A connection the broker ends sooner than this after accepting it was not a working one: the
#: reconnect delay keeps growing instead of starting again from mqtt.retry_initial_s.
STABLE_SESSION_S = 10.0
#: A connection problem (or recovery) already logged is logged again only after this long, so a
#: broker that flaps between two causes does not fill the journal.
RETELL_S = 600.0
#: Cycle latencies kept for the state's ``cycle_p99_ms``.
LATENCY_WINDOW = 200
#: Other machines' tags remembered (each is warned about once), at most.
MAX_OTHER_MACHINES = 16


def _paho() -> Any:
    return import_optional("paho.mqtt.client", PAHO_HINT)


@dataclasses.dataclass(frozen=True)
class Topics:
    """The topics of one device."""

    prefix: str
    device: str

    @property
    def decision(self) -> str:
        return f"{self.prefix}/{self.device}/decision"

    @property
    def state(self) -> str:
        return f"{self.prefix}/{self.device}/state"

    @property
    def availability(self) -> str:
        return f"{self.prefix}/{self.device}/availability"


@dataclasses.dataclass(frozen=True)
class BrokerSettings:
    """Where the broker is and how to log in: shared by the sink, ``check`` and ``fleet``.

    ``password`` is read from a file or a systemd credential (:func:`read_password`), never
    from the TOML or the command line; ``repr`` hides it.
    """

    host: str
    port: int = 1883
    username: str = ""
    password: str | None = dataclasses.field(default=None, repr=False)
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    keepalive_s: int = 30
    connect_timeout_s: float = 5.0

    @classmethod
    def from_config(cls, config: MqttConfig, env: Mapping[str, str] | None = None
                    ) -> BrokerSettings:
        key = _credential(KEY_CREDENTIAL, env) if config.key_file else None
        return cls(host=config.host, port=config.port, username=config.username,
                   password=read_password(config.password_file, env=env), tls=config.tls,
                   ca_file=config.ca_file, cert_file=config.cert_file,
                   key_file=str(key) if key else config.key_file, keepalive_s=config.keepalive_s)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6, as in a URL
        return f"{host}:{self.port}{' (TLS)' if self.tls else ''}"


#: What :func:`_machine_tag` gives; anything else in a state's ``machine`` is not one.
MACHINE_TAG = re.compile(r"[0-9a-f]{8}")


def _machine_tag() -> str:
    """8 hex digits of this machine's systemd machine id (the host name when it has none)."""
    try:
        ident = Path("/etc/machine-id").read_text(encoding="ascii").strip()
    except OSError:
        ident = ""
    return hashlib.sha256((ident or socket.gethostname()).encode()).hexdigest()[:8]


#: Host names that Raspberry Pi OS and Debian images start with: many devices share them.
DEFAULT_HOST_NAMES = ("raspberrypi", "localhost", "debian")


def device_id(configured: str = "") -> str:
    """``configured``, or this machine's host name made into one topic level."""
    if configured:
        return configured
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", socket.gethostname().split(".")[0]).strip("-")
    if name in DEFAULT_HOST_NAMES:
        logger.warning("MQTT: this device is called %r, the image's default host name; every "
                       "Pi left so shares its topics and fleet row: set mqtt.device_id (or the "
                       "host name) to something unique", name)
    return name[:64] or "emotion-edge"


def _credential(name: str, env: Mapping[str, str] | None) -> Path | None:
    """``$CREDENTIALS_DIRECTORY/<name>`` when systemd passed that credential (LoadCredential=)."""
    folder = (os.environ if env is None else env).get("CREDENTIALS_DIRECTORY")
    path = Path(folder) / name if folder else None
    return path if path is not None and path.is_file() else None


def read_password(password_file: str, env: Mapping[str, str] | None = None, *,
                  option: str | None = None) -> str | None:
    """The broker password: the systemd credential ``mqtt-password`` when the service runs with
    one (``$CREDENTIALS_DIRECTORY``), else the first line of ``password_file``; ``None`` when
    neither is set.  ``option``: the command-line option that named the file, when not the
    configuration (``fleet --password-file``)."""
    path = _credential(PASSWORD_CREDENTIAL, env)
    if path is None:
        if not password_file:
            return None
        path = Path(password_file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a NUL in the path
        why = getattr(exc, "strerror", exc) or exc
        if option is not None:  # a command of a shell, not the service: no credential
            raise ConfigError(f"cannot read the MQTT password from {path} ({why}); check "
                              f"{option}") from None
        raise ConfigError(
            f"cannot read the MQTT password from {path} ({why}); the service reads it as the "
            f"credential {PASSWORD_CREDENTIAL} that install-service sets up, a shell needs read "
            f"access to mqtt.password_file") from None
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise ConfigError(f"the MQTT password file {path} is empty; write the password on its "
                          f"first line")
    return lines[0]


# -- payloads ------------------------------------------------------------------------------------


def decision_payload(decision: Decision, device: str) -> dict[str, Any]:
    """What goes to ``<prefix>/<id>/decision``: the decision log record plus the device id."""
    return {**decision.to_dict(), "device": device}


def _modality(report: ModalityReport) -> str:
    return report.label if report.present and report.label else report.state


def state_payload(decision: Decision, device: str, *, since: float, cycle_p99_ms: float,
                  machine: str = "") -> dict[str, Any]:
    """What goes, retained, to ``<prefix>/<id>/state``.  ``machine`` (8 hex digits of a hash
    of the machine id) tells two machines publishing under one device id apart."""
    return {
        "schema": STATE_SCHEMA,
        "device": device,
        "machine": machine,
        "time": round(decision.time, 3),
        "cycle": decision.cycle,
        "label": decision.label,
        "confidence": round(float(decision.confidence), 4),
        "since": round(since, 3),
        "speech": _modality(decision.speech),
        "face": _modality(decision.face),
        "level": decision.level,
        "cycle_ms": round(float(decision.latency_ms.get("total", 0.0)), 3),
        "cycle_p99_ms": round(cycle_p99_ms, 3),
        "counters": dict(decision.counters),
    }


#: Home Assistant sensors: object id -> (name, value template, extra discovery fields).
_SENSORS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("emotion", "Emotion", "{{ value_json.label or 'none' }}", {"icon": "mdi:emoticon-outline"}),
    ("confidence", "Confidence", "{{ (value_json.confidence * 100) | round(0) }}",
     {"unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:percent"}),
    ("speech_emotion", "Speech emotion", "{{ value_json.speech }}", {"icon": "mdi:microphone"}),
    ("face_emotion", "Face emotion", "{{ value_json.face }}", {"icon": "mdi:face-recognition"}),
    ("cycle_latency", "Cycle latency p99", "{{ value_json.cycle_p99_ms }}",
     {"unit_of_measurement": "ms", "device_class": "duration", "state_class": "measurement",
      "entity_category": "diagnostic"}),
)


def _version() -> str:
    try:
        return importlib.metadata.version("emotion-edge")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def discovery_messages(topics: Topics, discovery_prefix: str) -> list[tuple[str, str]]:
    """Home Assistant MQTT discovery: ``(topic, JSON config)`` per sensor, one device per Pi."""
    if not discovery_prefix:
        return []
    # The topic prefix belongs in the node id: two groups (prefixes) may each have a "kitchen".
    # For the default prefix this is emotion_edge_<id>, as it always was.
    node = re.sub(r"\W", "_", f"{topics.prefix}_{topics.device}", flags=re.ASCII)
    device = {"identifiers": [node], "name": f"emotion-edge {topics.device}",
              "manufacturer": "emotion-edge", "model": "speech + face emotion appliance",
              "sw_version": _version()}
    out = []
    for object_id, name, template, extra in _SENSORS:
        config = {
            "name": name,
            "unique_id": f"{node}_{object_id}",
            "state_topic": topics.state,
            "value_template": template,
            "availability_topic": topics.availability,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
            **extra,
        }
        out.append((f"{discovery_prefix}/sensor/{node}/{object_id}/config",
                    json.dumps(config, separators=(",", ":"))))
    return out


# -- connecting ----------------------------------------------------------------------------------


def new_client(settings: BrokerSettings, client_id: str, *,
               will_topic: str | None = None) -> Client:
    """A paho-mqtt 2.x client (MQTT 3.1.1, clean session) with credentials, TLS and last will."""
    mqtt = _paho()
    client: Client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                 protocol=mqtt.MQTTv311, clean_session=True)
    client.connect_timeout = settings.connect_timeout_s
    client.max_inflight_messages_set(MAX_INFLIGHT)
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        for path, where in ((settings.ca_file, "mqtt.ca_file, fleet --ca-file"),
                            (settings.cert_file, "mqtt.cert_file, fleet --cert-file"),
                            (settings.key_file, "mqtt.key_file, fleet --key-file")):
            if path and not Path(path).is_file():
                raise ConfigError(f"MQTT TLS file {path} not found ({where})")
        try:
            context = ssl.create_default_context(cafile=settings.ca_file or None)
            if settings.cert_file:
                context.load_cert_chain(settings.cert_file, settings.key_file or None)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ConfigError(f"MQTT TLS files cannot be used ({exc}); check mqtt.ca_file, "
                              f"mqtt.cert_file and mqtt.key_file") from None
        client.tls_set_context(context)
    if will_topic is not None:
        client.will_set(will_topic, "offline", qos=1, retain=True)
    return client


def _describe_error(exc: BaseException, settings: BrokerSettings) -> str:
    where = settings.address
    if isinstance(exc, ssl.SSLCertVerificationError):
        if "mismatch" in str(exc.verify_message):  # the CA is right, the name is not
            return (f"TLS: the broker's certificate is not for {settings.host!r} "
                    f"({exc.verify_message}); connect by the name it was issued for (mqtt.host, "
                    f"fleet --broker)")
        return (f"TLS: the broker {where} has a certificate this device does not trust "
                f"({exc.verify_message}); set mqtt.ca_file to the CA that signed it")
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {where} failed ({exc.reason or exc}); is it a TLS port?"
    if settings.tls and isinstance(exc, ConnectionResetError):
        return f"{where} reset the TLS connection; is it a TLS port (usually 8883)?"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection to {where} refused: no broker listens there"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the broker host {settings.host!r} ({exc.strerror})"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"no answer from {where} within {settings.connect_timeout_s:g} s"
    if isinstance(exc, OSError):
        return f"cannot reach {where}: {exc.strerror or exc}"
    return f"cannot connect to {where}: {exc}"


def _describe_refusal(reason: Any, settings: BrokerSettings) -> str:
    text = str(reason)
    refused = getattr(reason, "value", None) in (4, 5, 134, 135) or "authori" in text.lower() \
        or "password" in text.lower()
    if refused and not settings.username:
        return (f"the broker {settings.address} refused anonymous access ({text}); give a user "
                f"name and password file (mqtt.username and mqtt.password_file; fleet "
                f"--username and --password-file)")
    if refused:
        return (f"the broker {settings.address} refused the credentials ({text}); check "
                f"the user name (mqtt.username, fleet --username) and the password file")
    return f"the broker {settings.address} refused the connection ({text})"


def connect(client: Client, settings: BrokerSettings) -> str | None:
    """Connect and wait for the broker's answer; ``None`` when accepted, else one line saying
    why not (unreachable, TLS, credentials).  The caller drives ``client.loop`` afterwards."""
    answers: list[Any] = []

    def on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        answers.append(reason)

    client.on_connect = on_connect
    try:
        client.connect(settings.host, settings.port, keepalive=settings.keepalive_s)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        return _describe_error(exc, settings)
    deadline = time.monotonic() + settings.connect_timeout_s
    while not answers and time.monotonic() < deadline:
        if client.loop(timeout=0.05) != 0 and not answers:
            hint = "" if settings.tls else "; if it is a TLS port, set mqtt.tls (fleet --tls)"
            return f"{settings.address} closed the connection before answering{hint}"
    if not answers:
        return f"no answer from {settings.address} within {settings.connect_timeout_s:g} s"
    if answers[0].is_failure:
        return _describe_refusal(answers[0], settings)
    return None


def _discard(client: Client) -> None:
    """Close a client's socket without waiting for anything."""
    with contextlib.suppress(Exception):
        client.disconnect()
        client.loop(timeout=0.0)
    sock = client.socket()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


def probe_broker(settings: BrokerSettings) -> str | None:
    """For ``emotion-edge check``: ``None`` when the broker is reachable and accepts the
    credentials, else the reason on one line."""
    try:
        client = new_client(settings, f"emotion-edge-check-{os.getpid()}")
    except ConfigError as exc:
        return str(exc)
    try:
        return connect(client, settings)
    finally:
        _discard(client)


# -- the sink ------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Message:
    seq: int
    topic: str
    retain: bool
    build: Callable[[], str]
    acked: bool = False
    dropped: bool = False  # pushed out of a full queue, perhaps while in flight
    _payload: str | None = None

    def payload(self) -> str:
        if self._payload is None:
            self._payload = self.build()
        return self._payload


class MqttSink(Closeable):
    """Publishes decisions, retained state and availability; see the module docstring.

    ``client_factory`` makes a fresh client for each connection attempt (default:
    :func:`new_client` with ``settings`` and the last will); the publisher thread starts at once.
    """

    def __init__(
        self,
        config: MqttConfig,
        *,
        settings: BrokerSettings | None = None,
        client_factory: Callable[[], Client] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.device = device_id(config.device_id)
        self.topics = Topics(config.topic_prefix, self.device)
        self.settings = settings if settings is not None else BrokerSettings.from_config(config, env)
        # Unique per machine even when two Pis keep the default host name: a broker drops the
        # older of two connections with one client id, and both would reconnect for ever.
        self.machine = _machine_tag()
        client_id = f"emotion-edge-{self.device}-{self.machine}"
        self._factory = client_factory or (
            lambda: new_client(self.settings, client_id, will_topic=self.topics.availability))
        _discard(self._factory())  # bad TLS files fail here, at start, with one line
        self._discovery = discovery_messages(self.topics, config.discovery_prefix)
        self._queue: collections.deque[_Message] = collections.deque()
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self._state_key: tuple[Any, ...] | None = None
        self._shown: Any = object()
        self._since = 0.0
        self._last_state = float("-inf")
        self.sent = 0
        self.dropped = 0
        self.disconnects = 0
        self.connected = False
        self._stop = threading.Event()
        self._closing = threading.Event()
        self._last_problem: str | None = None
        self._told: dict[str, float] = {}  # cause ("" = connected) -> when it was last logged
        #: Machines seen publishing live under this device id (other than this one).
        self.other_machines: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._thread.start()

    # -- the loop's side: cheap, never blocks on the network ---------------------------------

    @property
    def counters(self) -> dict[str, int]:
        return {"mqtt_sent": self.sent, "mqtt_dropped": self.dropped,
                "mqtt_disconnects": self.disconnects}

    @property
    def queued(self) -> int:
        """Messages not yet acknowledged by the broker."""
        return len(self._queue)

    def write(self, decision: Decision) -> None:
        if self._closing.is_set():
            return
        self._latencies.append(float(decision.latency_ms.get("total", 0.0)))
        device, machine = self.device, self.machine
        messages = [(self.topics.decision, False,
                     lambda: json.dumps(decision_payload(decision, device), separators=(",", ":")))]
        key = (decision.label, _modality(decision.speech), _modality(decision.face))
        if decision.label != self._shown:
            self._shown, self._since = decision.label, decision.time
        elapsed = decision.time - self._last_state
        # A clock stepped back (NTP on a Pi with no real-time clock) is due too, or the
        # retained state would wait for the clock to catch up again.
        if key != self._state_key or not 0 <= elapsed < self.config.heartbeat_s:
            self._state_key, self._last_state = key, decision.time
            since = self._since
            latencies = sorted(self._latencies)
            p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
            messages.append((self.topics.state, True, lambda: json.dumps(
                state_payload(decision, device, since=since, cycle_p99_ms=p99, machine=machine),
                separators=(",", ":"))))
        self._enqueue(messages)

    def _enqueue(self, messages: list[tuple[str, bool, Callable[[], str]]]) -> None:
        with self._lock:
            for topic, retain, build in messages:
                if len(self._queue) >= self.config.queue_size:
                    oldest = self._queue.popleft()
                    if not oldest.acked:
                        oldest.dropped = True
                        self.dropped += 1
                self._queue.append(_Message(next(self._seq), topic, retain, build))

    def flush(self, timeout_s: float) -> bool:
        """Wait until the broker acknowledged everything queued; True if it did in time."""
        deadline = time.monotonic() + timeout_s
        while self._queue and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue

    # -- the publisher thread --------------------------------------------------------------

    def _problem(self, text: str | None) -> None:
        """Log a connection problem once per distinct cause (and recovery once); a broker that
        flaps between two causes has each told again only after :data:`RETELL_S`."""
        if text == self._last_problem:
            if text is not None:
                logger.debug("MQTT: %s", text)
            return
        now = time.monotonic()
        told = self._told.get(text or "")
        self._last_problem = text
        if told is not None and now - told < RETELL_S:
            logger.debug("MQTT: %s (again)", text or "connected")
            return
        if len(self._told) >= 64:  # bounded: causes carry addresses and messages
            self._told.clear()
        self._told[text or ""] = now
        if text is None:
            logger.info("MQTT: connected to %s as %s", self.settings.address, self.device)
        else:
            logger.warning("MQTT: %s; decisions go on and are queued (at most %d messages), "
                           "retrying every %g s at most", text, self.config.queue_size,
                           self.config.retry_max_s)

    def _run(self) -> None:
        delay = self.config.retry_initial_s
        brief = 0  # sessions in a row that the broker ended soon after accepting them
        while not self._stop.is_set() and not self._closing.is_set():
            try:
                client = self._factory()
            except Exception as exc:  # a broken client must not take the loop down
                self._problem(f"cannot create the MQTT client ({exc})")
                client = None
            error = "no client" if client is None else connect(client, self.settings)
            if client is not None and error is None:
                if not brief:
                    self._problem(None)
                began = time.monotonic()
                lost = self._session(client)
                _discard(client)
                if not lost:
                    return
                self.disconnects += 1
                brief = brief + 1 if time.monotonic() - began < STABLE_SESSION_S else 0
                if not brief:  # a working session ended: its outage is news, whatever came before
                    self._told.clear()
                if brief >= 2:
                    # Accepted, then dropped at once, again and again: typically another
                    # connection with this client id, which the broker prefers.  Back off as
                    # for a refusal, and say it once, not at every reconnect.
                    self._problem(
                        f"the broker {self.settings.address} drops the connection soon after "
                        f"accepting it: is another device connected with the same client id "
                        f"(same mqtt.device_id and /etc/machine-id, as on a cloned SD card)?")
                else:
                    self._problem(f"connection to {self.settings.address} lost")
                if not brief:
                    delay = self.config.retry_initial_s
            else:
                if client is not None:
                    self._problem(error)
                    _discard(client)
            wait = delay * random.uniform(0.8, 1.0)  # a fleet does not reconnect in lockstep
            delay = min(delay * 2, self.config.retry_max_s)
            if self._closing.wait(wait):
                return

    def _session(self, client: Client) -> bool:
        """Send while connected; True if the connection was lost, False when closing."""
        inflight: dict[int, _Message] = {}

        def on_publish(_c: Any, _u: Any, mid: int, _reason: Any, _p: Any) -> None:
            message = inflight.pop(mid, None)
            if message is not None:
                self._acked(message)

        client.on_publish = on_publish
        client.on_message = self._heard_own_topic
        if self._closing.is_set() or self._stop.is_set():
            # A connect that finished after close() gave up waiting: say offline, never a
            # retained "online" that no last will would ever correct (a clean disconnect
            # suppresses the will).
            self._goodbye(client)
            return False
        client.publish(self.topics.availability, "online", qos=1, retain=True)
        # Its own state topic: a live state from another machine means two devices share this
        # id (their decisions mix in Home Assistant and fleet, and each one's stop marks the
        # other offline).
        client.subscribe(self.topics.state, qos=0)
        for topic, payload in self._discovery:
            client.publish(topic, payload, qos=1, retain=True)
        self.connected = True
        try:
            with self._lock:
                next_seq = self._queue[0].seq if self._queue else -1
            closing_since: float | None = None
            while not self._stop.is_set():
                if self._closing.is_set():
                    closing_since = closing_since or time.monotonic()
                    if not self._queue or time.monotonic() - closing_since > CLOSE_TIMEOUT_S:
                        self._goodbye(client)
                        return False
                with self._lock:
                    batch: list[_Message] = []
                    room = MAX_INFLIGHT - len(inflight)
                    if self._queue and room > 0:
                        start = max(0, next_seq - self._queue[0].seq)
                        batch = list(itertools.islice(self._queue, start, start + room))
                for message in batch:
                    info = client.publish(message.topic, message.payload(), qos=1,
                                          retain=message.retain)
                    if info.rc != 0:
                        return True
                    inflight[info.mid] = message
                    next_seq = message.seq + 1
                if client.loop(timeout=0.0 if batch else 0.05) != 0:
                    return True
            self._goodbye(client)  # stopped without draining: still offline, not "online"
            return False
        finally:
            self.connected = False

    def _heard_own_topic(self, _c: Any, _u: Any, message: Any) -> None:
        if message.retain:
            # Kept by the broker from before: perhaps a machine that had this id and is gone.
            return
        try:
            other = json.loads(message.payload).get("machine")
        except (ValueError, AttributeError, RecursionError):
            return
        if (isinstance(other, str) and MACHINE_TAG.fullmatch(other) and other != self.machine
                and other not in self.other_machines
                and len(self.other_machines) < MAX_OTHER_MACHINES):
            self.other_machines.add(other)
            logger.warning("MQTT: another machine (%s; this one is %s) publishes as device %r "
                           "under %s: the two mix their decisions in Home Assistant and fleet, "
                           "and each one's stop marks the other offline; give each its own "
                           "mqtt.device_id", other, self.machine, self.device,
                           self.topics.state)

    def _acked(self, message: _Message) -> None:
        with self._lock:
            if not message.acked:
                message.acked = True
                self.sent += 1
                if message.dropped:  # in flight when the queue let it go, yet delivered
                    message.dropped = False
                    self.dropped -= 1
            while self._queue and self._queue[0].acked:
                self._queue.popleft()

    def _goodbye(self, client: Client) -> None:
        """A clean stop: ``offline`` (retained) instead of the last will, then disconnect."""
        info = client.publish(self.topics.availability, "offline", qos=1, retain=True)
        deadline = time.monotonic() + CLOSE_TIMEOUT_S / 2
        while not info.is_published() and time.monotonic() < deadline:
            if client.loop(timeout=0.05) != 0:
                break
        client.disconnect()
        client.loop(timeout=0.05)

    def _close(self) -> None:
        self._closing.set()
        # At most the drain and the goodbye (1.5 s); a connect hanging on an unresponsive
        # address is left to the daemon thread (the service must stop within TimeoutStopSec).
        self._thread.join(timeout=CLOSE_TIMEOUT_S * 2)
        self._stop.set()
        if self._queue:
            # Already told when the broker went away; a warning only if it was there and slow.
            logger.log(logging.INFO if self._last_problem else logging.WARNING,
                       "MQTT: %d message(s) not delivered at stop", len(self._queue))

    def __repr__(self) -> str:
        return (f"<MqttSink {self.settings.address} device={self.device} "
                f"connected={self.connected} queued={self.queued} sent={self.sent} "
                f"dropped={self.dropped} closed={self.closed}>")
