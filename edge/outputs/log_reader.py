"""Reading the decision log back: from a (rotated) JSON-lines file or from the systemd journal,
and summarising it for ``emotion-edge inspect``.

The summary is pure (records in, dict out): emotion timeline and dwell time per emotion,
per-stage latency percentiles, budget overruns, time per degradation level, dropped audio blocks
and frames, and restarts (a cycle counter that goes back, or a new process id in the journal).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..decision import SCHEMA
from ..errors import ConfigError, EmotionEdgeError, MissingDependencyError

__all__ = [
    "parse_since",
    "parse_record",
    "read_file",
    "follow_file",
    "journal_command",
    "read_journal",
    "summarize",
    "format_summary",
    "format_record",
    "plot_summary",
]

logger = logging.getLogger(__name__)

_UNITS = {"s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "minute": 60,
          "minutes": 60, "h": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400,
          "days": 86400}

#: A gap between decisions longer than this many seconds is downtime, not dwell.
MAX_GAP_S = 5.0


def parse_since(text: str, now: float | None = None) -> float:
    """``--since`` as epoch seconds: ISO date/time, ``HH:MM[:SS]`` today, ``-30m``, ``2 h ago``,
    ``today``, ``yesterday`` (a subset of what journalctl accepts)."""
    now = time.time() if now is None else now
    t = text.strip().lower()
    m = re.fullmatch(r"-?\s*(\d+(?:\.\d+)?)\s*([a-z]+)(?:\s+ago)?", t)
    if m and m.group(2) in _UNITS:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    today = dt.datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    if t == "today":
        return today.timestamp()
    if t == "yesterday":
        return (today - dt.timedelta(days=1)).timestamp()
    try:
        if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", t):
            clock = dt.time.fromisoformat(t.zfill(5 if t.count(":") == 1 else 8))
            return dt.datetime.combine(today.date(), clock).timestamp()
        return dt.datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ConfigError(
            f"--since {text!r} is not understood; use e.g. '2026-05-01 14:00', '14:00', '-30m', "
            f"'2 hours ago', 'today'"
        ) from None


def parse_record(line: str | bytes) -> dict[str, Any] | None:
    """One decision from a log line, or None when the line is something else."""
    try:
        rec = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(rec, dict) and rec.get("schema") == SCHEMA:
        return rec
    return None


def _log_files(path: Path) -> list[Path]:
    """Rotated files oldest first, then the live one."""
    rotated = sorted(
        (p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()),
        key=lambda p: int(p.suffix[1:]), reverse=True,
    )
    return [*rotated, path] if path.exists() else rotated


def read_file(path: str | Path, *, since: float | None = None) -> list[dict[str, Any]]:
    path = Path(path)
    files = _log_files(path)
    if not files:
        raise EmotionEdgeError(
            f"decision log {path} not found; is log.file set in the config and the service "
            f"running? (or read the journal: emotion-edge inspect --journal)"
        )
    records = []
    for f in files:
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                rec = parse_record(line)
                if rec is not None and (since is None or rec["time"] >= since):
                    records.append(rec)
    return records


def follow_file(path: str | Path, *, poll_s: float = 0.5,
                stop: Callable[[], bool] = lambda: False) -> Iterator[dict[str, Any]]:
    """New decisions appended to ``path`` (reopening it after rotation), until ``stop()``."""
    path = Path(path)
    fh = None
    inode = None
    while not stop():
        if fh is None:
            try:
                fh = open(path, encoding="utf-8", errors="replace")
            except FileNotFoundError:
                time.sleep(poll_s)
                continue
            inode = path.stat().st_ino
            fh.seek(0, 2)
        line = fh.readline()
        if line:
            rec = parse_record(line)
            if rec is not None:
                yield rec
            continue
        try:
            rotated = path.stat().st_ino != inode
        except FileNotFoundError:
            rotated = True
        if rotated:
            fh.close()
            fh = None
            inode = None
            continue
        time.sleep(poll_s)
    if fh is not None:
        fh.close()


def journal_command(unit: str = "emotion-edge", *, since: str | None = None,
                    follow: bool = False) -> list[str]:
    cmd = ["journalctl", "-o", "json", "-u", unit, "--no-pager"]
    if since:
        cmd += ["--since", since]
    if follow:
        cmd += ["--follow", "--lines", "0"]
    return cmd


def _journal_records(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        message = entry.get("MESSAGE")
        if isinstance(message, list):  # journald sends non-UTF-8 messages as byte lists
            message = bytes(message).decode("utf-8", "replace")
        if not isinstance(message, str):
            continue
        rec = parse_record(message)
        if rec is not None:
            rec["_pid"] = entry.get("_PID")
            yield rec


def read_journal(unit: str = "emotion-edge", *, since: str | None = None, follow: bool = False,
                 popen: Callable[..., Any] = subprocess.Popen) -> Iterator[dict[str, Any]]:
    """Decisions from ``journalctl -o json -u unit`` (streamed, so ``follow`` works)."""
    cmd = journal_command(unit, since=since, follow=follow)
    try:
        proc = popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise MissingDependencyError(
            "journalctl not found; read a decision log file instead: emotion-edge inspect "
            "--log /run/emotion-edge/decisions.jsonl"
        ) from None
    try:
        yield from _journal_records(proc.stdout)
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait()
    if proc.returncode not in (0, None, -15) and not follow:
        err = proc.stderr.read().strip() if proc.stderr else ""
        raise EmotionEdgeError(f"{' '.join(cmd)} failed: {err or proc.returncode}; members of "
                               f"the adm or systemd-journal group may read the journal")


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3),
            "p99": round(float(p99), 3), "max": round(float(a.max()), 3), "n": int(a.size)}


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The inspection summary of ``records`` (in log order)."""
    if not records:
        return {"decisions": 0}
    restarts = 0
    timeline: list[dict[str, Any]] = []
    dwell: dict[str, float] = {}
    level_cycles: dict[str, int] = {}
    stage_ms: dict[str, list[float]] = {}
    counter_totals: dict[str, int] = {}
    prev_counters: dict[str, int] = {}
    prev = None
    for i, rec in enumerate(records):
        new_run = prev is not None and (
            rec["cycle"] <= prev["cycle"] or rec.get("_pid") != prev.get("_pid")
        )
        if new_run:
            restarts += 1
        label = rec["label"] or "none"
        if prev is not None and not new_run:
            gap = rec["time"] - prev["time"]
            if 0 <= gap <= MAX_GAP_S:
                prev_label = prev["label"] or "none"
                dwell[prev_label] = dwell.get(prev_label, 0.0) + gap
        if not timeline or timeline[-1]["label"] != label or new_run:
            timeline.append({"start": rec["time"], "end": rec["time"], "label": label})
        else:
            timeline[-1]["end"] = rec["time"]
        level_cycles[rec["level"]] = level_cycles.get(rec["level"], 0) + 1
        for stage, ms in rec.get("latency_ms", {}).items():
            stage_ms.setdefault(stage, []).append(float(ms))
        for key, value in rec.get("counters", {}).items():
            # Counters are cumulative per run: add increments, restart from 0 after a restart;
            # the first record of a log that starts mid-run is the baseline.
            base = 0 if (new_run or (i == 0 and rec["cycle"] == 0)) else prev_counters.get(
                key, value)
            counter_totals[key] = counter_totals.get(key, 0) + max(0, int(value) - base)
            prev_counters[key] = int(value)
        prev = rec
    return {
        "decisions": len(records),
        "from": records[0]["time"],
        "to": records[-1]["time"],
        "restarts": restarts,
        "overrun_cycles": sum(bool(r.get("overrun")) for r in records),
        "dwell_s": {k: round(v, 2) for k, v in sorted(dwell.items(), key=lambda kv: -kv[1])},
        "timeline": timeline,
        "latency_ms": {stage: _percentiles(v) for stage, v in stage_ms.items()},
        "cycles_per_level": level_cycles,
        "counters": counter_totals,
    }


