"""``emotion-edge inspect``: what the appliance decided and how fast, from a log or the journal.

Exit codes: 0 when decisions were found (or ``--follow`` ended), 1 when the log holds no
decisions for the period, 2 when the log cannot be read (missing, permission denied, a directory)
or ``--since`` is not understood (``cli.main`` prints it on one line), 141 when the reader of
stdout went away (``| head``; quietly, as a command killed by SIGPIPE).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..optional import import_optional

__all__ = ["register", "DEFAULT_LOG"]

DEFAULT_LOG = "/run/emotion-edge/decisions.jsonl"

_EPILOG = """\
WHEN for --since: '2026-05-01 14:00' or any ISO time, '14:00' (today), '-30m' or '30m' or
'2 hours ago' (s, m, h, d), 'today', 'yesterday'.

The decision log in /run/emotion-edge is readable by the service's group (emotion-edge): join
it with 'sudo usermod -aG emotion-edge $USER' and log in again; the journal (--journal) needs
the adm or systemd-journal group.  Malformed lines are skipped with one warning per kind.

exit status: 0 decisions found (or --follow ended), 1 no decisions for the period, 2 the log
cannot be read or WHEN is not understood, 141 stdout was closed (as by '| head'), quietly."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="summarise decisions: timeline, dwell per emotion, latency, overruns, drops",
        description="Read the decision log (a JSON-lines file, or the journal with --journal) and "
        "print the emotion timeline, dwell time per emotion, per-stage latency p50/p95/p99, "
        "budget overruns, degradations, dropped blocks and restarts.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # `--since -30m`: argparse takes any word starting with '-' for an option unless it looks
    # like a negative number; here a '-' followed by a digit is a value (no option starts so).
    p._negative_number_matcher = re.compile(r"^-\.?\d")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--log", metavar="FILE",
                     help=f"decision log file (default: log.file of the configuration, else "
                     f"{DEFAULT_LOG} if it exists, else the journal)")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="the configuration whose log.file is read (default "
                   "/etc/emotion-edge/config.toml, when there is one)")
    src.add_argument("--journal", action="store_true",
                     help="read journalctl -o json -u emotion-edge")
    p.add_argument("--unit", default="emotion-edge", help="systemd unit for --journal")
    p.add_argument("--since", metavar="WHEN",
                   help="only decisions from WHEN: '2026-05-01 14:00', '14:00', '-30m', '30m', "
                   "'2 h ago'")
    p.add_argument("--follow", "-f", action="store_true",
                   help="print new decisions as they arrive, across log rotation (Ctrl-C to "
                   "stop)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw the timeline and latency picture (needs matplotlib)")
    p.set_defaults(func=_main)


#: Picture formats --plot writes (matplotlib's, by the file's suffix).
PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def _check_plot_path(path: Path) -> None:
    from ..errors import ConfigError

    if path.is_dir():
        raise ConfigError(f"--plot {path} is a folder; give a file name, e.g. "
                          f"{path / 'timeline.png'}")
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(f"--plot {path}: the name must end in {', '.join(PLOT_SUFFIXES)}")
    if not path.parent.is_dir():
        raise ConfigError(f"--plot {path}: the folder {path.parent} does not exist; create it "
                          f"first")


def _configured_log(path: Path | None) -> str | None:
    """The configuration's ``log.file`` (None when it sets none): the log the service writes,
    wherever it was moved.  A configuration this user may not read (the service's own, 0640) is
    passed over; one named with ``--config`` must be readable."""
    from ..config import DEFAULT_CONFIG_PATH, load_config
    from ..errors import ConfigError

    try:
        config = load_config(path or DEFAULT_CONFIG_PATH, required=path is not None)
    except ConfigError:
        if path is not None:
            raise
        return None
    return config.log.file or None


def _main(args: argparse.Namespace) -> int:
    from ..outputs import log_reader as dl

    if args.plot:
        # Before reading a long log and printing its summary, not after.
        _check_plot_path(Path(args.plot))
        import_optional("matplotlib", "--plot needs it: pip install 'emotion-edge[plot]'")
    since = dl.parse_since(args.since) if args.since else None
    if args.log is None and not args.journal:
        configured = _configured_log(args.config)
        # The default configuration's log only where it is: else the journal, as before.
        if configured and (args.config is not None or dl.check_log(configured)):
            args.log = configured
    # journalctl takes '@EPOCH', so both sources understand --since the same way.
    journal_since = f"@{int(since)}" if since is not None else None
    use_journal = args.journal or (args.log is None and not dl.check_log(DEFAULT_LOG))
    if args.follow:
        stream: Iterator[dict[str, Any]]
        if use_journal:
            stream = dl.read_journal(args.unit, since=journal_since, follow=True)
        else:
            if since is not None:
                print("emotion-edge: --since is ignored when following a file; new decisions "
                      "only", file=sys.stderr)
            stream = dl.follow_file(args.log or DEFAULT_LOG)
        try:
            for rec in stream:
                print(json.dumps(rec) if args.json else dl.format_record(rec), flush=True)
        except KeyboardInterrupt:
            pass
        finally:  # a closed stdout (`| head`) ends here too; cli.main makes it status 141
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # ends journalctl, closes the file, reports skipped lines
        return 0
    records: Iterable[dict[str, Any]]
    if use_journal:
        records = dl.read_journal(args.unit, since=journal_since)
    else:
        records = dl.iter_file(args.log or DEFAULT_LOG, since=since)
    points = dl.PlotPoints() if args.plot else None
    # One pass over the log, however long: the summary and the plot's points are both bounded.
    summary = dl.summarize(points.collect(records) if points is not None else records)
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        print()
    elif not summary["decisions"]:  # say what was read: the file may not be the one meant
        source = f"the journal of {args.unit}" if use_journal else args.log or DEFAULT_LOG
        print(f"no decisions in {source}{' since ' + args.since if args.since else ''}")
    else:
        print(dl.format_summary(summary))
    sys.stdout.flush()  # a closed stdout (`| head`) raises here: cli.main makes it status 141
    if points is not None and summary["decisions"]:
        path = dl.plot_summary(points, args.plot)
        print(f"plot written to {path}", file=sys.stderr)
    return 0 if summary["decisions"] else 1
