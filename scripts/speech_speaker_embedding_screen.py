"""Would a pretrained speaker encoder help the speech model?  A screen in minutes, beside
``speech_statistics_screen.py``, of Resemblyzer's GE2E voice encoder (Apache-2.0; three LSTM
layers of 256 units over 40 mel bands, 1.6 s partial utterances, a 256-value embedding, trained
to tell speakers apart), run here in NumPy from the weights its wheel carries:

    pip download --no-deps resemblyzer==0.1.4 -d /tmp/rz
    .venv/bin/python scripts/speech_speaker_embedding_screen.py --data ../shared/data \\
        --cache ~/.cache/emotion-edge/speech --encoder /tmp/rz/Resemblyzer-0.1.4-py3-none-any.whl

It asks two questions and prints one table each:

1. **Can a device tell its voices apart with it, to standardise each voice with its own
   statistics** (the per-speaker view that scores far above the room)?  Per corpus: how often a
   clip's nearest neighbour (cosine) is the same speaker, and the same emotion; and k-means
   clusters of the embeddings (as many as the corpus has speakers) scored against the speakers
   and against the emotions (adjusted Rand index).  Then the statistics screen's regression,
   trained per corpus and per speaker, scores each unseen corpus standardised per room, per
   true speaker, and per 2 and N clusters of the embeddings.
2. **Is the embedding itself a feature that transfers?**  The same regression leave one corpus
   out on the screen's statistics (20 cepstra and prosody: mean, spread, change), on the
   embedding, and on both.

The embeddings are cached in ``--cache`` (about 16 minutes for the 9,437 clips on one core).
Each clip is brought to -30 dBFS if quieter and cut into partials at 1.3 per second, as
Resemblyzer does; its silence trimming (webrtcvad) is left out.  A screen, not the recipe.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import pickle
import struct
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from speech_statistics_screen import (  # noqa: E402
    clip_arrays,
    loco,
    screen_clips,
    screen_parser,
    statistics,
    statistics_columns,
)

from convert.speech.features import FeatureBank  # noqa: E402
from edge.sources.audio_file import load_audio  # noqa: E402

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
PARTIAL_FRAMES = 160  # 10 ms mel frames per partial utterance: 1.6 s
LAYERS, HIDDEN = 3, 256


def load_legacy_checkpoint(data: bytes) -> dict[str, Any]:
    """A checkpoint in torch's legacy (pre-1.6, not zip) format, float32 tensors as NumPy arrays,
    read without torch: three header pickles, the object pickle (tensors refer to storages by
    key), the list of storage keys, then each storage's element count and raw little-endian
    values."""
    storages: dict[str, list[Any]] = {}

    class Reader(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return lambda storage, offset, size, stride, *_: ("tensor", storage, offset,
                                                                  size, stride)
            if module == "torch" and name == "FloatStorage":
                return name
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            raise pickle.UnpicklingError(f"{module}.{name} is not a float32 tensor checkpoint")

        def persistent_load(self, pid: Any) -> Any:
            _, kind, key, _location, _numel, _view = pid
            if kind != "FloatStorage":
                raise pickle.UnpicklingError(f"storage {kind} is not float32")
            return storages.setdefault(key, [None])

    import io

    f = io.BytesIO(data)
    for _ in range(3):  # magic number, protocol version, system info
        pickle.load(f)
    obj = Reader(f, encoding="latin1").load()
    for key in pickle.load(f):
        (count,) = struct.unpack("<q", f.read(8))
        storages[key][0] = np.frombuffer(f.read(4 * count), "<f4")

    def build(o: Any) -> Any:
        if isinstance(o, tuple) and o and o[0] == "tensor":
            _, storage, offset, size, stride = o
            return np.lib.stride_tricks.as_strided(
                storage[0][offset:], size, [4 * s for s in stride]).copy()
        if isinstance(o, dict):
            return type(o)((k, build(v)) for k, v in o.items())
        return o

    return build(obj)


def encoder_weights(path: Path) -> dict[str, np.ndarray]:
    """The voice encoder's weights from Resemblyzer's wheel or its ``pretrained.pt``."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as z:
            data = z.read("resemblyzer/pretrained.pt")
    else:
        data = path.read_bytes()
    return load_legacy_checkpoint(data)["model_state"]


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * v))  # = 1 / (1 + e^-v), without overflow


