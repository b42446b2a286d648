"""``spicenet train ais``: train an AIS coupled-oscillator generator on a calibrated surrogate, mismatch-aware.

Pipeline (all seeded):

1. **Surrogate** (``spicenet calibrate oscillator`` file): ``PhaseModelParams`` from the attr
   ``phase_model_params`` (f0, H harmonics, g_unit, k_per_siemens, bits, phase diffusion); mismatch of ``f0_hz``
   [Hz] and ``k_gain`` [-] from its Monte-Carlo params (``spicenet.train.MismatchModel``); energy per cycle from
   its ``energy_per_cycle_j``; the file must pass the oscillator surrogate schema
   (:mod:`spicenet.cells.oscillator.schema`). Without a surrogate the documented defaults of ``PhaseModelParams`` /
   ``DEFAULT_*`` below are used and listed in ``metrics["surrogate_fallbacks"]``.
2. **Chips**: one fresh chip per generator iteration from ``spicenet.train.ChipSampler`` (per-oscillator
   frequency ``f_i`` -> detuning ``f_i - f0`` [Hz], per-resistor gain ``g_ij = g_ji``), std scaled by
   ``mismatch.train_scale``; evaluation on ``mismatch.eval_chips`` held-out chips (a disjoint seed stream).
3. **Training**: ``train_ais`` (WGAN-GP on the final visible phases, 4-bit signed codes with STE, piecewise
   SHIL / bias schedules, hidden + reference oscillators).
4. **Metrics**: FID with the project's own feature net (``fid_spicenet_<dataset>``: a small CNN classifier
   trained on the dataset, penultimate 64-d features; it is **not** the Inception FID of the literature, so the
   numbers are not comparable to AIS's 27.6 / 80.8), on the nominal chip and on each evaluation chip (mean,
   worst = max FID); density and bit width actually used; the largest node load ``node_conductance_max_s`` [S]
   (at most ``model.node_g_max_s``, which must lie inside the surrogate's calibrated load range); energy per image
   ``E = N * C * E_cycle`` (``spicenet.cells.oscillator.family.oscillator_energy``; C = periods run, the SHIL / bias drivers and
   the coupling resistors are not included).

Run directory (``spicenet.train.RunDir``): run.json (``family = "oscillator"``), config.json, checkpoints/
(every ``train.checkpoint_every`` iterations and after the last: generator + critic state, both Adam states, the
random streams, the iteration, the chip stream's position, the history so far, the ``WallClock``; AIS config,
phase params, export state), metrics.csv (every ``log_every``-th iteration and the last), plots/ (loss curves,
sample grids), metrics.json. A run resumes from its newest checkpoint (``spicenet train ais --resume``) and a
finished one extends to more iterations (``--resume --epochs N``); either ends bit-identical to an uninterrupted
run of the same length and seed (weights, metrics.csv, metrics.json but for the wall times and session counts).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, cast

import numpy as np
import torch

from spicenet.cells.oscillator.ais import AISConfig, AISGenerator, AISTrainer
from spicenet.cells.oscillator.phase import ChipMismatch, PhaseModelParams
from spicenet.data.settings import dataset_setting, n_test_setting, n_train_setting, source_setting
from spicenet.config import as_sections, check_ranges, load_config, setting
from spicenet.errors import ConfigError
from spicenet.train.threads import restores_torch_threads

__all__ = ["SurrogateInfo", "load_surrogate_info", "calibrated_load_max", "chip_to_mismatch", "AISTrainConfig", "parse_config", "build_ais_config", "make_chip_sampler",
           "evaluate_fid", "load_generator", "train", "DEFAULT_ENERGY_PER_CYCLE_J"]

DEFAULT_ENERGY_PER_CYCLE_J = 2.0e-13  # J per cycle of one ring (order of the generic 3-stage ring at ~2.7 GHz)
DEFAULT_F0_STD_REL = 0.007  # relative f0 spread of the generic ring (Pelgrom MC)
DEFAULT_K_GAIN_STD_REL = 0.015  # relative coupling-gain spread

@dataclasses.dataclass
class SurrogateInfo:
    """What training needs from a surrogate file (with the fallbacks that were used)."""

    params: PhaseModelParams
    f0_mean_hz: float
    f0_std_hz: float
    k_gain_mean: float
    k_gain_std: float
    energy_per_cycle_j: float
    attrs: dict[str, Any]
    fallbacks: list[str]
    path: str | None


def load_surrogate_info(path: str | os.PathLike | None, n_bits: int | None = None) -> SurrogateInfo:
    """Read a calibrated oscillator surrogate, checked against the oscillator surrogate schema
    (:func:`spicenet.surrogate_schema.load_surrogate`: a wrong family or a missing or mis-shaped item is a one-line
    DataError). ``path=None`` -> documented defaults (listed in ``fallbacks``). ``n_bits`` (when given) overrides
    the bank width of the phase params."""
    fallbacks: list[str] = []
    attrs: dict[str, Any] = {}
    pm: dict[str, Any] = {}
    f0m: float | None = None
    f0s: float | None = None
    kgm: float | None = None
    kgs: float | None = None
    e_cyc = None
    if path is not None:
        from spicenet.surrogate_schema import load_surrogate

        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"surrogate {p} not found (run `spicenet calibrate oscillator -o {p}`)")
        sf = load_surrogate(p, "oscillator")
        attrs = dict(sf.attrs)
        raw = attrs.get("phase_model_params")
        if raw is not None:
            pm = json.loads(raw) if isinstance(raw, str) else dict(raw)
        # SurrogateParam.__post_init__ fills mean / std, so they are floats here
        if "f0_hz" in sf.params:
            f0m, f0s = float(cast(float, sf.params["f0_hz"].mean)), float(cast(float, sf.params["f0_hz"].std))
        if "k_gain" in sf.params:
            kgm, kgs = float(cast(float, sf.params["k_gain"].mean)), float(cast(float, sf.params["k_gain"].std))
        e_cyc = sf.energy.get("energy_per_cycle_j")
    if not pm:
        fallbacks.append("phase_model_params")
    params = PhaseModelParams.from_dict(pm) if pm else PhaseModelParams()
    if n_bits is not None and n_bits != params.n_bits:
        params = dataclasses.replace(params, n_bits=int(n_bits))
    if f0m is None:
        fallbacks.append("f0_hz mismatch")
        f0m, f0s = params.f0_hz, DEFAULT_F0_STD_REL * params.f0_hz
    if kgm is None:
        fallbacks.append("k_gain mismatch")
        kgm, kgs = 1.0, DEFAULT_K_GAIN_STD_REL
    if e_cyc is None:
        fallbacks.append("energy_per_cycle_j")
        e_cyc = DEFAULT_ENERGY_PER_CYCLE_J
    assert f0s is not None and kgs is not None  # set together with f0m / kgm
    return SurrogateInfo(params, f0m, f0s, kgm, kgs, float(e_cyc), attrs, fallbacks,
                         str(Path(path).resolve()) if path is not None else None)


def calibrated_load_max(params: PhaseModelParams) -> float | None:
    """Largest node load [S] the surrogate's load model was measured at (the smaller of the frequency-pull grid,
    per rail, and the coupling-gain grid, total), or None without a load model."""
    ends = [g[-1] for g in (params.load_g_s, params.load_gain_g_s) if g is not None]
    return min(ends) if ends else None


def chip_to_mismatch(chip, f0_hz: float, n: int, device: torch.device | str = "cpu") -> ChipMismatch:
    """A ``spicenet.train.Chip`` with ``f0_hz`` [N] (Hz) and ``k_gain`` [N, N] -> ``ChipMismatch``
    (detuning ``f_i - f0`` [Hz]; gain symmetrised from the upper triangle: one resistor per pair)."""
    f = chip["f0_hz"].to(torch.float64)
    g = chip["k_gain"].to(torch.float64)
    if f.shape != (n,) or g.shape != (n, n):
        raise ValueError(f"chip must hold f0_hz [{n}] and k_gain [{n}, {n}], got {tuple(f.shape)}, {tuple(g.shape)}")
    up = torch.triu(g, 1)
    gs = up + up.T + torch.eye(n, dtype=torch.float64)
    return ChipMismatch((f - f0_hz).to(device=device, dtype=torch.float32), gs.to(device=device, dtype=torch.float32))


def make_chip_sampler(info: SurrogateInfo, n: int, seed: int, scale: float, n_eval: int):
    """``spicenet.train.ChipSampler`` over (f0_hz [N], k_gain [N, N]) from the surrogate's mismatch moments."""
    from spicenet.train import ChipSampler, MismatchModel, ParamDist

    model = MismatchModel({"f0_hz": ParamDist(info.f0_mean_hz, info.f0_std_hz, positive=True, unit="Hz"),
                           "k_gain": ParamDist(info.k_gain_mean, info.k_gain_std, positive=True)})
    return ChipSampler(model, shapes={"f0_hz": n, "k_gain": (n, n)}, per="step", seed=seed, n_eval=n_eval,
                       scale=scale)


