"""The loop on replayed (scripted) sources: it ends with the audio, survives faults, degrades
under load and recovers, and pings the watchdog only while cycles complete."""

import io
import json
import logging
import socket
import threading
import time

import pytest

from edge.outputs.log import JsonLinesSink
from edge.outputs.notify import Notifier
from edge.pipeline.budget import BudgetPolicy
from edge.pipeline.face_stage import FaceStage
from edge.pipeline.fusion import LabelMap, LateFusion
from edge.pipeline.loop import EmotionLoop
from edge.pipeline.smoothing import Smoother
from edge.testing import (
    FakeCamera,
    FakeClock,
    FakeDetector,
    FakeFaceClassifier,
    FakeMicrophone,
    FakeSpeechStream,
)

SPEECH_LABELS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
FACE_LABELS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
SPEECH_MAP = {lab: lab for lab in SPEECH_LABELS} | {"calm": "neutral"}
FACE_MAP = {lab: lab for lab in FACE_LABELS} | {"fear": "fearful", "surprise": "surprised"}


class ListSink:
    def __init__(self):
        self.decisions, self.closed = [], 0

    def write(self, d):
        self.decisions.append(d)

    def close(self):
        self.closed += 1


def make_loop(*, audio, speech=None, face=True, frames=None, clock=None, deadline=0.1,
              sinks=None, notifier=None, detector=None, classifier=None, **budget_kw):
    clock = clock or FakeClock()
    fusion = LateFusion(
        LabelMap.build({"speech": (SPEECH_LABELS, SPEECH_MAP), "face": (FACE_LABELS, FACE_MAP)}),
        weights={"speech": 1.0, "face": 1.0},
    )
    stage = None
    if face:
        stage = FaceStage(detector or FakeDetector(clock), classifier or FakeFaceClassifier(
            FACE_LABELS, clock=clock), clock=clock)
    sink = ListSink()
    loop = EmotionLoop(
        audio=audio,
        speech=speech or FakeSpeechStream(SPEECH_LABELS, clock=clock),
        fusion=fusion,
        smoother=Smoother(fusion.labels, alpha=0.5, switch_margin=0.1, min_dwell_s=0.0,
                          min_confidence=0.3),
        budget=BudgetPolicy(deadline, **({"overruns_to_degrade": 1, "overrun_window": 4,
                                           "recover_after": 3, "recover_fraction": 0.5}
                                          | budget_kw)),
        sinks=[sink, *(sinks or [])],
        face=stage,
        frames=frames if frames is not None else (FakeCamera() if face else None),
        notifier=notifier,
        clock=clock,
        wall_clock=lambda: 1e9,
        status_interval_s=0.0,
    )
    return loop, sink


def test_replay_ends_with_the_audio_and_logs_every_decision():
    out = io.StringIO()
    loop, sink = make_loop(audio=FakeMicrophone(8), sinks=[JsonLinesSink(out)])
    summary = loop.run()
    assert summary.cycles == 8 and len(sink.decisions) == 8
    assert summary.audio_s == pytest.approx(4.0)
    assert sink.closed == 1  # sinks closed (LEDs dark) when the audio ends
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 8
    first = lines[0]
    assert first["speech"]["state"] == "ok" and first["face"]["state"] == "ok"
    assert set(first["latency_ms"]) >= {"speech", "detect", "face", "fusion", "total"}
    assert {"overruns", "audio_dropped_blocks", "frame_drops"} <= set(first["counters"])
    # speech says angry (0.85), face says happy (angry gets 0.15 / 6): equal weights average them
    assert first["fused"]["angry"] == pytest.approx((0.85 + 0.025) / 2, abs=1e-3)
    assert "audio" not in json.dumps(lines).replace("audio_", "")  # no raw media in the log


def test_end_of_replay_decides_the_last_window():
    speech = FakeSpeechStream(SPEECH_LABELS, tail=["sad"])
    loop, sink = make_loop(audio=FakeMicrophone(3), speech=speech)
    summary = loop.run()
    assert speech.flushed == 1 and summary.cycles == 4
    assert sink.decisions[-1].speech.label == "sad"


