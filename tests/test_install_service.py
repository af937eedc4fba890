"""install-service into a temporary root: files written, idempotent, config kept, no user; and
what it does with hostile input (it runs as root): every ExecStart= word reads back as given,
control characters are refused, and no file is written through a planted symbolic link."""

import errno
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import edge
from edge.cli import main
from edge.config import load_config
from edge.errors import ConfigError, EmotionEdgeError
from edge.service.install import default_exec_start, install_service, shipped_file

UNIT = "etc/systemd/system/emotion-edge.service"
CONFIG = "etc/emotion-edge/config.toml"
RUN = ["-v", "run", "--config", "/etc/emotion-edge/config.toml"]

# ---------------------------------------------------------------------------------------------
# How systemd reads an ExecStart= line (systemd.service(5) "Command lines", systemd.syntax(7)
# "Quoting", and src/core/load-fragment.c config_parse_exec).  Only what a correct quoter may
# produce is accepted; anything systemd would read another way fails the test.

_WHITESPACE = " \t\n\r"
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "s": " ", "a": "\a", "b": "\b", "f": "\f",
            "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _split_words(line):
    """Unquote and C-unescape, word by word (extract_first_word with UNQUOTE|CUNESCAPE)."""
    words, i = [], 0
    while True:
        while i < len(line) and line[i] in _WHITESPACE:
            i += 1
        if i == len(line):
            return words
        assert not (line[i] == ";" and line[i + 1:i + 2] in ("", *_WHITESPACE)), (
            f"an unquoted ; would start a second command: {line!r}")
        word, quote = [], ""
        while i < len(line) and (quote or line[i] not in _WHITESPACE):
            c = line[i]
            if c == "\\":
                escaped = line[i + 1:i + 2]
                assert escaped in _ESCAPES, f"escape \\{escaped} in {line!r}"
                word.append(_ESCAPES[escaped])
                i += 2
                continue
            if c == quote:
                quote = ""
            elif not quote and c in "\"'":
                quote = c
            else:
                word.append(c)
            i += 1
        assert not quote, f"unterminated quote in {line!r}"
        words.append("".join(word))


def _specifiers(word):
    """At load time every % starts a specifier; only %% stands for itself."""
    parts = word.split("%%")
    assert all("%" not in p for p in parts), f"{word!r}: systemd would expand a specifier"
    return "%".join(parts)


def _variables(word):
    """At start time a word "$NAME" is split from the environment, "${NAME}" is replaced;
    only $$ stands for a dollar sign."""
    assert not (word.startswith("$") and word[1:2] not in ("{", "$")), f"{word!r} is a variable"
    parts = word.split("$$")
    assert all("$" not in p for p in parts), f"{word!r}: systemd would expand a variable"
    return "$".join(parts)


def systemd_exec_start(unit_text):
    """(program systemd executes, argv it passes) for the unit's one ExecStart= line."""
    [line] = [ln[len("ExecStart="):] for ln in unit_text.splitlines()
              if ln.startswith("ExecStart=")]
    words = _split_words(line)
    assert words[0][:1] == "/", f"{words[0]!r}: a leading -, @, :, + or ! is a flag to systemd"
    # The program path gets specifiers but no variables; argv[0] gets both.
    return _specifiers(words[0]), [_variables(_specifiers(w)) for w in words]


def test_the_parser_catches_what_the_old_renderer_wrote():
    with pytest.raises(AssertionError):
        systemd_exec_start("ExecStart=/opt/my venv 100%/bin/python run\n")
    assert systemd_exec_start('ExecStart="/opt/my venv 100%%/bin/python" "$$x" a\\sb\n') == (
        "/opt/my venv 100%/bin/python", ["/opt/my venv 100%/bin/python", "$x", "a b"])


# ---------------------------------------------------------------------------------------------


def test_installs_unit_and_config_into_a_root(tmp_path):
    actions = install_service(tmp_path, exec_start="/opt/emotion-edge/bin/emotion-edge")
    unit = tmp_path / UNIT
    config = tmp_path / CONFIG
    assert {a.outcome for a in actions} == {"written", "skipped"}
    text = unit.read_text()
    assert ("ExecStart=/opt/emotion-edge/bin/emotion-edge -v run --config "
            "/etc/emotion-edge/config.toml") in text
    assert "SupplementaryGroups=audio video gpio" in text
    assert load_config(config, env={}, required=True).log.file.startswith("/run/emotion-edge/")


def test_second_run_changes_nothing_and_keeps_the_users_config(tmp_path):
    install_service(tmp_path, exec_start="/x/emotion-edge")
    config = tmp_path / CONFIG
    config.write_text("[loop]\ndeadline_s = 0.3\n")
    again = install_service(tmp_path, exec_start="/x/emotion-edge")
    assert [a.outcome for a in again] == ["unchanged", "kept", "skipped"]
    assert config.read_text() == "[loop]\ndeadline_s = 0.3\n"


