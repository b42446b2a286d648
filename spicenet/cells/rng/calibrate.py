"""Calibration of the continuous-time p-bit: Monte-Carlo chips -> V0 -> P(1) curve -> logistic fit -> surrogate.

Per chip (config key ``mismatch``: "pelgrom" = per-device draws from (seed, chip) pushed by ``alter``, see
:func:`spicenet.cells.rng.cells.device_commands`; "pdk" = the PDK's own statistical model, re-drawn per chip by
``setseed derived_seed(seed, chip)`` + ``reset``, see :func:`spicenet.cells.rng.cells.chip_setup`; sky130 uses "pdk"):

1. Locate the transition: noise-free ``dc`` sweeps of the bias up and down (the bistable follows one branch until
   it vanishes); V0_dc = midpoint of the two switching points. Mismatch moves V0 by tens of Vs, so the bias
   points are placed around each chip's own V0_dc: V0_dc + vs_guess * linspace(-span, span, points).
2. Size the noise: ``op`` at V0_dc; per node S = 2 q sum I coth(Vds / 2 V_T) from the inverter currents
   (:func:`spicenet.cells.rng.cells.shot_noise_psd`); pre-generated seeded Gaussian samples, one file per cell.
3. One transient per chip through all bias points (a PWL staircase, each level held ``t_level``; the first
   ``settle`` of each level is discarded). P(1) = time fraction with v(a) > v(b); tau from the autocorrelation of
   the bit stream (exponential fit: the surrogate's tau_s; and, as a cross-check, from dwell times) at the level
   nearest P = 1/2; effective bits N_eff = T / (2 tau_int) with the integrated correlation time tau_int (exact
   for any correlation shape); binomial std sqrt(p (1 - p) / N_eff).
4. Fit P(1) = sigmoid((V - V0) / Vs) (scipy curve_fit, weighted by the binomial std); r2, max |fit - measured|.
5. Energy: P_avg = mean supply power of the cell (Vdd source plus the two bias sources, noise sources excluded:
   they model the devices' own noise); E_bit = P_avg * 2 tau_int = P_avg * T / N_eff (J per effective
   independent bit).

The joint distribution of (v0, vs, tau_s) over chips (samples, moments, correlation) is written with
:class:`spicenet.surrogate.SurrogateFile` (family "rng").
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, cast

import numpy as np

from spicenet.cells.rng import cells, measure
from spicenet.config import check_ranges, load_config, setting
from spicenet.errors import ConfigError, SpicenetError
from spicenet.plotting import subplots
from spicenet.spice.engine import Deck, Engine
from spicenet.spice.job import RunSpec
from spicenet.spice.process import get_process
from spicenet.spice.recorded import RunRecorder, runs_path


@dataclass(frozen=True)
class RngCalibrationConfig(cells.CellSizing):
    """Calibration settings (TOML keys of the same names; a ``[process.<name>]`` table overrides per process):
    the cell's sizing and supply (the fields of :class:`cells.CellSizing`, same defaults) plus the measurement plan.

    Times in s, voltages in V. ``std_target``: binomial std of P(1) at P = 1/2 that each bias level is sized
    for: t_level = settle + margin * 2 tau / (4 std_target^2), tau measured per chip by a ``pilot`` transient at
    V0 (``tau_guess`` when ``pilot`` = 0 or the pilot shows no telegraph)."""

    chips: int = setting(20, "Monte-Carlo chips simulated")
    points: int = setting(11, "bias levels per chip")
    span: float = setting(3.0, "the bias levels cover V0 +- span * vs_guess")
    vs_guess: float = setting(0.22e-3, "expected logistic slope Vs (sets the bias levels)", unit="V")
    tau_guess: float = setting(60e-9, "expected autocorrelation time (when the pilot shows none)", unit="s")
    std_target: float = setting(0.0085, "binomial std of P(1) at P = 1/2 each bias level is sized for")
    settle: float = setting(0.4e-6, "discarded at the start of each bias level", unit="s")
    dt: float = setting(1e-9, "noise sample step = transient maximum step", unit="s")
    sweep_range: float = setting(0.04, "dc sweep of the bias over +- sweep_range (locates V0)", unit="V")
    sweep_step: float = setting(2e-5, "step of that dc sweep", unit="V")
    temp_c: float = setting(27.0, "simulation temperature", unit="degC")
    noise_scale: float = setting(1.0, "injected shot-noise PSD x scale (0 = no noise)")
    timeout_s: float = setting(900.0, "ngspice time limit per run", unit="s")
    extra_chips: int = setting(2, "replacement chips tried when some fail")
    pilot: float = setting(30e-6, "noise transient at V0 per chip that measures tau before the bias levels (0 = none)",
                           unit="s")
    margin: float = setting(1.15, "each level is sized for margin * the pilot's tau")
    max_tau_factor: float = setting(4.0, "the pilot's tau is capped at max_tau_factor * tau_guess")
    mismatch: str = setting("pelgrom", "pelgrom (alter draws, any process) | pdk (the PDK's own agauss model)")

    def __post_init__(self) -> None:
        checks = {
            "chips": self.chips >= 1, "points": self.points >= 3, "span": 0 < self.span <= 20,
            "vs_guess": 0 < self.vs_guess < 0.05, "tau_guess": 0 < self.tau_guess < 1e-3,
            "std_target": 0 < self.std_target < 0.5, "settle": 0 <= self.settle < 1e-3, "dt": 0 < self.dt < 1e-6,
            "sweep_range": 0 < self.sweep_range <= 0.4, "sweep_step": 0 < self.sweep_step < self.sweep_range,
            "noise_scale": self.noise_scale >= 0, "timeout_s": self.timeout_s > 0, "extra_chips": self.extra_chips >= 0,
            "pilot": 0 <= self.pilot < 1e-2, "margin": 0.5 <= self.margin <= 5,
            "max_tau_factor": self.max_tau_factor >= 1, "mismatch": self.mismatch in ("pelgrom", "pdk"),
        }
        check_ranges(self, checks)
        super().__post_init__()  # the cell parameters

    @property
    def sizing(self) -> cells.CellSizing:
        """The cell part of the config, as a plain :class:`cells.CellSizing`."""
        return cells.CellSizing(**{f.name: getattr(self, f.name) for f in fields(cells.CellSizing)})

    def t_level(self, tau: float | None = None) -> float:
        """Time each bias level is held (s): settle + margin * 2 tau N_target, N_target = 1 / (4 std_target^2)."""
        tau = self.tau_guess if tau is None else min(tau, self.max_tau_factor * self.tau_guess)
        n_target = 0.25 / self.std_target**2
        return self.settle + self.margin * 2.0 * tau * n_target

    @property
    def levels(self) -> np.ndarray:
        """Bias offsets from each chip's V0 (V)."""
        return self.vs_guess * np.linspace(-self.span, self.span, self.points)


