"""Calibration of the coupled-oscillator family in ngspice -> surrogate file (family "oscillator").

What is measured (all on the pseudo-differential ring of ``netlist.RingSpec``; one transient step for all runs so
that frequencies are comparable):

1. **Free-running ring**: f0 [Hz], amplitude [V], energy per cycle [J] from the supply, and the supply pushing
   ``df/dVdd`` [Hz/V] (the detuning / bias knob), from a few ``alter vdd0`` runs.
2. **Coupled pair** (resistor R from ``p0`` of ring 0 to ``p0`` (positive) or ``n0`` (negative) of ring 1, ring 1
   detuned by its supply): the locked phase difference ``x = phi_1 - phi_0`` vs the free-running detuning
   ``dw = 2 pi (f_1 - f_0)``. The phase model (``phase.py``) gives for the pair
   ``dx/dt = dw + K [H(-x') - H(x')]`` with ``x' = x`` (positive) or ``x + pi`` (negative) and ``K = kappa G``,
   so a locked state satisfies ``dw = 2 kappa G S(x')``, ``S(x) = sum_k a_k sin(k x)`` (odd part of H, ``a_1 = 1``
   by normalisation). ``kappa`` [rad/s/S] and ``a_2..a_Kh`` are fitted with ``scipy.optimize.least_squares`` on
   the phase residual ``x_model(dw) - x_spice``. The common locked frequency
   ``Omega = (w_0 + w_1)/2 + K sum_k c_k cos(k x')`` gives the even part (``c_k``) by linear least squares.
   Per resistance, ``kappa_R`` with the shared shape gives the R -> K table. The lock range
   ``dw_L = 2 K max S`` is then checked in SPICE at 0.9 and 1.1 dw_L (must lock / must slip).
3. **SHIL**: a current ``I sin(2 (2 pi f_inj) t)`` into both rails of one ring with ``f_inj`` = its free-running
   f0; detuning by the supply. Locked: ``dw - delta = L sin(2 (phi - phi_s))`` with ``phi = theta - 2 pi f_inj t``;
   fitted ``L`` [rad/s], ``phi_s`` [rad] and the injection's own frequency shift ``delta`` [rad/s];
   ``shil_strength = L / I`` [rad/s/A].
4. **Phase diffusion**: a TRRANDOM Gaussian current (std ``sigma``, step ``dt``: one-sided PSD
   ``S_I = 2 sigma^2 dt`` [A^2/Hz]) into ``p0``; ``Var[phi(t + tau) - phi(t)] = c + 2 D tau`` fitted over several
   lags (averaged over seeds; ``c`` is the non-accumulating crossing jitter) -> D [rad^2/s] and ``D / S_I``.
5. **Node loading** (``[load]``): in a network a ring carries many banks; the mean-field part of a bank current is a
   resistive load to mid-supply (``netlist.load_lines``). Measured: the free-running frequency pull
   ``df_load(G_p, G_n)`` [Hz] of one ring with loads ``G_p`` on ``p0`` and ``G_n`` on ``n0`` (a 2-D table over
   ``load.g_s``, symmetric by the rail swap, so only ``G_p >= G_n`` is simulated), the swing, and the coupling gain
   ``g_load(G)`` (a pair at ``load.probe_r`` with both rings loaded by an extra ``g`` on ``p0``, locked at two
   detunings ``+-a``: ``K(g) = (dw_+ - dw_-) / (2 S(x_+) - 2 S(x_-))`` with ``dw`` the measured free-running
   detunings of the loaded rings; ``g_load(1/probe_r + g) = K(g) / K(0)``, 1 at no load). The pair even-part fit
   subtracts ``df_load(1/R, 0)`` (each ring of a pair is loaded by its own resistor) so that the network model does
   not count the pull twice.
6. **Monte Carlo** (Pelgrom chips): f0 per chip; coupling gain per chip from a mismatched pair at two detunings
   ``+-a``: ``dw_chip +- s a = K_chip 2 S(x_+-)`` -> ``K_chip = 2 s a / (2 S(x_+) - 2 S(x_-))``, gain
   ``K_chip / K_nominal``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence, cast

import numpy as np
from scipy.optimize import brentq, least_squares

from spicenet.cells.oscillator import measure as om
from spicenet.cells.oscillator.netlist import (RingSpec, deck, limit_cycle_table, pair_netlist, ring_netlist,
                                               ring_node_names)
from spicenet.plotting import subplots
from spicenet.spice import measure as sm
from spicenet.cells.oscillator import streams
from spicenet.seeds import block_seed, ngspice_seed
from spicenet.spice.engine import Engine, montecarlo_runs
from spicenet.spice.recorded import RunRecorder, runs_path
from spicenet.spice.job import RunSpec
from spicenet.config import load_config, setting, subsection
from spicenet.errors import SpicenetError

__all__ = ["OscCalibrationConfig", "parse_config", "odd_part", "stable_edge", "locked_phase", "lock_range",
           "fit_h_sin", "calibrate_oscillator"]


# ----------------------------------------------------------------------------------------------- config
@dataclass
class OscCalibrationConfig:
    """Calibration settings (see calibration/oscillator.toml for the meaning of each key)."""

    ring: RingSpec = subsection(lambda: RingSpec(n_stages=3), "the pseudo-differential ring (netlist.RingSpec)")
    step_s: float = setting(10e-12, "transient step (and max step) of every run", unit="s", section="sim")
    vdd_offsets: tuple[float, ...] = setting((-0.02, -0.01, 0.0, 0.01, 0.02), "supply offsets of the f(Vdd) runs",
                                             unit="V", section="free")
    free_t_end: float = setting(30e-9, "length of each free-ring run", unit="s", section="free", key="t_end")
    settle_s: float = setting(10e-9, "start-up time skipped by single-ring measurements", unit="s", section="sim")
    resistances: tuple[float, ...] = setting((25e3, 50e3, 100e3), "coupling resistors of the locked-pair runs",
                                             unit="Ohm", section="pair")
    r_ref: float = setting(50e3, "resistor of the first lock-range estimate and of the Monte-Carlo pairs", unit="Ohm",
                           section="pair")
    fractions: tuple[float, ...] = setting((-0.6, 0.2, 0.4, 0.6, 0.75, 0.85),
                                           "pair detunings as fractions of the estimated lock range", section="pair")
    negative_resistances: tuple[float, ...] = setting((50e3,), "resistors also measured with the complementary tap "
                                                      "(negative coupling)", unit="Ohm", section="pair")
    pair_t_end: float = setting(60e-9, "length of each pair run", unit="s", section="pair", key="t_end")
    window_s: float = setting(20e-9, "measurement window at the end of each pair run", unit="s", section="pair")
    n_harmonics: int = setting(3, "harmonics of the fitted coupling function H", section="pair")
    check_fractions: tuple[float, ...] = setting((0.9, 1.1), "lock-range check in SPICE: must lock at the first, "
                                                 "slip at the second", section="pair")
    shil_amplitude_a: float = setting(100e-6, "second-harmonic injection current into both rails", unit="A",
                                      section="shil", key="amplitude_a")
    shil_dvdd: tuple[float, ...] = setting((-0.008, -0.006, -0.004, -0.002, 0.002, 0.004, 0.006, 0.008),
                                           "supply detunings of the SHIL lock runs", unit="V", section="shil",
                                           key="dvdd")
    shil_t_end: float = setting(60e-9, "length of each SHIL run", unit="s", section="shil", key="t_end")
    noise_sigma_a: float = setting(20e-6, "TRRANDOM current noise into p0 (std)", unit="A", section="noise",
                                   key="sigma_a")
    noise_dt_s: float = setting(10e-12, "noise sample step", unit="s", section="noise", key="dt_s")
    noise_t_end: float = setting(200e-9, "length of each noise run", unit="s", section="noise", key="t_end")
    noise_seeds: int = setting(2, "noise realisations", section="noise", key="seeds")
    noise_lags_s: tuple[float, ...] = setting((2e-9, 4e-9, 8e-9, 16e-9), "lags of the phase-diffusion fit",
                                              unit="s", section="noise", key="lags_s")
    chips: int = setting(8, "Pelgrom chips (f0 of one ring, coupling gain of a pair at r_ref)", section="montecarlo")
    mc_fraction: float = setting(0.5, "Monte-Carlo pair detunings +- fraction of the nominal lock range",
                                 section="montecarlo", key="fraction")
    r_lsb: float = setting(200e3, "LSB resistor of the binary-weighted coupling bank", unit="Ohm", section="bank")
    n_bits: int = setting(4, "magnitude bits of the coupling bank", unit="bit", section="bank")
    load_g_s: tuple[float, ...] = setting((), "grid (p0 x n0 load) of the frequency pull, from 0 (empty = no load "
                                          "model)", unit="S", section="load", key="g_s")
    load_gain_g_s: tuple[float, ...] = setting((), "extra p0 load of both rings of the gain probe pair, from 0",
                                               unit="S", section="load", key="gain_g_s")
    load_probe_r: float = setting(100e3, "probe pair resistor", unit="Ohm", section="load", key="probe_r")
    load_fraction: float = setting(0.4, "probe detunings +- fraction of its nominal lock range", section="load",
                                   key="fraction")
    load_t_end: float = setting(60e-9, "length of each load run", unit="s", section="load", key="t_end")
    network: "NetworkRefinementConfig | None" = subsection(
        None, "refine the load tables and H on SPICE trajectories of random AIS-shaped networks (sysid.py)")

    def __post_init__(self) -> None:
        for name in ("load_g_s", "load_gain_g_s"):
            grid = getattr(self, name)
            if grid and (len(grid) < 2 or grid[0] != 0 or any(not b > a for a, b in zip(grid, grid[1:]))
                         or grid[-1] > 0.1):
                raise ValueError(f"{name} must be empty or >= 2 increasing conductances from 0 to <= 0.1 S, got {grid!r}")
        if not (self.load_probe_r > 0 and 0 < self.load_fraction < 0.9 and self.load_t_end > self.window_s):
            raise ValueError(f"load: probe_r > 0, fraction in (0, 0.9), t_end > window_s needed, got "
                             f"{self.load_probe_r!r}, {self.load_fraction!r}, {self.load_t_end!r}")
        if not 1e-13 <= self.step_s <= 1e-10:
            raise ValueError(f"step_s must be in [1e-13, 1e-10] s, got {self.step_s!r}")
        if not self.resistances or min(self.resistances) <= 0:
            raise ValueError(f"resistances must be non-empty and > 0 Ohm, got {self.resistances!r}")
        if not 1 <= self.n_harmonics <= 6:
            raise ValueError(f"n_harmonics must be in [1, 6], got {self.n_harmonics!r}")
        if len([f for f in self.fractions if f != 0]) < self.n_harmonics:
            raise ValueError(f"fractions: need >= n_harmonics={self.n_harmonics} nonzero points, got {self.fractions!r}")
        if any(not 0 < abs(f) < 1 for f in self.fractions):
            raise ValueError(f"fractions must lie in (-1, 1) without 0, got {self.fractions!r}")
        if self.window_s >= self.pair_t_end - self.settle_s:
            raise ValueError(f"window_s={self.window_s!r} must be shorter than pair_t_end - settle_s")
        if self.chips < 2:
            raise ValueError(f"chips must be >= 2, got {self.chips!r}")
        if self.noise_seeds < 1 or self.noise_sigma_a <= 0:
            raise ValueError(f"noise_seeds >= 1 and noise_sigma_a > 0 needed, got {self.noise_seeds}, {self.noise_sigma_a}")
        if not 0 < self.mc_fraction < 0.9:
            raise ValueError(f"mc_fraction must be in (0, 0.9), got {self.mc_fraction!r}")

    @property
    def analysis_step(self) -> str:
        return f"{self.step_s:.6g}"

    def tran(self, t_end: float) -> str:
        s = self.analysis_step
        return f"tran {s} {t_end:.6g} 0 {s} uic"


@dataclass(frozen=True)
class NetworkRefinementConfig:
    """``[network]``: refine the load tables and H on SPICE trajectories of random networks (``sysid``).

    networks: random networks simulated (0 = no refinement); latents: initial-phase draws per network;
    height / width / n_hidden / n_segments / periods: the AIS architecture of the random networks (as trained);
    code_std: std of the random signed codes (before the per-ring budget); node_g_max_s: per-ring conductance
    budget [S]; shil_max / bias_max [rad/s]: SHIL strengths and biases are drawn uniformly in [0, shil_max] and
    [-bias_max, bias_max]; window_s: shooting window [s]; iterations: Adam steps of the fit."""

    networks: int = setting(0, "random networks simulated (0 = no refinement)")
    latents: int = setting(2, "random start phases per network")
    height: int = setting(8, "visible rows of the random networks (as trained)")
    width: int = setting(8, "visible columns of the random networks")
    n_hidden: int = setting(16, "hidden rings of the random networks")
    n_segments: int = setting(4, "schedule segments of the random networks")
    periods: float = setting(40.0, "horizon of each run", unit="periods of f0")
    code_std: float = setting(4.0, "std of the random signed codes before the per-ring budget", unit="LSB")
    node_g_max_s: float = setting(400e-6, "per-ring conductance budget (as trained)", unit="S")
    shil_max: float = setting(3.0e8, "SHIL strengths drawn uniformly in [0, shil_max]", unit="rad/s")
    bias_max: float = setting(1.0e8, "biases drawn uniformly in [-bias_max, bias_max]", unit="rad/s")
    window_s: float = setting(1.5e-9, "multiple-shooting window", unit="s")
    iterations: int = setting(40, "Adam steps of the fit")

    def __post_init__(self) -> None:
        for k in ("networks", "latents", "height", "width", "n_hidden", "n_segments", "iterations"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if k in ("networks", "n_hidden") else 1):
                raise ValueError(f"{k} must be an int >= {0 if k in ('networks', 'n_hidden') else 1}, "
                                 f"got {v!r}")
        for k in ("periods", "code_std", "node_g_max_s", "shil_max", "bias_max", "window_s"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{k} must be a number > 0, got {v!r}")


def parse_config(config: dict[str, Any]) -> OscCalibrationConfig:
    """The validated config of a parsed TOML (sections ``ring``, ``sim``, ``free``, ``pair``, ``shil``, ``noise``,
    ``montecarlo``, ``bank``, ``load``, ``network``; ``spicenet.config.load_config``: an unknown section or key or
    a value of the wrong type is a ConfigError naming ``[section] key``)."""
    return load_config(OscCalibrationConfig, config, "oscillator calibration config")


def _progress(total: int, desc: str):
    from spicenet.progress import progress_bar
    return progress_bar(total, desc)


# ----------------------------------------------------------------------------------------------- H math
def odd_part(x: np.ndarray | float, a: Sequence[float] | np.ndarray) -> np.ndarray:
    """``S(x) = sum_k a_k sin(k x)`` (k = 1..len(a)): the odd part of H; ``H(-x) - H(x) = -2 S(x)``."""
    x = np.asarray(x, float)
    return sum(ak * np.sin((k + 1) * x) for k, ak in enumerate(a))


def stable_edge(a: Sequence[float] | np.ndarray) -> float:
    """``x_max`` in (0, pi]: the first x > 0 where ``S'(x) = sum_k k a_k cos(k x)`` reaches 0 (the stable locked
    branch is ``(-x_max, x_max)`` when ``S'(0) > 0``)."""
    d0 = sum((k + 1) * ak for k, ak in enumerate(a))
    if d0 <= 0:
        raise ValueError(f"S'(0) = {d0:.3g} <= 0: the in-phase state is not stable for harmonics {list(a)}")
    grid = np.linspace(0, math.pi, 2001)
    ds = cast(np.ndarray, sum((k + 1) * ak * np.cos((k + 1) * grid) for k, ak in enumerate(a)))  # a is non-empty
    neg = np.nonzero(ds <= 0)[0]
    if neg.size == 0:
        return math.pi
    i = int(neg[0])
    f = lambda x: sum((k + 1) * ak * math.cos((k + 1) * x) for k, ak in enumerate(a))  # noqa: E731
    return float(brentq(f, grid[i - 1], grid[i]))


