"""inspect: timeline, dwell, latency percentiles, overruns, drops, restarts; file and journal."""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.decision import Decision, ModalityReport
from edge.errors import ConfigError, EmotionEdgeError
from edge.outputs import log_reader as dl
from edge.outputs.log import RotatingFileSink

T0 = 1_700_000_000.0


def record(cycle, t, label, total_ms=10.0, overrun=False, level="full", **counters):
    d = Decision(cycle=cycle, time=T0 + t, media_s=t, label=label, confidence=0.7 if label else 0,
                 fused={}, speech=ModalityReport("ok", "happy", {"happy": 0.9}),
                 face=ModalityReport("no_face"),
                 latency_ms={"speech": total_ms / 2, "face": total_ms / 2, "total": total_ms},
                 overrun=overrun, level=level,
                 counters={"overruns": 0, "audio_dropped_blocks": 0, "frame_drops": 0} | counters)
    return d


def run_of(labels, start_t=0.0, **kw):
    return [record(i, start_t + 0.5 * i, label, **kw) for i, label in enumerate(labels)]


def test_summary_of_two_runs():
    first = run_of(["happy"] * 4 + ["sad"] * 2)
    first[3] = record(3, 1.5, "happy", total_ms=300.0, overrun=True, level="reuse_box",
                      audio_dropped_blocks=2)
    first[4] = record(4, 2.0, "sad", audio_dropped_blocks=2)  # counters are cumulative
    first[5] = record(5, 2.5, "sad", audio_dropped_blocks=3)
    second = run_of(["neutral"] * 3, start_t=60.0, audio_dropped_blocks=1)  # after a restart
    recs = [json.loads(d.to_json()) for d in first + second]
    s = dl.summarize(recs)
    assert s["decisions"] == 9 and s["restarts"] == 1
    assert s["dwell_s"] == {"happy": 2.0, "neutral": 1.0, "sad": 0.5}
    assert [seg["label"] for seg in s["timeline"]] == ["happy", "sad", "neutral"]
    assert s["overrun_cycles"] == 1
    assert s["cycles_per_level"] == {"full": 8, "reuse_box": 1}
    assert s["counters"]["audio_dropped_blocks"] == 3 + 1  # per-run counters, summed
    lat = s["latency_ms"]["total"]
    assert lat["p50"] == 10.0 and lat["max"] == 300.0 and lat["p99"] > lat["p95"] >= 10.0
    text = dl.format_summary(s)
    assert "dwell time per emotion" in text and "1 restart" in text and "p99" in text


def test_reads_rotated_files_in_order_and_since(tmp_path):
    path = tmp_path / "decisions.jsonl"
    sink = RotatingFileSink(path, max_bytes=2000, backups=5)
    for d in run_of(["happy"] * 20 + ["sad"] * 20):
        sink.write(d)
    sink.close()
    assert (tmp_path / "decisions.jsonl.1").exists()
    recs = dl.read_file(path)
    assert [r["cycle"] for r in recs] == list(range(40)) or len(recs) < 40
    assert [r["cycle"] for r in recs] == sorted(r["cycle"] for r in recs)
    late = dl.read_file(path, since=T0 + 15.0)
    assert late and all(r["time"] >= T0 + 15.0 for r in late)


def test_rotation_caps_the_size(tmp_path):
    path = tmp_path / "d.jsonl"
    sink = RotatingFileSink(path, max_bytes=1500, backups=2)
    for d in run_of(["happy"] * 100):
        sink.write(d)
    sink.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["d.jsonl", "d.jsonl.1", "d.jsonl.2"]
    assert all((tmp_path / f).stat().st_size <= 1500 for f in files)


def test_a_log_deleted_while_running_is_written_again(tmp_path, caplog):
    """Someone cleans /run up by hand: the next decision starts a new file (it used to fail at
    the next rotation and then stop writing for good), and rotation goes on."""
    path = tmp_path / "d.jsonl"
    sink = RotatingFileSink(path, max_bytes=1500, backups=2)
    decisions = run_of(["happy"] * 60)
    for d in decisions[:5]:
        sink.write(d)
    path.unlink()
    for d in decisions[5:]:
        sink.write(d)
    sink.close()
    assert "was removed or replaced" in caplog.text
    cycles = [rec["cycle"] for rec in dl.read_file(path)]
    assert cycles == list(range(cycles[0], 60)) and cycles[0] > 5  # rotated since, in order
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "d.jsonl.1", "d.jsonl.2"]


