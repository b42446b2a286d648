"""``spicenet validate RUN`` for AIS runs: the trained generator makes images in ngspice, judged by those images.

For each chip (the nominal one and ``chips`` fresh Pelgrom Monte-Carlo chips) and each of ``images`` latents
(initial phases drawn with ``seed``, the same latents on every chip) the trained network is exported
(``export.network_spec``: resistor-bank codes + PWL switch controls, SHIL currents, supply-offset biases, ``.ic``
initial phases) and simulated in ngspice (``tran`` with ``uic`` at the calibration's step; no noise). The same
latent is integrated by the surrogate (the trained ``PhaseOscillatorNetwork``, noise-free RK4 at ``refine`` x the
training step count) on the same chip: no mismatch for the nominal chip; for a Monte-Carlo chip the per-ring
detunings ``f_i - f0`` measured in SPICE on a rings-only deck of that chip (same transistors in the same order,
hence the same Pelgrom draws; coupling gains are left at 1).

Read-out (both sides): the phase of ring i is the one the calibration measured, from the rising zero crossings of
the differential signal ``v(o<i>p0) - v(o<i>n0)`` (``measure.osc_signal``), in the frame rotating at the
surrogate's f0. A single rail (``o<i>p0`` alone) is distorted by the coupling currents of the banks attached to it
(measured on a frustrated triangle: 2x the phase-difference error). Pixel ``= (1 - cos(phi_i - phi_ref)) / 2`` at
the horizon ``t_end``, pixels in [0, 1].

Headline figures (task level, normalisation stated):

* ``gap.pixel_mae``: mean over images and pixels of ``|pixel_spice - pixel_surrogate|`` (pixels in [0, 1]);
* ``gap.readout_rms_rad``: RMS of the wrapped error of the read-out phase differences ``phi_i - phi_ref`` at
  ``t_end`` [rad];
* ``spice.fid`` / ``surrogate.fid``: the project's own feature-net FID (NOT Inception) of the ``gap.images``
  images of each side against the same reference set (the run's test split), and ``gap.fid_rel`` =
  ``|fid_spice - fid_surrogate| / fid_surrogate``. With few images FID is biased upwards on both sides alike;
  KID (unbiased) is given beside it;
* ``gap.phase_diff_nmse``: the trajectory metric on phase *differences* to the reference oscillator, normalised by
  their variance over time (``probes.phase_diff_nmse``), mean over runs; ``gap.phase_nmse_absolute`` is the
  older figure on absolute phases (its normaliser is dominated by the initial phases: not a headline).
* ``energy_per_image_j``: SPICE: ``sum_i -int_0^T v_i i_i dt`` over the ring supplies; surrogate: ``N * C * E_cycle``.

Runs go through ``spicenet.sweep.execute`` (local worker processes, or a Dask cluster with ``scheduler``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from spicenet.cells.oscillator import measure as om
from spicenet.cells.oscillator.export import (HardwareMap, analysis_for, hardware_map, network_spec,
                                              spice_readout_phases)
from spicenet.cells.oscillator.netlist import NetworkSpec, deck, network_netlist
from spicenet.cells.oscillator.phase import ChipMismatch
from spicenet.cells.oscillator.probes import phase_diff_nmse
from spicenet.errors import ConfigError, SpicenetError
from spicenet.plotting import subplots
from spicenet.train.threads import restores_torch_threads

__all__ = ["AISValidationConfig", "validate", "detuning_jobs", "NOMINAL"]

NOMINAL = -1  # chip id of the nominal (mismatch-free) chip


@dataclass(frozen=True)
class AISValidationConfig:
    """Settings of an AIS validation (``spicenet validate RUN``; the demo replaces fields via ``settings``).

    images: latents simulated on every chip (the same latents on each); images per side = images x (chips + 1).
    chips: Monte-Carlo chips besides the nominal chip. refine: surrogate RK4 steps per training step.
    timeout_s: per-run ngspice time limit [s]. ic_correct: pre-correct the ``.ic`` phases for the start-up
    error measured on free rings. scheduler: Dask scheduler address (None = local worker processes).
    """

    images: int = 64
    chips: int = 3
    refine: int = 4
    timeout_s: float = 1800.0
    ic_correct: bool = True
    scheduler: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.images, int) or self.images < 1:
            raise ValueError(f"images must be an int >= 1, got {self.images!r}")
        if not isinstance(self.chips, int) or self.chips < 0:
            raise ValueError(f"chips must be an int >= 0, got {self.chips!r}")
        if not isinstance(self.refine, int) or self.refine < 1:
            raise ValueError(f"refine must be an int >= 1, got {self.refine!r}")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"timeout_s must be > 0 s, got {self.timeout_s!r}")

    @classmethod
    def quick(cls) -> "AISValidationConfig":
        """12 latents x (nominal + 2 Monte-Carlo chips) = 36 images per side."""
        return cls(images=12, chips=2)

    @property
    def images_per_side(self) -> int:
        return self.images * (self.chips + 1)


def _free_rings_deck(hw: HardwareMap, n: int, process: str, phases: np.ndarray | None = None,
                     mismatch: str | None = None):
    ph = np.linspace(0, 2 * math.pi, n, endpoint=False) if phases is None else np.asarray(phases, float)
    spec = NetworkSpec(codes=np.zeros((1, n, n), int), times=np.zeros(1), phases=ph, ring=hw.ring, r_lsb=hw.r_lsb_ohm,
                       mask=np.zeros((n, n), bool))
    return deck(network_netlist(spec, process=process, title="spicenet free rings"), process, mismatch)


def detuning_jobs(hw: HardwareMap, n: int, chips: Sequence[int], seed: int, process: str, timeout_s: float,
                  t_stop: float = 12e-9):
    """Jobs of a rings-only deck per Monte-Carlo chip (same transistors in the same order as the network deck, so
    the same Pelgrom draws): their free-running frequencies give the chip's detunings ``f_i - f_inj``."""
    from spicenet.spice.engine import montecarlo_runs
    from spicenet.spice.job import Job

    d = _free_rings_deck(hw, n, process, mismatch="pelgrom")
    save = tuple(f"v(o{i}{r}0)" for i in range(n) for r in "pn")
    runs = montecarlo_runs(d, f"tran {hw.step_s:.6g} {t_stop:.6g} 0 {hw.step_s:.6g} uic", list(chips), seed,
                           id_prefix="free_", save=save)
    return [Job(deck=d.text, runs=(r,), init_commands=d.init_commands, timeout_s=timeout_s, label=r.id)
            for r in runs]


