"""Resistive-network steady-state solver vs ngspice ``.op``, measured in one run. Prints one JSON object.

For each size (default ``20-10-4``, ``128-32-10`` and Kendall's ``1568-100-10``: 784 pixel inputs, each doubled) one
random network (conductances on the 4-bit levels of the default calibration, 1.25..18.75 uS, diode pair to +-0.3 V
at every free node, input gain 4) and random inputs in [0, 1]:

- ``solver``: the batched torch Newton solver (:func:`spicenet.cells.resistive.solver.solve`, float64, one thread
  unless ``--threads``) on ``--batch`` inputs, timed after one warm-up call -> inputs per second;
- ``ngspice``: the same network as one deck in the engine (shared-library mode, one worker), one ``.op`` per input
  through the alter path (``alter`` on the 2 n_in input sources, then ``op``). The time per ``.op`` is the slope
  between a job of ``k`` and one of ``2k`` inputs, so loading the deck (which the engine does once per job) is not
  charged to ngspice -> inputs per second;
- ``ratio_vs_ngspice[size]`` = solver inputs/s over ngspice inputs/s; ``max_err_v`` = max |V_solver - V_ngspice|
  over every free node of every input ngspice solved (ngspice at its default tolerances, solver at its own);
- ``ratio_vs_bare_op[size]``: the same against a bare ``.op`` (no ``alter`` commands, inputs unchanged), which
  separates ngspice's solve from the cost of pushing 2 n_in ``alter`` commands per input (ngspice finds each
  device by name, which grows with the circuit).
- ``ngspice_s_per_sweep_input[size]``: ngspice through the validation's default solve, the inputs as the points of
  one DC sweep (:func:`spicenet.cells.resistive.netlist.sweep_deck`), per input as the slope between a sweep of k
  and one of 2k inputs (the one-time load and ordering of each run not charged); ``sweep_speedup_vs_op[size]`` =
  seconds per ``.op`` over seconds per sweep input; ``sweep_max_err_v[size]`` = max |V_sweep - V_op|.

Usage: python benchmarks/resistive.py [--sizes 20-10-4,128-32-10,1568-100-10] [--batch 256] [--spice-inputs 8]
       [--device cpu|cuda] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spicenet.cells.resistive.calibrate import spice_node_voltages  # noqa: E402
from spicenet.cells.resistive.network import ResistiveNetwork, programmable_levels  # noqa: E402
from spicenet.cells.resistive.netlist import network_deck  # noqa: E402
from spicenet.spice.engine import Deck, Engine  # noqa: E402
from spicenet.spice.job import RunSpec  # noqa: E402

LEVELS = 1.25e-6 * np.arange(16)


def network(sizes: list[int], seed: int, device: str) -> ResistiveNetwork:
    """Random quantised network of the default calibration's operating point."""
    return ResistiveNetwork(sizes, input_gain=4.0, vb=0.3, v_bias=1.0, g_unit=float(LEVELS[1]),
                            init_range=(0.5, 15.0), quantize=programmable_levels(LEVELS), seed=seed, device=device)


def time_solver(net: ResistiveNetwork, x: torch.Tensor, device: str) -> tuple[float, np.ndarray]:
    """Seconds per input of a batched free-phase solve (median of 3 after a warm-up) and the solution."""
    with torch.no_grad():
        net.equilibrium(x[: min(8, x.shape[0])])
        times = []
        for _ in range(3):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            v = net.equilibrium(x).v
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    return float(np.median(times)) / x.shape[0], v.cpu().numpy()


def time_ngspice(net: ResistiveNetwork, x: torch.Tensor, k: int, engine: Engine) -> tuple[float, np.ndarray]:
    """Seconds per ``.op`` (slope between jobs of k and 2k inputs) and the node voltages of the 2k inputs."""
    t = time.perf_counter()
    spice_node_voltages(net, None, x[:k], engine=engine, options={}, prefix="a")
    t_k = time.perf_counter() - t
    t = time.perf_counter()
    v, _, errors = spice_node_voltages(net, None, x[: 2 * k], engine=engine, options={}, prefix="b")
    t_2k = time.perf_counter() - t
    if errors:
        raise RuntimeError(f"ngspice failed: {errors[:2]}")
    per_op = (t_2k - t_k) / k
    if per_op <= 0:  # timing noise on tiny decks: fall back to the whole 2k job
        per_op = t_2k / (2 * k)
    return per_op, v