def test_camera_disappears_and_comes_back(caplog):
    # Camera present for media time < 2 s, gone until 4 s, back afterwards.
    frames = FakeCamera(up=lambda t: not (2.0 < t <= 4.0))
    loop, sink = make_loop(audio=FakeMicrophone(12), frames=frames)
    with caplog.at_level(logging.WARNING, logger="edge.pipeline.loop"):
        loop.run()
    states = [d.face.state for d in sink.decisions]
    assert states[:4] == ["ok"] * 4
    assert states[4:8] == ["unavailable"] * 4
    assert states[8:] == ["ok"] * 4
    gone = sink.decisions[5]
    assert gone.label is not None and gone.fused  # fusion carried on with speech alone
    assert gone.fused["angry"] == pytest.approx(0.85, abs=0.01)
    assert sink.decisions[-1].counters["camera_lost"] == 1
    assert any("camera unavailable" in r.message for r in caplog.records)
    assert any("camera is back" in r.message for r in caplog.records)


def test_silence_is_no_speech_not_an_emotion():
    loop, sink = make_loop(audio=FakeMicrophone(6, loud=False), face=False)
    loop.run()
    for d in sink.decisions:
        assert d.speech.state == "no_speech" and d.speech.label == "no speech"
        assert d.label is None and d.fused == {}


def test_speech_then_silence_fades_out():
    loop, sink = make_loop(audio=FakeMicrophone(16, loud=lambda i: i < 4), face=False)
    loop.run()
    assert sink.decisions[3].label == "angry"
    assert sink.decisions[-1].label is None


def test_mic_overflow_is_counted_and_logged(caplog):
    loop, sink = make_loop(audio=FakeMicrophone(6, overflow_at=(2, 4)), face=False)
    with caplog.at_level(logging.WARNING, logger="edge.pipeline.loop"):
        loop.run()
    assert [d.counters["audio_overflows"] for d in sink.decisions] == [0, 0, 1, 1, 2, 2]
    assert sum("overflows" in r.message for r in caplog.records) == 2


def test_overruns_degrade_in_order_and_recover_when_load_drops(caplog):
    clock = FakeClock()
    busy = {"on": True}
    classifier = FakeFaceClassifier(FACE_LABELS, clock=clock, cost_s=lambda: 0.2 if busy["on"] else 0.001)
    detector = FakeDetector(clock, cost_s=0.02)
    audio = FakeMicrophone(30)
    loop, sink = make_loop(audio=audio, clock=clock, classifier=classifier, detector=detector,
                           deadline=0.1, overruns_to_degrade=2, overrun_window=4)
    original_feed = loop.speech.feed

    def feed(block):
        if audio.i > 12:
            busy["on"] = False
        return original_feed(block)

    loop.speech.feed = feed
    with caplog.at_level(logging.WARNING, logger="edge.pipeline.loop"):
        loop.run()
    levels = [d.level for d in sink.decisions]
    # Busy cycles overrun: full -> reuse_box -> face_alternate -> no_face, in that order.
    assert levels[:7] == ["full", "reuse_box", "reuse_box", "face_alternate", "face_alternate",
                          "face_alternate", "no_face"]
    # face_alternate: the off cycle reused the last face result and stayed in budget
    assert sink.decisions[5].face.state == "ok" and not sink.decisions[5].overrun
    assert "full" in levels[-3:]  # recovered once load dropped
    assert any(d.face.state == "skipped" for d in sink.decisions)
    # reuse_box cycles did not call the detector
    assert detector.calls < len([d for d in sink.decisions if d.face.state in ("ok", "no_face")])
    last = sink.decisions[-1].counters
    assert last["degradations"] == 3 and last["recoveries"] == 3 and last["overruns"] >= 3
    assert any("degraded to reuse_box" in r.message for r in caplog.records)
    assert any("recovered to full" in r.message for r in caplog.records)


def test_stop_ends_a_live_loop_and_closes_sinks():
    audio = FakeMicrophone(forever=True, pace_s=0.01)
    loop, sink = make_loop(audio=audio, face=False)
    t = threading.Thread(target=loop.run)
    t.start()
    while len(sink.decisions) < 3:
        t.join(0.01)
    loop.stop()
    t.join(2.0)
    assert not t.is_alive() and sink.closed == 1


