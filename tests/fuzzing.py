"""Generators of corrupt media, configurations and manifests for ``test_fuzz_inputs.py``.

Each strategy draws a :class:`Case`: the bytes of one input (or a folder / a FIFO) and the file
name suffix it is given.  The strategies aim at the places a decoder trusts its input: sizes,
channel counts, rates and bit depths in headers; files cut short; samples that are not finite;
dimensions no one could allocate.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import struct
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

from .helpers import importable

__all__ = [
    "Case", "audio_cases", "image_cases", "video_cases", "write_case", "toml_text",
    "config_cases", "manifest_mutations", "wav_bytes", "png_header_only",
]


@dataclasses.dataclass(frozen=True)
class Case:
    """One generated input: ``kind`` says how it was made (shown when Hypothesis reports it)."""

    kind: str
    suffix: str
    data: bytes = b""
    folder: bool = False
    fifo: bool = False

    def __repr__(self) -> str:
        head = self.data[:300]
        return (f"Case({self.kind!r}, {self.suffix!r}, {len(self.data)} bytes "
                f"{head!r}{'...' if len(self.data) > 300 else ''})")


def write_case(case: Case, folder: Path, stem: str) -> Path:
    """Materialise ``case`` as ``folder/<stem><suffix>`` and return the path."""
    path = folder / f"{stem}{case.suffix}"
    if case.folder:
        path.mkdir()
    elif case.fifo:
        os.mkfifo(path)
    else:
        path.write_bytes(case.data)
    return path


# --- numbers a header should never be trusted with -------------------------------------------

def _u32() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from([0, 1, 2, 3, 7, 8, 255, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                                      0xFFFFFFFE]),
                     st.integers(0, 0xFFFFFFFF))


def _u16() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from([0, 1, 2, 3, 6, 8, 12, 16, 24, 32, 64, 255, 0x7FFF, 0xFFFF]),
                     st.integers(0, 0xFFFF))


def _rate() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from([0, 1, 2, 100, 7999, 8000, 16000, 22050, 44100, 44101,
                                      48000, 96000, 192000, 383999, 999983, 2**31 - 1,
                                      2**32 - 1]),
                     st.integers(0, 0xFFFFFFFF))


def wav_bytes(*, fmt: int = 1, channels: int = 1, rate: int = 16000, bits: int = 16,
              byte_rate: int | None = None, block_align: int | None = None,
              data_size: int | None = None, riff_size: int | None = None,
              payload: bytes = b"") -> bytes:
    """A RIFF/WAVE file whose every header field may lie about ``payload``."""
    block_align = (channels * bits // 8) & 0xFFFF if block_align is None else block_align
    byte_rate = (rate * block_align) & 0xFFFFFFFF if byte_rate is None else byte_rate
    data_size = len(payload) if data_size is None else data_size
    fmt_chunk = struct.pack("<HHIIHH", fmt & 0xFFFF, channels & 0xFFFF, rate & 0xFFFFFFFF,
                            byte_rate & 0xFFFFFFFF, block_align & 0xFFFF, bits & 0xFFFF)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk
            + b"data" + struct.pack("<I", data_size & 0xFFFFFFFF) + payload)
    riff_size = len(body) if riff_size is None else riff_size
    return b"RIFF" + struct.pack("<I", riff_size & 0xFFFFFFFF) + body


@st.composite
def _lying_wav(draw: st.DrawFn) -> Case:
    """Every header field drawn independently of the payload."""
    lie = draw(st.sets(st.sampled_from(["fmt", "channels", "rate", "bits", "byte_rate",
                                        "block_align", "data_size", "riff_size"]), min_size=1))
    kw: dict[str, Any] = {}
    if "fmt" in lie:
        kw["fmt"] = draw(st.one_of(st.sampled_from([0, 1, 2, 3, 6, 7, 0x11, 0xFFFE]), _u16()))
    if "channels" in lie:
        kw["channels"] = draw(_u16())
    if "rate" in lie:
        kw["rate"] = draw(_rate())
    if "bits" in lie:
        kw["bits"] = draw(_u16())
    for name in ("byte_rate", "data_size", "riff_size"):
        if name in lie:
            kw[name] = draw(_u32())
    if "block_align" in lie:
        kw["block_align"] = draw(_u16())
    kw["payload"] = draw(st.binary(max_size=4096))
    return Case("wav-lying-header", ".wav", wav_bytes(**kw))


@st.composite
def _consistent_wav(draw: st.DrawFn) -> Case:
    """A header that tells the truth about a payload in an odd format (rate, channels, depth)."""
    fmt, bits = draw(st.sampled_from([(1, 8), (1, 16), (1, 24), (1, 32), (3, 32), (3, 64)]))
    channels = draw(st.sampled_from([1, 2, 3, 6, 8, 64, 255, 1024]))
    rate = draw(_rate())
    frames = draw(st.integers(0, 600))
    payload = draw(st.binary(min_size=frames * channels * bits // 8,
                             max_size=frames * channels * bits // 8))
    return Case("wav-odd-format", ".wav", wav_bytes(fmt=fmt, channels=channels, rate=rate,
                                                    bits=bits, payload=payload))


@st.composite
def _nonfinite_wav(draw: st.DrawFn) -> Case:
    """A valid float WAV with NaN or +-inf samples somewhere."""
    import soundfile as sf

    n = draw(st.integers(1, 8000))
    channels = draw(st.sampled_from([1, 2]))
    x = np.zeros((n, channels), np.float32) + 0.01
    for _ in range(draw(st.integers(1, 3))):
        x[draw(st.integers(0, n - 1)), draw(st.integers(0, channels - 1))] = draw(
            st.sampled_from([math.nan, math.inf, -math.inf]))
    buf = io.BytesIO()
    sf.write(buf, x, draw(st.sampled_from([8000, 16000, 48000])), format="WAV",
             subtype=draw(st.sampled_from(["FLOAT", "DOUBLE"])))
    return Case("wav-nonfinite", ".wav", buf.getvalue())


def _encoded(fmt: str, n: int, rate: int, channels: int) -> bytes:
    import soundfile as sf

    t = np.arange(n) / rate
    x = (0.2 * np.sin(2 * np.pi * 220 * t))[:, None].repeat(channels, axis=1)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), rate, format=fmt)
    return buf.getvalue()


def _damage(draw: st.DrawFn, data: bytes) -> tuple[str, bytes]:
    """Cut ``data`` short, overwrite a stretch of it, or both."""
    how = draw(st.sampled_from(["truncated", "overwritten", "both"]))
    if how in ("overwritten", "both") and data:
        at = draw(st.integers(0, len(data) - 1))
        junk = draw(st.binary(min_size=1, max_size=64))
        data = data[:at] + junk + data[at + len(junk):]
    if how in ("truncated", "both") and data:
        data = data[:draw(st.integers(0, len(data) - 1))]
    return how, data


def _encoded_by_ffmpeg(fmt: str, n: int, rate: int, channels: int) -> bytes:
    """A phone's kind of file through PyAV: AAC in M4A, or AMR-NB (8 kHz mono whatever asked)."""
    import av

    codec, container = {"M4A": ("aac", "ipod"), "AMR": ("libopencore_amrnb", "amr")}[fmt]
    if fmt == "AMR":
        rate, channels = 8000, 1
    layout = "mono" if channels == 1 else "stereo"
    t = np.arange(n) / rate
    x = np.repeat((0.2 * np.sin(2 * np.pi * 220 * t))[None], channels, axis=0)
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        step = stream.codec_context.frame_size or 1024
        for i in range(0, n, step):
            block = x[:, i:i + step]
            if fmt == "AMR":
                frame = av.AudioFrame.from_ndarray((block * 32767).astype(np.int16), format="s16",
                                                   layout=layout)
            else:
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block, np.float32),
                                                   format="fltp", layout=layout)
            frame.sample_rate = rate
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


