"""``emotion-convert speech`` as steps: data -> features -> evaluation -> shipped model -> held-out
corpora.  Each step returns a typed record; the report is assembled from them at the end.

Protocol: speaker-independent folds inside the training data (whole speakers held out), the
shipped model trained on all of it, then scored through the device's own classifier on any
held-out corpus it never heard.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ConfigError
from edge.features.adapt import RunningStats
from edge.labels import COMMON_LABELS, fusion_map_for
from edge.models.speech import NO_SPEECH, SPEECH_MODEL_FILE, SpeechClassifier, SpeechGate
from edge.sources.audio_file import load_audio

from ..export import convert_int8, save_model
from ..metrics import classification_metrics, plot_confusion, plot_confusions
from ..recipe import warn_if_data_differs
from .channels import CHANNELS
from .corpora import (
    FUSION_RULE,
    RAVDESS_LABELS,
    Utterance,
    fusion_label,
    index_corpora,
    to_fusion_labels,
)
from .evaluate import (
    clip_windows,
    cross_validate,
    data_fingerprint,
    leave_one_corpus_out,
    speaker_folds,
    unseen_corpora,
    views,
)
from .features import FeatureBank
from .recipe import SpeechRecipe
from .train import train_model

__all__ = [
    "LICENCES",
    "Dataset",
    "Evaluation",
    "Shipped",
    "load_dataset",
    "evaluate",
    "ship",
    "score_held_out",
]

logger = logging.getLogger(__name__)

#: Licence of each corpus the project knows; a model inherits the strictest of its data's.
LICENCES: Mapping[str, str] = {
    "ravdess": "RAVDESS (Livingstone & Russo 2018, doi:10.5281/zenodo.1188976), CC BY-NC-SA 4.0: "
               "models trained on it inherit the non-commercial share-alike terms",
    "emodb": "EmoDB (Burkhardt et al. 2005), CC0 1.0",
    "nemo": "nEMO (Christop et al., LREC-COLING 2024), CC BY-NC-SA 4.0",
    "ased": "ASED v1 (Retta et al., ACM TALLIP 2022), research use",
    "emovo": "EMOVO (Costantini et al., LREC 2014), research use",
}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The training utterances and the label set the model will have, in output order."""

    utts: tuple[Utterance, ...]
    labels: tuple[str, ...]

    @property
    def corpora(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(u.corpus for u in self.utts))

    @property
    def speakers(self) -> int:
        return len({u.speaker for u in self.utts})

    def y(self) -> np.ndarray:
        index = {lab: i for i, lab in enumerate(self.labels)}
        return np.array([index[u.label] for u in self.utts])

    def licence(self) -> str:
        return "; ".join(LICENCES.get(c, f"{c}: as of your corpus") for c in self.corpora)

    def clips_per_corpus(self) -> dict[str, int]:
        counts = Counter(u.corpus for u in self.utts)
        return {c: counts[c] for c in self.corpora}

    def recorded(self) -> dict[str, Any]:
        """What a manifest records of the data (``training``), so that a model reproduced from
        it can tell whether it was given the same clips (:func:`warn_if_data_differs`)."""
        return {"clips_per_corpus": self.clips_per_corpus(),
                "data_fingerprint": data_fingerprint(self.utts)}



