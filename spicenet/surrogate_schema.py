"""Surrogate schemas: what a family's surrogate file (:mod:`spicenet.surrogate`) holds, declared once per family.

A :class:`SurrogateSchema` names the fitted parameters (unit, shape, log-normal or not), the ``/surrogate/extra``
arrays (dtype, shape), the scalar attrs and the ``energy_*`` attrs a family writes and reads. Each family declares
one (``spicenet/cells/<family>/schema.py``) and hands it to the registry through
``spicenet.families.Family.surrogate_schema``; calibrate writes files that pass it, and train, export and validate
read through :func:`load_surrogate`, so a wrong or broken file fails at load with one line naming the file, the
family and the item (``cal.h5: oscillator surrogate v1: params/f0_hz missing``) instead of a KeyError deep inside.

``required`` items must be in every file (a reader of the family needs them); the others are checked only when
present (diagnostic arrays, attrs with a documented default). Items a schema does not declare are allowed.

Versions: :meth:`spicenet.surrogate.SurrogateFile.save` stamps the family's schema version in the attr
``schema_version``. A file stamped with a newer version than the code's is refused (``written by a newer
spicenet``); a file without the attr (written before schemas existed, e.g. the shipped quick surrogates) is read
as version 1 when it passes the checks; an older version is read with the current checks (no migration exists
yet: bump ``version`` when a change would make old files read wrongly, and add the migration then).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from spicenet.errors import ConfigError, DataError
from spicenet.surrogate import SurrogateFile

__all__ = ["ParamSpec", "ExtraSpec", "AttrSpec", "SurrogateSchema", "SurrogateFamilyError", "schema_for",
           "load_surrogate", "SCHEMA_VERSION_ATTR", "UNVERSIONED"]

SCHEMA_VERSION_ATTR = "schema_version"
UNVERSIONED = 1  # the version of a file without a schema_version attr



class SurrogateFamilyError(DataError, ConfigError):
    """A surrogate file of another family than the reader's (a DataError; also a ConfigError, which the family
    loaders raised for it before schemas existed)."""


_SHAPES = ("chips", "chips,cells")
_DTYPES = {"float": "fiu", "int": "iu", "bool": "b"}  # numpy dtype kinds each accepts (integers are exact floats)
_ATTR_KINDS = ("float", "int", "str", "json")


@dataclass(frozen=True)
class ParamSpec:
    """A fitted parameter ``/surrogate/params/<name>``: its samples over chips (``shape`` "chips": [chips]) or
    over chips and cells ("chips,cells": [chips, cells]), in ``unit`` (the dataset's ``unit`` attr, exactly);
    ``positive`` True: marked log-normal (``positive`` attr) with every value > 0, False: not marked log-normal
    (may be <= 0), None: either (the family does not sample it)."""

    name: str
    unit: str
    shape: str = "chips"
    positive: bool | None = None
    doc: str = ""
    required: bool = True

    def __post_init__(self) -> None:
        if self.shape not in _SHAPES:
            raise ValueError(f"ParamSpec {self.name}: shape must be one of {_SHAPES}, got {self.shape!r}")


@dataclass(frozen=True)
class ExtraSpec:
    """An array ``/surrogate/extra/<path>`` (nested groups joined with '/'). ``dtype``: "float" (any real number),
    "int" or "bool". ``shape``: None = any; else one entry per axis (``()`` = a scalar): an int is that length, a
    name binds a length shared by every extra of the file using it (e.g. ``("chips", "levels")``), "*" is any
    length. ``unit`` documents the values (extras carry no unit attr)."""

    path: str
    dtype: str = "float"
    shape: tuple[int | str, ...] | None = None
    unit: str = ""
    doc: str = ""
    required: bool = True

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(f"ExtraSpec {self.path}: dtype must be one of {tuple(_DTYPES)}, got {self.dtype!r}")


@dataclass(frozen=True)
class AttrSpec:
    """A scalar attr of ``/surrogate``. ``kind``: "float" (a real number), "int", "str" or "json" (a string
    holding a JSON object); ``unit`` documents the value."""

    name: str
    kind: str = "float"
    unit: str = ""
    doc: str = ""
    required: bool = True

    def __post_init__(self) -> None:
        if self.kind not in _ATTR_KINDS:
            raise ValueError(f"AttrSpec {self.name}: kind must be one of {_ATTR_KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class SurrogateSchema:
    """The surrogate file of one family, version ``version``; ``energy``: the ``energy_*`` attrs (J, W, s) every
    file must carry. :meth:`check` raises :class:`~spicenet.errors.DataError` on the first item that is wrong."""

    family: str
    version: int
    params: tuple[ParamSpec, ...] = ()
    extras: tuple[ExtraSpec, ...] = ()
    energy: tuple[str, ...] = ()
    attrs: tuple[AttrSpec, ...] = ()
    doc: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise ValueError(f"SurrogateSchema {self.family}: version must be an integer >= 1, got {self.version!r}")
        bad = [e for e in self.energy if not e.startswith("energy_")]
        if bad:
            raise ValueError(f"SurrogateSchema {self.family}: energy names must start with 'energy_', got {bad}")

    def check(self, sur: SurrogateFile, path: str | os.PathLike) -> None:
        """Raise a one-line DataError ``"<path>: <family> surrogate v<version>: <item> <problem>"`` when ``sur``
        (read from ``path``) is not a valid file of this schema; return None when it is."""
        where = f"{os.fspath(path)}: {self.family} surrogate"
        version = file_schema_version(sur, path)
        if version > self.version:
            raise DataError(f"{where}: written by a newer spicenet (schema v{version}, this reads v{self.version})")
        problem = self.problem(sur)
        if problem is not None:
            raise DataError(f"{where} v{self.version}: {problem}")

    def problem(self, sur: SurrogateFile) -> str | None:
        """The first thing wrong with ``sur`` under this schema ("params/f0_hz missing"), None when valid."""
        if sur.family != self.family:
            return f"family {sur.family!r}, expected {self.family!r}"
        if not isinstance(sur.process, str) or not sur.process.strip():
            return "process attr missing (the process the surrogate was calibrated on)"
        for p in self.params:
            msg = _param_problem(p, sur)
            if msg is not None:
                return f"params/{p.name} {msg}"
        for e in self.energy:
            if e not in sur.energy:
                return f"{e} missing"
            if not np.isfinite(sur.energy[e]):
                return f"{e} is {sur.energy[e]!r}, expected a finite number"
        for a in self.attrs:
            msg = _attr_problem(a, sur.attrs)
            if msg is not None:
                return f"attr {a.name} {msg}"
        bound: dict[str, tuple[int, str]] = {}
        for x in self.extras:
            msg = _extra_problem(x, sur.extra, bound)
            if msg is not None:
                return f"extra/{x.path} {msg}"
        return None

    def param(self, name: str) -> ParamSpec:
        """The spec of parameter ``name`` (KeyError naming the declared ones otherwise)."""
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"{self.family} surrogate schema has no parameter {name!r} (has "
                       f"{', '.join(p.name for p in self.params)})")


def file_schema_version(sur: SurrogateFile, path: str | os.PathLike = "") -> int:
    """The schema version a file was written with (``schema_version``; :data:`UNVERSIONED` when absent)."""
    v = sur.schema_version
    if v is None:
        return UNVERSIONED
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < 1:
        raise DataError(f"{os.fspath(path)}: {sur.family} surrogate: attr schema_version {v!r} is not an integer >= 1")
    return int(v)


def _param_problem(p: ParamSpec, sur: SurrogateFile) -> str | None:
    prm = sur.params.get(p.name)
    if prm is None:
        return "missing" if p.required else None
    ndim = 1 if p.shape == "chips" else 2
    if prm.values.ndim != ndim:
        return f"has shape {list(prm.values.shape)}, expected [{p.shape.replace(',', ', ')}]"
    if prm.unit != p.unit:
        return f"in unit {prm.unit!r}, expected {p.unit!r}"
    if p.positive is not None and bool(prm.positive) != p.positive:
        return (f"is {'' if prm.positive else 'not '}marked positive (log-normal), expected "
                f"{'' if p.positive else 'not '}positive")
    if p.positive and not np.all(prm.values > 0):
        return f"has {int(np.sum(prm.values <= 0))} value(s) <= 0 (a positive parameter)"
    return None


def _attr_problem(a: AttrSpec, attrs: dict[str, Any]) -> str | None:
    if a.name not in attrs:
        return "missing" if a.required else None
    v = attrs[a.name]
    if a.kind == "float":
        ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
        if not ok or not np.isfinite(float(v)):
            return f"is {v!r}, expected a finite number" + (f" ({a.unit})" if a.unit else "")
    elif a.kind == "int":
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            return f"is {v!r}, expected an integer"
    elif not isinstance(v, str):
        return f"is {type(v).__name__} {v!r}, expected a {'JSON ' if a.kind == 'json' else ''}string"
    elif a.kind == "json":
        try:
            obj = json.loads(v)
        except json.JSONDecodeError as exc:
            return f"is not JSON ({exc.msg} at character {exc.pos})"
        if not isinstance(obj, dict):
            return f"holds a JSON {type(obj).__name__}, expected an object"
    return None


def _extra_problem(x: ExtraSpec, extra: dict[str, np.ndarray], bound: dict[str, tuple[int, str]]) -> str | None:
    if x.path not in extra:
        return "missing" if x.required else None
    arr = np.asarray(extra[x.path])
    if arr.dtype.kind not in _DTYPES[x.dtype]:
        return f"has dtype {arr.dtype}, expected {x.dtype}"
    if x.shape is None:
        return None
    want = "[" + ", ".join(str(d) for d in x.shape) + "]"
    if arr.ndim != len(x.shape):
        return f"has shape {list(arr.shape)}, expected {want}"
    for n, d in zip(arr.shape, x.shape):
        if isinstance(d, int) and n != d:
            return f"has shape {list(arr.shape)}, expected {want}"
        if isinstance(d, str) and d != "*":
            first = bound.setdefault(d, (int(n), x.path))
            if first[0] != n:
                return f"has shape {list(arr.shape)}, expected {want} with {d} = {first[0]} (from extra/{first[1]})"
    return None


def schema_for(family: str) -> SurrogateSchema | None:
    """The surrogate schema the registered family ``family`` declares (``Family.surrogate_schema``), None when
    the family is not registered or declares none."""
    from spicenet.families import family_module

    fam = family_module(family)
    make = getattr(fam, "surrogate_schema", None) if fam is not None else None
    return make() if make is not None else None


def load_surrogate(path: str | os.PathLike, family: str) -> SurrogateFile:
    """The surrogate file at ``path``, checked to be a ``family`` one that passes the family's schema; a one-line
    DataError naming the file otherwise (missing, unreadable, another family's, a missing or mis-shaped item)."""
    sur = SurrogateFile.load(path)
    if sur.family != family:
        raise SurrogateFamilyError(f"{os.fspath(path)}: a {sur.family} surrogate, expected family {family}")
    schema = schema_for(family)
    if schema is not None:
        schema.check(sur, path)
    return sur