def _when(t: float) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def format_summary(summary: dict[str, Any], *, max_segments: int = 30) -> str:
    if not summary.get("decisions"):
        return "no decisions in the log (for this period)"
    lines = [
        f"{summary['decisions']} decisions, {_when(summary['from'])} .. {_when(summary['to'])}, "
        f"{summary['restarts']} restart(s)",
        "",
        "dwell time per emotion:",
    ]
    total = sum(summary["dwell_s"].values()) or 1.0
    for label, s in summary["dwell_s"].items():
        lines.append(f"  {label:<10} {s:9.1f} s  {100 * s / total:5.1f} %")
    lines += ["", "latency per stage (ms):", f"  {'stage':<8} {'p50':>8} {'p95':>8} {'p99':>8} "
              f"{'max':>8}"]
    for stage, p in summary["latency_ms"].items():
        lines.append(f"  {stage:<8} {p['p50']:8.2f} {p['p95']:8.2f} {p['p99']:8.2f} "
                     f"{p['max']:8.2f}")
    c = summary["counters"]
    lines += [
        "",
        f"budget overruns: {summary['overrun_cycles']} cycles; degradations: "
        f"{c.get('degradations', 0)}, recoveries: {c.get('recoveries', 0)}",
        "cycles per level: " + ", ".join(f"{k} {v}" for k, v in
                                         summary["cycles_per_level"].items()),
        f"audio: {c.get('audio_dropped_blocks', 0)} dropped blocks, "
        f"{c.get('audio_overflows', 0)} overflows, {c.get('audio_timeouts', 0)} timeouts; "
        f"frames dropped: {c.get('frame_drops', 0)}; camera lost: {c.get('camera_lost', 0)}",
        "",
        "timeline:",
    ]
    segments = summary["timeline"]
    if len(segments) > max_segments:
        lines.append(f"  ... {len(segments) - max_segments} earlier segments")
        segments = segments[-max_segments:]
    for seg in segments:
        lines.append(f"  {_when(seg['start'])}  {seg['end'] - seg['start']:7.1f} s  "
                     f"{seg['label']}")
    return "\n".join(lines)


