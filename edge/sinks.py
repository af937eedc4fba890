"""Where decisions go: GPIO LEDs, JSON lines on a stream, a size-capped rotating file, a terminal.

A sink has ``write(decision)`` and an idempotent ``close()``.  gpiozero is imported inside
:class:`LedSink`, which receives its pin factory as an argument (``None`` = gpiozero's own choice:
``GPIOZERO_PIN_FACTORY``, then auto-detection), so tests pass gpiozero's ``MockFactory``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from .decision import Decision
from .errors import DeviceUnavailableError, MissingDependencyError

__all__ = [
    "Sink",
    "EMOTION_COLOURS",
    "LedSink",
    "JsonLinesSink",
    "RotatingFileSink",
    "TextSink",
]

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


class Sink(Protocol):
    def write(self, decision: Decision) -> None: ...

    def close(self) -> None: ...


def brightness(confidence: float, min_brightness: float) -> float:
    """Map a shown confidence (0..1) to LED brightness in [min_brightness, 1]."""
    c = min(max(float(confidence), 0.0), 1.0)
    return min_brightness + (1.0 - min_brightness) * c


class LedSink:
    """An RGB LED (colour per emotion) or one LED per emotion, plus a heartbeat LED.

    Brightness follows confidence; nothing shown = dark; the heartbeat toggles once per decision,
    so a frozen heartbeat means a frozen loop.  All LEDs go dark on :meth:`close`.
    """

    def __init__(self, config: Any, labels: Sequence[str], *, pin_factory: Any = None) -> None:
        # config: edge.config.LedConfig
        try:
            import gpiozero
        except ImportError as exc:
            raise MissingDependencyError(
                f"gpiozero is not installed ({exc}); pip install 'emotion-edge[device]' or set "
                f"leds.mode = \"none\""
            ) from None
        self.mode = config.mode
        self.min_brightness = config.min_brightness
        self.labels = tuple(labels)
        self._devices: list[Any] = []
        self._rgb = None
        self._per_label: dict[str, Any] = {}
        self._status = None
        self._closed = False
        try:
            if self.mode == "rgb":
                r, g, b = config.rgb_pins
                self._rgb = gpiozero.RGBLED(r, g, b, active_high=not config.common_anode,
                                            pin_factory=pin_factory)
                self._devices.append(self._rgb)
            elif self.mode == "per_emotion":
                for label in self.labels:
                    pin = config.emotion_pins.get(label)
                    if pin is None:
                        logger.warning("no LED pin for emotion %r (leds.emotion_pins); it will "
                                       "not be shown", label)
                        continue
                    led = gpiozero.PWMLED(pin, pin_factory=pin_factory)
                    self._per_label[label] = led
                    self._devices.append(led)
            if self.mode != "none" and config.status_pin >= 0:
                self._status = gpiozero.LED(config.status_pin, pin_factory=pin_factory)
                self._devices.append(self._status)
        except gpiozero.GPIOZeroError as exc:
            self.close()
            raise DeviceUnavailableError(
                f"cannot open the LEDs ({type(exc).__name__}: {exc}); check leds.* pins in the "
                f"config and that the service user is in the gpio group"
            ) from None

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

    def close(self) -> None:
        """All LEDs dark, pins released; idempotent."""
        if self._closed:
            return
        self._closed = True
        for dev in self._devices:
            try:
                dev.off()
            finally:
                dev.close()
        self._devices.clear()
        logger.info("LEDs dark, pins released")

    def __enter__(self) -> "LedSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._devices)} devices"
        return f"<LedSink mode={self.mode} {state}>"


class JsonLinesSink:
    """One JSON object per line on a text stream (stdout -> journald under systemd)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout

    def write(self, decision: Decision) -> None:
        self.stream.write(decision.to_json() + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass  # the stream belongs to the caller

    def __repr__(self) -> str:
        return f"<JsonLinesSink {getattr(self.stream, 'name', self.stream)!r}>"


class RotatingFileSink:
    """JSON lines in a file rotated at ``max_bytes`` (``file.1`` ... ``file.<backups>``).

    Meant for tmpfs (``/run/emotion-edge``) so a Pi's SD card is not worn by a log written twice
    a second; the size cap bounds memory there too.
    """

    def __init__(self, path: str | Path, *, max_bytes: int = 1_000_000, backups: int = 2) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f: IO[str] | None = open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            raise DeviceUnavailableError(
                f"cannot open the decision log {self.path}: {exc}; choose a writable log.file "
                f"(the service may write only under /run/emotion-edge and /var/lib/emotion-edge)"
            ) from None

    def _rotate(self) -> None:
        assert self._f is not None
        self._f.close()
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            for i in range(self.backups - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, decision: Decision) -> None:
        if self._f is None:
            return
        line = decision.to_json() + "\n"
        if self._f.tell() + len(line) > self.max_bytes and self._f.tell() > 0:
            self._rotate()
        self._f.write(line)
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __repr__(self) -> str:
        return f"<RotatingFileSink {self.path} max_bytes={self.max_bytes} open={self._f is not None}>"


class TextSink:
    """One human-readable line per decision (``run --text``, the demo)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout

    def write(self, decision: Decision) -> None:
        def part(name: str, rep: Any) -> str:
            if rep.present:
                return f"{name}={rep.label}({max(rep.scores.values()):.2f})"
            return f"{name}={rep.state}"

        shown = f"{decision.label} {decision.confidence:.2f}" if decision.label else "-"
        self.stream.write(
            f"{decision.media_s:7.2f}s  {shown:<16} {part('speech', decision.speech):<24} "
            f"{part('face', decision.face):<22} {decision.latency_ms.get('total', 0.0):6.1f} ms"
            f"{'  OVERRUN' if decision.overrun else ''}"
            f"{'' if decision.level == 'full' else '  [' + decision.level + ']'}\n"
        )
        self.stream.flush()

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return "<TextSink>"
