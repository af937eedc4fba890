"""Averaging a Keras model's weights over its training steps, for the face and speech trainers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["WeightAverage"]


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
