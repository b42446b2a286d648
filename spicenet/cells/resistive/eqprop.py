"""Centered Equilibrium Propagation for :class:`ResistiveNetwork` (Scellier & Bengio 2017; Laborieux et al. 2021).

Energy. The steady state minimises the total co-content (J = W s = A V)

    E(V; G, v_src) = sum_edges G_ij (V_i - V_j)^2 / 2 + sum_diodes int_0^{v_d} I_d(v) dv,

over the free node voltages V (edges include source-node edges, whose far end is a fixed source voltage).
Nudging adds ``beta C(V)``: with the MSE cost ``C = sum_out (V_k - y_k)^2 / 2`` (V^2) it is a conductance ``beta``
(S) from each output to its target, i.e. a current ``-beta dC/dV_k`` into the output; with a linear cost
``C = sum_k delta_k V_k`` (used by ff-EBM, ``delta`` = dL/dV_out from downstream) it is a current ``-beta delta_k``.

Gradient (EqProp theorem): with ``V^beta`` the minimiser of ``E + beta C``,

    dL/dtheta = d/dbeta [dE/dtheta(V^beta)] at beta = 0
              ~ (dE/dtheta(V^{+beta}) - dE/dtheta(V^{-beta})) / (2 beta)          (centered, error O(beta^2))

so for a conductance, ``dE/dG_ij = dV_ij^2 / 2`` and

    dL/dG_ij ~ (1 / (2 beta)) [ (dV_ij^+)^2 - (dV_ij^-)^2 ] / 2      (V^2/S per unit cost),

and for a source voltage ``v_s`` (tied to nodes j by G_sj), ``dE/dv_s = sum_j G_sj (v_s - V_j)``:

    dL/dv_s ~ -sum_j G_sj (V_j^+ - V_j^-) / (2 beta)                      (cost per V),

which gives the gradient with respect to the inputs, ``dL/dx_k = g (dL/dv_{+k} - dL/dv_{-k})``.
The conductance gradients are with respect to the *realised* conductances (what the hardware measures from
``dV^2``); :func:`param_grads` converts them to the network's parameters (units of ``g_unit``) as in-situ
hardware training would (the chip's mismatch factors are unknown to it).

Loss of a batch: the mean over samples of the MSE cost (``target``), the mean over samples of the
cross-entropy cost (``labels``, :func:`ce_cost`), or the sum of the linear costs (``out_grad``), which already
carries any batch normalisation from downstream.

Cross-entropy (``labels``): logits ``z_k = (V_k - mean_j V_j) / T_out`` (``T_out`` in V), ``C = -log softmax(z)_y``
(nats). EqProp nudges with the linear cost of its gradient at the free state, ``delta = dC/dV = (softmax(z) -
onehot(y)) / T_out`` (1/V; the mean subtraction drops out since ``sum_k (softmax - onehot)_k = 0``): currents
``-/+ beta delta`` (``beta`` in A V, i.e. W), which gives the exact gradient as beta -> 0 (the cost enters only
through its first derivative at beta = 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from spicenet.progress import progress_iter

from spicenet.cells.resistive.network import Chip, ResistiveNetwork

__all__ = ["EqPropResult", "mse_cost", "ce_cost", "ce_out_grad", "eqprop_gradients", "param_grads", "one_hot_targets", "TrainHistory",
           "train_eqprop", "accuracy"]


@dataclass(frozen=True)
class EqPropResult:
    """EqProp estimate for one batch.

    Attributes:
        weight_grads: dL/dG (V^2/S per unit loss) for every weight matrix, realised conductances.
        bias_grads: same for the bias conductances.
        x_grad: [B, n_in] dL/dx.
        loss: scalar loss at the free phase.
        v_free: [B, N] free-phase node voltages (V).
        iterations: Newton iterations (mean) of the free, +beta and -beta phases.
    """

    weight_grads: list[Tensor]
    bias_grads: list[Tensor]
    x_grad: Tensor
    loss: Tensor
    v_free: Tensor
    iterations: dict[str, float] = field(default_factory=dict)


def mse_cost(v_out: Tensor, target: Tensor) -> Tensor:
    """Per-sample MSE cost ``C = sum_k (V_k - y_k)^2 / 2`` (V^2), shape [B]."""
    if v_out.shape != target.shape:
        raise ValueError(f"target shape {tuple(target.shape)} must equal output shape {tuple(v_out.shape)}")
    return 0.5 * ((v_out - target.to(v_out)) ** 2).sum(dim=1)


def _ce_check(v_out: Tensor, labels: Tensor, t_out: float) -> Tensor:
    if not (t_out > 0 and math.isfinite(t_out)):
        raise ValueError(f"t_out (output temperature, V) must be > 0, got {t_out!r}")
    labels = torch.as_tensor(labels, dtype=torch.long, device=v_out.device)
    if labels.dim() != 1 or labels.numel() != v_out.shape[0] or (labels.numel() and (
            int(labels.min()) < 0 or int(labels.max()) >= v_out.shape[1])):
        raise ValueError(f"labels must be [{v_out.shape[0]}] ints in [0, {v_out.shape[1]}), got shape "
                         f"{tuple(labels.shape)}")
    return labels


def ce_cost(v_out: Tensor, labels: Tensor, t_out: float) -> Tensor:
    """Per-sample cross-entropy (nats), shape [B]: ``-log softmax(z)_y`` with logits
    ``z = (V_out - mean(V_out)) / t_out`` (``v_out`` [B, n_out] in V, ``t_out`` in V, ``labels`` [B] ints)."""
    labels = _ce_check(v_out, labels, t_out)
    z = (v_out - v_out.mean(dim=1, keepdim=True)) / t_out
    return -torch.log_softmax(z, dim=1).gather(1, labels[:, None]).squeeze(1)


def ce_out_grad(v_out: Tensor, labels: Tensor, t_out: float) -> Tensor:
    """Per-sample gradient of :func:`ce_cost` w.r.t. the output voltages, ``(softmax(z) - onehot(y)) / t_out``
    (1/V), shape [B, n_out]."""
    labels = _ce_check(v_out, labels, t_out)
    z = (v_out - v_out.mean(dim=1, keepdim=True)) / t_out
    p = torch.softmax(z, dim=1)
    p[torch.arange(p.shape[0], device=p.device), labels] -= 1.0
    return p / t_out


def _edge_sq_diff(a_p: Tensor, a_m: Tensor, b_p: Tensor, b_m: Tensor) -> Tensor:
    """sum_b [(a_i - b_j)^2 at +] - [(a_i - b_j)^2 at -] as [n_a, n_b], without forming [B, n_a, n_b]."""
    sq_a = (a_p ** 2 - a_m ** 2).sum(0)
    sq_b = (b_p ** 2 - b_m ** 2).sum(0)
    cross = a_p.T @ b_p - a_m.T @ b_m
    return sq_a[:, None] + sq_b[None, :] - 2.0 * cross


def eqprop_gradients(
    net: ResistiveNetwork,
    x: Tensor,
    *,
    beta: float,
    target: Tensor | None = None,
    out_grad: Tensor | None = None,
    labels: Tensor | None = None,
    t_out: float = 0.1,
    chip: Chip | None = None,
) -> EqPropResult:
    """Centered EqProp gradients of the batch loss for inputs ``x`` [B, n_in].

    Exactly one of ``target`` [B, n_out] (MSE cost, batch mean; ``beta`` is the nudge conductance in S),
    ``labels`` [B] (cross-entropy :func:`ce_cost` at output temperature ``t_out`` V, batch mean; nudge currents
    ``-/+ beta delta`` with ``delta`` = :func:`ce_out_grad` at the free state, ``beta`` in A V) and ``out_grad``
    [B, n_out] (linear cost ``sum delta . V_out``; nudge currents ``-/+ beta delta`` in A) is given.
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0 (the two nudges are +beta and -beta), got {beta!r}")
    if sum(t is not None for t in (target, out_grad, labels)) != 1:
        raise ValueError("give exactly one of target (MSE cost), labels (cross-entropy) or out_grad (linear cost)")
    batch = x.shape[0]
    ref = target if target is not None else out_grad
    if ref is not None and (ref.dim() != 2 or tuple(ref.shape) != (batch, net.n_out)):
        raise ValueError(f"target/out_grad must be [{batch}, {net.n_out}], got shape {tuple(ref.shape)}")
    with torch.no_grad():
        circ = net.circuit(chip)
        vs = net.source_voltages(x)
        free = net.equilibrium(x, circuit=circ)
        v0 = free.v
        out = net.out_slice
        if target is not None:
            tgt = target.to(v0)
            loss = mse_cost(v0[:, out], tgt).mean()
            plus = net.equilibrium(x, circuit=circ, beta=beta, target=tgt, v0=v0)
            minus = net.equilibrium(x, circuit=circ, beta=-beta, target=tgt, v0=v0)
            weight = 1.0 / batch
        else:
            if labels is not None:
                loss = ce_cost(v0[:, out], labels, t_out).mean()
                delta, weight = ce_out_grad(v0[:, out], labels, t_out), 1.0 / batch
            else:
                assert out_grad is not None  # exactly one of target/labels/out_grad (checked above)
                delta = out_grad.to(v0)
                loss, weight = (delta * v0[:, out]).sum(), 1.0
            plus = net.equilibrium(x, circuit=circ, out_current=-beta * delta, v0=v0)
            minus = net.equilibrium(x, circuit=circ, out_current=beta * delta, v0=v0)
        vp, vm = plus.v, minus.v
        # With amplifiers the energy is row-weighted (network docstring): the nudge enters it as beta w_L C, an
        # edge into layer l as w_l G (drive - V_j)^2 / 2, so dC/dG = w_l / w_L * d(drive - V_j)^2/2 / dbeta.
        ws = net.layer_scale()
        w_out = ws[-1]
        scale = weight / (4.0 * beta * w_out)  # dE/dG = dV^2/2, centered difference over 2 beta
        wg: list[Tensor] = []
        l1 = net.layer_slice(1)
        wg.append(ws[0] * scale * _edge_sq_diff(vs[:, : 2 * net.n_in], vs[:, : 2 * net.n_in], vp[:, l1], vm[:, l1]))
        for layer in range(1, len(net.weights)):
            a, b = net.layer_slice(layer), net.layer_slice(layer + 1)
            wg.append(ws[layer] * scale * _edge_sq_diff(net.drive_voltages(vp[:, a]), net.drive_voltages(vm[:, a]),
                                                        vp[:, b], vm[:, b]))
        bg: list[Tensor] = []
        if net.has_bias:
            vb_src = vs[:, 2 * net.n_in:]
            for layer in range(1, len(net.layer_sizes)):
                sl = net.layer_slice(layer)
                bg.append(ws[layer - 1] * scale * _edge_sq_diff(vb_src, vb_src, vp[:, sl], vm[:, sl]))
        dv = vp - vm
        src_grad = -(dv @ circ.s.T) * (weight / (2.0 * beta * w_out))  # [B, n_src]; circ.s is row-weighted
        n = net.n_in
        x_grad = net.input_gain * (src_grad[:, :n] - src_grad[:, n: 2 * n])
    its = {"free": float(free.iterations.double().mean()), "plus": float(plus.iterations.double().mean()),
           "minus": float(minus.iterations.double().mean())}
    return EqPropResult(weight_grads=wg, bias_grads=bg, x_grad=x_grad, loss=loss, v_free=v0, iterations=its)


