"""Engine throughput against raw ngspice shared-library loops, measured in one run. Prints one JSON object.

Both sides do the same work: the raw loop (libngspice via PySpice in a ``multiprocessing`` pool of the same size)
draws each chip's mismatch (``montecarlo_runs``) or formats each input row's ``alter`` commands itself, then per
run sends the ``alter`` commands, the analysis, reads the output vector and ``destroy all``; the sweep plans the
same runs, simulates them in its worker pool and stores every run (vectors, measurements, parameters) in the
columnar HDF5 store, committed and closed. The headline ratios (raw wall time over sweep wall time) compare warm
sides: the raw pool has loaded ngspice, and the sweep runs on a ``WorkerPool`` started (and warmed by a 4-run
sweep) beforehand (``run_sweep(..., pool=pool)``). ``*_cold_*`` figures include the start-up on both sides (raw:
spawning its pool and loading ngspice; sweep: starting and stopping its workers).

- ``mc_ratio_vs_raw``: a 1,000-chip Pelgrom Monte-Carlo sweep of the 5-stage ring oscillator (a 5 ns transient per
  chip, the output waveform and its frequency stored).
- ``mc_op_ratio_vs_raw`` (and ``mc_op_ratio_cold_vs_raw``): the same for the ``op`` of the subthreshold current
  mirror (~0.1-0.3 ms per solve), where every per-run cost of the machinery shows.
- ``op_ratio_vs_raw`` (and ``op_ratio_cold_vs_raw``): 1,000 ``.op`` solves of a 10-input resistor-diode network,
  inputs pushed with ``alter`` (sweep ``[inputs]`` table).
- ``speedup_2_workers``: cold ring-oscillator MC sweep wall time with 1 worker over 2 workers.
Each ``*_engine_*`` figure is the warm worker pool alone (``Engine.simulate_many`` of the planned runs, reading the
vectors the sweep stores; no planning, no store), to show where time goes. The short ``op`` cases are timed
``--repeat`` times on each side and the fastest of each side is kept (the machine is shared); the ring-oscillator
figures are single runs.
Usage: python benchmarks/engine.py [--chips 1000] [--workers 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spicenet.spice.engine import Deck, Engine, montecarlo_runs, render  # noqa: E402
from spicenet.spice.job import RunSpec  # noqa: E402
from spicenet.spice.worker import WorkerPool  # noqa: E402
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


# What a raw worker simulates: ("mc", Deck, analysis, chips, seed) -- it draws those chips' mismatch itself -- or
# ("inputs", sources, rows) -- it formats the rows' alter commands itself.
Work = tuple

_NG = None


def _commands(work: Work) -> list[tuple[str, ...]]:
    if work[0] == "mc":
        _, deck, analysis, chips, seed = work
        return [run.commands for run in montecarlo_runs(deck, analysis, chips, seed)]
    _, sources, rows = work
    return [input_commands(sources, row) for row in rows]


def _raw_worker(args: tuple[str, Work, str, str]) -> float:
    """Raw PySpice/libngspice loop: load once, make the runs' commands, then per run the alter commands, the
    analysis, read one vector, ``destroy all``."""
    import os
    os.environ["OMP_NUM_THREADS"] = "1"
    import logging
    logging.getLogger("PySpice").setLevel(logging.CRITICAL)
    from PySpice.Spice.NgSpice.Shared import NgSpiceShared, ffi

    text, work, probe, analysis = args
    global _NG
    if _NG is None:  # PySpice can make one instance per process (its cffi declarations are global)
        _NG = NgSpiceShared(ngspice_id=0, send_data=False)
    ng = _NG
    lib = ng._ngspice_shared
    lib.ngSpice_Command(b"remcirc")
    lib.ngSpice_Command(b"set num_threads=1")
    ng.load_circuit(text)
    total = 0.0
    for commands in _commands(work):
        for command in commands:
            lib.ngSpice_Command(command.encode())
        lib.ngSpice_Command(analysis.encode())
        info = lib.ngGet_Vec_Info(probe.encode())
        total += float(np.frombuffer(ffi.buffer(info.v_realdata, 8), dtype=np.float64)[0])
        lib.ngSpice_Command(b"destroy all")  # as the engine does: keeps the plot list and memory small
        ng.clear_output()
    return total


def _split(work: Work, workers: int) -> list[Work]:
    """The work cut into one share per worker (chips / rows dealt round-robin)."""
    if work[0] == "mc":
        chips = list(work[3])
        return [("mc", work[1], work[2], chips[i::workers], work[4]) for i in range(workers)]
    return [("inputs", work[1], work[2][i::workers]) for i in range(workers)]


def _head(work: Work) -> Work:
    return ("mc", work[1], work[2], list(work[3])[:2], work[4]) if work[0] == "mc" else ("inputs", work[1], work[2][:2])


def raw_wall(text: str, work: Work, probe: str, workers: int, analysis: str = "op", cold: bool = False) -> float:
    """Wall time of the raw loop over ``work`` in ``workers`` processes; warm (ngspice loaded in every process
    before the clock starts) unless ``cold`` (the clock includes spawning the pool and loading ngspice)."""
    shares = [(text, share, probe, analysis) for share in _split(work, workers)]
    ctx = mp.get_context("spawn")
    t0 = time.perf_counter()
    with ctx.Pool(workers) as pool:
        if not cold:
            pool.map(_raw_worker, [(text, _head(work), probe, analysis)] * workers)  # start-up excluded (warm)
            t0 = time.perf_counter()
        pool.map(_raw_worker, shares)
        wall = time.perf_counter() - t0
    return wall


def sweep_wall(config: dict, workers: int, tmp: Path, name: str, pool: WorkerPool | None = None) -> float:
    """Wall time of ``run_sweep`` (``summary.wall_s``): with ``pool``, on that started pool; else cold."""
    out = tmp / f"{name}.h5"
    out.unlink(missing_ok=True)
    summary = run_sweep(SweepConfig.from_dict(config), out, workers=workers, progress=False, pool=pool)
    assert summary.failed == 0, f"{summary.failed} failed runs in {name}"
    return summary.wall_s


def warm_sweep_wall(config: dict, small: dict, workers: int, tmp: Path, name: str) -> float:
    """``run_sweep`` on a pool started and warmed (a small sweep of the same deck) before the clock starts."""
    with WorkerPool(workers=workers).start() as pool:
        sweep_wall(small, workers, tmp, name + "-warmup", pool)
        return sweep_wall(config, workers, tmp, name, pool)


def engine_wall(deck: Deck | str, runs: list[RunSpec], workers: int) -> float:
    """The worker pool alone (no planning, no store), workers warmed first."""
    with Engine(workers=workers) as engine:
        engine.simulate_many(deck, runs[:workers * 2])  # warm the workers
        t0 = time.perf_counter()
        engine.simulate_many(deck, runs, chunk=max(1, len(runs) // (2 * workers)))
        return time.perf_counter() - t0


def best(repeat: int, measure: Callable[[], float]) -> float:
    return min(measure() for _ in range(repeat))


def op_case(prefix: str, result: dict[str, Any], repeat: int, raw: Callable[[bool], float],
            sweep: Callable[[bool], float], engine: Callable[[], float]) -> None:
    """The keys of one short ``op`` case: warm and cold, each side the fastest of ``repeat``."""
    raw_s, sweep_s = best(repeat, lambda: raw(False)), best(repeat, lambda: sweep(False))
    raw_cold, sweep_cold = best(repeat, lambda: raw(True)), best(repeat, lambda: sweep(True))
    eng = best(repeat, engine)
    result.update({f"{prefix}_raw_s": raw_s, f"{prefix}_sweep_s": sweep_s, f"{prefix}_engine_s": eng,
                   f"{prefix}_ratio_vs_raw": raw_s / sweep_s, f"{prefix}_ratio_engine_vs_raw": raw_s / eng,
                   f"{prefix}_raw_cold_s": raw_cold, f"{prefix}_sweep_cold_s": sweep_cold,
                   f"{prefix}_ratio_cold_vs_raw": raw_cold / sweep_cold})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chips", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, w, rep = args.chips, args.workers, args.repeat
    result: dict[str, Any] = {"chips": n, "workers": w, "repeat": rep}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        # Monte-Carlo: ring oscillator transient per chip
        tran = "tran 10p 5n 0 10p uic"
        ring_cfg = {"template": "oscillator/ring5", "process": "generic", "analysis": tran, "seed": 1,
                    "save": ["v(n5)"], "montecarlo": {"chips": n, "mode": "pelgrom"},
                    "measure": {"f": {"kind": "frequency", "vector": "v(n5)"}}}
        small_ring = dict(ring_cfg, montecarlo={"chips": 2 * w, "mode": "pelgrom"})
        deck = render("oscillator/ring5", {}, "generic", "pelgrom")
        raw = raw_wall(deck.text, ("mc", deck, tran, range(n), 1), "n5", w, tran)
        ours = warm_sweep_wall(ring_cfg, small_ring, w, tmp, "mc")
        eng = engine_wall(deck, montecarlo_runs(deck, tran, range(n), 1, save=("v(n5)",)), w)
        result.update(mc_raw_s=raw, mc_sweep_s=ours, mc_engine_s=eng, mc_ratio_vs_raw=raw / ours,
                      mc_ratio_engine_vs_raw=raw / eng)
        # Monte-Carlo: current mirror op per chip
        mc_cfg = {"template": "basic/current_mirror", "process": "generic", "analysis": "op", "seed": 1,
                  "save": ["i(vout)"], "montecarlo": {"chips": n, "mode": "pelgrom"}}
        small_mc = dict(mc_cfg, montecarlo={"chips": 2 * w, "mode": "pelgrom"})
        mirror = render("basic/current_mirror", {}, "generic", "pelgrom")
        runs = montecarlo_runs(mirror, "op", range(n), 1, save=("i(vout)",))
        op_case("mc_op", result, rep,
                lambda cold: raw_wall(mirror.text, ("mc", mirror, "op", range(n), 1), "vout#branch", w, cold=cold),
                lambda cold: sweep_wall(mc_cfg, w, tmp, "mcop") if cold else warm_sweep_wall(mc_cfg, small_mc, w, tmp,
                                                                                               "mcop"),
                lambda: engine_wall(mirror, runs, w))
        # op solves of a 10-input diode network, inputs pushed with alter
        net = diode_network()
        rows = np.random.default_rng(0).uniform(-1, 1, (n, 10))
        sources = tuple(f"vin{i}" for i in range(10))
        (tmp / "net.cir").write_text(net)
        op_cfg = {"netlist": str(tmp / "net.cir"), "analysis": "op", "save": ["v(o0)", "v(o1)"],
                  "inputs": {"sources": list(sources), "rows": rows.tolist()}}
        small_op = dict(op_cfg, inputs={"sources": list(sources), "rows": rows[:2 * w].tolist()})
        op_runs = [RunSpec(f"r{k}", "op", commands=input_commands(sources, row), save=("v(o0)", "v(o1)"))
                   for k, row in enumerate(rows)]
        op_case("op", result, rep,
                lambda cold: raw_wall(net, ("inputs", sources, rows), "o0", w, cold=cold),
                lambda cold: sweep_wall(op_cfg, w, tmp, "op") if cold else warm_sweep_wall(op_cfg, small_op, w, tmp,
                                                                                            "op"),
                lambda: engine_wall(net, op_runs, w))
        # scaling: 1 vs 2 workers on the ring-oscillator MC sweep (cold: start-up included)
        one = sweep_wall(ring_cfg, 1, tmp, "w1")
        two = sweep_wall(ring_cfg, 2, tmp, "w2")
        result.update(sweep_1_worker_s=one, sweep_2_workers_s=two, speedup_2_workers=one / two)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