def lock_range(k_rad_s: float, a: Sequence[float] | np.ndarray) -> float:
    """Pair lock range ``dw_L = 2 K S(x_max)`` [rad/s]: the largest detuning with a stable locked state."""
    return 2.0 * k_rad_s * float(odd_part(stable_edge(a), a))


def locked_phase(dw: np.ndarray | float, k_rad_s: np.ndarray | float, a: Sequence[float] | np.ndarray,
                 clip: bool = False) -> np.ndarray:
    """Stable solution ``x'`` of ``dw = 2 K S(x')`` on ``(-x_max, x_max)`` [rad]; NaN where unlocked
    (``|dw| > dw_L``) unless ``clip`` (then the edge ``+-x_max``)."""
    dw = np.atleast_1d(np.asarray(dw, float))
    kk = np.broadcast_to(np.asarray(k_rad_s, float), dw.shape)
    xm = stable_edge(a)
    smax = float(odd_part(xm, a))
    out = np.empty_like(dw)
    for i, (w, k) in enumerate(zip(dw, kk)):
        s = w / (2.0 * k)
        if abs(s) >= smax:
            out[i] = math.copysign(xm, s) if clip else math.nan
            continue
        out[i] = brentq(lambda x: float(odd_part(x, a)) - abs(s), 0.0, xm) * (1 if s >= 0 else -1)
    return out


