"""Simulation results: named vectors with units, lower-case names ``time``, ``v(out)``, ``i(vdd)``, ...

``i(vdd)`` is ngspice's branch current of voltage source ``vdd``: positive when current flows *into* its positive
terminal, so a supply that delivers power has a negative current (see ``measure.supply_energy``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCALE_NAMES = ("time", "frequency", "v-sweep", "i-sweep", "temp-sweep", "res-sweep")

# ngspice's vector types (enum simulation_types in src/include/ngspice/sim.h, names as in src/frontend/typesdef.c,
# which is what a raw file's "Variables:" section writes) and the unit spicenet gives each.
VECTOR_TYPES = ("notype", "time", "frequency", "voltage", "current", "voltage-density", "current-density",
                "voltage^2-density", "current^2-density", "voltage^2", "current^2", "pole", "zero", "s-param",
                "temp-sweep", "res-sweep", "impedance", "admittance", "power", "phase", "decibel", "capacitance",
                "charge", "temperature")
TYPE_UNITS = {"time": "s", "frequency": "Hz", "voltage": "V", "current": "A", "voltage-density": "V/sqrt(Hz)",
              "current-density": "A/sqrt(Hz)", "voltage^2-density": "V^2/Hz", "current^2-density": "A^2/Hz",
              "voltage^2": "V^2", "current^2": "A^2", "temp-sweep": "degC", "res-sweep": "Ohm", "impedance": "Ohm",
              "admittance": "S", "power": "W", "decibel": "dB", "capacitance": "F", "charge": "C",
              "temperature": "degC"}

# dc sweep scales: ngspice's raw file writes v(v-sweep) / i(i-sweep); spicenet keeps the plot's own name.
_SWEEP_ALIASES = {"v(v-sweep)": "v-sweep", "i(i-sweep)": "i-sweep"}


def type_name(vector_type: int | str) -> str:
    """ngspice's type name of a vector type given as its number (shared library) or its name (raw file)."""
    if isinstance(vector_type, str):
        return vector_type.strip().lower()
    return VECTOR_TYPES[vector_type] if 0 <= vector_type < len(VECTOR_TYPES) else "notype"


def vector_unit(vector_type: int | str) -> str:
    return TYPE_UNITS.get(type_name(vector_type), "")


def vector_name(raw: str, vector_type: int | str) -> str:
    """The spicenet name of an ngspice vector: the name ngspice's raw-file writer gives it (``raw_write``:
    a current ``x#branch`` becomes ``i(x)``, any other current ``i(name)``, a voltage ``v(name)``, unless already so
    prefixed; other types keep their name), lower-cased; the dc sweep scale keeps its plot name ``v-sweep``
    (``i-sweep``). The same rule in both engine modes, so shared and batch results have identical names."""
    name = raw.strip()
    kind = type_name(vector_type)
    if kind == "current":
        if name.lower().endswith("#branch"):
            name = name[:-len("#branch")]
        if not name.lower().startswith("i("):
            name = f"i({name})"
    elif kind == "voltage" and not name.lower().startswith("v("):
        name = f"v({name})"
    name = name.lower()
    return _SWEEP_ALIASES.get(name, name)


@dataclass
class Plot:
    """The vectors of one ngspice plot (one analysis)."""

    name: str
    vectors: dict[str, np.ndarray]
    units: dict[str, str]


@dataclass
class SimResult:
    """One analysis of one run.

    ``vectors`` maps lower-case names to float64 (or complex128 for ac) arrays; ``scale`` names the independent
    vector (``time`` for tran, ``frequency`` for ac/noise, the swept source for dc, ``None`` for op).
    ``attempts`` records the convergence retry ladder steps that were tried (empty when the first try worked).
    """

    analysis: str
    vectors: dict[str, np.ndarray]
    units: dict[str, str]
    mode: str = "shared"
    wall_s: float = 0.0
    attempts: list[dict[str, Any]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    @property
    def scale(self) -> str | None:
        for name in SCALE_NAMES:
            if name in self.vectors:
                return name
        kind = self.analysis.split()[0].lower() if self.analysis else ""
        if kind == "dc" and self.vectors:
            sweep = self.analysis.split()[1].lower()
            for candidate in (sweep, f"v({sweep})", f"i({sweep})"):
                if candidate in self.vectors:
                    return candidate
        return None

    def __getitem__(self, name: str) -> np.ndarray:
        key = name.lower()
        if key not in self.vectors:
            raise KeyError(f"no vector {name!r} in the {self.analysis!r} result; have {sorted(self.vectors)}")
        return self.vectors[key]

    def __contains__(self, name: str) -> bool:
        return name.lower() in self.vectors

    def scalar(self, name: str) -> float:
        """The value of an ``op`` vector (numpy 2 no longer converts a 1-element array implicitly)."""
        value = self[name]
        if value.size != 1:
            raise ValueError(f"vector {name!r} has {value.size} points, not 1")
        return float(np.real(value.reshape(-1)[0]))


def merge_plots(plots: list[Plot], save: tuple[str, ...] | None = None) -> tuple[dict[str, np.ndarray],
                                                                                 dict[str, str]]:
    """The vectors of the plots one analysis made, in the order ngspice made them (``noise``: the spectra, then the
    integrated totals), optionally limited to ``save`` (scale vectors always kept). Within a plot: its scale first,
    then the other names sorted (the two engine modes list a plot's vectors in different orders). A name already
    taken by an earlier plot keeps the earlier vector."""
    vectors: dict[str, np.ndarray] = {}
    units: dict[str, str] = {}
    for plot in plots:
        order = sorted(plot.vectors, key=lambda n: (n not in SCALE_NAMES, n))
        for name in order:
            values = plot.vectors[name]
            if units_of(plot, name) == "Hz" and np.iscomplexobj(values):
                values = np.ascontiguousarray(values.real)  # an ac sweep's frequency scale is real
            if name in vectors or (save and name not in save and name not in SCALE_NAMES):
                continue
            vectors[name], units[name] = values, units_of(plot, name)
    return vectors, units


def units_of(plot: Plot, name: str) -> str:
    return plot.units.get(name, "")
