"""Netlist generators for the continuous-time subthreshold p-bit (multi-cell decks) and its seeded noise files.

The cell (one per "chip" in a calibration). Its SPICE text is the shipped template ``netlists/rng/ct_cell.cir``:
:func:`ct_deck` renders that file's lines with the sizing and copies them once per cell, each name and local node
suffixed with the cell index (``spicenet.spice.fragments``), the supply ``vdd`` shared::

    vdd --[vma k]-- pa_k      pb_k --[vmb k]-- vdd        (0 V sense sources: per-inverter supply current)
    xpa_k: pfet a_k <- b_k (source pa_k)    xpb_k: pfet b_k <- a_k (source pb_k)
    xna_k: nfet a_k <- b_k (source sa_k)    xnb_k: nfet b_k <- a_k (source sb_k)
    sa_k = +vb_k / 2,  sb_k = -vb_k / 2       (differential bias: ideal VCVS from the bias source vb_k)
    na_k: XSPICE filesource -> noise currents into a_k and b_k (one file per cell, 3 columns: t, i_a, i_b)

Two cross-coupled inverters at a supply of a few thermal voltages: the loop gain crosses 1 (DC hysteresis
appears) at Vdd = 42.9 mV for the default sizes on the generic card (dvtn/dvtp = -/+0.25 V, ~20 nA per inverter).
The calibrated operating point, 40 mV, sits just below that threshold: the potential of x = v(a) - v(b) is
flat-topped, and the injected shot noise makes x wander between its two shoulders (a soft random telegraph; the bit
stream's autocorrelation is a fast drop from chatter near x = 0 plus an exponential tail, tau 15-75 ns over
mismatch chips). Above 43 mV the two wells are real but tau grows to 0.2-1.3 us (10x the simulation cost).
Raising vb lifts inverter A's nMOS source, weakening the pull-down of node a: P(x > 0) grows with vb, measured as
a logistic sigmoid((vb - V0) / Vs) (Vs ~ 0.21 mV, r2 >= 0.998). The differential bias keeps the loop gain fixed
across mismatch chips. Measured convergence in the noise step: dt = 1 ns and 0.5 ns give the same P(1) (0.7455
vs 0.7365 +- 0.009) and tau (38.7 vs 38.8 ns) at vb = 0.22 mV.

sky130 (nfet/pfet_01v8, ~89 mV/dec, n ~ 1.5, plus DIBL): a subthreshold inverter's gain at its trip point is
~ 1 / (n / (exp(Vdd / 2 V_T) - 1) + eta), so the loop reaches gain 1 at a higher supply than on the generic card;
it also needs the two inverters balanced (trip point = Vdd / 2: the gain falls fast off-centre). Measured with
wn = wp = 2 um, l = 0.15 um, dvtn = -0.5 V, dvtp = +0.565 V (balanced at 64 mV; ~50 nA per inverter): gain 1 at
Vdd ~ 63.5 mV (nominal), DC hysteresis from 64-67 mV over PDK-mismatch chips; operated at 62 mV (tau 20-100 ns,
Vs 0.14-0.21 mV). At 1 um widths the PDK mismatch (V0 std ~20 mV) unbalanced some chips' inverters so far that
their loop lost the transition; 2 um halves that. The sky130 mismatch is the PDK's own statistical model
(``mismatch="pdk"``, :func:`chip_setup`); the shifts (``alter ... delvto``) reach the PDK devices as on generic.

Low-Vt devices: ngspice 39's transient has no device noise and nominal-Vth devices at 40 mV carry pA, so the cell
uses threshold shifts ``dvtn`` (nMOS, negative) and ``dvtp`` (pMOS, positive: a less negative Vth) pushed as
``alter m.<x>.m0 delvto=...`` together with each chip's Pelgrom mismatch (see :func:`device_commands`); ``alter``
values are lost on ``reset``, which the noise decks never issue.

Noise (ngspice has none in ``.tran``): shot noise of the two transistors on each node, sized from the operating
point (:func:`shot_noise_psd`): S_i = 2 q sum_j I_j coth(V_ds,j / (2 V_T)) [A^2/Hz], the full (forward minus
reverse) subthreshold shot noise; as white noise sampled every dt it has rms sqrt(S / (2 dt)) [A]
(:func:`noise_rms`). The samples come from ``numpy.random.default_rng(SeedSequence([seed, chip, cell]))`` and are
written one file per cell (XSPICE ``filesource`` misreads rows wider than ~36 columns); the filesource's
``amplscale`` of 0 gives the noise-off control on the same deck.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from spicenet.config import setting
from spicenet.spice import mismatch
from spicenet.spice.fragments import element_lines, rename, with_value
from spicenet.spice.process import check_geometry
from spicenet.spice.templates import Template, load_template

Q_E = 1.602176634e-19   # C
K_B = 1.380649e-23      # J/K

_SAFE_PATH = re.compile(r'^[^"\n\r;]+$')

Bias = float | Sequence[tuple[float, float]]


CELL_VDD_RANGE_V = (0.01, 0.5)
"""Supply [V] of the subthreshold cell that the generator and ``netlists/rng/ct_cell.cir`` accept."""
CELL_BIAS_RANGE_V = (-0.5, 0.5)
"""Differential bias vb [V] of a cell (DC or every PWL point) that the generator and the template accept."""
CELL_VT_SHIFT_RANGE_V = (-0.8, 0.8)
"""Low-Vt threshold shifts dvtn / dvtp [V] that :class:`CellSizing` and the template's header accept."""

