"""``spicenet report PATH``: one self-contained HTML page per run, calibration or demo folder.

What ``PATH`` may be (detected in this order):

* a **training run directory** (has ``run.json``; layout: :mod:`spicenet.train.run`) -> kind ``"run"``. The
  surrogate file recorded in ``run.json`` is reported too when it still exists.
* a **surrogate file** ``*.h5`` (``/surrogate`` group, :mod:`spicenet.surrogate`) or a folder holding such files
  (and, optionally, run directories one level below, as ``spicenet demo`` writes per family) -> ``"calibration"``.
* a **demo output folder** (family subfolders, each with ``surrogate.h5`` and/or a run directory ``run/``)
  -> ``"demo"``: ONE page with one group of sections per family folder (its surrogate, then its run), after the
  demo's ``summary.md``. (A folder with a surrogate or run at its top level is a calibration folder; its
  subfolders' contents are then not looked at.)

Each unit gets sections (a section without data is left out):

* calibration: fit numbers (surrogate attrs), provenance, energy figures, the calibration PNGs written beside the
  file (``<stem>_*.png``: P(1) curves, coupling fits, diode I-V, ...);
* mismatch: per-parameter table (mean, std, sigma/|mu|, unit) and a derived histogram per parameter with the
  sampled distribution overlaid: normal N(mu, sigma), or for ``positive`` parameters the moment-matched log-normal
  (sigma_ln^2 = ln(1 + (sigma/mu)^2), mu_ln = ln(mu) - sigma_ln^2 / 2, as :mod:`spicenet.surrogate` samples it);
* provenance & config: ``run.json`` (versions, seed, device, surrogate sha256, dataset, git commit when recorded),
  ``config.json``;
* training: a derived small-multiples plot of every ``metrics.csv`` column against epoch, plus the run's curve PNGs;
* samples: the run's sample-grid / confusion-matrix PNGs, and a derived confusion-matrix figure + count table for
  every ``confusion_matrix`` (C[true, predicted] counts; ``CONFUSION_KEYS``) stored in metrics.json or the
  validation JSON (accuracy = trace(C) / sum(C));
* metrics: ``metrics.json`` flattened to a table (lists summarised, lists of records as their own tables);
* chips & yield: per-chip metric values found in ``metrics.json`` / the validation JSON and the derived empirical
  yield curve Y(t) = (1/N) #{chips i : m_i <= t} (lower-is-better metrics; >= for higher-is-better); a spec, its
  line on the yield plot, the yield at it and each chip's pass/fail appear only where the user set one
  (``build_report(specs=...)``, ``spicenet report --spec METRIC=VALUE``); the reference column is the nominal-chip
  value (for SPICE rows the surrogate's prediction);
* energy: the model's breakdown (:mod:`spicenet.energy` dicts: formula, terms, inputs), calibrated per-event
  energies, surrogate vs SPICE totals, SPICE power / settling numbers and per-chip SPICE energies (derived chart
  in joules: a bar chart of the totals when there are two or more, per-chip energies as points over integer chip
  indices; log axis when the values span more than a factor 20);
* surrogate vs SPICE: the validation JSON (where the run's family keeps it: ``Family.report``, a
  :class:`spicenet.families.ReportLayout`, which also names the per-chip series and energies above) as tables (gap, surrogate, spice, per-chip records) and the validation PNGs (overlays: TV/probabilities, phase
  trajectories, node voltages).

The page is self-contained: PNGs are inlined as ``data:image/png;base64`` URIs, no external CSS/JS, no script at
all; every text from the files is escaped with :func:`html.escape`. :func:`render_in_chromium` opens a page in
headless Chromium and reports how many images rendered (``naturalWidth > 0``).
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import fnmatch
import html
import io
import json
import math
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

import spicenet
from spicenet.csvtable import read_rows
from spicenet.errors import DataError, UsageError
from spicenet.families import ReportLayout
from spicenet.plotting import integer_axis, per_chip_points, subplots

__all__ = ["build_report", "yield_curve", "yield_at", "lognormal_from_moments", "confusion_counts",
           "chromium_binary", "render_in_chromium", "register"]

MAX_ROWS = 60  # rows shown per table; the rest is counted
MAX_TEXT = 300  # characters shown per table cell
KV_CHUNK = 20  # rows per side-by-side chunk of a long key/value table
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------------ numbers
def yield_curve(values: Sequence[float] | np.ndarray, higher_is_better: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Empirical yield over chips as a function of the spec threshold t.

    Y(t) = (1/N) #{i : m_i <= t} for a lower-is-better metric (FID, TV distance, error), #{i : m_i >= t} for a
    higher-is-better one (accuracy). Returns (sorted thresholds = the chip values, Y at each of them); Y is
    non-decreasing in t for lower-is-better and non-increasing for higher-is-better."""
    m = _finite_1d(values, "values")
    t = np.sort(m)
    if higher_is_better:
        y = 1.0 - np.searchsorted(t, t, side="left") / m.size
    else:
        y = np.searchsorted(t, t, side="right") / m.size
    return t, y


def yield_at(values: Sequence[float] | np.ndarray, spec: float, higher_is_better: bool = False) -> float:
    """Fraction of chips meeting ``spec``: m_i <= spec (lower is better) or m_i >= spec (higher is better)."""
    m = _finite_1d(values, "values")
    if not math.isfinite(spec):
        raise ValueError(f"spec: expected a finite number, got {spec}")
    return float(np.mean(m >= spec) if higher_is_better else np.mean(m <= spec))


def lognormal_from_moments(mean: float, std: float) -> tuple[float, float]:
    """(mu_ln, sigma_ln) of the log-normal with the given mean and standard deviation (mean > 0, std >= 0):
    sigma_ln^2 = ln(1 + (std/mean)^2), mu_ln = ln(mean) - sigma_ln^2 / 2."""
    if not (math.isfinite(mean) and mean > 0):
        raise ValueError(f"mean: a log-normal needs a finite mean > 0, got {mean}")
    if not (math.isfinite(std) and std >= 0):
        raise ValueError(f"std: expected a finite value >= 0, got {std}")
    s2 = math.log1p((std / mean) ** 2)
    return math.log(mean) - s2 / 2, math.sqrt(s2)


