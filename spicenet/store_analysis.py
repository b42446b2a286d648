"""Analysis view of a run store: ``spicenet.open_runs(path)`` -> :class:`Runs`.

``Runs.table()`` is a pandas DataFrame with one row per run (parameters as float64 in SI units, so they sort
numerically; units in ``df.attrs["units"]``); ``Runs.to_xarray(vector, grid=None)`` an ``xarray.DataArray`` with dims
``("point", "chip")`` (plus ``"input"`` for sweeps with an ``[inputs]`` table) and the runs' shared axis (``time``,
``frequency``, ``v-sweep``) when they share one, otherwise interpolated onto ``grid``; the parameters that are
constant within a point are numeric coordinates along ``point``. Iterating yields :class:`~spicenet.store.RunRecord`
objects. Both store layouts (1: one group per run, 2: columnar) are read. pandas and xarray are the ``analysis``
extra (``pip install spicenet[analysis]``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from spicenet.store import (
    _COLUMNS,
    RunRecord,
    _V2Reader,
    read_run,
    read_runs,
    store_layout,
)

_BASE = tuple(_COLUMNS)


def _number(value: Any) -> Any:
    """A layout-1 parameter ("50k", "0.6", 3e-9) as a float in base units when it is a number, else unchanged."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    from spicenet.spice.units import parse_value

    try:
        return parse_value(str(value))
    except (ValueError, TypeError):
        return value