@st.composite
def _damaged_encoded_audio(draw: st.DrawFn) -> Case:
    formats = [("FLAC", ".flac"), ("OGG", ".ogg"), ("WAV", ".wav")]
    formats += [("M4A", ".m4a"), ("AMR", ".amr")] if importable("av") else []
    fmt, suffix = draw(st.sampled_from(formats))
    encode = _encoded_by_ffmpeg if fmt in ("M4A", "AMR") else _encoded
    data = encode(fmt, draw(st.integers(100, 16000)), draw(st.sampled_from([8000, 16000, 48000])),
                  draw(st.sampled_from([1, 2])))
    how, data = _damage(draw, data)
    return Case(f"{suffix[1:]}-{how}", suffix, data)


def _random_bytes(suffixes: list[str]) -> st.SearchStrategy[Case]:
    return st.builds(lambda s, b: Case("random-bytes", s, b), st.sampled_from(suffixes),
                     st.binary(max_size=2048))


def _special(suffixes: list[str]) -> st.SearchStrategy[Case]:
    return st.one_of(
        st.builds(lambda s: Case("empty", s), st.sampled_from(suffixes)),
        st.builds(lambda s: Case("folder", s, folder=True), st.sampled_from(suffixes)),
        st.builds(lambda s: Case("fifo", s, fifo=True), st.sampled_from(suffixes)),
    )