CELL_TEMPLATE = "rng/ct_cell"
"""The template whose lines are the cell (all but its TRRANDOM noise sources, :data:`TEMPLATE_NOISE`)."""
SHARED_NAMES = frozenset({"0", "vdd"})
"""Names of the template that all cells of a deck share (ground, the supply source and node); every other
element name and node ``x`` of the template becomes ``x<k>`` in cell k."""
TEMPLATE_NOISE = ("ina", "inb")
"""The template's TRRANDOM noise sources; :func:`ct_deck` injects filesource noise (or none) instead."""
BIAS_SOURCE = "vb"
"""The template's bias source (``vb<k>`` in cell k): DC from the bias value, or :func:`ct_deck` gives it a PWL."""


@dataclass(frozen=True)
class CellSizing:
    """Sizes and supply of the continuous-time cell. W, L in um; vdd, dvtn, dvtp in V; cload in F (per node)."""

    vdd: float = setting(0.040, "supply of the cell (subthreshold: 0.01..0.5)", unit="V")
    wn: float = setting(1.0, "nFET width", unit="um")
    wp: float = setting(2.5, "pFET width", unit="um")
    l: float = setting(0.15, "channel length of every transistor", unit="um")
    cload: float = setting(0.0, "extra load capacitance per node (0 = the devices' own)", unit="F")
    dvtn: float = setting(-0.25, "nFET threshold shift (a low-Vt flavour)", unit="V")
    dvtp: float = setting(0.25, "pFET threshold shift", unit="V")

    def __post_init__(self) -> None:
        lo, hi = CELL_VDD_RANGE_V
        if not (math.isfinite(self.vdd) and lo <= self.vdd <= hi):
            raise ValueError(f"vdd: expected {lo:g}..{hi:g} V for a subthreshold p-bit, got {self.vdd!r}")
        for name in ("wn", "wp", "l"):
            check_geometry(name, getattr(self, name), name[0])
        if not (math.isfinite(self.cload) and 0 <= self.cload <= 1e-9):
            raise ValueError(f"cload: expected 0..1 nF, got {self.cload!r}")
        lo, hi = CELL_VT_SHIFT_RANGE_V
        for name in ("dvtn", "dvtp"):
            value = getattr(self, name)
            if not (math.isfinite(value) and lo <= value <= hi):
                raise ValueError(f"{name}: expected a threshold shift in [{lo:g}, {hi:g}] V, got {value!r}")


def cell_devices(cell: int, sizing: CellSizing, suffix: str | None = None) -> list[mismatch.Device]:
    """The four transistors of cell ``cell`` in deck order (names as ``mismatch.find_devices`` reports them:
    ``xpa<cell>`` ...; ``suffix`` replaces the index, e.g. "" for the single-cell template ct_cell.cir)."""
    if cell < 0:
        raise ValueError(f"cell: expected an index >= 0, got {cell}")
    tag = str(cell) if suffix is None else suffix
    return [mismatch.Device(f"xpa{tag}", "pfet", sizing.wp, sizing.l),
            mismatch.Device(f"xna{tag}", "nfet", sizing.wn, sizing.l),
            mismatch.Device(f"xpb{tag}", "pfet", sizing.wp, sizing.l),
            mismatch.Device(f"xnb{tag}", "nfet", sizing.wn, sizing.l)]


