"""The compact face expression CNN: its shape, the Keras network and its MAC counter.

The network is a chain so that every channel can be removed cleanly: a 3x3 stem convolution,
then depthwise-separable blocks (3x3 depthwise -> BN -> ReLU -> 1x1 pointwise -> BN -> ReLU) with
2x2 max pooling between stages, global average pooling and one dense layer producing logits.
Blocks listed in ``StudentSpec.residual`` add their input to their output (an identity shortcut,
before the ReLU); the two convolutions on either side of such an add share their channels, so
pruning keeps or removes those channels together.  The shape is fully described by
:class:`StudentSpec`; pruning (:mod:`convert.face.prune`) produces a narrower spec and copies
the surviving weights, so the pruned model is physically smaller (a dense, smaller .tflite),
unlike magnitude pruning.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

from edge.errors import ConfigError

__all__ = [
    "StudentSpec",
    "PARENT_SPEC",
    "build_student",
    "count_macs",
    "load_weights",
    "with_weights",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StudentSpec:
    """Shape of the student network; an impossible shape is a :class:`ConfigError`.

    Attributes:
        input_size: square grey input side, pixels.
        widths: output channels of the stem then of each separable block, in order.
        pool_after: indices (into ``widths``) of convolutions followed by 2x2 max pooling.
        num_classes: number of output logits.
        dropout: dropout rate before the classifier (training only).
        stem_stride: stride of the 3x3 stem convolution.  2 halves the resolution at once and
            cuts the cost of the high-resolution layers about 4x; 1 (the default) keeps the
            fine detail of a 48x48 face (mouth corners, brows) for the first block.
        residual: indices of blocks whose input is added to their output (identity shortcut,
            as in mini-Xception's residual modules).  Block ``i`` needs ``widths[i - 1] ==
            widths[i]`` and no pooling after block ``i - 1``.  Empty (a plain chain) by default.
    """

    input_size: int = 48
    widths: tuple[int, ...] = (16, 32, 64, 64, 128, 128, 192, 192)
    pool_after: tuple[int, ...] = (1, 3, 5)
    num_classes: int = 7
    dropout: float = 0.3
    stem_stride: int = 1
    residual: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.widths)
        if n < 1 or any(int(w) < 1 for w in self.widths):
            raise ConfigError(f"widths {list(self.widths)} must be one or more positive channel "
                             f"counts (the stem, then each separable block)")
        if self.stem_stride not in (1, 2):
            raise ConfigError(f"stem stride {self.stem_stride!r} must be 1 or 2")
        bad = [i for i in self.pool_after if not 0 <= i < n]
        if bad:
            raise ConfigError(f"pooling after convolution(s) {bad}: convolutions are numbered "
                             f"0 to {n - 1}")
        # Each pooling halves the map (floor); a map that shrinks to nothing cannot be built.
        side = math.ceil(self.input_size / self.stem_stride)
        for _ in set(self.pool_after):
            side //= 2
        if side < 1:
            raise ConfigError(f"{len(set(self.pool_after))} poolings after a stride "
                             f"{self.stem_stride} stem shrink a {self.input_size}x"
                             f"{self.input_size} input to nothing; pool less often")
        for i in self.residual:
            if not 1 <= i < len(self.widths):
                raise ConfigError(f"residual block {i} does not exist: blocks are numbered 1 to "
                                 f"{len(self.widths) - 1} (0 is the stem)")
            if self.widths[i - 1] != self.widths[i]:
                raise ConfigError(f"residual block {i} adds its input to its output, so widths "
                                 f"{i - 1} and {i} must be equal, not {self.widths[i - 1]} and "
                                 f"{self.widths[i]}")
            if i - 1 in self.pool_after:
                raise ConfigError(f"residual block {i} cannot follow pooling after block {i - 1}: "
                                 f"its input and output would differ in size")

    def channel_groups(self) -> list[list[int]]:
        """Convolutions whose output channels must be kept or removed together, in order:
        each residual add ties the convolution before it to the one inside it."""
        groups: list[list[int]] = []
        for i in range(len(self.widths)):
            if i in self.residual:
                groups[-1].append(i)
            else:
                groups.append([i])
        return groups


PARENT_SPEC = StudentSpec()


def build_student(spec: StudentSpec, *, gamma_l1: float = 0.0) -> Any:
    """Build the Keras model (logits output) described by ``spec``.

    ``gamma_l1`` adds an L1 penalty on the BN scales after each convolution (network slimming),
    which pushes unimportant channels towards zero and makes BN-gamma pruning cleaner.
    """
    import keras
    from keras import layers, regularizers

    reg = regularizers.L1(gamma_l1) if gamma_l1 else None
    x = inputs = keras.Input((spec.input_size, spec.input_size, 1), name="face")
    for i, width in enumerate(spec.widths):
        shortcut = x
        if i == 0:
            x = layers.Conv2D(width, 3, strides=spec.stem_stride, padding="same", use_bias=False,
                              name="conv0")(x)
        else:
            x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{i}")(x)
            x = layers.BatchNormalization(name=f"dw{i}_bn")(x)
            x = layers.ReLU(name=f"dw{i}_relu")(x)
            x = layers.Conv2D(width, 1, use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(gamma_regularizer=reg, name=f"conv{i}_bn")(x)
        if i in spec.residual:
            x = layers.Add(name=f"res{i}")([x, shortcut])
        x = layers.ReLU(name=f"conv{i}_relu")(x)
        if i in spec.pool_after:
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if spec.dropout:
        x = layers.Dropout(spec.dropout, name="dropout")(x)
    outputs = layers.Dense(spec.num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="face_student")


def count_macs(model: Any) -> int:
    """Multiply-accumulates of one forward pass for Conv2D, DepthwiseConv2D, SeparableConv2D
    and Dense layers (the layers that dominate cost; BN, pooling and activations are ignored)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.SeparableConv2D):
            _, h, w, cout = layer.output.shape
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            total += h * w * (kh * kw * cin + cin * cout)
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * c
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, cout = layer.output.shape
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1] // layer.groups
            total += h * w * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            total += int(layer.input.shape[-1]) * int(layer.units)
    return int(total)


