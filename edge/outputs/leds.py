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
from ..errors import DeviceUnavailableError
from ..lifecycle import Closeable
from ..optional import import_optional, quiet_native_output

__all__ = ["EMOTION_COLOURS", "brightness", "LedSink", "NoPinLibraryError"]

logger = logging.getLogger(__name__)

#: RGB colour (0..1 per channel) for each common label; other labels show white.
EMOTION_COLOURS: Mapping[str, tuple[float, float, float]] = {
    "neutral": (1.0, 1.0, 1.0),
    "happy": (1.0, 0.7, 0.0),
    "sad": (0.0, 0.0, 1.0),
    "angry": (1.0, 0.0, 0.0),
    "fearful": (0.6, 0.0, 1.0),
    "disgust": (0.0, 1.0, 0.0),
    "surprised": (0.0, 1.0, 1.0),
}


def brightness(confidence: float, min_brightness: float) -> float:
    """Map a shown confidence (0..1) to LED brightness in [min_brightness, 1]."""
    c = min(max(float(confidence), 0.0), 1.0)
    return min_brightness + (1.0 - min_brightness) * c


class NoPinLibraryError(DeviceUnavailableError):
    """gpiozero loaded no pin library: off a Pi, or on a Pi without lgpio."""

    what = "no GPIO pin library could be loaded (gpiozero: BadPinFactory)"


class LedSink(Closeable):
    """An RGB LED (colour per emotion) or one LED per emotion, plus a heartbeat LED.

    Brightness follows confidence; nothing shown = dark; the heartbeat toggles once per decision,
    so a frozen heartbeat means a frozen loop.  All LEDs go dark on :meth:`close`.
    """

    def __init__(self, config: LedConfig, labels: Sequence[str], *, pin_factory: Any = None
                 ) -> None:
        gpiozero = import_optional(
            "gpiozero", "pip install 'emotion-edge[device]' or set leds.mode = \"none\"")
        self.mode = config.mode
        self.min_brightness = config.min_brightness
        self.labels = tuple(labels)
        self._devices: list[Any] = []
        self._rgb = None
        self._per_label: dict[str, Any] = {}
        self._status = None
        try:
            self._open(gpiozero, config, pin_factory)
        except gpiozero.BadPinFactory:
            self.close()
            # Off a Pi gpiozero finds no pin library at all; the gpio group would not help.
            raise NoPinLibraryError(
                f"{NoPinLibraryError.what}: off a Raspberry Pi there are no pins (use "
                "--mock-gpio, or leds.mode = \"none\"); on a Pi: sudo apt install python3-lgpio"
            ) from None
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
        if self.mode == "per_emotion" and unpinned:
            logger.warning("no LED pin for emotion(s) %s (leds.emotion_pins); they will not be "
                           "shown", ", ".join(unpinned))
        with quiet_native_output("gpiozero"):
            if self.mode == "rgb":
                r, g, b = config.rgb_pins
                self._rgb = gpiozero.RGBLED(r, g, b, active_high=not config.common_anode,
                                            pin_factory=pin_factory)
                self._devices.append(self._rgb)
            elif self.mode == "per_emotion":
                for label in self.labels:
                    pin = config.emotion_pins.get(label)
                    if pin is None:
                        continue
                    led = gpiozero.PWMLED(pin, pin_factory=pin_factory)
                    self._per_label[label] = led
                    self._devices.append(led)
            if self.mode != "none" and config.status_pin >= 0:
                self._status = gpiozero.LED(config.status_pin, pin_factory=pin_factory)
                self._devices.append(self._status)

    def show(self, label: str | None, confidence: float) -> None:
        """Light ``label`` at a brightness following ``confidence``; None = dark."""
        level = brightness(confidence, self.min_brightness) if label is not None else 0.0
        if self._rgb is not None:
            colour = EMOTION_COLOURS.get(label, (1.0, 1.0, 1.0)) if label else (0.0, 0.0, 0.0)
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
