"""Mismatch-aware noise injection, one mechanism for all trainers.

A :class:`MismatchModel` holds each surrogate parameter's mismatch distribution (mean m, within-chip std s,
optional die-to-die std s_g, correlation matrix C across parameters) and samples a :class:`Chip` by seed:

* Gaussian parameters:   x = m + s_g z_chip + s z_cell
* ``positive`` parameters (log-normal, moment-matched so E[x] = m, Var = s^2 + s_g^2 to first order):
  x = exp(mu + sig_g z_chip + sig z_cell), sig^2 = ln(1 + s^2/m^2), sig_g^2 = ln(1 + s_g^2/m^2),
  mu = ln m - (sig^2 + sig_g^2) / 2

with z ~ N(0, C) jointly over parameters (a Gaussian copula for the log-normal ones), independently per cell
(z_cell) and once per chip (z_chip). Draws are made on the CPU in float64 from a generator seeded by
(chip seed, parameter name) and then moved to the device/dtype, so a chip seed gives the same numbers on any device
and whichever subset of parameters is requested.

:class:`ChipSampler` gives trainers fresh chips from a seeded, *indexed* stream (seed, step/batch/epoch) -- stateless,
so a resumed run draws the same chips -- and a fixed list of held-out evaluation chips.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from spicenet.seeds import (CHIP_CELL_Z, CHIP_GLOBAL_Z, MISMATCH_EVAL_CHIP, MISMATCH_TRAIN_CHIP, Stream, int_seed,
                            name_index)
from spicenet.surrogate import SurrogateFile

PER_CHOICES = ("step", "batch", "epoch", "fixed")


@dataclass(frozen=True)
class ParamDist:
    """Mismatch distribution of one parameter (moments in the parameter's unit)."""

    mean: float
    std: float
    positive: bool = False
    std_global: float = 0.0
    unit: str = ""


@dataclass
class Chip:
    """One sampled chip: per-cell parameter tensors by name, and the seed that made them."""

    seed: int
    params: dict[str, torch.Tensor] = field(default_factory=dict)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.params[name]

    def __contains__(self, name: object) -> bool:
        return name in self.params

    def keys(self) -> Iterable[str]:
        return self.params.keys()

    def to(self, device: str | torch.device) -> "Chip":
        return Chip(self.seed, {k: v.to(device) for k, v in self.params.items()})


class MismatchModel:
    """Joint mismatch distribution over named parameters; ``sample_chip(seed, ...)`` draws a chip."""

    def __init__(self, dists: dict[str, ParamDist], correlation: np.ndarray | None = None,
                 correlation_names: Sequence[str] = ()) -> None:
        if not dists:
            raise ValueError("dists: at least one parameter is needed")
        self.dists = dict(dists)
        self.names = list(self.dists)
        n = len(self.names)
        c = np.eye(n)
        if correlation is not None:
            cn = list(correlation_names)
            corr = np.asarray(correlation, dtype=np.float64)
            if corr.shape != (len(cn), len(cn)):
                raise ValueError(f"correlation: shape {corr.shape} does not match {len(cn)} names")
            pos = {nm: i for i, nm in enumerate(self.names)}
            for i, a in enumerate(cn):
                for j, b in enumerate(cn):
                    if a in pos and b in pos:
                        c[pos[a], pos[b]] = corr[i, j]
        w, v = np.linalg.eigh(c)
        if w.min() < -1e-9:
            raise ValueError("correlation: matrix is not positive semi-definite")
        self.correlation = c
        for nm, d in self.dists.items():
            if d.positive and d.mean <= 0:
                raise ValueError(f"dists[{nm!r}]: a positive (log-normal) parameter needs mean > 0, got {d.mean}")

    @classmethod
    def from_surrogate(cls, surrogate: SurrogateFile | str | Path) -> "MismatchModel":
        """Build from a :class:`SurrogateFile` (or its path): the mean/std/positive/std_global attrs + correlation."""
        sf = surrogate if isinstance(surrogate, SurrogateFile) else SurrogateFile.load(surrogate)
        dists = {
            k: ParamDist(float(p.mean), float(p.std), p.positive, p.std_global, p.unit)  # type: ignore[arg-type]
            for k, p in sf.params.items()
        }
        return cls(dists, sf.correlation, sf.correlation_names)

    def _latent(self, seed: int, stream: Stream, names: list[str], shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        """Correlated standard normals z (shape ``shape``) for ``names``: z = L eps with L L^T = C[names, names],
        eps of parameter n from ``int_seed(seed, stream, name_index(n))``."""
        idx = [self.names.index(n) for n in names]
        sub = self.correlation[np.ix_(idx, idx)]
        w, v = np.linalg.eigh(sub)
        mix = torch.as_tensor((v * np.sqrt(np.clip(w, 0, None))) @ v.T, dtype=torch.float64)
        eps = []
        for n in names:
            g = torch.Generator().manual_seed(int_seed(seed, stream, name_index(n)))
            eps.append(torch.randn(shape, generator=g, dtype=torch.float64))
        e = torch.stack(eps)  # (P, *shape)
        z = torch.einsum("pq,q...->p...", mix, e)
        return {n: z[i] for i, n in enumerate(names)}

    def sample_chip(
        self,
        seed: int,
        shape: int | tuple[int, ...] = (),
        *,
        shapes: dict[str, int | tuple[int, ...]] | None = None,
        params: Sequence[str] | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        scale: float = 1.0,
    ) -> Chip:
        """Draw a chip: each requested parameter as a tensor of its cell shape (``shapes[name]`` or ``shape``).

        ``scale`` multiplies every std (0 = nominal chip, 2 = twice the calibrated mismatch). Parameters with a
        non-zero correlation must share a cell shape (ValueError otherwise).
        """
        if scale < 0:
            raise ValueError(f"scale: expected >= 0, got {scale}")
        if int(seed) < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {seed}")
        names = list(params) if params is not None else list(self.names)
        unknown = [n for n in names if n not in self.dists]
        if unknown:
            raise ValueError(f"params: unknown parameters {unknown}; known: {self.names}")
        shp = {n: _as_shape((shapes or {}).get(n, shape)) for n in names}
        groups: dict[tuple[int, ...], list[str]] = {}
        for n in names:
            groups.setdefault(shp[n], []).append(n)
        for a in names:
            for b in names:
                ia, ib = self.names.index(a), self.names.index(b)
                if shp[a] != shp[b] and abs(self.correlation[ia, ib]) > 1e-12:
                    raise ValueError(f"shapes: correlated parameters {a!r} {shp[a]} and {b!r} {shp[b]} differ in shape")
        chip_z = self._latent(int(seed), CHIP_GLOBAL_Z, names, ())
        out: dict[str, torch.Tensor] = {}
        for s, group in groups.items():
            cell_z = self._latent(int(seed), CHIP_CELL_Z, group, s)
            for n in group:
                d = self.dists[n]
                zc, zl = chip_z[n], cell_z[n]
                if d.positive:
                    sig = np.sqrt(np.log1p((scale * d.std / d.mean) ** 2))
                    sig_g = np.sqrt(np.log1p((scale * d.std_global / d.mean) ** 2))
                    mu = np.log(d.mean) - (sig**2 + sig_g**2) / 2
                    x = torch.exp(mu + sig_g * zc + sig * zl)
                else:
                    x = d.mean + scale * d.std_global * zc + scale * d.std * zl
                out[n] = x.to(device=device, dtype=dtype)
        return Chip(int(seed), out)

    def nominal_chip(self, shape: int | tuple[int, ...] = (), *, shapes: dict[str, int | tuple[int, ...]] | None = None,
                     params: Sequence[str] | None = None, device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32) -> Chip:
        """The mismatch-free chip: every cell at its parameter's mean."""
        names = list(params) if params is not None else list(self.names)
        return Chip(-1, {n: torch.full(_as_shape((shapes or {}).get(n, shape)), self.dists[n].mean, device=device,
                                       dtype=dtype) for n in names})


def _as_shape(s: int | tuple[int, ...] | Sequence[int]) -> tuple[int, ...]:
    t = (int(s),) if isinstance(s, (int, np.integer)) else tuple(int(v) for v in s)
    if any(v < 0 for v in t):
        raise ValueError(f"shape: expected non-negative sizes, got {t}")
    return t


class ChipSampler:
    """Chips for training (fresh per ``per``) and fixed held-out evaluation chips, all from one base ``seed``.

    per: ``step`` (one chip per optimizer step), ``batch`` (one per mini-batch: differs from ``step`` when a step
    accumulates several batches), ``epoch``, or ``fixed`` (one chip for the whole run). Training seeds are
    ``spicenet.seeds.int_seed(seed, MISMATCH_TRAIN_CHIP, index...)`` and evaluation seeds
    ``int_seed(seed, MISMATCH_EVAL_CHIP, i)``: two disjoint streams.
    """

    def __init__(self, model: MismatchModel, shape: int | tuple[int, ...] = (), *,
                 shapes: dict[str, int | tuple[int, ...]] | None = None, params: Sequence[str] | None = None,
                 per: str = "step", seed: int = 0, n_eval: int = 8, eval_seeds: Sequence[int] | None = None,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, scale: float = 1.0) -> None:
        if per not in PER_CHOICES:
            raise ValueError(f"per: expected one of {PER_CHOICES}, got {per!r}")
        if n_eval < 1 and eval_seeds is None:
            raise ValueError(f"n_eval: expected >= 1, got {n_eval}")
        self.model, self.shape, self.shapes, self.params = model, shape, shapes, params
        self.per, self.seed, self.device, self.dtype, self.scale = per, int(seed), device, dtype, scale
        self.eval_seeds = [int(s) for s in eval_seeds] if eval_seeds is not None else [
            int_seed(self.seed, MISMATCH_EVAL_CHIP, i) for i in range(n_eval)]
        self._last: tuple[int, Chip] | None = None

    def train_seed(self, step: int = 0, batch: int = 0, epoch: int = 0) -> int:
        """Seed of the training chip for (step, batch, epoch) under this sampler's ``per`` rule."""
        key = {"step": (step,), "batch": (step, batch), "epoch": (epoch,), "fixed": ()}[self.per]
        return int_seed(self.seed, MISMATCH_TRAIN_CHIP, *key)

    def _draw(self, seed: int) -> Chip:
        if self._last is not None and self._last[0] == seed:
            return self._last[1]
        chip = self.model.sample_chip(seed, self.shape, shapes=self.shapes, params=self.params, device=self.device,
                                      dtype=self.dtype, scale=self.scale)
        self._last = (seed, chip)
        return chip

    def chip(self, step: int = 0, batch: int = 0, epoch: int = 0) -> Chip:
        """The training chip for this (step, batch, epoch)."""
        return self._draw(self.train_seed(step, batch, epoch))

    def eval_chips(self) -> list[Chip]:
        """The held-out evaluation chips (same every call)."""
        return [self.model.sample_chip(s, self.shape, shapes=self.shapes, params=self.params, device=self.device,
                                       dtype=self.dtype, scale=self.scale) for s in self.eval_seeds]


def evaluate_over_chips(fn: Callable[[Chip], float], chips: Sequence[Chip], higher_is_better: bool = True) -> dict:
    """Evaluate ``fn(chip)`` on each chip and summarise: ``mean``, ``std``, ``worst`` (min if higher is better,
    else max), ``p10`` (the 10th percentile of the quality, i.e. the value 90 % of chips beat: the 10th percentile
    when higher is better, the 90th when lower is better), ``values`` and ``seeds``."""
    if len(chips) == 0:
        raise ValueError("chips: expected at least one chip")
    vals = np.array([float(fn(c)) for c in chips], dtype=np.float64)
    return {
        "mean": float(vals.mean()),
        "std": float(vals.std(ddof=1)) if vals.size > 1 else 0.0,
        "worst": float(vals.min() if higher_is_better else vals.max()),
        "p10": float(np.percentile(vals, 10 if higher_is_better else 90)),
        "values": vals.tolist(),
        "seeds": [c.seed for c in chips],
        "higher_is_better": bool(higher_is_better),
    }
