"""Compare the smoke suite's outputs from the emulated Pi (arm64) with this machine's (x86-64).

Usage: python compare.py X86_DIR ARM64_DIR [--tol-lsb N]

Each folder holds, per case NAME, ``NAME.stdout``, ``NAME.stderr`` and ``NAME.rc`` (the arm64 one
also ``NAME.ms``, its wall time under emulation).  Prints one PASS/FAIL row per case and exits 1
when any row fails.  Standard library only: it runs on the host's plain python3.

What must match:

* labels (per file, per face, per decision cycle), decision-cycle count and timing, loop state
  (``level``, modality ``state``), face boxes (BlazeFace: exactly; Haar: within ``BOX_TOL_PX``),
  the ``check`` verdict of every line and the exit codes: exactly;
* scores (model probabilities, fused scores, confidence): within ``tol_lsb`` steps of the int8
  output scale (1/256), default ``DEFAULT_TOL_LSB``.  The detail column says how many were
  bit-identical and the largest difference, so a drift towards the tolerance shows.

Why a tolerance at all (``scripts/pi/divergence.py`` shows where the paths part; its rows
``divergence`` and ``bit-exact`` are in the table): the models' quantised inputs are the same
on both machines, and TFLite's reference kernels then give bit-identical outputs (``bit-exact``
checks that), but the device runs XNNPACK, whose int8 kernels round differently on arm64 (NEON)
and x86-64: outputs differ by 1-3 steps of 1/256 for some inputs (speech more than face, it has
more layers).  Labels have not moved.  Other known differences that do not reach a decision
here: float64 MFCCs differ in their last bits, and ``cv2.resize`` with linear interpolation
rounds differently on NEON (Haar's image pyramid; enlarged face crops), hence the Haar box
tolerance.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LSB = 1.0 / 256.0
#: Default score tolerance, in steps of 1/256 (the int8 output scale of the shipped models).
DEFAULT_TOL_LSB = 4
#: Printed scores are rounded to 4 decimals: allow that rounding on top of the tolerance.
PRINT_ROUNDING = 1e-4
#: Haar boxes may move by this many pixels per coordinate (its image pyramid is resized on NEON).
BOX_TOL_PX = 2
#: Keys of a decision line that depend on wall time, not on the computation.
VOLATILE_KEYS = ("time", "latency_ms", "counters", "overrun")


@dataclass
class Row:
    case: str
    verdict: str  # PASS, FAIL or INFO
    detail: str
    problems: list[str] = field(default_factory=list)


@dataclass
class ScoreStats:
    """Accumulates score comparisons: how many were exact, the largest difference."""

    tol: float
    total: int = 0
    exact: int = 0
    max_delta: float = 0.0
    problems: list[str] = field(default_factory=list)

    def add(self, where: str, a: Mapping[str, float], b: Mapping[str, float]) -> None:
        if set(a) != set(b):
            self.problems.append(f"{where}: score keys differ {sorted(a)} != {sorted(b)}")
            return
        for key in a:
            self.one(f"{where}.{key}", a[key], b[key])

    def one(self, where: str, x: float, y: float) -> None:
        self.total += 1
        delta = abs(float(x) - float(y))
        if delta == 0:
            self.exact += 1
        self.max_delta = max(self.max_delta, delta)
        if not delta <= self.tol + PRINT_ROUNDING:
            self.problems.append(f"{where}: {x} vs {y} (|d| = {delta / LSB:.2f}/256)")

    def summary(self) -> str:
        if not self.total:
            return "no scores"
        return (f"{self.exact}/{self.total} scores bit-identical, "
                f"max |d| {self.max_delta / LSB:.2f}/256")


def same(where: str, a: Any, b: Any, problems: list[str]) -> None:
    if a != b:
        problems.append(f"{where}: {a!r} (x86) vs {b!r} (arm64)")


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def compare_classify(x86: list[dict[str, Any]], arm: list[dict[str, Any]], tol: float) -> Row:
    """``classify --json``: one object per file with ``label`` and ``scores``."""
    stats = ScoreStats(tol)
    problems = stats.problems
    same("files", [d.get("path") for d in x86], [d.get("path") for d in arm], problems)
    for a, b in zip(x86, arm):
        where = str(a.get("path"))
        same(f"{where} label", a.get("label"), b.get("label"), problems)
        stats.add(where, a.get("scores") or {}, b.get("scores") or {})
    labels = sum(a.get("label") == b.get("label") for a, b in zip(x86, arm))
    return Row("", "", f"{labels}/{len(x86)} labels equal; {stats.summary()}", problems)


def compare_faces(x86: list[dict[str, Any]], arm: list[dict[str, Any]], tol: float,
                  box_tol: int) -> Row:
    """``classify-face --json``: per file a list of faces with ``box``, ``label``, ``scores``."""
    stats = ScoreStats(tol)
    problems = stats.problems
    same("files", [d.get("path") for d in x86], [d.get("path") for d in arm], problems)
    n_faces = 0
    for a, b in zip(x86, arm):
        fa, fb = a.get("faces") or [], b.get("faces") or []
        same(f"{a.get('path')} faces", len(fa), len(fb), problems)
        for i, (p, q) in enumerate(zip(fa, fb)):
            n_faces += 1
            where = f"{a.get('path')}[{i}]"
            box_a, box_b = p.get("box") or [], q.get("box") or []
            if len(box_a) != len(box_b) or any(
                    abs(u - v) > box_tol for u, v in zip(box_a, box_b)):
                problems.append(f"{where} box: {box_a} vs {box_b} (tolerance {box_tol} px)")
            same(f"{where} label", p.get("label"), q.get("label"), problems)
            stats.add(where, p.get("scores") or {}, q.get("scores") or {})
    box_note = "boxes equal" if box_tol == 0 else f"boxes within {box_tol} px"
    return Row("", "", f"{n_faces} face(s), labels and {box_note}; {stats.summary()}", problems)


def compare_run(x86: list[dict[str, Any]], arm: list[dict[str, Any]], tol: float) -> Row:
    """``run`` decision lines, cycle by cycle."""
    stats = ScoreStats(tol)
    problems = stats.problems
    same("decision count", len(x86), len(arm), problems)
    for a, b in zip(x86, arm):
        where = f"cycle {a.get('cycle')}"
        for key in ("schema", "cycle", "media_s", "label", "level"):
            same(f"{where} {key}", a.get(key), b.get(key), problems)
        stats.one(f"{where} confidence", a.get("confidence", math.nan),
                  b.get("confidence", math.nan))
        stats.add(f"{where} fused", a.get("fused") or {}, b.get("fused") or {})
        for modality in ("speech", "face"):
            ma, mb = a.get(modality) or {}, b.get(modality) or {}
            same(f"{where} {modality}.state", ma.get("state"), mb.get("state"), problems)
            same(f"{where} {modality}.label", ma.get("label"), mb.get("label"), problems)
            stats.add(f"{where} {modality}", ma.get("scores") or {}, mb.get("scores") or {})
        extra = set(a) ^ set(b)
        if extra - set(VOLATILE_KEYS):
            problems.append(f"{where}: keys only on one side: {sorted(extra)}")
    labels = sum(a.get("label") == b.get("label") for a, b in zip(x86, arm))
    return Row("", "", f"{len(x86)} decisions, {labels} labels equal; {stats.summary()}",
               problems)


CHECK_LINE = re.compile(r"^\[(?P<status>[a-z]+)\s*\]\s+(?P<name>[^:]+):")


def check_lines(text: str) -> list[tuple[str, str]]:
    """``(name, status)`` of each ``check`` line, in order."""
    return [(m["name"].strip(), m["status"]) for m in map(CHECK_LINE.match, text.splitlines())
            if m]


def compare_check(x86: str, arm: str) -> Row:
    problems: list[str] = []
    a, b = check_lines(x86), check_lines(arm)
    if not a:
        problems.append("no check lines on x86")
    for (name, status), other in zip(a, b):
        same(f"'{name}'", (name, status), other, problems)
    same("check lines", len(a), len(b), problems)
    not_ok = [f"{n}={s}" for n, s in b if s != "ok"]
    return Row("", "", f"{len(b)} checks, same verdicts"
               + (f" (not ok on both: {', '.join(not_ok)})" if not_ok else ", all ok"), problems)


def judge_abi(probe: Mapping[str, Any], pinned_numpy: str | None,
              debian_numpy_ok: bool = False) -> Row:
    """The venv's NumPy (the pinned version) must keep Debian's NumPy extension importable.
    On bookworm it must be pip's (``debian_numpy_ok`` False); on trixie the pin is apt's own."""
    problems = []
    numpy_file = str(probe.get("numpy_file", ""))
    from_debian = "/usr/lib/python3/dist-packages" in numpy_file
    if pinned_numpy and probe.get("numpy") != pinned_numpy:
        problems.append(f"venv NumPy is {probe.get('numpy')}, pinned {pinned_numpy}")
    if from_debian and not debian_numpy_ok:
        problems.append("NumPy came from Debian, not from pip: the pin was not tested")
    if probe.get("debian_extension_ok") is not True:
        problems.append(f"Debian's extension: {probe.get('debian_extension')}")
    if not str(probe.get("pyaudio", "")).startswith(("0.", "1.")):
        problems.append(f"Debian's PyAudio: {probe.get('pyaudio')}")
    origin = "Debian's" if from_debian else "pip's"
    return Row("", "", f"{origin} NumPy {probe.get('numpy')} + Debian's pywt: imports and "
               f"computes; PyAudio {str(probe.get('pyaudio', '?')).split()[0]} from Debian",
               problems)


def judge_abi_control(probe: Mapping[str, Any]) -> Row:
    """NumPy 2 in front must break Debian's extension, or the probe proves nothing."""
    message = str(probe.get("debian_extension", ""))
    problems = []
    if probe.get("debian_extension_ok") is not False or "size changed" not in message:
        problems.append(f"NumPy {probe.get('numpy')} did not break Debian's extension as "
                        f"expected: {message}")
    return Row("", "", f"NumPy {probe.get('numpy')} in front: {message[:70]}", problems)


