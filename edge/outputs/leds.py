"""Decisions on GPIO LEDs: an RGB LED (colour per emotion) or one LED per emotion, plus a heartbeat.

gpiozero is imported inside :class:`LedSink`, which receives its pin factory as an argument
(``None`` = gpiozero's own choice: ``GPIOZERO_PIN_FACTORY``, then auto-detection), so tests pass
gpiozero's ``MockFactory`` (see :func:`edge.testing.mock_pin_factory`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ..config import LedConfig
from ..decision import Decision
from ..errors import ConfigError, DeviceUnavailableError
from ..lifecycle import Closeable
from ..optional import import_optional, quiet_native_output

__all__ = ["EMOTION_COLOURS", "SHARED_PINS", "brightness", "colours", "named_colours", "pin_name",
           "LedSink", "LedPinError", "NoPinLibraryError"]

logger = logging.getLogger(__name__)

Colour = tuple[float, float, float]


def named_colours(configured: Mapping[str, str]) -> dict[str, str]:
    """``#rrggbb`` of each common label: ``leds.colours``, and the default colour of an emotion
    it leaves out."""
    return {**LedConfig().colours, **configured}


def colours(configured: Mapping[str, str]) -> dict[str, Colour]:
    """:func:`named_colours` as RGB, 0..1 per channel."""
    return {label: (int(c[1:3], 16) / 255, int(c[3:5], 16) / 255, int(c[5:7], 16) / 255)
            for label, c in named_colours(configured).items()}


def pin_name(gpio: int, header: int | None) -> str:
    """``GPIO17 (pin 11)``: the BCM number and, where known, the header's, as wiring diagrams
    number it (a pin given as its header number shows up as another header pin)."""
    return f"GPIO{gpio}" + (f" (pin {header})" if header else "")


#: The default colour of each common label (``leds.colours``); other labels show white.
EMOTION_COLOURS: Mapping[str, Colour] = colours({})

#: GPIOs of the header that something else may drive or pull, and what an LED on one does.
SHARED_PINS: Mapping[int, str] = {
    0: "reserved for a HAT's ID EEPROM (I2C0)",
    1: "reserved for a HAT's ID EEPROM (I2C0)",
    2: "I2C1 with a fixed pull-up to 3.3 V: an LED from it to ground glows while the appliance "
       "is stopped",
    3: "I2C1 with a fixed pull-up to 3.3 V: an LED from it to ground glows while the appliance "
       "is stopped",
    14: "the serial console's TX when it is enabled: the LED flickers with its output",
    15: "the serial console's RX when it is enabled",
}


def brightness(confidence: float, min_brightness: float, floor: float = 0.0) -> float:
    """Map a shown confidence in [floor, 1] to LED brightness in [min_brightness, 1].

    ``floor`` is the lowest confidence shown (``smoothing.min_confidence``): mapping from 0
    would light the least sure emotion shown at nearly half its full brightness.  A confidence
    below it (an emotion held for ``smoothing.min_dwell_s``) shows at ``min_brightness``.
    """
    c = min(max(float(confidence), 0.0), 1.0)
    span = 1.0 - floor
    share = min(max((c - floor) / span, 0.0), 1.0) if span > 0 else 1.0
    return min_brightness + (1.0 - min_brightness) * share


class LedPinError(ConfigError):
    """A pin setting the board or its pin library cannot drive: ``what``, then its ``fix``."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(f"{what}; {fix}")
        self.what, self.fix = what, fix


class NoPinLibraryError(DeviceUnavailableError):
    """gpiozero loaded no pin library: off a Pi, or on a Pi without lgpio."""

    what = "no GPIO pin library could be loaded (gpiozero: BadPinFactory)"


