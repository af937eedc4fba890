"""The protocol that makes the numbers honest: folds hold out whole speakers, a clip's decision is
the device's own (mean probability over the speech windows chosen by the device's gate), and
nothing from a test fold is used for anything but scoring (no early stopping on it)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.config import AdaptConfig
from edge.errors import ConfigError
from edge.features.adapt import RunningStats
from edge.labels import fusion_map_for
from edge.models.runtime import QuantizedModel
from edge.models.speech import SpeechGate, windows_of

from ..export import convert_int8, int8_parity, save_model
from ..metrics import classification_metrics, mean_metrics
from .corpora import Utterance
from .features import NEUTRAL, FeatureBank
from .recipe import SpeechRecipe
from .train import train_model

__all__ = ["speaker_folds", "unseen_corpora", "clip_windows", "predict_clips", "Views", "views",
           "cross_validate", "leave_one_corpus_out", "int8_parity_of"]

logger = logging.getLogger(__name__)


def speaker_folds(utts: Sequence[Utterance], k: int) -> list[list[str]]:
    """Split the speakers into ``k`` folds; adjacent speakers go to one fold (RAVDESS numbers
    alternate male/female, so each fold gets both)."""
    speakers = sorted({u.speaker for u in utts})
    most = (len(speakers) + 1) // 2  # one pair of speakers per fold at least
    if k < 2 or k > most:
        allowed = f"--folds 2 to {most}, or " if most >= 2 else ""
        raise ConfigError(f"evaluate.folds = {k}: {len(speakers)} speakers give at most {most} "
                          f"speaker-independent folds (adjacent speakers share one); use "
                          f"{allowed}--folds 0 for none")
    folds: list[list[str]] = [[] for _ in range(k)]
    for i, s in enumerate(speakers):
        folds[(i // 2) % k].append(s)
    return folds


def clip_windows(
    bank: FeatureBank, recipe: SpeechRecipe, gate: SpeechGate
) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation windows of every clip (original audio only), exactly as the device makes them:
    the gate's speech windows, or all windows of a clip without any (the device would say
    "no speech"; scoring it as a wrong answer would hide nothing, but acted clips all contain
    speech)."""
    w, hop = recipe.features.window_frames, recipe.features.hop_frames
    xs, group = [], []
    for i, variants in enumerate(bank.variants):
        wins = windows_of(variants[0], w, hop)
        starts = [s for s, f in wins if gate.is_speech(f, recipe.mfcc)] or [s for s, _ in wins]
        xs += [bank.model_input(i, 0, s) for s in starts]
        group += [i] * len(starts)
    return np.asarray(xs, np.float32)[..., None], np.asarray(group)


def predict_clips(model: Any, bank: FeatureBank, recipe: SpeechRecipe, gate: SpeechGate,
                  branches: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Clip-level probabilities: the mean over each clip's windows (the device's decision).
    For an ensemble, ``branches`` receives each window's logits per branch (``logits``:
    windows x branches x labels) and its clip (``group``), so the weight between the branches
    can be studied without training again (``scripts/speech_decision_rules.py --branches``)."""
    x, group = clip_windows(bank, recipe, gate)
    opened = _with_branch_logits(model) if branches is not None else None
    if branches is None or opened is None:
        probs = np.asarray(model.predict(x, batch_size=256, verbose=0))
    else:  # one pass: the graph's own output (the figures), and its branches' logits
        out, *logits = opened.predict(x, batch_size=256, verbose=0)
        probs = np.asarray(out)
        branches.update(logits=np.stack([np.asarray(z, np.float32) for z in logits], axis=1),
                        group=group)
    return np.stack([probs[group == i].mean(axis=0) for i in range(len(bank.utts))])


def _with_branch_logits(model: Any) -> Any | None:
    """``model`` with its ensemble's branch logits (the inputs of its ``Average``, or of its
    ``weigh_*`` layers with a linear branch, in the branches' order) as further outputs, or
    None for a model of one branch."""
    import keras

    average = [layer for layer in model.layers if isinstance(layer, keras.layers.Average)]
    weighed = [layer.input for layer in model.layers if layer.name.startswith("weigh_")]
    if not (average or weighed):
        return None
    return keras.Model(model.inputs, [model.output, *(average[0].input if average else weighed)])


@dataclasses.dataclass(frozen=True)
class Views:
    """One split seen as training and device see it.  Without deployment adaptation all three
    views are the raw banks; with it the training clips are standardised per corpus (or
    speaker), ``adapted`` standardises the test clips with their own statistics (a device that
    has listened to them, unlabelled) and ``fresh`` with the training data's (a new device)."""

    train: FeatureBank
    adapted: FeatureBank
    fresh: FeatureBank
    prior: RunningStats | None
    #: With adapt.rows, the training data's statistics rows' statistics (the fresh view's).
    rows: RunningStats | None = None