def _check_bias(cell: int, bias: Bias) -> float | list[tuple[float, float]]:
    """The bias of cell ``cell`` checked: a DC value or the PWL points, in :data:`CELL_BIAS_RANGE_V`."""
    lo, hi = CELL_BIAS_RANGE_V
    if isinstance(bias, (int, float)):
        if not (math.isfinite(bias) and lo <= bias <= hi):
            raise ValueError(f"bias[{cell}]: expected a finite bias in [{lo:g}, {hi:g}] V, got {bias!r}")
        return float(bias)
    points = [(float(t), float(v)) for t, v in bias]
    if len(points) < 2:
        raise ValueError(f"bias[{cell}]: a PWL bias needs >= 2 (time, value) points, got {len(points)}")
    times = np.array([p[0] for p in points])
    values = np.array([p[1] for p in points])
    if not (np.all(np.isfinite(times)) and np.all(np.diff(times) > 0) and times[0] >= 0):
        raise ValueError(f"bias[{cell}]: PWL times must be finite, >= 0 and strictly increasing")
    if not np.all((values >= lo) & (values <= hi)):
        raise ValueError(f"bias[{cell}]: PWL values must lie in [{lo:g}, {hi:g}] V")
    return points


def _deck_value(value: float, digits: int) -> float:
    """``value`` rounded to ``digits`` significant digits: the template writes the float's shortest text, so the
    deck reads as it always has (widths and length to 6 digits, supply and bias to 12)."""
    return float(f"{value:.{digits}g}")


def template_values(sizing: CellSizing, bias: float = 0.0) -> dict[str, float]:
    """Parameters of the template :data:`CELL_TEMPLATE` for one cell of ``sizing`` with DC bias ``bias`` [V] (its
    noise parameters keep their defaults: :func:`ct_deck` drops the template's noise sources)."""
    return {"vdd": _deck_value(sizing.vdd, 12), "vb": _deck_value(bias, 12), "wn": _deck_value(sizing.wn, 6),
            "wp": _deck_value(sizing.wp, 6), "l": _deck_value(sizing.l, 6), "dvtn": sizing.dvtn,
            "dvtp": sizing.dvtp}


@lru_cache(maxsize=1)
def cell_template() -> Template:
    """The parsed template :data:`CELL_TEMPLATE`: the source of the cell's SPICE text."""
    return load_template(CELL_TEMPLATE)


def _cell_copy(lines: Sequence[str], cell: int) -> list[str]:
    """The template's cell lines as cell ``cell``: names and nodes ``x`` -> ``x<cell>`` except :data:`SHARED_NAMES`."""
    def local(name: str) -> str:
        return name if name in SHARED_NAMES else f"{name}{cell}"

    return [rename(line, local) for line in lines]


def ct_deck(biases: Sequence[Bias], sizing: CellSizing, process, noise_files: Sequence[str | Path] | None = None,
            noise_scale: float = 1.0, title: str = "spicenet rng: continuous-time subthreshold p-bit cells",
            save_all: bool = True, mismatch: str | None = None) -> str:
    """Deck text of ``len(biases)`` independent cells sharing one supply ``vdd``.

    ``biases[k]``: the bias vb of cell k, a DC value (V; the source ``vb<k>`` can then be swept by ``dc`` or set
    by ``alter vb<k> dc = x``) or PWL points ``[(t [s], v [V]), ...]``. ``noise_files[k]``: the cell's noise file
    (see :func:`write_noise_file`), or None for no noise sources at all; ``noise_scale`` multiplies the noise
    (0 = noise-off control with the same deck). Output of cell k: ``v(a<k>) - v(b<k>)``; supply ``i(vdd)``;
    per-inverter currents ``i(vma<k>)``, ``i(vmb<k>)``. With ``save_all=False``, ``.save`` lines keep only these
    vectors, the bias nodes and the bias-source currents ``i(esa<k>)``, ``i(esb<k>)`` (ngspice otherwise holds
    every node of a million-point transient in memory; the calibration uses it). ``mismatch="pdk"`` includes the
    process's own statistical library (``process.header("pdk")``: chips are then drawn by ``setseed`` + ``reset``,
    see :func:`chip_setup`); the default (None or "pelgrom") includes the nominal library."""
    n = len(biases)
    if n < 1:
        raise ValueError("biases: expected at least one cell")
    if noise_files is not None and len(noise_files) != n:
        raise ValueError(f"noise_files: expected {n} files (one per cell), got {len(noise_files)}")
    if not (math.isfinite(noise_scale) and noise_scale >= 0):
        raise ValueError(f"noise_scale: expected a finite value >= 0, got {noise_scale!r}")
    if mismatch not in (None, "pelgrom", "pdk"):
        raise ValueError(f"mismatch: expected None, 'pelgrom' or 'pdk', got {mismatch!r}")
    header = process.header("pdk") if mismatch == "pdk" else process.header()
    template = cell_template()
    lines = [f"* {title}", header.rstrip("\n")]
    for k, bias in enumerate(biases):
        checked = _check_bias(k, bias)
        rendered = element_lines(template, template_values(sizing, checked if isinstance(checked, float) else 0.0))
        if k == 0:  # the supply, shared by all cells
            lines += [line for line in rendered if line.split()[0] in SHARED_NAMES]
        cell = _cell_copy([line for line in rendered if line.split()[0] not in SHARED_NAMES
                           and line.split()[0] not in TEMPLATE_NOISE], k)
        if isinstance(checked, list):
            pwl = " ".join(f"{t:.15g} {v:.12g}" for t, v in checked)
            cell = [with_value(line, f"pwl({pwl})") if line.split()[0] == f"{BIAS_SOURCE}{k}" else line
                    for line in cell]
        lines += cell
        if sizing.cload > 0:
            lines += [f"cla{k} a{k} 0 {sizing.cload:.6g}", f"clb{k} b{k} 0 {sizing.cload:.6g}"]
        if noise_files is not None:
            path = str(Path(noise_files[k]).resolve())
            if not _SAFE_PATH.match(path):
                raise ValueError(f"noise_files[{k}]: path {path!r} contains a quote, newline or ';'")
            s = f"{noise_scale:.12g}"
            lines += [f"an{k} %i([a{k} b{k}]) nsrc{k}",
                      f'.model nsrc{k} filesource (file="{path}" amploffset=[0 0] amplscale=[{s} {s}] '
                      f"timeoffset=0 timescale=1 timerelative=false amplstep=false)"]
    if not save_all:
        names = ["i(vdd)"]
        for k in range(n):
            names += [f"v(a{k})", f"v(b{k})", f"v(bias{k})", f"i(vma{k})", f"i(vmb{k})", f"i(esa{k})", f"i(esb{k})"]
        for i in range(0, len(names), 8):
            lines.append(".save " + " ".join(names[i:i + 8]))
    lines.append(".end")
    return "\n".join(lines) + "\n"


