"""Benchmark: block Gibbs sweeps per second of spicenet's p-bit sampler vs thrml, on the same graph and batch.

Prints ONE JSON object on stdout; progress goes to stderr. The object is assembled from independent
sections (functions returning dicts, see ``SECTIONS``): ``gibbs_vs_thrml`` measures

    ratio_vs_thrml = (sweeps/s of spicenet.cells.rng.gibbs.BlockGibbsSampler) / (sweeps/s of thrml)

on an L x L torus with a local neighbourhood (default 28 x 28, Moore degree 8, 4 colours) at several batch
sizes (default 64 and 256 chains), both measured in this one run on the same CPU, after JIT warm-up (thrml)
and a warm-up run (torch). A sweep updates every spin once, colour block by colour block, in both libraries.
The headline ``ratio_vs_thrml`` is the smallest ratio over the batch sizes (the conservative figure), for the
sampler's default 16-bit uniforms (conditionals realised to within 2^-17); ``ratio_vs_thrml_24bit_uniforms``
is the same with float32 ``torch.rand`` uniforms (thrml also uses float32 uniforms). Both run single-threaded
by default (``--threads``): torch via ``set_num_threads``, XLA via ``XLA_FLAGS``.

Another section (``spice_bits_ratio``, the SPICE side of the RNG family) is added by appending its function to
``SECTIONS``; the script only merges the returned dicts.

Usage: python benchmarks/gibbs.py [--size 28] [--degree 8] [--pattern moore] [--chains 64 256]
                                  [--sweeps 400] [--repeats 3] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=28, help="grid side L (N = L*L spins)")
    p.add_argument("--degree", type=int, default=8)
    p.add_argument("--pattern", default="moore", choices=["moore", "bipartite"])
    p.add_argument("--chains", type=int, nargs="+", default=[64, 256])
    p.add_argument("--sweeps", type=int, default=50, help="sweeps per timed run")
    p.add_argument("--repeats", type=int, default=20, help="timed rounds (alternating); the best is kept")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for both torch and XLA")
    p.add_argument("--device", default="cpu", help="torch device for spicenet (thrml always runs on CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-thrml", action="store_true", help="measure spicenet only (no ratio)")
    p.add_argument("--spice-us", type=float, default=40.0, help="simulated time per SPICE run (us)")
    p.add_argument("--spice-cells", type=int, default=16, help="cells per deck on the project's SPICE path")
    p.add_argument("--spice-workers", type=int, default=2, help="worker processes on the project's SPICE path")
    p.add_argument("--spice-dt-ns", type=float, default=2.0, help="transient step = noise sample of the project path")
    p.add_argument("--spice-repeats", type=int, default=2, help="timed repeats of each SPICE path (best wall)")
    p.add_argument("--only", choices=["gibbs", "spice"], default=None, help="run one section only")
    return p.parse_args(argv)


def _model(args: argparse.Namespace):
    from spicenet.cells.rng.graph import grid_graph, random_couplings

    g = grid_graph(args.size, degree=args.degree, pattern=args.pattern, periodic=True)
    w, b = random_couplings(g, scale=0.3, seed=args.seed)
    return g, w, b


def _time_interleaved(fns: list[Callable[[], None]], repeats: int) -> tuple[list[float], list[float]]:
    """Best wall time and best process CPU time of each closure over ``repeats`` rounds, the closures
    alternating within each round so that load changes on a shared machine hit all of them alike.

    On a loaded machine the wall time of a run includes time the process waited for a core; the CPU time
    (``time.process_time``: all threads of this process) does not, so with both libraries pinned to one
    compute thread it is the robust measure of the work a sweep costs. Both are reported.
    """
    wall = [float("inf")] * len(fns)
    cpu = [float("inf")] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            t1, c1 = time.perf_counter(), time.process_time()
            wall[k] = min(wall[k], t1 - t0)
            cpu[k] = min(cpu[k], c1 - c0)
    return wall, cpu


def spicenet_runner(args: argparse.Namespace, g, w, b, chains: int, uniform_bits: int = 16) -> Callable[[], None]:
    """A warmed-up closure running ``args.sweeps`` sweeps of BlockGibbsSampler on ``chains`` chains."""
    import torch

    from spicenet.cells.rng.gibbs import BlockGibbsSampler, make_generator

    smp = BlockGibbsSampler(g, w, b, beta=1.0, device=args.device, uniform_bits=uniform_bits)
    gen = make_generator(args.seed, args.device)
    state = smp.random_state(chains, gen)
    sync = torch.cuda.synchronize if smp.device.type == "cuda" else (lambda: None)
    smp.run(state, 20, gen)
    sync()

    def go() -> None:
        smp.run(state, args.sweeps, gen)
        sync()

    return go


def thrml_runner(args: argparse.Namespace, g, w, b, chains: int) -> Callable[[], None]:
    """A compiled, warmed-up closure running ``args.sweeps`` sweeps of thrml's Ising block sampler
    (jit + vmap over chains) on the same graph, couplings and colour blocks."""
    import jax
    import jax.numpy as jnp
    from thrml import Block, SamplingSchedule, SpinNode, sample_states
    from thrml.models import IsingEBM, IsingSamplingProgram, hinton_init

    nodes = [SpinNode() for _ in range(g.n_nodes)]
    edges = [(nodes[i], nodes[j]) for i, j in g.edges]
    model = IsingEBM(nodes, edges, jnp.asarray(b, jnp.float32), jnp.asarray(w, jnp.float32), jnp.array(1.0))
    blocks = [Block([nodes[i] for i in blk]) for blk in g.colour_blocks()]
    program = IsingSamplingProgram(model, free_blocks=blocks, clamped_blocks=[])
    key = jax.random.key(args.seed)
    k_init, k_run = jax.random.split(key)
    init = hinton_init(k_init, model, blocks, (chains,))
    keys = jax.random.split(k_run, chains)
    schedule = SamplingSchedule(n_warmup=args.sweeps, n_samples=1, steps_per_sample=1)
    full = [Block(nodes)]

    @jax.jit
    def run(keys, init):
        return jax.vmap(lambda k, s: sample_states(k, program, schedule, s, [], full))(keys, init)

    jax.block_until_ready(run(keys, init))  # compile + warm-up

    def go() -> None:  # n_warmup sweeps + one observation of the state
        jax.block_until_ready(run(keys, init))

    return go


def gibbs_vs_thrml(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    g, w, b = _model(args)
    _log(f"graph: {args.size}x{args.size} torus, {args.pattern} degree {args.degree}, "
         f"{g.n_nodes} spins, {g.n_edges} edges, {g.n_colours} colours")
    per_batch = []
    for chains in args.chains:
        fns = [spicenet_runner(args, g, w, b, chains, 16), spicenet_runner(args, g, w, b, chains, 24)]
        if not args.skip_thrml:
            fns.append(thrml_runner(args, g, w, b, chains))
        wall, cpu = _time_interleaved(fns, args.repeats)
        ours, ours24 = args.sweeps / cpu[0], args.sweeps / cpu[1]
        _log(f"chains {chains}: spicenet {ours:.1f} sweeps/CPU-s (24-bit uniforms: {ours24:.1f}), "
             f"{args.sweeps / wall[0]:.1f} sweeps/wall-s")
        row = {"chains": chains, "spicenet_sweeps_per_s": ours,
               "spicenet_spin_updates_per_s": ours * g.n_nodes * chains,
               "spicenet_24bit_sweeps_per_s": ours24,
               "spicenet_sweeps_per_wall_s": args.sweeps / wall[0]}
        if not args.skip_thrml:
            theirs = args.sweeps / cpu[2]
            _log(f"chains {chains}: thrml {theirs:.1f} sweeps/CPU-s, {args.sweeps / wall[2]:.1f} sweeps/wall-s "
                 f"-> ratio {ours / theirs:.2f} (wall {wall[2] / wall[0]:.2f})")
            row.update({"thrml_sweeps_per_s": theirs, "thrml_spin_updates_per_s": theirs * g.n_nodes * chains,
                        "thrml_sweeps_per_wall_s": args.sweeps / wall[2],
                        "ratio": ours / theirs, "ratio_24bit": ours24 / theirs, "ratio_wall": wall[2] / wall[0]})
        per_batch.append(row)
    out: dict = {
        "graph": {"size": args.size, "degree": args.degree, "pattern": args.pattern, "periodic": True,
                  "nodes": g.n_nodes, "edges": g.n_edges, "colours": g.n_colours},
        "sweeps_per_run": args.sweeps,
        "repeats": args.repeats,
        "threads": args.threads,
        "device": args.device,
        "batches": per_batch,
        "torch_version": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    if not args.skip_thrml:
        import jax
        import thrml

        out["thrml_version"] = thrml.__version__
        out["jax_version"] = jax.__version__
        out["ratio_vs_thrml"] = min(r["ratio"] for r in per_batch)
        out["ratio_vs_thrml_24bit_uniforms"] = min(r["ratio_24bit"] for r in per_batch)
        out["ratio_vs_thrml_wall"] = min(r["ratio_wall"] for r in per_batch)
        out["spicenet_sweeps_per_s"] = {str(r["chains"]): r["spicenet_sweeps_per_s"] for r in per_batch}
        out["thrml_sweeps_per_s"] = {str(r["chains"]): r["thrml_sweeps_per_s"] for r in per_batch}
    return out


def _stat_errors(bits, dt: float, tau: float) -> tuple[float, float]:
    """(se of P(1), se of tau_int) of one bit stream sampled every ``dt``: P(1) binomial with N_eff = T / (2 tau),
    tau_int by Sokal's variance 2 (2 W + 1) / N tau^2, W = the summation window (5 tau / dt)."""
    import math

    n = bits.size
    p = float(bits.mean())
    n_eff = n * dt / (2 * tau)
    w = 5.0 * tau / dt
    return math.sqrt(max(p * (1 - p), 1e-12) / n_eff), tau * math.sqrt(2 * (2 * w + 1) / n)


