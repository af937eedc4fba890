"""The appliance's configuration: one TOML file, then environment, then command-line overrides.

Every section is a frozen dataclass; each field's ``metadata["doc"]`` states its unit, and
``choices``/``min``/``max`` bound it.  Unknown sections or keys and bad values are rejected when the
configuration is built, with a :class:`~edge.errors.ConfigError` naming the key and what is allowed.

Precedence (later wins): defaults, the TOML file, ``EMOTION_EDGE_<SECTION>_<KEY>`` environment
variables (not for ``[mqtt]``: file only), ``--set section.key=value`` style overrides from the
command line.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import typing
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .labels import COMMON_LABELS

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DETECTORS",
    "CAMERA_BACKENDS",
    "LoopConfig",
    "AudioConfig",
    "AdaptConfig",
    "CameraConfig",
    "ModelsConfig",
    "FusionConfig",
    "SmoothingConfig",
    "LedConfig",
    "LogConfig",
    "MqttConfig",
    "Config",
    "load_config",
    "parse_override",
    "parse_overrides",
    "PROCESS_VARIABLES",
    "process_setting",
    "config_reference",
    "Section",
    "setting",
    "read_toml",
    "load_sections",
    "reference_table",
]

#: Where ``install-service`` writes the configuration and where ``run``/``check`` look by default.
DEFAULT_CONFIG_PATH = Path("/etc/emotion-edge/config.toml")

ENV_PREFIX = "EMOTION_EDGE_"

#: Face detector choices: ``auto`` is BlazeFace (shipped), falling back to Haar without its model.
DETECTORS: tuple[str, ...] = ("auto", "haar", "blazeface")
#: Camera backends; ``auto`` is Picamera2 when importable, else OpenCV.
CAMERA_BACKENDS: tuple[str, ...] = ("picamera2", "opencv")
#: One MQTT topic level we build from configuration (a device id).
_TOPIC_WORD = re.compile(r"[A-Za-z0-9_-]{1,64}")


def setting(default: Any, doc: str, **bounds: Any) -> Any:
    """A dataclass field with a documented unit and optional ``choices``/``min``/``max``."""
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata={"doc": doc, **bounds})
    return dataclasses.field(default=default, metadata={"doc": doc, **bounds})


class Section:
    """Validation shared by all sections: runs on construction, so no invalid object exists."""

    _name: typing.ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in _fields(type(self)):
            value = getattr(self, field.name)
            key = f"{self._name}.{field.name}"
            _check_type(key, value, hints[field.name])
            texts = ([value] if isinstance(value, str) else
                     [t for kv in value.items() for t in kv] if isinstance(value, dict) else [])
            if any(unicodedata.category(c) == "Cc" for t in texts for c in str(t)):
                # A NUL in a path passes every check and then kills the open() in run.
                raise ConfigError(f"{key} = {value!r} contains a control character; remove it")
            if field.metadata.get("path") and (value.startswith("~") or "$" in value):
                # Nothing expands them: run would make folders named '~' or '$HOME' in its
                # working directory ('/' under systemd, where it may not write).
                raise ConfigError(
                    f"{key} = {value!r}: '~' and $VARIABLES are not expanded here (the service "
                    f"runs as its own user, and cannot see /home); write the full path, e.g. "
                    f"under /var/lib/emotion-edge/")
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{key} = {value!r} is not a finite number")
            meta = field.metadata
            # A list setting's choices bound each of its items.
            chosen = value if isinstance(value, tuple) else (value,)
            wrong = [v for v in chosen if "choices" in meta and v not in meta["choices"]]
            if wrong:
                raise ConfigError(
                    f"{key} = {wrong[0]!r} is not allowed; choose one of "
                    f"{', '.join(repr(c) for c in meta['choices'])}"
                )
            if "min" in meta and value < meta["min"]:
                raise ConfigError(f"{key} = {value!r} is too small; it must be >= {meta['min']}")
            if "max" in meta and value > meta["max"]:
                raise ConfigError(f"{key} = {value!r} is too large; it must be <= {meta['max']}")


def _check_type(key: str, value: Any, hint: Any) -> None:
    origin = typing.get_origin(hint)
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif hint in (int, str, bool):
        ok = isinstance(value, hint) and (hint is bool or not isinstance(value, bool))
    elif origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        ok = isinstance(value, tuple) and all(
            isinstance(v, item) and not isinstance(v, bool) for v in value
        )
    elif origin in (dict, Mapping):
        kt, vt = typing.get_args(hint)
        ok = isinstance(value, Mapping) and all(isinstance(k, kt) for k in value)
        # Values too: {happy = 0} in a map of labels was taken as "" and left happy out.
        ok = ok and all(isinstance(v, vt) and not isinstance(v, bool) for v in value.values())
    else:  # pragma: no cover - a programming error in this module
        raise TypeError(f"unsupported config type {hint!r} for {key}")
    if not ok:
        raise ConfigError(f"{key} = {value!r} has the wrong type; expected {_type_name(hint)}")


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is tuple:
        return f"a list of {typing.get_args(hint)[0].__name__}"
    if origin in (dict, Mapping):
        values = typing.get_args(hint)[1]
        return f"a table whose values are {_type_name(values).split(' ', 1)[1]}s"
    return {float: "a number", int: "an integer", str: "a string", bool: "true or false"}[hint]


@dataclasses.dataclass(frozen=True)
class LoopConfig(Section):
    _name: typing.ClassVar[str] = "loop"
    hop_s: float = setting(
        0.0, "Time between decisions, in seconds (one speech hop); 0 = the hop the speech model's "
        "manifest gives (it was evaluated with it).", min=0.0, max=5.0)
    deadline_s: float = setting(
        0.25,
        "Per-cycle compute budget in seconds; a cycle that takes longer counts as an overrun and "
        "degrades the loop. Sized for a Raspberry Pi 4 at the default hop.", min=0.005, max=5.0)
    overruns_to_degrade: int = setting(
        2, "Overrunning cycles among the last overrun_window before degrading one level (count).",
        min=1, max=100)
    overrun_window: int = setting(
        4, "Number of recent cycles in which overruns are counted (count).", min=1, max=100)
    recover_after: int = setting(
        20, "Consecutive cycles under recover_fraction * deadline before recovering one level "
        "(count).", min=1, max=10_000)
    recover_fraction: float = setting(
        0.6, "Fraction of the deadline a cycle must stay under to count towards recovery.",
        min=0.05, max=1.0)
    num_threads: int = setting(1, "Interpreter threads per model (count).", min=1, max=8)
    status_interval_s: float = setting(
        1.0, "Minimum time between systemd STATUS= updates, in seconds.", min=0.0, max=60.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if 0 < self.hop_s < 0.05:
            raise ConfigError(f"loop.hop_s = {self.hop_s!r} is too small; use 0 (the model's "
                              f"hop) or at least 0.05 s")


@dataclasses.dataclass(frozen=True)
class AudioConfig(Section):
    _name: typing.ClassVar[str] = "audio"
    device: str = setting("", "Substring of the ALSA/PortAudio input device name; empty = default.")
    block_s: float = setting(0.1, "Capture block length in seconds.", min=0.01, max=1.0)
    ring_blocks: int = setting(
        32, "Capacity of the capture ring buffer in blocks; when full the oldest block is dropped "
        "and counted.", min=2, max=10_000)


@dataclasses.dataclass(frozen=True)
class AdaptConfig(Section):
    _name: typing.ClassVar[str] = "adapt"
    enabled: bool = setting(
        True, "Let a speech model that supports it adapt to this deployment: standardise its "
        "features with the statistics of the speech heard here (only counts, means and "
        "variances are kept; no audio).")
    state_file: str = setting(
        "", "Where the adaptation statistics are kept across restarts; empty = in memory only. "
        "Delete the file (or run `emotion-edge adapt --reset`) to start over. One process "
        "writes it: a second run given the same file is refused at start.", path=True)
    prior_frames: float = setting(
        6000.0, "Weight of the training statistics, in frames of 10 ms: after this much speech "
        "the device's own statistics count as much as the training data's.", min=0.0,
        max=1e9)


def check_broker_host(host: str, name: str, port_name: str) -> None:
    """A broker's name or address alone: "mqtt://broker" and "broker:1883" (URL habits of other
    MQTT tools) would fail only when connecting, as a name that does not resolve."""
    if "://" in host or "/" in host:
        raise ConfigError(f"{name} = {host!r} is a URL; give the broker's name or address alone "
                          f"(e.g. 192.168.1.10), the port as {port_name}, TLS as its own setting")
    if host.count(":") == 1:  # IPv6 addresses have several
        raise ConfigError(f"{name} = {host!r} holds a port; give the name or address alone and "
                          f"the port as {port_name}")


def _check_retry_order(section: Any) -> None:
    """The first retry delay may not exceed the longest (it would silently be cut to it)."""
    if section.retry_initial_s > section.retry_max_s:
        raise ConfigError(
            f"{section._name}.retry_initial_s = {section.retry_initial_s:g} is longer than "
            f"{section._name}.retry_max_s = {section.retry_max_s:g}; the delays double from the "
            f"first up to the longest")


@dataclasses.dataclass(frozen=True)
class CameraConfig(Section):
    _name: typing.ClassVar[str] = "camera"
    enabled: bool = setting(True, "Use the camera (face modality).")
    source: str = setting("auto", "Camera backend.", choices=("auto", *CAMERA_BACKENDS))
    index: int = setting(0, "OpenCV camera index (/dev/videoN).", min=0, max=63)
    width: int = setting(320, "Capture width in pixels.", min=64, max=4096)
    height: int = setting(240, "Capture height in pixels.", min=48, max=4096)
    rotate: int = setting(
        0, "Turn every camera frame clockwise by this many degrees before faces are looked for: "
        "180 for a camera mounted upside down, 90 or 270 for one on its side (an upside-down "
        "face is found but its expression misread).", choices=(0, 90, 180, 270))
    detector: str = setting(
        "auto", "Face detector: blazeface (shipped, faster and finds more faces), haar (OpenCV) or "
        "auto (blazeface, else haar with a warning if its model is missing or damaged).",
        choices=DETECTORS)
    close_faces: bool = setting(
        True, "Look again at a frame with no face, set in a grey border, so that a face filling "
        "it (someone close to the camera) is found: BlazeFace misses many such faces in one look. "
        "The later looks take turns, one per cycle that sees no face (one more detector invoke); "
        "Haar has none.")
    far_faces: bool = setting(
        True, "Look again at a frame with no face in each of its four corner tiles, one per cycle "
        "in turn with the border, so that a small face (someone two or more metres away at "
        "320x240) is found within five cycles: BlazeFace sees the frame shrunk to 128 pixels.")
    redetect_motion: float = setting(
        8.0, "Change around the last face box above which the face is detected again, in grey "
        "levels: the mean absolute difference of the box and its surroundings (area-averaged to "
        "16x16) since the box was found, a uniform change of brightness taken away. Below it the "
        "box is reused and detection (the dearest step of a cycle) is skipped; the expression is "
        "still classified on every frame. 0 = detect on every cycle.", min=0.0, max=255.0)
    redetect_after_s: float = setting(
        4.0, "Longest a face box is reused without detecting again, in seconds, whether the scene "
        "is still or the loop is overloaded (at least one cycle).", min=0.5, max=60.0)
    retry_initial_s: float = setting(
        1.0, "First delay before reopening a failed camera, in seconds.", min=0.01, max=600.0)
    retry_max_s: float = setting(
        30.0, "Longest delay between camera reopen attempts, in seconds (doubles up to this).",
        min=0.01, max=3600.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_retry_order(self)


@dataclasses.dataclass(frozen=True)
class ModelsConfig(Section):
    _name: typing.ClassVar[str] = "models"
    speech: str = setting(
        "", "Speech model .tflite path; empty = the shipped model. A microphone that passes only "
        "the telephone band (a Bluetooth headset's call link, a phone line) does better with the "
        "shipped speech_emotion_narrowband_int8.tflite, beside the shipped model.", path=True)
    face: str = setting("", "Face model .tflite path; empty = the shipped model.", path=True)


@dataclasses.dataclass(frozen=True)
class FusionConfig(Section):
    _name: typing.ClassVar[str] = "fusion"
    speech_weight: float = setting(1.0, "Weight of the speech modality (unitless, >= 0).",
                              min=0.0, max=100.0)
    face_weight: float = setting(1.0, "Weight of the face modality (unitless, >= 0).",
                            min=0.0, max=100.0)
    speech_temperature: float = setting(
        1.0, "Calibration temperature for speech scores (>1 softens, <1 sharpens).",
        min=0.05, max=20.0)
    face_temperature: float = setting(
        1.0, "Calibration temperature for face scores (>1 softens, <1 sharpens).",
        min=0.05, max=20.0)
    speech_map: dict[str, str] = setting(
        {}, "Overrides of the speech manifest's fusion_map: model label -> common label, or \"\" "
        "to leave the label out of fusion.")
    face_map: dict[str, str] = setting(
        {}, "Overrides of the face manifest's fusion_map: model label -> common label, or \"\" "
        "to leave the label out of fusion.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.speech_weight == 0 and self.face_weight == 0:
            raise ConfigError("fusion.speech_weight and fusion.face_weight are both 0, so no "
                              "emotion could ever be shown; give at least one a weight > 0")
        for key, mapping in (("speech_map", self.speech_map), ("face_map", self.face_map)):
            for label, common in mapping.items():
                if common and common not in COMMON_LABELS:
                    raise ConfigError(
                        f"fusion.{key}.{label} = {common!r} is not a common label; use one of "
                        f"{', '.join(COMMON_LABELS)}, or \"\" to leave {label!r} out of fusion")


@dataclasses.dataclass(frozen=True)
class SmoothingConfig(Section):
    _name: typing.ClassVar[str] = "smoothing"
    alpha: float = setting(
        0.35, "Exponential smoothing factor per decision (0..1; higher follows faster).",
        min=0.01, max=1.0)
    switch_margin: float = setting(
        0.1, "Hysteresis: a new emotion must beat the shown one by this much smoothed "
        "probability.", min=0.0, max=1.0)
    min_dwell_s: float = setting(
        1.5, "Hysteresis: the shown emotion stays at least this long, in seconds.",
        min=0.0, max=60.0)
    min_confidence: float = setting(
        0.3, "Below this smoothed probability no emotion is shown.", min=0.0, max=1.0)


@dataclasses.dataclass(frozen=True)
class LedConfig(Section):
    _name: typing.ClassVar[str] = "leds"
    mode: str = setting("rgb", "LED wiring.", choices=("rgb", "per_emotion", "none"))
    rgb_pins: tuple[int, ...] = setting(
        (17, 27, 22), "BCM GPIO numbers (17 for GPIO17, on header pin 11; not the header's pin "
        "numbers) of the RGB LED: red, green, blue.")
    common_anode: bool = setting(False, "RGB LED is common-anode (active low).")
    active_high: bool = setting(
        True, "Single LEDs (per_emotion and the status LED) are wired pin -> resistor -> LED -> "
        "ground; false: from 3.3 V to the pin (active low). The RGB LED's is common_anode.")
    colours: dict[str, str] = setting(
        {"neutral": "#ffffff", "happy": "#ffb300", "sad": "#0000ff", "angry": "#ff0000",
         "fearful": "#9900ff", "disgust": "#00ff00", "surprised": "#00ffff"},
        "rgb mode: common label -> colour as #rrggbb; an emotion left out keeps its default.")
    emotion_pins: dict[str, int] = setting(
        {"neutral": 5, "happy": 6, "sad": 13, "angry": 19, "fearful": 26, "disgust": 16,
         "surprised": 20},
        "per_emotion mode: common label -> BCM GPIO number of its LED.")
    status_pin: int = setting(4, "BCM GPIO number of the heartbeat/status LED; -1 = none.",
                              min=-1, max=53)
    min_brightness: float = setting(
        0.15, "Brightness (0..1) at the lowest shown confidence (smoothing.min_confidence), "
        "rising to 1 at full confidence.", min=0.0, max=1.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.rgb_pins) != 3:
            raise ConfigError(
                f"leds.rgb_pins = {list(self.rgb_pins)!r} must list exactly 3 pins (red, green, "
                f"blue)")
        for key, mapping in (("emotion_pins", self.emotion_pins), ("colours", self.colours)):
            unknown = [label for label in mapping if label not in COMMON_LABELS]
            if unknown:  # a typo would leave its emotion dark (or its default) without a word
                raise ConfigError(
                    f"leds.{key}: {', '.join(map(repr, unknown))} is not an emotion the "
                    f"appliance shows; use {', '.join(COMMON_LABELS)}")
        for label, colour in self.colours.items():
            if not re.fullmatch(r"#[0-9a-fA-F]{6}", colour):
                raise ConfigError(f"leds.colours.{label} = {colour!r} is not a colour; write it "
                                  f"as #rrggbb, e.g. \"#ff8000\" for orange")
        # Only the status LED may be -1 (none); every other LED needs a pin.
        pins = [*self.rgb_pins, self.status_pin]
        if self.mode == "per_emotion":
            pins = [*self.emotion_pins.values(), self.status_pin]
        used = pins if self.status_pin >= 0 else pins[:-1]
        dup = sorted({p for p in used if used.count(p) > 1})
        if self.mode != "none" and dup:
            raise ConfigError(f"leds: pin(s) {dup} are assigned twice; give every LED its own pin")
        for p in used:
            if not 0 <= p <= 53:
                raise ConfigError(f"leds: pin {p} is not a BCM GPIO number (0..53)")


@dataclasses.dataclass(frozen=True)
class LogConfig(Section):
    _name: typing.ClassVar[str] = "log"
    stdout: bool = setting(True, "Write one JSON line per decision to stdout (the journal under "
                      "systemd).")
    file: str = setting("", "Also write decisions to this file, rotated by size; empty = no file. "
                   "Use tmpfs (e.g. /run/emotion-edge/decisions.jsonl) to spare the SD card. A "
                   "file that is not a decision log (a recording, the config) is refused, never "
                   "appended to or rotated away; so is a file another run is writing.",
                   path=True)
    max_bytes: int = setting(1_000_000, "Rotate the decision file at this size, in bytes.",
                        min=1_000, max=1_000_000_000)
    backups: int = setting(2, "Rotated decision files kept (count).", min=0, max=100)


@dataclasses.dataclass(frozen=True)
class MqttConfig(Section):
    """Decisions over MQTT (``edge.outputs.mqtt``); no password here: see ``password_file``."""

    _name: typing.ClassVar[str] = "mqtt"
    enabled: bool = setting(
        False, "Publish decisions, state and availability to an MQTT broker (off: the service "
        "keeps no network at all).")
    host: str = setting("", "Broker host name or IP address (required when enabled); the "
                        "service is allowed to reach this address only.")
    port: int = setting(1883, "Broker TCP port (1883 plain, 8883 usually for TLS).",
                        min=1, max=65535)
    device_id: str = setting(
        "", "This Pi's name in topics and in Home Assistant (letters, digits, - and _); empty = "
        "the host name.")
    topic_prefix: str = setting(
        "emotion-edge", "First topic level(s): decisions go to `<topic_prefix>/<device_id>/decision`.")
    discovery_prefix: str = setting(
        "homeassistant", "Home Assistant MQTT discovery prefix; empty = no discovery messages.")
    username: str = setting("", "User name at the broker; empty = anonymous.")
    password_file: str = setting(
        "", "File whose first line is the broker password (e.g. /etc/emotion-edge/mqtt-password, "
        "owned by root, mode 0600); install-service hands it to the service as the systemd "
        "credential mqtt-password. There is no password key: the password never goes into "
        "the TOML.", path=True)
    tls: bool = setting(False, "Connect with TLS (certificate and host name verified).")
    ca_file: str = setting("", "CA certificate (PEM) that signed the broker's certificate; empty "
                           "= the system's CAs.", path=True)
    cert_file: str = setting("", "Client certificate (PEM) for brokers that require one; empty = "
                             "none.", path=True)
    key_file: str = setting("", "Private key (PEM, unencrypted) of cert_file; install-service "
                            "hands it to the service as the credential mqtt-client-key.",
                            path=True)
    queue_size: int = setting(
        1000, "Messages kept while the broker is slow or away (count, about 4 KB each); when "
        "full the oldest is dropped and counted (mqtt_dropped).", min=1, max=50_000)
    heartbeat_s: float = setting(
        30.0, "The retained state is republished at least this often, in seconds (and at every "
        "change).", min=1.0, max=3600.0)
    keepalive_s: int = setting(
        30, "MQTT keepalive in seconds: the broker publishes the last will (offline) after 1.5x "
        "this without traffic.", min=5, max=3600)
    retry_initial_s: float = setting(
        1.0, "First delay before reconnecting to the broker, in seconds.", min=0.05, max=600.0)
    retry_max_s: float = setting(
        60.0, "Longest delay between reconnect attempts, in seconds (doubles up to this).",
        min=0.05, max=3600.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_retry_order(self)
        if self.enabled and not self.host:
            raise ConfigError("mqtt.enabled = true needs mqtt.host (the broker's name or address)")
        check_broker_host(self.host, "mqtt.host", "mqtt.port")
        if self.device_id and not _TOPIC_WORD.fullmatch(self.device_id):
            raise ConfigError(f"mqtt.device_id = {self.device_id!r} may hold only letters, "
                              f"digits, - and _ (it is a topic level and an entity id)")
        for key in ("topic_prefix", "discovery_prefix"):
            value = getattr(self, key)
            if any(c in value for c in "#+\0") or value.startswith("/") or value.endswith("/"):
                raise ConfigError(f"mqtt.{key} = {value!r} must be plain topic levels without "
                                  f"wildcards (+ #) or a leading or trailing /")
        if not self.topic_prefix:
            raise ConfigError("mqtt.topic_prefix must not be empty")
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError("mqtt.cert_file and mqtt.key_file go together; set both or neither")
        if (self.ca_file or self.cert_file) and not self.tls:
            raise ConfigError("mqtt.ca_file/cert_file are used only with TLS; set mqtt.tls = true")
        if self.password_file and not self.username:
            raise ConfigError("mqtt.password_file needs mqtt.username")


_SECTIONS: dict[str, type[Section]] = {
    "loop": LoopConfig,
    "audio": AudioConfig,
    "adapt": AdaptConfig,
    "camera": CameraConfig,
    "models": ModelsConfig,
    "fusion": FusionConfig,
    "smoothing": SmoothingConfig,
    "leds": LedConfig,
    "log": LogConfig,
    "mqtt": MqttConfig,
}


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole configuration; ``source`` records where values came from (for ``check``)."""

    loop: LoopConfig = dataclasses.field(default_factory=LoopConfig)
    audio: AudioConfig = dataclasses.field(default_factory=AudioConfig)
    adapt: AdaptConfig = dataclasses.field(default_factory=AdaptConfig)
    camera: CameraConfig = dataclasses.field(default_factory=CameraConfig)
    models: ModelsConfig = dataclasses.field(default_factory=ModelsConfig)
    fusion: FusionConfig = dataclasses.field(default_factory=FusionConfig)
    smoothing: SmoothingConfig = dataclasses.field(default_factory=SmoothingConfig)
    leds: LedConfig = dataclasses.field(default_factory=LedConfig)
    log: LogConfig = dataclasses.field(default_factory=LogConfig)
    mqtt: MqttConfig = dataclasses.field(default_factory=MqttConfig)
    source: tuple[str, ...] = ()

    def replace(self, section: str, **values: Any) -> Config:
        """Return a copy with ``values`` changed in ``section`` (validated)."""
        return dataclasses.replace(
            self, **{section: dataclasses.replace(getattr(self, section), **values)}
        )


