"""PNG plots for runs (matplotlib, Agg backend): metric curves and image sample grids."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from spicenet.plotting import integer_axis, subplots


def plot_curves(x: Sequence[float], series: dict[str, Sequence[float | None]], path: str | Path,
                logy: bool = False, xlabel: str = "epoch") -> Path:
    """Line plot of each series against x; missing values (None) are skipped; integer x ticks when every x is a
    whole number (epochs, iterations); a legend when there are two or more series."""
    fig, ax = subplots(figsize=(5, 3.5), dpi=100)
    for k, ys in series.items():
        pts = [(a, b) for a, b in zip(x, ys) if b is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=k)
    ax.set_xlabel(xlabel)
    if len(x) and all(float(v).is_integer() for v in x):
        integer_axis(ax, "x")
    if logy:
        ax.set_yscale("log")
    if len(series) > 1:
        ax.legend(fontsize=8)
    else:
        ax.set_ylabel(next(iter(series), ""))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p)
    return p


def sample_grid(images: np.ndarray | torch.Tensor, path: str | Path, ncols: int | None = None,
                titles: Sequence[str] | None = None, vmin: float | None = None, vmax: float | None = None) -> Path:
    """Grid of grey images (N, H, W) or flat (N, H*H); value range auto unless vmin/vmax given."""
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.ndim == 2:
        side = int(round(math.sqrt(x.shape[1])))
        if side * side != x.shape[1]:
            raise ValueError(f"images: flat width {x.shape[1]} is not a square number")
        x = x.reshape(-1, side, side)
    if x.ndim != 3 or x.shape[0] == 0:
        raise ValueError(f"images: expected (N, H, W) or (N, H*H) with N >= 1, got {x.shape}")
    n = x.shape[0]
    ncols = ncols or min(n, int(math.ceil(math.sqrt(n))))
    nrows = int(math.ceil(n / ncols))
    fig, axes = subplots(nrows, ncols, figsize=(ncols * 0.9, nrows * 0.9 + (0.2 if titles else 0)), dpi=100,
                             squeeze=False)
    lo = float(x.min()) if vmin is None else vmin
    hi = float(x.max()) if vmax is None else vmax
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < n:
            ax.imshow(x[i], cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
            if titles is not None and i < len(titles):
                ax.set_title(str(titles[i]), fontsize=6)
    fig.tight_layout(pad=0.1)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p)
    return p