def views(train: FeatureBank, test: FeatureBank, recipe: SpeechRecipe) -> Views:
    if recipe.adapt.mode == "none":
        return Views(train, test, test, None)
    share = recipe.adapt.neutral_share
    prior = train.pooled_stats(share)
    fresh = prior if recipe.adapt.fresh_share else None
    rows = train.standardize_with(prior).row_stats() if recipe.adapt.rows else None
    return Views(train.standardize_by(recipe.adapt.unit, fresh, share),
                 *_as_heard(test, prior, rows), prior, rows)


def _as_heard(test: FeatureBank, prior: RunningStats | None,
              rows: RunningStats | None = None) -> tuple[FeatureBank, FeatureBank]:
    """Held-out clips as a device standardises them: adapted and fresh (with ``prior``, the
    training data's statistics, and ``rows`` their statistics rows', adapt.rows); both as they
    are without deployment adaptation.  Adapted, they are one room whatever the training unit:
    a device cannot tell its speakers apart, so it adapts to everything it hears."""
    if prior is None:
        return test, test
    return test.standardize_by("corpus"), test.standardize_with(prior, rows)


def _score(model: Any, bank: FeatureBank, y: np.ndarray, labels: Sequence[str],
           recipe: SpeechRecipe, gate: SpeechGate,
           keep: dict[str, np.ndarray] | None = None, view: str = "adapted") -> dict[str, Any]:
    """Clip metrics, and each corpus's own when the clips come from several; ``keep`` collects
    the clip probabilities under ``view``."""
    branches: dict[str, np.ndarray] | None = {} if keep is not None else None
    probs = predict_clips(model, bank, recipe, gate, branches)
    if keep is not None:
        keep[view] = probs
        keep.update({f"{view}_window_{k}": v for k, v in (branches or {}).items()})
    pred = probs.argmax(1)
    m = classification_metrics(y, pred, labels)
    corpus = np.array([u.corpus for u in bank.utts])
    if len(set(corpus)) > 1:
        m["per_corpus"] = {c: _brief(classification_metrics(y[corpus == c], pred[corpus == c],
                                                            labels))
                           for c in dict.fromkeys(corpus)}
    return m