AUDIO_SUFFIXES = [".wav", ".flac", ".ogg", ".WAV", ".aiff", ".m4a", ".amr", ".mp4"]


def audio_cases() -> st.SearchStrategy[Case]:
    return st.one_of(_lying_wav(), _consistent_wav(), _nonfinite_wav(), _damaged_encoded_audio(),
                     _random_bytes(AUDIO_SUFFIXES), _special(AUDIO_SUFFIXES))


# --- images ----------------------------------------------------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_header_only(width: int, height: int, *, depth: int = 8, colour: int = 0) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (its data is one row)."""
    ihdr = struct.pack(">IIBBBBB", width & 0xFFFFFFFF, height & 0xFFFFFFFF, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * (min(width, 4096) + 1)))
            + _png_chunk(b"IEND", b""))


def png_1x1() -> bytes:
    """A valid one-pixel grey PNG."""
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(b"\x00\x80")) + _png_chunk(b"IEND", b""))


@st.composite
def _huge_png(draw: st.DrawFn) -> Case:
    side = st.one_of(st.sampled_from([0, 1, 30000, 50000, 65535, 65536, 2**31 - 1, 2**32 - 1]),
                     st.integers(0, 2**32 - 1))
    depth, colour = draw(st.sampled_from([(8, 0), (16, 0), (8, 2), (16, 6), (1, 0), (8, 3),
                                          (3, 0), (8, 9)]))
    return Case("png-declared-size", ".png",
                png_header_only(draw(side), draw(side), depth=depth, colour=colour))


@st.composite
def _encoded_image(draw: st.DrawFn) -> Case:
    """A real image in an odd shape or depth (1x1, 16-bit, 4 channels), maybe damaged."""
    import cv2

    suffix = draw(st.sampled_from([".png", ".jpg", ".bmp"]))
    h, w = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    channels = draw(st.sampled_from([1, 3, 4] if suffix != ".jpg" else [1, 3]))
    dtype = np.uint16 if suffix == ".png" and draw(st.booleans()) else np.uint8
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (h, w) if channels == 1 else (h, w, channels)
    pixels = rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True, dtype=dtype)
    ok, encoded = cv2.imencode(suffix, pixels)
    assert ok
    data = encoded.tobytes()
    how = "intact"
    if draw(st.booleans()):
        how, data = _damage(draw, data)
    bits = 16 if dtype == np.uint16 else 8
    return Case(f"{suffix[1:]}-{w}x{h}x{channels}-{bits}bit-{how}", suffix, data)


#: The demo's HEIC photo (an iPhone's kind of file: HEVC tiles, an irot box, EXIF), damaged
#: below; only where pi-heif can read it, as for the phones' audio above.
PHONE_PHOTO = Path(__file__).resolve().parent.parent / "demo" / "phone" / "face.heic"


