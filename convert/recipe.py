"""Training recipes: TOML files read by the device configuration's own strict loader.

A recipe is a few typed, frozen sections (:class:`edge.config.Section`); unknown sections or keys,
wrong types and values out of range are :class:`~edge.errors.ConfigError` naming them, exactly as
in the device's ``config.toml``.  The resolved recipe (file values, then command-line overrides,
then defaults) is what a model's manifest stores under ``training.recipe``, so a model can be
reproduced from its manifest alone: ``emotion-convert speech --recipe manifest.json`` reads the
recipe back out of a manifest.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self, TypeVar

from edge.config import Section, load_sections, read_toml
from edge.errors import ConfigError
from edge.paths import shipped_dirs

__all__ = ["Recipe", "load_recipe", "recipe_dict", "recipe_path", "section",
           "warn_if_data_differs"]

S = TypeVar("S", bound=Section)

logger = logging.getLogger(__name__)


def recipe_path(text: str) -> Path:
    """A ``--recipe`` argument: the file as given when it is there; else the shipped file of
    that name, so that the commands the docs print (``--recipe recipes/speech.toml``, ``--recipe
    models/speech_emotion_int8.json``) work from an installed package as in a clone.  A bare
    name (``--recipe face``) is a shipped recipe."""
    path = Path(text)
    # Only the docs' own spellings fall back: a missing myproject/recipes/x.toml is an error,
    # not the shipped recipe of that name.
    if path.is_file() or path.parent not in (Path("."), Path("recipes"), Path("models")):
        return path
    name = path.name if path.suffix else f"{path.name}.toml"
    for folder in ("models", "recipes") if name.endswith(".json") else ("recipes",):
        found = next((d / name for d in shipped_dirs(folder) if (d / name).is_file()), None)
        if found is not None:
            return found
    return path  # the loader says it is not found


def load_recipe(
    schema: Mapping[str, type[Section]],
    path: str | Path | None = None,
    *,
    overrides: Mapping[tuple[str, str], Any] | None = None,
) -> dict[str, Section]:
    """Sections of ``schema`` from ``path`` (a recipe ``.toml``, or a model manifest ``.json``
    whose ``training.recipe`` it reads back), then ``overrides`` ``(section, key) -> value``."""
    data: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        path = Path(path)
        origin = str(path)
        if path.suffix == ".json":
            data = _recipe_of_manifest(path)
        else:
            data = read_toml(path, what="recipe")
    sections, _ = load_sections(schema, data, origin=origin, overrides=overrides)
    return sections


def _recipe_of_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        recipe = manifest["training"]["recipe"]
    except (OSError, ValueError) as exc:
        raise ConfigError(f"recipe {path} is not a readable manifest: {exc}") from None
    except (KeyError, TypeError):
        raise ConfigError(f"manifest {path} records no training.recipe; pass a recipe .toml "
                          f"(or a shipped one by name: speech, speech_compact, face, "
                          f"face_ferplus, face_v1)") from None
    if not isinstance(recipe, dict):
        raise ConfigError(f"manifest {path}: training.recipe is not a table")
    return recipe


def section(sections: Mapping[str, Section], name: str, kind: type[S]) -> S:
    """One section, typed (``section(r, "train", TrainSection)``)."""
    value = sections[name]
    if not isinstance(value, kind):
        raise TypeError(f"recipe section {name} is {type(value).__name__}, not {kind.__name__}")
    return value


def recipe_dict(sections: Mapping[str, Section]) -> dict[str, dict[str, Any]]:
    """The resolved recipe as plain TOML/JSON-ready tables (tuples become lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {name: {k: plain(v) for k, v in dataclasses.asdict(sec).items()}
            for name, sec in sections.items()}


class Recipe:
    """Base of the speech and face recipes: a frozen dataclass with one field per section, each
    typed with its :class:`~edge.config.Section` (the field name is the TOML table's)."""

    @classmethod
    def schema(cls) -> dict[str, type[Section]]:
        """Section name -> type, read off the dataclass fields, in order."""
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | Path | None = None, *,
             overrides: Mapping[tuple[str, str], Any] | None = None) -> Self:
        """The recipe in ``path`` (a ``.toml``, or a manifest ``.json``; ``None``: the
        defaults), then ``overrides`` ``(section, key) -> value`` (text is read like ``--set``
        values)."""
        schema = cls.schema()
        sections = load_recipe(schema, path, overrides=overrides)
        return cls(**{name: section(sections, name, kind) for name, kind in schema.items()})

    def replace(self, name: str, **values: Any) -> Self:
        """A copy with ``values`` changed in section ``name`` (validated again)."""
        return self.updated({name: values})

    def updated(self, changes: Mapping[str, Mapping[str, Any]]) -> Self:
        """A copy with ``{section: {key: value}}`` changed at once, validated once (for settings
        that must change together, such as a model and the input it takes)."""
        return dataclasses.replace(  # type: ignore[type-var]
            self, **{name: dataclasses.replace(getattr(self, name), **values)
                     for name, values in changes.items()})

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The resolved recipe as plain tables (what a manifest stores)."""
        return recipe_dict({name: getattr(self, name) for name in self.schema()})


def warn_if_data_differs(manifest: Path, now: Mapping[str, Any], counts: str, unit: str) -> None:
    """Warn when the data found (``now``: ``data_fingerprint`` and the ``counts`` table, e.g.
    clips per corpus) is not what the model of ``manifest`` was trained on: reproducing it from
    the manifest (``--recipe MANIFEST.json``) then gives another model, whatever the recipe,
    and the first place to look is the data (a missing folder, an edited label file)."""
    try:
        training = json.loads(manifest.read_text(encoding="utf-8")).get("training") or {}
    except (OSError, ValueError, AttributeError):
        return  # the recipe loader has already said what is wrong with it
    recorded = training.get("data_fingerprint")
    if not isinstance(recorded, str):
        logger.info("%s records no data fingerprint: the data cannot be compared", manifest)
        return
    if now["data_fingerprint"] == recorded:
        logger.info("the data is what %s was trained on (fingerprint %s)", manifest, recorded)
        return
    before = training.get(counts)
    before = before if isinstance(before, dict) else {}
    found = now[counts]
    differ = [f"{c}: {before.get(c, 0)} {unit} then, {found.get(c, 0)} now"
              for c in dict.fromkeys([*before, *found]) if before.get(c) != found.get(c)]
    logger.warning("the data differs from what %s was trained on (fingerprint %s, recorded %s)"
                   "%s: the model will differ too; check the data's files and labels",
                   manifest, now["data_fingerprint"], recorded,
                   "; " + ", ".join(differ) if differ else
                   f" with as many {unit} of each (labels, files or their content changed)")
