"""Packaging promises: `import edge` is light, the CLIs start, the README's commands exist."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("tensorflow", "cv2", "pyaudio", "picamera2", "gpiozero", "keras", "scipy", "librosa",
         "ai_edge_litert", "python_speech_features", "convert")


def test_import_edge_needs_no_heavy_dependencies():
    # Every module of the package, not a chosen few: a heavy import anywhere breaks a laptop.
    code = (
        "import sys, json, importlib, pkgutil, edge, edge.cli\n"
        "for m in pkgutil.walk_packages(edge.__path__, 'edge.'):\n"
        "    m.name.endswith('__main__') or importlib.import_module(m.name)\n"
        "edge.cli.build_parser()\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_console_scripts_answer_help():
    for module in ("edge", "convert"):
        out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                             text=True)
        assert out.returncode == 0 and "usage:" in out.stdout


def test_readme_names_the_test_and_demo_commands(request):
    readme = (request.config.rootpath / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    ci = (request.config.rootpath / ".ci" / "run").read_text()
    assert "make test" in ci


def test_models_installed_with_pip_install_user_are_found(tmp_path):
    """`pip install --user` puts the wheel's data under the user base (~/.local/share/...),
    where the lookup did not look: every command said the shipped model was not found."""
    import os
    import subprocess
    import sys

    models = tmp_path / "share" / "emotion-edge" / "models"
    models.mkdir(parents=True)
    (models / "only-here.tflite").write_bytes(b"x")
    env = {k: v for k, v in os.environ.items() if k != "EMOTION_EDGE_MODELS"}
    env["PYTHONUSERBASE"] = str(tmp_path)
    found = subprocess.run(
        [sys.executable, "-c", "from edge.paths import default_model; "
         "print(default_model('only-here.tflite'))"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == str(models / "only-here.tflite")
