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

__all__ = ["setting", "subsection", "load_config", "describe", "defaults", "sections", "as_sections", "check_ranges", "Setting"]

T = TypeVar("T")

_META = "spicenet.setting"


@dataclasses.dataclass(frozen=True)
class Setting:
    """What :func:`setting` / :func:`subsection` record about a field: its TOML ``section`` ("" = top level),
    ``doc``, ``unit``, its TOML ``key`` ("" = the field's name) and whether it is a whole ``nested`` table."""

    doc: str
    unit: str = ""
    section: str = ""
    key: str = ""
    nested: bool = False


def setting(default: Any, doc: str, *, unit: str = "", section: str = "", key: str = "") -> Any:
    """A dataclass field settable from TOML key ``[section] <key>`` (top level when ``section`` is ""; ``key``
    defaults to the field's name, so that e.g. ``free_t_end`` can be ``[free] t_end``), with its ``doc`` and
    ``unit`` (SI, "" for dimensionless). Lists and dicts defaults are copied per instance."""
    if not doc:
        raise ValueError("setting: every config field needs a doc")
    meta = {_META: Setting(doc=doc, unit=unit, section=section, key=key)}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def subsection(default: Any, doc: str) -> Any:
    """A field holding a whole TOML table ``[<field name>]`` read into its own schema (a dataclass of top-level
    :func:`setting` fields, the field's type, or ``Schema | None``). ``default``: an instance, a zero-argument
    factory, or None (the table is optional: absent means None)."""
    if not doc:
        raise ValueError("subsection: every config field needs a doc")
    meta = {_META: Setting(doc=doc, nested=True)}
    if callable(default) and not dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=default, metadata=meta)
    if default is None:
        return dataclasses.field(default=None, metadata=meta)
    return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)


def _settings(cls: type) -> list[tuple[dataclasses.Field, Setting, Any]]:
    """(field, its Setting, its resolved type) for every TOML-settable field of ``cls``, in declaration order."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    return [(f, f.metadata[_META], hints[f.name]) for f in dataclasses.fields(cls) if _META in f.metadata]


def _key(f: dataclasses.Field, s: Setting) -> str:
    return s.key or f.name


def _nested_type(tp: Any) -> tuple[type, bool]:
    """(the schema of a subsection field of type ``tp``, whether it may be None)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and isinstance(args[0], type) and dataclasses.is_dataclass(args[0]):
            return args[0], True
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp, False
    raise TypeError(f"a subsection must be typed with a dataclass (or one | None), got {tp!r}")


def sections(cls: type) -> dict[str, list[str]]:
    """Section name ("" = top level) -> its TOML keys, in declaration order (a subsection: its own keys)."""
    out: dict[str, list[str]] = {}
    for f, s, tp in _settings(cls):
        if s.nested:
            out[f.name] = [_key(g, t) for g, t, _ in _settings(_nested_type(tp)[0])]
        else:
            out.setdefault(s.section, []).append(_key(f, s))
    return out


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _shape(cls: type, value_of: Any) -> dict[str, Any]:
    """TOML-shaped dict of ``cls``'s settings, each value from ``value_of(field)`` (subsections recursed; a None
    value left out)."""
    out: dict[str, Any] = {}
    for f, s, tp in _settings(cls):
        value = value_of(f)
        if value is None:
            continue
        if s.nested:
            out[f.name] = as_sections(value)
        else:
            (out.setdefault(s.section, {}) if s.section else out)[_key(f, s)] = copy.deepcopy(value)
    return out


def defaults(cls: type) -> dict[str, Any]:
    """The schema's defaults as a TOML-shaped dict: top-level keys, then one table per section (an optional
    subsection, None by default, is left out)."""
    return _shape(cls, _default)


def as_sections(config: Any) -> dict[str, Any]:
    """A schema instance's settable values in the TOML shape of :func:`defaults`."""
    return _shape(type(config), lambda f: getattr(config, f.name))


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
    where = {f.name: (s.section, _key(f, s)) for f, s, _ in _settings(type(config))}
    for name, ok in checks.items():
        if not ok:
            section, key = where.get(name, ("", name))
            raise ValueError(f"{_key_path(section, key)} = {getattr(config, name)!r} is out of range")


