"""Simulation results: named vectors with units, lower-case names ``time``, ``v(out)``, ``i(vdd)``, ...

``i(vdd)`` is ngspice's branch current of voltage source ``vdd``: positive when current flows *into* its positive
terminal, so a supply that delivers power has a negative current (see ``measure.supply_energy``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCALE_NAMES = ("time", "frequency", "v-sweep", "i-sweep", "temp-sweep", "res-sweep")


def normalise_vector_name(raw: str, unit: str = "") -> str:
    """ngspice names -> spicenet names: ``OUT``/``V(out)`` -> ``v(out)``, ``Vdd#branch``/``I(vdd)`` -> ``i(vdd)``.

    Scale vectors (``time``, ``frequency``, sweeps) keep their names; noise/other vectors are lower-cased as is.
    """
    name = raw.strip().lower()
    if name.endswith("#branch"):
        return f"i({name[:-len('#branch')]})"
    if name.startswith(("v(", "i(", "vm(", "vp(", "vdb(")) or name in SCALE_NAMES:
        return name
    if "(" in name or "#" in name or unit not in ("V", ""):
        return name
    if name.startswith(("onoise", "inoise", "@")):
        return name
    return f"v({name})"


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
