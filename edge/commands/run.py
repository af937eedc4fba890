"""``emotion-edge run``: the appliance loop, live (mic + camera) or on recordings.

Exit codes: 0 when the audio ends or on SIGTERM/SIGINT (after the LEDs went dark), 129 on
SIGHUP (the same clean stop; not 0, so that systemd's Restart=on-failure starts it again with
its configuration read anew, and a closed terminal is not taken for a finished run), 2 for a
configuration, model or device error at start (``cli.main`` prints it on one line).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Config
    from ..pipeline.loop import LoopSummary

__all__ = ["register", "add_config_arguments", "load_run_config"]

logger = logging.getLogger(__name__)


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """``--config FILE`` and repeatable ``--set section.key=value`` (shared with ``check``)."""
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="TOML configuration (default /etc/emotion-edge/config.toml if present)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   dest="overrides", help="override one configuration key (repeatable)")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "run",
        help="run the appliance: listen, watch, fuse, drive the LEDs, log decisions",
        description="Run the real-time loop on the microphone and camera, or replay recordings "
        "with --audio-file (and --video-file or --image) through the very same loop.",
    )
    add_config_arguments(p)
    replay = p.add_argument_group("replay")
    replay.add_argument("--audio-file", type=Path, metavar="PATH",
                        help="replay this recording instead of the microphone; the run ends "
                        "at its end")
    media = replay.add_mutually_exclusive_group()
    media.add_argument("--video-file", type=Path, metavar="PATH", help="replay this video")
    media.add_argument("--image", type=Path, metavar="PATH", help="use this still image as the "
                       "camera")
    replay.add_argument("--fast", action="store_true",
                        help="as fast as possible instead of real time")
    p.add_argument("--speech-model", metavar="PATH", help="speech .tflite (models.speech)")
    p.add_argument("--face-model", metavar="PATH", help="face .tflite (models.face)")
    p.add_argument("--no-camera", action="store_true", help="speech only (camera.enabled=false)")
    p.add_argument("--log-file", metavar="PATH", help="also write decisions here (log.file)")
    p.add_argument("--text", action="store_true",
                   help="print one readable line per decision instead of JSON")
    p.add_argument("--mock-gpio", action="store_true",
                   help="drive gpiozero's mock pins instead of real GPIO (no Pi needed)")
    p.set_defaults(func=_main)


def _overrides(args: argparse.Namespace) -> dict[tuple[str, str], object]:
    from ..config import parse_overrides

    out: dict[tuple[str, str], object] = parse_overrides(args.overrides)
    # `check` and `adapt` share the config arguments but not run's own flags: absent = not given.
    for attr, setting in (("speech_model", ("models", "speech")),
                          ("face_model", ("models", "face")), ("log_file", ("log", "file"))):
        if getattr(args, attr, None):
            out[setting] = str(getattr(args, attr))
    if getattr(args, "no_camera", False):
        out[("camera", "enabled")] = False
    return out


def _on_a_pi() -> bool:
    try:
        return "raspberry pi" in Path("/proc/device-tree/model").read_text(errors="ignore").lower()
    except OSError:
        return False


def load_run_config(args: argparse.Namespace) -> Config:
    from ..config import DEFAULT_CONFIG_PATH, load_config

    path = args.config if args.config is not None else DEFAULT_CONFIG_PATH
    return load_config(path, overrides=_overrides(args), required=args.config is not None)


def _main(args: argparse.Namespace) -> int:
    # Handlers first, before the heavy imports and the models load (seconds on a Pi): a SIGHUP
    # or SIGTERM then ends the run cleanly right after, where the default would kill it (and
    # systemd takes a SIGHUP death for a clean exit, not restarting it as documented).
    stop_event = threading.Event()
    stopped_by: list[int] = []

    def stop(signum: int, frame: object) -> None:
        logger.info("signal %d: stopping", signum)
        stopped_by.append(signum)
        stop_event.set()

    # SIGHUP too: its default ends the process at once, without saving what adaptation learnt
    # or turning the LEDs off.
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        summary = _run(args, stop_event)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if summary is not None:  # None: stopped before the loop began
        c = summary.counters
        decisions = f"{summary.cycles} decision{'' if summary.cycles == 1 else 's'}"
        frames = ""
        if summary.watched:
            faster = ("the video has more frames than the loop takes" if args.video_file
                      else "the camera is faster than the loop")
            frames = f", frames skipped {c['frame_drops']} ({faster})"
        print(f"emotion-edge: {decisions} over {summary.audio_s:.1f} s of audio; "
              f"overruns {c['overruns']}, degradations {c['degradations']}, audio drops "
              f"{c['audio_dropped_blocks']}, overflows {c['audio_overflows']}{frames}",
              file=sys.stderr)
    return 128 + signal.SIGHUP if signal.SIGHUP in stopped_by else 0


def _run(args: argparse.Namespace, stop_event: threading.Event) -> LoopSummary | None:
    """Build the appliance and run it until the audio ends or ``stop_event``; None when a
    signal came before the loop could begin."""
    import os

    from ..errors import ConfigError
    from ..outputs.notify import Notifier
    from ..pipeline.appliance import ReplayMedia, build_appliance
    from ..testing import mock_pin_factory

    if (args.video_file or args.image or args.fast) and not args.audio_file:
        raise ConfigError("--video-file, --image and --fast replay recordings; add --audio-file PATH")
    config = load_run_config(args)
    media = None
    if args.audio_file:
        media = ReplayMedia(audio=args.audio_file, video=args.video_file, image=args.image,
                            fast=args.fast)
    pin_factory = None
    if config.leds.mode != "none":
        if args.mock_gpio:
            pin_factory = mock_pin_factory()
        elif media is not None and not _on_a_pi() and not os.environ.get("GPIOZERO_PIN_FACTORY"):
            logger.warning("no Raspberry Pi GPIO here; replaying with gpiozero's mock pins")
            pin_factory = mock_pin_factory()

    if stop_event.is_set():
        return None
    with Notifier() as notifier, build_appliance(
        config, media=media, pin_factory=pin_factory, notifier=notifier, text=args.text,
        stop_event=stop_event,
    ) as app:
        return app.run()
