"""``emotion-edge check``: runtime, models, camera, mic, GPIO, config and CPU health."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .run import add_config_arguments

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "check",
        help="check runtime, models, camera, microphone, GPIO, config, temperature/throttling",
        description="Print each problem with its fix; exit 1 when something the configured "
        "appliance needs is missing, 2 when the configuration itself is invalid.",
    )
    add_config_arguments(p)
    p.add_argument("--no-devices", action="store_true",
                   help="skip the microphone and camera (e.g. checking a replay setup)")
    p.add_argument("--mock-gpio", action="store_true", help="check LEDs on gpiozero's mock pins")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--leds", action="store_true",
                     help="wiring self-test: light each LED in turn for a second, naming it and "
                     "its pin (and, for an RGB LED, each emotion's colour); stop the service "
                     "first")
    out.add_argument("--json", action="store_true",
                     help='one JSON object: {"ready", "problems", "warnings", "findings": '
                     '[{"what", "status", "detail", "fix"}]}, status ok, warning or problem')
    out.add_argument("-q", "--quiet", action="store_true",
                     help="print only warnings and problems (and the last line)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from ..service.checks import OK, PROBLEM, WARN, run_checks
    from ..testing import mock_pin_factory
    from .run import load_run_config

    config = load_run_config(args)  # an invalid config raises ConfigError -> exit 2
    pin_factory = mock_pin_factory() if args.mock_gpio else None
    if args.leds:
        return _light_each_led(config, pin_factory)
    findings = run_checks(config, live=not args.no_devices, pin_factory=pin_factory)
    problems = [f for f in findings if f.status == PROBLEM]
    if args.json:
        print(json.dumps({"ready": not problems, "problems": len(problems),
                          "warnings": sum(f.status == WARN for f in findings),
                          # A fix is told only where something is wrong, as in the text.
                          "findings": [dataclasses.asdict(f) | ({"fix": ""} if f.status == OK
                                                                else {}) for f in findings]},
                         indent=1))
        return 1 if problems else 0
    shown = [f for f in findings if not (args.quiet and f.status == OK)]
    for f in shown:
        print(f)
    print(("\n" if shown else "") + (f"{len(problems)} problem(s)" if problems else "ready"))
    return 1 if problems else 0


#: How long ``check --leds`` lights each LED, in seconds.
LED_TEST_S = 1.0


def _light_each_led(config: Config, pin_factory: Any) -> int:
    """``check --leds``: each LED alone, named with its pins, so a wrong wire shows at once."""
    import time

    from ..errors import ConfigError
    from ..labels import COMMON_LABELS
    from ..outputs.leds import LedSink, named_colours, pin_name

    if config.leds.mode == "none":
        raise ConfigError("leds.mode = none: there are no LEDs to test")
    with LedSink(config.leds, COMMON_LABELS, pin_factory=pin_factory) as leds:
        steps = [(role, pin_name(gpio, header)) for role, gpio, header in leds.wiring()]
        if config.leds.mode == "rgb":  # then each emotion's colour, on the three pins
            named = named_colours(config.leds.colours)
            steps[3:3] = [(label, f"colour {named[label]}") for label in COMMON_LABELS]
        for role, where in steps:
            print(f"{role:<10} {where}", flush=True)
            leds.light_only(role)
            time.sleep(LED_TEST_S)
    print("all LEDs dark: each one lit in turn, in the order above")
    return 0
