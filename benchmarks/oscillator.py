"""Phase surrogate vs ngspice on the same switched coupled-ring network and horizon, measured in one run.
Prints one JSON object.

For each N (default 8, 16, 64): one random network of N calibrated rings (each coupled to its 2 nearest
neighbours on both sides of a ring lattice through a 4-bit bank, random signed codes in [-8, 8] in each of 4
piecewise segments, SHIL and bias schedules of the AIS magnitude, random initial phases) over ``--periods`` periods
of the calibrated f0 (~15 ns):

- ``ngspice``: the exported deck (``spicenet.cells.oscillator.export``: PWL switch controls, SHIL sources, PWL
  supplies, ``.ic``) in the engine (shared library, one worker), ``tran`` at the calibration step with ``uic``;
  wall seconds of one run (deck load included, it is small next to the transient);
- ``surrogate``: ``PhaseOscillatorNetwork`` (RK4, ``--steps`` steps, float32, one thread) on the same schedules,
  batch 1, best of ``--reps`` calls after a warm-up; also ``surrogate_batch_s``: a batch of ``--batch`` latents
  in one call;
- ``ratio_vs_ngspice[N]`` = surrogate simulations/s over ngspice simulations/s (batch 1) and
  ``ratio_batched_vs_ngspice[N]`` per trajectory with the batch; ``phase_nmse[N]`` = the validation figure
  (sum (phi_spice - phi_model)^2 / sum phi_spice^2) of that run, so the speed is shown next to the accuracy.

Needs an oscillator surrogate file (``spicenet calibrate oscillator --quick -o osc.h5``).

Usage: python benchmarks/oscillator.py --surrogate osc.h5 [--sizes 8,16,64] [--periods 40] [--steps 200]
       [--batch 256] [--seed 0] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spicenet.cells.oscillator.export import (  # noqa: E402
    analysis_for,
    hardware_map,
    ic_offset_table,
    network_spec,
    spice_phase,
)
from spicenet.cells.oscillator.netlist import deck, network_netlist  # noqa: E402
from spicenet.cells.oscillator.phase import PhaseOscillatorNetwork  # noqa: E402
from spicenet.cells.oscillator.schedule import PiecewiseSchedule  # noqa: E402
from spicenet.cells.oscillator.training import load_surrogate_info  # noqa: E402
from spicenet.spice.engine import Engine  # noqa: E402
from spicenet.spice.job import RunSpec  # noqa: E402


def random_state(n: int, params, periods: float, seed: int, segments: int = 4) -> dict:
    """An export-state dict (as ``AISGenerator.export_state``) of a ring-lattice network of ``n`` oscillators."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((n, n), bool)
    for i in range(n):
        for d in (1, 2):
            if n > d:
                mask[i, (i + d) % n] = mask[(i + d) % n, i] = True
    np.fill_diagonal(mask, False)
    codes = np.zeros((segments, n, n), np.int64)
    iu, ju = np.nonzero(np.triu(mask, 1))
    for s in range(segments):
        c = rng.integers(-8, 9, size=iu.size)
        codes[s, iu, ju] = c
        codes[s, ju, iu] = c
    t_end = periods / params.f0_hz
    return {"codes": codes, "shil_rad_s": rng.uniform(0, 2e8, (segments, n)),
            "bias_rad_s": rng.uniform(-5e7, 5e7, (segments, n)), "durations_s": np.full(segments, t_end / segments),
            "mask": mask, "t_end_s": t_end,
            "params": {"g_unit_s": params.g_unit_s, "n_bits": params.n_bits}}


def _best_of(fn, reps: int) -> float:
    """Shortest wall time of ``reps`` calls (the machine is shared: the minimum is the least disturbed)."""
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--surrogate", required=True)
    ap.add_argument("--sizes", default="8,16,64")
    ap.add_argument("--periods", type=float, default=40.0)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reps", type=int, default=5, help="surrogate timings: best of this many calls")
    a = ap.parse_args()
    torch.set_num_threads(1)
    info = load_surrogate_info(a.surrogate)
    hw = hardware_map(a.surrogate)
    p = info.params
    sizes = [int(s) for s in a.sizes.split(",")]
    out: dict = {"benchmark": "oscillator", "sizes": sizes, "periods": a.periods, "steps": a.steps,
                 "batch": a.batch, "f0_hz": p.f0_hz, "ngspice_s": {}, "surrogate_s": {}, "surrogate_batch_s": {},
                 "ratio_vs_ngspice": {}, "ratio_batched_vs_ngspice": {}, "phase_nmse": {}, "device": "cpu",
                 "threads": 1}
    with Engine(mode="shared", workers=1, timeout_s=1800) as engine:
        table = ic_offset_table(engine, hw)
        for n in sizes:
            st = random_state(n, p, a.periods, a.seed + n)
            phi0 = np.random.default_rng(a.seed + 1000 + n).uniform(0, 2 * math.pi, n)
            text = network_netlist(network_spec(st, phi0, hw, table), title=f"benchmark N={n}")
            analysis, _ = analysis_for(st["t_end_s"], hw)
            save = tuple(f"v(o{i}p0)" for i in range(n))
            t0 = time.perf_counter()
            res = engine.run_all([engine.job(deck(text), [RunSpec(id="b", analysis=analysis, save=save)])])["b"]
            t_sp = time.perf_counter() - t0
            net = PhaseOscillatorNetwork(n, p, mask=torch.as_tensor(st["mask"]))
            k = PiecewiseSchedule(torch.as_tensor(st["codes"], dtype=torch.float32), st["durations_s"])
            l_s = PiecewiseSchedule(torch.as_tensor(st["shil_rad_s"], dtype=torch.float32), st["durations_s"])
            b_s = PiecewiseSchedule(torch.as_tensor(st["bias_rad_s"], dtype=torch.float32), st["durations_s"])
            x0 = torch.as_tensor(phi0, dtype=torch.float32)[None]

            def run(x: torch.Tensor, traj: bool = False):
                with torch.no_grad():
                    return net(x, st["t_end_s"], a.steps, k, shil=l_s, bias=b_s, method="rk4",
                               return_trajectory=traj, record_every=max(1, a.steps // 50))

            run(x0)
            t_sur = _best_of(lambda: run(x0), a.reps)
            xb = x0.repeat(a.batch, 1)
            t_b = _best_of(lambda: run(xb), max(1, a.reps // 2))
            tr = run(x0, True)
            times = tr.times.numpy()
            sp = np.stack([spice_phase(res["time"], res[f"v(o{i}p0)"], times, hw.f_inj_hz, float(phi0[i]),
                                       0.5 * hw.ring.vdd) for i in range(n)], 1)
            ok = np.all(np.isfinite(sp), 1)
            md = tr.trajectory[0].double().numpy()
            nmse = float(((sp[ok] - md[ok]) ** 2).sum() / (sp[ok] ** 2).sum())
            key = str(n)
            out["ngspice_s"][key] = t_sp
            out["surrogate_s"][key] = t_sur
            out["surrogate_batch_s"][key] = t_b
            out["ratio_vs_ngspice"][key] = t_sp / t_sur
            out["ratio_batched_vs_ngspice"][key] = t_sp / (t_b / a.batch)
            out["phase_nmse"][key] = nmse
            print(f"N={n}: ngspice {t_sp:.2f} s, surrogate {t_sur * 1e3:.1f} ms, nmse {nmse:.4f}", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
