"""install-service into a temporary root: files written, idempotent, config kept, no user."""


import pytest

from edge.cli import main
from edge.config import load_config
from edge.errors import ConfigError
from edge.service.install import install_service


def test_installs_unit_and_config_into_a_root(tmp_path):
    actions = install_service(tmp_path, exec_start="/opt/emotion-edge/bin/emotion-edge")
    unit = tmp_path / "etc/systemd/system/emotion-edge.service"
    config = tmp_path / "etc/emotion-edge/config.toml"
    assert {a.outcome for a in actions} == {"written", "skipped"}
    text = unit.read_text()
    assert ("ExecStart=/opt/emotion-edge/bin/emotion-edge run --config "
            "/etc/emotion-edge/config.toml") in text
    assert "SupplementaryGroups=audio video gpio" in text
    assert load_config(config, env={}, required=True).log.file.startswith("/run/emotion-edge/")


def test_second_run_changes_nothing_and_keeps_the_users_config(tmp_path):
    install_service(tmp_path, exec_start="/x/emotion-edge")
    config = tmp_path / "etc/emotion-edge/config.toml"
    config.write_text("[loop]\ndeadline_s = 0.3\n")
    again = install_service(tmp_path, exec_start="/x/emotion-edge")
    assert [a.outcome for a in again] == ["unchanged", "kept", "skipped"]
    assert config.read_text() == "[loop]\ndeadline_s = 0.3\n"


def test_a_broken_existing_config_fails_the_install(tmp_path):
    config = tmp_path / "etc/emotion-edge/config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("[loop]\nspeed = 3\n")
    with pytest.raises(ConfigError, match="loop.speed"):
        install_service(tmp_path, exec_start="/x/emotion-edge")


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