def fit_h_sin(dw: np.ndarray, g_s: np.ndarray, x_spice: np.ndarray, n_harmonics: int) -> tuple[float, np.ndarray]:
    """Fit ``kappa`` [rad/s/S] and ``a_1..a_Kh`` (``a_1 = 1``) so that the model's locked phase reproduces
    ``x_spice`` [rad] at detunings ``dw`` [rad/s] and conductances ``g_s`` [S].

    Start: linear least squares of ``dw = 2 kappa G S(x)`` (x as measured); then ``least_squares`` on the phase
    residual ``locked_phase(dw) - x_spice``.
    """
    dw, g_s, x_spice = (np.asarray(v, float) for v in (dw, g_s, x_spice))
    if not (dw.shape == g_s.shape == x_spice.shape) or dw.size < n_harmonics:
        raise ValueError(f"dw, g_s, x_spice must have one shape with >= {n_harmonics} points, got {dw.shape}, "
                         f"{g_s.shape}, {x_spice.shape}")
    design = np.stack([2.0 * g_s * np.sin((k + 1) * x_spice) for k in range(n_harmonics)], 1)
    coef, *_ = np.linalg.lstsq(design, dw, rcond=None)
    kappa0 = float(coef[0]) if coef[0] > 0 else float(np.median(np.abs(dw / (2 * g_s * np.sin(x_spice) + 1e-30))))
    a0 = coef[1:] / kappa0 if coef[0] > 0 else np.zeros(n_harmonics - 1)

    def unpack(p: np.ndarray) -> tuple[float, np.ndarray]:
        return float(math.exp(p[0])), np.concatenate([[1.0], p[1:]])

    def resid(p: np.ndarray) -> np.ndarray:
        kappa, a = unpack(p)
        try:
            xm = locked_phase(dw, kappa * g_s, a, clip=True)
        except ValueError:
            return np.full(dw.size, 10.0)
        return xm - x_spice

    p0 = np.concatenate([[math.log(kappa0)], np.clip(a0, -0.45, 0.45)])
    best = least_squares(resid, p0, method="trf", x_scale=np.concatenate([[1.0], np.full(n_harmonics - 1, 0.1)]))
    return unpack(best.x)


# ----------------------------------------------------------------------------------------------- runs
def _run_jobs(engine: Engine, items: list[tuple[str, Any, RunSpec]], desc: str) -> dict[str, Any]:
    """Run one job per (id, deck, runspec); results {id: SimResult | SpicenetError} with a progress bar."""
    jobs = [engine.job(d, [r], label=i) for i, d, r in items]
    out: dict[str, Any] = {}
    bar = _progress(len(jobs), desc)
    for rid, res in engine.run(jobs):
        out[rid] = res
        bar.update(1)
    bar.close()
    return out


def _free_running(engine: Engine, cfg: OscCalibrationConfig, process: str) -> dict[str, Any]:
    """f(Vdd) of one ring, amplitude and energy per cycle at the nominal supply."""
    d = deck(ring_netlist(cfg.ring, process=process), process)
    runs = [RunSpec(f"v{k}", cfg.tran(cfg.free_t_end), commands=(f"alter vdd0 dc = {cfg.ring.vdd + dv:.9g}",))
            for k, dv in enumerate(cfg.vdd_offsets)]
    out = engine.simulate_many(d, runs)
    f, amp, energy, power = [], [], None, None
    for k, dv in enumerate(cfg.vdd_offsets):
        r = out[f"v{k}"]
        if isinstance(r, SpicenetError):
            raise r
        t, v = r["time"], om.osc_signal(r, 0)
        fk = om.frequency_amplitude(t, v, cfg.settle_s)[0]
        ak = om.frequency_amplitude(t, r["v(o0p0)"], cfg.settle_s)[1]  # single-rail amplitude [V]
        f.append(fk)
        amp.append(ak)
        if dv == 0.0:
            tc = om.rising_crossings(t, v, None, cfg.settle_s)
            e = sm.supply_energy(t, np.full_like(t, cfg.ring.vdd), r["i(vdd0)"], tc[0], tc[-1])
            energy = e / (tc.size - 1)
            power = e / (tc[-1] - tc[0])
            wave = (t, r["v(o0p0)"], r["v(o0n0)"])
            ic_table = limit_cycle_table(t, [r[f"v({n})"] for n in ring_node_names(0, cfg.ring)], v, 64, cfg.settle_s)
    if energy is None:
        raise ValueError("free.vdd_offsets must contain 0.0 (the nominal supply)")
    assert power is not None  # set with energy
    vdds = cfg.ring.vdd + np.asarray(cfg.vdd_offsets)
    poly = np.polyfit(vdds - cfg.ring.vdd, f, min(2, len(vdds) - 1))
    i0 = list(cfg.vdd_offsets).index(0.0)
    return {"vdd": vdds, "f": np.asarray(f), "amp": np.asarray(amp), "poly": poly, "f0": float(f[i0]),
            "amplitude": float(amp[i0]), "energy": float(energy), "power": float(power),
            "df_dv": float(np.polyval(np.polyder(poly), 0.0)), "wave": wave,
            "ic_table": ic_table}


def _freq_at(free: dict[str, Any], dv: float | np.ndarray) -> np.ndarray:
    return np.polyval(free["poly"], np.asarray(dv, float))


def _dv_for(free: dict[str, Any], df_hz: float) -> float:
    """Supply offset [V] that moves the free-running frequency by ``df_hz`` (inverse of the f(V) fit)."""
    f0 = float(np.polyval(free["poly"], 0.0))
    return float(brentq(lambda v: float(np.polyval(free["poly"], v)) - f0 - df_hz, -0.3, 0.3))


def _pair_t_end(cfg: OscCalibrationConfig, r_ohm: float) -> float:
    """Transient length of a pair run: ``pair_t_end`` at ``r_ref`` and below, longer in proportion to R above it
    (the locking time constant grows as 1 / K ~ R)."""
    return cfg.pair_t_end * max(1.0, r_ohm / cfg.r_ref)


def _pair_item(cfg: OscCalibrationConfig, process: str, rid: str, r_ohm: float, sign: int, dv: float,
               x0: float, commands: tuple[str, ...] = (), mismatch: str | None = None):
    phases = (0.0, float(x0) + (math.pi if sign < 0 else 0.0))
    d = deck(pair_netlist(cfg.ring, r_ohm, sign, process=process, dvdd=dv, phases=phases), process, mismatch)
    return rid, d, RunSpec(rid, cfg.tran(_pair_t_end(cfg, r_ohm)), commands=commands)


def _pair_lock(res: Any, cfg: OscCalibrationConfig, sign: int) -> dict[str, Any] | None:
    if isinstance(res, SpicenetError):
        return None
    t = res["time"]
    lk = om.locked_difference(t, om.osc_signal(res, 0), om.osc_signal(res, 1), float(t[-1]) - cfg.window_s)
    x = float(om.wrap(lk.dphi + (math.pi if sign < 0 else 0.0)))
    return {"x": x, "locked": lk.locked, "omega": math.pi * (lk.f_a + lk.f_b), "drift": lk.drift,
            "spread": lk.spread}


def _estimate_lock(engine: Engine, cfg: OscCalibrationConfig, process: str, free: dict[str, Any]) -> float:
    """Rough pair lock range [rad/s] at ``r_ref`` (sine H): dw_L ~ dw / sin(x) from the largest small-x point."""
    dfs = [0.002 * free["f0"], 0.004 * free["f0"], 0.008 * free["f0"]]
    items = [_pair_item(cfg, process, f"e{k}", cfg.r_ref, 1, _dv_for(free, df), 0.3) for k, df in enumerate(dfs)]
    out = _run_jobs(engine, items, "pair estimate")
    best = None
    for k, df in enumerate(dfs):
        lk = _pair_lock(out[f"e{k}"], cfg, 1)
        if lk and lk["locked"] and 0.05 < lk["x"] < 1.2:
            best = 2 * math.pi * df / math.sin(lk["x"])
    if best is None:
        lk = _pair_lock(out["e0"], cfg, 1)
        raise ValueError(f"pair at r_ref={cfg.r_ref:g} Ohm did not lock at a detuning of {dfs[0]:.3g} Hz "
                         f"(x={lk and lk['x']}); lower r_ref")
    return best


def _pair_sweep(engine: Engine, cfg: OscCalibrationConfig, process: str, free: dict[str, Any],
                dwl_ref: float) -> list[dict[str, Any]]:
    items, meta = [], {}
    cases = [(r, 1) for r in cfg.resistances] + [(r, -1) for r in cfg.negative_resistances]
    for r_ohm, sign in cases:
        dwl = dwl_ref * cfg.r_ref / r_ohm
        for u in cfg.fractions:
            rid = f"p{sign:+d}_{r_ohm:.0f}_{u:+.3f}"
            dv = _dv_for(free, u * dwl / (2 * math.pi))
            items.append(_pair_item(cfg, process, rid, r_ohm, sign, dv, math.asin(u)))
            meta[rid] = (r_ohm, sign, u, dv)
    out = _run_jobs(engine, items, "pair sweep")
    rows = []
    for rid, (r_ohm, sign, u, dv) in meta.items():
        lk = _pair_lock(out[rid], cfg, sign)
        if lk is None:
            continue
        w0, w1 = 2 * math.pi * _freq_at(free, 0.0), 2 * math.pi * _freq_at(free, dv)
        rows.append({"r": r_ohm, "sign": sign, "u": u, "dv": dv, "dw": float(w1 - w0), "wbar": float(0.5 * (w0 + w1)),
                     **lk})
    return rows


