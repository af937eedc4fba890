"""emotion-convert's last line of defence: a bad path, an interrupt or a bug is one line."""

from __future__ import annotations

import pytest

from convert import cli


@pytest.mark.parametrize("exc, status, words", [
    (KeyboardInterrupt(), 130, ["interrupted"]),
    (IsADirectoryError(21, "Is a directory", "/tmp/x"), 2, ["error: Is a directory: /tmp/x"]),
    (UnboundLocalError("cannot access local variable"), 3,
     ["internal error: UnboundLocalError", "--debug speech"]),
])
def test_a_failure_is_one_line(monkeypatch, capsys, exc, status, words):
    def fail(_args):
        raise exc

    parser = cli.build_parser()
    args = parser.parse_args(["speech", "--out", "x"])
    args.func = fail
    monkeypatch.setattr(cli, "build_parser", lambda: type("P", (), {
        "parse_args": staticmethod(lambda argv: args)})())
    assert cli.main(["speech"]) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(w in err[0] for w in words), err


def test_paths_that_are_not_there_name_the_fix(tmp_path, capsys):
    assert cli.main(["-q", "speech", "--csv", str(tmp_path / "none.csv"), "--out",
                     str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none.csv: no such CSV file" in err[0] and "--data" in err[0]
    assert cli.main(["-q", "speech", "--corpus", "ravdess:ravdess", "--data", str(tmp_path),
                     "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such corpus folder" in err[0]
    assert not (tmp_path / "out").exists()  # no empty output folder left behind by a typo


@pytest.mark.parametrize("argv, cached", [(["speech", "--out", "x", "--cache", "c"], True),
                                          (["speech", "--out", "x"], False),
                                          (["face", "--out", "x", "--fer", "f.npz"], False)])
def test_an_interrupt_mentions_the_cache_only_where_there_is_one(monkeypatch, capsys, argv,
                                                                 cached):
    def interrupt(_args):
        raise KeyboardInterrupt

    args = cli.build_parser().parse_args(argv)
    args.func = interrupt
    monkeypatch.setattr(cli, "build_parser", lambda: type("P", (), {
        "parse_args": staticmethod(lambda argv: args)})())
    assert cli.main(argv) == 130
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert ("cache" in err) == cached, err


def test_training_writes_into_the_shipped_models_only_when_asked():
    """The default --out was models/: a first try on one's own CSV replaced the shipped model,
    its manifest and the model card's pictures."""
    from pathlib import Path

    parser = cli.build_parser()
    assert parser.parse_args(["speech"]).out == Path("runs/speech")
    assert parser.parse_args(["face", "--fer", "f.npz"]).out == Path("runs/face")


def test_two_corpora_of_one_name_are_refused(tmp_path, capsys):
    """speech-score named each corpus after its CSV's folder, and two folders called emovo gave
    one entry of the output: the first corpus's figures were lost, with exit status 0."""
    for where in ("a", "b"):
        folder = tmp_path / where / "emovo"
        folder.mkdir(parents=True)
        (folder / "labels.csv").write_text("path,label,speaker\nx.wav,happy,s1\n")
    specs = [f"csv:{tmp_path}/{w}/emovo/labels.csv" for w in ("a", "b")]
    argv = ["speech-score", "--model", "unused.tflite", *sum((["--corpus", s] for s in specs), [])]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "both named 'emovo'" in err[0] and all(s in err[0] for s in specs)
