"""scripts/speech_decision_rules.py: the figures it prints come from the kept LOCO clips it reads,
and several runs are joined as one graph would join them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from convert.metrics import classification_metrics

from .script_loader import load_script

LABELS = ["neutral", "happy", "sad"]


def _run(folder: Path, probs: np.ndarray, y: np.ndarray) -> Path:
    folder.mkdir()
    np.savez(folder / "loco_a_clips.npz", labels=LABELS, y=y, adapted=probs, fresh=probs)
    return folder


def _argmax_uar(capsys, monkeypatch, *folders: Path) -> float:
    monkeypatch.setattr("sys.argv", ["speech_decision_rules.py", *map(str, folders)])
    load_script("speech_decision_rules").main()
    row = next(line for line in capsys.readouterr().out.splitlines()
               if line.startswith("| argmax | adapted |"))
    return float(row.split("|")[3])


def test_runs_are_joined_by_their_normalised_geometric_mean(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 50)
    p1, p2 = (rng.dirichlet(np.ones(3), size=y.size) for _ in range(2))
    a, b = _run(tmp_path / "a", p1, y), _run(tmp_path / "b", p2, y)

    def uar(p: np.ndarray) -> float:
        return round(classification_metrics(y, p.argmax(1), LABELS)["uar"], 3)

    joined = uar(np.log(p1) + np.log(p2))
    assert joined not in (uar(p1), uar(p2))  # the data can tell a join from either run
    assert _argmax_uar(capsys, monkeypatch, a) == uar(p1)
    assert _argmax_uar(capsys, monkeypatch, a, b) == joined
    assert _argmax_uar(capsys, monkeypatch, a, a) == uar(p1)


def test_runs_on_other_clips_are_refused_with_the_file_named(tmp_path, monkeypatch):
    y = np.repeat(np.arange(3), 4)
    probs = np.full((y.size, 3), 1 / 3)
    a = _run(tmp_path / "a", probs, y)
    b = _run(tmp_path / "b", probs, y[::-1].copy())
    monkeypatch.setattr("sys.argv", ["speech_decision_rules.py", str(a), str(b)])
    with pytest.raises(SystemExit, match="loco_a_clips.npz: not the same clips"):
        load_script("speech_decision_rules").main()