def device_commands(process, sizing: CellSizing, chips: Sequence[int | None], seed: int,
                    suffixes: Sequence[str] | None = None) -> tuple[str, ...]:
    """``alter`` commands giving cell k the low-Vt shift plus the Pelgrom mismatch of chip ``chips[k]``
    (drawn by ``spicenet.spice.mismatch.sample_chip`` from (seed, chip); ``None`` = nominal devices):
    delvto = dvtn (nMOS) or dvtp (pMOS) + dVt_mismatch, mulu0 = 1 + dbeta/beta. ``suffixes``: device-name tags
    per cell (default the cell index; ``[""]`` for the template ``rng/ct_cell``)."""
    if suffixes is not None and len(suffixes) != len(chips):
        raise ValueError(f"suffixes: expected {len(chips)} tags, got {len(suffixes)}")
    commands: list[str] = []
    for k, chip in enumerate(chips):
        devices = cell_devices(k, sizing, None if suffixes is None else suffixes[k])
        if chip is None:
            draws = {d.name: (0.0, 1.0) for d in devices}
        else:
            draws = mismatch.sample_chip(devices, process, seed, int(chip))
        for device in devices:
            dvt, beta = draws[device.name]
            shift = sizing.dvtn if device.kind == "nfet" else sizing.dvtp
            commands.extend(process.alter_commands(device.name, shift + dvt, beta))
    return tuple(commands)


def chip_setup(process, sizing: CellSizing, chip: int, seed: int, mode: str = "pelgrom"
               ) -> tuple[tuple[str, ...], int | None]:
    """(alter commands, ngspice setseed value) that make a single-cell deck (cell index 0) chip ``chip``.

    ``mode="pelgrom"``: the low-Vt shifts plus the chip's Pelgrom draws as ``alter`` values (:func:`device_commands`),
    no reseed. ``mode="pdk"`` (the deck rendered with ``ct_deck(..., mismatch="pdk")``): only the low-Vt shifts as
    ``alter`` values; the PDK's own per-instance ``agauss`` mismatch is re-drawn by ``setseed`` +
    ``reset`` with the seed ``spicenet.spice.engine.derived_seed(seed, chip)`` (RunSpec.seed; the runner pushes
    the alter commands after the reset, so the shifts survive)."""
    if chip < 0 or seed < 0:
        raise ValueError(f"chip, seed: expected >= 0, got {chip}, {seed}")
    if mode == "pelgrom":
        return device_commands(process, sizing, [chip], seed), None
    if mode == "pdk":
        if "pdk" not in process.mismatch_modes:
            raise ValueError(f"mode: process {process.name} has no 'pdk' mismatch (has {process.mismatch_modes})")
        from spicenet.seeds import MONTECARLO_CHIP, ngspice_seed

        return device_commands(process, sizing, [None], seed), ngspice_seed(seed, MONTECARLO_CHIP, chip)
    raise ValueError(f"mode: expected 'pelgrom' or 'pdk', got {mode!r}")