def _ic_job(hw: HardwareMap, process: str, timeout_s: float, n_points: int = 12, t_probe: float = 1.0e-9):
    """Nominal free rings started at ``n_points`` phases over one stage period (``export.ic_offset_table``)."""
    from spicenet.spice.job import Job, RunSpec

    period = 2 * math.pi / (2 * hw.ring.n_stages)
    ph = np.arange(n_points) * period / n_points
    d = _free_rings_deck(hw, n_points, process, phases=ph)
    t_stop = t_probe + 3.0 / hw.f_inj_hz
    run = RunSpec(id="ic_offsets", analysis=f"tran {hw.step_s:.6g} {t_stop:.6g} 0 {hw.step_s:.6g} uic",
                  save=tuple(f"v(o{i}{r}0)" for i in range(n_points) for r in "pn"))
    return Job(deck=d.text, runs=(run,), init_commands=d.init_commands, timeout_s=timeout_s, label="ic"), ph, t_probe


def _progress(total: int, desc: str):
    from spicenet.progress import progress_bar

    return progress_bar(total, desc)


def _execute(jobs: list, workers: int, scheduler: str | None, desc: str) -> dict[str, Any]:
    from spicenet.sweep import execute

    out: dict[str, Any] = {}
    with _progress(sum(len(j.runs) for j in jobs), desc) as bar:
        for rid, res in execute(jobs, max(1, int(workers)), "shared", scheduler):
            out[rid] = res
            bar.update(1)
    return out


def _load_run(run_dir: Path | str):
    from spicenet.cells.oscillator.training import load_generator, load_surrogate_info
    from spicenet.surrogate_schema import load_surrogate
    from spicenet.train import RunDir

    run = RunDir.open(run_dir)
    if run.meta().get("family") != "oscillator":
        raise ConfigError(f"{run.path} is not an oscillator (AIS) run")
    gen, extra = load_generator(run.path)
    gen.eval()
    surrogate = extra.get("surrogate") or run.meta().get("surrogate")
    if not surrogate or not Path(surrogate).is_file():
        raise ConfigError(f"the run's surrogate file {surrogate!r} is missing: it holds the circuit constants")
    process = load_surrogate(surrogate, "oscillator").process  # SPICE runs on the calibration's process
    return run, gen, extra, hardware_map(surrogate), load_surrogate_info(surrogate, gen.config.n_bits), process