def test_a_broken_existing_config_fails_the_install(tmp_path):
    config = tmp_path / CONFIG
    config.parent.mkdir(parents=True)
    config.write_text("[loop]\nspeed = 3\n")
    with pytest.raises(ConfigError, match="loop.speed"):
        install_service(tmp_path, exec_start="/x/emotion-edge")
    # ... before the unit is replaced (it was written first, then the install failed).
    assert not (tmp_path / "etc/systemd/system/emotion-edge.service").exists()


def test_an_installation_in_a_home_folder_is_refused_before_anything_is_written():
    """The README's clone in /home with `sudo .venv/bin/emotion-edge install-service` wrote a
    unit that could not start (ProtectHome=yes), with a warning after "next steps"."""
    from edge.errors import EmotionEdgeError

    with pytest.raises(EmotionEdgeError, match="cannot see .ProtectHome=yes.*opt/emotion-edge"):
        install_service("/", dry_run=True,
                        exec_start="/home/pi/emotion-edge/.venv/bin/python -P -m edge",
                        run=lambda *a, **k: None)


@pytest.mark.parametrize("folder", ["/tmp", "/var/tmp"])
def test_an_installation_in_a_temporary_folder_is_refused_too(folder):
    """The unit's PrivateTmp=yes gives the service a /tmp of its own: a venv there was not
    found when the service started (203/EXEC), and install-service said nothing."""
    from edge.errors import EmotionEdgeError

    venv = f"{folder}/ee/venv"
    with pytest.raises(EmotionEdgeError, match=f"{venv}/bin/python lives under {folder}, which "
                       f"the service cannot see .PrivateTmp=yes"):
        install_service("/", dry_run=True, exec_start=f"{venv}/bin/python -P -m edge",
                        run=lambda *a, **k: None)


def test_dry_run_writes_nothing_and_runs_nothing(tmp_path):
    def never(*a, **k):
        raise AssertionError("no command may run in a dry run")

    actions = install_service(tmp_path, dry_run=True, exec_start="/x/emotion-edge", run=never)
    assert [a.outcome for a in actions][:2] == ["would write", "would write"]
    assert not any(tmp_path.iterdir())


def test_real_root_dry_run_creates_no_user():
    calls = []
    actions = install_service("/", dry_run=True, exec_start="/x/emotion-edge",
                              run=lambda *a, **k: calls.append(a))
    assert calls == [] and actions[-1].outcome in ("would create", "exists")


def test_cli_prints_steps(tmp_path, capsys):
    assert main(["install-service", "--root", str(tmp_path), "--exec-start", "/x/ee"]) == 0
    out = capsys.readouterr().out
    assert "systemctl enable --now emotion-edge" in out and "written" in out
    assert "\n  emotion-edge inspect --journal\n" in out  # --exec-start: another installation
    # Else this installation's own command: a venv's bin is not on PATH (/opt/emotion-edge/bin).
    assert main(["install-service", "--root", str(tmp_path / "again")]) == 0
    out = capsys.readouterr().out
    script = Path(sys.executable).parent / "emotion-edge"
    assert script.is_file() and f"\n  {script} inspect --journal\n" in out


# ExecStart= is the running interpreter ------------------------------------------------------


def test_exec_start_is_the_running_interpreter(tmp_path):
    install_service(tmp_path)
    program, argv = systemd_exec_start((tmp_path / UNIT).read_text())
    assert program == sys.executable  # as it is: a venv's bin/python, not what it links to
    assert argv == [sys.executable, "-P", "-m", "edge", *RUN]


