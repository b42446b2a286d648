"""Energy accounting: calibrated per-event energies (from a surrogate file) x model structure -> J per sample.

Every breakdown is a dict for reports::

    {"family", "formula", "energy_j" (per sample / inference), "terms": {name: J}, "inputs": {name: value}}

with ``energy_j == sum(terms.values())`` (:func:`breakdown`). Units: joules, watts, seconds, volts, amperes.

Each family's formula is its own (``Family.energy`` in ``spicenet/cells/<family>/family.py``, e.g. the p-bit DTM
E_sample = T * K * N * E_bit, the oscillator network E = N * C * E_cycle + M * C * E_coupling_cycle, the
resistive network E = n_solves * P * t_settle); :func:`energy_from_surrogate` dispatches to the registered family.
This module holds what they share: the breakdown record, argument checks and SI formatting.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_PREFIXES = [(1e-18, "aJ"), (1e-15, "fJ"), (1e-12, "pJ"), (1e-9, "nJ"), (1e-6, "uJ"), (1e-3, "mJ"), (1.0, "J")]


def check_nonneg(**kw: float | None) -> None:
    """ValueError naming the argument unless each given value (None: not given) is finite and >= 0."""
    for k, v in kw.items():
        if v is None:
            continue
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{k}: expected a finite value >= 0, got {v}")


def check_counts(**kw: int) -> None:
    """ValueError naming the argument unless each value is a non-negative integer."""
    for k, v in kw.items():
        if int(v) != v or v < 0:
            raise ValueError(f"{k}: expected a non-negative integer, got {v}")


def need(energy_attrs: dict[str, float], key: str, family: str) -> float:
    """``energy_attrs[key]`` as a float (J, W or s); ValueError naming the family and the attrs it has otherwise."""
    if key not in energy_attrs:
        raise ValueError(f"energy_attrs: {family} needs {key!r}, have {sorted(energy_attrs)}")
    return float(energy_attrs[key])


def format_energy(joules: float) -> str:
    """Human-readable energy with an SI prefix, e.g. 2.5e-12 -> '2.5 pJ'."""
    if joules == 0:
        return "0 J"
    unit_scale, unit = _PREFIXES[0]
    for scale, name in _PREFIXES:
        if abs(joules) >= scale:
            unit_scale, unit = scale, name
    return f"{joules / unit_scale:.4g} {unit}"


def breakdown(family: str, formula: str, terms: dict[str, float], inputs: dict[str, Any]) -> dict[str, Any]:
    """The breakdown record: ``energy_j`` = sum of ``terms`` (J), its SI text, the terms and the formula's inputs."""
    total = float(sum(terms.values()))
    return {"family": family, "formula": formula, "energy_j": total, "energy": format_energy(total),
            "terms": {k: float(v) for k, v in terms.items()}, "inputs": inputs}


def energy_from_surrogate(energy_attrs: dict[str, float], family: str, **structure: Any) -> dict[str, Any]:
    """The registered ``family``'s energy breakdown (``Family.energy``) from a surrogate's ``energy_*`` attrs and
    the model structure (keyword arguments the family's formula documents). ValueError for a family that is not
    registered or has no formula."""
    from spicenet.families import registered

    found = registered().get(family)
    if found is None or found.energy is None:
        with_formula = [f.name for f in registered().values() if f.energy is not None]
        raise ValueError(f"family: expected one of {', '.join(with_formula)}, got {family!r}")
    return found.energy(energy_attrs, **structure)
