"""Full-integer int8 TFLite conversion, float-vs-int8 parity, and writing model + manifest."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.models.manifest import ModelManifest, TensorQuant, sha256_of, write_manifest
from edge.models.runtime import QuantizedModel

from .metrics import classification_metrics

__all__ = ["convert_int8", "quiet_convert", "quant_of", "int8_parity", "save_model",
           "keras_predict", "tflite_latency_ms"]

logger = logging.getLogger(__name__)


def convert_int8(
    keras_model: Any, representative: np.ndarray, *, max_samples: int = 500, seed: int = 0
) -> bytes:
    """Convert a Keras model to a full-integer int8 TFLite flatbuffer (int8 input and output).

    ``representative`` are float model inputs drawn from the training data; up to
    ``max_samples`` of them calibrate the activation ranges.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(representative))[:max_samples]
    samples = np.asarray(representative, dtype=np.float32)[idx]

    def gen():
        for x in samples:
            yield [x[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = gen
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return quiet_convert(converter)


def quiet_convert(converter: Any) -> bytes:
    """``converter.convert()`` without the pages Keras' exporter prints to stdout (it would bury
    the figures a command prints there); they go to the debug log instead."""
    import contextlib
    import io

    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter):
        blob = converter.convert()
    logger.debug("converter output:\n%s", chatter.getvalue())
    return blob


def quant_of(path: str | Path) -> tuple[TensorQuant, TensorQuant]:
    """Input and output quantisation of a TFLite model, read with the device's own runtime."""
    from edge.models.runtime import open_interpreter

    _, interp = open_interpreter(Path(path))

    def tq(d: Mapping[str, Any]) -> TensorQuant:
        scale, zero = d["quantization"]
        return TensorQuant(np.dtype(d["dtype"]).name, tuple(int(v) for v in d["shape"]),
                           float(scale), int(zero))

    return tq(interp.get_input_details()[0]), tq(interp.get_output_details()[0])


def tflite_latency_ms(path: str | Path, *, runs: int = 200, warmup: int = 20) -> float:
    """Median wall time of one ``invoke()`` with the device runtime, one thread."""
    from edge.models.runtime import open_interpreter

    _, interp = open_interpreter(Path(path), num_threads=1)
    detail = interp.get_input_details()[0]
    x = np.zeros(detail["shape"], dtype=detail["dtype"])
    times = []
    for i in range(warmup + runs):
        interp.set_tensor(detail["index"], x)
        t0 = time.perf_counter()
        interp.invoke()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def keras_predict(keras_model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    return np.asarray(keras_model.predict(np.asarray(x, np.float32), batch_size=batch_size,
                                          verbose=0))


def int8_parity(
    model: QuantizedModel,
    float_probs: np.ndarray,
    x: np.ndarray,
    y: Sequence[int],
    labels: Sequence[str],
    group: Sequence[Any] | None = None,
    reduce: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Compare int8 (device runtime) with float predictions on held-out inputs ``x``.

    ``float_probs`` are the float model's probabilities for ``x``.  With ``group`` (e.g. the clip
    each window belongs to), probabilities are averaged per group before scoring, as the device
    does for a file.  Returns UAR/accuracy of both and their top-1 agreement.
    """
    int8_probs = np.stack([model.predict(xi) for xi in np.asarray(x, np.float32)])
    y = np.asarray(y)
    if group is not None:
        group = np.asarray(group)
        keys = list(dict.fromkeys(group.tolist()))
        sel = [np.flatnonzero(group == k) for k in keys]
        float_probs = np.stack([float_probs[s].mean(0) for s in sel])
        int8_probs = np.stack([int8_probs[s].mean(0) for s in sel])
        y = np.array([y[s[0]] for s in sel])
    f = classification_metrics(y, float_probs.argmax(1), labels)
    q = classification_metrics(y, int8_probs.argmax(1), labels)
    return {
        "float_uar": f["uar"],
        "int8_uar": q["uar"],
        "float_accuracy": f["accuracy"],
        "int8_accuracy": q["accuracy"],
        "top1_agreement": float(np.mean(float_probs.argmax(1) == int8_probs.argmax(1))),
        "max_abs_prob_diff": float(np.abs(float_probs - int8_probs).max()),
        "n": int(len(y)),
    }


def save_model(
    tflite: bytes,
    path: str | Path,
    *,
    name: str,
    task: str,
    labels: Sequence[str],
    preprocessing: Mapping[str, Any],
    fusion_map: Mapping[str, str | None],
    metrics: Mapping[str, Any],
    training: Mapping[str, Any],
) -> ModelManifest:
    """Write ``tflite`` to ``path`` and its manifest beside it; return the manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tflite)
    qin, qout = quant_of(path)
    manifest = ModelManifest(
        name=name,
        task=task,
        labels=tuple(labels),
        preprocessing=dict(preprocessing),
        input=qin,
        output=qout,
        sha256=sha256_of(path),
        fusion_map=dict(fusion_map),
        metrics=dict(metrics),
        training=dict(training),
    )
    write_manifest(path, manifest)
    logger.info("wrote %s (%d bytes)", path, path.stat().st_size)
    return manifest
