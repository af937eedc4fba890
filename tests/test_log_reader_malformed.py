"""Reading a decision log never raises on a bad line: malformed records are skipped, one warning
per kind and a count at the end, and every valid record around them is still reported."""

import json
import logging
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.decision import SCHEMA, Decision, ModalityReport
from edge.outputs import log_reader as dl

MARK = "valid-record-marker"


def decision(i, label="happy", **changes):
    d = Decision(cycle=i, time=1_700_000_000.0 + 0.5 * i, media_s=0.5 * i, label=label,
                 confidence=0.7, fused={MARK: float(i)},
                 speech=ModalityReport("ok", "happy", {"happy": 0.9}),
                 face=ModalityReport("no_face"),
                 latency_ms={"speech": 5.0, "face": 5.0, "total": 10.0}, overrun=False,
                 level="full", counters={"overruns": 0, "frame_drops": i})
    return d.to_dict() | changes


def marked(records):
    return [int(r["fused"][MARK]) for r in records if MARK in r.get("fused", {})]


def test_each_kind_of_bad_line_is_skipped_with_one_warning_and_a_count(tmp_path, caplog):
    template = decision(0)
    bad = [
        b"not json at all",
        b"{\"truncated\": ",
        b"\xff\xfe binary",
        b"[1, 2, 3]",
        b"\"a string\"",
        json.dumps({"schema": "something/else"}).encode(),
        json.dumps({k: v for k, v in template.items() if k != "time"}).encode(),
        json.dumps({k: v for k, v in template.items() if k != "latency_ms"}).encode(),
        json.dumps(template | {"time": "yesterday"}).encode(),
        json.dumps(template | {"cycle": True}).encode(),
        json.dumps(template | {"speech": {"state": 3}}).encode(),
        json.dumps(template | {"counters": {"frame_drops": 1.5}}).encode(),
        json.dumps(template | {"time": float("nan")}).encode(),  # NaN, as Python writes it
        json.dumps(template | {"latency_ms": {"total": float("inf")}}).encode(),
        json.dumps(template | {"media_s": -1e400}).encode(),
        json.dumps(template | {"latency_ms": {"total": -1.0}}).encode(),
        json.dumps(template | {"time": 1e300}).encode(),
        b"[" * 100_000,
    ]
    lines = []
    for i, line in enumerate(bad):
        lines += [json.dumps(decision(i)).encode(), line]
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n\n")
    caplog.set_level(logging.WARNING, logger="edge.outputs.log_reader")
    tally = dl.SkipTally()
    records = dl.read_file(path, skipped=tally)
    assert marked(records) == list(range(len(bad)))
    assert tally.counts == {"not JSON": 3, "not UTF-8": 1, "not a JSON object": 2,
                            "not a decision record": 1, "missing key": 2, "wrong type": 4,
                            "not finite": 3, "out of range": 2}
    assert len(caplog.records) == len(tally.counts)  # the first of each kind, naming the line
    assert "not JSON" in caplog.records[0].getMessage() and f"{path}:2" in caplog.messages[0]
    caplog.clear()
    tally.report()
    assert caplog.messages == [f"skipped {len(bad)} malformed decision record(s): 3 not JSON, "
                               "1 not UTF-8, 2 not a JSON object, 1 not a decision record, "
                               "2 missing key, 4 wrong type, 3 not finite, 2 out of range"]
    caplog.clear()
    dl.read_file(path)  # a tally of its own: reported at the end
    assert len(caplog.records) == len(tally.counts) + 1
    s = dl.summarize(records)
    assert s["decisions"] == len(bad) and json.dumps(s, allow_nan=False)


def test_journal_lines_from_elsewhere_are_not_malformed(caplog):
    entries = [{"MESSAGE": "INFO edge.loop: hello"}, {"MESSAGE": "{\"other\": 1}"}, [1, 2],
               {"MESSAGE": [300, -1]}, {"MESSAGE": json.dumps(decision(0))},
               {"MESSAGE": json.dumps(decision(1) | {"time": None})}]

    class FakeProc:
        def __init__(self, cmd, **kw):
            self.stdout = iter([json.dumps(e) for e in entries] + ["not json"])
            self.stderr, self.returncode = None, 0

        def poll(self):
            return 0

        def wait(self):
            return 0

    caplog.set_level(logging.WARNING, logger="edge.outputs.log_reader")
    assert marked(dl.read_journal(popen=FakeProc)) == [0]
    assert len(caplog.records) == 1 and "wrong type" in caplog.messages[0]


# -- property: arbitrary junk mixed with valid records ----------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=8,
)
#: Values that are JSON (as Python writes it) but wrong for most fields.
_AWKWARD = [float("nan"), float("inf"), float("-inf"), -1, -0.5, 10**400, 1e300, True, "x", None,
            [], {}, {"state": 1}]
_FIELDS = ["cycle", "time", "media_s", "label", "confidence", "speech", "face", "latency_ms",
           "overrun", "level", "counters", ("latency_ms", "total"), ("counters", "frame_drops"),
           ("speech", "state"), ("speech", "label"), ("face", "label")]


def _mutated(field, delete, value):
    rec = decision(0, fused={})
    rec["fused"] = {}
    target, key = (rec[field[0]], field[1]) if isinstance(field, tuple) else (rec, field)
    if delete:
        target.pop(key, None)
    else:
        target[key] = value
    return json.dumps(rec).encode()


_mutations = st.builds(_mutated, st.sampled_from(_FIELDS), st.booleans(),
                       st.sampled_from(_AWKWARD) | _json_values)
_junk = st.one_of(
    _mutations, _mutations, _mutations,  # the likeliest to slip through: weighted up
    st.binary(max_size=80),
    st.text(max_size=80).map(lambda t: t.encode("utf-8")),
    _json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.text(max_size=6), _json_values, max_size=4).map(
        lambda d: json.dumps(d | {"schema": SCHEMA}).encode()),
).map(lambda b: b.replace(b"\n", b""))

_VALID = object()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.just(_VALID), _junk), max_size=25))
def test_no_line_can_break_reading_and_every_valid_record_is_reported(items):
    lines, n_valid = [], 0
    for item in items:
        if item is _VALID:
            item = json.dumps(decision(n_valid, label=[None, "sad", "happy"][n_valid % 3]))
            item = item.encode()
            n_valid += 1
        lines.append(item)
    data = b"\n".join(lines) + b"\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.jsonl"
        path.write_bytes(data)
        from_file = dl.read_file(path)
        followed = list(dl.follow_file(path, from_start=True, stop=lambda: True))

    class FakeProc:
        def __init__(self, cmd, **kw):
            self.stdout = iter(json.dumps({"MESSAGE": _message(line)}) for line in lines)
            self.stderr, self.returncode = None, 0

        def poll(self):
            return 0

        def wait(self):
            return 0

    from_journal = list(dl.read_journal(popen=FakeProc))
    for records in (from_file, followed, from_journal):
        assert marked(records) == list(range(n_valid))
        summary = dl.summarize(records)
        json.dumps(summary, allow_nan=False)
        dl.format_summary(summary)
        for rec in records:
            dl.format_record(rec)


def _message(line: bytes):
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return list(line)  # how journald hands over a message that is not UTF-8