@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What the folds measured (JSON-ready dicts, as written to the manifest)."""

    cross_validation: dict[str, Any] | None = None
    int8_parity: dict[str, Any] | None = None
    reference: dict[str, Any] | None = None
    loco: dict[str, Any] | None = None

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.loco is not None:
            out["leave_one_corpus_out"] = self.loco
        if self.cross_validation is not None:
            out["cross_validation"] = self.cross_validation
        if self.int8_parity is not None:
            out["int8_parity"] = self.int8_parity
        if self.reference is not None:
            out["seed_cnn_reference"] = self.reference
        return out


@dataclasses.dataclass(frozen=True)
class Shipped:
    """The model written to the models folder."""

    path: Path
    tflite: bytes
    parameters: int
    training: dict[str, Any]
    prior: RunningStats | None


def label_order(labels: set[str]) -> tuple[str, ...]:
    """RAVDESS order first (the shipped model's), then any others alphabetically."""
    ordered = [lab for lab in RAVDESS_LABELS if lab in labels]
    return tuple(ordered + sorted(labels - set(ordered)))


class _BanksOnFirstUse(Mapping[str, FeatureBank]):
    """The test channels' banks, each built the first time a fold is scored through it: a LOCO
    whose folds are all reused from their reports never reads them (12-25 s from the cache,
    minutes without one)."""

    def __init__(self, names: Sequence[str], build: Callable[[str], FeatureBank]) -> None:
        self._names = tuple(names)
        self._build = build
        self._built: dict[str, FeatureBank] = {}

    def __getitem__(self, name: str) -> FeatureBank:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._built:
            self._built[name] = self._build(name)
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def load_dataset(recipe: SpeechRecipe, *, root: str | Path | None = None) -> Dataset:
    """Index the recipe's corpora and apply its label set."""
    utts = index_corpora(recipe.data.corpora, root)
    if recipe.data.labels == "fusion":
        fused = to_fusion_labels(utts)
        dropped = Counter(u.label for u in utts if u.label not in FUSION_RULE
                          and fusion_label(u.label) is None)
        for label, n in sorted(dropped.items()):
            example = next(u.path for u in utts if u.label == label)
            logger.warning("label %r (%d clip(s), e.g. %s) is not in the fusion label set (%s); "
                           "left out", label, n, example, ", ".join(COMMON_LABELS))
        utts = fused
    counts = Counter(u.label for u in utts)
    for label, n in sorted(counts.items()):
        # Every class weighs the same in training, so a stray label (a typo) of a clip or two
        # would become a class the model predicts as often as any other.
        if n < max(3, 0.05 * max(counts.values())):
            logger.warning("label %r has only %d clip(s) (e.g. %s): a typo? every label is a "
                           "class weighing as much as the others", label, n,
                           next(u.path for u in utts if u.label == label))
    labels = label_order(set(counts))
    if len(labels) < 2:
        raise ConfigError(f"need at least two labels to train, found {labels}")
    unshown = [label for label, common in fusion_map_for(labels).items() if common is None]
    for label in unshown:
        # The device fuses over the common labels only: this class would be left out, and the
        # share of a clip it wins would go to the labels that remain.
        logger.warning("label %r (%d clip(s)) is none of the emotions the appliance shows (%s): "
                       "the device will leave it out; rename it in the labels, map it on the "
                       "device with [fusion] speech_map, or train with --set data.labels=fusion",
                       label, counts[label], ", ".join(COMMON_LABELS))
    if len(labels) - len(unshown) < 2:
        logger.warning("fewer than two of the labels are emotions the appliance shows: on the "
                       "device this model can only ever show %s",
                       " or ".join(fusion_map_for(labels)[x] or "" for x in labels
                                   if x not in unshown) or "nothing")
    logger.info("%d clips, %d speakers, labels %s", len(utts), len({u.speaker for u in utts}),
                labels)
    return Dataset(tuple(utts), labels)


def evaluate(bank: FeatureBank, data: Dataset, recipe: SpeechRecipe, gate: SpeechGate,
             report_dir: Path, *, reference_only: bool = False,
             cache_dir: Path | None = None) -> Evaluation:
    """Leave one corpus out (also through the recipe's test channels), speaker-independent
    folds (with int8 parity on the first ones) and, if the recipe asks, the seed CNN reference
    on the first folds of the same split."""
    ev = recipe.evaluate
    loco = None
    if ev.loco and not reference_only:
        heard = _BanksOnFirstUse(ev.channels, lambda c: FeatureBank(
            data.utts, recipe, cache_dir=cache_dir, channel=c))
        loco = leave_one_corpus_out(bank, data.labels, recipe, gate, report_dir, heard)
    cv: dict[str, Any] | None = None
    parity = None
    if ev.folds and not reference_only:
        cv = cross_validate(bank, data.labels, recipe, ev.folds, gate, report_dir,
                            parity_folds=ev.parity_folds)
        parity = cv.pop("int8_parity", None)
    reference = None
    if ev.folds and (ev.reference_folds or reference_only):
        n = ev.reference_folds or ev.folds
        seed = recipe.replace("model", kind="seed")
        reference = cross_validate(bank, data.labels, seed, ev.folds, gate, report_dir,
                                   n_folds=n)
        if cv is not None:
            folds = cv["folds"][:n]
        else:  # an earlier run's fold reports, for the same split
            folds = [json.loads((report_dir / f"{recipe.model.kind}_fold{f}.json").read_text())
                     for f in range(n)]
        reference["ours_on_same_folds"] = {key: float(np.mean([f[key] for f in folds]))
                                           for key in ("uar", "accuracy")}
    return Evaluation(cv, parity, reference, loco)


def ship(bank: FeatureBank, data: Dataset, recipe: SpeechRecipe, gate: SpeechGate, out: Path,
         *, command: str) -> Shipped:
    """Train on every clip, convert to int8 with the training windows as calibration data."""
    t0 = time.perf_counter()
    logger.info("training the shipped model on all %d clips", len(data.utts))
    v = views(bank, bank, recipe)  # standardised per corpus/speaker when the model adapts
    model = train_model(v.train, data.y(), data.labels, recipe, gate)
    x_rep, _ = clip_windows(v.train, recipe, gate)
    training = {
        "data": ", ".join(data.corpora),
        "clips": len(data.utts),
        "speakers": data.speakers,
        **data.recorded(),
        "licence": data.licence(),
        "recipe": recipe.to_dict(),
        "parameters": int(model.count_params()),
        "command": command,
        "seconds": round(time.perf_counter() - t0),
    }
    return Shipped(out / SPEECH_MODEL_FILE, convert_int8(model, x_rep),
                   int(model.count_params()), training, v.prior)


def write(shipped: Shipped, data: Dataset, recipe: SpeechRecipe, metrics: Mapping[str, Any]
          ) -> None:
    save_model(shipped.tflite, shipped.path, name="speech_emotion", task="speech",
               labels=data.labels, preprocessing=recipe.preprocessing(shipped.prior),
               fusion_map=fusion_map_for(data.labels), metrics=dict(metrics),
               training=shipped.training)


def score_held_out(model_path: Path, utts: Sequence[Utterance], name: str, out: Path | None, *,
                   adapt: bool = False, channel: str | None = None) -> dict[str, Any]:
    """The shipped int8 model through the device's own classifier on a corpus it never heard:
    its clips of the common labels the model knows, each decided among all the model's labels
    (as ``classify`` decides: calling a clip of a corpus without surprise "surprised" is wrong),
    UAR over the labels the corpus has.  Probabilities of labels mapping to the same common
    label are summed (calm -> neutral); "no speech" counts as wrong.  With ``adapt`` the classifier
    first adapts to all of the corpus's speech (unlabelled), as ``classify --adapt`` does;
    ``channel`` hears every clip through that test channel (:mod:`convert.speech.channels`)
    first, a whole clip at a time (corpus clips are short)."""
    with SpeechClassifier(model_path) as clf:
        fmap = fusion_map_for(clf.labels)
        model_common = {c for c in fmap.values() if c is not None}
        test = [u for u in to_fusion_labels(utts) if u.label in model_common]
        if len(model_common) < 2:
            raise ConfigError(f"{model_path}: fewer than two of its labels "
                              f"({', '.join(clf.labels)}) are emotions the appliance shows "
                              f"({', '.join(COMMON_LABELS)}); it cannot be scored on them")
        if not test:
            raise ConfigError(f"{name}: no clip has a label the model knows "
                              f"({', '.join(label_order(model_common))})")
        if len(test) < len(utts):
            left = Counter(u.label for u in utts if fusion_label(u.label) not in model_common)
            logger.warning("%s: %d of %d clips have a label the model cannot show (%s); scored "
                           "on the other %d", name, len(utts) - len(test), len(utts),
                           ", ".join(f"{lab} {n}" for lab, n in sorted(left.items())), len(test))
        # Decided among every label the model has; "no speech" is a column of its own, never
        # right (a label no clip has is left out of the UAR).
        decided = [*label_order(model_common), NO_SPEECH]
        sr = clf.sample_rate
        through = None if channel is None else CHANNELS[channel]
        if adapt and clf.adaptation is not None:
            for u in test:
                if through is None:
                    clf.observe_file(u.path)
                else:
                    clf.observe_signal(through(load_audio(u.path, sr), sr))
        y_true, y_pred, no_speech = [], [], 0
        for u in test:
            d = (clf.classify_file(u.path) if through is None
                 else clf.classify_signal(through(load_audio(u.path, sr), sr)))
            if d.label == NO_SPEECH:
                no_speech += 1
                y_pred.append(len(decided) - 1)
            else:
                merged = {s: sum(p for lab, p in d.scores.items() if fmap[lab] == s)
                          for s in decided[:-1]}
                y_pred.append(decided.index(max(merged, key=merged.__getitem__)))
            y_true.append(decided.index(u.label))
    m = classification_metrics(y_true, y_pred, decided)
    m["protocol"] = (f"int8 model via edge.models.speech.SpeechClassifier on all {name} clips "
                     f"of the labels the model knows, each decided among all of the model's "
                     f"labels, UAR over the corpus's; calm counts as neutral, no-speech = wrong"
                     + ("; adapted to the corpus's speech first" if adapt else "")
                     + (f"; every clip heard through the {channel} channel" if channel else ""))
    m["no_speech_files"] = no_speech
    m["left_out_clips"] = len(utts) - len(test)
    if out is not None:
        plot_confusion(m["confusion"], decided, out / f"speech_{name}_confusion.png",
                       f"speech model on {name} (never trained on), UAR {m['uar']:.3f}")
    logger.info("held-out %s: UAR %.3f acc %.3f over %d clips", name, m["uar"], m["accuracy"],
                len(test))
    return m


def plot_loco(loco: Mapping[str, Any], labels: Sequence[str], path: Path) -> Path:
    """One confusion matrix per unseen corpus, side by side."""
    return plot_confusions(
        [(r["confusion"], f"{name} unseen: UAR {r['uar']:.2f}") for name, r in
         loco["corpora"].items()], labels, path)


def headline(metrics: Mapping[str, Any], path: Path | None) -> dict[str, Any]:
    h: dict[str, Any] = {} if path is None else {"model": str(path),
                                                 "bytes": path.stat().st_size}
    if "cross_validation" in metrics:
        h["cv_uar"] = metrics["cross_validation"]["mean"]["uar"]
        if "per_corpus_uar" in metrics["cross_validation"]["mean"]:
            h["cv_per_corpus_uar"] = metrics["cross_validation"]["mean"]["per_corpus_uar"]
        h["cv_accuracy"] = metrics["cross_validation"]["mean"]["accuracy"]
    if "seed_cnn_reference" in metrics:
        h["seed_cnn_uar"] = metrics["seed_cnn_reference"]["mean"]["uar"]
    if "int8_parity" in metrics:
        h["int8_parity"] = metrics["int8_parity"]["mean"]
    for name, m in metrics.get("held_out", {}).items():
        h[f"{name}_uar"] = m["uar"]
    if "leave_one_corpus_out" in metrics:
        loco = metrics["leave_one_corpus_out"]
        h["loco_mean_uar"] = loco["mean_uar"]
        if "only" in loco:  # evaluate.loco_corpora: the mean of these corpora alone
            h["loco_only"] = loco["only"]
        h["loco_uar"] = {c: r["uar"] for c, r in loco["corpora"].items()}
        if "mean_fresh_uar" in loco:
            h["loco_mean_fresh_uar"] = loco["mean_fresh_uar"]
        if "mean_neutral_room_uar" in loco:
            h["loco_mean_neutral_room_uar"] = loco["mean_neutral_room_uar"]
        for view in ("calibrated", "calibrated_fresh"):
            if f"mean_{view}_uar" in loco:
                h[f"loco_mean_{view}_uar"] = loco[f"mean_{view}_uar"]
        if "calls" in loco:
            h["loco_calls"] = {n: c["mean_uar"] for n, c in loco["calls"].items()}
        for name, c in loco.get("channels", {}).items():
            h[f"loco_{name}"] = c
    return h


def run(recipe: SpeechRecipe, out: Path, report_dir: Path, *, root: Path | None,
        test_corpora: Sequence[str], reference_only: bool, command: str,
        cache_dir: Path | None = None, evaluate_only: bool = False,
        reproducing: Path | None = None) -> dict[str, Any]:
    """The whole command; returns the headline it prints.  ``reproducing``: the manifest the
    recipe was read from, whose recorded data is compared with the data found."""
    data = load_dataset(recipe, root=root)
    if reproducing is not None:
        warn_if_data_differs(reproducing, data.recorded(), "clips_per_corpus", "clips")
    if recipe.evaluate.folds:
        speaker_folds(data.utts, recipe.evaluate.folds)  # before any training: too many folds
    corpora = sorted({u.corpus for u in data.utts})
    if recipe.evaluate.loco and len(corpora) < 2 and not reference_only:  # before the features
        ev = recipe.evaluate
        off = ["evaluate.loco=false"] + [f"'evaluate.{k}={v}'" for k, v, on in (
            ("channels", "[]", ev.channels), ("calls", "[]", ev.calls),
            ("calibration", "false", ev.calibration), ("neutral_room", "0", ev.neutral_room),
            ("loco_corpora", "[]", ev.loco_corpora)) if on]
        raise ConfigError(f"leave-one-corpus-out needs two corpora or more, got {corpora}: add "
                          f"another (--corpus KIND:PATH), or evaluate within this one with "
                          + " ".join(f"--set {o}" for o in off))
    if recipe.evaluate.loco and not reference_only:
        unseen_corpora(recipe, corpora)  # before the features: a mistyped name says so at once
    if recipe.adapt.rows and not (evaluate_only or reference_only):
        raise ConfigError("adapt.rows is measured, not shipped: the device does not standardise "
                          "the statistics rows per room; add --evaluate-only, or "
                          "--set adapt.rows=false")
    if recipe.evaluate.loco_corpora and not (evaluate_only or reference_only):
        raise ConfigError("evaluate.loco_corpora scores some corpora only: a shipped model's "
                          "manifest needs the whole leave-one-corpus-out; add --evaluate-only, or "
                          "--set 'evaluate.loco_corpora=[]'")
    gate = SpeechGate()
    # Only once the data is found: a mistyped --data left an empty output folder behind.
    for folder in (out, report_dir):
        folder.mkdir(parents=True, exist_ok=True)
    bank = FeatureBank(data.utts, recipe, augment=recipe.augmented, cache_dir=cache_dir)
    evaluation = evaluate(bank, data, recipe, gate, report_dir, reference_only=reference_only,
                          cache_dir=cache_dir)
    if reference_only:
        assert evaluation.reference is not None
        (report_dir / "seed_reference.json").write_text(json.dumps(evaluation.reference,
                                                                   indent=1))
        return {"seed_cnn_uar": evaluation.reference["mean"]["uar"],
                "ours_on_same_folds": evaluation.reference["ours_on_same_folds"]}
    metrics = evaluation.metrics()
    if evaluation.loco is not None:
        plot_loco(evaluation.loco, data.labels, out / "speech_loco_confusion.png")
    if evaluation.cross_validation is not None:
        cv = evaluation.cross_validation
        plot_confusion(cv["mean"]["confusion"], data.labels, out / "speech_confusion.png",
                       f"speech, {recipe.evaluate.folds}-fold speaker-independent, UAR "
                       f"{cv['mean']['uar']:.3f}")
    if evaluate_only:  # a recipe being compared: its reports, no model
        (report_dir / "summary.json").write_text(json.dumps(metrics, indent=1))
        return headline(metrics, None)
    shipped = ship(bank, data, recipe, gate, out, command=command)
    write(shipped, data, recipe, metrics)
    if test_corpora:
        metrics["held_out"] = {}
        for spec in test_corpora:
            utts = index_corpora([spec], root)
            name = utts[0].corpus
            metrics["held_out"][name] = score_held_out(shipped.path, utts, name, out)
        write(shipped, data, recipe, metrics)
    (report_dir / "summary.json").write_text(json.dumps(metrics, indent=1))
    return headline(metrics, shipped.path)