def thermal_voltage(temp_c: float = 27.0) -> float:
    """V_T = k T / q (V)."""
    return K_B * (temp_c + 273.15) / Q_E


def shot_noise_psd(currents: Sequence[float], vds: Sequence[float], temp_c: float = 27.0) -> float:
    """One-sided current-noise PSD (A^2/Hz) of subthreshold transistors on one node:
    S = 2 q sum_j |I_j| coth(|V_ds,j| / (2 V_T)) (forward and reverse diffusion currents both shot-noisy; tends
    to 2 q I in saturation and to the thermal 4 k T g_ds at V_ds -> 0)."""
    i = np.abs(np.asarray(currents, dtype=float))
    v = np.abs(np.asarray(vds, dtype=float))
    if i.shape != v.shape or i.ndim != 1 or i.size == 0:
        raise ValueError(f"currents, vds: expected 1-D arrays of equal length, got {i.shape} and {v.shape}")
    if not (np.all(np.isfinite(i)) and np.all(np.isfinite(v))):
        raise ValueError("currents, vds: non-finite values")
    vt = thermal_voltage(temp_c)
    v = np.maximum(v, 1e-9)
    return float(np.sum(2.0 * Q_E * i / np.tanh(v / (2.0 * vt))))


def noise_rms(psd: float, dt: float) -> float:
    """rms (A) of white noise of one-sided PSD ``psd`` (A^2/Hz) sampled every ``dt`` (s): sqrt(S / (2 dt))."""
    if not (psd >= 0 and dt > 0):
        raise ValueError(f"psd, dt: expected psd >= 0 and dt > 0, got {psd!r}, {dt!r}")
    return math.sqrt(psd / (2.0 * dt))


def noise_samples(seed: int, chip: int, cell: int, rms: Sequence[float] | np.ndarray, n: int,
                  stream: int = 0) -> np.ndarray:
    """(n, 2) Gaussian noise currents (A) for nodes a, b of one cell, from ``spicenet.seeds.numpy_generator(seed,
    streams.CELL_NOISE, chip, cell, stream)`` (``SeedSequence([seed, chip, cell, stream])``; stream 0 is the
    former key ``(seed, chip, cell)``); a ``stream`` > 0 gives further independent records of the same cell."""
    if min(seed, chip, cell, stream) < 0 or n < 2:
        raise ValueError(f"seed, chip, cell, stream must be >= 0 and n >= 2, got {seed}, {chip}, {cell}, {stream}, {n}")
    rms = np.asarray(rms, dtype=float)
    if rms.shape != (2,) or np.any(rms < 0) or not np.all(np.isfinite(rms)):
        raise ValueError(f"rms: expected two finite values >= 0 A, got {rms}")
    from spicenet.cells.rng import streams
    from spicenet.seeds import numpy_generator

    return numpy_generator(seed, streams.CELL_NOISE, chip, cell, stream).standard_normal((n, 2)) * rms


def write_noise_file(path: str | Path, *, seed: int, chip: int, cell: int, rms: Sequence[float], dt: float,
                     t_stop: float, stream: int = 0) -> Path:
    """Write one cell's filesource file: rows ``t i_a i_b`` every ``dt`` from 0 past ``t_stop`` (s, A)."""
    if not (dt > 0 and t_stop > dt):
        raise ValueError(f"dt, t_stop: expected 0 < dt < t_stop, got {dt!r}, {t_stop!r}")
    n = int(math.ceil(t_stop / dt)) + 2
    data = noise_samples(seed, chip, cell, rms, n, stream)
    table = np.column_stack([np.arange(n) * dt, data])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fh.write(("%.12e %.6e %.6e\n" * n) % tuple(table.ravel()))
    return path


def staircase(levels: Sequence[float] | np.ndarray, t_level: float, t_start: float = 0.0,
              edge: float = 1e-10) -> list[tuple[float, float]]:
    """PWL points holding each bias level for ``t_level`` seconds in turn (steps of ``edge`` s)."""
    levels = [float(v) for v in levels]
    if not levels or not (t_level > 2 * edge > 0):
        raise ValueError(f"levels, t_level: expected >= 1 level and t_level > 2*edge, got {len(levels)}, {t_level!r}")
    points: list[tuple[float, float]] = []
    t = t_start
    for v in levels:
        points.append((t + (edge if points else 0.0), v))
        t += t_level
        points.append((t, v))
    return points
