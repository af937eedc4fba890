"""``emotion-edge adapt``: what the speech model has learnt about this deployment, a reset, and
recordings to learn from.

The appliance standardises the speech model's features with the statistics of the speech it has
heard (``[adapt]`` in the configuration); only counts, means and variances are kept.  This shows
how much it has heard; ``--reset`` forgets it; ``--learn`` adds the speech of recordings, as if
the appliance had heard them (a device set up in a new room, or for one person, need not wait
for them to talk).  Stop the service first for either, or it writes its own state again within a
minute of speech.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from . import one_line
from .run import add_config_arguments

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "adapt",
        help="show, teach (--learn) or reset what the speech model learnt about this room",
        description="Show how much speech the appliance has adapted to (adapt.state_file), add "
        "recordings of the room to it with --learn, or forget it with --reset.",
    )
    add_config_arguments(p)
    change = p.add_mutually_exclusive_group()
    change.add_argument("--reset", action="store_true",
                        help="forget the statistics heard (removes adapt.state_file)")
    change.add_argument("--learn", nargs="+", type=Path, default=[], metavar="RECORDING",
                        help="add the speech of these recordings (of the room, its microphone "
                        "and its people) to the statistics heard, as if the appliance had "
                        "heard them; stop the service first")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=_main)


#: The fix when the state file is another user's (the service's 0600 file, read by an ssh user).
_AS_THE_APPLIANCE = ("run this as the user the appliance runs as (e.g. sudo -u emotion-edge "
                     "emotion-edge adapt ...), which owns the file")


#: Why ``--learn`` and ``--reset`` wait for the appliance to stop, and how.
_STOP_SERVICE = ("stop the service first (sudo systemctl stop emotion-edge): it would write its "
                 "own statistics over what this changes; start it again after")


def _main(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..files import WriterLock
    from .run import load_run_config

    config = load_run_config(args)
    if not config.adapt.state_file:
        raise ConfigError("adapt.state_file is empty: the appliance adapts in memory only and "
                          "keeps nothing to show, reset or learn; set it in the configuration")
    path = Path(config.adapt.state_file)
    # A running appliance would write its statistics over what --learn or --reset change.
    with (WriterLock(path, setting="adapt.state_file", fix=_STOP_SERVICE)
          if args.reset or args.learn else contextlib.nullcontext()):
        return _change_or_show(args, config, path)


def _change_or_show(args: argparse.Namespace, config: Config, path: Path) -> int:
    from ..errors import ConfigError, ModelError
    from ..features.adapt import StateUnreadable, read_state

    try:
        if path.is_dir():
            raise ConfigError(f"adapt.state_file {path} is a folder; name the file in it, e.g. "
                              f"{path / 'speech-adaptation.json'}")
        if args.reset:
            existed = path.exists()
            path.unlink(missing_ok=True)
    except PermissionError:  # a folder of the service's this user may not enter
        raise ConfigError(f"{path}: permission denied; {_AS_THE_APPLIANCE}") from None
    if args.reset:
        if args.json:
            print(json.dumps({"state_file": str(path), "removed": existed}))
        else:
            print(f"{path}: {'removed' if existed else 'nothing to reset'}")
        return 0
    failures = _learn(config, args.learn) if args.learn else 0
    try:
        stats = read_state(path)
    except StateUnreadable as exc:
        raise ConfigError(f"{exc}; {_AS_THE_APPLIANCE}") from None
    except ModelError as exc:
        raise ConfigError(f"{exc}; `emotion-edge adapt --reset` starts over") from None
    heard = stats.count if stats is not None else 0.0
    share = heard / (heard + config.adapt.prior_frames) if heard else 0.0
    if args.json:
        print(json.dumps({"state_file": str(path), "enabled": config.adapt.enabled,
                          "speech_s": round(heard / 100, 1), "own_share": round(share, 3)}))
    else:
        print(f"{path}: {heard / 100:.0f} s of speech heard; the room's statistics weigh "
              f"{100 * share:.0f} % (adapt.enabled = {str(config.adapt.enabled).lower()})")
    return 1 if failures else 0


def _learn(config: Config, recordings: list[Path]) -> int:
    """Add the speech of ``recordings`` to ``adapt.state_file`` through the device's own speech
    model; each recording that cannot be read is one line, the others are still learnt.
    Returns how many could not be read."""
    import sys

    from ..errors import AudioFileError, ConfigError
    from ..features.band import VOICE_BAND_HZ, recording_band
    from ..pipeline.appliance import open_speech_model

    if not config.adapt.enabled:
        raise ConfigError("adapt.enabled = false: the appliance does not adapt, so it has "
                          "nothing to learn recordings for; set adapt.enabled = true")
    failures = 0
    with open_speech_model(config) as speech:
        if speech.adaptation is None:
            raise ConfigError(f"{speech.model.path}: this speech model does not adapt (its "
                              f"manifest has no adaptation prior); nothing to learn")
        if speech.adaptation.blocked:
            raise ConfigError(f"{speech.adaptation.blocked}: nothing learnt could be saved; "
                              f"{_AS_THE_APPLIANCE}")
        top = speech.config.top_hz
        wideband = top > VOICE_BAND_HZ[1]  # a narrowband model's microphone is a phone line
        seen: set[Path] = set()
        for recording in recordings:
            if recording.resolve() in seen:  # learnt twice, it would count twice
                print(f"emotion-edge: warning: {recording}: named twice; learnt once",
                      file=sys.stderr, flush=True)
                continue
            seen.add(recording.resolve())
            before = speech.adaptation.frames_heard
            try:
                if wideband and recording_band(recording, top) == "narrow":
                    # The appliance's microphone hears the whole band: a phone call's
                    # statistics would tell the model its room is a call (`classify` gives
                    # such a recording to the narrowband model instead).
                    print(f"emotion-edge: warning: {recording}: nothing above the voice band (a "
                          f"phone call?), unlike the appliance's microphone; not learnt",
                          file=sys.stderr, flush=True)
                    continue
                speech.observe_file(recording)
            except AudioFileError as exc:
                print(f"emotion-edge: error: {one_line(str(exc))}; nothing of it learnt", file=sys.stderr,
                      flush=True)
                failures += 1
                continue
            except KeyboardInterrupt:
                print(f"emotion-edge: interrupted; {recording} not learnt, the recordings "
                      f"before it kept", file=sys.stderr, flush=True)
                speech.save_adaptation(strict=True)
                raise
            heard = (speech.adaptation.frames_heard - before) * speech.config.hop_length_s
            print(f"{recording}: {heard:.1f} s of speech learnt"
                  + ("" if heard else " (none found: is it speech, and loud enough?)"),
                  file=sys.stderr, flush=True)
        speech.save_adaptation(strict=True)  # its one purpose: say so when it cannot be kept
    return failures
