"""Calibrated late fusion of speech and face scores over one explicit common label set.

Each model's manifest carries a ``fusion_map`` (model label -> common label, or ``None`` to leave
the label out); the configuration may override single entries.  :class:`LabelMap` checks the map
covers every model label, then :class:`LateFusion` turns each present modality's probabilities
into common-label probabilities (temperature-calibrated, unmapped mass removed, renormalised) and
combines them in a weighted linear opinion pool, each label over the modalities that can express
it.  A linear pool, not a product, because a common label one model cannot express (a face model
of one's own with fewer labels) must not veto the other modality; and over those modalities only,
so that a model of few labels, whose mass is spread over few, does not outweigh one of many.
Missing modalities simply take no part; with none present there is no decision.
Everything here is pure: no I/O, no clocks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

from ..errors import ConfigError
from ..labels import COMMON_LABELS, fusion_map_for

__all__ = ["COMMON_LABELS", "fusion_map_for", "LabelMap", "ModalityScores", "FusedScores", "LateFusion"]

@dataclasses.dataclass(frozen=True)
class LabelMap:
    """The one explicit mapping from each modality's labels to the common label set."""

    modalities: Mapping[str, Mapping[str, str | None]]
    common: tuple[str, ...]

    @classmethod
    def build(
        cls,
        declared: Mapping[str, tuple[Sequence[str], Mapping[str, str | None]]],
        overrides: Mapping[str, Mapping[str, str]] | None = None,
    ) -> LabelMap:
        """Build from ``{modality: (model labels, manifest fusion_map)}`` plus config overrides.

        An override value of ``""`` removes the label from fusion.  Every model label must be
        mapped (to a label or to ``None``), so a model whose manifest forgot one is refused.
        """
        maps: dict[str, dict[str, str | None]] = {}
        for modality, (labels, fusion_map) in declared.items():
            merged: dict[str, str | None] = dict(fusion_map)
            for label, target in (overrides or {}).get(modality, {}).items():
                if label not in labels:
                    raise ConfigError(
                        f"fusion.{modality}_map names {label!r}, which is not a {modality} model "
                        f"label; allowed: {', '.join(labels)}"
                    )
                merged[label] = target or None
            missing = [label for label in labels if label not in merged]
            if missing:
                raise ConfigError(
                    f"the {modality} model's labels {missing} have no fusion mapping; add them to "
                    f"the manifest's fusion_map or to [fusion] {modality}_map in the config "
                    f"(map a label to \"\" to leave it out)"
                )
            extra = [label for label in merged if label not in labels]
            if extra:
                raise ConfigError(
                    f"the {modality} fusion_map names {extra}, which the model does not output; "
                    f"its labels are {', '.join(labels)}"
                )
            maps[modality] = {label: merged[label] for label in labels}
        targets = {t for m in maps.values() for t in m.values() if t is not None}
        if not targets:
            raise ConfigError("the fusion maps leave no common label; map at least one label")
        common = tuple(label for label in COMMON_LABELS if label in targets) + tuple(
            sorted(targets - set(COMMON_LABELS))
        )
        return cls(modalities=maps, common=common)

    def expressible(self, modality: str) -> frozenset[str]:
        """The common labels ``modality``'s model can say."""
        return frozenset(t for t in self.modalities[modality].values() if t is not None)

    def project(self, modality: str, scores: Mapping[str, float]) -> dict[str, float]:
        """Sum a modality's scores onto the common labels (unmapped labels dropped)."""
        mapping = self.modalities[modality]
        out = dict.fromkeys(self.common, 0.0)
        for label, p in scores.items():
            target = mapping.get(label)
            if target is not None:
                out[target] += float(p)
        return out


@dataclasses.dataclass(frozen=True)
class ModalityScores:
    """One modality's calibrated contribution, over the common labels."""

    modality: str
    label: str
    scores: Mapping[str, float]


@dataclasses.dataclass(frozen=True)
class FusedScores:
    """The fused distribution over common labels and the modalities that took part."""

    scores: Mapping[str, float]
    modalities: tuple[ModalityScores, ...]

    @property
    def label(self) -> str:
        return max(self.scores, key=self.scores.__getitem__)

    @property
    def confidence(self) -> float:
        return float(self.scores[self.label])


