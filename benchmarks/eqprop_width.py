"""Test accuracy of the ideal resistive network (the circuit itself, solved and trained by EqProp) against its hidden
width, with the settings of a full config. One JSON object.

The network is ``spicenet train eqprop``'s *ideal* model (float conductances clipped to [0, 15] LSB, no mismatch,
no quantisation), built from the config's ``[model]`` section and the surrogate's diode and conductance units, and
trained exactly as the trainer trains it (``train._train_epoch``: the same seeded minibatch order, the centered
nudge, Adam with the per-epoch decay); only ``[model] hidden`` is replaced by each ``--widths`` entry (one hidden
layer). Test accuracy on the config's test split after every epoch; each width is trained from the same seed.

It answers "how much of the gap to the published anchors is width": the MNIST anchor (>= 96 %) is above a digital
MLP of Kendall's width (100) on the 8,571 training images of the 10k set (95.6 %, ``benchmarks/resistive_replica.py``).

Usage: python benchmarks/eqprop_width.py [--config training/eqprop_mnist_full.toml] [--widths 100 500 1000]
       [--epochs N (default: the config's)] [--surrogate spicenet/data/surrogates/resistive_quick_generic.h5]
       [--loss mse|ce] [--lr-decay (default: the config's)] [--lr L] [--units clamp|rectifier --input-gain G]
       [--seed 0]

Hidden units and learning rate at one width, e.g. ``--config training/eqprop_fashion_full.toml --widths 100 --epochs 2``
with ``--units clamp --input-gain 30`` against ``--units rectifier --input-gain 100``, each at ``--lr 0.2`` and
``--lr 0.05`` (the README's ablation ran the trainer itself on the write-verify calibration).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spicenet.cells.resistive import train as tr  # noqa: E402
from spicenet.cells.resistive.eqprop import one_hot_targets  # noqa: E402
from spicenet.data import load_dataset  # noqa: E402
from spicenet.surrogate_schema import load_surrogate  # noqa: E402
from spicenet.train.run import WallClock  # noqa: E402


def train_width(cfg: dict, sur, data: tuple, width: int, epochs: int, seed: int) -> dict:
    """Train the ideal network of ``cfg`` with one hidden layer of ``width`` nodes; per-epoch test accuracy."""
    m, t = cfg["model"], cfg["train"]
    x, y, xt, yt = data
    spec = tr.net_spec(sur, [x.shape[1], width, 10], bool(m["bias"]), float(m["amp_gain"]), float(m["amp_back"]),
                       float(m["input_gain"]), float(m["v_bias"]), float(m["vb"]), str(m["units"]))
    net = tr.build_network(spec, init_max=float(m["init_max"]), seed=seed, ideal=True)
    opt = torch.optim.Adam(list(net.parameters()), lr=float(t["lr"]))
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, float(t["lr_decay"]))
    gen = torch.Generator().manual_seed(seed)
    use_ce, t_out = t["loss"] == "ce", float(t["t_out"])
    beta = float(t["beta"]) * spec["g_lsb"] * (t_out if use_ce else 1.0)
    target = one_hot_targets(y, 10, float(t["v_low"]), float(t["v_high"]))
    test_target = one_hot_targets(yt, 10, float(t["v_low"]), float(t["v_high"]))
    clock = WallClock.from_checkpoint(None, time.perf_counter())
    dev = torch.device("cpu")
    step, accs, t0 = 0, [], time.perf_counter()
    for epoch in range(epochs):
        perm = torch.randperm(x.shape[0], generator=gen)
        losses, step = tr._train_epoch({"ideal": net}, {"ideal": opt}, x, y, target, perm, int(t["batch_size"]),
                                       spec, seed, step, beta, use_ce, t_out, 1.0, clock, dev)
        sched.step()
        row = tr._test_row({"ideal": net}, xt, yt, test_target, losses, x.shape[0], use_ce, t_out, dev)
        accs.append(round(float(row["test_accuracy_ideal"]), 4))
        print(f"width {width} epoch {epoch}: test {accs[-1]:.4f} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return {"width": width, "test_accuracy": accs, "final": accs[-1], "best": max(accs),
            "epoch_s": round((time.perf_counter() - t0) / epochs, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default=str(ROOT / "training" / "eqprop_mnist_full.toml"))
    parser.add_argument("--surrogate", default=str(ROOT / "spicenet" / "data" / "surrogates" /
                                                   "resistive_quick_generic.h5"))
    parser.add_argument("--widths", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--epochs", type=int, default=0, help="0 = the config's train.epochs")
    parser.add_argument("--loss", choices=["mse", "ce"], default=None, help="default: the config's")
    parser.add_argument("--lr-decay", type=float, default=None, help="default: the config's train.lr_decay")
    parser.add_argument("--lr", type=float, default=None, help="default: the config's train.lr")
    parser.add_argument("--units", choices=["clamp", "rectifier"], default=None, help="default: the config's")
    parser.add_argument("--input-gain", type=float, default=None, help="default: the config's model.input_gain")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cfg = tr.merged_train_config(tomllib.loads(Path(args.config).read_text()))
    if args.loss is not None:
        cfg["train"]["loss"] = args.loss
    for section, key, value in (("train", "lr_decay", args.lr_decay), ("train", "lr", args.lr),
                                ("model", "units", args.units), ("model", "input_gain", args.input_gain)):
        if value is not None:
            cfg[section][key] = value
    torch.set_num_threads(max(1, int(cfg["train"]["threads"])))
    d = cfg["data"]
    ds = load_dataset(d["dataset"], source=d["source"], size=int(d["size"]), split_seed=0,
                      n_train=int(d["n_train"]) or None, n_test=int(d["n_test"]) or None)
    data = (torch.as_tensor(ds.flat("train"), dtype=torch.float64), torch.as_tensor(ds.y_train, dtype=torch.long),
            torch.as_tensor(ds.flat("test"), dtype=torch.float64), torch.as_tensor(ds.y_test, dtype=torch.long))
    sur = load_surrogate(Path(args.surrogate), "resistive")
    epochs = args.epochs or int(cfg["train"]["epochs"])
    rows = [train_width(cfg, sur, data, w, epochs, args.seed) for w in args.widths]
    print(json.dumps({"config": args.config, "dataset": ds.name, "n_train": int(data[0].shape[0]),
                      "n_test": int(data[2].shape[0]), "epochs": epochs, "loss": cfg["train"]["loss"],
                      "lr": cfg["train"]["lr"], "lr_decay": cfg["train"]["lr_decay"],
                      "units": cfg["model"]["units"], "input_gain": cfg["model"]["input_gain"], "widths": rows}))


if __name__ == "__main__":
    main()
