"""``spicenet train eqprop``: centered EqProp on the calibrated resistive network, with and without mismatch injection.

Model: :class:`ResistiveNetwork` ``[n_pixels, *hidden, 10]`` with the calibrated diode law (Is, n, Rs at the
calibrated area), rails ``+-vb``, input gain and bias sources from the surrogate file. Parameters are in units of the
conductance LSB ``g_lsb`` (S), clipped to ``[0, 2^bits - 1]`` after every step and quantised to the programmable
levels ``k g_lsb`` in the forward pass (straight-through gradient). Gradients by centered EqProp (+-beta nudges,
:func:`spicenet.cells.resistive.eqprop.eqprop_gradients`); Adam. Prediction: the output node of highest voltage.

``[train]`` fields: ``epochs``; ``batch_size``; ``lr`` (Adam, parameters in LSB units); ``lr_decay`` (factor per
epoch); ``beta`` (nudge strength in LSB units: the MSE nudge conductance ``beta g_lsb`` S; for ``loss = "ce"``
the nudge currents ``-/+ beta g_lsb (1 V) (softmax - onehot)``, i.e. ``beta g_lsb t_out`` A V times dC/dV);
``loss``: ``"mse"`` (squared error ``sum (V - y)^2 / 2`` of the output voltages to one-hot targets, ``v_high``
V at the label, ``v_low`` V elsewhere) or ``"ce"`` (cross-entropy of the softmax of the logits
``(V - mean V) / t_out``, EqProp through the linear nudge of its gradient at the free state); ``t_out``: the
output temperature (V) of ``"ce"``; ``v_low`` / ``v_high`` (V, ``"mse"`` targets); ``ideal`` (also train the
ideal network); ``hardware`` (train the two 4-bit networks; ``false`` with ``ideal = true``: the ideal network
alone, the software reference of a long anchor run, with ``accuracy_ideal`` as its only accuracy metric);
``checkpoint_every`` (epochs); ``threads`` (torch threads, 0 = torch's default).

Mismatch: every chip is :func:`spicenet.cells.resistive.calibrate.level_chip` with the calibrated spreads —
a programmed conductance realised as ``G (1 + g_sigma z)`` (``g_mode="device"``: one programmed cell per
conductance) or ``G (1 + g_sigma z / sqrt(k))`` at level k (``"bank"``: k unit resistors of tolerance g_sigma),
diode ``ln Is`` spread ``sigma_ln_is`` and ideality spread ``sigma_n``. The *injected* model sees a fresh chip per
minibatch (``[mismatch] train_scale`` times the calibrated sigmas); the *no-injection* model is the same network,
same initialisation, same minibatches, trained on the nominal chip. Both are evaluated on the nominal chip
(``test_accuracy``) and on the same ``eval_chips`` held-out chips (``chip_mean``, ``chip_worst``: the seeds are
shared, so both models see the same unit-resistor and diode draws). With ``[train] ideal = true`` a third model,
the *ideal* network (same architecture, float conductances in the same range, no mismatch), is trained on the same
minibatches as the software reference (``accuracy_ideal``).

Amplifiers: ``[model] amp_gain`` > 0 puts Kendall's bidirectional amplifiers between the free layers (VCVS gain
``amp_gain`` forward with an inverting copy, CCCS gain ``amp_back`` backward, 0 = ``1/amp_gain``); needed for
signed weights after the first layer and for deep (2-3 hidden layer) networks.

Metrics: ``accuracy_ideal``; ``accuracy_nominal``, ``accuracy_chip_mean``, ``accuracy_chip_worst`` (4-bit,
injected) and the same with ``_no_injection``; the older names ``test_accuracy``, ``chip_mean``, ``chip_worst``
are kept; ``epoch_wall_s`` per model.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from spicenet.cells.resistive import streams
from spicenet.cells.resistive.calibrate import level_chip
from spicenet.cells.resistive.eqprop import (accuracy, ce_cost, confusion_matrix, eqprop_gradients, mse_cost,
                                             one_hot_targets, param_grads)
from spicenet.cells.resistive.network import UNITS, Chip, ResistiveNetwork, programmable_levels
from spicenet.data.settings import dataset_setting, n_test_setting, n_train_setting, source_setting
from spicenet.config import as_sections, check_ranges, load_config, setting
from spicenet.data import load_dataset
from spicenet.errors import ConfigError
from spicenet.plotting import per_chip_points, subplots
from spicenet.progress import logger, progress_iter
from spicenet.seeds import Stream, int_seed
from spicenet.surrogate import SurrogateFile
from spicenet.surrogate_schema import load_surrogate
from spicenet.train import RunDir, WallClock, resolve_device
from spicenet.train.threads import restores_torch_threads

__all__ = ["EqPropTrainConfig", "TRAIN_DEFAULTS", "NetSpec", "net_spec", "build_network", "chip_seed", "train_resistive",
           "load_trained", "test_data"]

@dataclass(frozen=True)
class EqPropTrainConfig:
    """Validated training config of ``spicenet train eqprop``: one field per key of the TOML sections ``[data]``,
    ``[model]``, ``[train]``, ``[mismatch]`` (the module docstring gives the equations; ``spicenet config show
    resistive`` prints every key with its default and doc). The trainer reads it as nested dicts
    (:meth:`sections`)."""

    dataset: str = dataset_setting("mnist")
    source: str = source_setting()
    size: int = setting(8, "image side, 8 | 14 | 28 (pixels in [0, 1], each fed as +x and -x)", unit="px",
                        section="data")
    n_train: int = n_train_setting()
    n_test: int = n_test_setting()
    hidden: list[int] = setting([32], "hidden layer widths (2-3 layers need amp_gain > 0)", section="model")
    bias: bool = setting(True, "bias rails (+v_bias, -v_bias) connected to every free node", section="model")
    init_max: float = setting(4.0, "initial conductances uniform in [0, init_max]", unit="LSB", section="model")
    amp_gain: float = setting(0.0, "forward VCVS gain of the bidirectional amplifiers (0 = none)", section="model")
    amp_back: float = setting(0.0, "backward CCCS gain of the amplifiers (0 = 1 / amp_gain)", section="model")
    input_gain: float = setting(0.0, "input driver gain (0 = the surrogate's)", unit="V per unit input",
                                section="model")
    v_bias: float = setting(0.0, "bias rail voltage (0 = the surrogate's)", unit="V", section="model")
    vb: float = setting(0.0, "diode rail voltage: each free node's diode pair conducts beyond +vb / -vb "
                        "(0 = the surrogate's)", unit="V", section="model")
    units: str = setting("clamp", "hidden-node nonlinearity: clamp (two diodes at +vb / -vb, a hard tanh) | "
                         "rectifier (one diode to 0 V, half the nodes excitatory V >= 0, half inhibitory V <= 0, a "
                         "ReLU; Scellier 2024's deep resistive network; the outputs keep the clamp)", section="model")
    epochs: int = setting(10, "passes over the training images", section="train")
    batch_size: int = setting(20, "images per minibatch", section="train")
    lr: float = setting(0.3, "Adam learning rate (parameters in LSB units)", section="train")
    lr_decay: float = setting(1.0, "learning-rate factor per epoch", section="train")
    beta: float = setting(0.1, "nudge strength (MSE: nudge conductance beta * g_lsb)", unit="LSB", section="train")
    loss: str = setting("mse", "mse (output voltages to v_low / v_high targets) | ce (softmax of (V - mean) / t_out)",
                        section="train")
    t_out: float = setting(0.1, "output temperature of the ce loss", unit="V", section="train")
    v_low: float = setting(-0.5, "mse target of the wrong classes", unit="V", section="train")
    v_high: float = setting(0.5, "mse target of the label", unit="V", section="train")
    ideal: bool = setting(True, "also train the ideal network (float conductances, no mismatch)", section="train")
    hardware: bool = setting(True, "train the 4-bit networks with and without mismatch injection (false: the ideal "
                             "network alone, which needs ideal = true)", section="train")
    checkpoint_every: int = setting(1, "epochs between resumable checkpoints", section="train")
    threads: int = setting(1, "torch CPU threads (0 = torch's default)", section="train")
    train_scale: float = setting(1.0, "injected chips: calibrated sigmas x scale", section="mismatch")
    eval_scale: float = setting(1.0, "evaluation chips: calibrated sigmas x scale", section="mismatch")
    eval_chips: int = setting(10, "held-out Monte-Carlo chips evaluated after training", section="mismatch")

    def __post_init__(self) -> None:
        if self.loss not in ("mse", "ce"):
            raise ValueError(f"[train] loss must be 'mse' or 'ce', got {self.loss!r}")
        if self.units not in UNITS:
            raise ValueError(f"[model] units must be one of {', '.join(UNITS)}, got {self.units!r}")
        if not self.hardware and not self.ideal:
            raise ValueError("[train] hardware = false needs ideal = true (no network would be trained)")
        check_ranges(self, {"t_out": self.t_out > 0, "v_bias": self.v_bias >= 0, "vb": self.vb >= 0})

    def sections(self) -> dict[str, dict[str, Any]]:
        """The config as ``{section: {key: value}}`` (what the trainers read)."""
        return as_sections(self)


TRAIN_DEFAULTS: dict[str, dict[str, Any]] = EqPropTrainConfig().sections()


def merged_train_config(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The validated config of a parsed TOML as nested dicts (``spicenet.config.load_config`` of
    :class:`EqPropTrainConfig`: an unknown section or key, a key in the wrong section or a value of the wrong type
    is a ConfigError naming ``[section] key``)."""
    return load_config(EqPropTrainConfig, config, "eqprop config").sections()


