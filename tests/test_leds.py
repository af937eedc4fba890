"""LEDs through gpiozero's own MockFactory: colours, brightness, heartbeat, dark on close."""

import pytest

gpiozero = pytest.importorskip("gpiozero")
from gpiozero.pins.mock import MockFactory, MockPWMPin  # noqa: E402

from edge.config import LedConfig  # noqa: E402
from edge.decision import Decision, ModalityReport  # noqa: E402
from edge.outputs.leds import EMOTION_COLOURS, LedSink  # noqa: E402

LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised")


@pytest.fixture
def factory():
    f = MockFactory(pin_class=MockPWMPin)
    yield f
    f.reset()


def decision(label, confidence, cycle=0):
    return Decision(cycle=cycle, time=0.0, media_s=cycle * 0.5, label=label,
                    confidence=confidence, fused={}, speech=ModalityReport("ok"),
                    face=ModalityReport("disabled"), latency_ms={}, overrun=False, level="full",
                    counters={})


def state(factory, pin):
    return float(factory.pin(pin).state)


def test_rgb_colour_per_emotion_and_brightness_per_confidence(factory):
    cfg = LedConfig(mode="rgb", rgb_pins=(17, 27, 22), status_pin=4, min_brightness=0.0)
    with LedSink(cfg, LABELS, pin_factory=factory) as sink:
        sink.write(decision("angry", 1.0))
        assert [state(factory, p) for p in (17, 27, 22)] == [1.0, 0.0, 0.0]
        sink.write(decision("sad", 0.5))
        assert [state(factory, p) for p in (17, 27, 22)] == pytest.approx([0.0, 0.0, 0.5])
        sink.write(decision("happy", 0.8))
        r, g, b = EMOTION_COLOURS["happy"]
        assert [state(factory, p) for p in (17, 27, 22)] == pytest.approx([r * .8, g * .8, b * .8])
        sink.write(decision(None, 0.0))
        assert [state(factory, p) for p in (17, 27, 22)] == [0.0, 0.0, 0.0]


def test_heartbeat_toggles_each_decision_and_all_dark_on_close(factory):
    cfg = LedConfig(mode="rgb", status_pin=4)
    sink = LedSink(cfg, LABELS, pin_factory=factory)
    beats = []
    for i in range(4):
        sink.write(decision("happy", 0.9, i))
        beats.append(bool(factory.pin(4).state))
    assert beats == [True, False, True, False]
    sink.write(decision("happy", 0.9))
    assert state(factory, 17) > 0 and factory.pin(4).state
    sink.close()
    assert all(state(factory, p) == 0 for p in (17, 27, 22, 4))
    sink.close()  # idempotent
    sink.write(decision("happy", 0.9))  # after close: ignored, stays dark
    assert state(factory, 17) == 0


def test_pin_history_over_time(factory):
    cfg = LedConfig(mode="rgb", status_pin=-1, min_brightness=0.0)
    sink = LedSink(cfg, LABELS, pin_factory=factory)
    factory.pin(17).clear_states()
    for conf in (0.2, 0.6, 1.0):
        sink.write(decision("angry", conf))
    sink.close()
    red = [round(float(s.state), 3) for s in factory.pin(17).states]
    assert red == [0.0, 0.2, 0.6, 1.0, 0.0]


def test_common_anode_inverts(factory):
    cfg = LedConfig(mode="rgb", common_anode=True, status_pin=-1, min_brightness=0.0)
    with LedSink(cfg, LABELS, pin_factory=factory) as sink:
        sink.write(decision("angry", 1.0))
        assert [state(factory, p) for p in (17, 27, 22)] == [0.0, 1.0, 1.0]


def test_one_led_per_emotion(factory):
    cfg = LedConfig(mode="per_emotion", status_pin=4, min_brightness=0.2)
    pins = dict(cfg.emotion_pins)
    with LedSink(cfg, LABELS, pin_factory=factory) as sink:
        sink.write(decision("sad", 0.5))
        lit = {label: state(factory, pin) for label, pin in pins.items()}
        assert lit.pop("sad") == pytest.approx(0.2 + 0.8 * 0.5)
        assert set(lit.values()) == {0.0}
    assert all(state(factory, p) == 0 for p in pins.values())


