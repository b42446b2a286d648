"""Calibration of the resistive family from SPICE: diode law, conductance programming, mismatch, solver accuracy.

Steps (all SPICE runs go through :class:`spicenet.spice.engine.Engine`):

1. **Diode I-V.** The process diode (wrapper ``X.. a k diode area=..``) is swept with ``.dc`` over the forward
   voltages the network uses (``[diode] v_min..v_max``) on ``chips`` Monte-Carlo devices. Device mismatch is
   Pelgrom-style on the forward voltage at constant current, ``sigma(dV_d) = A_vd / sqrt(area_um2)``, realised
   in SPICE as an area (hence ``Is``) factor ``exp(-dV_d / (n V_T))`` pushed with ``alter`` on the inner device.
   Each chip's curve is fitted to the series-resistance Shockley law

       I = Is (exp((V - I Rs) / (n V_T)) - 1)
         = (n V_T / Rs) W( (Is Rs / (n V_T)) exp((V + Is Rs) / (n V_T)) ) - Is      (W: Lambert W),

   by least squares on ``ln I`` (:func:`fit_diode`); ``r2`` is the coefficient of determination on ``ln I``.
2. **Conductance programming.** ``bits`` bits: levels ``k g_lsb``, k = 0..2^bits-1. ``mode = "bank"``: a
   binary-weighted bank of unit resistors ``R_u = 1/g_lsb``, each with relative tolerance ``sigma_unit``, so level
   k spreads by ``sigma_unit / sqrt(k)``; ``mode = "device"``: one programmable device per conductance (a
   memristor/RRAM cell as in Kendall et al. 2020) programmed to ``k g_lsb`` with relative spread ``sigma_unit`` at
   every level. Either is simulated (``.op``, 0 V ammeters) on Monte-Carlo chips and the measured relative spread
   per level is compared with the law.
3. **Solver accuracy.** ``solver_max_err_v``: the torch Newton solver with the fitted law vs ngspice ``.op``
   (engine alter path: one deck per network, one run per input) on random networks with random quantised
   conductances, per-device diode mismatch and random inputs; max |V_solver - V_spice| over all free nodes.

The surrogate file (``family="resistive"``) holds ``diode_is``/``diode_n``/``diode_rs`` per chip (their
mean/std are the per-device mismatch distribution used by training), the levels and ``g_sigma`` in ``extra``/
attrs, and the network operating point (input gain, diode rails, bias) the calibration was done for.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import scipy.optimize
import scipy.special
import torch

from spicenet import seeds
from spicenet.cells.resistive import streams
from spicenet.config import as_sections, check_ranges, load_config, setting
from spicenet.cells.resistive.netlist import (SWEEP_SOURCE, alter_commands, free_node_names, network_deck,
                                              sweep_analysis, sweep_from_deck)
from spicenet.cells.resistive.network import Chip, ResistiveNetwork, programmable_levels
from spicenet.cells.resistive.solver import ROOM_TEMPERATURE, thermal_voltage
from spicenet.errors import ConfigError, SpicenetError
from spicenet.plotting import subplots
from spicenet.spice.engine import Deck, Engine
from spicenet.spice.job import RunSpec
from spicenet.spice.process import get_process
from spicenet.spice.recorded import RunRecorder, runs_path
from spicenet.surrogate import SurrogateFile, SurrogateParam

__all__ = ["ResistiveCalibrationConfig", "DEFAULTS", "diode_law", "fit_diode", "simulate_diode_iv", "simulate_resistor_bank",
           "solver_vs_spice", "calibrate_resistive", "merged_config"]

IV_OPTIONS = ".options reltol=1e-7 abstol=1e-20 vntol=1e-12"
"""ngspice tolerances of the diode I-V sweep."""

RS_RESOLUTION_V = 1e-6
"""Smallest series-resistance voltage drop (V, at the largest fitted current) reported as a non-zero Rs."""

@dataclass(frozen=True)
class ResistiveCalibrationConfig:
    """Validated config of ``spicenet calibrate resistive`` (TOML sections ``[diode]``, ``[conductance]``,
    ``[network]``, ``[solver_check]``, ``[energy]``; the module docstring gives the physics). Read as nested dicts
    (:meth:`sections`)."""

    area: float = setting(1.0, "area factor of the process diode instance (SPICE area=)", section="diode")
    area_um2: float = setting(1.0, "physical diode area for the Pelgrom law", unit="um^2", section="diode")
    a_vd_mv_um: float = setting(2.0, "Pelgrom coefficient of the forward voltage, sigma(dV) = A / sqrt(area)",
                                unit="mV um", section="diode")
    v_min: float = setting(0.15, "lowest forward voltage of the I-V sweep", unit="V", section="diode")
    v_max: float = setting(0.75, "highest forward voltage of the I-V sweep", unit="V", section="diode")
    points: int = setting(61, "points of the I-V sweep", section="diode")
    chips: int = setting(40, "Monte-Carlo diodes fitted", section="diode")
    bits: int = setting(4, "conductance bits: levels k g_lsb, k = 0..2^bits - 1", unit="bit", section="conductance")
    g_lsb: float = setting(1.25e-6, "conductance LSB", unit="S", section="conductance")
    sigma_unit: float = setting(0.3, "relative spread of a unit resistor (bank) or a programmed device",
                                section="conductance")
    conductance_chips: int = setting(200, "Monte-Carlo banks simulated", section="conductance", key="chips")
    mode: str = setting("device", "device (one programmed cell per conductance) | bank (binary-weighted units)",
                        section="conductance")
    input_gain: float = setting(4.0, "ideal input-driver gain the network is calibrated for", unit="V per unit input",
                                section="network")
    vb: float = setting(0.3, "diode clamp rails +-vb of every free node", unit="V", section="network")
    v_bias: float = setting(1.0, "bias rail voltage", unit="V", section="network")
    gmin: float = setting(1e-12, "ngspice gmin (also in the solver)", unit="S", section="network")
    networks: int = setting(24, "random networks of the solver-vs-ngspice check", section="solver_check")
    inputs: int = setting(4, "random inputs per network", section="solver_check")
    reltol: float = setting(1e-6, "ngspice reltol of the check", section="solver_check")
    vntol: float = setting(1e-9, "ngspice vntol of the check", unit="V", section="solver_check")
    abstol: float = setting(1e-15, "ngspice abstol of the check", unit="A", section="solver_check")
    c_node_f: float = setting(10e-15, "capacitance per node of the energy estimate", unit="F", section="energy")
    settle_taus: float = setting(5.0, "settling time of an inference in RC time constants of the slowest node",
                                 section="energy")

    def __post_init__(self) -> None:
        if self.mode not in ("device", "bank"):
            raise ValueError(f"[conductance] mode must be 'device' or 'bank', got {self.mode!r}")
        check_ranges(self, {"area": self.area > 0, "area_um2": self.area_um2 > 0, "a_vd_mv_um": self.a_vd_mv_um >= 0,
                            "points": self.points >= 4, "chips": self.chips >= 2, "g_lsb": self.g_lsb > 0,
                            "sigma_unit": self.sigma_unit >= 0, "conductance_chips": self.conductance_chips >= 2,
                            "networks": self.networks >= 0, "inputs": self.inputs >= 1,
                            "c_node_f": self.c_node_f >= 0, "settle_taus": self.settle_taus > 0})

    def sections(self) -> dict[str, dict[str, Any]]:
        """The config as ``{section: {key: value}}``."""
        return as_sections(self)


DEFAULTS: dict[str, dict[str, Any]] = ResistiveCalibrationConfig().sections()


def merged_config(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The validated config of a parsed TOML as nested dicts (``spicenet.config.load_config`` of
    :class:`ResistiveCalibrationConfig`: unknown sections or keys and wrong types raise ConfigError naming
    ``[section] key``)."""
    return load_config(ResistiveCalibrationConfig, config, "resistive calibration config").sections()


