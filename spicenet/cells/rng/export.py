"""Export a small Boltzmann machine to ONE ngspice netlist of coupled continuous-time p-bit cells.

Cells: ``cells.ct_deck`` (the calibrated cell generator, reused verbatim). Each cell k's bias node ``bias<k>``
(it drives the cell's differential bias through ideal VCVSs of infinite input resistance) becomes a resistive
summing node:

    bsrc<k> --R_b,k-- bias<k> --R_kj-- o<j> or ob<j>     (one resistor per coupling direction j -> k)

with the cell outputs buffered to clean rails: o<j> = +Vo tanh(x_j / Vw), ob<j> = -o<j>, x_j = v(a<j>) - v(b<j>)
(ideal behavioural readout buffers, B sources; their power is not in the SPICE supply). A coupling J_kj > 0
takes o<j>, J_kj < 0 takes ob<j>, so the term is Vo |J_kj|/J_kj s_j = Vo sign(J_kj) s_j.

Mapping (Millman's theorem at the bias node; G = 1/R, G_tot,k = G_b,k + sum_j G_kj):

    v_k = (G_b,k V_src,k + Vo sum_j sign(J_kj) G_kj s_j) / G_tot,k .

The Gibbs law of the BM (``gibbs``) needs P(s_k = +1) = sigmoid(2 beta (b_k + sum_j J_kj s_j)), and the cell
gives sigmoid((v_k - v0_k) / vs_k). With the designer's v0_ref,k (the trimmed transition) and slope vs_d,k
the target is v_k = v0_ref,k + vs_d,k 2 beta (b_k + sum_j J_kj s_j), so

    G_kj      = 2 beta vs_d,k |J_kj| G_tot / Vo          (bias shift per neighbour flip: 2 * 2 beta vs_d,k |J_kj|)
    G_b,k     = G_tot - sum_j G_kj                        (> 0 needs 2 beta vs_d,k sum_j |J_kj| < Vo)
    V_src,k   = (v0_ref,k + 2 beta vs_d,k b_k) G_tot / G_b,k

i.e. a neighbour's state s_j = ±1 shifts cell k's bias by ±2 beta J_kj vs_d,k (a flip moves it by twice that).
vs_d is either one design slope (the calibrated nominal vs) for every cell or each cell's measured slope (the
exact mapping: row k of the resistor network is scaled to cell k, so G_kj != G_jk in general). G_tot =
1 / r_total is a free design choice (it sets the coupling network's power, not the law; the bias nodes drive
ideal VCVSs and are unloaded). A cell whose slope vs_k differs from vs_d,k samples with gain vs_k / vs_d,k (the
surrogate's ``gain``); an error of v0_ref is its ``offset`` (v0_k - v0_ref,k) / vs_d,k.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from spicenet.cells.rng import cells

__all__ = ["BMMapping", "map_weights", "bias_voltages", "bm_deck", "coupling_power", "with_sim_options",
           "SIM_OPTIONS", "MAX_CELLS"]

MAX_CELLS = 12


@dataclass(frozen=True)
class BMMapping:
    """Resistor network of an exported BM. g_couple[k, j]: conductance (S) from output j into bias node k;
    sign[k, j]: +1 (o<j>) / -1 (ob<j>) / 0 (none); g_src[k], v_src[k]: the bias source's conductance (S) and
    voltage (V); vo (V): buffered output level; g_total (S)."""

    g_couple: np.ndarray
    sign: np.ndarray
    g_src: np.ndarray
    v_src: np.ndarray
    vo: float
    g_total: float

    @property
    def n(self) -> int:
        return int(self.g_src.shape[0])


def _check_bm(j: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    j = np.asarray(j, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n = b.shape[0] if b.ndim == 1 else -1
    if b.ndim != 1 or not 1 <= n <= MAX_CELLS:
        raise ValueError(f"b: expected shape [n] with 1 <= n <= {MAX_CELLS}, got {b.shape}")
    if j.shape != (n, n):
        raise ValueError(f"j: expected shape ({n}, {n}), got {j.shape}")
    if not (np.all(np.isfinite(j)) and np.all(np.isfinite(b))):
        raise ValueError("j, b: non-finite values")
    if not np.allclose(j, j.T) or np.any(np.diag(j) != 0):
        raise ValueError("j: expected a symmetric coupling matrix with zero diagonal")
    return j, b


def map_weights(j: np.ndarray, b: np.ndarray, beta: float, vs_design: float | Sequence[float] | np.ndarray,
                v0_ref: Sequence[float] | np.ndarray, vo: float, r_total: float = 10e6) -> BMMapping:
    """Resistor network realising the BM (j [n, n], b [n], beta) on cells with design slope ``vs_design`` (V;
    one value for all cells or [n], one per cell) and trimmed transitions ``v0_ref`` [n] (V); ``vo`` (V) output
    rail, ``r_total`` (Ohm) = 1 / G_tot."""
    j, b = _check_bm(j, b)
    n = b.shape[0]
    v0_ref = np.asarray(v0_ref, dtype=np.float64)
    if v0_ref.shape != (n,) or not np.all(np.isfinite(v0_ref)):
        raise ValueError(f"v0_ref: expected {n} finite values, got shape {v0_ref.shape}")
    vs_d = np.asarray(vs_design, dtype=np.float64)
    if vs_d.ndim == 0:
        vs_d = np.full(n, float(vs_d))
    if vs_d.shape != (n,) or not (np.all(np.isfinite(vs_d)) and np.all(vs_d > 0)):
        raise ValueError(f"vs_design: expected one or {n} finite values > 0 V, got {vs_design!r}")
    for name, v in (("beta", beta), ("vo", vo), ("r_total", r_total)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name}: expected a finite value > 0, got {v!r}")
    g_tot = 1.0 / r_total
    g = 2.0 * beta * vs_d[:, None] * np.abs(j) * g_tot / vo
    g_src = g_tot - g.sum(1)
    if np.any(g_src <= 0.05 * g_tot):
        k = int(np.argmin(g_src))
        raise ValueError(f"vo: {vo!r} V is too small for cell {k}: 2 beta vs sum|J| = "
                         f"{2 * beta * vs_d[k] * np.abs(j[k]).sum():.3g} V must stay below 0.95 vo")
    v_src = (v0_ref + 2.0 * beta * vs_d * b) * g_tot / g_src
    return BMMapping(g_couple=g, sign=np.sign(j).astype(np.int64), g_src=g_src, v_src=v_src, vo=float(vo),
                     g_total=g_tot)


def bias_voltages(m: BMMapping, spins: np.ndarray) -> np.ndarray:
    """Bias node voltages v [..., n] (V) of the network for spin states [..., n] (±1), by Millman's theorem."""
    s = np.asarray(spins, dtype=np.float64)
    if s.shape[-1] != m.n:
        raise ValueError(f"spins: expected last dimension {m.n}, got {s.shape}")
    num = m.g_src * m.v_src + m.vo * np.einsum("kj,...j->...k", m.g_couple * m.sign, s)
    return num / m.g_total


