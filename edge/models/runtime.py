"""TFLite interpreter resolution and a quantisation-aware model wrapper.

The interpreter is chosen by argument, then the ``EMOTION_EDGE_RUNTIME`` environment variable, then
the first importable of ai-edge-litert (XNNPACK int8 kernels, the fast path on a Pi), tflite-runtime,
and TensorFlow's own ``tf.lite``; each fallback is logged as a warning.  One interpreter is created
per model and reused for every inference.
"""

from __future__ import annotations

import importlib
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..config import process_setting
from ..errors import ConfigError, MissingDependencyError, ModelError
from ..lifecycle import Closeable
from ..optional import native_path, quiet_native_output
from .manifest import ModelManifest, TensorQuant, load_manifest

__all__ = ["RUNTIMES", "resolve_interpreter_class", "open_interpreter", "QuantizedModel",
           "open_model"]

logger = logging.getLogger(__name__)

#: Known runtimes in order of preference: name -> (module, attribute).
RUNTIMES: dict[str, tuple[str, str]] = {
    "litert": ("ai_edge_litert.interpreter", "Interpreter"),
    "tflite-runtime": ("tflite_runtime.interpreter", "Interpreter"),
    "tensorflow": ("tensorflow.lite", "Interpreter"),
}

#: What installs each runtime (the convert extra brings TensorFlow; tflite-runtime is in no extra).
_INSTALL = {
    "litert": "pip install 'emotion-edge[device]'",
    "tflite-runtime": "pip install tflite-runtime (or use the default runtime, litert)",
    "tensorflow": "pip install 'emotion-edge[convert]' (or use the default runtime, litert)",
}


def resolve_interpreter_class(runtime: str | None = None) -> tuple[str, Any]:
    """Return ``(name, Interpreter class)`` for ``runtime`` or the first one importable."""
    runtime = runtime or process_setting("EMOTION_EDGE_RUNTIME")
    if runtime is not None:
        if runtime not in RUNTIMES:
            raise ConfigError(
                f"runtime {runtime!r} is unknown; choose one of {', '.join(RUNTIMES)}"
            )
        module, attr = RUNTIMES[runtime]
        try:
            return runtime, getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            raise MissingDependencyError(
                f"runtime {runtime!r} is not installed ({exc}); {_INSTALL[runtime]}"
            ) from None
    tried = []
    for name, (module, attr) in RUNTIMES.items():
        try:
            cls = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            tried.append(f"{name} ({exc})")
            continue
        if tried:
            logger.warning("falling back to the %s interpreter; not importable: %s", name,
                           "; ".join(tried))
        return name, cls
    raise MissingDependencyError(
        "no TFLite interpreter is installed; pip install 'emotion-edge[device]' "
        "(ai-edge-litert), or tflite-runtime"
    )


def open_interpreter(
    path: Path, *, num_threads: int = 1, runtime: str | None = None,
    reference_kernels: bool = False,
) -> tuple[str, Any]:
    """``(runtime name, interpreter with tensors allocated)`` for the ``.tflite`` at ``path``;
    a file the interpreter cannot load raises :class:`~edge.errors.ModelError` naming it."""
    name, cls = resolve_interpreter_class(runtime)
    kwargs: dict[str, Any] = {"num_threads": int(num_threads)}
    if reference_kernels and name == "litert":
        from ai_edge_litert.interpreter import OpResolverType

        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_REF
    try:
        # "INFO: Created TensorFlow Lite XNNPACK delegate" on fd 2
        with quiet_native_output("TFLite"), native_path(path) as model_path:
            interpreter = cls(model_path=model_path, **kwargs)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"{path}: not a loadable TFLite model ({exc})") from None
    return name, interpreter