def test_env_pin_class_alone_works(monkeypatch):
    # The documented way for demos: GPIOZERO_PIN_FACTORY=mock GPIOZERO_MOCK_PIN_CLASS=mockpwmpin.
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    monkeypatch.setenv("GPIOZERO_MOCK_PIN_CLASS", "mockpwmpin")
    gpiozero.Device.pin_factory = None
    try:
        with LedSink(LedConfig(), LABELS) as sink:
            sink.write(decision("angry", 1.0))
            assert gpiozero.Device.pin_factory.pin(17).state == 1.0
    finally:
        if gpiozero.Device.pin_factory is not None:
            gpiozero.Device.pin_factory.reset()
            gpiozero.Device.pin_factory.close()
        gpiozero.Device.pin_factory = None


def test_a_busy_pin_is_a_clear_error(factory):
    from edge.errors import DeviceUnavailableError

    other = gpiozero.LED(17, pin_factory=factory)  # another program holds the red pin
    with pytest.raises(DeviceUnavailableError, match="holds the pins"):
        LedSink(LedConfig(), LABELS, pin_factory=factory)
    other.close()


def test_the_mock_pins_of_a_long_replay_keep_a_bounded_history():
    """A replay off a Pi drives gpiozero's mock pins at every decision; their history must not
    grow with the recording (hours of replay grew memory by tens of MB)."""
    from edge.testing import MOCK_PIN_HISTORY, mock_pin_factory

    f = mock_pin_factory()
    try:
        sink = LedSink(LedConfig(mode="rgb", status_pin=-1, min_brightness=0.0), LABELS,
                       pin_factory=f)
        for i in range(3 * MOCK_PIN_HISTORY):
            sink.write(decision("angry", 0.5 + 0.5 * (i % 2)))
        assert len(f.pin(17).states) == MOCK_PIN_HISTORY
        assert float(f.pin(17).states[-1].state) == 1.0  # the newest are the ones kept
        sink.close()
    finally:
        f.reset()


def test_no_pin_library_names_the_mock_pins_not_the_gpio_group(monkeypatch):
    """Off a Pi gpiozero loads no pin library at all; the gpio group cannot fix that, the mock
    pins (or no LEDs) can."""
    from edge.errors import DeviceUnavailableError

    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "no-such-pin-library")
    gpiozero.Device.pin_factory = None
    try:
        with pytest.raises(DeviceUnavailableError) as caught:
            LedSink(LedConfig(), LABELS)
    finally:
        gpiozero.Device.pin_factory = None
    message = str(caught.value)
    assert "--mock-gpio" in message and "python3-lgpio" in message
    assert "gpio group" not in message


def test_a_pin_library_error_that_is_not_gpiozeros_is_a_clear_error(factory, monkeypatch):
    """On a Pi, lgpio raises its own `lgpio.error: 'GPIO busy'` (not a GPIOZeroError) when the
    service holds the pins: that was an internal error of `check`."""
    from edge.errors import DeviceUnavailableError

    class LgpioError(Exception):
        pass

    def busy(*a, **kw):
        raise LgpioError("'GPIO busy'")

    monkeypatch.setattr(LedSink, "_open", busy)
    with pytest.raises(DeviceUnavailableError, match="another program holds the pins"):
        LedSink(LedConfig(), LABELS, pin_factory=factory)


def test_single_leds_wired_active_low(factory):
    """LEDs wired from 3.3 V to the pin light when it is low: leds.active_high = false inverts
    the per-emotion and the status LEDs (common_anode did nothing there)."""
    cfg = LedConfig(mode="per_emotion", active_high=False, status_pin=4, min_brightness=0.0)
    with LedSink(cfg, LABELS, pin_factory=factory) as sink:
        sink.write(decision("angry", 1.0))
        pins = cfg.emotion_pins
        assert state(factory, pins["angry"]) == 0.0  # lit: pulled low
        assert all(state(factory, pins[other]) == 1.0 for other in LABELS if other != "angry")
        assert state(factory, 4) == 0.0  # the heartbeat's first toggle lights it
        sink.write(decision(None, 0.0))
        assert all(state(factory, p) == 1.0 for p in pins.values())  # nothing shown: all dark


def test_brightness_spans_the_confidences_shown(factory):
    """The least sure emotion shown (smoothing.min_confidence) is at leds.min_brightness, full
    confidence at 1; an emotion held below it stays at min_brightness."""
    from edge.outputs.leds import brightness

    cfg = LedConfig(mode="rgb", status_pin=-1, min_brightness=0.15)
    with LedSink(cfg, LABELS, pin_factory=factory, min_confidence=0.3) as sink:
        for confidence, red in ((0.3, 0.15), (0.65, 0.575), (1.0, 1.0), (0.2, 0.15)):
            sink.write(decision("angry", confidence))
            assert state(factory, 17) == pytest.approx(red), confidence
    assert brightness(0.5, 0.0, 1.0) == 1.0  # min_confidence = 1: only full confidence shows


