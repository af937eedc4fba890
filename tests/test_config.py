"""The configuration: TOML, then environment, then CLI; typed, frozen, strict."""

import dataclasses
import json
import re

import pytest

from edge.config import Config, config_reference, load_config, parse_override, parse_overrides
from edge.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_defaults_are_valid_and_frozen():
    c = load_config(env={})
    assert c.loop.hop_s == 0.0 and c.loop.num_threads == 1  # 0: the speech model's own hop
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.loop.hop_s = 1.0  # type: ignore[misc]


def test_precedence_file_then_env_then_cli(tmp_path):
    p = write(tmp_path, "[loop]\nhop_s = 0.25\ndeadline_s = 0.1\n[leds]\nmode = 'none'\n")
    c = load_config(p, env={"EMOTION_EDGE_LOOP_DEADLINE_S": "0.2"},
                    overrides={("leds", "mode"): "per_emotion"})
    assert c.loop.hop_s == 0.25  # file
    assert c.loop.deadline_s == 0.2  # env beats file
    assert c.leds.mode == "per_emotion"  # CLI beats both
    assert str(p) in c.source and "EMOTION_EDGE_LOOP_DEADLINE_S" in c.source


def test_env_types_are_parsed():
    c = load_config(env={"EMOTION_EDGE_CAMERA_ENABLED": "no", "EMOTION_EDGE_LEDS_RGB_PINS": "2,3,4",
                         "EMOTION_EDGE_LEDS_EMOTION_PINS": "{happy = 5, sad = 6}",
                         "EMOTION_EDGE_LEDS_STATUS_PIN": "-1"})
    assert c.camera.enabled is False
    assert c.leds.rgb_pins == (2, 3, 4)
    assert dict(c.leds.emotion_pins) == {"happy": 5, "sad": 6}


def test_unrelated_package_env_vars_are_ignored():
    c = load_config(env={"EMOTION_EDGE_MODELS": "/x", "EMOTION_EDGE_RUNTIME": "litert"})
    assert c == Config()


@pytest.mark.parametrize(
    "text, words",
    [
        ("[loop]\nhops = 1\n", ["loop.hops", "hop_s"]),
        ("[lop]\nhop_s = 1\n", ["[lop]", "loop"]),
        ("[leds]\nmode = 'blink'\n", ["leds.mode", "'rgb'", "'per_emotion'"]),
        ("[loop]\nhop_s = 0.01\n", ["loop.hop_s", "at least 0.05"]),
        ("[loop]\nhop_s = nan\n", ["loop.hop_s", "finite"]),
        ("[fusion]\nspeech_weight = inf\n", ["fusion.speech_weight", "finite"]),
        ("[loop]\nhop_s = 'fast'\n", ["loop.hop_s", "number"]),
        ("[camera]\nenabled = 1\n", ["camera.enabled", "true or false"]),
        ("[leds]\nrgb_pins = [1, 2]\n", ["rgb_pins", "3 pins"]),
        ("[leds]\nrgb_pins = [4, 5, 6]\nstatus_pin = 4\n", ["assigned twice"]),
        ("[leds]\nemotion_pins = {happy = 6, joy = 7}\n", ["leds.emotion_pins", "'joy'", "surprised"]),
        ("[loop\n", ["not valid TOML"]),
        ("[camera]\nredetect_motion = -1\n", ["camera.redetect_motion", ">= 0.0"]),
        ("[camera]\nredetect_motion = 300\n", ["camera.redetect_motion", "<= 255.0"]),
        ("[camera]\nredetect_motion = 'still'\n", ["camera.redetect_motion", "a number"]),
        ("[camera]\nredetect_after_s = 0.1\n", ["camera.redetect_after_s", ">= 0.5"]),
        ("[camera]\nredetect_after_s = 120\n", ["camera.redetect_after_s", "<= 60.0"]),
    ],
)
def test_bad_files_are_rejected_naming_the_key(tmp_path, text, words):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), env={})
    for w in words:
        assert w in str(err.value)