def test_journal_entries_are_parsed_and_pids_count_as_restarts():
    lines = []
    for pid, recs in ((100, run_of(["happy"] * 3)), (200, run_of(["sad"] * 3, start_t=30))):
        for d in recs:
            lines.append(json.dumps({"MESSAGE": d.to_json(), "_PID": str(pid)}))
    lines.insert(1, json.dumps({"MESSAGE": "INFO edge.loop: something else", "_PID": "100"}))
    lines.append(json.dumps({"MESSAGE": list(b"\xff binary")}))

    class FakeProc:
        def __init__(self, cmd, **kw):
            self.cmd, self.stdout, self.stderr, self.returncode = cmd, iter(lines), None, 0

        def poll(self):
            return 0

        def wait(self):
            return 0

    recs = list(dl.read_journal(popen=FakeProc))
    assert len(recs) == 6
    assert dl.summarize(recs)["restarts"] == 1
    assert dl.journal_command(since="-1h", follow=True)[:5] == ["journalctl", "-o", "json", "-u",
                                                               "emotion-edge"]


def test_parse_since():
    now = T0
    assert dl.parse_since("-30m", now) == now - 1800
    assert dl.parse_since("30m", now) == now - 1800
    assert dl.parse_since("-1.5h", now) == now - 5400
    assert dl.parse_since("2026-05-01T14:00:00+00:00", now) == 1777644000.0
    assert dl.parse_since("2 hours ago", now) == now - 7200
    assert dl.parse_since("2026-05-01 14:00", now) > now
    with pytest.raises(ConfigError, match="--since"):
        dl.parse_since("last tuesday", now)


def test_follow_file_yields_appended_decisions(tmp_path):
    import threading

    path = tmp_path / "d.jsonl"
    sink = RotatingFileSink(path)
    sink.write(record(0, 0, "happy"))  # written before following: not shown again
    seen = []
    calls = []
    started = threading.Event()

    def stop():
        calls.append(1)
        if len(calls) == 2:  # the file is open and positioned at its end by now
            started.set()
        return len(seen) >= 2

    def writer():
        started.wait(1.0)
        sink.write(record(1, 0.5, "sad"))
        sink.write(record(2, 1.0, "angry"))

    t = threading.Thread(target=writer)
    t.start()
    for rec in dl.follow_file(path, poll_s=0.01, stop=stop):
        seen.append(rec["label"])
    t.join()
    sink.close()
    assert seen == ["sad", "angry"]


