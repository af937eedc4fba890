"""The speech recipe: what defines a speech model, as typed sections of a TOML file.

Read by :func:`convert.recipe.load_recipe` (the device configuration's strict loader); the
resolved recipe is stored in the model's manifest (``training.recipe``), so
``emotion-convert speech --recipe models/speech_emotion_int8.json`` reproduces a model from its
manifest alone.  ``recipes/speech.toml`` is the shipped model's recipe.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from edge.config import Section, setting
from edge.errors import ConfigError
from edge.features import MfccConfig
from edge.features.adapt import RunningStats
from edge.models.speech import speech_preprocessing

from ..recipe import Recipe
from .channels import CHANNELS

__all__ = [
    "DataSection",
    "FeatureSection",
    "ModelSection",
    "TrainSection",
    "AugmentSection",
    "AdaptSection",
    "EvaluateSection",
    "SpeechRecipe",
]

CORPUS_KINDS = ("ravdess", "emodb", "csv")


@dataclasses.dataclass(frozen=True)
class DataSection(Section):
    _name: typing.ClassVar[str] = "data"
    corpora: tuple[str, ...] = setting(
        ("ravdess:ravdess",),
        "Training corpora as KIND:PATH, KIND one of ravdess, emodb, csv (path,label,speaker "
        "rows); a relative PATH is resolved against --data.")
    labels: str = setting(
        "corpus",
        "Label set: corpus (the corpora's own labels, e.g. RAVDESS calm) or fusion (neutral, "
        "happy, sad, angry, fearful, disgust, surprised; calm counts as neutral, boredom and "
        "other labels are left out).", choices=("corpus", "fusion"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.corpora:
            raise ConfigError("data.corpora is empty; name at least one KIND:PATH")
        for spec in self.corpora:
            kind, sep, path = spec.partition(":")
            if not sep or kind not in CORPUS_KINDS or not path:
                raise ConfigError(f"data.corpora entry {spec!r} must be KIND:PATH with KIND one "
                                  f"of {', '.join(CORPUS_KINDS)}")


@dataclasses.dataclass(frozen=True)
class FeatureSection(Section):
    _name: typing.ClassVar[str] = "features"
    n_mels: int = setting(40, "Mel filters (count).", min=8, max=128)
    n_ceps: int = setting(40, "Cepstral coefficients kept (count, <= n_mels).", min=4, max=128)
    window: str = setting("hamming", "Analysis window.", choices=("none", "hamming", "hann"))
    lifter: int = setting(0, "Sinusoidal lifter parameter; 0 = none.", min=0, max=100)
    low_hz: float = setting(0.0, "Lowest mel band edge, Hz (300 with high_hz 3400: the "
                            "telephone's voice band).", min=0.0, max=48000.0)
    high_hz: float = setting(7600.0, "Highest mel band edge, Hz; 0 = half the sample rate.",
                             min=0.0, max=48000.0)
    normalize: str = setting(
        "cmn", "Per-window normalisation of the cepstra before the model: none, cmn (subtract "
        "each coefficient's mean over the window) or cmvn (also divide by its std).",
        choices=("none", "cmn", "cmvn"))
    prosody: bool = setting(
        False, "Append 12 prosody and voice-quality columns (pitch, voicing, HNR, loudness, "
        "spectral slope and balance, flux, jitter, shimmer; edge.features.prosody) to each "
        "frame.")
    prosody_step: int = setting(
        1, "Prosody analysed every this many frames, each analysis held until the next: 2 "
        "halves its FFTs on the device (jitter, shimmer and flux then compare frames 20 ms "
        "apart).", min=1, max=10)
    normalize_prosody: bool = setting(
        False, "Per-window normalisation covers the prosody columns too (their level: gain, "
        "the speaker's pitch, the channel's tilt); else only the cepstra.")
    normalize_level: bool = setting(
        False, "Loudness normalised per window: the level columns (c0 and the prosody's "
        "loudness) less their mean over the window's speech frames, so the model reads how "
        "loudness moves, not the level a microphone's gain sets.")
    pooling: str = setting(
        "none", "What of each window the model sees: none (every frame), mean_std (each "
        "column's mean and standard deviation over the window's speech frames; the pooled "
        "model), mean_std_delta (those and each column's mean absolute change between adjacent "
        "speech frames), or frames_mean_std / frames_mean_std_delta (every frame, then those "
        "rows, for the ensemble).",
        choices=("none", "mean_std", "mean_std_delta", "frames_mean_std", "frames_mean_std_delta"))
    clip: float = setting(
        0.0, "Standardised values beyond +-clip (standard deviations) are set to +-clip before "
        "the model; 0 = none.  Keeps rare extreme frames from setting the int8 input scale.",
        min=0.0, max=1000.0)
    window_frames: int = setting(300, "Window length, frames of 10 ms.", min=10, max=3000)
    hop_frames: int = setting(50, "Hop between windows on the device and at evaluation, frames.",
                              min=1, max=3000)

    def __post_init__(self) -> None:
        super().__post_init__()
        try:  # the band edges and n_ceps <= n_mels, checked at load rather than when first used
            _ = self.mfcc
        except ConfigError as e:
            raise ConfigError(f"features: {e}") from None

    @property
    def mfcc(self) -> MfccConfig:
        return MfccConfig(n_mels=self.n_mels, n_ceps=self.n_ceps, window=self.window,
                          lifter=self.lifter, normalize=self.normalize,
                          low_hz=self.low_hz, high_hz=self.high_hz or None, prosody=self.prosody,
                          prosody_step=self.prosody_step,
                          normalize_prosody=self.normalize_prosody,
                          normalize_level=self.normalize_level, pooling=self.pooling,
                          clip=self.clip)


@dataclasses.dataclass(frozen=True)
class ModelSection(Section):
    _name: typing.ClassVar[str] = "model"
    kind: str = setting(
        "compact", "compact (ours: 1-D convolutions over time), pooled (a small dense network "
        "on each window's statistics; needs features.pooling = \"mean_std\" or "
        "\"mean_std_delta\"), ensemble (both in one graph: compact on the cepstra, which it "
        "normalises per window itself, and pooled on the statistics; needs features.pooling = "
        "\"frames_mean_std\" or \"frames_mean_std_delta\", and normalize = \"none\") or seed "
        "(the hobby project's 2-D CNN, a reference).",
        choices=("compact", "pooled", "ensemble", "seed"))
    width: int = setting(48, "Channels of the compact model's first block (x1.5 per block).",
                         min=4, max=512)
    pooled_width: int = setting(128, "Hidden units of the pooled network (0 = none: a linear "
                                "model).", min=0, max=1024)
    l2: float = setting(0.0, "L2 penalty on the pooled network's weights (per weight, added to "
                        "the loss).", min=0.0, max=10.0)
    pooled_ceps: int = setting(
        0, "Cepstra the ensemble's pooled network reads: the first N (the envelope's broad "
        "shape), then every prosody column; 0 = all.  The high cepstra's statistics describe "
        "the speaker and the microphone more than the emotion.", min=0, max=512)
    pooled_rows: int = setting(
        0, "Statistics rows the ensemble's pooled network reads: the first N (mean, spread, "
        "then change with features.pooling = \"frames_mean_std_delta\"); 0 = all.", min=0,
        max=3)
    linear_weight: float = setting(
        0.0, "A third network in the ensemble, linear on the statistics rows, and its weight "
        "in the graph's logits (the compact and pooled networks share the rest equally); 0 = "
        "none.", min=0.0, max=0.9)
    linear_ceps: int = setting(
        0, "Cepstra the linear network reads: the first N, then every prosody column; 0 = all.",
        min=0, max=512)
    linear_l2: float = setting(0.001, "L2 penalty on the linear network's weights.", min=0.0,
                               max=10.0)
    linear_masked: bool = setting(
        True, "Whether the linear network's loss scores each clip over its corpus's labels only, "
        "as train.mask_missing_labels does for the others; false: over every label, as a "
        "logistic regression is fitted.")


@dataclasses.dataclass(frozen=True)
class TrainSection(Section):
    _name: typing.ClassVar[str] = "train"
    epochs: int = setting(40, "Training epochs (no early stopping).", min=1, max=1000)
    batch_size: int = setting(64, "Windows per batch.", min=1, max=4096)
    learning_rate: float = setting(2e-3, "Peak AdamW learning rate (cosine decay).", min=1e-6,
                                   max=1.0)
    label_smoothing: float = setting(0.1, "Label smoothing of the targets (0..0.5).", min=0.0,
                                     max=0.5)
    crops_per_clip: int = setting(2, "Random training windows per clip per epoch.", min=1,
                                  max=100)
    balance_classes: bool = setting(True, "Weight the loss so every class counts equally.")
    mask_missing_labels: bool = setting(
        True, "Score each clip over its own corpus's labels only (the masked loss), so that a "
        "corpus without disgust never teaches that disgust does not occur.  False: over every "
        "label, so that a clip acted as angry also teaches that it is not disgust, whichever "
        "corpus it comes from.")
    balance_power: float = setting(
        1.0, "How fully the weights balance (0..1): each clip's balancing weight to this power. "
        "1: every class, and every corpus within it, counts equally; below 1 a class or corpus "
        "with few clips counts less than its share (the weights are damped).", min=0.0, max=1.0)
    coverage_power: float = setting(
        0.0, "Each class's balancing weight times the share of the training corpora that have "
        "the class, to this power (0 = off; 1: disgust, acted in two corpora of four, counts "
        "half as much as a class all four have).  A class few corpora teach may otherwise "
        "become where voices unlike all of them land.", min=0.0, max=4.0)
    mixup: float = setting(
        0.0, "Mixup (Zhang et al. 2018) within each corpus: every training window is blended "
        "with another window of its own corpus, inputs, targets and loss weights alike, in a "
        "share drawn from Beta(mixup, mixup) (0 = off; 0.2-0.4 is usual).  Within a corpus so "
        "that both windows' targets are over the same labels (the masked loss).", min=0.0,
        max=10.0)
    average_from: int = setting(
        0, "Stochastic weight averaging (Izmailov et al. 2018; dense, after every step, as "
        "SWAD does for unseen domains): the model keeps the uniform average of its weights, "
        "batch-norm statistics included, over every training step from this epoch on "
        "(1-based; 0 = off, the last step's weights).", min=0, max=1000)
    adversary: float = setting(
        0.0, "Corpus adversary (Ganin et al. 2016, domain-adversarial training): a small network "
        "learns to tell the training corpora apart from each network's representation before "
        "its classifier, and its gradient reaches that representation reversed and scaled by "
        "this weight, ramped up from 0 over training as in the paper, so the representation "
        "keeps what tells emotions apart and loses what tells corpora apart (0 = off; the "
        "adversary is not in the exported graph).", min=0.0, max=10.0)
    arousal: float = setting(
        0.0, "Arousal as a second task, weighing this much in the loss (0 = off): a small head "
        "on each network's representation learns high arousal (angry, happy, fearful, "
        "surprised) from low (neutral, sad, disgust), the distinction that carries across "
        "languages best (Schuller et al. 2010).  Every corpus has both levels, so no clip is "
        "masked; the head is not in the exported graph.", min=0.0, max=10.0)
    time_masks: int = setting(
        0, "SpecAugment: spans of time set to the mean (0 after normalisation) in every training "
        "window (count; 0 = none).  Applied to the windows, so the feature cache is unchanged.",
        min=0, max=10)
    time_mask_frames: int = setting(
        30, "Longest time span masked, frames of 10 ms (each span 0..this).", min=1, max=1000)
    feature_masks: int = setting(
        0, "SpecAugment: bands of adjacent feature columns (cepstral coefficients) set to the "
        "mean in every training window (count; 0 = none).", min=0, max=10)
    feature_mask_columns: int = setting(
        6, "Widest band masked, feature columns (each band 0..this).", min=1, max=128)
    seed: int = setting(
        0, "Seed of training's random choices (windows drawn, initialisation, dropout).  Training "
        "is repeatable: the same recipe gives the same model, so another seed is another draw of "
        "the same recipe.", min=0, max=2**31 - 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.average_from > self.epochs:
            raise ConfigError(f"train.average_from = {self.average_from} is after the last epoch "
                              f"(train.epochs = {self.epochs}): set 1..{self.epochs}, or 0 for "
                              f"no averaging")
        if self.arousal and self.mixup:
            raise ConfigError("train.arousal and train.mixup cannot be combined (a blended window "
                              "has no one arousal): set one of them to 0")


@dataclasses.dataclass(frozen=True)
class AugmentSection(Section):
    _name: typing.ClassVar[str] = "augment"
    speed_factors: tuple[float, ...] = setting(
        (0.9, 1.1), "Speed-perturbed copies of every training clip (1.0 is always kept); [] = "
        "none.")
    noise_snr_db: tuple[float, ...] = setting(
        (10.0, 30.0), "SNR range, dB, of the noisy copy of every clip and speed variant; [] = "
        "no noisy copies.")
    room_copies: int = setting(
        0, "Copies of every clip through a random room and microphone (convert.speech.augment: "
        "reverberation, microphone EQ and band limits, MP3, coloured noise at 0-30 dB SNR), "
        "each of the next speed variant in turn.", min=0, max=8)
    babble_copies: int = setting(
        0, "Copies of every clip with three other speakers of its corpus talking behind it, "
        "together 5-20 dB under it (convert.speech.augment), each of the next speed variant "
        "in turn.", min=0, max=8)
    voice_copies: int = setting(
        0, "Copies of every clip with its pitch (and formants) shifted by up to 4 semitones and "
        "its tempo changed by -15 to +18%, drawn apart (convert.speech.augment); the speed "
        "copies move both together.", min=0, max=8)
    seed: int = setting(
        0, "Seed of the noisy, room, babble and voice copies (with each file's name).  Apart from "
        "train.seed, so training can be drawn again without computing the cached copies again.",
        min=0, max=2**31 - 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.noise_snr_db and (len(self.noise_snr_db) != 2
                                  or self.noise_snr_db[0] > self.noise_snr_db[1]):
            raise ConfigError(f"augment.noise_snr_db = {list(self.noise_snr_db)} must be [] or "
                              f"[low, high] in dB")
        if any(not 0.5 <= f <= 2.0 for f in self.speed_factors):
            raise ConfigError(f"augment.speed_factors = {list(self.speed_factors)} must lie in "
                              f"0.5..2.0")


@dataclasses.dataclass(frozen=True)
class AdaptSection(Section):
    _name: typing.ClassVar[str] = "adapt"
    mode: str = setting(
        "none", "none, or deployment: features standardised with the statistics of the speech "
        "a device has heard (edge.features.adapt); training standardises each corpus or "
        "speaker with its own.", choices=("none", "deployment"))
    unit: str = setting("corpus", "What one deployment stands for in training: a corpus (a room "
                        "with several voices) or a speaker.  Held-out speech is scored as one "
                        "room either way, since a device cannot tell its speakers apart.",
                        choices=("corpus", "speaker"))
    fresh_share: float = setting(
        0.0, "Share of training windows standardised with the training data's pooled statistics "
        "instead of their own deployment's: the model also learns what a device that has not "
        "adapted yet hears (a fresh device; emotion-edge classify without --adapt).", min=0.0,
        max=1.0)
    neutral_share: float = setting(
        0.0, "Neutral speech's share of the statistics each training corpus (or speaker) is "
        "standardised with, and of the prior a fresh device starts from; 0 = as recorded.  A "
        "device's room hears mostly neutral speech, while acted corpora are balanced across "
        "emotions: 0.7 standardises training as such a room would (models/README.md, "
        "\"Standardising training as a mostly-neutral room\").", min=0.0, max=0.99)
    rows: bool = setting(
        False, "Also standardise each window's statistics rows (features.pooling's mean, spread "
        "and change) with their mean and spread over the room's clips, after its frames: a "
        "second level of adaptation, which centres the spread and change rows a frame's "
        "standardisation leaves as they are.  Evaluation only (emotion-convert speech "
        "--evaluate-only): the device does not compute it (models/README.md, \"Statistics "
        "standardised per room\").")


@dataclasses.dataclass(frozen=True)
class EvaluateSection(Section):
    _name: typing.ClassVar[str] = "evaluate"
    folds: int = setting(6, "Speaker-independent folds inside the training data; 0 = none.",
                         min=0, max=100)
    parity_folds: int = setting(2, "Folds whose model is also checked as int8.", min=0, max=100)
    reference_folds: int = setting(0, "Folds the seed CNN reference is run on; 0 = none.",
                                   min=0, max=100)
    loco: bool = setting(False, "Leave one corpus out: for each corpus, train on the others and "
                         "score it (needs two corpora or more).")
    loco_corpora: tuple[str, ...] = setting(
        (), "The unseen corpora the leave-one-corpus-out scores, by name (as its reports name "
        "them: ravdess, emodb, or a CSV's folder); [] = every corpus.  Each fold still trains on "
        "all the other corpora, so its report is the one a full run reuses; the mean is then "
        "over these only, so a model is not shipped with it (--evaluate-only).")
    channels: tuple[str, ...] = setting(
        (), "Test channels each unseen corpus of the leave-one-corpus-out is also scored through, "
        "by the same fold's model (convert.speech.channels): telephone = a narrowband call "
        "(300-3400 Hz, 8 kHz, mu-law).  Needs loco = true.", choices=tuple(CHANNELS))
    neutral_room: float = setting(
        0.0, "Also score each unseen corpus of the leave-one-corpus-out standardised as a room "
        "whose speech is this share neutral (its statistics weighted by the labels; every clip "
        "is still scored), as a device that mostly hears neutral speech would; 0 = not scored.",
        min=0.0, max=0.99)
    calibration: bool = setting(
        False, "Also score each speaker of the leave-one-corpus-out's unseen corpora after a "
        "calibration recording, as `emotion-edge classify --adapt-from` takes one: every other "
        "of the speaker's neutral clips (in path order) is the recording, its statistics "
        "blended with the training data's as the device blends them, and the others are "
        "scored (speakers with several emotions and two neutral clips or more), beside the "
        "same clips fresh.")
    calls: tuple[int, ...] = setting(
        (), "Also score each unseen corpus of the leave-one-corpus-out as `emotion-edge "
        "classify` hears it, in calls of this many files each (the corpus shuffled and cut into "
        "calls, speakers mixed): every call standardised with its files' speech statistics "
        "blended with the training data's, as the device blends what it hears.  [] = not "
        "scored.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if any(n < 1 for n in self.calls):
            raise ConfigError(f"evaluate.calls are numbers of files per call, each 1 or more, "
                              f"got {list(self.calls)}")
        if self.calls and not self.loco:
            raise ConfigError("evaluate.calls scores the leave-one-corpus-out's unseen corpora: "
                              "set evaluate.loco = true, or calls = []")
        if self.calibration and not self.loco:
            raise ConfigError("evaluate.calibration scores the leave-one-corpus-out's unseen "
                              "corpora: set evaluate.loco = true, or calibration = false")
        if self.channels and not self.loco:
            raise ConfigError("evaluate.channels scores the leave-one-corpus-out's unseen "
                              "corpora: set evaluate.loco = true, or channels = []")
        if self.loco_corpora and not self.loco:
            raise ConfigError("evaluate.loco_corpora chooses the leave-one-corpus-out's unseen "
                              "corpora: set evaluate.loco = true, or loco_corpora = []")
        if self.neutral_room and not self.loco:
            raise ConfigError("evaluate.neutral_room scores the leave-one-corpus-out's unseen "
                              "corpora: set evaluate.loco = true, or neutral_room = 0")



@dataclasses.dataclass(frozen=True)
class SpeechRecipe(Recipe):
    """Everything that defines a speech model; stored in its manifest (:meth:`to_dict`)."""

    data: DataSection = dataclasses.field(default_factory=DataSection)
    features: FeatureSection = dataclasses.field(default_factory=FeatureSection)
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    augment: AugmentSection = dataclasses.field(default_factory=AugmentSection)
    adapt: AdaptSection = dataclasses.field(default_factory=AdaptSection)
    evaluate: EvaluateSection = dataclasses.field(default_factory=EvaluateSection)

    def __post_init__(self) -> None:
        takes = {"pooled": ("mean_std", "mean_std_delta"),
                 "ensemble": ("frames_mean_std", "frames_mean_std_delta")}.get(self.model.kind,
                                                                               ("none",))
        if self.features.pooling not in takes:
            raise ConfigError(f"model.kind = {self.model.kind!r} with features.pooling = "
                              f"{self.features.pooling!r}: that model takes pooling = "
                              f"{' or '.join(repr(t) for t in takes)}")
        if self.model.kind == "ensemble" and self.features.normalize != "none":
            raise ConfigError(f"model.kind = \"ensemble\" with features.normalize = "
                              f"{self.features.normalize!r}: its pooled branch needs the levels a "
                              f"per-window normalisation takes away (the graph normalises the "
                              f"cepstra for the compact branch); use normalize = \"none\"")
        if self.model.pooled_ceps and (self.model.kind != "ensemble"
                                       or self.model.pooled_ceps > self.features.n_ceps):
            raise ConfigError(f"model.pooled_ceps = {self.model.pooled_ceps} needs model.kind = "
                              f"\"ensemble\" and at most features.n_ceps = "
                              f"{self.features.n_ceps} cepstra; use 0 for all")
        stats_rows, m = self.mfcc.input_rows(0), self.model
        linear_options = bool(m.linear_ceps) or not m.linear_masked
        if (m.pooled_rows or m.linear_weight or linear_options) and (
                m.kind != "ensemble" or m.pooled_rows > stats_rows
                or m.linear_ceps > self.features.n_ceps
                or (linear_options and not m.linear_weight)):
            raise ConfigError(f"model.pooled_rows = {m.pooled_rows}, model.linear_weight = "
                              f"{m.linear_weight}, model.linear_ceps = {m.linear_ceps} and "
                              f"model.linear_masked = {str(m.linear_masked).lower()} need "
                              f"model.kind = \"ensemble\", at most the {stats_rows} statistics "
                              f"rows features.pooling gives, at most features.n_ceps = "
                              f"{self.features.n_ceps} cepstra, and the linear network's settings "
                              f"a model.linear_weight above 0")
        if self.adapt.rows and (self.adapt.mode == "none" or self.features.pooling == "none"
                                or self.adapt.fresh_share or self.evaluate.calls
                                or self.evaluate.calibration):
            raise ConfigError("adapt.rows standardises the statistics rows per room: it needs "
                              "adapt.mode = \"deployment\", a features.pooling with statistics "
                              "rows, adapt.fresh_share = 0, evaluate.calls = [] and "
                              "evaluate.calibration = false")
        if self.adapt.mode != "none" and self.features.normalize == "cmvn":
            raise ConfigError("adapt.mode = \"deployment\" with features.normalize = \"cmvn\": "
                              "a per-window cmvn cancels the deployment's standardisation; use "
                              "normalize = \"none\" or \"cmn\"")

    @property
    def mfcc(self) -> MfccConfig:
        return self.features.mfcc

    @property
    def augmented(self) -> bool:
        return bool(self.augment.speed_factors or self.augment.noise_snr_db
                    or self.augment.room_copies or self.augment.babble_copies
                    or self.augment.voice_copies)

    def preprocessing(self, prior: RunningStats | None = None) -> dict[str, Any]:
        """The manifest's ``preprocessing`` block: what the device must compute (with
        deployment adaptation, ``prior`` are the training data's statistics)."""
        if (prior is None) != (self.adapt.mode == "none"):
            raise ValueError("a deployment-adapted model needs its prior statistics, and only it")
        return speech_preprocessing(self.mfcc, self.features.window_frames,
                                    self.features.hop_frames, adapt_prior=prior)