def test_face_redetection_settings_default_to_gated_detection():
    c = load_config(env={})
    assert c.camera.redetect_motion == 8.0 and c.camera.redetect_after_s == 4.0
    c = load_config(env={"EMOTION_EDGE_CAMERA_REDETECT_MOTION": "0"},
                    overrides={("camera", "redetect_after_s"): "2.5"})
    assert c.camera.redetect_motion == 0.0 and c.camera.redetect_after_s == 2.5
    with pytest.raises(ConfigError) as err:
        load_config(env={"EMOTION_EDGE_CAMERA_REDETECT_AFTER_S": "0"})
    assert "\n" not in str(err.value) and "camera.redetect_after_s" in str(err.value)


def test_bad_env_value_names_the_variable():
    with pytest.raises(ConfigError, match="EMOTION_EDGE_LOOP_HOP_S"):
        load_config(env={"EMOTION_EDGE_LOOP_HOP_S": "soon"})
    with pytest.raises(ConfigError, match="unknown key loop.speed"):
        load_config(env={"EMOTION_EDGE_LOOP_SPEED": "1"})


def test_missing_file_only_an_error_when_required(tmp_path):
    assert load_config(tmp_path / "nope.toml", env={}) == Config()
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", env={}, required=True)


def test_parse_override():
    assert parse_override("loop.hop_s=0.25") == ("loop", "hop_s", "0.25")
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("hop_s=1")


def test_example_config_is_valid_and_documents_every_key():
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "systemd" / "config.example.toml"
    c = load_config(example, env={}, required=True)
    assert c.log.file == "/run/emotion-edge/decisions.jsonl"
    assert c.log.stdout is False  # the installed appliance keeps its decisions off the journal
    text = example.read_text()
    for line in config_reference().splitlines()[2:]:
        key = line.split("`")[1].split(".")[1]
        assert key in text, key


def test_docs_reference_table_is_current():
    from pathlib import Path

    docs = Path(__file__).resolve().parent.parent / "docs" / "appliance.md"
    assert config_reference() in docs.read_text(), (
        "docs/appliance.md is stale: paste python -c 'from edge.config import config_reference; "
        "print(config_reference())' into its Configuration reference")


def test_every_emotion_edge_variable_has_one_owner():
    # A misspelt section, or a variable of an earlier version, is refused with its name...
    with pytest.raises(ConfigError, match="EMOTION_EDGE_LOOOP_HOP_S"):
        load_config(env={"EMOTION_EDGE_LOOOP_HOP_S": "0.5"})
    with pytest.raises(ConfigError, match="EMOTION_EDGE_AUDIO_DEVICE"):
        load_config(env={"EMOTION_EDGE_MIC": "usb"})
    # ...the process-wide ones belong to the loader too, and do not collide with sections.
    c = load_config(env={"EMOTION_EDGE_MODELS": "/x", "EMOTION_EDGE_RUNTIME": "litert",
                         "EMOTION_EDGE_AUDIO_DEVICE": "usb"})
    assert c.audio.device == "usb"
    from edge.config import process_setting

    assert process_setting("EMOTION_EDGE_MODELS", {"EMOTION_EDGE_MODELS": "/x"}) == "/x"
    with pytest.raises(KeyError):
        process_setting("EMOTION_EDGE_CAMERA", {})


