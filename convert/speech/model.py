"""The speech models: ours (1-D convolutions over time) and the seed project's CNN (a reference)."""

from __future__ import annotations

from typing import Any

from edge.errors import ConfigError

from .recipe import SpeechRecipe

__all__ = ["build_model"]


def build_model(recipe: SpeechRecipe, n_classes: int) -> Any:
    """Keras model for ``recipe.model``."""
    import keras
    from keras import layers

    shape = (recipe.features.window_frames, recipe.mfcc.n_columns, 1)
    inp = keras.Input(shape=shape, name="mfcc")
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
        raise ConfigError(f"unknown speech model {recipe.model.kind!r}; choose compact or seed")
    # Convolution over time with the cepstra as channels: 5x fewer MACs than a 2-D CNN on the
    # same input, and emotion lives in how the spectral envelope moves, not where in it.
    # The input keeps the (frames, ceps, 1) shape of every speech model; a reshape drops the 1.
    x = layers.Reshape((recipe.features.window_frames, recipe.mfcc.n_columns))(inp)
    ch = recipe.model.width
    for block, kernel in enumerate((5, 5, 3, 3)):
        x = layers.Conv1D(ch, kernel, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        if block < 3:
            x = layers.MaxPooling1D(2)(x)
            ch = int(ch * 1.5)
    # Mean and max over time: a window's emotion does not depend on where in it speech is.
    x = layers.Concatenate()([layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])
    x = layers.Dropout(0.3)(x)
    out = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inp, out, name="speech_compact")
