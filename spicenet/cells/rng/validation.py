"""``spicenet validate RUN``: a small Boltzmann machine of the trained DTM, exported to ngspice and sampled there.

Machine. The t = 1 (last denoising) step of the trained DTM, restricted to a compact patch of ``n_cells`` p-bits
(<= 12) at the grid centre: its (quantised) couplings inside the patch, its biases plus the conditioning
gamma_i x_1,i of the data nodes, with x_1 a held-out image noised by the forward process; couplings to nodes
outside the patch are dropped. (``bm="random"`` validates a seeded random machine instead.) Its exact law
P(s) ∝ exp(beta (sum J s s + sum b s)) comes from enumeration (``gibbs.exact_enumeration``).

SPICE, per Monte-Carlo chip (Pelgrom mismatch of every transistor, fresh chip ids):
1. trim: each cell's transition is located with noise-free up/down ``dc`` sweeps of its bias (midpoint), its
   operating point sizes its shot noise (S = 2 q sum I coth(Vds / 2 V_T), ``cells.shot_noise_psd``), then one
   noisy transient of the uncoupled cells at v0_dc + vs_nom * (-span, 0, +span) measures P(1) per level and a
   weighted least-squares fit of logit(P) = (v - v0) / vs gives each cell's (v0, vs);
2. export (``export.py``): the BM becomes resistors from buffered cell outputs into the bias nodes, mapped with
   the trimmed v0 and the nominal vs of the surrogate (exact mapping in export.py's docstring);
3. a noisy transient of the coupled network; bits = [v(a_k) > v(b_k)] read every ``spacing_s`` after
   ``settle_s``; the empirical law of the n-bit states is compared with the exact law: total-variation distance,
   marginals <s_i>, pairwise correlations <s_i s_j>;
4. energy per sample = (mean cell supply power + coupling-network dissipation) x spacing (the ideal readout
   buffers are not counted).

Surrogate, for the same machine: block Gibbs (``BlockGibbsSampler``) on (a) the SPICE chip's measured cells
(gain = vs_k / vs_nom, offset 0 after the trim) and (b) fresh chips of the calibrated distribution with the trim
error of the training config; TV vs exact with as many samples as SPICE had, and the finite-sample floor
(TV of the same number of i.i.d. exact draws).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spicenet.cells.rng import cells, export
from spicenet.errors import ConfigError, SpicenetError

__all__ = ["ValidationConfig", "validate", "extract_bm", "tv_distance", "state_counts", "tv_floor",
           "fit_trim", "switching_point"]


@dataclass
class ValidationConfig:
    """Validation settings (quick defaults in ``quick()``). Times in s, voltages in V, resistances in Ohm."""

    n_cells: int = 9
    samples: int = 12000
    spacing_s: float = 100e-9
    settle_s: float = 2e-6
    trim_level_s: float = 40e-6
    trim_span: float = 1.5
    sweep_range: float = 0.04
    sweep_step: float = 2e-5
    dt: float = 1e-9
    vw: float = 2e-4
    r_total: float = 10e6
    surrogate_samples: int = 100000
    bm: str = "run"
    random_scale: float = 0.5
    timeout_s: float = 900.0

    @classmethod
    def quick(cls) -> "ValidationConfig":
        return cls(n_cells=4, samples=3000, trim_level_s=20e-6)

    def __post_init__(self) -> None:
        checks = {"n_cells": 1 <= self.n_cells <= export.MAX_CELLS, "samples": self.samples >= 100,
                  "spacing_s": self.spacing_s >= 5 * self.dt, "settle_s": self.settle_s >= 0,
                  "trim_level_s": self.trim_level_s > 1e-6, "trim_span": 0 < self.trim_span <= 5,
                  "dt": 0 < self.dt <= 1e-8, "vw": self.vw > 0, "r_total": self.r_total > 0,
                  "surrogate_samples": self.surrogate_samples >= 1000, "bm": self.bm in ("run", "random")}
        for k, ok in checks.items():
            if not ok:
                raise ConfigError(f"rng validation: {k} = {getattr(self, k)!r} is out of range")


# --------------------------------------------------------------------------------------------- statistics --
def state_counts(bits: np.ndarray) -> np.ndarray:
    """Counts [2^n] of the states of bit rows [M, n] (state k: bit i set when cell i is 1)."""
    bits = np.asarray(bits)
    if bits.ndim != 2 or bits.shape[1] > 20:
        raise ValueError(f"bits: expected [M, n <= 20], got {bits.shape}")
    k = (bits.astype(np.int64) << np.arange(bits.shape[1])).sum(1)
    return np.bincount(k, minlength=2 ** bits.shape[1])


def tv_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Total variation 1/2 sum |p - q| of two distributions (counts are normalised)."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"p, q: expected equal 1-D shapes, got {p.shape}, {q.shape}")
    return 0.5 * float(np.abs(p / p.sum() - q / q.sum()).sum())


def tv_floor(probs: np.ndarray, m: int, reps: int = 50, seed: int = 0) -> float:
    """Mean TV between ``m`` i.i.d. draws from ``probs`` and ``probs`` (the estimator's finite-sample floor)."""
    rng = np.random.default_rng(seed)
    return float(np.mean([tv_distance(rng.multinomial(m, probs), probs) for _ in range(reps)]))


def moments(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(<s_i> [n], <s_i s_j> [n, n]) of bit rows [M, n] mapped to spins 2 b - 1."""
    s = 2.0 * np.asarray(bits, np.float64) - 1.0
    return s.mean(0), (s.T @ s) / s.shape[0]


def exact_moments(states: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return probs @ states, states.T @ (states * probs[:, None])


def switching_point(v: np.ndarray, x: np.ndarray) -> float:
    """Bias (V) at the first sign change of x along a dc sweep (linear interpolation); NaN when none."""
    s = np.sign(x)
    idx = np.nonzero(s[:-1] * s[1:] < 0)[0]
    if idx.size == 0:
        return math.nan
    i = int(idx[0])
    return float(v[i] + (v[i + 1] - v[i]) * x[i] / (x[i] - x[i + 1]))


def fit_trim(levels: np.ndarray, p: np.ndarray, n_eff: np.ndarray) -> tuple[float, float]:
    """(v0, vs) of logit(p) = (v - v0) / vs by weighted least squares (weights = 1 / var(logit p) =
    n_eff p (1 - p)); p is clipped to [1 / (2 n_eff), 1 - 1 / (2 n_eff)]."""
    levels, p, n_eff = (np.asarray(a, np.float64) for a in (levels, p, n_eff))
    if levels.shape != p.shape or levels.size < 2:
        raise ValueError(f"levels, p: expected equal shapes with >= 2 points, got {levels.shape}, {p.shape}")
    pc = np.clip(p, 0.5 / n_eff, 1 - 0.5 / n_eff)
    y = np.log(pc / (1 - pc))
    w = n_eff * pc * (1 - pc)
    a = np.vstack([levels, np.ones_like(levels)]).T * np.sqrt(w)[:, None]
    slope, icpt = np.linalg.lstsq(a, y * np.sqrt(w), rcond=None)[0]
    if not slope > 0:
        raise ValueError(f"p: P(1) does not rise with the bias (slope {slope:.3g} 1/V)")
    return float(-icpt / slope), float(1.0 / slope)


# ------------------------------------------------------------------------------------------------ machine --
def extract_bm(dtm, n_cells: int, x_cond: np.ndarray, step: int = 1) -> dict[str, Any]:
    """The patch machine of DTM step ``step`` (module docstring): {"j" [n, n], "b" [n], "nodes", "beta"}.

    ``x_cond``: the conditioning image x_t [D] (±1)."""
    g = dtm.graph
    side = int(round(math.sqrt(g.n_nodes)))
    rows = int(math.floor(math.sqrt(n_cells)))
    cols = int(math.ceil(n_cells / rows))
    r0, c0 = (side - rows) // 2, (side - cols) // 2
    nodes = [(r0 + r) * side + (c0 + c) for r in range(rows) for c in range(cols)][:n_cells]
    p = dtm.steps[step - 1]
    w = dtm.quantiser(p.weights).double().numpy()
    bias = dtm.quantiser(p.biases).double().numpy().copy()
    gam = dtm.quantiser(p.gamma).double().numpy()
    x = np.asarray(x_cond, np.float64)
    bias[dtm.data_nodes] += gam * x
    pos = {nd: i for i, nd in enumerate(nodes)}
    j = np.zeros((n_cells, n_cells))
    for e, (a, bb) in enumerate(g.edges):
        if a in pos and bb in pos:
            j[pos[a], pos[bb]] += w[e]
            j[pos[bb], pos[a]] += w[e]
    return {"j": j, "b": bias[nodes], "nodes": nodes, "beta": float(dtm.cfg.beta)}


def random_bm(n: int, scale: float, seed: int) -> dict[str, Any]:
    """A seeded random machine on a ring plus chords: J_ij, b_i ~ N(0, scale^2) (about 2n couplings)."""
    rng = np.random.default_rng(seed)
    j = np.zeros((n, n))
    for i in range(n):
        for d in (1, 2):
            if n > d and (d == 1 or n > 4):
                k = (i + d) % n
                if j[i, k] == 0 and i != k:
                    j[i, k] = j[k, i] = rng.normal(0, scale)
    return {"j": j, "b": rng.normal(0, scale, n), "nodes": list(range(n)), "beta": 1.0}


def _edges(j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    iu = np.argwhere(np.triu(j != 0, 1))
    return iu.astype(np.int64), j[iu[:, 0], iu[:, 1]]


# ------------------------------------------------------------------------------------------------- SPICE --
def _sizing(sf) -> cells.CellSizing:
    if "sizing" in sf.attrs:
        return cells.CellSizing(**json.loads(sf.attrs["sizing"]))
    return cells.CellSizing(vdd=float(sf.attrs.get("vdd", cells.CellSizing().vdd)))


def _locate_and_noise(engine, sizing, process, cids: list[int], cfg: ValidationConfig, seed: int
                      ) -> dict[int, dict[str, float]]:
    from spicenet.spice.engine import Deck
    from spicenet.spice.job import RunSpec

    deck = Deck(cells.ct_deck([0.0], sizing, process), process)
    r, s = cfg.sweep_range, cfg.sweep_step
    runs = []
    for cid in cids:
        cmd = cells.device_commands(process, sizing, [cid], seed)
        runs.append(RunSpec(f"up{cid}", f"dc vb0 {-r:.9g} {r:.9g} {s:.9g}", cmd, save=("v(a0)", "v(b0)")))
        runs.append(RunSpec(f"dn{cid}", f"dc vb0 {r:.9g} {-r:.9g} {-s:.9g}", cmd, save=("v(a0)", "v(b0)")))
    out = engine.simulate_many(deck, runs, timeout_s=cfg.timeout_s)
    found: dict[int, dict[str, float]] = {}
    for cid in cids:
        pts = []
        for key in (f"up{cid}", f"dn{cid}"):
            res = out[key]
            if isinstance(res, SpicenetError):
                raise res
            pts.append(switching_point(res[res.scale], res["v(a0)"] - res["v(b0)"]))
        if not all(math.isfinite(p) for p in pts):
            raise SpicenetError(f"cell chip {cid}: no transition within +-{r:g} V of bias")
        found[cid] = {"v0_dc": 0.5 * (pts[0] + pts[1])}
    runs = [RunSpec(f"op{cid}", "op", cells.device_commands(process, sizing, [cid], seed)
                    + (f"alter vb0 dc = {found[cid]['v0_dc']:.12g}",)) for cid in cids]
    out = engine.simulate_many(deck, runs, timeout_s=cfg.timeout_s)
    for cid in cids:
        res = out[f"op{cid}"]
        if isinstance(res, SpicenetError):
            raise res
        v = found[cid]["v0_dc"]
        va, vb = res.scalar("v(a0)"), res.scalar("v(b0)")
        ia, ib = abs(res.scalar("i(vma0)")), abs(res.scalar("i(vmb0)"))
        sa = cells.shot_noise_psd([ia, ia], [va - v / 2, sizing.vdd - va])
        sb = cells.shot_noise_psd([ib, ib], [vb + v / 2, sizing.vdd - vb])
        found[cid]["rms"] = (cells.noise_rms(sa, cfg.dt), cells.noise_rms(sb, cfg.dt))
    return found


def _bits(res, n: int, t0: float, spacing: float, m: int) -> np.ndarray:
    t = res["time"]
    ts = t0 + spacing * np.arange(m)
    if ts[-1] > t[-1] + 1e-12:
        raise SpicenetError(f"transient ended at {t[-1]:.3g} s before the last sample time {ts[-1]:.3g} s")
    return np.stack([np.interp(ts, t, res[f"v(a{k})"] - res[f"v(b{k})"]) > 0 for k in range(n)], axis=1)


def _gibbs_counts(j: np.ndarray, b: np.ndarray, beta: float, gain: np.ndarray | None, offset: np.ndarray | None,
                  n_samples: int, seed: int) -> np.ndarray:
    from spicenet.cells.rng.gibbs import BlockGibbsSampler, make_generator
    from spicenet.cells.rng.graph import graph_from_edges

    n = b.shape[0]
    edges, w = _edges(j)
    graph = graph_from_edges(n, edges)
    chains = 100
    smp = BlockGibbsSampler(graph, w, b, beta, offset=None if offset is None else torch.as_tensor(offset),
                            gain=None if gain is None else torch.as_tensor(gain), dtype=torch.float64)
    gen = make_generator(seed)
    counts, _ = smp.histogram(smp.random_state(chains, gen), max(1, n_samples // chains), gen, burn_in=50)
    return counts.sum(0).numpy()


def validate(run_dir: Path, *, chips: int | None = None, quick: bool = False, workers: int = 2, seed: int = 0,
             config: ValidationConfig | None = None, progress: bool = True) -> dict[str, Any]:
    """Export the run's patch machine to ngspice, sample it on ``chips`` Monte-Carlo chips and compare with the
    surrogate and exact enumeration. Returns {"surrogate", "spice", "gap", "chips"}; writes
    ``<run>/validation/{validation.json, validation.png}``."""
    from tqdm import tqdm

    from spicenet.cells.rng.gibbs import exact_enumeration
    from spicenet.cells.rng.training import ChipModel, load_model
    from spicenet.spice.engine import Deck, Engine
    from spicenet.spice.job import RunSpec
    from spicenet.spice.process import get_process
    from spicenet.surrogate import SurrogateFile
    from spicenet.train.mismatch import _seed_int

    t_start = time.time()
    run_dir = Path(run_dir)
    cfg = config or (ValidationConfig.quick() if quick else ValidationConfig())
    n_chips = int(chips) if chips is not None else (2 if quick else 5)
    if n_chips < 1:
        raise ConfigError(f"chips: expected >= 1, got {n_chips}")
    meta = json.loads((run_dir / "run.json").read_text())
    tcfg = json.loads((run_dir / "config.json").read_text())
    dtm, blob = load_model(run_dir)
    sur_path = Path(blob["surrogate"]) if Path(blob["surrogate"]).is_file() else Path(meta["surrogate"])
    sf = SurrogateFile.load(sur_path)
    process = get_process(sf.process)
    sizing = _sizing(sf)
    vs_nom = float(blob["vs_nominal"])
    cfg.dt = float(sf.attrs.get("dt_s", cfg.dt))

    # ------------------------------------------------------------------------------------ the machine --
    if cfg.bm == "run":
        from spicenet.data import load_dataset

        ds = load_dataset(tcfg["dataset"], tcfg["source"], tcfg.get("data_path") or None, size=tcfg["image_size"],
                          encoding="spin", n_train=tcfg.get("n_train") or None, n_test=tcfg.get("n_test") or None)
        g = torch.Generator().manual_seed(seed)
        x0 = torch.as_tensor(ds.flat("test")[:1], dtype=torch.float64)
        _, x1 = dtm.noised_pair(x0, 1, g)
        bm = extract_bm(dtm, cfg.n_cells, x1[0].numpy(), step=1)
    else:
        bm = random_bm(cfg.n_cells, cfg.random_scale, seed)
    j, b, beta, n = bm["j"], bm["b"], bm["beta"], cfg.n_cells
    edges, w = _edges(j)
    ex = exact_enumeration(n, edges, w, b, beta)
    probs = ex.probs
    m_ex, c_ex = exact_moments(ex.states, probs)
    iu = np.triu_indices(n, 1)
    floor = tv_floor(probs, cfg.samples, seed=seed)
    uniform_tv = tv_distance(probs, np.ones_like(probs))

    # ------------------------------------------------------------------------------------------- SPICE --
    base = 1000 + 97 * int(seed)
    cids = {c: [base + 32 * c + k for k in range(n)] for c in range(n_chips)}
    work = Path(tempfile.mkdtemp(prefix="spicenet_val_"))
    spice_chips: list[dict[str, Any]] = []
    wall_spice = 0.0
    try:
        with Engine(workers=max(1, workers), timeout_s=cfg.timeout_s) as eng:
            t0 = time.time()
            found = _locate_and_noise(eng, sizing, process, [c for v in cids.values() for c in v], cfg, seed)
            # trim transients: uncoupled cells, staircase of 3 levels around each cell's v0_dc
            offs = vs_nom * np.array([-cfg.trim_span, 0.0, cfg.trim_span])
            t_trim = cfg.trim_level_s * len(offs)
            jobs = []
            for c, ids in cids.items():
                files = [cells.write_noise_file(work / f"trim_c{c}_k{k}.txt", seed=seed, chip=cid, cell=0,
                                                rms=found[cid]["rms"], dt=cfg.dt, t_stop=t_trim, stream=2)
                         for k, cid in enumerate(ids)]
                biases = [cells.staircase(found[cid]["v0_dc"] + offs, cfg.trim_level_s) for cid in ids]
                deck = Deck(cells.ct_deck(biases, sizing, process, noise_files=files), process)
                save = tuple(f"v({nd}{k})" for k in range(n) for nd in ("a", "b"))
                jobs.append(eng.job(deck, [RunSpec(f"trim{c}", f"tran {cfg.dt:.6g} {t_trim:.9g} 0 {cfg.dt:.6g}",
                                                   cells.device_commands(process, sizing, ids, seed), save=save)],
                                    label=f"trim {c}", timeout_s=cfg.timeout_s))
            trims = eng.run_all(jobs)
            tau_guess = float(sf.params["tau_s"].mean) if "tau_s" in sf.params else 50e-9
            settle = min(1e-6, 0.2 * cfg.trim_level_s)
            meas: dict[int, dict[str, np.ndarray]] = {}
            for c, ids in cids.items():
                res = trims[f"trim{c}"]
                if isinstance(res, SpicenetError):
                    raise res
                t = res["time"]
                v0f, vsf = np.zeros(n), np.zeros(n)
                for k, cid in enumerate(ids):
                    x = res[f"v(a{k})"] - res[f"v(b{k})"]
                    ps = []
                    for li in range(len(offs)):
                        ts = np.arange(li * cfg.trim_level_s + settle, (li + 1) * cfg.trim_level_s, cfg.dt * 5)
                        ps.append(float(np.mean(np.interp(ts, t, x) > 0)))
                    n_eff = np.full(len(offs), (cfg.trim_level_s - settle) / (2 * tau_guess))
                    v0f[k], vsf[k] = fit_trim(found[cid]["v0_dc"] + offs, np.array(ps), n_eff)
                meas[c] = {"v0": v0f, "vs": vsf, "v0_dc": np.array([found[cid]["v0_dc"] for cid in ids])}
            # coupled networks
            t_stop = cfg.settle_s + cfg.spacing_s * cfg.samples + 10 * cfg.dt
            jobs, maps = [], {}
            for c, ids in cids.items():
                mp = export.map_weights(j, b, beta, vs_nom, meas[c]["v0"], sizing.vdd, cfg.r_total)
                maps[c] = mp
                files = [cells.write_noise_file(work / f"bm_c{c}_k{k}.txt", seed=seed, chip=cid, cell=0,
                                                rms=found[cid]["rms"], dt=cfg.dt, t_stop=t_stop, stream=3)
                         for k, cid in enumerate(ids)]
                deck = Deck(export.bm_deck(mp, sizing, process, files, vw=cfg.vw), process)
                save = tuple(f"v({nd}{k})" for k in range(n) for nd in ("a", "b", "bias")) + ("i(vdd)",)
                jobs.append(eng.job(deck, [RunSpec(f"bm{c}", f"tran {cfg.dt:.6g} {t_stop:.12g} 0 {cfg.dt:.6g}",
                                                   cells.device_commands(process, sizing, ids, seed), save=save)],
                                    label=f"bm {c}", timeout_s=cfg.timeout_s))
            bar = tqdm(total=len(jobs), desc="spice bm", file=sys.stderr, disable=not progress, leave=False)
            outs = {}
            for rid, res in eng.run(jobs):
                outs[rid] = res
                bar.update(1)
            bar.close()
            wall_spice = time.time() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)

    from spicenet.spice import measure

    surrogate_same: list[dict[str, Any]] = []
    for c, ids in cids.items():
        res = outs[f"bm{c}"]
        if isinstance(res, SpicenetError):
            spice_chips.append({"chip": c, "error": str(res)})
            continue
        bits = _bits(res, n, cfg.settle_s, cfg.spacing_s, cfg.samples)
        cnt = state_counts(bits)
        mean, corr = moments(bits)
        s = 2.0 * bits - 1.0
        lag1 = float(np.mean([np.corrcoef(s[:-1, k], s[1:, k])[0, 1] if s[:, k].std() > 0 else 1.0
                              for k in range(n)]))
        t = res["time"]
        sel = t >= cfg.settle_s
        duration = float(t[sel][-1] - t[sel][0])
        e_cells = measure.supply_energy(t[sel], np.full(sel.sum(), sizing.vdd), res["i(vdd)"][sel])
        vb_ = np.stack([res[f"v(bias{k})"][sel] for k in range(n)], 1)
        # the buffers' outputs, recomputed from the cells (same law as the B sources; not every mode saves them)
        vo_ = np.stack([sizing.vdd * np.tanh((res[f"v(a{k})"][sel] - res[f"v(b{k})"][sel]) / cfg.vw)
                        for k in range(n)], 1)
        pc = export.coupling_power(maps[c], vb_, vo_)
        e_coup = float(np.trapezoid(pc, t[sel]))
        p_cells, p_coup = e_cells / duration, e_coup / duration
        gain = meas[c]["vs"] / vs_nom
        sc = _gibbs_counts(j, b, beta, gain, None, cfg.surrogate_samples, _seed_int(seed, 11, c))
        surrogate_same.append({"chip": c, "tv_vs_exact": tv_distance(sc, probs), "gain": gain.tolist()})
        spice_chips.append({
            "chip": c, "cell_chip_ids": ids, "tv_vs_exact": tv_distance(cnt, probs),
            "tv_vs_surrogate_same_chip": tv_distance(cnt, sc),
            "marginal_max_abs_err": float(np.abs(mean - m_ex).max()),
            "corr_max_abs_err": float(np.abs(corr[iu] - c_ex[iu]).max()) if n > 1 else 0.0,
            "marginals": mean.tolist(), "lag1_autocorr": lag1,
            "power_cells_w": p_cells, "power_coupling_w": p_coup,
            "energy_per_sample_j": (p_cells + p_coup) * cfg.spacing_s,
            "v0_dc": meas[c]["v0_dc"].tolist(), "v0_trim": meas[c]["v0"].tolist(), "vs_trim": meas[c]["vs"].tolist(),
            "counts": cnt.tolist(),
        })
    ok = [s for s in spice_chips if "error" not in s]
    if not ok:
        raise SpicenetError(f"rng validation: every chip failed: {[s['error'] for s in spice_chips]}")

    # ---------------------------------------------------------------------- surrogate on fresh chips --
    chipm = ChipModel(sur_path, scale=float(tcfg.get("eval_scale", 1.0)), v0_trim=bool(tcfg.get("v0_trim", True)),
                      v0_residual_std_v=float(tcfg.get("v0_residual_std_v", 5e-5)))
    fresh = []
    for c in range(n_chips):
        off, gain = chipm.nonideality(_seed_int(seed, 12, c), n)
        sc_m = _gibbs_counts(j, b, beta, gain.numpy(), off.numpy(), cfg.samples, _seed_int(seed, 13, c))
        sc_big = _gibbs_counts(j, b, beta, gain.numpy(), off.numpy(), cfg.surrogate_samples, _seed_int(seed, 14, c))
        fresh.append({"tv_vs_exact": tv_distance(sc_m, probs), "tv_vs_exact_many": tv_distance(sc_big, probs)})
    ideal = _gibbs_counts(j, b, beta, None, None, cfg.surrogate_samples, _seed_int(seed, 15))

    tvs = np.array([s["tv_vs_exact"] for s in ok])
    energies = np.array([s["energy_per_sample_j"] for s in ok])
    e_bit = float(sf.energy.get("energy_per_bit_j", math.nan))
    surrogate = {
        "tv_ideal_sampler": tv_distance(ideal, probs),
        "tv_same_chips_mean": float(np.mean([s["tv_vs_exact"] for s in surrogate_same])),
        "tv_fresh_chips_mean": float(np.mean([f["tv_vs_exact"] for f in fresh])),
        "tv_fresh_chips_many_samples_mean": float(np.mean([f["tv_vs_exact_many"] for f in fresh])),
        "samples": cfg.samples, "samples_many": cfg.surrogate_samples,
        "energy_per_sample_j": e_bit * n if math.isfinite(e_bit) else None,
        "same_chips": surrogate_same, "fresh_chips": fresh,
    }
    spice = {
        "tv_vs_exact_mean": float(tvs.mean()), "tv_vs_exact_worst": float(tvs.max()),
        "energy_per_sample_j": float(energies.mean()), "chips": spice_chips, "samples": cfg.samples,
        "spacing_s": cfg.spacing_s, "wall_s": wall_spice, "failed": len(spice_chips) - len(ok),
    }
    gap = {
        "tv_distance": float(tvs.mean()),
        "tv_distance_worst": float(tvs.max()),
        "tv_floor_iid": floor,
        "tv_spice_vs_surrogate_same_chip": float(np.mean([s["tv_vs_surrogate_same_chip"] for s in ok])),
        "tv_exact_vs_uniform": uniform_tv,
        "marginal_max_abs_err": float(max(s["marginal_max_abs_err"] for s in ok)),
        "corr_max_abs_err": float(max(s["corr_max_abs_err"] for s in ok)),
        "energy_per_sample_j": float(energies.mean()),
        "energy_ratio_spice_over_surrogate": (float(energies.mean()) / surrogate["energy_per_sample_j"]
                                              if surrogate["energy_per_sample_j"] else None),
    }
    machine = {"source": cfg.bm, "n_cells": n, "beta": beta, "j": j.tolist(), "b": b.tolist(),
               "nodes": bm["nodes"], "max_abs_j": float(np.abs(j).max()), "max_abs_b": float(np.abs(b).max()),
               "exact_probs": probs.tolist(), "vs_design_v": vs_nom, "vo_v": sizing.vdd, "r_total_ohm": cfg.r_total}
    out_dir = run_dir / "validation"
    out_dir.mkdir(exist_ok=True)
    result = {"surrogate": surrogate, "spice": spice, "gap": gap, "chips": len(ok), "machine": machine,
              "config": asdict(cfg), "wall_s": time.time() - t_start, "quick": bool(quick)}
    result["plots"] = [str(_plot(out_dir / "validation.png", probs, ok, surrogate_same, cids))]
    (out_dir / "validation.json").write_text(json.dumps(result, indent=2, default=float))
    return result


def _plot(path: Path, probs: np.ndarray, spice_chips: list[dict], same: list[dict], cids) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 0.25 * probs.size), 3.5), dpi=100)
    k = np.arange(probs.size)
    ax.bar(k, probs, color="0.8", label="exact")
    for s in spice_chips:
        cnt = np.asarray(s["counts"], float)
        ax.plot(k, cnt / cnt.sum(), "o", ms=3, label=f"SPICE chip {s['chip']} (TV {s['tv_vs_exact']:.3f})")
    ax.set_xlabel("state index (bit i = cell i)")
    ax.set_ylabel("probability")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