@st.composite
def _damaged_phone_photo(draw: st.DrawFn) -> Case:
    how, data = _damage(draw, PHONE_PHOTO.read_bytes())
    return Case(f"heic-{how}", draw(st.sampled_from([".heic", ".HEIC", ".jpg"])), data)


IMAGE_SUFFIXES = [".png", ".jpg", ".jpeg", ".bmp", ".JPG", ".heic"]


def image_cases() -> st.SearchStrategy[Case]:
    phone = [_damaged_phone_photo()] if importable("pi_heif") else []
    return st.one_of(_huge_png(), _encoded_image(), *phone, _random_bytes(IMAGE_SUFFIXES),
                     _special(IMAGE_SUFFIXES))


# --- videos ----------------------------------------------------------------------------------

def _video_bytes(suffix: str, fourcc: str, w: int, h: int, frames: int) -> bytes:
    import tempfile

    import cv2

    with tempfile.TemporaryDirectory() as folder:
        return _write_video(cv2, Path(folder) / f"made{suffix}", fourcc, w, h, frames)


def _write_video(cv2: Any, path: Path, fourcc: str, w: int, h: int, frames: int) -> bytes:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, (w, h))
    try:
        rng = np.random.default_rng(frames)
        for _ in range(frames):
            writer.write(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    finally:
        writer.release()
    return path.read_bytes() if path.exists() else b""


@st.composite
def _damaged_video(draw: st.DrawFn) -> Case:
    suffix, fourcc = draw(st.sampled_from([(".avi", "MJPG"), (".mp4", "mp4v"), (".avi", "XVID")]))
    w, h = draw(st.sampled_from([(16, 16), (64, 48), (160, 120)]))
    data = _video_bytes(suffix, fourcc, w, h, draw(st.integers(1, 12)))
    how = "intact"
    if data and draw(st.integers(0, 3)):
        how, data = _damage(draw, data)
    return Case(f"video-{fourcc}-{w}x{h}-{how}", suffix, data)


VIDEO_SUFFIXES = [".mp4", ".avi", ".mkv", ".mov"]


def video_cases() -> st.SearchStrategy[Case]:
    return st.one_of(_damaged_video(), _random_bytes(VIDEO_SUFFIXES),
                     _special([".mp4", ".avi"]))


# --- configurations --------------------------------------------------------------------------

def _toml_key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
    return key if bare else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string, as long as it has no lone surrogate
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}"
                               for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_text(tables: Mapping[str, Mapping[str, Any]]) -> str:
    return "".join(f"[{_toml_key(name)}]\n"
                   + "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in table.items())
                   for name, table in tables.items())


_SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**63 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, 1e300, math.nan, math.inf, -math.inf]),
    st.text(max_size=12),
)
TOML_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3)),
    max_leaves=6,
)

#: Keys whose value is a path the command opens or writes: fuzzed with names inside the working
#: folder only (the suite may run as root).
PATH_KEYS = {("models", "speech"), ("models", "face"), ("log", "file"), ("adapt", "state_file")}
_PATH_VALUES = ["", "missing.tflite", "folder", "folder/", "sub/dir/x.jsonl", "x\x00y",
                "log.jsonl", ".", "model.json"]
@st.composite
def config_cases(draw: st.DrawFn, schema: Mapping[str, list[str]]) -> Case:
    return Case(*_config_case(draw, schema))