def _fit_pairs(rows: list[dict[str, Any]], cfg: OscCalibrationConfig,
               load: dict[str, Any] | None = None) -> dict[str, Any]:
    ok = [r for r in rows if r["locked"]]
    if len(ok) < cfg.n_harmonics + 1:
        raise ValueError(f"only {len(ok)} locked pair points; need >= {cfg.n_harmonics + 1}")
    dw = np.array([r["dw"] for r in ok])
    g = np.array([1.0 / r["r"] for r in ok])
    x = np.array([r["x"] for r in ok])
    kappa, a = fit_h_sin(dw, g, x, cfg.n_harmonics)
    # per-resistance kappa with the shared shape: 1-D least squares on the phase residual
    table = {}
    for r_ohm in sorted({r["r"] for r in ok}):
        sel = np.array([r["r"] == r_ohm for r in ok])
        res = least_squares(lambda p: locked_phase(dw[sel], math.exp(p[0]) / r_ohm, a, clip=True) - x[sel],
                            [math.log(kappa)])
        table[r_ohm] = math.exp(res.x[0]) / r_ohm
    # even part of H from the common locked frequency: Omega - wbar = K sum c_k cos(k x)
    k_pt = np.array([table[r["r"]] for r in ok])
    design = np.stack([k_pt * np.cos((k + 1) * x) for k in range(cfg.n_harmonics)], 1)
    # both rings of a pair carry the mean-field load of their resistor: the network model adds that pull itself
    pull = 2 * math.pi * _df_load(load, np.array([1.0 / r["r"] for r in ok]), np.zeros(len(ok)))
    target = np.array([r["omega"] - r["wbar"] for r in ok]) - pull
    c, *_ = np.linalg.lstsq(design, target, rcond=None)
    xm = locked_phase(dw, kappa * g, a)
    err = np.abs(xm - x)
    rel = err / np.maximum(np.abs(x), 1e-12)
    xt = locked_phase(dw, k_pt, a)
    rel_table = np.abs(xt - x) / np.maximum(np.abs(x), 1e-12)
    # K(G) is slightly sublinear (the coupling current loads the ring): power law K = A G^p over the table
    rs = np.array(sorted(table))
    if rs.size >= 2:
        p_exp, log_a = np.polyfit(np.log(1 / rs), np.log([table[r] for r in rs]), 1)
    else:
        p_exp, log_a = 1.0, math.log(table[rs[0]] * rs[0])

    def k_code(r_lsb: float, n_bits: int) -> np.ndarray:
        g = np.arange(2**n_bits) / r_lsb
        return np.where(g > 0, math.exp(log_a) * np.maximum(g, 1e-30) ** p_exp, 0.0)
    return {"kappa": float(kappa), "a": a, "c": c, "table": table, "x_model": xm, "abs_err": err, "rel_err": rel,
            "rel_err_table": rel_table, "abs_err_table": np.abs(xt - x), "x_table": xt,
            "k_power": (float(math.exp(log_a)), float(p_exp)), "k_code": k_code,
            "points": ok, "c_rms_resid": float(np.sqrt(np.mean((design @ c - target) ** 2)))}


def _lock_checks(engine: Engine, cfg: OscCalibrationConfig, process: str, free: dict[str, Any],
                 fit: dict[str, Any]) -> list[dict[str, Any]]:
    items, meta = [], {}
    for r_ohm, k in fit["table"].items():
        dwl = lock_range(k, fit["a"])
        for frac in cfg.check_fractions:
            rid = f"L_{r_ohm:.0f}_{frac:.3f}"
            x0 = float(locked_phase(min(frac, 0.98) * dwl, k, fit["a"])[0])
            items.append(_pair_item(cfg, process, rid, r_ohm, 1, _dv_for(free, frac * dwl / (2 * math.pi)), x0))
            meta[rid] = (r_ohm, frac, dwl)
    out = _run_jobs(engine, items, "lock range")
    checks = []
    for rid, (r_ohm, frac, dwl) in meta.items():
        lk = _pair_lock(out[rid], cfg, 1)
        if lk is None:
            continue
        checks.append({"r": r_ohm, "fraction": frac, "lock_range_hz": dwl / (2 * math.pi), "locked": lk["locked"],
                       "expected_locked": frac < 1.0, "x": lk["x"], "drift": lk["drift"]})
    return checks


def _shil(engine: Engine, cfg: OscCalibrationConfig, process: str, free: dict[str, Any]) -> dict[str, Any]:
    """SHIL lock of one ring at ``f_inj`` = its f0, amplitude ``shil_amplitude_a``, supply offsets ``shil_dvdd``.

    Locked: ``0 = dw - delta - L sin(2 (phi - phi_s))`` with ``phi = theta - 2 pi f_inj t`` (mod pi), ``delta`` the
    frequency shift the injection itself causes (its even part). Fitted (L, phi_s, delta) by least squares.
    """
    f_inj = free["f0"]
    d = deck(ring_netlist(cfg.ring, process=process, shil_a=cfg.shil_amplitude_a, f_inj=f_inj), process)
    runs, dws = [], []
    for k, dv in enumerate(cfg.shil_dvdd):
        runs.append(RunSpec(f"s{k}", cfg.tran(cfg.shil_t_end), commands=(f"alter vdd0 dc = {cfg.ring.vdd + dv:.9g}",)))
        dws.append(2 * math.pi * (float(_freq_at(free, dv)) - f_inj))
    out = engine.simulate_many(d, runs)
    rows = []
    for k, dw in enumerate(dws):
        r = out[f"s{k}"]
        if isinstance(r, SpicenetError):
            continue
        tc = om.rising_crossings(r["time"], om.osc_signal(r, 0), None, cfg.shil_t_end - cfg.window_s)
        phi = -2 * math.pi * f_inj * tc  # phase of the oscillator relative to the reference 2 pi f_inj t
        z = np.exp(2j * phi)  # the two SHIL states (phi, phi + pi) coincide
        zm = complex(z.mean())
        u = np.unwrap(2 * phi) / 2
        drift = float(u[-1] - u[0])
        rows.append({"dw": dw, "phi": float(np.angle(zm) / 2), "locked": abs(drift) < 0.1 and abs(zm) > 0.99,
                     "drift": drift})
    ok = [r for r in rows if r["locked"]]
    if len(ok) < 4:
        raise ValueError(f"SHIL: only {len(ok)} locked points at amplitude {cfg.shil_amplitude_a:g} A (need 4); "
                         f"raise shil.amplitude_a or narrow shil.dvdd")
    dw = np.array([r["dw"] for r in ok])
    phi = np.array([r["phi"] for r in ok])
    unlocked = [abs(r["dw"]) for r in rows if not r["locked"]]
    scale = float(np.max(np.abs(dw)))

    def resid(p: np.ndarray) -> np.ndarray:
        lam, ps, delta = math.exp(p[0]), p[1], p[2] * scale
        pred = ps + 0.5 * np.arcsin(np.clip((dw - delta) / lam, -0.999, 0.999))
        return np.concatenate([np.cos(2 * pred) - np.cos(2 * phi), np.sin(2 * pred) - np.sin(2 * phi)])

    ps0 = float(np.angle(np.exp(2j * phi[np.argmin(np.abs(dw))])) / 2)
    best = min((least_squares(resid, [math.log(scale * s), ps0, 0.0]) for s in (1.1, 1.5, 2.5)), key=lambda b: b.cost)
    lam, delta = math.exp(best.x[0]), float(best.x[2] * scale)
    ps = float(om.wrap(2 * best.x[1]) / 2)
    return {"L": lam, "phi_s": ps, "delta": delta, "rows": rows, "f_inj": f_inj, "per_amp": lam / cfg.shil_amplitude_a,
            "rms_resid": float(np.sqrt(2 * best.cost / dw.size)),
            "unlocked_min_dw": min(unlocked) if unlocked else math.nan}


def _noise(engine: Engine, cfg: OscCalibrationConfig, process: str, seed: int) -> dict[str, Any]:
    d = deck(ring_netlist(cfg.ring, process=process, noise_a=cfg.noise_sigma_a, noise_dt=cfg.noise_dt_s), process)
    runs = [RunSpec(f"n{k}", cfg.tran(cfg.noise_t_end), seed=ngspice_seed(seed, streams.PHASE_NOISE, k))
            for k in range(cfg.noise_seeds)]
    items = [(r.id, d, r) for r in runs]
    out = _run_jobs(engine, items, "phase noise")
    lags = np.asarray(cfg.noise_lags_s)
    var = []
    for r in out.values():
        if isinstance(r, SpicenetError):
            continue
        var.append(om.phase_increment_variance(r["time"], om.osc_signal(r, 0), lags, cfg.settle_s))
    if not var:
        raise ValueError("phase noise: every noise run failed")
    v = np.mean(var, 0)
    # Var = c + 2 D tau: c is the white (non-accumulating) part, the crossing jitter of the voltage noise itself
    slope, icpt = np.polyfit(lags, v, 1)
    d_fit = float(slope / 2.0)
    psd = 2.0 * cfg.noise_sigma_a**2 * cfg.noise_dt_s
    return {"D": d_fit, "c": float(icpt), "lags": lags, "var": v, "var_runs": np.asarray(var), "psd": psd, "D_per_psd": d_fit / psd}


