"""``emotion-edge install-service``: unit file, configuration and service user."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "install-service",
        help="install the systemd service, its user and /etc/emotion-edge/config.toml",
        description="Write the systemd unit and a default configuration (an existing one is kept) "
        "and create the service user (useradd --system; only into the real root, not with "
        "--dry-run). Safe to run again.",
    )
    p.add_argument("--root", default="/", metavar="DIR",
                   help="install under DIR instead of / (staging, tests); no user is created")
    p.add_argument("--dry-run", action="store_true", help="show what would be done, change nothing")
    p.add_argument("--exec-start", metavar="CMD",
                   help="command systemd runs before '-v run --config ...', split into words like a "
                   "shell would (quote a path with spaces); its program must be an absolute path "
                   "(default: this Python interpreter, -P -m edge)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from ..service.install import SERVICE_NAME, SYSTEMCTL_STEPS, install_service, security_exposure

    actions = install_service(args.root, dry_run=args.dry_run, exec_start=args.exec_start)
    for action in actions:
        print(action)
    if not args.dry_run:
        unit = Path(args.root) / "etc/systemd/system" / SERVICE_NAME
        exposure = security_exposure(unit)
        if exposure is not None:
            print(f"\nsystemd-analyze security --offline=true: exposure {exposure} "
                  f"(0 is the most locked down, 10 the least)")
    print("\nnext steps:" if not args.dry_run else "\nthen run:")
    # The steps' own command as this installation's: /opt/emotion-edge/bin is not on PATH.
    # (With --exec-start naming another installation, which one is the user's to say.)
    here = Path(sys.executable).parent / "emotion-edge"
    command = str(here) if args.exec_start is None and here.is_file() else "emotion-edge"
    for step in SYSTEMCTL_STEPS:
        print(f"  {command}{step.removeprefix('emotion-edge')}" if step.startswith("emotion-edge")
              else f"  {step}")
    return 0
