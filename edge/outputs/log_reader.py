"""Reading the decision log back: from a (rotated) JSON-lines file or from the systemd journal,
and summarising it for ``emotion-edge inspect``.

Reading never raises on a bad line: a line that is not a valid decision record (not JSON, not an
object, a missing key, a wrong type, NaN) is skipped and counted by kind in a :class:`SkipTally`,
which logs the first line of each kind and a count at the end.  A log that cannot be opened at
all (missing, unreadable, a directory) raises :class:`~edge.errors.EmotionEdgeError` with one line
that names the path and the fix.

The summary is pure (records in, dict out, read once in bounded memory): emotion timeline and
dwell time per emotion, per-stage latency percentiles, budget overruns, time per degradation
level, each modality's states, dropped audio blocks and frames, and restarts (a cycle counter
that goes back, or a new process id in the journal).
"""

from __future__ import annotations

import datetime as dt
import grp
import json
import logging
import math
import os
import random
import re
import stat
import subprocess
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..decision import SCHEMA
from ..errors import ConfigError, EmotionEdgeError, MissingDependencyError

__all__ = [
    "MAX_GAP_S",
    "SkipTally",
    "parse_since",
    "parse_line",
    "parse_record",
    "check_log",
    "iter_file",
    "read_file",
    "follow_file",
    "journal_command",
    "read_journal",
    "summarize",
    "format_summary",
    "format_record",
    "printable",
    "PlotPoints",
    "plot_summary",
]

logger = logging.getLogger(__name__)

_UNITS = {"s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "minute": 60,
          "minutes": 60, "h": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400,
          "days": 86400}

#: A gap between decisions longer than this many seconds is downtime, not dwell.
MAX_GAP_S = 5.0

#: Latest decision time accepted, in seconds since the epoch (9999-12-31: ``datetime``'s limit).
_MAX_TIME = 253402214400.0

#: Kinds of skipped line that are simply not ours: silent in the journal, where most lines are
#: other log messages; counted in a decision file, which should hold nothing else.
_FOREIGN = frozenset({"not UTF-8", "not JSON", "not a JSON object", "not a decision record"})


def parse_since(text: str, now: float | None = None) -> float:
    """``--since`` as epoch seconds: ISO date/time, ``HH:MM[:SS]`` today, ``-30m`` or ``30m``
    (ago), ``2 h ago``, ``today``, ``yesterday`` (a subset of what journalctl accepts)."""
    now = time.time() if now is None else now
    t = text.strip().lower()
    m = re.fullmatch(r"-?\s*(\d+(?:\.\d+)?)\s*([a-z]+)(?:\s+ago)?", t)
    if m and m.group(2) in _UNITS:
        ago = float(m.group(1)) * _UNITS[m.group(2)]
        if not ago <= now:  # before 1970, or inf: journalctl could not take it either
            raise ConfigError(f"--since {text!r} reaches back before 1970; give a shorter span "
                              f"or a date")
        return now - ago
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


# -- one line -------------------------------------------------------------------------------------


