"""Figures for the PNG plots every verb writes, without pyplot.

``subplots`` returns a ``matplotlib.figure.Figure`` that is not registered with pyplot: no backend is switched (a
notebook keeps its inline plots), no global list of open figures grows in long-running workers, and
``fig.savefig(path)`` renders with the Agg canvas. Nothing needs closing; the figure is freed with its last
reference.

Conventions every plot follows (helpers below): chip indices (and epochs) are whole numbers, so their axis gets
integer ticks (:func:`integer_axis`); per-chip values are points or bars, never joined by lines (chips are not an
ordered sequence; :func:`per_chip_points`); a legend wherever two or more series share an axis; no single-bar
charts; a spec line only where the user set a spec.
"""

from __future__ import annotations

from typing import Any, Sequence


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None,
             dpi: float | None = None, **kwargs: Any) -> tuple[Any, Any]:
    """``(figure, axes)`` like ``pyplot.subplots`` (same ``squeeze``/``sharex``/``gridspec_kw`` keywords)."""
    from matplotlib.figure import Figure

    if nrows < 1 or ncols < 1:
        raise ValueError(f"subplots: nrows and ncols must be >= 1, got {nrows} x {ncols}")
    fig = Figure(figsize=figsize, dpi=dpi)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def integer_axis(ax: Any, axis: str = "x") -> None:
    """Integer-only major ticks on ``axis`` ("x" or "y") of ``ax`` (chip indices, epochs, iterations)."""
    from matplotlib.ticker import MaxNLocator

    if axis not in ("x", "y"):
        raise ValueError(f"axis: expected 'x' or 'y', got {axis!r}")
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


_MARKERS = "oxs^dv<>P*"


def per_chip_points(ax: Any, series: dict[str, tuple[Sequence[int], Sequence[float]]], *, xlabel: str = "chip",
                    ylabel: str = "", legend: bool | None = None) -> None:
    """Per-chip values as points over integer chip indices: ``series`` maps a label to (chip indices, values);
    one colour and marker per series, no connecting lines, integer x ticks; a legend when there are two or more
    series (or ``legend=True``)."""
    for i, (label, (chips, values)) in enumerate(series.items()):
        ax.plot(list(chips), list(values), ls="none", marker=_MARKERS[i % len(_MARKERS)], color=f"C{i % 10}",
                label=label)
    integer_axis(ax, "x")
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if legend or (legend is None and len(series) > 1):
        ax.legend(fontsize=7)