def test_adapt_command_shows_and_resets_the_state(tmp_path, capsys):
    from edge.cli import main

    state = tmp_path / "adapt.json"
    state.write_text('{"heard": {"count": 6000, "mean": [0, 0], "var": [1, 1]}}')
    cfg = write(tmp_path, f"[adapt]\nstate_file = '{state}'\n")
    assert main(["adapt", "--config", str(cfg), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["speech_s"] == 60.0 and shown["own_share"] == 0.5
    assert main(["adapt", "--config", str(cfg), "--reset"]) == 0
    assert not state.exists()
    assert main(["adapt", "--set", "adapt.state_file="]) == 2
    assert "adapt.state_file is empty" in capsys.readouterr().err


@pytest.mark.parametrize("toml, words", [
    ("[fusion]\nspeech_weight = 0\nface_weight = 0\n", "both 0"),
    ("[fusion.face_map]\nhappy = \"ecstatic\"\n", "'ecstatic' is not a common label"),
])
def test_meaningless_fusion_settings_are_refused(tmp_path, toml, words):
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError, match=words):
        load_config(cfg, env={})


@pytest.mark.parametrize("override, named", [
    # A negative RGB pin passed validation and failed only when the LEDs opened.
    ("leds.rgb_pins=[17, 27, -3]", "pin -3"),
    # {happy = 0} was taken as "" and silently left happy out of fusion.
    ("fusion.speech_map={happy = 0}", "values are strings"),
    ("fusion.face_map={fear = false}", "values are strings"),
    ("leds.emotion_pins={happy = 6.5}", "values are integers"),
    # run made a folder named '~' (or '$HOME') in its working directory.
    ("log.file=~/decisions.jsonl", "not expanded"),
    ("adapt.state_file=$HOME/adapt.json", "not expanded"),
    ("mqtt.ca_file=${HOME}/ca.pem", "not expanded"),
])
def test_wrong_values_inside_lists_and_tables_are_refused(override, named):
    with pytest.raises(ConfigError, match=named):
        load_config(None, overrides=parse_overrides([override]), env={})


def test_the_status_led_alone_may_be_none():
    config = load_config(None, overrides=parse_overrides(["leds.status_pin=-1"]), env={})
    assert config.leds.status_pin == -1


def test_a_config_with_a_byte_order_mark_is_read(tmp_path):
    """Notepad saves UTF-8 with a byte-order mark; it was 'Invalid statement at line 1'."""
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xef\xbb\xbf[loop]\ndeadline_s = 0.3\n")
    assert load_config(path, env={}).loop.deadline_s == 0.3


@pytest.mark.parametrize("section", ["mqtt", "camera"])
def test_a_first_retry_longer_than_the_longest_is_refused(section):
    overrides = parse_overrides([f"{section}.retry_initial_s=60", f"{section}.retry_max_s=1"])
    with pytest.raises(ConfigError, match=f"{section}.retry_initial_s = 60 is longer"):
        load_config(None, overrides=overrides, env={})


def test_a_config_this_user_may_not_read_is_one_line_with_the_fix(tmp_path, monkeypatch):
    """A 0640 config in a folder the ssh user may not enter was an internal error."""
    from pathlib import Path

    path = tmp_path / "config.toml"
    path.write_text("[loop]\n")

    def denied(self, *a, **kw):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "is_file", denied)
    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(ConfigError, match="permission denied; run this with sudo.*chmod 644"):
        load_config(path, env={})


@pytest.mark.parametrize("where, named", [
    ("env", "environment variable EMOTION_EDGE_LOOP_DEADLINE_S"),
    ("set", "--set loop.deadline_s"),
    ("file", "config.toml"),
])
def test_a_refused_value_names_where_it_came_from(tmp_path, where, named):
    """A bad value in /etc/default/emotion-edge was reported as if it were in the TOML."""
    path = tmp_path / "config.toml"
    path.write_text("[loop]\ndeadline_s = -1\n" if where == "file" else "")
    env = {"EMOTION_EDGE_LOOP_DEADLINE_S": "-1"} if where == "env" else {}
    overrides = parse_overrides(["loop.deadline_s=-1"]) if where == "set" else None
    with pytest.raises(ConfigError, match=f"too small.*from .*{re.escape(named)}"):
        load_config(path, env=env, overrides=overrides)


@pytest.mark.parametrize("content, words", [
    (b"# " + b"x" * (1 << 20) + b"\n", "larger than 1 MB"),
    (b"[loop]\n# caf\xe9\n", "not UTF-8 text (byte 12); save it as UTF-8"),
])
def test_a_config_that_cannot_be_one_is_refused_in_one_line(tmp_path, content, words):
    """/dev/zero as --config read until memory ran out (an internal MemoryError), and a
    Latin-1 config said only "'utf-8' codec can't decode byte 0xe9"."""
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(words)) as info:
        load_config(path, env={})
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_dev_zero_as_a_config_is_refused_with_bounded_memory():
    from pathlib import Path

    with pytest.raises(ConfigError, match="larger than 1 MB"):
        load_config(Path("/dev/zero"), env={}, required=True)
