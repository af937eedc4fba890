"""The MQTT sink against a real Mosquitto (Debian package): its own config, password file and a
self-signed CA made per test module, on free loopback ports.  Skips when mosquitto is absent.

Decisions arrive; retained state and Home Assistant discovery are there for a late subscriber;
the last will fires when the process is killed; a broker restart loses nothing queued within
the bound and keeps the order; wrong credentials or no broker are one log line and the loop goes
on; TLS refuses a broker signed by another CA; the fleet view sees two replaying devices.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.config import MqttConfig
from edge.decision import Decision, ModalityReport
from edge.outputs.mqtt import BrokerSettings, MqttSink, probe_broker

from .mqtt_broker import MOSQUITTO, PASSWD, PASSWORD, USER, Mosquitto, Subscriber, make_ca

pytest.importorskip("paho.mqtt.client")
pytestmark = pytest.mark.skipif(MOSQUITTO is None or PASSWD is None,
                                reason="mosquitto not installed (scripts/install-system-deps.sh)")

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo" / "conversation.flac"
T0 = 1_764_500_000.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield b
    b.stop()


def decision(cycle: int, label: str | None = "happy", speech: str = "happy") -> Decision:
    scores = {"happy": 0.7, "sad": 0.3}
    return Decision(
        cycle=cycle, time=T0 + 0.5 * cycle, media_s=0.5 * cycle, label=label,
        confidence=0.7 if label else 0.0, fused=scores,
        speech=ModalityReport("ok", speech, scores), face=ModalityReport("no_face"),
        latency_ms={"speech": 2.0, "fusion": 0.1, "total": 2.5 + cycle % 3}, overrun=False,
        level="full", counters={"overruns": 0})


def config(broker: Mosquitto, device: str, **values: object) -> MqttConfig:
    base: dict[str, object] = {
        "enabled": True, "host": "127.0.0.1", "port": broker.port, "device_id": device,
        "username": USER, "password_file": str(broker.password_file),
        "retry_initial_s": 0.1, "retry_max_s": 0.5}
    return MqttConfig(**{**base, **values})  # type: ignore[arg-type]


def cycles(messages) -> list[int]:
    return [json.loads(payload)["cycle"] for _, payload, _ in messages]


def test_decisions_state_and_availability_arrive(broker):
    sub = Subscriber(broker, "emotion-edge/arrive/#")
    try:
        with MqttSink(config(broker, "arrive")) as sink:
            for i in range(6):
                sink.write(decision(i, label="happy" if i < 3 else "sad"))
            assert sink.flush(5), sink
            assert sub.wait_for(lambda: len(sub.on("/decision")) == 6)
            assert sink.counters == {"mqtt_sent": 8, "mqtt_dropped": 0, "mqtt_disconnects": 0}
        assert sub.wait_for(lambda: sub.on("/availability")[-1:] and
                            sub.on("/availability")[-1][1] == b"offline")
    finally:
        sub.close()
    first = json.loads(sub.on("/decision")[0][1])
    assert first["device"] == "arrive" and first["schema"] == "emotion-edge/decision/1"
    assert first["label"] == "happy" and first["speech"]["scores"] == {"happy": 0.7, "sad": 0.3}
    assert {"time", "media_s", "level", "latency_ms", "counters", "fused"} <= set(first)
    assert cycles(sub.on("/decision")) == list(range(6))
    states = [json.loads(p) for _, p, _ in sub.on("/state")]
    assert [s["label"] for s in states] == ["happy", "sad"]  # on change only (no heartbeat due)
    assert states[1]["since"] == T0 + 1.5 and states[1]["cycle_p99_ms"] == 4.5
    assert [p for _, p, _ in sub.on("/availability")] == [b"online", b"offline"]


def test_a_clock_stepped_back_republishes_the_state(broker):
    """A Pi has no real-time clock: NTP may step it back an hour after boot.  The heartbeat used
    to wait that hour before the retained state was published again."""
    import dataclasses

    sub = Subscriber(broker, "emotion-edge/clockback/state")
    try:
        with MqttSink(config(broker, "clockback")) as sink:
            sink.write(decision(0))
            sink.write(decision(1))  # same state, heartbeat not due: nothing
            sink.write(dataclasses.replace(decision(2), time=T0 - 3600.0))
            sink.write(dataclasses.replace(decision(3), time=T0 - 3599.5))
            assert sink.flush(5)
        assert sub.wait_for(lambda: len(sub.on("/state")) >= 2)
        time.sleep(0.2)
    finally:
        sub.close()
    assert [json.loads(p)["cycle"] for _, p, _ in sub.on("/state")] == [0, 2]


def test_late_subscriber_gets_retained_state_and_discovery(broker):
    with MqttSink(config(broker, "late")) as sink:
        sink.write(decision(0, label="angry", speech="angry"))
        assert sink.flush(5)
    sub = Subscriber(broker, "#")
    try:
        assert sub.wait_for(lambda: len(sub.on("/config")) >= 5 and sub.on("late/state"))
        (state,) = [json.loads(p) for t, p, retained in sub.on("late/state") if retained]
        assert state["label"] == "angry" and state["device"] == "late"
        configs = {t: json.loads(p) for t, p, r in sub.messages
                   if t.startswith("homeassistant/sensor/emotion_edge_late/") and r}
        assert sorted(t.split("/")[3] for t in configs) == [
            "confidence", "cycle_latency", "emotion", "face_emotion", "speech_emotion"]
        devices = {json.dumps(c["device"], sort_keys=True) for c in configs.values()}
        assert len(devices) == 1  # one device per Pi
        assert all(c["state_topic"] == "emotion-edge/late/state" for c in configs.values())
        assert sub.on("late/availability")[-1][1:] == (b"offline", True)
        assert not sub.on("late/decision")  # decisions are not retained
    finally:
        sub.close()


def test_broker_restart_loses_nothing_queued_and_keeps_order(broker):
    sub = Subscriber(broker, "emotion-edge/restart/decision", session="restart-watcher")
    try:
        with MqttSink(config(broker, "restart", queue_size=500)) as sink:
            for i in range(50):
                sink.write(decision(i))
            assert sink.flush(5)
            broker.stop()
            for i in range(50, 250):  # queued while the broker is away
                sink.write(decision(i))
                time.sleep(0.001)
            assert sink.counters["mqtt_dropped"] == 0 and sink.queued >= 200
            broker.start()
            for i in range(250, 300):
                sink.write(decision(i))
            assert sink.flush(15), sink
            assert sink.counters["mqtt_disconnects"] == 1
        assert sub.wait_for(lambda: set(range(300)) <= set(cycles(sub.on("/decision"))), 15)
    finally:
        sub.close()
    got = cycles(sub.on("/decision"))
    first_seen = list(dict.fromkeys(got))  # QoS 1 is at least once: a repeat may follow a loss
    assert first_seen == list(range(300))


def test_a_full_queue_drops_the_oldest_and_counts_them(broker):
    sub = Subscriber(broker, "emotion-edge/full/decision", session="full-watcher")
    broker.stop()
    try:
        with MqttSink(config(broker, "full", queue_size=10, discovery_prefix="")) as sink:
            for i in range(25):
                sink.write(decision(i, label="happy"))  # one state message, then decisions
            assert sink.counters["mqtt_dropped"] == 16 and sink.queued == 10
            broker.start()
            assert sink.flush(10), sink
        assert sub.wait_for(lambda: len(sub.on("/decision")) >= 10)
        assert cycles(sub.on("/decision")) == list(range(15, 25))  # the newest, in order
    finally:
        sub.close()
        if broker.proc is None:
            broker.start()


def test_last_will_fires_when_the_process_is_killed(broker, tmp_path):
    sub = Subscriber(broker, "emotion-edge/killed/availability")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "-v", "run", "--audio-file", str(DEMO), "--no-camera",
         "--set", "leds.mode=none", *broker.config_overrides("killed")],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert sub.wait_for(lambda: [p for _, p, _ in sub.on("/availability")] == [b"online"],
                            20), proc.stderr
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        assert sub.wait_for(lambda: [p for _, p, _ in sub.on("/availability")][-1:] ==
                            [b"offline"], 10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        sub.close()


def _run(broker: Mosquitto, device: str, *more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", "run", "--fast", "--audio-file", str(DEMO),
         "--no-camera", "--mock-gpio", *broker.config_overrides(device), *more],
        cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case", ["wrong password", "no broker"])
def test_a_refused_or_unreachable_broker_is_one_log_line_and_the_loop_goes_on(
        broker, tmp_path, case):
    secret = tmp_path / "password"
    secret.write_text("wrong\n")
    more = (["--set", f"mqtt.password_file={secret}"] if case == "wrong password"
            else ["--set", "mqtt.port=1"])
    log = tmp_path / "decisions.jsonl"
    result = _run(broker, "refused", *more, "--log-file", str(log))
    assert result.returncode == 0, result.stderr
    decisions = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(decisions) >= 10 and len(log.read_text().splitlines()) == len(decisions)
    mqtt_lines = [line for line in result.stderr.splitlines() if "MQTT" in line]
    assert len(mqtt_lines) == 1, result.stderr
    expected = "refused the credentials" if case == "wrong password" else "refused: no broker"
    assert expected in mqtt_lines[0]
    assert PASSWORD not in result.stderr and "wrong" not in mqtt_lines[0]
    assert decisions[-1]["counters"]["mqtt_sent"] == 0


def test_tls_with_the_right_ca_works_and_with_a_wrong_ca_is_refused(broker, tmp_path):
    good = BrokerSettings("127.0.0.1", broker.tls_port, USER, PASSWORD, tls=True,
                          ca_file=str(broker.ca))
    assert probe_broker(good) is None
    wrong = make_ca(tmp_path, "wrong", server=False)
    problem = probe_broker(BrokerSettings("127.0.0.1", broker.tls_port, USER, PASSWORD, tls=True,
                                          ca_file=str(wrong)))
    assert problem is not None and "does not trust" in problem and "mqtt.ca_file" in problem
    sub = Subscriber(broker, "emotion-edge/tls/decision")
    try:
        with MqttSink(config(broker, "tls", port=broker.tls_port, tls=True,
                             ca_file=str(broker.ca))) as sink:
            sink.write(decision(0))
            assert sink.flush(5)
        assert sub.wait_for(lambda: len(sub.on("/decision")) == 1)
    finally:
        sub.close()


def test_the_broker_problems_a_user_makes_are_named_with_their_fix(broker, tmp_path):
    anonymous = probe_broker(BrokerSettings("127.0.0.1", broker.port))
    assert anonymous is not None and "refused anonymous access" in anonymous
    assert "--username" in anonymous and "check the user name" not in anonymous
    missing = tmp_path / "ca.pem"
    problem = probe_broker(BrokerSettings("127.0.0.1", broker.tls_port, USER, PASSWORD,
                                          tls=True, ca_file=str(missing)))
    assert problem == f"MQTT TLS file {missing} not found (mqtt.ca_file, fleet --ca-file)"
    plain_on_tls = probe_broker(BrokerSettings("127.0.0.1", broker.tls_port, USER, PASSWORD))
    assert plain_on_tls is not None and "TLS" in plain_on_tls, plain_on_tls


def test_two_devices_with_one_client_id_back_off_and_say_why_once(broker, caplog):
    """Two Pis cloned from one SD card share a client id: the broker drops the older connection
    each time the other connects.  That reconnected about once a second for ever, with a
    warning each time."""
    import logging

    with caplog.at_level(logging.WARNING, logger="edge.outputs.mqtt"):
        with MqttSink(config(broker, "twin")) as one, MqttSink(config(broker, "twin")) as two:
            time.sleep(6.0)
            drops = one.disconnects + two.disconnects
    warnings = [r.getMessage() for r in caplog.records]
    assert drops >= 2, drops  # the broker did take turns
    assert sum("same client id" in w for w in warnings) in (1, 2)  # once per sink at most
    assert len(warnings) <= 6, warnings


def test_two_machines_given_one_device_id_are_told_once(broker, caplog, monkeypatch):
    """Two Pis configured with one mqtt.device_id (distinct machines, so distinct client ids)
    publish into one set of topics: each says so once, naming the other machine.  A device
    that comes later and finds only a retained state from a machine now gone says nothing."""
    import logging

    from edge.outputs import mqtt

    def on(machine):
        monkeypatch.setattr(mqtt, "_machine_tag", lambda: machine)
        return MqttSink(config(broker, "shared"))

    with caplog.at_level(logging.WARNING, logger="edge.outputs.mqtt"):
        with on("aaaa0001") as one, on("bbbb0002") as two:
            for cycle in range(1, 40):  # a new label every cycle: a state every cycle
                for sink in (one, two):
                    sink.write(decision(cycle, label=("happy", "sad")[cycle % 2]))
                time.sleep(0.05)
                if one.other_machines and two.other_machines:
                    break
            assert one.flush(5.0) and two.flush(5.0)
        assert one.other_machines == {"bbbb0002"} and two.other_machines == {"aaaa0001"}
        told = [r.getMessage() for r in caplog.records if "another machine" in r.getMessage()]
        assert len(told) == 2, told
        assert any("another machine (bbbb0002; this one is aaaa0001) publishes as device "
                   "'shared'" in t and t.endswith("give each its own mqtt.device_id")
                   for t in told)
        caplog.clear()
        with on("cccc0003") as later:  # the broker keeps the last state, retained
            later.write(decision(1))
            assert later.flush(5.0)
            time.sleep(0.5)
        assert later.other_machines == set()
    assert not [r for r in caplog.records if "another machine" in r.getMessage()]


def test_check_reports_the_broker_and_the_credentials(broker, tmp_path):
    from edge.config import Config
    from edge.service.checks import check_mqtt

    broker.password_file.chmod(0o600)
    ok = check_mqtt(Config(mqtt=config(broker, "check")), env={})
    assert [f.status for f in ok] == ["ok"] and "credentials of 'edge' accepted" in ok[0].detail
    broker.password_file.chmod(0o644)  # as a shell's umask leaves it
    try:
        _, loose = check_mqtt(Config(mqtt=config(broker, "check")), env={})
    finally:
        broker.password_file.chmod(0o600)
    assert loose.status == "warning" and "readable by other users (mode 0644)" in loose.detail
    assert loose.fix.startswith(f"sudo chown root: {broker.password_file} && sudo chmod 600")
    secret = tmp_path / "credentials"
    secret.mkdir()
    (secret / "mqtt-password").write_text("wrong\n")
    refused = check_mqtt(Config(mqtt=config(broker, "check")),
                         env={"CREDENTIALS_DIRECTORY": str(secret)})
    assert refused[0].status == "problem" and "refused the credentials" in refused[0].detail


def test_the_loop_reports_mqtt_counters_in_every_decision(broker, tmp_path):
    result = _run(broker, "counted")
    assert result.returncode == 0, result.stderr
    decisions = [json.loads(line) for line in result.stdout.splitlines()]
    assert {"mqtt_sent", "mqtt_dropped", "mqtt_disconnects"} <= set(decisions[-1]["counters"])
    assert decisions[-1]["counters"]["mqtt_dropped"] == 0


def test_the_fleet_view_shows_two_replaying_devices(broker):
    fleet = subprocess.Popen(
        [sys.executable, "-m", "edge", "fleet", "--broker", "127.0.0.1", "--port",
         str(broker.port), "--username", USER, "--password-file", str(broker.password_file),
         "--prefix", "fleet-test", "--json", "--interval", "0.5", "--duration", "60"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        devices = [subprocess.Popen(
            [sys.executable, "-m", "edge", "run", "--fast", "--audio-file", str(DEMO),
             "--no-camera", "--mock-gpio", "--set", "mqtt.topic_prefix=fleet-test",
             *broker.config_overrides(name)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name in ("pi-a", "pi-b")]
        assert [d.wait(60) for d in devices] == [0, 0]
        time.sleep(0.5)
        fleet.send_signal(signal.SIGINT)  # prints its last picture and stops
        out, err = fleet.communicate(timeout=10)
    finally:
        if fleet.poll() is None:
            fleet.kill()
    assert fleet.returncode == 0, err
    snapshot = json.loads(out.splitlines()[-1])
    rows = {row["device"]: row for row in snapshot["devices"]}
    assert set(rows) == {"pi-a", "pi-b"}
    for row in rows.values():
        assert row["online"] is False and row["decisions"] >= 10
        assert row["drops"] == 0 and row["latency_p99_ms"] is not None
        assert row["last_change"] is not None
    # A view started later shows the same devices from their retained state and availability.
    base = [sys.executable, "-m", "edge", "fleet", "--broker", "127.0.0.1", "--port",
            str(broker.port), "--username", USER, "--prefix", "fleet-test"]
    late = subprocess.run([*base, "--password-file", str(broker.password_file), "--once",
                           "--interval", "0.5"], cwd=REPO, capture_output=True, text=True,
                          timeout=30)
    assert late.returncode == 0, late.stderr
    table = late.stdout.splitlines()
    assert table[0].split()[:2] == ["device", "state"]
    assert [line.split()[0] for line in table[2:4]] == ["pi-a", "pi-b"]
    assert all(line.split()[-1] == "NO" for line in table[2:4])


def test_the_fleet_view_says_in_one_line_when_the_broker_refuses(broker, tmp_path):
    secret = tmp_path / "password"
    secret.write_text("wrong\n")
    result = subprocess.run(
        [sys.executable, "-m", "edge", "fleet", "--broker", "127.0.0.1", "--port",
         str(broker.port), "--username", USER, "--password-file", str(secret), "--once"],
        cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"emotion-edge: error: the broker 127.0.0.1:{broker.port} refused the credentials (Not "
        f"authorized); check the user name (mqtt.username, fleet --username) and the password "
        f"file"]


def test_the_password_never_appears_in_the_process_list(broker):
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "run", "--audio-file", str(DEMO), "--no-camera",
         "--mock-gpio", *broker.config_overrides("argv")],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
        assert PASSWORD.encode() not in cmdline and PASSWORD.encode() not in environ
    finally:
        proc.terminate()
        proc.wait(10)
    assert os.environ.get("EMOTION_EDGE_MQTT_PASSWORD") is None
