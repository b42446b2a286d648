"""What limits the resistive network's accuracy: the learning rule, the circuit, or the training budget? One JSON object.

The same data (Fashion-MNIST from the npz sets, ``--n-train`` training images at 28x28, the first 2,000 test images),
the same minibatches (batch 32, seeded permutation per epoch) and the same number of epochs for four learners:

- ``eqprop``: the ideal (float conductances, no mismatch) ``ResistiveNetwork`` 1568-H-10 with the bidirectional
  amplifier (gain 4, CCCS 1/4) and input gain 10 on the shipped quick calibration's diode law, trained by centered
  EqProp with the MSE nudge (beta 0.1 LSB; targets -0.5 / +0.5 V), Adam lr 0.2 in LSB units, clipped to [0, 15] LSB
  after every step -- what ``spicenet train eqprop`` trains as its ideal model;
- ``backprop_circuit``: the same network, same initialisation, the same MSE loss of the free-phase output voltages
  differentiated by autograd through the steady-state solver (``differentiable=True``): any difference to
  ``eqprop`` is the learning rule's;
- ``mlp_tanh``: a digital 784-H-10 tanh MLP (torch default initialisation, Adam lr 1e-3, the same MSE targets): the
  software network of the same width;
- ``softmax_regression``: the linear classifier (cross-entropy, Adam lr 0.01), the floor a hidden layer must beat.

Per learner: test accuracy after each epoch (``*_test_acc``), the accuracy on 2,000 training images at the end
(``*_train_acc``), wall time per epoch. For the circuit, the fraction of hidden-node voltages beyond the diode rails
(|V| > vb) on 500 test images after training (``eqprop_hidden_frac_beyond_rail``).

Usage: python benchmarks/resistive_capacity.py [--n-train 10000] [--epochs 2] [--hidden 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spicenet.cells.resistive.eqprop import accuracy, eqprop_gradients, one_hot_targets, param_grads  # noqa: E402
from spicenet.cells.resistive.network import ResistiveNetwork  # noqa: E402
from spicenet.data import load_dataset  # noqa: E402

CALIBRATION = Path(__file__).resolve().parents[1] / "spicenet" / "data" / "surrogates" / "resistive_quick_generic.h5"


def _epochs(n: int, epochs: int, batch: int, seed: int, step: Callable[[Tensor], None],
            evaluate: Callable[[], float]) -> tuple[list[float], float]:
    """Run ``epochs`` passes of ``step(indices)`` over seeded permutations; test accuracy after each, s per epoch."""
    gen = torch.Generator().manual_seed(seed)
    accs, wall = [], 0.0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        t0 = time.perf_counter()
        for s in range(0, n, batch):
            step(perm[s: s + batch])
        wall += time.perf_counter() - t0
        accs.append(round(evaluate(), 4))
    return accs, wall / epochs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds = load_dataset("fashion", source="auto", size=28, split_seed=0, n_train=args.n_train, n_test=2000)
    x = torch.as_tensor(ds.flat("train"), dtype=torch.float64)
    y = torch.as_tensor(ds.y_train, dtype=torch.long)
    xt = torch.as_tensor(ds.flat("test"), dtype=torch.float64)
    yt = torch.as_tensor(ds.y_test, dtype=torch.long)
    target = one_hot_targets(y, 10, -0.5, 0.5)
    out: dict[str, object] = {"dataset": ds.name, "origin": ds.origin, "n_train": int(x.shape[0]),
                              "n_test": int(xt.shape[0]), "epochs": args.epochs, "hidden": args.hidden}

    def circuit() -> tuple[ResistiveNetwork, torch.optim.Optimizer]:
        net = ResistiveNetwork.from_surrogate(CALIBRATION, [784, args.hidden, 10], amp_gain=4.0, input_gain=10.0,
                                              init_max_lsb=2.0, ideal=True, seed=args.seed)
        return net, torch.optim.Adam(list(net.parameters()), lr=0.2)

    net, opt = circuit()
    beta = 0.1 * net.g_unit

    def eqprop_step(idx: Tensor) -> None:
        res = eqprop_gradients(net, x[idx], beta=beta, target=target[idx])
        for p, g in zip(list(net.weights) + list(net.biases), param_grads(net, res)):
            p.grad = g.to(p)
        opt.step()
        net.clip_()

    def circuit_eval() -> float:
        with torch.no_grad():
            return accuracy(net(xt), yt)

    acc, wall = _epochs(len(x), args.epochs, 32, args.seed, eqprop_step, circuit_eval)
    with torch.no_grad():
        v_hidden = net.equilibrium(xt[:500]).v[:, net.layer_slice(1)]
        out.update(eqprop_test_acc=acc, eqprop_train_acc=round(accuracy(net(x[:2000]), y[:2000]), 4),
                   eqprop_epoch_s=round(wall, 1), diode_rail_v=net.vb,
                   eqprop_hidden_frac_beyond_rail=round(float((v_hidden.abs() > net.vb).double().mean()), 3))

    net, opt = circuit()

    def backprop_step(idx: Tensor) -> None:
        opt.zero_grad()
        loss = 0.5 * ((net(x[idx], differentiable=True) - target[idx]) ** 2).sum(1).mean()
        loss.backward()
        opt.step()
        net.clip_()

    acc, wall = _epochs(len(x), args.epochs, 32, args.seed, backprop_step, circuit_eval)
    with torch.no_grad():
        out.update(backprop_circuit_test_acc=acc, backprop_circuit_train_acc=round(accuracy(net(x[:2000]), y[:2000]), 4),
                   backprop_circuit_epoch_s=round(wall, 1))

    torch.manual_seed(args.seed)
    xf, xtf, tf = x.float(), xt.float(), target.float()
    for name, model, lr, ce in (
            ("mlp_tanh", torch.nn.Sequential(torch.nn.Linear(784, args.hidden), torch.nn.Tanh(),
                                             torch.nn.Linear(args.hidden, 10)), 1e-3, False),
            ("softmax_regression", torch.nn.Linear(784, 10), 1e-2, True)):
        dopt = torch.optim.Adam(model.parameters(), lr=lr)

        def digital_step(idx: Tensor, model: torch.nn.Module = model, dopt: torch.optim.Optimizer = dopt,
                         ce: bool = ce) -> None:
            dopt.zero_grad()
            o = model(xf[idx])
            loss = (torch.nn.functional.cross_entropy(o, y[idx]) if ce else 0.5 * ((o - tf[idx]) ** 2).sum(1).mean())
            loss.backward()
            dopt.step()

        def digital_eval(model: torch.nn.Module = model) -> float:
            with torch.no_grad():
                return accuracy(model(xtf), yt)

        acc, wall = _epochs(len(x), args.epochs, 32, args.seed, digital_step, digital_eval)
        with torch.no_grad():
            out.update({f"{name}_test_acc": acc, f"{name}_train_acc": round(accuracy(model(xf[:2000]), y[:2000]), 4),
                        f"{name}_epoch_s": round(wall, 2)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
