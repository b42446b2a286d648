"""Small probe networks simulated in ngspice and in the phase surrogate: where the phase model is proven.

A trained AIS network is full of *frustrated loops* (cycles whose couplings cannot all be satisfied: an odd number
of negative codes around a loop), multi-neighbour loading and strong couplings. A pair calibration proves the
model only for pairs. These probes are the independent check on networks the calibration did not use:

* ``frustrated_triangle``: three rings, all three couplings negative (each wants anti-phase with both others);
* ``ring_loop(n)``: n rings in a loop, one coupling negative (frustrated for every n);
* ``random_patch(h, w)``: an h x w grid, nearest neighbours, random signed codes.

Each probe has constant codes, no SHIL, no bias, and random initial phases. Both sides start from the same
initial phases; the SPICE phases are read from the rising mid-supply crossings of ``o<i>p0`` (``export.spice_phase``)
in the frame rotating at the surrogate's f0, from the differential read-out ``p0 - n0`` that the calibration used
(``export.spice_readout_phases``; a single rail is distorted by the bank currents flowing into it).

Figure of merit (the trajectory metric of the Ark papers, on phase *differences*): with ``d_i(t) = phi_i(t) -
phi_ref(t)`` for every oscillator but the reference (the last one),

    phase_diff_nmse = sum_{t,i} (d_i^spice(t) - d_i^model(t))^2 / sum_{t,i} (d_i^spice(t) - <d_i^spice>_t)^2

i.e. the squared error normalised by the variance over time of the SPICE phase differences. Absolute phases are
not used: the common rotation is not observable in a read-out against a reference, and the initial phases would
dominate the normaliser (``phase_nmse_absolute``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from spicenet.cells.oscillator.export import HardwareMap, corrected_ic_phases, spice_readout_phases
from spicenet.cells.oscillator.netlist import NetworkSpec, deck, network_netlist
from spicenet.cells.oscillator.phase import PhaseModelParams, PhaseOscillatorNetwork

__all__ = ["ProbeNetwork", "frustrated_triangle", "ring_loop", "random_patch", "phase_diff_nmse",
           "spice_trajectory", "model_trajectory", "run_probes"]


@dataclass(frozen=True)
class ProbeNetwork:
    """A probe: ``codes`` [N, N] symmetric signed integer codes (constant in time), ``phases`` [N] initial phases
    [rad], ``periods`` horizon in periods of f0, ``name``."""

    name: str
    codes: np.ndarray
    phases: np.ndarray
    periods: float = 40.0

    def __post_init__(self) -> None:
        c = np.asarray(self.codes)
        n = c.shape[0]
        if c.ndim != 2 or c.shape != (n, n) or not np.array_equal(c, c.T) or np.any(np.diag(c) != 0):
            raise ValueError(f"probe {self.name}: codes must be a symmetric [N, N] matrix with a zero diagonal")
        if np.asarray(self.phases).shape != (n,):
            raise ValueError(f"probe {self.name}: phases must have shape [{n}], got {np.asarray(self.phases).shape}")
        if not self.periods > 0:
            raise ValueError(f"probe {self.name}: periods must be > 0, got {self.periods!r}")

    @property
    def n(self) -> int:
        return int(np.asarray(self.codes).shape[0])


def _sym(n: int, edges: Sequence[tuple[int, int, int]]) -> np.ndarray:
    c = np.zeros((n, n), int)
    for i, j, v in edges:
        c[i, j] = c[j, i] = int(v)
    return c


def _phases(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 2 * math.pi, n)


def frustrated_triangle(code: int = -8, seed: int = 0, periods: float = 40.0) -> ProbeNetwork:
    """Three rings, every pair coupled with the same (negative: frustrated) code."""
    return ProbeNetwork(f"frustrated_triangle_c{code}_s{seed}", _sym(3, [(0, 1, code), (1, 2, code), (0, 2, code)]),
                        _phases(3, seed), periods)


def ring_loop(n: int = 4, code: int = 8, seed: int = 0, periods: float = 40.0) -> ProbeNetwork:
    """``n`` rings in a loop with code ``code`` on every link but the last, which gets ``-code`` (frustrated)."""
    if n < 3:
        raise ValueError(f"a loop needs n >= 3 rings, got {n}")
    edges = [(i, i + 1, code) for i in range(n - 1)] + [(0, n - 1, -code)]
    return ProbeNetwork(f"ring_loop_{n}_c{code}_s{seed}", _sym(n, edges), _phases(n, seed), periods)


def random_patch(height: int = 3, width: int = 3, max_code: int = 15, seed: int = 0,
                 periods: float = 40.0) -> ProbeNetwork:
    """``height x width`` grid with nearest-neighbour banks of random signed codes in [-max_code, max_code]."""
    rng = np.random.default_rng(seed)
    n = height * width
    edges = []
    for r in range(height):
        for c in range(width):
            i = r * width + c
            for j in ([i + 1] if c + 1 < width else []) + ([i + width] if r + 1 < height else []):
                v = 0
                while v == 0:
                    v = int(rng.integers(-max_code, max_code + 1))
                edges.append((i, j, v))
    return ProbeNetwork(f"random_patch_{height}x{width}_s{seed}", _sym(n, edges), rng.uniform(0, 2 * math.pi, n), periods)


def phase_diff_nmse(spice: np.ndarray, model: np.ndarray, ref: int = -1) -> float:
    """NMSE of the phase differences to oscillator ``ref`` (module docstring). ``spice``, ``model``: [T, N] rad."""
    spice, model = np.asarray(spice, float), np.asarray(model, float)
    if spice.shape != model.shape or spice.ndim != 2:
        raise ValueError(f"spice and model must be [T, N] of one shape, got {spice.shape}, {model.shape}")
    others = [i for i in range(spice.shape[1]) if i != ref % spice.shape[1]]
    ds = spice[:, others] - spice[:, [ref]]
    dm = model[:, others] - model[:, [ref]]
    var = ((ds - ds.mean(0)) ** 2).sum()
    return float(((ds - dm) ** 2).sum() / max(var, 1e-30))


def probe_deck(probe: ProbeNetwork, hw: HardwareMap, process: str = "generic",
               ic_table: tuple[np.ndarray, np.ndarray] | None = None, mismatch: str | None = None):
    """The probe as an engine ``Deck`` (the network exporter's circuit: banks, switches, ``.ic`` phases)."""
    phases = np.asarray(probe.phases, float)
    if ic_table is not None:
        phases = corrected_ic_phases(phases, ic_table, hw.ring.n_stages)
    spec = NetworkSpec(codes=np.asarray(probe.codes)[None], times=np.zeros(1), phases=phases, ring=hw.ring,
                       r_lsb=hw.r_lsb_ohm, f_inj=hw.f_inj_hz, mask=np.asarray(probe.codes) != 0)
    return deck(network_netlist(spec, process=process, title=f"spicenet probe {probe.name}"), process, mismatch)


def spice_trajectory(result: Any, probe: ProbeNetwork, hw: HardwareMap, times: np.ndarray) -> np.ndarray:
    """SPICE phases [T, N] (rad, rotating frame of ``hw.f_inj_hz``) of a probe run at ``times`` [s], from the
    differential read-out of every ring (``export.spice_readout_phases``)."""
    return spice_readout_phases(result, probe.n, times, hw.f_inj_hz, np.asarray(probe.phases, float))


def model_trajectory(params: PhaseModelParams, probe: ProbeNetwork, n_steps: int, n_record: int) -> tuple:
    """Surrogate phases [T, N] (noise-free RK4, float64) and their times [T] (s)."""
    if n_steps % n_record:
        raise ValueError(f"n_steps ({n_steps}) must be a multiple of n_record ({n_record})")
    n = probe.n
    net = PhaseOscillatorNetwork(n, params, mask=torch.as_tensor(np.asarray(probe.codes) != 0), dtype=torch.float64)
    t_end = probe.periods / params.f0_hz
    with torch.no_grad():
        out = net(torch.as_tensor(np.asarray(probe.phases, float))[None], t_end, n_steps,
                  torch.as_tensor(np.asarray(probe.codes), dtype=torch.float64), method="rk4",
                  return_trajectory=True, record_every=n_steps // n_record)
    return out.trajectory[0].numpy(), out.times.numpy()


def run_probes(engine: Any, probes: Sequence[ProbeNetwork], params: PhaseModelParams, hw: HardwareMap,
               process: str = "generic", ic_table: tuple[np.ndarray, np.ndarray] | None = None,
               n_steps: int = 800, n_record: int = 80) -> dict[str, dict[str, Any]]:
    """Simulate every probe in ngspice (in parallel on ``engine``) and in the surrogate; per probe the
    ``phase_diff_nmse``, the RMS error of the final phase differences [rad] and both trajectories."""
    from spicenet.cells.oscillator.export import analysis_for
    from spicenet.spice.job import RunSpec
    from spicenet.errors import SpicenetError

    jobs = []
    for p in probes:
        analysis, _ = analysis_for(p.periods / params.f0_hz, hw)
        run = RunSpec(id=p.name, analysis=analysis, save=tuple(f"v(o{i}{r}0)" for i in range(p.n) for r in "pn"))
        jobs.append(engine.job(probe_deck(p, hw, process, ic_table), [run]))
    outcomes = engine.run_all(jobs)
    out: dict[str, dict[str, Any]] = {}
    for p in probes:
        res = outcomes[p.name]
        if isinstance(res, SpicenetError):
            out[p.name] = {"error": str(res)}
            continue
        model, times = model_trajectory(params, p, n_steps, n_record)
        spice = spice_trajectory(res, p, hw, times)
        ok = np.all(np.isfinite(spice), 1)
        s, m = spice[ok], model[ok]
        d_err = (s[-1, :-1] - s[-1, -1]) - (m[-1, :-1] - m[-1, -1])
        out[p.name] = {"phase_diff_nmse": phase_diff_nmse(s, m), "final_diff_rms_rad":
                       float(np.sqrt(np.mean(((d_err + math.pi) % (2 * math.pi) - math.pi) ** 2))),
                       "times": times[ok], "spice": s, "model": m}
    return out