def spice_bits_ratio(args: argparse.Namespace) -> dict:
    """SPICE bits per wall-second: the project's RNG simulation path over a naive one-cell TRRANDOM deck.

    Same cell (generic process, the calibration's sizing and low-Vt shifts, nominal devices at vb = 0), same
    noise PSD (shot noise S from the operating point), same measurement (bits = sign of v(a) - v(b) resampled
    every 1 ns after 1 us). Naive: the template ``rng/ct_cell`` with TRRANDOM sources (one Gaussian sample per
    node every 1 ns, rms sqrt(S / 2 ns)), transient step 1 ns, one cell, one worker, seeded (a fresh worker
    process per seeded TRRANDOM run). Project (the path ``validation.py`` uses): ``cells.ct_deck`` with
    ``spice_cells`` cells per deck fed by pre-generated numpy noise through XSPICE filesources, noise sample =
    transient step = ``spice_dt`` (2 ns: the rms is re-derived from the same PSD, sqrt(S / 2 dt), so the
    low-frequency noise the cell integrates is unchanged), only the cell outputs saved, one deck per worker on
    ``spice_workers`` workers, Newton tolerances ``export.SIM_OPTIONS``. Both paths run ``spice_repeats`` times
    (identical seeded runs) and the best wall time of each is kept. Effective bits = sum over cells of
    T / (2 tau_int), tau_int the integrated autocorrelation time of each cell's bit stream measured in that very
    run. ``spice_stats`` checks that both paths sample the same process: P(1) and tau_int of the naive cell vs
    the project's cell mean, each with its standard error (binomial with N_eff; Sokal's for tau_int; the
    project's from the spread over its cells), and ``stats_agree`` = both differences within 3 combined standard errors.
    """
    import math
    import tempfile

    import numpy as np

    from spicenet.cells.rng import cells, export, measure
    from spicenet.spice.engine import Deck, Engine, render
    from spicenet.spice.job import RunSpec
    from spicenet.spice.process import get_process

    t_sim = float(getattr(args, "spice_us", 40.0)) * 1e-6
    n_cells = int(getattr(args, "spice_cells", 16))
    workers = int(getattr(args, "spice_workers", 2))
    dt_p = float(getattr(args, "spice_dt_ns", 2.0)) * 1e-9
    repeats = max(1, int(getattr(args, "spice_repeats", 2)))
    dt, settle = 1e-9, 1e-6
    proc = get_process("generic")
    sz = cells.CellSizing(vdd=0.040, dvtn=-0.25, dvtp=0.25)

    def stats(t, x):
        bits = measure.resample(t, x, dt, settle, None) > 0
        acf = measure.autocorrelation(bits, 2000)
        tau = measure.integrated_tau(acf, dt)
        se_p, se_tau = _stat_errors(bits, dt, tau)
        return float(bits.mean()), tau, (t_sim - settle) / (2 * tau), se_p, se_tau

    _log("spice_bits_ratio: operating point")
    with Engine(workers=1, timeout_s=900) as eng:
        op = eng.simulate_many(Deck(cells.ct_deck([0.0], sz, proc), proc),
                               [RunSpec("op", "op", cells.device_commands(proc, sz, [None], 0))])["op"]
        va, vb = op.scalar("v(a0)"), op.scalar("v(b0)")
        ia, ib = abs(op.scalar("i(vma0)")), abs(op.scalar("i(vmb0)"))
        psd = (cells.shot_noise_psd([ia, ia], [va, sz.vdd - va]), cells.shot_noise_psd([ib, ib], [vb, sz.vdd - vb]))
        rms = tuple(cells.noise_rms(s, dt) for s in psd)
        naive = render("rng/ct_cell", {"vdd": sz.vdd, "inoise": float(np.mean(rms)), "tnoise": dt}, process="generic",
                       mismatch_mode=None)
        run = RunSpec("naive", f"tran {dt:g} {t_sim:.9g} 0 {dt:g}",
                      cells.device_commands(proc, sz, [None], 0, suffixes=[""]), seed=1, save=("v(a)", "v(b)"))
        _log(f"spice_bits_ratio: naive TRRANDOM deck, {t_sim * 1e6:g} us")
        wall_naive = math.inf
        for _ in range(repeats):   # identical runs (same seed): the best wall time is the least disturbed one
            t0 = time.perf_counter()
            res = eng.run_all([eng.job(naive, [run])])["naive"]
            wall_naive = min(wall_naive, time.perf_counter() - t0)
            if isinstance(res, Exception):
                raise res
        p_naive, tau_naive, bits_naive, se_p_naive, se_tau_naive = stats(res["time"], res["v(a)"] - res["v(b)"])
    rms_p = tuple(cells.noise_rms(s, dt_p) for s in psd)
    with tempfile.TemporaryDirectory() as tmp, Engine(workers=workers, timeout_s=900) as eng:
        jobs = []
        for w in range(workers):
            files = [cells.write_noise_file(Path(tmp) / f"n{w}_{k}.txt", seed=1, chip=w, cell=k, rms=rms_p, dt=dt_p,
                                            t_stop=t_sim) for k in range(n_cells)]
            deck = Deck(export.with_sim_options(cells.ct_deck([0.0] * n_cells, sz, proc, noise_files=files,
                                                              save_all=False)), proc)
            save = tuple(f"v({nd}{k})" for k in range(n_cells) for nd in ("a", "b"))
            jobs.append(eng.job(deck, [RunSpec(f"p{w}", f"tran {dt_p:g} {t_sim:.9g} 0 {dt_p:g}",
                                               cells.device_commands(proc, sz, [None] * n_cells, 0), save=save)]))
        _log(f"spice_bits_ratio: project path, {workers} x {n_cells}-cell filesource decks, dt {dt_p * 1e9:g} ns")
        wall_project = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            outs = eng.run_all(jobs)
            wall_project = min(wall_project, time.perf_counter() - t0)
        ps, taus, bits_project = [], [], 0.0
        for r in outs.values():
            if isinstance(r, Exception):
                raise r
            for k in range(n_cells):
                p, tau, nb, _, _ = stats(r["time"], r[f"v(a{k})"] - r[f"v(b{k})"])
                ps.append(p)
                taus.append(tau)
                bits_project += nb
    rate_naive, rate_project = bits_naive / wall_naive, bits_project / wall_project
    ps, taus = np.array(ps), np.array(taus)
    se_p_proj, se_tau_proj = ps.std(ddof=1) / math.sqrt(ps.size), taus.std(ddof=1) / math.sqrt(taus.size)
    z_p = (ps.mean() - p_naive) / math.hypot(se_p_naive, se_p_proj)
    z_tau = (taus.mean() - tau_naive) / math.hypot(se_tau_naive, se_tau_proj)
    return {
        "spice_bits_ratio": rate_project / rate_naive,
        "spice_bits_per_s_project": rate_project, "spice_bits_per_s_naive": rate_naive,
        "spice_wall_s": {"naive": wall_naive, "project": wall_project},
        "spice_stats": {"p1_naive": p_naive, "p1_naive_se": se_p_naive, "tau_naive_s": tau_naive,
                        "tau_naive_se_s": se_tau_naive, "p1_project_mean": float(ps.mean()),
                        "p1_project_se": float(se_p_proj), "tau_project_mean_s": float(taus.mean()),
                        "tau_project_se_s": float(se_tau_proj), "z_p1": float(z_p), "z_tau": float(z_tau),
                        "stats_agree": bool(abs(z_p) < 3 and abs(z_tau) < 3), "cells": n_cells * workers,
                        "sim_time_s": t_sim, "dt_naive_s": dt, "dt_project_s": dt_p, "workers": workers,
                        "repeats": repeats, "options_project": export.SIM_OPTIONS},
    }


# Each section takes the parsed arguments and returns a dict merged into the one JSON object.
SECTIONS: list[Callable[[argparse.Namespace], dict]] = [gibbs_vs_thrml, spice_bits_ratio]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.threads < 1:
        raise SystemExit("--threads: expected >= 1")
    # XLA reads its thread settings at import: pin them before jax is imported anywhere
    os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen={'true' if args.threads > 1 else 'false'} "
                                       f"intra_op_parallelism_threads={args.threads}")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    result: dict = {}
    for section in SECTIONS:
        if args.only == "gibbs" and section is not gibbs_vs_thrml or args.only == "spice" and section is gibbs_vs_thrml:
            continue
        result.update(section(args))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
