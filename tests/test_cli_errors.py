"""The command line's last line of defence: no traceback reaches a user, whatever fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge import cli

from .helpers import importable

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("exc, status, words", [
    (RuntimeError("boom"), 3, ["internal error", "RuntimeError: boom", "-vv"]),
    (MemoryError(), 3, ["internal error", "MemoryError"]),
])
def test_an_unexpected_failure_is_one_line(monkeypatch, capsys, exc, status, words):
    def fail(args):
        raise exc

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["check"].set_defaults(func=fail)
    assert cli.main(["check"]) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(w in err[0] for w in words), err
    assert "Traceback" not in err[0]


def test_a_closed_pipe_ends_quietly():
    """`emotion-edge classify ... | head -1`: no BrokenPipeError traceback, status 141."""
    clips = sorted(str(p) for p in (REPO / "demo" / "audio").glob("*.flac")) * 50
    proc = subprocess.Popen([sys.executable, "-m", "edge", "classify", *clips],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err, err


@pytest.mark.parametrize("command", ["classify", "classify-face"])
def test_a_closed_pipe_or_a_full_disk_is_the_outputs_fault_not_the_inputs(command):
    """classify-face blamed each remaining file ("demo/face.jpg: cannot be read (Broken pipe)")
    and went on decoding them all; classify into /dev/full was an internal error."""
    files = ([str(p) for p in sorted((REPO / "demo" / "audio").glob("*.flac"))] * 20
             if command == "classify" else [str(REPO / "demo" / "face.jpg")] * 40)
    proc = subprocess.Popen([sys.executable, "-m", "edge", command, *files],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == "", err
    if not Path("/dev/full").exists():
        return
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "edge", command, *files[:2]], stdout=full,
                              stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "emotion-edge: error: cannot write the output (No space left on device)"], done.stderr


def test_a_recording_that_cannot_even_be_looked_at_is_one_line_and_the_rest_go_on(tmp_path):
    """A name too long for the file system (as a folder one may not enter) raised OSError while
    the bands were chosen, before any file was classified: an internal error, and no result
    for the good files."""
    good = str(REPO / "demo" / "audio" / "03a01Fa.flac")
    too_long = str(tmp_path / ("x" * 300 + ".wav"))
    done = subprocess.run([sys.executable, "-m", "edge", "classify", "--json", good, too_long],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 1, done.stderr
    assert [json.loads(line)["path"] for line in done.stdout.splitlines()] == [good]
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"emotion-edge: error: {too_long}: cannot be read (File name too long")


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1))) + chunk(b"IEND", b""))


def test_bad_images_are_one_line_each_and_the_rest_still_classified(tmp_path, capsys):
    pytest.importorskip("cv2")
    pytest.importorskip("ai_edge_litert")
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header_only(50000, 50000))
    folder = tmp_path / "photos"
    folder.mkdir()
    face = str(REPO / "demo" / "face.jpg")
    assert cli.main(["classify-face", "--json", str(huge), str(folder), face]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 2 and "huge.png: declares more than" in err[0] and "is a folder" in err[1]
    assert face in captured.out


@pytest.mark.parametrize("flag, value, words", [
    ("--hop", "nan", "finite"), ("--hop", "inf", "finite"), ("--hop", "0", "greater than 0"),
    ("--threads", "0", "1 to 64"),
])
def test_meaningless_numbers_are_refused_by_name(capsys, flag, value, words):
    with pytest.raises(SystemExit) as info:
        cli.main(["classify", flag, value, str(REPO / "demo" / "audio" / "03a01Fa.flac")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and words in err and "Traceback" not in err


@pytest.mark.parametrize("plot, words", [
    ("missing/x.png", "does not exist"), ("x.txt", "must end in"), (".", "is a folder"),
])
def test_inspect_plot_paths_are_checked_before_reading(tmp_path, monkeypatch, capsys, plot, words):
    log = tmp_path / "d.jsonl"
    log.write_text("")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["inspect", "--log", str(log), "--plot", plot]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "internal error" not in err[0], err


def test_run_into_a_closed_pipe_stops_with_141():
    """`emotion-edge run ... | head -1`: the run ends (it used to go on writing to nothing)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "run", "--fast", "--mock-gpio", "--no-camera",
         "--config", "/dev/null", "--audio-file", str(REPO / "demo" / "conversation.flac")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_ffmpeg_says_nothing_of_damaged_video_frames(tmp_path):
    """FFmpeg's decoder threads report damaged frames ("[mpeg4 @ ...] ac-tex damaged") on fd 2
    after ``read()`` returned, where no quiet block catches them: only its log level does.  A
    fresh process, as a user's: stderr holds only our own one-line errors."""
    pytest.importorskip("cv2")
    pytest.importorskip("ai_edge_litert")
    from .fuzzing import _video_bytes

    base = _video_bytes(".avi", "XVID", 160, 120, 12)
    rng = np.random.default_rng(0)
    videos = []
    for i in range(40):
        data = np.frombuffer(base, np.uint8).copy()
        spots = rng.integers(2000, len(data), rng.integers(1, 40))
        data[spots] = rng.integers(0, 256, len(spots))
        videos.append(tmp_path / f"damaged{i}.avi")
        videos[-1].write_bytes(data.tobytes())
    face = str(REPO / "demo" / "face.jpg")
    proc = subprocess.run([sys.executable, "-m", "edge", "classify-face", "--json", face,
                           *map(str, videos)], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert face in proc.stdout
    # OpenCV's own FFmpeg log callback writes to stdout: nothing but JSON may be there.
    assert all(line.startswith("{") for line in proc.stdout.splitlines()), proc.stdout[:300]
    stray = [line for line in proc.stderr.splitlines()
             if not line.startswith("emotion-edge: error: ")]
    assert not stray, stray[:5]


@pytest.mark.parametrize("runtime, fix", [("litert", "emotion-edge[device]"),
                                          ("tflite-runtime", "pip install tflite-runtime"),
                                          ("tensorflow", "emotion-edge[convert]")])
def test_a_runtime_that_is_not_installed_names_what_installs_it(monkeypatch, capsys, runtime, fix):
    import importlib

    from edge.models import runtime as rt

    module = rt.RUNTIMES[runtime][0]
    real = importlib.import_module

    def missing(name, *args, **kw):
        if name == module:
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kw)

    monkeypatch.setattr(importlib, "import_module", missing)
    rc = cli.main(["classify", "--runtime", runtime, str(REPO / "demo" / "audio" / "03a01Wa.flac")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"runtime {runtime!r} is not installed" in err[0] and fix in err[0]


def test_a_file_for_the_other_command_says_which_command_reads_it(capsys):
    """A photo given to `classify`, a recording to `classify-face`, and a device that is no
    file: one line each, naming what to do instead of a conversion that cannot help."""
    photo, voice = REPO / "demo" / "face.jpg", REPO / "demo" / "audio" / "03a01Wa.flac"
    assert cli.main(["classify", str(photo), "/dev/null", str(voice)]) == 1
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 2 and str(voice) in out  # the recording is still classified
    assert str(photo) in lines[0] and "classify-face" in lines[0] and "ffmpeg" not in lines[0]
    assert lines[1] == "emotion-edge: error: /dev/null: not a regular file"
    assert cli.main(["classify-face", str(voice), str(photo)]) == 1
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(voice) in lines[0] and "`emotion-edge classify`" in lines[0]
    assert str(photo) in out


def test_warnings_read_like_the_commands_own_lines_and_v_adds_where_from(tmp_path):
    low = tmp_path / "call4k.wav"
    import soundfile as sf

    t = np.arange(8000) / 4000
    sf.write(low, (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 4000)
    for flags, start in (([], "emotion-edge: warning: "),
                         (["-v"], "WARNING edge.models.speech: ")):
        result = subprocess.run([sys.executable, "-m", "edge", *flags, "classify", str(low)],
                                capture_output=True, text=True, timeout=120, cwd=REPO)
        assert result.returncode == 0, result.stderr
        warned = [line for line in result.stderr.splitlines() if "4000 Hz" in line]
        assert len(warned) == 1 and warned[0].startswith(start + f"{low}:"), result.stderr


def test_a_file_name_that_is_not_utf8_is_shown_not_fatal():
    """A Latin-1 "café.wav" from a Windows USB stick stopped the batch on a UTF-8 terminal (and
    its lone surrogate made invalid JSON); then U+FFFD made two such names one."""
    import json
    import os

    from edge.commands import named, shown

    name = os.fsdecode(b"caf\xe9.wav")
    assert shown(name) == named(name) == "caf\\xe9.wav"
    assert named(os.fsdecode(b"\xff.jpg")) != named(os.fsdecode(b"\xfe.jpg"))
    json.dumps({"path": named(name)}).encode("utf-8")  # valid UTF-8 JSON text
    shown(name).encode("utf-8")  # what a strict UTF-8 stdout does
    assert shown("plain/ü.wav") == named("plain/ü.wav") == "plain/ü.wav"


def test_control_characters_in_a_name_keep_a_line_one_line():
    """A name with a newline split an error line in two, and one with an escape sequence
    reached the terminal; JSON keeps the name as it is (its own escapes are lossless)."""
    from edge.commands import named, one_line, shown

    assert shown("new\nline.wav") == "new\\nline.wav"
    assert shown("\x1b[2Jesc.wav") == "\\x1b[2Jesc.wav"
    assert one_line("a\tb: cut") == "a\\tb: cut"
    assert named("new\nline.wav") == "new\nline.wav"


@pytest.mark.parametrize("error, status", [("device", 75), ("config", 2)])
def test_a_missing_device_is_worth_another_try_and_a_config_error_is_not(monkeypatch, capsys,
                                                                          error, status):
    """The unit retries exit 75 every 10 s for as long as it takes (a USB microphone unplugged
    for a minute), and leaves exit 2 (a restart cannot mend a configuration) for its user."""
    from edge.commands import run as run_command
    from edge.errors import ConfigError, DeviceUnavailableError
    from edge.paths import shipped_file

    def fail(args):
        raise (DeviceUnavailableError("no input device name contains 'usb'") if error == "device"
               else ConfigError("loop.hop_s = -1 is below 0.05"))

    monkeypatch.setattr(run_command, "_main", fail)
    assert cli.main(["run"]) == status
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("emotion-edge: error: ")
    unit = shipped_file("emotion-edge.service").read_text()
    assert "RestartPreventExitStatus=2\n" in unit and "StartLimitIntervalSec=0\n" in unit


def test_a_signal_while_the_models_load_stops_the_run_cleanly(monkeypatch, capsys):
    """The handlers were installed after the imports and the configuration (seconds on a Pi):
    a SIGHUP then killed the process, which systemd took for a clean exit."""
    import os
    import signal

    from edge.commands import run as run_command

    def loading(args, stop_event):
        os.kill(os.getpid(), signal.SIGHUP)  # as if it came while the models load
        assert stop_event.is_set()
        return None

    monkeypatch.setattr(run_command, "_run", loading)
    before = signal.getsignal(signal.SIGHUP)  # SIG_IGN under nohup, as CI runs
    if before is signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        assert cli.main(["run"]) == 129
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL  # given back
    finally:
        signal.signal(signal.SIGHUP, before)
    assert capsys.readouterr().err == ""


def _edge(*argv: str, cwd: Path, env: dict[str, str] | None = None, closing: str = "",
          stdin: int | None = None) -> subprocess.CompletedProcess:
    """``python -m edge ARGV`` in ``cwd``; ``closing`` a shell redirection such as ``2>&-``."""
    import os

    command = [sys.executable, "-m", "edge", *argv]
    if closing:
        command = ["sh", "-c", f'exec "$@" {closing}', "sh", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, **(env or {})}, stdin=stdin)


def test_names_a_native_library_reads_as_something_else_are_read_as_files(tmp_path):
    """FFmpeg took "10:30.m4a" for a protocol ("Protocol not found"), and libsndfile read a
    file named "-" (or "./-") as standard input, then closed it: the whole batch ended with no
    output and exit 3.  Both are handed over by their absolute path now."""
    import shutil

    clip = REPO / "demo" / "audio" / "03a01Fa.flac"
    for name in ("10:30.flac", "-"):
        shutil.copy(clip, tmp_path / name)
    names = ["10:30.flac", "./-"]
    if importable("av"):
        shutil.copy(REPO / "demo" / "phone" / "08a02Tb.m4a", tmp_path / "call 10:30.m4a")
        names.append("call 10:30.m4a")
    result = _edge("classify", "--json", "--fresh", "--", *names, str(clip), cwd=tmp_path,
                   stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in rows] == ["10:30.flac", "-", *names[2:], str(clip)]  # ./- is -
    assert rows[0]["scores"] == rows[1]["scores"] == rows[-1]["scores"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)")
def test_a_video_and_a_model_whose_names_are_not_utf8_are_read(tmp_path):
    """A video named b"caf\\xe9.mp4" crashed the process (OpenCV's binding, a segmentation fault
    that took the other files with it), and such a model name was an internal error."""
    import os
    import shutil

    cv2 = pytest.importorskip("cv2")
    face = cv2.resize(cv2.imread(str(REPO / "demo" / "face.jpg")), (320, 240))
    writer = cv2.VideoWriter(str(tmp_path / "v.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                             (320, 240))
    for _ in range(3):
        writer.write(face)
    writer.release()
    base = os.fsencode(tmp_path)
    for src, dst in ((b"v.avi", b"caf\xe9.avi"), (b"v.avi", b"10:30.avi")):
        shutil.copy(base + b"/" + src, base + b"/" + dst)
    model = REPO / "models" / "face_expression_int8"
    for suffix in (".tflite", ".json"):
        shutil.copy(os.fsencode(f"{model}{suffix}"), base + b"/m\xe9" + suffix.encode())
    result = _edge("classify-face", "--json", "--model", os.fsdecode(b"m\xe9.tflite"), "--",
                   os.fsdecode(b"caf\xe9.avi"), "10:30.avi", str(REPO / "demo" / "face.jpg"),
                   cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["path"] for r in rows} == {"caf\\xe9.avi", "10:30.avi", str(REPO / "demo/face.jpg")}
    assert all(r["faces"] and r["faces"][0]["label"] == "happy" for r in rows)


def test_closed_or_narrow_standard_streams(tmp_path):
    """With stderr closed (2>&-) every command failed, its error line landing in the results;
    with stdout closed (>&-) the results were lost and the exit status said success; under an
    ASCII-only output encoding the first name with an "é" stopped the batch."""
    import shutil

    clip = tmp_path / "café.flac"
    shutil.copy(REPO / "demo" / "audio" / "03a01Fa.flac", clip)
    no_stderr = _edge("classify", "--json", "--fresh", clip.name, "missing.wav", cwd=tmp_path,
                      closing="2>&-")
    assert no_stderr.returncode == 1  # missing.wav: said on the closed stderr, and in the status
    assert [json.loads(line)["path"] for line in no_stderr.stdout.splitlines()] == ["café.flac"]
    no_stdin = _edge("classify", "--files-from", "-", cwd=tmp_path, closing="<&-")
    assert no_stdin.returncode == 2 and "no recording to classify" in no_stdin.stderr
    no_stdout = _edge("classify", "--fresh", clip.name, cwd=tmp_path, closing=">&-")
    assert no_stdout.returncode == 1 and "standard output is closed" in no_stdout.stderr
    ascii_out = _edge("classify", "--fresh", clip.name, "missing.wav", cwd=tmp_path,
                      env={"PYTHONIOENCODING": "ascii"})
    assert ascii_out.returncode == 1
    assert ascii_out.stdout.startswith("caf\\xe9.flac: ") and "missing.wav" in ascii_out.stderr


def test_an_interrupted_classify_says_how_far_it_got(monkeypatch, capsys):
    """Ctrl-C in a long batch ended silently with exit 130: where to resume was left to counting
    the output's lines."""
    from edge.commands import classify

    real = classify._classify_one
    calls = []

    def interrupted_at_the_second(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(classify, "_classify_one", interrupted_at_the_second)
    clips = sorted(str(p) for p in (REPO / "demo" / "audio").glob("*.flac"))
    assert cli.main(["classify", "--json", "--fresh", *clips]) == 130
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 and json.loads(out)["path"] == clips[0]
    assert err == f"emotion-edge: interrupted after 1 of {len(clips)} files\n"


def test_a_long_first_pass_shows_a_count_on_a_terminal_only(monkeypatch):
    """Adapting to 2,000 files printed nothing for half a minute; the count goes to a terminal
    only, never into a log or a pipe."""
    import io

    from edge import commands

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, shown_count in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        with commands.Progress("adapting", 3) as progress:
            for done in range(3):
                progress.step(done)
        text = stream.getvalue()
        assert ("adapting: 0 of 3\r" in text and text.endswith("\033[K")) is shown_count, text
        assert shown_count or text == ""


def test_log_lines_stay_one_line_with_and_without_v():
    """-v and -vv printed a name's newline and escape sequences raw (only the default output
    wrote them out); a -vv traceback still follows on lines of its own."""
    import logging

    from edge.cli import _OneLineFormatter, _UserFormatter

    record = logging.LogRecord("edge.x", logging.WARNING, __file__, 1, "%s: cut short",
                               ("new\nline\x1b[2J.wav",), None)
    assert _UserFormatter("%(message)s").format(record) == (
        "emotion-edge: warning: new\\nline\\x1b[2J.wav: cut short")
    verbose = _OneLineFormatter("%(levelname)s %(name)s: %(message)s")
    assert verbose.format(record) == "WARNING edge.x: new\\nline\\x1b[2J.wav: cut short"
    try:
        raise ValueError("boom")
    except ValueError:
        import sys as _sys

        record.exc_info = _sys.exc_info()
    assert verbose.format(record).count("\n") >= 2  # the traceback's own lines