def _config_case(draw: st.DrawFn, schema: Mapping[str, list[str]]) -> tuple[str, str, bytes]:
    """``(what was changed, TOML bytes)``: a valid configuration with a few keys given values
    of any type, unknown sections or keys, or bytes that are not UTF-8 / not TOML."""
    kind = draw(st.sampled_from(["values", "values", "values", "unknown", "not-utf8",
                                 "not-toml", "top-level"]))
    tables: dict[str, dict[str, Any]] = {}
    changed: list[str] = []
    if kind == "values":
        for _ in range(draw(st.integers(1, 3))):
            section = draw(st.sampled_from(sorted(schema)))
            key = draw(st.sampled_from(schema[section]))
            value = draw(st.sampled_from(_PATH_VALUES) if (section, key) in PATH_KEYS
                         else TOML_VALUES)
            tables.setdefault(section, {})[key] = value
            changed.append(f"{section}.{key}")
        text = toml_text(tables)
        return ",".join(changed), ".toml", text.encode("utf-8", "surrogatepass")
    if kind == "unknown":
        section = draw(st.sampled_from([*sorted(schema), "Loop", "loops", "extra"]))
        key = draw(st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1,
                           max_size=8).filter(lambda k: k not in schema.get(section, [])))
        tables[section] = {key: draw(_SCALARS.filter(lambda v: not isinstance(v, str)))}
        return f"{section}.{key}", ".toml", toml_text(tables).encode()
    if kind == "not-utf8":
        good = toml_text({"loop": {"deadline_s": 0.3}}).encode()
        at = draw(st.integers(0, len(good)))
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80\x80"]))
        return "file", ".toml", good[:at] + bad + good[at:]
    if kind == "top-level":
        key = draw(st.sampled_from(sorted(schema)))
        return key, ".toml", f"{key} = {_toml_value(draw(_SCALARS))}\n".encode("utf-8", "surrogatepass")
    return "file", ".toml", draw(st.binary(max_size=200))


# --- manifests -------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list) and len(obj) <= 16:
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _set(obj: Any, path: tuple[Any, ...], fn: Callable[[Any, Any], None]) -> None:
    for p in path[:-1]:
        obj = obj[p]
    fn(obj, path[-1])


@st.composite
def manifest_mutations(draw: st.DrawFn, manifest: dict[str, Any],
                       keep_types: tuple[str, ...] = ()) -> Case:
    """A mutated manifest; fields under the top-level keys ``keep_types`` are deleted but never
    given values of another type."""
    return Case(*_manifest_mutation(draw, manifest, keep_types))


def _manifest_mutation(draw: st.DrawFn, manifest: dict[str, Any],
                       keep_types: tuple[str, ...]) -> tuple[str, str, bytes]:
    """``(what was changed, manifest bytes)`` from a valid manifest: a field deleted or given
    any JSON value, NaN/inf quantisation, a labels list of the wrong length, invalid JSON, a
    huge file."""
    m = json.loads(json.dumps(manifest))
    kind = draw(st.sampled_from(["delete", "replace", "replace", "scale", "labels", "not-json",
                                 "huge"]))
    if kind in ("delete", "replace"):
        paths = _paths(m)
        if kind == "replace":
            paths = [p for p in paths if p[0] not in keep_types or len(p) == 1]
        path = draw(st.sampled_from(paths))
        if kind == "delete":
            _set(m, path, lambda o, k: o.pop(k) if isinstance(o, dict) else o.__setitem__(k, None))
        else:
            value = draw(JSON_VALUES)
            _set(m, path, lambda o, k: o.__setitem__(k, value))
        return f"{kind} {'.'.join(map(str, path))}", ".json", json.dumps(m).encode()
    if kind == "scale":
        role = draw(st.sampled_from(["input", "output"]))
        field = draw(st.sampled_from(["scale", "zero_point"]))
        m[role][field] = draw(st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0, 1e308,
                                               1e-320]))
        return f"{role}.{field}={m[role][field]!r}", ".json", json.dumps(m).encode()
    if kind == "labels":
        labels = list(m["labels"])
        how = draw(st.sampled_from(["fewer", "more", "duplicate", "empty"]))
        if how == "fewer":
            labels = labels[:-1]
        elif how == "more":
            labels = [*labels, "extra"]
        elif how == "duplicate":
            labels[-1] = labels[0]
        else:
            labels = []
        m["labels"] = labels
        return f"labels {how}", ".json", json.dumps(m).encode()
    if kind == "not-json":
        text = json.dumps(m).encode()
        return "not json", ".json", text[:draw(st.integers(0, len(text) - 1))] + draw(
            st.sampled_from([b"", b"\xff\xfe", b"}", b"\x00"]))
    # huge: megabytes of labels, as a tampered or runaway export might write
    m["labels"] = [f"l{i}" for i in range(draw(st.sampled_from([10**5, 10**6])))]
    return "huge labels", ".json", json.dumps(m).encode()