def parse_config(config: dict[str, Any], process: str) -> RngCalibrationConfig:
    """The validated config: top-level keys, overridden by the ``[process.<process>]`` table when present."""
    values = {k: v for k, v in config.items() if k != "process"}
    per_process = config.get("process", {})
    if not isinstance(per_process, dict):
        raise ConfigError("rng calibration: 'process' must be a table of per-process overrides")
    values.update(per_process.get(process, {}))
    return load_config(RngCalibrationConfig, values, "rng calibration")


def _progress(total: int, desc: str):
    from spicenet.progress import progress_bar
    return progress_bar(total, desc, mininterval=2.0)


# ------------------------------------------------------------------------------------------------- stages --
def switching_point(v: np.ndarray, x: np.ndarray) -> float:
    """Bias (V) at the first sign change of x along a dc sweep (linear interpolation); NaN when x never changes
    sign."""
    s = np.sign(x)
    idx = np.nonzero(s[:-1] * s[1:] < 0)[0]
    if idx.size == 0:
        zero = np.nonzero(s == 0)[0]
        return float(v[zero[0]]) if zero.size else math.nan
    i = int(idx[0])
    return float(v[i] + (v[i + 1] - v[i]) * x[i] / (x[i] - x[i + 1]))


def cell_deck(cfg: RngCalibrationConfig, process, biases=(0.0,), **kwargs: Any) -> Deck:
    """A single-cell ``Deck`` (``cells.ct_deck``) rendered for the config's mismatch mode."""
    text = cells.ct_deck(list(biases), cfg.sizing, process, mismatch=cfg.mismatch, **kwargs)
    return Deck(text, process, cfg.mismatch)