def cross_validate(
    bank: FeatureBank, labels: Sequence[str], recipe: SpeechRecipe, k: int,
    gate: SpeechGate | None = None, out_dir: Path | None = None, *,
    n_folds: int | None = None, parity_folds: int = 0,
) -> dict[str, Any]:
    """Speaker-independent k-fold: per-fold and mean UAR, accuracy, macro-F1, confusion.

    ``n_folds`` runs only the first folds of the same ``k``-way split (for costly references);
    the first ``parity_folds`` folds also convert their model to int8 and score it with the
    device runtime on the same held-out speakers.  With deployment adaptation the headline is
    the adapted figure (the held-out speakers standardised with their own statistics) and
    ``fresh`` gives the figure before any adaptation.
    """
    gate = gate or SpeechGate()
    label_index = {lab: i for i, lab in enumerate(labels)}
    y = np.array([label_index[u.label] for u in bank.utts])
    folds = speaker_folds(bank.utts, k)[:n_folds]
    results, parity = [], []
    for f, test_speakers in enumerate(folds):
        test = [i for i, u in enumerate(bank.utts) if u.speaker in test_speakers]
        train = [i for i, u in enumerate(bank.utts) if u.speaker not in test_speakers]
        assert not {bank.utts[i].speaker for i in train} & set(test_speakers)
        key = fold_key(recipe, folds=k, fold=f, test=sorted(test_speakers),
                       data=data_fingerprint(bank.utts))
        report = None if out_dir is None else out_dir / f"{recipe.model.kind}_fold{f}.json"
        earlier = None if f < parity_folds else _earlier(report, key)
        if earlier is not None:
            logger.info("fold %d: UAR %.3f, reused from %s (same recipe and split)", f,
                        earlier["uar"], report)
            results.append(earlier)
            continue
        t0 = time.perf_counter()
        v = views(bank.subset(train), bank.subset(test), recipe)
        model = train_model(v.train, y[train], labels, recipe, gate)
        m = _score(model, v.adapted, y[test], labels, recipe, gate)
        if v.prior is not None:
            m["fresh"] = _brief(_score(model, v.fresh, y[test], labels, recipe, gate))
        m.update(fold=f, test_speakers=sorted(test_speakers), train_clips=len(train),
                 test_clips=len(test), parameters=int(model.count_params()),
                 seconds=round(time.perf_counter() - t0, 1), fold_key=key)
        logger.info("%s fold %d/%d (test %s): UAR %.3f acc %.3f F1 %.3f", recipe.model.kind,
                    f + 1, len(folds), ",".join(sorted(test_speakers)), m["uar"], m["accuracy"],
                    m["macro_f1"])
        results.append(m)
        if f < parity_folds:
            row = int8_parity_of(model, v.train, v.adapted, y[test], labels, recipe, gate,
                                 v.prior)
            row["fold"] = f
            parity.append(row)
        if report is not None:
            report.write_text(json.dumps(m, indent=1))
    out: dict[str, Any] = {
        "protocol": f"{k}-fold speaker-independent cross-validation (whole speakers held out)"
        + (f", first {len(folds)} folds" if len(folds) < k else "")
        + "; clip decision = mean probability over the device's speech windows"
        + ("; held-out speakers standardised with their own statistics (adapted), 'fresh' with "
           "the training data's" if recipe.adapt.mode != "none" else ""),
        "recipe": recipe.to_dict(),
        "mean": mean_metrics(results),
        "folds": results,
    }
    if recipe.adapt.mode != "none":
        out["mean"]["fresh_uar"] = float(np.mean([r["fresh"]["uar"] for r in results]))
    corpora = {c for r in results for c in r.get("per_corpus", {})}
    if corpora:  # e.g. the RAVDESS speaker-independent figure of a multi-corpus recipe
        out["mean"]["per_corpus_uar"] = {
            c: float(np.mean([r["per_corpus"][c]["uar"] for r in results
                              if c in r.get("per_corpus", {})])) for c in sorted(corpora)}
    if parity:
        out["int8_parity"] = {
            "protocol": f"first {len(parity)} folds: the fold's model as float (Keras) and as "
            "int8 (device runtime) on the fold's held-out speakers, clip decisions",
            "mean": {key: float(np.mean([r[key] for r in parity])) for key in
                     ("float_uar", "int8_uar", "top1_agreement", "max_abs_prob_diff")},
            "folds": parity,
        }
    return out


def _brief(m: dict[str, Any]) -> dict[str, Any]:
    return {key: m[key] for key in ("uar", "accuracy", "macro_f1", "per_class_recall",
                                    "confusion")}


