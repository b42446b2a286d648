"""Surrogate files: the calibrated behavioural model of a cell family, as plain HDF5 (readable with h5py alone).

Layout::

    /surrogate                 attrs: family, process, created (ISO-8601 UTC), spicenet_version,
                                      schema_version (int: the family's surrogate schema, spicenet.surrogate_schema;
                                      absent in files written before schemas = version 1),
                                      energy_* (floats, SI units, e.g. energy_per_bit_j), any extra scalar attrs
    /surrogate/params/<name>   dataset: per-chip (shape [chips]) or per-chip-per-cell ([chips, cells]) fitted
                               values = the mismatch samples; attrs: unit, mean, std, positive (bool: model as
                               log-normal), std_global (optional die-to-die part), description
    /surrogate/correlation     optional (P, P) correlation matrix of the parameters' mismatch; attr names (JSON list)
    /surrogate/extra/...       arbitrary family arrays (nested groups allowed, keys joined with '/')
    /provenance                attrs: runs_file, run_ids (JSON list), config (JSON text)

``mean``/``std`` are the mismatch distribution's moments in the parameter's own unit (for ``positive``
parameters too: the sampler moment-matches a log-normal to them).

What each family's file must hold is its schema (:mod:`spicenet.surrogate_schema`, looked up by the ``family``
attr); readers of a family load through :func:`spicenet.surrogate_schema.load_surrogate`, which checks it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import spicenet
from spicenet.errors import DataError


@dataclass
class SurrogateParam:
    """One fitted parameter: its samples over chips (and cells) and its mismatch distribution."""

    values: np.ndarray
    unit: str = ""
    mean: float | None = None
    std: float | None = None
    positive: bool = False
    std_global: float = 0.0
    description: str = ""

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.values.ndim not in (1, 2) or self.values.size == 0:
            raise ValueError(f"values: expected a non-empty [chips] or [chips, cells] array, got shape {self.values.shape}")
        if not np.all(np.isfinite(self.values)):
            raise ValueError("values: contains NaN or inf")
        if self.mean is None:
            self.mean = float(self.values.mean())
        if self.std is None:
            self.std = float(self.values.std(ddof=1)) if self.values.size > 1 else 0.0
        if self.std < 0 or self.std_global < 0:
            raise ValueError(f"std: expected >= 0, got std={self.std}, std_global={self.std_global}")
        if self.positive and self.mean <= 0:
            raise ValueError(f"mean: a positive (log-normal) parameter needs mean > 0, got {self.mean}")


@dataclass
class SurrogateFile:
    """In-memory image of a surrogate HDF5 file; ``save``/``load`` are exact inverses."""

    family: str
    process: str
    params: dict[str, SurrogateParam] = field(default_factory=dict)
    correlation: np.ndarray | None = None
    correlation_names: list[str] = field(default_factory=list)
    energy: dict[str, float] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    spicenet_version: str = ""
    schema_version: int | None = None

    def __post_init__(self) -> None:
        for k in self.energy:
            if not k.startswith("energy_"):
                raise ValueError(f"energy: keys must start with 'energy_', got {k!r}")
        if self.correlation is not None:
            c = np.asarray(self.correlation, dtype=np.float64)
            n = len(self.correlation_names)
            if c.shape != (n, n) or not np.allclose(c, c.T) or not np.allclose(np.diag(c), 1.0):
                raise ValueError(f"correlation: expected a symmetric ({n}, {n}) matrix with unit diagonal, got {c.shape}")
            if np.linalg.eigvalsh(c).min() < -1e-9:
                raise ValueError("correlation: matrix is not positive semi-definite")
            missing = [m for m in self.correlation_names if m not in self.params]
            if missing:
                raise ValueError(f"correlation_names: not parameters of this surrogate: {missing}")
            self.correlation = c

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (temporary file + rename) and return the path. ``schema_version`` is stamped with the
        version of the surrogate schema the family registers (``self.schema_version`` when it registers none)."""
        p = Path(path)
        version = _registered_schema_version(self.family)
        if version is None:
            version = self.schema_version
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        created = self.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        with h5py.File(tmp, "w") as f:
            g = f.create_group("surrogate")
            g.attrs["family"] = self.family
            g.attrs["process"] = self.process
            g.attrs["created"] = created
            g.attrs["spicenet_version"] = self.spicenet_version or spicenet.__version__
            if version is not None:
                g.attrs["schema_version"] = int(version)
            for k, v in self.energy.items():
                g.attrs[k] = float(v)
            for k, v in self.attrs.items():
                if k in g.attrs:
                    raise ValueError(f"attrs: key {k!r} collides with a reserved attribute")
                g.attrs[k] = v
            pg = g.create_group("params")
            for name, prm in self.params.items():
                d = pg.create_dataset(name, data=prm.values)
                d.attrs["unit"] = prm.unit
                d.attrs["mean"] = float(prm.mean)  # type: ignore[arg-type]
                d.attrs["std"] = float(prm.std)  # type: ignore[arg-type]
                d.attrs["positive"] = bool(prm.positive)
                d.attrs["std_global"] = float(prm.std_global)
                d.attrs["description"] = prm.description
            if self.correlation is not None:
                c = g.create_dataset("correlation", data=self.correlation)
                c.attrs["names"] = json.dumps(list(self.correlation_names))
            if self.extra:
                eg = g.create_group("extra")
                for k, val in self.extra.items():
                    eg.create_dataset(k, data=np.asarray(val))
            prov = f.create_group("provenance")
            prov.attrs["runs_file"] = str(self.provenance.get("runs_file", ""))
            prov.attrs["run_ids"] = json.dumps(list(self.provenance.get("run_ids", [])))
            cfg = self.provenance.get("config", {})
            prov.attrs["config"] = cfg if isinstance(cfg, str) else json.dumps(cfg, sort_keys=True, default=str)
            for k, v in self.provenance.items():
                if k not in ("runs_file", "run_ids", "config"):
                    prov.attrs[k] = v if isinstance(v, (int, float, str, bool)) else json.dumps(v, default=str)
        os.replace(tmp, p)
        self.created = created
        self.schema_version = version
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "SurrogateFile":
        """Read a surrogate file written by :meth:`save` (or by hand following the module's layout)."""
        p = Path(path)
        if not p.is_file():
            raise DataError(f"surrogate file not found: {p} (create one with `spicenet calibrate FAMILY -o {p.name}`)")
        try:
            with h5py.File(p, "r") as f:
                if "surrogate" not in f:
                    raise DataError(f"{p}: no /surrogate group; not a spicenet surrogate file")
                g = f["surrogate"]
                reserved = {"family", "process", "created", "spicenet_version", "schema_version"}
                energy = {k: float(v) for k, v in g.attrs.items() if k.startswith("energy_")}
                attrs = {k: _py(v) for k, v in g.attrs.items() if k not in reserved and not k.startswith("energy_")}
                params = {}
                for name, d in g.get("params", {}).items():
                    a = d.attrs
                    try:
                        params[name] = SurrogateParam(
                            values=d[()], unit=_py(a.get("unit", "")), mean=float(a["mean"]) if "mean" in a else None,
                            std=float(a["std"]) if "std" in a else None, positive=bool(a.get("positive", False)),
                            std_global=float(a.get("std_global", 0.0)), description=_py(a.get("description", "")),
                        )
                    except (ValueError, TypeError) as exc:
                        raise DataError(f"surrogate file {p}: params/{name}: {exc}") from None
                corr, names = None, []
                if "correlation" in g:
                    corr = g["correlation"][()]
                    names = json.loads(_py(g["correlation"].attrs["names"]))
                extra: dict[str, np.ndarray] = {}
                if "extra" in g:
                    g["extra"].visititems(lambda k, o: extra.__setitem__(k, o[()]) if isinstance(o, h5py.Dataset) else None)
                prov: dict[str, Any] = {}
                if "provenance" in f:
                    for k, v in f["provenance"].attrs.items():
                        v = _py(v)
                        if k in ("run_ids", "config") and isinstance(v, str):
                            try:
                                v = json.loads(v)
                            except json.JSONDecodeError:
                                pass
                        prov[k] = v
                try:
                    return cls(
                        family=_py(g.attrs["family"]), process=_py(g.attrs["process"]), params=params,
                        correlation=corr, correlation_names=names, energy=energy, extra=extra, attrs=attrs,
                        provenance=prov, created=_py(g.attrs.get("created", "")),
                        spicenet_version=_py(g.attrs.get("spicenet_version", "")),
                        schema_version=_py(g.attrs["schema_version"]) if "schema_version" in g.attrs else None,
                    )
                except (ValueError, TypeError) as exc:
                    raise DataError(f"surrogate file {p}: {exc}") from None
        except (OSError, KeyError) as exc:
            raise DataError(f"cannot read surrogate file {p}: {exc}") from exc


def _registered_schema_version(family: str) -> int | None:
    """The version of the surrogate schema the registered family ``family`` declares (None: none, or the family
    registry cannot be read)."""
    from spicenet.families import FamilyError
    from spicenet.surrogate_schema import schema_for

    try:
        schema = schema_for(family)
    except FamilyError:
        return None
    return schema.version if schema is not None else None


def _py(v: Any) -> Any:
    """h5py attribute -> plain Python (bytes -> str, numpy scalars -> Python scalars)."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (run directories record the surrogate they trained on)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
