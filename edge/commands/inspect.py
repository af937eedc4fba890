"""``emotion-edge inspect``: what the appliance decided and how fast, from a log or the journal."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["register"]

DEFAULT_LOG = "/run/emotion-edge/decisions.jsonl"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="summarise decisions: timeline, dwell per emotion, latency, overruns, drops",
        description="Read the decision log (a JSON-lines file, or the journal with --journal) and "
        "print the emotion timeline, dwell time per emotion, per-stage latency p50/p95/p99, "
        "budget overruns, degradations, dropped blocks and restarts.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--log", metavar="FILE",
                     help=f"decision log file (default {DEFAULT_LOG} if it exists, else the "
                     f"journal)")
    src.add_argument("--journal", action="store_true",
                     help="read journalctl -o json -u emotion-edge")
    p.add_argument("--unit", default="emotion-edge", help="systemd unit for --journal")
    p.add_argument("--since", metavar="WHEN",
                   help="only decisions from WHEN: '2026-05-01 14:00', '14:00', '-30m', '2 h ago'")
    p.add_argument("--follow", "-f", action="store_true",
                   help="print new decisions as they arrive (Ctrl-C to stop)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw the timeline and latency picture (needs matplotlib)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..outputs import log_reader as dl

    use_journal = args.journal or (args.log is None and not Path(DEFAULT_LOG).exists())
    if args.follow:
        if use_journal:
            stream = dl.read_journal(args.unit, since=args.since, follow=True)
        else:
            stream = dl.follow_file(args.log or DEFAULT_LOG)
        try:
            for rec in stream:
                print(json.dumps(rec) if args.json else dl.format_record(rec), flush=True)
        except KeyboardInterrupt:
            pass
        return 0
    if use_journal:
        records = list(dl.read_journal(args.unit, since=args.since))
    else:
        since = dl.parse_since(args.since) if args.since else None
        records = dl.read_file(args.log or DEFAULT_LOG, since=since)
    summary = dl.summarize(records)
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        print()
    else:
        print(dl.format_summary(summary))
    if args.plot:
        path = dl.plot_summary(records, args.plot)
        print(f"plot written to {path}", file=sys.stderr)
    return 0 if records else 1