class SkipTally:
    """Lines skipped as malformed while reading, counted by kind.

    The first line of each kind is logged as a warning naming where it was; later ones are only
    counted, and :meth:`report` logs the count once at the end (when there was more than one of a
    kind).  Whoever creates the tally reports it.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, kind: str, detail: str, where: str) -> None:
        seen = self.counts.get(kind, 0)
        self.counts[kind] = seen + 1
        if not seen:
            logger.warning("skipping malformed decision records: %s (%s) at %s; later ones of "
                           "this kind are only counted", kind, detail[:80], where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def report(self) -> None:
        if self.total > len(self.counts):
            logger.warning("skipped %d malformed decision record(s): %s", self.total,
                           ", ".join(f"{n} {kind}" for kind, n in self.counts.items()))

    def __repr__(self) -> str:
        return f"<SkipTally {self.counts}>"


def _is_real(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _is_finite(x: int | float) -> bool:
    try:
        return math.isfinite(x)
    except OverflowError:  # an integer too large for a float
        return False


def finite_number(value: object, low: float = 0.0, high: float = _MAX_TIME) -> float:
    """``value`` as a float in ``low..high`` (a time stamp by default); ValueError for booleans,
    text, NaN, infinities and numbers out of range (a malformed record or MQTT message)."""
    if not _is_real(value) or not _is_finite(value):  # type: ignore[arg-type]
        raise ValueError(f"{value!r} is not a finite number")
    number = float(value)  # type: ignore[arg-type]
    if not low <= number <= high:
        raise ValueError(f"{value!r} is out of range")
    return number


def _is_label(x: object) -> bool:
    return x is None or isinstance(x, str)


def _problem(rec: dict[str, Any]) -> tuple[str, str] | None:
    """Why ``rec`` (a JSON object with our schema) is no usable decision, as (kind, detail)."""
    for key in ("cycle", "time", "label", "confidence", "speech", "face", "latency_ms",
                "overrun", "level", "counters"):
        if key not in rec:
            return "missing key", repr(key)

    def wrong(key: str) -> tuple[str, str]:
        return "wrong type", f"{key!r} is {type(rec[key]).__name__}"

    if not isinstance(rec["cycle"], int) or isinstance(rec["cycle"], bool):
        return wrong("cycle")
    if rec["cycle"] < 0:
        return "out of range", f"cycle {rec['cycle']}"
    numbers = ["time", "confidence"] + (["media_s"] if rec.get("media_s") is not None else [])
    for key in numbers:
        if not _is_real(rec[key]):
            return wrong(key)
        if not _is_finite(rec[key]):
            return "not finite", f"{key!r} is {rec[key]!r}"[:40]
    if not 0 <= rec["time"] <= _MAX_TIME:
        return "out of range", f"time {rec['time']!r}"
    if rec.get("media_s") is not None and rec["media_s"] < 0:
        return "out of range", f"media_s {rec['media_s']!r}"
    if not _is_label(rec["label"]):
        return wrong("label")
    if not isinstance(rec["level"], str):
        return wrong("level")
    if not isinstance(rec["overrun"], bool):
        return wrong("overrun")
    for key in ("speech", "face"):
        part = rec[key]
        if not isinstance(part, dict):
            return wrong(key)
        if not isinstance(part.get("state"), str) or not _is_label(part.get("label")):
            return "wrong type", f"{key!r} needs a string state and a string or null label"
    latency = rec["latency_ms"]
    if not isinstance(latency, dict):
        return wrong("latency_ms")
    for stage, ms in latency.items():
        if not _is_real(ms):
            return "wrong type", f"latency_ms[{stage!r}] is {type(ms).__name__}"[:60]
        if not _is_finite(ms):
            return "not finite", f"latency_ms[{stage!r}] is {ms!r}"[:60]
        if ms < 0:
            return "out of range", f"latency_ms[{stage!r}] is {ms!r}"[:60]
    counters = rec["counters"]
    if not isinstance(counters, dict):
        return wrong("counters")
    for name, value in counters.items():
        if not isinstance(value, int) or isinstance(value, bool):
            return "wrong type", f"counters[{name!r}] is {type(value).__name__}"[:60]
    return None


def parse_line(line: str | bytes) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
    """One log line as ``(record, None)``, or ``(None, (kind, detail))`` saying why it is no
    decision; ``(None, None)`` for a blank line.  Never raises."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, ("not UTF-8", str(exc))
    if not line.strip():
        return None, None
    try:
        rec = json.loads(line)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        return None, ("not JSON", str(exc) or type(exc).__name__)
    if not isinstance(rec, dict):
        return None, ("not a JSON object", type(rec).__name__)
    if rec.get("schema") != SCHEMA:
        return None, ("not a decision record", f"schema {rec.get('schema')!r}"[:60])
    problem = _problem(rec)
    return (None, problem) if problem else (rec, None)


def parse_record(line: str | bytes) -> dict[str, Any] | None:
    """One decision from a log line, or None when the line is something else (never raises)."""
    return parse_line(line)[0]


def _accept(line: str | bytes, tally: SkipTally, where: str, *,
            quiet_foreign: bool = False) -> dict[str, Any] | None:
    rec, problem = parse_line(line)
    if problem is not None and not (quiet_foreign and problem[0] in _FOREIGN):
        tally.add(problem[0], problem[1], where)
    return rec


