"""Engine throughput against raw ngspice shared-library loops, measured in one run. Prints one JSON object.

- ``mc_ratio_vs_raw``: a 1,000-chip Pelgrom Monte-Carlo sweep of the 5-stage ring oscillator (a 5 ns transient per
  chip, the output waveform stored) through ``spicenet sweep`` (planning, worker start-up, worker processes, the
  columnar HDF5 store) over a raw loop (libngspice via PySpice: ``alter`` + ``tran`` + read the output vector) doing
  the same 1,000 transients in the same number of already started processes. ``mc_op_*``: the same for the ``op``
  of the subthreshold current mirror (~0.1-0.3 ms per solve), where the per-run cost of the worker pool (one
  message per run, the engine's per-run ngspice commands) and of the store (~50-75 us per record) shows.
- ``op_ratio_vs_raw``: the same for 1,000 ``.op`` solves of a 10-input resistor-diode network, inputs pushed with
  ``alter`` (sweep ``[inputs]`` table).
- ``speedup_2_workers``: spicenet sweep wall time with 1 worker over 2 workers (the ring-oscillator MC sweep).
Each ``*_engine`` figure is the same without the HDF5 store (worker pool only), to show where time goes.
Usage: python benchmarks/engine.py [--chips 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spicenet.spice.engine import Engine, montecarlo_runs, render  # noqa: E402
from spicenet.sweep import SweepConfig, input_commands, run_sweep  # noqa: E402


def diode_network(n_in: int = 10, n_hidden: int = 5, n_out: int = 2, seed: int = 0) -> str:
    """A layered resistor-diode network: inputs -> hidden (diode pair to +-0.3 V) -> outputs with loads."""
    rng = np.random.default_rng(seed)
    lines = ["diode network", ".model dn d (is=1e-14 n=1.0)", "vbp bp 0 0.3", "vbn bn 0 -0.3"]
    lines += [f"vin{i} in{i} 0 dc 0" for i in range(n_in)]
    for h in range(n_hidden):
        lines += [f"r_i{i}_h{h} in{i} h{h} {1 / rng.uniform(1e-6, 1e-4)!r}" for i in range(n_in)]
        lines += [f"dh{h}p h{h} bp dn", f"dh{h}n bn h{h} dn"]
    for o in range(n_out):
        lines += [f"r_h{h}_o{o} h{h} o{o} {1 / rng.uniform(1e-6, 1e-4)!r}" for h in range(n_hidden)]
        lines += [f"rl{o} o{o} 0 100k"]
    return "\n".join(lines + [".end"]) + "\n"


_NG = None


def _raw_worker(args: tuple[str, list[tuple[str, ...]], str]) -> float:
    """Raw PySpice/libngspice loop: load once, then per run the alter commands, op, and read one vector."""
    import os
    os.environ["OMP_NUM_THREADS"] = "1"
    import logging
    logging.getLogger("PySpice").setLevel(logging.CRITICAL)
    from PySpice.Spice.NgSpice.Shared import NgSpiceShared, ffi

    deck, command_sets, probe, analysis = args
    global _NG
    if _NG is None:  # PySpice can make one instance per process (its cffi declarations are global)
        _NG = NgSpiceShared(ngspice_id=0, send_data=False)
    ng = _NG
    ng._ngspice_shared.ngSpice_Command(b"remcirc")
    lib = ng._ngspice_shared
    lib.ngSpice_Command(b"set num_threads=1")
    ng.load_circuit(deck)
    total = 0.0
    for k, commands in enumerate(command_sets):
        for command in commands:
            lib.ngSpice_Command(command.encode())
        lib.ngSpice_Command(analysis.encode())
        info = lib.ngGet_Vec_Info(probe.encode())
        total += float(np.frombuffer(ffi.buffer(info.v_realdata, 8), dtype=np.float64)[0])
        lib.ngSpice_Command(b"destroy all")  # as the engine does: keeps the plot list and memory small
        ng.clear_output()
    return total


def raw_wall(deck: str, command_sets: list[tuple[str, ...]], probe: str, workers: int, analysis: str = "op") -> float:
    chunks = [command_sets[i::workers] for i in range(workers)]
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        pool.map(_raw_worker, [(deck, chunks[0][:2], probe, analysis)] * workers)  # start-up excluded (warm)
        t0 = time.perf_counter()
        pool.map(_raw_worker, [(deck, c, probe, analysis) for c in chunks])
        return time.perf_counter() - t0


def sweep_wall(config: dict, workers: int, tmp: Path, name: str) -> float:
    out = tmp / f"{name}.h5"
    summary = run_sweep(SweepConfig.from_dict(config), out, workers=workers, progress=False)
    assert summary.failed == 0, f"{summary.failed} failed runs in {name}"
    return summary.wall_s


def engine_wall(deck, runs, workers: int) -> float:
    """The worker pool alone (no store), workers warmed first."""
    with Engine(workers=workers) as engine:
        engine.simulate_many(deck, runs[:workers * 2])  # warm the workers
        t0 = time.perf_counter()
        engine.simulate_many(deck, runs, chunk=max(1, len(runs) // (2 * workers)))
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chips", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    n, w = args.chips, args.workers
    result: dict = {"chips": n, "workers": w}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        # Monte-Carlo: ring oscillator transient per chip
        tran = "tran 10p 5n 0 10p uic"
        ring_cfg = {"template": "oscillator/ring5", "process": "generic", "analysis": tran, "seed": 1,
                    "save": ["v(n5)"], "montecarlo": {"chips": n, "mode": "pelgrom"},
                    "measure": {"f": {"kind": "frequency", "vector": "v(n5)"}}}
        deck = render("oscillator/ring5", {}, "generic", "pelgrom")
        runs = montecarlo_runs(deck, tran, range(n), 1)
        raw = raw_wall(deck.text, [r.commands for r in runs], "n5", w, tran)
        ours = sweep_wall(ring_cfg, w, tmp, "mc")
        eng = engine_wall(deck, runs, w)
        result.update(mc_raw_s=raw, mc_sweep_s=ours, mc_engine_s=eng, mc_ratio_vs_raw=raw / ours,
                      mc_ratio_engine_vs_raw=raw / eng)
        # Monte-Carlo: current mirror op per chip (store-bound)
        mc_cfg = {"template": "basic/current_mirror", "process": "generic", "analysis": "op", "seed": 1,
                  "save": ["i(vout)"], "montecarlo": {"chips": n, "mode": "pelgrom"}}
        deck = render("basic/current_mirror", {}, "generic", "pelgrom")
        runs = montecarlo_runs(deck, "op", range(n), 1)
        raw = raw_wall(deck.text, [r.commands for r in runs], "vout#branch", w)
        ours = sweep_wall(mc_cfg, w, tmp, "mcop")
        eng = engine_wall(deck, runs, w)
        result.update(mc_op_raw_s=raw, mc_op_sweep_s=ours, mc_op_engine_s=eng, mc_op_ratio_vs_raw=raw / ours,
                      mc_op_ratio_engine_vs_raw=raw / eng)
        # op solves of a 10-input diode network, inputs pushed with alter
        net = diode_network()
        rows = np.random.default_rng(0).uniform(-1, 1, (n, 10))
        sources = tuple(f"vin{i}" for i in range(10))
        op_cfg = {"netlist": str(tmp / "net.cir"), "analysis": "op", "save": ["v(o0)", "v(o1)"],
                  "inputs": {"sources": list(sources), "rows": rows.tolist()}}
        (tmp / "net.cir").write_text(net)
        sets = [input_commands(sources, row) for row in rows]
        raw = raw_wall(net, sets, "o0", w)
        ours = sweep_wall(op_cfg, w, tmp, "op")
        from spicenet.spice.job import RunSpec
        eng = engine_wall(net, [RunSpec(f"r{k}", "op", commands=c) for k, c in enumerate(sets)], w)
        result.update(op_raw_s=raw, op_sweep_s=ours, op_engine_s=eng, op_ratio_vs_raw=raw / ours,
                      op_ratio_engine_vs_raw=raw / eng)
        # scaling: 1 vs 2 workers on the ring-oscillator MC sweep
        big = dict(ring_cfg, montecarlo={"chips": n, "mode": "pelgrom"})
        one = sweep_wall(big, 1, tmp, "w1")
        two = sweep_wall(big, 2, tmp, "w2")
        result.update(sweep_1_worker_s=one, sweep_2_workers_s=two, speedup_2_workers=one / two)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