@dataclasses.dataclass(frozen=True)
class AISTrainConfig(AISConfig):
    """Validated training config of ``spicenet train ais``: the TOML keys of :class:`AISConfig` (``[model]``,
    ``[train]``) plus the data, evaluation-loop and mismatch keys of the trainer (``spicenet config show
    oscillator`` prints them with their docs). ``height = width = size``; the seed comes from the command line."""

    dataset: str = dataset_setting("mnist")
    source: str = source_setting()
    size: int = setting(8, "image side, 8 | 14 | 28", unit="px", section="data")
    n_train: int = n_train_setting()
    n_test: int = n_test_setting()
    threads: int = setting(1, "torch CPU threads", section="train")
    n_eval_samples: int = setting(500, "generated images per FID (nominal chip and each evaluation chip)",
                                  section="train")
    log_every: int = setting(5, "iterations between metrics.csv rows", section="train")
    train_scale: float = setting(1.0, "training chips: calibrated sigmas x scale (0 = the nominal chip)",
                                 section="mismatch")
    eval_scale: float = setting(1.0, "evaluation chips: calibrated sigmas x scale", section="mismatch")
    eval_chips: int = setting(10, "held-out Monte-Carlo chips evaluated after training", section="mismatch")

    def __post_init__(self) -> None:
        if self.size not in (8, 14, 28):
            raise ValueError(f"[data] size must be 8, 14 or 28, got {self.size!r}")
        object.__setattr__(self, "height", self.size)
        object.__setattr__(self, "width", self.size)
        check_ranges(self, {"n_train": self.n_train >= 0, "n_test": self.n_test >= 0, "threads": self.threads >= 1,
                            "n_eval_samples": self.n_eval_samples >= 2, "log_every": self.log_every >= 1,
                            "train_scale": self.train_scale >= 0, "eval_scale": self.eval_scale >= 0,
                            "eval_chips": self.eval_chips >= 1})
        super().__post_init__()

    @property
    def ais(self) -> AISConfig:
        """The generator's own config (the :class:`AISConfig` fields)."""
        return AISConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(AISConfig)})

    @property
    def data(self) -> dict[str, Any]:
        """The ``[data]`` section as a dict."""
        return {"dataset": self.dataset, "source": self.source, "size": self.size, "n_train": self.n_train,
                "n_test": self.n_test}


