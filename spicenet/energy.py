"""Energy accounting: calibrated per-event energies (from a surrogate file) x model structure -> J per sample.

Every function returns a breakdown dict for reports::

    {"family", "formula", "energy_j" (per sample / inference), "terms": {name: J}, "inputs": {name: value}}

with ``energy_j == sum(terms.values())``. Units: joules, watts, seconds, volts, amperes.

Formulas
--------
* DTM on p-bits (one sample = T denoising steps, each K Gibbs sweeps over N cells, one random bit per cell
  update):            E_sample = T * K * N * E_bit  (+ T * K * E_sweep_overhead)
* Oscillator networks (Ising / AIS: N oscillators run for C cycles, M couplings each dissipating per cycle):
                      E = N * C * E_cycle + M * C * E_coupling_cycle
* Resistive networks (EqProp: one inference = one settle; training adds the nudged settle):
                      E_solve = P_static * t_settle   or   E_solve = t_settle * sum_k V_k I_k ;
                      E = n_solves * E_solve
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

_PREFIXES = [(1e-18, "aJ"), (1e-15, "fJ"), (1e-12, "pJ"), (1e-9, "nJ"), (1e-6, "uJ"), (1e-3, "mJ"), (1.0, "J")]


def _nonneg(**kw: float) -> None:
    for k, v in kw.items():
        if v is None:
            continue
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{k}: expected a finite value >= 0, got {v}")


def _count(**kw: int) -> None:
    for k, v in kw.items():
        if int(v) != v or v < 0:
            raise ValueError(f"{k}: expected a non-negative integer, got {v}")


def format_energy(joules: float) -> str:
    """Human-readable energy with an SI prefix, e.g. 2.5e-12 -> '2.5 pJ'."""
    if joules == 0:
        return "0 J"
    unit_scale, unit = _PREFIXES[0]
    for scale, name in _PREFIXES:
        if abs(joules) >= scale:
            unit_scale, unit = scale, name
    return f"{joules / unit_scale:.4g} {unit}"


def _report(family: str, formula: str, terms: dict[str, float], inputs: dict[str, Any]) -> dict[str, Any]:
    total = float(sum(terms.values()))
    return {"family": family, "formula": formula, "energy_j": total, "energy": format_energy(total),
            "terms": {k: float(v) for k, v in terms.items()}, "inputs": inputs}


def dtm_energy(e_bit_j: float, n_cells: int, sweeps_per_step: int, steps: int,
               e_sweep_overhead_j: float = 0.0) -> dict[str, Any]:
    """DTM sample energy: E_sample = T * K * N * E_bit + T * K * E_sweep_overhead (J per generated sample).

    e_bit_j: energy of one p-bit update (one random bit), J; n_cells: N p-bits updated per sweep; sweeps_per_step: K
    Gibbs sweeps per denoising step; steps: T denoising steps; e_sweep_overhead_j: per-sweep fixed cost (clocking).
    """
    _nonneg(e_bit_j=e_bit_j, e_sweep_overhead_j=e_sweep_overhead_j)
    _count(n_cells=n_cells, sweeps_per_step=sweeps_per_step, steps=steps)
    sweeps = steps * sweeps_per_step
    terms = {"pbit_updates": sweeps * n_cells * e_bit_j}
    if e_sweep_overhead_j:
        terms["sweep_overhead"] = sweeps * e_sweep_overhead_j
    return _report("rng", "E_sample = T*K*N*E_bit + T*K*E_sweep", terms, {
        "e_bit_j": e_bit_j, "n_cells": n_cells, "sweeps_per_step": sweeps_per_step, "steps": steps,
        "e_sweep_overhead_j": e_sweep_overhead_j, "bit_updates": sweeps * n_cells})


def oscillator_energy(e_cycle_j: float, n_osc: int, cycles: float, n_couplings: int = 0,
                      e_coupling_cycle_j: float = 0.0) -> dict[str, Any]:
    """Oscillator-network energy per solve/sample: E = N * C * E_cycle + M * C * E_coupling_cycle.

    e_cycle_j: energy one oscillator dissipates per oscillation cycle (J); cycles: C cycles run (anneal length x
    frequency); n_couplings: M coupling elements; e_coupling_cycle_j: energy per coupling per cycle (J).
    """
    _nonneg(e_cycle_j=e_cycle_j, cycles=cycles, e_coupling_cycle_j=e_coupling_cycle_j)
    _count(n_osc=n_osc, n_couplings=n_couplings)
    terms = {"oscillators": n_osc * cycles * e_cycle_j}
    if n_couplings:
        terms["couplings"] = n_couplings * cycles * e_coupling_cycle_j
    return _report("oscillator", "E = N*C*E_cycle + M*C*E_coupling", terms, {
        "e_cycle_j": e_cycle_j, "n_osc": n_osc, "cycles": cycles, "n_couplings": n_couplings,
        "e_coupling_cycle_j": e_coupling_cycle_j})


def resistive_energy(t_settle_s: float, *, p_static_w: float | None = None, v: Sequence[float] | None = None,
                     i: Sequence[float] | None = None, n_solves: int = 1) -> dict[str, Any]:
    """Resistive-network energy per inference: E = n_solves * E_solve with E_solve = P_static * t_settle, or
    E_solve = t_settle * sum_k V_k I_k over the sources (V in volts, I in amperes, power delivered by each source).

    Give exactly one of ``p_static_w`` or (``v``, ``i``). EqProp training uses n_solves = 2 (free + nudged).
    """
    _nonneg(t_settle_s=t_settle_s, p_static_w=p_static_w)
    _count(n_solves=n_solves)
    if (p_static_w is None) == (v is None or i is None):
        raise ValueError("p_static_w / v, i: give exactly one of p_static_w or both v and i")
    if p_static_w is None:
        va, ia = np.asarray(v, dtype=np.float64), np.asarray(i, dtype=np.float64)
        if va.shape != ia.shape:
            raise ValueError(f"v, i: shapes differ: {va.shape} vs {ia.shape}")
        p = float(np.sum(va * ia))
        if p < 0:
            raise ValueError(f"v, i: net delivered power sum(V*I) = {p} W is negative; check the sign convention")
    else:
        p = float(p_static_w)
    e_solve = p * t_settle_s
    return _report("resistive", "E = n_solves * P * t_settle, P = P_static or sum V_k I_k",
                   {"solves": n_solves * e_solve},
                   {"t_settle_s": t_settle_s, "power_w": p, "e_solve_j": e_solve, "n_solves": n_solves})


def energy_from_surrogate(energy_attrs: dict[str, float], family: str, **structure: Any) -> dict[str, Any]:
    """Dispatch on ``family`` with the surrogate's ``energy_*`` attrs and the model structure:

    rng: energy_per_bit_j (+ energy_per_sweep_j) with n_cells, sweeps_per_step, steps;
    oscillator: energy_per_cycle_j (+ energy_per_coupling_cycle_j) with n_osc, cycles, n_couplings;
    resistive: energy_per_solve_j (or power_static_w + t_settle_s from structure / attr energy_t_settle_s)
    with n_solves.
    """
    def need(key: str) -> float:
        if key not in energy_attrs:
            raise ValueError(f"energy_attrs: {family} needs {key!r}, have {sorted(energy_attrs)}")
        return float(energy_attrs[key])

    if family == "rng":
        return dtm_energy(need("energy_per_bit_j"), structure["n_cells"], structure["sweeps_per_step"],
                          structure["steps"], float(energy_attrs.get("energy_per_sweep_j", 0.0)))
    if family == "oscillator":
        return oscillator_energy(need("energy_per_cycle_j"), structure["n_osc"], structure["cycles"],
                                 structure.get("n_couplings", 0), float(energy_attrs.get("energy_per_coupling_cycle_j", 0.0)))
    if family == "resistive":
        n = structure.get("n_solves", 1)
        if "energy_per_solve_j" in energy_attrs:
            e = need("energy_per_solve_j")
            return _report("resistive", "E = n_solves * E_solve", {"solves": n * e}, {"e_solve_j": e, "n_solves": n})
        return resistive_energy(structure.get("t_settle_s", energy_attrs.get("energy_t_settle_s", 0.0)),
                                p_static_w=need("energy_power_static_w"), n_solves=n)
    raise ValueError(f"family: expected rng, oscillator or resistive, got {family!r}")