# ------------------------------------------------------------------------------------------------- diode law
def diode_law(v: np.ndarray, is_: float, n: float, rs: float, temperature: float = ROOM_TEMPERATURE) -> np.ndarray:
    """Current I (A) of a junction with saturation current ``is_`` (A), ideality ``n`` and series ``rs`` (ohm)
    at terminal voltage ``v`` (V): the explicit Lambert-W solution of ``I = Is (exp((V - I Rs)/(n V_T)) - 1)``,
    evaluated with Wright's omega (``W(e^z) = omega(z)``) so that no exponential overflows; Rs -> 0 gives Shockley."""
    if not (is_ > 0 and n > 0 and rs >= 0):
        raise ValueError(f"diode parameters out of range: is_={is_!r}, n={n!r}, rs={rs!r}")
    v = np.asarray(v, dtype=np.float64)
    vte = n * thermal_voltage(temperature)
    shockley = is_ * np.expm1(np.minimum(v / vte, 700.0))
    if rs == 0.0 or is_ * rs / vte < 1e-250:  # log of the Lambert argument would underflow: Shockley exactly
        return shockley
    z = math.log(is_ * rs / vte) + (v + is_ * rs) / vte
    return vte / rs * np.real(scipy.special.wrightomega(z)) - is_


def fit_diode(v: np.ndarray, i: np.ndarray, temperature: float = ROOM_TEMPERATURE) -> dict[str, float]:
    """Least-squares fit of (Is, n, Rs) to a forward I-V curve on ``ln I`` (points with I > 0).

    Returns ``is_`` (A), ``n``, ``rs`` (ohm), ``r2`` (on ln I) and ``max_rel_err`` (max |I_fit / I - 1|). A series
    resistance whose drop at the largest measured current is below ``RS_RESOLUTION_V`` is reported as 0 (a
    1e-20 ohm resistor is unresolvable, and ngspice fails to converge with one)."""
    v = np.asarray(v, dtype=np.float64)
    i = np.asarray(i, dtype=np.float64)
    if v.shape != i.shape or v.ndim != 1:
        raise ValueError(f"v and i must be 1-D of equal length, got {v.shape} and {i.shape}")
    keep = i > 0
    if keep.sum() < 4:
        raise ValueError(f"i: need >= 4 points with positive forward current, got {int(keep.sum())}")
    v, i = v[keep], i[keep]
    vt = thermal_voltage(temperature)
    # initial guess from the two lowest-current points (Rs negligible there)
    slope = (math.log(i[1]) - math.log(i[0])) / (v[1] - v[0])
    n0 = float(np.clip(1.0 / (slope * vt), 0.6, 3.0))
    is0 = float(i[0] / math.expm1(v[0] / (n0 * vt)))
    log_i = np.log(i)

    def resid(p: np.ndarray) -> np.ndarray:
        model = diode_law(v, 10.0 ** p[0], p[1], p[2], temperature)
        return np.log(np.maximum(model, 1e-300)) - log_i

    r_max = 10.0 * (v[-1] - v[0]) / i[-1] + 1.0
    sol = scipy.optimize.least_squares(resid, x0=[math.log10(is0), n0, 0.0],
                                       bounds=([-30.0, 0.5, 0.0], [-3.0, 4.0, r_max]),
                                       x_scale=[1.0, 0.1, max(r_max / 100.0, 1e-3)], xtol=1e-14, ftol=1e-14,
                                       gtol=1e-14, method="trf")
    rs = float(sol.x[2])
    if rs * i[-1] < RS_RESOLUTION_V:  # drop across Rs below what the curve resolves: no series resistance
        rs = 0.0
    res = resid(np.array([sol.x[0], sol.x[1], rs]))
    ss_tot = float(((log_i - log_i.mean()) ** 2).sum())
    r2 = 1.0 - float((res ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    return {"is_": float(10.0 ** sol.x[0]), "n": float(sol.x[1]), "rs": rs, "r2": r2,
            "max_rel_err": float(np.max(np.abs(np.expm1(res))))}


def _inner_area_scale(process_name: str) -> float:
    """Factor between the wrapper's ``area`` and the inner device's area (``D0 .. area={area*X}`` in the library)."""
    text = get_process(process_name).library.read_text()
    block = re.search(r"\.subckt\s+diode\b(.*?)\.ends", text, re.S | re.I)
    if block is None:
        raise ConfigError(f"process {process_name}: no diode wrapper subcircuit in its library")
    m = re.search(r"area\s*=\s*\{\s*area\s*\*\s*([0-9.eE+-]+)\s*\}", block.group(1))
    return float(m.group(1)) if m else 1.0


def simulate_diode_iv(process: str, *, area: float, v_min: float, v_max: float, points: int,
                      vd_shift: np.ndarray, n_nominal: float, engine: Engine) -> tuple[np.ndarray, np.ndarray]:
    """Forward I-V of the process diode on one device per entry of ``vd_shift`` (V, forward-voltage mismatch at
    constant current, applied as an area factor ``exp(-dV / (n_nominal V_T))``). Returns v [P] and i [chips, P] (A,
    current into the anode)."""
    if not 0 <= v_min < v_max:
        raise ValueError(f"v_min/v_max must satisfy 0 <= v_min < v_max, got {v_min!r}, {v_max!r}")
    if points < 4:
        raise ValueError(f"points must be >= 4, got {points!r}")
    proc = get_process(process)
    # tight tolerances: at ngspice's defaults a .dc sweep point can stop ~6 % off in current (measured at the
    # second point of a 10 mV-step sweep), which would bias the fit
    text = (f"* spicenet resistive: diode I-V\n{proc.header()}{IV_OPTIONS}\nvd a 0 dc 0\n"
            f"Xd1 a 0 diode area={area:.17g}\n.end\n")
    step = (v_max - v_min) / (points - 1)
    analysis = f"dc vd {v_min:.12g} {v_max:.12g} {step:.12g}"
    scale = _inner_area_scale(process) * area
    vt = thermal_voltage(ROOM_TEMPERATURE)
    runs = [RunSpec(id=f"d{k:04d}", analysis=analysis,
                    commands=(f"alter d.xd1.d0 area = {scale * math.exp(-float(dv) / (n_nominal * vt)):.17g}",))
            for k, dv in enumerate(vd_shift)]
    outcomes = engine.simulate_many(Deck(text, process=proc), runs)
    v_out, currents = None, []
    for run in runs:
        r = outcomes[run.id]
        if isinstance(r, SpicenetError):
            raise r
        v_out = np.asarray(r["v(a)"], dtype=np.float64)
        currents.append(-np.asarray(r["i(vd)"], dtype=np.float64))
    return cast(np.ndarray, v_out), np.stack(currents)  # v_out is set: np.stack raises on no runs


def simulate_resistor_bank(*, bits: int, g_lsb: float, sigma_unit: float, chips: int, seed: int,
                           engine: Engine, mode: str = "bank") -> np.ndarray:
    """Conductance (S) of every level k = 0..2^bits-1 of a binary-weighted unit-resistor bank on ``chips``
    Monte-Carlo chips (each unit R_u (1 + sigma_unit z), z ~ N(0, 1)): [chips, 2^bits]. One ``.op`` per chip with a
    1 V drive and one 0 V ammeter per bit; level k's conductance is the sum of its bits' groups (superposition)."""
    if bits < 1 or bits > 10 or not g_lsb > 0 or not sigma_unit >= 0 or chips < 2:
        raise ValueError(f"bank: bits in 1..10, g_lsb > 0, sigma_unit >= 0, chips >= 2; got {bits}, {g_lsb}, "
                         f"{sigma_unit}, {chips}")
    if mode not in ("bank", "device"):
        raise ValueError(f"mode must be 'bank' or 'device', got {mode!r}")
    r_u = 1.0 / g_lsb
    lines = [f"* spicenet resistive: conductance levels ({mode})", "vin in 0 dc 1"]
    names, nominal = [], []
    groups = bits if mode == "bank" else 2 ** bits - 1
    for b in range(groups):
        lines.append(f"vm{b} nb{b} 0 dc 0")
        for m in range(2 ** b if mode == "bank" else 1):
            r = r_u if mode == "bank" else r_u / (b + 1)
            names.append(f"ru{b}_{m}")
            nominal.append(r)
            lines.append(f"ru{b}_{m} in nb{b} {r:.17g}")
    lines.append(".end")
    rng = seeds.numpy_generator(seed, streams.LEVELS)
    factors = np.maximum(1.0 + sigma_unit * rng.standard_normal((chips, len(names))), 1e-3)
    runs = [RunSpec(id=f"b{c:04d}", analysis="op",
                    commands=tuple(f"alter {nm} = {r / f:.17g}" for nm, r, f in zip(names, nominal, factors[c])))
            for c in range(chips)]
    outcomes = engine.simulate_many(Deck("\n".join(lines) + "\n"), runs)
    group = np.zeros((chips, groups))
    for c, run in enumerate(runs):
        res = outcomes[run.id]
        if isinstance(res, SpicenetError):
            raise res
        group[c] = [res.scalar(f"i(vm{b})") for b in range(groups)]  # current into nb -> through the ammeter to 0
    if mode == "device":
        return np.concatenate([np.zeros((chips, 1)), group], axis=1)
    ks = np.arange(2 ** bits)
    bitmask = (ks[:, None] >> np.arange(bits)[None, :]) & 1  # [levels, bits]
    return group @ bitmask.T


# --------------------------------------------------------------------------------------------- solver check
def _random_network(rng: np.random.Generator, *, diode: dict[str, float], levels: np.ndarray, g_sigma: float,
                    net_cfg: dict[str, Any], seed: int) -> tuple[ResistiveNetwork, Chip]:
    sizes = [int(rng.integers(3, 10)), int(rng.integers(3, 9))]
    if rng.random() < 0.4:
        sizes.append(int(rng.integers(2, 6)))
    sizes.append(int(rng.integers(2, 5)))
    g_unit = float(levels[1])
    net = ResistiveNetwork(sizes, input_gain=float(net_cfg["input_gain"]), vb=float(net_cfg["vb"]),
                           v_bias=float(net_cfg["v_bias"]), is_=diode["is_"], n=diode["n"], rs=diode["rs"],
                           gmin=float(net_cfg["gmin"]), g_unit=g_unit, init_range=(0.0, float(len(levels) - 1)),
                           quantize=programmable_levels(levels), seed=seed)
    chip = level_chip(net, levels, g_sigma=g_sigma, sigma_ln_is=diode["sigma_ln_is"], sigma_n=diode["sigma_n"],
                      seed=seed, mode=net_cfg.get("g_mode", "bank"))
    return net, chip


def level_chip(net: ResistiveNetwork, levels: np.ndarray | torch.Tensor, *, g_sigma: float, sigma_ln_is: float,
               sigma_n: float, seed: int, scale: float = 1.0, mode: str = "bank") -> Chip:
    """One chip for ``net``: conductance programmed at level k realised as ``G (1 + scale g_sigma z / sqrt(k))``
    for ``mode="bank"`` (k independent unit resistors of relative sigma ``g_sigma``) or ``G (1 + scale g_sigma z)``
    for ``mode="device"`` (one programmed device per conductance), diode ``Is`` factors
    ``exp(scale sigma_ln_is z)`` and ideality factors ``1 + scale sigma_n z`` per diode (z ~ N(0, 1), independent).
    Same seed -> same chip. The level of each conductance is read from the network's current parameters."""
    if not (g_sigma >= 0 and sigma_ln_is >= 0 and sigma_n >= 0 and scale >= 0):
        raise ValueError(f"sigmas and scale must be >= 0, got {g_sigma!r}, {sigma_ln_is!r}, {sigma_n!r}, {scale!r}")
    if mode not in ("bank", "device"):
        raise ValueError(f"mode must be 'bank' or 'device', got {mode!r}")
    lv = torch.as_tensor(np.asarray(levels, dtype=np.float64))
    lsb = float(lv[1] - lv[0]) if lv.numel() > 1 else float(lv[0])
    gen = torch.Generator().manual_seed(int(seed))
    gw, gb = net.conductances(None)

    def factor(g: torch.Tensor) -> torch.Tensor:
        k = torch.clamp(torch.round(g.detach().cpu().double() / lsb), min=1.0)
        if mode == "device":
            k = torch.ones_like(k)
        z = torch.randn(g.shape, generator=gen, dtype=torch.float64)
        return torch.clamp(1.0 + scale * g_sigma * z / torch.sqrt(k), min=0.0).to(net.device)

    g_f = tuple(factor(g) for g in gw)
    b_f = tuple(factor(g) for g in gb)
    is_f = torch.exp(scale * sigma_ln_is * torch.randn(net.n_free, 2, generator=gen, dtype=torch.float64))
    n_f = torch.clamp(1.0 + scale * sigma_n * torch.randn(net.n_free, 2, generator=gen, dtype=torch.float64), min=0.5)
    return Chip(g_factor=g_f, b_factor=b_f, is_factor=is_f.to(net.device), n_factor=n_f.to(net.device))


_DIODE_LINE = re.compile(r"^(d[ul])_(\S+)\s+(\S+)\s+(\S+)\s+\S+\s*$", re.I)


def process_diode_deck(deck: str, net: ResistiveNetwork, chip: Chip | None, process: str, area: float) -> str:
    """``deck`` (from :func:`network_deck`) with every fitted-law diode replaced by the process diode itself
    (``X<name> a k diode area=<area * Is factor>``: the chip's per-diode Is mismatch as an area factor, Is being
    proportional to junction area; an ideality mismatch is not representable and is dropped). Only the process
    library's ``.include`` is added, so the deck's own ``.options`` (gmin = the solver's) stay in force."""
    if not area > 0:
        raise ValueError(f"area must be > 0, got {area!r}")
    proc = get_process(process)
    index = {name: k for k, name in enumerate(free_node_names(net))}
    is_f = chip.is_factor.detach().cpu().double() if chip is not None else torch.ones(net.n_free, 2)
    out = []
    for k, line in enumerate(deck.splitlines()):
        m = _DIODE_LINE.match(line)
        if k == 1:
            out.append(f'.include "{proc.library}"')
        if m and m.group(2) in index:
            col = 0 if m.group(1).lower() == "du" else 1
            a = area * float(is_f[index[m.group(2)], col])
            out.append(f"X{m.group(1)}_{m.group(2)} {m.group(3)} {m.group(4)} diode area={a:.17g}")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


#: how ``spice_node_voltages`` solves: one ``.op`` per input through ``alter`` ("op"), or the inputs stepped by one
#: DC sweep per chunk (:func:`~spicenet.cells.resistive.netlist.sweep_deck`; "sweep")
METHODS = ("op", "sweep")


def spice_node_voltages(net: ResistiveNetwork, chip: Chip | None, x: torch.Tensor, *, engine: Engine,
                        options: dict[str, float], prefix: str = "", process: str | None = None,
                        area: float = 1.0, method: str = "op",
                        sweep_inputs: int = 25) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """ngspice's operating point of ``net`` on ``chip`` for every input row of ``x`` [B, n_in]. ``method`` "op": one
    deck, one ``.op`` run per input (inputs pushed with ``alter``); "sweep": one DC-sweep run per ``sweep_inputs``
    inputs (:func:`sweep_deck`: the matrix is ordered once per run instead of once per input; the runs spread over
    the engine's workers), a run that fails solved again input by input with "op" (its retry ladder). ``process``
    (e.g. "generic") puts the process diode (wrapper ``diode``, ``area``) in place of the fitted law
    (:func:`process_diode_deck`). Returns node voltages [B, N] (V, NaN where a run failed), delivered source power
    [B] (W, ``-sum V I`` over all sources) and the error messages of failed runs."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if sweep_inputs < 1:
        raise ValueError(f"sweep_inputs must be >= 1, got {sweep_inputs}")
    n = int(x.shape[0])
    v = np.full((n, net.n_free), np.nan)
    p = np.full(n, np.nan)
    deck = network_deck(net, chip=chip, options=options)  # rendered once: the costly part of a large deck
    if process is not None:
        deck = process_diode_deck(deck, net, chip, process, area)

    def by_op(rows: list[int]) -> list[str]:
        """One ``.op`` per input of ``rows`` into ``v``, ``p``; the error messages of the failed runs."""
        runs = [RunSpec(id=f"{prefix}x{b:05d}", analysis="op", commands=tuple(alter_commands(net, x[b])))
                for b in rows]
        outcomes = engine.simulate_many(Deck(deck), runs)
        reader = _OperatingPoints(net, deck)
        errors = []
        for b, run in zip(rows, runs):
            r = outcomes[run.id]
            if isinstance(r, SpicenetError):
                errors.append(f"{run.id}: {r}")
                continue
            v_b, p_b = reader.read(r, 1)
            v[b], p[b] = v_b[0], p_b[0]
        return errors

    if method == "op" or not n:
        return v, p, by_op(list(range(n)))
    chunks = [list(range(i, min(n, i + sweep_inputs))) for i in range(0, n, sweep_inputs)]
    texts = [sweep_from_deck(deck, net, x[rows]) for rows in chunks]
    jobs = [engine.job(Deck(text), [RunSpec(id=f"{prefix}s{c:05d}", analysis=sweep_analysis(len(rows)))])
            for c, (text, rows) in enumerate(zip(texts, chunks))]
    reader = _OperatingPoints(net, texts[0])
    outcomes = engine.run_all(jobs)
    redo: list[int] = []
    for c, rows in enumerate(chunks):
        r = outcomes[f"{prefix}s{c:05d}"]
        if isinstance(r, SpicenetError):  # solved again input by input (the .op retry ladder)
            redo += rows
            continue
        v[rows], p[rows] = reader.read(r, len(rows))
    return v, p, by_op(redo) if redo else []


class _OperatingPoints:
    """Node voltages and delivered power of one or more operating points (a ``.op`` or the points of a DC sweep)
    read from a result of ``deck``."""

    def __init__(self, net: ResistiveNetwork, deck: str) -> None:
        lines = deck.splitlines()
        self.nodes = free_node_names(net)
        # voltage sources and B voltage sources: name -> the node they drive (+ terminal; - is ground)
        self.src_nodes = {ln.split()[0].lower(): ln.split()[1].lower() for ln in lines
                          if ln[:1].lower() in ("v", "b") and ln.split()[0].lower() != SWEEP_SOURCE}
        self.amps = {}  # amplifier sense source -> (amplified node, signed backward gain), from the CCCS lines
        for ln in lines:
            if ln[:2].lower() == "fa":
                parts = ln.split()
                self.amps[parts[3].lower()] = (parts[1].lower(), float(parts[4]))

    def read(self, r: Any, count: int) -> tuple[np.ndarray, np.ndarray]:
        """([count, N] node voltages, [count] power) of result ``r`` (``count`` points of each vector)."""
        def vec(name: str) -> np.ndarray:
            value = np.real(np.asarray(r[name])).astype(np.float64).reshape(-1)
            if value.size != count:
                raise SpicenetError(f"vector {name!r} has {value.size} points, expected {count}")
            return value

        v = np.stack([vec(f"v({nm})") for nm in self.nodes], axis=1)
        # ngspice's branch current of a source flows from + through the source to -: delivering -> i < 0
        p = -sum((vec(f"v({node})") * vec(f"i({s})") for s, node in self.src_nodes.items() if s not in self.amps),
                 np.zeros(count))
        # amplifiers: the VCVS delivers V_out I (I = the sense source's current into the resistors), the
        # backward CCCS delivers -V_node sigma b I (its current sigma b I leaves the node to ground)
        for s, (node, back) in self.amps.items():
            i_s = vec(f"i({s})")
            p = p + vec(f"v({self.src_nodes[s]})") * i_s - vec(f"v({node})") * back * i_s
        return v, p


def solver_vs_spice(*, diode: dict[str, float], levels: np.ndarray, g_sigma: float, net_cfg: dict[str, Any],
                    check: dict[str, Any], seed: int, engine: Engine) -> dict[str, Any]:
    """Max |V_solver - V_ngspice| (V) over ``check.networks`` random networks x ``check.inputs`` random inputs."""
    rng = seeds.numpy_generator(seed, streams.SOLVER_CHECK)
    options = {k: float(check[k]) for k in ("reltol", "vntol", "abstol")}
    errs, n_nodes, failed = [], 0, []
    for k in range(int(check["networks"])):
        net, chip = _random_network(rng, diode=diode, levels=levels, g_sigma=g_sigma, net_cfg=net_cfg,
                                    seed=seeds.block_seed(seed, k))
        x = torch.as_tensor(rng.random((int(check["inputs"]), net.n_in)))
        with torch.no_grad():
            v_sol = net.equilibrium(x, chip=chip).v.numpy()
        v_sp, _, bad = spice_node_voltages(net, chip, x, engine=engine, options=options, prefix=f"n{k}")
        failed += bad
        ok = np.isfinite(v_sp).all(axis=1)
        if ok.any():
            errs.append(np.abs(v_sol[ok] - v_sp[ok]).max(axis=1))
            n_nodes += int(ok.sum()) * net.n_free
    if not errs:
        raise SpicenetError(f"solver check: every ngspice run failed, first: {failed[:1]}")
    e = np.concatenate(errs)
    return {"solver_max_err_v": float(np.max(e)), "solver_median_err_v": float(np.median(e)),
            "networks": int(check["networks"]), "inputs_per_network": int(check["inputs"]), "nodes": n_nodes,
            "failed_runs": failed, "errors_per_input": e}


# ------------------------------------------------------------------------------------------------- plots
def _plots(output: Path, v: np.ndarray, i: np.ndarray, fits: list[dict[str, float]], levels_mc: np.ndarray,
           g_sigma: float, errs: np.ndarray, temperature: float, mode: str = "bank") -> list[str]:

    stem = output.with_suffix("")
    paths = []
    fig, ax = subplots(1, 2, figsize=(10, 4))
    for c in range(min(len(fits), 8)):
        ax[0].semilogy(v, i[c], ".", ms=3, color=f"C{c}")
        f = fits[c]
        ax[0].semilogy(v, diode_law(v, f["is_"], f["n"], f["rs"], temperature), "-", lw=0.8, color=f"C{c}")
        ax[1].plot(v, diode_law(v, f["is_"], f["n"], f["rs"], temperature) / i[c] - 1.0, color=f"C{c}")
    ax[0].set(xlabel="V (V)", ylabel="I (A)", title="diode I-V: SPICE (dots) vs fit (lines)")
    ax[1].set(xlabel="V (V)", ylabel="I_fit / I_spice - 1", title="fit residual")
    fig.tight_layout()
    p = Path(f"{stem}_diode_iv.png")
    fig.savefig(p, dpi=110)
    paths.append(str(p))

    fig, ax = subplots(1, 2, figsize=(10, 4))
    k = np.arange(levels_mc.shape[1])
    ax[0].errorbar(k, levels_mc.mean(0) * 1e6, yerr=levels_mc.std(0, ddof=1) * 1e6, fmt="o", ms=3)
    ax[0].set(xlabel="level k", ylabel="G (uS)", title="programmed conductance levels (MC mean +- sd)")
    rel = levels_mc[:, 1:].std(0, ddof=1) / levels_mc[:, 1:].mean(0)
    ax[1].plot(k[1:], rel, "o", label="SPICE MC")
    law = g_sigma / np.sqrt(k[1:]) if mode == "bank" else np.full(k.size - 1, g_sigma)
    ax[1].plot(k[1:], law, "-", label="sigma_unit / sqrt(k)" if mode == "bank" else "sigma_unit")
    ax[1].set(xlabel="level k", ylabel="relative sd", title="conductance tolerance")
    ax[1].legend()
    fig.tight_layout()
    p = Path(f"{stem}_levels.png")
    fig.savefig(p, dpi=110)
    paths.append(str(p))

    fig, ax = subplots(figsize=(5, 4))
    ax.hist(np.log10(np.maximum(errs, 1e-18)), bins=30)
    ax.set(xlabel="log10 max |V_solver - V_ngspice| per input (V)", ylabel="inputs",
           title="surrogate solver vs ngspice .op")
    fig.tight_layout()
    p = Path(f"{stem}_solver_err.png")
    fig.savefig(p, dpi=110)
    paths.append(str(p))
    return paths


# ------------------------------------------------------------------------------------------------- entry
def calibrate_resistive(config: dict[str, Any], *, process: str, quick: bool, output: Path, workers: int,
                        seed: int, resume: bool | None = None) -> dict[str, Any]:
    """Run the calibration (module docstring), write the surrogate file and plots; every ngspice run is recorded in
    the run store beside ``output`` (``cal.h5`` -> ``cal.runs.h5``, :mod:`spicenet.spice.recorded`), which
    ``resume`` continues (None: ``spicenet calibrate --resume``'s setting).

    Returns ``{"output", "fit", "plots", "wall_s"}``; ``fit`` holds ``diode_is`` (A), ``diode_n``, ``diode_rs``
    (ohm), ``r2``, ``levels`` (S), ``solver_max_err_v`` (V) and the mismatch figures."""
    t0 = time.perf_counter()
    cfg = merged_config(config)
    d, g, net_cfg, check = cfg["diode"], cfg["conductance"], cfg["network"], cfg["solver_check"]
    output = Path(output)
    chips = int(d["chips"])
    if chips < 2:
        raise ConfigError(f"diode.chips must be >= 2, got {chips}")
    temperature = ROOM_TEMPERATURE
    rng = seeds.numpy_generator(seed, streams.DIODE)
    sigma_vd = float(d["a_vd_mv_um"]) * 1e-3 / math.sqrt(float(d["area_um2"]))
    vd_shift = sigma_vd * rng.standard_normal(chips)
    runs = RunRecorder(runs_path(output), resume=resume, process=process, seed=seed,
                       config={"family": "resistive", "quick": bool(quick), "config": cfg})
    with runs.engine(Engine(workers=max(1, int(workers)))) as engine:
        # nominal device first (shift 0) to get the nominal ideality used for the area factor
        engine.stage("iv_nominal")  # stages: the two I-V sweeps use the same run ids
        v, i0 = simulate_diode_iv(process, area=float(d["area"]), v_min=float(d["v_min"]), v_max=float(d["v_max"]),
                                  points=int(d["points"]), vd_shift=np.zeros(1), n_nominal=1.0, engine=engine)
        nominal = fit_diode(v, i0[0], temperature)
        engine.stage("iv_mc")
        v, i_mc = simulate_diode_iv(process, area=float(d["area"]), v_min=float(d["v_min"]),
                                    v_max=float(d["v_max"]), points=int(d["points"]), vd_shift=vd_shift,
                                    n_nominal=nominal["n"], engine=engine)
        fits = [fit_diode(v, i_mc[c], temperature) for c in range(chips)]
        is_c = np.array([f["is_"] for f in fits])
        n_c = np.array([f["n"] for f in fits])
        rs_c = np.array([f["rs"] for f in fits])
        sigma_ln_is = float(np.log(is_c).std(ddof=1))
        sigma_n = float(n_c.std(ddof=1) / n_c.mean())
        diode = {"is_": nominal["is_"], "n": nominal["n"], "rs": nominal["rs"], "sigma_ln_is": sigma_ln_is,
                 "sigma_n": sigma_n}
        bits = int(g["bits"])
        mode = str(g["mode"])
        engine.stage("levels")
        levels_mc = simulate_resistor_bank(bits=bits, g_lsb=float(g["g_lsb"]), sigma_unit=float(g["sigma_unit"]),
                                           chips=int(g["chips"]), seed=seed, engine=engine, mode=mode)
        levels = float(g["g_lsb"]) * np.arange(2 ** bits)
        rel_sd = levels_mc[:, 1:].std(0, ddof=1) / levels_mc[:, 1:].mean(0)
        units = np.arange(1, 2 ** bits) if mode == "bank" else np.ones(2 ** bits - 1)
        g_sigma_meas = float(np.sqrt(np.mean(rel_sd ** 2 * units)))  # estimate of sigma_unit
        engine.stage("solver")
        chk = solver_vs_spice(diode=diode, levels=levels, g_sigma=float(g["sigma_unit"]),
                              net_cfg={**net_cfg, "g_mode": mode}, check=check, seed=seed, engine=engine)
    # ---------------------------------------------------------------------------------------------- save
    params = {
        "diode_is": SurrogateParam(is_c, unit="A", positive=True,
                                   description=f"diode saturation current at area={d['area']} (fit per MC device)"),
        "diode_n": SurrogateParam(n_c, unit="", positive=True, description="diode ideality factor (fit per device)"),
        "diode_rs": SurrogateParam(rs_c, unit="ohm", description="diode series resistance (fit per device)"),
    }
    sur = SurrogateFile(
        family="resistive", process=process, params=params,
        extra={"levels": levels, "levels_mc": levels_mc, "level_rel_sd": rel_sd, "iv_v": v, "iv_i": i_mc,
               "vd_shift": vd_shift, "solver_err_v": chk["errors_per_input"]},
        attrs={"g_sigma": float(g["sigma_unit"]), "g_mode": mode, "g_sigma_measured": g_sigma_meas, "g_lsb": float(g["g_lsb"]),
               "bits": bits, "input_gain": float(net_cfg["input_gain"]), "vb": float(net_cfg["vb"]),
               "v_bias": float(net_cfg["v_bias"]), "gmin": float(net_cfg["gmin"]), "diode_area": float(d["area"]),
               "diode_is_nominal": nominal["is_"], "diode_n_nominal": nominal["n"],
               "diode_rs_nominal": nominal["rs"], "sigma_ln_is": sigma_ln_is, "sigma_n_rel": sigma_n,
               "sigma_vd_v": sigma_vd, "r2": min(f["r2"] for f in fits), "temperature_k": temperature,
               "solver_max_err_v": chk["solver_max_err_v"], "c_node_f": float(cfg["energy"]["c_node_f"]),
               "settle_taus": float(cfg["energy"]["settle_taus"]),
               "spice_reltol": float(check["reltol"]), "spice_vntol": float(check["vntol"]),
               "spice_abstol": float(check["abstol"])},
        provenance={"config": cfg, "seed": int(seed), "quick": bool(quick), **runs.provenance(output)},
    )
    sur.save(output)
    plots = _plots(output, v, i_mc, fits, levels_mc, float(g["sigma_unit"]), chk["errors_per_input"], temperature,
                   mode)
    fit = {
        "diode_is": nominal["is_"], "diode_n": nominal["n"], "diode_rs": nominal["rs"],
        "r2": min(f["r2"] for f in fits), "r2_nominal": nominal["r2"],
        "diode_max_rel_err": max(f["max_rel_err"] for f in fits),
        "diode_is_sigma_ln": sigma_ln_is, "diode_n_sigma_rel": sigma_n, "sigma_vd_v": sigma_vd,
        "levels": levels.tolist(), "g_lsb": float(g["g_lsb"]), "bits": bits,
        "g_sigma": float(g["sigma_unit"]), "g_sigma_measured": g_sigma_meas, "g_mode": mode,
        "input_gain": float(net_cfg["input_gain"]), "input_gain_note": "ideal input drivers (no amplifier model)",
        "solver_max_err_v": chk["solver_max_err_v"], "solver_median_err_v": chk["solver_median_err_v"],
        "solver_networks": chk["networks"], "solver_inputs": chk["networks"] * chk["inputs_per_network"],
        "solver_failed_runs": len(chk["failed_runs"]), "chips": chips,
    }
    return {"output": str(output), "fit": fit, "plots": plots, "wall_s": round(time.perf_counter() - t0, 3)}