def _r_of_g(g: float) -> str:
    return f"{(1.0 / g if g > 0 else 1e12):.9g}"


def _load_freq(engine: Engine, cfg: OscCalibrationConfig, process: str) -> dict[str, Any] | None:
    """Free-running frequency [Hz] and differential swing [V] of one ring with mid-supply loads ``G_p`` on ``p0`` and
    ``G_n`` on ``n0`` over ``load_g_s`` x ``load_g_s`` (``G_p >= G_n`` simulated, the rest by the rail-swap symmetry);
    ``df`` = f - f(0, 0)."""
    if not cfg.load_g_s:
        return None
    grid = np.asarray(cfg.load_g_s, float)
    n = grid.size
    d = deck(ring_netlist(cfg.ring, process=process, load=True), process)
    runs = [RunSpec(f"l{a}_{b}", cfg.tran(cfg.free_t_end),
                    commands=(f"alter rlp0 = {_r_of_g(grid[a])}", f"alter rln0 = {_r_of_g(grid[b])}"))
            for a in range(n) for b in range(a + 1)]
    out = _run_jobs(engine, [(r.id, d, r) for r in runs], "load pull")
    f, amp = np.full((n, n), np.nan), np.full((n, n), np.nan)
    for a in range(n):
        for b in range(a + 1):
            r = out[f"l{a}_{b}"]
            if isinstance(r, SpicenetError):
                raise r
            fa, aa = om.frequency_amplitude(r["time"], om.osc_signal(r, 0), cfg.settle_s)
            f[a, b] = f[b, a] = fa
            amp[a, b] = amp[b, a] = aa
    return {"g": grid, "f": f, "df": f - f[0, 0], "amp": amp}


def _df_load(lf: dict[str, Any] | None, g_p: float | np.ndarray, g_n: float | np.ndarray) -> np.ndarray:
    """Bilinear frequency pull [Hz] of the load table at (G_p, G_n) [S] (clamped to the grid; 0 without a table)."""
    if lf is None:
        return np.zeros_like(np.asarray(g_p, float))
    from scipy.interpolate import RegularGridInterpolator

    g = lf["g"]
    it = RegularGridInterpolator((g, g), lf["df"])
    pts = np.stack(np.broadcast_arrays(np.clip(g_p, 0, g[-1]), np.clip(g_n, 0, g[-1])), -1)
    return it(pts)


def _load_gain(engine: Engine, cfg: OscCalibrationConfig, process: str, free: dict[str, Any],
               fit: dict[str, Any]) -> dict[str, Any] | None:
    """Coupling gain vs node load: a pair at ``load_probe_r`` with an extra mid-supply load ``g`` on ``p0`` of both
    rings; per g the free-running detunings ``dw_+-`` (probe opened) and locked phases ``x_+-`` at supply offsets
    aiming at ``+-load_fraction`` of the nominal lock range -> ``K(g)``. Returns the table ``G = 1/probe_r + g``
    (plus G = 0) -> ``K(g) / K(0)`` (1 at G = 0)."""
    if not cfg.load_gain_g_s:
        return None
    r_p = cfg.load_probe_r
    k0 = fit["table"].get(r_p, fit["kappa"] / r_p)
    a_w = cfg.load_fraction * lock_range(k0, fit["a"])
    grid = np.asarray(cfg.load_gain_g_s, float)
    items = []
    free_deck = deck(pair_netlist(cfg.ring, r_p, 1, process=process, phases=(0.0, 1.0), load=True), process)
    for sgn in (+1, -1):
        dv = _dv_for(free, sgn * a_w / (2 * math.pi))
        x0 = float(locked_phase(sgn * a_w, k0, fit["a"])[0])
        lock_deck = deck(pair_netlist(cfg.ring, r_p, 1, process=process, dvdd=dv, phases=(0.0, x0), load=True), process)
        for k, g in enumerate(grid):
            loads = (f"alter rlp0 = {_r_of_g(g)}", f"alter rlp1 = {_r_of_g(g)}")
            rid = f"gf{sgn:+d}_{k}"
            items.append((rid, free_deck, RunSpec(rid, cfg.tran(cfg.free_t_end), commands=loads + (
                "alter rc = 1e12", f"alter vdd1 dc = {cfg.ring.vdd + dv:.9g}"))))
            rid = f"gl{sgn:+d}_{k}"
            items.append((rid, lock_deck, RunSpec(rid, cfg.tran(cfg.load_t_end), commands=loads)))
    out = _run_jobs(engine, items, "load gain")
    k_of_g, rows = {}, []
    for k, g in enumerate(grid):
        dw, sx = {}, {}
        for sgn in (+1, -1):
            rf = out[f"gf{sgn:+d}_{k}"]
            lk = _pair_lock(out[f"gl{sgn:+d}_{k}"], cfg, 1)
            if isinstance(rf, SpicenetError) or lk is None or not lk["locked"]:
                break
            fa = om.frequency_amplitude(rf["time"], om.osc_signal(rf, 0), cfg.settle_s)[0]
            fb = om.frequency_amplitude(rf["time"], om.osc_signal(rf, 1), cfg.settle_s)[0]
            dw[sgn], sx[sgn] = 2 * math.pi * (fb - fa), 2 * float(odd_part(lk["x"], fit["a"]))
        if len(dw) < 2 or sx[+1] - sx[-1] <= 0:
            rows.append({"g": float(g), "locked": False})
            continue
        k_of_g[k] = (dw[+1] - dw[-1]) / (sx[+1] - sx[-1])
        rows.append({"g": float(g), "locked": True, "k": k_of_g[k], "dw_plus": dw[+1], "dw_minus": dw[-1]})
    if 0 not in k_of_g:
        raise ValueError(f"load gain: the unloaded probe pair at {r_p:g} Ohm did not lock; lower load.fraction")
    ks = sorted(k_of_g)
    g_tab = np.concatenate([[0.0], 1.0 / r_p + grid[ks]])
    gain = np.concatenate([[1.0], [k_of_g[k] / k_of_g[0] for k in ks]])
    return {"g": g_tab, "gain": gain, "rows": rows, "k0": k_of_g[0], "probe_r": r_p}


def _montecarlo(engine: Engine, cfg: OscCalibrationConfig, process: str, free: dict[str, Any], fit: dict[str, Any],
                seed: int) -> dict[str, Any]:
    """Per Pelgrom chip: f0 of one ring; for a mismatched pair at ``r_ref``: its free-running detuning
    ``dw_chip`` (coupling resistor altered to 1 TOhm), then the locked phase at ``dw_chip + s dv = +-a`` (supply
    offsets chosen per chip) -> ``K_chip = (dw_+ - dw_-) / (2 S(x_+) - 2 S(x_-))`` and gain ``K_chip / K_nom``."""
    chips = list(range(cfg.chips))
    ring_deck = deck(ring_netlist(cfg.ring, process=process), process, mismatch="pelgrom")
    items = [(r.id, ring_deck, r) for r in montecarlo_runs(ring_deck, cfg.tran(cfg.free_t_end), chips, seed,
                                                           id_prefix="f")]
    pair_free = deck(pair_netlist(cfg.ring, cfg.r_ref, 1, process=process, phases=(0.0, 1.0)), process, "pelgrom")
    for ru in montecarlo_runs(pair_free, cfg.tran(cfg.free_t_end), chips, seed, id_prefix="u"):
        items.append((ru.id, pair_free, RunSpec(ru.id, ru.analysis, commands=ru.commands + ("alter rc = 1e12",))))
    out = _run_jobs(engine, items, "monte carlo f0")
    f0, dw_chip = {}, {}
    for c in chips:
        r = out.get(f"fc{c:05d}")
        if r is not None and not isinstance(r, SpicenetError):
            f0[c] = om.frequency_amplitude(r["time"], om.osc_signal(r, 0), cfg.settle_s)[0]
        r = out.get(f"uc{c:05d}")
        if r is not None and not isinstance(r, SpicenetError):
            fa = om.frequency_amplitude(r["time"], om.osc_signal(r, 0), cfg.settle_s)[0]
            fb = om.frequency_amplitude(r["time"], om.osc_signal(r, 1), cfg.settle_s)[0]
            dw_chip[c] = 2 * math.pi * (fb - fa)
    k_nom = fit["table"].get(cfg.r_ref, fit["kappa"] / cfg.r_ref)
    a_w = cfg.mc_fraction * lock_range(k_nom, fit["a"])
    items, targets = [], {}
    for c, dwc in dw_chip.items():
        runs = montecarlo_runs(pair_free, cfg.tran(cfg.pair_t_end), [c], seed)
        for sgn in (+1, -1):
            dv = _dv_for(free, (sgn * a_w - dwc) / (2 * math.pi))
            dw_eff = dwc + 2 * math.pi * float(_freq_at(free, dv) - _freq_at(free, 0.0))
            x0 = float(locked_phase(sgn * a_w, k_nom, fit["a"])[0])
            d = deck(pair_netlist(cfg.ring, cfg.r_ref, 1, process=process, dvdd=dv, phases=(0.0, x0)), process,
                     "pelgrom")
            rid = f"k{sgn:+d}c{c:05d}"
            items.append((rid, d, RunSpec(rid, runs[0].analysis, commands=runs[0].commands)))
            targets[rid] = dw_eff
    out = _run_jobs(engine, items, "monte carlo gain")
    gains = {}
    for c in dw_chip:
        lp, lm = (_pair_lock(out.get(f"k{s:+d}c{c:05d}"), cfg, 1) for s in (+1, -1))
        if not (lp and lm and lp["locked"] and lm["locked"]):
            continue
        sp, sm_ = 2 * float(odd_part(lp["x"], fit["a"])), 2 * float(odd_part(lm["x"], fit["a"]))
        if sp - sm_ <= 0:
            continue
        k_chip = (targets[f"k+1c{c:05d}"] - targets[f"k-1c{c:05d}"]) / (sp - sm_)
        gains[c] = k_chip / k_nom
    return {"f0": f0, "gain": gains, "dw_chip": dw_chip, "k_nom": k_nom}


