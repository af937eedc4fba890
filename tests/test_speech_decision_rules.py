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


def _window_run(folder: Path, y: np.ndarray, window: dict[str, np.ndarray]) -> Path:
    """A LOCO folder whose corpus "a" kept window logits (``window``), not clip probabilities."""
    folder.mkdir()
    np.savez(folder / "loco_a_clips.npz", labels=LABELS, y=y, adapted=np.zeros((y.size, 3)),
             fresh=np.zeros((y.size, 3)), **window)
    return folder


def _window_uar(z: np.ndarray, group: np.ndarray, y: np.ndarray) -> float:
    """UAR of the clips whose windows have logits ``z``: the mean of their probabilities."""
    e = np.exp(z - z.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    clips = np.stack([p[group == i].mean(0) for i in range(y.size)])
    return round(classification_metrics(y, clips.argmax(1), LABELS)["uar"], 3)


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


def test_the_telephone_is_joined_only_when_every_run_kept_it(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(3), 50)
    p1, p2, t1, t2 = (rng.dirichlet(np.ones(3), size=y.size) for _ in range(4))
    a, b, c = (tmp_path / name for name in "abc")
    for folder, p, t in ((a, p1, t1), (b, p2, t2)):
        folder.mkdir()
        np.savez(folder / "loco_a_clips.npz", labels=LABELS, y=y, adapted=p, fresh=p,
                 telephone_adapted=t, telephone_fresh=t)
    _run(c, p2, y)

    def rows(*folders: Path) -> dict[str, float]:
        monkeypatch.setattr("sys.argv", ["speech_decision_rules.py", *map(str, folders)])
        load_script("speech_decision_rules").main()
        return {cells[2].strip(): float(cells[3]) for line in capsys.readouterr().out.splitlines()
                if line.startswith("| argmax |") for cells in [line.split("|")]}

    joined = rows(a, b)
    expected = round(classification_metrics(y, (np.log(t1) + np.log(t2)).argmax(1), LABELS)["uar"],
                     3)
    assert joined["telephone_adapted"] == joined["telephone_fresh"] == expected
    assert set(rows(a, c)) == {"adapted", "fresh"}


def test_runs_on_other_clips_are_refused_with_the_file_named(tmp_path, monkeypatch):
    y = np.repeat(np.arange(3), 4)
    probs = np.full((y.size, 3), 1 / 3)
    a = _run(tmp_path / "a", probs, y)
    b = _run(tmp_path / "b", probs, y[::-1].copy())
    monkeypatch.setattr("sys.argv", ["speech_decision_rules.py", str(a), str(b)])
    with pytest.raises(SystemExit, match="loco_a_clips.npz: not the same clips"):
        load_script("speech_decision_rules").main()


def test_branch_weights_are_scored_as_the_device_decides(tmp_path, capsys, monkeypatch):
    """--branches W: each window's softmax of W x compact + (1 - W) x pooled logits, a clip's
    probabilities their mean over its windows; W = 0.5 is the shipped graph's rule."""
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(3), 40)
    group = np.repeat(np.arange(y.size), 3)  # three windows a clip
    logits = rng.normal(scale=2.0, size=(group.size, 2, 3)).astype(np.float32)
    rows = np.arange(group.size)
    logits[rows, 0, y[group]] += 1.0  # both branches lean toward the truth, apart
    logits[rows, 1, y[group]] += 0.5
    window = {"adapted_window_logits": logits, "adapted_window_group": group,
              "fresh_window_logits": logits[:, ::-1], "fresh_window_group": group}
    folder = _window_run(tmp_path / "draw", y, window)
    expected = {w: _window_uar(w * logits[:, 0] + (1 - w) * logits[:, 1], group, y)
                for w in (0.0, 0.5, 1.0)}
    assert len(set(expected.values())) == 3  # the data tells the weights apart
    monkeypatch.setattr("sys.argv", ["speech_decision_rules.py", str(folder),
                                     "--branches", "0", "0.5", "1"])
    load_script("speech_decision_rules").main()
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines()
            if line.startswith(f"| {folder} |")]
    for w, row in zip((0.0, 0.5, 1.0), rows):
        assert float(row[2]) == w
        assert float(row[3]) == expected[w]  # adapted
        assert float(row[4]) == expected[1.0 - w]  # fresh holds the branches swapped
        assert row[5].strip() == "nan"  # no telephone view kept


