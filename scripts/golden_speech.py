"""Regenerate tests/fixtures/golden_speech.json after shipping a new speech model.

The golden file pins the shipped model's int8 outputs (reference kernels, bit-exact on every
machine) for each window of the demo clips, computed through the device's own classifier
(features, adaptation prior, normalisation).  Run from the repository root:

    .venv/bin/python scripts/golden_speech.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge.models.runtime import QuantizedModel
from edge.models.speech import SPEECH_MODEL_FILE, SpeechClassifier, windows_of
from edge.sources.audio_file import load_audio

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    # No options: --help (or a stray argument) must not rewrite the tracked golden file.
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    model = REPO / "models" / SPEECH_MODEL_FILE
    out: dict[str, object] = {}
    with SpeechClassifier(model) as clf, QuantizedModel(model, reference_kernels=True) as ref:
        windows: dict[str, list[dict[str, object]]] = {}
        for clip in sorted((REPO / "demo" / "audio").glob("*.flac")):
            frames = clf.mfcc(load_audio(clip, clf.sample_rate))
            windows[clip.name] = [
                {"start": s, "int8": ref.predict_raw(ref.quantize(clf.model_input(w)[None]))[0]
                 .tolist()}
                for s, w in windows_of(frames, clf.window_frames, clf.hop_frames)]
        out = {"model_sha256": clf.manifest.sha256,
               "resolver": "BUILTIN_REF", "windows": windows}
    path = REPO / "tests" / "fixtures" / "golden_speech.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