def leave_one_corpus_out(
    bank: FeatureBank, labels: Sequence[str], recipe: SpeechRecipe,
    gate: SpeechGate | None = None, out_dir: Path | None = None,
    heard: Mapping[str, FeatureBank] | None = None,
) -> dict[str, Any]:
    """For each corpus: train on all the others, score the whole unseen corpus over the labels it
    has (the model still chooses among all of its labels: a wrong one counts).  The figure every
    recipe choice is made on.  With deployment adaptation, ``uar`` is the unseen corpus
    standardised with its own statistics (a device that has listened to it), ``fresh`` with the
    training data's, and ``per_speaker`` with each speaker's own (speakers with several
    emotions only).  ``heard``: the same clips through test channels (banks in ``bank``'s
    order, by channel name); each unseen corpus is scored through each of them as well
    (``channels``), by the same model, adapted to what the channel lets through and fresh."""
    heard = heard or {}  # not copied: its banks may be built on first use
    gate = gate or SpeechGate()
    label_index = {lab: i for i, lab in enumerate(labels)}
    y = np.array([label_index[u.label] for u in bank.utts])
    corpora = list(dict.fromkeys(u.corpus for u in bank.utts))
    if len(corpora) < 2:
        raise ConfigError(f"leave-one-corpus-out needs two corpora or more, got {corpora}")
    rows: dict[str, dict[str, Any]] = {}
    t_all = time.perf_counter()
    key = fold_key(recipe, corpora=corpora, data=data_fingerprint(bank.utts))
    chosen = recipe.evaluate.loco_corpora
    for held in unseen_corpora(recipe, corpora):
        report = None if out_dir is None else out_dir / f"loco_{held}.json"
        earlier = _earlier(report, key)
        share = recipe.evaluate.neutral_room
        if earlier is not None and (
                not set(heard) <= set(earlier.get("channels", {}))
                or (share and earlier.get("neutral_room", {}).get("share") != share)
                or (recipe.evaluate.calibration and not _calibrated_as_now(earlier))
                or not {str(n) for n in recipe.evaluate.calls} <= set(earlier.get("calls", {}))):
            earlier = None  # scored before these channels, room, calibration or calls were asked for
        if earlier is not None:
            logger.info("LOCO %s: UAR %.3f, reused from %s (same recipe and data)", held,
                        earlier["uar"], report)
            rows[held] = earlier
            continue
        t0 = time.perf_counter()
        test = [i for i, u in enumerate(bank.utts) if u.corpus == held]
        train = [i for i, u in enumerate(bank.utts) if u.corpus != held]
        v = views(bank.subset(train), bank.subset(test), recipe)
        model = train_model(v.train, y[train], labels, recipe, gate)
        probs: dict[str, np.ndarray] = {}
        m = _score(model, v.adapted, y[test], labels, recipe, gate, probs)
        if v.prior is not None:
            m["fresh"] = _brief(_score(model, v.fresh, y[test], labels, recipe, gate, probs,
                                       "fresh"))
            several = _speakers_with_several_emotions(bank.subset(test))
            if several:
                sub = bank.subset([test[i] for i in several])
                per = sub.standardize_by("speaker")
                m["per_speaker"] = _brief(_score(model, per, y[test][several], labels, recipe,
                                                 gate))
                m["per_speaker"]["clips"] = len(several)
            if share:
                # The same clips in a room that mostly hears neutral speech: the statistics a
                # device would gather there (every clip is still scored).
                neutral = bank.subset(test).standardize_by("corpus", neutral_share=share)
                m["neutral_room"] = _brief(_score(model, neutral, y[test], labels, recipe, gate,
                                                  probs, "neutral_room"))
                m["neutral_room"]["share"] = share
            if recipe.evaluate.calibration:
                m["calibrated"] = _calibrated(model, bank.subset(test), y[test], labels, recipe,
                                              gate, probs, v.prior)
            if recipe.evaluate.calls:
                m["calls"] = _calls(model, bank.subset(test), y[test], labels, recipe, gate,
                                    probs, v.prior)
        if heard:
            m["channels"] = {}
        for name, channel in heard.items():
            adapted, fresh = _as_heard(channel.subset(test), v.prior, v.rows)
            m["channels"][name] = _brief(_score(model, adapted, y[test], labels, recipe, gate,
                                                probs, f"{name}_adapted"))
            if v.prior is not None:
                m["channels"][name]["fresh"] = _brief(_score(
                    model, fresh, y[test], labels, recipe, gate, probs, f"{name}_fresh"))
        m.update(train_clips=len(train), test_clips=len(test),
                 seconds=round(time.perf_counter() - t0, 1), fold_key=key)
        logger.info("LOCO %s: UAR %.3f%s (%d clips, %.0f s)", held, m["uar"],
                    f", fresh {m['fresh']['uar']:.3f}" if "fresh" in m else "", len(test),
                    m["seconds"])
        rows[held] = m
        if report is not None:
            report.write_text(json.dumps(m, indent=1))
            # Every clip's probabilities, so decision rules (e.g. a deployment's class prior)
            # can be studied without training the fold again.
            np.savez_compressed(report.with_name(f"loco_{held}_clips.npz"), labels=list(labels),
                                y=y[test], speaker=[bank.utts[i].speaker for i in test], **probs)
    out: dict[str, Any] = {
        "protocol": "leave one corpus out: train on the other corpora, score every clip of the "
        "unseen one (UAR over the labels it has; the model chooses among all of its labels); "
        "clip decision = mean probability over the device's speech windows",
        "recipe": recipe.to_dict(),
        "mean_uar": float(np.mean([r["uar"] for r in rows.values()])),
        **({"only": list(rows)} if chosen else {}),  # the mean is over these corpora alone
        "corpora": rows,
        "seconds": round(time.perf_counter() - t_all),
    }
    if recipe.adapt.mode != "none":
        out["mean_fresh_uar"] = float(np.mean([r["fresh"]["uar"] for r in rows.values()]))
        per = [r["per_speaker"]["uar"] for r in rows.values() if "per_speaker" in r]
        if per:
            out["mean_per_speaker_uar"] = float(np.mean(per))
        rooms = [r["neutral_room"]["uar"] for r in rows.values() if "neutral_room" in r]
        if rooms:
            out["mean_neutral_room_uar"] = float(np.mean(rooms))
        sizes = [str(n) for n in recipe.evaluate.calls]
        if sizes:
            out["calls"] = {n: {"mean_uar": float(np.mean([r["calls"][n]["uar"]
                                                           for r in rows.values()]))}
                            for n in sizes}
        calibrated = [r["calibrated"] for r in rows.values() if r.get("calibrated")]
        if calibrated:
            out["mean_calibrated_uar"] = float(np.mean([c["uar"] for c in calibrated]))
            out["mean_calibrated_fresh_uar"] = float(np.mean([c["fresh"]["uar"]
                                                              for c in calibrated]))
    if heard:
        out["channels"] = {name: {"mean_uar": float(np.mean([r["channels"][name]["uar"]
                                                             for r in rows.values()]))}
                           for name in heard}
        if recipe.adapt.mode != "none":
            for name in heard:
                out["channels"][name]["mean_fresh_uar"] = float(np.mean(
                    [r["channels"][name]["fresh"]["uar"] for r in rows.values()]))
    return out