def _finite_1d(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    m = np.asarray(values, dtype=np.float64).ravel()
    if m.size == 0 or not np.all(np.isfinite(m)):
        raise ValueError(f"{name}: expected a non-empty list of finite numbers, got {list(m[:5])}")
    return m


# ------------------------------------------------------------------------------------------------ HTML bits
@dataclass
class Section:
    """One <section> of the page: a title and already-escaped HTML blocks; ``images`` counts its <img>."""

    title: str
    blocks: list[str] = field(default_factory=list)
    images: int = 0

    def add(self, block: str | None) -> None:
        if block:
            self.blocks.append(block)

    def figure(self, png: bytes | None, caption: str, small: bool = False) -> None:
        """Inline a PNG as a data URI with an escaped caption (skipped when ``png`` is None); ``small`` caps its
        displayed width (sample grids)."""
        if png is None:
            return
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        cap = html.escape(caption)
        cls = ' class="small"' if small else ""
        self.blocks.append(f'<figure{cls}><img src="{uri}" alt="{cap}"><figcaption>{cap}</figcaption></figure>')
        self.images += 1

    def png_file(self, path: Path, small: bool = False) -> None:
        """Inline a PNG file written by a family (captioned ``<folder>/<name>``); an unreadable one is noted."""
        caption = f"{path.parent.name}/{path.name}"
        png = _read_png(path)
        if png is None:
            self.blocks.append(_para(f"{caption}: not a readable PNG, left out"))
        self.figure(png, caption, small)


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (list, tuple)):
        return _summary(list(v))
    text = str(v)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"... ({len(text)} chars)"


def _summary(values: list[Any]) -> str:
    """A list as text: in full when short, else its length and (for numbers) min / mean / max."""
    if len(values) <= 8 and all(not isinstance(x, (dict, list)) for x in values):
        return "[" + ", ".join(_fmt(x) for x in values) + "]"
    nums = [float(x) for x in values if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)]
    if nums and len(nums) == len(values):
        return f"{len(values)} values: min {min(nums):.4g}, mean {np.mean(nums):.4g}, max {max(nums):.4g}"
    return f"{len(values)} items"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], caption: str = "") -> str:
    """An escaped HTML table; cells formatted with :func:`_fmt`; at most ``MAX_ROWS`` rows (the rest counted).
    A long two-column (key, value) table is split into side-by-side chunks of ``KV_CHUNK`` rows."""
    rows = list(rows)
    if not rows:
        return ""
    if len(header) == 2 and KV_CHUNK < len(rows) <= MAX_ROWS:
        return "".join(_table(header, rows[i: i + KV_CHUNK], caption if i == 0 else f"{caption} (cont.)")
                       for i in range(0, len(rows), KV_CHUNK))
    out = ["<table>"]
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
    for r in rows[:MAX_ROWS]:
        out.append("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>")
    if len(rows) > MAX_ROWS:
        out.append(f'<tr><td colspan="{len(header)}">... {len(rows) - MAX_ROWS} more rows</td></tr>')
    out.append("</table>")
    return "".join(out)


def _para(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def _pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def _is_record_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _is_record_dict(v: Any) -> bool:
    return (isinstance(v, dict) and len(v) >= 2 and all(isinstance(x, dict) for x in v.values())
            and all(any(_scalar(y) for y in x.values()) for x in v.values()))


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool, np.generic))


def _flatten(obj: Any, prefix: str = "") -> tuple[list[tuple[str, Any]], list[tuple[str, list[dict]]]]:
    """(key, value) rows of a nested dict (keys joined with '.'), and the record tables found in it (lists of
    dicts, or dicts whose values are all dicts) as (key, rows)."""
    flat: list[tuple[str, Any]] = []
    records: list[tuple[str, list[dict]]] = []
    if not isinstance(obj, dict):
        return [(prefix or "value", obj)], records
    for k, v in obj.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if _is_record_list(v):
            records.append((key, v))
        elif _is_record_dict(v):
            records.append((key, [{"id": name, **row} for name, row in v.items()]))
        elif isinstance(v, dict) and v:
            f, r = _flatten(v, key)
            flat += f
            records += r
        else:
            flat.append((key, v))
    return flat, records


def _json_blocks(obj: Any, caption: str) -> list[str]:
    """A nested JSON object as a key/value table plus one table per record list (scalar columns only)."""
    flat, records = _flatten(obj)
    blocks = [_table(("key", "value"), flat, caption)]
    for key, rows in records:
        cols: list[str] = []
        for r in rows:
            cols += [c for c, v in r.items() if c not in cols and _scalar(v)]
        lists = sorted({c for r in rows for c, v in r.items() if not _scalar(v)})
        cap = f"{caption}: {key} ({len(rows)} records)"
        if lists:
            cap += f"; list columns left out: {', '.join(lists)}"
        blocks.append(_table(cols, [[r.get(c) for c in cols] for r in rows], cap))
    return [b for b in blocks if b]


# ------------------------------------------------------------------------------------------------ files
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read JSON ({exc})") from None


def _read_png(path: Path) -> bytes | None:
    """The bytes of a PNG file, or None when it is not a PNG with a non-zero size (a broken image is left out)."""
    data = path.read_bytes()
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE):
        return None
    width, height = struct.unpack(">II", data[16:24])
    return data if width > 0 and height > 0 else None


