"""Model manifests: the device refuses models that do not describe themselves correctly."""

from __future__ import annotations

import json

import pytest

from edge.errors import ManifestMismatchError, ModelError
from edge.models.manifest import (
    ModelManifest,
    TensorQuant,
    load_manifest,
    sha256_of,
    write_manifest,
)


def make(tmp_path, **changes):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"not really a model, but hashed all the same")
    fields = dict(
        name="m", task="speech", labels=("a", "b"),
        preprocessing={"sample_rate": 16000, "n_ceps": 13, "window": "hamming"},
        input=TensorQuant("int8", (1, 10, 13, 1), 0.05, -3),
        output=TensorQuant("int8", (1, 2), 1 / 256, -128),
        sha256=sha256_of(model), fusion_map={"a": "neutral", "b": None},
    )
    fields.update(changes)
    write_manifest(model, ModelManifest(**fields))
    return model


def test_round_trip(tmp_path):
    model = make(tmp_path)
    m = load_manifest(model)
    assert m.labels == ("a", "b") and m.input.shape == (1, 10, 13, 1)
    assert m.fusion_map == {"a": "neutral", "b": None}


def test_preprocessing_mismatch_names_the_field(tmp_path):
    m = load_manifest(make(tmp_path))
    m.check_preprocessing({"sample_rate": 16000, "n_ceps": 13})
    with pytest.raises(ManifestMismatchError, match="'n_ceps' is 13 .* 20"):
        m.check_preprocessing({"n_ceps": 20})
    with pytest.raises(ManifestMismatchError, match="no preprocessing field 'lifter'"):
        m.check_preprocessing({"lifter": 22})


def test_modified_model_file_is_refused(tmp_path):
    model = make(tmp_path)
    model.write_bytes(model.read_bytes() + b"!")
    with pytest.raises(ModelError, match="sha256"):
        load_manifest(model)


def test_missing_or_corrupt_manifest(tmp_path):
    model = make(tmp_path)
    manifest = model.with_suffix(".json")
    manifest.write_text("{not json")
    with pytest.raises(ModelError, match="not readable JSON"):
        load_manifest(model)
    manifest.unlink()
    with pytest.raises(ModelError, match="manifest .* not found"):
        load_manifest(model)
    with pytest.raises(ModelError, match="model file .* not found"):
        load_manifest(tmp_path / "absent.tflite")


def test_unknown_version_and_missing_fields(tmp_path):
    model = make(tmp_path)
    path = model.with_suffix(".json")
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(ModelError, match="version 99"):
        load_manifest(model)
    del data["labels"]
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="labels"):
        load_manifest(model)


@pytest.mark.parametrize("labels", [
    ["angry", "disgust", "fear", "happy", "sad", "surprise"],  # 6 for 7 outputs
    ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt"],  # 8
    ["angry", "disgust", "fear", "happy", "sad", "happy", "neutral"],  # a duplicate
])
def test_a_manifest_whose_labels_do_not_fit_the_outputs_is_refused(tmp_path, labels):
    pytest.importorskip("ai_edge_litert")
    import json
    import shutil
    from pathlib import Path

    from edge.errors import ModelError
    from edge.models.face import FaceClassifier
    from edge.models.manifest import sha256_of

    repo = Path(__file__).resolve().parent.parent
    model = tmp_path / "face_expression_int8.tflite"
    shutil.copy(repo / "models" / model.name, model)
    manifest = json.loads((repo / "models" / "face_expression_int8.json").read_text())
    manifest["labels"] = labels
    manifest["sha256"] = sha256_of(model)
    (tmp_path / "face_expression_int8.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=f"{len(labels)} labels .* for 7 model outputs"):
        FaceClassifier(model)


@pytest.mark.parametrize("role, field, value", [
    ("input", "scale", float("nan")), ("output", "scale", float("inf")),
    ("output", "scale", -1.0), ("output", "zero_point", float("inf")),
    ("input", "shape", [1, float("inf")]),
])
def test_non_finite_quantisation_is_refused_by_name(tmp_path, role, field, value):
    """A NaN scale passed the model comparison (NaN > tol is False) and gave NaN scores; int(inf)
    raised OverflowError (an internal error)."""
    model = make(tmp_path)
    path = model.with_suffix(".json")
    data = json.loads(path.read_text())
    data[role][field] = value
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="malformed") as info:
        load_manifest(model)
    assert str(path) in str(info.value)


def test_a_folder_given_as_the_model_is_named_a_folder(tmp_path):
    with pytest.raises(ModelError, match="is a folder; name the .tflite file"):
        load_manifest(tmp_path)