# ----------------------------------------------------------------------------------------------- main
@dataclass
class _Measurements:
    """Every measurement of a calibration (module docstring, steps 1-6) and the pair fit: the free-running ring
    ``free``, the load pull ``lfreq`` and load gain ``lgain`` (None without ``[load]``), the pair rows and their
    fit ``pfit``, the lock-range ``checks``, ``shil``, phase ``noise`` and Monte Carlo ``mc``."""

    free: dict[str, Any]
    lfreq: dict[str, Any] | None
    rows: list[dict[str, Any]]
    pfit: dict[str, Any]
    checks: list[dict[str, Any]]
    lgain: dict[str, Any] | None
    shil: dict[str, Any]
    noise: dict[str, Any]
    mc: dict[str, Any]


def _measure(engine: Engine, cfg: OscCalibrationConfig, process: str, seed: int) -> _Measurements:
    """Run the measurements in order on ``engine`` (each stage needs the fits of the ones before it)."""
    free = _free_running(engine, cfg, process)
    lfreq = _load_freq(engine, cfg, process)
    dwl_ref = _estimate_lock(engine, cfg, process, free)
    rows = _pair_sweep(engine, cfg, process, free, dwl_ref)
    pfit = _fit_pairs(rows, cfg, lfreq)
    checks = _lock_checks(engine, cfg, process, free, pfit)
    lgain = _load_gain(engine, cfg, process, free, pfit)
    shil = _shil(engine, cfg, process, free)
    noise = _noise(engine, cfg, process, seed)
    mc = _montecarlo(engine, cfg, process, free, pfit, seed)
    return _Measurements(free, lfreq, rows, pfit, checks, lgain, shil, noise, mc)


def _fit_summary(cfg: OscCalibrationConfig, m: _Measurements, wall: float) -> dict[str, Any]:
    """The fit's scalar results (``calibrate_oscillator``'s docstring): ring, coupling (H, K per R and per code,
    lock ranges [Hz], errors), SHIL, phase diffusion, Monte-Carlo spreads, and the measurements' wall time
    ``wall`` [s]."""
    free, pfit, shil, noise, mc = m.free, m.pfit, m.shil, m.noise, m.mc
    f0_vals = np.array(list(mc["f0"].values()))
    gain_vals = np.array(list(mc["gain"].values()))
    lock_ranges = {f"{r:.0f}": lock_range(k, pfit["a"]) / (2 * math.pi) for r, k in pfit["table"].items()}
    return {
        "f0_hz": free["f0"],
        "amplitude_v": free["amplitude"],
        "df_dvdd_hz_per_v": free["df_dv"],
        "energy_per_cycle_j": free["energy"],
        "power_w": free["power"],
        "k_per_siemens": pfit["kappa"],
        "r_to_k": {f"{r:.0f}": k for r, k in pfit["table"].items()},
        "h_harmonics": {"sin": [float(v) for v in pfit["a"]], "cos": [float(v) for v in pfit["c"]]},
        "lock_range_hz": lock_ranges,
        "k_power_law": {"a": pfit["k_power"][0], "p": pfit["k_power"][1]},
        "k_per_code_rad_s": [float(v) for v in pfit["k_code"](cfg.r_lsb, cfg.n_bits)],
        "max_rel_err": float(pfit["rel_err_table"].max()),
        "max_abs_err_rad": float(pfit["abs_err_table"].max()),
        "max_rel_err_linear_k": float(pfit["rel_err"].max()),
        "mc_pair_dw_std_hz": float(np.std(list(mc["dw_chip"].values()), ddof=1) / (2 * math.pi)) if len(mc["dw_chip"]) > 1 else 0.0,
        "pair_points": len(pfit["points"]),
        "lock_checks_passed": int(sum(c["locked"] == c["expected_locked"] for c in m.checks)),
        "lock_checks": len(m.checks),
        "shil_strength": shil["per_amp"],
        "shil_l_rad_s": shil["L"],
        "shil_amplitude_a": cfg.shil_amplitude_a,
        "shil_phase_rad": shil["phi_s"],
        "shil_freq_shift_rad_s": shil["delta"],
        "shil_fit_rms": shil["rms_resid"],
        "phase_diffusion": noise["D"],
        "phase_diffusion_per_psd": noise["D_per_psd"],
        "noise_psd_a2_hz": noise["psd"],
        "f0_std_rel": float(f0_vals.std(ddof=1) / f0_vals.mean()) if f0_vals.size > 1 else 0.0,
        "k_gain_std_rel": float(gain_vals.std(ddof=1)) if gain_vals.size > 1 else 0.0,
        "chips": int(f0_vals.size),
        "gain_chips": int(gain_vals.size),
        "wall_s": wall,
    }


def _load_summary(lfreq: dict[str, Any] | None, lgain: dict[str, Any] | None) -> dict[str, Any] | None:
    """The fit's ``load``: the pull table's loads [S], pulls [Hz] (p rail, split) and swing [V]; the gain table's
    loads [S] and gains (None without either)."""
    load: dict[str, Any] | None = None
    if lfreq is not None:
        load = {"g_s": [float(v) for v in lfreq["g"]],
                "df_hz_p_rail": [float(v) for v in lfreq["df"][:, 0]],
                "df_hz_split": [float(v) for v in _df_load(lfreq, lfreq["g"] / 2, lfreq["g"] / 2)],
                "swing_v_p_rail": [float(v) for v in lfreq["amp"][:, 0]]}
    if lgain is not None:
        load = (load or {}) | {"gain_g_s": [float(v) for v in lgain["g"]],
                               "k_gain": [float(v) for v in lgain["gain"]],
                               "gain_points_unlocked": sum(not r["locked"] for r in lgain["rows"])}
    return load


def _phase_model_params(cfg: OscCalibrationConfig, fit: dict[str, Any], lfreq: dict[str, Any] | None,
                        lgain: dict[str, Any] | None) -> dict[str, Any]:
    """The ``PhaseModelParams`` mapping of the fit (f0 [Hz], H, unit conductance [S], kappa [rad/s/S], bits, phase
    diffusion [rad^2/s], K per code [rad/s], and the load tables)."""
    pm = {"f0_hz": fit["f0_hz"], "h_harmonics": fit["h_harmonics"],
          "g_unit_s": 1.0 / cfg.r_lsb, "k_per_siemens": fit["k_per_siemens"], "n_bits": cfg.n_bits,
          "phase_diffusion": fit["phase_diffusion"],
          "k_code_table": [float(v) for v in fit["k_per_code_rad_s"]]}
    if lfreq is not None:
        pm.update({"load_g_s": [float(v) for v in lfreq["g"]],
                   "load_df_hz": [[float(v) for v in row] for row in lfreq["df"]]})
    if lgain is not None:
        pm.update({"load_gain_g_s": [float(v) for v in lgain["g"]],
                   "load_k_gain": [float(v) for v in lgain["gain"]]})
    return pm


