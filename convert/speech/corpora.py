"""Index emotional-speech corpora into (path, label, speaker) records.

Three layouts: RAVDESS (``Actor_NN/MM-VC-EE-II-SS-RR-AA.flac``), EmoDB (``SSTTTEV.flac``) and a
generic CSV (``path,label,speaker``, paths relative to the CSV) for users' own recordings.  Labels
are normalised to one vocabulary (``neutral calm happy sad angry fearful disgust surprised boredom``).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from edge.errors import AudioFileError, ConfigError
from edge.labels import fusion_map_for
from edge.sources.audio_file import AUDIO_EXTENSIONS, AudioFileStream

__all__ = [
    "Utterance",
    "RAVDESS_LABELS",
    "EMODB_LABELS",
    "index_ravdess",
    "index_emodb",
    "corpus_names",
    "index_csv",
    "read_csv_corpus",
    "index_corpus",
    "filter_labels",
    "parse_corpus",
    "index_corpora",
    "FUSION_RULE",
    "fusion_label",
    "to_fusion_labels",
]

logger = logging.getLogger(__name__)

#: RAVDESS emotion codes 01..08, in code order (the speech model's label order).
RAVDESS_LABELS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
#: EmoDB emotion letters.
EMODB_LABELS = {
    "W": "angry",
    "L": "boredom",
    "E": "disgust",
    "A": "fearful",
    "F": "happy",
    "T": "sad",
    "N": "neutral",
}

_RAVDESS_RE = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_EMODB_RE = re.compile(r"^(\d\d)([a-z]\d\d)([WLEAFTN])([a-z])$")


@dataclasses.dataclass(frozen=True)
class Utterance:
    path: Path
    label: str
    speaker: str
    corpus: str


def _audio_files(root: Path) -> Iterable[Path]:
    if not root.is_dir():
        # A recipe (or a manifest's) corpus path is relative to --data: the usual miss.
        raise ConfigError(f"{root}: no such corpus folder; a relative corpus path is resolved "
                          f"against --data DIR (the folder that holds the corpora)")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)


def index_ravdess(root: str | Path) -> list[Utterance]:
    """RAVDESS speech: modality 03 (audio-only) or 01 (AV), vocal channel 01 (speech)."""
    root = Path(root)
    out = []
    for p in _audio_files(root):
        m = _RAVDESS_RE.match(p.stem)
        if not m:
            logger.debug("skipping %s: not a RAVDESS file name", p)
            continue
        _, channel, emotion, _, _, _, actor = m.groups()
        if channel != "01" or not 1 <= int(emotion) <= 8:
            continue
        out.append(Utterance(p, RAVDESS_LABELS[int(emotion) - 1], f"ravdess-{actor}", "ravdess"))
    if not out:
        raise ConfigError(f"{root}: no RAVDESS speech files (Actor_NN/03-01-EE-...-AA.flac) found")
    return out


def index_emodb(root: str | Path) -> list[Utterance]:
    root = Path(root)
    out = []
    for p in _audio_files(root):
        m = _EMODB_RE.match(p.stem)
        if not m:
            logger.debug("skipping %s: not an EmoDB file name", p)
            continue
        out.append(Utterance(p, EMODB_LABELS[m.group(3)], f"emodb-{m.group(1)}", "emodb"))
    if not out:
        raise ConfigError(f"{root}: no EmoDB files (SSTTTEV.wav/.flac) found")
    return out


def index_csv(csv_path: str | Path) -> list[Utterance]:
    """``path,label,speaker`` rows (a header row with those names is required; paths relative to
    the CSV's folder).  A row that cannot be used (no such audio file, an empty field, too few
    fields, a clip listed twice) is named in one warning and left out; the other rows are
    indexed.  A file that is no CSV, or has no usable row, raises :class:`ConfigError`."""
    return read_csv_corpus(csv_path)[0]


def read_csv_corpus(csv_path: str | Path) -> tuple[list[Utterance], int]:
    """:func:`index_csv`'s rows, and how many rows it left out."""
    csv_path = Path(csv_path)
    if not csv_path.exists():
        raise ConfigError(f"{csv_path}: no such CSV file; a relative corpus path is resolved "
                          f"against --data DIR (the folder that holds the corpora)")
    if csv_path.is_dir():
        raise ConfigError(f"{csv_path}: is a folder; name its CSV file (e.g. {csv_path}/labels.csv)")
    out: list[Utterance] = []
    seen: dict[Path, int] = {}
    skipped = 0
    absent: list[str] = []  # rows whose audio file does not exist, as written

    def skip(line: int, why: str) -> None:
        nonlocal skipped
        skipped += 1
        if skipped <= MAX_ROW_WARNINGS:
            logger.warning("%s:%d: %s; row left out", csv_path, line, why)
        elif skipped == MAX_ROW_WARNINGS + 1:
            logger.warning("%s: more rows left out; only counted from here", csv_path)

    try:
        # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a byte-order mark.
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            header = f.readline()
            f.seek(0)  # the decoder starts again, and drops the byte-order mark again
            # A spreadsheet in a language whose decimal mark is a comma saves ";" (or tabs).
            delimiter = max(",;\t", key=header.count) if header.strip() else ","
            reader = csv.DictReader(f, delimiter=delimiter)
            # "Path,Label,Speaker": a spreadsheet's capitals are the same names.
            reader.fieldnames = [name.strip().lower() for name in reader.fieldnames or ()]
            missing = {"path", "label", "speaker"} - set(reader.fieldnames)
            if missing:
                raise ConfigError(
                    f"{csv_path}: header must name path,label,speaker; missing {sorted(missing)} "
                    f"(its first line: {header.strip()[:80]!r})")
            for line, row in enumerate(reader, start=2):
                fields = [row.get(k) for k in ("path", "label", "speaker")]
                if any(v is None for v in fields):
                    skip(line, "too few fields (path,label,speaker)")
                    continue
                path, label, speaker = (str(v).strip() for v in fields)
                if not path or not label or not speaker:
                    empty = [k for k, v in zip(("path", "label", "speaker"), (path, label,
                                                                              speaker)) if not v]
                    skip(line, f"empty {' and '.join(empty)}")
                    continue
                p = _row_path(path, csv_path)
                if not p.is_file():
                    absent.append(path)
                    skip(line, f"audio file {p} does not exist (relative paths start at the "
                               f"CSV's folder)")
                    continue
                try:  # its header only: a file that is no audio is named here, with the others
                    AudioFileStream(p, None).close()
                except AudioFileError as exc:
                    skip(line, str(exc))
                    continue
                key = p.resolve()
                if key in seen:
                    skip(line, f"{path} is already row {seen[key]}")
                    continue
                seen[key] = line
                out.append(Utterance(p, label.lower(), speaker, csv_path.stem))
    except FileNotFoundError:
        raise ConfigError(f"{csv_path}: no such CSV file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{csv_path}: not UTF-8 text (byte {exc.start}); save it as UTF-8 "
                          f"CSV") from None
    except csv.Error as exc:
        raise ConfigError(f"{csv_path}: not a readable CSV ({exc})") from None
    if not out:
        hint = ""
        if absent and len(absent) == skipped:
            here = sum((Path.cwd() / a).is_file() for a in absent[:20])
            hint = (f"; none of the audio files exists where the rows say (e.g. "
                    f"{_row_path(absent[0], csv_path)})" + (
                        ": they are relative to the current folder, not to the CSV's; write "
                        "them from the CSV's folder, or in full" if here else ""))
        raise ConfigError(f"{csv_path}: no usable rows" + (f" ({skipped} left out, named above)"
                                                           if skipped else "") + hint)
    if skipped:
        logger.warning("%s: %d row(s) left out, %d used", csv_path, skipped, len(out))
    return out, skipped


