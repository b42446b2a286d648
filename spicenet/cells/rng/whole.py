"""The whole trained DTM in ngspice: every p-bit of the grid, every denoising step, chained, for a batch of images.

Hardware schedule (per image, per Monte-Carlo chip). The chip is the full L x L grid of continuous-time p-bit
cells (``machine.grid_deck``); step t of the reverse chain loads step t's quantised couplings and biases
(``machine.map_grid``) with the conditioning gamma_i x_t,i of the previous step's read-out as each data cell's bias
voltage, starts the cells at a random spin state (``.ic``, the surrogate's random start of each step), lets the
coupled cells run for ``step_time_s`` and latches every cell's output at the end: s_k = [v(a_k) > v(b_k)] at
t = step_time_s. The data cells' latched bits are x_{t-1}; they condition step t-1's deck. x_T is uniform noise
(the forward chain's limit), x_0 is the generated image. ``step_time_s`` defaults to K tau (K = the model's sweeps
per step, tau = the calibrated cell's mean correlation time): continuous-time Glauber dynamics at rate 1 / tau
redraws each cell about once per tau, as one block-Gibbs sweep does.

Trim (chip test, per cell): the transition v0_k is located with noise-free up/down ``dc`` sweeps of all cells of a
chip at once (a common sweep source plus a per-cell offset: coarse over +-``sweep_range``, then fine around each
cell's coarse point; v0 = midpoint of the up and down switching points), as the training assumes (``v0_trim``); the
cell's operating point at v0 sizes its shot noise (``cells.shot_noise_psd``). The coupling-DAC gain trim alpha (one
global number: in the 4-cell patch's long stationary runs the couplings act ~13 % weaker than the static mapping)
comes from the patch's closed-loop fit (``validation``) and divides every coupling (``gain_trim = "patch"``), or is
off (``"none"``, the default: on the whole grid's short steps the patch's correction overshoots, measured; see
``ValidationConfig``).

Chained generation: the T rounds run in order; inside a round every (chip, image) deck is an independent job on the
engine's worker pool. After each round the latched states are written to ``<run>/validation/machine/state.npz``; an
interrupted validation with the same settings resumes at the next round.

Surrogate, same chips and initial noise: the trained DTM's own sampler (K block-Gibbs sweeps per step from a random
start) from the same x_T per image, on the calibrated chip model of the training (``ChipModel``: trimmed v0 with
its residual error, per-cell slope mismatch), chip c = the same seed for every image of SPICE chip c. Paired
(teacher-forced) surrogate: for every SPICE step, the surrogate's conditional marginals P(x_{t-1,i} = 1 | x_t^SPICE)
from ``paired_chains`` chains per image.

Metrics: own-feature-net FID (``fid_spicenet_<dataset>``, features normalised by the real data's RMS; NOT
Inception) of the SPICE images and of as many surrogate images against the held-out split; fid_rel =
|FID_spice - FID_surrogate| / FID_surrogate. marginal_mae = mean over pixels of |P_spice(pixel = 1) -
P_surrogate(pixel = 1)|, both conditioned on the same x_1 per image (the comparison measures the circuit's last
step, not the between-image spread): P_spice from R reads of the last step per image (read 0 is the image; reads
``read_spacing_s`` apart, effectively n_eff independent from their measured lag-1 correlation), P_surrogate the
paired conditional marginals averaged over chip-model draws (the surrogate cannot know the SPICE chip's individual
cells; with one draw the figure is reported as ``marginal_mae_one_chip_draw``). Its reads-only floor
(``marginal_mae_floor``) is the same statistic for n_eff Bernoulli draws per image from the surrogate's averaged
marginals; ``marginal_mae_expected_unknown_chip`` (with its sd) is what it reads for a circuit that IS the surrogate
on chips the surrogate does not know (held-out chip-model draws read n_eff times: each chip's cell mismatch moves
its pixels coherently, so that part falls with the number of chips, not with images per chip). The one-read figure
(images only) is reported beside it with its floor, and the unpaired version (SPICE images vs surrogate images)
with its floor.
Energy per image: sum over the T steps of the integral of (Vdd i(vdd) + the coupling network's dissipation)
over the step (the ideal readout buffers and bias DACs are not counted), beside the surrogate's T K N E_bit.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from spicenet.cells.rng import cells, export, machine, streams
from spicenet.errors import SpicenetError
from spicenet.seeds import MONTECARLO_CHIP, Stream, int_seed, ngspice_seed, numpy_generator

__all__ = ["chip_runs", "locate_grid", "run_chain", "validate_machine", "surrogate_chain", "paired_marginals",
           "marginal_mae_floor", "expected_mae_unknown_chip", "effective_reads"]


HELD_OUT_DRAWS = 4
"""Chip-model draws per SPICE chip held out of the surrogate's average to play the circuit in
``expected_mae_unknown_chip``."""


def chip_runs(process, sizing, ids: list[int], seed: int, mismatch: str) -> tuple[tuple[str, ...], int | None]:
    """(alter commands, setseed value) that make a whole-grid deck chip ``ids`` (one chip id per cell).
    "pelgrom": every cell's Pelgrom draws from (seed, ids[k]) as ``alter`` values, no reseed. "pdk" (decks rendered
    with ``mismatch="pdk"``): only the low-Vt shifts as ``alter`` values; the PDK's own per-instance ``agauss``
    mismatch of every cell is drawn by ``setseed derived_seed(seed, ids[0])`` (``spicenet.seeds.ngspice_seed``) +
    ``reset``; every deck of the chip (trim sweeps, operating point, the T steps) lists the same devices in the same
    order, so it draws the same chip."""
    if mismatch == "pelgrom":
        return cells.device_commands(process, sizing, ids, seed), None
    if mismatch == "pdk":
        if "pdk" not in process.mismatch_modes:
            raise ValueError(f"mismatch: process {process.name} has no 'pdk' mismatch (has {process.mismatch_modes})")
        return (cells.device_commands(process, sizing, [None] * len(ids), seed),
                ngspice_seed(seed, MONTECARLO_CHIP, int(ids[0])))
    raise ValueError(f"mismatch: expected 'pelgrom' or 'pdk', got {mismatch!r}")


def _dc_deck(n: int, sizing, process, offsets: np.ndarray, mismatch: str = "pelgrom") -> str:
    """All ``n`` cells uncoupled, noise-free, each bias = v(swp) + offsets[k] (a common sweep source)."""
    text = cells.ct_deck([0.0] * n, sizing, process, mismatch=mismatch,
                         title=f"spicenet rng: {n} uncoupled cells, common bias sweep")
    out = []
    for line in text.splitlines():
        if line.startswith("vb") and " bias" in line and " 0 dc " in line:
            k = int(line.split()[0][2:])
            out.append(f"vb{k} bias{k} swp dc {offsets[k]:.12g}")
        elif line.strip().lower() == ".end":
            out.append("vswp swp 0 dc 0")
            out.append(".end")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def locate_grid(engine, sizing, process, chips: dict[int, list[int]], seed: int, dt: float, sweep_range: float = 0.04,
                coarse_step: float = 5e-4, fine_half: float = 1.5e-3, fine_step: float = 1e-5,
                timeout_s: float = 900.0, mismatch: str = "pelgrom") -> dict[int, dict[str, np.ndarray]]:
    """Per chip {"v0_dc" [n] (V), "rms" [n, 2] (A)}: each cell's noise-free transition (midpoint of the up and down
    switching points of a fine ``dc`` sweep around its coarse crossing) and its shot-noise rms per sample of ``dt``
    from the operating point at v0. ``mismatch``: "pelgrom" or "pdk" (``chip_runs``)."""
    from spicenet.cells.rng.validation import switching_point
    from spicenet.spice.engine import Deck
    from spicenet.spice.job import RunSpec

    out: dict[int, dict[str, np.ndarray]] = {}
    zero = {c: np.zeros(len(ids)) for c, ids in chips.items()}
    setup = {c: chip_runs(process, sizing, ids, seed, mismatch) for c, ids in chips.items()}

    def sweep(offsets: dict[int, np.ndarray], lo: float, hi: float, step: float, both: bool) -> dict:
        jobs = []
        for c, ids in chips.items():
            deck = Deck(_dc_deck(len(ids), sizing, process, offsets[c], mismatch), process, mismatch)
            runs = [RunSpec(f"up{c}", f"dc vswp {lo:.9g} {hi:.9g} {step:.9g}", *setup[c])]
            if both:
                runs.append(RunSpec(f"dn{c}", f"dc vswp {hi:.9g} {lo:.9g} {-step:.9g}", *setup[c]))
            jobs.append(engine.job(deck, runs, label=f"locate {c}", timeout_s=timeout_s))
        res = engine.run_all(jobs)
        for k, v in res.items():
            if isinstance(v, SpicenetError):
                raise v
        return res

    res = sweep(zero, -sweep_range, sweep_range, coarse_step, False)
    coarse: dict[int, np.ndarray] = {}
    for c, ids in chips.items():
        r = res[f"up{c}"]
        v = r[r.scale]
        pts = np.array([switching_point(v, r[f"v(a{k})"] - r[f"v(b{k})"]) for k in range(len(ids))])
        if not np.all(np.isfinite(pts)):
            bad = [ids[k] for k in np.flatnonzero(~np.isfinite(pts))]
            raise SpicenetError(f"whole-machine trim: cells {bad[:5]} show no transition within +-{sweep_range:g} V")
        coarse[c] = pts
    res = sweep(coarse, -fine_half, fine_half, fine_step, True)
    jobs = []
    for c, ids in chips.items():
        r_up, r_dn = res[f"up{c}"], res[f"dn{c}"]
        v0 = np.zeros(len(ids))
        for k in range(len(ids)):
            a = switching_point(r_up[r_up.scale], r_up[f"v(a{k})"] - r_up[f"v(b{k})"])
            b = switching_point(r_dn[r_dn.scale], r_dn[f"v(a{k})"] - r_dn[f"v(b{k})"])
            if not (math.isfinite(a) and math.isfinite(b)):
                raise SpicenetError(f"whole-machine trim: cell {ids[k]} lost its transition in the fine sweep")
            v0[k] = coarse[c][k] + 0.5 * (a + b)
        out[c] = {"v0_dc": v0, "v0_coarse": coarse[c]}
        deck = Deck(_dc_deck(len(ids), sizing, process, v0, mismatch), process, mismatch)
        jobs.append(engine.job(deck, [RunSpec(f"op{c}", "op", *setup[c])], label=f"op {c}", timeout_s=timeout_s))
    res = engine.run_all(jobs)
    for c, ids in chips.items():
        r = res[f"op{c}"]
        if isinstance(r, SpicenetError):
            raise r
        rms = np.zeros((len(ids), 2))
        for k in range(len(ids)):
            v = out[c]["v0_dc"][k]
            va, vb = r.scalar(f"v(a{k})"), r.scalar(f"v(b{k})")
            ia, ib = abs(r.scalar(f"i(vma{k})")), abs(r.scalar(f"i(vmb{k})"))
            sa = cells.shot_noise_psd([ia, ia], [va - v / 2, sizing.vdd - va])
            sb = cells.shot_noise_psd([ib, ib], [vb + v / 2, sizing.vdd - vb])
            rms[k] = (cells.noise_rms(sa, dt), cells.noise_rms(sb, dt))
        out[c]["rms"] = rms
    return out


def _spins(seed: int, stream: Stream, *key: int, n: int) -> np.ndarray:
    return np.where(numpy_generator(seed, stream, *key).random(n) < 0.5, -1.0, 1.0)


def run_chain(engine, dtm, sizing, process, chips: dict[int, list[int]], trims: dict[int, dict[str, np.ndarray]],
              x_init: dict[int, np.ndarray], *, vs_design: float, beta: float, alpha: float, seed: int, dt: float,
              step_time_s: float, vw: float = 2e-4, r_total: float = 10e6, timeout_s: float = 900.0,
              reads: int = 1, read_spacing_s: float = 0.0, state_path: Path | None = None, state_key: str = "",
              progress: bool = True, mismatch: str = "pelgrom") -> dict[str, Any]:
    """The T chained SPICE rounds (module docstring). ``x_init[c]``: x_T [B, D] (+-1) per chip. Returns
    {"x": {t: {c: [B, D]}} (x_{t-1} read after step t; x[T + 1] = x_T), "reads": {c: [B, reads, D]} (the last
    step's data cells read at step_time_s + r read_spacing_s, r = 0..reads-1; read 0 is the image x_0: the extra
    reads only measure the circuit's conditional marginals and cost no energy in the count), "energy_j": {c: [B]}
    (cells + coupling network per image, all steps, each integrated over [0, step_time_s]), "energy_cells_j",
    "energy_coupling_j", "sim_s" (sum of the runs' wall times in the workers), "wall_s", "rounds_resumed"}."""
    from spicenet.progress import progress_bar
    from spicenet.spice.engine import Deck
    from spicenet.spice.job import RunSpec
    from spicenet.spice.measure import supply_energy

    T = dtm.cfg.n_steps
    n = dtm.graph.n_nodes
    data = np.asarray(dtm.data_nodes)
    if reads < 1 or (reads > 1 and not read_spacing_s > 0):
        raise ValueError(f"reads, read_spacing_s: expected reads >= 1 and a spacing > 0 s for reads > 1, got "
                         f"{reads!r}, {read_spacing_s!r}")
    read_times = step_time_s + read_spacing_s * np.arange(reads)
    last = {c: np.zeros((len(x), reads, len(data))) for c, x in x_init.items()}
    xs: dict[int, dict[int, np.ndarray]] = {T + 1: {c: np.asarray(x, np.float64) for c, x in x_init.items()}}
    e_cells = {c: np.zeros(len(x)) for c, x in x_init.items()}
    e_coup = {c: np.zeros(len(x)) for c, x in x_init.items()}
    sim_s, resumed, t_start = 0.0, 0, time.time()
    if state_path is not None and state_path.is_file():
        st = np.load(state_path, allow_pickle=False)
        if str(st["key"]) == state_key:
            for t in range(T, int(st["last_step"]) - 1, -1):
                xs[t] = {c: st[f"x_t{t}_c{c}"] for c in x_init}
            for c in x_init:
                e_cells[c], e_coup[c] = st[f"ecell_c{c}"], st[f"ecoup_c{c}"]
                if int(st["last_step"]) == 1:
                    last[c] = st[f"reads_c{c}"]
            sim_s = float(st["sim_s"])
            resumed = T - int(st["last_step"]) + 1
    work = Path(tempfile.mkdtemp(prefix="spicenet_whole_"))
    try:
        for t in range(T, 0, -1):
            if t in xs:
                continue
            edges, w, _ = machine.grid_step_bm(dtm, t, np.zeros(len(data)))
            t_stop = float(read_times[-1]) if t == 1 else step_time_s
            jobs, maps = [], {}
            for c, ids in chips.items():
                for b_i, x_t in enumerate(xs[t + 1][c]):
                    _, _, h = machine.grid_step_bm(dtm, t, x_t)
                    m = machine.map_grid(n, edges, w, h, beta, vs_design, trims[c]["v0_dc"], sizing.vdd, r_total,
                                         alpha)
                    maps[(c, b_i)] = m
                    stream = 100 + b_i * (T + 1) + t
                    files = [cells.write_noise_file(work / f"c{c}_i{b_i}_k{k}.txt", seed=seed, chip=cid, cell=0,
                                                    rms=trims[c]["rms"][k], dt=dt, t_stop=t_stop + 10 * dt,
                                                    stream=stream) for k, cid in enumerate(ids)]
                    spins = _spins(seed, streams.MACHINE_STEP_SPINS, c, b_i, t, n=n)
                    deck = Deck(export.with_sim_options(machine.grid_deck(
                        m, sizing, process, files, spins, vw=vw, mismatch=mismatch)), process, mismatch)
                    jobs.append(engine.job(deck, [RunSpec(f"s{t}c{c}i{b_i}", f"tran {dt:.6g} {t_stop:.9g} 0 {dt:.6g}",
                                                          *chip_runs(process, sizing, ids, seed, mismatch))],
                                           label=f"step {t} chip {c} image {b_i}", timeout_s=timeout_s))
            xs[t] = {c: np.zeros_like(xs[t + 1][c]) for c in chips}
            bar = progress_bar(len(jobs), f"spice step {t}/{T}", enabled=progress)
            for rid, res in engine.run(jobs):
                bar.update(1)
                c, b_i = (int(v) for v in rid.split("c", 1)[1].split("i"))
                if isinstance(res, SpicenetError):
                    raise SpicenetError(f"whole-machine step {t}, chip {c}, image {b_i}: {res}")
                sim_s += float(getattr(res, "wall_s", 0.0))
                tt = res["time"]
                xk = np.stack([res[f"v(a{k})"] - res[f"v(b{k})"] for k in range(n)], 1)   # [time, n]
                # latch: the state at the read time (the last time point at or before it)
                at = np.clip(np.searchsorted(tt, read_times * (1 + 1e-9), side="right") - 1, 0, len(tt) - 1)
                s_read = np.where(xk[at][:, data] > 0, 1.0, -1.0)                  # [reads, D]
                xs[t][c][b_i] = s_read[0]
                if t == 1:
                    last[c][b_i] = s_read
                keep = tt <= step_time_s * (1 + 1e-9)
                e_cells[c][b_i] += supply_energy(tt[keep], np.full(int(keep.sum()), sizing.vdd), res["i(vdd)"][keep])
                vb = np.stack([res[f"v(bias{k})"] for k in range(n)], 1)[keep]
                vo = sizing.vdd * np.tanh(xk[keep] / vw)
                e_coup[c][b_i] += float(np.trapezoid(machine.grid_coupling_power(maps[(c, b_i)], vb, vo), tt[keep]))
                for k in range(n):
                    (work / f"c{c}_i{b_i}_k{k}.txt").unlink(missing_ok=True)
            bar.close()
            if state_path is not None:
                # dict[str, Any]: numpy's stub would match ** arrays against savez's allow_pickle: bool
                arrays: dict[str, Any] = {f"x_t{s}_c{c}": xs[s][c] for s in range(t, T + 1) for c in chips}
                arrays.update({f"ecell_c{c}": e_cells[c] for c in chips})
                arrays.update({f"ecoup_c{c}": e_coup[c] for c in chips})
                arrays.update({f"reads_c{c}": last[c] for c in chips})
                tmp = state_path.with_suffix(".tmp.npz")
                np.savez(tmp, key=np.array(state_key), last_step=np.array(t), sim_s=np.array(sim_s), **arrays)
                tmp.replace(state_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"x": xs, "reads": last, "energy_j": {c: e_cells[c] + e_coup[c] for c in chips}, "energy_cells_j": e_cells,
            "energy_coupling_j": e_coup, "sim_s": sim_s, "wall_s": time.time() - t_start, "rounds_resumed": resumed}


@torch.no_grad()
def surrogate_chain(dtm, x_init: np.ndarray, chip: tuple[torch.Tensor, torch.Tensor] | None, seed: int
                    ) -> np.ndarray:
    """The trained DTM's own reverse chain (``DTM.sample``: K sweeps per step from a random start) from the given
    x_T [B, D] (+-1) on ``chip`` = (offset, gain) [N]; returns x_0 [B, D]."""
    from spicenet.cells.rng.gibbs import make_generator

    gen = make_generator(int(seed))
    x = torch.as_tensor(np.asarray(x_init), dtype=torch.float64)
    b = x.shape[0]
    for t in range(dtm.cfg.n_steps, 0, -1):
        p = dtm.steps[t - 1]
        cb = torch.zeros((dtm.graph.n_nodes, b), dtype=torch.float64)
        cb[dtm._data_idx] = dtm.quantiser(p.gamma)[:, None] * x.T
        smp = dtm._build(p, cb, clamp=False, chip=chip if chip is not None else (None, None))
        s = smp.run(smp.random_state(b, gen), dtm.cfg.sweeps, gen)
        x = s[dtm._data_idx].T.double().cpu()
    return x.numpy()


@torch.no_grad()
def paired_marginals(dtm, step: int, x_cond: np.ndarray, chip: tuple[torch.Tensor, torch.Tensor] | None,
                     chains: int, seed: int) -> np.ndarray:
    """P(x_{t-1,i} = 1 | x_t) [B, D] of the surrogate's step ``step`` (K sweeps from a random start, as in
    generation) for each conditioning row of ``x_cond`` [B, D], from ``chains`` chains per row."""
    from spicenet.cells.rng.gibbs import make_generator

    gen = make_generator(int(seed))
    x = torch.as_tensor(np.asarray(x_cond), dtype=torch.float64)
    b = x.shape[0]
    xr = x.repeat_interleave(chains, 0)                                    # [B * chains, D]
    p = dtm.steps[step - 1]
    cb = torch.zeros((dtm.graph.n_nodes, xr.shape[0]), dtype=torch.float64)
    cb[dtm._data_idx] = dtm.quantiser(p.gamma)[:, None] * xr.T
    smp = dtm._build(p, cb, clamp=False, chip=chip if chip is not None else (None, None))
    s = smp.run(smp.random_state(xr.shape[0], gen), dtm.cfg.sweeps, gen)
    on = (s[dtm._data_idx].T.double().cpu() > 0).double().reshape(b, chains, -1)
    return on.mean(1).numpy()


def marginal_mae_floor(p: np.ndarray, reps: int = 50, seed: int = 0, draws: float = 1.0) -> float:
    """Expected mean-over-pixels |mean_b f_b,i - mean_b p_b,i| when f_b,i is the fraction of ``draws`` independent
    Bernoulli(p_b,i) bits (p [B, D]; ``draws`` rounded, >= 1): the value ``marginal_mae`` takes for a circuit that
    realises the surrogate exactly, read ``draws`` effectively independent times per image (finite-sample floor)."""
    rng = np.random.default_rng(seed)
    p = np.asarray(p, np.float64)
    k = max(1, int(round(draws)))
    return float(np.mean([np.abs(rng.binomial(k, p).mean(0) / k - p.mean(0)).mean() for _ in range(reps)]))


def expected_mae_unknown_chip(held: dict[int, list[np.ndarray]], pred: np.ndarray, draws: float, reps: int = 64,
                              seed: int = 0) -> tuple[float, float]:
    """(mean, sd) of ``marginal_mae`` for a circuit that IS the surrogate, on chips whose cells the surrogate does
    not know: per chip c, one of the held-out chip-model draws ``held[c]`` (each [B_c, D]: that draw's marginals on
    chip c's conditioning rows) plays the circuit, read ``draws`` effectively independent times per image (Bernoulli
    fractions), and is compared with ``pred`` [sum B_c, D] (the surrogate's chip-averaged marginals, rows in chip
    order). Each chip's own cell mismatch shifts its pixels coherently over its images, so this expectation falls
    with the number of chips, not of images per chip; ``marginal_mae_floor`` (reads only) omits it."""
    rng = np.random.default_rng(seed)
    k = max(1, int(round(draws)))
    pred = np.asarray(pred, np.float64)
    out = []
    for _ in range(reps):
        circ = np.concatenate([held[c][rng.integers(len(held[c]))] for c in sorted(held)])
        if circ.shape != pred.shape:
            raise ValueError(f"held-out marginals: expected rows of shape {pred.shape}, got {circ.shape}")
        out.append(np.abs(rng.binomial(k, np.clip(circ, 0, 1)).mean(0) / k - pred.mean(0)).mean())
    return float(np.mean(out)), float(np.std(out))


def _expected_lag1(rho: float, n_r: int) -> float:
    """E[num] / E[den] of the lag-1 autocorrelation estimate about the mean of ``n_r`` points of a stationary
    sequence with autocorrelation rho^|k| (unit variance): with c_t = (1/R) sum_j rho^|t-j| and v = (1/R) sum_t
    c_t, E[sum_t d_t d_t+1] = sum_{t<R-1} (rho - c_t - c_t+1 + v) and E[sum_t d_t^2] = R (1 - v)."""
    idx = np.arange(n_r)
    c = (rho ** np.abs(idx[:, None] - idx[None, :])).mean(1)
    v = float(c.mean())
    num = float(np.sum(rho - c[:-1] - c[1:] + v))
    return num / (n_r * (1.0 - v))


def effective_reads(reads: np.ndarray) -> tuple[float, float]:
    """(n_eff, rho) of the ``R`` reads per image and pixel in ``reads`` [B, R, D] (+-1): rho = the lag-1
    correlation of the reads (an AR(1) / two-state Markov sequence, autocorrelation rho^k), estimated about each
    (image, pixel) mean, pooled, and de-biased by solving E[estimate](rho) = estimate (``_expected_lag1``: the
    mean removal biases a short sequence's estimate low); n_eff = R (1 - rho) / (1 + rho) (an AR(1) sequence's
    effective sample count), clipped to [1, R]. R = 1 gives (1, nan)."""
    r = np.asarray(reads, np.float64)
    if r.ndim != 3:
        raise ValueError(f"reads: expected [B, R, D], got shape {r.shape}")
    n_r = r.shape[1]
    if n_r < 2:
        return 1.0, math.nan
    d = r - r.mean(1, keepdims=True)
    den = float((d * d).sum())
    raw = float((d[:, 1:] * d[:, :-1]).sum() / den) if den > 0 else -1.0
    grid = np.linspace(0.0, 0.999, 1000)
    expected = np.array([_expected_lag1(float(g), n_r) for g in grid])     # increasing in rho
    rho = float(np.interp(raw, expected, grid)) if raw > expected[0] else 0.0
    return float(min(max(n_r * (1 - rho) / (1 + rho), 1.0), n_r)), rho


def _plot(path: Path, spice: dict[int, np.ndarray], sur: dict[int, np.ndarray], size: int, per_row: int = 8) -> Path:
    from spicenet.plotting import subplots

    chips = sorted(spice)
    k = min(per_row, min(len(spice[c]) for c in chips))
    fig, axes = subplots(2 * len(chips), 1, figsize=(1.0 * k + 1, 2.3 * len(chips) + 0.5), dpi=100, squeeze=False)
    for r, c in enumerate(chips):
        for j, (label, imgs) in enumerate((("SPICE", spice[c]), ("surrogate", sur[c]))):
            ax = axes[2 * r + j, 0]
            row = np.concatenate([np.pad((imgs[i].reshape(size, size) > 0).astype(float), 1, constant_values=0.5)
                                  for i in range(k)], 1)
            ax.imshow(row, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_ylabel(f"chip {c}\n{label}", fontsize=8)
    fig.suptitle("same chip, same initial noise x_T: whole grid in ngspice vs the trained sampler", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return path


def validate_machine(run_dir: Path, engine, *, dtm, tcfg: dict, sizing, process, surrogate_path: Path,
                     n_chips: int, images: int, seed: int, cfg, alpha_patch: float | None, vs_nominal: float,
                     e_bit: float, progress: bool = True) -> dict[str, Any]:
    """Whole-machine validation (module docstring) of a trained DTM run. ``cfg``: the ``ValidationConfig``
    (fields ``machine_*``, ``dt``, ``vw``, ``r_total``). Returns the "machine" result: per chip rows and the gap
    keys (``fid_rel``, ``marginal_mae``, ``cells_simulated``, ``steps``, ``images``, energies)."""
    from spicenet.cells.rng.training import ChipModel

    t0 = time.time()
    chipm = ChipModel(surrogate_path, scale=float(tcfg.get("eval_scale", 1.0)),
                      v0_trim=bool(tcfg.get("v0_trim", True)),
                      v0_residual_std_v=float(tcfg.get("v0_residual_std_v", 5e-5)))
    vs_nom = float(vs_nominal)
    plan = _machine_plan(dtm, chipm, cfg, alpha_patch, n_chips, images, seed)

    from spicenet.surrogate_schema import load_surrogate

    mismatch = str(load_surrogate(surrogate_path, "rng").attrs.get("mismatch", "pelgrom"))
    t1 = time.time()
    trims = locate_grid(engine, sizing, process, plan.chips, seed, plan.dt, timeout_s=cfg.timeout_s,
                        mismatch=mismatch)
    locate_s = time.time() - t1
    out_dir = Path(run_dir) / "validation"
    (out_dir / "machine").mkdir(parents=True, exist_ok=True)
    key = _chain_state_key(plan, seed, n_chips, cfg, mismatch, trims)
    chain = run_chain(engine, dtm, sizing, process, plan.chips, trims, plan.x_init, vs_design=vs_nom,
                      beta=float(dtm.cfg.beta), alpha=plan.alpha, seed=seed, dt=plan.dt, step_time_s=plan.step_time,
                      vw=cfg.vw, r_total=cfg.r_total, timeout_s=cfg.timeout_s, reads=cfg.machine_reads,
                      read_spacing_s=plan.spacing, state_path=out_dir / "machine" / "state.npz", state_key=key,
                      progress=progress, mismatch=mismatch)

    # ------------------------------------------------------------------------------ surrogate + metrics --
    ds, ref, net = _reference_images(tcfg)
    spice_img = {c: chain["x"][1][c] for c in plan.chips}
    e_bit = float(e_bit) if e_bit is not None else math.nan
    sur = _surrogate_predictions(dtm, chipm, chain, plan, seed, cfg.machine_chains, cfg.machine_chip_draws)
    gap = _gap_metrics(dtm, chipm, chain, plan, sur, seed, ref, ds.name, net)
    e_sur = plan.steps * plan.sweeps * plan.n * e_bit if math.isfinite(e_bit) else None
    rows = _chip_rows(chain, plan, trims, sur, gap["pixel_on_spice"], ref, ds.name, net)
    plot = _save_images(out_dir, plan, spice_img, sur.images)
    return _machine_result(plan, gap, chain, rows, cfg, mismatch, e_sur, locate_s, plot, t0)


@dataclass(frozen=True)
class _MachinePlan:
    """What a whole-machine validation simulates: ``n`` grid cells, ``steps`` T, ``sweeps`` K, ``d`` data pixels,
    ``images`` per chip, the calibrated cell correlation time ``tau`` [s], the step time [s] and the read spacing
    [s] (both whole multiples of the transient step ``dt`` [s]), the coupling-DAC gain trim ``alpha``, the cell chip
    ids of every chip and its initial noise x_T [images, d] (+-1)."""

    n: int
    steps: int
    sweeps: int
    d: int
    images: int
    tau: float
    step_time: float
    dt: float
    spacing: float
    alpha: float
    chips: dict[int, list[int]]
    x_init: dict[int, np.ndarray]


def _machine_plan(dtm, chipm, cfg, alpha_patch: float | None, n_chips: int, images: int, seed: int) -> _MachinePlan:
    """The plan of a validation: step time K tau (or ``cfg.machine_step_time_s``) [s], transient step
    (``cfg.machine_dt`` or ``cfg.dt``) [s], read spacing 2 tau (or ``cfg.machine_read_spacing_s``) [s], the gain trim
    (the patch's alpha with ``machine_gain_trim = "patch"``, else 1), cell chip ids ``streams.MACHINE_CELLS`` (``50000 +
    997 seed + 1000 c + k``) and x_T per chip from ``seed``; tau is the surrogate's mean ``tau_s`` (40 ns without
    one)."""
    n = dtm.graph.n_nodes
    T, K = dtm.cfg.n_steps, dtm.cfg.sweeps
    d = dtm.n_data
    tau = float(chipm.model.dists["tau_s"].mean) if "tau_s" in chipm.model.dists else 40e-9
    step_time = cfg.machine_step_time_s if cfg.machine_step_time_s > 0 else K * tau
    dt = cfg.machine_dt if cfg.machine_dt > 0 else cfg.dt
    step_time = dt * math.ceil(step_time / dt)
    spacing = cfg.machine_read_spacing_s if cfg.machine_read_spacing_s > 0 else 2 * tau
    spacing = dt * math.ceil(spacing / dt)
    alpha = float(alpha_patch) if (cfg.machine_gain_trim == "patch" and alpha_patch) else 1.0
    chips = {c: streams.MACHINE_CELLS.ids(seed, c, n) for c in range(n_chips)}
    x_init = {c: _spins(seed, streams.MACHINE_X_T, c, n=images * d).reshape(images, d) for c in chips}
    return _MachinePlan(n, T, K, d, images, tau, step_time, dt, spacing, alpha, chips, x_init)


def _chain_state_key(plan: _MachinePlan, seed: int, n_chips: int, cfg, mismatch: str,
                     trims: dict[int, dict[str, np.ndarray]]) -> str:
    """16 hex digits naming the SPICE chain's settings (seed, chips, images, trim, timing, reads, mismatch, coupling
    network, every chip's trimmed v0): a saved chain state resumes only under the same key."""
    return hashlib.sha256(json.dumps({"seed": seed, "chips": n_chips, "images": plan.images, "alpha": plan.alpha,
                                      "step": plan.step_time, "dt": plan.dt,
                                      "reads": cfg.machine_reads, "spacing": plan.spacing, "mismatch": mismatch,
                                      "vw": cfg.vw, "r": cfg.r_total,
                                      "v0": {c: trims[c]["v0_dc"].round(12).tolist() for c in plan.chips}},
                                     sort_keys=True).encode()).hexdigest()[:16]


def _reference_images(tcfg: dict) -> tuple[Any, np.ndarray, Any]:
    """(the training's dataset, its held-out images flattened (+-1) [N, D], the dataset's own feature net)."""
    from spicenet.data import load_dataset
    from spicenet.metrics import load_feature_net

    ds = load_dataset(tcfg["dataset"], tcfg["source"], tcfg.get("data_path") or None, size=tcfg["image_size"],
                      encoding="spin", n_train=tcfg.get("n_train") or None, n_test=tcfg.get("n_test") or None)
    ref = ds.flat("test")
    net, _ = load_feature_net(ds.name, train_if_missing=True)
    return ds, ref, net


@dataclass
class _SurrogatePredictions:
    """The surrogate's side per chip c: ``images`` x_0 [B, D] (+-1) from the SPICE chip's x_T on chip-model draw c;
    ``paired`` P(x_0 = 1 | x_1^SPICE) [B, D] averaged over the chip-model draws; ``paired_draw`` the same from chip
    c's own draw alone; ``held`` the held-out draws' marginals (``HELD_OUT_DRAWS`` arrays [B, D])."""

    images: dict[int, np.ndarray]
    paired: dict[int, np.ndarray]
    paired_draw: dict[int, np.ndarray]
    held: dict[int, list[np.ndarray]]


def _surrogate_predictions(dtm, chipm, chain: dict[str, Any], plan: _MachinePlan, seed: int, chains: int,
                           draws: int) -> _SurrogatePredictions:
    """The surrogate's images and teacher-forced marginals on the SPICE chain's conditioning (module docstring):
    ``chains`` chains per image in all, split over ``draws`` chip-model draws."""
    n = plan.n
    sur = _SurrogatePredictions({}, {}, {}, {})
    for c in plan.chips:
        chip = chipm.nonideality(int_seed(seed, streams.MACHINE_CHIP, c), n)
        sur.images[c] = surrogate_chain(dtm, plan.x_init[c], chip, int_seed(seed, streams.MACHINE_CHAIN, c))
        # the surrogate's prediction for a trimmed chip whose cells it does not know: its marginals averaged over
        # ``draws`` chip-model draws (chain c's own draw first), machine_chains chains per image in all
        per_draw = max(1, chains // draws)
        runs = [paired_marginals(dtm, 1, chain["x"][2][c], chip if m == 0 else
                                 chipm.nonideality(int_seed(seed, streams.MACHINE_DRAW, c, m), n), per_draw,
                                 int_seed(seed, streams.MACHINE_PAIRED, c, m))
                for m in range(draws)]
        sur.paired[c] = np.mean(runs, 0)
        sur.paired_draw[c] = runs[0]
        # held-out chip-model draws (not in the average) that play a circuit equal to the surrogate on this chip
        sur.held[c] = [paired_marginals(dtm, 1, chain["x"][2][c],
                                        chipm.nonideality(int_seed(seed, streams.MACHINE_HELD_DRAW, c, h), n),
                                        chains // 4, int_seed(seed, streams.MACHINE_HELD_CHAIN, c, h))
                       for h in range(HELD_OUT_DRAWS)]
    return sur


def _gap_metrics(dtm, chipm, chain: dict[str, Any], plan: _MachinePlan, sur: _SurrogatePredictions, seed: int,
                 ref: np.ndarray, ds_name: str, net) -> dict[str, Any]:
    """SPICE vs surrogate over all chips (module docstring): own-feature FIDs of the SPICE images, the surrogate
    images and a second surrogate image set (other x_T); the marginal MAEs (reads, one read, one chip draw,
    unpaired) with their floors and the unknown-chip expectation; the reads' count, n_eff and lag-1 correlation;
    the image count and the fraction of SPICE pixels on."""
    from spicenet.cells.rng.training import _fid

    chips, n, d, images = plan.chips, plan.n, plan.d, plan.images
    all_sp = np.concatenate([chain["x"][1][c] for c in chips])
    all_su = np.concatenate([sur.images[c] for c in chips])
    all_pp = np.concatenate([sur.paired[c] for c in chips])
    all_reads = np.concatenate([chain["reads"][c] for c in chips])                  # [B, R, D]
    p_spice = (all_reads > 0).mean(1)                                               # [B, D]
    n_eff, rho = effective_reads(all_reads)
    fid_sp = _fid(torch.as_tensor(all_sp), ref, ds_name, net)
    fid_su = _fid(torch.as_tensor(all_su), ref, ds_name, net)
    on_sp = (all_sp > 0).astype(float)
    out: dict[str, Any] = {"fid_spice": fid_sp, "fid_surrogate": fid_su}
    out["marginal_mae"] = float(np.abs(p_spice.mean(0) - all_pp.mean(0)).mean())
    out["marginal_mae_floor"] = marginal_mae_floor(all_pp, seed=seed, draws=n_eff)
    out["marginal_mae_expected_unknown_chip"], out["marginal_mae_expected_unknown_chip_sd"] = \
        expected_mae_unknown_chip(sur.held, all_pp, n_eff, seed=seed)
    out["marginal_mae_one_read"] = float(np.abs(on_sp.mean(0) - all_pp.mean(0)).mean())
    out["marginal_mae_one_read_floor"] = marginal_mae_floor(all_pp, seed=seed)
    out["marginal_mae_one_chip_draw"] = float(np.abs(
        p_spice.mean(0) - np.concatenate([sur.paired_draw[c] for c in chips]).mean(0)).mean())
    out["marginal_mae_unpaired"] = float(np.abs(on_sp.mean(0) - (all_su > 0).mean(0)).mean())
    # floor of the unpaired statistic: two independent image sets of this size from the surrogate
    alt = np.concatenate([surrogate_chain(dtm,
                                          _spins(seed, streams.MACHINE_X_ALT, c, n=images * d).reshape(images, d),
                                          chipm.nonideality(int_seed(seed, streams.MACHINE_CHIP, c), n),
                                          int_seed(seed, streams.MACHINE_ALT_CHAIN, c))
                          for c in chips])
    out["marginal_mae_unpaired_floor"] = float(np.abs((alt > 0).mean(0) - (all_su > 0).mean(0)).mean())
    out["fid_surrogate_other_seed"] = _fid(torch.as_tensor(alt), ref, ds_name, net)
    out.update({"reads_per_image": int(all_reads.shape[1]), "reads_n_eff": n_eff, "reads_lag1_corr": rho,
                "images": int(all_sp.shape[0]), "pixel_on_spice": float(on_sp.mean())})
    return out


def _chip_rows(chain: dict[str, Any], plan: _MachinePlan, trims: dict[int, dict[str, np.ndarray]],
               sur: _SurrogatePredictions, pixel_on_spice: float, ref: np.ndarray, ds_name: str, net
               ) -> list[dict[str, Any]]:
    """One row per SPICE chip: its image count, own-feature FIDs (SPICE, surrogate; None under 4 images per chip),
    marginal MAE, mean energies per image [J] (total, cells, coupling network), the spread of its trimmed v0 [V],
    its first and last cell chip ids and the fractions of pixels on (SPICE: all chips; surrogate: this chip)."""
    from spicenet.cells.rng.training import _fid

    rows = []
    for c in plan.chips:
        e = chain["energy_j"][c]
        spice_c, sur_c = chain["x"][1][c], sur.images[c]
        fid_ok = plan.images >= 4
        rows.append({"chip": c, "images": int(len(spice_c)),
                     "fid_spice": _fid(torch.as_tensor(spice_c), ref, ds_name, net) if fid_ok else None,
                     "fid_surrogate": _fid(torch.as_tensor(sur_c), ref, ds_name, net) if fid_ok else None,
                     "marginal_mae": float(np.abs((chain["reads"][c] > 0).mean(1).mean(0)
                                                  - sur.paired[c].mean(0)).mean()),
                     "energy_per_image_j": float(e.mean()),
                     "energy_cells_per_image_j": float(chain["energy_cells_j"][c].mean()),
                     "energy_coupling_per_image_j": float(chain["energy_coupling_j"][c].mean()),
                     "v0_dc_std_v": float(trims[c]["v0_dc"].std()),
                     "cell_chip_ids": [plan.chips[c][0], plan.chips[c][-1]],
                     "pixel_on_spice": pixel_on_spice, "pixel_on_surrogate": float((sur_c > 0).mean())})
    return rows


def _save_images(out_dir: Path, plan: _MachinePlan, spice_img: dict[int, np.ndarray],
                 sur_img: dict[int, np.ndarray]) -> Path:
    """Writes ``out_dir/machine_images.png`` (SPICE vs surrogate images per chip) and ``out_dir/machine/images.npz``
    (SPICE and surrogate images and x_T per chip, +-1); returns the plot's path."""
    plot = _plot(out_dir / "machine_images.png", spice_img, sur_img, int(round(math.sqrt(plan.d))))
    # casts: numpy's stub would match the ** arrays against savez_compressed's allow_pickle: bool
    chips = plan.chips
    np.savez_compressed(out_dir / "machine" / "images.npz",
                        **cast("dict[str, Any]", {f"spice_c{c}": spice_img[c] for c in chips}),
                        **cast("dict[str, Any]", {f"surrogate_c{c}": sur_img[c] for c in chips}),
                        **cast("dict[str, Any]", {f"x_init_c{c}": plan.x_init[c] for c in chips}))
    return plot


def _machine_result(plan: _MachinePlan, gap: dict[str, Any], chain: dict[str, Any], rows: list[dict[str, Any]],
                    cfg, mismatch: str, e_sur: float | None, locate_s: float, plot: Path, t0: float
                    ) -> dict[str, Any]:
    """The "machine" result of ``validate_machine``: the gap metrics with the relative FID gaps, sizes, energies per
    image [J] (SPICE mean over chips, surrogate T K N E_bit), timing (step, dt, read spacing [s]), the trims,
    the simulation cost (CPU and wall seconds since ``t0``), the per-chip rows and the plot."""
    n, T, K, tau, step_time = plan.n, plan.steps, plan.sweeps, plan.tau, plan.step_time
    fid_sp, fid_su, fid_su_alt = gap["fid_spice"], gap["fid_surrogate"], gap["fid_surrogate_other_seed"]
    n_img = gap["images"]
    e_sp = float(np.mean([r["energy_per_image_j"] for r in rows]))
    sim_h = chain["sim_s"] / 3600.0
    return {
        "fid_spice": fid_sp, "fid_surrogate": fid_su, "fid_surrogate_other_seed": fid_su_alt,
        "fid_rel": abs(fid_sp - fid_su) / fid_su, "fid_rel_floor": abs(fid_su_alt - fid_su) / fid_su,
        **{k: gap[k] for k in ("marginal_mae", "marginal_mae_floor", "marginal_mae_one_read",
                               "marginal_mae_one_read_floor", "marginal_mae_one_chip_draw",
                               "marginal_mae_expected_unknown_chip", "marginal_mae_expected_unknown_chip_sd",
                               "reads_per_image")},
        "read_spacing_s": plan.spacing, "reads_n_eff": gap["reads_n_eff"], "reads_lag1_corr": gap["reads_lag1_corr"],
        "marginal_chip_draws": cfg.machine_chip_draws, "marginal_mae_unpaired": gap["marginal_mae_unpaired"],
        "marginal_mae_unpaired_floor": gap["marginal_mae_unpaired_floor"],
        "cells_simulated": n, "grid_cells": n, "steps": T, "images": n_img, "chips": len(plan.chips),
        "energy_per_image_spice_j": e_sp, "energy_per_image_surrogate_j": e_sur,
        "energy_ratio_spice_over_surrogate": e_sp / e_sur if e_sur else None,
        "step_time_s": step_time, "read_out": f"latch every cell at t = step_time_s ({step_time * 1e9:.0f} ns "
                                              f"= K tau, K = {K}, tau = {tau * 1e9:.1f} ns) after a random start",
        "dt_s": plan.dt, "coupling_gain_trim": plan.alpha, "gain_trim_mode": cfg.machine_gain_trim,
        "mismatch": mismatch,
        "sim_cpu_s": chain["sim_s"], "spice_wall_s": chain["wall_s"], "locate_wall_s": locate_s,
        "images_per_cpu_hour": (n_img / sim_h) if sim_h > 0 else None,
        "cpu_s_per_step_deck": chain["sim_s"] / max(1, n_img * T),
        "rounds_resumed": chain["rounds_resumed"], "chips_detail": rows, "plots": [str(plot)],
        "wall_s": time.time() - t0,
    }