def divergence_info(x86: Mapping[str, Any], arm: Mapping[str, Any]) -> Row:
    """Not a verdict: which intermediates differ between the two machines (for lists, such as
    one entry per speech window: how many entries)."""
    differ = []
    for key, a in x86.items():
        b = arm.get(key)
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            n = sum(u != v for u, v in zip(a, b))
            if n:
                differ.append(f"{key} ({n}/{len(a)})")
        elif a != b:
            differ.append(key)
    return Row("", "INFO", "differ: " + (", ".join(differ) if differ else "none"))


#: Intermediates that must be bit-identical on both machines: the quantised model inputs, and what
#: the reference kernels make of them; BlazeFace's input and boxes.
BIT_EXACT_KEYS = ("speech.audio", "speech.windows.quantized_input", "speech.windows.reference",
                  "speech.kernels.reference.out0", "face.decoded_gray", "face.resize_area_128",
                  "face.boxes", "face.crop", "face.quantized_input",
                  "face.crop_and_mirror.reference", "face.kernels.reference.out0")


def judge_bit_exact(x86: Mapping[str, Any], arm: Mapping[str, Any]) -> Row:
    problems = []
    for key in BIT_EXACT_KEYS:
        if key not in x86 or key not in arm:
            problems.append(f"{key}: missing")
        elif x86[key] != arm[key]:
            problems.append(f"{key}: differs")
    windows = len(x86.get("speech.windows.reference") or [])
    return Row("", "", f"quantised inputs and reference-kernel outputs bit-identical "
               f"({windows} speech windows, face crop + mirror, BlazeFace input and boxes)",
               problems)


