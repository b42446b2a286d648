"""The ff-EBM split experiment (Nest & Ernoult 2024, claim 1): one deep resistive network against the same layers
split into 2 and 4 resistive blocks tied by digital feedforward layers. One JSON object.

Same total size for every split: ``--width`` nodes in each of 3 free layers, then 10 outputs (default 100: 310 free
nodes), on Fashion-MNIST at 28x28 (``--n-train`` training images, the first 2,000 test images):

- 1 block:  784-100-100-100-10, bidirectional amplifiers (gain ``--amp-gain``, CCCS 1/gain) between its free layers;
- 2 blocks: 784-100-100 -> Linear(100, 100) -> 100-100-10 (amplifiers inside each block);
- 4 blocks: 784-100 -> Linear -> 100-100 -> Linear -> 100-100 -> Linear -> 100-10 (blocks without hidden layer,
  no amplifiers).

Every block is the *ideal* network (float conductances, no mismatch) on the shipped quick calibration's diode law
(rails +-0.3 V), input drivers of gain ``--input-gain``, conductances initialised uniform in [0, 2] LSB; feedforward
layers start at the identity plus a small seeded perturbation (:func:`spicenet.cells.resistive.ffebm_train.build_ffebm`,
``ideal=True``). Gradients: centered EqProp through each block (MSE nudge at the last, linear nudge from backprop
elsewhere), backprop through the feedforward layers (:meth:`spicenet.cells.resistive.ffebm.FFEBM.eqprop_backward`;
it equals autograd through the solver to cosine 1.000 for every parameter tensor of every split, at the start and
during training); Adam, ``--lr`` on conductances (LSB units, clipped to [0, 15] LSB) and ``--lr-ff`` on the
feedforward layers, per-epoch decay ``--lr-decay``; the same minibatches (batch 32, seeded permutation per epoch)
for every split.

Why the defaults (the first version, amplifier gain 4 and lr 0.2, gave 1 / 2 / 4 blocks 47 / 72 / 10 %):

- ``--lr`` 0.05, not 0.2: Adam's first steps move every conductance by ~lr in the sign of its gradient, coherently
  over a node's fan-in (784 pixels x 2 at input gain 10), so at 0.2 LSB (a fifth of the mean initial conductance)
  one step takes block 1's nodes from |V| 0.06 V to 0.5 V, 75-80 % beyond the rails; within a few dozen steps every
  node of the single-layer blocks 2-4 is clamped by its diodes (batch spread < 0.005 V, i.e. constant outputs), the chain
  carries no signal and its gradient vanishes: the 4-block model stays at chance for good;
  after ~1 epoch (300 steps, width 100, gain 20) lr 0.2 / 0.1 / 0.05 / 0.03 gave 4 blocks 10 / 79 / 78 / 74 %,
  lr 0.1 / 0.05 gave 1 block 35 % (after 100 steps) / 76 % and 2 blocks 62 / 77 %;
- ``--amp-gain`` 20, not 4: a node of a hidden layer averages the +-A V outputs of the previous layer over ~2 n
  random conductances, a small-signal gain of ~A sqrt(n) sd(G+ - G-) / (4 n mean G): ~0.08 per layer at A = 4 and
  n = 100 (measured 0.036 -> 0.003 V batch spread from layer 1 to 2),
  so the output layer of the 784-100-100-100-10 block starts with a batch spread of 1e-4 V (targets +-0.5 V) and
  learns slowly; A ~ 20 keeps the spread ~0.01 V through the three amplifier stages;
- ``--lr-decay`` 0.6, not 0.85: at 0.85 the deep block is noisy late (10k images, 3 epochs, width 100: test
  79.1 / 75.6 / 80.2 % per epoch; 2 blocks 81.2 %, 4 blocks 82.5 %); at 0.6: 1 / 2 / 4 blocks 81.3 / 81.65 / 82.0 %.
  At full size (``--n-train 60000 --epochs 3``, 2026-12-06): 83.4 / 84.9 / 84.2 %, 628-817 / 335 / 69 s per epoch.

Per split: test accuracy after each epoch, the final train accuracy on 2,000 training images, seconds per epoch;
per block at the end (500 test images): ``out_sd_v`` (output voltages' spread over the images, mean over the
outputs) and ``clamped`` (fraction of free nodes whose diodes conduct more than the node's resistors, i.e. whose
small-signal response is attenuated more than 2x); ``gap_pp_vs_1_block`` = final test accuracy minus the 1-block
one (percentage points).

Usage: python benchmarks/ffebm_split.py [--n-train 10000] [--epochs 3] [--width 100] [--splits 1,2,4] [--seed 0]
       [--amp-gain 20] [--lr 0.05] [--lr-decay 0.6]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import cast

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spicenet.cells.resistive.eqprop import accuracy, one_hot_targets  # noqa: E402
from spicenet.cells.resistive.ffebm import FFEBM  # noqa: E402
from spicenet.cells.resistive.ffebm_train import build_ffebm  # noqa: E402
from spicenet.cells.resistive.network import ResistiveNetwork  # noqa: E402
from spicenet.cells.resistive.solver import diode_current, thermal_voltage  # noqa: E402
from spicenet.cells.resistive.train import net_spec  # noqa: E402
from spicenet.data import load_dataset  # noqa: E402
from spicenet.surrogate_schema import load_surrogate  # noqa: E402

CALIBRATION = Path(__file__).resolve().parents[1] / "spicenet" / "data" / "surrogates" / "resistive_quick_generic.h5"


def split_blocks(width: int, n_blocks: int) -> list[list[int]]:
    """The 3 free layers of ``width`` nodes plus the 10 outputs, split into ``n_blocks`` (1, 2 or 4) consecutive
    blocks of layer widths (a block's first layer is driven by the previous block through a feedforward layer)."""
    layers = [width, width, width, 10]
    cuts = {1: [4], 2: [2, 4], 4: [1, 2, 3, 4]}
    if n_blocks not in cuts:
        raise ValueError(f"--splits: each split must be 1, 2 or 4 blocks, got {n_blocks}")
    out, start = [], 0
    for end in cuts[n_blocks]:
        out.append(layers[start:end])
        start = end
    return out


def build(blocks: list[list[int]], amp_gain: float, input_gain: float, seed: int) -> FFEBM:
    """Ideal resistive blocks (seeded ``seed + k``; amplifiers only in blocks with a hidden layer) and
    identity-initialised feedforward layers."""
    sur = load_surrogate(CALIBRATION, "resistive")
    specs, prev = [], 784
    for b in blocks:
        specs.append(net_spec(sur, [prev, *b], True, amp_gain if len(b) > 1 else 0.0, 0.0, input_gain))
        prev = b[-1]
    return build_ffebm(specs, init_max=2.0, seed=seed, ideal=True)


@torch.no_grad()
def block_signals(model: FFEBM, x: torch.Tensor) -> list[dict[str, float]]:
    """Per block on inputs ``x``: the output voltages' spread over the batch (V, mean over the outputs) and the
    fraction of free nodes whose diode conductance exceeds the node's resistor conductance (clamped by the rails)."""
    out, h = [], x
    for k, blk in enumerate(model.blocks):
        net = cast(ResistiveNetwork, blk)
        circ = net.circuit()
        v = net.equilibrium(h, circuit=circ).v
        vte = circ.n * thermal_voltage(circ.temperature)
        vd = torch.stack((v - circ.vb, -circ.vb - v), dim=-1)
        g_d = diode_current(vd, circ.is_, vte, circ.rs, circ.gmin)[1].sum(-1)
        g_r = torch.diagonal(circ.laplacian()) / circ.scale()
        v_out = v[:, net.out_slice]
        out.append({"out_sd_v": round(float(v_out.std(0).mean()), 4),
                    "clamped": round(float((g_d > g_r).double().mean()), 3)})
        if k < len(model.ff):
            h = model.ff[k](v_out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--splits", default="1,2,4")
    ap.add_argument("--amp-gain", type=float, default=20.0)
    ap.add_argument("--input-gain", type=float, default=10.0)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--lr-ff", type=float, default=0.002)
    ap.add_argument("--lr-decay", type=float, default=0.6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    splits = [int(s) for s in args.splits.split(",")]
    for k in splits:
        split_blocks(args.width, k)  # the bad split is an error before any training
    ds = load_dataset("fashion", source="auto", size=28, split_seed=0, n_train=args.n_train, n_test=2000)
    x = torch.as_tensor(ds.flat("train"), dtype=torch.float64)
    y = torch.as_tensor(ds.y_train, dtype=torch.long)
    xt = torch.as_tensor(ds.flat("test"), dtype=torch.float64)
    yt = torch.as_tensor(ds.y_test, dtype=torch.long)
    target = one_hot_targets(y, 10, -0.5, 0.5)
    out: dict[str, object] = {"dataset": ds.name, "origin": ds.origin, "n_train": int(x.shape[0]),
                              "n_test": int(xt.shape[0]), "epochs": args.epochs, "width": args.width,
                              "amp_gain": args.amp_gain, "input_gain": args.input_gain, "lr": args.lr,
                              "lr_ff": args.lr_ff, "lr_decay": args.lr_decay}
    for k in splits:
        blocks = split_blocks(args.width, k)
        model = build(blocks, args.amp_gain, args.input_gain, args.seed)
        beta = 0.1 * model.blocks[-1].g_unit
        opt = torch.optim.Adam([{"params": [p for b in model.blocks for p in b.parameters()], "lr": args.lr},
                                {"params": list(model.ff.parameters()), "lr": args.lr_ff}])
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, args.lr_decay)
        gen = torch.Generator().manual_seed(args.seed)
        accs, wall = [], 0.0
        for epoch in range(args.epochs):
            perm = torch.randperm(x.shape[0], generator=gen)
            t0 = time.perf_counter()
            for s in range(0, x.shape[0], 32):
                idx = perm[s: s + 32]
                opt.zero_grad(set_to_none=True)
                model.eqprop_backward(x[idx], target[idx], beta=beta)
                opt.step()
                model.clip_()
            sched.step()
            wall += time.perf_counter() - t0
            with torch.no_grad():
                accs.append(round(accuracy(model(xt), yt), 4))
            print(f"ffebm_split: {k} block(s) epoch {epoch + 1}: test {accs[-1]:.4f} "
                  f"({wall / (epoch + 1):.0f} s/epoch)", file=sys.stderr, flush=True)
        with torch.no_grad():
            train_acc = round(accuracy(model(x[:2000]), y[:2000]), 4)
        out[f"blocks_{k}"] = {"block_layers": blocks, "test_acc": accs, "train_acc": train_acc,
                              "epoch_s": round(wall / args.epochs, 1), "signals": block_signals(model, xt[:500])}
    if 1 in splits:
        ref = out["blocks_1"]["test_acc"][-1]  # type: ignore[index]
        for k in splits:
            entry = out[f"blocks_{k}"]
            entry["gap_pp_vs_1_block"] = round(100 * (entry["test_acc"][-1] - ref), 2)  # type: ignore[index]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
