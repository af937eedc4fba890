"""inspect: timeline, dwell, latency percentiles, overruns, drops, restarts; file and journal."""

import json

import pytest

from edge.decision import Decision, ModalityReport
from edge.errors import ConfigError
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


def test_cli_missing_log_is_a_clear_error(tmp_path, capsys):
    from edge.cli import main

    assert main(["inspect", "--log", str(tmp_path / "nope.jsonl")]) == 2
    assert "not found" in capsys.readouterr().err
