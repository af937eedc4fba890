"""The face expression classifier: a preprocessed face crop -> int8 model -> probabilities.

Faces reach the network through :func:`edge.features.face.crop_face`, the code training used;
the model's manifest says how (input size, margin, normalisation).  Finding faces in a frame is
the job of :mod:`edge.vision`; :meth:`FaceClassifier.classify_frame` runs the detector it is given.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError, ManifestMismatchError
from ..features.face import FacePreprocessConfig, crop_face
from ..interfaces import Box, FaceDetector, GrayFrame
from ..lifecycle import Closeable
from ..sources.images import to_gray
from .runtime import QuantizedModel, open_model

__all__ = [
    "FACE_MODEL_FILE",
    "FACE_TASK",
    "FER_LABELS",
    "Face",
    "FaceClassifier",
    "face_probabilities",
    "apply_log_offsets",
    "class_offsets",
    "MIRROR_BELOW",
]

logger = logging.getLogger(__name__)

#: File name of the shipped face model (found with :func:`edge.paths.default_model`).
FACE_MODEL_FILE = "face_expression_int8.tflite"
#: Manifest ``task`` of face expression models; :class:`FaceClassifier` refuses any other.
FACE_TASK = "face_expression"

#: FER2013 label order (index = FER class id).
FER_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


@dataclasses.dataclass(frozen=True)
class Face:
    """One classified face: box ``(x, y, w, h)`` in frame pixels, label and probabilities."""

    box: Box
    label: str
    scores: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [int(v) for v in self.box],
            "label": self.label,
            "scores": {k: round(float(v), 4) for k, v in self.scores.items()},
        }


#: The device looks at the mirror image only when the first pass's top probability is below
#: this: the average helps the uncertain faces, and a confident face's answer rarely changes.
#: Chosen on FER2013 PublicTest with the shipped model (`python -m bench.face_mirror`; the model
#: card has the figures): it keeps the always-mirror accuracy for a third of the second passes.
MIRROR_BELOW = 0.5
#: Largest per-class log offset a manifest may carry (a factor of e^3 = 20 on a probability):
#: beyond that the offsets would be deciding, not the model.
MAX_LOG_OFFSET = 3.0


def class_offsets(model: QuantizedModel) -> npt.NDArray[np.float64] | None:
    """The log offset per label from the model's manifest (``calibration.log_offsets``), in
    label order; ``None`` when it has none.  Refused with one line when it does not fit."""
    manifest = getattr(model, "manifest", None)  # a stand-in model (tests, benches) has none
    offsets = None if manifest is None else manifest.calibration.get("log_offsets")
    if offsets is None:
        return None
    try:
        unknown = set(offsets) - set(model.labels)
        values = np.array([float(offsets.get(label, 0.0)) for label in model.labels])
    except (AttributeError, TypeError, ValueError) as exc:
        raise ManifestMismatchError(f"{model.path}: calibration.log_offsets must map labels to "
                                    f"numbers ({exc}); re-export the model") from None
    if unknown or not np.all(np.isfinite(values)) or np.any(np.abs(values) > MAX_LOG_OFFSET):
        raise ManifestMismatchError(
            f"{model.path}: calibration.log_offsets must map the model's labels to numbers "
            f"within +-{MAX_LOG_OFFSET:g}" + (f" (unknown: {sorted(unknown)})" if unknown else "")
            + "; re-export the model")
    return values


def face_probabilities(
    model: QuantizedModel, face: npt.NDArray[np.float32], *, mirror: bool = True,
    mirror_below: float | None = None, offsets: npt.ArrayLike | None = None,
) -> npt.NDArray[np.float64]:
    """Expression probabilities for one preprocessed face ``(size, size, 1)``.

    With ``mirror`` the probabilities of the face and of its left-right mirror image are
    averaged (two invokes) when the first pass's top probability is below ``mirror_below``
    (``None``, the default here: always; the device uses :data:`MIRROR_BELOW`).  Expressions are
    left-right symmetric while a small CNN's errors are not, so the average cancels part of them
    (the model card gives the measured gain); ``emotion-convert face`` measures the shipped
    model both ways with this same function.  With ``offsets`` (the manifest's per-class log
    offsets, read once with :func:`class_offsets`) the result is then moved by them; without,
    it is the network's own probabilities, which the offsets are fitted on.
    """
    p = np.asarray(model.predict(face), dtype=np.float64)
    if mirror and (mirror_below is None or p.max() < mirror_below):
        p = (p + np.asarray(model.predict(np.ascontiguousarray(face[:, ::-1])), np.float64)) / 2
    return p if offsets is None else apply_log_offsets(p, offsets)


def apply_log_offsets(p: npt.ArrayLike, offsets: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Probabilities ``p`` (last axis: classes) with ``offsets`` added to their logarithms,
    renormalised: a shift of the prior the model learnt, as after a softmax with a bias."""
    q = np.asarray(p, dtype=np.float64) * np.exp(np.asarray(offsets, dtype=np.float64))
    return np.asarray(q / np.maximum(q.sum(axis=-1, keepdims=True), np.finfo(np.float64).tiny))