NetSpec = dict[str, Any]


def net_spec(sur: SurrogateFile, layer_sizes: list[int], bias: bool, amp_gain: float = 0.0,
             amp_back: float = 0.0, input_gain: float = 0.0, v_bias: float = 0.0, vb: float = 0.0,
             units: str = "clamp") -> NetSpec:
    """Keyword arguments of :class:`ResistiveNetwork` (plus levels and mismatch sigmas) from a surrogate file;
    ``amp_gain`` > 0 puts bidirectional amplifiers (VCVS gain A, CCCS gain ``amp_back``, 0 = 1/A) between the
    free layers; ``input_gain`` > 0 replaces the surrogate's ideal input-driver gain (V per unit input);
    ``v_bias`` > 0 replaces the surrogate's bias-rail voltage (V; the rails are ``+v_bias`` and ``-v_bias``);
    ``vb`` > 0 replaces the surrogate's diode-rail voltage (V; each free node's diodes go to ``+vb`` and ``-vb``, so
    its voltage is clamped near that range: the diode law itself, a function of V - vb, is unchanged); ``units``
    the hidden-node nonlinearity (:data:`~spicenet.cells.resistive.network.UNITS`; checked by the network)."""
    for name, value in (("v_bias", v_bias), ("vb", vb)):
        if not (value >= 0 and np.isfinite(value)):
            raise ConfigError(f"{name} must be >= 0 V (0 = the surrogate's), got {value!r}")
    if sur.family != "resistive":
        raise ConfigError(f"surrogate is for family {sur.family!r}, not 'resistive'")
    a = sur.attrs
    levels = np.asarray(sur.extra["levels"], dtype=np.float64)
    return {
        "layer_sizes": [int(s) for s in layer_sizes], "bias": bool(bias), "units": units,
        "input_gain": float(input_gain) if input_gain else float(a["input_gain"]),
        "amp_gain": float(amp_gain) if amp_gain else None,
        "amp_back": float(amp_back) if (amp_gain and amp_back) else None,
        "v_bias": float(v_bias) if v_bias else float(a["v_bias"]), "vb": float(vb) if vb else float(a["vb"]), "gmin": float(a["gmin"]),
        "is_": float(a["diode_is_nominal"]), "n": float(a["diode_n_nominal"]), "rs": float(a["diode_rs_nominal"]),
        "g_lsb": float(a["g_lsb"]), "levels": levels.tolist(), "g_sigma": float(a["g_sigma"]),
        "g_mode": str(a.get("g_mode", "bank")), "process": sur.process, "diode_area": float(a["diode_area"]),
        "sigma_ln_is": float(a["sigma_ln_is"]), "sigma_n": float(a["sigma_n_rel"]),
        "c_node_f": float(a.get("c_node_f", 10e-15)), "settle_taus": float(a.get("settle_taus", 5.0)),
        "spice_options": {"reltol": float(a.get("spice_reltol", 1e-6)), "vntol": float(a.get("spice_vntol", 1e-9)),
                          "abstol": float(a.get("spice_abstol", 1e-15))},
    }