# --- the suite: case name -> how to judge it ------------------------------------------------------


def _read(folder: Path, name: str, suffix: str) -> str:
    path = folder / f"{name}.{suffix}"
    return path.read_text() if path.is_file() else ""


def _judge(name: str, x86_dir: Path, arm_dir: Path, tol: float, pinned_numpy: str | None,
           debian_numpy_ok: bool) -> Row:
    xo, ao = _read(x86_dir, name, "stdout"), _read(arm_dir, name, "stdout")
    if name in ("speech", "speech-phone"):
        return compare_classify(json_lines(xo), json_lines(ao), tol)
    if name.startswith("face-"):
        return compare_faces(json_lines(xo), json_lines(ao), tol,
                             BOX_TOL_PX if name.endswith("haar") else 0)
    if name.startswith("run-"):
        return compare_run(json_lines(xo), json_lines(ao), tol)
    if name == "check":
        return compare_check(xo, ao)
    if name == "divergence":
        return divergence_info(_load_json(x86_dir / "divergence.json"),
                               _load_json(arm_dir / "divergence.json"))
    if name == "bit-exact":
        return judge_bit_exact(_load_json(x86_dir / "divergence.json"),
                               _load_json(arm_dir / "divergence.json"))
    if name == "abi":
        return judge_abi(_load_json_text(ao), pinned_numpy, debian_numpy_ok)
    if name == "abi-control":
        return judge_abi_control(_load_json_text(ao))
    raise ValueError(f"unknown case {name!r}")