def bm_deck(m: BMMapping, sizing: cells.CellSizing, process, noise_files: Sequence[str | Path] | None = None,
            noise_scale: float = 1.0, vw: float = 2e-4) -> str:
    """Deck text: ``m.n`` cells from ``cells.ct_deck`` whose bias nodes are wired as ``m`` describes.

    ``vw`` (V): width of the buffers' tanh, a comparator: the cell output x sits a few mV from 0 inside its
    wells (quartiles ~ +-3 mV on the generic card), so vw = 0.2 mV gives full rails (a 5 mV width left the
    coupling at ~45 % of its intended strength in a 2-cell test). Vectors: cell
    output ``v(a<k>) - v(b<k>)``, buffered ``v(o<k>)``, bias ``v(bias<k>)``, supply ``i(vdd)``."""
    n = m.n
    if not (math.isfinite(vw) and vw > 0):
        raise ValueError(f"vw: expected > 0 V, got {vw!r}")
    text = cells.ct_deck([0.0] * n, sizing, process, noise_files=noise_files, noise_scale=noise_scale,
                         title=f"spicenet rng: Boltzmann machine of {n} coupled p-bit cells")
    lines = text.splitlines()
    out: list[str] = []
    for line in lines:
        hit = re.match(r"^vb(\d+) bias(\d+) 0 dc ", line)
        if hit is None:
            if line.strip().lower() == ".end":
                continue
            out.append(line)
            continue
        k = int(hit.group(1))
        if int(hit.group(2)) != k:
            raise ValueError(f"cells.ct_deck: unexpected bias line {line!r}")
        out.append(f"vb{k} bsrc{k} 0 dc {m.v_src[k]:.12g}")
        out.append(f"rb{k} bsrc{k} bias{k} {1.0 / m.g_src[k]:.12g}")
        for jj in range(n):
            if m.sign[k, jj] == 0 or m.g_couple[k, jj] <= 0:
                continue
            node = f"o{jj}" if m.sign[k, jj] > 0 else f"ob{jj}"
            out.append(f"rc{k}x{jj} {node} bias{k} {1.0 / m.g_couple[k, jj]:.12g}")
    found = sum(1 for ln in out if re.match(r"^vb\d+ bsrc\d+ ", ln))
    if found != n:
        raise ValueError(f"cells.ct_deck: found {found} bias sources for {n} cells; the cell generator changed")
    for k in range(n):
        out.append(f"bo{k} o{k} 0 v = {m.vo:.9g} * tanh((v(a{k}) - v(b{k})) / {vw:.9g})")
        out.append(f"bob{k} ob{k} 0 v = -{m.vo:.9g} * tanh((v(a{k}) - v(b{k})) / {vw:.9g})")
    out.append(".end")
    return "\n".join(out) + "\n"


SIM_OPTIONS = ".options vntol=1e-5 abstol=1e-11"
"""Newton tolerances for the noisy p-bit transients (defaults: vntol 1 uV, abstol 1 pA). The cell nodes swing
~+-3 mV and carry ~20 nA, so 10 uV / 10 pA are still < 0.5 % of the signals; measured on a 16-cell deck with the
same noise: every cell's P(1) equal to 4 digits, 7-13 % less CPU per time point."""


def with_sim_options(text: str, options: str = SIM_OPTIONS) -> str:
    """``text`` (a deck ending in ``.end``) with ``options`` (an ``.options`` line) inserted before ``.end``."""
    if not options.startswith(".options ") or "\n" in options:
        raise ValueError(f"options: expected one '.options ...' line, got {options!r}")
    body = text.rstrip()
    if not body.lower().endswith("\n.end"):
        raise ValueError("text: expected a deck ending in '.end'")
    return body[: -len(".end")] + options + "\n.end\n"


def coupling_power(m: BMMapping, v_bias: np.ndarray, v_out: np.ndarray) -> np.ndarray:
    """Power (W) dissipated in the coupling network at each time point: sum over resistors of (dV)^2 G.
    v_bias, v_out: [T, n] bias-node and buffered-output voltages (V)."""
    vb = np.asarray(v_bias, dtype=np.float64)
    vo = np.asarray(v_out, dtype=np.float64)
    p = ((m.v_src - vb) ** 2 * m.g_src).sum(-1)
    src = vo[..., None, :] * m.sign  # [T, k, j]: the node each resistor k<-j hangs on
    p = p + (((src - vb[..., :, None]) ** 2) * m.g_couple).sum((-1, -2))
    return p
