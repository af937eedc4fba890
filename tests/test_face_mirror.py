"""The mirror pass runs only for faces the first pass is unsure of."""

from __future__ import annotations

import numpy as np

from edge.models.face import face_probabilities


class CountingModel:
    """Returns ``first`` for the face and ``mirrored`` for its mirror image; counts invokes."""

    def __init__(self, first, mirrored):
        self.first, self.mirrored, self.calls = np.asarray(first), np.asarray(mirrored), 0

    def predict(self, x):
        self.calls += 1
        return self.first if x[0, 0, 0] == 1 else self.mirrored


def _face():
    face = np.zeros((4, 4, 1), np.float32)
    face[0, 0, 0] = 1  # marks the unmirrored face (its mirror has it at [0, -1])
    return face


def test_confident_faces_skip_the_mirror_and_unsure_ones_average():
    sure = CountingModel([0.9, 0.1], [0.2, 0.8])
    p = face_probabilities(sure, _face(), mirror_below=0.5)  # type: ignore[arg-type]
    assert sure.calls == 1 and np.allclose(p, [0.9, 0.1])
    unsure = CountingModel([0.45, 0.55], [0.8, 0.2])
    p = face_probabilities(unsure, _face(), mirror_below=0.6)  # type: ignore[arg-type]
    assert unsure.calls == 2 and np.allclose(p, [0.625, 0.375])
    always = CountingModel([0.9, 0.1], [0.2, 0.8])
    p = face_probabilities(always, _face())  # type: ignore[arg-type]
    assert always.calls == 2 and np.allclose(p, [0.55, 0.45])
    never = CountingModel([0.45, 0.55], [0.8, 0.2])
    face_probabilities(never, _face(), mirror=False)  # type: ignore[arg-type]
    assert never.calls == 1