def chip_spec(run_id: str, analysis: str, cfg: RngCalibrationConfig, process, chip: int, seed: int,
              extra: tuple[str, ...] = (), **kwargs: Any) -> RunSpec:
    """A RunSpec that makes the loaded single-cell deck chip ``chip`` (``cells.chip_setup``) then runs ``analysis``."""
    commands, run_seed = cells.chip_setup(process, cfg.sizing, chip, seed, cfg.mismatch)
    return RunSpec(run_id, analysis, commands + tuple(extra), seed=run_seed, **kwargs)


def locate_v0(engine: Engine, cfg: RngCalibrationConfig, process, chips: list[int], seed: int
              ) -> dict[int, dict[str, float] | SpicenetError]:
    """Noise-free up/down dc sweeps per chip -> {chip: {"v_up", "v_down", "v0_dc"}} (or the run's error)."""
    deck = cell_deck(cfg, process, save_all=False)
    r, s = cfg.sweep_range, cfg.sweep_step
    runs = []
    for chip in chips:
        runs.append(chip_spec(f"up{chip}", f"dc vb0 {-r:.9g} {r:.9g} {s:.9g}", cfg, process, chip, seed,
                              save=("v(a0)", "v(b0)")))
        runs.append(chip_spec(f"dn{chip}", f"dc vb0 {r:.9g} {-r:.9g} {-s:.9g}", cfg, process, chip, seed,
                              save=("v(a0)", "v(b0)")))
    outcomes = engine.simulate_many(deck, runs)
    found: dict[int, dict[str, float] | SpicenetError] = {}
    for chip in chips:
        points = []
        for key in (f"up{chip}", f"dn{chip}"):
            res = outcomes[key]
            if isinstance(res, SpicenetError):
                found[chip] = res
                break
            points.append(switching_point(res[cast(str, res.scale)], res["v(a0)"] - res["v(b0)"]))  # dc sweep
        if chip in found:
            continue
        if not all(math.isfinite(p) for p in points):
            found[chip] = SpicenetError(f"chip {chip}: no transition within +-{r:g} V of bias")
            continue
        found[chip] = {"v_up": points[0], "v_down": points[1], "v0_dc": 0.5 * (points[0] + points[1])}
    return found


def noise_at(engine: Engine, cfg: RngCalibrationConfig, process, v0: dict[int, float], seed: int
             ) -> dict[int, dict[str, float] | SpicenetError]:
    """``op`` at each chip's V0 -> per-node shot-noise PSD (A^2/Hz), rms per sample (A), supply currents."""
    deck = cell_deck(cfg, process)
    runs = [chip_spec(f"op{chip}", "op", cfg, process, chip, seed, (f"alter vb0 dc = {v:.12g}",))
            for chip, v in v0.items()]
    outcomes = engine.simulate_many(deck, runs)
    vdd = cfg.sizing.vdd
    found: dict[int, dict[str, float] | SpicenetError] = {}
    for chip, v in v0.items():
        res = outcomes[f"op{chip}"]
        if isinstance(res, SpicenetError):
            found[chip] = res
            continue
        va, vb = res.scalar("v(a0)"), res.scalar("v(b0)")
        ia, ib = abs(res.scalar("i(vma0)")), abs(res.scalar("i(vmb0)"))
        sa = cells.shot_noise_psd([ia, ia], [va - v / 2, vdd - va], cfg.temp_c)
        sb = cells.shot_noise_psd([ib, ib], [vb + v / 2, vdd - vb], cfg.temp_c)
        found[chip] = {"psd_a": sa, "psd_b": sb, "rms_a": cells.noise_rms(sa, cfg.dt),
                       "rms_b": cells.noise_rms(sb, cfg.dt), "i_a": ia, "i_b": ib}
    return found