class Runs:
    """The committed runs of one store (records still in a journal are not visible)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no run store {self.path}")
        with h5py.File(self.path, "r") as f:
            self.layout = store_layout(f)
            self.attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            if self.layout == 2:
                reader = _V2Reader(f)
                self._columns = dict(reader.columns)
                self._params = dict(reader.param_values)
                self._measure = dict(reader.measure_values)
                self.units = {**{k: str(ds.attrs.get("unit", "")) for k, ds in reader.params.items()},
                              **{k: str(ds.attrs.get("unit", "")) for k, ds in reader.measure.items()}}
                self.vectors = sorted(set(reader.vectors) | set(reader.axes()[0]))
            else:
                self._load_v1()

    def _load_v1(self) -> None:
        records = list(read_runs(self.path, load_vectors=False))
        decks: dict[str, int] = {}
        cols: dict[str, list[Any]] = {name: [] for name in _BASE}
        params: dict[str, list[Any]] = {}
        measure: dict[str, list[Any]] = {}
        names: set[str] = set()
        with h5py.File(self.path, "r") as f:
            for rec in records:
                names.update(vector_names(f["runs"][rec.id]))
        for k, rec in enumerate(records):
            deck = decks.setdefault(rec.netlist, len(decks))
            match = re.match(r"^p(\d+)", rec.id)
            retries = rec.attrs.get("retries", [])
            row = {"id": rec.id, "point": int(match.group(1)) if match else deck, "chip": rec.chip, "seed": rec.seed,
                   "status": rec.status, "error": rec.error or "", "analysis": rec.attrs.get("analysis", ""),
                   "process": rec.process, "wall_s": np.nan if rec.attrs.get("wall_s") is None
                   else float(rec.attrs["wall_s"]), "retries": len(retries) if isinstance(retries, list) else 0,
                   "deck": deck, "axis": -1, "alters": "", "extra": ""}
            for name in _BASE:
                cols[name].append(row[name])
            for store, values in ((params, {key: _number(v) for key, v in rec.params.items()}),
                                  (measure, rec.measurements)):
                for key, value in values.items():
                    store.setdefault(key, [None] * k)
                for key, column in store.items():
                    column.append(values.get(key))
        self._columns = {name: np.array(values, dtype=object if _COLUMNS[name][0] == "str" else _COLUMNS[name][0])
                         for name, values in cols.items()}
        self._params = {}
        for key, vals in params.items():
            if all(v is None or isinstance(v, float) for v in vals):
                self._params[key] = np.array([np.nan if v is None else v for v in vals], dtype=float)
            else:
                self._params[key] = np.array(["" if v is None else str(v) for v in vals], dtype=object)
        self._measure = {key: np.array([np.nan if v is None else v for v in values], dtype=float)
                         for key, values in measure.items()}
        self.units = {}
        self.vectors = sorted(names)

    # ------------------------------------------------------------------------------------------------- access

    def __len__(self) -> int:
        return len(self._columns["id"])

    def __iter__(self) -> Iterator[RunRecord]:
        return read_runs(self.path)

    def __getitem__(self, run_id: str) -> RunRecord:
        return read_run(self.path, run_id)

    def table(self):
        """A pandas DataFrame, one row per run: id, point, chip, seed, status, error, analysis, process, wall_s,
        retries, then one column per parameter (float64 in SI units, or text) and per measurement. A parameter or
        measurement named like a base column is prefixed ``param:`` / ``measure:``. ``df.attrs["units"]``."""
        import pandas as pd

        data: dict[str, Any] = {name: self._columns[name] for name in _BASE
                                if name not in ("deck", "axis", "alters", "extra")}
        units = {"wall_s": "s"}
        for prefix, values in (("param:", self._params), ("measure:", self._measure)):
            for key, column in values.items():
                name = key if key not in data else prefix + key
                data[name] = column.astype(float) if column.dtype.kind == "f" else column
                if self.units.get(key):
                    units[name] = self.units[key]
        df = pd.DataFrame(data)
        for name in ("id", "status", "error", "analysis", "process"):
            df[name] = df[name].astype(str)
        df.attrs["units"] = units
        df.attrs["path"] = str(self.path)
        return df

    def _rows_arrays(self, vector: str, rows: np.ndarray) -> tuple[list[np.ndarray | None], list[Any], str, str]:
        """Per row: the vector's values (None if absent), an axis key, the axis name and the vector's unit."""
        values: list[np.ndarray | None] = []
        axes: list[Any] = []
        unit = ""
        axis_name = ""
        if self.layout == 2:
            with h5py.File(self.path, "r") as f:
                reader = _V2Reader(f)
                names, _, a_off, a_len, a_data = reader.axes()
                arrays = reader.vector_arrays(vector) if vector in reader.vectors else None
                if arrays is not None:
                    unit = str(reader.vectors[vector].attrs.get("unit", ""))
                for row in rows:
                    axis = int(reader.columns["axis"][row])
                    if arrays is None:  # the axis itself (e.g. "time")
                        ok = axis >= 0 and names[axis] == vector
                        values.append(a_data[a_off[axis]:a_off[axis] + a_len[axis]] if ok else None)
                    else:
                        data, offsets, lengths = arrays
                        n = int(lengths[row])
                        values.append(data[offsets[row]:offsets[row] + n] if n >= 0 else None)
                    if axis >= 0:
                        axis_name = str(names[axis])
                        axes.append((axis, a_data[a_off[axis]:a_off[axis] + a_len[axis]]))
                    else:
                        axes.append(None)
                if data is None and values and any(v is not None for v in values):
                    unit = str(reader.axes()[1][int(reader.columns["axis"][rows[0]])])
            return values, axes, axis_name, unit
        for row in rows:
            rec = read_run(self.path, str(self._columns["id"][row]))
            values.append(np.asarray(rec.vectors[vector]).reshape(-1) if vector in rec.vectors else None)
            unit = rec.units.get(vector, unit)
            scale = next((n for n in ("time", "frequency", "v-sweep", "i-sweep") if n in rec.vectors), None)
            if scale is not None:
                axis_name = scale
                axes.append((rec.vectors[scale].tobytes(), rec.vectors[scale]))
            else:
                axes.append(None)
        return values, axes, axis_name, unit

    def to_xarray(self, vector: str, grid: Any = None, *, include_failed_measures: bool = True):
        """The vector of every simulated run as an ``xarray.DataArray``.

        Dims ``("point", "chip")`` for scalar (``op``) vectors, ``("point", "chip", <axis>)`` when the runs share
        one axis (``op``/``dc``/``ac``, a fixed-step ``tran``: the axis values are the coordinate), or, with
        ``grid`` (1-D array of axis values), every run linearly interpolated onto it (needed when each run has its
        own time points). A sweep with an ``[inputs]`` table gets an ``"input"`` dim after ``"point"``. Runs that
        failed (or lack the vector) are NaN. Parameters constant within each point are coordinates on ``point``
        (float64, SI units; ``attrs["unit"]``), ``chip`` holds the chip numbers (-1: the nominal circuit)."""
        import xarray as xr

        vector = vector.lower()
        if vector not in self.vectors:
            raise KeyError(f"no vector {vector!r} in {self.path}; have {self.vectors}")
        status = self._columns["status"]
        keep = (status == "ok") | ((status == "measure_failed") & include_failed_measures)
        rows = np.nonzero(keep)[0]
        values, axes, axis_name, unit = self._rows_arrays(vector, rows)
        points = np.unique(self._columns["point"])
        chips = np.unique(self._columns["chip"])
        inputs = self._params.get("input_row")
        dims = ["point"]
        shape = [len(points)]
        if inputs is not None:
            input_values = np.unique(inputs[~np.isnan(inputs)]).astype(np.int64)
            dims.append("input")
            shape.append(len(input_values))
        dims.append("chip")
        shape.append(len(chips))
        present = [v for v in values if v is not None]
        complex_ = any(v.dtype.kind == "c" for v in present)
        scalar = all(v.size == 1 for v in present) and all(a is None for a in axes)
        coord_axis = None
        if not scalar:
            if grid is not None:
                coord_axis = np.asarray(grid, dtype=float)
                resampled: list[Any] = []
                for v, a in zip(values, axes):
                    if v is None or a is None:
                        resampled.append(None)
                        continue
                    t = np.asarray(a[1], dtype=float)
                    if complex_:
                        resampled.append(np.interp(coord_axis, t, v.real) + 1j * np.interp(coord_axis, t, v.imag))
                    else:
                        resampled.append(np.interp(coord_axis, t, np.real(v)))
                values = resampled
            else:
                keys = {a[0] if not isinstance(a[0], (int, np.integer)) else int(a[0]) for a in axes if a is not None}
                shared = len(keys) == 1 and all(v is None or v.size == next(iter(present)).size for v in values)
                if not shared:
                    raise ValueError(f"the runs of {self.path} do not share one {axis_name or 'axis'} (each run has its "
                                     f"own time points): pass grid=<1-D array> to interpolate onto it")
                coord_axis = np.asarray(next(a for a in axes if a is not None)[1], dtype=float)
            dims.append(axis_name or "axis")
            shape.append(len(coord_axis))
        out = np.full(shape, np.nan + (0j if complex_ else 0), dtype=complex if complex_ else float)
        p_index = {int(p): k for k, p in enumerate(points)}
        c_index = {int(c): k for k, c in enumerate(chips)}
        i_index = {int(i): k for k, i in enumerate(input_values)} if inputs is not None else {}
        for row, v in zip(rows, values):
            if v is None:
                continue
            at: list[int] = [p_index[int(self._columns["point"][row])]]
            if inputs is not None:
                if np.isnan(inputs[row]):
                    continue
                at.append(i_index[int(inputs[row])])
            at.append(c_index[int(self._columns["chip"][row])])
            out[tuple(at)] = v.reshape(()) if scalar else v
        coords: dict[str, Any] = {"point": points, "chip": chips}
        if inputs is not None:
            coords["input"] = input_values
        if coord_axis is not None:
            coords[dims[-1]] = coord_axis
        da = xr.DataArray(out, dims=dims, coords=coords, name=vector,
                          attrs={"unit": unit, "store": str(self.path)})
        point_col = self._columns["point"]
        for key, column in self._params.items():
            if key == "input_row" or column.dtype.kind != "f":
                continue
            per_point = np.full(len(points), np.nan)
            constant = True
            for k, p in enumerate(points):
                sel = column[point_col == p]
                sel = sel[~np.isnan(sel)]
                if sel.size and np.any(sel != sel[0]):
                    constant = False
                    break
                per_point[k] = sel[0] if sel.size else np.nan
            if constant and key not in da.coords and key not in dims:
                da = da.assign_coords({key: ("point", per_point)})
                da[key].attrs["unit"] = self.units.get(key, "")
        if coord_axis is not None:
            da[dims[-1]].attrs["unit"] = {"time": "s", "frequency": "Hz", "v-sweep": "V", "i-sweep": "A"}.get(
                dims[-1], "")
        return da


def vector_names(group: h5py.Group) -> list[str]:
    """The exact vector names of a layout-1 run group."""
    from spicenet.store import vector_name

    return [str(ds.attrs.get("name", vector_name(key))) for key, ds in group.items()]
