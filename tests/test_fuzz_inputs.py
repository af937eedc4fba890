"""Property/fuzz suite (issue 19): whatever a user or an attacker feeds the CLI, it answers as
``edge/cli.py`` documents.

For every command and every generated input (corrupt audio, images, videos, configurations,
manifests; see ``tests/fuzzing.py``):

* the exit status is the documented one (0 done, 1 some inputs failed, 2 usage/configuration
  error) and never 3 (an internal error is a bug, whatever the input);
* each bad input gets exactly one stderr line, which names it, and nothing else reaches stderr
  (C libraries writing to fd 2 included: the output is captured at the file descriptor);
* no "Traceback" anywhere;
* the good inputs of the same call are still processed (their JSON line is on stdout, and that
  JSON is strict: no NaN);
* memory stays bounded for inputs whose headers declare enormous sizes.

The default profile keeps the file well under a minute; ``pytest --hypothesis-profile=long
tests/test_fuzz_inputs.py`` runs each property with that profile's example count (about 20 min).
Decision logs (``inspect --log``) are fuzzed in ``test_log_reader_malformed.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge import cli
from tests import fuzzing
from tests.fuzzing import Case

pytest.importorskip("cv2")
pytest.importorskip("soundfile")
pytest.importorskip("ai_edge_litert")

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
FACE_JPG = REPO / "demo" / "face.jpg"
LONG = settings.get_current_profile_name() == "long"


def fuzz(examples: int) -> settings:
    """``examples`` per property by default; the profile's count under the ``long`` profile."""
    return settings(
        max_examples=settings.default.max_examples if LONG else examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large],
    )


@dataclasses.dataclass
class Result:
    status: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def objects(self) -> list[dict[str, Any]]:
        """stdout as strict JSON lines (``NaN``/``Infinity`` are not JSON)."""
        def refuse(token: str) -> Any:
            raise AssertionError(f"non-finite number {token} in the JSON output:\n{self.out}")

        return [json.loads(line, parse_constant=refuse) for line in self.out.splitlines()
                if line.strip()]


def invoke(capfd: pytest.CaptureFixture[str], argv: Sequence[str]) -> Result:
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:  # a user would see them on stderr
        warnings.simplefilter("always")
        try:
            status = cli.main([str(a) for a in argv])
        except SystemExit as exc:  # argparse
            status = int(exc.code or 0)
    captured = capfd.readouterr()
    assert not caught, [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
                        for w in caught]
    result = Result(status, captured.out, captured.err)
    assert "Traceback" not in result.err, result.err
    assert status != 3, f"internal error for {list(argv)}:\n{result.err}"
    return result


