"""emotion-edge check: each problem printed with its fix; exit code says if something is missing."""

import json
import os
import subprocess
import types
from pathlib import Path

import pytest

from edge.cli import main
from edge.config import Config, load_config
from edge.service.checks import (
    OK,
    PROBLEM,
    WARN,
    check_camera,
    check_gpio,
    check_mic,
    check_thermal,
)

REPO = Path(__file__).resolve().parent.parent


def vcgencmd(output):
    def run(cmd, **kw):
        assert cmd == ["vcgencmd", "get_throttled"]
        return subprocess.CompletedProcess(cmd, 0, stdout=output, stderr="")
    return run


def no_vcgencmd(cmd, **kw):
    raise FileNotFoundError("vcgencmd")


def thermal_root(tmp_path, millideg):
    zone = tmp_path / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text(f"{millideg}\n")
    return tmp_path


def test_cool_and_unthrottled_pi(tmp_path):
    found = check_thermal(thermal_root(tmp_path, 48312), vcgencmd("throttled=0x0\n"))
    assert [f.status for f in found] == ["ok", "ok"]
    assert "48.3 °C" in found[0].detail


def test_hot_and_throttled_pi_gets_warnings_with_fixes(tmp_path):
    found = check_thermal(thermal_root(tmp_path, 82000), vcgencmd("throttled=0x50005\n"))
    assert found[0].status == "warning" and "heatsink" in found[0].fix
    details = [f.detail for f in found[1:]]
    assert any("under-voltage now" in d for d in details)
    assert any("throttled now" in d for d in details)
    assert any("under-voltage has occurred" in d for d in details)
    assert any("throttling has occurred" in d for d in details)
    assert all(f.fix for f in found[1:])


def test_not_a_pi(tmp_path):
    found = check_thermal(tmp_path, no_vcgencmd)
    assert [f.status for f in found] == ["ok", "ok"] and "not a Pi" in found[1].detail


def test_camera_missing_is_a_problem_unless_disabled():
    assert check_camera(Config(), dev_glob=lambda p: [])[0].status == "problem"
    off = load_config(env={}, overrides={("camera", "enabled"): False})
    assert check_camera(off, dev_glob=lambda p: [])[0].status == "ok"


def test_mic_listing_and_device_match():
    class PA:
        def get_device_count(self):
            return 2

        def get_device_info_by_index(self, i):
            return [{"name": "bcm2835 HDMI", "maxInputChannels": 0},
                    {"name": "USB PnP Sound Device", "maxInputChannels": 1}][i]

        def terminate(self):
            pass

    fake = types.SimpleNamespace(PyAudio=PA)
    assert check_mic(Config(), fake)[0].status == "ok"
    usb = load_config(env={}, overrides={("audio", "device"): "usb"})
    assert check_mic(usb, fake)[0].status == "ok"
    other = load_config(env={}, overrides={("audio", "device"): "respeaker"})
    bad = check_mic(other, fake)[0]
    assert bad.status == "problem" and "USB PnP" in bad.detail and "audio.device" in bad.fix


