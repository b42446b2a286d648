"""``spicenet validate RUN`` for AIS runs: export the trained oscillator network to ngspice and compare.

For each of ``images`` latents (initial phases drawn with ``seed``) the trained network is exported
(``export.network_spec``: resistor-bank codes + PWL switch controls, SHIL currents, supply-offset biases, ``.ic``
initial phases) and simulated in ngspice (``tran`` with ``uic``, calibrated step) on the nominal chip and on
``chips`` fresh Pelgrom Monte-Carlo chips. The same latent is integrated by the surrogate
(``PhaseOscillatorNetwork``, noise-free RK4 at ``refine`` x the training step count) on the same chip: for the
nominal chip with no mismatch, for a Monte-Carlo chip with the per-ring detunings ``f_i - f0`` measured in SPICE on
a rings-only deck of that chip (same transistors in the same order, hence the same Pelgrom draws; coupling gains
are left at 1).

The surrogate is the trained network itself (its ``PhaseModelParams``, including the node-loading tables of the
surrogate file it was trained on: each ring's frequency pull and injection gain at its total bank load).

Figures of merit:

* ``phase_nmse`` = sum over recorded times and oscillators of ``(phi_spice - phi_model)^2`` / sum of
  ``phi_spice^2`` (phases unwrapped, rad, in the frame rotating at the surrogate's f0; the initial phases are in
  [0, 2 pi) so the denominator is dominated by them; ``phase_rms_err_rad`` is given too);
* ``readout_rms_err_rad``: RMS wrapped error of the read-out phases (visible minus reference) at the horizon;
  ``pixel_mae``: mean |pixel_spice - pixel_model|;
* ``energy_per_image_j``: SPICE: ``sum_i -int_0^T v_i i_i dt`` over the ring supplies (SHIL drivers and switch
  controls excluded); surrogate: ``N * C * E_cycle`` (``spicenet.energy.oscillator_energy``). ``gap`` holds
  the difference SPICE - surrogate and the ratio.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spicenet.cells.oscillator import measure as om
from spicenet.cells.oscillator.export import analysis_for, hardware_map, ic_offset_table, network_spec, spice_phase
from spicenet.cells.oscillator.netlist import NetworkSpec, deck, network_netlist
from spicenet.cells.oscillator.phase import ChipMismatch
from spicenet.errors import ConfigError, SpicenetError
from spicenet.plotting import subplots

__all__ = ["validate", "measure_detunings", "compare_run"]


def measure_detunings(engine, hw, n: int, chips: list[int], seed: int, process: str = "generic",
                      t_stop: float = 12e-9, t_start: float = 4e-9) -> dict[int, np.ndarray]:
    """Free-running frequency offsets ``f_i - f_inj`` [Hz] of the N uncoupled rings of each Monte-Carlo chip
    (a rings-only deck: same transistors, same order, hence the same Pelgrom draws as the network deck)."""
    from spicenet.spice.engine import montecarlo_runs

    spec = NetworkSpec(codes=np.zeros((1, n, n), int), times=np.zeros(1), phases=np.linspace(0, 2 * math.pi, n,
                       endpoint=False), ring=hw.ring, r_lsb=hw.r_lsb_ohm, mask=np.zeros((n, n), bool))
    d = deck(network_netlist(spec, process=process, title="spicenet free rings"), process, mismatch="pelgrom")
    save = tuple(f"v(o{i}p0)" for i in range(n))
    runs = montecarlo_runs(d, f"tran {hw.step_s:.6g} {t_stop:.6g} 0 {hw.step_s:.6g} uic", chips, seed,
                           id_prefix="free", save=save)
    out = engine.run_all([engine.job(d, [r]) for r in runs])
    det: dict[int, np.ndarray] = {}
    for r in runs:
        res = out[r.id]
        if isinstance(res, SpicenetError):
            continue
        f = [om.frequency_amplitude(res["time"], res[f"v(o{i}p0)"], t_start)[0] for i in range(n)]
        det[int(r.meta["chip"])] = np.asarray(f) - hw.f_inj_hz
    return det


def compare_run(res, gen, phi0: np.ndarray, chip: ChipMismatch | None, hw, refine: int) -> dict[str, Any]:
    """Surrogate vs one SPICE result for initial phases ``phi0`` [N]: phase NMSE, readout error, images, energy."""
    n = gen.config.n_oscillators
    k, l, b = gen.schedules()
    steps = gen.config.n_steps * refine
    with torch.no_grad():
        traj = gen.network(torch.as_tensor(phi0, dtype=gen.network.dtype)[None], gen.t_end, steps, k, shil=l,
                           bias=b, chip=chip, method="rk4", return_trajectory=True, record_every=refine)
    model = traj.trajectory[0].double().cpu().numpy()  # [n_rec, N]
    times = traj.times.numpy()
    t = res["time"]
    level = 0.5 * hw.ring.vdd
    spice = np.stack([spice_phase(t, res[f"v(o{i}p0)"], times, hw.f_inj_hz, float(phi0[i]), level)
                      for i in range(n)], 1)
    ok = np.all(np.isfinite(spice), 1)
    if not ok.any():
        raise ValueError("no recorded time has a SPICE phase for every oscillator")
    ds, dm = spice[ok], model[ok]
    err = ds - dm
    nmse = float((err**2).sum() / (ds**2).sum())
    vis = gen.network.visible_idx.cpu().numpy()
    ref = gen.reference_index

    def readout(ph: np.ndarray) -> np.ndarray:
        return ph[vis] - (ph[ref] if ref is not None else 0.0)

    last = np.nonzero(ok)[0][-1]
    rs, rm = readout(spice[last]), readout(model[last])
    pix_s, pix_m = 0.5 * (1 - np.cos(rs)), 0.5 * (1 - np.cos(rm))
    from spicenet.spice.measure import supply_energy

    t_end = float(gen.t_end)
    energy = sum(supply_energy(t, res[f"v(vdd{i})"], res[f"i(vdd{i})"], float(t[0]), t_end) for i in range(n))
    return {"phase_nmse": nmse, "phase_rms_err_rad": float(np.sqrt((err**2).mean())),
            "readout_rms_err_rad": float(np.sqrt((om.wrap(rs - rm) ** 2).mean())),
            "pixel_mae": float(np.abs(pix_s - pix_m).mean()), "energy_j": float(energy),
            "image_spice": pix_s, "image_model": pix_m, "times": times[ok], "phi_spice": ds, "phi_model": dm,
            "valid_fraction": float(ok.mean())}


def _plots(run_path: Path, examples: list[tuple[str, dict]], hw_shape: tuple[int, int]) -> list[str]:
    out = []
    if not examples:
        return out
    name, r = examples[0]
    fig, ax = subplots(figsize=(6, 4))
    for i in range(min(6, r["phi_spice"].shape[1])):
        line = ax.plot(r["times"] * 1e9, r["phi_spice"][:, i], "-")[0]
        ax.plot(r["times"] * 1e9, r["phi_model"][:, i], "--", color=line.get_color())
    ax.set(xlabel="t [ns]", ylabel="phase [rad] (rotating frame)",
           title=f"{name}: SPICE (solid) vs surrogate (dashed), NMSE {r['phase_nmse']:.3g}")
    fig.tight_layout()
    p = run_path / "plots" / "validate_phases.png"
    fig.savefig(p, dpi=90)
    out.append(str(p))
    fig, axes = subplots(2, len(examples), figsize=(1.6 * len(examples) + 0.5, 3.4), squeeze=False)
    for c, (nm, r) in enumerate(examples):
        axes[0, c].imshow(r["image_spice"].reshape(hw_shape), cmap="gray", vmin=0, vmax=1)
        axes[1, c].imshow(r["image_model"].reshape(hw_shape), cmap="gray", vmin=0, vmax=1)
        axes[0, c].set_title(nm, fontsize=6)
        for a in axes[:, c]:
            a.axis("off")
    axes[0, 0].text(-0.5, -1.5, "SPICE", fontsize=7)
    axes[1, 0].text(-0.5, -1.5, "surrogate", fontsize=7)
    fig.tight_layout()
    p = run_path / "plots" / "validate_images.png"
    fig.savefig(p, dpi=90)
    out.append(str(p))
    return out


def validate(run_dir: Path | str, *, chips: int | None = None, quick: bool = False, workers: int = 2,
             seed: int = 0, images: int | None = None, refine: int = 4, process: str = "generic",
             timeout_s: float = 900.0, ic_correct: bool = True) -> dict[str, Any]:
    """Export the run's trained network, simulate ``images`` latents on the nominal chip + ``chips`` Monte-Carlo
    chips in ngspice and compare with the surrogate (module docstring). Defaults: quick 1 image x (nominal + 1
    chip), else 2 images x (nominal + 3 chips). Writes ``validation.json`` and plots into the run directory."""
    from spicenet.energy import oscillator_energy
    from spicenet.spice.engine import Engine, montecarlo_runs
    from spicenet.spice.job import RunSpec
    from spicenet.spice import mismatch as mm
    from spicenet.cells.oscillator.training import calibrated_load_max, load_generator, load_surrogate_info
    from spicenet.train import RunDir
    from spicenet.train.run import _atomic_write_text, _jsonable

    t0 = time.perf_counter()
    run = RunDir.open(run_dir)
    if run.meta().get("family") != "oscillator":
        raise ConfigError(f"{run.path} is not an oscillator (AIS) run")
    chips = (1 if quick else 3) if chips is None else int(chips)
    images = (1 if quick else 2) if images is None else int(images)
    if chips < 0 or images < 1 or refine < 1:
        raise ValueError(f"chips >= 0, images >= 1, refine >= 1 needed, got {chips}, {images}, {refine}")
    torch.set_num_threads(1)
    gen, extra = load_generator(run.path)
    gen.eval()
    surrogate = extra.get("surrogate") or run.meta().get("surrogate")
    if not surrogate or not Path(surrogate).is_file():
        raise ConfigError(f"the run's surrogate file {surrogate!r} is missing: it holds the circuit constants")
    hw = hardware_map(surrogate)
    info = load_surrogate_info(surrogate, gen.config.n_bits)
    state = extra["export_state"]
    n = gen.config.n_oscillators
    g = torch.Generator().manual_seed(int(seed))
    phi0 = gen.sample_latent(images, g).double().cpu().numpy()
    analysis, _ = analysis_for(gen.t_end, hw)
    save = tuple([f"v(o{i}p0)" for i in range(n)] + [f"v(vdd{i})" for i in range(n)] + [f"i(vdd{i})" for i in range(n)])
    chip_ids = list(range(chips))
    results: dict[str, dict] = {}
    failures: dict[str, str] = {}
    t_sim = time.perf_counter()
    with Engine(mode="shared", workers=max(1, int(workers)), timeout_s=timeout_s) as engine:
        ic_table = ic_offset_table(engine, hw, process=process) if ic_correct else None
        det = measure_detunings(engine, hw, n, chip_ids, seed, process) if chip_ids else {}
        jobs, meta = [], {}
        for b in range(images):
            text = network_netlist(network_spec(state, phi0[b], hw, ic_table), process=process,
                                   title=f"spicenet AIS export image {b}")
            d = deck(text, process, mismatch="pelgrom" if chip_ids else None)
            restore = mm.nominal_commands(mm.find_devices(d.text, d.process), d.process) if chip_ids else ()
            nom = RunSpec(id=f"img{b}_nominal", analysis=analysis, save=save, commands=restore)
            runs = [nom] + montecarlo_runs(d, analysis, chip_ids, seed, id_prefix=f"img{b}_", save=save)
            for r in runs:
                meta[r.id] = (b, r.meta.get("chip"))
                jobs.append(engine.job(d, [r]))
        outcomes = engine.run_all(jobs)
    spice_wall = time.perf_counter() - t_sim
    for rid, res in outcomes.items():
        b, chip = meta[rid]
        if isinstance(res, SpicenetError):
            failures[rid] = str(res)[:300]
            continue
        if chip is None:
            cm = None
        elif chip in det:
            cm = ChipMismatch(torch.as_tensor(det[chip], dtype=torch.float32), torch.ones(n, n))
        else:
            failures[rid] = "free-running detuning measurement failed"
            continue
        try:
            results[rid] = compare_run(res, gen, phi0[b], cm, hw, refine)
        except ValueError as exc:
            failures[rid] = str(exc)
    if not results:
        raise SpicenetError(f"every SPICE run failed: {failures}")

    def agg(key: str, sel=None) -> dict[str, float]:
        v = np.array([r[key] for k, r in results.items() if sel is None or sel(k)])
        return {"mean": float(v.mean()), "max": float(v.max())} if v.size else {}

    model_energy = oscillator_energy(info.energy_per_cycle_j, n, float(gen.config.periods))["energy_j"]
    e_spice = float(np.mean([r["energy_j"] for r in results.values()]))
    nominal = {k: r for k, r in results.items() if k.endswith("_nominal")}
    ph = agg("phase_nmse")
    codes = np.abs(np.asarray(state["codes"]))
    node_g = codes.sum(2) / hw.r_lsb_ohm  # [S, N] total bank conductance hanging on each ring's p0 node (S)
    ref = gen.reference_index
    others = [i for i in range(n) if i != ref]
    report = {
        "surrogate": {"energy_per_image_j": model_energy, "n_oscillators": n, "t_end_s": float(gen.t_end),
                      "refine": refine, "integrator": "rk4 (noise-free)",
                      "pixels": {k: r["image_model"] for k, r in results.items()}},
        "spice": {"energy_per_image_j": e_spice, "runs": len(results), "failed": failures, "wall_s": spice_wall,
                  "analysis": analysis, "chips_pelgrom_seed": seed,
                  "ic_offsets_rad": None if ic_table is None else ic_table[1],
                  "detuning_std_hz": float(np.std(np.concatenate(list(det.values())))) if det else None,
                  "pixels": {k: r["image_spice"] for k, r in results.items()}},
        "gap": {"phase_nmse": ph["mean"], "phase_nmse_max": ph["max"],
                "phase_nmse_nominal": agg("phase_nmse", lambda k: k.endswith("_nominal")).get("mean"),
                "phase_nmse_chips": agg("phase_nmse", lambda k: not k.endswith("_nominal")).get("mean"),
                "phase_rms_err_rad": agg("phase_rms_err_rad")["mean"],
                "readout_rms_err_rad": agg("readout_rms_err_rad")["mean"],
                "pixel_mae": agg("pixel_mae")["mean"],
                "energy_per_image_j": e_spice - model_energy,
                "energy_ratio_spice_over_surrogate": e_spice / model_energy,
                "per_run": {k: {kk: r[kk] for kk in ("phase_nmse", "phase_rms_err_rad", "readout_rms_err_rad",
                                                     "pixel_mae", "energy_j", "valid_fraction")}
                            for k, r in results.items()}},
        "loading": {"node_conductance_max_s": float(node_g.max()),
                    "node_conductance_mean_s": float(node_g[:, others].mean()),
                    "reference_conductance_max_s": float(node_g[:, ref].max()) if ref is not None else None,
                    "node_g_max_s": float(gen.config.node_g_max_s),
                    "budget_holds": bool(gen.config.node_g_max_s <= 0
                                         or node_g.max() <= gen.config.node_g_max_s * (1 + 1e-9)),
                    "load_model": bool(gen.network.params.has_load_model),
                    "load_calibrated_max_s": calibrated_load_max(gen.network.params),
                    "note": "the surrogate adds each ring's measured frequency pull and coupling/SHIL gain at its "
                            "total bank load (phase.py, node loading) when the surrogate file holds load tables; "
                            "the AIS budget node_g_max_s keeps every ring inside the calibrated load range"},
        "chips": chips,
        "images": images,
        "n_oscillators": n,
        "goal": {"phase_nmse": 0.01, "min_oscillators": 16, "met": bool(ph["mean"] <= 0.01 and n >= 16)},
        "wall_s": time.perf_counter() - t0,
    }
    shape = (gen.config.height, gen.config.width)
    report["plots"] = _plots(run.path, sorted(results.items())[:6], shape)
    _atomic_write_text(run.path / "validation.json", json.dumps(_jsonable(report), indent=2))
    return _jsonable(report)
