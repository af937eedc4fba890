"""The face model's recipe: typed sections read by the device configuration's strict loader.

``recipes/face.toml`` is the shipped model's recipe; a model's manifest stores the resolved one
under ``training.recipe``, so ``emotion-convert face --recipe model.json`` reproduces it.  Every
key documents its unit; unknown keys, wrong types and values out of range are
:class:`~edge.errors.ConfigError` naming them, and so are sections that disagree with each other
(:class:`FaceRecipe`).  What each choice did to the shipped model is in models/README.md.

The stages, in order: train the parent (``[parent]``, ``[train]``) at ``parent.input_size``,
adapt it at ``input.size`` (``[adapt]``), prune it (``[prune]``, faded over ``[ramp]``),
fine-tune the pruned model (``[finetune]``), refine it (``[refine]``), export int8
(``[export]``).  Every training stage learns from the FER2013 labels or, with
``ground_truth = "votes"``, from the FER+ crowd votes (:mod:`convert.face.ferplus` states the
rule).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from edge.config import Section, setting
from edge.errors import ConfigError
from edge.features.face import FacePreprocessConfig

from ..recipe import Recipe
from .model import StudentSpec
from .prune import PRUNE_CRITERIA, prune_spec
from .train import FINETUNE_TARGETS, TrainSection

__all__ = [
    "CROP_SOURCES",
    "PRUNE_SCHEDULES",
    "RunSection",
    "InputSection",
    "ParentSection",
    "AdaptSection",
    "PruneSection",
    "RampSection",
    "FinetuneSection",
    "RefineSection",
    "ExportSection",
    "FaceRecipe",
]

PRUNE_SCHEDULES = ("gradual", "one-shot")
#: Where the training crops come from (:attr:`InputSection.crops`).
CROP_SOURCES = ("fer", "detector")


def _changed(name: str, default: Any, doc: str | None = None, **bounds: Any) -> Any:
    """A :class:`TrainSection` field with another default (and optionally another doc)."""
    meta = dict(TrainSection.__dataclass_fields__[name].metadata)
    meta.update(bounds)
    if doc is not None:
        meta["doc"] = doc
    return setting(default, **meta)


@dataclasses.dataclass(frozen=True)
class RunSection(Section):
    _name: typing.ClassVar[str] = "run"
    seed: int = setting(
        0, "Base seed (integer): the image-folder split, the int8 calibration draw and [train] "
        "use it; [finetune] and [refine] seed + 1, [ramp] seed + 2, [adapt] seed + 3.",
        min=0, max=2**31 - 1)


@dataclasses.dataclass(frozen=True)
class InputSection(Section):
    _name: typing.ClassVar[str] = "input"
    size: int = setting(
        48, "Side of the network's square grey input, in pixels (the manifest records it and "
        "the device crops to it); FER2013's 48x48 faces are scaled to it.", min=8, max=512)
    margin: float = setting(
        0.0, "Fraction of the face box's width and height added on every side before cropping "
        "(0 = the box as is); recorded in the manifest.", min=0.0, max=1.0)
    upright: bool = setting(
        False, "Turn each face so its eyes are level before cropping, when the detector gives "
        "them (BlazeFace; Haar's boxes are cropped as they are); recorded in the manifest, so "
        "the device does the same.")
    crops: str = setting(
        "fer", "Where training and scoring crops come from: fer (FER2013's own crops) or "
        "detector (the device's BlazeFace finds each face on a padded canvas and the crop is "
        "cut from its box, upright with upright = true; convert/face/detected.py).",
        choices=CROP_SOURCES)

    def preprocess(self) -> FacePreprocessConfig:
        return FacePreprocessConfig(size=self.size, margin=self.margin, upright=self.upright)


@dataclasses.dataclass(frozen=True)
class ParentSection(Section):
    _name: typing.ClassVar[str] = "parent"
    input_size: int = setting(
        0, "Side of the input the parent is trained at, in pixels; 0 = input.size. [adapt] "
        "then trains it on at input.size.", min=0, max=512)
    widths: tuple[int, ...] = setting(
        (16, 32, 64, 64, 128, 128, 192, 192),
        "Output channels of the 3x3 stem, then of each depthwise-separable block (counts).")
    pool_after: tuple[int, ...] = setting(
        (1, 3, 5), "Indices into widths of the convolutions followed by 2x2 max pooling.")
    stem_stride: int = setting(
        1, "Stride of the stem convolution, in pixels; 2 cuts the early layers' cost about 4x.",
        choices=(1, 2))
    residual: tuple[int, ...] = setting(
        (), "Indices of blocks that add their input to their output (identity shortcuts; both "
        "sides are pruned alike); did not help.")
    dropout: float = setting(
        0.3, "Dropout rate before the classifier (fraction; training only).", min=0.0, max=0.9)
    gamma_l1: float = setting(
        1e-5, "L1 penalty on the BN scales while training the parent (network slimming; per "
        "unit of |gamma|).", min=0.0, max=1.0)

    def spec(self, input_size: int, num_classes: int) -> StudentSpec:
        """The network shape at ``input_size`` with ``num_classes`` outputs."""
        try:
            return StudentSpec(input_size=input_size, widths=self.widths,
                               pool_after=self.pool_after, num_classes=num_classes,
                               dropout=self.dropout, stem_stride=self.stem_stride,
                               residual=self.residual)
        except ConfigError as exc:
            raise ConfigError(f"[parent] widths {list(self.widths)}, pool_after "
                              f"{list(self.pool_after)}, residual {list(self.residual)}: "
                              f"{exc}") from None


@dataclasses.dataclass(frozen=True)
class AdaptSection(TrainSection):
    _name: typing.ClassVar[str] = "adapt"
    seed_offset: typing.ClassVar[int] = 3
    epochs: int = _changed(
        "epochs", 0, "Epochs that train the parent on at input.size before pruning (count; 0 = "
        "none), e.g. when parent.input_size differs or for a reused --parent.")
    learning_rate: float = _changed("learning_rate", 1e-3)


@dataclasses.dataclass(frozen=True)
class PruneSection(Section):
    _name: typing.ClassVar[str] = "prune"
    ratio: float = setting(
        0.36, "Fraction of every convolution's channels removed (the rest rounded up to a "
        "multiple of 4).", min=0.0, max=0.99)
    widths: tuple[int, ...] = setting(
        (), "The pruned widths, one per parent convolution, instead of the uniform ratio "
        "(counts; empty = uniform); uneven cuts did not help.")
    schedule: str = setting(
        "gradual", "gradual: the pruned channels fade to zero while the whole network trains "
        "([ramp]), then are removed; one-shot: removed at once (worse).",
        choices=PRUNE_SCHEDULES)
    criterion: str = setting(
        "bn_gamma", "Channel importance: |BN gamma| (bn_gamma) or the filter's L1 norm after "
        "BN folding (l1).", choices=PRUNE_CRITERIA)

    def spec(self, parent: StudentSpec) -> StudentSpec:
        """The pruned shape of ``parent``."""
        return prune_spec(parent, self.ratio, widths=self.widths or None)


@dataclasses.dataclass(frozen=True)
class RampSection(TrainSection):
    _name: typing.ClassVar[str] = "ramp"
    seed_offset: typing.ClassVar[int] = 2
    epochs: int = _changed(
        "epochs", 10, "Epochs over which gradual pruning fades the channels out while the whole "
        "network trains (count); 20 did not help.")
    learning_rate: float = _changed("learning_rate", 1e-3)
    ema_decay: float = _changed(
        "ema_decay", 0.0, "Must stay 0: the fade drives the channels to exactly zero, an "
        "average of the weights would only approach it.")

    average_from: int = _changed(
        "average_from", 0, "Must stay 0, as ema_decay: an average of the weights would only "
        "approach the channels the fade drives to zero.")

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("ema_decay", "average_from"):
            if getattr(self, key):
                # Removing channels that are not exactly zero would change the output.
                raise ConfigError(f"the pruning ramp cannot average its weights (ramp.{key} "
                                  f"{getattr(self, key)}): set {key} on finetune or refine")


@dataclasses.dataclass(frozen=True)
class FinetuneSection(TrainSection):
    _name: typing.ClassVar[str] = "finetune"
    seed_offset: typing.ClassVar[int] = 1
    epochs: int = _changed("epochs", 20, "Epochs of fine-tuning after pruning (count).")
    learning_rate: float = _changed("learning_rate", 1e-3)
    targets: str = setting(
        "ensemble", "Soft targets: teacher (mini-Xception), parent (the unpruned parent) or "
        "ensemble (both, log-probabilities averaged; the parent alone without a teacher).",
        choices=FINETUNE_TARGETS)


@dataclasses.dataclass(frozen=True)
class RefineSection(FinetuneSection):
    _name: typing.ClassVar[str] = "refine"
    epochs: int = _changed(
        "epochs", 0, "Epochs of a second fine-tuning from the fine-tuned weights, with a new "
        "warm-up and cosine cycle (count; 0 = none).")


@dataclasses.dataclass(frozen=True)
class ExportSection(Section):
    _name: typing.ClassVar[str] = "export"
    calibration_samples: int = setting(
        500, "Training images that calibrate the int8 activation ranges (count); more did not "
        "help.", min=1, max=1_000_000)
    latency_runs: int = setting(
        200, "Invokes timed per int8 model for the report's latency (count); does not change "
        "the model.", min=1, max=1_000_000)


@dataclasses.dataclass(frozen=True)
class CalibrateSection(Section):
    _name: typing.ClassVar[str] = "calibrate"
    class_offsets: bool = setting(
        False, "After int8 conversion, fit a log offset per class on the choose split (FER+ "
        "majority and clear faces, accuracy and mean recall together: convert.face.calibrate) "
        "and write it to the manifest, which the device applies.")
    max_recall_drop: float = setting(
        1.0, "With class_offsets: refuse offsets that leave any class's recall on the choose "
        "split (FER+ majority) more than this below the network's own (share of the class's "
        "faces; 1 = no floor).", min=0.0, max=1.0)
    frames: int = setting(
        0, "With class_offsets: also fit them on the device's path, the choose split's faces "
        "pasted into this many whole frames per size as face-check pastes them (another seed), "
        "read through BlazeFace and the device's crop (count; 0 = FER's crops only).",
        min=0, max=100_000)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.class_offsets and (self.frames or self.max_recall_drop < 1):
            raise ConfigError("calibrate.frames and calibrate.max_recall_drop shape the class "
                              "offsets: set calibrate.class_offsets = true, or leave them out")


#: Section name -> its class, in stage order.

@dataclasses.dataclass(frozen=True)
class FaceRecipe(Recipe):
    """Everything that decides a face model; the sections must agree with each other."""

    run: RunSection = dataclasses.field(default_factory=RunSection)
    input: InputSection = dataclasses.field(default_factory=InputSection)
    parent: ParentSection = dataclasses.field(default_factory=ParentSection)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    adapt: AdaptSection = dataclasses.field(default_factory=AdaptSection)
    prune: PruneSection = dataclasses.field(default_factory=PruneSection)
    ramp: RampSection = dataclasses.field(default_factory=RampSection)
    finetune: FinetuneSection = dataclasses.field(default_factory=FinetuneSection)
    refine: RefineSection = dataclasses.field(default_factory=RefineSection)
    export: ExportSection = dataclasses.field(default_factory=ExportSection)
    calibrate: CalibrateSection = dataclasses.field(default_factory=CalibrateSection)

    def __post_init__(self) -> None:
        self.parent.spec(self.parent_input_size, num_classes=1)
        spec = self.parent.spec(self.input.size, num_classes=1)
        if self.prune.widths:
            self.prune.spec(spec)
        if self.prune.schedule == "gradual" and self.ramp.epochs < 1:
            raise ConfigError(f"gradual pruning needs at least 1 ramp epoch, not "
                              f"{self.ramp.epochs}; set prune.schedule = \"one-shot\" to skip it")

    @property
    def parent_input_size(self) -> int:
        """The side the parent is trained at, in pixels."""
        return self.parent.input_size or self.input.size

    def seed(self, stage: TrainSection) -> int:
        """The seed of one training stage (``run.seed`` plus the stage's offset)."""
        return self.run.seed + stage.seed_offset