class LedSink(Closeable):
    """An RGB LED (colour per emotion) or one LED per emotion, plus a heartbeat LED.

    Brightness follows confidence; nothing shown = dark; the heartbeat toggles once per decision,
    so a frozen heartbeat means a frozen loop.  All LEDs go dark on :meth:`close`.
    """

    def __init__(self, config: LedConfig, labels: Sequence[str], *, pin_factory: Any = None,
                 min_confidence: float = 0.0, warn: bool = True) -> None:
        gpiozero = import_optional(
            "gpiozero", "pip install 'emotion-edge[device]' or set leds.mode = \"none\"")
        self.mode = config.mode
        self.min_brightness = config.min_brightness
        self.min_confidence = min_confidence
        self.colours = colours(config.colours)
        #: Log what the wiring leaves unshown or shared (``check`` reports it as findings).
        self._warn = warn
        self.labels = tuple(labels)
        self._devices: list[Any] = []
        self._rgb = None
        self._per_label: dict[str, Any] = {}
        self._status = None
        #: (role, BCM GPIO) of each LED opened: red/green/blue, an emotion, or status.
        self._pins: list[tuple[str, int]] = []
        try:
            self._open(gpiozero, config, pin_factory)
        except gpiozero.BadPinFactory:
            self.close()
            # Off a Pi gpiozero finds no pin library at all; the gpio group would not help.
            raise NoPinLibraryError(
                f"{NoPinLibraryError.what}: off a Raspberry Pi there are no pins (use "
                "--mock-gpio, or leds.mode = \"none\"); on a Pi: sudo apt install python3-lgpio"
            ) from None
        except gpiozero.PinInvalidPin as exc:
            self.close()
            raise LedPinError(
                f"cannot open the LEDs: {exc} on this board",
                "leds.* pins are BCM GPIO numbers of the 40-pin header, 0..27 (17 for GPIO17, "
                "on header pin 11)") from None
        except gpiozero.PinPWMUnsupported:
            self.close()
            raise LedPinError(
                "cannot open the LEDs: the pin library has no PWM, which brightness needs",
                "on a Pi use lgpio (sudo apt install python3-lgpio, and unset "
                "GPIOZERO_PIN_FACTORY); gpiozero's mock pins need "
                "GPIOZERO_MOCK_PIN_CLASS=mockpwmpin (or --mock-gpio)") from None
        except Exception as exc:  # gpiozero's own errors, and lgpio's "GPIO busy" unwrapped
            self.close()
            busy = "busy" in str(exc).lower() or isinstance(exc, gpiozero.GPIOPinInUse)
            raise DeviceUnavailableError(
                f"cannot open the LEDs ({type(exc).__name__}: {exc}); "
                + ("another program holds the pins (the service, if it runs: stop it first)"
                   if busy else "check leds.* pins in the config and that the service user is "
                   "in the gpio group")
            ) from None

    def _open(self, gpiozero: Any, config: LedConfig, pin_factory: Any) -> None:
        # gpiozero warns as it falls back from one pin library to the next (PinFactoryFallback):
        # noise on every start, told with -v.
        unpinned = [label for label in self.labels if label not in config.emotion_pins]
        if self.mode == "per_emotion" and unpinned and self._warn:
            logger.warning("no LED pin for emotion(s) %s (leds.emotion_pins); they will not be "
                           "shown", ", ".join(unpinned))
        with quiet_native_output("gpiozero"):
            if self.mode == "rgb":
                r, g, b = config.rgb_pins
                self._rgb = gpiozero.RGBLED(r, g, b, active_high=not config.common_anode,
                                            pin_factory=pin_factory)
                self._devices.append(self._rgb)
                self._pins += [("red", r), ("green", g), ("blue", b)]
            elif self.mode == "per_emotion":
                for label in self.labels:
                    pin = config.emotion_pins.get(label)
                    if pin is None:
                        continue
                    led = gpiozero.PWMLED(pin, active_high=config.active_high,
                                          pin_factory=pin_factory)
                    self._per_label[label] = led
                    self._devices.append(led)
                    self._pins.append((label, pin))
            if self.mode != "none" and config.status_pin >= 0:
                self._status = gpiozero.LED(config.status_pin, active_high=config.active_high,
                                            pin_factory=pin_factory)
                self._devices.append(self._status)
                self._pins.append(("status", config.status_pin))
        for role, pin in self._pins:
            if pin in SHARED_PINS and self._warn:
                logger.warning("leds: the %s LED is on GPIO%d, %s; choose a free GPIO",
                               role, pin, SHARED_PINS[pin])

    def wiring(self) -> list[tuple[str, int, int | None]]:
        """Each LED as (role, BCM GPIO, its pin on the 40-pin header or None)."""
        return [(role, pin, self._header_pin(pin)) for role, pin in self._pins]

    def _header_pin(self, gpio: int) -> int | None:
        device: Any = self._devices[0] if self._devices else None
        try:  # gpiozero's description of the board (the mock pins describe a Pi 3B)
            (_header, info), *_ = device.pin_factory.board_info.find_pin(f"GPIO{gpio}")
            return int(info.number)
        except Exception:  # no board description, or a pin not on its header
            return None

    def light_only(self, role: str) -> None:
        """Light one LED of :meth:`wiring` fully (``"red"``, an emotion, ``"status"``) and
        nothing else: the wiring self-test (``emotion-edge check --leds``).  In RGB mode an
        emotion shows its colour."""
        if self._status is not None:
            self._status.value = role == "status"
        if self._rgb is not None:
            channels = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}
            self._rgb.color = channels.get(role) or self.colours.get(role, (0.0, 0.0, 0.0))
        for name, led in self._per_label.items():
            led.value = 1.0 if name == role else 0.0

    def show(self, label: str | None, confidence: float) -> None:
        """Light ``label`` at a brightness following ``confidence``; None = dark."""
        level = (brightness(confidence, self.min_brightness, self.min_confidence)
                 if label is not None else 0.0)
        if self._rgb is not None:
            colour = self.colours.get(label, (1.0, 1.0, 1.0)) if label else (0.0, 0.0, 0.0)
            self._rgb.color = tuple(c * level for c in colour)
        for name, led in self._per_label.items():
            led.value = level if name == label else 0.0

    def write(self, decision: Decision) -> None:
        if self._closed:
            return
        self.show(decision.label, decision.confidence)
        if self._status is not None:
            self._status.toggle()

    def _close(self) -> None:
        """All LEDs dark, pins released."""
        for dev in self._devices:
            try:
                dev.off()
            finally:
                dev.close()
        self._devices.clear()
        logger.info("LEDs dark, pins released")

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._devices)} devices"
        return f"<LedSink mode={self.mode} {state}>"