def test_a_linear_branch_is_weighed_against_the_other_two(tmp_path, capsys, monkeypatch):
    """--linear W: the third branch's logits weighted W, the compact and pooled (1 - W) / 2
    each; W = 0 is the run's own control, the shipped graph's rule."""
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(3), 40)
    group = np.repeat(np.arange(y.size), 2)
    logits = rng.normal(scale=2.0, size=(group.size, 3, 3)).astype(np.float32)
    logits[np.arange(group.size), 2, y[group]] += 2.0  # the linear branch knows best
    views = {f"{v}_window_{k}": a for v in ("adapted", "fresh")
             for k, a in (("logits", logits), ("group", group))}
    folder = _window_run(tmp_path / "draw", y, views)
    expected = {w: _window_uar((1 - w) / 2 * (logits[:, 0] + logits[:, 1]) + w * logits[:, 2],
                               group, y)
                for w in (0.0, 0.5)}
    assert expected[0.5] > expected[0.0]
    monkeypatch.setattr("sys.argv", ["speech_decision_rules.py", str(folder),
                                     "--linear", "0", "0.5"])
    load_script("speech_decision_rules").main()
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines()
            if line.startswith(f"| {folder} |")]
    assert [(float(r[2]), float(r[3]), float(r[4])) for r in rows] == [
        (w, expected[w], expected[w]) for w in (0.0, 0.5)]
    two = _window_run(tmp_path / "two", y, {"adapted_window_logits": logits[:, :2],
                                            "adapted_window_group": group})
    monkeypatch.setattr("sys.argv", ["speech_decision_rules.py", str(two), "--linear", "0.2"])
    with pytest.raises(SystemExit, match="needs the LOCO of an ensemble with a linear branch"):
        load_script("speech_decision_rules").main()


def test_branch_weights_need_the_window_logits(tmp_path, monkeypatch):
    y = np.repeat(np.arange(3), 4)
    a = _run(tmp_path / "a", np.full((y.size, 3), 1 / 3), y)
    monkeypatch.setattr("sys.argv", ["speech_decision_rules.py", str(a), "--branches", "0.5"])
    with pytest.raises(SystemExit, match="loco_a_clips.npz: no window logits"):
        load_script("speech_decision_rules").main()


