"""``spicenet train ffebm``: feedforward-tied resistive blocks (ff-EBM, Nest & Ernoult 2024) on the calibrated network.

Model: ``h_0 = x``; block k is a :class:`ResistiveNetwork` ``[n_in_k, *hidden_k, n_out_k]`` (4-bit levels, calibrated
diodes, optional bidirectional amplifiers) whose free-phase output voltages ``v_k`` (V) feed a digital feedforward
layer ``h_{k+1} = W_k v_k + c_k`` (torch ``nn.Linear``, float64) that drives the next block's input sources
(``+-g h_{k+1}``, ideal drivers of gain g = the calibrated input gain). Loss: MSE of the last block's outputs to
one-hot targets. Gradients: centered EqProp through each block, backprop through the feedforward layers
(:meth:`spicenet.cells.resistive.ffebm.FFEBM.eqprop_backward`); Adam with ``lr`` on the conductances (LSB units,
clipped to the levels' range) and ``[ffebm] lr_ff`` on the feedforward weights.

Mismatch: every block gets its own chip (:func:`spicenet.cells.resistive.train.make_chip`) drawn fresh per minibatch
(``[mismatch] train_scale``); evaluated on the nominal chip and on ``eval_chips`` held-out chips (seed stream 2,
chip c of block k is index ``c * K + k``). With ``[train] ideal = true`` a second model, the *ideal* ff-EBM (same
blocks and feedforward layers, same initialisation, float conductances in the same range, no mismatch), is trained
on the same minibatches as the software reference (``accuracy_ideal``, per-epoch ``test_accuracy_ideal``;
:func:`load_ffebm` ``which="ideal"``).

Config: the eqprop sections (``[data]``, ``[train]``, ``[mismatch]``, ``[model]`` for bias/init/amplifiers; its
``hidden`` is unused) plus ``[ffebm]``: ``blocks`` (per block its hidden sizes then its output size; the last
block ends in 10 outputs; ``[n_out]`` alone is a block without hidden layer, its outputs tied to its input sources
directly) and ``lr_ff``. The ``[ffebm]`` section is what makes ``spicenet train`` run this
trainer (the family protocol passes the config, not the trainer name).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from spicenet.cells.resistive.eqprop import accuracy, confusion_matrix, mse_cost, one_hot_targets
from spicenet.cells.resistive.ffebm import FFEBM
from spicenet.cells.resistive.network import ResistiveNetwork
from spicenet.cells.resistive.train import (
    _check_length,
    EqPropTrainConfig,
    _write_meta,
    build_network,
    chip_seed,
    make_chip,
    net_spec,
)
from spicenet.config import load_config, setting
from spicenet.data import load_dataset
from spicenet.errors import ConfigError
from spicenet.surrogate import SurrogateFile
from spicenet.surrogate_schema import load_surrogate
from spicenet.progress import logger, progress_iter
from spicenet.train import RunDir, WallClock, resolve_device
from spicenet.train.threads import restores_torch_threads

__all__ = ["FFEBMTrainConfig", "FFEBM_DEFAULTS", "merged_ffebm_config", "block_specs", "build_ffebm", "train_ffebm", "load_ffebm",
           "block_chips"]

@dataclass(frozen=True)
class FFEBMTrainConfig(EqPropTrainConfig):
    """Validated training config of ``spicenet train ffebm``: the eqprop keys plus the ``[ffebm]`` section (the
    resistive blocks tied by square feedforward layers; ``[model] hidden`` is not used)."""

    blocks: list[list[int]] = setting([[32, 16], [16, 10]], "each block's layer widths after its input: "
                                      "[hidden..., n_out]; block k+1 takes block k's n_out inputs; the last ends in 10",
                                      section="ffebm")
    lr_ff: float = setting(0.01, "Adam learning rate of the feedforward layers", section="ffebm")
    ideal: bool = setting(False, "also train the ideal ff-EBM (float conductances, no mismatch) on the same "
                          "minibatches", section="train")

    def __post_init__(self) -> None:
        if not self.hardware:
            raise ValueError("[train] hardware = false is not supported by ffebm (it always trains the 4-bit network)")
        super().__post_init__()
        if len(self.blocks) < 1 or any(len(b) < 1 or any(s < 1 for s in b) for b in self.blocks):
            raise ValueError(f"[ffebm] blocks must be a list of non-empty [hidden..., n_out] lists of positive "
                             f"sizes ([n_out] alone: no hidden layer), got {self.blocks!r}")
        if self.blocks[-1][-1] != 10:
            raise ValueError(f"[ffebm] blocks: the last block must end in 10 outputs, got {self.blocks[-1][-1]}")


FFEBM_DEFAULTS: dict[str, Any] = FFEBMTrainConfig().sections()["ffebm"]

_SUFFIX = {"injected": "", "ideal": "_ideal"}
"""Checkpoint / model.pt / metrics key suffix of each trained model (the injected model keeps the original keys)."""


def merged_ffebm_config(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The validated config of a parsed TOML as nested dicts (``spicenet.config.load_config`` of
    :class:`FFEBMTrainConfig`; unknown keys and wrong types raise ConfigError naming ``[section] key``)."""
    return load_config(FFEBMTrainConfig, config, "ffebm config").sections()