def test_cli_reports_missing_models_and_exits_1(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EMOTION_EDGE_MODELS", str(tmp_path))
    rc = main(["check", "--no-devices", "--mock-gpio", "--config", str(tmp_path / "none.toml")])
    assert rc == 2  # a named config that does not exist is a configuration error
    rc = main(["check", "--no-devices", "--mock-gpio", "--set", "models.speech=" +
               str(tmp_path / "nope.tflite")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "[PROBLEM] models" in out and "nope.tflite" in out and "fix:" in out


def test_check_refuses_what_run_refuses(tmp_path, capsys):
    """check opens the models as run does: the speech model given as the face model is a problem
    for both (check used to open any .tflite with a manifest and say ok)."""
    from edge.paths import default_model

    speech = str(default_model("speech_emotion_int8.tflite"))
    for override in (f"models.face={speech}",):
        rc = main(["check", "--no-devices", "--mock-gpio", "--set", override])
        out = capsys.readouterr().out
        assert rc == 1 and "[PROBLEM] models" in out, (override, out)
        run_rc = main(["run", "--mock-gpio", "--set", override, "--audio-file",
                       str(tmp_path / "none.wav")])
        assert run_rc == 2, override


def test_cli_rejects_a_bad_config(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[leds]\nmode = 'disco'\n")
    assert main(["check", "--config", str(cfg)]) == 2
    assert "leds.mode" in capsys.readouterr().err


def test_the_files_run_writes_are_checked_before_it_needs_them(tmp_path, capsys):
    """A folder named as the adaptation state (or the decision log) is a problem for check, as
    it is for run when it comes to save; a missing folder that can be made is fine."""
    folder = tmp_path / "state"
    folder.mkdir()
    fine = tmp_path / "new" / "speech-adaptation.json"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases = [(f"adapt.state_file={folder}", 1, "[PROBLEM] adaptation state"),
             (f"adapt.state_file={blocker / 'x.json'}", 1, "[PROBLEM] adaptation state"),
             (f"log.file={folder}", 1, "[PROBLEM] decision log"),
             (f"adapt.state_file={fine}", 0, "[ok     ] adaptation state")]
    for setting, rc, line in cases:
        assert main(["check", "--no-devices", "--mock-gpio", "--set", setting]) == rc, setting
        out = capsys.readouterr().out
        assert line in out, (setting, out)
    assert not fine.parent.exists()  # check makes nothing
    damaged = tmp_path / "damaged.json"
    damaged.write_bytes(b'{"heard": \xff\xfe\x00garbage')
    assert main(["check", "--no-devices", "--mock-gpio", "--set",
                 f"adapt.state_file={damaged}"]) == 0  # a warning: the appliance starts afresh
    assert "[WARNING] adaptation state" in capsys.readouterr().out
    main(["check", "--no-devices", "--mock-gpio", "--set", f"adapt.state_file={folder}",
          "--set", "adapt.enabled=false"])
    assert "adaptation state" not in capsys.readouterr().out  # nothing is saved then


def test_gpio_with_no_pin_library_names_the_mock_pins(monkeypatch):
    gpiozero = pytest.importorskip("gpiozero")
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "no-such-pin-library")
    gpiozero.Device.pin_factory = None
    try:
        (finding,) = check_gpio(Config())
    finally:
        gpiozero.Device.pin_factory = None
    assert finding.status == PROBLEM and "BadPinFactory" in finding.detail
    assert "--mock-gpio" in finding.fix and "gpio group" not in finding.fix


def test_a_decision_log_on_a_read_only_file_system_is_a_problem(tmp_path, monkeypatch):
    """`run` refuses it (root included), so `check` must not call it a warning."""
    import os

    from edge.service import checks

    real = os.statvfs

    def statvfs(path):
        st = real(path)
        return types.SimpleNamespace(f_flag=st.f_flag | os.ST_RDONLY)

    monkeypatch.setattr(checks.os, "statvfs", statvfs)
    finding = checks.check_decision_log(tmp_path / "d.jsonl", max_bytes=1_000_000, backups=2)
    assert finding.status == PROBLEM and "read-only" in finding.detail


def test_a_file_system_without_room_for_the_log_is_a_warning(tmp_path, monkeypatch):
    """log.max_bytes = 100 MB with 2 backups on /run (a tmpfs of a few tens of MB on a Pi) said
    "writable": the log would fill the RAM disk systemd itself needs.  What the log and its
    backups already take counts as theirs."""
    from edge.service import checks

    real = os.statvfs
    free_blocks = {"n": 10}  # of 1 MB

    def statvfs(path):
        st = real(path)
        return types.SimpleNamespace(f_flag=st.f_flag, f_bavail=free_blocks["n"],
                                     f_frsize=1_000_000)

    monkeypatch.setattr(checks.os, "statvfs", statvfs)
    log = tmp_path / "d.jsonl"
    finding = checks.check_decision_log(log, max_bytes=100_000_000, backups=2)
    assert finding.status == WARN, finding
    assert "10.0 MB free" in finding.detail and "300.0 MB" in finding.detail
    assert "log.max_bytes" in finding.fix and "log.file" in finding.fix
    assert checks.check_decision_log(log, max_bytes=3_000_000, backups=2).status == OK
    free_blocks["n"] = 3
    assert checks.check_decision_log(log, max_bytes=3_000_000, backups=2).status == WARN
    for i in (1, 2):  # 6 MB of the 9 are already there, in the backups
        log.with_name(f"d.jsonl.{i}").write_bytes(b"{}\n" * 1_000_000)
    assert checks.check_decision_log(log, max_bytes=3_000_000, backups=2).status == OK
    # a folder is still refused as one, "." (which has no name) too
    assert checks.check_decision_log(Path("."), max_bytes=3_000_000, backups=2).status == PROBLEM
    free_blocks["n"] = 0
    state = checks.check_adaptation_state(tmp_path / "state.json")
    assert state.status == WARN and "adapt.state_file" in state.fix, state


def test_a_folder_this_user_may_not_enter_is_a_warning_not_a_crash(tmp_path, monkeypatch):
    """The ssh user's `check` after the service had run: /run/emotion-edge is 0750, and
    is_file() raised PermissionError, an internal error that hid every other finding."""
    from edge.service import checks

    def denied(path, **settings):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(checks, "check_decision_log", denied)
    monkeypatch.setattr(checks, "check_adaptation_state", denied)
    config = load_config(None, env={}, overrides={("log", "file"): str(tmp_path / "d.jsonl"),
                                                   ("adapt", "state_file"): str(tmp_path / "a")})
    findings = checks.run_checks(config, live=False, pin_factory=None)
    mine = {f.what: f for f in findings if f.what in ("decision log", "adaptation state")}
    assert set(mine) == {"decision log", "adaptation state"}
    assert all(f.status == checks.WARN and "may not look" in f.detail for f in mine.values())


def test_per_emotion_leds_without_pins_for_some_emotions_is_a_warning():
    from edge.service.checks import WARN
    from edge.testing import mock_pin_factory

    config = load_config(None, env={}, overrides={("leds", "mode"): "per_emotion",
                                                   ("leds", "emotion_pins"): {"happy": 6}})
    (pins, finding) = check_gpio(config, mock_pin_factory())
    assert finding.status == WARN and "no LED for neutral" in finding.detail
    assert pins.detail == "LED pins free (per_emotion): happy GPIO6 (pin 31), status GPIO4 (pin 7)"


def test_gpio_names_the_header_pins_and_warns_of_shared_ones():
    """The header's numbering shows what to wire (a pin given as its header number shows up as
    another header pin); a GPIO that something else drives or pulls is a warning, and a pin
    that is not on the header, or a pin library without PWM, a problem with its own fix."""
    from edge.service.checks import OK, WARN
    from edge.testing import mock_pin_factory

    def gpio(**leds):
        overrides = {("leds", key): value for key, value in leds.items()}
        return check_gpio(load_config(None, env={}, overrides=overrides), mock_pin_factory())

    (ok,) = gpio()
    assert ok.status == OK and ok.detail == ("LED pins free (rgb): red GPIO17 (pin 11), green "
                                             "GPIO27 (pin 13), blue GPIO22 (pin 15), status "
                                             "GPIO4 (pin 7)")
    ok, _console = gpio(rgb_pins=[11, 13, 15], status_pin=7)  # header numbers, taken as BCM
    assert "red GPIO11 (pin 23)" in ok.detail and "blue GPIO15 (pin 10)" in ok.detail
    ok, pulled, console = gpio(rgb_pins=[2, 27, 22], status_pin=14)
    assert ok.status == OK and pulled.status == console.status == WARN
    assert pulled.detail.startswith("the red LED is on GPIO2, I2C1 with a fixed pull-up")
    assert "serial console" in console.detail and "leds." in console.fix
    (bad,) = gpio(rgb_pins=[40, 41, 45])
    assert bad.status == PROBLEM and "40 is not a valid pin" in bad.detail
    assert bad.fix.startswith("leds.* pins are BCM GPIO numbers of the 40-pin header")


def test_check_json_and_quiet_say_what_the_text_says(tmp_path, capsys):
    """``--json`` for scripts (a "is it working?" button): the same findings and exit status;
    ``-q`` prints only what needs attention, and the verdict."""
    from edge.cli import main

    args = ["check", "--no-devices", "--mock-gpio", "--set", "leds.mode=per_emotion",
            "--set", "leds.emotion_pins={happy = 6}"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ready"] is True and report["problems"] == 0 and report["warnings"] == 1
    assert [f["status"] for f in report["findings"]].count("ok") == text.count("[ok     ]")
    (gpio,) = [f for f in report["findings"] if f["what"] == "GPIO" and f["status"] != "ok"]
    assert gpio["status"] == "warning" and "leds.emotion_pins" in gpio["fix"]
    assert all(f["fix"] == "" for f in report["findings"] if f["status"] == "ok")
    assert main([*args, "-q"]) == 0
    quiet = capsys.readouterr().out.splitlines()
    assert quiet[0].startswith("[WARNING] GPIO: no LED for neutral") and quiet[-1] == "ready"
    assert not any(line.startswith("[ok") for line in quiet)

    missing = ["check", "--no-devices", "--mock-gpio", "--set",
               f"models.speech={tmp_path / 'none.tflite'}"]
    assert main([*missing, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ready"] is False and report["problems"] >= 1
    assert main([*missing, "-q"]) == 1
    assert capsys.readouterr().out.splitlines()[-1].endswith("problem(s)")


def test_a_model_label_fusion_leaves_out_is_a_warning(tmp_path):
    """A model trained on labels of one's own ("boredom") loses them in fusion, and what they
    win goes to the others: check says so, unless the configuration chose it ("")."""
    import shutil

    from edge.service.checks import WARN, check_models

    model = tmp_path / "speech_emotion_int8.tflite"
    shutil.copy(REPO / "models" / "speech_emotion_int8.tflite", model)
    manifest = json.loads((REPO / "models" / "speech_emotion_int8.json").read_text())
    manifest["fusion_map"]["disgust"] = None
    model.with_suffix(".json").write_text(json.dumps(manifest))

    def fusion_findings(overrides=None):
        config = load_config(None, env={}, overrides={("models", "speech"): str(model),
                                                      ("camera", "enabled"): False,
                                                      **(overrides or {})})
        return [f for f in check_models(config) if f.what == "fusion"]

    ok, warned = fusion_findings()
    assert ok.status == "ok" and "disgust" not in ok.detail
    assert warned.status == WARN and warned.detail.startswith("the speech model's label(s) "
                                                              "disgust are none of the emotions")
    assert "[fusion] speech_map" in warned.fix
    (ok,) = fusion_findings({("fusion", "speech_map"): {"disgust": ""}})
    assert ok.status == "ok"


def test_a_state_file_that_is_another_file_is_a_problem(tmp_path):
    from edge.service.checks import WARN, check_adaptation_state

    config = tmp_path / "config.toml"
    config.write_text("[models]\n")
    finding = check_adaptation_state(config)
    assert finding.status == PROBLEM and "not an adaptation state" in finding.detail
    damaged = tmp_path / "s.json"
    damaged.write_bytes(b'{"heard": ')
    finding = check_adaptation_state(damaged)
    assert finding.status == WARN and "s.json.damaged" in finding.fix
