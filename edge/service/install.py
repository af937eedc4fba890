"""Installing the systemd service: unit file, configuration, service user.

Idempotent: files already up to date are left alone, an existing configuration is never
overwritten (only validated), an existing user is kept.  ``root`` redirects every path (tests
install into a temporary directory without privileges); the user is created with
``useradd --system`` only when installing into the real root ``/`` and not in a dry run.

It runs as root, so nothing goes into the unit unchecked: every ``ExecStart=`` word is quoted
for systemd and control characters are refused.  Files are replaced atomically and never
through a symbolic link.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import grp
import ipaddress
import logging
import os
import pwd
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import MqttConfig, load_config
from ..errors import ConfigError, EmotionEdgeError
from ..paths import shipped_file

__all__ = [
    "SERVICE_NAME",
    "SERVICE_USER",
    "SERVICE_GROUPS",
    "shipped_file",
    "default_exec_start",
    "exec_argv",
    "check_unit_value",
    "quote_exec_arg",
    "render_unit",
    "MQTT_DROPIN",
    "render_mqtt_dropin",
    "broker_addresses",
    "security_exposure",
    "Action",
    "install_service",
    "SYSTEMCTL_STEPS",
]

logger = logging.getLogger(__name__)

SERVICE_NAME = "emotion-edge.service"
SERVICE_USER = "emotion-edge"
#: Groups the service needs: ALSA capture, camera, GPIO (Raspberry Pi OS names).
SERVICE_GROUPS: tuple[str, ...] = ("audio", "video", "gpio")

#: The ``edge`` package this code runs from (what ``-m edge`` imports).
_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)

#: The drop-in that opens the network to the MQTT broker only (written when mqtt.enabled).
MQTT_DROPIN = Path(f"{SERVICE_NAME}.d") / "mqtt.conf"
#: Credentials systemd hands the service (``LoadCredential=``), read by ``edge.outputs.mqtt``.
MQTT_CREDENTIALS = {"password_file": "mqtt-password", "key_file": "mqtt-client-key"}

SYSTEMCTL_STEPS: tuple[str, ...] = (
    "sudo systemctl daemon-reload",
    "sudo systemctl enable --now emotion-edge",
    "sudo systemctl restart emotion-edge   # after an upgrade or a change of the config",
    "systemctl status emotion-edge",
    "journalctl -u emotion-edge -f",
    "emotion-edge inspect --journal",
)


def default_exec_start() -> list[str]:
    """The command systemd should run: the interpreter running now, ``-P -m edge``.

    ``sys.executable`` is used as it is, not resolved: in a venv it is the venv's ``bin/python``
    symlink, and only that path makes Python pick up the venv's site-packages.  Running the
    interpreter itself (rather than a console script found on ``PATH`` or beside it) means the
    service imports exactly the emotion-edge this command runs from, and keeps working when a
    wrapper script's shebang would go stale.  ``-P`` keeps the working directory off
    ``sys.path``, so nothing in it can shadow a module.
    """
    if not sys.executable:
        raise ConfigError(
            "cannot tell which Python interpreter is running (sys.executable is empty); pass "
            "--exec-start /path/to/emotion-edge"
        )
    return [sys.executable, "-P", "-m", "edge"]


#: Words written without quotes; anything else is double-quoted (see :func:`quote_exec_arg`).
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_@+=:,./-]+")
_GROUP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
#: Characters systemd refuses in the path of the program it runs (quotes, backslash), or would
#: expand in argv[0] but not in that path (``$``), so no quoting can make the two agree.
_BAD_IN_PROGRAM = "\\\"'$"


def check_unit_value(what: str, value: str, fix: str = "use a value without them") -> str:
    """Return ``value`` if it can go into a unit file; refuse control characters (a line break
    would start a new setting such as ``ExecStartPre=``) and text that is not UTF-8."""
    for char in value:
        if unicodedata.category(char) == "Cc":
            raise ConfigError(
                f"{what} {value!r} contains the control character U+{ord(char):04X}, and "
                f"control characters cannot go into a systemd unit; {fix}"
            )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            f"{what} {value!r} is not valid UTF-8, which a systemd unit cannot hold; {fix}"
        ) from None
    return value


def quote_exec_arg(arg: str) -> str:
    """One word of an ``ExecStart=`` line that systemd reads back as exactly ``arg``
    (systemd.service(5), "Command lines"): ``%`` doubled (specifiers), ``$`` doubled
    (environment variables), and unless the word is plain, double quotes around it with
    backslashes and double quotes escaped by a backslash.  ``arg`` must have passed
    :func:`check_unit_value` (a line break cannot be quoted)."""
    text = arg.replace("%", "%%").replace("$", "$$")
    if _PLAIN_WORD.fullmatch(arg):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_argv(exec_start: str | Sequence[str] | None) -> list[str]:
    """The command systemd should run, as a checked argv: ``None`` is :func:`default_exec_start`,
    a string is split like a shell would split it (``--exec-start``), a sequence is taken as is."""
    what, fix = "--exec-start", "use a value without them"
    if exec_start is None:
        argv = default_exec_start()
        what, fix = "the running interpreter", "install it in another folder or pass --exec-start"
    elif isinstance(exec_start, str):
        check_unit_value(what, exec_start, fix)
        try:
            argv = shlex.split(exec_start)
        except ValueError as exc:
            raise ConfigError(
                f"--exec-start {exec_start!r} cannot be split into words ({exc}); quote a path "
                f"with spaces like a shell would: --exec-start \"'/opt/my dir/bin/emotion-edge'\""
            ) from None
    else:
        argv = list(exec_start)
    if not argv:
        raise ConfigError("--exec-start is empty; give the path of emotion-edge or omit the flag")
    for arg in argv:
        check_unit_value(what, arg, fix)
    program = argv[0]
    if not program.startswith("/") or program.endswith("/"):
        raise ConfigError(
            f"{what} {program!r} is not an absolute path to a file (systemd looks up a "
            f"bare name itself and reads a leading -, @, :, + or ! as a flag); give one such as "
            f"/opt/emotion-edge/bin/emotion-edge"
        )
    bad = sorted({c for c in program if c in _BAD_IN_PROGRAM})
    if bad:
        raise ConfigError(
            f"{what} {program!r} contains {' '.join(bad)}, which systemd cannot take in "
            f"the path of the program it runs; install into a folder whose path has no quotes, "
            f"backslashes or $, such as a venv in /opt/emotion-edge"
        )
    return argv


def render_unit(
    template: str,
    *,
    exec_start: Sequence[str],
    config_path: str,
    groups: Sequence[str] | None = None,
) -> str:
    """The shipped unit with ``ExecStart=`` running the argv ``exec_start`` (checked by
    :func:`exec_argv`) plus ``-v run --config config_path``, every word quoted for systemd, and,
    when given, only the supplementary ``groups`` that exist on this machine (systemd refuses
    to start otherwise)."""
    if isinstance(exec_start, str):
        raise TypeError("exec_start is an argv list; split a command line with exec_argv()")
    # -v: the journal gets the lifecycle lines (face detector, adaptation resumed, MQTT
    # connected again), a handful per start; decisions are JSON lines on stdout either way.
    words = [*exec_start, "-v", "run", "--config",
             check_unit_value("configuration path", config_path)]
    line = "ExecStart=" + " ".join(quote_exec_arg(w) for w in words)
    # A function as replacement: re.sub would expand backslash sequences in a string.
    unit, count = re.subn(r"(?m)^ExecStart=.*$", lambda _: line, template)
    if count != 1:
        raise EmotionEdgeError(
            f"the shipped {SERVICE_NAME} has {count} ExecStart= lines instead of one; "
            f"reinstall emotion-edge"
        )
    if groups is not None:
        for g in groups:
            if not _GROUP_NAME.fullmatch(check_unit_value("group", g)):
                raise ConfigError(f"group name {g!r} is not a plain group name; rename it")
        groups_line = f"SupplementaryGroups={' '.join(groups)}" if groups else ""
        unit = re.sub(r"(?m)^SupplementaryGroups=.*$", lambda _: groups_line, unit)
    return unit


def broker_addresses(
    host: str,
    resolve: Callable[[str], list[str]] | None = None,
    resolv_conf: Path = Path("/etc/resolv.conf"),
) -> list[str]:
    """The IP addresses the service must reach for the broker ``host``: the address itself, or
    what the name resolves to now plus the DNS servers of ``resolv_conf`` (the name is looked
    up again at every connect; install-service must run again if the broker's address
    changes)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    lookup = resolve or _resolve
    try:
        found = lookup(host)
    except OSError as exc:
        raise ConfigError(
            f"mqtt.host {host!r} cannot be resolved here ({getattr(exc, 'strerror', '') or exc})"
            f"; the service may reach only the broker's address, so give an address or a name "
            f"this machine resolves") from None
    servers = []
    with contextlib.suppress(OSError):
        for line in resolv_conf.read_text(encoding="utf-8", errors="replace").splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "nameserver":
                with contextlib.suppress(ValueError):
                    servers.append(str(ipaddress.ip_address(words[1].split("%")[0])))
    return list(dict.fromkeys([*found, *servers]))