def block_specs(sur: SurrogateFile, n_in: int, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """One :func:`net_spec` per block: block 0 takes the ``n_in`` pixels, block k > 0 takes ``n_out_{k-1}`` inputs
    (the feedforward layers are square). ``[model]`` bias, amplifiers, input gain, bias-rail voltage ``v_bias``,
    diode rails ``vb`` and hidden-node ``units`` apply to every block (a block without hidden layer has no
    amplifiers to place, and its outputs keep the clamp whatever the units)."""
    m = cfg["model"]
    specs, prev = [], int(n_in)
    for b in cfg["ffebm"]["blocks"]:
        sizes = [prev, *[int(s) for s in b]]
        specs.append(net_spec(sur, sizes, bool(m["bias"]), float(m["amp_gain"]), float(m["amp_back"]),
                              float(m["input_gain"]), float(m["v_bias"]), float(m["vb"]), str(m["units"])))
        prev = sizes[-1]
    return specs


def build_ffebm(specs: list[dict[str, Any]], *, init_max: float, seed: int, device: torch.device | str = "cpu",
                ideal: bool = False) -> FFEBM:
    """Blocks (seeded ``seed + k``; ``ideal``: float conductances, no quantisation) and square float64
    ``nn.Linear`` feedforward layers (seeded by ``seed``)."""
    blocks = [build_network(s, init_max=init_max, seed=seed + k, device=device, ideal=ideal)
              for k, s in enumerate(specs)]
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    ff = []
    for s in specs[:-1]:
        n = s["layer_sizes"][-1]
        lin = nn.Linear(n, n).double()
        with torch.no_grad():  # identity plus a small seeded perturbation: the next block first sees v_k itself
            lin.weight.copy_(torch.eye(n, dtype=torch.float64) + 0.1 * torch.randn(n, n, generator=gen,
                                                                               dtype=torch.float64))
            lin.bias.zero_()
        ff.append(lin.to(device))
    return FFEBM(blocks, ff)


def block_chips(model: FFEBM, specs: list[dict[str, Any]], seed: int, stream: int, index: int,
                scale: float = 1.0) -> list[Any]:
    """One chip per block: block k of draw ``index`` uses ``chip_seed(seed, stream, index * K + k)``."""
    k_n = len(model.blocks)
    return [make_chip(b, s, chip_seed(seed, stream, index * k_n + k), scale)
            for k, (b, s) in enumerate(zip(cast(Sequence[ResistiveNetwork], model.blocks), specs))]


@restores_torch_threads
def train_ffebm(config: dict[str, Any], *, surrogate: Path, quick: bool, run_dir: Path, device: str = "cpu",
                seed: int = 0) -> dict[str, Any]:
    """Train the ff-EBM (module docstring) with mismatch injection; write the run directory
    (``model.pt``, metrics with ``blocks``, ``accuracy_nominal``, ``accuracy_chip_mean``, ``accuracy_chip_worst``)."""
    t0 = time.perf_counter()
    cfg = merged_ffebm_config(config)
    dev = resolve_device(device)
    if int(cfg["train"]["threads"]) > 0:
        torch.set_num_threads(int(cfg["train"]["threads"]))
    sur = load_surrogate(surrogate, "resistive")
    d, m, tr, mm, fcfg = cfg["data"], cfg["model"], cfg["train"], cfg["mismatch"], cfg["ffebm"]
    ds = load_dataset(d["dataset"], source=d["source"], size=int(d["size"]), split_seed=0,
                      n_train=int(d["n_train"]) or None, n_test=int(d["n_test"]) or None)
    x = torch.as_tensor(ds.flat("train"), dtype=torch.float64)
    y = torch.as_tensor(ds.y_train, dtype=torch.long)
    xt = torch.as_tensor(ds.flat("test"), dtype=torch.float64).to(dev)
    yt = torch.as_tensor(ds.y_test, dtype=torch.long)
    specs = block_specs(sur, x.shape[1], cfg)
    run = RunDir.create(run_dir, cfg, surrogate=surrogate, seed=seed, device=str(dev),
                        dataset={"name": ds.name, "source": d["source"], "origin": ds.origin, "size": ds.size,
                                 "n_train": int(x.shape[0]), "n_test": int(xt.shape[0])},
                        length_key="train.epochs", defaults=FFEBMTrainConfig().sections())
    _write_meta(run, {"family": "resistive", "trainer": "ffebm", "block_specs": specs})
    kinds = ("injected",) + (("ideal",) if bool(tr["ideal"]) else ())
    models = {k: build_ffebm(specs, init_max=float(m["init_max"]), seed=seed, device=dev, ideal=k == "ideal")
              for k in kinds}
    model = models["injected"]
    opts = {k: torch.optim.Adam([{"params": [p for b in mdl.blocks for p in b.parameters()], "lr": float(tr["lr"])},
                                 {"params": list(mdl.ff.parameters()), "lr": float(fcfg["lr_ff"])}])
            for k, mdl in models.items()}
    scheds = {k: torch.optim.lr_scheduler.ExponentialLR(o, float(tr["lr_decay"])) for k, o in opts.items()}
    gen = torch.Generator().manual_seed(int(seed))
    start_epoch, step = 0, 0
    blob = run.load_checkpoint(generators={"shuffle": gen}, restore_rng=True)
    clock = WallClock.from_checkpoint(blob, t0)
    if blob is not None:
        for k, mdl in models.items():
            suffix = _SUFFIX[k]
            mdl.load_state_dict(blob["model"]["ffebm" + suffix])
            opts[k].load_state_dict(blob["model"]["opt" + suffix])
            scheds[k].load_state_dict(blob["model"]["sched" + suffix])
        start_epoch, step = int(blob["epoch"]) + 1, int(blob["step"])
        _check_length(run, start_epoch, int(tr["epochs"]))
        run.truncate_metrics(start_epoch - 1)
        logger().debug(f"ffebm: resumed {run.path} after epoch {start_epoch} (step {step}, session {clock.sessions})")
    beta = float(tr["beta"]) * specs[-1]["g_lsb"]
    t_target = one_hot_targets(y, 10, float(tr["v_low"]), float(tr["v_high"])).to(dev)
    tt_target = one_hot_targets(yt, 10, float(tr["v_low"]), float(tr["v_high"])).to(dev)
    bs, epochs, scale = int(tr["batch_size"]), int(tr["epochs"]), float(mm["train_scale"])
    for epoch in progress_iter(range(start_epoch, epochs), epochs, "ffebm", initial=start_epoch):
        perm = torch.randperm(x.shape[0], generator=gen)
        loss_sum = {k: 0.0 for k in models}
        for s in range(0, x.shape[0], bs):
            idx = perm[s: s + bs]
            for k, mdl in models.items():
                t1 = time.perf_counter()
                chips = block_chips(mdl, specs, seed, 1, step, scale) if scale > 0 and k == "injected" else None
                opts[k].zero_grad(set_to_none=True)
                loss = mdl.eqprop_backward(x[idx].to(dev), t_target[idx], beta=beta, chips=chips)
                opts[k].step()
                mdl.clip_()
                loss_sum[k] += float(loss) * idx.numel()
                clock.add("train" + _SUFFIX[k], time.perf_counter() - t1)
            step += 1
        row: dict[str, float] = {}
        for k, mdl in models.items():
            scheds[k].step()
            suffix = _SUFFIX[k]
            with torch.no_grad():
                v = mdl(xt)
            row.update({"train_loss" + suffix: loss_sum[k] / x.shape[0],
                        "test_loss" + suffix: float(mse_cost(v, tt_target).mean()),
                        "test_accuracy" + suffix: accuracy(v, yt)})
        run.log_metrics(epoch, **row)
        if (epoch + 1) % max(1, int(tr["checkpoint_every"])) == 0 or epoch == epochs - 1:
            state: dict[str, Any] = {}
            for k, mdl in models.items():
                suffix = _SUFFIX[k]
                state.update({"ffebm" + suffix: mdl.state_dict(), "opt" + suffix: opts[k].state_dict(),
                              "sched" + suffix: scheds[k].state_dict()})
            run.save_checkpoint(step=step, epoch=epoch, generators={"shuffle": gen}, extra={"wall": clock.state()},
                                model=state)
    torch.save({"specs": specs, **{"ffebm" + _SUFFIX[k]: mdl.state_dict() for k, mdl in models.items()}},
               run.path / "model.pt")
    t_eval = time.perf_counter()
    with torch.no_grad():
        v_nom = model(xt)
        accs = [accuracy(model(xt, chips=block_chips(model, specs, seed, 2, c, float(mm["eval_scale"]))), yt)
                for c in range(int(mm["eval_chips"]))]
    nominal = accuracy(v_nom, yt)
    metrics: dict[str, Any] = {
        "blocks": len(specs), "block_sizes": [s["layer_sizes"] for s in specs],
        "test_accuracy": nominal, "chip_mean": float(np.mean(accs)), "chip_worst": float(np.min(accs)),
        "chip_accuracies": accs, "accuracy_nominal": nominal, "accuracy_chip_mean": float(np.mean(accs)),
        "accuracy_chip_worst": float(np.min(accs)), "confusion_matrix": confusion_matrix(v_nom, yt, 10),
        "eval_chips": int(mm["eval_chips"]), "train_scale": scale, "g_sigma": specs[0]["g_sigma"],
        "amp_gain": specs[0]["amp_gain"], "n_train": int(x.shape[0]), "n_test": int(xt.shape[0]),
        "dataset": ds.name, "data_origin": ds.origin, "epochs": epochs, "quick": bool(quick),
        "epoch_wall_s": round(clock.total("train") / max(1, epochs), 2), "wall_train_s": round(clock.total("train"), 2),
        "wall_eval_s": round(time.perf_counter() - t_eval, 2), "wall_s": round(clock.elapsed(), 2),
        "sessions": clock.sessions, "resumed_from_epoch": start_epoch if blob is not None else None,
    }
    if "ideal" in models:
        with torch.no_grad():
            metrics["accuracy_ideal"] = accuracy(models["ideal"](xt), yt)
        metrics["epoch_wall_s_ideal"] = round(clock.total("train_ideal") / max(1, epochs), 2)
    run.write_final_metrics(metrics)
    plots = [str(run.plot_metrics()), str(run.plot_metrics(
        keys=["test_accuracy"] + (["test_accuracy_ideal"] if "ideal" in models else []), name="accuracy.png"))]
    return {"run_dir": str(run.path), "metrics": metrics, "plots": plots}


def load_ffebm(run_dir: Path, device: str | torch.device = "cpu",
               which: str = "injected") -> tuple[FFEBM, list[dict[str, Any]]]:
    """The trained ff-EBM of a run directory (``which`` = "injected", the 4-bit mismatch-aware model, or "ideal"
    when ``[train] ideal`` trained it) and its block specs."""
    path = Path(run_dir) / "model.pt"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no model.pt (training did not finish)")
    blob = torch.load(path, map_location=device, weights_only=False)
    if which not in _SUFFIX or "ffebm" + _SUFFIX[which] not in blob:
        raise ValueError(f"which must be 'injected' or 'ideal' (when trained), got {which!r}")
    specs = blob["specs"]
    model = build_ffebm(specs, init_max=1.0, seed=0, device=torch.device(device), ideal=which == "ideal")
    model.load_state_dict(blob["ffebm" + _SUFFIX[which]])
    return model, specs