def time_ngspice_sweep(net: ResistiveNetwork, x: torch.Tensor, k: int, engine: Engine) -> tuple[float, np.ndarray]:
    """Seconds per input of the DC-sweep solve (slope between one sweep of k and one of 2k inputs) and the node
    voltages of the 2k inputs."""
    times, v = [], np.empty(0)
    for n in (k, 2 * k):
        t = time.perf_counter()
        v, _, errors = spice_node_voltages(net, None, x[:n], engine=engine, options={}, prefix=f"s{n}",
                                           method="sweep", sweep_inputs=n)
        times.append(time.perf_counter() - t)
        if errors:
            raise RuntimeError(f"ngspice failed: {errors[:2]}")
    per_input = (times[1] - times[0]) / k
    return (per_input if per_input > 0 else times[1] / (2 * k)), v


def time_ngspice_op_only(net: ResistiveNetwork, k: int, engine: Engine) -> float:
    """Seconds per bare ``.op`` (no alter commands; slope between jobs of k and 2k runs on one deck)."""
    deck = Deck(network_deck(net))
    times = []
    for n in (k, 2 * k):
        runs = [RunSpec(id=f"o{n}_{b}", analysis="op") for b in range(n)]
        t = time.perf_counter()
        out = engine.simulate_many(deck, runs)
        times.append(time.perf_counter() - t)
        bad = [r for r in out.values() if not hasattr(r, "vectors")]
        if bad:
            raise RuntimeError(f"ngspice failed: {bad[:1]}")
    per_op = (times[1] - times[0]) / k
    return per_op if per_op > 0 else times[1] / (2 * k)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20-10-4,128-32-10,1568-100-10")
    ap.add_argument("--batch", type=int, default=256, help="solver batch (inputs)")
    ap.add_argument("--spice-inputs", type=int, default=0,
                    help="k: ngspice solves k then 2k inputs (default: 20, 10, 2 by size)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-bare", action="store_true", help="skip the bare-.op (no alter) timing")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [[int(s) for s in spec.split("-")] for spec in args.sizes.split(",")]
    out: dict = {"ratio_vs_ngspice": {}, "max_err_v_by_size": {}, "solver_s_per_input": {},
                 "ngspice_s_per_op": {}, "ngspice_s_per_bare_op": {}, "ratio_vs_bare_op": {}, "resistors": {},
                 "ngspice_s_per_sweep_input": {}, "sweep_speedup_vs_op": {}, "sweep_max_err_v": {}}
    with Engine(workers=1, timeout_s=600) as engine:
        for idx, size in enumerate(sizes):
            name = "-".join(map(str, size))
            if size[0] % 2:
                raise SystemExit(f"--sizes: the input layer counts sources (2 per input), got odd {size[0]}")
            # sizes count sources for the input layer as Kendall does (1568 = 784 pixels doubled)
            net = network([size[0] // 2, *size[1:]], seed=args.seed + idx, device=args.device)
            gen = torch.Generator().manual_seed(args.seed + 100 + idx)
            x = torch.rand(args.batch, net.n_in, generator=gen, dtype=torch.float64)
            s_solver, v_solver = time_solver(net, x.to(args.device), args.device)
            k = args.spice_inputs or (20 if net.n_free * net.n_in < 2000 else 10 if net.n_in < 200 else 2)
            s_spice, v_spice = time_ngspice(net, x, k, engine)
            err = float(np.abs(v_solver[: 2 * k] - v_spice).max())
            s_bare = time_ngspice_op_only(net, k, engine) if not args.no_bare else float("nan")
            s_sweep, v_sweep = time_ngspice_sweep(net, x, k, engine)
            out["ngspice_s_per_sweep_input"][name] = s_sweep
            out["sweep_speedup_vs_op"][name] = s_spice / s_sweep
            out["sweep_max_err_v"][name] = float(np.abs(v_sweep - v_spice).max())
            out["ngspice_s_per_bare_op"][name] = s_bare
            out["ratio_vs_bare_op"][name] = s_bare / s_solver
            out["ratio_vs_ngspice"][name] = s_spice / s_solver
            out["max_err_v_by_size"][name] = err
            out["solver_s_per_input"][name] = s_solver
            out["ngspice_s_per_op"][name] = s_spice
            out["resistors"][name] = int(sum(int((w > 0).sum()) for w in net.conductances()[0]) +
                                         sum(int((b > 0).sum()) for b in net.conductances()[1]))
            print(f"{name}: solver {s_solver * 1e6:.1f} us/input, ngspice {s_spice * 1e3:.2f} ms/op "
                  f"({s_bare * 1e3:.2f} ms bare .op, {s_sweep * 1e3:.2f} ms per sweep input), ratio "
                  f"{s_spice / s_solver:.0f} ({s_bare / s_solver:.0f} bare), max err {err:.2e} V", file=sys.stderr)
    out["max_err_v"] = max(out["max_err_v_by_size"].values())
    out.update({"batch": args.batch, "device": args.device, "threads": args.threads,
                "ngspice_tolerances": "defaults (reltol 1e-3, vntol 1e-6, abstol 1e-12)",
                "note": "size names count input sources (2 per pixel), as Kendall et al. 2020"})
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
