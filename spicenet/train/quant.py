"""Uniform n-bit quantisation and the straight-through estimator (STE) shared by trainers.

Levels: q_k = lo + k * delta, k = 0 .. 2^n - 1, delta = (hi - lo) / (2^n - 1). Forward: clamp x to [lo, hi] and
round to the nearest level (|x - Q(x)| <= delta/2 inside the range). Backward (STE, Bengio et al. 2013): dQ/dx := 1
inside [lo, hi] and 0 outside (the "clipped" STE; ``clip_grad=False`` passes the gradient everywhere).
"""

from __future__ import annotations

import torch


def _check(bits: int, lo: float, hi: float) -> None:
    if not isinstance(bits, int) or not 1 <= bits <= 24:
        raise ValueError(f"bits: expected an integer in 1..24, got {bits!r}")
    if not hi > lo:
        raise ValueError(f"range: expected hi > lo, got lo={lo}, hi={hi}")


def quantize_uniform(x: torch.Tensor, bits: int, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
    """Round ``x`` to the nearest of 2^bits evenly spaced levels spanning [lo, hi] (no gradient: round has 0 grad)."""
    _check(bits, lo, hi)
    delta = (hi - lo) / (2**bits - 1)
    return lo + torch.round((x.clamp(lo, hi) - lo) / delta) * delta


class _QuantSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bits, lo, hi, clip_grad):
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi, ctx.clip = lo, hi, clip_grad
        return quantize_uniform(x, bits, lo, hi)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        if ctx.clip:
            grad = grad * ((x >= ctx.lo) & (x <= ctx.hi)).to(grad.dtype)
        return grad, None, None, None, None


def quantize_ste(x: torch.Tensor, bits: int, lo: float = -1.0, hi: float = 1.0, clip_grad: bool = True) -> torch.Tensor:
    """Uniform quantisation in the forward pass, straight-through gradient in the backward pass."""
    _check(bits, lo, hi)
    return _QuantSTE.apply(x, bits, float(lo), float(hi), bool(clip_grad))


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """sign(x) in {-1, +1} (0 -> +1) forward, clipped identity gradient (|x| <= 1) backward: the binary case."""
    s = torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
    return (x.clamp(-1, 1) + (s - x.clamp(-1, 1)).detach())