# -- opening the log ----------------------------------------------------------------------------


def _open_binary(path: Path) -> BinaryIO:
    return open(path, "rb")


def _may_enter(st: os.stat_result) -> bool:
    """Whether the permission bits let this process into a directory (or read a file), as an
    ordinary user: root's override is left out, so the answer is the same for every caller."""
    is_dir = stat.S_ISDIR(st.st_mode)
    if st.st_uid == os.geteuid():
        bit = stat.S_IXUSR if is_dir else stat.S_IRUSR
    elif st.st_gid in {os.getegid(), *os.getgroups()}:
        bit = stat.S_IXGRP if is_dir else stat.S_IRGRP
    else:
        bit = stat.S_IXOTH if is_dir else stat.S_IROTH
    return bool(st.st_mode & bit)


def _blocker(path: Path) -> tuple[Path, os.stat_result | None]:
    """The first directory on the way to ``path`` that this process may not enter (or ``path``
    itself, when it may not read it), with its status; ``(path, None)`` when none is found."""
    path = path.absolute()
    for p in [*reversed(path.parents), path]:
        try:
            st = os.stat(p)
        except OSError:
            break
        if not _may_enter(st):
            return p, st
    return path, None


def _access_fix(path: Path) -> str:
    """How to get read access to ``path``: the group to join when a group would do."""
    blocker, st = _blocker(path)
    alternatives = "or run it with sudo, or read the journal: emotion-edge inspect --journal"
    if st is not None and st.st_gid != 0:
        group_bit = stat.S_IXGRP if stat.S_ISDIR(st.st_mode) else stat.S_IRGRP
        if st.st_mode & group_bit:
            try:
                group = grp.getgrgid(st.st_gid).gr_name
            except KeyError:
                group = str(st.st_gid)
            if st.st_gid in {os.getegid(), *os.getgroups()}:
                return (f"{blocker} is for group {group}, which you are in, yet access is denied "
                        f"(mode {stat.filemode(st.st_mode)}); {alternatives}")
            return (f"{blocker} is for group {group}: join it with sudo usermod -aG {group} "
                    f"$USER, then log in again ({alternatives})")
    return f"{blocker} is not readable for you; {alternatives}"


def _open_error(path: Path, exc: OSError) -> EmotionEdgeError:
    """The one-line error for a decision log that cannot be opened, naming the path and the fix."""
    if isinstance(exc, FileNotFoundError):
        return EmotionEdgeError(
            f"decision log {path} not found; is log.file set in the config and the service "
            f"running? (or read the journal: emotion-edge inspect --journal)")
    if isinstance(exc, IsADirectoryError):
        return EmotionEdgeError(
            f"decision log {path} is a directory; name the file, e.g. --log "
            f"{path / 'decisions.jsonl'}")
    if isinstance(exc, NotADirectoryError):
        return EmotionEdgeError(
            f"decision log {path} cannot exist: a part of that path is a file, not a directory")
    if isinstance(exc, PermissionError):
        return EmotionEdgeError(
            f"cannot read the decision log {path}: permission denied; {_access_fix(path)}")
    return EmotionEdgeError(f"cannot read the decision log {path}: {exc.strerror or exc}")


def check_log(path: str | Path) -> bool:
    """Whether the decision log ``path`` is there: False when it (or its directory) is missing;
    raises :class:`EmotionEdgeError` (one line, naming the fix) when it cannot be reached or is
    a directory."""
    path = Path(path)
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise _open_error(path, exc) from None
    if stat.S_ISDIR(st.st_mode):
        raise _open_error(path, IsADirectoryError(21, "Is a directory", str(path)))
    return True


def _log_files(path: Path) -> list[Path]:
    """Rotated files oldest first, then the live one; the one-line error when there is none."""
    live = check_log(path)
    rotated = sorted(
        (p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()),
        key=lambda p: int(p.suffix[1:]), reverse=True,
    )
    if not live and not rotated:
        try:
            os.stat(path)
        except OSError as exc:  # missing, or a file where a directory should be
            raise _open_error(path, exc) from None
    return [*rotated, path] if live else rotated