#: Rows of a CSV named one by one when they are left out; the others are counted.
MAX_ROW_WARNINGS = 20


def _row_path(path: str, csv_path: Path) -> Path:
    """A row's audio file: relative to the CSV's folder; a Windows path's backslashes (a CSV
    made on Windows) are taken as folders when the file is not found as written."""
    p = Path(path)
    p = p if p.is_absolute() else csv_path.parent / p
    if not p.is_file() and "\\" in path:
        windows = Path(path.replace("\\", "/"))
        windows = windows if windows.is_absolute() else csv_path.parent / windows
        if windows.is_file():
            return windows
    return p


def index_corpus(kind: str, path: str | Path) -> list[Utterance]:
    """``kind`` is ravdess, emodb or csv."""
    indexers = {"ravdess": index_ravdess, "emodb": index_emodb, "csv": index_csv}
    if kind not in indexers:
        raise ConfigError(f"corpus kind {kind!r} is unknown; choose one of {sorted(indexers)}")
    return indexers[kind](path)


def filter_labels(utts: Sequence[Utterance], labels: Sequence[str]) -> list[Utterance]:
    keep = set(labels)
    return [u for u in utts if u.label in keep]


def parse_corpus(spec: str, root: str | Path | None = None) -> tuple[str, Path]:
    """``"KIND:PATH"`` -> ``(kind, path)``; a relative path is resolved against ``root``."""
    kind, sep, path = spec.partition(":")
    if not sep or kind not in ("ravdess", "emodb", "csv") or not path:
        raise ConfigError(f"corpus {spec!r} must be KIND:PATH with KIND ravdess, emodb or csv")
    p = Path(path).expanduser()
    if not p.is_absolute() and root is not None:
        p = Path(root) / p
    return kind, p


