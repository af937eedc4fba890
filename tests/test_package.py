"""Packaging promises: `import edge` is light, the CLIs start, the README's commands exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_a_wheel_install_finds_its_models_recipes_and_card_outside_the_clone(tmp_path, request):
    """From an installed wheel the documented `--recipe recipes/speech.toml` said "not found"
    (the recipes were not packaged), and a system-wide install on Debian, whose data goes under
    /usr/local rather than sys.prefix, found no model.  The wheel now carries the recipes and
    the model card, and the lookup starts from the installation the package is in.  The build
    leaves the clone as it was: no build/ whose stale modules a later wheel would carry."""
    root = request.config.rootpath
    had_build = (root / "build").exists()
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         str(root), "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    assert (root / "build").exists() == had_build
    (wheel,) = (tmp_path / "dist").glob("emotion_edge-*.whl")
    prefix = tmp_path / "prefix"
    installed = subprocess.run(
        # --ignore-installed: else pip uninstalls the environment's own emotion-edge first.
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--ignore-installed", "--prefix", str(prefix), str(wheel)],
        capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    (site,) = prefix.glob("lib/python*/site-packages")
    code = ("import json, edge\n"
            "from edge.paths import default_model, shipped_file\n"
            "from convert.recipe import recipe_path\n"
            "print(json.dumps([edge.__file__, str(default_model('speech_emotion_int8.tflite')),"
            " str(recipe_path('recipes/speech.toml')), str(recipe_path('face')),"
            " str(recipe_path('models/face_expression_int8.json')),"
            " str(shipped_file('emotion-edge.service'))]))")
    env = {k: v for k, v in os.environ.items() if k != "EMOTION_EDGE_MODELS"}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    package, *found = json.loads(out.stdout)
    assert package.startswith(str(site))
    share = prefix / "share" / "emotion-edge"
    assert found == [str(share / "models" / "speech_emotion_int8.tflite"),
                     str(share / "recipes" / "speech.toml"), str(share / "recipes" / "face.toml"),
                     str(share / "models" / "face_expression_int8.json"),
                     str(share / "systemd" / "emotion-edge.service")]
    assert (share / "models" / "README.md").read_text() == (root / "models" / "README.md").read_text()


def test_emotion_convert_without_its_extra_names_the_extra(monkeypatch, capsys):
    """Without tensorflow or scipy, `emotion-convert speech` said "internal error ... please
    report it"."""
    from convert import cli

    def needs_keras(args):
        raise ModuleNotFoundError("No module named 'keras'", name="keras")

    import argparse

    args = argparse.Namespace(func=needs_keras, command="speech", debug=False, quiet=True)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", lambda self, argv=None: args)
    assert cli.main(["speech"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "keras is not installed" in err and "[convert]" in err


def test_the_source_distribution_holds_what_its_tests_and_docs_use(tmp_path, request):
    """The sdist had tests/test_*.py but not the conftest and helpers they import, nor the
    constraints files the install commands pass, the recipes or the model card."""
    import tarfile

    root = request.config.rootpath
    built = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path)],
                           cwd=root, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (sdist,) = tmp_path.glob("emotion[-_]edge-*.tar.gz")  # setuptools >= 69.3: emotion_edge
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    tracked = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True)
    wanted = ({"tests/conftest.py", "tests/helpers.py", "tests/fixtures/golden_speech.json",
               "constraints.txt", "constraints-pi-bookworm.txt", "recipes/speech.toml",
               "models/README.md", "Makefile", "demo/face.jpg", "docs/appliance.md"}
              if tracked.returncode else
              {n for n in tracked.stdout.split() if not n.startswith((".ci/", ".git"))})
    assert wanted <= names, sorted(wanted - names)
    assert not any(n.endswith((".pyc", ".keras")) or "__pycache__" in n for n in names)


def test_a_missing_recipe_path_of_ones_own_is_not_swapped_for_a_shipped_one(tmp_path,
                                                                             monkeypatch):
    """Only the docs' spellings (recipes/NAME.toml, models/NAME.json, a bare name) fall back to
    the shipped files: a mistyped myproject/recipes/speech.toml trained the shipped recipe."""
    from convert.recipe import recipe_path

    monkeypatch.chdir(tmp_path)
    for own in ("myproject/recipes/speech.toml", "old/models/speech_emotion_int8.json"):
        assert recipe_path(own) == Path(own)
    assert recipe_path("speech").name == "speech.toml" and recipe_path("speech").is_file()
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "speech.toml").write_text("# mine\n")
    assert recipe_path("recipes/speech.toml") == Path("recipes/speech.toml")  # one's own first