@contextlib.contextmanager
def scratch_dir(base: Path) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def working_dir(folder: Path) -> Iterator[None]:
    """Configurations name relative paths; they must land in ``folder`` (the suite may run as
    root)."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.tinymodels import speech_wav

    folder = tmp_path_factory.mktemp("fuzz-media")
    good = {"wav": speech_wav(folder / "good.wav", 1.0),
            "wav2": speech_wav(folder / "good 48k.wav", 1.0, sr=48000),
            "jpg": folder / "face.jpg", "scratch": folder / "scratch"}
    shutil.copy(FACE_JPG, good["jpg"])
    good["scratch"].mkdir()
    return good


def check_per_input(result: Result, good: Sequence[Path], bad: Sequence[Path], *,
                    per_frame: bool = False) -> None:
    """Each input is either processed (its JSON on stdout) or named on exactly one stderr error
    line; a processed input may carry one warning (a recording too narrow for the model);
    nothing else is on stderr; the status says whether any failed."""
    objects = result.objects()
    warned = [line for line in result.err_lines if line.startswith("emotion-edge: warning: ")]
    lines = [line for line in result.err_lines if line not in warned]
    failed = 0
    for path in [*good, *bad]:
        printed = sum(1 for o in objects if o.get("path") == str(path))
        named = [line for line in lines if str(path) in line]
        cautions = [line for line in warned if str(path) in line]
        assert len(cautions) <= printed and all("Hz" in line for line in cautions), result
        if path in good:
            assert printed >= 1 and not named, (path, result)
        if per_frame:  # a video may fail part-way, after some of its frames were printed
            assert len(named) <= 1 and (printed >= 1 or named), (path, result)
        else:
            assert (printed == 1 and not named) or (printed == 0 and len(named) == 1), (path, result)
        failed += bool(named)
    for line in lines:
        assert line.startswith("emotion-edge: error: "), result
    assert all(any(str(path) in line for path in [*good, *bad]) for line in warned), result
    assert len(lines) == failed, f"stderr lines that name no input:\n{result.err}"
    assert result.status == (1 if failed else 0), result


def materialise(cases: Sequence[Case], folder: Path) -> list[Path]:
    return [fuzzing.write_case(case, folder, f"in{i}-{case.kind}") for i, case in enumerate(cases)]


# --- classify: audio files ---------------------------------------------------------------

@fuzz(40)
@given(cases=st.lists(fuzzing.audio_cases(), min_size=1, max_size=3), adapt=st.booleans())
@example(cases=[Case("wav-odd-format", ".wav",  # was a 25 GB resampler table: MemoryError
                     fuzzing.wav_bytes(rate=999983, payload=b"\x01\x00" * 100)),
                Case("folder", ".wav", folder=True), Case("fifo", ".flac", fifo=True)],
         adapt=True)
def test_classify_names_each_bad_audio_file_once_and_classifies_the_rest(
        capfd: pytest.CaptureFixture[str], media: dict[str, Path], cases: list[Case],
        adapt: bool) -> None:
    with scratch_dir(media["scratch"]) as folder:
        bad = materialise(cases, folder)
        good = [media["wav"], media["wav2"]]
        argv = ["classify", "--json", good[0], *bad, good[1]]
        result = invoke(capfd, [*argv, "--adapt"] if adapt else argv)
        check_per_input(result, good, bad)
        for obj in result.objects():
            assert all(0.0 <= v <= 1.0 for v in obj["scores"].values()), obj


@fuzz(30)
@given(cases=st.lists(fuzzing.audio_cases(), min_size=1, max_size=3))
def test_classify_names_each_bad_calibration_recording_once_and_classifies_every_file(
        capfd: pytest.CaptureFixture[str], media: dict[str, Path], cases: list[Case]) -> None:
    with scratch_dir(media["scratch"]) as folder:
        bad = materialise(cases, folder)
        good = [media["wav"], media["wav2"]]
        result = invoke(capfd, ["classify", "--json", *good,
                                *(arg for b in bad for arg in ("--adapt-from", b))])
        assert [o["path"] for o in result.objects()] == [str(g) for g in good], result
        errors = [line for line in result.err_lines if line.startswith("emotion-edge: error: ")]
        for path in bad:
            assert sum(str(path) in line for line in errors) <= 1, (path, result)
        assert all(sum(str(path) in line for path in bad) == 1 for line in errors), result
        others = [line for line in result.err_lines if line not in errors]
        # a readable recording of the other band (a low rate) calibrates the model it goes to
        assert all("no speech in the calibration recording" in line
                   or "no readable calibration recording" in line
                   or "no calibration recording in the" in line for line in others), result
        assert result.status == (1 if errors else 0), result


# --- classify-face: images and videos ----------------------------------------------------

@fuzz(40)
@given(cases=st.lists(st.one_of(fuzzing.image_cases(), fuzzing.video_cases()),
                      min_size=1, max_size=3),
       whole=st.booleans(), all_faces=st.booleans())
@example(cases=[Case("png-declared-size", ".png", fuzzing.png_header_only(0, 0)),  # libpng noise
                Case("png-declared-size", ".png", fuzzing.png_header_only(50000, 50000)),
                Case("empty", ".mp4", b"x")],  # FFmpeg's "moov atom not found"
         whole=False, all_faces=False)
@example(cases=[Case("png-1x1", ".png", fuzzing.png_1x1())],  # refused without naming the file
         whole=True, all_faces=False)
def test_classify_face_names_each_bad_image_or_video_once_and_classifies_the_rest(
        capfd: pytest.CaptureFixture[str], media: dict[str, Path], cases: list[Case],
        whole: bool, all_faces: bool) -> None:
    with scratch_dir(media["scratch"]) as folder:
        bad = materialise(cases, folder)
        argv = ["classify-face", "--json", media["jpg"], *bad]
        argv += ["--whole-image"] if whole else []
        result = invoke(capfd, [*argv, "--all-faces"] if all_faces else argv)
        check_per_input(result, [media["jpg"]], bad, per_frame=True)


# --- run: replayed audio, video, image ---------------------------------------------------

def check_run(result: Result, bad: Path) -> None:
    """``run`` on one recording: it plays (0, decisions on stdout, the summary on stderr) or it
    is refused at start (2, one line naming it)."""
    lines = result.err_lines
    if result.status == 0:
        assert result.objects(), result
        assert len(lines) == 1 and "s of audio" in lines[0], result
    else:
        assert result.status == 2, result
        assert len(lines) == 1 and lines[0].startswith("emotion-edge: error: "), result
        assert str(bad) in lines[0], result


RUN = ["run", "--fast", "--mock-gpio"]


#: For each kind of bad input to `run`: its generator and where it goes on the command line.
_RUN_INPUTS: dict[str, tuple[Any, Any]] = {
    "video": (fuzzing.video_cases, lambda m, bad: ["--audio-file", m["wav"], "--video-file", bad]),
    "image": (fuzzing.image_cases, lambda m, bad: ["--audio-file", m["wav"], "--image", bad]),
    "audio": (fuzzing.audio_cases, lambda m, bad: ["--audio-file", bad, "--image", m["jpg"]]),
}


@pytest.mark.parametrize("kind", sorted(_RUN_INPUTS))
@fuzz(13)
@given(data=st.data())
def test_run_refuses_a_bad_input_in_one_line(
        capfd: pytest.CaptureFixture[str], media: dict[str, Path], kind: str,
        data: st.DataObject) -> None:
    cases, arguments = _RUN_INPUTS[kind]
    with scratch_dir(media["scratch"]) as folder:
        (bad,) = materialise([data.draw(cases())], folder)
        check_run(invoke(capfd, [*RUN, *arguments(media, bad)]), bad)


# --- run and check: configuration files --------------------------------------------------

def _schema() -> dict[str, list[str]]:
    from edge.config import Config

    config = Config()
    return {f.name: [g.name for g in dataclasses.fields(getattr(config, f.name))]
            for f in dataclasses.fields(Config) if f.name != "source"}


def check_config_refusal(result: Result, config: Path, changed: str) -> None:
    lines = result.err_lines
    assert len(lines) == 1 and lines[0].startswith("emotion-edge: error: "), result
    names = [str(config), *changed.split(",")]
    assert any(name in lines[0] for name in names), (changed, result)


@fuzz(40)
@given(case=fuzzing.config_cases(_schema()))
def test_check_and_run_refuse_a_bad_config_alike_in_one_line(
        capfd: pytest.CaptureFixture[str], media: dict[str, Path],
        case: Case) -> None:
    changed, data = case.kind, case.data
    with scratch_dir(media["scratch"]) as folder, working_dir(folder):
        (folder / "folder").mkdir()
        config = folder / "config.toml"
        config.write_bytes(data)
        checked = invoke(capfd, ["check", "--no-devices", "--mock-gpio", "--config", config])
        assert checked.status in (0, 1, 2), checked
        if checked.status == 2:
            check_config_refusal(checked, config, changed)
        else:
            assert not checked.err_lines, checked
        ran = invoke(capfd, [*RUN, "--config", config, "--audio-file", media["wav"],
                             "--image", media["jpg"]])
        if ran.status == 0:
            assert ran.err_lines[-1:] and "s of audio" in ran.err_lines[-1], ran
            ran.objects()
        else:
            assert ran.status == 2, ran
            assert len(ran.err_lines) == 1, ran
            # `check` runs the validation `run` runs: it must not say "ready" for this.
            assert checked.status != 0, (changed, checked, ran)
        if checked.status == 2:
            assert ran.status == 2 and ran.err_lines == checked.err_lines, (checked, ran)


# A NUL byte in a path setting once passed validation: `check` said ready, then `run` ended in
# an internal error (embedded null byte).  Section.__post_init__ refuses control characters.
@pytest.mark.parametrize("key", ["log.file", "adapt.state_file"])
def test_a_nul_byte_in_a_written_path_is_a_config_error(
        capfd: pytest.CaptureFixture[str], media: dict[str, Path], key: str) -> None:
    section, name = key.split(".")
    with scratch_dir(media["scratch"]) as folder, working_dir(folder):
        config = folder / "config.toml"
        config.write_text(fuzzing.toml_text({section: {name: "x\x00y"}}))
        checked = invoke(capfd, ["check", "--no-devices", "--mock-gpio", "--config", config])
        assert checked.status == 2, checked
        check_config_refusal(checked, config, key)
        ran = invoke(capfd, [*RUN, "--config", config, "--audio-file", media["wav"]])
        assert ran.status == 2 and ran.err_lines == checked.err_lines, ran


# With log.file naming a folder, `check` once said ready while `run` refused it.
def test_check_refuses_a_folder_as_the_decision_log(
        capfd: pytest.CaptureFixture[str], media: dict[str, Path]) -> None:
    with scratch_dir(media["scratch"]) as folder, working_dir(folder):
        (folder / "folder").mkdir()
        config = folder / "config.toml"
        config.write_text(fuzzing.toml_text({"log": {"file": "folder"}}))
        ran = invoke(capfd, [*RUN, "--config", config, "--audio-file", media["wav"]])
        assert ran.status == 2, ran
        checked = invoke(capfd, ["check", "--no-devices", "--mock-gpio", "--config", config])
        assert checked.status != 0, checked


# --- manifests beside a copied model -----------------------------------------------------

@pytest.fixture(scope="module")
def copied_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("fuzz-models")
    out = {}
    for role, name in (("speech", "speech_emotion_int8"), ("face", "face_expression_int8")):
        model = MODELS / f"{name}.tflite"
        if not model.is_file():
            pytest.skip(f"{model} is not in this checkout")
        shutil.copy(model, folder / model.name)
        out[role] = folder / model.name
    return out


def _manifest(role: str) -> dict[str, Any]:
    name = {"speech": "speech_emotion_int8", "face": "face_expression_int8"}[role]
    path = MODELS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else {"labels": [], "input": {},
                                                                  "output": {}}


def check_manifest_refusal(result: Result, changed: str, model: Path, manifest: Path) -> None:
    """A refused model or manifest: status 2 and one error line naming one of them."""
    assert result.status == 2, (changed, result)
    lines = result.err_lines
    assert len(lines) == 1 and lines[0].startswith("emotion-edge: error: "), result
    assert str(model) in lines[0] or str(manifest) in lines[0], (changed, result)


@fuzz(25)
@given(case=fuzzing.manifest_mutations(_manifest("speech")))
def test_a_bad_speech_manifest_is_refused_in_one_line(
        capfd: pytest.CaptureFixture[str], media: dict[str, Path],
        copied_models: dict[str, Path], case: Case) -> None:
    changed, data = case.kind, case.data
    model = copied_models["speech"]
    manifest = model.with_suffix(".json")
    manifest.write_bytes(data)
    result = invoke(capfd, ["classify", "--json", "--model", model, media["wav"]])
    if result.status == 0:
        (obj,) = result.objects()
        assert all(0.0 <= v <= 1.0 for v in obj["scores"].values()), (changed, obj)
        assert not result.err_lines, result
    else:
        check_manifest_refusal(result, changed, model, manifest)


@fuzz(25)
@given(case=fuzzing.manifest_mutations(_manifest("face")))
@example(case=Case("labels \\r", ".json",  # a label broke the one error line in two
                   json.dumps({**_manifest("face"), "labels": ["\r"]}).encode()))
@example(case=Case("output.scale=nan", ".json",  # passed the check, then NaN scores
                   json.dumps({**_manifest("face"), "output": {
                       **_manifest("face").get("output", {}), "scale": math.nan}}).encode()))
def test_a_bad_face_manifest_is_refused_in_one_line(
        capfd: pytest.CaptureFixture[str], media: dict[str, Path],
        copied_models: dict[str, Path], case: Case) -> None:
    changed, data = case.kind, case.data
    model = copied_models["face"]
    manifest = model.with_suffix(".json")
    manifest.write_bytes(data)
    result = invoke(capfd, ["classify-face", "--json", "--whole-image", "--model", model,
                            media["jpg"]])
    if result.status == 0:
        (obj,) = result.objects()
        for face in obj["faces"]:
            assert all(0.0 <= v <= 1.0 for v in face["scores"].values()), (changed, obj)
        assert not result.err_lines, result
    else:
        check_manifest_refusal(result, changed, model, manifest)


# Each of these once reached the feature code (TypeError, decimal.InvalidOperation, "Maximum
# allowed size exceeded": status 3, or NaN features); MfccConfig and the speech classifier now
# check kinds and bounds.
def _bad(field: str, value: Any) -> Any:
    return pytest.param(field, value, id=f"{field}={value!r}"[:40])


@pytest.mark.parametrize("field, value", [
    pytest.param("n_ceps", "x", id="n_ceps='x'"),
    pytest.param("window", 3, id="window=3"),
    pytest.param("sample_rate", -1, id="sample_rate=-1"),
    *[_bad("sample_rate", v) for v in (1e308, math.nan, math.inf)],
    *[_bad("n_fft", v) for v in (1e308, math.nan, 2**70)],
    *[_bad("n_mels", v) for v in (math.inf, 2**70)],
    *[_bad("preemphasis", v) for v in (None, "x", [], math.inf)],
    *[_bad("lifter", v) for v in (None, "x", math.inf)],
    _bad("window_frames", math.inf),
    _bad("hop_frames", math.inf),
])
def test_a_speech_manifest_preprocessing_field_of_the_wrong_kind_is_refused(
        capfd: pytest.CaptureFixture[str], media: dict[str, Path],
        copied_models: dict[str, Path], field: str, value: Any) -> None:
    model = copied_models["speech"]
    manifest = _manifest("speech")
    manifest["preprocessing"][field] = value
    model.with_suffix(".json").write_text(json.dumps(manifest))
    result = invoke(capfd, ["classify", "--json", "--model", model, media["wav"]])
    assert result.status == 2, result
    assert len(result.err_lines) == 1 and str(model) in result.err_lines[0], result


@pytest.mark.parametrize("field, value", [("size", "x"), ("size", math.nan), ("size", math.inf),
                                          ("margin", "x"), ("size", None)])
def test_a_face_manifest_preprocessing_field_of_the_wrong_kind_is_refused(
        capfd: pytest.CaptureFixture[str], media: dict[str, Path],
        copied_models: dict[str, Path], field: str, value: Any) -> None:
    model = copied_models["face"]
    manifest = _manifest("face")
    manifest["preprocessing"][field] = value
    model.with_suffix(".json").write_text(json.dumps(manifest))
    result = invoke(capfd, ["classify-face", "--json", "--whole-image", "--model", model,
                            media["jpg"]])
    assert result.status == 2, result
    assert len(result.err_lines) == 1 and str(model) in result.err_lines[0], result


# --- memory ------------------------------------------------------------------------------

# VmHWM, not getrusage's ru_maxrss: the latter keeps the forking parent's (pytest's) peak.
_PEAK = """
import sys
from edge.cli import main
status = main(sys.argv[2:])
with open("/proc/self/status") as status_file, open(sys.argv[1], "w") as f:
    f.write(next(line.split()[1] for line in status_file if line.startswith("VmHWM:")))
