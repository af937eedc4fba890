"""MQTT without a broker: the [mqtt] section, the password's sources, the exact payloads, Home
Assistant discovery, the service drop-in, the fleet table, and the counters in decisions and
``inspect``.  (tests/test_mqtt.py runs the sink against a real Mosquitto.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from edge.config import Config, MqttConfig, load_config
from edge.decision import Decision, ModalityReport
from edge.errors import ConfigError
from edge.outputs.mqtt import (
    BrokerSettings,
    Topics,
    decision_payload,
    device_id,
    discovery_messages,
    read_password,
    state_payload,
)

T0 = 1_764_500_000.0


def decision(cycle: int = 3, label: str | None = "happy") -> Decision:
    return Decision(
        cycle=cycle, time=T0, media_s=1.5, label=label, confidence=0.71234,
        fused={"happy": 0.71234, "sad": 0.28766},
        speech=ModalityReport("ok", "happy", {"happy": 0.8, "sad": 0.2}),
        face=ModalityReport("no_face"),
        latency_ms={"speech": 2.0, "fusion": 0.05, "total": 2.25}, overrun=False, level="full",
        counters={"overruns": 0, "mqtt_sent": 5, "mqtt_dropped": 0, "mqtt_disconnects": 0})


# -- configuration -------------------------------------------------------------------------------


def test_mqtt_is_off_by_default_and_needs_a_host_when_on():
    assert load_config(None, env={}).mqtt.enabled is False
    with pytest.raises(ConfigError, match="mqtt.host"):
        load_config(None, env={}, overrides={("mqtt", "enabled"): "true"})
    config = load_config(None, env={}, overrides={
        ("mqtt", "enabled"): "true", ("mqtt", "host"): "broker.lan", ("mqtt", "port"): "8883"})
    assert (config.mqtt.host, config.mqtt.port) == ("broker.lan", 8883)
    # Not from the environment (e.g. /etc/default/emotion-edge): install-service derives the
    # unit's network allow-list and credentials from the file, which a variable would bypass.
    with pytest.raises(ConfigError, match="EMOTION_EDGE_MQTT_HOST.*configuration file only"):
        load_config(None, env={"EMOTION_EDGE_MQTT_HOST": "broker.lan"})


@pytest.mark.parametrize(("values", "message"), [
    ({"device_id": "kitchen/pi"}, "letters, digits"),
    ({"topic_prefix": "home/#"}, "wildcards"),
    ({"discovery_prefix": "/ha"}, "leading or trailing"),
    ({"cert_file": "/c.pem", "tls": True}, "go together"),
    ({"ca_file": "/ca.pem"}, "only with TLS"),
    ({"password_file": "/p"}, "needs mqtt.username"),
    ({"port": 0}, "too small"),
    ({"queue_size": 0}, "too small"),
])
def test_bad_mqtt_settings_are_refused_naming_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        MqttConfig(**values)


def test_there_is_no_password_key_anywhere():
    with pytest.raises(ConfigError, match="unknown key mqtt.password"):
        load_config(None, env={}, overrides={("mqtt", "password"): "x"})
    with pytest.raises(ConfigError, match="EMOTION_EDGE_MQTT_PASSWORD"):
        load_config(None, env={"EMOTION_EDGE_MQTT_PASSWORD": "x"})


def test_the_password_comes_from_the_systemd_credential_before_the_file(tmp_path):
    file = tmp_path / "password"
    file.write_text("from-file\nignored\n")
    assert read_password(str(file), env={}) == "from-file"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("from-credential\n")
    assert read_password(str(file), env={"CREDENTIALS_DIRECTORY": str(creds)}) == "from-credential"
    assert read_password("", env={}) is None
    with pytest.raises(ConfigError, match="cannot read the MQTT password from"):
        read_password(str(tmp_path / "missing"), env={})
    (tmp_path / "empty").write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        read_password(str(tmp_path / "empty"), env={})


def test_the_password_is_not_in_the_settings_repr():
    settings = BrokerSettings("b", username="u", password="hunter2")
    assert "hunter2" not in repr(settings)


def test_device_id_defaults_to_a_clean_host_name(monkeypatch):
    monkeypatch.setattr("socket.gethostname", lambda: "Pi 4.kitchen.lan")
    assert device_id("") == "Pi-4"
    assert device_id("lab_3") == "lab_3"


# -- payloads ------------------------------------------------------------------------------------


def test_the_decision_payload_is_the_log_record_plus_the_device():
    d = decision()
    payload = decision_payload(d, "pi-a")
    assert payload == {**d.to_dict(), "device": "pi-a"}
    assert set(payload) == {"schema", "cycle", "time", "media_s", "label", "confidence", "fused",
                            "speech", "face", "latency_ms", "overrun", "level", "counters",
                            "device"}


def test_the_state_payload():
    assert state_payload(decision(), "pi-a", since=T0 - 4, cycle_p99_ms=3.14159) == {
        "schema": "emotion-edge/state/1", "device": "pi-a", "machine": "", "time": T0, "cycle": 3,
        "label": "happy", "confidence": 0.7123, "since": T0 - 4, "speech": "happy",
        "face": "no_face", "level": "full", "cycle_ms": 2.25, "cycle_p99_ms": 3.142,
        "counters": {"overruns": 0, "mqtt_sent": 5, "mqtt_dropped": 0, "mqtt_disconnects": 0}}


def test_home_assistant_discovery_has_five_sensors_of_one_device():
    topics = Topics("emotion-edge", "pi-a")
    messages = discovery_messages(topics, "homeassistant")
    assert [t for t, _ in messages] == [
        f"homeassistant/sensor/emotion_edge_pi_a/{s}/config"
        for s in ("emotion", "confidence", "speech_emotion", "face_emotion", "cycle_latency")]
    configs = [json.loads(p) for _, p in messages]
    assert {c["device"]["identifiers"][0] for c in configs} == {"emotion_edge_pi_a"}
    assert len({c["unique_id"] for c in configs}) == 5
    for c in configs:
        assert c["state_topic"] == "emotion-edge/pi-a/state"
        assert c["availability_topic"] == "emotion-edge/pi-a/availability"
    assert configs[4]["unit_of_measurement"] == "ms"
    assert discovery_messages(topics, "") == []


# -- the service ---------------------------------------------------------------------------------


def _install(tmp_path, toml: str):
    from edge.service.install import install_service

    (tmp_path / "etc/emotion-edge").mkdir(parents=True, exist_ok=True)
    (tmp_path / "etc/emotion-edge/config.toml").write_text(toml)
    return install_service(tmp_path, exec_start="/usr/bin/true")


MQTT_TOML = """[mqtt]
enabled = true
host = "192.0.2.10"
username = "edge"
password_file = "/etc/emotion-edge/mqtt-password"
"""


def test_install_service_opens_the_network_to_the_broker_only(tmp_path):
    actions = _install(tmp_path, MQTT_TOML)
    dropin = tmp_path / "etc/systemd/system/emotion-edge.service.d/mqtt.conf"
    assert [a.outcome for a in actions if a.what == str(dropin)] == ["written"]
    text = dropin.read_text()
    assert "PrivateNetwork=no\n" in text
    assert "RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET\n" in text
    assert "IPAddressAllow=192.0.2.10\n" in text
    assert "LoadCredential=mqtt-password:/etc/emotion-edge/mqtt-password\n" in text
    assert "IPAddressDeny" not in text.split("[Service]")[1]  # the unit's deny=any stays
    # MQTT turned off again: the drop-in goes, and with it the network.
    actions = _install(tmp_path, "[mqtt]\nenabled = false\n")
    assert [a.outcome for a in actions if a.what == str(dropin)] == ["removed"]
    assert not dropin.exists()


def test_no_drop_in_without_mqtt(tmp_path):
    _install(tmp_path, "")
    assert not (tmp_path / "etc/systemd/system/emotion-edge.service.d").exists()


def test_a_broker_name_allows_what_it_resolves_to_and_the_dns_servers(tmp_path):
    from edge.service.install import broker_addresses

    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# comment\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nsearch lan\n")
    assert broker_addresses("broker.lan", resolve=lambda h: ["192.0.2.7", "2001:db8::7"],
                            resolv_conf=resolv) == ["192.0.2.7", "2001:db8::7", "127.0.0.53",
                                                    "fe80::1"]
    assert broker_addresses("2001:db8::1") == ["2001:db8::1"]

    def unknown(host):
        raise OSError("Name or service not known")

    with pytest.raises(ConfigError, match="cannot be resolved"):
        broker_addresses("nowhere.invalid", resolve=unknown)


def test_ipv6_brokers_get_af_inet6_only():
    from edge.service.install import render_mqtt_dropin

    text = render_mqtt_dropin(MqttConfig(enabled=True, host="2001:db8::1"), ["2001:db8::1"],
                              "/etc/emotion-edge/config.toml")
    assert "RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET6\n" in text


ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")
def test_the_unit_with_the_drop_in_verifies_and_stays_low_exposure(tmp_path):
    import sys

    from edge.service.install import install_service, security_exposure

    (tmp_path / "etc/emotion-edge").mkdir(parents=True)
    (tmp_path / "etc/emotion-edge/config.toml").write_text(MQTT_TOML)
    install_service(tmp_path, exec_start=[sys.executable, "-P", "-m", "edge"])
    unit = tmp_path / "etc/systemd/system/emotion-edge.service"
    result = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "emotion-edge" not in result.stderr, result.stderr
    exposure = security_exposure(unit)
    assert exposure is not None and float(exposure.split()[0]) <= 2.0, exposure


def test_install_service_prints_the_exposure(tmp_path, capsys):
    from edge.cli import main

    (tmp_path / "etc/emotion-edge").mkdir(parents=True)
    (tmp_path / "etc/emotion-edge/config.toml").write_text(MQTT_TOML)
    assert main(["install-service", "--root", str(tmp_path), "--exec-start",
                 "/usr/bin/true"]) == 0
    out = capsys.readouterr().out
    assert "mqtt.conf" in out
    if ANALYZE:
        assert re.search(r"exposure \d+\.\d+ \w+", out), out


# -- counters, inspect, fleet --------------------------------------------------------------------


class CountingSink:
    def __init__(self) -> None:
        self.written = 0

    @property
    def counters(self):
        return {"mqtt_sent": self.written, "mqtt_dropped": 0, "mqtt_disconnects": 0}

    def write(self, decision):
        self.written += 1

    def close(self):
        pass


def test_a_sinks_counters_appear_in_every_decision():
    from edge.interfaces import CountingSink as Protocol
    from edge.pipeline.budget import BudgetPolicy
    from edge.pipeline.fusion import LabelMap, LateFusion
    from edge.pipeline.loop import EmotionLoop
    from edge.pipeline.smoothing import Smoother
    from edge.testing import FakeMicrophone, FakeSpeechStream

    counting = CountingSink()
    assert isinstance(counting, Protocol)
    seen = []

    class Keep:
        def write(self, d):
            seen.append(dict(d.counters))

        def close(self):
            pass

    labels = ("happy", "sad")
    fusion = LateFusion(LabelMap.build({"speech": (labels, {lab: lab for lab in labels})}),
                        weights={"speech": 1.0})
    loop = EmotionLoop(audio=FakeMicrophone(4), speech=FakeSpeechStream(labels, lambda i: "happy"),
                       fusion=fusion,
                       smoother=Smoother.from_config(fusion.labels, Config().smoothing),
                       budget=BudgetPolicy.from_config(Config().loop), sinks=[Keep(), counting])
    loop.run()
    assert seen and all("mqtt_sent" in c for c in seen)
    assert [c["mqtt_sent"] for c in seen] == list(range(len(seen)))


def test_inspect_shows_the_mqtt_counters():
    from edge.outputs.log_reader import format_summary, summarize

    records = []
    for i in range(3):
        d = decision(cycle=i)
        rec = d.to_dict()
        rec["time"] = T0 + i
        rec["counters"] = {"mqtt_sent": 2 * i, "mqtt_dropped": i, "mqtt_disconnects": 0}
        records.append(rec)
    text = format_summary(summarize(records))
    assert "mqtt: 4 messages acknowledged, 2 dropped (queue full), 0 disconnects" in text
    plain = [dict(r, counters={"overruns": 0}) for r in records]
    assert "mqtt:" not in format_summary(summarize(plain))


def test_the_fleet_view_keeps_one_row_per_device():
    from edge.commands.fleet import FleetView, format_table

    view = FleetView("emotion-edge")
    for i in range(100):
        d = decision(cycle=i, label="happy" if i < 50 else "sad")
        payload = {**d.to_dict(), "device": "pi-a", "time": T0 + i * 0.5,
                   "latency_ms": {"total": float(i)}}
        view.update("emotion-edge/pi-a/decision", json.dumps(payload).encode())
    view.update("emotion-edge/pi-a/availability", b"online")
    state = state_payload(decision(label="angry"), "pi-b", since=T0 - 60, cycle_p99_ms=7.5)
    view.update("emotion-edge/pi-b/state", json.dumps(state).encode())
    view.update("emotion-edge/pi-b/availability", b"offline")
    view.update("emotion-edge/pi-c/decision", b"not json")
    view.update("other/pi-d/state", b"{}")
    snapshot = view.snapshot()
    rows = {r["device"]: r for r in snapshot["devices"]}
    assert rows["pi-a"]["state"] == "sad" and rows["pi-a"]["last_change"] == T0 + 25
    assert rows["pi-a"]["latency_p99_ms"] == 99.0 and rows["pi-a"]["online"] is True
    assert rows["pi-a"]["decisions"] == 100
    assert rows["pi-b"]["state"] == "angry" and rows["pi-b"]["last_change"] == T0 - 60
    assert rows["pi-b"]["latency_p99_ms"] == 7.5 and rows["pi-b"]["online"] is False
    assert "pi-d" not in rows
    table = format_table(snapshot, now=T0 + 60)
    assert table.splitlines()[0].split() == ["device", "state", "last", "change", "p99", "ms",
                                             "drops", "online"]
    assert re.search(r"pi-b\s+angry\s+\S+ \(2 min ago\)\s+7\.5\s+0\s+NO", table), table
    view.update("emotion-edge/pi-e/state", json.dumps(
        state_payload(decision(label=None), "pi-e", since=T0, cycle_p99_ms=1.0)).encode())
    assert re.search(r"pi-e\s+none\s", format_table(view.snapshot(), now=T0 + 60))


def test_the_fleet_view_names_two_machines_that_publish_as_one_device():
    """Two Pis given one mqtt.device_id mix their rows: each live state names its machine, and
    the view says so.  A retained state (perhaps a machine that had the id and is gone) and a
    machine tag that is not one are not counted."""
    from edge.commands.fleet import FleetView, format_table

    view = FleetView("emotion-edge")

    def state(machine, *, retained=False, device="kitchen"):
        payload = state_payload(decision(), device, since=T0, cycle_p99_ms=5.0, machine=machine)
        view.update(f"emotion-edge/{device}/state", json.dumps(payload).encode(),
                    retained=retained)

    state("0123abcd", retained=True)
    state("4567ef01")
    state("4567ef01")
    state("\x1b[2J")
    state("0123abcd", device="hall")
    rows = {r["device"]: r for r in view.snapshot()["devices"]}
    assert rows["kitchen"]["machines"] == ["4567ef01"] and rows["hall"]["machines"] == ["0123abcd"]
    assert "machines" not in format_table(view.snapshot(), now=T0)
    state("89abcdef")
    table = format_table(view.snapshot(), now=T0)
    assert table.splitlines()[-1] == ("warning: 2 machines (4567ef01, 89abcdef) publish as "
                                      "kitchen: their rows mix; give each its own mqtt.device_id")


@pytest.mark.parametrize("payload", [
    b'{"schema":"emotion-edge/state/1","time":1,"label":"happy","confidence":0.5,"since":1e20,'
    b'"cycle_p99_ms":1}',
    b'{"schema":"emotion-edge/state/1","time":NaN,"label":"happy","confidence":0.5,"since":1,'
    b'"cycle_p99_ms":1}',
    b'{"schema":"emotion-edge/state/1","time":1,"label":"happy","confidence":0.5,"since":1,'
    b'"cycle_p99_ms":1,"counters":{"mqtt_dropped":Infinity}}',
])
def test_the_fleet_view_skips_malformed_numbers(payload):
    from edge.commands.fleet import FleetView, format_table

    view = FleetView("emotion-edge")
    view.update("emotion-edge/pi-a/state", payload)  # no exception, in paho's thread or here
    format_table(view.snapshot())  # and the table still prints
    assert all(r["last_change"] is None for r in view.snapshot()["devices"])


@pytest.mark.parametrize("payload", [
    b"[" * 200_000,  # deeper than the JSON parser goes: RecursionError ended paho's thread
    b'{"label":["x"],"confidence":0.5,"time":1796505000,"latency_ms":{"total":1}}',
])
def test_the_fleet_view_skips_what_it_cannot_show(payload):
    from edge.commands.fleet import FleetView, format_table

    view = FleetView("emotion-edge")
    view.update("emotion-edge/evil/decision", payload)
    view.update("emotion-edge/evil/state", payload.replace(b'"latency_ms"', b'"x"'))
    format_table(view.snapshot())
    assert all(r["state"] is None for r in view.snapshot()["devices"])


def test_the_fleet_table_shows_no_escape_sequences_or_new_lines():
    from edge.commands.fleet import FleetView, format_table

    view = FleetView("emotion-edge")
    evil = "\u001b]0;owned\u0007\u001b[31mred\n\nFAKE ROW"
    state = json.dumps({"label": evil, "confidence": 0.5, "time": T0, "since": T0,
                        "cycle_p99_ms": 3}).encode()
    view.update("emotion-edge/pi\x1b[2J/state", state)
    assert view.snapshot()["devices"][0]["state"] == evil  # taken as it came, shown cleaned
    table = format_table(view.snapshot(), now=T0)
    assert "\x1b" not in table and "\x07" not in table and "FAKE ROW" not in table.splitlines()
    assert len(table.splitlines()) == 3


def test_the_fleet_view_says_what_it_does_not_show(monkeypatch):
    from edge.commands import fleet

    monkeypatch.setattr(fleet, "MAX_DEVICES", 3)
    view = fleet.FleetView("emotion-edge")
    for i in range(5):
        view.update(f"emotion-edge/pi-{i}/availability", b"online")
    snapshot = view.snapshot()
    assert len(snapshot["devices"]) == 3 and snapshot["devices_not_shown"] == 2
    assert "(and 2 more devices, not shown" in fleet.format_table(snapshot)
    view.broker_lost_since = T0
    snapshot = view.snapshot()
    assert {r["online"] for r in snapshot["devices"]} == {None}  # not known while cut off
    assert "broker connection lost at" in fleet.format_table(snapshot, now=T0 + 30)


def test_the_fleet_p99_waits_for_enough_decisions_before_replacing_the_devices_own():
    from edge.commands.fleet import MIN_LATENCIES, DeviceRow

    row = DeviceRow("pi-a", state_p99_ms=67.5)
    row.latencies.extend([8.0, 8.2])
    assert row.latency_p99_ms == 67.5
    row.latencies.extend([9.0] * MIN_LATENCIES)
    assert row.latency_p99_ms == 9.0


@pytest.mark.parametrize("argv, named", [
    (["--port", "70000"], "not a port"),
    (["--port", "0"], "not a port"),
    (["--interval", "1e308"], "between"),
    (["--key-file", "k.pem"], "only with --tls"),
    (["--tls", "--cert-file", "c.pem"], "go together"),
    (["--prefix", "/home"], "--prefix = '/home'"),
])
def test_fleet_options_are_checked_before_connecting(argv, named, capsys):
    from edge.cli import main

    try:
        status = main(["fleet", "--broker", "127.0.0.1", *argv])
    except SystemExit as exc:  # argparse's own usage error
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_a_connect_that_ends_after_close_leaves_the_device_offline():
    """close() waits 2 s at most; a slow connect (TLS to a sluggish broker) finishing later must
    not publish a retained "online" that no last will corrects."""
    import time
    import types

    from edge.outputs.mqtt import BrokerSettings, MqttSink

    published: list[tuple[str, str, bool]] = []

    class Info:
        def __init__(self, mid):
            self.rc, self.mid = 0, mid

        def is_published(self):
            return True

    class SlowClient:
        def __init__(self):
            self.on_connect = self.on_publish = None
            self.mid, self.connected = 0, False

        def connect(self, host, port, keepalive):
            time.sleep(2.5)

        def loop(self, timeout=0.0):
            if not self.connected:
                self.connected = True
                self.on_connect(self, None, None, types.SimpleNamespace(is_failure=False), None)
            time.sleep(timeout)
            return 0

        def publish(self, topic, payload, qos=0, retain=False):
            published.append((topic, payload, retain))
            self.mid += 1
            return Info(self.mid)

        def disconnect(self):
            published.append(("DISCONNECT", "", False))

        def socket(self):
            return None

    sink = MqttSink(MqttConfig(enabled=True, host="b", discovery_prefix=""),
                    settings=BrokerSettings("b"), client_factory=SlowClient)
    time.sleep(0.1)
    sink.close()
    sink._thread.join(timeout=5)
    availability = [p for t, p, retain in published if t.endswith("/availability") and retain]
    assert availability and availability[-1] == "offline", published


def test_discovery_ids_keep_two_prefixes_apart_and_the_default_as_it_was():
    from edge.outputs.mqtt import Topics, discovery_messages

    def node(prefix, device):
        ((topic, payload), *_) = discovery_messages(Topics(prefix, device), "homeassistant")
        return topic.split("/")[2], json.loads(payload)["unique_id"]

    assert node("emotion-edge", "pi-kitchen") == ("emotion_edge_pi_kitchen",
                                                  "emotion_edge_pi_kitchen_emotion")
    assert node("house-a", "kitchen")[0] != node("house-b", "kitchen")[0]
    assert node("home/ü floor", "kitchen")[0] == "home___floor_kitchen"


def test_a_message_dropped_while_in_flight_and_then_acknowledged_counts_once():
    import collections
    import itertools
    import threading

    from edge.outputs.mqtt import MqttSink

    sink = MqttSink.__new__(MqttSink)  # the queue's bookkeeping alone, no broker
    sink.config = MqttConfig(queue_size=2)
    sink._lock, sink._queue, sink._seq = threading.Lock(), collections.deque(), itertools.count()
    sink.sent = sink.dropped = 0
    sink._enqueue([("t", False, lambda: "a"), ("t", False, lambda: "b")])
    in_flight = sink._queue[0]
    sink._enqueue([("t", False, lambda: "c")])  # the full queue lets "a" go
    assert sink.dropped == 1
    sink._acked(in_flight)  # ... and then the broker acknowledges it
    assert (sink.sent, sink.dropped) == (1, 0)


@pytest.mark.parametrize("host, named", [("mqtt://192.168.1.10", "is a URL"),
                                         ("broker.lan:1883", "holds a port")])
def test_a_broker_given_as_a_url_or_with_its_port_is_refused(host, named):
    with pytest.raises(ConfigError, match=named):
        MqttConfig(enabled=True, host=host)
    MqttConfig(enabled=True, host="2001:db8::1")  # IPv6 is an address, not a port


def test_an_ipv6_broker_address_is_bracketed():
    from edge.outputs.mqtt import BrokerSettings

    assert BrokerSettings("2001:db8::1", 1883).address == "[2001:db8::1]:1883"


def test_fleet_names_its_own_option_for_an_unreadable_password_file(tmp_path, capsys):
    from edge.cli import main

    missing = tmp_path / "viewer"
    assert main(["fleet", "--broker", "127.0.0.1", "--username", "viewer", "--password-file",
                 str(missing)]) == 2
    err = capsys.readouterr().err
    assert "check --password-file" in err and "install-service" not in err


def test_the_docs_state_example_has_the_state_payloads_keys():
    from pathlib import Path

    docs = (Path(__file__).resolve().parent.parent / "docs" / "appliance.md").read_text()
    block = re.search(r'```json\n(\{"schema": "emotion-edge/state/1".*?)\n```', docs, re.S)
    assert block, "docs/appliance.md has no state example"
    shown = json.loads(block[1])
    sent = state_payload(decision(), "pi-kitchen", since=T0, cycle_p99_ms=1.0, machine="3f2a9c1e")
    assert list(shown) == list(sent)


@pytest.mark.parametrize("term, clears", [("xterm-256color", True), ("dumb", False), ("", False)])
def test_the_fleet_view_redraws_only_on_a_terminal_that_can_clear(monkeypatch, term, clears):
    import argparse
    import io

    from edge.commands.fleet import FleetView, _show

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setenv("TERM", term)
    out = Terminal()
    args = argparse.Namespace(interval=0.0, once=False, duration=2.0, json=False)
    ticks = iter([0.0, 0.0, 1.0, 2.0, 3.0])
    _show(FleetView("emotion-edge"), args, out, clock=lambda: next(ticks))
    assert out.getvalue().count("\x1b[2J") == (3 if clears else 0)
    assert out.getvalue().count("(no device has published yet)") == 3


def test_check_warns_of_a_password_sent_in_clear_beyond_this_machine(monkeypatch, tmp_path):
    from edge.config import Config
    from edge.outputs import mqtt
    from edge.service.checks import check_mqtt

    monkeypatch.setattr(mqtt, "probe_broker", lambda settings: None)  # the broker accepts
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)

    def findings(host, tls=False):
        return check_mqtt(Config(mqtt=MqttConfig(enabled=True, host=host, username="edge",
                                                 password_file=str(secret), tls=tls)), env={})

    ok, clear = findings("broker.lan")
    assert ok.status == "ok" and clear.status == "warning"
    assert "crosses the network to broker.lan:1883 in clear text" in clear.detail
    assert [f.status for f in findings("broker.lan", tls=True)] == ["ok"]
    assert [f.status for f in findings("127.0.0.1")] == ["ok"]  # never leaves the machine


def test_a_flapping_broker_tells_each_cause_once_per_ten_minutes(monkeypatch, caplog):
    """Two causes taking turns (refused, then dropped soon after accepting) defeated the
    once-per-cause rule: 74 warnings in 135 s."""
    import logging

    from edge.outputs import mqtt as mqtt_module
    from edge.outputs.mqtt import MqttSink

    now = [1000.0]
    monkeypatch.setattr(mqtt_module.time, "monotonic", lambda: now[0])
    sink = MqttSink.__new__(MqttSink)  # only the logging state: no thread, no client
    sink._last_problem, sink._told = None, {}
    sink.settings, sink.device = BrokerSettings("b"), "pi-a"
    sink.config = MqttConfig(enabled=True, host="b")
    with caplog.at_level(logging.WARNING, logger="edge.outputs.mqtt"):
        for _ in range(30):
            sink._problem("refused")
            sink._problem("dropped soon after accepting")
            now[0] += 5
        assert len(caplog.records) == 2
        now[0] += mqtt_module.RETELL_S
        sink._problem("refused")
    assert len(caplog.records) == 3


def test_a_machine_replaced_under_one_id_is_not_two_at_once(monkeypatch):
    """A Pi re-imaged while fleet runs publishes as a new machine: the old one, silent for
    longer than MACHINE_WINDOW_S, is not counted beside it."""
    from edge.commands import fleet
    from edge.commands.fleet import FleetView

    now = [100.0]
    monkeypatch.setattr(fleet.time, "monotonic", lambda: now[0])
    view = FleetView("emotion-edge")

    def state(machine):
        payload = state_payload(decision(), "kitchen", since=T0, cycle_p99_ms=5.0, machine=machine)
        view.update("emotion-edge/kitchen/state", json.dumps(payload).encode())

    state("0123abcd")
    now[0] += fleet.MACHINE_WINDOW_S + 1
    state("4567ef01")
    assert view.snapshot()["devices"][0]["machines"] == ["4567ef01"]
    state("0123abcd")  # both live now
    assert view.snapshot()["devices"][0]["machines"] == ["0123abcd", "4567ef01"]


def test_a_working_session_that_ends_is_told_again_however_soon(monkeypatch, caplog):
    """The once-per-ten-minutes rule is for a flapping broker: after a session that worked
    (longer than STABLE_SESSION_S), losing the broker again is news and is a warning, not a
    debug line, even minutes after the last loss."""
    import logging
    import threading
    import types

    from edge.outputs import mqtt as mqtt_module
    from edge.outputs.mqtt import MqttSink

    clock = {"now": 1000.0}
    # Each poll of the session loop moves this clock 1 s: a 20-poll session "lasts" 20 s.
    fake_time = types.SimpleNamespace(monotonic=lambda: clock["now"])
    monkeypatch.setattr(mqtt_module, "time", fake_time)
    sessions: list[int] = []
    three_lost = threading.Event()

    class Info:
        rc, mid = 0, 0

        def is_published(self):
            return True

    class Client:
        def __init__(self, polls=20):
            self.on_connect = self.on_publish = self.on_message = None
            self.polls, self.answered = polls, False

        def connect(self, host, port, keepalive):
            self.answered = False

        def loop(self, timeout=0.0):
            clock["now"] += 1.0
            if not self.answered:
                self.answered = True
                self.on_connect(self, None, None, types.SimpleNamespace(is_failure=False), None)
                sessions.append(0)
                return 0
            sessions[-1] += 1
            if sessions[-1] >= self.polls:
                if len(sessions) >= 3:
                    three_lost.set()
                return 1  # the broker went away
            return 0

        def publish(self, topic, payload, qos=0, retain=False):
            return Info()

        def subscribe(self, topic, qos=0):
            pass

        def disconnect(self):
            pass

        def socket(self):
            return None

    with caplog.at_level(logging.WARNING, logger="edge.outputs.mqtt"):
        sink = MqttSink(MqttConfig(enabled=True, host="b", discovery_prefix="",
                                   retry_initial_s=0.05, retry_max_s=0.05),
                        settings=BrokerSettings("b"), client_factory=Client)
        assert three_lost.wait(10)
        sink._stop.set()
        sink._thread.join(timeout=5)
    lost = [r for r in caplog.records if "connection to b:1883 lost" in r.getMessage()]
    assert len(lost) >= 3, [r.getMessage() for r in caplog.records]
    assert clock["now"] - 1000.0 < mqtt_module.RETELL_S  # all within ten minutes