def _is_surrogate(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "surrogate" in f
    except OSError:
        return False


def layout(family: str | None) -> ReportLayout:
    """Where the run of ``family`` keeps its results (``Family.report``); for a family that is not registered,
    every registered family's places together (so an old or foreign run is still shown as far as it matches)."""
    from spicenet.families import registered

    found = registered()
    if family in found:
        return found[str(family)].report
    parts = [f.report for f in found.values()]

    def union(items: Iterable[Any]) -> tuple[Any, ...]:
        return tuple(dict.fromkeys(items))

    return ReportLayout(validation_files=union(n for p in parts for n in p.validation_files),
                        chip_series=union(c for p in parts for c in p.chip_series),
                        chip_energy=union(c for p in parts for c in p.chip_energy),
                        energy_parts=union(e for p in parts for e in p.energy_parts))


def _find_validation(run: Path, where: ReportLayout) -> Path | None:
    return next((run / n for n in where.validation_files if (run / n).is_file()), None)


# ------------------------------------------------------------------------------------------------ figures

def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _grid(n: int, width: float = 3.4, height: float = 2.6) -> tuple[Any, list[Any]]:
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def plot_training_curves(rows: list[dict[str, Any]]) -> bytes | None:
    """Every numeric metrics.csv column (except epoch and wall time) against epoch, one panel each (PNG bytes)."""
    if not rows:
        return None
    keys = [k for k in rows[0] if k not in ("epoch", "elapsed_s")]
    keys += [k for r in rows for k in r if k not in keys and k not in ("epoch", "elapsed_s")]
    series = {}
    for k in keys:
        pts = [(r["epoch"], r[k]) for r in rows if isinstance(r.get(k), (int, float)) and r.get("epoch") is not None
               and math.isfinite(r[k])]
        if pts:
            series[k] = pts
    if not series:
        return None
    fig, axes = _grid(len(series))
    for ax, (k, pts) in zip(axes, series.items()):
        x, y = zip(*pts)
        ax.plot(x, y, "o-", ms=3)
        integer_axis(ax, "x")  # epochs / iterations are whole numbers
        if min(y) > 0 and max(y) / min(y) > 100:
            ax.set_yscale("log")
        ax.set(title=k, xlabel="epoch / iteration")
        ax.grid(alpha=0.3)
    return _png(fig)


def plot_param_histograms(params: dict[str, dict[str, Any]]) -> bytes | None:
    """Histogram (density) of each surrogate parameter's fitted values over chips (and cells), with the mismatch
    distribution the surrogate samples overlaid: N(mean, std), or the moment-matched log-normal when positive."""
    from matplotlib.ticker import MaxNLocator
    from scipy import stats

    items = [(k, p) for k, p in params.items() if np.asarray(p["values"]).size >= 2]
    if not items:
        return None
    fig, axes = _grid(len(items))
    for ax, (name, p) in zip(axes, items):
        v = np.asarray(p["values"], dtype=np.float64).ravel()
        mean, std = float(p["mean"]), float(p["std"])
        ax.hist(v, bins=max(3, min(20, v.size // 2)), density=True, alpha=0.6, label=f"fit values (n={v.size})")
        if std > 0:
            lo, hi = min(v.min(), mean - 4 * std), max(v.max(), mean + 4 * std)
            if p["positive"] and mean > 0:
                mu, s = lognormal_from_moments(mean, std)
                x = np.linspace(max(lo, 1e-30 * mean), hi, 300)
                ax.plot(x, stats.lognorm.pdf(x, s, scale=math.exp(mu)), "k-", lw=1, label="log-normal (sampled)")
            else:
                x = np.linspace(lo, hi, 300)
                ax.plot(x, stats.norm.pdf(x, mean, std), "k-", lw=1, label="normal (sampled)")
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.ticklabel_format(axis="both", style="sci", scilimits=(-2, 3))
        unit = f" [{p['unit']}]" if p["unit"] else ""
        ax.set(title=f"{name}: sigma/|mu| = {std / abs(mean):.3g}" if mean else name, xlabel=f"{name}{unit}",
               ylabel="density")
        ax.legend(fontsize=7)
    return _png(fig)


@dataclass
class ChipSeries:
    """Per-chip values of one metric with its direction, nominal-chip value and spec (None when unknown);
    ``source`` says where the values were found, ``names`` labels the chips (ids or indices)."""

    label: str
    values: np.ndarray
    higher_is_better: bool
    nominal: float | None = None
    spec: float | None = None
    source: str = ""
    names: list[str] = field(default_factory=list)

    @property
    def yield_at_spec(self) -> float | None:
        return None if self.spec is None else yield_at(self.values, self.spec, self.higher_is_better)


def _range_scale(ax: Any, axis: str, values: Sequence[float]) -> None:
    """Log scale when the positive values span more than a factor 20, else linear with a shared exponent."""
    v = [x for x in values if x > 0]
    if v and max(v) / min(v) > 20:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    else:
        ax.ticklabel_format(axis=axis, style="sci", scilimits=(-2, 3), useOffset=False)


def plot_yield(series: list[ChipSeries]) -> bytes | None:
    """Empirical yield Y(t) over chips against the spec threshold t, one panel per metric, spec marked."""
    import textwrap

    if not series:
        return None
    fig, axes = _grid(len(series), 3.8, 2.9)
    for ax, s in zip(axes, series):
        t, y = yield_curve(s.values, s.higher_is_better)
        lo, hi = min(t.min(), s.spec if s.spec is not None else t.min()), max(t.max(), s.spec or t.max())
        pad = 0.05 * (hi - lo) or 0.05 * abs(hi) or 0.05
        if s.higher_is_better:  # Y(t) = fraction >= t: 1 left of the best... 0 right of the best chip
            ax.step([lo - pad, *t, hi + pad], [1.0, *y, 0.0], where="pre", label="yield")
        else:
            ax.step([lo - pad, *t, hi + pad], [0.0, *y, 1.0], where="post", label="yield")
        ax.plot(s.values, np.full(s.values.size, -0.04), "|", ms=10, color="C1", label="chips")
        if s.spec is not None:
            ax.axvline(s.spec, color="k", ls="--", lw=1, label=f"spec {s.spec:.4g}: Y = {s.yield_at_spec:.2f}")
        ax.set(xlabel=("metric >= t" if s.higher_is_better else "metric <= t") + "  (threshold t)",
               ylabel="yield", ylim=(-0.1, 1.05))
        ax.set_title(textwrap.fill(s.label, 45), fontsize=8)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3), useOffset=False)
        ax.legend(fontsize=7)
    return _png(fig)


def confusion_counts(matrix: Any) -> np.ndarray:
    """A confusion matrix C[true, predicted] of non-negative counts (K x K, K >= 2) as an int array."""
    c = np.asarray(matrix, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] < 2:
        raise ValueError(f"confusion_matrix: expected a square K x K table (K >= 2), got shape {c.shape}")
    if not np.all(np.isfinite(c)) or c.min() < 0 or not np.all(c == np.round(c)) or c.sum() == 0:
        raise ValueError("confusion_matrix: expected non-negative integer counts with a positive total")
    return c.astype(np.int64)


def plot_confusion(counts: np.ndarray, title: str) -> bytes:
    """Confusion matrix C[true, predicted] as an image of row-normalised rates with the counts written in;
    accuracy = trace(C) / sum(C)."""
    k = counts.shape[0]
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, ax = subplots(figsize=(1.2 + 0.45 * k, 1.0 + 0.42 * k))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if k <= 12:
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"{title}: accuracy {np.trace(counts) / counts.sum():.3f}")
    ax.title.set_fontsize(8)
    fig.colorbar(im, ax=ax, fraction=0.046, label="rate per true class")
    return _png(fig)


def plot_energy(bars: dict[str, float], per_chip: dict[str, list[float]]) -> bytes | None:
    """Energy breakdown (model terms, surrogate and SPICE totals; J) as bars, drawn only when there are two or
    more (a single total is a number, it stays in the table), and per-chip SPICE energies (J) as points over
    integer chip indices, one legend entry per series."""
    bars = {k: v for k, v in bars.items() if isinstance(v, (int, float)) and math.isfinite(v) and v > 0}
    if len(bars) < 2:
        bars = {}
    per_chip = {k: [float(x) for x in v if isinstance(x, (int, float)) and x > 0] for k, v in per_chip.items()}
    per_chip = {k: v for k, v in per_chip.items() if v}
    if not bars and not per_chip:
        return None
    n = int(bool(bars)) + int(bool(per_chip))
    fig, axes = subplots(1, n, figsize=(6.0 * n, 0.8 + 0.4 * max(4, len(bars))), squeeze=False)
    axes = list(axes.ravel())
    if bars:
        ax = axes.pop(0)
        names = list(bars)
        ax.barh(range(len(names)), [bars[k] for k in names], color=[f"C{i % 10}" for i in range(len(names))])
        ax.set_yticks(range(len(names)), names, fontsize=7)
        _range_scale(ax, "x", list(bars.values()))
        ax.invert_yaxis()
        ax.set(xlabel="energy [J]", title="energy breakdown / totals")
    if per_chip:
        ax = axes.pop(0)
        per_chip_points(ax, {k: (range(len(v)), v) for k, v in per_chip.items()}, xlabel="chip / run",
                        ylabel="energy [J]", legend=True)
        _range_scale(ax, "y", [x for v in per_chip.values() for x in v])
        ax.set(title="SPICE energy per chip")
    return _png(fig)


# ------------------------------------------------------------------------------------------------ extraction
def _pluck(obj: Any, path: str) -> Any:
    """Value at a dotted path; ``[]`` maps over a list, ``*`` over a dict's values, other parts may be glob
    patterns on keys (first match in sorted order). None when any step is missing."""
    def walk(o: Any, parts: list[str]) -> Any:
        if not parts:
            return o
        head, rest = parts[0], parts[1:]
        if head in ("[]", "*"):
            items = o if head == "[]" and isinstance(o, list) else (
                list(o.values()) if head == "*" and isinstance(o, dict) else None)
            if not items:
                return None
            out = [walk(x, rest) for x in items]
            return None if any(x is None for x in out) else out
        if not isinstance(o, dict):
            return None
        key = head if head in o else next((k for k in sorted(o) if fnmatch.fnmatchcase(str(k), head)), None)
        return None if key is None else walk(o[key], rest)

    return walk(obj, path.split("."))


# confusion matrices C[true, predicted] (counts) a classifier run may store in metrics.json or its validation JSON
CONFUSION_KEYS: tuple[str, ...] = ("confusion_matrix", "surrogate.confusion_matrix", "spice.confusion_matrix")

def _chip_names(obj: Any, path: str, n: int) -> list[str]:
    """Labels of the chips behind a per-chip path: dict keys for ``*``, the records' ``chip`` field for ``[]``,
    else 0..n-1."""
    parts = path.split(".")
    for marker in ("*", "[]"):
        if marker in parts:
            container = _pluck(obj, ".".join(parts[: parts.index(marker)])) if parts.index(marker) else obj
            if marker == "*" and isinstance(container, dict) and len(container) == n:
                return [str(k) for k in container]
            if marker == "[]" and isinstance(container, list) and len(container) == n and all(
                    isinstance(r, dict) and "chip" in r for r in container):
                return [str(r["chip"]) for r in container]
    return [str(i) for i in range(n)]


def chip_series(metrics: dict[str, Any], validation: dict[str, Any],
                specs: dict[str, float] | None = None, where: ReportLayout | None = None) -> list[ChipSeries]:
    """The per-chip metric series found in a run's metrics and validation JSON at the places of ``where`` (the
    run family's ``ReportLayout.chip_series``; None: every registered family's, :func:`layout`). A series
    has a spec only where one was set: ``specs`` keyed by the series' path (e.g. ``"chips.fid_values"``) or its
    label, or a goal recorded in the JSON; no spec is made up from the nominal value."""
    sources = {"metrics": metrics or {}, "validation": validation or {}}
    specs = specs or {}
    out = []
    for src, path, label, higher, nominal_path, goal_path in (where or layout(None)).chip_series:
        vals = _pluck(sources[src], path)
        if not isinstance(vals, list) or not vals:
            continue
        try:
            v = _finite_1d(vals, path)
        except (TypeError, ValueError):
            continue
        nominal = _pluck(sources[src], nominal_path) if nominal_path else None
        nominal = float(nominal) if isinstance(nominal, (int, float)) and math.isfinite(nominal) else None
        goal = specs.get(path, specs.get(label))
        if goal is None and goal_path:
            goal = _pluck(sources[src], goal_path)
        spec = float(goal) if isinstance(goal, (int, float)) and math.isfinite(goal) else None
        out.append(ChipSeries(label, v, higher, nominal, spec, f"{src}: {path}",
                              _chip_names(sources[src], path, v.size)))
    return out


def _energy_context(validation: dict[str, Any]) -> list[tuple[str, Any]]:
    """Scalar power / settle-time / energy-assumption entries of a validation JSON (top level and its
    surrogate/spice/gap parts), e.g. ``power_w``, ``settle_time_s``, ``settle_assumption``."""
    rows = []
    for prefix, part in (("", validation), *((f"{k}.", validation.get(k)) for k in ("surrogate", "spice", "gap"))):
        if isinstance(part, dict):
            rows += [(f"{prefix}{k}", v) for k, v in part.items() if _scalar(v) and not str(k).startswith("energy")
                     and any(w in str(k) for w in ("power", "settle", "energy"))]
    return rows


def _energy_numbers(obj: Any, prefix: str) -> dict[str, float]:
    """Scalar energies (keys starting with 'energy' and ending '_j') at the top level of a dict."""
    if not isinstance(obj, dict):
        return {}
    return {f"{prefix}{k}": float(v) for k, v in obj.items() if str(k).startswith("energy") and str(k).endswith("_j")
            and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


# ------------------------------------------------------------------------------------------------ sections
def _load_surrogate(path: Path) -> Any:
    from spicenet.surrogate import SurrogateFile

    return SurrogateFile.load(path)


def surrogate_sections(path: Path, label: str) -> list[Section]:
    """Calibration and mismatch sections for one surrogate file."""
    from spicenet.energy import format_energy

    sf = _load_surrogate(path)
    cal = Section(f"{label}: calibration ({sf.family})")
    cal.add(_para(f"surrogate file {path} (family {sf.family}, process {sf.process}, created {sf.created}, "
                  f"spicenet {sf.spicenet_version})"))
    cal.add(_table(("fit attribute", "value"), sorted(sf.attrs.items()), "fit numbers and cell description"))
    if sf.energy:
        cal.add(_table(("calibrated energy", "J", "readable"),
                       [(k, v, format_energy(v)) for k, v in sorted(sf.energy.items())], "energy per event"))
    prov = {k: v for k, v in sf.provenance.items() if k != "config"}
    cal.add(_table(("provenance", "value"), sorted(prov.items()), "provenance"))
    config = sf.provenance.get("config")
    if isinstance(config, dict) and config:
        cal.blocks += _json_blocks(config, "calibration config")
    for png in sorted(path.parent.glob(f"{path.stem}_*.png")):
        cal.png_file(png)
    mm = Section(f"{label}: mismatch ({sf.family})")
    rows = []
    params = {}
    for name, p in sf.params.items():
        rel = p.std / abs(p.mean) if p.mean else float("nan")
        rows.append((name, p.unit, p.mean, p.std, rel, p.std_global, p.positive, "x".join(map(str, p.values.shape)),
                     p.description))
        params[name] = {"values": p.values, "mean": p.mean, "std": p.std, "positive": p.positive, "unit": p.unit}
    mm.add(_table(("parameter", "unit", "mean", "std", "std/|mean|", "std_global", "log-normal", "shape",
                   "description"), rows, "fitted parameters and their mismatch distribution"))
    if sf.correlation is not None:
        names = sf.correlation_names
        mm.add(_table(["", *names], [[n, *row] for n, row in zip(names, np.asarray(sf.correlation).tolist())],
                      "mismatch correlation matrix"))
    mm.figure(plot_param_histograms(params), "derived: fitted values over Monte-Carlo chips with the sampled "
                                             "mismatch distribution")
    return [s for s in (cal, mm) if s.blocks]


def _run_pngs(run: Path) -> dict[str, list[Path]]:
    """The run's PNGs by kind: validation overlays, sample grids / confusion matrices, training curves."""
    out: dict[str, list[Path]] = {"validation": [], "samples": [], "curves": []}
    for p in sorted(run.glob("validation/*.png")):
        out["validation"].append(p)
    for p in sorted(run.glob("plots/*.png")):
        n = p.name.lower()
        kind = ("validation" if n.startswith("validat") else
                "samples" if n.startswith(("samples", "data", "confusion")) else "curves")
        out[kind].append(p)
    return out


def _provenance_section(run: Path, label: str, meta: dict[str, Any]) -> Section:
    """run.json (versions, seed, device, dataset, surrogate hash, git commit when recorded) and config.json."""
    prov = Section(f"{label}: provenance and config ({meta.get('family', '?')}, {meta.get('trainer', '?')})")
    commit = {k: v for k, v in meta.items() if "commit" in k or "git" in k}
    prov.add(_para(f"run directory {run}; git commit: "
                   f"{json.dumps(commit) if commit else 'not recorded in run.json'}"))
    surrogate = meta.get("surrogate")
    if surrogate and Path(surrogate).is_file():
        from spicenet.surrogate import file_sha256

        same = file_sha256(surrogate) == meta.get("surrogate_sha256")
        prov.add(_para(f"surrogate {surrogate}: sha256 {'matches' if same else 'DIFFERS from'} the one trained on"))
    prov.blocks += _json_blocks(meta, "run.json")
    if (run / "config.json").is_file():
        prov.blocks += _json_blocks(_read_json(run / "config.json"), "config.json (training config used)")
    return prov


def _training_sections(run: Path, label: str, pngs: dict[str, list[Path]],
                       sources: dict[str, dict[str, Any]]) -> list[Section]:
    """Derived metrics.csv curves, the last rows of metrics.csv, the run's curve PNGs; the sample-grid PNGs and
    the confusion matrices stored in ``sources`` (metrics / validation JSON, keys ``CONFUSION_KEYS``)."""
    train = Section(f"{label}: training")
    rows = read_rows(run / "metrics.csv")
    train.figure(plot_training_curves(rows), "derived: every metrics.csv column against epoch")
    if rows:
        train.add(_table(list(rows[-1]), [[r.get(k) for k in rows[-1]] for r in rows[-5:]],
                         f"metrics.csv: last {min(5, len(rows))} of {len(rows)} rows"))
    for p in pngs["curves"]:
        train.png_file(p)
    samples = Section(f"{label}: samples")
    for p in pngs["samples"]:
        samples.png_file(p, small=True)
    for src, obj in sources.items():
        for path in CONFUSION_KEYS:
            table = _pluck(obj, path)
            if table is None:
                continue
            try:
                counts = confusion_counts(table)
            except ValueError as exc:
                samples.add(_para(f"{src} {path}: {exc}"))
                continue
            samples.add(_table(["true \\ predicted", *range(counts.shape[0])],
                               [[i, *row] for i, row in enumerate(counts.tolist())], f"{src}: {path} (counts)"))
            samples.figure(plot_confusion(counts, f"{src}: {path}"), f"derived: confusion matrix ({src}: {path})")
    return [train, samples]


def _chips_section(label: str, metrics: dict[str, Any], validation: dict[str, Any],
                   specs: dict[str, float] | None, where: ReportLayout) -> Section:
    """Per-chip metric summary, per-chip tables with pass/fail at the spec (where one was set), and the derived
    yield curves."""
    chips = Section(f"{label}: chips and yield")
    series = chip_series(metrics, validation, specs, where)
    chips.add(_table(("metric", "source", "chips", "reference", "mean", "best", "worst", "spec", "yield at spec"), [
        (s.label, s.source, s.values.size, s.nominal, float(s.values.mean()),
         float(s.values.max() if s.higher_is_better else s.values.min()),
         float(s.values.min() if s.higher_is_better else s.values.max()), s.spec, s.yield_at_spec) for s in series],
        "per-chip metrics; reference = nominal chip (SPICE rows: the surrogate's prediction); spec = the one set "
        "with --spec (none set: None)"))
    for s in series:
        if s.spec is None:
            chips.add(_table(("chip", "value"), [(name, float(v)) for name, v in zip(s.names, s.values)], s.label))
        else:
            chips.add(_table(("chip", "value", "meets spec"), [
                (name, float(v), bool(v >= s.spec if s.higher_is_better else v <= s.spec))
                for name, v in zip(s.names, s.values)], f"{s.label} (spec {s.spec:g}, set by the user)"))
    chips.figure(plot_yield(series), "derived: yield over chips against the spec threshold")
    return chips


def _energy_section(label: str, metrics: dict[str, Any], validation: dict[str, Any], where: ReportLayout
                    ) -> Section:
    """The model's energy breakdown (metrics.json ``energy``), model / surrogate / SPICE totals, the SPICE power
    and settling numbers behind them, and the derived breakdown + per-chip chart."""
    from spicenet.energy import format_energy

    energy = Section(f"{label}: energy")
    breakdown = metrics.get("energy") if isinstance(metrics.get("energy"), dict) else None
    bars: dict[str, float] = {}
    if breakdown:
        energy.add(_para(f"model: {breakdown.get('formula', '')} = {breakdown.get('energy', '')}"))
        terms = {k: float(v) for k, v in breakdown.get("terms", {}).items() if isinstance(v, (int, float))}
        energy.add(_table(("term", "J", "readable"), [(k, v, format_energy(v)) for k, v in terms.items()],
                          "model energy breakdown (metrics.json)"))
        energy.add(_table(("input", "value"), list(breakdown.get("inputs", {}).items()), "breakdown inputs"))
        bars.update({f"term: {k}": v for k, v in terms.items()})
    bars.update(_energy_numbers(metrics, "metrics: "))
    for part, prefix in where.energy_parts:  # the parts of the family's validation JSON holding energies
        bars.update(_energy_numbers(validation.get(part) if part else validation, prefix))
    energy.add(_table(("quantity", "J", "readable"), [(k, v, format_energy(v)) for k, v in bars.items()],
                      "energy totals (model, surrogate, SPICE)"))
    energy.add(_table(("quantity", "value"), _energy_context(validation), "SPICE power / settling behind the totals"))
    per_chip = {name: v for path, name in where.chip_energy if isinstance(v := _pluck(validation, path), list)}
    energy.figure(plot_energy(bars, per_chip), "derived: energy breakdown and per-chip SPICE energy. 'term'/"
                  "'metrics' bars are per output of the trained model; 'validation' bars are per output of the "
                  "exported SPICE circuit, which may be a smaller machine than the trained one (see the validation "
                  "tables): compare within a group")
    return energy


def _validation_section(run: Path, label: str, vpath: Path | None, validation: dict[str, Any],
                        pngs: list[Path]) -> Section:
    """The validation JSON as tables (gap, surrogate, spice, the rest, record lists) and the overlay PNGs."""
    val = Section(f"{label}: surrogate vs SPICE")
    if validation:
        val.add(_para(f"validation file {vpath}"))
        for part in ("gap", "surrogate", "spice"):
            if isinstance(validation.get(part), dict):
                val.blocks += _json_blocks(validation[part], part)
        rest = {k: v for k, v in validation.items() if k not in ("gap", "surrogate", "spice")}
        val.blocks += _json_blocks(rest, "validation (other)")
    else:
        val.add(_para(f"not validated yet: run `spicenet validate {run}`"))
    for p in pngs:
        val.png_file(p)
    return val


def run_sections(run: Path, label: str, specs: dict[str, float] | None = None) -> list[Section]:
    """Provenance, training, samples, metrics, chips & yield, energy and surrogate-vs-SPICE sections of a run
    (sections without content are left out); ``specs``: per-chip metric specs (see :func:`chip_series`)."""
    meta = _read_json(run / "run.json")
    where = layout(meta.get("family") if isinstance(meta, dict) else None)
    metrics = _read_json(run / "metrics.json") if (run / "metrics.json").is_file() else {}
    vpath = _find_validation(run, where)
    validation = _read_json(vpath) if vpath else {}
    if not isinstance(metrics, dict) or not isinstance(validation, dict) or not isinstance(meta, dict):
        raise DataError(f"{run}: run.json, metrics.json and the validation JSON must each hold a JSON object")
    pngs = _run_pngs(run)
    sections = [_provenance_section(run, label, meta),
                *_training_sections(run, label, pngs, {"metrics.json": metrics, "validation": validation})]
    if metrics:
        sections.append(Section(f"{label}: metrics", _json_blocks(
            {k: v for k, v in metrics.items() if k != "energy"}, "metrics.json")))
    sections += [_chips_section(label, metrics, validation, specs, where),
                 _energy_section(label, metrics, validation, where),
                 _validation_section(run, label, vpath, validation, pngs["validation"])]
    return [s for s in sections if s.blocks]


# ------------------------------------------------------------------------------------------------ page
@dataclass
class _Plan:
    """What a page reports: its kind, the units in page order as (what, path, label), notes shown first."""

    kind: str
    units: list[tuple[str, Path, str]]
    notes: list[Path]


def _units(folder: Path, label: str) -> list[tuple[str, Path, str]]:
    """Surrogate files in ``folder`` then run directories one level below it."""
    sur = [("surrogate", h5, f"{label}{h5.stem}") for h5 in sorted(folder.glob("*.h5")) if _is_surrogate(h5)]
    runs = [("run", d, f"{label}{d.name}") for d in sorted(folder.iterdir()) if (d / "run.json").is_file()]
    return sur + runs


def _plan(path: Path) -> _Plan:
    """Detect what ``path`` is (module docstring) and list the units to report, grouped per folder."""
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_file():
        if path.suffix.lower() in (".h5", ".hdf5") and _is_surrogate(path):
            return _Plan("calibration", [("surrogate", path, path.stem)], [])
        raise DataError(f"{path}: not a run directory, a folder or a surrogate .h5 file")
    if (path / "run.json").is_file():
        return _Plan("run", [("run", path, path.name)], [])
    units = _units(path, "")
    if units:
        return _Plan("calibration", units, [])
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        units += _units(sub, f"{sub.name}/")
    if units:
        return _Plan("demo", units, [p for p in (path / "summary.md",) if p.is_file()])
    raise DataError(f"{path}: nothing to report (no run.json, no surrogate *.h5 here or one folder below)")


def _with_run_surrogates(units: list[tuple[str, Path, str]]) -> list[tuple[str, Path, str]]:
    """Insert, before each run, the surrogate file it trained on (from run.json) unless the page has it already."""
    known = {p.resolve() for what, p, _ in units if what == "surrogate"}
    out = []
    for what, p, label in units:
        if what == "run":
            m = _read_json(p / "run.json").get("surrogate")
            if m and Path(m).is_file() and Path(m).resolve() not in known:
                known.add(Path(m).resolve())
                out.append(("surrogate", Path(m), f"{Path(m).parent.name}/{Path(m).stem} (used by {label})"))
        out.append((what, p, label))
    return out


_CSS = """
body{font-family:sans-serif;margin:1.5em auto;max-width:1400px;padding:0 1em;color:#222;line-height:1.35}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #999;margin-top:2em}
table{display:inline-table;vertical-align:top;border-collapse:collapse;margin:.6em 1.2em .6em 0;font-size:.8em}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}th{background:#eee}
caption{text-align:left;font-weight:bold;padding:2px 0;max-width:40em}
figure{display:inline-block;vertical-align:top;margin:.8em 1em .8em 0;max-width:100%}
img{max-width:100%;border:1px solid #ddd}figure.small{max-width:420px}figcaption{font-size:.8em;color:#555}
pre{background:#f6f6f6;padding:.5em;overflow-x:auto;font-size:.8em}nav ol{columns:2;font-size:.9em}
"""


def _page(title: str, header: list[str], sections: list[Section]) -> str:
    nav = "".join(f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>' for i, s in enumerate(sections))
    body = "".join(f'<section id="s{i}"><h2>{html.escape(s.title)}</h2>{"".join(s.blocks)}</section>'
                   for i, s in enumerate(sections))
    head = "".join(header)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{head}<nav><ol>{nav}</ol></nav>"
            f"{body}</body></html>\n")


def build_report(path: Path, output: Path | None = None, *, progress: bool = True,
                 specs: dict[str, float] | None = None) -> dict[str, Any]:
    """Write the HTML report of ``path`` (run directory, surrogate file / calibration folder, or demo folder; see
    the module docstring) to ``output`` (default ``<path>/report.html``, or ``<stem>_report.html`` beside a
    surrogate file). Returns ``{"report", "sections" (titles), "images" (inlined PNGs), "kind"}``.

    ``specs``: per-chip metric specs set by the user, keyed by the series' path or label (:func:`chip_series`);
    without them no spec line, yield-at-spec or pass/fail is shown.

    Raises DataError (one line, naming the path) for a path that does not exist or holds nothing reportable."""
    from spicenet.progress import progress_iter

    path = Path(path)
    plan = _plan(path)
    if output is None:
        output = path.with_name(f"{path.stem}_report.html") if path.is_file() else path / "report.html"
    output = Path(output)
    if output.exists() and output.is_dir():
        raise DataError(f"{output}: output is a directory, expected an .html file path")
    todo = _with_run_surrogates(plan.units)
    sections: list[Section] = []
    for note in plan.notes:
        sections.append(Section(f"demo summary ({note.name})", [_pre(note.read_text())]))
    for what, p, lab in progress_iter(todo, desc="report", enabled=progress):
        sections += surrogate_sections(p, lab) if what == "surrogate" else run_sections(p, lab, specs)
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    header = [_para(f"{plan.kind} report of {path.resolve()}; generated {created} by spicenet "
                    f"{spicenet.__version__}; {sum(s.images for s in sections)} figures")]
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(_page(f"spicenet {plan.kind} report: {path.name}", header, sections), encoding="utf-8")
    tmp.replace(output)
    return {"report": str(output), "sections": [s.title for s in sections],
            "images": sum(s.images for s in sections), "kind": plan.kind}


# ------------------------------------------------------------------------------------------------ chromium
_CHECK_ID = "spicenet-image-check"
_CHECK_SCRIPT = (
    "<pre id=\"" + _CHECK_ID + "\">pending</pre><script>(function(){var errs=[];"
    "window.addEventListener('error',function(e){errs.push(String(e.message||(e.target&&e.target.tagName)||e));},true);"
    "window.addEventListener('load',function(){var im=document.images,b=0,w=[];"
    "for(var i=0;i<im.length;i++){w.push(im[i].naturalWidth);if(!im[i].complete||im[i].naturalWidth===0)b++;}"
    "document.getElementById('" + _CHECK_ID + "').textContent=JSON.stringify({images:im.length,broken:b,"
    "widths:w,errors:errs});});})();</script>"
)


def chromium_binary() -> str:
    """Path of a Chromium/Chrome executable; DataError when none is installed."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    raise DataError("chromium not found on PATH (install the Debian package `chromium`)")


def render_in_chromium(html_path: Path, screenshot: Path | None = None, *, timeout_s: float = 120,
                       window: tuple[int, int] = (1280, 2400)) -> dict[str, Any]:
    """Open ``html_path`` in headless Chromium (a copy with a small checking script appended; the report itself
    has no script) and return ``{"returncode", "images", "broken", "widths", "errors"}``: the number of <img>,
    how many did not decode (``naturalWidth == 0``), their natural widths and the page's error events.
    With ``screenshot`` also writes a PNG of the top ``window`` (width, height) pixels of the original page."""
    html_path = Path(html_path)
    if not html_path.is_file():
        raise DataError(f"{html_path}: no such report file")
    if window[0] <= 0 or window[1] <= 0:
        raise ValueError(f"window: expected positive (width, height), got {window}")
    exe = chromium_binary()
    text = html_path.read_text(encoding="utf-8")
    cut = text.rfind("</body>")
    probe = (text[:cut] + _CHECK_SCRIPT + text[cut:]) if cut >= 0 else text + _CHECK_SCRIPT
    with tempfile.TemporaryDirectory(prefix="spicenet-chromium-") as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(probe, encoding="utf-8")
        base = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp}/profile", "--virtual-time-budget=10000"]
        try:
            proc = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise DataError(f"{html_path}: chromium did not finish within {timeout_s} s") from None
        result: dict[str, Any] = {"returncode": proc.returncode, "images": None, "broken": None, "widths": [],
                                  "errors": []}
        start = proc.stdout.find(f'id="{_CHECK_ID}">')
        if start >= 0:
            body = proc.stdout[start + len(_CHECK_ID) + 6:]
            body = html.unescape(body[: body.find("</pre>")])
            try:
                result.update(json.loads(body))
            except json.JSONDecodeError:
                result["errors"].append(f"check script did not run: {body[:100]!r}")
        else:
            result["errors"].append("no check element in the dumped DOM")
        if screenshot is not None:
            shot = Path(screenshot).resolve()
            s = subprocess.run([*base, f"--screenshot={shot}", f"--window-size={window[0]},{window[1]}",
                                "--hide-scrollbars", html_path.resolve().as_uri()], capture_output=True, text=True,
                               timeout=timeout_s)
            result["screenshot"] = str(shot) if s.returncode == 0 and shot.is_file() else None
    return result


# ------------------------------------------------------------------------------------------------ CLI
def parse_specs(items: Sequence[str] | None) -> dict[str, float]:
    """``--spec METRIC=VALUE`` items as ``{METRIC: VALUE}`` (UsageError, one line, for a malformed item)."""
    out: dict[str, float] = {}
    for item in items or ():
        name, sep, value = item.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or not name.strip() or not math.isfinite(number):
            raise UsageError(f"--spec {item!r}: expected METRIC=NUMBER (METRIC: a per-chip path such as "
                             "chips.fid_values or a row label of the chips table)")
        out[name.strip()] = number
    return out


def _handler(args: argparse.Namespace) -> dict[str, Any]:
    return build_report(Path(args.run_dir), Path(args.output) if args.output else None,
                        specs=parse_specs(getattr(args, "spec", None)))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` verb: ``spicenet report RUN_DIR [-o report.html]``."""
    p = subparsers.add_parser("report", help="one self-contained HTML page (plots + tables) for a run, a "
                                             "calibration or a demo folder")
    p.add_argument("run_dir", help="training run directory, surrogate .h5 (or its folder), or demo output folder")
    p.add_argument("-o", "--output", default=None, help="HTML file (default: <run_dir>/report.html)")
    p.add_argument("--spec", action="append", metavar="METRIC=VALUE",
                   help="a spec for a per-chip metric (repeatable; e.g. chips.fid_values=11): its line on the yield "
                        "plot, yield at spec and per-chip pass/fail; none are shown without one")
    p.set_defaults(handler=_handler)