def _resolve(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    # IPAddressAllow= takes no scope: "fe80::1%wlan0" (mDNS names) would be ignored by systemd.
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


def render_mqtt_dropin(mqtt: MqttConfig, addresses: Sequence[str], config_path: str) -> str:
    """The drop-in that lets the hardened unit reach the broker and nothing else: the unit's
    ``IPAddressDeny=any`` stays, ``IPAddressAllow=`` names the broker's addresses, and only
    their address families are added; the password (and a client key) come in as systemd
    credentials, readable by the service alone."""
    families = ["AF_UNIX", "AF_NETLINK"]
    versions = {ipaddress.ip_address(a).version for a in addresses}
    families += [f for v, f in ((4, "AF_INET"), (6, "AF_INET6")) if v in versions]
    lines = [
        "# Written by `emotion-edge install-service` because mqtt.enabled = true in",
        f"# {config_path}: the service may reach the MQTT broker {mqtt.host}:{mqtt.port} and no",
        "# other address (IPAddressDeny=any in the unit stays).  Run install-service again after",
        "# changing [mqtt]; it removes this file when MQTT is disabled.",
        "[Service]",
        "PrivateNetwork=no",
        f"RestrictAddressFamilies={' '.join(families)}",
        f"IPAddressAllow={' '.join(addresses)}",
    ]
    for key, credential in MQTT_CREDENTIALS.items():
        path = getattr(mqtt, key)
        if path:
            check_unit_value(f"mqtt.{key}", path)
            if not path.startswith("/") or any(c.isspace() for c in path):
                raise ConfigError(f"mqtt.{key} = {path!r} must be an absolute path without "
                                  f"spaces for systemd's LoadCredential=")
            # systemd expands specifiers in the path: a literal % is written %%.
            lines.append(f"LoadCredential={credential}:{path.replace('%', '%%')}")
    return "\n".join(lines) + "\n"


def security_exposure(unit_path: Path,
                      run: Callable[..., subprocess.CompletedProcess[Any]] = subprocess.run
                      ) -> str | None:
    """``systemd-analyze security --offline=true`` on the installed unit and its drop-ins: the
    overall exposure line (e.g. ``1.7 OK``), or None when systemd-analyze is not available."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return None
    try:
        result = run([analyze, "security", "--offline=true", str(unit_path)],
                     capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+ \w+)", result.stdout or "")
    return match[1] if match else None


def _remove(path: Path, dry_run: bool) -> str | None:
    if _read_regular_file(path) is None:
        return None
    if dry_run:
        return "would remove"
    try:
        path.unlink()
    except OSError as exc:
        raise _write_error(path, exc) from None
    return "removed"


@dataclasses.dataclass(frozen=True)
class Action:
    """One step of the install and what happened: ``written``, ``unchanged``, ``kept``,
    ``created``, ``exists``, ``skipped`` or ``would ...`` in a dry run."""

    what: str
    outcome: str

    def __str__(self) -> str:
        return f"{self.outcome:>16}  {self.what}"


def _write(path: Path, text: str, dry_run: bool, *, overwrite: bool) -> str:
    data = text.encode("utf-8")
    existing = _read_regular_file(path)
    if existing is not None:
        if existing == data:
            return "unchanged"
        if not overwrite:
            return "kept"
    if dry_run:
        return "would write"
    _replace_atomically(path, data)
    return "written"


def _read_regular_file(path: Path) -> bytes | None:
    """The content of ``path``, ``None`` when it does not exist; refuses a symbolic link or
    anything but a regular file (root must not read or write through a planted link)."""
    try:
        is_link = stat.S_ISLNK(os.lstat(path).st_mode)
        if not is_link:  # O_NOFOLLOW: a link swapped in after the lstat fails with ELOOP
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise _write_error(path, exc) from None
        is_link = True
    if is_link:
        raise EmotionEdgeError(
            f"{path} is a symbolic link and install-service does not write through links; "
            f"remove it (sudo rm {path}) and run install-service again"
        )
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise EmotionEdgeError(
                f"{path} exists but is not a regular file; remove it and run install-service "
                f"again"
            )
        return f.read()


def _replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file beside ``path``, then rename it onto ``path``.

    The temporary file has a random name and is created by ``mkstemp`` with
    ``O_CREAT|O_EXCL|O_NOFOLLOW``, so a file or link planted at a predictable name is never
    opened; its mode is set through the open descriptor.  ``os.replace`` renames over whatever
    sits at ``path`` (a link included) without following it.  On failure the temporary file
    is removed and ``path`` is left as it was.
    """
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        with open(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from None
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a power cut
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _write_error(path: Path, exc: OSError) -> EmotionEdgeError:
    if isinstance(exc, PermissionError):
        return EmotionEdgeError(
            f"cannot write {path} ({exc.strerror}); run install-service with sudo, or pass "
            f"--root DIR to install into a staging folder"
        )
    return EmotionEdgeError(f"cannot write {path} ({exc.strerror or exc})")


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
    exec_start: str | Sequence[str] | None = None,
    run: Callable[..., subprocess.CompletedProcess[Any]] = subprocess.run,
) -> list[Action]:
    """Install the unit, the configuration and the user under ``root``; return what was done.

    ``exec_start`` is the command the service runs before ``-v run --config ...``: ``None`` for
    the interpreter running now (:func:`default_exec_start`), a command line split like a
    shell would split it, or an argv list.  Files are replaced atomically and never through a
    symbolic link.
    """
    root = Path(root)
    real_root = root.resolve() == Path("/")
    argv = exec_argv(exec_start)
    actions: list[Action] = []
    config_rel = Path("etc/emotion-edge/config.toml")
    unit_path = root / "etc/systemd/system" / SERVICE_NAME
    config_path = root / config_rel

    hidden = _hidden(argv[0], *([_PACKAGE_DIR] if exec_start is None else []))
    if hidden and real_root:  # checked before anything is written
        raise EmotionEdgeError(f"{_hidden_from_the_service(hidden[0])}, so it would not start; "
                               f"run the install-service of that installation")
    # The configuration the service will read, checked before the unit is replaced: the one
    # already there (a broken one fails the install), else the example written in its place.
    config = load_config(config_path if _read_regular_file(config_path) is not None
                         else shipped_file("config.example.toml"), env={}, required=True)
    for key in MQTT_CREDENTIALS if real_root and config.mqtt.enabled else ():
        secret = getattr(config.mqtt, key)
        if secret and not Path(secret).is_file():  # LoadCredential= would fail the start
            raise EmotionEdgeError(
                f"mqtt.{key} = {secret!r} does not exist, and systemd hands it to the service "
                f"as a credential, so the service would not start; create it first (sudo sh -c "
                f"'umask 077; cat > {secret}'), then run install-service again")
    groups = _existing_groups(SERVICE_GROUPS) if real_root else None
    unit = render_unit(shipped_file(SERVICE_NAME).read_text(encoding="utf-8"),
                       exec_start=argv, config_path="/" + str(config_rel), groups=groups)
    actions.append(Action(str(unit_path), _write(unit_path, unit, dry_run, overwrite=True)))

    example = shipped_file("config.example.toml").read_text(encoding="utf-8")
    outcome = _write(config_path, example, dry_run, overwrite=False)
    actions.append(Action(str(config_path), outcome))
    dropin_path = unit_path.parent / MQTT_DROPIN
    if config.mqtt.enabled:
        dropin = render_mqtt_dropin(config.mqtt, broker_addresses(config.mqtt.host),
                                    "/" + str(config_rel))
        actions.append(Action(str(dropin_path), _write(dropin_path, dropin, dry_run,
                                                       overwrite=True)))
    else:
        removed = _remove(dropin_path, dry_run)  # MQTT turned off: no network again
        if removed:
            actions.append(Action(str(dropin_path), removed))

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
    for path in hidden:  # a staging root (--root): said, not refused
        logger.warning("%s", _hidden_from_the_service(path))
    if real_root and not os.access(argv[0], os.X_OK):
        logger.warning("%s is not an executable here; systemd will fail to start the service "
                       "(a path with spaces needs quotes in --exec-start)", argv[0])
    return actions


#: Folders the service does not see: the unit's ProtectHome=yes hides the first two, its
#: PrivateTmp=yes gives it an empty /tmp and /var/tmp of its own.
_HIDDEN = {"/home/": "ProtectHome=yes", "/root/": "ProtectHome=yes",
           "/tmp/": "PrivateTmp=yes", "/var/tmp/": "PrivateTmp=yes"}


def _hidden_from_the_service(path: str) -> str:
    folder = next(f for f in _HIDDEN if path.startswith(f))
    return (f"{path} lives under {folder.rstrip('/')}, which the service cannot see "
            f"({_HIDDEN[folder]}); install emotion-edge system-wide (docs/appliance.md, "
            f"\"Running as a service\": a venv in /opt/emotion-edge)")


def _hidden(*paths: str) -> list[str]:
    """Those of ``paths`` in a folder the service cannot see (:data:`_HIDDEN`), as given or
    resolved (a venv's python is often a link into a pyenv or uv folder in a home directory)."""
    out = []
    for path in paths:
        for form in (path, os.path.realpath(path)):
            if form.startswith(tuple(_HIDDEN)):
                out.append(form)
                break
    return out


def _user_exists() -> bool:
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return False
    return True