def embed_partials(mels: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """(partials, frames, 40) mel power -> (partials, 256) L2-normed embeddings: a stacked LSTM
    in torch's layout (gates input, forget, cell, output), the last layer's final state through
    a linear layer and ReLU."""
    seq = mels.astype(np.float32)
    for layer in range(LAYERS):
        w_ih, w_hh = w[f"lstm.weight_ih_l{layer}"], w[f"lstm.weight_hh_l{layer}"]
        xs = seq @ w_ih.T + w[f"lstm.bias_ih_l{layer}"] + w[f"lstm.bias_hh_l{layer}"]
        h = np.zeros((len(seq), HIDDEN), np.float32)
        c = np.zeros_like(h)
        out = np.empty((*seq.shape[:2], HIDDEN), np.float32)
        for t in range(seq.shape[1]):
            g = xs[:, t] + h @ w_hh.T
            i, f, o = (_sigmoid(g[:, k * HIDDEN:(k + 1) * HIDDEN]) for k in (0, 1, 3))
            c = f * c + i * np.tanh(g[:, 2 * HIDDEN:3 * HIDDEN])
            h = o * np.tanh(c)
            out[:, t] = h
        seq = out
    e = np.maximum(h @ w["linear.weight"].T + w["linear.bias"], 0.0)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-9)


def mel_partials(wav: np.ndarray) -> np.ndarray:
    """A clip as Resemblyzer cuts it: raised to -30 dBFS if quieter, 1.6 s partials at 1.3 per
    second, the last kept if it covers at least 75%; (partials, 160, 40) mel power."""
    import librosa

    gain_db = -30.0 - 10.0 * np.log10(np.mean(wav.astype(np.float64) ** 2) + 1e-12)
    if gain_db > 0:
        wav = wav * 10.0 ** (gain_db / 20.0)
    hop = SAMPLE_RATE // 100
    frames = int(np.ceil((len(wav) + 1) / hop))
    step = int(round(SAMPLE_RATE / 1.3 / hop))
    starts = list(range(0, max(1, frames - PARTIAL_FRAMES + step + 1), step))
    if len(starts) > 1 and (len(wav) - starts[-1] * hop) / (PARTIAL_FRAMES * hop) < 0.75:
        starts.pop()
    wav = np.pad(wav, (0, max(0, (starts[-1] + PARTIAL_FRAMES) * hop - len(wav))))
    mel = librosa.feature.melspectrogram(y=wav, sr=SAMPLE_RATE, n_fft=400, hop_length=hop,
                                         n_mels=40).T
    return np.stack([mel[s:s + PARTIAL_FRAMES] for s in starts]).astype(np.float32)


def clip_embeddings(paths: list[Path], w: dict[str, np.ndarray], cache: Path | None) -> np.ndarray:
    """Each clip's embedding (the normed mean of its partials'), cached under ``cache``."""
    key = hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest()[:16]
    file = cache / f"ge2e_{key}.npy" if cache else None
    if file and file.exists():
        return np.load(file)
    out = np.zeros((len(paths), 256), np.float32)
    batch: list[np.ndarray] = []
    owners: list[tuple[int, int]] = []

    def flush() -> None:
        if batch:
            e, k = embed_partials(np.concatenate(batch), w), 0
            for i, n in owners:
                m = e[k:k + n].mean(0)
                out[i], k = m / np.linalg.norm(m), k + n
            batch.clear()
            owners.clear()

    for i, path in enumerate(paths):
        parts = mel_partials(load_audio(path, SAMPLE_RATE))
        batch.append(parts)
        owners.append((i, len(parts)))
        if sum(len(b) for b in batch) >= 512:  # partials per LSTM pass: bounded memory
            flush()
        if i % 1000 == 999:
            logger.info("embedded %d of %d clips", i + 1, len(paths))
    flush()
    if file:
        file.parent.mkdir(parents=True, exist_ok=True)
        np.save(file, out)
    return out