def iter_file(path: str | Path, *, since: float | None = None, skipped: SkipTally | None = None,
              opener: Callable[[Path], BinaryIO] = _open_binary) -> Iterator[dict[str, Any]]:
    """Each decision in ``path`` and its rotated predecessors (``path.1``, ...), oldest first,
    from ``since`` (epoch seconds) on, one at a time: a log of any length in bounded memory.
    Malformed lines are skipped into ``skipped`` (a tally of its own, reported at the end, when
    None).  The one-line error of a log that cannot be read comes before the first record."""
    path = Path(path)
    files = _log_files(path)
    tally = SkipTally() if skipped is None else skipped

    def records() -> Iterator[dict[str, Any]]:
        for f in files:
            try:
                fh = opener(f)
            except OSError as exc:
                raise _open_error(f, exc) from None
            with fh:
                for lineno, line in enumerate(fh, 1):
                    rec = _accept(line, tally, f"{f}:{lineno}")
                    if rec is not None and (since is None or rec["time"] >= since):
                        yield rec
        if skipped is None:
            tally.report()

    return records()


def read_file(path: str | Path, *, since: float | None = None, skipped: SkipTally | None = None,
              opener: Callable[[Path], BinaryIO] = _open_binary) -> list[dict[str, Any]]:
    """Every decision of :func:`iter_file` in a list."""
    return list(iter_file(path, since=since, skipped=skipped, opener=opener))


# -- following ------------------------------------------------------------------------------------

#: Bytes remembered from just before the read position, to notice a file replaced in place (more
#: than a decision line: the ends of two lines may well be equal).
_TAIL_BYTES = 4096


class _Tail:
    """One open log file read on in complete lines.

    Remembers the read position and the bytes just before it: a file that got shorter, or whose
    bytes there changed, was truncated or rewritten in place (copytruncate rotation).
    """

    def __init__(self, fh: BinaryIO, *, at_end: bool) -> None:
        self.fh = fh
        st = os.fstat(fh.fileno())
        self.ident = (st.st_dev, st.st_ino)
        self.partial = b""
        self.seek(st.st_size if at_end else 0)
        end = self.tail.rfind(b"\n") + 1
        if at_end and 0 < end < len(self.tail):  # a line half written: start with it
            self.seek(self.pos - (len(self.tail) - end))

    def seek(self, pos: int) -> None:
        self.fh.seek(pos)
        self.pos = pos
        n = min(_TAIL_BYTES, pos)
        self.tail = os.pread(self.fh.fileno(), n, pos - n) if n else b""
        self.partial = b""

    def lines(self) -> list[bytes]:
        """The complete lines appended since the last call."""
        data = self.fh.read()
        if not data:
            return []
        self.pos += len(data)
        self.tail = (self.tail + data)[-_TAIL_BYTES:]
        *complete, self.partial = (self.partial + data).split(b"\n")
        return complete

    def rest(self) -> list[bytes]:
        """The unterminated last line, once nothing more will be appended."""
        line, self.partial = self.partial, b""
        return [line] if line.strip() else []

    def replaced_in_place(self, size: int) -> bool:
        if size < self.pos:
            return True
        n = len(self.tail)
        try:
            return bool(n) and os.pread(self.fh.fileno(), n, self.pos - n) != self.tail
        except OSError:
            return True

    def close(self) -> None:
        self.fh.close()


def _copied_away(path: Path, cur: _Tail, opener: Callable[[Path], BinaryIO]) -> list[bytes]:
    """After a copytruncate rotation: the lines the copy (``path.1``) holds beyond what was read,
    found by the bytes just before the read position; only the unterminated line otherwise."""
    n = len(cur.tail)
    try:
        with opener(path.with_name(path.name + ".1")) as fh:
            fh.seek(cur.pos - n)
            if fh.read(n) != cur.tail:
                return cur.rest()
            data = fh.read()
    except OSError:
        return cur.rest()
    return [line for line in (cur.partial + data).split(b"\n") if line.strip()]