def parse_config(config: dict[str, Any], seed: int) -> AISTrainConfig:
    """The validated config of a parsed TOML (``spicenet.config.load_config``: an unknown section or key, a key in
    the wrong section or a value of the wrong type is a ConfigError naming ``[section] key``)."""
    return load_config(AISTrainConfig, config, "AIS config", seed=int(seed))


def build_ais_config(config: dict[str, Any], seed: int) -> tuple[AISConfig, dict[str, Any]]:
    """(the generator's ``AISConfig``, the ``[data]`` section) of a parsed TOML config (see :func:`parse_config`)."""
    cfg = parse_config(config, seed)
    return cfg.ais, cfg.data


def evaluate_fid(gen: AISGenerator, reference: np.ndarray, dataset: str, n_samples: int, seed: int,
                 chip: ChipMismatch | None, net=None) -> dict[str, Any]:
    """FID / KID (project feature net) of ``n_samples`` images from ``gen`` on ``chip`` (phase noise on) against
    ``reference`` [M, H, W] in [0, 1]; latents and noise from ``seed``."""
    from spicenet.metrics import image_metrics

    g = torch.Generator().manual_seed(int(seed))
    imgs = gen.sample(n_samples, g, chip=chip, noise=True).cpu().numpy()
    m = image_metrics(imgs, reference, dataset, net=net, value_range="unit", seed=int(seed), with_inception=False)
    m["_images"] = imgs
    return m