class QuantizedModel(Closeable):
    """One TFLite model with its manifest: float in, probabilities out.

    Quantises float input with the model's input scale/zero point and dequantises the int8 output,
    so callers never see int8.  The manifest's recorded quantisation must equal the model's own.
    ``reference_kernels=True`` pins the reference op resolver (bit-exact across machines; XNNPACK
    may differ by one LSB), used by golden tests.
    """

    def __init__(
        self,
        model_path: str | Path,
        manifest: ModelManifest | None = None,
        *,
        num_threads: int = 1,
        runtime: str | None = None,
        reference_kernels: bool = False,
    ) -> None:
        self.path = Path(model_path)
        self.manifest = manifest if manifest is not None else load_manifest(self.path)
        self.runtime, self._interpreter = open_interpreter(
            self.path, num_threads=num_threads, runtime=runtime,
            reference_kernels=reference_kernels)
        self._in = self._interpreter.get_input_details()[0]
        self._out = self._interpreter.get_output_details()[0]
        self._check_against_manifest()
        # Interpreters are not thread-safe; the loop may call from more than one thread.
        self._lock = threading.Lock()
        # The first invoke packs weights for XNNPACK (tens of ms on a Pi): pay it here, at load,
        # before the service reports READY, not in the first real-time cycle.
        self.predict_raw(np.zeros(self._in["shape"], self._in["dtype"]))

    def _check_against_manifest(self) -> None:
        for role, detail, recorded in (
            ("input", self._in, self.manifest.input),
            ("output", self._out, self.manifest.output),
        ):
            scale, zero = detail["quantization"]
            actual = TensorQuant(
                dtype=np.dtype(detail["dtype"]).name,
                shape=tuple(int(v) for v in detail["shape"]),
                scale=float(scale),
                zero_point=int(zero),
            )
            for field in ("dtype", "shape", "zero_point"):
                if getattr(actual, field) != getattr(recorded, field):
                    raise ModelError(
                        f"{self.path}: {role} {field} is {getattr(actual, field)!r} in the model "
                        f"but {getattr(recorded, field)!r} in its manifest; re-export both together"
                    )
            if abs(actual.scale - recorded.scale) > 1e-6 * max(abs(recorded.scale), 1e-12):
                raise ModelError(
                    f"{self.path}: {role} scale is {actual.scale!r} in the model but "
                    f"{recorded.scale!r} in its manifest; re-export both together"
                )
        # One label per output, each once: otherwise scores would be silently dropped or merged.
        labels = self.manifest.labels
        outputs = int(self._out["shape"][-1])
        if len(labels) != outputs or len(set(labels)) != len(labels):
            raise ModelError(
                f"{self.path}: its manifest names {len(labels)} labels "
                f"({', '.join(map(repr, labels))}) "
                f"for {outputs} model outputs, each label once; re-export both together")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.manifest.input.shape

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    def quantize(self, x: np.ndarray) -> np.ndarray:
        q = self.manifest.input
        if q.dtype == "float32":
            return x.astype(np.float32)
        info = np.iinfo(q.dtype)
        return np.clip(np.round(x / q.scale + q.zero_point), info.min, info.max).astype(q.dtype)

    def dequantize(self, y: np.ndarray) -> np.ndarray:
        q = self.manifest.output
        if q.dtype == "float32":
            return y.astype(np.float32)
        return (q.scale * (y.astype(np.float32) - q.zero_point)).astype(np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Run one example (without batch axis) or a batch of one; return float scores."""
        if self._closed:
            raise ModelError(f"{self.path}: model is closed")
        x = np.asarray(x, dtype=np.float32)
        want = self.input_shape
        if x.shape == want[1:]:
            x = x[None]
        if x.shape != want:
            raise ModelError(
                f"{self.path}: input shape {x.shape} does not match the model's {want}"
            )
        with self._lock:
            self._interpreter.set_tensor(self._in["index"], self.quantize(x))
            self._interpreter.invoke()
            y = np.asarray(self._interpreter.get_tensor(self._out["index"]))
        return np.asarray(self.dequantize(y)[0])

    def predict_raw(self, q: np.ndarray) -> np.ndarray:
        """Run an already-quantised batch of one and return the raw output tensor (for tests)."""
        with self._lock:
            self._interpreter.set_tensor(self._in["index"], q)
            self._interpreter.invoke()
            return np.array(self._interpreter.get_tensor(self._out["index"]))

    def _close(self) -> None:
        self._interpreter = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"runtime={self.runtime}"
        return f"<QuantizedModel {self.path.name} {self.manifest.task} {state}>"


def open_model(
    model: str | Path | QuantizedModel,
    *,
    task: str,
    num_threads: int = 1,
    runtime: str | None = None,
) -> tuple[QuantizedModel, bool]:
    """``model`` as ``(QuantizedModel, owned)`` for a classifier of ``task``.

    An open :class:`QuantizedModel` is used as it is and stays the caller's to close
    (``owned=False``); a path is opened here (``owned=True``).  A manifest written for another
    task is refused with :class:`~edge.errors.ModelError` naming the file, and what was opened
    here is closed again.
    """
    owned = not isinstance(model, QuantizedModel)
    qm = (model if isinstance(model, QuantizedModel)
          else QuantizedModel(model, num_threads=num_threads, runtime=runtime))
    if qm.manifest.task != task:
        if owned:
            qm.close()
        raise ModelError(f"{qm.path}: manifest task is {qm.manifest.task!r}, expected {task!r}")
    return qm, owned