def follow_file(path: str | Path, *, poll_s: float = 0.5,
                stop: Callable[[], bool] = lambda: False,
                sleep: Callable[[float], None] = time.sleep, from_start: bool = False,
                skipped: SkipTally | None = None,
                opener: Callable[[Path], BinaryIO] = _open_binary) -> Iterator[dict[str, Any]]:
    """New decisions appended to ``path``, until ``stop()`` (asked whenever there is nothing new,
    before sleeping ``poll_s`` seconds).

    Follows rotation without losing or repeating a line: when ``path`` is renamed away (a new
    inode), the old file is read to its end and the new one from its start; when it shrinks or
    its bytes before the read position change (copytruncate), the lines not yet read are taken
    from the copy ``path.1`` and the file is read again from its start.  The file that exists
    when following starts is read from its end (from its start with ``from_start``); a file
    that appears later, from its start.
    """
    path = Path(path)
    tally = SkipTally() if skipped is None else skipped
    where = str(path)
    cur: _Tail | None = None
    at_end = not from_start
    waiting_told = False

    def records(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
        for line in lines:
            rec = _accept(line, tally, where)
            if rec is not None:
                yield rec

    try:
        while True:
            if cur is None:
                try:
                    fh = opener(path)
                except FileNotFoundError:
                    at_end = False  # whatever appears from now on is new
                    if not waiting_told:  # a mistyped path would wait for ever without a word
                        logger.warning("%s does not exist (yet): waiting for it to appear "
                                       "(Ctrl-C to stop)", path)
                        waiting_told = True
                    if stop():
                        return
                    sleep(poll_s)
                    continue
                except OSError as exc:
                    raise _open_error(path, exc) from None
                cur = _Tail(fh, at_end=at_end)
                at_end = False
            try:
                st: os.stat_result | None = os.stat(path)
            except FileNotFoundError:
                st = None
            except OSError as exc:
                raise _open_error(path, exc) from None
            if st is None or (st.st_dev, st.st_ino) != cur.ident:
                # Renamed (or deleted): finish the old file; the new one is read from its start.
                yield from records(cur.lines() + cur.rest())
                cur.close()
                cur = None
                continue
            if cur.replaced_in_place(st.st_size):
                yield from records(_copied_away(path, cur, opener))
                cur.seek(0)
                continue
            lines = cur.lines()
            if lines:
                yield from records(lines)
                continue
            if stop():
                return
            sleep(poll_s)
    finally:
        if cur is not None:
            cur.close()
        if skipped is None:
            tally.report()


# -- the journal ----------------------------------------------------------------------------------


def journal_command(unit: str = "emotion-edge", *, since: str | None = None,
                    follow: bool = False) -> list[str]:
    cmd = ["journalctl", "-o", "json", "-u", unit, "--no-pager"]
    if since:
        cmd += ["--since", since]
    if follow:
        cmd += ["--follow", "--lines", "0"]
    return cmd


def _journal_records(lines: Iterable[str], tally: SkipTally) -> Iterator[dict[str, Any]]:
    """Our decisions among journal entries; other services' and our other log lines are not
    malformed, only passed over."""
    for n, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if not isinstance(entry, dict):
            continue
        message = entry.get("MESSAGE")
        if isinstance(message, list):  # journald sends non-UTF-8 messages as byte lists
            try:
                message = bytes(message).decode("utf-8", "replace")
            except (TypeError, ValueError):
                continue
        if not isinstance(message, str):
            continue
        rec = _accept(message, tally, f"journal entry {n}", quiet_foreign=True)
        if rec is not None:
            rec["_pid"] = entry.get("_PID")
            yield rec


def read_journal(unit: str = "emotion-edge", *, since: str | None = None, follow: bool = False,
                 skipped: SkipTally | None = None,
                 popen: Callable[..., Any] = subprocess.Popen) -> Iterator[dict[str, Any]]:
    """Decisions from ``journalctl -o json -u unit`` (streamed, so ``follow`` works).  ``since``
    is passed to journalctl as it is (``@EPOCH`` works there)."""
    cmd = journal_command(unit, since=since, follow=follow)
    tally = SkipTally() if skipped is None else skipped
    try:
        proc = popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise MissingDependencyError(
            "journalctl not found; read a decision log file instead: emotion-edge inspect "
            "--log /run/emotion-edge/decisions.jsonl"
        ) from None
    try:
        yield from _journal_records(proc.stdout, tally)
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait()
        if skipped is None:
            tally.report()
    if proc.returncode not in (0, None, -15) and not follow:
        err = proc.stderr.read().strip() if proc.stderr else ""
        raise EmotionEdgeError(f"{' '.join(cmd)} failed: {err or proc.returncode}; members of "
                               f"the adm or systemd-journal group may read the journal")


# -- the summary ----------------------------------------------------------------------------------


#: Latencies kept per stage for the percentiles: every one up to this many decisions (about 14
#: hours at two a second), a uniform sample of them beyond, so a long log is read in bounded memory.
LATENCY_SAMPLE = 100_000

#: Timeline segments kept in a summary, the latest (the text shows the last 30).
TIMELINE_KEEP = 10_000

#: Distinct names (levels, states, stages, counters) a summary keeps apart; a log that holds more
#: (not one the appliance wrote) has the rest counted under "other".
MAX_NAMES = 64


def _name(seen: dict[str, Any], name: str) -> str:
    return name if name in seen or len(seen) < MAX_NAMES else "other"


class _Reservoir:
    """A uniform random sample of at most ``size`` values (reservoir sampling, seeded so a
    summary is repeatable); the count and the maximum are exact."""

    def __init__(self, size: int | None = None) -> None:
        self.size = LATENCY_SAMPLE if size is None else size
        self.values = array("d")
        self.n = 0
        self.max = -math.inf
        self._rng = random.Random(0)

    def add(self, value: float) -> None:
        self.n += 1
        self.max = max(self.max, value)
        if len(self.values) < self.size:
            self.values.append(value)
        else:
            j = self._rng.randrange(self.n)
            if j < self.size:
                self.values[j] = value

    def percentiles(self) -> dict[str, float]:
        p50, p95, p99 = np.percentile(np.frombuffer(self.values, dtype=float), [50, 95, 99])
        return {"p50": round(float(p50), 3), "p95": round(float(p95), 3),
                "p99": round(float(p99), 3), "max": round(self.max, 3), "n": self.n}


def _step(prev: dict[str, Any], rec: dict[str, Any]) -> tuple[float, str]:
    """Time from ``prev`` to ``rec``: media time (the audio the loop analysed; a replay's own
    time) when both records carry it, wall-clock time otherwise."""
    a, b = prev.get("media_s"), rec.get("media_s")
    if a is not None and b is not None:
        return float(b) - float(a), "media"
    return float(rec["time"]) - float(prev["time"]), "wall"


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The inspection summary of ``records`` (in log order), read once, in bounded memory: the
    latency percentiles come from :data:`LATENCY_SAMPLE` values per stage at most, and the
    timeline keeps its latest :data:`TIMELINE_KEEP` segments (``timeline_earlier`` counts the
    others).

    Dwell and segment durations are in media time where the records carry ``media_s``, so a
    replay run faster than real time still shows the recording's durations; ``dwell_clock`` says
    which clock was used (``media``, ``wall``, ``media+wall`` or None when nothing was counted).
    """
    decisions = restarts = overruns = earlier = 0
    timeline: deque[dict[str, Any]] = deque()
    dwell: dict[str, float] = {}
    clocks: set[str] = set()
    level_cycles: dict[str, int] = {}
    states: dict[str, dict[str, int]] = {"speech": {}, "face": {}}
    stage_ms: dict[str, _Reservoir] = {}
    counter_totals: dict[str, int] = {}
    prev_counters: dict[str, int] = {}
    first = prev = None
    for rec in records:
        decisions += 1
        new_run = prev is not None and (
            rec["cycle"] <= prev["cycle"] or rec.get("_pid") != prev.get("_pid")
        )
        if new_run:
            restarts += 1
        label = rec["label"] or "none"
        counted = 0.0
        if prev is not None and not new_run:
            gap, clock = _step(prev, rec)
            if 0 <= gap <= MAX_GAP_S:
                prev_label = prev["label"] or "none"
                dwell[prev_label] = dwell.get(prev_label, 0.0) + gap
                clocks.add(clock)
                counted = gap
        if counted:
            # The time since the previous decision is its label's, as in the dwell: a segment
            # lasts until the decision that ends it, so the timeline adds up to the dwell.
            timeline[-1]["duration_s"] += counted
        if not timeline or timeline[-1]["label"] != label or new_run:
            timeline.append({"start": rec["time"], "end": rec["time"], "label": label,
                             "duration_s": 0.0})
            if len(timeline) > TIMELINE_KEEP:
                timeline.popleft()
                earlier += 1
        else:
            timeline[-1]["end"] = rec["time"]
        level = _name(level_cycles, rec["level"])
        level_cycles[level] = level_cycles.get(level, 0) + 1
        for modality, seen in states.items():
            state = _name(seen, rec[modality]["state"])
            seen[state] = seen.get(state, 0) + 1
        overruns += bool(rec.get("overrun"))
        for stage, ms in rec.get("latency_ms", {}).items():
            stage_ms.setdefault(_name(stage_ms, stage), _Reservoir()).add(float(ms))
        for key, value in rec.get("counters", {}).items():
            key = _name(counter_totals, key)
            # Counters are cumulative per run: add increments, restart from 0 after a restart;
            # the first record of a log that starts mid-run is the baseline.
            base = 0 if (new_run or (prev is None and rec["cycle"] == 0)) else prev_counters.get(
                key, value)
            counter_totals[key] = counter_totals.get(key, 0) + max(0, int(value) - base)
            prev_counters[key] = int(value)
        if first is None:
            first = rec
        prev = rec
    if first is None or prev is None:
        return {"decisions": 0}
    for seg in timeline:
        seg["duration_s"] = round(seg["duration_s"], 3)
    return {
        "decisions": decisions,
        "from": first["time"],
        "to": prev["time"],
        "restarts": restarts,
        "overrun_cycles": overruns,
        "dwell_clock": "+".join(sorted(clocks)) or None,
        "dwell_s": {k: round(v, 2) for k, v in sorted(dwell.items(), key=lambda kv: -kv[1])},
        "timeline": list(timeline),
        "timeline_earlier": earlier,
        "latency_ms": {stage: r.percentiles() for stage, r in stage_ms.items()},
        "cycles_per_level": level_cycles,
        "cycles_per_state": states,
        "counters": counter_totals,
    }


#: Decisions a --plot draws at most: a long log is thinned evenly (a picture 1000 pixels wide
#: shows no more), so plotting stays in bounded memory.
PLOT_POINTS = 5_000


class PlotPoints:
    """What :func:`plot_summary` draws of each decision, thinned evenly to at most
    2 x :data:`PLOT_POINTS` decisions whatever the log's length (every ``stride``-th is kept;
    when full, every other one is dropped and the stride doubles).  Overruns are thinned the
    same way on their own, so a rare one is not lost among the thinned decisions."""

    def __init__(self, size: int = PLOT_POINTS) -> None:
        self.size = size
        self.rows: list[dict[str, Any]] = []
        self.overruns: list[float] = []
        self._seen = self._overruns_seen = 0
        self._stride = self._overrun_stride = 1

    def add(self, rec: dict[str, Any]) -> None:
        if self._seen % self._stride == 0:
            self.rows.append({"time": rec["time"], "label": rec["label"],
                              "confidence": rec["confidence"],
                              "latency_ms": rec.get("latency_ms", {})})
            if len(self.rows) >= 2 * self.size:
                del self.rows[1::2]
                self._stride *= 2
        self._seen += 1
        if rec.get("overrun"):
            if self._overruns_seen % self._overrun_stride == 0:
                self.overruns.append(rec["time"])
                if len(self.overruns) >= 2 * self.size:
                    del self.overruns[1::2]
                    self._overrun_stride *= 2
            self._overruns_seen += 1

    def collect(self, records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """``records`` unchanged, each one kept here as it passes."""
        for rec in records:
            self.add(rec)
            yield rec


_CLOCK_NAMES = {"media": "media time", "wall": "wall-clock time",
                "media+wall": "media time; wall-clock time for records without media_s"}


def _when(t: float) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def printable(text: str, *, keep: str = "") -> str:
    """``text`` with each control character but those in ``keep`` shown as ``?``: labels,
    levels, stage and device names come from whatever wrote the log or published under the
    prefix, and an escape sequence in one would retitle or clear the terminal of whoever reads
    it (often root)."""
    return "".join(c if c.isprintable() or c in keep else "?" for c in text)


def format_summary(summary: dict[str, Any], *, max_segments: int = 30) -> str:
    if not summary.get("decisions"):
        return "no decisions in the log (for this period)"
    clock = _CLOCK_NAMES.get(summary.get("dwell_clock") or "", "nothing counted")
    lines = [
        f"{summary['decisions']} decisions, {_when(summary['from'])} .. {_when(summary['to'])}, "
        f"{summary['restarts']} restart(s)",
        "",
        f"dwell time per emotion (in {clock}):",
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
        *(f"{modality} per cycle: " + ", ".join(
            f"{state} {100 * n / summary['decisions']:.0f} %" for state, n in
            sorted(seen.items(), key=lambda kv: -kv[1]))
          for modality, seen in summary.get("cycles_per_state", {}).items() if seen),
        f"audio: {c.get('audio_dropped_blocks', 0)} dropped blocks, "
        f"{c.get('audio_overflows', 0)} overflows, {c.get('audio_timeouts', 0)} timeouts; "
        f"frames skipped (a newer one was used): {c.get('frame_drops', 0)}; "
        f"camera lost: {c.get('camera_lost', 0)}",
    ]
    if c.get("sink_errors"):  # an output (the log file, the LEDs, MQTT) failed: say so
        lines.append(f"outputs: {c['sink_errors']} failed writes (sink_errors; the service's "
                     f"warnings name the output)")
    if any(key.startswith("mqtt_") for key in c):  # the MQTT sink was on
        lines.append(f"mqtt: {c.get('mqtt_sent', 0)} messages acknowledged, "
                     f"{c.get('mqtt_dropped', 0)} dropped (queue full), "
                     f"{c.get('mqtt_disconnects', 0)} disconnects")
    lines += [
        "",
        "timeline:",
    ]
    segments = summary["timeline"]
    earlier = summary.get("timeline_earlier", 0) + max(0, len(segments) - max_segments)
    if earlier:
        lines.append(f"  ... {earlier} earlier segments")
        segments = segments[-max_segments:]
    for seg in segments:
        duration = seg.get("duration_s", seg["end"] - seg["start"])
        lines.append(f"  {_when(seg['start'])}  {duration:7.1f} s  "
                     f"{seg['label']}")
    return printable("\n".join(lines), keep="\n")


def format_record(rec: dict[str, Any]) -> str:
    """One line per decision for ``--follow``."""
    label = f"{rec['label']} {rec['confidence']:.2f}" if rec["label"] else "none"
    speech, face = rec["speech"], rec["face"]
    return printable(
        f"{_when(rec['time'])}  {label:<16} speech={speech.get('label') or speech['state']:<10}"
        f" face={face.get('label') or face['state']:<11} "
        f"{rec['latency_ms'].get('total', 0):6.1f} ms {rec['level']}"
        f"{'  OVERRUN' if rec.get('overrun') else ''}")


def plot_summary(points: PlotPoints, path: str | Path) -> Path:
    """Timeline (shown emotion and confidence) and per-stage latency over time, as a picture."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError(
            "--plot needs matplotlib: pip install 'emotion-edge[plot]'"
        ) from None
    from .leds import EMOTION_COLOURS

    records = points.rows
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
    over = [t - t0 for t in points.overruns]
    if over:
        ax2.vlines(over, 0, bottom.max() or 1, colors="red", lw=0.5, label="overrun")
    ax2.set_ylabel("compute per cycle (ms)")
    ax2.set_xlabel(f"seconds since {_when(t0)}")
    ax2.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:  # a read-only card, a folder this user may not write, /proc
        raise EmotionEdgeError(f"cannot write the plot {path} ({exc.strerror or exc}); choose "
                               f"another path") from None
    finally:
        plt.close(fig)
    return Path(path)