_ADDED_LATER = (("model", "pooled_ceps", 0), ("augment", "babble_copies", 0),
                ("augment", "voice_copies", 0), ("train", "balance_power", 1.0),
                ("train", "mixup", 0.0), ("train", "average_from", 0),
                ("adapt", "neutral_share", 0.0), ("train", "arousal", 0.0),
                ("train", "coverage_power", 0.0), ("adapt", "rows", False))
"""Settings added after reports were written, and their defaults, which change nothing."""


def data_fingerprint(utts: Sequence[Utterance]) -> str:
    """What a fold's result depends on in the data: each clip's corpus, file name, size, label
    and speaker (not its folder: a corpus moved elsewhere is the same data).  A CSV edited
    between runs (a label changed, clips left out) is other data, whose fold reports were
    reused as if it were not."""
    rows = sorted((u.corpus, u.path.name, _size(u.path), u.label, u.speaker) for u in utts)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def unseen_corpora(recipe: SpeechRecipe, corpora: Sequence[str]) -> list[str]:
    """The corpora the leave-one-corpus-out scores, in the data's order
    (``evaluate.loco_corpora``; all of them when it is empty)."""
    chosen = recipe.evaluate.loco_corpora
    unknown = [c for c in chosen if c not in corpora]
    if unknown:
        raise ConfigError(f"evaluate.loco_corpora names {', '.join(unknown)}, which the data does "
                          f"not have; its corpora are {', '.join(corpora)}")
    return [c for c in corpora if not chosen or c in chosen]


