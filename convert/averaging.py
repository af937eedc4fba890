"""Averaging a Keras model's weights over its training steps, for the face and speech trainers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["WeightAverage", "refit_batch_norm"]


class WeightAverage:
    """An average of a model's weights, batch-norm statistics included, updated after every
    training step that ``callback`` is attached to: exponential with ``decay``, or uniform over
    those steps with ``decay=None`` (stochastic weight averaging).  Starts at the weights it is
    made with; ``steps`` counts the steps averaged.

    Why the BN moving statistics too, as timm's ``ModelEmaV2`` does: averaged weights evaluated
    with the statistics of the current ones scored lower (models/README.md, "Fine-tuning
    teacher and weight averaging")."""

    def __init__(self, model: Any, decay: float | None) -> None:
        import keras

        self.variables = list(model.weights)
        self.average = [np.array(v.numpy(), np.float32) for v in self.variables]
        self.steps = 0
        outer = self

        class Update(keras.callbacks.Callback):
            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                outer.steps += 1
                for avg, var in zip(outer.average, outer.variables):
                    if decay is None:  # the running mean of the steps so far
                        avg += (var.numpy() - avg) / outer.steps
                    else:
                        avg *= decay
                        avg += (1.0 - decay) * var.numpy()

        self.callback = Update()

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Run the body with the averaged weights in the model, then put the trained ones back."""
        trained = [np.array(v.numpy()) for v in self.variables]
        self.assign(self.average)
        try:
            yield
        finally:
            self.assign(trained)

    def assign(self, values: list[np.ndarray]) -> None:
        for var, value in zip(self.variables, values):
            var.assign(value)


def refit_batch_norm(model: Any, x: np.ndarray, batch_size: int) -> None:
    """Recompute every batch-norm layer's moving statistics as the plain mean over batches of
    ``x`` (torch's ``update_bn``): an average of weights from several steps is a network none of
    those steps ran, and the statistics gathered for them do not fit it (models/README.md, "A
    weight average for the 48x48 stage").  Dropout is active during the pass, as in training;
    the face networks put it after their last batch norm."""
    import keras

    layers = [layer for layer in model.layers
              if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    try:
        for k, start in enumerate(range(0, len(x), batch_size), start=1):
            for layer in layers:
                # The k-th batch weighs 1/k against the mean of the k - 1 before it.
                layer.momentum = 1.0 - 1.0 / k
            model(x[start:start + batch_size], training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
