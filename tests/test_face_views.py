"""Several readings of one face (``FaceClassifier(views=N)``): the views are laid out as
``VIEW_LAYOUT`` says and turn with the face, and their probabilities are averaged before the
class offsets, which are applied once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import ConfigError
from edge.features.face import crop_face
from edge.interfaces import FaceBox, roll_of
from edge.models.face import (
    FACE_MODEL_FILE, MAX_VIEWS, VIEW_LAYOUT, FaceClassifier, apply_log_offsets, face_probabilities,
    face_views)

MODEL = Path(__file__).resolve().parent.parent / "models" / FACE_MODEL_FILE

boxes = st.tuples(st.integers(0, 500), st.integers(0, 500), st.integers(20, 400))


def _centre(box):
    x, y, w, h = box[:4]
    return np.array([x + (w - 1) / 2, y + (h - 1) / 2])


@given(boxes, st.integers(1, MAX_VIEWS))
def test_views_of_an_upright_box_are_the_box_then_the_layouts_crops(box, count):
    x, y, side = box
    views = face_views((x, y, side, side), count)
    assert len(views) == count and views[0] == (x, y, side, side)
    for view, (share, right, down) in zip(views, VIEW_LAYOUT):
        assert view[2] == view[3] == round(side * share)
        offset = _centre(view) - _centre(views[0])
        assert np.abs(offset - np.array([right, down]) * side).max() <= 0.5


@settings(deadline=None)
@given(boxes, st.floats(-60, 60).filter(lambda a: abs(a) > 1e-3))
def test_views_of_a_turned_box_keep_its_roll_and_move_along_the_face(box, roll):
    x, y, side = box
    turned = face_views(FaceBox(x, y, side, side, roll), MAX_VIEWS)
    upright = face_views((x, y, side, side), MAX_VIEWS)
    assert all(roll_of(v) == roll for v in turned)
    c, s = np.cos(np.radians(roll)), np.sin(np.radians(roll))
    turn = np.array([[c, -s], [s, c]])
    for t, u in zip(turned, upright):
        assert t[2:4] == u[2:4]
        # The upright view's offset from the box centre, turned by the face's roll (within the
        # rounding of both to whole pixels).
        want = turn @ (_centre(u) - _centre(upright[0]))
        assert np.abs(_centre(t) - _centre(turned[0]) - want).max() <= 1.0


@pytest.mark.parametrize("count", [0, MAX_VIEWS + 1])
def test_a_count_of_views_it_has_none_for_is_refused_in_one_line(count):
    with pytest.raises(ConfigError, match=f"views must be 1 to {MAX_VIEWS}"):
        face_views((0, 0, 10, 10), count)
    with pytest.raises(ConfigError, match=f"views must be 1 to {MAX_VIEWS}"):
        FaceClassifier(MODEL, views=count)


def test_the_shipped_model_averages_its_views_and_applies_its_offsets_once():
    rng = np.random.default_rng(0)
    gray = (rng.random((120, 160)) * 255).astype(np.uint8)
    gray[30:90, 50:110] = np.linspace(40, 220, 60, dtype=np.uint8)  # a patch that is not noise
    box = FaceBox(45, 25, 70, 70, 8.0)
    with FaceClassifier(MODEL) as one, FaceClassifier(MODEL, views=MAX_VIEWS) as many:
        assert one.offsets is not None  # the shipped manifest carries class offsets
        single = one.classify_crop(gray, box)
        assert single.scores == one.scores(crop_face(gray, box, one.preprocess))
        p = np.mean([face_probabilities(many.model, crop_face(gray, v, many.preprocess),
                                        mirror_below=many.mirror_below)
                     for v in face_views(box, MAX_VIEWS)], axis=0)
        read = many.classify_crop(gray, box)
        assert list(read.scores.values()) == pytest.approx(
            list(apply_log_offsets(p, many.offsets)), abs=1e-9)
        assert read.box == single.box == (45, 25, 70, 70)
        whole = many.classify_crop(gray)  # no box: the whole image is the face
        assert whole.box == (0, 0, 160, 120)