def calibrate(scores: Mapping[str, float], temperature: float) -> dict[str, float]:
    """Temperature scaling on probabilities: softmax(log p / T), i.e. p**(1/T) renormalised."""
    if not scores:
        return {}
    floor = 1e-9  # a zero probability stays (near) zero instead of log(0)
    logs = {k: math.log(max(float(v), floor)) / temperature for k, v in scores.items()}
    top = max(logs.values())
    exp = {k: math.exp(v - top) for k, v in logs.items()}
    total = sum(exp.values())
    return {k: v / total for k, v in exp.items()}


#: The share of a modality's weight a label it cannot express is pooled with (see
#: :meth:`LateFusion.pool`): 1 is the plain linear pool, 0 leaves such a label to the others.
MUTE_SHARE = 0.5


class LateFusion:
    """Weighted, temperature-calibrated linear pool over the modalities present in a cycle."""

    def __init__(
        self,
        label_map: LabelMap,
        *,
        weights: Mapping[str, float],
        temperatures: Mapping[str, float] | None = None,
    ) -> None:
        unknown = set(weights) - set(label_map.modalities)
        if unknown:
            raise ConfigError(f"fusion weights name unknown modalities {sorted(unknown)}")
        self.label_map = label_map
        self.weights = dict(weights)
        self.temperatures = dict(temperatures or {})

    @property
    def labels(self) -> tuple[str, ...]:
        return self.label_map.common

    def contribution(self, modality: str, scores: Mapping[str, float]) -> ModalityScores | None:
        """A modality's common-label distribution, or None if it puts no mass on any of them."""
        calibrated = calibrate(scores, self.temperatures.get(modality, 1.0))
        projected = self.label_map.project(modality, calibrated)
        mass = sum(projected.values())
        if mass <= 0.0:
            return None
        dist = {k: v / mass for k, v in projected.items()}
        best = max(dist, key=dist.__getitem__)
        return ModalityScores(modality=modality, label=best, scores=dist)

    def fuse(self, present: Mapping[str, Mapping[str, float]]) -> FusedScores | None:
        """Fuse ``{modality: model-label scores}`` for the modalities present this cycle.

        Absent modalities are simply not in ``present`` (or map to an empty dict).  Returns None
        when no modality with a positive weight contributed.
        """
        parts: list[ModalityScores] = []
        for modality, scores in present.items():
            if not scores:
                continue
            if modality not in self.label_map.modalities:
                raise ConfigError(f"no fusion mapping for modality {modality!r}")
            part = self.contribution(modality, scores)
            if part is not None:
                parts.append(part)
        return self.pool(parts)

    def pool(self, parts: Iterable[ModalityScores]) -> FusedScores | None:
        """Each common label's probability pooled with the full weight of the modalities that
        can express it and :data:`MUTE_SHARE` of the others' (their silence half counts as
        "not this"), then renormalised.  With every weight in full, a face model of two
        labels (happy, sad: each 0.5 of its mass at worst) outweighed a speech model spreading
        its mass over seven, and "happy or sad" was all the appliance said; with none of the
        others', a modality weighted 0.05 decided alone any label only it can say.  Where every
        modality expresses every label (the shipped models) this is the weighted linear pool."""
        parts = tuple(parts)
        total_w = sum(self.weights.get(p.modality, 1.0) for p in parts)
        if not parts or total_w <= 0.0:
            return None
        pooled = dict.fromkeys(self.labels, 0.0)
        weight = dict.fromkeys(self.labels, 0.0)
        for part in parts:
            w = self.weights.get(part.modality, 1.0)
            can = self.label_map.expressible(part.modality)
            for label in self.labels:
                if label in can:
                    pooled[label] += w * part.scores.get(label, 0.0)
                    weight[label] += w
                else:
                    weight[label] += MUTE_SHARE * w
        pooled = {k: v / weight[k] if weight[k] > 0.0 else 0.0 for k, v in pooled.items()}
        total = sum(pooled.values())
        fused = {k: v / total for k, v in pooled.items()} if total > 0.0 else pooled
        return FusedScores(scores=fused, modalities=parts)

    def __repr__(self) -> str:
        return (f"<LateFusion labels={list(self.labels)} weights={self.weights} "
                f"temperatures={self.temperatures}>")