def calibrate_oscillator(config: dict[str, Any], *, process: str = "generic", quick: bool = False,
                         output: Path | str = "oscillator.h5", workers: int = 2, seed: int = 0,
                         resume: bool | None = None) -> dict[str, Any]:
    """Run every measurement, fit, write the surrogate file ``output`` and PNG plots beside it; every ngspice run
    is recorded in the run store beside it (``oscillator.h5`` -> ``oscillator.runs.h5``,
    :mod:`spicenet.spice.recorded`), which ``resume`` continues (None: ``spicenet calibrate --resume``'s setting).

    Returns ``{"output", "fit", "plots"}``; ``fit`` holds ``f0_hz``, ``amplitude_v``, ``k_per_siemens``,
    ``r_to_k`` (Ohm -> rad/s), ``h_harmonics`` ({"sin", "cos"}), ``lock_range_hz``, ``shil_strength``,
    ``phase_diffusion``, ``energy_per_cycle_j``, ``f0_std_rel``, ``k_gain_std_rel``, ``max_rel_err`` (max over
    locked pair points of ``|x_model - x_spice| / |x_spice|`` with the fitted H and the R -> K table),
    ``max_rel_err_linear_k`` (same with ``K = k_per_siemens G``), ``k_per_code_rad_s`` (K of each bank code from
    the power law ``K = A G^p`` fitted to the table), ``max_abs_err_rad``, the lock-range checks and, with a
    ``[load]`` section, ``load`` (``g_s``, pull ``df_hz_p_rail`` / ``df_hz_split`` [Hz], ``swing_v_p_rail``,
    ``gain_g_s`` [S], ``k_gain``); the load tables also go into ``phase_model_params`` (``load_g_s``,
    ``load_df_hz`` [p-rail x n-rail], ``load_gain_g_s``, ``load_k_gain``) and the surrogate's ``extra/load/*``.
    """
    import time

    cfg = parse_config(config)
    output = Path(output)
    t_start = time.perf_counter()
    runs = RunRecorder(runs_path(output), resume=resume, process=process, seed=seed,
                       config={"family": "oscillator", "quick": bool(quick), "config": config})
    with runs.engine(Engine(mode="shared", workers=max(1, int(workers)), timeout_s=600)) as engine:
        m = _measure(engine, cfg, process, seed)
    fit = _fit_summary(cfg, m, time.perf_counter() - t_start)
    load = _load_summary(m.lfreq, m.lgain)
    if load is not None:
        fit["load"] = load
    fit["phase_model_params"] = _phase_model_params(cfg, fit, m.lfreq, m.lgain)
    if cfg.network is not None and cfg.network.networks > 0:
        refined, report = _network_refinement(cfg, process, fit, m.shil, workers, seed, runs)
        fit["network_refinement"] = report
        fit["phase_model_params"] = refined
    _save(output, cfg, process, fit, m.free, m.pfit, m.shil, m.noise, m.mc, config, m.lfreq, m.lgain,
          runs.provenance(output))
    plots = _plots(output, cfg, m.free, m.rows, m.pfit, m.checks, m.shil, m.noise, m.mc, m.lfreq, m.lgain)
    return {"output": str(output), "fit": fit, "plots": [str(p) for p in plots]}