def test_cli_file_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from edge.cli import main

    path = tmp_path / "d.jsonl"
    sink = RotatingFileSink(path)
    for d in run_of(["happy"] * 6 + [None] * 4 + ["sad"] * 4):
        sink.write(d)
    sink.close()
    png = tmp_path / "plot.png"
    assert main(["inspect", "--log", str(path), "--json", "--plot", str(png)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["decisions"] == 14 and summary["dwell_s"]["none"] == 2.0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_plot_without_matplotlib_says_so_before_the_summary(tmp_path, capsys, monkeypatch):
    """Without matplotlib, `inspect --plot` printed the whole summary of a long log, and only
    then said --plot needs matplotlib."""
    import sys

    from edge.cli import main

    path = tmp_path / "d.jsonl"
    sink = RotatingFileSink(path)
    for d in run_of(["happy"] * 6):
        sink.write(d)
    sink.close()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main(["inspect", "--log", str(path), "--plot", str(tmp_path / "p.png")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "emotion-edge[plot]" in err, (out, err)


def test_a_plot_that_cannot_be_written_is_one_line(tmp_path, capsys):
    """A read-only card, a folder this user may not write or /proc gave an internal error."""
    pytest.importorskip("matplotlib")
    from edge.cli import main

    path = tmp_path / "d.jsonl"
    sink = RotatingFileSink(path)
    for d in run_of(["happy"] * 6):
        sink.write(d)
    sink.close()
    assert main(["inspect", "--log", str(path), "--plot", "/proc/self/x.png"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write the plot /proc/self/x.png" in err, err


def test_cli_missing_log_is_a_clear_error(tmp_path, capsys):
    from edge.cli import main

    assert main(["inspect", "--log", str(tmp_path / "nope.jsonl")]) == 2
    assert "not found" in capsys.readouterr().err


# -- a log that cannot be read: one line naming the path and the fix, exit status 2 -------------


def test_a_directory_or_a_file_in_the_way_is_one_clear_line(tmp_path, capsys):
    from edge.cli import main

    assert main(["inspect", "--log", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a directory" in err and str(tmp_path) in err
    (tmp_path / "file").write_text("")
    assert main(["inspect", "--log", str(tmp_path / "file" / "d.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a directory" in err
    assert main(["inspect", "--follow", "--log", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def _group_dir(tmp_path):
    """A 0750 directory with a log in it, of a group this process is not in where possible."""
    import grp
    import os

    run = tmp_path / "run"
    run.mkdir()
    log = run / "d.jsonl"
    log.write_text(record(0, 0, "happy").to_json() + "\n")
    log.chmod(0o640)
    if os.geteuid() == 0:
        os.chown(run, 1, 1)  # uid/gid 1 (daemon on Debian): neither ours
        os.chown(log, 1, 1)
        run.chmod(0o750)
    else:  # only our own groups are allowed: the owner bits deny us
        run.chmod(0o050)
    gid = run.stat().st_gid
    return run, log, grp.getgrgid(gid).gr_name, gid in os.getgroups()


def test_permission_denied_names_the_group_to_join(tmp_path):
    run, log, group, member = _group_dir(tmp_path)

    def deny(path):
        raise PermissionError(13, "Permission denied", str(path))

    for read in (lambda: dl.read_file(log, opener=deny),
                 lambda: list(dl.follow_file(log, opener=deny))):
        with pytest.raises(EmotionEdgeError) as err:
            read()
        msg = str(err.value)
        assert str(log) in msg and "\n" not in msg
        assert f"{run} is for group {group}" in msg
        if member:
            assert "which you are in" in msg
        else:
            assert f"sudo usermod -aG {group} $USER, then log in again" in msg
        assert "--journal" in msg


_DENIED_SCRIPT = """
import json, sys
from edge.cli import main
from edge.outputs import log_reader as dl
out = {}
for name, call in (("check", lambda: dl.check_log(sys.argv[1])),
                   ("read", lambda: dl.read_file(sys.argv[1]))):
    try:
        call()
        out[name] = "no error"
    except dl.EmotionEdgeError as exc:
        out[name] = str(exc)
out["main"] = main(["inspect", "--log", sys.argv[1]])
out["follow"] = main(["inspect", "--follow", "--log", sys.argv[1]])
print(json.dumps(out))
"""


def test_permission_denied_for_real_as_an_ordinary_user(tmp_path):
    """The reported case: /run/emotion-edge is 0750 and the user is not in its group.  Run as
    root without the capabilities that bypass file permissions (setpriv), so root obeys them."""
    import os
    import shutil
    import subprocess
    import sys

    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to drop the file-permission override")
    run, log, group, _ = _group_dir(tmp_path)
    result = subprocess.run(
        ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", sys.executable, "-c",
         _DENIED_SCRIPT, str(log)], capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    out = json.loads(result.stdout)
    fix = f"sudo usermod -aG {group} $USER, then log in again"
    assert str(log) in out["check"] and fix in out["check"]
    assert str(log) in out["read"] and fix in out["read"]
    assert out["main"] == 2 and out["follow"] == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("emotion-edge:")]
    assert len(errors) == 2 and all(fix in line for line in errors)


def test_the_installer_and_the_unit_use_the_group_the_docs_name():
    from edge.paths import shipped_file
    from edge.service.install import SERVICE_USER

    unit = shipped_file("emotion-edge.service").read_text()
    assert f"Group={SERVICE_USER}\n" in unit and "RuntimeDirectoryMode=0750" in unit
    docs = (Path(__file__).resolve().parent.parent / "docs" / "appliance.md").read_text()
    assert f"sudo usermod -aG {SERVICE_USER} $USER" in docs


# -- --follow across rotation ---------------------------------------------------------------------


def _follow(path, steps, **kw):
    """Follow ``path`` while ``steps`` run one per poll (instead of sleeping); the cycles seen."""
    steps = list(steps)

    def sleep(_s):
        steps.pop(0)()

    return [r["cycle"] for r in dl.follow_file(path, poll_s=0.0, stop=lambda: not steps,
                                               sleep=sleep, **kw)]


def _write(path, text):
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def _append(path, *cycles):
    def step():
        with open(path, "a", encoding="utf-8") as f:
            for c in cycles:
                f.write(record(c, 0.5 * c, "happy").to_json() + "\n")
    return step


def test_follow_across_rename_rotation_loses_and_repeats_nothing(tmp_path):
    path = tmp_path / "d.jsonl"
    _append(path, 0)()  # there before following: not shown

    def rotate_then_write():
        _append(path, 2)()  # written to the old file just before it is renamed
        path.rename(tmp_path / "d.jsonl.1")
        _append(path, 3, 4)()  # the new file's first lines

    def rename_only():
        path.rename(tmp_path / "d.jsonl.1")

    seen = _follow(path, [_append(path, 1), rotate_then_write, _append(path, 5), rename_only,
                          lambda: None, _append(path, 6)])
    assert seen == [1, 2, 3, 4, 5, 6]


def test_follow_across_the_sinks_own_rotation(tmp_path):
    path = tmp_path / "d.jsonl"
    sink = RotatingFileSink(path, max_bytes=2500, backups=2)
    decisions = iter(run_of(["happy", "sad", "angry"] * 20))

    def write_two():
        for _ in range(2):
            sink.write(next(decisions))

    seen = _follow(path, [write_two] * 30, from_start=True)
    sink.close()
    assert (tmp_path / "d.jsonl.2").exists()  # it did rotate, many times
    assert seen == list(range(60))


def test_follow_across_copytruncate_rotation(tmp_path):
    import shutil

    path = tmp_path / "d.jsonl"
    path.touch()

    def copytruncate():
        shutil.copyfile(path, tmp_path / "d.jsonl.1")
        with open(path, "r+b") as f:
            f.truncate(0)

    def unseen_then_copytruncate_then_more():
        _append(path, 2, 3)()  # not read before the copy: taken from d.jsonl.1
        copytruncate()
        _append(path, 4, 5, 6, 7)()  # more than was read before: the file is no shorter

    seen = _follow(path, [_append(path, 0, 1), unseen_then_copytruncate_then_more,
                          _append(path, 8), copytruncate, _append(path, 9)])
    assert seen == list(range(10))


def test_follow_starts_at_the_end_but_not_inside_a_line(tmp_path):
    path = tmp_path / "d.jsonl"
    _append(path, 0)()
    line = record(1, 0.5, "sad").to_json() + "\n"
    _write(path, line[:30])  # being written when following starts
    seen = _follow(path, [lambda: _write(path, line[30:]), _append(path, 2)])
    assert seen == [1, 2]


def test_follow_reads_a_file_that_appears_later_from_its_start(tmp_path, caplog):
    path = tmp_path / "d.jsonl"

    line = record(2, 1.0, "sad").to_json() + "\n"
    seen = _follow(path, [lambda: None, _append(path, 0, 1), lambda: _write(path, line[:40]),
                          lambda: _write(path, line[40:])])
    assert seen == [0, 1, 2]  # the half-written line waited for its end
    # Said once that it waits: a mistyped path would otherwise wait for ever without a word.
    assert caplog.text.count("does not exist (yet): waiting") == 1


def test_an_empty_log_names_what_was_read(tmp_path, capsys):
    from edge.cli import main

    (tmp_path / "d.jsonl").write_text("")
    assert main(["inspect", "--log", str(tmp_path / "d.jsonl")]) == 1
    assert capsys.readouterr().out.strip() == f"no decisions in {tmp_path / 'd.jsonl'}"


# -- --since ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--since", "-30m"], ["--since=-30m"], ["--since", "30m"],
                                  ["--since", "ISO"], ["-f", "--since", "-30m"]])
def test_cli_since_forms(tmp_path, capsys, argv):
    import datetime as dt
    import time

    from edge.cli import main

    now = time.time()
    path = tmp_path / "d.jsonl"
    with open(path, "w") as f:
        for i, age_min in enumerate([90, 60, 29, 10, 1]):
            d = record(i, 0.5 * i, "happy")
            f.write(json.dumps(d.to_dict() | {"time": now - 60 * age_min}) + "\n")
    iso = dt.datetime.fromtimestamp(now - 1800).isoformat(timespec="seconds")
    argv = [iso if a == "ISO" else a for a in argv]
    if "-f" in argv:  # parsed as a value, not as an option; following ignores it for a file
        from edge.cli import build_parser

        assert build_parser().parse_args(["inspect", *argv]).since == "-30m"
        return
    assert main(["inspect", "--log", str(path), "--json", *argv]) == 0
    assert json.loads(capsys.readouterr().out)["decisions"] == 3


def test_journal_gets_since_as_epoch(monkeypatch, capsys):
    import time

    from edge.cli import main

    calls = []

    def fake_read_journal(unit, *, since=None, follow=False):
        calls.append(since)
        return iter([])

    monkeypatch.setattr(dl, "read_journal", fake_read_journal)
    assert main(["inspect", "--journal", "--since", "-30m"]) == 1  # no decisions
    assert calls[0].startswith("@") and abs(int(calls[0][1:]) - (time.time() - 1800)) < 5
    assert "no decisions" in capsys.readouterr().out
    assert dl.journal_command(since=calls[0])[-2:] == ["--since", calls[0]]


# -- | head ----------------------------------------------------------------------------------------


def test_output_into_a_closed_pipe_exits_quietly(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "d.jsonl"
    sink = RotatingFileSink(path)
    for d in run_of(["happy", "sad"] * 200):
        sink.write(d)
    sink.close()
    with subprocess.Popen([sys.executable, "-m", "edge", "inspect", "--log", str(path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          cwd=Path(__file__).resolve().parent.parent) as proc:
        proc.stdout.close()  # `| head` that has read enough, long before anything is written
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 141, err  # as if killed by SIGPIPE, quietly
    assert "Traceback" not in err and "Exception ignored" not in err and err == ""


# -- the timeline adds up to the dwell ------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["happy", "sad", None]), st.sampled_from([0.5, 0.5, 3.0,
                                                                                  1e4]),
                          st.booleans()), min_size=1, max_size=40))
def test_the_timeline_adds_up_to_the_dwell_per_emotion(steps):
    """Whatever the labels, gaps (a long one is downtime) and restarts, each emotion's segments
    last as long in total as its dwell."""
    recs, t, cycle = [], 0.0, 0
    for label, gap, restart in steps:
        t, cycle = t + gap, 0 if restart else cycle + 1
        rec = json.loads(record(cycle, t, label).to_json())
        recs.append(rec)
    s = dl.summarize(recs)
    totals: dict[str, float] = {}
    for seg in s["timeline"]:
        totals[seg["label"]] = totals.get(seg["label"], 0.0) + seg["duration_s"]
    assert {k: round(v, 2) for k, v in totals.items() if v} == {
        k: v for k, v in s["dwell_s"].items() if v}


# -- replay dwell in media time ---------------------------------------------------------------------


def test_dwell_uses_media_time_when_records_carry_it():
    fast = [json.loads(d.to_json()) for d in run_of(["happy"] * 4 + ["sad"] * 3)]
    for i, rec in enumerate(fast):  # a --fast replay: 10 ms of wall time per 0.5 s of audio
        rec["time"] = T0 + 0.01 * i
    s = dl.summarize(fast)
    assert s["dwell_clock"] == "media"
    assert s["dwell_s"] == {"happy": 2.0, "sad": 1.0}
    assert [seg["duration_s"] for seg in s["timeline"]] == [2.0, 1.0]  # as the dwell counts
    assert "in media time" in dl.format_summary(s)

    wall = [{k: v for k, v in r.items() if k != "media_s"} for r in fast]
    s = dl.summarize(wall)
    assert s["dwell_clock"] == "wall" and s["dwell_s"] == {"happy": 0.04, "sad": 0.02}
    mixed = fast[:4] + wall[4:]
    assert dl.summarize(mixed)["dwell_clock"] == "media+wall"


def _stream(n, flip_every=1):
    """``n`` decision records made one at a time (a label change every ``flip_every``)."""
    for i in range(n):
        rec = json.loads(record(i, 0.5 * i, ("happy", "sad")[(i // flip_every) % 2],
                                total_ms=float(i % 97)).to_json())
        yield rec


def _peak_bytes(run):
    import tracemalloc

    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_long_log_is_summarised_in_bounded_memory(monkeypatch):
    """A week of journal must not take the Pi's memory: the summary's peak memory stays the same
    whether the log is 4x longer, and the percentiles stay exact while every value fits."""
    monkeypatch.setattr(dl, "LATENCY_SAMPLE", 1000)
    monkeypatch.setattr(dl, "TIMELINE_KEEP", 300)
    short = _peak_bytes(lambda: dl.summarize(_stream(3000)))
    long = _peak_bytes(lambda: dl.summarize(_stream(12000)))
    assert long < 1.3 * short, (short, long)
    s = dl.summarize(_stream(12000))
    assert s["decisions"] == 12000 and s["latency_ms"]["total"]["n"] == 12000
    assert s["latency_ms"]["total"]["max"] == 96.0  # exact, not sampled
    assert abs(s["latency_ms"]["total"]["p50"] - 48.0) <= 5.0  # a uniform sample
    assert len(s["timeline"]) == 300 and s["timeline_earlier"] == 12000 - 300
    assert s["timeline"][-1]["start"] == T0 + 0.5 * 11999  # the latest segments are kept
    assert f"{12000 - 30} earlier segments" in dl.format_summary(s)  # the text shows 30
    exact = dl.summarize(_stream(900))["latency_ms"]["total"]
    import numpy as np

    assert exact["p95"] == round(float(np.percentile([i % 97 for i in range(900)], 95)), 3)


def test_plot_points_are_thinned_evenly_and_keep_the_overruns():
    points = dl.PlotPoints(size=100)
    recs = [json.loads(record(i, 0.5 * i, "happy", overrun=(i == 7777)).to_json())
            for i in range(10000)]
    assert list(points.collect(iter(recs))) == recs  # passes every record on
    assert 100 <= len(points.rows) < 200
    times = [r["time"] for r in points.rows]
    steps = set(round(b - a, 6) for a, b in zip(times, times[1:]))
    assert len(steps) == 1  # evenly spaced
    assert points.overruns == [T0 + 0.5 * 7777]


def test_a_failed_rotation_still_writes_every_decision(tmp_path, caplog):
    """A rotation that cannot rename (a folder where path.1 goes) used to lose every later
    decision, each write retrying the rotation and failing before its line."""
    path = tmp_path / "d.jsonl"
    (tmp_path / "d.jsonl.1" / "x").mkdir(parents=True)
    sink = RotatingFileSink(path, max_bytes=1500, backups=1)
    for d in run_of(["happy"] * 30):
        sink.write(d)
    assert [dl.parse_record(line)["cycle"] for line in path.read_bytes().splitlines()] == list(
        range(30))
    assert caplog.text.count("cannot rotate the decision log") == 1  # once, not per decision
    (tmp_path / "d.jsonl.1" / "x").rmdir()
    (tmp_path / "d.jsonl.1").rmdir()
    for d in run_of(["sad"] * 2, start_t=20.0):
        sink.write(d)
    sink.close()
    assert path.stat().st_size <= 1500  # rotating again once it can
    assert (tmp_path / "d.jsonl.1").is_file()


def test_the_log_refuses_a_file_that_is_not_a_decision_log(tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("my notes\n")
    with pytest.raises(ConfigError, match="not a decision log"):
        RotatingFileSink(other)
    assert other.read_text() == "my notes\n"


def test_a_log_under_a_file_names_the_file(tmp_path):
    from edge.errors import ConfigError

    (tmp_path / "take.wav").write_bytes(b"RIFF")
    with pytest.raises(ConfigError, match="take.wav is a file, not a folder"):
        RotatingFileSink(tmp_path / "take.wav" / "d.jsonl")


def test_the_summary_counts_each_modalitys_states():
    """How often the face was there at all: an installer aiming the camera needs it."""
    recs = [json.loads(d.to_json()) for d in run_of(["happy"] * 4)]
    recs[1]["face"]["state"] = "ok"
    s = dl.summarize(recs)
    assert s["cycles_per_state"] == {"speech": {"ok": 4}, "face": {"no_face": 3, "ok": 1}}
    text = dl.format_summary(s)
    assert "face per cycle: no_face 75 %, ok 25 %" in text


def test_a_log_with_endless_distinct_names_keeps_a_bounded_summary():
    """Not a log the appliance wrote: every record with its own level, state, stage and counter
    name would make the summary grow with the log."""
    recs = []
    for i, d in enumerate(run_of(["happy"] * 500)):
        rec = json.loads(d.to_json())
        rec["level"], rec["face"]["state"] = f"level{i}", f"state{i}"
        rec["latency_ms"] = {f"stage{i}": 1.0}
        rec["counters"] = {f"counter{i}": i}
        recs.append(rec)
    s = dl.summarize(recs)
    assert len(s["cycles_per_level"]) <= dl.MAX_NAMES + 1
    assert len(s["cycles_per_state"]["face"]) <= dl.MAX_NAMES + 1
    assert len(s["latency_ms"]) <= dl.MAX_NAMES + 1 and len(s["counters"]) <= dl.MAX_NAMES + 1
    assert sum(s["cycles_per_level"].values()) == 500


def test_inspect_reads_the_log_the_configuration_names(tmp_path, capsys):
    """A log.file moved away from /run/emotion-edge was never found: inspect read the journal."""
    from edge.cli import main

    log = tmp_path / "elsewhere.jsonl"
    sink = RotatingFileSink(log)
    for d in run_of(["happy"] * 3):
        sink.write(d)
    sink.close()
    config = tmp_path / "config.toml"
    config.write_text(f'[log]\nfile = "{log}"\n')
    assert main(["inspect", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["decisions"] == 3
    assert main(["inspect", "--config", str(tmp_path / "none.toml")]) == 2
    assert "none.toml not found" in capsys.readouterr().err


def test_the_log_comes_back_after_a_failed_reopen(tmp_path, monkeypatch):
    """The log removed while its folder was briefly unwritable: the reopen failed, and every
    later write went to the closed file ("I/O operation on closed file") until a restart."""
    import os

    path = tmp_path / "d.jsonl"
    sink = RotatingFileSink(path)
    sink.write(record(0, 0.0, "happy"))
    path.unlink()
    real_open = os.open

    def unwritable(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "open", unwritable)
    with pytest.raises(PermissionError):  # the loop counts it as a sink error
        sink.write(record(1, 0.5, "happy"))
    monkeypatch.setattr(os, "open", real_open)
    sink.write(record(2, 1.0, "sad"))
    sink.close()
    assert [json.loads(line)["cycle"] for line in path.read_text().splitlines()] == [2]


def test_the_log_is_the_groups_only_and_follows_no_link(tmp_path):
    """0640 whatever the umask (a shell's 022 made it world-readable), and a link in its place
    (the service's user can make one where root then writes) is refused in one line."""
    import os

    from edge.errors import ConfigError

    old = os.umask(0o022)
    try:
        RotatingFileSink(tmp_path / "d.jsonl").close()
    finally:
        os.umask(old)
    assert (tmp_path / "d.jsonl").stat().st_mode & 0o777 == 0o640
    target = tmp_path / "elsewhere"
    (tmp_path / "link.jsonl").symlink_to(target)
    with pytest.raises(ConfigError, match="is a symbolic link"):
        RotatingFileSink(tmp_path / "link.jsonl")
    assert not target.exists()


def test_a_log_a_power_cut_zeroed_is_set_aside(tmp_path, caplog):
    """ext4 after a power cut: the log's first block is zeros.  It was refused as "not a
    decision log", so the service could never start again."""
    path = tmp_path / "d.jsonl"
    zeroed = b"\0" * 4096 + record(0, 0.0, "happy").to_json().encode() + b"\n"
    path.write_bytes(zeroed)
    sink = RotatingFileSink(path)
    sink.write(record(1, 0.5, "sad"))
    sink.close()
    assert (tmp_path / "d.jsonl.damaged").read_bytes() == zeroed
    assert json.loads(path.read_text())["cycle"] == 1
    assert "began with zero bytes" in caplog.text


def test_what_the_log_says_cannot_drive_the_terminal(tmp_path):
    """A crafted line (anyone who may write the log) retitled, cleared and faked the terminal
    of whoever ran inspect, often root; its names are shown without control characters."""
    rec = json.loads(record(0, 0.0, "happy").to_json())
    rec["label"] = "\x1b]0;PWNED\x07\x1b[2J\x1b[1;31mFAKE\u202e"
    rec["level"] = "full\x1b[H"
    text = dl.format_summary(dl.summarize([rec])) + dl.format_record(rec)
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "FAKE" in text  # shown, defused


def test_a_manifest_whose_labels_are_not_plain_names_is_refused(tmp_path):
    import shutil

    from edge.errors import ModelError
    from edge.models.manifest import load_manifest

    repo = Path(__file__).resolve().parent.parent
    model = tmp_path / "speech_emotion_int8.tflite"
    shutil.copy(repo / "models" / "speech_emotion_int8.tflite", model)
    manifest = json.loads((repo / "models" / "speech_emotion_int8.json").read_text())
    manifest["labels"][0] = "neutral\x1b[2J"
    model.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="labels must be plain names"):
        load_manifest(model)
    model.with_suffix(".json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ModelError, match="not readable JSON"):
        load_manifest(model)
