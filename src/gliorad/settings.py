"""Shared rules of gliorad's settings: one strict base model, one merge rule, one way to turn a
validation error into message lines, one preset registry, one YAML reader.

Every settings class derives from :class:`Strict` (unknown keys are errors, values are frozen).
Every validation goes through :func:`validate`, whose :class:`~gliorad.errors.GlioradInputError`
holds one line per problem naming the file, the key, the rule and the value given
(:func:`error_lines`). Every stage's presets are a :class:`Presets` registry: name -> the settings
that differ from the class's defaults, as data (what a user would write in YAML).

The merge rule (every config file, ``--set`` override and command-line option goes through
:func:`merge`):

* a mapping merges key by key into the mapping beneath it, so ``train: {epochs: 40}`` changes the
  number of epochs and keeps every other training setting of the preset;
* a list or a scalar replaces the value beneath it (``sequences: [t1ce, flair]`` is the whole list);
* a mapping named in ``whole`` (by its dotted path) replaces the mapping beneath it *as a whole*:
  its keys depend on each other, so keeping the preset's other keys would change what the user
  wrote. This is the case of ``survival.split``: ``{method: column, column: centre, train: DU}``
  laid over the paper's ``{train: B, external: [A]}`` must validate on every value but DU, not on
  the preset's ``A``. Keys left out of such a mapping take their defaults.

The layers, lowest first: the packaged preset, the user's file, ``--set`` / command-line options.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_serializer

from gliorad.errors import GlioradInputError, check_option

__all__ = ["WHOLE", "ModelChoice", "Presets", "Strict", "error_lines", "merge", "read_yaml_mapping", "relative",
           "validate"]

M = TypeVar("M", bound=BaseModel)

#: The longest message line (a huge value given is cut, not the key or the rule).
MAX_LINE = 500


class Strict(BaseModel):
    """The base of every settings class: an unknown key is an error (a typo is never silently
    ignored) and a validated settings object cannot be changed (``model_copy(update=...)`` makes
    a new one).

    The fields a subclass lists in :attr:`OMITTED_AT_DEFAULT` are left out of the dumped
    settings while they hold their default, so that the settings (stage fingerprints, model
    folders, bundles) of runs made before those options existed stay the same.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit_defaults(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        if isinstance(out, dict):
            fields = type(self).model_fields
            for name in self.OMITTED_AT_DEFAULT:
                if getattr(self, name) == fields[name].get_default(call_default_factory=True):
                    out.pop(name, None)
        return out


class ModelChoice(Strict):
    """The base of a stage's settings that pick an estimator: ``model`` (one of :attr:`MODELS`)
    and ``candidates`` (names among :attr:`CANDIDATES`, or None for all; a string
    ``"a,b"`` is split at the commas). The subclass declares both fields (so they keep their
    place in the dumped settings) and the two name lists.

    Both are left out of the dumped settings at their defaults (:attr:`OMITTED_AT_DEFAULT`).
    """

    MODELS: ClassVar[tuple[str, ...]] = ()
    CANDIDATES: ClassVar[tuple[str, ...]] = ()
    OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("model", "candidates")

    @classmethod
    def command_line(cls, model: str | None, candidates: str | None) -> dict[str, Any]:
        """A command line's ``--model`` and ``--candidates`` (comma-separated) as settings
        overrides (only those given), checked against :attr:`MODELS` / :attr:`CANDIDATES` with
        the option names in the messages (the settings check them again, with a config file's
        values); :class:`~gliorad.errors.GlioradInputError` for an unknown name."""
        from gliorad.errors import GlioradInputError, check_option

        out: dict[str, Any] = {}
        if model is not None:
            out["model"] = check_option("--model", model, cls.MODELS)
        if candidates is not None:
            names = [c.strip() for c in candidates.split(",") if c.strip()]
            unknown = [c for c in names if c not in cls.CANDIDATES]
            if unknown or not names:
                raise GlioradInputError(
                    f"--candidates {candidates!r}: {', '.join(map(repr, unknown)) or 'no name'} "
                    f"not known; expected a comma-separated list of: {', '.join(cls.CANDIDATES)}")
            out["candidates"] = names
        return out

    @field_validator("model", check_fields=False)
    @classmethod
    def _known_model(cls, v: str) -> str:
        if v not in cls.MODELS:
            raise ValueError(f"model {v!r} is not valid; expected one of: {', '.join(cls.MODELS)}")
        return v

    @field_validator("candidates", mode="before", check_fields=False)
    @classmethod
    def _candidate_list(cls, v: Any) -> Any:
        if isinstance(v, str):  # "a,b" (a command line's or a YAML scalar)
            return tuple(x.strip() for x in v.split(",") if x.strip())
        return v

    @field_validator("candidates", check_fields=False)
    @classmethod
    def _known_candidates(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return v
        names = ", ".join(cls.CANDIDATES)
        unknown = [c for c in v if c not in cls.CANDIDATES]
        if unknown:
            raise ValueError(f"candidates {', '.join(map(repr, unknown))} not known; expected "
                             f"names among: {names}")
        if not v:
            raise ValueError(f"candidates is empty; give at least one of: {names} (or leave it "
                             "out for all)")
        twice = sorted({c for c in v if v.count(c) > 1})
        if twice:
            raise ValueError(f"candidates lists {', '.join(twice)} more than once")
        return v

#: Mappings replaced as a whole by a user's value (dotted paths from the run config's root).
WHOLE: frozenset[str] = frozenset({"survival.split"})


def merge(base: Mapping[str, Any], update: Mapping[str, Any], whole: Collection[str] = (),
          _path: str = "") -> dict[str, Any]:
    """``base`` with ``update`` laid over it (the module docstring's rule).

    ``whole`` holds the dotted paths (relative to ``base``) of mappings that ``update`` replaces
    as a whole. Neither argument is modified.
    """
    out = dict(base)
    for key, value in update.items():
        path = f"{_path}.{key}" if _path else str(key)
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and path not in whole:
            out[key] = merge(out[key], value, whole, path)
        else:
            out[key] = dict(value) if isinstance(value, Mapping) else value
    return out


def relative(whole: Collection[str], section: str) -> frozenset[str]:
    """The paths of ``whole`` inside ``section`` (``survival.split`` -> ``split``)."""
    prefix = f"{section}."
    return frozenset(p.removeprefix(prefix) for p in whole if p.startswith(prefix))


# ------------------------------------------------------------------------------------- errors
def error_lines(err: ValidationError, where: str = "", section: str = "") -> list[str]:
    """One line per problem of ``err``: ``<where>: <section>.<key>: <rule> (got <value>)``.

    ``where`` names the source (a file, ``command line``); ``section`` the settings' place in it
    (``grading``), joined to the key with a dot. A problem of the whole model (a check across
    fields, no key) gives ``<where>: <section>: <rule>``: its rule names the fields and values.
    Pydantic's ``Value error, `` prefix is dropped; a line is cut at :data:`MAX_LINE` characters.
    """
    out = []
    for e in err.errors():
        msg = str(e["msg"]).removeprefix("Value error, ")
        key = ".".join(str(x) for x in (section, *e["loc"]) if str(x))
        head = ": ".join(p for p in (where, key) if p)
        line = f"{msg} (got {e.get('input')!r})" if e["loc"] else msg
        out.append(f"{head}: {line}"[:MAX_LINE] if head else line[:MAX_LINE])
    return out


def validate(cls: type[M], data: Mapping[str, Any], where: str = "", section: str = "") -> M:
    """``cls.model_validate(data)``; a :class:`GlioradInputError` of :func:`error_lines` on
    failure (``where`` and ``section`` as there)."""
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise GlioradInputError(error_lines(err, where, section)) from err


# ------------------------------------------------------------------------------------ presets
class Presets(Mapping[str, dict[str, Any]]):
    """The presets of a settings class: name -> the settings that differ from its defaults.

    A preset is data (nested mappings for nested settings), as a user would write it in YAML, so
    a user's settings merge over it by :func:`merge`. ``presets[name]`` is a fresh copy (callers
    may change it); an unknown name is an error listing the names (:meth:`data`).
    """

    def __init__(self, cls: type[BaseModel], presets: Mapping[str, Mapping[str, Any]],
                 what: str = "preset") -> None:
        self.cls, self.what = cls, what
        self._presets = {str(k): dict(v) for k, v in presets.items()}

    def __getitem__(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self._presets[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._presets)

    def __len__(self) -> int:
        return len(self._presets)

    def __repr__(self) -> str:
        return f"Presets({self.cls.__name__}: {', '.join(self._presets)})"

    def data(self, name: str, where: str | None = None) -> dict[str, Any]:
        """The settings of preset ``name``; an unknown name raises naming ``where`` (default: the
        registry's ``what``) and the presets."""
        check_option(where or self.what, name, self._presets)
        return self[name]

    def config(self, name: str, overrides: Mapping[str, Any] | None = None,
               where: str | None = None, whole: Collection[str] = ()) -> Any:
        """Preset ``name`` validated, with ``overrides`` merged (:func:`merge`) over every setting
        it resolves to (so a nested setting keeps the class's own defaults for what neither
        gives), validated again."""
        data = self.data(name, where)
        source = f"{where or self.what} {name!r}"
        cfg = validate(self.cls, data, source)
        if not overrides:
            return cfg
        return validate(self.cls, merge(cfg.model_dump(), overrides, whole), source)


# --------------------------------------------------------------------------------------- YAML
def read_yaml_mapping(path: str | os.PathLike, what: str = "config file") -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping (an empty file gives ``{}``).

    Raises :class:`GlioradInputError` naming the file when it is missing (``<path>: <what> not
    found``), is not UTF-8 text, is not valid YAML, or holds something other than a mapping.
    """
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as err:
        raise GlioradInputError(f"{p}: {what} not found") from err
    except UnicodeDecodeError as err:
        raise GlioradInputError(f"{p}: not a text file ({err})") from err
    except yaml.YAMLError as err:
        raise GlioradInputError(f"{p}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise GlioradInputError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    return data
