"""The speech models: ours (1-D convolutions over time; a dense network on each window's
statistics; or both in one graph) and the seed project's CNN (a reference)."""

from __future__ import annotations

import functools
from typing import Any

from edge.errors import ConfigError

from .recipe import SpeechRecipe

__all__ = ["build_model", "build_branches", "EMBEDDING"]

# The layer whose output is each network's representation before its classifier (what the
# corpus adversary of ``train.adversary`` reads), by network.
EMBEDDING = {"compact": "compact_embedding", "pooled": "pooled_embedding",
             "linear": "linear_embedding"}


def build_model(recipe: SpeechRecipe, n_classes: int) -> Any:
    """Keras model for ``recipe.model`` (for "ensemble", the combined graph of
    :func:`build_branches`)."""
    import keras
    from keras import layers

    if recipe.model.kind == "ensemble":
        return build_branches(recipe, n_classes)[0]
    shape = (recipe.mfcc.input_rows(recipe.features.window_frames), recipe.mfcc.n_columns, 1)
    inp = keras.Input(shape=shape, name="mfcc")
    if recipe.model.kind == "pooled":
        out = _pooled_head(layers.Flatten()(inp), recipe, n_classes, "softmax")
        return keras.Model(inp, out, name="speech_pooled")
    if recipe.model.kind == "seed":
        # The hobby project's CNN exactly as printed in its write-up.
        x = layers.Conv2D(256, (4, 4), padding="same", activation="relu")(inp)
        x = layers.MaxPooling2D((4, 4))(x)
        x = layers.BatchNormalization()(x)
        x = layers.Dropout(0.8)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(64, activation="relu")(x)
        x = layers.Dense(32, activation="relu")(x)
        out = layers.Dense(n_classes, activation="softmax")(x)
        return keras.Model(inp, out, name="seed_cnn")
    if recipe.model.kind != "compact":
        raise ConfigError(f"unknown speech model {recipe.model.kind!r}; choose compact, pooled, "
                          f"ensemble or seed")
    # The input keeps the (frames, ceps, 1) shape of every speech model; a reshape drops the 1.
    x = layers.Reshape((recipe.features.window_frames, recipe.mfcc.n_columns))(inp)
    return keras.Model(inp, _compact_head(x, recipe, n_classes, "softmax"), name="speech_compact")


def build_branches(recipe: SpeechRecipe, n_classes: int) -> tuple[Any, list[Any]]:
    """The ensemble: the compact model on the window's cepstra (normalised per window inside the
    graph) and the pooled model on the mean and spread of every column over the window's speech
    frames (the input's rows after the frames, ``features.pooling = "frames_mean_std"``; with
    ``"frames_mean_std_delta"`` also how fast each column moves), sharing one
    input; with ``model.linear_weight``, a third, linear model on those statistics.  Returns
    the combined model (the softmax of the branches' mean logits: the normalised geometric mean
    of their probabilities; with a linear model, their weighted mean) and the branch models,
    which are trained one after the other on the same windows; the combined model shares their
    layers, so it needs no training of its own."""
    import keras
    from keras import layers

    frames, columns = recipe.features.window_frames, recipe.mfcc.n_columns
    rows = recipe.mfcc.input_rows(frames)  # the frames, then the statistics rows
    inp = keras.Input(shape=(rows, columns, 1), name="mfcc")
    x = layers.Reshape((rows, columns))(inp)
    window_cmn, pooled_rows = _layer_classes()
    logits_c = _compact_head(window_cmn(frames, recipe.mfcc.n_ceps)(x), recipe, n_classes, None)
    m, n_ceps = recipe.model, recipe.mfcc.n_ceps
    logits = {"compact": logits_c,
              "pooled": _pooled_head(pooled_rows(frames, m.pooled_ceps or n_ceps, n_ceps,
                                                 m.pooled_rows or None)(x),
                                     recipe, n_classes, None)}
    if m.linear_weight:  # built last, so the other two start from the same weights without it
        logits["linear"] = _pooled_head(pooled_rows(frames, m.linear_ceps or n_ceps, n_ceps)(x),
                                        recipe, n_classes, None, "linear")
    branches = [keras.Model(inp, layers.Softmax()(z), name=f"speech_{name}")
                for name, z in logits.items()]
    if not m.linear_weight:
        # Equal weights: other weights trade fresh for adapted figures and one corpus for
        # another (models/README.md, "Weighing the two branches").
        mean = layers.Average()([logits_c, logits["pooled"]])
    else:
        share = {"compact": (1 - m.linear_weight) / 2, "pooled": (1 - m.linear_weight) / 2,
                 "linear": m.linear_weight}
        mean = layers.Add()([layers.Rescaling(share[name], name=f"weigh_{name}")(z)
                             for name, z in logits.items()])
    return keras.Model(inp, layers.Softmax()(mean), name="speech_ensemble"), branches