def with_weights(weights: list[Any], spec: StudentSpec, *, gamma_l1: float = 0.0) -> Any:
    """A fresh network of shape ``spec`` holding ``weights`` (e.g. a trained model's at another
    input size: every layer but the classifier is convolutional and the classifier follows
    global pooling, so the weights do not depend on the input size)."""
    model = build_student(spec, gamma_l1=gamma_l1)
    model.set_weights(weights)
    return model


def load_weights(
    path: str | Path, spec: StudentSpec, *, role: str, hint: str, gamma_l1: float = 0.0
) -> Any:
    """The weights of the Keras model at ``path`` in a fresh network of shape ``spec``; a file
    that is not a Keras model, or whose layers do not fit ``spec``, is a :class:`ConfigError`
    naming the ``role`` (``parent``, ``pruned``) and saying what to pass (``hint``)."""
    import keras

    try:
        loaded = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises several types for a missing or foreign file
        raise ConfigError(f"{path}: cannot load a Keras {role} model ({exc}); pass a .keras "
                          f"file written by emotion-convert face") from None
    model = build_student(spec, gamma_l1=gamma_l1)
    got = [tuple(w.shape) for w in loaded.get_weights()]
    want = [tuple(w.shape) for w in model.get_weights()]
    if got != want:
        raise ConfigError(f"{path}: its layers do not fit the {role} shape (widths "
                          f"{list(spec.widths)}, residual {list(spec.residual)}, "
                          f"{spec.num_classes} labels); pass {hint}")
    model.set_weights(loaded.get_weights())
    return model
