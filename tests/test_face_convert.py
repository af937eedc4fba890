"""The face pipeline end to end on synthetic faces: train, structural pruning, int8 export."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from .face_fixtures import SYNTH_LABELS, tiny_face_run  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


def test_pruning_makes_a_physically_smaller_model(tiny_face_run):  # noqa: F811
    r = tiny_face_run["report"]
    assert r["pruned"]["params"] < 0.6 * r["parent"]["params"]
    assert r["pruned"]["macs"] < 0.6 * r["parent"]["macs"]
    assert r["pruned"]["int8_bytes"] < r["parent"]["int8_bytes"]
    assert all(p < q for p, q in zip(r["pruned"]["widths"], r["parent"]["widths"]))
    # Gradual pruning (the default) faded the removed channels to zero first.
    assert r["recipe"]["prune_schedule"] == "gradual" and len(r["ramp_history"]["loss"]) == 1
    assert r["pruned_before_finetune"]["removal_max_abs_logit_change"] < 1e-3


def test_int8_model_loads_with_a_complete_manifest(tiny_face_run):  # noqa: F811
    from edge.features.face import FacePreprocessConfig
    from edge.models.face import FaceClassifier
    from edge.models.manifest import load_manifest

    m = load_manifest(tiny_face_run["model"])
    assert m.labels == SYNTH_LABELS
    assert m.input.dtype == "int8" and m.output.dtype == "int8"
    assert m.preprocessing == FacePreprocessConfig().to_dict()
    assert m.fusion_map == {"happy": "happy", "sad": "sad", "surprise": "surprised"}
    assert 0.0 <= m.metrics["report_accuracy_int8"] <= 1.0
    assert 0.0 <= m.metrics["report_accuracy_int8_single_pass"] <= 1.0
    assert "mirror" in m.metrics["inference"]
    assert m.metrics["params"] == tiny_face_run["report"]["pruned"]["params"]
    with FaceClassifier(tiny_face_run["model"]) as clf:
        face = clf.classify_crop(np.full((48, 48), 128, np.uint8))
    assert set(face.scores) == set(SYNTH_LABELS)
    assert sum(face.scores.values()) == pytest.approx(1.0, abs=0.05)
    assert (tiny_face_run["base"] / "models" / "face_confusion.png").stat().st_size > 1000
    report = json.loads((tiny_face_run["base"] / "models" / "reports" / "face" /
                         "face_report.json").read_text())
    assert report["pruned"]["int8_parity_report"]["n"] > 0


def test_pruned_model_keeps_the_surviving_weights():
    pytest.importorskip("tensorflow")
    from convert.face_model import StudentSpec, build_student, count_macs, prune_student

    spec = StudentSpec(widths=(8, 16, 16), pool_after=(1,), stem_stride=2)
    parent = build_student(spec)
    rng = np.random.default_rng(0)
    for layer in parent.layers:  # distinct BN scales so the ranking is well defined
        if layer.name.endswith("_bn"):
            w = layer.get_weights()
            w[0] = rng.uniform(0.1, 1.0, w[0].shape).astype(np.float32)
            w[3] = rng.uniform(0.5, 2.0, w[3].shape).astype(np.float32)
            layer.set_weights(w)
    pruned, pspec, keep = prune_student(parent, spec, 0.5)
    assert pspec.widths == (4, 8, 8)
    g = np.abs(parent.get_layer("conv1_bn").get_weights()[0])
    assert set(keep[1]) == set(np.argsort(-g)[:8])
    k_parent = parent.get_layer("conv1").get_weights()[0]
    k_pruned = pruned.get_layer("conv1").get_weights()[0]
    np.testing.assert_array_equal(k_pruned, k_parent[:, :, keep[0], :][..., keep[1]])
    # MACs: stem 24*24*9*8 + dw 24*24*9*8 + pw 24*24*8*16 + ... counted by hand for the parent
    expected = 24 * 24 * 9 * 8 + 24 * 24 * (9 * 8 + 8 * 16) + 12 * 12 * (9 * 16 + 16 * 16) + 16 * 7
    assert count_macs(parent) == expected
    # Cutting the pruned channels' outgoing connections in the parent must give the pruned
    # model's output exactly: the surviving weights were copied to the right places.
    x = rng.uniform(-1, 1, (4, 48, 48, 1)).astype(np.float32)
    for i, kept in enumerate(keep):
        drop = np.setdiff1d(np.arange(spec.widths[i]), kept)
        nxt = parent.get_layer(f"conv{i + 1}" if i + 1 < len(keep) else "logits")
        w = nxt.get_weights()
        if nxt.name == "logits":
            w[0][drop] = 0.0
        else:
            w[0][:, :, drop, :] = 0.0
        nxt.set_weights(w)
    np.testing.assert_allclose(np.asarray(parent(x, training=False)),
                               np.asarray(pruned(x, training=False)), atol=1e-4)


def test_explicit_pruned_widths_keep_each_layers_most_important_channels():
    pytest.importorskip("tensorflow")
    from convert.face_model import StudentSpec, build_student, prune_student

    spec = StudentSpec(widths=(8, 16, 16), pool_after=(1,), stem_stride=2)
    parent = build_student(spec)
    rng = np.random.default_rng(3)
    for layer in parent.layers:
        if layer.name.endswith("_bn"):
            w = layer.get_weights()
            w[0] = rng.uniform(0.1, 1.0, w[0].shape).astype(np.float32)
            layer.set_weights(w)
    # Unequal cuts: the first layer loses half, the last keeps 12 of 16.
    pruned, pspec, keep = prune_student(parent, spec, 0.5, widths=(4, 10, 12))
    assert pspec.widths == (4, 10, 12)
    assert [len(k) for k in keep] == [4, 10, 12]
    for i, kept in enumerate(keep):
        g = np.abs(parent.get_layer(f"conv{i}_bn").get_weights()[0])
        assert set(kept) == set(np.argsort(-g)[: len(kept)])
    assert pruned.get_layer("logits").get_weights()[0].shape == (12, 7)
    with pytest.raises(ValueError, match="each from 1 to that convolution's width"):
        prune_student(parent, spec, 0.5, widths=(4, 10, 0))


def test_residual_adds_tie_the_channels_pruned_on_both_sides():
    pytest.importorskip("tensorflow")
    from convert.face_model import StudentSpec, build_student, prune_student, select_channels

    spec = StudentSpec(widths=(8, 16, 16, 16), pool_after=(3,), stem_stride=2, residual=(2, 3))
    assert spec.channel_groups() == [[0], [1, 2, 3]]
    parent = build_student(spec)
    assert [layer.name for layer in parent.layers if layer.name.startswith("res")] == [
        "res2", "res3"]
    rng = np.random.default_rng(5)
    for layer in parent.layers:
        if layer.name.endswith("_bn"):
            w = layer.get_weights()
            w[0] = rng.uniform(-1.0, 1.0, w[0].shape).astype(np.float32)
            layer.set_weights(w)
    gammas = [np.abs(parent.get_layer(f"conv{i}_bn").get_weights()[0]) for i in (1, 2, 3)]
    keep = select_channels(parent, spec, 0.5)
    # One choice for the whole group, by the summed importance, which no single layer's
    # ranking gives here (so the test can tell the two apart).
    expected = set(np.argsort(-sum(gammas))[:8])
    assert all(set(k) == expected for k in keep[1:])
    assert any(set(np.argsort(-g)[:8]) != expected for g in gammas)
    pruned, pspec, _ = prune_student(parent, spec, 0.5, keep=keep)
    assert pspec.residual == (2, 3) and pspec.widths == (4, 8, 8, 8)
    assert pruned.count_params() < parent.count_params()
    untied = [*keep[:3], np.setdiff1d(np.arange(16), keep[3])]  # same width, other channels
    with pytest.raises(ValueError, match=r"convolutions \[1, 2, 3\] meet at a residual add"):
        prune_student(parent, spec, 0.5, keep=untied)


def test_augmentation_keeps_the_input_range():
    """Keras' RandomContrast clips to (0, 255) unless told otherwise, which once wiped every dark
    pixel of the [-1, 1] training images; the augmenter must keep the range."""
    pytest.importorskip("tensorflow")
    from convert.face_train import _augmenter

    x = np.tile(np.linspace(-1, 1, 48, dtype=np.float32), (8, 48, 1))[..., None]
    y = np.asarray(_augmenter(0)(x, training=True))
    assert y.min() < -0.5 and y.max() > 0.5
    assert np.corrcoef(x.ravel(), y.ravel())[0, 1] > 0.5


def test_fine_tune_targets_average_teacher_and_parent_log_probabilities():
    pytest.importorskip("tensorflow")
    from convert.face import _finetune_targets
    from convert.face_model import StudentSpec, build_student
    from convert.face_train import predict_logits

    parent = build_student(StudentSpec(widths=(4, 8), pool_after=(0,), num_classes=3))
    x = np.random.default_rng(0).uniform(-1, 1, (5, 48, 48, 1)).astype(np.float32)
    t = np.log(np.array([[0.7, 0.2, 0.1]] * 5, np.float32)) + 4.0  # any logit offset
    p = predict_logits(parent, x)
    got, got_flip = _finetune_targets("ensemble", parent, x, t, t)
    log_p = p - np.log(np.exp(p).sum(1, keepdims=True))
    np.testing.assert_allclose(got, (np.log([[0.7, 0.2, 0.1]]) + log_p) / 2, atol=1e-5)
    assert got_flip.shape == got.shape
    np.testing.assert_allclose(_finetune_targets("parent", parent, x, t, t)[0], p, atol=1e-6)
    assert _finetune_targets("teacher", parent, x, t, t)[0] is t
    # Without a teacher the ensemble falls back to the parent alone.
    np.testing.assert_allclose(_finetune_targets("ensemble", parent, x, None, None)[0], p, atol=1e-6)


@pytest.mark.parametrize("argv, needle", [
    (["--pool-after", "1,x"], "--pool-after '1,x' must be comma-separated integers"),
    (["--widths", "8,16", "--pool-after", "5"], "--widths 8,16 --pool-after 5 --residual none: "
     "pooling after convolution(s) [5]: convolutions are numbered 0 to 1"),
    (["--widths", "8,16,16,16,16,16,16", "--pool-after", "0,1,2,3,4,5,6"],
     "7 poolings after a stride 1 stem shrink a 48x48 input to nothing; pool less often"),
    (["--ramp-epochs", "0"], "gradual pruning needs at least 1 ramp epoch"),
    (["--pruned-widths", "8,16"], "pruned widths [8, 16] need one width per parent convolution (8)"),
    (["--widths", "8,16", "--pool-after", "0", "--pruned-widths", "8,20"],
     "each from 1 to that convolution's width in [8, 16]"),
    (["--widths", "8,16", "--pool-after", "", "--residual", "1"],
     "--pool-after none --residual 1: residual block 1 adds its input to its output, so "
     "widths 0 and 1"),
    (["--widths", "8,8,8", "--pool-after", "0", "--residual", "1"],
     "cannot follow pooling after block 0"),
    (["--residual", "3,5,7", "--pruned-widths", "12,24,40,44,84,84,124,124"],
     "pruned widths [12, 24, 40, 44, 84, 84, 124, 124]: residual block 3 adds its input to "
     "its output, so widths 2 and 3 must be equal, not 40 and 44"),
    (["--ema", "1"], "--ema: ema_decay 1.0 must be in [0, 1)"),
    (["--adapt-epochs", "3"], "--adapt-epochs trains a reused parent; give --parent KERAS too"),
    (["--pruned", "p.keras"], "--pruned fine-tunes a model pruned from a reused parent; give "
     "that --parent KERAS too"),
    (["--finetune-lr", "0"], "--finetune-lr: learning rate 0.0 must be positive"),
])
def test_bad_architecture_flags_are_named(tmp_path, capsys, argv, needle):
    from convert.cli import main

    code = main(["-q", "face", "--image-folder", str(tmp_path), "--out", str(tmp_path), *argv])
    assert code == 2 and needle in capsys.readouterr().err


@pytest.mark.parametrize("residual", [(), (2,)], ids=["plain", "residual"])
def test_gradual_pruning_fades_channels_to_zero_so_removal_is_lossless(residual):
    pytest.importorskip("tensorflow")
    from convert.face_model import (
        StudentSpec,
        build_student,
        channel_decay,
        prune_student,
        select_channels,
    )
    from convert.face_train import TrainConfig, predict_logits, train_student

    spec = StudentSpec(widths=(8, 16, 16), pool_after=(2,) if residual else (1,),
                       stem_stride=2, dropout=0.0, residual=residual)
    model = build_student(spec)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (64, 48, 48, 1)).astype(np.float32)
    y = rng.integers(0, 7, 64)
    cfg = TrainConfig(epochs=1, batch_size=16, learning_rate=1e-3, augment=False)
    train_student(model, x, y, cfg)  # BN statistics and betas away from their initial values
    keep = select_channels(model, spec, 0.5)
    if residual:  # both sides of the add fade the same channels
        np.testing.assert_array_equal(keep[1], keep[2])
    cut, _, _ = prune_student(model, spec, 0.5, keep=keep)
    # Control: removing live channels changes the output (so the check below can fail).
    assert np.abs(predict_logits(model, x) - predict_logits(cut, x)).max() > 1e-3

    decay = channel_decay(model, spec, keep, total_steps=6)
    history = train_student(model, x, y, dataclasses.replace(cfg, epochs=2), x_val=x, y_val=y,
                            callbacks=[decay], keep_best=False)
    assert "best_epoch" not in history  # the faded end state is kept, not an earlier epoch
    assert decay.step == 8 and decay.scale() == 0.0
    dropped = np.setdiff1d(np.arange(16), keep[1])
    for name in ("conv1_bn", "dw2_bn"):
        gamma, beta = model.get_layer(name).get_weights()[:2]
        assert not gamma[dropped].any() and not beta[dropped].any()
    assert np.abs(model.get_layer("conv1_bn").get_weights()[0][keep[1]]).min() > 0
    pruned, pspec, _ = prune_student(model, spec, 0.5, keep=keep)
    assert pspec.widths == (4, 8, 8)
    np.testing.assert_allclose(predict_logits(pruned, x), predict_logits(model, x), atol=1e-4)


def test_weight_average_is_the_per_step_ema_and_is_what_is_kept():
    pytest.importorskip("tensorflow")
    import keras

    from convert.face_model import StudentSpec, build_student
    from convert.face_train import TrainConfig, accuracy, train_student

    model = build_student(StudentSpec(widths=(4, 8), pool_after=(0,), dropout=0.0))
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (48, 48, 48, 1)).astype(np.float32)
    y = rng.integers(0, 7, 48)
    seen = [[v.numpy().copy() for v in model.weights]]

    class Record(keras.callbacks.Callback):  # weights and BN statistics after every step
        def on_train_batch_end(self, batch, logs=None):
            seen.append([v.numpy().copy() for v in model.weights])

    decay = 0.5
    cfg = TrainConfig(epochs=2, batch_size=16, learning_rate=1e-2, augment=False,
                      ema_decay=decay)
    history = train_student(model, x, y, cfg, x_val=x, y_val=y, callbacks=[Record()],
                            keep_best=False)
    assert len(seen) == 7  # 3 steps per epoch
    expected = seen[0]
    for step in seen[1:]:
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, step)]
    assert len(model.weights) > len(model.trainable_weights)  # BN statistics are included
    for got, want in zip(model.weights, expected):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    # Control: the average is not simply the last step's weights.
    assert max(np.abs(w - last).max() for w, last in zip(expected, seen[-1])) > 1e-4
    assert history["val_accuracy"][-1] == accuracy(model, x, y)
    assert len(history["val_accuracy_unaveraged"]) == 2


def test_ema_is_validated_and_kept_out_of_the_pruning_ramp():
    from convert.face import FaceRecipe
    from convert.face_train import TrainConfig
    from edge.errors import ConfigError

    with pytest.raises(ValueError, match="ema_decay 1.0 must be in"):
        TrainConfig(ema_decay=1.0)
    with pytest.raises(ConfigError, match="ramp cannot average"):
        FaceRecipe(ramp=TrainConfig(ema_decay=0.99))
    FaceRecipe(train=TrainConfig(ema_decay=0.999), finetune=TrainConfig(ema_decay=0.999))


def test_gradual_pruning_needs_a_ramp():
    from convert.face import FaceRecipe
    from convert.face_train import TrainConfig
    from edge.errors import ConfigError

    with pytest.raises(ConfigError, match="ramp epoch"):
        FaceRecipe(ramp=TrainConfig(epochs=0))
    FaceRecipe(ramp=TrainConfig(epochs=0), prune_schedule="one-shot")
    with pytest.raises(ConfigError, match="one-shot"):
        FaceRecipe(prune_schedule="abrupt")


def test_a_reused_parent_is_rebuilt_at_a_new_input_size_and_adapted(
    tiny_face_run, tmp_path  # noqa: F811
):
    import keras

    from convert.face import FaceRecipe, load_face_data, load_parent, run_face_pipeline
    from convert.face_model import StudentSpec
    from convert.face_train import TrainConfig
    from edge.errors import ConfigError
    from edge.features.face import FacePreprocessConfig
    from edge.models.manifest import load_manifest

    saved = tiny_face_run["base"] / "models" / "reports" / "face" / "parent.keras"
    spec = StudentSpec(input_size=40, widths=(8, 16, 16, 16, 32), pool_after=(1, 3),
                       stem_stride=2, num_classes=len(SYNTH_LABELS))
    model = load_parent(saved, spec)
    assert tuple(model.input.shape[1:]) == (40, 40, 1)
    trained = keras.models.load_model(saved, compile=False).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), trained))
    with pytest.raises(ConfigError, match="parent.keras: its layers do not fit the parent "
                       r"shape \(widths \[8, 16, 16, 16, 64\]"):
        load_parent(saved, dataclasses.replace(spec, widths=(8, 16, 16, 16, 64)))

    recipe = FaceRecipe(
        parent=StudentSpec(widths=(8, 16, 16, 16, 32), pool_after=(1, 3), stem_stride=2),
        adapt=TrainConfig(epochs=1, batch_size=32, learning_rate=1e-3),
        prune_ratio=0.5, prune_schedule="one-shot",
        finetune=TrainConfig(epochs=1, batch_size=32, learning_rate=1e-3),
        calibration_samples=50,
    )
    data = load_face_data(image_folder=tiny_face_run["folder"])
    report = run_face_pipeline(data, tmp_path, recipe=recipe, parent_path=saved,
                               preprocess=FacePreprocessConfig(size=40), latency_runs=3)
    assert len(report["parent_history"]["adapt"]["loss"]) == 1
    adapted = keras.models.load_model(tmp_path / "reports" / "face" / "parent_adapted.keras",
                                      compile=False)
    assert tuple(adapted.input.shape[1:]) == (40, 40, 1)
    # Adapting trained the weights; the reused file itself is untouched.
    assert not all(np.array_equal(a, b) for a, b in zip(adapted.get_weights(), trained))
    reread = keras.models.load_model(saved, compile=False).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(reread, trained))
    assert load_manifest(tmp_path / "face_expression_int8.tflite").preprocessing["size"] == 40


def test_a_pruned_model_from_an_earlier_run_is_fine_tuned_again(
    tiny_face_run, tmp_path  # noqa: F811
):
    import keras

    from convert.face import FaceRecipe, load_face_data, run_face_pipeline
    from convert.face_model import StudentSpec
    from convert.face_train import TrainConfig
    from edge.errors import ConfigError
    from edge.models.manifest import load_manifest

    reports = tiny_face_run["base"] / "models" / "reports" / "face"
    parent, pruned = reports / "parent.keras", reports / "pruned.keras"
    before = keras.models.load_model(pruned, compile=False).get_weights()
    recipe = FaceRecipe(
        parent=StudentSpec(widths=(8, 16, 16, 16, 32), pool_after=(1, 3), stem_stride=2),
        prune_ratio=0.5,
        finetune=TrainConfig(epochs=1, batch_size=32, learning_rate=1e-3),
        calibration_samples=50,
    )
    data = load_face_data(image_folder=tiny_face_run["folder"])
    report = run_face_pipeline(data, tmp_path, recipe=recipe, parent_path=parent,
                               pruned_path=pruned, latency_runs=3)
    assert report["pruned_before_finetune"]["loaded_from"] == str(pruned)
    assert "ramp_history" not in report and len(report["finetune_history"]["loss"]) == 1
    assert report["pruned"]["widths"] == tiny_face_run["report"]["pruned"]["widths"]
    refined_note = load_manifest(tmp_path / "face_expression_int8.tflite").training["refined"]
    assert "from pruned.keras of an earlier run (pruned from parent.keras)" in refined_note
    refined = keras.models.load_model(tmp_path / "reports" / "face" / "pruned_refined.keras",
                                      compile=False).get_weights()
    # Fine-tuning changed the weights; the reused file itself is untouched.
    assert not all(np.array_equal(a, b) for a, b in zip(refined, before))
    reread = keras.models.load_model(pruned, compile=False).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(reread, before))

    with pytest.raises(ConfigError, match=r"pruned.keras: its layers do not fit the pruned "
                       r"shape .*--prune-ratio or --pruned-widths"):
        run_face_pipeline(data, tmp_path, recipe=dataclasses.replace(recipe, prune_ratio=0.25),
                          parent_path=parent, pruned_path=pruned, latency_runs=3)
    with pytest.raises(ConfigError, match="needs the parent it was pruned from"):
        run_face_pipeline(data, tmp_path, recipe=recipe, pruned_path=pruned, latency_runs=3)
