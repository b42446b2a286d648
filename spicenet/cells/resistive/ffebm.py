"""Feedforward-tied energy-based models (ff-EBM, Nest & Ernoult 2024) built from resistive blocks.

Model: ``h_0 = x``; ``v_k = B_k(h_k)`` (free-phase output voltages of resistive block k, an energy minimum);
``h_{k+1} = F_k(v_k)`` (a torch feedforward layer, e.g. ``nn.Linear``); loss ``L = mean_b C(v_K, y)`` (MSE).

Gradient ("EqProp + BP"), from the last block backwards:

* last block: centered EqProp with the MSE nudge gives ``dL/dG_K`` and ``dL/dh_K`` (the block's input gradient,
  ``dL/dv_s = -sum_j G_sj (V_j^+ - V_j^-) / (2 beta)`` for each input source, see :mod:`.eqprop`);
* feedforward layer k: ordinary backprop of ``dL/dh_{k+1}`` through ``F_k`` gives its parameter gradients and
  ``delta_k = dL/dv_k``;
* block k < K: the loss depends on ``v_k`` only through ``delta_k . v_k`` to first order, so EqProp with the
  *linear* cost ``C_k = sum_b delta_k . v_k`` (nudge currents ``-/+ beta delta_k`` into the outputs) gives
  ``dL/dG_k`` and ``dL/dh_k``.

With exact equilibria this equals autograd through the implicit solutions up to O(beta^2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from spicenet.cells.resistive.eqprop import eqprop_gradients, mse_cost, param_grads
from spicenet.cells.resistive.network import Chip, ResistiveNetwork

__all__ = ["FFEBM"]


class FFEBM(nn.Module):
    """Resistive blocks tied by feedforward layers: ``blocks[0] -> ff[0] -> blocks[1] -> ... -> blocks[-1]``.

    Args:
        blocks: K >= 1 resistive networks; ``ff[k]`` maps ``blocks[k]`` outputs [B, n_out_k] to ``blocks[k+1]``
            inputs [B, n_in_{k+1}].
        ff: K - 1 torch modules (float64 parameters recommended).
    """

    def __init__(self, blocks: Sequence[ResistiveNetwork], ff: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(blocks) < 1 or len(ff) != len(blocks) - 1:
            raise ValueError(f"need K >= 1 blocks and K-1 feedforward layers, got {len(blocks)} and {len(ff)}")
        self.blocks = nn.ModuleList(blocks)
        self.ff = nn.ModuleList(ff)

    def _chips(self, chips: Sequence[Chip | None] | None) -> list[Chip | None]:
        if chips is None:
            return [None] * len(self.blocks)
        if len(chips) != len(self.blocks):
            raise ValueError(f"chips must have one entry per block ({len(self.blocks)}), got {len(chips)}")
        return list(chips)

    def forward(self, x: Tensor, chips: Sequence[Chip | None] | None = None, differentiable: bool = False) -> Tensor:
        """Output voltages [B, n_out] of the last block. ``differentiable=True``: autograd through every solve
        (implicit differentiation), the reference for the EqProp+BP gradient."""
        h = x
        for k, (block, chip) in enumerate(zip(self.blocks, self._chips(chips))):
            v = block(h, chip=chip, differentiable=differentiable)
            if k < len(self.ff):
                h = self.ff[k](v if differentiable else v.detach())
        return v

    def eqprop_backward(
        self, x: Tensor, target: Tensor, *, beta: float, chips: Sequence[Chip | None] | None = None
    ) -> Tensor:
        """Accumulate EqProp (blocks) + backprop (feedforward layers) gradients of the batch-mean MSE loss into
        ``.grad`` of every parameter; returns the loss (scalar). ``beta`` is the nudge size in S (A/V)."""
        chip_list = self._chips(chips)
        inputs: list[Tensor] = [x]
        taps: list[Tensor] = []  # detached block outputs that enter the feedforward graphs
        outs: list[Tensor] = []
        v: Tensor | None = None
        for k, (block, chip) in enumerate(zip(self.blocks, chip_list)):
            with torch.no_grad():
                v = block(inputs[-1].detach(), chip=chip)
            if k < len(self.ff):
                tap = v.detach().requires_grad_(True)
                taps.append(tap)
                outs.append(self.ff[k](tap))
                inputs.append(outs[-1])
        assert v is not None
        loss = mse_cost(v, target.to(v)).mean()
        x_grad: Tensor | None = None
        for k in range(len(self.blocks) - 1, -1, -1):
            block = cast(ResistiveNetwork, self.blocks[k])
            if k == len(self.blocks) - 1:
                res = eqprop_gradients(block, inputs[k].detach(), beta=beta, target=target, chip=chip_list[k])
            else:
                assert x_grad is not None
                outs[k].backward(x_grad.to(outs[k]))
                delta = taps[k].grad
                res = eqprop_gradients(block, inputs[k].detach(), beta=beta, out_grad=delta, chip=chip_list[k])
            for p, g in zip(list(block.weights) + list(block.biases), param_grads(block, res)):
                p.grad = g.to(p) if p.grad is None else p.grad + g.to(p)
            x_grad = res.x_grad
        return loss.detach()

    @torch.no_grad()
    def clip_(self) -> None:
        """Clip every block's conductances to [0, g_max]."""
        for block in self.blocks:
            cast(ResistiveNetwork, block).clip_()