def load_config(cls: type[T], config: Mapping[str, Any], what: str, **fixed: Any) -> T:
    """``cls`` built from a parsed TOML ``config`` (see the module docstring for what is rejected); ``fixed``:
    values of fields that are not read from TOML (e.g. the seed from the command line). ``what`` names what is
    read in every error (e.g. ``"dtm config training/dtm.toml"``)."""
    return _load(cls, config, what, "", fixed)


def _load(cls: type[T], config: Mapping[str, Any], what: str, table: str, fixed: Mapping[str, Any]) -> T:
    """:func:`load_config` of the keys of TOML table ``table`` ("" = the document) into ``cls``."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"{what}: {f'[{table}] ' if table else ''}expected a TOML table, got "
                          f"{type(config).__name__}")
    settings = _settings(cls)
    fields = {(s.section, _key(f, s)): (f, tp) for f, s, tp in settings if not s.nested}
    nested = {f.name: tp for f, s, tp in settings if s.nested}
    known = sections(cls)
    values: dict[str, Any] = {}

    def take(section: str, key: str, value: Any) -> None:
        if (section, key) not in fields:
            where = f"[{section or table}]" if section or table else "the top level"
            raise ConfigError(f"{what}: unknown key {_key_path(section or table, key)} (known in {where}: "
                              f"{', '.join(known.get(section, [])) or 'none'})")
        f, tp = fields[(section, key)]
        values[f.name] = _coerce(tp, value, f"{what}: {_key_path(section or table, key)}")

    for key, value in config.items():
        if key in nested and not table:
            values[key] = _load(_nested_type(nested[key])[0], value, what, key, {})
        elif isinstance(value, Mapping):
            if key not in known or key == "" or table:
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
        prefix = f"[{table}] " if table and not str(exc).startswith("[") else ""
        raise ConfigError(f"{what}: {prefix}{' '.join(str(exc).split())}") from None


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
    """The schema as a TOML document: every key at its default (commented out when it has none, and an optional
    subsection whole), each preceded by its doc, unit and type. ``tomllib.loads`` of the result gives
    :func:`defaults`."""
    lines = [f"# {line}" if line else "#" for line in title.splitlines()] + [""] if title else []
    by_section: dict[str, list[tuple[dataclasses.Field, Setting, Any]]] = {}
    for f, s, tp in _settings(cls):
        by_section.setdefault(f.name if s.nested else s.section, []).append((f, s, tp))
    for section in sorted(by_section, key=lambda name: name != ""):  # top-level keys before any table
        entries = by_section[section]
        if len(entries) == 1 and entries[0][1].nested:
            f, s, tp = entries[0]
            schema, _ = _nested_type(tp)
            value = _default(f)
            body = describe(schema).splitlines() if value is None else _describe_values(schema, value)
            off = "# " if value is None else ""
            lines += ["", f"# {s.doc}", f"{off}[{section}]"] + [ln if ln.startswith("#") or not off else off + ln
                                                                  for ln in body]
            continue
        if section:
            lines += ["", f"[{section}]"]
        for f, s, tp in entries:
            lines += _entry(f, s, tp, _default(f))
    text = "\n".join(ln for i, ln in enumerate(lines) if ln or (i and lines[i - 1]))  # no double blank lines
    return text.lstrip("\n") + "\n"


def _entry(f: dataclasses.Field, s: Setting, tp: Any, value: Any) -> list[str]:
    unit = f" [{s.unit}]" if s.unit else ""
    doc = f"# {s.doc}{unit} ({_type_name(tp)})"
    return [doc, f"# {_key(f, s)} =" if value is None else f"{_key(f, s)} = {_toml_value(value)}"]


def _describe_values(schema: type, instance: Any) -> list[str]:
    """The top-level entries of a subsection schema at the values of ``instance``."""
    return [ln for f, s, tp in _settings(schema) for ln in _entry(f, s, tp, getattr(instance, f.name))]
