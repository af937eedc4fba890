"""bench/speech_bench.py builds the seed project's CNN on the recipe of the model it measures:
that recipe must stay valid whatever the shipped ensemble adds (a third network, fewer rows)."""

from __future__ import annotations

from pathlib import Path

from bench.speech_bench import seed_recipe
from convert.speech.recipe import SpeechRecipe

REPO = Path(__file__).resolve().parent.parent


def test_the_seed_cnn_is_built_on_the_shipped_models_features():
    shipped = SpeechRecipe.load(REPO / "models" / "speech_emotion_int8.json")
    seed = seed_recipe(shipped)
    assert seed.model.kind == "seed" and seed.features.pooling == "none"
    assert seed.mfcc.n_columns == shipped.mfcc.n_columns  # the same frames, every one read