def fold_key(recipe: SpeechRecipe, **split: Any) -> str:
    """What a fold's result depends on: the recipe without its [evaluate] section, and the
    split.  A fold report with the same key is reused instead of training the fold again."""
    what = {k: v for k, v in recipe.to_dict().items() if k != "evaluate"}
    for section, name, default in _ADDED_LATER:  # at their default: earlier reports' keys
        if what[section][name] == default:
            del what[section][name]
    return hashlib.sha256(json.dumps([what, split], sort_keys=True, default=str).encode()
                          ).hexdigest()[:16]


def _earlier(report: Path | None, key: str) -> dict[str, Any] | None:
    if report is None or not report.is_file():
        return None
    try:
        m = json.loads(report.read_text())
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and m.get("fold_key") == key else None


def _calibrated(model: Any, test: FeatureBank, y: np.ndarray, labels: Sequence[str],
                recipe: SpeechRecipe, gate: SpeechGate,
                probs: dict[str, np.ndarray], prior: RunningStats) -> dict[str, Any] | None:
    """Each speaker standardised after a calibration recording of their own, as ``classify
    --adapt-from`` does: every other of their neutral clips (in path order), whose speech
    statistics are blended with the training data's (``prior``, worth the device's
    ``adapt.prior_frames``); their other clips are scored, and the same clips fresh beside
    them (``probs["fresh"]``).  Speakers with several emotions and two neutral clips or more;
    ``None`` if there are none.  The probabilities go into ``probs["calibrated"]``, a row of
    NaN for each clip not scored."""
    several = set(_speakers_with_several_emotions(test))
    neutral: dict[str, list[int]] = {}
    for i, u in enumerate(test.utts):
        if u.label == NEUTRAL and i in several:
            neutral.setdefault(u.speaker, []).append(i)
    calibration = {i for clips in neutral.values() if len(clips) >= 2
                   for i in sorted(clips, key=lambda i: str(test.utts[i].path))[::2]}
    speakers = {test.utts[i].speaker for i in calibration}
    scored = [i for i, u in enumerate(test.utts) if u.speaker in speakers and i not in calibration]
    if not scored:
        return None
    prior_frames = AdaptConfig().prior_frames
    view = test.standardize_by(
        "speaker", weights=[1.0 if i in calibration else 0.0 for i in range(len(test.utts))],
        prior=prior, prior_frames=prior_frames)
    kept: dict[str, np.ndarray] = {}
    m = _brief(_score(model, view.subset(scored), y[scored], labels, recipe, gate, kept))
    probs["calibrated"] = np.full((len(test.utts), len(labels)), np.nan, np.float32)
    probs["calibrated"][scored] = kept["adapted"]
    m["fresh"] = _brief(classification_metrics(y[scored], probs["fresh"][scored].argmax(1),
                                               labels))
    speech_s = [sum(test.speech_frames(i) for i in calibration if test.utts[i].speaker == s)
                * recipe.mfcc.hop_length_s for s in speakers]
    m.update(clips=len(scored), speakers=len(speakers),
             calibration_speech_s=round(float(np.median(speech_s)), 1),
             prior_frames=prior_frames)
    return m