def load_generator(run_dir: str | Path, device: str = "cpu") -> tuple[AISGenerator, dict[str, Any]]:
    """Rebuild the trained generator of a run directory from its newest checkpoint; returns (gen, extra)."""
    from spicenet.train import RunDir

    run = RunDir.open(run_dir)
    ck = run.latest_checkpoint()
    if ck is None:
        raise ConfigError(f"{run.path} has no checkpoint")
    blob = torch.load(ck, map_location="cpu", weights_only=False)
    extra = blob["extra"]
    cfg = AISConfig(**extra["ais_config"])
    params = PhaseModelParams.from_dict(extra["phase_params"])
    gen = AISGenerator(cfg, params, device=device)
    gen.load_state_dict(blob["model"]["generator"])
    return gen, extra


def _restore(run, ck: dict, trainer: AISTrainer, iterations: int, step: dict[str, int], log_every: int,
             log_row: Any) -> int:
    """Put a checkpoint's whole training state back into ``trainer`` (weights, Adam states, random streams, the
    chip stream's position ``step``) and re-log metrics.csv as an uninterrupted run has it; returns the iterations
    done. A checkpoint without AIS state, or more iterations done than ``iterations``, is a ConfigError."""
    from spicenet.train import restore_rng_state

    state = ck["extra"].get("ais_state")
    if state is None:
        raise ConfigError(f"{run.path}: its checkpoint holds no AIS training state (written before AIS runs "
                          "could resume); choose another -o")
    start = int(state["iteration"])
    if start > iterations:
        raise ConfigError(f"{run.path}: the checkpoint has {start} iterations done; train.iterations = "
                          f"{iterations} would shorten the run (give --epochs >= {start})")
    trainer.load_state(ck["model"], state)
    restore_rng_state(ck["rng"], trainer.generators)
    step["i"] = int(ck["extra"]["chip_step"])
    # metrics.csv as an uninterrupted run has it after `start` iterations: rows up to the last log_every-th
    # iteration kept (a killed run's later rows and a finished run's last row dropped), the rest re-logged
    last_grid = (start - 1) // log_every * log_every
    run.truncate_metrics(last_grid)
    for rec in trainer.history[last_grid + 1:]:
        log_row(rec)
    return start


def _evaluate(run, gen: AISGenerator, reference: np.ndarray, dataset: str, n_eval: int, seed: int, eval_sampler,
              f0: float, dev: torch.device) -> tuple[dict[str, Any], list[float], list[int], Any]:
    """FID of the trained generator on the nominal chip, then on each held-out mismatch chip (lower is better),
    and the sample grids and loss curves. Returns (nominal metrics, per-chip FIDs, chip seeds, feature-net info)."""
    from spicenet.metrics import fid_key, load_feature_net

    key = fid_key(dataset)
    n = gen.config.n_oscillators
    net, net_info = load_feature_net(dataset, train_if_missing=True)
    nominal = evaluate_fid(gen, reference, dataset, n_eval, seed + 1000, None, net)
    chip_vals, chip_seeds = [], []
    for k, c in enumerate(eval_sampler.eval_chips()):
        m = evaluate_fid(gen, reference, dataset, n_eval, seed + 2000 + k, chip_to_mismatch(c, f0, n, dev), net)
        chip_vals.append(float(m[key]))
        chip_seeds.append(int(c.seed))
        if k == 0:
            run.save_sample_grid(m["_images"][:64], name="samples_chip0.png")
    run.save_sample_grid(nominal["_images"][:64], name="samples_nominal.png")
    run.save_sample_grid(reference[:64], name="samples_real.png")
    run.plot_metrics(keys=["loss_critic", "loss_generator", "wasserstein"], name="loss_curves.png")
    return nominal, chip_vals, chip_seeds, net_info