def test_colours_are_a_setting(factory):
    from edge.errors import ConfigError

    cfg = LedConfig(mode="rgb", status_pin=-1, min_brightness=0.0,
                    colours={"angry": "#FF8000"})
    with LedSink(cfg, LABELS, pin_factory=factory) as sink:
        sink.write(decision("angry", 1.0))
        assert [state(factory, p) for p in (17, 27, 22)] == pytest.approx([1.0, 128 / 255, 0.0])
        sink.write(decision("sad", 1.0))  # left out: its default
        assert [state(factory, p) for p in (17, 27, 22)] == pytest.approx(EMOTION_COLOURS["sad"])
    with pytest.raises(ConfigError, match=r"leds.colours.angry = 'orange' is not a colour"):
        LedConfig(colours={"angry": "orange"})
    with pytest.raises(ConfigError, match=r"leds.colours: 'angri' is not an emotion"):
        LedConfig(colours={"angri": "#ff0000"})


def test_a_shared_pin_is_a_warning_at_start(factory, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="edge.outputs.leds"):
        LedSink(LedConfig(status_pin=3), LABELS, pin_factory=factory).close()
    assert [r.getMessage() for r in caplog.records] == [
        "leds: the status LED is on GPIO3, I2C1 with a fixed pull-up to 3.3 V: an LED from it "
        "to ground glows while the appliance is stopped; choose a free GPIO"]


def test_a_pin_library_without_pwm_is_named_with_its_fix():
    from edge.outputs.leds import LedPinError

    plain = MockFactory()  # gpiozero's default mock pins: no PWM
    try:
        with pytest.raises(LedPinError) as refused:
            LedSink(LedConfig(), LABELS, pin_factory=plain)
    finally:
        plain.reset()
    assert str(refused.value).startswith("cannot open the LEDs: the pin library has no PWM")
    assert "GPIOZERO_MOCK_PIN_CLASS=mockpwmpin" in refused.value.fix


def test_the_text_line_says_none_when_nothing_is_shown():
    """`run --text` is read aloud by screen readers: "none", as inspect says, not "-"."""
    import io

    from edge.outputs.log import TextSink

    out = io.StringIO()
    TextSink(out).write(decision(None, 0.0))
    TextSink(out).write(decision("happy", 0.8))
    nothing, happy = out.getvalue().splitlines()
    assert nothing.split()[1] == "none" and happy.split()[1:3] == ["happy", "0.80"]


@pytest.mark.parametrize("mode", ["rgb", "per_emotion"])
def test_the_wiring_self_test_lights_each_led_alone(factory, monkeypatch, capsys, mode):
    """`check --leds`: each LED lit alone, named with its BCM and header pins, so a swapped
    wire or a wrong pin number shows at once; all dark at the end."""
    import time

    from edge.commands import check
    from edge.config import Config

    lit = []

    def look(_s):  # instead of waiting: which pins are on while the line is shown
        lit.append(sorted(p for p in (17, 27, 22, 4, 5, 6, 13, 19, 26, 16, 20)
                          if state(factory, p) > 0))

    monkeypatch.setattr(time, "sleep", look)
    assert check._light_each_led(Config(leds=LedConfig(mode=mode)), factory) == 0
    lines = capsys.readouterr().out.splitlines()
    if mode == "rgb":
        assert lines[:3] == ["red        GPIO17 (pin 11)", "green      GPIO27 (pin 13)",
                             "blue       GPIO22 (pin 15)"]
        assert lit[:3] == [[17], [27], [22]] and lit[-1] == [4]
        assert lines[6] == "angry      colour #ff0000" and lit[6] == [17]
        assert lit[4] == [17, 27]  # happy: amber, red and some green
    else:
        pins = LedConfig().emotion_pins
        assert lit == [[pins[label]] for label in LABELS] + [[4]]
        assert lines[0] == "neutral    GPIO5 (pin 29)"
    assert lines[-1].startswith("all LEDs dark")
    assert all(state(factory, p) == 0 for p in (17, 27, 22, 4))
