"""Installing the systemd service: unit file, configuration, service user.

Idempotent: files already up to date are left alone, an existing configuration is never
overwritten (only validated), an existing user is kept.  ``root`` redirects every path (tests
install into a temporary directory without privileges); the user is created with
``useradd --system`` only when installing into the real root ``/`` and not in a dry run.
"""

from __future__ import annotations

import dataclasses
import grp
import logging
import os
import pwd
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import load_config
from ..errors import EmotionEdgeError
from ..paths import shipped_file

__all__ = [
    "SERVICE_NAME",
    "SERVICE_USER",
    "SERVICE_GROUPS",
    "shipped_file",
    "default_exec_start",
    "render_unit",
    "Action",
    "install_service",
    "SYSTEMCTL_STEPS",
]

logger = logging.getLogger(__name__)

SERVICE_NAME = "emotion-edge.service"
SERVICE_USER = "emotion-edge"
#: Groups the service needs: ALSA capture, camera, GPIO (Raspberry Pi OS names).
SERVICE_GROUPS: tuple[str, ...] = ("audio", "video", "gpio")

SYSTEMCTL_STEPS: tuple[str, ...] = (
    "sudo systemctl daemon-reload",
    "sudo systemctl enable --now emotion-edge",
    "systemctl status emotion-edge",
    "journalctl -u emotion-edge -f",
    "emotion-edge inspect --journal",
)


def default_exec_start() -> str:
    """The command systemd should run: this installation's ``emotion-edge``."""
    exe = shutil.which("emotion-edge")
    if exe:
        return str(Path(exe).resolve().parent / "emotion-edge")
    return f"{sys.executable} -m edge"


def render_unit(
    template: str, *, exec_start: str, config_path: str, groups: Sequence[str] | None = None
) -> str:
    """The shipped unit with ``ExecStart=`` pointing at ``exec_start`` and, when given, only the
    supplementary ``groups`` that exist on this machine (systemd refuses to start otherwise)."""
    unit = re.sub(r"(?m)^ExecStart=.*$",
                  f"ExecStart={exec_start} run --config {config_path}", template)
    if groups is not None:
        line = f"SupplementaryGroups={' '.join(groups)}" if groups else ""
        unit = re.sub(r"(?m)^SupplementaryGroups=.*$", line, unit)
    return unit


@dataclasses.dataclass(frozen=True)
class Action:
    """One step of the install and what happened: ``written``, ``unchanged``, ``kept``,
    ``created``, ``exists``, ``skipped`` or ``would ...`` in a dry run."""

    what: str
    outcome: str

    def __str__(self) -> str:
        return f"{self.outcome:>16}  {self.what}"


def _write(path: Path, text: str, dry_run: bool, *, overwrite: bool) -> str:
    if path.exists():
        if path.read_text(encoding="utf-8") == text:
            return "unchanged"
        if not overwrite:
            return "kept"
    if dry_run:
        return "would write"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except PermissionError as exc:
        raise EmotionEdgeError(
            f"cannot write {path} ({exc.strerror}); run install-service with sudo, or pass "
            f"--root DIR to install into a staging folder"
        ) from None
    return "written"


def _existing_groups(groups: Sequence[str]) -> list[str]:
    found = []
    for g in groups:
        try:
            grp.getgrnam(g)
        except KeyError:
            logger.warning("group %s does not exist here; the service will run without it", g)
            continue
        found.append(g)
    return found


def install_service(
    root: str | Path = "/",
    *,
    dry_run: bool = False,
    exec_start: str | None = None,
    run: Callable[..., subprocess.CompletedProcess[Any]] = subprocess.run,
) -> list[Action]:
    """Install the unit, the configuration and the user under ``root``; return what was done."""
    root = Path(root)
    real_root = root.resolve() == Path("/")
    exec_start = exec_start or default_exec_start()
    actions: list[Action] = []
    config_rel = Path("etc/emotion-edge/config.toml")
    unit_path = root / "etc/systemd/system" / SERVICE_NAME
    config_path = root / config_rel

    groups = _existing_groups(SERVICE_GROUPS) if real_root else None
    unit = render_unit(shipped_file(SERVICE_NAME).read_text(encoding="utf-8"),
                       exec_start=exec_start, config_path="/" + str(config_rel), groups=groups)
    actions.append(Action(str(unit_path), _write(unit_path, unit, dry_run, overwrite=True)))

    example = shipped_file("config.example.toml").read_text(encoding="utf-8")
    outcome = _write(config_path, example, dry_run, overwrite=False)
    actions.append(Action(str(config_path), outcome))
    if outcome in ("kept", "unchanged"):
        load_config(config_path, env={}, required=True)  # a broken config fails the install

    if not real_root:
        actions.append(Action(f"user {SERVICE_USER} (not created under --root)", "skipped"))
    elif _user_exists():
        actions.append(Action(f"user {SERVICE_USER}", "exists"))
    elif dry_run:
        actions.append(Action(f"user {SERVICE_USER}", "would create"))
    else:
        cmd = ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
               "--shell", "/usr/sbin/nologin", "--user-group"]
        if groups:
            cmd += ["--groups", ",".join(groups)]
        cmd.append(SERVICE_USER)
        try:
            run(cmd, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or exc
            raise EmotionEdgeError(
                f"could not create the service user ({' '.join(cmd)}): {detail}; run "
                f"install-service with sudo"
            ) from None
        actions.append(Action(f"user {SERVICE_USER} (groups {', '.join(groups or [])})",
                              "created"))
    if exec_start.startswith(("/home/", "/root/")):
        logger.warning(
            "%s lives under /home or /root, which the service cannot see (ProtectHome=yes); "
            "install emotion-edge system-wide, e.g. a venv in /opt/emotion-edge", exec_start)
    return actions


def _user_exists() -> bool:
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return False
    return True