@dataclasses.dataclass
class _Data:
    """A run's images: the dataset, the training images [N, H, W] (float32 tensor, grey levels in [0, 1]) and the
    FID reference [M, H, W] (float32 array, the held-out split)."""

    ds: Any
    x_train: torch.Tensor
    reference: np.ndarray


def _checked_load_max(cfg: AISConfig, info: SurrogateInfo) -> float | None:
    """The surrogate's calibrated node-load limit [S] (:func:`calibrated_load_max`); a ``model.node_g_max_s``
    beyond it is a ConfigError."""
    load_max = calibrated_load_max(info.params)
    if cfg.node_g_max_s > 0 and load_max is not None and cfg.node_g_max_s > load_max * (1 + 1e-9):
        raise ConfigError(f"model.node_g_max_s = {cfg.node_g_max_s:g} S lies beyond the surrogate's calibrated node "
                          f"load range (<= {load_max:g} S); lower it or calibrate a wider [load] grid")
    return load_max


def _load_data(full: AISTrainConfig) -> _Data:
    """The ``[data]`` section's dataset at ``size`` px (``n_train`` / ``n_test`` = 0: the whole split)."""
    from spicenet.data import load_dataset

    ds = load_dataset(full.dataset, full.source, size=full.height, n_train=full.n_train or None,
                      n_test=full.n_test or None)
    return _Data(ds, torch.as_tensor(ds.x_train, dtype=torch.float32), np.asarray(ds.x_test, dtype=np.float32))


def _open_run(run_dir: Path | str, config: dict[str, Any], surrogate: Path | str | None, seed: int,
              dev: torch.device, full: AISTrainConfig, data: _Data, quick: bool):
    """The run directory (created, or the same run reopened) with its run.json marked family "oscillator"."""
    from spicenet.train import RunDir
    from spicenet.train.run import _atomic_write_text

    run = RunDir.create(run_dir, config, surrogate=surrogate, seed=seed, device=str(dev),
                        dataset={"name": data.ds.name, "source": full.source, "size": full.height,
                                 "origin": data.ds.origin, "n_train": int(data.x_train.shape[0]),
                                 "n_test": int(data.reference.shape[0])},
                        length_key="train.iterations", defaults=as_sections(AISTrainConfig()))
    meta = run.meta()
    meta.update({"family": "oscillator", "trainer": "ais", "quick": bool(quick)})
    _atomic_write_text(run.path / "run.json", json.dumps(meta, indent=2))
    return run


def _chip_hook(sampler, f0: float, n: int, dev: torch.device,
               step: dict[str, int]) -> Callable[[torch.Generator], ChipMismatch]:
    """The trainer's chip sampler: chip ``step["i"]`` of the indexed training stream per call (one fresh chip per
    iteration), detuning relative to ``f0`` [Hz]; advances ``step["i"]``."""

    def chip_sampler(_g: torch.Generator) -> ChipMismatch:
        c = sampler.chip(step=step["i"])
        step["i"] += 1
        return chip_to_mismatch(c, f0, n, dev)

    return chip_sampler


def _metrics_logger(run, log_every: int, iterations: int) -> Callable[[dict], None]:
    """The per-iteration hook writing the rows metrics.csv keeps: every ``log_every``-th iteration and the last."""

    def log_row(rec: dict) -> None:
        i = rec["iteration"]
        if i % log_every == 0 or i == iterations - 1:
            run.log_metrics(rec["iteration"], **{k: v for k, v in rec.items() if k != "iteration"})

    return log_row