def build_network(spec: NetSpec, *, init_max: float = 4.0, seed: int = 0,
                  device: str | torch.device = "cpu", ideal: bool = False) -> ResistiveNetwork:
    """The quantised network of ``spec`` (parameters in LSB units, clipped to [0, 2^bits - 1]); ``ideal``: the
    same network with float conductances (no quantisation), the software reference."""
    levels = spec["levels"]
    return ResistiveNetwork(
        spec["layer_sizes"], input_gain=spec["input_gain"], bias=spec["bias"], v_bias=spec["v_bias"],
        is_=spec["is_"], n=spec["n"], rs=spec["rs"], vb=spec["vb"], gmin=spec["gmin"], g_unit=spec["g_lsb"],
        init_range=(0.0, float(init_max)), g_max=float(len(levels) - 1),
        quantize=None if ideal else programmable_levels(levels),
        amp_gain=spec.get("amp_gain"), amp_back=spec.get("amp_back"), units=spec.get("units", "clamp"), seed=seed,
        device=device)


_CHIP_STREAMS = {1: streams.TRAIN_CHIP, 2: streams.EVAL_CHIP, 3: streams.VALIDATE_CHIP}


def chip_seed(seed: int, stream: int | Stream, index: int) -> int:
    """The 63-bit seed of chip ``index`` of one of the family's chip streams, ``spicenet.seeds.int_seed(seed,
    stream, index)``: ``streams.TRAIN_CHIP`` (training chips), ``EVAL_CHIP`` (held-out evaluation chips),
    ``RES_VALIDATE_CHIP`` (validation chips), or their former numbers 1, 2, 3 (the same seeds)."""
    s = stream if isinstance(stream, Stream) else _CHIP_STREAMS.get(int(stream))
    if s not in _CHIP_STREAMS.values():
        raise ValueError(f"stream: expected one of {[v.name for v in _CHIP_STREAMS.values()]} (or 1, 2, 3), "
                         f"got {stream!r}")
    assert s is not None
    return int_seed(seed, s, index)