def _calls(model: Any, test: FeatureBank, y: np.ndarray, labels: Sequence[str],
           recipe: SpeechRecipe, gate: SpeechGate, probs: dict[str, np.ndarray],
           prior: RunningStats) -> dict[str, dict[str, Any]]:
    """The unseen corpus as ``emotion-edge classify`` hears it, for each number of files per
    call in ``evaluate.calls``: the clips shuffled (``train.seed``) and cut into calls of that
    many, speakers mixed as in a folder of recordings; each call standardised with its speech
    blended with the training data's (``prior``, worth the device's ``adapt.prior_frames``),
    every clip scored.  The probabilities go into ``probs["call_N"]``."""
    prior_frames = AdaptConfig().prior_frames
    out: dict[str, dict[str, Any]] = {}
    # Each clip's place in one shuffle, shared by every call size.
    place = np.empty(len(test.utts), np.int64)
    place[np.random.default_rng(recipe.train.seed).permutation(len(test.utts))] = np.arange(
        len(test.utts))
    for n in recipe.evaluate.calls:
        call = place // n
        view = test.standardize_by([str(c) for c in call], prior=prior, prior_frames=prior_frames)
        out[str(n)] = _brief(_score(model, view, y, labels, recipe, gate, probs, f"call_{n}"))
        out[str(n)].update(calls=int(call.max()) + 1, prior_frames=prior_frames)
    return out


def _calibrated_as_now(report: Mapping[str, Any]) -> bool:
    """Whether a fold report's calibrated view is the one :func:`_calibrated` computes now (the
    first ones used the recording's statistics alone; ``None``: the corpus had no speaker to
    calibrate)."""
    if "calibrated" not in report:
        return False
    return (report["calibrated"] is None
            or report["calibrated"].get("prior_frames") == AdaptConfig().prior_frames)


def _speakers_with_several_emotions(bank: FeatureBank, minimum: int = 3) -> list[int]:
    """Clips of the speakers who show at least ``minimum`` emotions: adapting to one speaker
    who only ever sounds angry would erase the very thing to recognise."""
    emotions: dict[str, set[str]] = {}
    for u in bank.utts:
        emotions.setdefault(u.speaker, set()).add(u.label)
    return [i for i, u in enumerate(bank.utts) if len(emotions[u.speaker]) >= minimum]


def int8_parity_of(
    model: Any, train: FeatureBank, test: FeatureBank, y_test: np.ndarray,
    labels: Sequence[str], recipe: SpeechRecipe, gate: SpeechGate,
    prior: RunningStats | None = None,
) -> dict[str, Any]:
    """Convert ``model`` with windows of ``train`` as representative data; compare float and
    int8 clip decisions on ``test``."""
    x_train, _ = clip_windows(train, recipe, gate)
    x_test, group = clip_windows(test, recipe, gate)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fold.tflite"
        save_model(convert_int8(model, x_train), path, name="fold", task="speech", labels=labels,
                   preprocessing=recipe.preprocessing(prior), fusion_map=fusion_map_for(labels),
                   metrics={}, training={})
        float_probs = np.asarray(model.predict(x_test, batch_size=256, verbose=0))
        with QuantizedModel(path) as q:
            row = int8_parity(q, float_probs, x_test, y_test[group], labels, group=group)
    logger.info("int8 parity: float UAR %.3f, int8 UAR %.3f, top-1 agreement %.3f",
                row["float_uar"], row["int8_uar"], row["top1_agreement"])
    return row