def test_class_offsets_are_fitted_on_the_other_corpora_only(tmp_path, capsys, monkeypatch):
    """--offsets: a pull toward one label that every corpus shares is undone, and the offset an
    unseen corpus is scored with is the one fitted on the other corpora's labels alone."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "draw"
    folder.mkdir()
    corpora = {}
    for name in ("a", "b", "c"):
        y = np.repeat(np.arange(3), 30)
        group = np.repeat(np.arange(y.size), 2)
        logits = rng.normal(size=(group.size, 2, 3)).astype(np.float32)
        logits[np.arange(group.size), :, y[group]] += 1.5
        logits[:, :, 0] += 4.0 if name == "a" else 2.0  # every corpus pulled toward neutral
        corpora[name] = (y, group, logits)
        views = {f"{v}_window_{k}": x for v in ("adapted", "fresh")
                 for k, x in (("logits", logits), ("group", group))}
        np.savez(folder / f"loco_{name}_clips.npz", labels=LABELS, y=y,
                 adapted=np.zeros((y.size, 3)), fresh=np.zeros((y.size, 3)), **views)
    script = load_script("speech_decision_rules")

    def windows(name: str) -> tuple[np.ndarray, np.ndarray]:
        y, group, logits = corpora[name]
        return logits.mean(axis=1), y[group]

    offsets = script.fit_offsets([windows("b"), windows("c")])
    assert offsets[0] < offsets[1] - 1.0 and offsets[0] < offsets[2] - 1.0  # the pull, undone
    y, group, _ = corpora["a"]
    expected = {}
    for key, b in (("none", 0.0), ("fitted", offsets)):
        probs = script.clip_probabilities(windows("a")[0] + b, group, y.size)
        expected[key] = round(classification_metrics(y, probs.argmax(1), LABELS)["uar"], 3)
    assert expected["fitted"] > expected["none"]
    with_a = script.fit_offsets([windows("a"), windows("b"), windows("c")])
    leaked = script.clip_probabilities(windows("a")[0] + with_a, group, y.size)
    # the data tells offsets fitted with a's own labels from those fitted without
    assert round(classification_metrics(y, leaked.argmax(1), LABELS)["uar"], 3) != expected["fitted"]

    own = script.clip_probabilities(windows("a")[0] + script.fit_offsets([windows("a")]), group,
                                    y.size)
    expected["own labels"] = round(classification_metrics(y, own.argmax(1), LABELS)["uar"], 3)
    assert expected["own labels"] > expected["fitted"]  # the bound uses what no device has

    monkeypatch.setattr("sys.argv", ["speech_decision_rules.py", str(folder), "--offsets"])
    script.main()
    rows = {line.split("|")[2].strip(): line for line in capsys.readouterr().out.splitlines()
            if line.startswith(f"| {folder} |")}
    for key, uar in expected.items():
        assert f"a {uar:.3f} / {uar:.3f}" in rows[key]


def test_class_offsets_score_the_graph_with_its_linear_branch(tmp_path, capsys, monkeypatch):
    """--offsets --linear W: the offsets are fitted on, and added to, the graph whose linear
    branch weighs W, not the two-branch graph without it."""
    rng = np.random.default_rng(5)
    folder = tmp_path / "draw"
    folder.mkdir()
    y = np.repeat(np.arange(3), 30)
    group = np.repeat(np.arange(y.size), 2)
    for name in ("a", "b"):
        logits = rng.normal(scale=2.0, size=(group.size, 3, 3)).astype(np.float32)
        logits[np.arange(group.size), 2, y[group]] += 3.0  # only the linear branch knows
        views = {f"{v}_window_{k}": x for v in ("adapted", "fresh")
                 for k, x in (("logits", logits), ("group", group))}
        np.savez(folder / f"loco_{name}_clips.npz", labels=LABELS, y=y,
                 adapted=np.zeros((y.size, 3)), fresh=np.zeros((y.size, 3)), **views)
        if name == "a":
            graph = _window_uar(0.25 * (logits[:, 0] + logits[:, 1]) + 0.5 * logits[:, 2], group,
                                y)
            two = _window_uar(0.5 * (logits[:, 0] + logits[:, 1]), group, y)
    assert graph != two  # the data tells the graphs apart

    def none_row(*extra: str) -> str:
        monkeypatch.setattr("sys.argv", ["speech_decision_rules.py", str(folder), "--offsets",
                                         *extra])
        load_script("speech_decision_rules").main()
        return next(line for line in capsys.readouterr().out.splitlines()
                    if line.startswith(f"| {folder} | none"))

    assert f"a {graph:.3f} / {graph:.3f}" in none_row("--linear", "0.5")
    assert f"a {two:.3f} / {two:.3f}" in none_row()
    monkeypatch.setattr("sys.argv", ["speech_decision_rules.py", str(folder), "--offsets",
                                     "--linear", "0", "0.5"])
    with pytest.raises(SystemExit, match="at most one --linear weight"):
        load_script("speech_decision_rules").main()


def test_each_branch_is_scored_alone_and_left_out_in_every_view(tmp_path, capsys, monkeypatch):
    """--alone --linear W: the graph, each branch alone and the graph without each (the other
    two keeping their shares), in each view kept, the mostly-neutral room's too; so a view's
    loss is traced to the branch it comes from."""
    rng = np.random.default_rng(6)
    y = np.repeat(np.arange(3), 40)
    group = np.repeat(np.arange(y.size), 2)
    logits = rng.normal(scale=2.0, size=(group.size, 3, 3)).astype(np.float32)
    logits[np.arange(group.size), :, y[group]] += 1.5
    room = logits.copy()
    room[:, 2, 2] += 3.0  # in the calm room only the linear branch leans to one label
    views = {f"{v}_window_{k}": a for v, lg in (("adapted", logits), ("fresh", logits),
                                               ("neutral_room", room))
             for k, a in (("logits", lg), ("group", group))}
    folder = _window_run(tmp_path / "draw", y, views)
    weights = {"graph": (0.35, 0.35, 0.3), "compact alone": (1, 0, 0), "pooled alone": (0, 1, 0),
               "linear alone": (0, 0, 1), "without compact": (0, 0.35 / 0.65, 0.3 / 0.65),
               "without pooled": (0.35 / 0.65, 0, 0.3 / 0.65), "without linear": (0.5, 0.5, 0)}
    expected = {name: tuple(_window_uar(np.tensordot(lg, np.array(w), axes=([1], [0])), group, y)
                            for lg in (logits, room))
                for name, w in weights.items()}
    assert expected["linear alone"][1] < expected["linear alone"][0]  # the room tells
    assert expected["without linear"][1] == expected["without linear"][0]
    monkeypatch.setattr("sys.argv", ["speech_decision_rules.py", str(folder), "--alone",
                                     "--linear", "0.3"])
    load_script("speech_decision_rules").main()
    rows = {cells[2].strip(): (float(cells[3]), float(cells[7]))
            for line in capsys.readouterr().out.splitlines()
            if line.startswith(f"| {folder} |") for cells in [line.split("|")]}
    assert rows == expected
    monkeypatch.setattr("sys.argv", ["speech_decision_rules.py", str(folder), "--alone"])
    with pytest.raises(SystemExit, match="--alone takes one --linear weight"):
        load_script("speech_decision_rules").main()


def test_over_calls_are_damped_and_rare_emotions_left_alone():
    """over-calls damped: an emotion called more often than the emotions' mean is divided back
    to it, neutral and each clip's emotional mass are kept, and an emotion the deployment never
    calls is not raised (emotions equalised would raise it)."""
    script = load_script("speech_decision_rules")
    rng = np.random.default_rng(7)
    p = rng.dirichlet(np.ones(4), size=200)  # neutral, then three emotions
    p[:, 1] *= 4.0  # the deployment is pulled toward the first emotion
    p[:, 3] *= 0.05  # and hardly ever hears the last
    p /= p.sum(axis=1, keepdims=True)
    for rule in (script.over_calls_damped, script.emotions_equalised):
        q = rule(p.copy(), 0)
        np.testing.assert_allclose(q[:, 0], p[:, 0])
        np.testing.assert_allclose(q.sum(axis=1), 1.0)
    m = p[:, 1:].mean(axis=0)
    damped = script.over_calls_damped(p.copy(), 0)[:, 1:]
    expected = p[:, 1:] / np.maximum(m, m.mean())
    expected *= (p[:, 1:].sum(axis=1) / expected.sum(axis=1))[:, None]
    np.testing.assert_allclose(damped, expected)
    assert damped[:, 0].mean() < p[:, 1].mean()  # the pull is undone
    # the rarely called emotion keeps its ratio to the one that is neither pulled nor rare
    np.testing.assert_allclose(damped[:, 2] / damped[:, 1], p[:, 3] / p[:, 2])
    equalised = script.emotions_equalised(p.copy(), 0)[:, 1:]
    assert equalised[:, 2].mean() > 5 * damped[:, 2].mean()


def test_each_rule_is_scored_where_only_four_labels_occur_and_per_corpus(tmp_path, capsys,
                                                                          monkeypatch):
    """The table's four-label cell scores the corpus's neutral, happy, sad and angry clips alone
    (decided among every label), and its per-corpus cell each corpus's LOCO UAR."""
    labels = ["neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    rng = np.random.default_rng(8)
    y = np.repeat(np.arange(7), 20)
    p = rng.dirichlet(np.ones(7), size=y.size)
    p[np.arange(y.size), y] += 0.3  # a model that leans toward the truth
    p[:, 4] += 0.4  # and over-calls fearful, which the four-label deployment never hears
    p /= p.sum(axis=1, keepdims=True)
    folder = tmp_path / "draw"
    folder.mkdir()
    np.savez(folder / "loco_x_clips.npz", labels=labels, y=y, adapted=p, fresh=p)
    monkeypatch.setattr("sys.argv", ["speech_decision_rules.py", str(folder)])
    load_script("speech_decision_rules").main()
    row = next(line.split("|") for line in capsys.readouterr().out.splitlines()
               if line.startswith("| argmax | adapted |"))
    four = y < 4
    pred = p[four].argmax(1)
    expected = (round(classification_metrics(y[four], pred, labels)["uar"], 3),
                round(float(np.mean(pred == y[four])), 3))
    full = round(classification_metrics(y, p.argmax(1), labels)["uar"], 3)
    assert expected[0] != full  # the data tells the four-label deployment from the corpus
    assert row[6].strip() == f"{expected[0]:.3f} / {expected[1]:.3f}"
    assert row[8].strip() == f"x {full:.3f}"