def voice_clusters(emb: np.ndarray, corpus: np.ndarray, k: int,
                   speaker: np.ndarray) -> np.ndarray:
    """k-means clusters of the embeddings within each corpus (``k`` = 0: its speaker count)."""
    from sklearn.cluster import KMeans

    out = np.empty(len(corpus), dtype=object)
    for c in dict.fromkeys(corpus):
        m = corpus == c
        n = k or len(set(speaker[m]))
        out[m] = [f"{c}/{v}" for v in KMeans(n, n_init=10, random_state=0).fit_predict(emb[m])]
    return out.astype(str)


def _cells(res: dict[str, float], names: list[str]) -> str:
    return f"{np.mean(list(res.values())):.3f} (" + " ".join(f"{res[n]:.3f}" for n in names) + ")"


def main(argv: list[str] | None = None) -> int:
    p = screen_parser(__doc__.split("\n\n")[0])
    p.add_argument("--encoder", type=Path, required=True,
                   help="Resemblyzer's wheel (pip download --no-deps resemblyzer==0.1.4) or "
                        "its pretrained.pt")
    args = p.parse_args(argv)
    clips = screen_clips(args)
    if clips is None:
        return 2
    recipe, utts = clips
    try:
        w = encoder_weights(args.encoder)
    except (OSError, KeyError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        print(f"error: {args.encoder}: not Resemblyzer's wheel or pretrained.pt ({exc})",
              file=sys.stderr)
        return 2
    from sklearn.metrics import adjusted_rand_score

    emb = clip_embeddings([u.path for u in utts], w, args.cache)
    corpus, speaker, label, names = clip_arrays(utts)

    voices = voice_clusters(emb, corpus, 0, speaker)  # as many clusters as speakers
    print("corpus    nearest clip: same speaker / same emotion   "
          "k-means, k = speakers: ARI with speakers / with emotions")
    for c in names:
        m = corpus == c
        sim = emb[m] @ emb[m].T
        np.fill_diagonal(sim, -np.inf)
        near = sim.argmax(1)
        groups = voices[m]
        print(f"{c:9s} {np.mean(speaker[m][near] == speaker[m]):.3f} / "
              f"{np.mean(label[m][near] == label[m]):.3f}{'':26s}"
              f"{adjusted_rand_score(speaker[m], groups):.3f} / "
              f"{adjusted_rand_score(label[m], groups):.3f}")

    stats = statistics(FeatureBank(utts, recipe, augment=False, cache_dir=args.cache))
    x = statistics_columns(stats, recipe.mfcc, 20)  # 20 cepstra + prosody: mean, spread, change

    print()
    print(f"LOCO UAR, unseen corpus standardised per ... (mean ({' '.join(n[:5] for n in names)}))")
    tests = {"one room": corpus, "true speaker": speaker,
             "2 voice clusters": voice_clusters(emb, corpus, 2, speaker),
             "N voice clusters": voices}
    for unit in ("room", "speaker"):
        res = loco(x, corpus, speaker, label, tests, groups_trained=unit)
        for t in tests:
            print(f"trained per {unit:8s} scored per {t:17s} {_cells(res[t], names)}", flush=True)

    print()
    print("LOCO UAR of the features (room / speaker / fresh, as the statistics screen)")
    for what, f in (("statistics", x), ("embedding", emb), ("statistics + embedding",
                                                           np.c_[x, emb])):
        res = loco(f, corpus, speaker, label)
        print(f"{what:24s} " + "  ".join(f"{v} {_cells(r, names)}" for v, r in res.items()),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