def _network_refinement(cfg: OscCalibrationConfig, process: str, fit: dict[str, Any], shil: dict[str, Any],
                        workers: int, seed: int, runs: RunRecorder | None = None
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Simulate ``cfg.network.networks`` random AIS-shaped networks (random signed codes within the per-ring
    budget, random SHIL and bias schedules, ``latents`` random start phases each) exported like a trained network,
    read their phases (differential read-out) and refine the phase model on them (``sysid.fit_network_model``).
    Returns the refined ``phase_model_params`` mapping and a report (shooting RMS before / after, runs, wall).
    ``runs``: the calibration's :class:`RunRecorder`, whose store records these runs too."""
    import time

    import torch

    from spicenet.cells.oscillator.ais import AISConfig, AISGenerator
    from spicenet.cells.oscillator.export import HardwareMap, analysis_for, network_spec, spice_readout_phases
    from spicenet.cells.oscillator.netlist import deck, network_netlist
    from spicenet.cells.oscillator.phase import PhaseModelParams
    from spicenet.cells.oscillator.schedule import PiecewiseSchedule
    from spicenet.cells.oscillator.sysid import NetworkTrajectory, fit_network_model
    from spicenet.spice.job import RunSpec

    t0 = time.perf_counter()
    nc = cfg.network
    assert nc is not None  # the caller runs the refinement only with a network section
    params = PhaseModelParams.from_dict(fit["phase_model_params"])
    hw = HardwareMap(cfg.ring, cfg.r_lsb, shil["f_inj"], fit["shil_strength"], fit["shil_phase_rad"],
                     fit["df_dvdd_hz_per_v"], cfg.step_s)
    data, meta = [], []
    jobs = []
    engine = Engine(mode="shared", workers=max(1, int(workers)), timeout_s=3600)
    with runs.engine(engine) if runs is not None else engine as engine:  # recorded in the calibration's store
        for k in range(nc.networks):
            acfg = AISConfig(height=nc.height, width=nc.width, n_hidden=nc.n_hidden, n_segments=nc.n_segments,
                             periods=nc.periods, code_init_std=nc.code_std, shil_max=nc.shil_max,
                             bias_max=nc.bias_max, node_g_max_s=nc.node_g_max_s, n_bits=cfg.n_bits,
                             seed=block_seed(seed, k), noise=False)
            gen = AISGenerator(acfg, params, dtype=torch.float64)
            g = torch.Generator().manual_seed(block_seed(seed, k))
            with torch.no_grad():
                gen.codes_raw.copy_(nc.code_std * torch.randn(gen.codes_raw.shape, generator=g, dtype=torch.float64))
                gen.shil_raw.copy_(4 * torch.rand(gen.shil_raw.shape, generator=g, dtype=torch.float64) - 2)
                gen.bias_raw.copy_(2 * torch.rand(gen.bias_raw.shape, generator=g, dtype=torch.float64) - 1)
            state = gen.export_state()
            phi0 = gen.sample_latent(nc.latents, g).numpy()
            analysis, _ = analysis_for(gen.t_end, hw)
            save = tuple(f"v(o{i}{r}0)" for i in range(acfg.n_oscillators) for r in "pn")
            for b in range(nc.latents):
                d = deck(network_netlist(network_spec(state, phi0[b], hw), process=process,
                                         title=f"spicenet refinement network {k} latent {b}"), process)
                jobs.append(engine.job(d, [RunSpec(id=f"net{k}_{b}", analysis=analysis, save=save)]))
            meta.append((gen, phi0))
        out = _run_jobs_plain(engine, jobs, "network refinement: networks in ngspice")
    failed = {}
    for k, (gen, phi0) in enumerate(meta):
        times = np.linspace(0.0, gen.t_end, 201)[1:]
        phases = []
        for b in range(nc.latents):
            res = out.get(f"net{k}_{b}")
            if res is None or isinstance(res, Exception):
                failed[f"net{k}_{b}"] = str(res)[:300]
                continue
            try:
                phases.append(spice_readout_phases(res, gen.config.n_oscillators, times, hw.f_inj_hz, phi0[b]))
            except ValueError as exc:
                failed[f"net{k}_{b}"] = str(exc)
        if phases:
            k_s, l_s, b_s = gen.schedules()
            det = lambda s: PiecewiseSchedule(s.values.detach().double(), s.durations)  # noqa: E731
            data.append(NetworkTrajectory(det(k_s), det(l_s), det(b_s), gen.network.mask.double(), times,
                                          np.stack(phases)))
    if not data:
        raise ValueError(f"network refinement: every SPICE run failed: {failed}")
    refined, rep = fit_network_model(params, data, window_s=nc.window_s, every_s=nc.window_s,
                                    iterations=nc.iterations, progress=True)
    pm = dict(fit["phase_model_params"])
    pm["h_harmonics"] = {"sin": list(refined.h_sin), "cos": list(refined.h_cos)}
    # fit_network_model needs both load tables and returns them refined
    assert refined.load_g_s is not None and refined.load_df_hz is not None and refined.load_k_gain is not None
    k = len(refined.load_g_s)
    pm["load_df_hz"] = [list(refined.load_df_hz[i * k:(i + 1) * k]) for i in range(k)]
    pm["load_k_gain"] = list(refined.load_k_gain)
    report = {**rep.as_dict(), "networks": len(data), "runs": int(sum(d.phases.shape[0] for d in data)),
              "failed": failed, "wall_s": time.perf_counter() - t0,
              "h_harmonics_pairs": fit["h_harmonics"], "load_k_gain_pairs": fit.get("load", {}).get("k_gain")}
    return pm, report


def _run_jobs_plain(engine: Engine, jobs: list, desc: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with _progress(sum(len(j.runs) for j in jobs), desc) as bar:
        for rid, res in engine.run(jobs):
            out[rid] = res
            bar.update(1)
    return out


def _save(output: Path, cfg: OscCalibrationConfig, process: str, fit: dict[str, Any], free, pfit, shil, noise, mc,
          config: dict[str, Any], lfreq: dict[str, Any] | None = None, lgain: dict[str, Any] | None = None,
          runs: dict[str, Any] | None = None) -> None:
    from spicenet.surrogate import SurrogateFile, SurrogateParam

    f0 = np.array(list(mc["f0"].values())) if mc["f0"] else np.array([fit["f0_hz"]])
    gains = np.array(list(mc["gain"].values())) if mc["gain"] else np.array([1.0])
    table = sorted(pfit["table"].items())
    sf = SurrogateFile(
        family="oscillator", process=process,
        params={
            "f0_hz": SurrogateParam(f0, unit="Hz", positive=True,
                                    description="free-running frequency of one ring per Monte-Carlo chip"),
            "k_gain": SurrogateParam(gains, unit="", positive=True,
                                     description="coupling gain K_chip / K_nominal of a pair per chip"),
        },
        energy={"energy_per_cycle_j": fit["energy_per_cycle_j"]},
        extra={
            "h_sin": np.asarray(pfit["a"], float), "h_cos": np.asarray(pfit["c"], float),
            "r_table_ohm": np.array([r for r, _ in table]), "k_table_rad_s": np.array([k for _, k in table]),
            "k_per_siemens": np.array(fit["k_per_siemens"]),
            "shil_strength": np.array(fit["shil_strength"]), "shil_phase_rad": np.array(fit["shil_phase_rad"]),
            "phase_diffusion": np.array(fit["phase_diffusion"]),
            "phase_diffusion_per_psd": np.array(fit["phase_diffusion_per_psd"]),
            "f_vs_vdd/vdd": free["vdd"], "f_vs_vdd/f": free["f"],
            "pair/dw": np.array([p["dw"] for p in pfit["points"]]), "pair/r": np.array([p["r"] for p in pfit["points"]]),
            "pair/sign": np.array([p["sign"] for p in pfit["points"]]),
            "pair/x_spice": np.array([p["x"] for p in pfit["points"]]), "pair/x_model": pfit["x_table"],
            "pair/x_model_linear_k": pfit["x_model"],
            "k_code_rad_s": np.asarray(fit["k_per_code_rad_s"]),
            "ic_table": free["ic_table"],
            **({"load/g_s": lfreq["g"], "load/f_hz": lfreq["f"], "load/df_hz": lfreq["df"],
                "load/swing_v": lfreq["amp"]} if lfreq is not None else {}),
            **({"load/gain_g_s": lgain["g"], "load/k_gain": lgain["gain"]} if lgain is not None else {}),
        },
        attrs={"f0_hz": fit["f0_hz"], "df_dvdd_hz_per_v": fit["df_dvdd_hz_per_v"], "g_unit_s": 1.0 / cfg.r_lsb,
               "r_lsb_ohm": cfg.r_lsb, "n_bits": cfg.n_bits, "step_s": cfg.step_s,
               "shil_f_inj_hz": shil["f_inj"], "ring": json.dumps(asdict(cfg.ring)),
               "ic_table_nodes": json.dumps(ring_node_names(0, cfg.ring)),
               "phase_model_params": json.dumps(fit["phase_model_params"])},
        provenance={"config": config, "fit": {k: v for k, v in fit.items() if k != "phase_model_params"},
                    **(runs or {})},
    )
    sf.save(output)


def _plots(output: Path, cfg: OscCalibrationConfig, free, rows, pfit, checks, shil, noise, mc,
           lfreq: dict[str, Any] | None = None, lgain: dict[str, Any] | None = None) -> list[Path]:
    stem = output.with_suffix("")
    paths = []

    def save(fig, name: str) -> None:
        p = Path(f"{stem}_{name}.png")
        fig.tight_layout()
        fig.savefig(p, dpi=90)
        paths.append(p)

    fig, ax = subplots(1, 2, figsize=(9, 3.4))
    t, vp, vn = free["wave"]
    sel = (t > cfg.settle_s) & (t < cfg.settle_s + 3 / free["f0"])
    ax[0].plot(t[sel] * 1e9, vp[sel], label="p0")
    ax[0].plot(t[sel] * 1e9, vn[sel], label="n0")
    ax[0].set(xlabel="t [ns]", ylabel="V", title=f"f0 = {free['f0'] / 1e9:.4g} GHz, E/cycle = {free['energy'] * 1e15:.3g} fJ")
    ax[0].legend()
    ax[1].plot(free["vdd"], free["f"] / 1e9, "o")
    vv = np.linspace(free["vdd"].min(), free["vdd"].max(), 50)
    ax[1].plot(vv, _freq_at(free, vv - cfg.ring.vdd) / 1e9, "-")
    ax[1].set(xlabel="Vdd [V]", ylabel="f [GHz]", title=f"df/dV = {free['df_dv'] / 1e9:.3g} GHz/V")
    save(fig, "free")

    fig, ax = subplots(1, 2, figsize=(9, 3.4))
    for (r_ohm, sign) in sorted({(p["r"], p["sign"]) for p in pfit["points"]}):
        pts = [p for p in pfit["points"] if p["r"] == r_ohm and p["sign"] == sign]
        k = pfit["table"][r_ohm]
        dw = np.array([p["dw"] for p in pts])
        line = ax[0].plot(dw / 2 / math.pi / 1e6, [p["x"] for p in pts], "o" if sign > 0 else "s")[0]
        dwl = lock_range(k, pfit["a"])
        grid = np.linspace(-0.999 * dwl, 0.999 * dwl, 200)
        ax[0].plot(grid / 2 / math.pi / 1e6, locked_phase(grid, k, pfit["a"]), "-",
                   color=line.get_color(), label=f"R={r_ohm / 1e3:.3g}k {'+' if sign > 0 else '-'}")
    ax[0].set(xlabel="detuning [MHz]", ylabel="locked x' [rad]", title=f"max rel err {pfit['rel_err_table'].max():.3f} (R->K table)")
    ax[0].legend(fontsize=7)
    xx = np.linspace(-math.pi, math.pi, 300)
    h = sum(a * np.sin((k + 1) * xx) + c * np.cos((k + 1) * xx) for k, (a, c) in enumerate(zip(pfit["a"], pfit["c"])))
    ax[1].plot(xx, h, label="H(x)")
    ax[1].plot(xx, -2 * odd_part(xx, pfit["a"]), "--", label="H(-x) - H(x)")
    ax[1].set(xlabel="x [rad]", title="coupling function")
    ax[1].legend()
    save(fig, "pair")

    fig, ax = subplots(figsize=(4.5, 3.4))
    rs = np.array(sorted(pfit["table"]))
    ax.loglog(1 / rs, [pfit["table"][r] for r in rs], "o", label="per-R fit")
    ax.loglog(1 / rs, pfit["kappa"] / rs, "-", label=f"linear: kappa = {pfit['kappa']:.3g} rad/s/S")
    ka, kp = pfit["k_power"]
    ax.loglog(1 / rs, ka * (1 / rs) ** kp, "--", label=f"K = A G^p, p = {kp:.3f}")
    for c in checks:
        ax.annotate("L" if c["locked"] else "u", (1 / c["r"], pfit["table"][c["r"]] * c["fraction"]), fontsize=7)
    ax.set(xlabel="G [S]", ylabel="K [rad/s]", title="coupling strength")
    ax.legend(fontsize=7)
    save(fig, "coupling")

    fig, ax = subplots(figsize=(4.5, 3.4))
    ok = [r for r in shil["rows"] if r["locked"]]
    ax.plot([r["dw"] / 2 / math.pi / 1e6 for r in ok], [r["phi"] for r in ok], "o", label="SPICE locked")
    grid = np.linspace(-0.999, 0.999, 200) * shil["L"]
    ax.plot((grid + shil["delta"]) / 2 / math.pi / 1e6, shil["phi_s"] + 0.5 * np.arcsin(grid / shil["L"]), "-",
            label=f"L = {shil['L']:.3g} rad/s")
    ax.set(xlabel="detuning from f_inj [MHz]", ylabel="phase vs reference [rad]", title="SHIL lock")
    ax.legend(fontsize=7)
    save(fig, "shil")

    fig, ax = subplots(figsize=(4.5, 3.4))
    for v in noise["var_runs"]:
        ax.plot(noise["lags"] * 1e9, v, "o", alpha=0.5)
    ax.plot(noise["lags"] * 1e9, noise["c"] + 2 * noise["D"] * noise["lags"], "-", label=f"2 D tau, D = {noise['D']:.3g} rad^2/s")
    ax.set(xlabel="lag [ns]", ylabel="Var dphi [rad^2]", title="phase diffusion")
    ax.legend(fontsize=7)
    save(fig, "noise")

    fig, ax = subplots(1, 2, figsize=(9, 3.4))
    ax[0].hist(np.array(list(mc["f0"].values())) / 1e9, bins=10)
    ax[0].set(xlabel="f0 [GHz]", title="Monte-Carlo f0")
    ax[1].hist(np.array(list(mc["gain"].values())), bins=10)
    ax[1].set(xlabel="K_chip / K_nominal", title="Monte-Carlo coupling gain")
    save(fig, "montecarlo")

    if lfreq is not None or lgain is not None:
        fig, ax = subplots(1, 2, figsize=(9, 3.4))
        if lfreq is not None:
            g = lfreq["g"]
            ax[0].plot(g * 1e6, lfreq["df"][:, 0] / 1e6, "o-", label="load on p0 only")
            ax[0].plot(g * 1e6, lfreq["df"].diagonal() / 1e6, "s-", label="G on p0 and G on n0")
            ax[0].set(xlabel="rail load G [uS]", ylabel="frequency pull [MHz]", title="mid-supply load: f - f0")
            ax[0].legend(fontsize=7)
        if lgain is not None:
            ax[1].plot(lgain["g"] * 1e6, lgain["gain"], "o-")
            ax[1].set(xlabel="node load G [uS]", ylabel="K(G) / K(0)", title="coupling gain vs load")
        save(fig, "load")
    return paths
