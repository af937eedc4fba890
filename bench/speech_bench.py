"""Speech-path benchmark: prints figures measured side by side in one run (not a test).

1. MFCC per 3 s clip: edge.features vs python_speech_features vs librosa.
2. Streaming MFCC per hop vs recomputing the whole model window every hop.
3. int8 vs float32 latency and size: the shipped speech model and the seed project's CNN
   (float32 and seed builds use the same architecture with random weights: cost does not depend
   on the weights).
4. Speech per hop on the device path (streaming MFCC, adaptation, gate, model: the loop's own
   ``SpeechStream``), the shipped model beside the first shipped one (``bench/baseline/``).

Run: ``python -m bench.speech_bench [--model models/speech_emotion_int8.tflite]``.
Timings are medians of interleaved repeats, one interpreter thread, so the ratios are fair even
on a busy machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

# As on the device (the systemd unit sets it): a multi-threaded BLAS only spins on small matrices,
# and on a busy machine it makes every NumPy timing here several times slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402  (after the thread settings, which numpy reads at import)

if TYPE_CHECKING:
    from convert.speech.recipe import SpeechRecipe


def interleaved(funcs: dict[str, Callable[[], object]], repeats: int, inner: int) -> dict[str, float]:
    """Median seconds per call of each function, the functions taking turns."""
    times: dict[str, list[float]] = {k: [] for k in funcs}
    for f in funcs.values():
        f()  # warm up caches, JIT (librosa/numba) and allocations
    for _ in range(repeats):
        for name, f in funcs.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                f()
            times[name].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_mfcc(clip: np.ndarray) -> None:
    import librosa
    import python_speech_features as psf

    from edge.features import Mfcc, MfccConfig

    cfg = MfccConfig()  # python_speech_features' parameters, so all three compute the same thing
    ours = Mfcc(cfg)
    x64 = clip.astype(np.float64)
    t = interleaved(
        {
            "edge.features": lambda: ours(x64),
            "python_speech_features": lambda: psf.mfcc(x64, 16000),
            "librosa": lambda: librosa.feature.mfcc(
                y=clip, sr=16000, n_mfcc=13, n_fft=512, hop_length=160, win_length=400,
                n_mels=26, center=False),
        },
        repeats=15, inner=10,
    )
    print("\n[1] MFCC of one 3 s clip (13 coefficients, 26 mel bands, 25/10 ms)")
    for name, s in t.items():
        print(f"    {name:24s} {s * 1e3:7.2f} ms   ({s / t['edge.features']:.1f}x ours)")


def bench_streaming(clip: np.ndarray, model: Path | None) -> None:
    from edge.features import Mfcc, MfccConfig, StreamingMfcc
    from edge.models.speech import SpeechClassifier

    if model is not None and model.is_file():
        # The device's own reading of the manifest (prosody and its step included).
        with SpeechClassifier(model) as clf:
            cfg, window, hop = clf.config, clf.window_frames, clf.hop_frames
    else:
        cfg, window, hop = MfccConfig(), 300, 50
    mfcc = Mfcc(cfg)
    hop_samples = hop * cfg.frame_step
    win_samples = (window - 1) * cfg.frame_step + cfg.frame_length
    signal = np.tile(clip, 4)[: win_samples + 40 * hop_samples].astype(np.float64)
    # The same stream with and without the prosody columns (edge.features.prosody), whichever
    # the model uses: what the recipe option costs per hop.
    streams = {"stream": StreamingMfcc(mfcc=mfcc),
               "other": StreamingMfcc(dataclasses.replace(cfg, prosody=not cfg.prosody))}
    pos = {name: win_samples for name in streams}
    for stream in streams.values():
        stream.process(signal[:win_samples])

    def one_hop(name: str) -> Callable[[], object]:
        def run() -> object:
            if pos[name] + hop_samples > signal.size:
                pos[name] = win_samples
            out = streams[name].process(signal[pos[name] : pos[name] + hop_samples])
            pos[name] += hop_samples
            return out
        return run

    t = interleaved(
        {"stream": one_hop("stream"), "other": one_hop("other"),
         "recompute": lambda: mfcc(signal[:win_samples])}, repeats=15, inner=20
    )
    print(f"\n[2] MFCC per hop: window {window * cfg.hop_length_s:g} s, hop {hop * cfg.hop_length_s:g} s"
          f" ({cfg.n_mels} mels, {cfg.n_ceps} ceps)")
    print(f"    streaming (new samples only)   {t['stream'] * 1e3:7.3f} ms")
    print(f"    recompute whole window          {t['recompute'] * 1e3:7.3f} ms")
    print(f"    streaming is {t['recompute'] / t['stream']:.1f}x cheaper")
    with_p, without = (t["stream"], t["other"]) if cfg.prosody else (t["other"], t["stream"])
    step = f", every {cfg.prosody_step * cfg.hop_length_s * 1e3:g} ms" if cfg.prosody else ""
    print(f"    streaming with the 12 prosody columns{step} {with_p * 1e3:7.3f} ms, without "
          f"{without * 1e3:7.3f} ms: {with_p / without:.1f}x")


def _tflite_pair(keras_model, shape) -> tuple[bytes, bytes]:
    import tensorflow as tf

    from convert.export import convert_int8, quiet_convert

    rep = np.random.default_rng(0).standard_normal((64, *shape)).astype(np.float32)
    f32 = quiet_convert(tf.lite.TFLiteConverter.from_keras_model(keras_model))
    return f32, convert_int8(keras_model, rep)


def _latency(tflite: bytes) -> float:
    """Median seconds per invoke of an in-memory model (the same timer as the model reports)."""
    import tempfile

    from convert.export import tflite_latency_ms

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(tflite)
        return tflite_latency_ms(path, runs=30, warmup=3) / 1e3


def bench_models(model: Path | None) -> None:

    from convert.speech.model import build_model
    from convert.speech.recipe import SpeechRecipe
    from edge.labels import COMMON_LABELS
    from edge.models.manifest import manifest_path_for
    from edge.models.runtime import resolve_interpreter_class

    recipe = SpeechRecipe()
    shipped_bytes = None
    if model is not None and model.is_file():
        recipe = SpeechRecipe.load(manifest_path_for(model))  # the recipe that made it
        shipped_bytes = model.read_bytes()
    seed = seed_recipe(recipe)
    ours = recipe.model.kind
    # Ours predicts the 7 fusion labels; the seed project's CNN RAVDESS's 8 emotions.
    labels = {ours: len(COMMON_LABELS), "seed CNN": 8}
    runtime, _ = resolve_interpreter_class()
    print(f"\n[3] model latency per window ({runtime}, 1 thread) and size; window "
          f"{recipe.features.window_frames} frames of {recipe.mfcc.n_columns} columns")
    print(f"    {'model':34s} {'params':>9s} {'size':>10s} {'latency':>10s}")
    rows = []
    for name, r in ((ours, recipe), ("seed CNN", seed)):
        km = build_model(r, labels[name])
        f32, i8 = _tflite_pair(km, tuple(km.input_shape[1:]))
        name_i8 = f"{name} int8"
        if name == ours and shipped_bytes is not None:
            i8, name_i8 = shipped_bytes, f"{name} int8 (the --model file)"
        for label, blob in ((f"{name} float32", f32), (name_i8, i8)):
            rows.append((label, km.count_params(), len(blob), _latency(blob)))
    for label, params, size, lat in rows:
        print(f"    {label:34s} {params:9,d} {size / 1024:8.1f} KB {lat * 1e3:8.3f} ms")
    o32, oi8, s32, si8 = rows
    print(f"    int8 vs float32, ours: {o32[3] / oi8[3]:.1f}x faster, {o32[2] / oi8[2]:.1f}x smaller;"
          f" seed CNN: {s32[3] / si8[3]:.1f}x faster, {s32[2] / si8[2]:.1f}x smaller")
    print(f"    ours int8 vs seed CNN int8: {si8[3] / oi8[3]:.1f}x faster, {si8[2] / oi8[2]:.1f}x smaller")


def seed_recipe(recipe: SpeechRecipe) -> SpeechRecipe:
    """The seed project's CNN on ``recipe``'s features: it reads every frame of the same window,
    whatever the shipped model pools.  Its [model] section is the defaults (the seed CNN reads
    only its kind), so no setting of the shipped model's branches is carried over."""
    return dataclasses.replace(
        recipe, features=dataclasses.replace(recipe.features, pooling="none"),
        model=type(recipe.model)(kind="seed"))