def _load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _load_json_text(text: str) -> dict[str, Any]:
    lines = [ln for ln in text.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


COMPARED = ("speech", "speech-phone", "face-blazeface", "face-haar", "face-phone", "run-blazeface",
            "run-haar", "check", "bit-exact", "divergence")
#: Rows judged from another case's output (and exit status).
OUTPUT_OF = {"bit-exact": "divergence"}
ARM_ONLY = ("abi", "abi-control")


def judge_all(x86_dir: Path, arm_dir: Path, tol_lsb: float,
              pinned_numpy: str | None = None, *, abi_control: bool = True,
              debian_numpy_ok: bool = False) -> list[Row]:
    rows = []
    tol = tol_lsb * LSB
    for name in COMPARED + ARM_ONLY:
        if name == "abi-control" and not abi_control:
            continue
        both = name in COMPARED
        src = OUTPUT_OF.get(name, name)
        rc_x, rc_a = _read(x86_dir, src, "rc").strip(), _read(arm_dir, src, "rc").strip()
        try:
            row = _judge(name, x86_dir, arm_dir, tol, pinned_numpy, debian_numpy_ok)
        except (ValueError, KeyError, TypeError) as exc:
            row = Row("", "", "unreadable output", [f"{type(exc).__name__}: {exc}"])
        if rc_a != "0" or (both and rc_x != "0"):
            tail = _read(arm_dir if rc_a != "0" else x86_dir, src, "stderr").strip().splitlines()
            row.problems.insert(0, f"exit status x86={rc_x or '-'} arm64={rc_a or '-'}"
                                + (f": {tail[-1]}" if tail else ""))
        row.case = name
        if row.verdict != "INFO":
            row.verdict = "FAIL" if row.problems else "PASS"
        ms = _read(arm_dir, name, "ms").strip() if name == src else ""
        if ms:
            row.detail += f" [arm64 {int(ms) / 1000:.1f} s]"
        rows.append(row)
    return rows


def render(rows: Iterable[Row], tol_lsb: float, max_problems: int = 5) -> str:
    rows = list(rows)
    width = max(len(r.case) for r in rows)
    out = [f"pi-check: arm64 (emulated) vs x86-64; scores within {tol_lsb:g}/256, "
           f"everything else exact", ""]
    out.append(f"{'case':<{width}}  result  detail")
    out.append(f"{'-' * width}  ------  {'-' * 40}")
    for r in rows:
        out.append(f"{r.case:<{width}}  {r.verdict:<6}  {r.detail}")
        for p in r.problems[:max_problems]:
            out.append(f"{'':<{width}}          ! {p}")
        if len(r.problems) > max_problems:
            out.append(f"{'':<{width}}          ! ... {len(r.problems) - max_problems} more")
    failed = sum(r.verdict == "FAIL" for r in rows)
    out += ["", "pi-check: " + ("PASS" if not failed else f"FAIL ({failed} case(s))")]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("x86_dir", type=Path)
    parser.add_argument("arm64_dir", type=Path)
    parser.add_argument("--tol-lsb", type=float, default=DEFAULT_TOL_LSB,
                        help="score tolerance in steps of 1/256 (default %(default)s)")
    parser.add_argument("--numpy-pin", default=None,
                        help="the NumPy version the venv must hold (from the Pi constraints)")
    parser.add_argument("--no-abi-control", action="store_true",
                        help="no abi-control case (trixie: no NumPy that breaks its extensions)")
    parser.add_argument("--debian-numpy-ok", action="store_true",
                        help="the pinned NumPy is Debian's own (trixie)")
    args = parser.parse_args(argv)
    rows = judge_all(args.x86_dir, args.arm64_dir, args.tol_lsb, args.numpy_pin,
                     abi_control=not args.no_abi_control, debian_numpy_ok=args.debian_numpy_ok)
    print(render(rows, args.tol_lsb))
    return 1 if any(r.verdict == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