def _manifest_preprocess(model: QuantizedModel) -> FacePreprocessConfig:
    try:
        return FacePreprocessConfig.from_dict(model.manifest.preprocessing)
    except (ConfigError, TypeError, ValueError, OverflowError) as exc:  # int("x"), int(inf)
        raise ManifestMismatchError(f"{model.path}: its manifest's face preprocessing is not "
                                    f"usable ({exc}); re-export the model with emotion-convert "
                                    f"face") from None


class FaceClassifier(Closeable):
    """Classify the expression of faces in grey frames with an int8 model.

    ``model`` is a path to a ``.tflite`` (its manifest beside it) or an open
    :class:`edge.models.runtime.QuantizedModel`.  Faces are prepared as the manifest's
    preprocessing says (input size, crop margin, ...), the way the model was trained; a
    ``preprocess`` given explicitly (a device pinned to one setting) must equal it, or
    :class:`edge.errors.ManifestMismatchError` names the first field that differs.
    ``detector`` (see :func:`edge.vision.open_face_detector`) is needed only by
    :meth:`classify_frame`; it stays the caller's to close.
    ``mirror`` averages each face with its mirror image when the first pass is unsure (top
    probability below ``mirror_below``; ``None`` = always; see :func:`face_probabilities`).
    ``apply_offsets=False`` ignores the manifest's class offsets: the network's own
    probabilities, what the offsets are fitted on and what a teacher member teaches.
    """

    def __init__(
        self,
        model: str | Path | QuantizedModel,
        *,
        preprocess: FacePreprocessConfig | None = None,
        detector: FaceDetector | None = None,
        num_threads: int = 1,
        runtime: str | None = None,
        mirror: bool = True,
        mirror_below: float | None = MIRROR_BELOW,
        apply_offsets: bool = True,
    ) -> None:
        self.mirror = bool(mirror)
        self.mirror_below = mirror_below
        self.detector = detector
        self.model, self._owns_model = open_model(
            model, task=FACE_TASK, num_threads=num_threads, runtime=runtime)
        try:
            self.preprocess = preprocess or _manifest_preprocess(self.model)
            self.model.manifest.check_preprocessing(
                self.preprocess.to_dict(), source=str(self.model.path)
            )
            #: The manifest's per-class log offsets, read once (None: none, or not applied).
            self.offsets = class_offsets(self.model) if apply_offsets else None
            size = self.preprocess.size
            if tuple(self.model.input_shape[1:]) != (size, size, 1):
                raise ManifestMismatchError(
                    f"{self.model.path}: input shape {self.model.input_shape} does not fit "
                    f"{size}x{size} grey faces"
                )
        except Exception:
            self.close()
            raise

    @property
    def labels(self) -> tuple[str, ...]:
        return self.model.labels

    def scores(self, face: npt.NDArray[np.float32]) -> dict[str, float]:
        """Probabilities for one preprocessed face ``(size, size, 1)``."""
        p = face_probabilities(self.model, face, mirror=self.mirror,
                               mirror_below=self.mirror_below, offsets=self.offsets)
        return {label: float(v) for label, v in zip(self.labels, p)}

    def classify_crop(self, gray: GrayFrame, box: Sequence[int] | None = None) -> Face:
        """Classify the face inside ``box`` (``None``: the whole image is the face)."""
        gray = to_gray(gray)
        scores = self.scores(crop_face(gray, box, self.preprocess))
        label = max(scores, key=scores.__getitem__)
        x, y, w, h = (int(v) for v in (box or (0, 0, gray.shape[1], gray.shape[0])))
        return Face((x, y, w, h), label, scores)

    def classify_frame(self, frame: GrayFrame, detector: FaceDetector | None = None
                       ) -> list[Face]:
        """Detect and classify faces in a frame; ``[]`` when there is no face (not an error).
        ``detector`` looks instead of the classifier's own (``classify-face``'s photo scan)."""
        detector = detector or self.detector
        if detector is None:
            raise ConfigError(
                "FaceClassifier.classify_frame needs a detector: pass "
                "detector=edge.vision.open_face_detector() (or use classify_crop)")
        gray = to_gray(frame)
        return [self.classify_crop(gray, box) for box in detector.detect(gray)]

    def _close(self) -> None:
        """Release the model if this classifier opened it."""
        if self._owns_model:
            self.model.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<FaceClassifier {self.model.path.name} {self.preprocess.size}px {state}>"
