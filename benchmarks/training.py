"""Benchmark: how close the DTM and AIS trainers run to their sampler / ODE solver alone (issue 18), one run.

Prints ONE JSON object on stdout (progress on stderr). Both trainers run at their full configs
(``training/dtm_fashion_full.toml``, ``training/ais_mnist_full.toml``) with the shipped quick surrogates (the
chips' mismatch only changes numbers, not the work):

* ``dtm_full_iter_s``: wall seconds of one training iteration as ``spicenet train dtm`` runs it (a minibatch of the
  real data, a fresh chip, ``DTM.train_step``: T steps x (clamped + free phase) x K sweeps, moments, updates),
  mean over the timed iterations after one warm-up iteration (which builds the samplers).
* ``dtm_gibbs_bound_iter_s``: the same spin updates in the bare sampler, ``BlockGibbsSampler.run`` of
  2 T K sweeps over all N cells of the same graph with ``batch`` chains (T x 2 phases x K x N x batch spin
  updates; the trainer's extra measuring sweep per phase is not counted), best of the repeats.
* ``dtm_efficiency`` = bound / iteration (1 = the trainer costs nothing beyond its sampling).
* ``ais_full_iter_s``: wall seconds of one ``train_ais`` iteration (a fresh chip, the critic's fakes in one batched
  solve without autograd, ``n_critic`` critic steps, one generator solve with backpropagation through the ODE):
  (wall of a run of 1 + k iterations - wall of a run of 1) / k, so set-up and the first iteration drop out.
* ``ais_ode_bound_iter_s``: the ODE work of an iteration alone, forward only: the generator integrating
  (n_critic + 1) x batch latents over its ``n_steps`` stochastic Heun steps in one batched call under
  ``torch.no_grad`` (the backward pass of the generator step is not in the bound), best of the repeats.
* ``ais_efficiency`` = bound / iteration.

Every ``*_s`` key is wall time; the same figures from process CPU time (``time.process_time``: the robust measure on
a shared machine, where wall time includes waiting for a core) are reported as ``*_cpu_s`` and
``*_efficiency_cpu``. One torch thread (``--threads``).

Usage: python benchmarks/training.py [--quick] [--only dtm|ais] [--iters K] [--repeats R] [--threads 1] [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
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
    p.add_argument("--quick", action="store_true", help="2 timed iterations per trainer, 3 bound repeats")
    p.add_argument("--only", choices=["dtm", "ais"], default=None, help="measure one trainer only")
    p.add_argument("--iters", type=int, default=None, help="timed training iterations (default 2 quick, 5)")
    p.add_argument("--repeats", type=int, default=None, help="bound repeats, best kept (default 3 quick, 5)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.iters = args.iters if args.iters is not None else (2 if args.quick else 5)
    args.repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    if args.iters < 1 or args.repeats < 1 or args.threads < 1:
        p.error("--iters, --repeats and --threads must be >= 1")
    return args


def _clock(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall s, process CPU s) of one call of ``fn``."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def _best(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    runs = [_clock(fn) for _ in range(repeats)]
    return min(r[0] for r in runs), min(r[1] for r in runs)


def dtm_section(args: argparse.Namespace) -> dict:
    """DTM trainer iteration vs the bare Gibbs sampler (see the module docstring)."""
    import torch

    import spicenet
    from spicenet.cells.rng.dtm import DTM, uniform_quantiser
    from spicenet.cells.rng.gibbs import BlockGibbsSampler, make_generator
    from spicenet.cells.rng.graph import random_couplings
    from spicenet.cells.rng.training import (ChipModel, _load_data, _StepChips, parse_config, set_data_nodes,
                                             spatial_data_nodes)
    from spicenet.cells.rng import streams
    from spicenet.seeds import torch_generator
    from spicenet.families import load_config

    cfg = parse_config(load_config(None, "training", "dtm_fashion_full", False))
    surrogate = spicenet.shipped_surrogate("rng")
    chips = ChipModel(surrogate, scale=cfg.scale, v0_trim=cfg.v0_trim, v0_residual_std_v=cfg.v0_residual_std_v)
    _log(f"dtm: loading {cfg.dataset} {cfg.image_size}px ({cfg.source})")
    ds = _load_data(cfg, args.seed)
    x_train = torch.as_tensor(ds.flat("train"), dtype=torch.float64)
    dtm = DTM(x_train.shape[1], cfg.dtm_config(args.seed), quantiser=uniform_quantiser(cfg.weight_bits, cfg.weight_max))
    if cfg.spatial_embedding:
        set_data_nodes(dtm, spatial_data_nodes(ds.size, cfg.grid))
    n = dtm.graph.n_nodes
    hook = _StepChips(chips, n, args.seed, torch.device("cpu"))
    dtm.chip_sampler = hook if cfg.enabled else None
    it = {"i": 0}

    def iteration() -> None:  # the loop body of spicenet.cells.rng.training.train
        g = torch_generator(args.seed, streams.BATCH, it["i"])
        idx = torch.randint(0, x_train.shape[0], (cfg.batch,), generator=g)
        hook.step = it["i"]
        dtm.train_step(x_train[idx])
        it["i"] += 1

    _log(f"dtm: {cfg.grid}x{cfg.grid} grid, T={cfg.steps}, K={cfg.sweeps}, batch {cfg.batch}: warm-up iteration")
    warm = _clock(iteration)
    _log(f"dtm: warm-up {warm[0]:.2f} s; timing {args.iters} iterations")
    runs = [_clock(iteration) for _ in range(args.iters)]
    full_wall = sum(r[0] for r in runs) / len(runs)
    full_cpu = sum(r[1] for r in runs) / len(runs)

    sweeps = 2 * cfg.steps * cfg.sweeps
    w, b = random_couplings(dtm.graph, scale=0.3, seed=args.seed)
    smp = BlockGibbsSampler(dtm.graph, w, b, beta=cfg.beta)
    gen = make_generator(args.seed, "cpu")
    state = smp.random_state(cfg.batch, gen)
    smp.run(state, 20, gen)
    _log(f"dtm: bound: {sweeps} sweeps x {n} cells x {cfg.batch} chains, best of {args.repeats}")
    bound_wall, bound_cpu = _best(lambda: smp.run(state, sweeps, gen), args.repeats)
    updates = sweeps * n * cfg.batch
    return {
        "dtm_full_iter_s": full_wall,
        "dtm_gibbs_bound_iter_s": bound_wall,
        "dtm_efficiency": bound_wall / full_wall,
        "dtm_full_iter_cpu_s": full_cpu,
        "dtm_gibbs_bound_iter_cpu_s": bound_cpu,
        "dtm_efficiency_cpu": bound_cpu / full_cpu,
        "dtm_iter_walls_s": [r[0] for r in runs],
        "dtm_warmup_iter_s": warm[0],
        "dtm_spin_updates_per_iter": updates,
        "dtm_bound_spin_updates_per_s": updates / bound_wall,
        "dtm_config": {"config": "training/dtm_fashion_full.toml", "grid": cfg.grid, "cells": n,
                       "edges": int(dtm.graph.n_edges), "steps": cfg.steps, "sweeps": cfg.sweeps, "batch": cfg.batch,
                       "image_size": cfg.image_size, "mismatch": cfg.enabled, "n_train": int(x_train.shape[0])},
    }


def ais_section(args: argparse.Namespace) -> dict:
    """AIS trainer iteration vs the generator's ODE solve alone (see the module docstring)."""
    import torch

    import spicenet
    from spicenet.cells.oscillator.ais import AISGenerator, train_ais
    from spicenet.cells.oscillator.training import (build_ais_config, chip_to_mismatch, load_surrogate_info,
                                                    make_chip_sampler)
    from spicenet.data import load_dataset
    from spicenet.families import load_config

    config = load_config(None, "training", "ais_mnist_full", False)
    cfg, data = build_ais_config(config, args.seed)
    info = load_surrogate_info(spicenet.shipped_surrogate("oscillator"), cfg.n_bits)
    ds = load_dataset(str(data.get("dataset", "mnist")), str(data.get("source", "sample")), size=cfg.height,
                      n_train=int(data.get("n_train", 0)) or None, n_test=int(data.get("n_test", 0)) or None)
    x_train = torch.as_tensor(ds.x_train, dtype=torch.float32)
    n = cfg.n_oscillators
    sampler = make_chip_sampler(info, n, args.seed, 1.0, 1)
    f0 = info.params.f0_hz

    def run(iterations: int) -> float:
        step = {"i": 0}

        def chip_sampler(_g: torch.Generator):  # one fresh chip per iteration, as spicenet train ais
            c = sampler.chip(step=step["i"])
            step["i"] += 1
            return chip_to_mismatch(c, f0, n, torch.device("cpu"))

        return train_ais(x_train, dataclasses.replace(cfg, iterations=iterations), info.params, chip_sampler,
                         progress=False).wall_s

    _log(f"ais: {cfg.height}x{cfg.width}, {n} oscillators, {cfg.n_steps} steps, batch {cfg.batch_size}, "
         f"n_critic {cfg.n_critic}: a run of 1 iteration, then of {1 + args.iters}")
    one = _clock(lambda: run(1))
    more = _clock(lambda: run(1 + args.iters))
    full_wall = (more[0] - one[0]) / args.iters
    full_cpu = (more[1] - one[1]) / args.iters

    gen = AISGenerator(cfg, info.params)
    chip = chip_to_mismatch(sampler.chip(step=0), f0, n, torch.device("cpu"))
    g = torch.Generator().manual_seed(args.seed)
    count = cfg.batch_size * (cfg.n_critic + 1)

    def solve() -> None:
        with torch.no_grad():
            gen(gen.sample_latent(count, g), chip, g)

    solve()
    _log(f"ais: bound: {count} trajectories x {cfg.n_steps} steps, best of {args.repeats}")
    bound_wall, bound_cpu = _best(solve, args.repeats)
    return {
        "ais_full_iter_s": full_wall,
        "ais_ode_bound_iter_s": bound_wall,
        "ais_efficiency": bound_wall / full_wall,
        "ais_full_iter_cpu_s": full_cpu,
        "ais_ode_bound_iter_cpu_s": bound_cpu,
        "ais_efficiency_cpu": bound_cpu / full_cpu,
        "ais_run_1_iter_s": one[0],
        "ais_run_more_iter_s": more[0],
        "ais_config": {"config": "training/ais_mnist_full.toml", "size": cfg.height, "oscillators": n,
                       "edges": int(gen.n_edges), "n_steps": cfg.n_steps, "batch": cfg.batch_size,
                       "n_critic": cfg.n_critic, "trajectories_in_bound": count},
    }


SECTIONS: dict[str, Callable[[argparse.Namespace], dict]] = {"dtm": dtm_section, "ais": ais_section}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    out: dict = {"quick": args.quick, "timed_iters": args.iters, "bound_repeats": args.repeats,
                 "threads": args.threads, "machine": platform.machine(), "cpus": os.cpu_count(),
                 "load_average_start": os.getloadavg()[0]}
    for name, section in SECTIONS.items():
        if args.only in (None, name):
            out.update(section(args))
    out["load_average_end"] = os.getloadavg()[0]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
