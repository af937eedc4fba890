"""Structural (channel) pruning of the face CNN: rank channels, choose the ones to keep, fade
the others to zero while the network trains, and remove them.

Removing a channel removes its filter, its BN entries and its row in the next layer, so the
pruned network is a narrower :class:`~convert.face.model.StudentSpec` with fewer MACs and a
smaller int8 file; what each choice did to the shipped model is in models/README.md.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np

from edge.errors import ConfigError

from .model import StudentSpec, build_student

__all__ = [
    "PRUNE_CRITERIA",
    "channel_importance",
    "prune_spec",
    "select_channels",
    "prune_student",
    "channel_decay",
]

logger = logging.getLogger(__name__)

#: Channel importance measures (:func:`channel_importance`).
PRUNE_CRITERIA = ("bn_gamma", "l1")


def channel_importance(model: Any, spec: StudentSpec, criterion: str = "bn_gamma") -> list[np.ndarray]:
    """Per-convolution channel importance: ``|BN gamma|`` of the BN after the convolution
    (network slimming) or ``l1`` of each filter scaled by ``|gamma|/sqrt(var+eps)`` (the filter's
    effective L1 norm after BN folding)."""
    scores = []
    for i in range(len(spec.widths)):
        bn = model.get_layer(f"conv{i}_bn")
        gamma = np.abs(np.asarray(bn.gamma))
        if criterion == "bn_gamma":
            scores.append(gamma)
        elif criterion == "l1":
            kernel = np.asarray(model.get_layer(f"conv{i}").kernel)
            var = np.asarray(bn.moving_variance)
            scores.append(np.abs(kernel).sum(axis=(0, 1, 2)) * gamma / np.sqrt(var + bn.epsilon))
        else:
            raise ConfigError(f"pruning criterion {criterion!r} is unknown; use "
                              f"{' or '.join(PRUNE_CRITERIA)}")
    return scores


def prune_spec(
    spec: StudentSpec, ratio: float, multiple: int = 4, *, widths: tuple[int, ...] | None = None
) -> StudentSpec:
    """Spec with ``ratio`` of every convolution's channels removed (rounded up to ``multiple``),
    or with the given ``widths`` (then ``ratio`` is ignored); an impossible cut is a
    :class:`ConfigError`.

    Why explicit widths: a uniform ratio removes as many parameters as MACs, but the two limits
    sit in different layers.  MACs are spent in the early high-resolution layers, parameters
    (the int8 file size) in the late ones, so an uneven cut can keep more parameters for the
    same MAC cut.
    """
    if widths is not None:
        widths = tuple(int(w) for w in widths)
        if len(widths) != len(spec.widths) or any(
            not 1 <= w <= p for w, p in zip(widths, spec.widths)
        ):
            raise ConfigError(f"pruned widths {list(widths)} need one width per parent "
                             f"convolution ({len(spec.widths)}), each from 1 to that "
                             f"convolution's width in {list(spec.widths)}")
        try:
            return dataclasses.replace(spec, widths=widths)
        except ConfigError as exc:  # the residual adds tie some of the widths together
            raise ConfigError(f"pruned widths {list(widths)}: {exc}") from None
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"prune ratio {ratio!r} must be in [0, 1)")
    widths = tuple(
        min(w, max(multiple, multiple * math.ceil(w * (1.0 - ratio) / multiple)))
        for w in spec.widths
    )
    return dataclasses.replace(spec, widths=widths)


def select_channels(
    model: Any,
    spec: StudentSpec,
    ratio: float,
    *,
    criterion: str = "bn_gamma",
    widths: tuple[int, ...] | None = None,
) -> list[np.ndarray]:
    """Sorted indices of the channels each convolution keeps when ``ratio`` is pruned (or
    when it is cut to ``widths``).

    Convolutions joined by a residual add (:meth:`StudentSpec.channel_groups`) keep the same
    channels, ranked by the sum of their importances: a channel of the sum can only go if
    every term of it goes.
    """
    scores = channel_importance(model, spec, criterion)
    widths = prune_spec(spec, ratio, widths=widths).widths
    keep: list[np.ndarray] = [np.empty(0, np.int64)] * len(spec.widths)
    for group in spec.channel_groups():
        score = np.sum([scores[i] for i in group], axis=0)
        kept = np.sort(np.argsort(-score, kind="stable")[: widths[group[0]]])
        for i in group:
            keep[i] = kept
    return keep


def prune_student(
    model: Any,
    spec: StudentSpec,
    ratio: float,
    *,
    criterion: str = "bn_gamma",
    keep: list[np.ndarray] | None = None,
    widths: tuple[int, ...] | None = None,
) -> tuple[Any, StudentSpec, list[np.ndarray]]:
    """Remove the least important channels of every convolution (or all but ``keep``) and
    return ``(pruned model, pruned spec, kept channel indices per convolution)``.  ``widths``
    replaces the uniform ``ratio`` (see :func:`prune_spec`).

    Removing output channel ``c`` of convolution ``i`` removes its filter and BN entry, the
    matching depthwise filter and BN entry of block ``i+1`` and the matching input row of block
    ``i+1``'s pointwise kernel (or of the dense layer after the last convolution).
    """
    new_spec = prune_spec(spec, ratio, widths=widths)
    if keep is None:
        keep = select_channels(model, spec, ratio, criterion=criterion, widths=widths)
    if [len(k) for k in keep] != list(new_spec.widths):
        raise ValueError(f"kept channels {[len(k) for k in keep]} do not match the pruned "
                         f"widths {list(new_spec.widths)}")
    for group in spec.channel_groups():
        if any(not np.array_equal(keep[group[0]], keep[i]) for i in group):
            raise ValueError(f"convolutions {group} meet at a residual add and must keep the "
                             f"same channels")
    pruned = build_student(new_spec)

    def bn_weights(name: str, idx: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(w)[idx] for w in model.get_layer(name).get_weights()]

    for i in range(len(spec.widths)):
        kernel = np.asarray(model.get_layer(f"conv{i}").get_weights()[0])
        if i == 0:
            pruned.get_layer("conv0").set_weights([kernel[..., keep[0]]])
        else:
            prev = keep[i - 1]
            dw = np.asarray(model.get_layer(f"dw{i}").get_weights()[0])
            pruned.get_layer(f"dw{i}").set_weights([dw[:, :, prev, :]])
            pruned.get_layer(f"dw{i}_bn").set_weights(bn_weights(f"dw{i}_bn", prev))
            pruned.get_layer(f"conv{i}").set_weights([kernel[:, :, prev, :][..., keep[i]]])
        pruned.get_layer(f"conv{i}_bn").set_weights(bn_weights(f"conv{i}_bn", keep[i]))
    dense_w, dense_b = model.get_layer("logits").get_weights()
    pruned.get_layer("logits").set_weights([dense_w[keep[-1]], dense_b])
    logger.info("pruned widths %s -> %s", spec.widths, new_spec.widths)
    return pruned, new_spec, keep


def channel_decay(model: Any, spec: StudentSpec, keep: list[np.ndarray], total_steps: int) -> Any:
    """A Keras callback that fades the channels outside ``keep`` to exactly zero over
    ``total_steps`` training steps (gradual structured pruning).

    Why: removing many channels at once leaves a network that fine-tuning only partly recovers.
    Fading the doomed channels out while the whole network keeps training lets the survivors
    take over their work a little at a time (models/README.md, "Pruning").  Once they are
    zero, removing them (:func:`prune_student` with the same ``keep``) changes nothing.

    Scaling a channel's BN ``gamma`` and ``beta`` by ``s >= 0`` scales its ReLU output by
    ``s``.  The depthwise BN that consumes the channel in the next block is scaled too, because
    a zero input still leaves that BN a constant ``beta - gamma * mean / std``.  The scale
    follows Zhu & Gupta's cubic schedule ``s = (1 - t) ** 3``: fast while the learning rate is
    high, gentle at the end.  The masked values are re-applied after every optimiser step.
    """
    import keras

    targets = []  # (BN layer, dropped channel indices, original gamma, original beta)
    for i, kept in enumerate(keep):
        drop = np.setdiff1d(np.arange(spec.widths[i]), kept)
        if not len(drop):
            continue
        names = [f"conv{i}_bn"] + ([f"dw{i + 1}_bn"] if i + 1 < len(spec.widths) else [])
        for name in names:
            bn = model.get_layer(name)
            targets.append((bn, drop, np.asarray(bn.gamma)[drop], np.asarray(bn.beta)[drop]))

    class ChannelDecay(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.step = 0

        def scale(self) -> float:
            return float((1.0 - min(self.step / max(total_steps, 1), 1.0)) ** 3)

        def apply(self) -> None:
            s = self.scale()
            for bn, drop, gamma0, beta0 in targets:
                for var, orig in ((bn.gamma, gamma0), (bn.beta, beta0)):
                    value = np.asarray(var).copy()
                    value[drop] = orig * s
                    var.assign(value)

        def on_train_begin(self, logs: Any = None) -> None:
            self.apply()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.step += 1
            self.apply()

    return ChannelDecay()
