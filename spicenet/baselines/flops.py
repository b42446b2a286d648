"""FLOPs per generated sample, counted layer by layer, and the energy of a digital accelerator running them.

Counting convention (one multiply-accumulate = 2 FLOPs; per sample, i.e. batch 1; shapes from a forward pass):

* ``Linear(i, o)``:                 2 i o  (+ o with a bias)
* ``Conv2d(ci, co, k)``, out Ho x Wo:  2 (ci / groups) k_h k_w co Ho Wo  (+ co Ho Wo with a bias)
* ``ConvTranspose2d(ci, co, k)``, in Hi x Wi: 2 ci (co / groups) k_h k_w Hi Wi  (+ co Ho Wo with a bias): the
  scatter form, every input pixel times the whole kernel, including the products that the padding crops away
* ``BatchNorm`` (inference: y = a x + b per element): 2 per output element
* element-wise activations (ReLU, LeakyReLU, Sigmoid, Tanh): 1 per output element
* reshapes (Flatten, Unflatten): 0

Drawing the latent and the output Bernoulli draw are not counted (a handful of random numbers per sample).

Energy: E_sample = FLOPs x e_flop. ``E_FLOP_J`` = 1 pJ/FLOP is an assumption, the order of a modern GPU: an NVIDIA
H100 SXM delivers 989 TFLOP/s dense FP16/BF16 tensor-core throughput at a 700 W board power (NVIDIA H100 data
sheet), 0.71 pJ/FLOP at peak, rounded up to 1 pJ because a model this small runs far below peak utilisation; at
FP32 without tensor cores (67 TFLOP/s) the same board costs ~10 pJ/FLOP. Memory traffic, idle power and the host
are not included, so the figure is a lower bound for a real deployment (Horowitz, ISSCC 2014: a 32-bit DRAM read
costs ~640 pJ, more than the arithmetic of a small layer).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["E_FLOP_J", "E_FLOP_SOURCE", "count_flops", "energy_per_sample"]

E_FLOP_J = 1.0e-12
E_FLOP_SOURCE = ("assumed 1 pJ/FLOP: NVIDIA H100 SXM, 989 TFLOP/s dense FP16 tensor at 700 W = 0.71 pJ/FLOP at "
                 "peak, rounded up for the low utilisation of a tiny model (FP32 non-tensor: ~10 pJ/FLOP); "
                 "memory traffic, idle power and host not included")

_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_FREE = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Sequential)


def _layer_flops(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    per = out[0].numel()  # output elements of one sample
    if isinstance(m, nn.Linear):
        return 2 * m.in_features * m.out_features + (m.out_features if m.bias is not None else 0)
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        ho, wo = out.shape[-2:]
        return 2 * (m.in_channels // m.groups) * kh * kw * m.out_channels * ho * wo + (per if m.bias is not None else 0)
    if isinstance(m, nn.ConvTranspose2d):
        kh, kw = m.kernel_size
        hi, wi = inp.shape[-2:]
        return 2 * m.in_channels * (m.out_channels // m.groups) * kh * kw * hi * wi + (per if m.bias is not None else 0)
    if isinstance(m, _NORMS):
        return 2 * per
    if isinstance(m, _ELEMENTWISE):
        return per
    if isinstance(m, _FREE):
        return 0
    raise ValueError(f"count_flops: no FLOP rule for layer {type(m).__name__}")


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """FLOPs of one forward pass of ``model`` on one sample of ``input_shape`` (without the batch axis), by the
    rules of the module docstring: ``{"total": int, "layers": [{"layer", "type", "flops"}]}``. Every leaf module
    must have a rule (ValueError otherwise). The model runs in eval mode on zeros; its mode is restored."""
    rows: list[dict[str, Any]] = []
    hooks = []
    for name, m in model.named_modules():
        if len(list(m.children())) == 0:
            hooks.append(m.register_forward_hook(
                lambda mod, i, o, name=name: rows.append(
                    {"layer": name, "type": type(mod).__name__, "flops": _layer_flops(mod, i[0], o)})))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape)))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {"total": int(sum(r["flops"] for r in rows)), "layers": rows}


def energy_per_sample(flops: int, e_flop_j: float = E_FLOP_J) -> dict[str, Any]:
    """E = FLOPs x e_flop [J per generated sample], with the assumption stated."""
    if flops < 0 or not e_flop_j >= 0:
        raise ValueError(f"flops >= 0 and e_flop_j >= 0 needed, got {flops}, {e_flop_j}")
    return {"formula": "E_sample = FLOPs * e_flop", "energy_j": float(flops * e_flop_j), "flops": int(flops),
            "e_flop_j": float(e_flop_j), "assumption": E_FLOP_SOURCE}