def format_record(rec: dict[str, Any]) -> str:
    """One line per decision for ``--follow``."""
    label = f"{rec['label']} {rec['confidence']:.2f}" if rec["label"] else "-"
    speech, face = rec["speech"], rec["face"]
    return (f"{_when(rec['time'])}  {label:<16} speech={speech.get('label') or speech['state']:<10}"
            f" face={face.get('label') or face['state']:<11} "
            f"{rec['latency_ms'].get('total', 0):6.1f} ms {rec['level']}"
            f"{'  OVERRUN' if rec.get('overrun') else ''}")


def plot_summary(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Timeline (shown emotion and confidence) and per-stage latency over time, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError(
            "--plot needs matplotlib: pip install 'emotion-edge[plot]'"
        ) from None
    from .leds import EMOTION_COLOURS

    if not records:
        raise EmotionEdgeError("nothing to plot: the log has no decisions for this period")
    t0 = records[0]["time"]
    t = np.array([r["time"] - t0 for r in records])
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    labels = sorted({r["label"] for r in records if r["label"]})
    for i, label in enumerate(labels):
        ys = [i if r["label"] == label else np.nan for r in records]
        ax1.scatter(t, ys, s=8, color=EMOTION_COLOURS.get(label, (0.3, 0.3, 0.3)), label=label,
                    edgecolors="black", linewidths=0.2)
    ax1.set_yticks(range(len(labels)), labels)
    ax1.set_title("shown emotion (colour) over time")
    conf = ax1.twinx()
    conf.plot(t, [r["confidence"] for r in records], color="grey", lw=0.6, alpha=0.7)
    conf.set_ylabel("confidence")
    conf.set_ylim(0, 1)
    stages = [s for s in records[0]["latency_ms"] if s != "total"]
    bottom = np.zeros(len(records))
    for stage in stages:
        v = np.array([r["latency_ms"].get(stage, 0.0) for r in records])
        ax2.fill_between(t, bottom, bottom + v, step="mid", label=stage, alpha=0.7)
        bottom += v
    over = [r["time"] - t0 for r in records if r.get("overrun")]
    if over:
        ax2.vlines(over, 0, bottom.max() or 1, colors="red", lw=0.5, label="overrun")
    ax2.set_ylabel("compute per cycle (ms)")
    ax2.set_xlabel(f"seconds since {_when(t0)}")
    ax2.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