def _compact_head(x: Any, recipe: SpeechRecipe, n_classes: int, activation: str | None) -> Any:
    from keras import layers

    # Convolution over time with the cepstra as channels: 5x fewer MACs than a 2-D CNN on the
    # same input, and emotion lives in how the spectral envelope moves, not where in it.
    ch = recipe.model.width
    for block, kernel in enumerate((5, 5, 3, 3)):
        x = layers.Conv1D(ch, kernel, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        if block < 3:
            x = layers.MaxPooling1D(2)(x)
            ch = int(ch * 1.5)
    # Mean and max over time: a window's emotion does not depend on where in it speech is.
    x = layers.Concatenate(name=EMBEDDING["compact"])(
        [layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])
    x = layers.Dropout(0.3)(x)
    return layers.Dense(n_classes, activation=activation)(x)


def _pooled_head(x: Any, recipe: SpeechRecipe, n_classes: int, activation: str | None,
                 kind: str = "pooled") -> Any:
    """The pooled network on statistics ``x``; ``kind`` "linear": the ensemble's linear one
    (no hidden layer, its own L2 penalty)."""
    import keras
    from keras import layers

    # Utterance statistics and a small network: across corpora, the mean and spread of prosody
    # and cepstra carry what convolutions over frames learn only for the corpora they saw
    # (models/README.md).  Batch norm standardises the statistics, as a scaler before logistic
    # regression would, and folds into the weights at export.
    linear = kind == "linear" or not recipe.model.pooled_width
    l2 = recipe.model.linear_l2 if kind == "linear" else recipe.model.l2
    reg = keras.regularizers.l2(l2) if l2 else None
    x = layers.BatchNormalization(name=EMBEDDING[kind] if linear else None)(x)
    if not linear:
        x = layers.Dense(recipe.model.pooled_width, activation="relu", kernel_regularizer=reg,
                         name=EMBEDDING["pooled"])(x)
        x = layers.Dropout(0.3)(x)
    return layers.Dense(n_classes, activation=activation, kernel_regularizer=reg)(x)


@functools.lru_cache(maxsize=1)
def _layer_classes() -> tuple[type, type]:
    """The ensemble's two fixed layers, defined on first use: they need Keras, which the
    device never imports."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="emotion_edge")
    class WindowCmn(keras.layers.Layer):  # type: ignore[misc]
        """The first ``columns`` columns of the first ``frames`` rows of ``(batch, rows,
        columns)``, less their mean over those frames: per-window CMN of the cepstra, as
        ``features.normalize = "cmn"`` does outside the graph (the other branch needs the
        levels it takes away)."""

        def __init__(self, frames: int, columns: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.frames, self.columns = frames, columns

        def call(self, x: Any) -> Any:
            ceps = x[:, : self.frames, : self.columns]
            return ceps - ops.mean(ceps, axis=1, keepdims=True)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "frames": self.frames, "columns": self.columns}

    @keras.saving.register_keras_serializable(package="emotion_edge")
    class PooledRows(keras.layers.Layer):  # type: ignore[misc]
        """The rows after the first ``frames`` (the window's statistics; only the first
        ``rows`` of them, None: all), flattened; of the ``n_ceps`` cepstral columns only the
        first ``keep`` (None: all), then every other column (prosody)."""

        def __init__(self, frames: int, keep: int | None = None, n_ceps: int | None = None,
                     rows: int | None = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.frames, self.keep, self.n_ceps, self.rows = frames, keep, n_ceps, rows

        def call(self, x: Any) -> Any:
            rows = x[:, self.frames : None if self.rows is None else self.frames + self.rows, :]
            if self.keep is not None and self.n_ceps is not None and self.keep < self.n_ceps:
                # One gather, not two slices joined: int8 gives a concatenation one scale for
                # its inputs and output, which reached back to the model's input and set its
                # range to the statistics rows' (+-2.3 where the frames reach +-8).
                kept = list(range(self.keep)) + list(range(self.n_ceps, rows.shape[2]))
                rows = ops.take(rows, kept, axis=2)
            return ops.reshape(rows, (-1, rows.shape[1] * rows.shape[2]))

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "frames": self.frames, "keep": self.keep,
                    "n_ceps": self.n_ceps, "rows": self.rows}

    return WindowCmn, PooledRows
