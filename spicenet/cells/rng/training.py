"""``spicenet train dtm``: a mismatch-aware denoising thermodynamic model (DTM) on calibrated p-bits.

What is trained (see ``dtm.py`` for the model): T conditional Boltzmann machines on an L x L p-bit grid (degree
and pattern configurable), data = binarized MNIST / Fashion-MNIST images (spins {-1, +1}, 8/14/28 px), CD-K
gradients with the Adaptive Correlation Penalty, couplings/biases quantised to ``weight_bits`` (the coupling DAC
of the hardware, symmetric uniform levels on [-weight_max, weight_max]).

Hardware model of a p-bit array (from the surrogate file of ``spicenet calibrate rng``): cell i of a chip fires
with P(1) = sigmoid((v - v0_i) / vs_i), (v0_i, vs_i) drawn from the calibrated mismatch distribution
(``spicenet.train.MismatchModel``). The designer drives cell i with v = v0_ref,i + vs_nom * x_i, x_i = the ideal
Gibbs logit 2 beta (b_i + sum_j J_ij s_j); so the cell computes sigmoid((x_i - offset_i) / gain_i) with

    offset_i = (v0_i - v0_ref,i) / vs_nom,      gain_i = vs_i / vs_nom          (PBit.gibbs_nonideality)

* ``v0_trim = true`` (default): each chip's transitions are located per cell before use (the noise-free up/down
  bias sweep of the calibration), v0_ref,i = v0_i + e_i with a trim error e_i ~ N(0, v0_residual_std_v). Without
  a trim, v0_ref,i = the calibrated mean v0 and the offsets are the raw mismatch (tens of vs: the machine fails).
* the slope is never trimmed: gain_i carries the full vs mismatch.

Mismatch-aware training: every SGD step runs on a fresh chip (seeded by (seed, step): a resumed run sees the same
chips). Evaluation: FID with the project's own feature network (``fid_spicenet_<dataset>``; NOT Inception
features, so not comparable with published FIDs) of generated samples against the held-out split, on the
nominal chip (no mismatch) and on ``eval_chips`` fresh chips (mean / worst / all values), plus the floor
FID(train images, held-out images) of the same estimator. Energy per generated sample:
E = T K N E_bit (``spicenet.cells.rng.family.dtm_energy``; E_bit = the surrogate's ``energy_per_bit_j``).

Run directory (``spicenet.train.RunDir``): run.json (family "rng", trainer "dtm"), config.json, checkpoints
(resumable), metrics.csv (per log interval), plots/ (curves, sample grids), metrics.json, model.pt (for
``spicenet validate``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from spicenet.cells.rng.dtm import DTM, DTMConfig, uniform_quantiser
from spicenet.cells.rng.gibbs import make_generator
from spicenet.cells.rng.pbit import PBit
from spicenet.data.settings import dataset_setting, n_test_setting, n_train_setting, source_setting
from spicenet.config import check_ranges, load_config, setting
from spicenet.errors import ConfigError
from spicenet.cells.rng import streams
from spicenet.seeds import MISMATCH_EVAL_CHIP, MISMATCH_TRAIN_CHIP, int_seed, torch_generator
from spicenet.train.mismatch import MismatchModel
from spicenet.train.threads import restores_torch_threads

__all__ = ["DTMTrainConfig", "parse_config", "ChipModel", "train", "evaluate_fid_over_chips", "load_model",
           "sample_with_seed"]



@dataclass
class DTMTrainConfig:
    """Validated training config of ``spicenet train dtm``: one field per key of the TOML sections ``[data]``
    ``[model]`` ``[train]`` ``[mismatch]`` ``[eval]`` (``spicenet config show rng`` prints them with their docs)."""

    dataset: str = dataset_setting("fashion")
    source: str = source_setting()
    data_path: str = setting("", "folder or file of the dataset (\"\" = the source's default place)", section="data")
    image_size: int = setting(14, "image side, 8 | 14 | 28 (binarized to spins)", unit="px", section="data")
    n_train: int = n_train_setting()
    n_test: int = n_test_setting()
    grid: int = setting(18, "L: the BM of every step has L*L p-bits (image pixels + latents)", section="model")
    degree: int = setting(8, "couplings per p-bit", section="model")
    pattern: str = setting("moore", "neighbourhood: moore (nearest offsets) | bipartite (2-colourable)",
                           section="model")
    periodic: bool = setting(True, "wrap the grid into a torus", section="model")
    steps: int = setting(4, "T denoising steps (one BM each)", section="model")
    sweeps: int = setting(10, "K Gibbs sweeps per phase / per generation step", section="model")
    beta: float = setting(1.0, "inverse temperature of every BM", section="model")
    init_scale: float = setting(0.01, "std of the initial couplings and biases", section="model")
    weight_bits: int = setting(6, "coupling / bias DAC resolution", unit="bit", section="model")
    weight_max: float = setting(1.0, "|J|, |b| range of the DAC (units of the energy; logit = 2 beta J)",
                                section="model")
    spatial_embedding: bool = setting(True, "pixels keep their 2-D neighbourhoods on the grid", section="model")
    iters: int = setting(600, "training iterations (minibatches)", section="train")
    batch: int = setting(64, "images per minibatch (one chain each per phase)", section="train")
    lr: float = setting(0.05, "SGD step of couplings and biases", section="train")
    acp_lambda: float = setting(0.01, "initial weight of the adaptive correlation penalty (0 = off)",
                                section="train")
    acp_target: float = setting(0.05, "autocorrelation the penalty steers each step's chain to", section="train")
    acp_rate: float = setting(1.2, "factor the penalty weight moves by per iteration", section="train")
    log_every: int = setting(50, "iterations between metrics.csv rows", section="train")
    checkpoint_every: int = setting(100, "iterations between resumable checkpoints (0 = at the end only)",
                                    section="train")
    fid_log_samples: int = setting(200, "nominal-chip FID samples logged every log_every (0 = off)",
                                   section="train")
    threads: int = setting(1, "torch CPU threads", section="train")
    enabled: bool = setting(True, "sample a fresh chip every step (false = train on the ideal sampler)",
                            section="mismatch")
    scale: float = setting(1.0, "calibrated mismatch sigmas x scale", section="mismatch")
    v0_trim: bool = setting(True, "trim every cell's V0 before use (a per-cell bias DAC)", section="mismatch")
    v0_residual_std_v: float = setting(5e-5, "V0 left after the trim (std)", unit="V", section="mismatch")
    eval_chips: int = setting(10, "held-out Monte-Carlo chips evaluated after training", section="eval")
    eval_samples: int = setting(500, "generated images per chip for the FID", section="eval")
    eval_scale: float = setting(1.0, "mismatch sigmas x scale of the evaluation chips", section="eval")

    def __post_init__(self) -> None:
        checks = {
            "image_size": self.image_size in (8, 14, 28), "n_train": self.n_train >= 0, "n_test": self.n_test >= 0,
            "grid": 2 <= self.grid <= 256 and self.grid * self.grid >= self.image_size ** 2,
            "steps": 1 <= self.steps <= 1000, "sweeps": 1 <= self.sweeps <= 10000, "beta": self.beta > 0,
            "init_scale": self.init_scale >= 0, "weight_bits": 2 <= self.weight_bits <= 16,
            "weight_max": self.weight_max > 0, "iters": self.iters >= 0, "batch": self.batch >= 1, "lr": self.lr > 0,
            "acp_lambda": self.acp_lambda >= 0, "log_every": self.log_every >= 1,
            "checkpoint_every": self.checkpoint_every >= 0, "fid_log_samples": self.fid_log_samples >= 0,
            "threads": self.threads >= 1, "scale": self.scale >= 0, "v0_residual_std_v": self.v0_residual_std_v >= 0,
            "eval_chips": self.eval_chips >= 1, "eval_samples": self.eval_samples >= 2, "eval_scale": self.eval_scale >= 0,
        }
        check_ranges(self, checks)

    def dtm_config(self, seed: int) -> DTMConfig:
        return DTMConfig(size=self.grid, degree=self.degree, pattern=self.pattern, periodic=self.periodic,
                         n_steps=self.steps, sweeps=self.sweeps, lr=self.lr, beta=self.beta,
                         init_scale=self.init_scale, acp_lambda=self.acp_lambda, acp_target=self.acp_target,
                         acp_rate=self.acp_rate, seed=seed)


def parse_config(config: dict[str, Any]) -> DTMTrainConfig:
    """The validated config of a parsed TOML (``spicenet.config.load_config``: an unknown section or key, a key in
    the wrong section or a value of the wrong type is a ConfigError naming ``[section] key``)."""
    return load_config(DTMTrainConfig, config, "dtm config")


# ------------------------------------------------------------------------------------------------ chips --
class ChipModel:
    """p-bit chips from a surrogate file, as Gibbs non-idealities (offset, gain) per cell (module docstring).

    ``nonideality(seed, n_cells)`` is a pure function of the seed: the same seed gives the same chip."""

    def __init__(self, surrogate: str | Path, *, scale: float = 1.0, v0_trim: bool = True,
                 v0_residual_std_v: float = 5e-5) -> None:
        self.model = MismatchModel.from_surrogate(surrogate)
        for name in ("v0", "vs"):
            if name not in self.model.dists:
                raise ConfigError(f"surrogate {surrogate}: no parameter {name!r} (have {self.model.names})")
        if scale < 0 or v0_residual_std_v < 0:
            raise ValueError(f"scale/v0_residual_std_v: expected >= 0, got {scale}/{v0_residual_std_v}")
        self.scale, self.v0_trim, self.v0_residual_std_v = scale, v0_trim, v0_residual_std_v
        self.v0_nominal = float(self.model.dists["v0"].mean)
        self.vs_nominal = float(self.model.dists["vs"].mean)

    def cells(self, seed: int, n_cells: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(v0, vs, v0_ref) [n_cells] in V of chip ``seed``: true transition, slope and the bias origin the
        designer uses (trimmed v0 + trim error, or the calibrated mean without trim)."""
        chip = self.model.sample_chip(int(seed), n_cells, params=["v0", "vs"], dtype=torch.float64, scale=self.scale)
        v0, vs = chip["v0"], chip["vs"]
        if self.v0_trim:
            g = torch_generator(seed, streams.V0_TRIM)
            v0_ref = v0 + self.v0_residual_std_v * torch.randn(n_cells, generator=g, dtype=torch.float64)
        else:
            v0_ref = torch.full_like(v0, self.v0_nominal)
        return v0, vs, v0_ref

    def nonideality(self, seed: int, n_cells: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(offset, gain) [n_cells] float64 for ``BlockGibbsSampler`` (PBit.gibbs_nonideality semantics)."""
        v0, vs, v0_ref = self.cells(seed, n_cells)
        return PBit(v0 - v0_ref, vs, dtype=torch.float64).gibbs_nonideality(0.0, self.vs_nominal)


class _StepChips:
    """The DTM's ``chip_sampler`` hook: the chip of training step ``self.step`` (set by the loop)."""

    def __init__(self, chips: ChipModel, n_cells: int, seed: int, device: torch.device) -> None:
        self.chips, self.n_cells, self.seed, self.device, self.step = chips, n_cells, seed, device, 0

    def __call__(self, _generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        off, gain = self.chips.nonideality(int_seed(self.seed, MISMATCH_TRAIN_CHIP, self.step), self.n_cells)
        return off.to(self.device), gain.to(self.device)


def eval_seeds(seed: int, n: int) -> list[int]:
    """Held-out evaluation chip seeds: a stream disjoint from the training chips."""
    return [int_seed(seed, MISMATCH_EVAL_CHIP, i) for i in range(n)]


# ---------------------------------------------------------------------------------------------- embedding --
def spatial_data_nodes(image_size: int, grid: int) -> np.ndarray:
    """Grid node of each pixel (row-major) that keeps the image's geometry: pixel (r, c) sits at grid node
    (floor((r + 1/2) L / H), floor((c + 1/2) L / H)), so neighbouring pixels are neighbouring (or next-but-one)
    p-bits and the remaining L^2 - H^2 nodes are latents spread between them. (``DTM``'s default placement spreads
    the pixels over a row-major scan of the grid, which scrambles 2-D neighbourhoods when L != H.)"""
    if not 1 <= image_size <= grid:
        raise ValueError(f"image_size: expected 1 <= H <= grid = {grid}, got {image_size}")
    pos = np.floor((np.arange(image_size) + 0.5) * grid / image_size).astype(np.int64)
    nodes = (pos[:, None] * grid + pos[None, :]).reshape(-1)
    if len(np.unique(nodes)) != nodes.size:
        raise ValueError(f"image_size: {image_size} px do not map to distinct nodes of a {grid} grid")
    return nodes


def set_data_nodes(dtm: DTM, nodes: np.ndarray) -> None:
    """Place the DTM's data nodes (before any sampling: the samplers are built lazily)."""
    nodes = np.asarray(nodes, dtype=np.int64)
    if nodes.shape != (dtm.n_data,) or len(np.unique(nodes)) != dtm.n_data or nodes.min() < 0 \
            or nodes.max() >= dtm.graph.n_nodes:
        raise ValueError(f"nodes: expected {dtm.n_data} distinct node indices < {dtm.graph.n_nodes}")
    if dtm._samplers:
        raise ValueError("nodes: the DTM has already built its samplers")
    dtm.data_nodes = nodes
    dtm._data_idx = torch.from_numpy(nodes)


# ----------------------------------------------------------------------------------------------- sampling --
@torch.no_grad()
def sample_with_seed(dtm: DTM, n: int, seed: int, chip: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """``dtm.sample(n)`` [n, D] (±1) reproducible from ``seed`` alone, on ``chip`` = (offset, gain) (None =
    ideal p-bits); the model's own generators and chip are left as they were."""
    saved_cpu, saved_chip = dtm._cpu_gen, (dtm.offset, dtm.gain)
    try:
        dtm._cpu_gen = torch_generator(seed, streams.SAMPLE_CPU)
        dtm.offset, dtm.gain = chip if chip is not None else (None, None)
        return dtm.sample(n, generator=make_generator(int_seed(seed, streams.SAMPLE_CHAINS), dtm.device))
    finally:
        dtm._cpu_gen = saved_cpu
        dtm.offset, dtm.gain = saved_chip


def _fid(samples: torch.Tensor, reference: np.ndarray, dataset: str, net) -> float:
    from spicenet.metrics import extract_features, fid_from_features

    return fid_from_features(extract_features(reference, net, "spin"), extract_features(samples.numpy(), net, "spin"))


def evaluate_fid_over_chips(dtm: DTM, chips: ChipModel, seeds: list[int], n_samples: int, reference: np.ndarray,
                            dataset: str, net, seed: int) -> dict[str, Any]:
    """Own-feature FID of ``n_samples`` generated images per chip (chip ``seeds``) against ``reference``
    (±1 images [N, D]): ``mean``, ``std``, ``worst`` (max FID), ``values``, ``seeds``."""
    from spicenet.train.mismatch import Chip, evaluate_over_chips

    n = dtm.graph.n_nodes

    def fid_of(chip: Chip) -> float:
        off, gain = chips.nonideality(chip.seed, n)
        s = sample_with_seed(dtm, n_samples, int_seed(seed, streams.CHIP_SAMPLES, chip.seed),
                             (off.to(dtm.device), gain.to(dtm.device)))
        return _fid(s, reference, dataset, net)

    return evaluate_over_chips(fid_of, [Chip(s) for s in seeds], higher_is_better=False)


# ---------------------------------------------------------------------------------------------- training --
def _load_data(cfg: DTMTrainConfig, seed: int):
    from spicenet.data import load_dataset

    try:
        ds = load_dataset(cfg.dataset, cfg.source, cfg.data_path or None, size=cfg.image_size, encoding="spin",
                          n_train=cfg.n_train or None, n_test=cfg.n_test or None)
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"dtm config: cannot load {cfg.dataset!r} from {cfg.source!r}: {exc}") from None
    return ds


def _write_run_json(run, extra: dict[str, Any]) -> None:
    from spicenet.train.run import _atomic_write_text

    meta = run.meta()
    meta.update(extra)
    _atomic_write_text(run.path / "run.json", json.dumps(meta, indent=2, default=str))


def _images(x: torch.Tensor, size: int) -> np.ndarray:
    return ((x.numpy().reshape(-1, size, size) + 1.0) / 2.0).astype(np.float32)


def _train_iterations(dtm: DTM, run, cfg: "DTMTrainConfig", x_train: torch.Tensor, x_test: np.ndarray, dataset: str,
                      net, hook: "_StepChips", quant, gens: dict[str, torch.Generator], start: int, clock,
                      seed: int, progress: bool) -> None:
    """Iterations ``start .. cfg.iters - 1``: a seeded minibatch and the step's chip per iteration
    (``DTM.train_step``), a metrics row every ``log_every`` (gradient norm, lag-K autocorrelation, ACP lambda,
    weight RMS, optional own-net FID of ``fid_log_samples`` nominal samples), a checkpoint every
    ``checkpoint_every``."""
    from spicenet.progress import progress_bar

    window: list[list[dict]] = []
    bar = progress_bar(cfg.iters, "dtm", enabled=progress, initial=start)
    for it in range(start, cfg.iters):
        g = torch_generator(seed, streams.BATCH, it)
        idx = torch.randint(0, x_train.shape[0], (cfg.batch,), generator=g)
        hook.step = it
        window.append(dtm.train_step(x_train[idx]))
        bar.update(1)
        done = it + 1
        if done % cfg.log_every == 0 or done == cfg.iters:
            row = {
                "grad_norm": float(np.mean([s["grad_norm"] for st in window for s in st])),
                "autocorr": float(np.mean([s["autocorr"] for st in window for s in st])),
                "acp_lambda": float(np.mean([s["acp_lambda"] for st in window for s in st])),
                "w_rms": float(np.mean([quant(p.weights).pow(2).mean().sqrt().item() for p in dtm.steps])),
                "elapsed_s": clock.elapsed(),
            }
            if cfg.fid_log_samples:
                s = sample_with_seed(dtm, cfg.fid_log_samples, int_seed(seed, streams.FID_LOG, done))
                row["fid_nominal"] = _fid(s, x_test, dataset, net)
            run.log_metrics(done, **row)
            bar.set_postfix(fid=f"{row.get('fid_nominal', float('nan')):.3g}")
            window = []
        if cfg.checkpoint_every and (done % cfg.checkpoint_every == 0 or done == cfg.iters):
            run.save_checkpoint(step=done, epoch=done, model=dtm.state_dict(), generators=gens,
                                extra={"wall": clock.state()})
    bar.close()


def _evaluate_run(dtm: DTM, cfg: "DTMTrainConfig", surrogate: Path, eval_chips: "ChipModel", x_train: torch.Tensor,
                  x_test: np.ndarray, dataset: str, net, n_cells: int, seed: int, dev: torch.device) -> dict[str, Any]:
    """The trained model's evaluation: own-net image metrics of ``eval_samples`` nominal samples, the real-data FID
    floor (training images against the test split), FIDs over ``eval_chips`` fresh chips (and two of them without
    the v0 trim), and 64 samples of the worst chip."""
    from spicenet.metrics import image_metrics

    nominal = sample_with_seed(dtm, cfg.eval_samples, int_seed(seed, streams.NOMINAL))
    nom = image_metrics(nominal.numpy(), x_test, dataset, net=net, value_range="spin", seed=seed,
                        with_inception=False)
    floor = _fid(torch.as_tensor(x_train[: cfg.eval_samples]).float(), x_test, dataset, net)
    seeds = eval_seeds(seed, cfg.eval_chips)
    over = evaluate_fid_over_chips(dtm, eval_chips, seeds, cfg.eval_samples, x_test, dataset, net, seed)
    untrimmed = None
    if cfg.v0_trim:  # the same chips without the per-cell v0 trim: why the trim is part of the hardware
        raw = ChipModel(surrogate, scale=cfg.eval_scale, v0_trim=False)
        untrimmed = evaluate_fid_over_chips(dtm, raw, seeds[:2], cfg.eval_samples, x_test, dataset, net, seed)
    worst_seed = over["seeds"][int(np.argmax(over["values"]))]
    worst = sample_with_seed(dtm, 64, int_seed(seed, streams.CHIP_SAMPLES, worst_seed),
                             cast("tuple[torch.Tensor, torch.Tensor]",
                                  tuple(t.to(dev) for t in eval_chips.nonideality(worst_seed, n_cells))))
    return {"nominal": nominal, "nom": nom, "floor": floor, "over": over, "untrimmed": untrimmed, "worst": worst}


def _open_run(run_dir: Path, cfg: DTMTrainConfig, seed: int, surrogate: Path, dev: torch.device,
              dataset_info: dict[str, Any], quick: bool):
    """The run directory (created, or the same run reopened) with its run.json marked family "rng", trainer
    "dtm"."""
    from spicenet.train import RunDir

    run = RunDir.create(run_dir, dataclasses.asdict(cfg) | {"seed": seed}, surrogate=surrogate, seed=seed,
                        device=str(dev), dataset=dataset_info, length_key="iters",
                        defaults=dataclasses.asdict(DTMTrainConfig()))
    _write_run_json(run, {"family": "rng", "trainer": "dtm", "quick": bool(quick)})
    return run


def _build_dtm(cfg: DTMTrainConfig, seed: int, n_data: int, image_size: int, chips: ChipModel,
               dev: torch.device) -> tuple[DTM, Any, _StepChips]:
    """The untrained DTM with its ``weight_bits`` DAC quantiser, the data nodes placed (``spatial_embedding``) and
    the per-step chip hook (installed when ``[mismatch] enabled``); returns (dtm, quantiser, hook)."""
    quant = uniform_quantiser(cfg.weight_bits, cfg.weight_max)
    dtm = DTM(n_data, cfg.dtm_config(seed), quantiser=quant, device=dev)
    if cfg.spatial_embedding:
        set_data_nodes(dtm, spatial_data_nodes(image_size, cfg.grid))
    hook = _StepChips(chips, dtm.graph.n_nodes, seed, dev)
    if cfg.enabled:
        dtm.chip_sampler = hook
    return dtm, quant, hook


def _resume(run, dtm: DTM, gens: dict[str, torch.Generator], cfg: DTMTrainConfig, t_start: float):
    """The newest checkpoint put back into ``dtm`` and ``gens`` (metrics.csv cut to its iteration); returns
    (checkpoint or None, ``WallClock``, iterations done). A checkpoint past ``cfg.iters`` is a ConfigError."""
    from spicenet.progress import logger
    from spicenet.train import WallClock

    start = 0
    ck = run.load_checkpoint(generators=gens, map_location="cpu")
    clock = WallClock.from_checkpoint(ck, t_start)
    if ck is not None:
        dtm.load_state_dict(ck["model"])
        start = int(ck["step"])
        if start > cfg.iters:
            raise ConfigError(f"{run.path}: the checkpoint has {start} iterations done; train.iters = {cfg.iters} "
                              f"would shorten the run (give --epochs >= {start})")
        run.truncate_metrics(start)
        logger().debug(f"dtm: resumed {run.path} after iteration {start} (session {clock.sessions})")
    return ck, clock, start


def _save_plots(run, cfg: DTMTrainConfig, ev: dict[str, Any], x_train: torch.Tensor, size: int) -> list[str]:
    """plots/: 64 nominal-chip samples, the worst chip's samples, 64 training images, and (with a metrics.csv) the
    FID (or gradient-norm) and loss curves; returns their paths."""
    plots = [
        str(run.save_sample_grid(_images(ev["nominal"][:64], size), "samples_nominal.png", vmin=0, vmax=1)),
        str(run.save_sample_grid(_images(ev["worst"], size), "samples_worst_chip.png", vmin=0, vmax=1)),
        str(run.save_sample_grid(_images(x_train[:64].float(), size), "data.png", vmin=0, vmax=1)),
    ]
    if run.read_metrics():
        keys = ["fid_nominal"] if cfg.fid_log_samples else ["grad_norm"]
        plots.append(str(run.plot_metrics(keys=keys, name="fid_curve.png")))
        plots.append(str(run.plot_metrics(keys=["grad_norm", "autocorr", "w_rms"], name="loss_curves.png")))
    return plots


def _save_model(run, dtm: DTM, cfg: DTMTrainConfig, ds, surrogate: Path, chips: ChipModel) -> None:
    """model.pt: the trained state, the data layout, the DAC, beta and the surrogate's nominal cell (v0, vs) [V]
    (what ``load_model`` and ``spicenet validate`` read)."""
    torch.save({"state": dtm.state_dict(), "n_data": dtm.n_data, "image_size": ds.size, "dataset": ds.name,
                "quant": {"bits": cfg.weight_bits, "max_abs": cfg.weight_max}, "beta": cfg.beta,
                "data_nodes": dtm.data_nodes.tolist(), "surrogate": str(surrogate.resolve()),
                "vs_nominal": chips.vs_nominal, "v0_nominal": chips.v0_nominal}, run.path / "model.pt")


def _final_metrics(fkey: str, name: str, ev: dict[str, Any], cfg: DTMTrainConfig, dtm: DTM,
                   energy: dict[str, Any] | None, dataset_info: dict[str, Any]) -> dict[str, Any]:
    """metrics.json's quality and model keys: own-net FID / KID on the nominal chip, the real-data floor, the FIDs
    over the evaluation chips, the energy per sample [J] and the machine's size."""
    nom, over = ev["nom"], ev["over"]
    return {
        fkey: nom[fkey],
        f"kid_spicenet_{name}": nom[f"kid_spicenet_{name}"],
        "fid_feature_net": "spicenet own 64-d CNN features (spicenet.metrics.features), not Inception",
        "fid_floor_train_vs_test": ev["floor"],
        "chips": {"n": cfg.eval_chips, "fid_mean": over["mean"], "fid_worst": over["worst"], "fid_std": over["std"],
                  "fid_values": over["values"], "seeds": over["seeds"], "scale": cfg.eval_scale,
                  "v0_trim": cfg.v0_trim, "v0_residual_std_v": cfg.v0_residual_std_v},
        "energy_per_sample_j": energy["energy_j"] if energy else None,
        "energy": energy,
        "model": {"n_cells": dtm.graph.n_nodes, "n_data": dtm.n_data, "edges": int(dtm.graph.n_edges),
                  "steps": cfg.steps, "sweeps": cfg.sweeps, "weight_bits": cfg.weight_bits, "degree": cfg.degree,
                  "grid": cfg.grid},
        "dataset": dataset_info,
        "iters": cfg.iters,
        "mismatch_aware": cfg.enabled,
    }


@restores_torch_threads
def train(config: dict[str, Any], *, surrogate: Path, quick: bool = False, run_dir: Path, device: str = "cpu",
          seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Train a DTM with per-step mismatch chips drawn from ``surrogate``; returns {"run_dir", "metrics"}.

    Resumes from the newest checkpoint when ``run_dir`` holds the same run; ``train.iters`` above the stored one
    extends it (``spicenet train dtm --resume --epochs N``: N iterations), below the checkpoint's is a ConfigError.
    Wall times [s] accumulate over the sessions of a resumed run (``WallClock``). ``quick`` only records the flag
    (the quick variant is the config ``training/dtm_quick.toml``)."""
    from spicenet.cells.rng.family import dtm_energy
    from spicenet.metrics import fid_key, load_feature_net
    from spicenet.surrogate_schema import load_surrogate
    from spicenet.train import resolve_device

    t_start = time.perf_counter()
    cfg = parse_config(config)
    dev = resolve_device(device)
    torch.set_num_threads(cfg.threads)
    surrogate = Path(surrogate)
    sf = load_surrogate(surrogate, "rng")
    chips = ChipModel(surrogate, scale=cfg.scale, v0_trim=cfg.v0_trim, v0_residual_std_v=cfg.v0_residual_std_v)
    eval_chips = ChipModel(surrogate, scale=cfg.eval_scale, v0_trim=cfg.v0_trim,
                           v0_residual_std_v=cfg.v0_residual_std_v)
    ds = _load_data(cfg, seed)
    x_train = torch.as_tensor(ds.flat("train"), dtype=torch.float64)
    x_test = ds.flat("test").astype(np.float32)
    dataset_info = {"name": ds.name, "origin": ds.origin, "size": ds.size, "encoding": "spin",
                    "n_train": int(x_train.shape[0]), "n_test": int(x_test.shape[0])}
    run = _open_run(run_dir, cfg, seed, surrogate, dev, dataset_info, quick)

    dtm, quant, hook = _build_dtm(cfg, seed, x_train.shape[1], ds.size, chips, dev)
    gens = {"gen": dtm._gen, "cpu": dtm._cpu_gen}
    ck, clock, start = _resume(run, dtm, gens, cfg, t_start)
    net, _ = load_feature_net(ds.name, train_if_missing=True)
    _train_iterations(dtm, run, cfg, x_train, x_test, ds.name, net, hook, quant, gens, start, clock, seed,
                      progress)
    t_train = clock.elapsed()

    t0 = time.time()
    ev = _evaluate_run(dtm, cfg, surrogate, eval_chips, x_train, x_test, ds.name, net, dtm.graph.n_nodes, seed, dev)
    e_bit = float(sf.energy.get("energy_per_bit_j", math.nan))
    energy = dtm_energy(e_bit, dtm.graph.n_nodes, cfg.sweeps, cfg.steps) if math.isfinite(e_bit) else None
    plots = _save_plots(run, cfg, ev, x_train, ds.size)
    _save_model(run, dtm, cfg, ds, surrogate, chips)
    metrics: dict[str, Any] = _final_metrics(fid_key(ds.name), ds.name, ev, cfg, dtm, energy, dataset_info) | {
        "train_wall_s": t_train,
        "eval_wall_s": time.time() - t0,
        "wall_s": clock.elapsed(),
        "sessions": clock.sessions,
        "resumed_from_iter": start if ck is not None else None,
        "plots": plots,
    }
    if ev["untrimmed"] is not None:
        metrics["chips_untrimmed"] = {"fid_mean": ev["untrimmed"]["mean"], "fid_values": ev["untrimmed"]["values"]}
    run.write_final_metrics(metrics)
    return {"run_dir": str(run.path), "metrics": metrics}


def load_model(run_dir: str | Path, device: str = "cpu") -> tuple[DTM, dict[str, Any]]:
    """The trained DTM of a run directory (from model.pt) and the blob's metadata."""
    run_dir = Path(run_dir)
    p = run_dir / "model.pt"
    if not p.is_file():
        raise ConfigError(f"{run_dir}: no model.pt (train the run to the end first)")
    blob = torch.load(p, map_location="cpu", weights_only=False)
    st = blob["state"]
    cfg = DTMConfig(**st["config"])
    dtm = DTM(int(blob["n_data"]), cfg, quantiser=uniform_quantiser(blob["quant"]["bits"], blob["quant"]["max_abs"]),
              device=device)
    set_data_nodes(dtm, np.asarray(blob["data_nodes"], dtype=np.int64))
    dtm.load_state_dict(st)
    return dtm, blob