def make_chip(net: ResistiveNetwork, spec: NetSpec, seed: int, scale: float = 1.0) -> Chip:
    """A chip for ``net`` from the calibrated spreads of ``spec`` (see :func:`level_chip`)."""
    return level_chip(net, spec["levels"], g_sigma=spec["g_sigma"], sigma_ln_is=spec["sigma_ln_is"],
                      sigma_n=spec["sigma_n"], seed=seed, scale=scale, mode=spec.get("g_mode", "bank"))


def test_data(cfg: dict[str, Any], *, source: str | None = None,
              n_test: int | None = None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Flattened test images [M, size^2] in [0, 1] and labels [M] of the run's dataset (``source`` overrides; the
    split seed is the training one, 0, so pooled sets keep their held-out part)."""
    d = cfg["data"]
    ds = load_dataset(d["dataset"], source=source or d["source"], size=int(d["size"]), split_seed=0,
                      n_test=n_test or None)
    return (torch.as_tensor(ds.flat("test"), dtype=torch.float64), torch.as_tensor(ds.y_test, dtype=torch.long),
            ds.origin)


def _write_meta(run: RunDir, extra: dict[str, Any]) -> None:
    meta = run.meta()
    meta.update(extra)
    path = run.path / "run.json"
    tmp = path.with_name(".run.json.tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, path)


def _evaluate(net: ResistiveNetwork, spec: NetSpec, x: torch.Tensor, y: torch.Tensor, seeds: list[int],
              scale: float) -> dict[str, Any]:
    with torch.no_grad():
        v_nominal = net(x)
        nominal = accuracy(v_nominal, y)
        accs = [accuracy(net(x, chip=make_chip(net, spec, s, scale)), y) for s in seeds]
    return {"test_accuracy": nominal, "chip_mean": float(np.mean(accs)), "chip_worst": float(np.min(accs)),
            "chip_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0, "chip_accuracies": accs,
            "confusion_matrix": confusion_matrix(v_nominal, y, v_nominal.shape[1])}


_SUFFIXES = {"injected": "", "plain": "_no_injection", "ideal": "_ideal"}
"""Metrics-key suffix of each trained model."""


def _train_epoch(nets: dict[str, ResistiveNetwork], opts: Mapping[str, torch.optim.Optimizer], x: torch.Tensor,
                 y: torch.Tensor, t_target: torch.Tensor, perm: torch.Tensor, bs: int, spec: NetSpec, seed: int,
                 step: int, beta: float, use_ce: bool, t_out: float, train_scale: float, clock: WallClock,
                 dev: torch.device) -> tuple[dict[str, float], int]:
    """One epoch over the minibatches of ``perm``: for every model the EqProp gradients (a fresh chip per
    minibatch for the injected model, ``chip_seed(seed, streams.TRAIN_CHIP, step)``), an Adam step and the clip
    to the levels. Returns the summed training losses per model and the step count after the epoch."""
    losses = {k: 0.0 for k in nets}
    for s in range(0, x.shape[0], bs):
        idx = perm[s: s + bs]
        xb, tb = x[idx].to(dev), t_target[idx]
        for k, net in nets.items():
            t1 = time.perf_counter()
            chip = (make_chip(net, spec, chip_seed(seed, streams.TRAIN_CHIP, step), train_scale)
                    if k == "injected" else None)
            if use_ce:
                res = eqprop_gradients(net, xb, beta=beta, labels=y[idx].to(dev), t_out=t_out, chip=chip)
            else:
                res = eqprop_gradients(net, xb, beta=beta, target=tb, chip=chip)
            for p, g in zip(list(net.weights) + list(net.biases), param_grads(net, res)):
                p.grad = g.to(p)
            opts[k].step()
            net.clip_()
            losses[k] += float(res.loss) * idx.numel()
            clock.add("train_" + k, time.perf_counter() - t1)
        step += 1
    return losses, step


def _test_row(nets: dict[str, ResistiveNetwork], xt: torch.Tensor, yt: torch.Tensor, tt_target: torch.Tensor,
              losses: dict[str, float], n_train: int, use_ce: bool, t_out: float, dev: torch.device
              ) -> dict[str, float]:
    """The epoch's metrics.csv row: mean training loss, test loss and test accuracy of every model (nominal chip)."""
    row = {}
    with torch.no_grad():
        for k, net in nets.items():
            suffix = _SUFFIXES[k]
            v = net(xt.to(dev))
            row["train_loss" + suffix] = losses[k] / n_train
            row["test_loss" + suffix] = float((ce_cost(v, yt.to(dev), t_out) if use_ce else
                                               mse_cost(v, tt_target)).mean())
            row["test_accuracy" + suffix] = accuracy(v, yt)
    return row


