"""Behavioural surrogate of a calibrated p-bit (probabilistic bit) array.

Physics (the law the SPICE calibration fits; README, "Subthreshold p-bits"):

    P(out = 1 | v) = sigmoid((v - v0) / vs)

with v the cell's bias voltage (V), v0 the bias at which P = 1/2 (V) and vs the logistic slope (V). Both vary
from cell to cell and chip to chip through device mismatch; this module receives them as plain tensors of shape
[cells] or [chips, cells] (drawing chips from the calibrated distribution is the calibration side's job).

Time correlation. A free-running cell read every ``dt`` seconds gives correlated bits when ``dt`` is not long
against the cell's autocorrelation time ``tau``. The surrogate is the two-state Markov chain that, at each
sample, keeps its previous bit with probability ``rho = exp(-dt / tau)`` and otherwise draws a fresh bit
with probability p. Its transition probabilities are

    P(0 -> 1) = (1 - rho) * p,        P(1 -> 0) = (1 - rho) * (1 - p),

so the stationary P(1) is exactly p, and the autocorrelation of the bit stream at lag k is
``rho**k = exp(-k * dt / tau)``: the exponential (random-telegraph) autocorrelation measured in SPICE.

Energy: the calibrated energy per generated bit (J/bit) is carried along; ``energy_j(n_bits)`` gives the total.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, cast

import torch

__all__ = ["PBit", "markov_flip_probabilities"]


def _as_tensor(x: torch.Tensor | float, name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=dtype, device=device)
    if not torch.all(torch.isfinite(t)):
        raise ValueError(f"{name}: non-finite value")
    return t


def markov_flip_probabilities(p: torch.Tensor, rho: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Transition probabilities ``(P(0->1), P(1->0))`` of the two-state chain with stationary P(1) = p and
    lag-1 autocorrelation ``rho`` (0 <= rho < 1)."""
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"rho: expected 0 <= rho < 1, got {rho}")
    return (1.0 - rho) * p, (1.0 - rho) * (1.0 - p)