def param_grads(net: ResistiveNetwork, result: EqPropResult) -> list[Tensor]:
    """Gradients for ``list(net.weights) + list(net.biases)`` in parameter units (dL/dG * g_unit)."""
    return [g * net.g_unit for g in result.weight_grads + result.bias_grads]


def one_hot_targets(labels: Tensor, n_classes: int, v_low: float = -0.5, v_high: float = 0.5) -> Tensor:
    """Target voltages [B, n_classes]: ``v_high`` at the label, ``v_low`` elsewhere."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.dim() != 1 or (labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes)):
        raise ValueError(f"labels must be 1-D ints in [0, {n_classes}), got {labels[:8].tolist()!r}...")
    t = torch.full((labels.numel(), n_classes), float(v_low), dtype=torch.float64)
    t[torch.arange(labels.numel()), labels] = float(v_high)
    return t


def accuracy(v_out: Tensor, labels: Tensor) -> float:
    """Fraction of samples whose highest output voltage is at the label."""
    return float((v_out.argmax(dim=1).cpu() == torch.as_tensor(labels).cpu()).double().mean())


def confusion_matrix(v_out: Tensor, labels: Tensor, classes: int) -> list[list[int]]:
    """Counts C[true, predicted] (``classes`` x ``classes``) of the highest-output-voltage predictions;
    trace(C) / sum(C) is :func:`accuracy`."""
    pred = v_out.argmax(dim=1).cpu().long()
    true = torch.as_tensor(labels).cpu().long()
    if pred.shape != true.shape:
        raise ValueError(f"confusion_matrix: {tuple(pred.shape)} predictions for {tuple(true.shape)} labels")
    if true.numel() and (int(true.min()) < 0 or int(true.max()) >= classes):
        raise ValueError(f"confusion_matrix: labels must lie in [0, {classes}), got [{int(true.min())}, {int(true.max())}]")
    counts = torch.bincount(true * classes + pred, minlength=classes * classes)
    return counts.reshape(classes, classes).tolist()


@dataclass
class TrainHistory:
    """Per-epoch mean training loss (V^2) and, when test data is given, test loss and accuracy."""

    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)


def train_eqprop(
    net: ResistiveNetwork,
    x: Tensor,
    target: Tensor,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 0.05,
    beta: float | None = None,
    optimizer: str = "adam",
    chip_sampler: Callable[[int], Chip] | None = None,
    x_test: Tensor | None = None,
    target_test: Tensor | None = None,
    labels_test: Tensor | None = None,
    seed: int = 0,
    progress: bool = False,
) -> TrainHistory:
    """Train ``net`` with centered EqProp on (x [M, n_in], target [M, n_out] volts).

    Each minibatch: EqProp gradients on a chip (``chip_sampler(step)`` gives a fresh chip per batch for
    mismatch-aware training; None = nominal), optimiser step on the parameters, clip to [0, g_max].
    ``beta`` defaults to ``0.1 * g_unit`` (S). Shuffling is seeded by ``seed``.
    """
    if x.dim() != 2 or target.dim() != 2 or x.shape[0] != target.shape[0]:
        raise ValueError(f"x [M, n_in] and target [M, n_out] must match, got {tuple(x.shape)}, {tuple(target.shape)}")
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"epochs, batch_size, lr must be positive, got {epochs!r}, {batch_size!r}, {lr!r}")
    beta = 0.1 * net.g_unit if beta is None else float(beta)
    params = list(net.weights) + list(net.biases)
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    gen = torch.Generator().manual_seed(seed)
    hist = TrainHistory()
    step = 0
    for _ in progress_iter(range(epochs), desc="eqprop", enabled=progress):
        perm = torch.randperm(x.shape[0], generator=gen)
        losses = []
        for start in range(0, x.shape[0], batch_size):
            idx = perm[start: start + batch_size]
            chip = chip_sampler(step) if chip_sampler is not None else None
            res = eqprop_gradients(net, x[idx], beta=beta, target=target[idx], chip=chip)
            for p, g in zip(params, param_grads(net, res)):
                p.grad = g.to(p)
            opt.step()
            net.clip_()
            losses.append(float(res.loss) * idx.numel())
            step += 1
        hist.train_loss.append(sum(losses) / x.shape[0])
        if x_test is not None and target_test is not None:
            with torch.no_grad():
                v = net(x_test)
            hist.test_loss.append(float(mse_cost(v, target_test.to(v)).mean()))
            if labels_test is not None:
                hist.test_accuracy.append(accuracy(v, labels_test))
    return hist
