"""Piecewise-constant time schedules and 4-bit coupling-code quantisation for oscillator networks.

A schedule is what the hardware's PWL-driven switches apply: S segments, segment ``s`` holding ``values[s]`` on the
half-open time interval ``[T_s, T_{s+1})`` with ``T_0 = 0`` and ``T_{s+1} = T_s + durations[s]`` (seconds).
Times before 0 use segment 0, times at or after the end keep the last segment's value (the switches stay put).

Coupling codes: each coupling is a binary-weighted resistor bank of ``n_bits`` bits (default 4) plus one
polarity bit that selects the tap (true or complementary output of the driving ring). A *signed code*
``c`` in ``[-(2**n_bits - 1), 2**n_bits - 1]`` means magnitude ``|c|`` (bank conductance ``G = |c| * G_unit``)
and polarity ``sign(c)``. ``quantize_codes_ste`` rounds continuous codes to these levels with a
straight-through estimator: the integer grid of the shared :func:`spicenet.train.quant.quantize_grid_ste`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from spicenet.train.quant import quantize_grid_ste

__all__ = ["PiecewiseSchedule", "quantize_codes_ste", "max_code"]


def max_code(n_bits: int) -> int:
    """Largest code magnitude of an ``n_bits`` binary-weighted bank: ``2**n_bits - 1`` (15 for 4 bits)."""
    if not isinstance(n_bits, int) or isinstance(n_bits, bool) or not 1 <= n_bits <= 16:
        raise ValueError(f"n_bits must be an int in 1..16, got {n_bits!r}")
    return 2**n_bits - 1


def quantize_codes_ste(codes: Tensor, n_bits: int = 4, signed: bool = True) -> Tensor:
    """Round continuous coupling codes to the integer levels of an ``n_bits`` bank, straight-through gradient.

    Forward: ``round(clamp(codes, lo, hi))`` with ``hi = 2**n_bits - 1`` and ``lo = -hi`` (signed, polarity bit)
    or ``lo = 0`` (unsigned); ties round half to even. Backward: gradient 1 where ``lo <= codes <= hi`` and 0
    outside (the clamp's gradient; the rounding is treated as identity). Returns a tensor of the input's dtype
    holding integers. This is :func:`spicenet.train.quant.quantize_grid_ste` with ``step = 1``.
    """
    if not isinstance(codes, Tensor):
        raise ValueError(f"codes must be a torch.Tensor, got {type(codes).__name__}")
    if not codes.is_floating_point():
        raise ValueError(f"codes must be a floating tensor, got dtype {codes.dtype}")
    hi = max_code(n_bits)
    return quantize_grid_ste(codes, 1.0, -hi if signed else 0, hi)


@dataclass
class PiecewiseSchedule:
    """Piecewise-constant schedule: ``values`` [S, ...] held for ``durations`` [S] seconds each.

    ``values`` may require grad (learnable schedules); evaluation is indexing, so gradients flow to the segment
    that was active. ``durations`` are positive and fixed (not learned); they are kept as float64 on the CPU
    (times of ~1e-8 s must not be rounded to float32 when steps are compared with segment boundaries).
    """

    values: Tensor
    durations: Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.values, Tensor) or self.values.dim() < 1:
            raise ValueError(f"values must be a tensor of shape [S, ...], "
                             f"got {getattr(self.values, 'shape', self.values)!r}")
        self.durations = torch.as_tensor(self.durations).detach().to("cpu", torch.float64)
        if self.durations.dim() != 1 or self.durations.shape[0] != self.values.shape[0]:
            raise ValueError(
                f"durations must have shape [S]={self.values.shape[0]}, got {tuple(self.durations.shape)}")
        if not bool(torch.all(self.durations > 0)) or not bool(torch.all(torch.isfinite(self.durations))):
            raise ValueError(f"durations must be finite and > 0 seconds, got {self.durations.tolist()}")

    @classmethod
    def uniform(cls, values: Tensor, total_duration: float) -> "PiecewiseSchedule":
        """S equal segments covering ``total_duration`` seconds."""
        if not total_duration > 0:
            raise ValueError(f"total_duration must be > 0 s, got {total_duration!r}")
        s = values.shape[0]
        return cls(values, torch.full((s,), float(total_duration) / s, dtype=torch.float64))

    @classmethod
    def constant(cls, value: Tensor, total_duration: float) -> "PiecewiseSchedule":
        """One segment holding ``value`` for ``total_duration`` seconds."""
        return cls.uniform(value.unsqueeze(0), total_duration)

    @property
    def n_segments(self) -> int:
        return int(self.values.shape[0])

    @property
    def boundaries(self) -> Tensor:
        """Segment start times ``T_1 .. T_{S-1}`` (float64, seconds); ``T_0 = 0`` is implicit."""
        return torch.cumsum(self.durations.to(torch.float64), 0)[:-1]

    @property
    def total_duration(self) -> float:
        return float(self.durations.to(torch.float64).sum())

    def segment_index(self, t: Tensor | float) -> Tensor:
        """Index of the segment active at time(s) ``t`` (right-continuous; clamped to ``0..S-1``)."""
        tt = torch.as_tensor(t, dtype=torch.float64)
        return torch.searchsorted(self.boundaries, tt, right=True)

    def at(self, t: Tensor | float) -> Tensor:
        """Value at time(s) ``t``: shape ``t.shape + values.shape[1:]``."""
        return self.values[self.segment_index(t).to(self.values.device)]

    __call__ = at