def test_the_default_command_imports_this_package_from_the_root_folder():
    # systemd starts a system service in /; the interpreter must find this very package there.
    interpreter, *flags, m, package = default_exec_start()
    assert (flags, m, package) == (["-P"], "-m", "edge")
    found = subprocess.run(
        [interpreter, *flags, "-c", "import edge; print(edge.__file__)"],
        cwd="/", capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()
    assert found == edge.__file__


# Quoting: systemd reads back exactly the words given ----------------------------------------

NASTY = ["--name", "my room", "50%", "%n", "$HOME", "${HOME}", "$$", "a\\b", "\\n", "a\\",
         'say "hi"', "it's", ";", "\\;", "", "ünïcode", "#no-comment", "-"]


def test_every_word_reads_back_as_given(tmp_path):
    program = "/opt/my venv 100%/bin/python3"
    install_service(tmp_path, exec_start=[program, *NASTY])
    text = (tmp_path / UNIT).read_text()
    assert systemd_exec_start(text) == (program, [program, *NASTY, *RUN])
    shipped = shipped_file("emotion-edge.service").read_text().splitlines()
    assert [ln for ln in text.splitlines() if not ln.startswith("ExecStart=")] == [
        ln for ln in shipped if not ln.startswith("ExecStart=")]


def test_cli_command_is_split_like_a_shell_would(tmp_path):
    cmd = "'/opt/my venv/bin/emotion-edge' --label 'a b' 'back\\slash' '$HOME' 100%"
    assert main(["install-service", "--root", str(tmp_path), "--exec-start", cmd]) == 0
    program, argv = systemd_exec_start((tmp_path / UNIT).read_text())
    assert program == "/opt/my venv/bin/emotion-edge"
    assert argv == [program, "--label", "a b", "back\\slash", "$HOME", "100%", *RUN]


@pytest.mark.parametrize("exec_start", [
    "/x/emotion-edge\nExecStartPre=/bin/sh -c 'id > /tmp/pwned'",
    "'/x/emotion-edge\nExecStartPre=/bin/sh'",
    ["/x/emotion-edge", "--flag\nExecStartPre=/bin/sh"],
    ["/x/emotion-edge\r"],
    ["/x/emotion-edge", "a\x00b"],
    ["/x/emotion-edge", "tab\there"],
    ["/x/emotion-edge", "del\x7f"],
])
def test_control_characters_are_refused_and_nothing_is_written(tmp_path, exec_start):
    with pytest.raises(ConfigError, match="control character"):
        install_service(tmp_path, exec_start=exec_start)
    assert not any(tmp_path.iterdir())


def test_cli_refuses_a_newline_in_one_line_naming_the_value(tmp_path, capsys):
    cmd = "/x/emotion-edge\nExecStartPre=/bin/sh -c 'id > /tmp/pwned'"
    assert main(["install-service", "--root", str(tmp_path), "--exec-start", cmd]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("emotion-edge: error: --exec-start ") and repr(cmd) in err
    assert "U+000A" in err and not any(tmp_path.iterdir())


@pytest.mark.parametrize("program", [
    "emotion-edge", "-/x/emotion-edge", "+/bin/sh", "@/x/emotion-edge", "/opt/ee/",
    "/opt/it's/emotion-edge", '/opt/"q"/emotion-edge', "/opt/a\\b/emotion-edge",
    "/opt/$HOME/emotion-edge",
])
def test_a_program_systemd_would_misread_is_refused(tmp_path, program):
    with pytest.raises(ConfigError, match=re.escape(repr(program))):
        install_service(tmp_path, exec_start=[program])


def test_cli_refuses_an_unbalanced_quote(tmp_path, capsys):
    assert main(["install-service", "--root", str(tmp_path), "--exec-start", "'/x/ee"]) == 2
    assert "cannot be split" in capsys.readouterr().err


# Writing as root: atomic, never through a link ----------------------------------------------


@pytest.fixture
def victim(tmp_path):
    """A file a planted link points at: root must never write it."""
    path = tmp_path / "victim"
    path.write_text("precious\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("target", [UNIT, CONFIG])
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_symlink_at_a_target_is_refused(tmp_path, victim, target, dry_run):
    link = tmp_path / "root" / target
    link.parent.mkdir(parents=True)
    link.symlink_to(victim)
    with pytest.raises(EmotionEdgeError, match=f"{re.escape(str(link))} is a symbolic link"):
        install_service(tmp_path / "root", exec_start="/x/emotion-edge", dry_run=dry_run)
    assert link.is_symlink() and victim.read_text() == "precious\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600


@pytest.mark.parametrize("target", [UNIT, CONFIG])
def test_a_link_at_the_old_temporary_name_is_not_followed(tmp_path, victim, target):
    path = tmp_path / "root" / target
    path.parent.mkdir(parents=True)
    planted = path.with_name(path.name + ".tmp")
    planted.symlink_to(victim)
    install_service(tmp_path / "root", exec_start="/x/emotion-edge")
    assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert planted.is_symlink() and not path.is_symlink()
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, planted.name])


def test_files_are_0644_whatever_the_umask_and_no_temporary_file_is_left(tmp_path):
    old = os.umask(0o077)
    try:
        install_service(tmp_path, exec_start="/x/emotion-edge")
    finally:
        os.umask(old)
    for name in (UNIT, CONFIG):
        path = tmp_path / name
        assert stat.S_IMODE(path.lstat().st_mode) == 0o644, name
        assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    unit = tmp_path / UNIT
    unit.parent.mkdir(parents=True)
    unit.write_text("old unit\n")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(EmotionEdgeError, match=f"cannot write {re.escape(str(unit))} .No space"):
        install_service(tmp_path, exec_start="/x/emotion-edge")
    assert unit.read_text() == "old unit\n"
    assert [p.name for p in unit.parent.iterdir()] == [unit.name]


def test_a_missing_mqtt_password_file_is_refused_before_the_service_fails_on_it(
        tmp_path, monkeypatch):
    """systemd's LoadCredential= fails the start (243/CREDENTIALS) without the file."""
    from edge.config import Config, MqttConfig
    from edge.errors import EmotionEdgeError
    from edge.service import install

    missing = tmp_path / "mqtt-password"
    config = Config(mqtt=MqttConfig(enabled=True, host="192.168.1.10", username="pi",
                                    password_file=str(missing)))
    monkeypatch.setattr(install, "_read_regular_file", lambda path: "[mqtt]\n")
    monkeypatch.setattr(install, "load_config", lambda *a, **kw: config)
    with pytest.raises(EmotionEdgeError, match=f"mqtt.password_file = '{missing}' does not"):
        install_service("/", dry_run=True, exec_start="/x/emotion-edge",
                        run=lambda *a, **k: None)