@restores_torch_threads
def train_resistive(config: dict[str, Any], *, surrogate: Path, quick: bool, run_dir: Path, device: str = "cpu",
                    seed: int = 0) -> dict[str, Any]:
    """Train the injected and the no-injection models (module docstring); write the run directory.

    Returns ``{"run_dir", "metrics"}``; metrics hold ``test_accuracy``, ``chip_mean``, ``chip_worst`` (injected
    model) and the same keys with ``_no_injection``, plus ``injection_gain_worst_pp`` (worst-chip accuracy gain in
    percentage points) and wall times [s], accumulated over the sessions of a resumed run (``WallClock``).

    A ``run_dir`` holding this run resumes from its newest checkpoint; ``train.epochs`` larger than the stored one
    extends it (``spicenet train --resume --epochs N``); smaller than the checkpoint's epoch is a ConfigError."""
    t0 = time.perf_counter()
    cfg = merged_train_config(config)
    dev = resolve_device(device)
    threads = int(cfg["train"]["threads"])
    if threads > 0:
        torch.set_num_threads(threads)
    sur = load_surrogate(surrogate, "resistive")
    d, m, tr, mm = cfg["data"], cfg["model"], cfg["train"], cfg["mismatch"]
    ds = load_dataset(d["dataset"], source=d["source"], size=int(d["size"]), split_seed=0,
                      n_train=int(d["n_train"]) or None, n_test=int(d["n_test"]) or None)
    x = torch.as_tensor(ds.flat("train"), dtype=torch.float64)
    y = torch.as_tensor(ds.y_train, dtype=torch.long)
    xt = torch.as_tensor(ds.flat("test"), dtype=torch.float64)
    yt = torch.as_tensor(ds.y_test, dtype=torch.long)
    sizes = [x.shape[1], *[int(h) for h in m["hidden"]], 10]
    spec = net_spec(sur, sizes, bool(m["bias"]), float(m["amp_gain"]), float(m["amp_back"]), float(m["input_gain"]),
                    float(m["v_bias"]), float(m["vb"]), str(m["units"]))
    run = RunDir.create(run_dir, cfg, surrogate=surrogate, seed=seed, device=str(dev),
                        dataset={"name": ds.name, "source": d["source"], "origin": ds.origin, "size": ds.size,
                                 "n_train": int(x.shape[0]), "n_test": int(xt.shape[0])},
                        length_key="train.epochs", defaults=TRAIN_DEFAULTS)
    _write_meta(run, {"family": "resistive", "trainer": "eqprop", "net_spec": spec})
    kinds = (("injected", "plain") if bool(tr["hardware"]) else ()) + (("ideal",) if bool(tr["ideal"]) else ())
    nets = {k: build_network(spec, init_max=float(m["init_max"]), seed=seed, device=dev, ideal=k == "ideal")
            for k in kinds}
    opts = {k: torch.optim.Adam(list(n.parameters()), lr=float(tr["lr"])) for k, n in nets.items()}
    scheds = {k: torch.optim.lr_scheduler.ExponentialLR(o, float(tr["lr_decay"])) for k, o in opts.items()}
    gen = torch.Generator().manual_seed(int(seed))
    start_epoch, step = 0, 0
    blob = run.load_checkpoint(generators={"shuffle": gen}, restore_rng=True)
    clock = WallClock.from_checkpoint(blob, t0)
    if blob is not None:
        for k in nets:
            nets[k].load_state_dict(blob["model"][k])
            opts[k].load_state_dict(blob["model"]["opt_" + k])
            scheds[k].load_state_dict(blob["model"]["sched_" + k])
        start_epoch, step = int(blob["epoch"]) + 1, int(blob["step"])
        _check_length(run, start_epoch, int(tr["epochs"]))
        run.truncate_metrics(start_epoch - 1)
        logger().debug(f"eqprop: resumed {run.path} after epoch {start_epoch} (step {step}, session {clock.sessions})")
    use_ce, t_out = tr["loss"] == "ce", float(tr["t_out"])
    beta = float(tr["beta"]) * spec["g_lsb"] * (t_out if use_ce else 1.0)  # S (mse) or A V (ce; docstring)
    t_target = one_hot_targets(y, 10, float(tr["v_low"]), float(tr["v_high"])).to(dev)
    tt_target = one_hot_targets(yt, 10, float(tr["v_low"]), float(tr["v_high"])).to(dev)
    bs, epochs = int(tr["batch_size"]), int(tr["epochs"])
    train_scale = float(mm["train_scale"])
    for epoch in progress_iter(range(start_epoch, epochs), epochs, "eqprop", initial=start_epoch):
        perm = torch.randperm(x.shape[0], generator=gen)
        losses, step = _train_epoch(nets, opts, x, y, t_target, perm, bs, spec, seed, step, beta, use_ce, t_out,
                                    train_scale, clock, dev)
        for sch in scheds.values():
            sch.step()
        row = _test_row(nets, xt, yt, tt_target, losses, x.shape[0], use_ce, t_out, dev)
        run.log_metrics(epoch, **row)
        if (epoch + 1) % max(1, int(tr["checkpoint_every"])) == 0 or epoch == epochs - 1:
            state = {k: n.state_dict() for k, n in nets.items()}
            state.update({"opt_" + k: o.state_dict() for k, o in opts.items()})
            state.update({"sched_" + k: o.state_dict() for k, o in scheds.items()})
            run.save_checkpoint(step=step, epoch=epoch, model=state, generators={"shuffle": gen},
                                extra={"wall": clock.state()})
    torch.save({"spec": spec, **{k: n.state_dict() for k, n in nets.items()}}, run.path / "model.pt")
    # ------------------------------------------------------------------------------------------ evaluation
    t_eval = time.perf_counter()
    seeds = [chip_seed(seed, streams.EVAL_CHIP, c) for c in range(int(mm["eval_chips"]))]
    ev = {k: _evaluate(n, spec, xt.to(dev), yt, seeds, float(mm["eval_scale"])) for k, n in nets.items()
          if k != "ideal"}
    metrics: dict[str, Any] = {}
    for k, e in ev.items():
        suffix = _SUFFIXES[k]
        metrics.update({key + suffix: val for key, val in e.items()})
        metrics.update({"accuracy_nominal" + suffix: e["test_accuracy"], "accuracy_chip_mean" + suffix: e["chip_mean"],
                        "accuracy_chip_worst" + suffix: e["chip_worst"]})
    if "ideal" in nets:
        with torch.no_grad():
            metrics["accuracy_ideal"] = accuracy(nets["ideal"](xt.to(dev)), yt)
    wall_train = {k: clock.total("train_" + k) for k in nets}
    metrics["epoch_wall_s"] = {k: round(v / max(1, epochs), 2) for k, v in wall_train.items()}
    metrics["amp_gain"], metrics["amp_back"] = spec["amp_gain"], spec["amp_back"]
    if ev:
        metrics["injection_gain_worst_pp"] = 100.0 * (ev["injected"]["chip_worst"] - ev["plain"]["chip_worst"])
        metrics["injection_gain_mean_pp"] = 100.0 * (ev["injected"]["chip_mean"] - ev["plain"]["chip_mean"])
    metrics.update({
        "loss": tr["loss"], "hardware": bool(tr["hardware"]), "t_out": t_out if use_ce else None,
        "eval_chips": len(seeds) if ev else 0, "eval_scale": float(mm["eval_scale"]), "train_scale": train_scale,
        "g_sigma": spec["g_sigma"], "sigma_ln_is": spec["sigma_ln_is"], "layer_sizes": sizes,
        "n_train": int(x.shape[0]), "n_test": int(xt.shape[0]), "dataset": ds.name, "data_origin": ds.origin,
        "epochs": epochs, "quick": bool(quick), "wall_train_s": {k: round(v, 2) for k, v in wall_train.items()},
        "wall_eval_s": round(time.perf_counter() - t_eval, 2), "wall_s": round(clock.elapsed(), 2),
        "sessions": clock.sessions, "resumed_from_epoch": start_epoch if blob is not None else None,
    })
    run.write_final_metrics(metrics)
    plots = [str(run.plot_metrics()), str(run.plot_metrics(
        keys=[key for k, key in (("injected", "test_accuracy"), ("plain", "test_accuracy_no_injection"),
                                 ("ideal", "test_accuracy_ideal")) if k in nets], name="accuracy.png"))]
    if ev:
        plots.append(str(_plot_chips(run, ev)))
    return {"run_dir": str(run.path), "metrics": metrics, "plots": plots}