def _static_extra(cfg: AISConfig, info: SurrogateInfo) -> dict[str, Any]:
    """What every checkpoint carries beside the training state: the AIS config, the phase params, the surrogate
    (path, mean f0 [Hz], its scalar attrs)."""
    return {"ais_config": dataclasses.asdict(cfg), "phase_params": dataclasses.asdict(info.params),
            "surrogate": info.path, "f0_mean_hz": info.f0_mean_hz,
            "attrs": {k: v for k, v in info.attrs.items() if isinstance(v, (int, float, str))}}


def _checkpointer(run, clock, static: dict[str, Any], step: dict[str, int]) -> Callable[[AISTrainer], None]:
    """The trainer's checkpoint hook: adds the training wall time [s] since the previous call to ``clock`` and saves
    the whole state (weights, Adam states, random streams, AIS loop state, chip-stream position, wall clock)."""
    mark = {"t": time.perf_counter()}

    def checkpoint(t: AISTrainer) -> None:
        now = time.perf_counter()
        clock.add("train_wall_s", now - mark["t"])
        mark["t"] = now
        run.save_checkpoint(step=t.iteration, epoch=t.iteration, model=t.model_state(), generators=t.generators,
                            extra=static | {"export_state": t.gen.export_state(), "ais_state": t.loop_state(),
                                            "chip_step": step["i"], "wall": clock.state()})

    return checkpoint


def _quality_metrics(key: str, name: str, nominal: dict[str, Any], net_info: Any, n_eval: int, n_reference: int,
                     chip_vals: list[float], chip_seeds: list[int], eval_scale: float) -> dict[str, Any]:
    """The image-quality keys: own-net FID / KID on the nominal chip and the FID over the held-out chips (mean,
    worst = max, std, values; lower is better)."""
    arr = np.asarray(chip_vals)
    return {
        key: float(nominal[key]),
        f"kid_spicenet_{name}": float(nominal[f"kid_spicenet_{name}"]),
        "fid_note": ("FID from spicenet's own feature net (CNN classifier trained on the dataset, 64-d "
                     "penultimate features, images upsampled to 28 px); NOT Inception FID"),
        "feature_net": {"family": net_info.family, "version": net_info.version},
        "n_eval_samples": n_eval,
        "n_reference": n_reference,
        "chips": {"mean": float(arr.mean()), "worst": float(arr.max()),
                  "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
                  "values": chip_vals, "seeds": chip_seeds, "scale": eval_scale, "higher_is_better": False},
        "fid_chips_mean": float(arr.mean()),
        "fid_chips_worst": float(arr.max()),
    }


def _hardware_metrics(gen: AISGenerator, cfg: AISConfig, info: SurrogateInfo,
                      load_max: float | None) -> dict[str, Any]:
    """The trained network as hardware: density, codes, the largest node load [S] against its limits, sizes, the
    run time ``t_end_s`` [s] and the energy per image [J] (``oscillator_energy``)."""
    from spicenet.cells.oscillator.family import oscillator_energy

    n = cfg.n_oscillators
    energy = oscillator_energy(info.energy_per_cycle_j, n, float(cfg.periods + cfg.latch_periods))
    return {
        "density": float(gen.density),
        "n_edges": int(gen.n_edges),
        "bits": int(cfg.n_bits),
        "nonzero_code_fraction": float((gen.edge_codes().detach() != 0).float().mean()),
        "node_g_max_s": cfg.node_g_max_s,
        "node_conductance_max_s": float(gen.node_conductance_s().max()),
        "load_model": bool(info.params.has_load_model),
        "load_calibrated_max_s": load_max,
        "n_oscillators": n,
        "n_visible": cfg.n_visible,
        "n_hidden": cfg.n_hidden,
        "n_segments": cfg.n_segments,
        "t_end_s": float(gen.t_end),
        "energy_per_image_j": energy["energy_j"],
        "energy": energy,
    }