def test_a_failing_sink_does_not_stop_the_loop(caplog):
    class Broken:
        def write(self, d):
            raise OSError("disk full")

        def close(self):
            raise OSError("still full")

    loop, sink = make_loop(audio=FakeMicrophone(3), face=False, sinks=[Broken()])
    with caplog.at_level(logging.ERROR):
        summary = loop.run()
    assert summary.cycles == 3 and summary.counters["sink_errors"] == 3
    assert sink.closed == 1
    # One line for the fault (not one a cycle), one for the close; no traceback at this level.
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 2 and "disk full" in lines[0] and "still full" in lines[1], lines
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.ERROR)


@pytest.fixture
def notify_socket(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    yield path, sock
    sock.close()


def drain(sock, window_s):
    """Every datagram that arrives within the next ``window_s`` seconds."""
    end = time.monotonic() + window_s
    got = []
    while (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return got


def test_a_stalled_loop_stops_the_watchdog_pings(notify_socket):
    path, sock = notify_socket
    gate = threading.Event()
    gate.set()
    classifier = FakeFaceClassifier(FACE_LABELS, gate=gate)
    loop, sink = make_loop(audio=FakeMicrophone(forever=True, pace_s=0.005),
                           classifier=classifier, notifier=Notifier(path), deadline=10.0)
    t = threading.Thread(target=loop.run)
    t.start()
    try:
        msgs = drain(sock, 0.5)
        assert msgs[0].startswith("READY=1")
        assert sum(m == "WATCHDOG=1" for m in msgs) >= 3
        gate.clear()  # the face stage hangs (e.g. a wedged camera driver)
        drain(sock, 0.1)  # the cycle in flight may still ping once
        stalled = drain(sock, 0.4)
        assert "WATCHDOG=1" not in stalled
        gate.set()
        assert "WATCHDOG=1" in drain(sock, 0.5)
    finally:
        gate.set()
        loop.stop()
        t.join(2.0)
    assert "STOPPING=1" in drain(sock, 0.5)


# -- the real command on replayed recordings, with tiny real models ------------------------------

import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny int8 models + a 6 s recording (4 s voiced, then silence) + a 320x240 image."""
    pytest.importorskip("tensorflow")
    cv2 = pytest.importorskip("cv2")
    import numpy as np

    from . import tinymodels

    d = tmp_path_factory.mktemp("tiny")
    tinymodels.build(d)
    tinymodels.speech_wav(d / "speech.wav", 6.0, silent_after=4.0)
    tinymodels.speech_wav(d / "long.wav", 60.0)
    cv2.imwrite(str(d / "frame.png"), np.full((240, 320), 90, np.uint8))
    return d


def run_cli(tiny, *args, env=None, **kw):
    e = dict(os.environ, EMOTION_EDGE_MODELS=str(tiny), GPIOZERO_PIN_FACTORY="mock",
             GPIOZERO_MOCK_PIN_CLASS="mockpwmpin", PYTHONPATH=str(Path(__file__).parent.parent))
    e.pop("NOTIFY_SOCKET", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "edge", *args], env=e, capture_output=True,
                          text=True, timeout=60, **kw)


from pathlib import Path  # noqa: E402


def test_replay_command_prints_one_decision_per_hop(tiny):
    # Random tiny models are unsure: a low min_confidence lets them show an emotion at all.
    r = run_cli(tiny, "run", "--audio-file", str(tiny / "speech.wav"), "--image",
                str(tiny / "frame.png"), "--fast", "--set", "smoothing.min_confidence=0.01")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    # 6 s, 1 s windows every 0.5 s -> windows ending at 1.0 .. 6.0 s (within a block)
    assert 9 <= len(lines) <= 11
    assert lines[0]["speech"]["state"] == "ok" and lines[0]["label"] is not None
    assert lines[-1]["speech"]["state"] == "no_speech"  # the silent tail
    assert {rec["face"]["state"] for rec in lines} == {"no_face"}  # a blank frame has no face
    assert "decisions over 6.0 s" in r.stderr


@pytest.mark.parametrize("damage", ["missing", "corrupt", "manifest"])
def test_a_missing_or_corrupt_model_is_a_clear_error(tiny, tmp_path, damage):
    import shutil

    for f in tiny.glob("*_int8.*"):
        shutil.copy(f, tmp_path / f.name)
    model = tmp_path / "speech_emotion_int8.tflite"
    if damage == "missing":
        model.unlink()
    elif damage == "corrupt":
        model.write_bytes(model.read_bytes()[:-100] + b"\0" * 100)
    else:
        (tmp_path / "speech_emotion_int8.json").write_text("{not json")
    r = run_cli(tiny, "run", "--audio-file", str(tiny / "speech.wav"), "--fast",
                env={"EMOTION_EDGE_MODELS": str(tmp_path)})
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith("emotion-edge: error:") and "speech_emotion_int8" in err
    assert {"missing": "not found", "corrupt": "sha256", "manifest": "JSON"}[damage] in err
    assert "Traceback" not in r.stderr and r.stdout == ""


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 0), (signal.SIGHUP, 129)])
def test_a_stop_signal_ends_the_run_within_2s_with_leds_dark(tiny, tmp_path, signum, status):
    """The real process, paced in real time, under a notify socket this test binds.  SIGHUP
    stops as cleanly, with a status that lets systemd start it again."""
    sock_path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    e = dict(os.environ, EMOTION_EDGE_MODELS=str(tiny), NOTIFY_SOCKET=sock_path,
             PYTHONPATH=str(Path(__file__).parent.parent))
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "-v", "run", "--audio-file", str(tiny / "long.wav"),
         "--image", str(tiny / "frame.png"), "--mock-gpio", "--text",
         "--set", "smoothing.min_confidence=0.01"],
        env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        msgs: list[str] = []
        deadline = time.monotonic() + 30
        while sum(m == "WATCHDOG=1" for m in msgs) < 2 and time.monotonic() < deadline:
            msgs += drain(sock, 0.5)
        assert msgs and msgs[0].startswith("READY=1"), msgs
        t0 = time.monotonic()
        proc.send_signal(signum)
        rc = proc.wait(timeout=5)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate()
    assert rc == status, err
    assert elapsed < 2.0
    assert "STOPPING=1" in drain(sock, 0.2)
    assert "LEDs dark" in err
    sock.close()


def test_a_second_run_on_the_same_log_is_refused_and_the_first_goes_on(tiny, tmp_path):
    """Two runs given one log.file would rotate it under each other: the second, started while
    the first writes, is refused in one line naming the file, and the first keeps logging."""
    log = tmp_path / "decisions.jsonl"
    e = dict(os.environ, EMOTION_EDGE_MODELS=str(tiny), PYTHONPATH=str(Path(__file__).parent.parent))
    e.pop("NOTIFY_SOCKET", None)
    first = subprocess.Popen(
        [sys.executable, "-m", "edge", "run", "--audio-file", str(tiny / "long.wav"),
         "--no-camera", "--mock-gpio", "--log-file", str(log), "--set", "log.stdout=false"],
        env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (log.exists() and log.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert log.exists(), "the first run never logged"
        second = run_cli(tiny, "run", "--audio-file", str(tiny / "speech.wav"), "--fast",
                         "--no-camera", "--log-file", str(log))
        before = log.stat().st_size
        time.sleep(1.5)
        assert first.poll() is None and log.stat().st_size > before  # still logging
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=10) == 0
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
    assert second.returncode == 75 and second.stdout == ""  # busy: the service tries again
    assert second.stderr.strip().splitlines() == [
        f"emotion-edge: error: log.file {log} is in use by another emotion-edge process (the "
        f"service? `systemctl status emotion-edge` tells); stop it first (sudo systemctl stop "
        f"emotion-edge), or give this run its own log.file"]
    # Once the first has stopped, its lock has gone with it.
    assert run_cli(tiny, "run", "--audio-file", str(tiny / "speech.wav"), "--fast",
                   "--no-camera", "--log-file", str(log)).returncode == 0


def test_one_file_for_the_log_and_the_adaptation_state_is_refused(tiny, tmp_path):
    both = tmp_path / "same.json"
    r = run_cli(tiny, "run", "--audio-file", str(tiny / "speech.wav"), "--fast", "--no-camera",
                "--log-file", str(both), "--set", f"adapt.state_file={both}")
    assert r.returncode == 2 and not both.exists()
    assert r.stderr.strip().splitlines() == [
        f"emotion-edge: error: log.file and adapt.state_file both name {both}: the log would "
        f"append decisions to the statistics and each save would replace the log; give each a "
        f"file of its own"]


def test_sigterm_in_process_turns_the_mock_leds_off(tiny, monkeypatch):
    """Same, inside this process, so gpiozero's mock pins can be read after the run."""
    gpiozero = pytest.importorskip("gpiozero")
    monkeypatch.setenv("EMOTION_EDGE_MODELS", str(tiny))
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    monkeypatch.setenv("GPIOZERO_MOCK_PIN_CLASS", "mockpwmpin")
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    gpiozero.Device.pin_factory = None
    from edge.cli import main

    lit = threading.Event()

    def killer():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            f = gpiozero.Device.pin_factory
            if f is not None and any(float(f.pin(p).state) > 0 for p in (17, 27, 22)):
                lit.set()
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    t = threading.Thread(target=killer)
    t.start()
    try:
        rc = main(["run", "--audio-file", str(tiny / "long.wav"), "--image",
                   str(tiny / "frame.png"), "--set", "log.stdout=false",
                   "--set", "smoothing.min_confidence=0.01"])
        t.join()
        f = gpiozero.Device.pin_factory
        assert rc == 0 and lit.is_set()
        assert [float(f.pin(p).state) for p in (17, 27, 22, 4)] == [0.0] * 4
    finally:
        if gpiozero.Device.pin_factory is not None:
            gpiozero.Device.pin_factory.reset()
            gpiozero.Device.pin_factory.close()
        gpiozero.Device.pin_factory = None


def test_camera_unplugged_mid_run_is_retried_with_backoff_and_comes_back():
    """The real LatestFrameGrabber (edge.sources.camera) over a source that fails while 'unplugged'."""
    import numpy as np

    from edge.errors import DeviceUnavailableError
    from edge.sources.base import FrameSource
    from edge.sources.camera import GrabberFrames, LatestFrameGrabber

    class FlakyCamera(FrameSource):
        name = "flaky"

        def __init__(self):
            super().__init__()
            self.unplugged = False
            self.resets = 0

        def _read(self):
            if self.unplugged:
                raise DeviceUnavailableError("camera unplugged")
            time.sleep(0.002)
            return np.full((240, 320), 128, np.uint8)

        def reset(self):
            self.resets += 1

    camera = FlakyCamera()
    grabber = LatestFrameGrabber(camera, retry_initial_s=0.005, retry_max_s=0.04).start()
    assert grabber.wait_for_frame(2.0) is not None

    def wait_until(cond):
        deadline = time.monotonic() + 2.0
        while not cond() and time.monotonic() < deadline:
            time.sleep(0.002)

    class Plug:
        """Unplugs the camera after decision 4 and plugs it back after decision 12."""

        n = 0

        def write(self, d):
            self.n += 1
            if self.n == 4:
                camera.unplugged = True
                wait_until(lambda: not grabber.available)
            elif self.n == 12:
                camera.unplugged = False
                wait_until(lambda: grabber.available and grabber.latest() is not None)

        def close(self):
            pass

    try:
        loop, sink = make_loop(audio=FakeMicrophone(20, pace_s=0.02), frames=GrabberFrames(grabber),
                               sinks=[Plug()], clock=FakeClock())
        loop.run()
    finally:
        grabber.close()
    states = [d.face.state for d in sink.decisions]
    assert states[:4] == ["ok"] * 4
    assert set(states[4:12]) == {"unavailable"}
    assert states[12:] == ["ok"] * 8
    assert all(d.fused and d.label for d in sink.decisions[4:12])  # speech carried on
    assert grabber.failures >= 3 and camera.resets >= 3  # retried, repeatedly, with backoff
    assert sink.decisions[-1].counters["camera_lost"] == 1


def test_video_replay_counts_skipped_frames_and_ends_face_with_the_video(tiny, tmp_path):
    cv2 = pytest.importorskip("cv2")
    import numpy as np

    video = tmp_path / "blank.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (320, 240))
    for _ in range(60):  # 3 s of video against 6 s of audio
        writer.write(np.full((240, 320, 3), 90, np.uint8))
    writer.release()
    r = run_cli(tiny, "run", "--audio-file", str(tiny / "speech.wav"), "--video-file", str(video),
                "--fast")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    states = [rec["face"]["state"] for rec in lines]
    assert states[0] == "no_face" and states[-1] == "no_frame"  # the video ended first
    assert lines[-1]["counters"]["frame_drops"] > 30  # 20 fps camera, 2 decisions per second
    assert "frames skipped" in r.stderr.splitlines()[-1]


def test_the_summary_speaks_of_frames_only_when_frames_were_read(tiny, tmp_path):
    """camera.enabled = false set in the config file (not --no-camera) left "frames skipped 0
    (the camera is faster than the loop)" in the summary of a run that read no frame."""
    config = tmp_path / "config.toml"
    config.write_text("[camera]\nenabled = false\n[adapt]\nenabled = false\n")
    r = run_cli(tiny, "run", "--config", str(config), "--audio-file", str(tiny / "speech.wav"),
                "--image", str(tiny / "frame.png"), "--fast")
    assert r.returncode == 0, r.stderr
    summary = r.stderr.splitlines()[-1]
    assert "s of audio" in summary and "frames" not in summary, summary
    r = run_cli(tiny, "run", "--audio-file", str(tiny / "speech.wav"), "--image",
                str(tiny / "frame.png"), "--fast", "--set", "adapt.enabled=false")
    assert r.returncode == 0, r.stderr
    assert "frames skipped" in r.stderr.splitlines()[-1]


def test_a_microphone_that_keeps_overflowing_is_told_in_a_few_lines(caplog):
    """One warning per cycle filled the journal twice a second; now at 1, 2, 4, 8, ... so far."""
    loop, sink = make_loop(audio=FakeMicrophone(40, overflow_at=range(40)), face=False)
    with caplog.at_level(logging.WARNING, logger="edge.pipeline.loop"):
        loop.run()
    told = [r.message for r in caplog.records if "overflows" in r.message]
    assert sink.decisions[-1].counters["audio_overflows"] >= 30
    assert told == [f"audio overflows: {n} so far" for n in (1, 2, 4, 8, 16, 32)][:len(told)]
    assert 4 <= len(told) <= 6


def test_a_hop_longer_than_the_speech_window_is_named(caplog):
    """loop.hop_s = 5 with a 3 s window leaves 2 s of every 5 unheard, without a word."""
    from edge.config import load_config
    from edge.pipeline.appliance import open_speech_model

    config = load_config(None, env={}, overrides={("loop", "hop_s"): 4.0,
                                                   ("adapt", "enabled"): False})
    with caplog.at_level(logging.WARNING), open_speech_model(config) as speech:
        assert speech.hop_s == 4.0
    assert "1 s of every hop is never heard" in caplog.text


def test_status_tells_health_to_everyone_and_the_emotion_to_no_one(notify_socket):
    """`systemctl status` shows STATUS= to every local user: it said "happy 0.53", which the
    decision log and the journal keep from them.  It says how the appliance is, and what
    has gone wrong so far."""
    path, sock = notify_socket
    loop, sink = make_loop(audio=FakeMicrophone(12), notifier=Notifier(path))
    loop.counters["sink_errors"] = 2  # as a failing log would leave it
    loop.run()
    statuses = [m for m in drain(sock, 0.3) if m.startswith("STATUS=")]
    shown = {d.label for d in sink.decisions} - {None}
    assert shown, "the fake speech never showed an emotion: the check below could not fail"
    assert statuses and all(not any(label in s for label in shown) for s in statuses), statuses
    assert statuses[-1].startswith("STATUS=running, cycle ") and "level full" in statuses[-1]
    assert statuses[-1].endswith("; faults so far: sink errors 2")


def test_a_stalled_microphone_is_said_once_and_its_return_too(caplog):
    """A USB microphone unplugged: reads time out, no cycle completes, and nothing was logged;
    the watchdog's restart came without a word."""
    from edge.pipeline import loop as loop_module

    class Unplugged(FakeMicrophone):
        def read(self, timeout_s=None):
            self.reads = getattr(self, "reads", 0) + 1
            if 3 <= self.reads < 3 + 40:  # 40 timeouts of 0.2 s: 8 s without a block
                return None
            return super().read(timeout_s)

    loop, sink = make_loop(audio=Unplugged(6))
    with caplog.at_level(logging.WARNING, logger=loop_module.__name__):
        loop.run()
    said = [r.getMessage() for r in caplog.records]
    assert sum("no audio from the microphone for 2 s" in m for m in said) == 1, said
    assert said.count("audio is back after 8.0 s") == 1, said
    assert loop.counters["audio_timeouts"] == 40 and len(sink.decisions) > 0


def test_a_camera_stuck_inside_read_is_lost_then_reopened_by_a_restart(monkeypatch):
    """A driver that blocks in read(): its last frame was scored "face ok happy" every cycle,
    camera_lost stayed 0 and the watchdog was pinged for ever.  Its frame goes stale (the face
    is unavailable, the camera counted lost), and past STUCK_S the run stops (exit 75), so
    that the service opens the camera afresh; closing does not wait on the stuck thread."""
    import numpy as np

    from edge.errors import DeviceUnavailableError
    from edge.sources import camera as camera_module
    from edge.sources.camera import GrabberFrames, LatestFrameGrabber

    monkeypatch.setattr(camera_module, "STALE_S", 0.15)
    monkeypatch.setattr(camera_module, "STUCK_S", 0.6)
    release = threading.Event()

    class Stuck:
        name = "stuck camera"
        exhausted = False
        reads = 0

        def read(self):
            self.reads += 1
            if self.reads > 5:
                release.wait(30)  # the driver never comes back
            time.sleep(0.01)
            return np.full((240, 320), 128, np.uint8)

        def reset(self):
            pass

        def close(self):
            pass

    grabber = LatestFrameGrabber(Stuck()).start()
    assert grabber.wait_for_frame(2.0) is not None
    frames = GrabberFrames(grabber)
    loop, sink = make_loop(audio=FakeMicrophone(forever=True, pace_s=0.02), frames=frames,
                           clock=FakeClock())
    try:
        with pytest.raises(DeviceUnavailableError, match="stuck camera gave no frame for"):
            loop.run()
        t0 = time.monotonic()
        frames.close()
        assert time.monotonic() - t0 < 1.5
    finally:
        release.set()
    states = [d.face.state for d in sink.decisions]
    assert "unavailable" in states and states[-1] == "unavailable"
    assert sink.decisions[-1].counters["camera_lost"] == 1


def test_a_models_labels_fusion_leaves_out_are_named_when_the_run_starts(tiny, tmp_path):
    """`check` named them, `run` dropped what they won without a word (a face model of one's
    own with "confused" or "pain")."""
    import shutil

    models = tmp_path / "models"
    shutil.copytree(tiny, models)
    manifest = next(p for p in models.glob("*.json") if "face" in p.name)
    data = json.loads(manifest.read_text())
    left_out = data["labels"][0]
    data["fusion_map"][left_out] = None
    manifest.write_text(json.dumps(data))
    args = ("run", "--audio-file", str(tiny / "speech.wav"), "--image", str(tiny / "frame.png"),
            "--fast", "--set", "adapt.enabled=false")
    r = run_cli(models, *args)
    assert r.returncode == 0, r.stderr
    assert f"the face model's label(s) {left_out} are none of the emotions shown" in r.stderr
    config = tmp_path / "config.toml"  # left out on purpose: no word
    config.write_text(f'[fusion.face_map]\n{left_out} = ""\n')
    r = run_cli(models, *args, "--config", str(config))
    assert r.returncode == 0 and "none of the emotions shown" not in r.stderr, r.stderr
