"""``emotion-edge classify``: speech emotion of audio files, one line per file.

Contract (other tools parse it; keep it stable): with ``--json`` one object per file per line,
``{"path": ..., "label": ..., "scores": {label: probability, ...}}``; ``label`` is "no speech" (with
empty scores) when the activity gate finds none.  A file that cannot be read gives a one-line error
on stderr naming it, the other files are still classified, and the exit code is 1.

Recordings with nothing above the telephone's voice band (8 kHz files, calls saved at any rate)
go to the narrowband model shipped beside the speech model (``--band``; see
:mod:`edge.features.band`): the wideband model hears the empty upper band as another world.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ..config import AdaptConfig
from ..models.runtime import RUNTIMES
from ..paths import default_model
from . import Progress, named, one_line, positive_float, shown, thread_count

if TYPE_CHECKING:
    from ..features.band import Band
    from ..models.speech import SpeechClassifier

__all__ = ["register", "run"]

#: Seconds of speech that weigh as much as the training data's statistics (frames of 10 ms).
_PRIOR_S = f"{AdaptConfig.prior_frames / 100:g} s"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "classify",
        help="classify the emotion in speech recordings",
        description="Classify each audio file (WAV/FLAC/OGG/AIFF/MP3, and with PyAV installed "
        "M4A/AAC, AMR, 3GP, WMA, WebM or a video's sound; any sample rate, mono or stereo).",
    )
    p.add_argument("files", nargs="*", type=Path, metavar="FILE")
    p.add_argument("--files-from", type=Path, metavar="LIST",
                   help="also the files named in LIST, one path per line ('-': standard input), "
                   "for a collection too large for one command line: xargs would split it into "
                   "several calls, each adapting to its own share of the files")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.add_argument("--model", type=Path, default=None,
                   help="speech .tflite with its .json manifest beside it (default: shipped model)")
    p.add_argument("--band", choices=("auto", "wide", "narrow"), default="auto",
                   help="auto (default): a recording with nothing above 4 kHz (a phone call, an "
                   "8 kHz file) goes to the narrowband model, the others to the wideband one; "
                   "wide or narrow: every file to that model")
    p.add_argument("--narrow-model", type=Path, default=None, metavar="MODEL",
                   help="narrowband speech .tflite (default: the shipped one, unless --model is "
                   "given: then every file goes to --model unless this is given too)")
    p.add_argument("--hop", type=positive_float, default=None, metavar="SECONDS",
                   help="hop between analysis windows (default: from the model's manifest)")
    p.add_argument("--runtime", choices=tuple(RUNTIMES), default=None,
                   help="TFLite interpreter (default: first installed)")
    p.add_argument("--threads", type=thread_count, default=1, help="interpreter threads (default 1)")
    adapt = p.add_mutually_exclusive_group()
    adapt.add_argument("--adapt", action="store_true",
                       help="the default: adapt to these recordings first, as a device adapts to "
                       "its room: one pass over all FILEs gathers feature statistics of their "
                       f"speech and blends them with the training data's ({_PRIOR_S} of speech "
                       "weigh as much as the training data), a second classifies them (models that "
                       "support it)")
    adapt.add_argument("--fresh", action="store_true",
                       help="classify each file with the training data's statistics alone, as a "
                       "device fresh out of the box: a file's result then does not depend on "
                       "the other files of the call")
    adapt.add_argument("--adapt-from", action="append", type=Path, default=[],
                       metavar="RECORDING",
                       help="a calibration recording (repeatable): every FILE is standardised "
                       "with the statistics of its speech blended with the training data's, as "
                       f"the device blends what it hears ({_PRIOR_S} of speech weigh as much as "
                       "the training data); e.g. the speaker talking as usual, in the same room and "
                       "microphone (models that support it).  With --band auto each recording "
                       "calibrates the model its band chooses, as the FILEs are sent.  A .json "
                       "saved by --save-adaptation gives that call's statistics instead, so that "
                       "more files (the rest of an interrupted run, the next share of a "
                       "collection) are classified exactly as that call's were")
    p.add_argument("--save-adaptation", type=Path, metavar="FILE",
                   help="write the statistics this call adapts with to FILE (.json) once the "
                   "adapting pass is done, before any file is classified; --adapt-from FILE "
                   "reuses them (and a device can start from them as its adapt.state_file)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from ..errors import ConfigError
    from ..models.speech import SPEECH_MODEL_FILE, SpeechClassifier

    for flag, given in (("--model", args.model), ("--narrow-model", args.narrow_model)):
        # Checked before any file: a typo found only when a file of that band turns up would
        # stop the call half-way (a named model is used whole or not at all).
        if given is not None and not Path(given).is_file():
            raise ConfigError(f"{flag} {given}: no such model file; name an existing .tflite "
                              f"(with its .json manifest beside it)")
    files = _inputs(args)
    _check_statistics_files(args)
    paths: dict[Band, Path] = {"wide": args.model or default_model(SPEECH_MODEL_FILE)}
    narrow = _narrow_model(args)
    if narrow is not None:
        paths["narrow"] = narrow
    failures = 0
    with ExitStack() as stack:
        classifiers: dict[Band, SpeechClassifier] = {}

        def classifier(band: Band) -> SpeechClassifier:
            if band not in classifiers:
                classifiers[band] = stack.enter_context(SpeechClassifier(
                    paths[band], hop_s=args.hop, num_threads=args.threads, runtime=args.runtime))
            return classifiers[band]

        # Fresh, a file's band is found just before it is classified: its result comes at
        # once, not after every file has been opened once.
        bands = {} if args.fresh else _bands(args, classifier, narrow is not None, files)
        if not args.fresh:
            failures += _adapt(args, bands, classifier, paths, narrow is not None)
        done = 0
        try:
            for path in files:
                failures += _classify_one(args, path, bands, classifier, narrow is not None)
                done += 1
        except KeyboardInterrupt:
            # Where to pick up: the lines printed are whole, one per file done.
            print(f"emotion-edge: interrupted after {done} of {len(files)} files", file=sys.stderr)
            raise
    return 1 if failures else 0


def _check_statistics_files(args: argparse.Namespace) -> None:
    """``--save-adaptation``'s and ``--adapt-from``'s statistics files, checked before the
    adapting pass rather than after it: on a large collection that pass is long."""
    from ..errors import ConfigError, ModelError
    from ..features.adapt import check_statistics_file, read_state

    if args.save_adaptation is not None:
        if args.fresh:
            raise ConfigError("--save-adaptation saves what a call adapts to, and --fresh "
                              "adapts to nothing: leave one out")
        check_statistics_file(args.save_adaptation, "--save-adaptation")
    for path in _saved(args):
        if not path.is_file():
            raise ConfigError(f"--adapt-from {path}: no such file; name the .json "
                              f"--save-adaptation wrote, or a recording")
        try:
            read_state(path)
        except ModelError:
            raise ConfigError(f"--adapt-from {path}: not adaptation statistics (the .json "
                              f"--save-adaptation writes); name that file, or a recording"
                              ) from None


def _classify_one(args: argparse.Namespace, path: Path, bands: dict[Path, Band | None],
                  classifier: Callable[[Band], SpeechClassifier], narrow: bool) -> int:
    """Classify one file and print its line; returns 1 if it could not be read, else 0."""
    from ..errors import AudioFileError

    t0 = time.perf_counter()
    if path not in bands:  # fresh: its band found now, not in a pass over every file first
        bands.update(_bands(args, classifier, narrow, [path]))
    band = bands[path] or "wide"  # an unreadable file: the wideband pass reports it
    try:
        decision = classifier(band).classify_file(path)
    except AudioFileError as exc:
        print(f"emotion-edge: error: {one_line(str(exc))}", file=sys.stderr, flush=True)
        return 1
    ms = (time.perf_counter() - t0) * 1e3
    scores = {k: round(v, 4) for k, v in decision.scores.items()}
    if args.json:
        print(json.dumps({"path": named(path), "label": decision.label, "scores": scores}),
              flush=True)
    else:
        top = ", ".join(f"{k} {v:.2f}" for k, v in
                        sorted(scores.items(), key=lambda kv: -kv[1])[:3])
        which = ", narrowband model" if band == "narrow" else ""
        print(f"{shown(path)}: {decision.label}  [{top or 'no speech windows'}]  "
              f"{decision.speech_windows}/{decision.total_windows} speech windows"
              f"{which}, {ms:.1f} ms", flush=True)
    return 0


def _adapt(args: argparse.Namespace, bands: dict[Path, Band | None],
           classifier: Callable[[Band], SpeechClassifier], paths: dict[Band, Path],
           narrow: bool) -> int:
    """The first pass: each model in use learns from the files it classifies (the default,
    ``--adapt``) or from the calibration recordings of its band (``--adapt-from``: a phone
    call's statistics are not the room's, so each recording goes to the model its band would
    choose, as a file would).  Returns how many calibration recordings could not be read, each
    reported in one line; an unreadable FILE is reported by the classifying pass."""
    from ..errors import AudioFileError

    unread = 0
    flag = "--adapt-from" if args.adapt_from else "--adapt" if args.adapt else None
    saved = _saved(args)
    recordings = [p for p in dict.fromkeys(args.adapt_from) if p not in saved]
    heard = _bands(args, classifier, narrow, recordings) if args.adapt_from else bands
    adapting: list[Band] = []
    for band in dict.fromkeys(b or "wide" for b in bands.values()):
        if classifier(band).adaptation is not None:
            adapting.append(band)
        elif flag:  # asked for; by default a model that cannot adapt just classifies
            print(f"emotion-edge: warning: {paths[band]} does not adapt (its manifest has "
                  f"no adaptation prior); classifying without {flag}", file=sys.stderr)
    for band in adapting:
        clf = classifier(band)
        # An unreadable recording goes to the first model that adapts, whose pass reports it.
        sources = [p for p, b in heard.items() if (b or adapting[0]) == band]
        windows = read = 0
        loaded = sum(_load_saved(clf, path, paths[band]) for path in saved)
        with Progress(f"adapting {paths[band].name}", len(sources)) as progress:
            for done, path in enumerate(sources):
                progress.step(done)
                try:
                    windows += clf.observe_file(path)
                    read += 1
                except AudioFileError as exc:
                    # each recording reaches one model (``heard`` holds each path once)
                    if args.adapt_from:
                        print(f"emotion-edge: error: calibration recording: "
                              f"{one_line(str(exc))}", file=sys.stderr, flush=True)
                        unread += 1
        if recordings and not windows and not loaded:
            what = ("no speech in the calibration recording(s)" if read else
                    "no readable calibration recording" if sources else
                    f"no calibration recording in the {band}band")
            print(f"emotion-edge: warning: {what} for {paths[band].name}; its files are "
                  f"classified with the training data's statistics", file=sys.stderr)
    if args.save_adaptation is not None:
        _save(args.save_adaptation, [classifier(band) for band in adapting])
    return unread


def _saved(args: argparse.Namespace) -> list[Path]:
    """The ``--adapt-from`` files that are saved statistics (``.json``), each once."""
    return [p for p in dict.fromkeys(args.adapt_from) if p.suffix.lower() == ".json"]


def _load_saved(clf: SpeechClassifier, path: Path, model: Path) -> int:
    """Add the statistics ``--save-adaptation`` wrote to ``path`` for this model (checked to be
    readable before); returns 1 if it held some, else 0, with a warning."""
    from ..features.adapt import read_statistics

    assert clf.adaptation is not None
    stats = read_statistics(path, clf.adaptation.space, clf.adaptation.dims,
                            clf.adaptation.aliases)
    if stats is None:
        print(f"emotion-edge: warning: --adapt-from {shown(path)} holds no statistics for "
              f"{model.name} (the call that saved it gave it no file, or gave it to a model "
              f"with other features); its files are classified with the training data's "
              f"statistics", file=sys.stderr)
        return 0
    clf.adaptation.add(stats)
    return 1


def _save(path: Path, adapting: list[SpeechClassifier]) -> None:
    """``--save-adaptation``: what the call adapts with, for a later call or a device."""
    from ..errors import ConfigError
    from ..features.adapt import save_statistics

    normalizers = [clf.adaptation for clf in adapting if clf.adaptation is not None]
    if not normalizers:
        print("emotion-edge: warning: no model of this call adapts; nothing saved to "
              f"{shown(path)}", file=sys.stderr)
        return
    try:
        save_statistics(path, normalizers)
    except OSError as exc:
        raise ConfigError(f"--save-adaptation {path}: cannot be written "
                          f"({exc.strerror or exc}); choose another file") from None
    seconds = sum(n.frames_heard for n in normalizers) / 100
    print(f"emotion-edge: adaptation statistics ({seconds:.0f} s of speech) saved to "
          f"{shown(path)}; --adapt-from {shown(path)} classifies more files as these are",
          file=sys.stderr, flush=True)


#: Longest line of a ``--files-from`` list, in bytes (Linux's PATH_MAX): /dev/zero named as
#: the list must not fill the memory.
_LONGEST_PATH = 4096


def _inputs(args: argparse.Namespace) -> list[Path]:
    """The FILEs, then those of ``--files-from`` (one path per line; blank lines skipped)."""
    from ..errors import ConfigError

    files = list(args.files)
    if args.files_from is not None and str(args.files_from) == "-":
        files += _listed(sys.stdin.buffer, "-")
    elif args.files_from is not None:
        try:
            with open(args.files_from, "rb") as f:
                files += _listed(f, str(args.files_from))
        except OSError as exc:
            raise ConfigError(f"--files-from {args.files_from}: cannot be read "
                              f"({exc.strerror or exc})") from None
    if not files:
        raise ConfigError("no recording to classify: name the FILEs, or --files-from LIST")
    return files


def _listed(stream: BinaryIO, name: str) -> list[Path]:
    """The paths of a list, a line at a time; names as bytes, so that a list of names that are
    not UTF-8 still names those files."""
    import os

    from ..errors import ConfigError

    paths = []
    for number, line in enumerate(iter(lambda: stream.readline(_LONGEST_PATH + 2), b""), 1):
        if len(line) > _LONGEST_PATH + 1 or (len(line) == _LONGEST_PATH + 1
                                             and not line.endswith(b"\n")):
            raise ConfigError(f"--files-from {name}: line {number} is longer than any path; "
                              f"give a list of paths, one per line")
        if line.strip():
            paths.append(Path(os.fsdecode(line.rstrip(b"\r\n"))))
    return paths


def _narrow_model(args: argparse.Namespace) -> Path | None:
    """The narrowband model, or ``None`` when every file goes to the wideband one: a user who
    names a model of their own is scoring that model, so the shipped narrowband one stays out
    unless named too."""
    from ..errors import ConfigError, ModelError
    from ..models.speech import SPEECH_NARROWBAND_MODEL_FILE

    if args.narrow_model is not None:
        return Path(args.narrow_model)
    if args.model is None:
        try:
            return default_model(SPEECH_NARROWBAND_MODEL_FILE)
        except ModelError:
            if args.band == "narrow":
                raise
    if args.band == "narrow":
        raise ConfigError("--band narrow with --model needs --narrow-model MODEL too")
    return None


def _bands(args: argparse.Namespace, classifier: Callable[[Band], SpeechClassifier],
           narrow: bool, recordings: list[Path]) -> dict[Path, Band | None]:
    """Each recording's model.  Auto: the recordings the wideband model's mel filters would
    find empty at the top go to the narrowband one, when there is one.  ``None``: a recording
    that cannot be read; whichever pass opens it reports it."""
    from ..errors import AudioFileError
    from ..features.band import recording_band

    if args.band != "auto" or not narrow:
        return {path: args.band if args.band != "auto" else "wide" for path in recordings}
    top = classifier("wide").config.top_hz
    bands: dict[Path, Band | None] = {}
    with Progress("finding each recording's band", len(recordings)) as progress:
        for done, path in enumerate(recordings):
            progress.step(done)
            try:
                bands[path] = recording_band(path, top)
            except AudioFileError:
                bands[path] = None
    return bands