def _run_metrics(full: AISTrainConfig, info: SurrogateInfo, name: str, use_mismatch: bool, history: list[dict],
                 clock, start: int | None) -> dict[str, Any]:
    """The run's keys: mismatch training (train scale, relative sigmas of f0 and k_gain), fallbacks, data, length,
    the last Wasserstein estimate, wall times [s] and sessions, and the iteration a resumed run continued from."""
    return {
        "mismatch_training": bool(use_mismatch),
        "train_scale": full.train_scale,
        "f0_std_rel": info.f0_std_hz / info.f0_mean_hz,
        "k_gain_std_rel": info.k_gain_std / info.k_gain_mean,
        "surrogate_fallbacks": info.fallbacks,
        "dataset": name,
        "size": full.height,
        "iterations": full.iterations,
        "final_wasserstein": float(history[-1]["wasserstein"]) if history else math.nan,
        "train_wall_s": clock.total("train_wall_s"),
        "wall_s": clock.elapsed(),
        "sessions": clock.sessions,
        "resumed_from_iteration": start,
    }


@restores_torch_threads
def train(config: dict[str, Any], *, surrogate: Path | str | None, quick: bool = False, run_dir: Path | str,
          device: str = "cpu", seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Train an AIS generator (see the module docstring); returns ``{"run_dir", "metrics"}``.

    Resumes from the newest checkpoint when ``run_dir`` holds the same run (same config but for
    ``train.iterations``, same surrogate); ``train.iterations`` above a finished run's extends it, below the
    checkpoint's is a ConfigError. Wall times [s] accumulate over the sessions of a run (``WallClock``).

    metrics: ``fid_spicenet_<dataset>`` (nominal chip), ``kid_spicenet_<dataset>``, ``chips`` (mean / worst /
    values of the FID over held-out mismatch chips), ``fid_chips_mean``, ``fid_chips_worst``, ``density`` (edges /
    all pairs), ``bits``, ``n_oscillators``, ``energy_per_image_j`` (+ breakdown), ``wall_s``, ``train_wall_s``,
    ``surrogate_fallbacks``, ``feature_net`` (what the FID uses), ``sessions``, ``resumed_from_iteration`` (None
    for a run done in one session).
    """
    from spicenet.metrics import fid_key
    from spicenet.train import WallClock, resolve_device

    t0 = time.perf_counter()
    dev = resolve_device(device)
    full = parse_config(config, seed)
    if full.threads >= 1 and dev.type == "cpu":
        torch.set_num_threads(full.threads)
    cfg = full.ais
    info = load_surrogate_info(surrogate, cfg.n_bits)
    load_max = _checked_load_max(cfg, info)
    data = _load_data(full)
    run = _open_run(run_dir, config, surrogate, seed, dev, full, data, quick)

    n, f0 = cfg.n_oscillators, info.params.f0_hz
    step = {"i": 0}
    log_row = _metrics_logger(run, full.log_every, cfg.iterations)
    use_mismatch = full.train_scale > 0 and (info.f0_std_hz > 0 or info.k_gain_std > 0)
    hook = _chip_hook(make_chip_sampler(info, n, seed, full.train_scale, full.eval_chips), f0, n, dev, step)
    trainer = AISTrainer(data.x_train, cfg, info.params, hook if use_mismatch else None, device=dev)
    ck = run.load_checkpoint(map_location="cpu", restore_rng=False)
    clock = WallClock.from_checkpoint(ck, t0)
    start = _restore(run, ck, trainer, cfg.iterations, step, full.log_every, log_row) if ck is not None else 0
    trainer.run(cfg.iterations, progress=progress, on_iteration=log_row,
                on_checkpoint=_checkpointer(run, clock, _static_extra(cfg, info), step))
    gen = trainer.gen.eval()

    name = data.ds.name
    nominal, chip_vals, chip_seeds, net_info = _evaluate(
        run, gen, data.reference, name, full.n_eval_samples, seed,
        make_chip_sampler(info, n, seed, full.eval_scale, full.eval_chips), f0, dev)
    metrics = {**_quality_metrics(fid_key(name), name, nominal, net_info, full.n_eval_samples,
                                  int(data.reference.shape[0]), chip_vals, chip_seeds, full.eval_scale),
               **_hardware_metrics(gen, cfg, info, load_max),
               **_run_metrics(full, info, name, use_mismatch, trainer.history, clock,
                              start if ck is not None else None)}
    run.write_final_metrics(metrics)
    return {"run_dir": str(run.path), "metrics": metrics}
