"""Export a trained AIS generator to a ring-oscillator netlist, and read phases back from the SPICE waveforms.

Mapping (the calibrated constants come from the surrogate file that the run was trained on; see
``spicenet.cells.oscillator.netlist`` for the circuit):

* coupling code ``c`` of pair (i, j) in segment s -> the 4-bit binary-weighted bank of that pair with magnitude
  bits of ``|c|`` and the polarity switch ``sign(c)`` (``G = |c| / r_lsb``, ``K = k_per_siemens G``); segment
  boundaries are the PWL switch-control edges;
* SHIL ``L_i(s)`` [rad/s] -> injection current amplitude ``L / shil_strength`` [A] at ``2 f_inj`` with phase
  ``psi = -2 shil_phase_rad`` (states at 0 and pi of the reference ``2 pi f_inj t``);
* bias ``b_i(s)`` [rad/s] -> supply offset ``b / (2 pi df/dVdd)`` [V] of ring i (PWL supply);
* latent initial phases ``phi0_i`` [rad] -> ``.ic`` node voltages of ring i (``netlist.initial_voltages``),
  optionally pre-corrected for the start-up phase error of that waveform (``ic_offset_table``: measured once
  per validation on free rings; it is periodic in the phase with period pi / n_stages and ~0.1-0.2 rad).

Phases back from SPICE (``spice_readout_phases``: the differential ``p0 - n0`` read-out of every ring, the
calibration's own phase definition; ``spice_phase``: any single waveform): rising mid-supply crossings of ``o<i>p0`` are carrier phase ``2 pi m``;
in the rotating frame of ``f_ref`` (the surrogate's f0) ``phi(t_k) = 2 pi (k + m0) - 2 pi f_ref t_k``, linear in
between; the integer ``m0`` is the one that puts the first crossing nearest the initial phase.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spicenet.cells.oscillator import measure as om
from spicenet.cells.oscillator.netlist import NetworkSpec, RingSpec

__all__ = ["HardwareMap", "hardware_map", "network_spec", "spice_phase", "analysis_for", "ic_offset_table",
           "corrected_ic_phases", "spice_readout_phases"]


@dataclass(frozen=True)
class HardwareMap:
    """Calibrated conversion constants from the phase model to circuit sources.

    ring: the calibrated ring; r_lsb_ohm: bank LSB resistor [Ohm]; f_inj_hz: SHIL reference (= surrogate f0) [Hz];
    shil_strength: L per injected amp [rad/s/A]; shil_phase_rad: locked phase offset of the SHIL at psi = 0 [rad];
    df_dvdd_hz_per_v: supply pushing [Hz/V]; step_s: transient step used in calibration [s]."""

    ring: RingSpec
    r_lsb_ohm: float
    f_inj_hz: float
    shil_strength: float
    shil_phase_rad: float
    df_dvdd_hz_per_v: float
    step_s: float = 10e-12

    def __post_init__(self) -> None:
        for k in ("r_lsb_ohm", "f_inj_hz", "shil_strength", "step_s"):
            v = getattr(self, k)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{k} must be > 0, got {v!r}")
        if not (math.isfinite(self.df_dvdd_hz_per_v) and self.df_dvdd_hz_per_v != 0):
            raise ValueError(f"df_dvdd_hz_per_v must be finite and nonzero, got {self.df_dvdd_hz_per_v!r}")


def hardware_map(surrogate: str | Path) -> HardwareMap:
    """Read the conversion constants from an oscillator surrogate file (written by ``calibrate_oscillator``;
    checked against the oscillator surrogate schema)."""
    from spicenet.surrogate_schema import load_surrogate

    sf = load_surrogate(surrogate, "oscillator")
    a, x = sf.attrs, sf.extra
    missing = [k for k in ("ring", "r_lsb_ohm", "shil_f_inj_hz", "df_dvdd_hz_per_v") if k not in a]
    missing += [k for k in ("shil_strength", "shil_phase_rad") if k not in x]
    if missing:
        raise ValueError(f"surrogate {surrogate} lacks {missing} (needed to export a network)")
    ring = a["ring"]
    ring = RingSpec(**(json.loads(ring) if isinstance(ring, str) else dict(ring)))
    return HardwareMap(ring, float(a["r_lsb_ohm"]), float(a["shil_f_inj_hz"]), float(np.asarray(x["shil_strength"])),
                       float(np.asarray(x["shil_phase_rad"])), float(a["df_dvdd_hz_per_v"]),
                       float(a.get("step_s", 10e-12)))


def network_spec(state: dict[str, Any], phi0: np.ndarray, hw: HardwareMap,
                 ic_table: tuple[np.ndarray, np.ndarray] | None = None) -> NetworkSpec:
    """``NetworkSpec`` of an ``AISGenerator.export_state()`` with initial phases ``phi0`` [N] (rad);
    ``ic_table`` (``ic_offset_table``) pre-corrects the ``.ic`` phases for the start-up error."""
    codes = np.asarray(state["codes"])
    s, n, _ = codes.shape
    phi0 = np.asarray(phi0, dtype=float).reshape(-1)
    if phi0.shape != (n,):
        raise ValueError(f"phi0 must have shape [{n}], got {phi0.shape}")
    g_unit = float(state["params"]["g_unit_s"])
    if abs(g_unit * hw.r_lsb_ohm - 1.0) > 1e-6:
        raise ValueError(f"g_unit_s {g_unit} does not match the bank LSB 1/r_lsb = {1 / hw.r_lsb_ohm}")
    dur = np.asarray(state["durations_s"], dtype=float)
    times = np.concatenate([[0.0], np.cumsum(dur)[:-1]])
    shil_a = np.asarray(state["shil_rad_s"], dtype=float) / hw.shil_strength
    dvdd = np.asarray(state["bias_rad_s"], dtype=float) / (2 * math.pi * hw.df_dvdd_hz_per_v)
    if ic_table is not None:
        phi0 = corrected_ic_phases(phi0, ic_table, hw.ring.n_stages)
    return NetworkSpec(codes=codes, times=times, phases=phi0, shil_a=shil_a, dvdd=dvdd, ring=hw.ring,
                       r_lsb=hw.r_lsb_ohm, n_bits=int(state["params"]["n_bits"]), f_inj=hw.f_inj_hz,
                       shil_psi=-2.0 * hw.shil_phase_rad, mask=np.asarray(state["mask"], bool))


def analysis_for(t_end_s: float, hw: HardwareMap) -> tuple[str, float]:
    """(``tran`` line with ``uic``, stop time): the horizon plus two periods, so the last crossing lies beyond it."""
    t_stop = float(t_end_s) + 2.0 / hw.f_inj_hz
    return f"tran {hw.step_s:.6g} {t_stop:.6g} 0 {hw.step_s:.6g} uic", t_stop


def spice_phase(t: np.ndarray, v: np.ndarray, t_grid: np.ndarray, f_ref_hz: float, phi0: float,
                level: float) -> np.ndarray:
    """Unwrapped phase [rad] of waveform ``v`` in the frame rotating at ``f_ref_hz``, at times ``t_grid``
    (NaN before the first / after the last rising crossing of ``level``). ``phi0`` fixes the 2 pi ambiguity."""
    tc = om.rising_crossings(t, v, level, 0.0)
    if tc.size < 2:
        raise ValueError("fewer than 2 rising crossings: the ring does not oscillate")
    m0 = round((phi0 + 2 * math.pi * f_ref_hz * tc[0]) / (2 * math.pi))
    carrier = 2 * math.pi * (np.arange(tc.size) + m0)
    tg = np.asarray(t_grid, float)
    th = np.interp(tg, tc, carrier)
    out = th - 2 * math.pi * f_ref_hz * tg
    out[(tg < tc[0]) | (tg > tc[-1])] = np.nan
    return out


def spice_readout_phases(result: Any, n: int, t_grid: np.ndarray, f_ref_hz: float, phi0: np.ndarray) -> np.ndarray:
    """Phases [T, N] (rad, unwrapped, frame rotating at ``f_ref_hz``) of every ring at ``t_grid`` [s] from the
    differential read-out ``v(o<i>p0) - v(o<i>n0)`` (NaN outside the first..last crossing); ``phi0`` [N] (the
    requested initial phases) fixes the 2 pi ambiguity of each ring."""
    t = np.asarray(result["time"], float)
    out = np.empty((len(t_grid), n))
    for i in range(n):
        tc = om.rising_crossings(t, om.osc_signal(result, i), 0.0, 0.0)
        if tc.size < 2:
            raise ValueError(f"ring {i}: fewer than 2 rising crossings (it does not oscillate)")
        m0 = round((float(phi0[i]) + 2 * math.pi * f_ref_hz * tc[0]) / (2 * math.pi))
        th = np.interp(t_grid, tc, 2 * math.pi * (np.arange(tc.size) + m0))
        ph = th - 2 * math.pi * f_ref_hz * np.asarray(t_grid, float)
        ph[(t_grid < tc[0]) | (t_grid > tc[-1])] = np.nan
        out[:, i] = ph
    return out


def ic_offset_table(engine, hw: HardwareMap, n_points: int = 12, t_probe: float = 1.0e-9,
                    process: str = "generic") -> tuple[np.ndarray, np.ndarray]:
    """Start-up phase error of the ``.ic`` waveform: for ``n_points`` requested phases spread over one stage
    period ``[0, 2 pi / (2 n_stages))`` (the start-up error repeats with that period, by the ring's rotational
    symmetry between rails and stages) the measured phase at ``t_probe`` minus the requested one [rad], from one
    nominal rings-only simulation. Returns (requested phases, offsets)."""
    period = 2 * math.pi / (2 * hw.ring.n_stages)
    ph = np.arange(n_points) * period / n_points
    spec = NetworkSpec(codes=np.zeros((1, n_points, n_points), int), times=np.zeros(1), phases=ph, ring=hw.ring,
                       r_lsb=hw.r_lsb_ohm, mask=np.zeros((n_points, n_points), bool))
    from spicenet.cells.oscillator.netlist import deck, network_netlist

    t_stop = t_probe + 3.0 / hw.f_inj_hz
    r = engine.simulate(deck(network_netlist(spec, process=process, title="spicenet ic offsets"), process),
                        f"tran {hw.step_s:.6g} {t_stop:.6g} 0 {hw.step_s:.6g} uic")
    off = np.array([spice_phase(r["time"], r[f"v(o{i}p0)"], np.array([t_probe]), hw.f_inj_hz, float(ph[i]),
                                0.5 * hw.ring.vdd)[0] - ph[i] for i in range(n_points)])
    if not np.all(np.isfinite(off)):
        raise ValueError("ic offset probe: a ring did not oscillate")
    return ph, off


def corrected_ic_phases(phi0: np.ndarray, table: tuple[np.ndarray, np.ndarray], n_stages: int,
                        iterations: int = 3) -> np.ndarray:
    """``.ic`` phases ``p`` such that the ring starts at ``phi0``: solve ``p + offset(p) = phi0`` by fixed-point
    iteration with ``offset`` interpolated periodically from ``ic_offset_table``."""
    period = 2 * math.pi / (2 * n_stages)
    ph, off = table

    def offset(p: np.ndarray) -> np.ndarray:
        return np.interp(np.remainder(p, period), ph, off, period=period)

    phi0 = np.asarray(phi0, float)
    p = phi0.copy()
    for _ in range(iterations):
        p = phi0 - offset(p)
    return p