def _check_length(run: RunDir, done: int, length: int, key: str = "train.epochs") -> None:
    """ConfigError when the checkpoint (``done`` epochs) is beyond the requested run length."""
    if done > length:
        raise ConfigError(f"{run.path}: the checkpoint has {done} epochs done; {key} = {length} would shorten the run "
                          f"(give --epochs >= {done})")


def _plot_chips(run: RunDir, ev: dict[str, dict[str, Any]]) -> Path:
    fig, ax = subplots(figsize=(6, 4))
    per_chip_points(ax, {f"{k} (mean {e['chip_mean']:.3f}, worst {e['chip_worst']:.3f})":
                         (range(len(e["chip_accuracies"])), e["chip_accuracies"]) for k, e in ev.items()},
                    xlabel="held-out chip", ylabel="test accuracy", legend=True)
    ax.set(title="accuracy over held-out mismatch chips")
    fig.tight_layout()
    p = run.plots / "chips.png"
    fig.savefig(p, dpi=110)
    return p


def load_trained(run_dir: Path, which: str = "injected", device: str | torch.device = "cpu") -> tuple[
        ResistiveNetwork, NetSpec]:
    """The trained network (``which`` = "injected", "plain" or "ideal") of a run directory and its spec; a
    ConfigError when the run did not train it (``[train] hardware = false`` or ``ideal = false``)."""
    path = Path(run_dir) / "model.pt"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no model.pt (training did not finish)")
    blob = torch.load(path, map_location=device, weights_only=False)
    if which not in ("injected", "plain", "ideal"):
        raise ValueError(f"which must be 'injected', 'plain' or 'ideal', got {which!r}")
    if which not in blob:
        why = "[train] hardware = false: only the ideal network" if which != "ideal" else "[train] ideal = false"
        raise ConfigError(f"{run_dir}: the run has no {which!r} network to load ({why} was trained)")
    net = build_network(blob["spec"], device=device, ideal=which == "ideal")
    net.load_state_dict(blob[which])
    return net, blob["spec"]
