"""``ResistiveNetwork``: a layered nonlinear resistive network (Kendall et al. 2020; Scellier 2024) as a torch module.

Topology (layer sizes ``[n_in, n_1, ..., n_L]``; the last layer holds the output nodes):

* inputs: every input ``x_k`` drives two ideal voltage sources, ``+g x_k`` and ``-g x_k`` (``g`` = ``input_gain``,
  the amplifier in front of the network; the negated copy lets non-negative conductances realise signed weights);
* optional bias sources: one pair ``+v_bias`` / ``-v_bias`` tied to every free layer by learnable conductances;
* conductances ``G >= 0`` (S) between consecutive layers: sources -> layer 1, layer l -> layer l+1. Without
  amplifiers (``amp_gain=None``) layer l and layer l+1 are tied by plain resistors (non-negative weights only);
* bidirectional amplifiers (``amp_gain=A``, Kendall et al. 2020): every node i of a layer l < L drives two
  amplifiers, a non-inverting one (VCVS, output ``+A V_i``) and an inverting one (``-A V_i``); the resistors to
  layer l+1 hang on the amplifier outputs (weight matrix l has ``2 n_l`` rows: ``+`` copies first), so signed
  weights are realised. Backward, each amplifier feeds the current I it delivers into its resistors back into node
  i scaled by the current gain ``b`` (CCCS; ``amp_back``, Kendall's convention ``b = 1/A``): the current leaving
  node i is ``sigma b I`` (``sigma = +1 / -1`` for the two copies). The KCL of layer l+1 sees ``G (sigma A V_i -
  V_j)``; weighting the KCL rows of layer l by ``w_l`` with ``w_1 = 1``, ``w_{l+1} = w_l b / A`` makes the circuit
  the gradient of the energy ``sum_edges w_j G (sigma A V_i - V_j)^2 / 2 + ...`` (``w_j`` the weight of the
  receiving layer), which is how :meth:`circuit` hands it to the solver (``Circuit.node_scale``, ``diag``);
* ``units="clamp"`` (default): every free (hidden or output) node has two diodes: node -> ``+vb`` (conducts when
  ``V > vb``) and ``-vb`` -> node (conducts when ``V < -vb``), a hard-tanh-like clamp of the node to [-vb, vb];
  Shockley law with ``is_`` (A), ideality ``n``, series ``rs`` (ohm), plus ngspice's ``gmin`` across each junction
  (see :mod:`spicenet.cells.resistive.solver`);
* ``units="rectifier"`` (Scellier 2024's deep resistive network): the first ``n_l // 2`` nodes of every hidden
  layer are *excitatory*, with a single diode from ground (0 V) to the node, so ``V >= 0`` up to one junction drop
  (a ReLU); the others are *inhibitory*, with a single diode from the node to ground, ``V <= 0``; no upper bound.
  The output nodes keep the two clamp diodes at ``+-vb``.

Sizes count inputs, not sources: Kendall's "1568-100-10" network (784 pixels, each doubled) is
``ResistiveNetwork([784, 100, 10])``. Free nodes are numbered layer by layer (layer 1 first, outputs last). Sources are numbered
``[+g x_0 .. +g x_{n-1}, -g x_0 .. -g x_{n-1}, +v_bias, -v_bias]`` (the bias pair only when ``bias=True``).

Parameters are stored in units of ``g_unit`` (S) so that learning rates are O(1); :meth:`conductances` returns
siemens. Non-negativity is kept by clipping after each optimiser step (:meth:`clip_`), as programmable hardware
does, not by a re-parameterisation. Chip-to-chip variation is a :class:`Chip` (multiplicative conductance errors,
diode ``Is`` and ``n`` factors) passed per call; a quantisation hook (e.g. :func:`programmable_levels`) maps
programmed conductances to what the hardware realises (straight-through gradient).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from spicenet.cells.resistive.solver import NGSPICE_GMIN, ROOM_TEMPERATURE, Circuit, SolveResult, solve

__all__ = ["Chip", "ResistiveNetwork", "sample_chip", "programmable_levels", "FORWARD_CHUNK", "UNITS"]

UNITS = ("clamp", "rectifier")
"""Hidden-node nonlinearities of :class:`ResistiveNetwork` (``units=``)."""

FORWARD_CHUNK = 256
"""Inputs per free-phase solve when :meth:`ResistiveNetwork.forward` evaluates a large batch (speed only)."""


@dataclass(frozen=True)
class Chip:
    """Per-chip mismatch: multiplicative factors on every conductance and on the diode parameters.

    Attributes:
        g_factor: one tensor per weight matrix (same shapes as ``net.weights``), realised G = programmed G * factor.
        b_factor: one tensor per bias matrix (same shapes as ``net.biases``; empty when the net has no bias).
        is_factor: [N, 2] factor on each diode's saturation current.
        n_factor: [N, 2] factor on each diode's ideality.
    """

    g_factor: tuple[Tensor, ...]
    b_factor: tuple[Tensor, ...]
    is_factor: Tensor
    n_factor: Tensor


def sample_chip(
    net: "ResistiveNetwork",
    *,
    sigma_g: float = 0.05,
    sigma_is: float = 0.1,
    sigma_n: float = 0.01,
    seed: int = 0,
) -> Chip:
    """Draw one chip: G factors ``max(1 + sigma_g z, 0)``, Is factors ``exp(sigma_is z)`` (log-normal),
    n factors ``1 + sigma_n z`` (z standard normal, all independent). Same seed -> same chip."""
    for name, val in (("sigma_g", sigma_g), ("sigma_is", sigma_is), ("sigma_n", sigma_n)):
        if not val >= 0:
            raise ValueError(f"{name} must be >= 0, got {val!r}")
    gen = torch.Generator().manual_seed(seed)
    kw: dict[str, Any] = dict(dtype=torch.float64)

    def gauss(shape: Sequence[int]) -> Tensor:
        return torch.randn(*shape, generator=gen, **kw)

    g = tuple(torch.clamp(1.0 + sigma_g * gauss(w.shape), min=0.0) for w in net.weights)
    b = tuple(torch.clamp(1.0 + sigma_g * gauss(w.shape), min=0.0) for w in net.biases)
    is_f = torch.exp(sigma_is * gauss((net.n_free, 2)))
    n_f = 1.0 + sigma_n * gauss((net.n_free, 2))
    if bool((n_f <= 0).any()):
        raise ValueError(f"sigma_n={sigma_n!r} drew a non-positive ideality factor")
    return Chip(g_factor=g, b_factor=b, is_factor=is_f, n_factor=n_f)


def programmable_levels(levels: Sequence[float] | Tensor | np.ndarray) -> Callable[[Tensor], Tensor]:
    """Quantisation hook: maps each conductance (S) to the nearest of the programmable ``levels`` (S).

    :func:`spicenet.train.quant.quantize_nearest` over the sorted levels (ties to the lower level); forward only,
    :class:`ResistiveNetwork` adds the straight-through gradient.
    """
    from spicenet.train.quant import quantize_nearest

    lv = torch.as_tensor(levels, dtype=torch.float64).flatten().sort().values
    if lv.numel() < 1 or bool((lv < 0).any()):
        raise ValueError(f"levels must be a non-empty list of conductances >= 0 S, got {lv.tolist()!r}")

    def quantise(g: Tensor) -> Tensor:
        return quantize_nearest(g, lv)

    return quantise


class ResistiveNetwork(nn.Module):
    """Layered diode-resistor network; see the module docstring for the circuit.

    Args:
        layer_sizes: ``[n_in, n_1, ..., n_L]`` (at least one free layer).
        input_gain: voltage gain ``g`` of the input amplifiers (V per unit input).
        bias: add a ``+v_bias``/``-v_bias`` source pair tied to every free layer.
        v_bias: bias source voltage (V).
        is_: nominal diode saturation current (A).
        n: nominal diode ideality factor.
        rs: diode series resistance (ohm).
        vb: diode rail voltage (V): the diodes conduct above ``+vb`` and below ``-vb``.
        gmin: conductance across each junction (S), ngspice's default 1e-12.
        g_unit: conductance unit of the stored parameters (S).
        init_range: initial parameters uniform in this range (units of g_unit).
        g_max: upper clip of the parameters (units of g_unit), None = unbounded.
        quantize: optional hook applied to conductances in S (straight-through gradient).
        temperature: diode temperature (K).
        diodes: False builds the purely linear network (no diodes).
        amp_gain: forward voltage gain A of the bidirectional amplifiers between free layers (None: plain
            resistors, non-negative weights between free layers).
        amp_back: backward current gain b of those amplifiers (None: Kendall's ``1/A``).
        units: hidden-node nonlinearity, ``"clamp"`` (two diodes at ``+-vb``) or ``"rectifier"`` (one diode to
            0 V: excitatory / inhibitory halves); see the module docstring.
        seed: initialisation seed.
        device: torch device of the parameters (``.to()`` moves them later).
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        *,
        input_gain: float = 4.0,
        bias: bool = True,
        v_bias: float = 1.0,
        is_: float = 1e-14,
        n: float = 1.0,
        rs: float = 0.0,
        vb: float = 0.2,
        gmin: float = NGSPICE_GMIN,
        g_unit: float = 1e-5,
        init_range: tuple[float, float] = (0.0, 1.0),
        g_max: float | None = None,
        quantize: Callable[[Tensor], Tensor] | None = None,
        temperature: float = ROOM_TEMPERATURE,
        diodes: bool = True,
        amp_gain: float | None = None,
        amp_back: float | None = None,
        units: str = "clamp",
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        sizes = [int(s) for s in layer_sizes]
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise ValueError(f"layer_sizes must be >= 2 positive ints, got {list(layer_sizes)!r}")
        checks = {"is_": (is_, is_ > 0), "n": (n, n > 0), "rs": (rs, rs >= 0), "gmin": (gmin, gmin >= 0),
                  "g_unit": (g_unit, g_unit > 0), "temperature": (temperature, temperature > 0),
                  "init_range": (init_range, 0 <= init_range[0] <= init_range[1]),
                  "input_gain": (input_gain, math.isfinite(input_gain))}
        for name, (value, ok) in checks.items():
            if not ok:
                raise ValueError(f"{name} out of range, got {value!r}")
        if amp_gain is not None and not (math.isfinite(amp_gain) and amp_gain > 0):
            raise ValueError(f"amp_gain must be > 0 (or None), got {amp_gain!r}")
        if amp_back is not None and (amp_gain is None or not (math.isfinite(amp_back) and amp_back > 0)):
            raise ValueError(f"amp_back must be > 0 and needs amp_gain, got {amp_back!r}")
        if units not in UNITS:
            raise ValueError(f"units must be one of {', '.join(UNITS)}, got {units!r}")
        if g_max is not None and not g_max > 0:
            raise ValueError(f"g_max must be > 0, got {g_max!r}")
        self.layer_sizes = sizes
        self.input_gain = float(input_gain)
        self.has_bias = bool(bias)
        self.v_bias = float(v_bias)
        self.is_, self.n, self.rs, self.vb, self.gmin = float(is_), float(n), float(rs), float(vb), float(gmin)
        self.g_unit = float(g_unit)
        self.g_max = g_max
        self.quantize = quantize
        self.temperature = float(temperature)
        self.diodes = bool(diodes)
        self.units = units
        self._device0 = torch.device(device)
        self.spec: dict[str, Any] | None = None  # the calibration's network spec when built by from_surrogate
        self.amp_gain = None if amp_gain is None else float(amp_gain)
        self.amp_back = None if amp_gain is None else float(1.0 / amp_gain if amp_back is None else amp_back)
        gen = torch.Generator().manual_seed(seed)
        lo, hi = init_range

        def init(*shape: int) -> nn.Parameter:
            w = lo + (hi - lo) * torch.rand(*shape, generator=gen, dtype=torch.float64)
            return nn.Parameter(w.to(self._device0))

        rows = [2 * sizes[0]] + [(2 if self.amp_gain is not None else 1) * s for s in sizes[1:-1]]
        self.weights = nn.ParameterList([init(r, c) for r, c in zip(rows, sizes[1:])])
        self.biases = nn.ParameterList([init(2, c) for c in sizes[1:]] if self.has_bias else [])
        starts = [0]
        for s in sizes[1:]:
            starts.append(starts[-1] + s)
        self._starts = starts

    # ------------------------------------------------------------------ from a calibration
    @classmethod
    def from_surrogate(
        cls,
        path: str | os.PathLike[str],
        layers: Sequence[int],
        *,
        bias: bool = True,
        amp_gain: float = 0.0,
        amp_back: float = 0.0,
        input_gain: float = 0.0,
        init_max_lsb: float = 4.0,
        ideal: bool = False,
        units: str = "clamp",
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> "ResistiveNetwork":
        """The quantised network ``layers = [n_in, *hidden, n_out]`` on a resistive calibration (``spicenet
        calibrate resistive -o path``), built as ``spicenet train eqprop`` builds it
        (:func:`spicenet.cells.resistive.train.net_spec` + :func:`~spicenet.cells.resistive.train.build_network`).

        The fitted diode law (Is in A, n, Rs in ohm), rails ``vb`` (V), bias sources ``v_bias`` (V), the input gain
        (V per unit input), the conductance LSB ``g_lsb`` (S; the parameters are stored in LSB units, ``g_unit``)
        and the programmable levels come from the file; ``amp_gain`` > 0 adds bidirectional amplifiers (VCVS gain,
        backward CCCS gain ``amp_back``, 0 = 1/amp_gain), ``input_gain`` > 0 overrides the file's input gain.
        Parameters start uniform in [0, ``init_max_lsb``] LSB (seeded by ``seed``), float64 (``.float()`` casts
        them). ``ideal``: float conductances, no quantisation (the software reference). ``units``: the hidden-node
        nonlinearity (:data:`UNITS`, module docstring). The spec is kept as
        ``net.spec`` for :meth:`sample_chip` and :meth:`spice_outputs`.
        """
        from spicenet.cells.resistive.train import build_network, net_spec
        from spicenet.surrogate_schema import load_surrogate

        spec = net_spec(load_surrogate(path, "resistive"), [int(s) for s in layers], bias, amp_gain, amp_back,
                        input_gain, units=units)
        net = build_network(spec, init_max=init_max_lsb, seed=seed, device=device, ideal=ideal)
        net.spec = spec
        return net

    def _need_spec(self, what: str) -> dict[str, Any]:
        if self.spec is None:
            raise ValueError(f"{what}: this network was not built from a calibration (use "
                             "ResistiveNetwork.from_surrogate)")
        return self.spec

    def sample_chip(self, seed: int, scale: float = 1.0) -> "Chip":
        """One fabricated chip from the calibrated spreads (conductance-level tolerance, diode ``ln Is`` and
        ideality spreads, times ``scale``; 0 = nominal), as the trainer draws them
        (:func:`spicenet.cells.resistive.train.make_chip`). Same seed -> same chip."""
        from spicenet.cells.resistive.train import make_chip

        return make_chip(self, self._need_spec("sample_chip"), int(seed), scale)

    def spice_outputs(self, x: Tensor, chip: "Chip | None" = None, *, workers: int = 1) -> Tensor:
        """Output node voltages [B, n_out] (V) computed by ngspice ``.op`` for inputs ``x`` [B, n_in]: the network
        on ``chip`` exported to a netlist with the process's own diode in place of the fitted law (what
        ``spicenet validate`` runs; :func:`spicenet.cells.resistive.calibrate.spice_node_voltages`). NaN rows
        where a run failed."""
        from spicenet.cells.resistive.calibrate import spice_node_voltages
        from spicenet.spice.engine import Engine

        spec = self._need_spec("spice_outputs")
        with Engine(workers=max(1, int(workers))) as engine:
            v, _, _ = spice_node_voltages(self, chip, x.detach().cpu(), engine=engine,
                                          options=dict(spec["spice_options"]), process=spec.get("process"),
                                          area=spec.get("diode_area", 1.0))
        return torch.as_tensor(v[:, self.out_slice], dtype=self.weights[0].dtype)

    # ------------------------------------------------------------------ structure
    @property
    def device(self) -> torch.device:
        """Device of the parameters (follows ``.to()``)."""
        device: torch.device = self.weights[0].device
        return device

    @property
    def n_in(self) -> int:
        return self.layer_sizes[0]

    @property
    def n_out(self) -> int:
        return self.layer_sizes[-1]

    @property
    def n_free(self) -> int:
        """Number of free nodes (all hidden and output nodes)."""
        return self._starts[-1]

    @property
    def n_src(self) -> int:
        """Number of voltage sources: 2 per input, plus the bias pair."""
        return 2 * self.n_in + (2 if self.has_bias else 0)

    def layer_slice(self, layer: int) -> slice:
        """Free-node indices of free layer ``layer`` (1..L)."""
        if not 1 <= layer < len(self.layer_sizes):
            raise ValueError(f"layer must be in 1..{len(self.layer_sizes) - 1}, got {layer!r}")
        return slice(self._starts[layer - 1], self._starts[layer])

    @property
    def out_slice(self) -> slice:
        return self.layer_slice(len(self.layer_sizes) - 1)

    # ------------------------------------------------------------------ conductances
    def _realise(self, w: Tensor, factor: Tensor | None) -> Tensor:
        g = w * self.g_unit
        if self.quantize is not None:
            g = g + (self.quantize(g.detach()) - g).detach()
        if factor is not None:
            if factor.shape != g.shape:
                raise ValueError(f"chip factor shape {tuple(factor.shape)} does not match {tuple(g.shape)}")
            g = g * factor.to(g)
        return g

    def conductances(self, chip: Chip | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """Realised conductances (S): (weights, biases), after quantisation and the chip's mismatch."""
        if chip is not None and (len(chip.g_factor) != len(self.weights) or len(chip.b_factor) != len(self.biases)):
            raise ValueError("chip does not belong to this network (factor counts differ)")
        gw = [self._realise(w, None if chip is None else chip.g_factor[k]) for k, w in enumerate(self.weights)]
        gb = [self._realise(b, None if chip is None else chip.b_factor[k]) for k, b in enumerate(self.biases)]
        return gw, gb

    def layer_scale(self) -> list[float]:
        """KCL row weight ``w_l`` of free layers 1..L (module docstring): all 1 without amplifiers, else
        ``w_1 = 1``, ``w_{l+1} = w_l b / A``."""
        w = [1.0]
        for _ in range(2, len(self.layer_sizes)):
            # amp_back is set whenever amp_gain is (__init__)
            w.append(w[-1] * (1.0 if self.amp_gain is None else cast(float, self.amp_back) / self.amp_gain))
        return w

    def drive_voltages(self, v_layer: Tensor) -> Tensor:
        """Voltages [B, rows] at the row terminals of the weight matrix leaving a free layer whose node voltages
        are ``v_layer`` [B, n_l]: ``[A V, -A V]`` (amplifier outputs) with amplifiers, ``V`` without."""
        if self.amp_gain is None:
            return v_layer
        return torch.cat((self.amp_gain * v_layer, -self.amp_gain * v_layer), dim=1)

    def diode_layout(self) -> tuple[Tensor, Tensor] | None:
        """(rails [N, 2] in V, present [N, 2] bool) of the free nodes' diodes, columns (upper, lower) as in
        :class:`~spicenet.cells.resistive.solver.Circuit`; None for ``units="clamp"`` (two diodes at ``+-vb``
        everywhere). Rectifier units: excitatory nodes keep the lower diode only, inhibitory ones the upper diode
        only, both on a 0 V rail; the output nodes keep both diodes at ``+-vb``."""
        if self.units == "clamp":
            return None
        dev = self.device
        rails = torch.tensor([self.vb, -self.vb], dtype=torch.float64, device=dev).repeat(self.n_free, 1)
        present = torch.ones(self.n_free, 2, dtype=torch.bool, device=dev)
        for layer in range(1, len(self.layer_sizes) - 1):
            sl = self.layer_slice(layer)
            half = sl.start + self.layer_sizes[layer] // 2
            rails[sl] = 0.0
            present[sl.start:half, 0] = False  # excitatory: only the lower diode (0 V -> node)
            present[half:sl.stop, 1] = False  # inhibitory: only the upper diode (node -> 0 V)
        return rails, present

    def circuit(self, chip: Chip | None = None) -> Circuit:
        """Dense float64 circuit of this network on ``chip`` (gradients flow to the parameters); with amplifiers
        in the row-scaled symmetric form of the module docstring."""
        gw, gb = self.conductances(chip)
        n_free, n_in = self.n_free, self.n_in
        dt, dev = torch.float64, self.device
        ws = self.layer_scale()
        s = torch.zeros(self.n_src, n_free, dtype=dt, device=dev)
        s[: 2 * n_in, self.layer_slice(1)] = gw[0]
        a = torch.zeros(n_free, n_free, dtype=dt, device=dev)
        amp = self.amp_gain
        d_amp = torch.zeros(n_free, dtype=dt, device=dev)
        for layer in range(1, len(gw)):
            g = gw[layer]
            if amp is None:
                a[self.layer_slice(layer), self.layer_slice(layer + 1)] = g
            else:
                n_l = self.layer_sizes[layer]
                w_to = ws[layer]  # weight of the receiving layer layer+1 (ws is 0-based)
                a[self.layer_slice(layer), self.layer_slice(layer + 1)] = w_to * amp * (g[:n_l] - g[n_l:])
                d_amp[self.layer_slice(layer)] += w_to * amp ** 2 * (g[:n_l] + g[n_l:]).sum(1)
                d_amp[self.layer_slice(layer + 1)] += w_to * (g[:n_l] + g[n_l:]).sum(0)
        a = a + a.T
        for layer, g in enumerate(gb, start=1):
            s[2 * n_in:, self.layer_slice(layer)] = g * ws[layer - 1]
        diag = node_scale = None
        if amp is not None:
            diag = d_amp + s.sum(0)
            node_scale = torch.cat([torch.full((n,), w, dtype=dt, device=dev)
                                    for n, w in zip(self.layer_sizes[1:], ws)])
        is_ = torch.full((n_free, 2), self.is_, dtype=dt, device=dev)
        nn_ = torch.full((n_free, 2), self.n, dtype=dt, device=dev)
        if chip is not None:
            is_ = is_ * chip.is_factor.to(is_)
            nn_ = nn_ * chip.n_factor.to(nn_)
        out = torch.arange(self.out_slice.start, self.out_slice.stop, device=dev)
        layout = self.diode_layout()
        rails, present = (None, None) if layout is None else layout
        return Circuit(s=s, a=a, is_=is_, n=nn_, out_index=out, rs=self.rs, vb=self.vb, gmin=self.gmin,
                       temperature=self.temperature, layers=tuple(self.layer_sizes[1:]), diodes=self.diodes,
                       diag=diag, node_scale=node_scale, rails=rails, present=present)

    def source_voltages(self, x: Tensor) -> Tensor:
        """Source voltages [B, n_src] (V) for inputs ``x`` [B, n_in]: ``[g x, -g x, v_bias, -v_bias]``."""
        if x.dim() != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"x must be [B, {self.n_in}], got shape {tuple(x.shape)}")
        x = x.to(device=self.device, dtype=torch.float64)
        parts = [self.input_gain * x, -self.input_gain * x]
        if self.has_bias:
            parts.append(torch.tensor([[self.v_bias, -self.v_bias]], dtype=x.dtype, device=x.device).expand(
                x.shape[0], 2))
        return torch.cat(parts, dim=1)

    # ------------------------------------------------------------------ phases
    def equilibrium(
        self,
        x: Tensor,
        *,
        chip: Chip | None = None,
        beta: float = 0.0,
        target: Tensor | None = None,
        out_current: Tensor | None = None,
        v0: Tensor | None = None,
        differentiable: bool = False,
        circuit: Circuit | None = None,
        **solver_kw: Any,
    ) -> SolveResult:
        """Steady state for inputs ``x`` [B, n_in]: free phase by default; nudged with an MSE nudge
        (``beta`` S towards ``target`` [B, n_out] V) and/or currents ``out_current`` [B, n_out] (A) into the outputs."""
        circ = self.circuit(chip) if circuit is None else circuit
        vs = self.source_voltages(x)
        i_inj = None
        if out_current is not None:
            if tuple(out_current.shape) != (x.shape[0], self.n_out):
                raise ValueError(f"out_current must be [{x.shape[0]}, {self.n_out}], got {tuple(out_current.shape)}")
            i_inj = torch.zeros(x.shape[0], self.n_free, dtype=torch.float64, device=self.device)
            i_inj = i_inj.index_add(1, circ.out_index, out_current.to(i_inj))
        if target is not None:
            target = target.to(device=self.device, dtype=torch.float64)
        return solve(circ, vs, beta=beta, target=target, i_inj=i_inj, v0=v0, differentiable=differentiable,
                     **solver_kw)

    def forward(self, x: Tensor, chip: Chip | None = None, differentiable: bool = False,
                chunk: int = FORWARD_CHUNK) -> Tensor:
        """Free-phase output voltages [B, n_out] (V), in the parameters' dtype (the solve itself is float64).

        Without ``differentiable`` a large batch is solved ``chunk`` samples at a time (each sample's solve is
        independent of the others; a 1568-100-100-10 network solves 4,096 inputs 1.6x faster in chunks of 256 than
        at once, whose [B, 100, 100] blocks no longer fit in cache and whose Newton loop runs to the slowest
        sample)."""
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk!r}")
        if differentiable or x.shape[0] <= chunk:
            v = self.equilibrium(x, chip=chip, differentiable=differentiable).v[:, self.out_slice]
        else:
            circ = self.circuit(chip)
            v = torch.cat([self.equilibrium(x[i:i + chunk], circuit=circ).v[:, self.out_slice]
                           for i in range(0, x.shape[0], chunk)])
        return v.to(self.weights[0].dtype)

    @torch.no_grad()
    def clip_(self) -> None:
        """Clip every parameter to [0, g_max] (call after each optimiser step)."""
        for p in list(self.weights) + list(self.biases):
            p.clamp_(min=0.0, max=self.g_max)
