"""Figures for the PNG plots every verb writes, without pyplot.

``subplots`` returns a ``matplotlib.figure.Figure`` that is not registered with pyplot: no backend is switched (a
notebook keeps its inline plots), no global list of open figures grows in long-running workers, and
``fig.savefig(path)`` renders with the Agg canvas. Nothing needs closing; the figure is freed with its last
reference.
"""

from __future__ import annotations

from typing import Any


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None,
             dpi: float | None = None, **kwargs: Any) -> tuple[Any, Any]:
    """``(figure, axes)`` like ``pyplot.subplots`` (same ``squeeze``/``sharex``/``gridspec_kw`` keywords)."""
    from matplotlib.figure import Figure

    if nrows < 1 or ncols < 1:
        raise ValueError(f"subplots: nrows and ncols must be >= 1, got {nrows} x {ncols}")
    fig = Figure(figsize=figsize, dpi=dpi)
    return fig, fig.subplots(nrows, ncols, **kwargs)
