"""How far a one-hidden-layer resistive network can go, at the speed of a digital model: its feed-forward replica
against a digital MLP of the same width, on the same data and minibatches. One JSON object.

The replica keeps the circuit's constraints and drops its feedback (exact when the backward amplifier gain is 0):

- hidden node j: ``h_j = clip( sum_k G_kj u_k / sum_k G_kj , -vb, vb )`` with sources ``u = [g x, -g x, +1, -1]``
  (input drivers of gain ``g`` = ``--input-gain`` and the +-1 V bias rails) and conductances ``G >= 0`` in LSB
  units clipped to [0, 15] after every step: every node voltage is a conductance-weighted mean of its sources
  (an L1-normalised weight vector), clamped at the diode rails ``+-vb`` (ideal diodes; ``--units clamp``) or, with
  ``--units rectifier`` (Scellier 2024's excitatory / inhibitory nodes, one diode to 0 V), ``max(., 0)`` on the
  first half of the hidden nodes and ``min(., 0)`` on the second half;
- output node i: the weighted mean of ``[A h, -A h, +1, -1]`` (the bidirectional amplifier of gain ``A`` =
  ``--amp-gain`` with its inverting copy), no clamp;
- MSE to targets -0.5 / +0.5 V, Adam lr ``--lr`` (0.05) with per-epoch decay ``--lr-decay``.

The MLP is ``784-H-10`` tanh with the same MSE targets (Adam lr 1e-3, torch default initialisation). Both see the same
seeded minibatches of 32. ``--dataset mnist`` uses the 10k MNIST set split 8,571 / 1,429 as ``spicenet train eqprop``
does; ``fashion`` the 60k / 10k split. Test accuracy after each epoch per learner.

Usage: python benchmarks/resistive_replica.py [--dataset fashion] [--n-train 0] [--epochs 10] [--hidden 100]
       [--input-gain 10] [--vb 0.3] [--amp-gain 4] [--units clamp] [--lr-decay 1] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spicenet.data import load_dataset  # noqa: E402


class Replica(nn.Module):
    """The feed-forward replica of the 1568-H-10 resistive network (module docstring)."""

    def __init__(self, n_in: int, hidden: int, input_gain: float, vb: float, amp_gain: float, seed: int,
                 units: str = "clamp") -> None:
        super().__init__()
        self.units = units
        gen = torch.Generator().manual_seed(seed)
        self.w1 = nn.Parameter(torch.rand(2 * n_in + 2, hidden, generator=gen) * 2 + 0.5)
        self.w2 = nn.Parameter(torch.rand(2 * hidden + 2, 10, generator=gen) * 2 + 0.5)
        self.input_gain, self.vb, self.amp_gain = input_gain, vb, amp_gain

    @staticmethod
    def _mean(u: Tensor, w: Tensor) -> Tensor:
        return (u @ w) / w.sum(0)

    def forward(self, x: Tensor) -> Tensor:
        ones = torch.ones(x.shape[0], 1)
        h = self._mean(torch.cat([self.input_gain * x, -self.input_gain * x, ones, -ones], 1), self.w1)
        if self.units == "rectifier":
            k = h.shape[1] // 2
            h = torch.cat([h[:, :k].clamp(min=0.0), h[:, k:].clamp(max=0.0)], 1)
        else:
            h = h.clamp(-self.vb, self.vb)
        return self._mean(torch.cat([self.amp_gain * h, -self.amp_gain * h, ones, -ones], 1), self.w2)

    @torch.no_grad()
    def clip_(self) -> None:
        for w in (self.w1, self.w2):
            w.clamp_(0.0, 15.0)


def train(model: nn.Module, lr: float, decay: float, x: Tensor, y: Tensor, xt: Tensor, yt: Tensor, epochs: int,
          seed: int, clip: Callable[[], None] | None) -> tuple[list[float], float]:
    """Adam on the MSE to -0.5/+0.5 targets; test accuracy after each epoch and seconds per epoch."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, decay)
    target = torch.full((10, 10), -0.5) + torch.eye(10)
    gen = torch.Generator().manual_seed(seed)
    accs, t0 = [], time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=gen)
        for s in range(0, x.shape[0], 32):
            idx = perm[s: s + 32]
            loss = 0.5 * ((model(x[idx]) - target[y[idx]]) ** 2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if clip is not None:
                clip()
        sched.step()
        with torch.no_grad():
            accs.append(round(float((model(xt).argmax(1) == yt).float().mean()), 4))
    return accs, (time.perf_counter() - t0) / epochs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion", choices=("fashion", "mnist"))
    ap.add_argument("--n-train", type=int, default=0, help="0 = the whole training split")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--input-gain", type=float, default=10.0)
    ap.add_argument("--vb", type=float, default=0.3)
    ap.add_argument("--amp-gain", type=float, default=4.0)
    ap.add_argument("--units", default="clamp", choices=("clamp", "rectifier"))
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--lr-decay", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-mlp", action="store_true", help="train the replica only (no gap_pp)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds = load_dataset(args.dataset, source="auto", size=28, split_seed=0, n_train=args.n_train or None)
    x = torch.as_tensor(ds.flat("train"), dtype=torch.float32)
    y = torch.as_tensor(ds.y_train, dtype=torch.long)
    xt = torch.as_tensor(ds.flat("test"), dtype=torch.float32)
    yt = torch.as_tensor(ds.y_test, dtype=torch.long)
    out: dict[str, object] = {"dataset": ds.name, "origin": ds.origin, "n_train": int(x.shape[0]),
                              "n_test": int(xt.shape[0]), "epochs": args.epochs, "hidden": args.hidden,
                              "input_gain": args.input_gain, "vb": args.vb, "amp_gain": args.amp_gain,
                              "units": args.units, "lr": args.lr, "lr_decay": args.lr_decay}
    rep = Replica(x.shape[1], args.hidden, args.input_gain, args.vb, args.amp_gain, args.seed, args.units)
    acc, wall = train(rep, args.lr, args.lr_decay, x, y, xt, yt, args.epochs, args.seed, rep.clip_)
    with torch.no_grad():
        train_acc = float((rep(x).argmax(1) == y).float().mean())
    out.update(replica_test_acc=acc, replica_train_acc=round(train_acc, 4), replica_epoch_s=round(wall, 2))
    if args.no_mlp:
        print(json.dumps(out))
        return
    torch.manual_seed(args.seed)
    mlp = nn.Sequential(nn.Linear(x.shape[1], args.hidden), nn.Tanh(), nn.Linear(args.hidden, 10))
    acc, wall = train(mlp, 1e-3, 1.0, x, y, xt, yt, args.epochs, args.seed, None)
    out.update(mlp_tanh_test_acc=acc, mlp_tanh_epoch_s=round(wall, 2))
    out["gap_pp"] = round(100 * (out["mlp_tanh_test_acc"][-1] - out["replica_test_acc"][-1]), 2)  # type: ignore[index]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