def _coerce_text(key: str, text: str, hint: Any) -> Any:
    """Turn an environment/CLI string into the field's type, or raise ConfigError."""
    text = text.strip()
    origin = typing.get_origin(hint)
    try:
        if hint is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        if hint is str:
            return text
        if origin is tuple:
            # "17,27,22" or TOML's "[0.9, 1.1]" and '["a", "b"]'; "[]" or "" is the empty list
            (item,) = {t for t in typing.get_args(hint) if t is not Ellipsis}
            return tuple(item(v.strip().strip("\"'")) for v in text.strip("[]").split(",")
                         if v.strip())
        if origin in (dict, Mapping):
            # A TOML inline table: {happy = 6, sad = 13}
            return tomllib.loads(f"v = {text}")["v"]
    except (ValueError, tomllib.TOMLDecodeError):
        pass
    raise ConfigError(f"{key} = {text!r} cannot be read as {_type_name(hint)}")


def _merge(schema: Mapping[str, type[Section]], raw: dict[str, dict[str, Any]], section: str,
           key: str, value: Any, origin: str) -> None:
    if section not in schema:
        raise ConfigError(
            f"{origin}: unknown section [{section}]; allowed sections: {', '.join(schema)}"
        )
    names = [f.name for f in _fields(schema[section])]
    if key not in names:
        raise ConfigError(
            f"{origin}: unknown key {section}.{key}; allowed keys in [{section}]: "
            f"{', '.join(names)}"
        )
    raw.setdefault(section, {})[key] = value