def pilot_job(engine: Engine, cfg: RngCalibrationConfig, process, chip: int, v0: float, rms: tuple[float, float],
              seed: int, folder: Path):
    """A short noise transient at the chip's V0 (noise stream 1) whose autocorrelation sizes the bias levels."""
    path = cells.write_noise_file(folder / f"pilot_s{seed}_c{chip}.txt", seed=seed, chip=chip, cell=0, rms=rms,
                                  dt=cfg.dt, t_stop=cfg.pilot, stream=1)
    deck = cell_deck(cfg, process, [v0], noise_files=[path], noise_scale=cfg.noise_scale, save_all=False)
    run = chip_spec(f"pilot{chip}", f"tran {cfg.dt:.6g} {cfg.pilot:.9g} 0 {cfg.dt:.6g}", cfg, process, chip, seed,
                    save=("v(a0)", "v(b0)"))
    return engine.job(deck, [run], label=f"pilot {chip}", timeout_s=cfg.timeout_s)


def pilot_tau(res, cfg: RngCalibrationConfig) -> float:
    """Integrated correlation time (s) of a pilot transient after ``settle`` (what N_eff needs); ``tau_guess``
    when the pilot does not telegraph."""
    xs = measure.resample(res["time"], res["v(a0)"] - res["v(b0)"], cfg.dt, min(cfg.settle, cfg.pilot / 4), None)
    bits = xs > 0
    if bits.all() or not bits.any():
        return cfg.tau_guess
    max_lag = int(min(bits.size // 4, max(50, 20 * cfg.tau_guess / cfg.dt)))
    try:
        return max(measure.integrated_tau(measure.autocorrelation(bits, max_lag), cfg.dt), cfg.dt)
    except ValueError:
        return cfg.tau_guess


def noise_job(engine: Engine, cfg: RngCalibrationConfig, process, chip: int, v0: float, rms: tuple[float, float],
              seed: int, folder: Path, t_level: float):
    """The transient job of one chip: its noise file, the PWL staircase over V0 + levels, the tran run."""
    levels = v0 + cfg.levels
    t_stop = t_level * cfg.points
    path = cells.write_noise_file(folder / f"noise_s{seed}_c{chip}.txt", seed=seed, chip=chip, cell=0, rms=rms,
                                  dt=cfg.dt, t_stop=t_stop)
    deck = cell_deck(cfg, process, [cells.staircase(levels, t_level)], noise_files=[path],
                     noise_scale=cfg.noise_scale, save_all=False)
    run = chip_spec(f"tran{chip}", f"tran {cfg.dt:.6g} {t_stop:.12g} 0 {cfg.dt:.6g}", cfg, process, chip, seed,
                    save=("v(a0)", "v(b0)", "v(bias0)", "i(vdd)", "i(esa0)", "i(esb0)"), meta={"chip": chip})
    return engine.job(deck, [run], label=f"chip {chip}", timeout_s=cfg.timeout_s), levels


def analyse_chip(res, levels: np.ndarray, cfg: RngCalibrationConfig, t_level: float) -> dict[str, Any]:
    """P(1), correlation time, effective bits, power and the logistic fit of one chip's staircase transient."""
    t = res["time"]
    x = res["v(a0)"] - res["v(b0)"]
    dt = cfg.dt
    p = np.zeros(levels.size)
    xs_levels = []
    for k in range(levels.size):
        xs = measure.resample(t, x, dt, k * t_level + cfg.settle, (k + 1) * t_level)
        xs_levels.append(xs)
        p[k] = measure.p_one(xs)
    mid = int(np.argmin(np.abs(p - 0.5)))
    bits = xs_levels[mid] > 0
    max_lag = int(min(bits.size // 4, max(50, 20 * cfg.tau_guess / dt)))
    acf = measure.autocorrelation(bits, max_lag)
    tau = measure.tau_from_autocorrelation(acf, dt)
    try:
        d0, d1 = measure.dwell_times(xs_levels[mid], dt, 0.5 * float(np.std(xs_levels[mid])))
        tau_dwell = measure.tau_from_dwells(d0, d1)
    except ValueError:
        tau_dwell = math.nan
    tau_int = measure.integrated_tau(acf, dt)
    duration = t_level - cfg.settle
    n_eff = measure.effective_bits(duration, max(tau_int, dt))
    sigma = measure.binomial_std(np.clip(p, 0.02, 0.98), n_eff)
    fit = measure.fit_logistic(levels, p, sigma)
    vdd = cfg.sizing.vdd
    vbias = res["v(bias0)"]
    power = -vdd * res["i(vdd)"] - 0.5 * vbias * res["i(esa0)"] + 0.5 * vbias * res["i(esb0)"]
    p_avg = float(np.trapezoid(power, t) / (t[-1] - t[0]))
    return {"p": p, "sigma": sigma, "tau": tau, "tau_int": tau_int, "tau_dwell": tau_dwell, "n_eff": n_eff, "acf": acf,
            "power_w": p_avg, "energy_per_bit_j": measure.energy_per_bit(p_avg, max(tau_int, dt)), "fit": fit,
            "std_at_half": float(math.sqrt(0.25 / n_eff)), "points": int(t.size)}


# ---------------------------------------------------------------------------------------------- top level --
@dataclass
class ChipResult:
    chip: int
    v_up: float
    v_down: float
    v0_dc: float
    levels: np.ndarray
    noise: dict[str, float]
    tau_pilot: float = math.nan
    t_level: float = math.nan
    analysis: dict[str, Any] = field(default_factory=dict)


def calibrate_rng(config: dict[str, Any], *, process: str = "generic", quick: bool = False,
                  output: str | Path = "rng.h5", workers: int = 2, seed: int = 0,
                  resume: bool | None = None) -> dict[str, Any]:
    """Run the calibration and write the surrogate file ``output`` plus PNG plots beside it; every ngspice run is
    recorded in the run store beside it (``rng.h5`` -> ``rng.runs.h5``, :mod:`spicenet.spice.recorded`), which
    ``resume`` continues (None: ``spicenet calibrate --resume``'s setting).

    Returns {"output", "fit", "plots"}; ``fit`` holds v0, vs, tau_s, energy_per_bit_j (means over chips),
    r2 (worst chip), max_abs_err (worst point), bits_per_point (fewest effective bits of any point), chips,
    v0_std, vs_std and diagnostics."""
    t_start = time.perf_counter()
    cfg = parse_config(config, process)
    proc = get_process(process)
    if cfg.mismatch not in proc.mismatch_modes:
        raise ConfigError(f"rng calibration: mismatch = {cfg.mismatch!r} is not a mode of process {proc.name} "
                          f"(has {', '.join(proc.mismatch_modes)})")
    if workers < 1:
        raise ConfigError(f"workers: expected >= 1, got {workers}")
    if seed < 0:
        raise ConfigError(f"seed: expected >= 0, got {seed}")
    output = Path(output)
    candidates = list(range(cfg.chips + cfg.extra_chips))
    failures: dict[int, str] = {}
    results: list[ChipResult] = []
    runs = RunRecorder(runs_path(output), resume=resume, process=proc.name, seed=seed,
                       config={"family": "rng", "quick": bool(quick), "config": config})
    with runs.engine(Engine(workers=workers, timeout_s=cfg.timeout_s)) as engine, \
            tempfile.TemporaryDirectory(prefix="spicenet_rng_") as tmp:
        located = locate_v0(engine, cfg, proc, candidates, seed)
        good = {c: r for c, r in located.items() if isinstance(r, dict)}
        failures.update({c: str(r) for c, r in located.items() if not isinstance(r, dict)})
        chosen = sorted(good)[: cfg.chips]
        noise = noise_at(engine, cfg, proc, {c: good[c]["v0_dc"] for c in chosen}, seed)
        by_chip: dict[int, ChipResult] = {}
        for chip in chosen:
            chip_noise = noise[chip]
            if not isinstance(chip_noise, dict):
                failures[chip] = str(chip_noise)
                continue
            by_chip[chip] = ChipResult(chip, good[chip]["v_up"], good[chip]["v_down"], good[chip]["v0_dc"],
                                       good[chip]["v0_dc"] + cfg.levels, chip_noise)
        rms = {c: (r.noise["rms_a"], r.noise["rms_b"]) for c, r in by_chip.items()}
        if cfg.pilot > 0:
            pilots = [pilot_job(engine, cfg, proc, c, r.v0_dc, rms[c], seed, Path(tmp)) for c, r in by_chip.items()]
            bar = _progress(len(pilots), "rng pilots")
            for run_id, res in engine.run(pilots):
                chip = int(run_id.removeprefix("pilot"))
                bar.update(1)
                by_chip[chip].tau_pilot = cfg.tau_guess if isinstance(res, SpicenetError) else pilot_tau(res, cfg)
            bar.close()
        jobs = []
        for chip, r in by_chip.items():
            r.t_level = cfg.t_level(None if math.isnan(r.tau_pilot) else r.tau_pilot)
            job, _ = noise_job(engine, cfg, proc, chip, r.v0_dc, rms[chip], seed, Path(tmp), r.t_level)
            jobs.append(job)
        jobs.sort(key=lambda j: -by_chip[int(j.runs[0].id.removeprefix("tran"))].t_level)  # longest first
        bar = _progress(len(jobs), "rng chips")
        for run_id, res in engine.run(jobs):
            chip = int(run_id.removeprefix("tran"))
            bar.update(1)
            if isinstance(res, SpicenetError):
                failures[chip] = str(res)
                continue
            try:
                by_chip[chip].analysis = analyse_chip(res, by_chip[chip].levels, cfg, by_chip[chip].t_level)
                results.append(by_chip[chip])
            except (ValueError, RuntimeError) as exc:
                failures[chip] = f"analysis failed: {exc}"
        bar.close()
    if not results:
        raise SpicenetError(f"rng calibration: no chip could be measured ({failures})")
    results.sort(key=lambda r: r.chip)
    fit = summarise(results, cfg, failures)
    fit["wall_s"] = round(time.perf_counter() - t_start, 2)
    surrogate = build_surrogate(results, cfg, fit, proc.name, config, seed)
    surrogate.provenance.update(runs.provenance(output))  # the run store and every run of the calibration
    surrogate.save(output)
    plots = write_plots(results, cfg, output)
    return {"output": str(output), "fit": fit, "plots": [str(p) for p in plots]}


def summarise(results: list[ChipResult], cfg: RngCalibrationConfig, failures: dict[int, str]) -> dict[str, Any]:
    """The ``fit`` dict of the contract (issue 4) from the per-chip results."""
    v0 = np.array([r.analysis["fit"]["v0"] for r in results])
    vs = np.array([r.analysis["fit"]["vs"] for r in results])
    tau = np.array([r.analysis["tau"] for r in results])
    energy = np.array([r.analysis["energy_per_bit_j"] for r in results])
    power = np.array([r.analysis["power_w"] for r in results])
    n_eff = np.array([r.analysis["n_eff"] for r in results])
    std = lambda a: float(a.std(ddof=1)) if a.size > 1 else 0.0  # noqa: E731
    return {
        "v0": float(v0.mean()), "vs": float(vs.mean()), "tau_s": float(tau.mean()),
        "energy_per_bit_j": float(energy.mean()),
        "r2": float(min(r.analysis["fit"]["r2"] for r in results)),
        "r2_mean": float(np.mean([r.analysis["fit"]["r2"] for r in results])),
        "max_abs_err": float(max(r.analysis["fit"]["max_abs_err"] for r in results)),
        "bits_per_point": int(np.floor(n_eff.min())),
        "binomial_std": float(math.sqrt(0.25 / n_eff.min())),
        "chips": len(results), "points": cfg.points,
        "v0_std": std(v0), "vs_std": std(vs), "tau_std": std(tau),
        "v0_dc_offset_mean": float(np.mean([r.analysis["fit"]["v0"] - r.v0_dc for r in results])),
        "tau_dwell_s": float(np.nanmean([r.analysis["tau_dwell"] for r in results])),
        "tau_int_s": float(np.mean([r.analysis["tau_int"] for r in results])),
        "power_w": float(power.mean()), "vdd": cfg.vdd, "dt_s": cfg.dt,
        "failed_chips": {str(k): v for k, v in failures.items()},
    }


def build_surrogate(results: list[ChipResult], cfg: RngCalibrationConfig, fit: dict[str, Any], process: str,
                    config: dict[str, Any], seed: int):
    """The SurrogateFile: per-chip v0 [V], vs [V], tau_s [s], their correlation, energy, raw curves."""
    from spicenet.surrogate import SurrogateFile, SurrogateParam

    v0 = np.array([r.analysis["fit"]["v0"] for r in results])
    vs = np.array([r.analysis["fit"]["vs"] for r in results])
    tau = np.array([r.analysis["tau"] for r in results])
    params = {
        "v0": SurrogateParam(v0, unit="V", description="bias at P(1) = 1/2 (differential bias vb)"),
        "vs": SurrogateParam(vs, unit="V", positive=True, description="logistic slope: P = sigmoid((v - v0)/vs)"),
        "tau_s": SurrogateParam(tau, unit="s", positive=True,
                                description="bit-stream autocorrelation time at P ~ 1/2 (exp fit)"),
    }
    corr, names = None, []
    stack = np.vstack([v0, vs, tau])
    if len(results) >= 3 and np.all(stack.std(axis=1) > 0):
        corr = np.corrcoef(stack)
        corr = 0.5 * (corr + corr.T)
        np.fill_diagonal(corr, 1.0)
        if np.linalg.eigvalsh(corr).min() >= -1e-9:
            names = ["v0", "vs", "tau_s"]
        else:
            corr = None
    extra = {
        "chips": np.array([r.chip for r in results]),
        "levels_v": np.vstack([r.levels for r in results]),
        "p_one": np.vstack([r.analysis["p"] for r in results]),
        "p_sigma": np.vstack([r.analysis["sigma"] for r in results]),
        "v0_dc": np.array([r.v0_dc for r in results]),
        "tau_dwell_s": np.array([r.analysis["tau_dwell"] for r in results]),
        "tau_int_s": np.array([r.analysis["tau_int"] for r in results]),
        "acf_at_half": np.vstack([r.analysis["acf"][: min(len(x.analysis["acf"]) for x in results)] for r in results]),
        "power_w": np.array([r.analysis["power_w"] for r in results]),
        "tau_pilot_s": np.array([r.tau_pilot for r in results]),
        "t_level_s": np.array([r.t_level for r in results]),
        "energy_per_bit_j": np.array([r.analysis["energy_per_bit_j"] for r in results]),
        "r2": np.array([r.analysis["fit"]["r2"] for r in results]),
        "noise_rms_a": np.array([[r.noise["rms_a"], r.noise["rms_b"]] for r in results]),
    }
    attrs = {"vdd": cfg.vdd, "dt_s": cfg.dt, "bits_per_point": fit["bits_per_point"], "r2": fit["r2"],
             "max_abs_err": fit["max_abs_err"], "power_w": fit["power_w"], "cell": "continuous-time cross-coupled "
             "subthreshold inverters, filesource shot noise (spicenet.cells.rng.cells)",
             "bit_energy_definition": "E_bit = P_avg * 2 tau_int = P_avg * T / N_eff (J per effective independent bit)",
             "sizing": json.dumps(asdict(cfg.sizing)), "mismatch": cfg.mismatch}
    return SurrogateFile(family="rng", process=process, params=params, correlation=corr, correlation_names=names,
                         energy={"energy_per_bit_j": fit["energy_per_bit_j"]}, extra=extra, attrs=attrs,
                         provenance={"runs_file": "", "run_ids": [f"tran{r.chip}" for r in results],
                                     "config": config, "seed": seed, "mismatch": cfg.mismatch})


def write_plots(results: list[ChipResult], cfg: RngCalibrationConfig, output: Path) -> list[Path]:
    """PNGs beside ``output``: P(1) curves with fits, V0/Vs histograms, autocorrelation, energy per chip."""
    stem = output.with_suffix("")
    paths = []

    fig, ax = subplots(figsize=(6, 4))
    for r in results:
        f = r.analysis["fit"]
        rel = (r.levels - f["v0"]) * 1e3
        line = ax.errorbar(rel, r.analysis["p"], yerr=r.analysis["sigma"], fmt="o", ms=3, label=f"chip {r.chip}")
        fine = np.linspace(r.levels.min(), r.levels.max(), 200)
        ax.plot((fine - f["v0"]) * 1e3, measure.sigmoid(fine, f["v0"], f["vs"]), color=line[0].get_color(), lw=1)
    ax.set_xlabel("bias - V0 of the chip (mV)")
    ax.set_ylabel("P(1)")
    ax.set_title("P(1) per chip with logistic fits")
    if len(results) <= 10:
        ax.legend(fontsize=6)
    paths.append(stem.with_name(stem.name + "_p1.png"))
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)

    fig, axes = subplots(1, 3, figsize=(10, 3.2))
    data = [([r.analysis["fit"]["v0"] * 1e3 for r in results], "V0 (mV)"),
            ([r.analysis["fit"]["vs"] * 1e3 for r in results], "Vs (mV)"),
            ([r.analysis["tau"] * 1e9 for r in results], "tau (ns)")]
    for ax, (values, label) in zip(axes, data):
        ax.hist(values, bins=max(3, min(15, len(values))))
        ax.set_xlabel(label)
    axes[0].set_ylabel("chips")
    fig.suptitle("mismatch distribution over Monte-Carlo chips")
    paths.append(stem.with_name(stem.name + "_hist.png"))
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)

    fig, ax = subplots(figsize=(6, 4))
    for k, r in enumerate(results):
        acf = r.analysis["acf"]
        lags = np.arange(acf.size) * cfg.dt * 1e9
        chip_label = f"chip {r.chip}" if k < 10 else None  # the legend names the first 10 chips
        line = ax.plot(lags, acf, lw=1, label=chip_label)
        ax.plot(lags, np.exp(-lags / (r.analysis["tau"] * 1e9)), "--", lw=0.8, color=line[0].get_color())
    ax.set_xlabel("lag (ns)")
    ax.set_ylabel("autocorrelation of the bit stream")
    ax.set_title("autocorrelation at P ~ 1/2 (dashed: exp(-t/tau))")
    if len(results) > 1:
        ax.legend(fontsize=6, title=None if len(results) <= 10 else f"first 10 of {len(results)} chips",
                  title_fontsize=6)
    paths.append(stem.with_name(stem.name + "_acf.png"))
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)

    fig, ax = subplots(figsize=(6, 4))
    chips = [r.chip for r in results]
    ax.bar([str(c) for c in chips], [r.analysis["energy_per_bit_j"] * 1e18 for r in results])
    ax.set_xlabel("chip")
    ax.set_ylabel("energy per effective bit (aJ)")
    mean_nw = np.mean([r.analysis["power_w"] for r in results]) * 1e9
    ax.set_title(f"E_bit = P_avg * 2 tau_int; mean power {mean_nw:.2f} nW")
    paths.append(stem.with_name(stem.name + "_energy.png"))
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    return paths
