"""Time of one EqProp training step of a full config, per model, and the epoch time it implies. One JSON object.

Builds the config's three models exactly as ``spicenet train eqprop`` does (``train.build_network`` from the
config's ``[model]`` and the surrogate's units: the 4-bit model with mismatch injection, the 4-bit model without,
the ideal float network) and runs the trainer's own epoch loop (``train._train_epoch``: seeded minibatch order,
free phase + two nudged phases, Adam step, clip) over the first ``--batches`` minibatches of its training data.
Reported: milliseconds per minibatch for each model (``WallClock`` of the loop), the Newton iterations of the free
and nudged phases (mean over the last minibatch's samples), and ``epoch_s_estimate`` = minibatches per epoch x the
summed time per minibatch. The first minibatches of a run converge faster than later ones (weights near their
initial values), so the estimate is a lower bound; compare two code versions with the same arguments.

Usage: python benchmarks/eqprop_step.py [--config training/eqprop_fashion_deep.toml] [--batches 100]
       [--surrogate spicenet/data/surrogates/resistive_quick_generic.h5] [--seed 0]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "training" / "eqprop_fashion_deep.toml"))
    parser.add_argument("--surrogate", default=str(ROOT / "spicenet" / "data" / "surrogates" /
                                                   "resistive_quick_generic.h5"))
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cfg = tr.merged_train_config(tomllib.loads(Path(args.config).read_text()))
    d, m, t, mm = cfg["data"], cfg["model"], cfg["train"], cfg["mismatch"]
    torch.set_num_threads(max(1, int(t["threads"])))
    ds = load_dataset(d["dataset"], source=d["source"], size=int(d["size"]), split_seed=0,
                      n_train=int(d["n_train"]) or None, n_test=100)
    x = torch.as_tensor(ds.flat("train"), dtype=torch.float64)
    y = torch.as_tensor(ds.y_train, dtype=torch.long)
    sur = load_surrogate(Path(args.surrogate), "resistive")
    spec = tr.net_spec(sur, [x.shape[1], *[int(h) for h in m["hidden"]], 10], bool(m["bias"]), float(m["amp_gain"]),
                       float(m["amp_back"]), float(m["input_gain"]), float(m["v_bias"]), float(m["vb"]))
    kinds = ("injected", "plain") + (("ideal",) if bool(t["ideal"]) else ())
    nets = {k: tr.build_network(spec, init_max=float(m["init_max"]), seed=args.seed, ideal=k == "ideal")
            for k in kinds}
    opts = {k: torch.optim.Adam(list(n.parameters()), lr=float(t["lr"])) for k, n in nets.items()}
    use_ce, t_out = t["loss"] == "ce", float(t["t_out"])
    beta = float(t["beta"]) * spec["g_lsb"] * (t_out if use_ce else 1.0)
    bs = int(t["batch_size"])
    batches_per_epoch = -(-int(x.shape[0]) // bs)
    pick = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(args.seed))[: args.batches * bs]
    x, y = x[pick], y[pick]
    target = one_hot_targets(y, 10, float(t["v_low"]), float(t["v_high"]))
    clock = WallClock.from_checkpoint(None, time.perf_counter())
    t0 = time.perf_counter()
    tr._train_epoch(nets, opts, x, y, target, torch.arange(x.shape[0]), bs, spec, args.seed, 0, beta, use_ce, t_out,
                    float(mm["train_scale"]), clock, torch.device("cpu"))
    wall = time.perf_counter() - t0
    per_batch = {k: 1e3 * clock.total("train_" + k) / args.batches for k in kinds}
    xb = x[-bs:]
    iterations = {}
    for k, net in nets.items():
        free = net.equilibrium(xb)
        nudged = net.equilibrium(xb, beta=beta, target=target[-bs:], v0=free.v) if not use_ce else None
        iterations[k] = {"free": float(free.iterations.float().mean()),
                         "nudged": None if nudged is None else float(nudged.iterations.float().mean())}
    print(json.dumps({"config": args.config, "layers": [x.shape[1], *m["hidden"], 10], "batch_size": bs,
                      "batches": args.batches, "threads": torch.get_num_threads(),
                      "ms_per_batch": {k: round(v, 2) for k, v in per_batch.items()},
                      "newton_iterations": iterations, "wall_s": round(wall, 2),
                      "epoch_s_estimate": round(batches_per_epoch * sum(per_batch.values()) / 1e3, 1)}))


if __name__ == "__main__":
    main()
