"""Plot conventions (spicenet.plotting): chip indices as points with integer ticks, legends where series differ,
no single-bar charts, spec lines only where the user set a spec. Checked on the matplotlib objects the plotting
functions build (captured through their module's ``subplots``), after rendering them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.container import BarContainer

from spicenet import plotting, report


@pytest.fixture
def figures(monkeypatch):
    """``capture(module)`` makes ``module.subplots`` record every figure it builds into the returned list."""
    made: list = []

    def capture(module) -> list:
        def recording(*args, **kwargs):
            fig, axes = plotting.subplots(*args, **kwargs)
            made.append(fig)
            return fig, axes

        monkeypatch.setattr(module, "subplots", recording)
        return made

    return capture


def _rendered_axes(fig) -> list:
    fig.canvas.draw()  # tick locations are final only once drawn
    return [ax for ax in fig.axes if ax.get_visible()]


def _integer_ticks(ax, axis: str = "x") -> bool:
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    ticks = [t for t in (ax.get_xticks() if axis == "x" else ax.get_yticks()) if lo - 1e-9 <= t <= hi + 1e-9]
    return bool(ticks) and all(float(t).is_integer() for t in ticks)


def _point_lines(ax) -> list:
    """The data series of ``ax`` drawn as markers (no connecting line)."""
    return [ln for ln in ax.get_lines() if ln.get_linestyle() in ("None", "none", "") and ln.get_marker() not in
            (None, "None", "none", "")]


def test_per_chip_points_are_points_with_integer_ticks_and_a_legend():
    fig, ax = plotting.subplots()
    plotting.per_chip_points(ax, {"surrogate": ([0, 1, 2], [0.8, 0.7, 0.75]), "ngspice": ([0, 1, 2], [0.79, 0.7, 0.7])})
    (ax,) = _rendered_axes(fig)
    assert len(_point_lines(ax)) == 2 and len(ax.get_lines()) == 2  # no line joins the chips
    assert _integer_ticks(ax)  # 3 chips: matplotlib's default would tick 0, 0.25, ..., 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["surrogate", "ngspice"]
    fig, ax = plotting.subplots()
    plotting.per_chip_points(ax, {"only": ([0, 1], [1.0, 2.0])})
    assert ax.get_legend() is None  # one series: nothing to tell apart
    with pytest.raises(ValueError, match="axis"):
        plotting.integer_axis(ax, "z")


def test_resistive_chip_accuracy_plot(figures, tmp_path):
    from spicenet.cells.resistive import train

    made = figures(train)
    ev = {k: {"chip_accuracies": acc, "chip_mean": float(np.mean(acc)), "chip_worst": min(acc)}
          for k, acc in (("injected", [0.8, 0.78, 0.81]), ("plain", [0.7, 0.6, 0.75]))}
    path = train._plot_chips(SimpleNamespace(plots=tmp_path), ev)
    assert path.is_file()
    (ax,) = _rendered_axes(made[0])
    assert len(_point_lines(ax)) == 2 and _integer_ticks(ax)
    assert len(ax.get_legend().get_texts()) == 2


def test_resistive_validation_plot_chip_panel(figures, tmp_path):
    from spicenet.cells.resistive import validate

    made = figures(validate)
    v = np.linspace(0.0, 0.3, 12).reshape(3, 4)
    per_chip = [{"chip": c, "surrogate_accuracy": 0.8 - 0.01 * c, "spice_accuracy": 0.79 - 0.01 * c} for c in range(3)]
    validate._plot(SimpleNamespace(plots=tmp_path), (v, v + 1e-4), per_chip, SimpleNamespace(out_slice=slice(2, 4)))
    _, chips_ax = _rendered_axes(made[0])
    assert len(_point_lines(chips_ax)) == 2 and _integer_ticks(chips_ax)
    assert [t.get_text() for t in chips_ax.get_legend().get_texts()] == ["surrogate", "ngspice"]


def test_rng_autocorrelation_plot_names_every_chip(figures, tmp_path):
    from spicenet.cells.rng import calibrate

    made = figures(calibrate)
    lv = np.linspace(-1e-3, 1e-3, 7)
    results = []
    for chip in range(3):
        tau = (2 + chip) * 1e-8
        acf = np.exp(-np.arange(50) * 1e-9 / tau)
        analysis = {"fit": {"v0": 1e-4 * chip, "vs": 2e-4}, "p": 1 / (1 + np.exp(-lv / 2e-4)),
                    "sigma": np.full(7, 0.01), "acf": acf, "tau": tau, "energy_per_bit_j": 1e-16 * (1 + chip),
                    "power_w": 1e-9}
        results.append(calibrate.ChipResult(chip, 0.0, 0.0, 0.0, lv, {}, analysis=analysis))
    paths = calibrate.write_plots(results, calibrate.RngCalibrationConfig(), tmp_path / "rng.h5")
    assert all(Path(p).is_file() for p in paths)
    acf_fig = next(f for f in made if "autocorrelation" in f.axes[0].get_title())
    (ax,) = _rendered_axes(acf_fig)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["chip 0", "chip 1", "chip 2"]
    energy_fig = next(f for f in made if "E_bit" in f.axes[0].get_title())
    (ax,) = _rendered_axes(energy_fig)
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 1 and len(bars[0]) == 3  # one bar per chip, chip names as categories
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]


def test_report_energy_plot_has_no_single_bar_chart_and_points_per_chip(figures):
    made = figures(report)
    per_chip = {"J per inference": [2e-12, 3e-12, 2.5e-12]}
    assert report.plot_energy({"validation spice: energy_per_inference_j": 2.5e-12}, per_chip) is not None
    axes = _rendered_axes(made[-1])
    assert len(axes) == 1  # the single total is not drawn as a one-bar chart; only the per-chip panel
    (ax,) = axes
    assert not ax.containers and len(_point_lines(ax)) == 1 and _integer_ticks(ax)
    assert report.plot_energy({"only": 1e-12}, {}) is None  # nothing worth a chart
    report.plot_energy({"term: a": 1e-12, "term: b": 3e-12, "metrics: total": 4e-12}, {})
    (ax,) = _rendered_axes(made[-1])
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 3


def test_report_yield_plot_draws_a_spec_only_where_set(figures):
    made = figures(report)
    values = [0.79, 0.75, 0.70, 0.81]
    series = report.chip_series({"chip_accuracies": values, "test_accuracy": 0.8}, {})
    assert len(series) == 1 and series[0].spec is None and series[0].yield_at_spec is None  # none invented
    report.plot_yield(series)
    (ax,) = _rendered_axes(made[-1])
    assert not any(t.get_text().startswith("spec") for t in ax.get_legend().get_texts())
    (with_spec,) = report.chip_series({"chip_accuracies": values, "test_accuracy": 0.8}, {},
                                      {"chip_accuracies": 0.72})
    assert with_spec.spec == 0.72 and with_spec.yield_at_spec == pytest.approx(3 / 4)  # 0.75, 0.79, 0.81 >= 0.72
    report.plot_yield([with_spec])
    (ax,) = _rendered_axes(made[-1])
    assert [t.get_text() for t in ax.get_legend().get_texts() if t.get_text().startswith("spec")] == \
        ["spec 0.72: Y = 0.75"]


def test_report_spec_arguments_parse_and_refuse_bad_items():
    from spicenet.errors import UsageError

    assert report.parse_specs(["chips.fid_values=11", "accuracy over chips=0.72"]) == {
        "chips.fid_values": 11.0, "accuracy over chips": 0.72}
    for bad in ("chips.fid_values", "=3", "x=nan", "x=abc"):
        with pytest.raises(UsageError, match="--spec"):
            report.parse_specs([bad])


def test_epoch_axes_get_integer_ticks(figures, tmp_path):
    from spicenet.train import plots

    made = figures(plots)
    plots.plot_curves([0, 1, 2], {"loss": [1.0, 0.5, 0.25]}, tmp_path / "c.png")
    (ax,) = _rendered_axes(made[-1])
    assert _integer_ticks(ax) and ax.get_legend() is None and ax.get_ylabel() == "loss"
    plots.plot_curves([0, 1, 2], {"a": [1, 2, 3], "b": [3, 2, 1]}, tmp_path / "d.png")
    (ax,) = _rendered_axes(made[-1])
    assert _integer_ticks(ax) and len(ax.get_legend().get_texts()) == 2
    made_report = figures(report)
    report.plot_training_curves([{"epoch": e, "loss": 1.0 / (e + 1)} for e in range(3)])
    assert all(_integer_ticks(ax) for ax in _rendered_axes(made_report[-1]))