#: Variables that apply to every command, not only to ``run``'s configuration; read here only.
PROCESS_VARIABLES: Mapping[str, str] = {
    "EMOTION_EDGE_MODELS": "the one folder searched for model files",
    "EMOTION_EDGE_RUNTIME": "the TFLite interpreter: litert, tflite-runtime or tensorflow",
}
#: Variables of earlier versions, and the configuration key that replaced each.
_RENAMED_VARIABLES = {
    "EMOTION_EDGE_MIC": "EMOTION_EDGE_AUDIO_DEVICE",
    "EMOTION_EDGE_CAMERA": "EMOTION_EDGE_CAMERA_SOURCE",
}


def _unknown_variable(var: str) -> str:
    if var in _RENAMED_VARIABLES:
        return f"environment variable {var} is no longer read; set {_RENAMED_VARIABLES[var]} instead"
    return (f"environment variable {var} is not a setting: EMOTION_EDGE_<SECTION>_<KEY> needs one "
            f"of the sections {', '.join(_SECTIONS)}, or use one of {', '.join(PROCESS_VARIABLES)}; "
            f"unset it or correct its name")


def process_setting(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The value of one of :data:`PROCESS_VARIABLES` (``None`` when unset or empty)."""
    if name not in PROCESS_VARIABLES:
        raise KeyError(f"{name} is not a process variable")
    return (os.environ if env is None else env).get(name) or None


def parse_override(text: str) -> tuple[str, str, str]:
    """``"loop.hop_s=0.25"`` -> ``("loop", "hop_s", "0.25")``."""
    name, sep, value = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot:
        raise ConfigError(f"override {text!r} must look like section.key=value (e.g. loop.hop_s=0.5)")
    return section, key, value


#: Largest configuration or recipe read, bytes: each is a few KB; /dev/zero or a log named by
#: mistake would otherwise be read whole (a Pi Zero's memory, gone).
MAX_TOML_BYTES = 1 << 20


def read_toml(path: Path, *, what: str = "config file") -> dict[str, Any]:
    """A TOML file as a dict; every failure is a :class:`ConfigError` naming the file."""
    try:
        if path.is_dir():
            raise ConfigError(f"{what} {path} is a folder; name the .toml file in it")
        with path.open("rb") as f:  # a pipe too (<(...)): read up to the limit
            raw = f.read(MAX_TOML_BYTES + 1)
        if len(raw) > MAX_TOML_BYTES:
            raise ConfigError(f"{what} {path} is larger than {MAX_TOML_BYTES >> 20} MB, so it is "
                              f"not one; name the .toml file")
        # utf-8-sig: Windows editors (Notepad) begin the file with a byte-order mark.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {exc.start}); save it as "
                          f"UTF-8") from None
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} not found") from None
    except PermissionError:
        service = (f" (the service reads it as user emotion-edge: sudo chmod 644 {path})"
                   if what == "config file" else "")
        raise ConfigError(f"{what} {path}: permission denied; run this with sudo, or let this "
                          f"user read it{service}") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} is not readable: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from None


def load_sections(
    schema: Mapping[str, type[Section]],
    data: Mapping[str, Any] | None = None,
    *,
    origin: str = "config",
    env: Mapping[str, str] | None = None,
    env_prefix: str | None = None,
    overrides: Mapping[tuple[str, str], Any] | None = None,
) -> tuple[dict[str, Section], tuple[str, ...]]:
    """The strict loader shared by the device configuration and the training recipes.

    ``data`` (a parsed TOML file named ``origin``), then ``env_prefix`` variables
    (``<PREFIX><SECTION>_<KEY>``), then ``overrides`` (``(section, key)`` -> typed value or text)
    fill the sections of ``schema``; unknown sections and keys, wrong types and values out of
    range are :class:`ConfigError` naming them.  Returns the sections and where values came from.
    """
    raw: dict[str, dict[str, Any]] = {}
    sources: list[str] = []
    given: dict[str, str] = {}  # "section.key" -> where its value came from, the last one
    for section, table in (data or {}).items():
        if not isinstance(table, dict):
            raise ConfigError(f"{origin}: {section} must be a [section] table")
        for key, value in table.items():
            _merge(schema, raw, section, key, value, origin)
            given[f"{section}.{key}"] = origin
    hints = {name: typing.get_type_hints(cls) for name, cls in schema.items()}
    if env_prefix is not None:
        for var, text in sorted((os.environ if env is None else env).items()):
            if not var.startswith(env_prefix) or var in PROCESS_VARIABLES:
                continue
            rest = var[len(env_prefix):].lower()
            named = next((s for s in schema if rest.startswith(s + "_")), None)
            if named is None:
                raise ConfigError(_unknown_variable(var))
            if named == "mqtt":
                # install-service writes the unit's network allow-list and credentials from the
                # file; a variable (e.g. in /etc/default/emotion-edge) would leave them behind.
                raise ConfigError(f"environment variable {var}: [mqtt] settings are read from the "
                                  f"configuration file only; set mqtt.{rest[5:]} there and run "
                                  f"install-service again")
            key = rest[len(named) + 1:]
            _merge(schema, raw, named, key, None, f"environment variable {var}")
            raw[named][key] = _coerce_text(f"{var} ({named}.{key})", text, hints[named][key])
            sources.append(var)
            given[f"{named}.{key}"] = f"environment variable {var}"
    for (section, key), value in (overrides or {}).items():
        _merge(schema, raw, section, key, None, "command line")
        if isinstance(value, str) and hints[section][key] is not str:
            value = _coerce_text(f"{section}.{key}", value, hints[section][key])
        raw[section][key] = value
        sources.append(f"--{section}.{key}")
        given[f"{section}.{key}"] = f"--set {section}.{key}"
    sections: dict[str, Section] = {}
    for name, cls in schema.items():
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.get(name, {}).items()}
        try:
            sections[name] = cls(**values)
        except ConfigError as exc:
            # Say where the refused value came from: a variable in /etc/default/emotion-edge
            # would otherwise be looked for in the TOML.
            where = sorted({given[k] for k in given if re.search(rf"\b{re.escape(k)}\b",
                                                                  str(exc))})
            if not where:
                raise
            raise ConfigError(f"{exc} (from {', '.join(where)})") from None
    return sections, tuple(sources)


def parse_overrides(texts: Iterable[str]) -> dict[tuple[str, str], Any]:
    """Repeated ``--set section.key=value`` texts as ``(section, key) -> text`` overrides."""
    out: dict[tuple[str, str], Any] = {}
    for text in texts:
        section, key, value = parse_override(text)
        out[(section, key)] = value
    return out


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[tuple[str, str], Any] | None = None,
    required: bool = False,
) -> Config:
    """Build the configuration from defaults, ``path``, ``env`` and ``overrides``.

    ``overrides`` maps ``(section, key)`` to a typed value, or to a string to be coerced like an
    environment variable.  A missing ``path`` is an error only when ``required`` (the user named it).
    """
    data: dict[str, Any] = {}
    sources: list[str] = []
    if path is not None:
        path = Path(path)
        try:
            present = path.is_file()
        except PermissionError:  # a folder this user may not enter: read_toml names the fix
            present = True
        if present or required:
            try:
                data = read_toml(path)
            except ConfigError:
                if not present and not path.exists():
                    raise ConfigError(
                        f"config file {path} not found; create it (emotion-edge install-service "
                        f"writes one) or omit --config to use the defaults") from None
                raise
            sources.append(str(path))
    sections, more = load_sections(_SECTIONS, data, origin=str(path), env=env,
                                   env_prefix=ENV_PREFIX, overrides=overrides)
    return Config(
        loop=typing.cast(LoopConfig, sections["loop"]),
        audio=typing.cast(AudioConfig, sections["audio"]),
        adapt=typing.cast(AdaptConfig, sections["adapt"]),
        camera=typing.cast(CameraConfig, sections["camera"]),
        models=typing.cast(ModelsConfig, sections["models"]),
        fusion=typing.cast(FusionConfig, sections["fusion"]),
        smoothing=typing.cast(SmoothingConfig, sections["smoothing"]),
        leds=typing.cast(LedConfig, sections["leds"]),
        log=typing.cast(LogConfig, sections["log"]),
        mqtt=typing.cast(MqttConfig, sections["mqtt"]),
        source=(*sources, *more),
    )


def _fields(cls: type[Section]) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cls)  # type: ignore[arg-type]


def reference_table(schema: Mapping[str, type[Section]]) -> str:
    """A Markdown table of every key of ``schema``, its default and its documentation."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for name, cls in schema.items():
        for field in _fields(cls):
            default = (field.default if field.default is not dataclasses.MISSING
                       else field.default_factory())  # type: ignore[operator]
            doc = field.metadata["doc"]
            if "choices" in field.metadata:
                doc += " One of: " + ", ".join(f"`{c}`" for c in field.metadata["choices"]) + "."
            lines.append(f"| `{name}.{field.name}` | `{_toml_value(default)}` | {doc} |")
    return "\n".join(lines)


def config_reference() -> str:
    """A Markdown table of every configuration key (for the docs)."""
    return reference_table(_SECTIONS)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return repr(value)
