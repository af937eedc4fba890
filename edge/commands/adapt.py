"""``emotion-edge adapt``: what the speech model has learnt about this deployment, and a reset.

The appliance standardises the speech model's features with the statistics of the speech it has
heard (``[adapt]`` in the configuration); only counts, means and variances are kept.  This shows
how much it has heard and, with ``--reset``, forgets it (the service should be stopped first, or
it writes its state again within a minute of speech).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .run import add_config_arguments

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "adapt",
        help="show or reset what the speech model learnt about this room",
        description="Show how much speech the appliance has adapted to (adapt.state_file), or "
        "forget it with --reset.",
    )
    add_config_arguments(p)
    p.add_argument("--reset", action="store_true",
                   help="forget the statistics heard (removes adapt.state_file)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from ..errors import ConfigError, ModelError
    from ..features.adapt import read_state
    from .run import load_run_config

    config = load_run_config(args)
    if not config.adapt.state_file:
        raise ConfigError("adapt.state_file is empty: the appliance adapts in memory only and "
                          "keeps nothing to show or reset; set it in the configuration")
    path = Path(config.adapt.state_file)
    if args.reset:
        existed = path.exists()
        path.unlink(missing_ok=True)
        print(f"{path}: {'removed' if existed else 'nothing to reset'}")
        return 0
    try:
        stats = read_state(path)
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
    return 0
