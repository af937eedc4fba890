"""``emotion-edge check``: is this machine ready to run the appliance?

Each check returns :class:`Finding` objects (ok / warning / problem, with the fix).  A problem with
something the configured appliance needs makes ``check`` exit non-zero; warnings (a hot CPU, past
under-voltage) do not.  Hardware and files are reached through arguments (``sys_root``,
``run``), so the checks are testable on any machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import EmotionEdgeError, MissingDependencyError, ModelError
from ..optional import import_optional, quiet_native_output
from ..sources.camera import PICAMERA2_HINT
from ..sources.microphone import PYAUDIO_HINT as _PYAUDIO_HINT

__all__ = ["Finding", "THROTTLE_BITS", "check_runtime", "check_models", "check_face_detector",
           "check_thermal", "check_mic", "check_camera", "check_gpio", "check_mqtt",
           "run_checks"]

OK, WARN, PROBLEM = "ok", "warning", "problem"


@dataclasses.dataclass(frozen=True)
class Finding:
    what: str
    status: str  # ok | warning | problem
    detail: str
    fix: str = ""

    def __str__(self) -> str:
        mark = {OK: "ok     ", WARN: "WARNING", PROBLEM: "PROBLEM"}[self.status]
        text = f"[{mark}] {self.what}: {self.detail}"
        return text + (f"\n          fix: {self.fix}" if self.fix and self.status != OK else "")


#: ``vcgencmd get_throttled`` bits: (bit, meaning, fix).
THROTTLE_BITS: tuple[tuple[int, str, str], ...] = (
    (0, "under-voltage now", "use the official 5 V / 3 A (Pi 4) or 5 A (Pi 5) power supply"),
    (1, "ARM frequency capped now", "improve cooling (heatsink or fan)"),
    (2, "throttled now", "improve cooling and power; latency budgets assume no throttling"),
    (3, "soft temperature limit now", "improve cooling (heatsink or fan)"),
    (16, "under-voltage has occurred since boot", "check the power supply and cable"),
    (17, "ARM frequency capping has occurred since boot", "improve cooling"),
    (18, "throttling has occurred since boot", "improve cooling and power"),
    (19, "soft temperature limit has occurred since boot", "improve cooling"),
)


def check_runtime() -> list[Finding]:
    from ..models.runtime import resolve_interpreter_class

    out = []
    v = sys.version_info
    out.append(Finding("python", OK if v >= (3, 11) else PROBLEM, sys.version.split()[0],
                       "Raspberry Pi OS Bookworm (3.11) or newer"))
    try:
        name, _ = resolve_interpreter_class()
        out.append(Finding("TFLite interpreter", OK, name))
    except EmotionEdgeError as exc:
        out.append(Finding("TFLite interpreter", PROBLEM, str(exc),
                           "pip install 'emotion-edge[device]'"))
    for module, extra in (("numpy", "pip install numpy"),
                          ("cv2", "pip install 'opencv-python-headless>=4.8,<5'")):
        try:
            import_optional(module, extra)
            out.append(Finding(f"module {module}", OK, "importable"))
        except MissingDependencyError as exc:
            out.append(Finding(f"module {module}", PROBLEM, str(exc).split("; ")[0], extra))
    return out


def check_models(config: Config) -> list[Finding]:
    """The models, detector and fusion opened exactly as ``run`` opens them."""
    from ..pipeline.appliance import open_decision_models, unshown_labels

    out = []
    try:
        with contextlib.ExitStack() as stack:
            speech, face, _, fusion = open_decision_models(
                config, stack, use_face=config.camera.enabled, learn=False)
            out.append(Finding("speech model", OK, f"{speech.model.path} "
                                                   f"({len(speech.labels)} labels, sha256 ok)"))
            if face is not None:
                out.append(Finding("face model", OK, f"{face.model.path} "
                                                     f"({len(face.labels)} labels, sha256 ok)"))
            out.append(Finding("fusion", OK, ", ".join(fusion.labels)))
            for modality, unshown in unshown_labels(config, fusion).items():
                out.append(Finding(
                    "fusion", WARN, f"the {modality} model's label(s) {', '.join(unshown)} "
                    f"are none of the emotions shown, so fusion leaves them out (what they "
                    f"win goes to the other labels)", f"map them in [fusion] "
                    f"{modality}_map (e.g. {unshown[0]} = \"angry\"), or leave them out "
                    f"on purpose with \"\""))
    except EmotionEdgeError as exc:
        out.append(Finding("models", PROBLEM, str(exc),
                           "reinstall emotion-edge, or fix models.* / fusion.* in the config"))
    if config.camera.enabled:
        out.append(check_face_detector(config))
    return out


def check_face_detector(config: Config) -> Finding:
    """The configured face detector opens; a fetched BlazeFace file is the expected one."""
    from ..vision.blazeface import BlazeFaceDetector
    from ..vision.detectors import open_face_detector

    fix = "reinstall emotion-edge or run `emotion-convert blazeface`; or set camera.detector = \"haar\""
    kind = config.camera.detector
    try:
        if kind in ("auto", "blazeface"):
            # Opened directly, not through auto's fallback, so a missing or damaged file is told
            # (BlazeFace checks its sha256 when it opens).
            try:
                with contextlib.closing(BlazeFaceDetector()) as blazeface:
                    return Finding("face detector", OK,
                                   f"BlazeFace short-range {blazeface.path} (sha256 ok)")
            except EmotionEdgeError as exc:
                if kind == "blazeface":
                    raise
                with contextlib.closing(open_face_detector("haar")):
                    return Finding("face detector", WARN,
                                   f"{exc}; run falls back to the slower Haar detector", fix)
        with contextlib.closing(open_face_detector(kind)):
            return Finding("face detector", OK, "OpenCV Haar cascade")
    except EmotionEdgeError as exc:
        return Finding("face detector", PROBLEM, str(exc), fix)


def check_thermal(
    sys_root: Path = Path("/"),
    run: Callable[..., Any] = subprocess.run,
) -> list[Finding]:
    out = []
    temp_file = sys_root / "sys/class/thermal/thermal_zone0/temp"
    try:
        celsius = int(temp_file.read_text().strip()) / 1000.0
    except (OSError, ValueError):
        out.append(Finding("CPU temperature", OK, "not exposed here (not a Pi?)"))
    else:
        status = OK if celsius < 70 else WARN
        out.append(Finding("CPU temperature", status, f"{celsius:.1f} °C",
                           "the Pi throttles at 80 °C (85 °C hard): add a heatsink or fan"))
    try:
        result = run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        out.append(Finding("throttling", OK, "vcgencmd not available (not a Pi?)"))
        return out
    text = (result.stdout or "").strip()
    try:
        value = int(text.split("=", 1)[1], 16)
    except (IndexError, ValueError):
        out.append(Finding("throttling", WARN, f"cannot read {text!r}",
                           "add the service user to the video group for vcgencmd"))
        return out
    problems = [(meaning, fix) for bit, meaning, fix in THROTTLE_BITS if value >> bit & 1]
    if not problems:
        out.append(Finding("throttling", OK, f"none ({text})"))
    for meaning, fix in problems:
        out.append(Finding("throttling", WARN, f"{meaning} ({text})", fix))
    return out


def check_mic(config: Config, pyaudio_module: Any = None) -> list[Finding]:
    try:
        pyaudio = pyaudio_module or import_optional("pyaudio", _PYAUDIO_HINT)
    except MissingDependencyError as exc:
        return [Finding("microphone", PROBLEM, str(exc).split(";")[0], _PYAUDIO_HINT)]
    with quiet_native_output("PortAudio"):
        pa = pyaudio.PyAudio()
    try:
        inputs = []
        for i in range(pa.get_device_count()):
            info = pa.get_device_info_by_index(i)
            if int(info.get("maxInputChannels", 0)) > 0:
                inputs.append(str(info["name"]))
    finally:
        pa.terminate()
    if not inputs:
        return [Finding("microphone", PROBLEM, "no audio input device",
                        "plug in a USB microphone; `arecord -l` must list it; the service user "
                        "needs the audio group (a system service uses ALSA, not PipeWire)")]
    want = config.audio.device
    if want and not any(want.lower() in name.lower() for name in inputs):
        return [Finding("microphone", PROBLEM, f"no input named like {want!r}; found "
                        f"{', '.join(inputs)}", "fix audio.device in the config")]
    return [Finding("microphone", OK, ", ".join(inputs))]


def check_camera(config: Config, dev_glob: Callable[[str], list[str]] = glob.glob) -> list[Finding]:
    if not config.camera.enabled:
        return [Finding("camera", OK, "disabled (camera.enabled = false)")]
    videos = sorted(dev_glob("/dev/video*"))
    if not videos:
        return [Finding("camera", PROBLEM, "no /dev/video* device",
                        "connect the camera (ribbon contacts), enable it, reboot; or set "
                        "camera.enabled = false for speech only")]
    detail = f"{len(videos)} video device(s)"
    if config.camera.source in ("auto", "picamera2"):
        try:
            import_optional("picamera2", PICAMERA2_HINT)
            detail += ", picamera2 importable"
        except MissingDependencyError as exc:
            if config.camera.source == "picamera2":
                return [Finding("camera", PROBLEM, str(exc).split("; ")[0], PICAMERA2_HINT)]
            detail += f", picamera2 not usable ({str(exc).split('; ')[0]}): OpenCV capture is used"
    return [Finding("camera", OK, detail)]


def check_gpio(config: Config, pin_factory: Any = None) -> list[Finding]:
    if config.leds.mode == "none":
        return [Finding("GPIO", OK, "LEDs disabled (leds.mode = none)")]
    from ..labels import COMMON_LABELS
    from ..outputs.leds import SHARED_PINS, LedPinError, LedSink, NoPinLibraryError, pin_name

    try:
        with LedSink(config.leds, COMMON_LABELS, pin_factory=pin_factory, warn=False) as leds:
            wiring = leds.wiring()
    except LedPinError as exc:
        return [Finding("GPIO", PROBLEM, exc.what, exc.fix)]
    except NoPinLibraryError:
        return [Finding("GPIO", PROBLEM, NoPinLibraryError.what,
                        "off a Pi: `check --mock-gpio` checks the LED settings on gpiozero's mock "
                        "pins, which a replay uses there; on a Pi: sudo apt install python3-lgpio")]
    except EmotionEdgeError as exc:
        return [Finding("GPIO", PROBLEM, str(exc),
                        "on a Pi: add the user to the gpio group; if the service is running it "
                        "holds the pins (stop it first); off a Pi: `check --mock-gpio` checks "
                        "the LED settings on gpiozero's mock pins, which a replay uses there")]
    pins = ", ".join(f"{role} {pin_name(gpio, header)}" for role, gpio, header in wiring)
    findings = [Finding("GPIO", OK, f"LED pins free ({config.leds.mode}): {pins}")]
    findings += [Finding("GPIO", WARN, f"the {role} LED is on GPIO{gpio}, {SHARED_PINS[gpio]}",
                         "choose a free GPIO in leds.* (docs/appliance.md, LED wiring)")
                 for role, gpio, _ in wiring if gpio in SHARED_PINS]
    unpinned = [label for label in COMMON_LABELS if label not in config.leds.emotion_pins]
    if config.leds.mode == "per_emotion" and unpinned:
        findings.append(Finding("GPIO", WARN, f"no LED for {', '.join(unpinned)} (leds.mode = "
                                f"per_emotion)", "give each emotion its pin in "
                                "leds.emotion_pins, or use leds.mode = \"rgb\""))
    return findings


def check_mqtt(config: Config, env: Mapping[str, str] | None = None) -> list[Finding]:
    """The broker is reachable and accepts the credentials; the MQTT counters of the last
    decision in the log (``log.file``) when there is one."""
    if not config.mqtt.enabled:
        return [Finding("MQTT", OK, "disabled (mqtt.enabled = false)")]
    from ..outputs.mqtt import BrokerSettings, probe_broker

    fix = ("check mqtt.host/port, that the broker runs and this machine may reach it, "
           "mqtt.username and the password file, mqtt.tls and mqtt.ca_file")
    try:
        settings = BrokerSettings.from_config(config.mqtt, env)
        problem = probe_broker(settings)
    except EmotionEdgeError as exc:  # no paho-mqtt, an unreadable password file
        return [Finding("MQTT broker", PROBLEM, str(exc), fix)]
    if problem is not None:
        return [Finding("MQTT broker", PROBLEM, problem, fix)]
    who = f"credentials of {settings.username!r} accepted" if settings.username else \
        "anonymous access accepted"
    out = [Finding("MQTT broker", OK, f"{settings.address} reachable, {who}")]
    loopback = settings.host in ("localhost", "127.0.0.1", "::1")
    if settings.username and not settings.tls and not loopback:
        out.append(Finding("MQTT broker", WARN, f"the password of {settings.username!r} crosses "
                           f"the network to {settings.address} in clear text (mqtt.tls = false)",
                           "mqtt.tls = true, with the broker's TLS port (docs/appliance.md, "
                           "Decisions over MQTT)"))
    for setting in ("password_file", "key_file"):
        secret = getattr(config.mqtt, setting)
        try:
            st = os.stat(secret) if secret else None
        except OSError:
            st = None  # missing: the broker probe above already said so
        if st is not None and st.st_mode & 0o077:
            out.append(Finding("MQTT broker", WARN, f"mqtt.{setting} {secret} is readable by "
                               f"other users (mode {st.st_mode & 0o777:04o})",
                               f"sudo chown root: {secret} && sudo chmod 600 {secret} (the "
                               f"service gets it as a systemd credential)"))
    counters = _last_counters(config.log.file)
    if counters is not None and "mqtt_sent" in counters:
        dropped = counters.get("mqtt_dropped", 0)
        out.append(Finding(
            "MQTT queue", WARN if dropped else OK,
            f"{counters['mqtt_sent']} sent, {dropped} dropped, "
            f"{counters.get('mqtt_disconnects', 0)} disconnects (last decision in "
            f"{config.log.file})",
            "messages were dropped because the broker was away longer than mqtt.queue_size "
            "messages last; raise it or fix the network"))
    return out


def _last_counters(log_file: str) -> dict[str, int] | None:
    """The counters of the last decision in ``log_file`` (None: no file or no decision)."""
    from ..outputs.log_reader import parse_record

    if not log_file:
        return None
    try:
        with open(log_file, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        record = parse_record(line)
        if record is not None:
            return dict(record["counters"])
    return None


def run_checks(config: Config, *, live: bool = True, pin_factory: Any = None) -> list[Finding]:
    findings = [Finding("config", OK, ", ".join(config.source) or "defaults")]
    findings += check_runtime()
    findings += check_models(config)
    if live:
        findings += check_mic(config)
        findings += check_camera(config)
    findings += check_gpio(config, pin_factory)
    findings += check_thermal()
    findings += check_mqtt(config)
    if config.log.file:
        findings.append(_may_look("decision log", Path(config.log.file), functools.partial(
            check_decision_log, max_bytes=config.log.max_bytes, backups=config.log.backups)))
    if config.adapt.enabled and config.adapt.state_file:
        findings.append(_may_look("adaptation state", Path(config.adapt.state_file),
                                  check_adaptation_state))
    return findings


def _may_look(what: str, path: Path, check: Callable[[Path], Finding]) -> Finding:
    """``check(path)``, or a warning when this user may not look into the service's own folder
    (0750 /run/emotion-edge, 0700 /var/lib/emotion-edge): the ssh user's `check` after the
    service has run."""
    try:
        return check(path)
    except PermissionError:
        return Finding(what, WARN, f"{path}: uid {os.getuid()} may not look into its folder "
                       f"(the service's own)", "run `sudo emotion-edge check` to check it, or "
                       "join the service's group: sudo usermod -aG emotion-edge $USER")


def check_decision_log(path: Path, *, max_bytes: int, backups: int) -> Finding:
    """Whether ``run`` can open ``path`` for appending as its log sink does (creating the missing
    folders): a folder is a problem; an unwritable place a warning, since the service creates
    /run/emotion-edge itself when it starts; so is a file system without room for the log and
    its ``backups`` at ``max_bytes`` each (``log.backups``, ``log.max_bytes``)."""
    from ..outputs.log import backup_path, holds_something_else

    if holds_something_else(path):
        return Finding("decision log", PROBLEM, f"{path} is not a decision log (it does not "
                       "begin with a decision); the log's rotation would rename and delete it",
                       "choose another log.file, a file of its own")
    return _file_to_write("decision log", "log.file", path, "decisions.jsonl",
                          "the service creates /run/emotion-edge itself (RuntimeDirectory=); "
                          "elsewhere create it or change log.file",
                          needs=(max_bytes * (backups + 1), "log.max_bytes x (log.backups + 1)",
                                 "lower log.max_bytes or log.backups"),
                          holds=[path, *(backup_path(path, i) for i in range(1, backups + 1))])


def check_adaptation_state(path: Path) -> Finding:
    """Whether the speech model can read what it learnt about the room from ``path`` and save
    it there (creating the missing folders, as it does); the service creates
    /var/lib/emotion-edge itself."""
    from ..features.adapt import begins_as_a_state, read_state

    if path.is_file():
        try:
            read_state(path)
        except ModelError as exc:
            if not begins_as_a_state(path):
                return Finding("adaptation state", PROBLEM, f"{path} is not an adaptation state "
                               f"(it does not begin as one); run refuses it rather than replace "
                               f"it", "choose another adapt.state_file, a file of its own")
            return Finding("adaptation state", WARN, str(exc),
                           f"the appliance moves it to {path.name}.damaged and starts fresh "
                           "(a file it may not read it keeps); `emotion-edge adapt --reset` "
                           "removes it")
    return _file_to_write("adaptation state", "adapt.state_file", path, "speech-adaptation.json",
                          "the service creates /var/lib/emotion-edge itself (StateDirectory=); "
                          "elsewhere create it or change adapt.state_file",
                          # The state is a few KB; it is written beside itself, then renamed.
                          needs=(STATE_ROOM_BYTES, "a new copy of the state", ""),
                          holds=[])


#: Free space the adaptation state asks of its file system (a state is a few KB).
STATE_ROOM_BYTES = 1_000_000


def _file_to_write(what: str, setting: str, path: Path, example: str, fix: str, *,
                   needs: tuple[int, str, str], holds: list[Path]) -> Finding:
    """A folder where a file is named, or a read-only file system, is a problem; an unwritable
    place a warning (the service's own folders are made by systemd, and check may run as another
    user), and so is a file system without room for ``needs`` (bytes, what they are, what else
    lowers them) beyond what the files in ``holds`` already take: /run is a tmpfs in RAM of a
    few tens of MB on a Pi, where a full log stops systemd itself."""
    if path.is_dir():
        return Finding(what, PROBLEM, f"{path} is a folder",
                       f"{setting} names the file to write, e.g. {path / example}")
    existing = next((p for p in path.parents if p.exists()), Path("/"))
    if not existing.is_dir():
        return Finding(what, PROBLEM, f"{existing} is a file, so {path} cannot be made",
                       f"point {setting} at a file in a folder")
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        return Finding(what, PROBLEM, f"{path} is on a read-only file system",
                       f"point {setting} at a writable place")
    if path.exists():
        writable = os.access(path, os.W_OK)
    else:
        writable = os.access(existing, os.W_OK | os.X_OK)
    if not writable:
        return Finding(what, WARN, f"{path} (not writable by uid {os.getuid()})", fix)
    room = os.statvfs(existing)
    free = room.f_bavail * room.f_frsize
    taken = sum(_size_of(p) for p in holds)
    wanted, rule, lower = needs
    if free + taken < wanted:
        return Finding(what, WARN, f"{path}: {_size(free)} free on its file system, and it "
                       f"may take {_size(wanted)} ({rule})",
                       ", ".join(filter(None, ("free some space", lower,
                                                f"or point {setting} at a larger place"))))
    return Finding(what, OK, f"{path} (writable by uid {os.getuid()}; {_size(free)} free)")


def _size_of(path: Path) -> int:
    """A file's size, 0 when it is not there (a running log rotates and deletes them)."""
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"
