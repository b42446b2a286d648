"""Centered EqProp and the ff-EBM hybrid vs autograd through the (implicitly differentiated) solver; training."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from spicenet.cells.resistive.eqprop import (
    accuracy,
    ce_cost,
    ce_out_grad,
    confusion_matrix,
    eqprop_gradients,
    mse_cost,
    one_hot_targets,
    param_grads,
    train_eqprop,
)
from spicenet.cells.resistive.ffebm import FFEBM
from spicenet.cells.resistive.network import ResistiveNetwork, sample_chip

MNIST = Path("/work/shared/data/mnist_10k.npz")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cos(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    fa = torch.cat([t.flatten() for t in a])
    fb = torch.cat([t.flatten() for t in b])
    return float(torch.nn.functional.cosine_similarity(fa, fb, dim=0))


def _data(n_in: int, n_out: int, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, n_in, generator=g, dtype=torch.float64)
    y = torch.rand(batch, n_out, generator=g, dtype=torch.float64) - 0.5
    return x, y


def test_eqprop_matches_autograd_with_mismatch_and_diodes_on():
    net = ResistiveNetwork([5, 6, 4, 3], input_gain=15.0, seed=1)
    chip = sample_chip(net, sigma_g=0.1, sigma_is=0.3, seed=2)
    x, y = _data(5, 3, 8, seed=3)
    xg = x.clone().requires_grad_(True)
    v = net.equilibrium(xg, chip=chip, differentiable=True).v
    # diodes conduct, so the gradient is through a nonlinear equilibrium
    assert float(v.detach().abs().max()) > net.vb + 0.45
    loss = mse_cost(v[:, net.out_slice], y).mean()
    loss.backward()
    # autograd differentiates w.r.t. programmed parameters; EqProp measures dL/d(realised G):
    # chain through the chip's factors for the comparison
    ref = [p.grad for p in list(net.weights) + list(net.biases)]
    res = eqprop_gradients(net, x, beta=1e-7, target=y, chip=chip)
    factors = list(chip.g_factor) + list(chip.b_factor)
    ep = [g * f for g, f in zip(param_grads(net, res), factors)]
    assert _cos(ep, ref) > 0.99
    assert _cos([res.x_grad], [xg.grad]) > 0.99
    assert float(res.loss) == pytest.approx(loss.item(), rel=1e-12)


def test_centered_eqprop_error_shrinks_as_beta_squared():
    net = ResistiveNetwork([4, 6, 3], input_gain=15.0, seed=4)
    x, y = _data(4, 3, 6, seed=5)
    mse_cost(net(x, differentiable=True), y).mean().backward()
    ref = torch.cat([p.grad.flatten() for p in list(net.weights) + list(net.biases)])
    errs = []
    for beta in (4e-6, 2e-6):
        est = torch.cat([g.flatten() for g in param_grads(net, eqprop_gradients(net, x, beta=beta, target=y))])
        errs.append(float((est - ref).norm() / ref.norm()))
    assert errs[0] > 1e-6  # the estimate is biased at finite beta, so the ratio below measures something
    assert 3.0 < errs[0] / errs[1] < 5.0  # O(beta^2): halving beta divides the error by ~4


@pytest.mark.parametrize("rs", [0.0, 300.0])
def test_linear_cost_nudge_matches_autograd(rs):
    net = ResistiveNetwork([4, 5, 3], input_gain=15.0, rs=rs, seed=6)
    x, _ = _data(4, 3, 5, seed=7)
    delta = torch.randn(5, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    xg = x.clone().requires_grad_(True)
    (delta * net(xg, differentiable=True)).sum().backward()
    res = eqprop_gradients(net, x, beta=1e-7, out_grad=delta)
    assert _cos(param_grads(net, res), [p.grad for p in list(net.weights) + list(net.biases)]) > 0.99
    assert _cos([res.x_grad], [xg.grad]) > 0.99


def test_ce_cost_and_its_voltage_gradient_match_torch_cross_entropy():
    g = torch.Generator().manual_seed(11)
    v = (torch.rand(7, 4, generator=g, dtype=torch.float64) - 0.5).requires_grad_(True)
    labels = torch.randint(0, 4, (7,), generator=g)
    ref = torch.nn.functional.cross_entropy(v / 0.05, labels, reduction="none")  # softmax is shift-invariant
    assert torch.allclose(ce_cost(v, labels, 0.05), ref, rtol=1e-12, atol=1e-12)
    ref.sum().backward()
    assert torch.allclose(ce_out_grad(v.detach(), labels, 0.05), v.grad, rtol=1e-10, atol=1e-12)


def test_cross_entropy_eqprop_matches_autograd_and_wrong_sign_anticorrelates():
    net = ResistiveNetwork([5, 6, 4], input_gain=15.0, amp_gain=4.0, seed=12)
    chip = sample_chip(net, sigma_g=0.1, sigma_is=0.3, seed=13)
    x, _ = _data(5, 4, 8, seed=14)
    labels = torch.randint(0, 4, (8,), generator=torch.Generator().manual_seed(15))
    t_out = 0.1
    v = net.equilibrium(x, chip=chip, differentiable=True).v[:, net.out_slice]
    assert float(v.detach().std()) > 0.2 * t_out  # the softmax is far from flat: CE is not linear here
    loss = ce_cost(v, labels, t_out).mean()
    loss.backward()
    ref = [p.grad * 1.0 for p in list(net.weights) + list(net.biases)]
    res = eqprop_gradients(net, x, beta=1e-9, labels=labels, t_out=t_out, chip=chip)
    factors = list(chip.g_factor) + list(chip.b_factor)
    ep = [g * f for g, f in zip(param_grads(net, res), factors)]
    flat_ep, flat_ref = torch.cat([t.flatten() for t in ep]), torch.cat([t.flatten() for t in ref])
    assert _cos(ep, ref) > 0.9999
    assert float((flat_ep - flat_ref).norm() / flat_ref.norm()) < 1e-5  # O(beta^2) bias: 3e-8 here
    assert float(res.loss) == pytest.approx(loss.item(), rel=1e-12)
    # negative control: the nudge towards the wrong side (delta of the opposite sign) must be caught
    wrong = -ce_out_grad(res.v_free[:, net.out_slice], labels, t_out) / x.shape[0]
    bad = eqprop_gradients(net, x, beta=1e-9, out_grad=wrong, chip=chip)
    assert _cos([g * f for g, f in zip(param_grads(net, bad), factors)], ref) < 0.0


def test_training_loop_decreases_loss_and_keeps_conductances_nonnegative():
    teacher = ResistiveNetwork([6, 8, 3], input_gain=15.0, seed=100)
    student = ResistiveNetwork([6, 8, 3], input_gain=15.0, seed=200)
    g = torch.Generator().manual_seed(9)
    x = torch.rand(64, 6, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = teacher(x)
    before = float(mse_cost(student(x), y).mean())
    hist = train_eqprop(student, x, y, epochs=8, batch_size=16, lr=0.05, seed=0)
    after = float(mse_cost(student(x), y).mean())
    assert len(hist.train_loss) == 8
    assert after < 0.3 * before
    assert all(float(p.detach().min()) >= 0.0 for p in student.parameters())


def test_training_with_fresh_chips_per_batch_runs_and_is_seeded():
    def run() -> list[float]:
        net = ResistiveNetwork([4, 5, 2], input_gain=15.0, seed=1)
        x, y = _data(4, 2, 16, seed=2)
        hist = train_eqprop(net, x, y, epochs=2, batch_size=8, lr=0.05, seed=3,
                            chip_sampler=lambda step: sample_chip(net, seed=1000 + step))
        return hist.train_loss

    assert run() == run()


def _ffebm(seed: int) -> FFEBM:
    torch.manual_seed(seed)
    b1 = ResistiveNetwork([4, 6, 3], input_gain=15.0, seed=seed + 1)
    b2 = ResistiveNetwork([5, 4, 2], input_gain=15.0, seed=seed + 2)
    return FFEBM([b1, b2], [nn.Linear(3, 5).double()])


def test_ffebm_eqprop_plus_backprop_matches_autograd():
    model = _ffebm(0)
    x, y = _data(4, 2, 8, seed=3)
    loss = mse_cost(model(x, differentiable=True), y).mean()
    loss.backward()
    ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    loss_ep = model.eqprop_backward(x, y, beta=1e-7)
    ep = [p.grad.clone() for p in model.parameters()]
    assert float(loss_ep) == pytest.approx(loss.item(), rel=1e-12)
    assert _cos(ep, ref) > 0.99
    # each part on its own: first block (EqProp with a linear nudge), feedforward layer, last block
    n1 = len(list(model.blocks[0].parameters()))
    n2 = n1 + len(list(model.blocks[1].parameters()))
    assert _cos(ep[:n1], ref[:n1]) > 0.99
    assert _cos(ep[n1:n2], ref[n1:n2]) > 0.99
    assert _cos(ep[n2:], ref[n2:]) > 0.99


@pytest.mark.skipif(not MNIST.exists(), reason="shared MNIST file missing")
def test_ffebm_trains_above_chance_on_8x8_mnist():
    t0 = time.perf_counter()
    data = np.load(MNIST)
    idx = np.random.default_rng(0).permutation(len(data["labels"]))[:900]
    img = torch.tensor(data["images"][idx], dtype=torch.float64).unsqueeze(1) / 255.0
    x = torch.nn.functional.adaptive_avg_pool2d(img, 8).flatten(1)
    labels = torch.tensor(data["labels"][idx], dtype=torch.long)
    x_tr, l_tr, x_te, l_te = x[:400], labels[:400], x[400:], labels[400:]
    t_tr = one_hot_targets(l_tr, 10)
    torch.manual_seed(0)
    b1 = ResistiveNetwork([64, 32], input_gain=2.0, seed=1, init_range=(0.0, 0.5))
    b2 = ResistiveNetwork([32, 10], input_gain=2.0, seed=2, init_range=(0.0, 0.5))
    model = FFEBM([b1, b2], [nn.Linear(32, 32).double()])
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    gen = torch.Generator().manual_seed(0)
    for _ in range(7):
        perm = torch.randperm(400, generator=gen)
        for s in range(0, 400, 20):
            b = perm[s: s + 20]
            opt.zero_grad(set_to_none=True)
            model.eqprop_backward(x_tr[b], t_tr[b], beta=1e-6)
            opt.step()
            model.clip_()
    with torch.no_grad():
        acc = accuracy(model(x_te), l_te)
    assert acc > 0.4, f"test accuracy {acc:.3f} (chance 0.1)"
    assert time.perf_counter() - t0 < 30.0
    assert all(float(p.detach().min()) >= 0.0 for blk in model.blocks for p in blk.parameters())


def test_confusion_matrix_counts_against_a_hand_example():
    """Rows are true labels, columns predictions (argmax of the output voltages); the trace over the total is the
    accuracy."""
    v = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.0, 0.1, 0.8], [0.1, 0.8, 0.1]])
    labels = torch.tensor([0, 1, 1, 2, 2])
    c = confusion_matrix(v, labels, 3)
    assert c == [[1, 0, 0], [1, 1, 0], [0, 1, 1]]
    assert np.trace(c) / np.sum(c) == pytest.approx(accuracy(v, labels))
    with pytest.raises(ValueError, match="labels"):
        confusion_matrix(v, torch.tensor([0, 1, 1, 2, 3]), 3)


@pytest.mark.parametrize("sizes,amp,back", [([5, 6, 4, 3], 4.0, None), ([4, 5, 4, 4, 2], 3.0, 0.5)])
def test_eqprop_matches_autograd_deep_amplifier_nets(sizes, amp, back):
    net = ResistiveNetwork(sizes, input_gain=8.0, seed=3, amp_gain=amp, amp_back=back)
    chip = sample_chip(net, sigma_g=0.1, sigma_is=0.3, seed=4)
    x, y = _data(sizes[0], sizes[-1], 8, seed=5)
    xg = x.clone().requires_grad_(True)
    v = net.equilibrium(xg, chip=chip, differentiable=True).v
    assert float(v.detach().abs().max()) > net.vb + 0.4  # diodes conduct
    mse_cost(v[:, net.out_slice], y).mean().backward()
    ref = [p.grad for p in list(net.weights) + list(net.biases)]
    res = eqprop_gradients(net, x, beta=1e-8, target=y, chip=chip)
    factors = list(chip.g_factor) + list(chip.b_factor)
    ep = [g * f for g, f in zip(param_grads(net, res), factors)]
    for e, r in zip(ep, ref):  # every layer separately, magnitudes included (the layer weights w_l matter)
        assert float((e - r).norm() / r.norm()) < 1e-3
    assert float((res.x_grad - xg.grad).norm() / xg.grad.norm()) < 1e-3


def _assert_ffebm_eqprop_equals_autograd(model: FFEBM, seed: int) -> None:
    """EqProp through the blocks plus backprop through the feedforward layers equals autograd through the chained
    solves, parameter by parameter (relative error < 1e-3)."""
    x, y = _data(4, 2, 8, seed=seed)
    mse_cost(model(x, differentiable=True), y).mean().backward()
    ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    model.eqprop_backward(x, y, beta=1e-8)
    for e, r in zip([p.grad for p in model.parameters()], ref):
        assert float((e - r).norm() / r.norm()) < 1e-3


def test_ffebm_with_amplifier_blocks_matches_autograd():
    torch.manual_seed(3)
    b1 = ResistiveNetwork([4, 6, 5, 3], input_gain=10.0, seed=11, amp_gain=4.0)
    b2 = ResistiveNetwork([5, 4, 4, 2], input_gain=10.0, seed=12, amp_gain=2.0, amp_back=0.8)
    _assert_ffebm_eqprop_equals_autograd(FFEBM([b1, b2], [nn.Linear(3, 5).double()]), seed=13)


def test_ffebm_with_rectifier_blocks_matches_autograd():
    """The same through rectifier blocks (one diode per hidden node; amplifiers in the first)."""
    torch.manual_seed(5)
    b1 = ResistiveNetwork([4, 6, 4, 3], input_gain=10.0, seed=21, amp_gain=4.0, units="rectifier")
    b2 = ResistiveNetwork([5, 6, 2], input_gain=10.0, seed=22, units="rectifier")
    _assert_ffebm_eqprop_equals_autograd(FFEBM([b1, b2], [nn.Linear(3, 5).double()]), seed=23)


@pytest.mark.parametrize("sizes,amp", [([5, 6, 3], None), ([5, 6, 4, 3], 4.0)])
def test_eqprop_matches_autograd_rectifier_nets(sizes, amp):
    """Rectifier units keep the co-content convex (one diode per hidden node): EqProp equals the implicit
    derivative, layer by layer, through rectifying nodes."""
    net = ResistiveNetwork(sizes, input_gain=8.0, seed=6, amp_gain=amp, units="rectifier")
    chip = sample_chip(net, sigma_g=0.1, sigma_is=0.3, seed=7)
    x, y = _data(sizes[0], sizes[-1], 8, seed=8)
    v = net.equilibrium(x, chip=chip, differentiable=True).v
    h = v.detach()[:, net.layer_slice(1)]
    assert float((h[:, : sizes[1] // 2] < 0).float().mean()) > 0.1  # some excitatory nodes are rectified
    mse_cost(v[:, net.out_slice], y).mean().backward()
    ref = [p.grad for p in list(net.weights) + list(net.biases)]
    res = eqprop_gradients(net, x, beta=1e-8, target=y, chip=chip)
    factors = list(chip.g_factor) + list(chip.b_factor)
    ep = [g * f for g, f in zip(param_grads(net, res), factors)]
    for e, r in zip(ep, ref):
        assert float((e - r).norm() / r.norm()) < 1e-3