class PBit(torch.nn.Module):
    """A bank of p-bit cells with per-cell transfer ``P(1) = sigmoid((v - v0) / vs)``.

    Args:
        v0: bias at P = 1/2 per cell (V), shape [cells] or [chips, cells].
        vs: logistic slope per cell (V, > 0), same shape as ``v0`` (or broadcastable to it).
        tau_s: autocorrelation time of the cell (s, > 0); ``None`` means independent samples.
        dt_s: sample period (s, > 0); needed with ``tau_s``.
        energy_per_bit_j: energy per generated bit (J, >= 0), e.g. from the SPICE supply current.
        device: torch device of the parameters and samples.
        dtype: floating dtype of the parameters (float32 default; float64 for statistics tests).

    The module holds v0 and vs as buffers (not trained parameters): they describe a fabricated chip.
    """

    v0: torch.Tensor
    vs: torch.Tensor

    def __init__(
        self,
        v0: torch.Tensor,
        vs: torch.Tensor,
        tau_s: float | None = None,
        dt_s: float | None = None,
        energy_per_bit_j: float | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        device = torch.device(device)
        v0 = _as_tensor(v0, "v0", device, dtype)
        vs = _as_tensor(vs, "vs", device, dtype)
        if v0.dim() not in (1, 2):
            raise ValueError(f"v0: expected shape [cells] or [chips, cells], got {tuple(v0.shape)}")
        try:
            vs = torch.broadcast_to(vs, v0.shape).clone()
        except RuntimeError:
            raise ValueError(f"vs: shape {tuple(vs.shape)} does not broadcast to v0's {tuple(v0.shape)}") from None
        if torch.any(vs <= 0):
            raise ValueError(f"vs: expected > 0 V, got min {vs.min().item():.3g}")
        if tau_s is not None:
            if not (math.isfinite(tau_s) and tau_s > 0):
                raise ValueError(f"tau_s: expected a finite time > 0 s, got {tau_s}")
            if dt_s is None or not (math.isfinite(dt_s) and dt_s > 0):
                raise ValueError(f"dt_s: expected a finite sample period > 0 s with tau_s, got {dt_s}")
        elif dt_s is not None and not (math.isfinite(dt_s) and dt_s > 0):
            raise ValueError(f"dt_s: expected a finite sample period > 0 s, got {dt_s}")
        if energy_per_bit_j is not None and not (math.isfinite(energy_per_bit_j) and energy_per_bit_j >= 0):
            raise ValueError(f"energy_per_bit_j: expected a finite energy >= 0 J, got {energy_per_bit_j}")
        self.register_buffer("v0", v0)
        self.register_buffer("vs", vs)
        self.tau_s = tau_s
        self.dt_s = dt_s
        self.energy_per_bit_j = energy_per_bit_j
        self.calibration: dict[str, Any] | None = None  # set by from_surrogate

    @classmethod
    def draw_chips(
        cls,
        n_chips: int,
        n_cells: int,
        v0_mean: float,
        v0_std: float,
        vs_mean: float,
        vs_std: float,
        generator: torch.Generator,
        **kwargs: Any,
    ) -> "PBit":
        """Fresh chips [n_chips, n_cells] from a mismatch distribution (fixed chips: same generator seed).

        v0 ~ Normal(v0_mean, v0_std); vs ~ LogNormal with mean ``vs_mean`` and std ``vs_std`` (so it stays
        > 0): sigma^2 = ln(1 + (vs_std / vs_mean)^2), mu = ln(vs_mean) - sigma^2 / 2. Cells are independent (a
        first model of local mismatch). ``kwargs`` go to the constructor (tau_s, dt_s, energy_per_bit_j, ...).
        """
        if n_chips < 1 or n_cells < 1:
            raise ValueError(f"n_chips/n_cells: expected >= 1, got {n_chips}/{n_cells}")
        if not (v0_std >= 0 and vs_std >= 0 and vs_mean > 0):
            raise ValueError(f"v0_std/vs_std/vs_mean: expected >= 0 / >= 0 / > 0, got {v0_std}/{vs_std}/{vs_mean}")
        dtype = kwargs.get("dtype", torch.float32)
        z = torch.randn((2, n_chips, n_cells), generator=generator, dtype=torch.float64)
        sig2 = math.log1p((vs_std / vs_mean) ** 2)
        v0 = v0_mean + v0_std * z[0]
        vs = torch.exp(math.log(vs_mean) - 0.5 * sig2 + math.sqrt(sig2) * z[1])
        return cls(v0.to(dtype), vs.to(dtype), **kwargs)

    @classmethod
    def from_surrogate(
        cls,
        path: str | os.PathLike[str],
        n_cells: int,
        *,
        seed: int = 0,
        n_chips: int | None = None,
        scale: float = 1.0,
        dt_s: float | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> "PBit":
        """``n_cells`` p-bits of a fabricated chip drawn from an rng calibration (``spicenet calibrate rng -o path``).

        Per cell, ``v0`` (V) and ``vs`` (V) are drawn from the calibrated joint mismatch distribution (mean, std and
        correlation over the Monte-Carlo chips; ``scale`` multiplies every std, 0 = the nominal cell) exactly as
        ``spicenet train dtm`` draws its chips (:class:`spicenet.cells.rng.training.ChipModel`, untrimmed: these are
        the true transitions). Chip ``seed`` gives shape [n_cells]; ``n_chips`` gives [n_chips, n_cells] with chip
        c drawn from seed ``seed + c``. The module carries the calibrated mean autocorrelation time ``tau_s`` (s),
        the energy per effective independent bit ``energy_per_bit_j`` (J) and, unless ``dt_s`` (s) is given, the
        calibration's sample period ``dt_s``. Use :meth:`sample_chip` for another chip of the same calibration.
        """
        from spicenet.cells.rng.training import ChipModel
        from spicenet.surrogate_schema import load_surrogate

        sur = load_surrogate(path, "rng")  # a wrong or broken file: a one-line DataError naming it
        if n_cells < 1 or (n_chips is not None and n_chips < 1):
            raise ValueError(f"n_cells/n_chips: expected >= 1, got {n_cells}/{n_chips}")
        # ChipModel only hands the path on to SurrogateFile.load, which takes any os.PathLike
        chips = ChipModel(cast("str | Path", path), scale=scale, v0_trim=False)
        draws = [chips.cells(int(seed) + c, int(n_cells))[:2] for c in range(1 if n_chips is None else n_chips)]
        v0 = torch.stack([d[0] for d in draws])
        vs = torch.stack([d[1] for d in draws])
        if n_chips is None:
            v0, vs = v0[0], vs[0]
        tau = float(sur.params["tau_s"].mean) if "tau_s" in sur.params else None  # type: ignore[arg-type]
        dt = dt_s if dt_s is not None else (float(sur.attrs["dt_s"]) if tau is not None else None)
        out = cls(v0.to(dtype), vs.to(dtype), tau_s=tau, dt_s=dt,
                  energy_per_bit_j=sur.energy.get("energy_per_bit_j"), device=device, dtype=dtype)
        out.calibration = {"path": str(path), "n_cells": int(n_cells), "n_chips": n_chips, "scale": float(scale),
                           "dt_s": dt, "seed": int(seed)}
        return out

    def sample_chip(self, seed: int, scale: float | None = None) -> "PBit":
        """Another chip (seed ``seed``) of the calibration this PBit was built from (same cells, chips, dt_s,
        dtype and device; ``scale`` defaults to the original one)."""
        cal = getattr(self, "calibration", None)
        if cal is None:
            raise ValueError("sample_chip: this PBit was not built from a calibration (use PBit.from_surrogate)")
        return type(self).from_surrogate(cal["path"], cal["n_cells"], seed=seed, n_chips=cal["n_chips"],
                                         scale=cal["scale"] if scale is None else scale, dt_s=cal["dt_s"],
                                         device=self.v0.device, dtype=self.v0.dtype)

    @property
    def shape(self) -> torch.Size:
        """Cell shape, [cells] or [chips, cells]."""
        return self.v0.shape

    @property
    def rho(self) -> float:
        """Lag-1 autocorrelation ``exp(-dt / tau)`` of the sampled bit stream (0 when uncorrelated)."""
        if self.tau_s is None:
            return 0.0
        return math.exp(-cast(float, self.dt_s) / self.tau_s)  # __init__ requires dt_s with tau_s

    def prob(self, v: torch.Tensor) -> torch.Tensor:
        """P(1) = sigmoid((v - v0) / vs); ``v`` (V) broadcasts against the cell shape (leading batch dims ok)."""
        v = torch.as_tensor(v, dtype=self.v0.dtype, device=self.v0.device)
        return torch.sigmoid((v - self.v0) / self.vs)

    def sample(self, v: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Independent bits {0, 1} (same dtype as v0) with P(1) = ``prob(v)``."""
        p = self.prob(v)
        u = torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype)
        return (u < p).to(p.dtype)

    def sample_stream(
        self,
        v: torch.Tensor,
        n_steps: int,
        generator: torch.Generator | None = None,
        state: torch.Tensor | None = None,
        time_varying: bool = False,
    ) -> torch.Tensor:
        """A time series of ``n_steps`` bits per cell read every ``dt_s``, shape [n_steps, *prob(v).shape].

        ``v`` is constant over the stream, or (``time_varying=True``) has a leading time axis of length
        ``n_steps`` (a changing bias; the keep-or-refresh rule then refreshes from the current p).
        With ``tau_s`` the bits follow the two-state Markov chain of the module docstring (lag-k
        autocorrelation ``exp(-k dt / tau)``); without it they are independent. ``state`` (bits {0, 1}) is the
        bit before the first sample; when omitted the chain starts in its stationary distribution.
        """
        if n_steps < 1:
            raise ValueError(f"n_steps: expected >= 1, got {n_steps}")
        v = torch.as_tensor(v, dtype=self.v0.dtype, device=self.v0.device)
        p_all = self.prob(v)
        timed = time_varying
        if timed and (p_all.dim() == 0 or p_all.shape[0] != n_steps):
            raise ValueError(f"v: time_varying needs a leading axis of length {n_steps}, got {tuple(v.shape)}")
        p0 = p_all[0] if timed else p_all
        rho = self.rho
        u_keep = torch.rand((n_steps, *p0.shape), generator=generator, device=p0.device, dtype=p0.dtype)
        u_bit = torch.rand((n_steps, *p0.shape), generator=generator, device=p0.device, dtype=p0.dtype)
        fresh = (u_bit < (p_all if timed else p0.expand_as(u_bit))).to(p0.dtype)
        if rho == 0.0:
            return fresh
        # bit k is the fresh draw at the last refresh j <= k (refresh with probability 1 - rho at each step):
        # vectorised as a running maximum of the refresh times along the time axis
        refresh = u_keep >= rho
        if state is None:
            refresh[0] = True  # stationary start: the first bit is a fresh Bernoulli(p) draw
        steps = torch.arange(n_steps, device=p0.device).view(n_steps, *([1] * p0.dim())).expand_as(refresh)
        last = torch.cummax(torch.where(refresh, steps, torch.full_like(steps, -1)), dim=0).values
        out = torch.gather(fresh, 0, last.clamp_min(0))
        if state is not None:
            prev = torch.as_tensor(state, dtype=p0.dtype, device=p0.device).expand_as(p0)
            if torch.any((prev != 0) & (prev != 1)):
                raise ValueError("state: expected bits in {0, 1}")
            out = torch.where(last < 0, prev.expand_as(out), out)
        return out

    def energy_j(self, n_bits: int | torch.Tensor) -> float | torch.Tensor:
        """Energy (J) to generate ``n_bits`` bits: ``n_bits * energy_per_bit_j``."""
        if self.energy_per_bit_j is None:
            raise ValueError("energy_per_bit_j: not set for this PBit")
        return n_bits * self.energy_per_bit_j

    def gibbs_nonideality(self, v0_nominal: float, vs_nominal: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-cell ``(offset, gain)`` for ``gibbs.BlockGibbsSampler`` when this chip runs a Boltzmann machine.

        Shapes follow the cells: [cells] (one chip: pass as is) or [chips, cells] (pass ``offset.T``,
        ``gain.T`` [cells, chips] to run chip c in chain c).

        The designer maps the ideal logit ``x = 2 beta (b_i + sum_j J_ij s_j)`` to a bias voltage with the
        nominal cell, ``v = v0_nominal + vs_nominal * x``. The fabricated cell then fires with

            P(+1) = sigmoid((v - v0_i) / vs_i) = sigmoid((x - offset_i) / gain_i),
            offset_i = (v0_i - v0_nominal) / vs_nominal,   gain_i = vs_i / vs_nominal.
        """
        if not (math.isfinite(vs_nominal) and vs_nominal > 0):
            raise ValueError(f"vs_nominal: expected > 0 V, got {vs_nominal}")
        return (self.v0 - v0_nominal) / vs_nominal, self.vs / vs_nominal
