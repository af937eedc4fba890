"""The shipped unit passes `systemd-analyze verify` cleanly and scores <= 4.0 exposure.

Runs where systemd-analyze exists (CI installs the `systemd` apt package), skips elsewhere.
The unit is rendered by install-service exactly as it would be installed, with ExecStart=
running this interpreter (verify checks that the program exists).
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.service.install import install_service

ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")


@pytest.fixture
def unit(tmp_path):
    install_service(tmp_path)
    return tmp_path / "etc/systemd/system/emotion-edge.service"


def analyze(*args):
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=120)


def assert_verifies(unit):
    result = analyze("verify", str(unit))
    assert result.returncode == 0, result.stderr
    # verify also complains on stderr about units it merely looks at; ours must not be named.
    ours = [line for line in result.stderr.splitlines() if "emotion-edge" in line]
    assert ours == [], "\n".join(ours)


def test_verify_has_no_warnings(unit):
    assert_verifies(unit)


def test_verify_reads_a_program_path_with_spaces_and_percent_and_awkward_arguments(tmp_path):
    # verify resolves specifiers and escapes and checks that the program it read exists: an
    # unquoted space or a single % names another file; an unknown escape is a warning.  (What
    # systemd makes of every argument is checked by test_install_service.systemd_exec_start.)
    program = tmp_path / "my venv 100%n" / "bin" / "python3"  # %n: the unit name
    program.parent.mkdir(parents=True)
    program.symlink_to(sys.executable)
    args = ["-P", "-m", "edge", "50%", "%n", "$HOME", "${HOME}", "a\\b", 'say "hi"', "it's",
            ";", ""]
    install_service(tmp_path / "root", exec_start=[str(program), *args])
    assert_verifies(tmp_path / "root/etc/systemd/system/emotion-edge.service")


def test_security_exposure_at_most_4(unit):
    result = analyze("security", "--offline=yes", str(unit))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 4.0, result.stdout


def test_unit_has_the_required_settings():
    text = (Path(__file__).resolve().parent.parent / "systemd" / "emotion-edge.service").read_text()
    for setting in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "NoNewPrivileges=yes",
                    "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                    "SupplementaryGroups=audio video gpio", "OPENBLAS_NUM_THREADS=1",
                    "RuntimeDirectory=emotion-edge", "RuntimeDirectoryPreserve=restart",
                    "DevicePolicy=closed",
                    "DeviceAllow=char-alsa", "DeviceAllow=char-video4linux",
                    "DeviceAllow=char-media", "DeviceAllow=char-dma_heap",
                    "DeviceAllow=char-gpiochip", "DeviceAllow=char-vchiq"):
        assert setting in text, setting