sys.exit(status)
"""


def peak_rss_mb(argv: Sequence[Path | str], folder: Path) -> tuple[int, float, str]:
    """``(status, peak RSS in MB, stderr)`` of ``emotion-edge argv`` in a fresh interpreter."""
    report = folder / "peak.txt"
    proc = subprocess.run([sys.executable, "-c", _PEAK, str(report), *map(str, argv)],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, int(report.read_text()) / 1024, proc.stderr


#: Headroom over the same command on good inputs alone; the Pi has 1-8 GB and runs other things.
MEMORY_HEADROOM_MB = 150


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_inputs_declaring_huge_sizes_stay_in_bounded_memory(media: dict[str, Path]) -> None:
    folder = media["scratch"] / "memory"
    folder.mkdir()
    audio = []
    for i, rate in enumerate((999983, 2**31 - 1, 383999)):
        # A truthful header at an absurd (or merely odd) rate: the resampler's tables scale with
        # the rate ratio.
        audio.append(folder / f"rate{i}.wav")
        audio[-1].write_bytes(fuzzing.wav_bytes(rate=rate, payload=b"\x01\x00" * 4000))
    audio.append(folder / "declares 4 GB.wav")
    audio[-1].write_bytes(fuzzing.wav_bytes(data_size=0xFFFFFFF0, payload=b"\x00\x01" * 4000))
    images = []
    for w, h in ((50000, 50000), (9999, 9999), (2**31 - 1, 1)):
        images.append(folder / f"{w}x{h}.png")
        images[-1].write_bytes(fuzzing.png_header_only(w, h))

    for command, good, bad in (("classify", media["wav"], audio),
                               ("classify-face", media["jpg"], images)):
        status0, base, _ = peak_rss_mb([command, "--json", good], folder)
        status, peak, err = peak_rss_mb([command, "--json", *bad, good], folder)
        assert status0 == 0 and status in (0, 1), err
        assert peak <= base + MEMORY_HEADROOM_MB, (
            f"{command}: peak RSS {peak:.0f} MB on inputs declaring huge sizes, {base:.0f} MB on "
            f"a good input alone\n{err}")


# log.file naming the recording (or the config) appended decisions to it and, at the first
# rotation, renamed it away and deleted it.
def test_run_and_check_refuse_a_decision_log_that_is_another_file(
        capfd: pytest.CaptureFixture[str], media: dict[str, Path]) -> None:
    with scratch_dir(media["scratch"]) as folder, working_dir(folder):
        victim = folder / "recording.wav"
        shutil.copy(media["wav"], victim)
        before = victim.read_bytes()
        ran = invoke(capfd, [*RUN, "--audio-file", victim, "--log-file", victim])
        assert ran.status == 2 and len(ran.err_lines) == 1, ran
        assert "not a decision log" in ran.err_lines[0] and str(victim) in ran.err_lines[0]
        assert victim.read_bytes() == before
        config = folder / "config.toml"
        config.write_text(fuzzing.toml_text({"log": {"file": str(victim)}}))
        checked = invoke(capfd, ["check", "--no-devices", "--mock-gpio", "--config", config])
        assert checked.status != 0 and "not a decision log" in checked.out, checked
        # A log of its own is appended to, run after run.
        log = folder / "d.jsonl"
        counts = []
        for _ in range(2):
            assert invoke(capfd, [*RUN, "--audio-file", victim, "--log-file", log]).status == 0
            counts.append(len(log.read_text().splitlines()))
        assert counts[0] > 0 and counts[1] == 2 * counts[0]


# --no-camera said "speech only" but a replay's --image was still used for the face.
def test_no_camera_makes_a_replay_with_an_image_speech_only(
        capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        media: dict[str, Path]) -> None:
    with scratch_dir(media["scratch"]) as folder:
        log = folder / "d.jsonl"
        ran = invoke(capfd, [*RUN, "--audio-file", media["wav"], "--image", media["jpg"],
                             "--no-camera", "--log-file", log])
        assert ran.status == 0, ran
        assert "image is not used" in caplog.text
        faces = {json.loads(line)["face"]["state"] for line in log.read_text().splitlines()}
        assert faces == {"disabled"}