def _surrogate_phases(gen, phi0: np.ndarray, chip: ChipMismatch | None, refine: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free RK4 trajectories [B, T, N] of the trained network from ``phi0`` [B, N] and their times [T]."""
    k, l, b = gen.schedules()
    steps = gen.config.n_steps * refine
    with torch.no_grad():
        tr = gen.network(torch.as_tensor(phi0, dtype=gen.network.dtype), gen.t_end, steps, k, shil=l, bias=b,
                         chip=chip, method="rk4", return_trajectory=True, record_every=refine)
    return tr.trajectory.double().cpu().numpy(), tr.times.numpy()


def _readout(ph: np.ndarray, vis: np.ndarray, ref: int | None) -> np.ndarray:
    return ph[..., vis] - (ph[..., [ref]] if ref is not None else 0.0)


def _fid(images: np.ndarray, reference: np.ndarray, dataset: str, net, seed: int) -> dict[str, float]:
    from spicenet.metrics import fid_key, image_metrics

    m = image_metrics(images, reference, dataset, net=net, value_range="unit", seed=seed, with_inception=False)
    return {"fid": float(m[fid_key(dataset)]), "kid": float(m[f"kid_spicenet_{dataset}"])}


def _image_plot(path: Path, spice: np.ndarray, model: np.ndarray, title: str, per_row: int = 12) -> str:
    """SPICE (top) vs surrogate (bottom) images side by side, up to ``per_row`` latents."""
    k = min(per_row, spice.shape[0])
    fig, axes = subplots(2, k, figsize=(0.9 * k + 0.6, 2.3), squeeze=False)
    for c in range(k):
        axes[0, c].imshow(spice[c], cmap="gray", vmin=0, vmax=1)
        axes[1, c].imshow(model[c], cmap="gray", vmin=0, vmax=1)
        for a in axes[:, c]:
            a.set_xticks([])
            a.set_yticks([])
    axes[0, 0].set_ylabel("SPICE", fontsize=7)
    axes[1, 0].set_ylabel("surrogate", fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return str(path)


def _trajectory_plot(path: Path, times: np.ndarray, ds: np.ndarray, dm: np.ndarray, title: str) -> str:
    fig, ax = subplots(figsize=(6, 3.6))
    for i in range(min(6, ds.shape[1])):
        line = ax.plot(times * 1e9, ds[:, i], "-", label=f"ring {i}")[0]
        ax.plot(times * 1e9, dm[:, i], "--", color=line.get_color())
    ax.set(xlabel="t [ns]", ylabel="phase - reference phase [rad]", title=title)
    ax.legend(fontsize=6, ncol=3, title="solid SPICE, dashed surrogate", title_fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return str(path)


def _chip_name(chip: int) -> str:
    return "nominal" if chip == NOMINAL else f"chip{chip}"


@dataclass
class _ChipComparison:
    """Both sides' images [K, P] of one chip (K latents that ran), the wrapped read-out errors [K, P] [rad], the
    per-image phase-difference NMSEs, absolute-phase NMSEs and SPICE supply energies [J], and the chip's row."""

    spice: np.ndarray
    model: np.ndarray
    readout_err: np.ndarray
    pd_nmse: list[float]
    abs_nmse: list[float]
    energies: list[float]
    row: dict[str, Any]


def _startup_and_detunings(hw: HardwareMap, n: int, mc_chips: list[int], seed: int, process: str,
                           cfg: AISValidationConfig, workers: int, failures: dict[str, str]
                           ) -> tuple[tuple[np.ndarray, np.ndarray] | None, dict[int, np.ndarray]]:
    """Stage 1: the start-up phase table (nominal free rings; None without ``ic_correct``) and each Monte-Carlo
    chip's detunings ``f_i - f_inj`` [Hz] measured on a rings-only deck (a chip whose run failed is left out and
    its error put in ``failures``)."""
    jobs = []
    if cfg.ic_correct:
        ic_job, ic_ph, t_probe = _ic_job(hw, process, cfg.timeout_s)
        jobs.append(ic_job)
    jobs += detuning_jobs(hw, n, mc_chips, seed, process, cfg.timeout_s)
    pre = _execute(jobs, workers, cfg.scheduler, "AIS validation: free rings")
    ic_table = None
    if cfg.ic_correct:
        r = pre["ic_offsets"]
        if isinstance(r, SpicenetError):
            raise SpicenetError(f"start-up phase probe failed: {r}")
        got = spice_readout_phases(r, len(ic_ph), np.array([t_probe]), hw.f_inj_hz, ic_ph)[0]
        ic_table = (ic_ph, got - ic_ph)
    detunings: dict[int, np.ndarray] = {}
    for c in mc_chips:
        r = pre[f"free_c{c:05d}"]
        if isinstance(r, SpicenetError):
            failures[_chip_name(c)] = f"free-running detuning run failed: {str(r)[:300]}"
            continue
        f = [om.frequency_amplitude(r["time"], om.osc_signal(r, i), 4e-9)[0] for i in range(n)]
        detunings[c] = np.asarray(f) - hw.f_inj_hz
    return ic_table, detunings


def _network_jobs(state: dict, phi0: np.ndarray, hw: HardwareMap, ic_table, process: str, mc_chips: list[int],
                  seed: int, analysis: str, n: int, timeout_s: float) -> list:
    """Stage 2's jobs: the exported network of every latent on the nominal chip and on every Monte-Carlo chip,
    one run per job (ids ``img<b>_nominal`` / ``img<b>_c<chip>``)."""
    from spicenet.spice.engine import montecarlo_runs
    from spicenet.spice.job import Job, RunSpec

    save = tuple([f"v(o{i}{r}0)" for i in range(n) for r in "pn"] + [f"v(vdd{i})" for i in range(n)]
                 + [f"i(vdd{i})" for i in range(n)])
    jobs = []
    for b in range(phi0.shape[0]):
        d = deck(network_netlist(network_spec(state, phi0[b], hw, ic_table), process=process,
                                 title=f"spicenet AIS export latent {b}"), process,
                 mismatch="pelgrom" if mc_chips else None)
        runs = [RunSpec(id=f"img{b:04d}_nominal", analysis=analysis, save=save)]
        runs += montecarlo_runs(d, analysis, mc_chips, seed, id_prefix=f"img{b:04d}_", save=save) if mc_chips else []
        jobs += [Job(deck=d.text, runs=(r,), init_commands=d.init_commands, timeout_s=timeout_s, label=r.id)
                 for r in runs]
    return jobs


def _compare_chip(gen, c: int, detuning: np.ndarray | None, phi0: np.ndarray, outcomes: dict[str, Any],
                  hw: HardwareMap, refine: int, failures: dict[str, str]
                  ) -> tuple[_ChipComparison | None, tuple[str, np.ndarray, np.ndarray, np.ndarray] | None]:
    """Stage 3 for chip ``c``: the surrogate on the same latents (the chip's measured detunings, coupling gains
    1), both sides read out at the horizon and compared. Returns the comparison (None when no latent of the chip
    ran) and the first image's (run id, times, SPICE and surrogate phase differences) for the trajectory plot."""
    from spicenet.spice.measure import supply_energy

    n = gen.config.n_oscillators
    vis = gen.network.visible_idx.cpu().numpy()
    ref = gen.reference_index
    chip = None if detuning is None else ChipMismatch(torch.as_tensor(detuning, dtype=gen.network.dtype),
                                                      torch.ones(n, n, dtype=gen.network.dtype))
    model, times = _surrogate_phases(gen, phi0, chip, refine)
    cs, cm, c_err, c_pd, c_abs, c_e = [], [], [], [], [], []
    example = None
    for b in range(phi0.shape[0]):
        rid = f"img{b:04d}_nominal" if c == NOMINAL else f"img{b:04d}_c{c:05d}"
        res = outcomes.get(rid)
        if res is None or isinstance(res, SpicenetError):
            failures[rid] = str(res)[:300] if res is not None else "not run"
            continue
        try:
            sp = spice_readout_phases(res, n, times, hw.f_inj_hz, phi0[b])
        except ValueError as exc:
            failures[rid] = str(exc)
            continue
        if not np.all(np.isfinite(sp[-1])):
            failures[rid] = "no SPICE phase at the horizon for every ring"
            continue
        ok = np.all(np.isfinite(sp), 1)
        rs, rm = _readout(sp[-1], vis, ref), _readout(model[b, -1], vis, ref)
        cs.append(0.5 * (1 - np.cos(rs)))
        cm.append(0.5 * (1 - np.cos(rm)))
        c_err.append(om.wrap(rs - rm))
        c_pd.append(phase_diff_nmse(sp[ok], model[b][ok], ref if ref is not None else -1))
        err = sp[ok] - model[b][ok]
        c_abs.append(float((err ** 2).sum() / (sp[ok] ** 2).sum()))
        c_e.append(sum(supply_energy(res["time"], res[f"v(vdd{i})"], res[f"i(vdd{i})"],
                                     float(res["time"][0]), float(gen.t_end)) for i in range(n)))
        if example is None:
            others = [i for i in range(n) if i != ref]
            example = (rid, times[ok], (sp[ok][:, others] - sp[ok][:, [ref]]) if ref is not None else sp[ok],
                       (model[b][ok][:, others] - model[b][ok][:, [ref]]) if ref is not None else model[b][ok])
    if not cs:
        return None, example
    cs_a, cm_a, e_a = np.stack(cs), np.stack(cm), np.stack(c_err)
    row = {"images": len(cs), "pixel_mae": float(np.abs(cs_a - cm_a).mean()),
           "readout_rms_rad": float(np.sqrt((e_a ** 2).mean())), "phase_diff_nmse": float(np.mean(c_pd)),
           "pixels_flipped": float((np.abs(cs_a - cm_a) > 0.5).mean()), "energy_per_image_j": float(np.mean(c_e))}
    return _ChipComparison(cs_a, cm_a, e_a, c_pd, c_abs, c_e, row), example


def _fids(run, spice_imgs: np.ndarray, model_imgs: np.ndarray, seed: int) -> tuple[dict, dict]:
    """Own-net FID/KID of both sides' images against the run's held-out reference set (same count, same set)."""
    from spicenet.data import load_dataset
    from spicenet.metrics import load_feature_net

    ds_meta = run.meta().get("dataset", {})
    dataset = str(ds_meta.get("name", "mnist"))
    ds = load_dataset(dataset, str(ds_meta.get("source", "sample")), size=spice_imgs.shape[1],
                      n_test=int(ds_meta.get("n_test", 0)) or None)
    reference = np.asarray(ds.x_test, dtype=np.float32)
    net, _ = load_feature_net(dataset, train_if_missing=True)
    return _fid(spice_imgs, reference, dataset, net, seed), _fid(model_imgs, reference, dataset, net, seed)


@restores_torch_threads
def validate(run_dir: Path | str, *, chips: int | None = None, quick: bool = False, workers: int = 2,
             seed: int = 0, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Generate images of the run's trained network in ngspice and in the surrogate on the same chips and latents
    and compare them (module docstring). ``chips`` overrides the config's Monte-Carlo chip count; ``settings``
    replaces fields of ``AISValidationConfig`` (``quick()`` or full defaults). Writes ``validation.json`` and PNG
    plots into the run directory; returns the report."""
    from spicenet.cells.oscillator.family import oscillator_energy
    from spicenet.families import with_settings
    from spicenet.train.run import _atomic_write_text, _jsonable

    t0 = time.perf_counter()
    cfg = with_settings(AISValidationConfig.quick() if quick else AISValidationConfig(), settings,
                        "oscillator validation")
    if chips is not None:
        if int(chips) < 0:
            raise ConfigError(f"--chips must be >= 0, got {chips}")
        cfg = dataclasses.replace(cfg, chips=int(chips))
    torch.set_num_threads(1)
    run, gen, extra, hw, info, process = _load_run(run_dir)
    n = gen.config.n_oscillators
    shape = (gen.config.height, gen.config.width)
    phi0 = gen.sample_latent(cfg.images, torch.Generator().manual_seed(int(seed))).double().cpu().numpy()

    t_sim = time.perf_counter()
    failures: dict[str, str] = {}
    ic_table, detunings = _startup_and_detunings(hw, n, list(range(cfg.chips)), seed, process, cfg, workers,
                                                 failures)
    mc_chips = [c for c in range(cfg.chips) if c in detunings]
    analysis, _ = analysis_for(gen.t_end, hw)
    jobs = _network_jobs(extra["export_state"], phi0, hw, ic_table, process, mc_chips, seed, analysis, n,
                         cfg.timeout_s)
    outcomes = _execute(jobs, workers, cfg.scheduler, "AIS validation: networks in ngspice")
    spice_wall = time.perf_counter() - t_sim

    (run.path / "plots").mkdir(exist_ok=True)
    compared: dict[int, _ChipComparison] = {}
    plots: list[str] = []
    example = None
    for c in [NOMINAL] + mc_chips:
        got, first = _compare_chip(gen, c, detunings.get(c), phi0, outcomes, hw, cfg.refine, failures)
        example = example if example is not None else first
        if got is None:
            continue
        compared[c] = got
        plots.append(_image_plot(run.path / "plots" / f"validate_images_{_chip_name(c)}.png",
                                 got.spice.reshape(-1, *shape), got.model.reshape(-1, *shape),
                                 f"{_chip_name(c)}: SPICE (top) vs surrogate (bottom), pixel MAE "
                                 f"{got.row['pixel_mae']:.3f}"))
    if not compared:
        raise SpicenetError(f"every SPICE run failed: {failures}")
    spice_imgs = np.concatenate([g.spice for g in compared.values()]).reshape(-1, *shape)
    model_imgs = np.concatenate([g.model for g in compared.values()]).reshape(-1, *shape)
    errs = np.concatenate([g.readout_err for g in compared.values()])
    pd_nmse = [v for g in compared.values() for v in g.pd_nmse]
    abs_nmse = [v for g in compared.values() for v in g.abs_nmse]
    energies = [v for g in compared.values() for v in g.energies]
    if example is not None:
        plots.insert(0, _trajectory_plot(run.path / "plots" / "validate_phases.png", *example[1:],
                                         f"{example[0]}: read-out phase differences"))
    f_s, f_m = _fids(run, spice_imgs, model_imgs, seed)

    model_energy = oscillator_energy(info.energy_per_cycle_j, n, float(gen.config.periods + gen.config.latch_periods))["energy_j"]
    e_spice = float(np.mean(energies))
    pix_mae = float(np.abs(spice_imgs - model_imgs).mean())
    report = {
        "surrogate": {"fid": f_m["fid"], "kid": f_m["kid"], "energy_per_image_j": model_energy,
                      "n_oscillators": n, "t_end_s": float(gen.t_end), "refine": cfg.refine,
                      "integrator": "rk4 (noise-free)"},
        "spice": {"fid": f_s["fid"], "kid": f_s["kid"], "energy_per_image_j": e_spice,
                  "runs": int(spice_imgs.shape[0]), "failed": failures, "wall_s": spice_wall,
                  "analysis": analysis, "process": process, "chips_pelgrom_seed": seed,
                  "ic_offsets_rad": None if ic_table is None else ic_table[1],
                  "detuning_std_hz": float(np.std(np.concatenate(list(detunings.values())))) if detunings else None},
        "gap": {"pixel_mae": pix_mae,
                "readout_rms_rad": float(np.sqrt((errs ** 2).mean())),
                "fid_rel": abs(f_s["fid"] - f_m["fid"]) / max(f_m["fid"], 1e-12),
                "kid_diff": f_s["kid"] - f_m["kid"],
                "images": int(spice_imgs.shape[0]),
                "pixels_flipped": float((np.abs(spice_imgs - model_imgs) > 0.5).mean()),
                "phase_diff_nmse": float(np.mean(pd_nmse)),
                "phase_diff_nmse_max": float(np.max(pd_nmse)),
                "phase_nmse_absolute": float(np.mean(abs_nmse)),
                "energy_per_image_j": e_spice - model_energy,
                "energy_ratio_spice_over_surrogate": e_spice / model_energy,
                "per_chip": {_chip_name(c): g.row for c, g in compared.items()}},
        "chips": len(compared),
        "monte_carlo_chips": len(mc_chips),
        "images_per_chip": cfg.images,
        "n_oscillators": n,
        "readout": "differential v(o<i>p0) - v(o<i>n0), rising zero crossings, at t_end; pixel (1 - cos) / 2",
        "fid_note": "spicenet's own feature-net FID (not Inception), same image count and reference on both sides",
        "config": dataclasses.asdict(cfg),
        "plots": plots,
        "wall_s": time.perf_counter() - t0,
    }
    _atomic_write_text(run.path / "validation.json", json.dumps(_jsonable(report), indent=2))
    return _jsonable(report)
