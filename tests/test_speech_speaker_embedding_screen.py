"""scripts/speech_speaker_embedding_screen.py: the voice encoder's weights are read from torch's
legacy checkpoint format without torch, and its NumPy LSTM computes what Keras's LSTM computes
with the same weights."""

from __future__ import annotations

import collections
import io
import pickle
import struct
import sys
import types

import numpy as np
import pytest

from .script_loader import load_script


def _legacy_checkpoint(state: dict[str, np.ndarray], monkeypatch) -> bytes:
    """What torch.save wrote before 1.6 for float32 tensors, written with stand-ins for torch's
    classes (pickled by reference, as torch's are): tensors share one storage, at offsets."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only pickled by reference")

    FloatStorage.__module__, _rebuild_tensor_v2.__module__ = "torch", "torch._utils"
    FloatStorage.__qualname__, _rebuild_tensor_v2.__qualname__ = "FloatStorage", "_rebuild_tensor_v2"
    torch.FloatStorage, utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)

    flat = np.concatenate([v.ravel() for v in state.values()]).astype("<f4")
    storage = object()

    class Tensor:
        def __init__(self, offset, shape):
            self.offset, self.shape = offset, shape

        def __reduce_ex__(self, protocol):
            stride = tuple(int(np.prod(self.shape[i + 1:])) for i in range(len(self.shape)))
            return (_rebuild_tensor_v2, (storage, self.offset, self.shape, stride, False,
                                         collections.OrderedDict()))

    tensors, offset = collections.OrderedDict(), 0
    for k, v in state.items():
        tensors[k] = Tensor(offset, v.shape)
        offset += v.size

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if obj is storage:
                return ("storage", FloatStorage, "0", "cpu", flat.size, None)
            return None

    f = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(header, f, protocol=2)
    Pickler(f, protocol=2).dump({"step": 7, "model_state": tensors})
    pickle.dump(["0"], f, protocol=2)
    f.write(struct.pack("<q", flat.size) + flat.tobytes())
    return f.getvalue()


def test_a_legacy_torch_checkpoint_is_read_without_torch(monkeypatch):
    screen = load_script("speech_speaker_embedding_screen")
    rng = np.random.default_rng(0)
    state = {"lstm.weight_ih_l0": rng.normal(size=(8, 3)).astype(np.float32),
             "linear.bias": rng.normal(size=(4,)).astype(np.float32)}
    data = _legacy_checkpoint(state, monkeypatch)
    got = screen.load_legacy_checkpoint(data)
    assert got["step"] == 7
    for k, v in state.items():
        np.testing.assert_array_equal(got["model_state"][k], v)


def test_a_checkpoint_of_anything_else_is_refused(monkeypatch):
    screen = load_script("speech_speaker_embedding_screen")
    f = io.BytesIO()
    for header in (1, 2, 3):
        pickle.dump(header, f)
    pickle.dump(types.SimpleNamespace(a=1), f)
    with pytest.raises(pickle.UnpicklingError, match="not a float32 tensor checkpoint"):
        screen.load_legacy_checkpoint(f.getvalue())


def test_the_encoder_is_keras_lstm_stack_with_torch_weights():
    """torch's (4H, in) gate blocks with two biases are Keras's kernel.T with their sum: three
    stacked layers, the last state through linear + ReLU, L2-normed."""
    import keras

    screen = load_script("speech_speaker_embedding_screen")
    H = screen.HIDDEN
    rng = np.random.default_rng(1)
    w, model_layers = {}, []
    inputs = keras.Input((6, 40))
    seq = inputs
    for layer in range(screen.LAYERS):
        n_in = 40 if layer == 0 else H
        w[f"lstm.weight_ih_l{layer}"] = rng.normal(0, 0.2, (4 * H, n_in)).astype(np.float32)
        w[f"lstm.weight_hh_l{layer}"] = rng.normal(0, 0.1, (4 * H, H)).astype(np.float32)
        w[f"lstm.bias_ih_l{layer}"] = rng.normal(0, 0.5, 4 * H).astype(np.float32)
        w[f"lstm.bias_hh_l{layer}"] = rng.normal(0, 0.5, 4 * H).astype(np.float32)
        lstm = keras.layers.LSTM(H, return_sequences=layer < screen.LAYERS - 1)
        seq = lstm(seq)
        model_layers.append(lstm)
    w["linear.weight"] = rng.normal(0, 0.1, (256, H)).astype(np.float32)
    w["linear.bias"] = rng.normal(0, 0.1, 256).astype(np.float32)
    model = keras.Model(inputs, seq)
    for layer, lstm in enumerate(model_layers):
        lstm.set_weights([w[f"lstm.weight_ih_l{layer}"].T, w[f"lstm.weight_hh_l{layer}"].T,
                          w[f"lstm.bias_ih_l{layer}"] + w[f"lstm.bias_hh_l{layer}"]])
    mels = rng.gamma(1.0, 1.0, (3, 6, 40)).astype(np.float32)
    e = np.maximum(model.predict(mels, verbose=0) @ w["linear.weight"].T + w["linear.bias"], 0)
    want = e / np.linalg.norm(e, axis=1, keepdims=True)
    got = screen.embed_partials(mels, w)
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert np.ptp(got, axis=0).max() > 0.05  # the clips differ: the check compares something


def test_partials_cover_the_clip_as_resemblyzer_cuts_it():
    screen = load_script("speech_speaker_embedding_screen")
    rng = np.random.default_rng(2)
    for seconds, n in ((0.5, 1), (1.6, 1), (3.0, 3), (4.2, 4), (4.4, 5)):
        wav = rng.normal(0, 0.01, int(seconds * 16000)).astype(np.float32)
        parts = screen.mel_partials(wav)
        assert parts.shape == (n, 160, 40), seconds