def bench_per_hop(clip: np.ndarray, model: Path, baseline: Path) -> None:
    from edge.models.speech import SpeechClassifier, SpeechStream

    speech = np.tile(clip, 20).astype(np.float32)  # 60 s of speech
    streams, positions = {}, {}
    for name, path in (("baseline (v1)", baseline), ("shipped", model)):
        clf = SpeechClassifier(path)
        streams[name] = SpeechStream(clf)
        hop = clf.hop_frames * clf.config.frame_step
        streams[name].feed(speech[: clf.window_frames * clf.config.frame_step])
        positions[name] = [clf.window_frames * clf.config.frame_step, hop]

    def one_hop(name: str) -> Callable[[], object]:
        def run() -> object:
            pos, hop = positions[name]
            if pos + hop > speech.size:
                pos = 0
                streams[name].reset()
                streams[name].feed(speech[: 3 * 16000])
                pos = 3 * 16000
            out = streams[name].feed(speech[pos : pos + hop])
            positions[name][0] = pos + hop
            return out
        return run

    t = interleaved({name: one_hop(name) for name in streams}, repeats=15, inner=20)
    base, new = t["baseline (v1)"], t["shipped"]
    adapts = streams["shipped"].classifier.adaptation is not None
    print(f"\n[4] speech per 0.5 s hop on the device path (features, {'adaptation, ' if adapts else ''}"
          f"gate, model; one thread)")
    print(f"    baseline v1 (RAVDESS, per-window CMN)  {base * 1e3:7.3f} ms")
    print(f"    shipped                                {new * 1e3:7.3f} ms   ({new / base:.2f}x the "
          f"baseline; target <= 3x)")


def main() -> None:
    from edge.sources.audio_file import load_audio

    here = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=here / "models" / "speech_emotion_int8.tflite")
    ap.add_argument("--baseline", type=Path,
                    default=here / "bench" / "baseline" / "speech_emotion_v1_int8.tflite",
                    help="the model the shipped one is compared with in [4]")
    ap.add_argument("--clip", type=Path, default=here / "demo" / "audio" / "03a01Wa.flac")
    args = ap.parse_args()
    x = load_audio(args.clip, 16000)
    clip = np.resize(x, 48000).astype(np.float32)  # exactly 3 s
    print(f"speech benchmark: {os.cpu_count()} CPUs, clip {args.clip.name} looped to 3.0 s")
    bench_mfcc(clip)
    bench_streaming(clip, args.model)
    bench_models(args.model)
    bench_per_hop(clip, args.model, args.baseline)


if __name__ == "__main__":
    main()