def corpus_names(specs: Sequence[str], root: str | Path | None = None) -> list[str]:
    """Each corpus's name: the kind for ravdess and emodb, for a CSV its folder's name when it
    is ``labels.csv`` (``nemo/labels.csv`` -> nemo), else its own.  Two corpora of one name are
    refused: their clips would be scored, and held out, as one corpus."""
    names: dict[str, str] = {}
    for spec in specs:
        kind, path = parse_corpus(spec, root)
        name = kind if kind != "csv" else (path.parent.name if path.stem == "labels" else path.stem)
        if name in names:
            raise ConfigError(f"corpora {names[name]} and {spec} are both named {name!r} (a "
                              f"corpus is named after its kind, its CSV's folder, or its CSV): "
                              f"rename one's folder or CSV")
        names[name] = spec
    return list(names)


def index_corpora(specs: Sequence[str], root: str | Path | None = None, *,
                  rows_left_out: dict[str, int] | None = None) -> list[Utterance]:
    """Every utterance of the corpora ``specs`` (``KIND:PATH``), each tagged with its corpus name
    (the folder's name for ravdess/emodb, the CSV's folder for csv: ``nemo/labels.csv`` -> nemo).
    ``rows_left_out``, when given, gets each CSV corpus's count of rows it could not use."""
    out: list[Utterance] = []
    for spec, name in zip(specs, corpus_names(specs, root)):
        kind, path = parse_corpus(spec, root)
        if kind == "csv":
            utts, skipped = read_csv_corpus(path)
            if rows_left_out is not None:
                rows_left_out[name] = skipped
        else:
            utts = index_corpus(kind, path)
        out += [dataclasses.replace(u, corpus=name) for u in utts]
        logger.info("%s: %d clips, %d speakers", name, len(utts), len({u.speaker for u in utts}))
    return out


#: The fusion label set's rule for labels outside it: RAVDESS calm is a low-arousal neutral;
#: EmoDB boredom has no counterpart and is left out (mapping it to neutral or sad would teach
#: either a wrong class).  Screened (``scripts/speech_statistics_screen.py --label-rules``), no
#: other rule moves leave-one-corpus-out UAR by a point.
FUSION_RULE: Mapping[str, str | None] = {"calm": "neutral", "boredom": None}


def fusion_label(label: str) -> str | None:
    """``label``'s common label by the device's own map (:func:`edge.labels.fusion_map_for`,
    which holds :data:`FUSION_RULE` too: "calm" is neutral, "anger" angry); None when it has
    none."""
    return fusion_map_for([label])[label]


def to_fusion_labels(utts: Sequence[Utterance]) -> list[Utterance]:
    """Utterances relabelled onto the fusion label set (:func:`fusion_label`); labels outside
    the set are left out."""
    out = []
    for u in utts:
        label = fusion_label(u.label)
        if label is not None:
            out.append(u if label == u.label else dataclasses.replace(u, label=label))
    return out
