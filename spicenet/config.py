"""One config path: a TOML config is read into a typed, documented dataclass, and nothing else reads it.

A config schema is a dataclass whose user-settable fields are declared with :func:`setting`::

    @dataclass(frozen=True)
    class MyTrainConfig:
        grid: int = setting(18, "side of the p-bit grid (the BM of every step has grid**2 cells)", section="model")
        lr: float = setting(0.05, "Adam learning rate", section="train")
        dt: float = setting(1e-9, "noise sample step", unit="s")        # a top-level key (no section)
        seed: int = 0                                                    # not settable from TOML

Each field names the TOML table it lives in (``section``; "" = the top level), its doc and its unit.
:func:`load_config` builds the dataclass from a parsed TOML mapping and rejects, with a one-line
:class:`~spicenet.errors.ConfigError` naming the key's path (``[model] gird``):

- a table that is no section of the schema, a key that is no field of its section (the known keys are listed),
- a value of the wrong type (an int where a float is wanted is accepted and converted; a bool is never a number),
- a value the schema's ``__post_init__`` range checks refuse (its message, prefixed with what is being read).

:func:`describe` renders the schema back as a TOML document with every default, doc and unit as comments
(``spicenet config show FAMILY``), and :func:`defaults` gives the defaults as a nested dict.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import types
import typing
from typing import Any, Mapping, TypeVar

from spicenet.errors import ConfigError

__all__ = ["setting", "load_config", "describe", "defaults", "sections", "as_sections", "check_ranges", "Setting"]

T = TypeVar("T")

_META = "spicenet.setting"


@dataclasses.dataclass(frozen=True)
class Setting:
    """What :func:`setting` records about a field: its TOML ``section`` ("" = top level), ``doc`` and ``unit``."""

    doc: str
    unit: str = ""
    section: str = ""


def setting(default: Any, doc: str, *, unit: str = "", section: str = "") -> Any:
    """A dataclass field settable from TOML key ``[section] <name>`` (top level when ``section`` is ""), with its
    ``doc`` and ``unit`` (SI, "" for dimensionless). Lists and dicts defaults are copied per instance."""
    if not doc:
        raise ValueError("setting: every config field needs a doc")
    meta = {_META: Setting(doc=doc, unit=unit, section=section)}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _settings(cls: type) -> list[tuple[dataclasses.Field, Setting, Any]]:
    """(field, its Setting, its resolved type) for every TOML-settable field of ``cls``, in declaration order."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    return [(f, f.metadata[_META], hints[f.name]) for f in dataclasses.fields(cls) if _META in f.metadata]


def sections(cls: type) -> dict[str, list[str]]:
    """Section name ("" = top level) -> its keys, in declaration order."""
    out: dict[str, list[str]] = {}
    for f, s, _ in _settings(cls):
        out.setdefault(s.section, []).append(f.name)
    return out


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def defaults(cls: type) -> dict[str, Any]:
    """The schema's defaults as a TOML-shaped dict: top-level keys, then one table per section."""
    out: dict[str, Any] = {}
    for f, s, _ in _settings(cls):
        (out.setdefault(s.section, {}) if s.section else out)[f.name] = _default(f)
    return out


def as_sections(config: Any) -> dict[str, Any]:
    """A schema instance's settable values in the TOML shape of :func:`defaults` (top-level keys, then a dict per
    section; lists copied)."""
    out: dict[str, Any] = {}
    for f, s, _ in _settings(type(config)):
        value = copy.deepcopy(getattr(config, f.name))
        (out.setdefault(s.section, {}) if s.section else out)[f.name] = value
    return out


def _type_name(tp: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        return "a list"
    if origin in (typing.Union, types.UnionType):
        return " or ".join("unset" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """``value`` as type ``tp`` (int -> float allowed; lists of scalars checked element-wise), else ConfigError."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r} ({type(value).__name__})")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        items = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    ok = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}.get(tp)
    if ok is None:
        return value
    if type(value) not in ok:
        raise ConfigError(f"{where} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if tp is float:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be finite, got {value!r}")
    return value


def _key_path(section: str, key: str) -> str:
    return f"[{section}] {key}" if section else key


def check_ranges(config: Any, checks: Mapping[str, bool]) -> None:
    """For a schema's ``__post_init__``: ValueError ``[section] key = value is out of range`` for the first field
    name in ``checks`` whose condition is False."""
    where = {f.name: s.section for f, s, _ in _settings(type(config))}
    for name, ok in checks.items():
        if not ok:
            raise ValueError(f"{_key_path(where.get(name, ''), name)} = {getattr(config, name)!r} is out of range")


def load_config(cls: type[T], config: Mapping[str, Any], what: str, **fixed: Any) -> T:
    """``cls`` built from a parsed TOML ``config`` (see the module docstring for what is rejected); ``fixed``:
    values of fields that are not read from TOML (e.g. the seed from the command line). ``what`` names what is
    read in every error (e.g. ``"dtm config training/dtm.toml"``)."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"{what}: expected a TOML table, got {type(config).__name__}")
    fields = {(s.section, f.name): (f, tp) for f, s, tp in _settings(cls)}
    known = sections(cls)
    values: dict[str, Any] = {}

    def take(section: str, key: str, value: Any) -> None:
        if (section, key) not in fields:
            where = f"[{section}]" if section else "the top level"
            raise ConfigError(f"{what}: unknown key {_key_path(section, key)} (known in {where}: "
                              f"{', '.join(known.get(section, [])) or 'none'})")
        f, tp = fields[(section, key)]
        values[f.name] = _coerce(tp, value, f"{what}: {_key_path(section, key)}")

    for key, value in config.items():
        if isinstance(value, Mapping):
            if key not in known or key == "":
                raise ConfigError(f"{what}: unknown section [{key}] (known: "
                                  f"{', '.join(f'[{s}]' for s in known if s) or 'none'})")
            for sub, v in value.items():
                take(key, sub, v)
        else:
            take("", key, value)
    try:
        return cls(**values, **fixed)
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what}: {' '.join(str(exc).split())}") from None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def describe(cls: type, title: str = "") -> str:
    """The schema as a TOML document: every key at its default (commented out when it has none), each preceded by
    its doc, unit and type. ``tomllib.loads`` of the result gives :func:`defaults` (less unset keys)."""
    lines = [f"# {line}" if line else "#" for line in title.splitlines()] + [""] if title else []
    by_section: dict[str, list[tuple[dataclasses.Field, Setting, Any]]] = {}
    for f, s, tp in _settings(cls):
        by_section.setdefault(s.section, []).append((f, s, tp))
    for section in sorted(by_section, key=lambda name: name != ""):  # top-level keys before any table
        if section:
            lines += ["", f"[{section}]"]
        for f, s, tp in by_section[section]:
            unit = f" [{s.unit}]" if s.unit else ""
            lines.append(f"# {s.doc}{unit} ({_type_name(tp)})")
            value = _default(f)
            lines.append(f"# {f.name} =" if value is None else f"{f.name} = {_toml_value(value)}")
    return "\n".join(lines).lstrip("\n") + "\n"
