"""Whole-machine export: one denoising step of a trained DTM, every p-bit of its grid, as ONE ngspice netlist.

Cells: ``cells.ct_deck`` (the calibrated continuous-time cell, reused verbatim), N = L x L of them. Couplings as in
``export.py`` (resistors from buffered cell outputs into resistive summing bias nodes), but sparse: one resistor per
coupling direction of every grid edge, so the deck grows as N (degree) rather than N^2, with no cell-count limit.

    bsrc<k> --R_b,k-- bias<k> --R_kj-- o<j> or ob<j>       (j over the grid neighbours of k)
    o<j> = +Vo tanh(x_j / Vw),  ob<j> = -o<j>,  x_j = v(a<j>) - v(b<j>)   (ideal readout buffers, B sources)

Millman's theorem at the bias node (G = 1/R, G_tot,k = G_b,k + sum_j G_kj = 1 / r_total):

    v_k = (G_b,k V_src,k + Vo sum_j sign(J_kj) G_kj s_j) / G_tot .

The cell fires with P(s_k = +1) = sigmoid((v_k - v0_k) / vs_k); the step's Gibbs law needs
sigmoid(2 beta (h_k + sum_j J_kj s_j)) with the total bias h_k = b_k + gamma_k x_t,k (data nodes: the trained
bias plus the conditioning on the previous step's state x_t, a per-image bias voltage; latents: b_k). So, with the
trimmed transition v0_ref,k and the design slope vs_d,k,

    G_kj = 2 beta vs_d,k |J_kj| G_tot / Vo,   G_b,k = G_tot - sum_j G_kj,
    V_src,k = (v0_ref,k + 2 beta vs_d,k h_k) G_tot / G_b,k                              (V).

``alpha`` (the coupling-DAC gain trim, 1 = none) divides every J before mapping (J / alpha): a global trim that
compensates couplings acting weaker in SPICE than the static mapping (measured on the 4-cell patch).

Deck size: per cell 4 transistors, 2 VCVS (the differential bias), 2 sense sources, one filesource (noise), one bias
source and resistor, 2 buffers, deg resistors. Only v(a<k>), v(b<k>) (the outputs), v(bias<k>) (for the coupling
power) and i(vdd) are saved (``.save`` lines: ngspice otherwise keeps every internal node of every time point).
The cells start at a given spin state by ``.ic`` (x = +-ic_v around Vdd / 2), held during the operating point.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, cast

import numpy as np

from spicenet.cells.rng import cells

__all__ = ["GridMapping", "map_grid", "grid_bias_voltages", "grid_deck", "grid_coupling_power", "grid_step_bm"]


@dataclass(frozen=True)
class GridMapping:
    """Sparse resistor network of one exported step. ``edges`` [E, 2] (undirected, as the grid graph lists them);
    ``g_fwd[e]``: conductance (S) from output edges[e, 1] into bias node edges[e, 0]; ``g_bwd[e]``: from output
    edges[e, 0] into bias node edges[e, 1]; ``sign[e]``: +1 (o) / -1 (ob) / 0 (no resistor); g_src, v_src [N]:
    the bias sources' conductance (S) and voltage (V); vo (V) buffered output level; g_total (S)."""

    edges: np.ndarray
    g_fwd: np.ndarray
    g_bwd: np.ndarray
    sign: np.ndarray
    g_src: np.ndarray
    v_src: np.ndarray
    vo: float
    g_total: float

    @property
    def n(self) -> int:
        return int(self.g_src.shape[0])

    @property
    def n_resistors(self) -> int:
        return int(2 * np.count_nonzero(self.sign)) + self.n


def map_grid(n: int, edges: np.ndarray, weights: np.ndarray, h: np.ndarray, beta: float,
             vs_design: float | Sequence[float] | np.ndarray, v0_ref: Sequence[float] | np.ndarray, vo: float,
             r_total: float = 10e6, alpha: float = 1.0) -> GridMapping:
    """Resistor network of the sparse BM (``edges`` [E, 2], couplings ``weights`` [E], total biases ``h`` [N],
    ``beta``) on cells with design slopes ``vs_design`` (V; one or [N]) and trimmed transitions ``v0_ref`` [N] (V);
    couplings divided by the gain trim ``alpha``."""
    edges = np.asarray(edges, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    h = np.asarray(h, dtype=np.float64).reshape(-1)
    if edges.ndim != 2 or edges.shape[1] != 2 or w.shape != (edges.shape[0],):
        raise ValueError(f"edges, weights: expected [E, 2] and [E], got {edges.shape}, {w.shape}")
    if h.shape != (n,) or (edges.size and (edges.min() < 0 or edges.max() >= n or np.any(edges[:, 0] == edges[:, 1]))):
        raise ValueError(f"h, edges: expected [{n}] biases and edges between distinct nodes < {n}")
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(h))):
        raise ValueError("weights, h: non-finite values")
    vs_d = np.asarray(vs_design, dtype=np.float64)
    vs_d = np.full(n, float(vs_d)) if vs_d.ndim == 0 else vs_d
    v0 = np.asarray(v0_ref, dtype=np.float64)
    if vs_d.shape != (n,) or v0.shape != (n,) or not (np.all(vs_d > 0) and np.all(np.isfinite(v0))):
        raise ValueError(f"vs_design, v0_ref: expected [{n}] finite values (vs > 0)")
    for name, v in (("beta", beta), ("vo", vo), ("r_total", r_total), ("alpha", alpha)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name}: expected a finite value > 0, got {v!r}")
    g_tot = 1.0 / r_total
    ja = np.abs(w) / alpha
    g_fwd = 2.0 * beta * vs_d[edges[:, 0]] * ja * g_tot / vo
    g_bwd = 2.0 * beta * vs_d[edges[:, 1]] * ja * g_tot / vo
    load = np.bincount(edges[:, 0], g_fwd, minlength=n) + np.bincount(edges[:, 1], g_bwd, minlength=n)
    g_src = g_tot - load
    if np.any(g_src <= 0.05 * g_tot):
        k = int(np.argmin(g_src))
        raise ValueError(f"vo: {vo!r} V is too small for cell {k}: 2 beta vs sum|J| must stay below 0.95 vo")
    v_src = (v0 + 2.0 * beta * vs_d * h) * g_tot / g_src
    return GridMapping(edges=edges, g_fwd=g_fwd, g_bwd=g_bwd, sign=np.sign(w).astype(np.int64), g_src=g_src,
                       v_src=v_src, vo=float(vo), g_total=g_tot)


def grid_bias_voltages(m: GridMapping, spins: np.ndarray) -> np.ndarray:
    """Bias node voltages [..., N] (V) for spin states [..., N] (+-1), by Millman's theorem."""
    s = np.asarray(spins, dtype=np.float64)
    if s.shape[-1] != m.n:
        raise ValueError(f"spins: expected last dimension {m.n}, got {s.shape}")
    num = np.broadcast_to(m.g_src * m.v_src, s.shape).copy()
    i, j = m.edges[:, 0], m.edges[:, 1]
    # cast: numpy's stub for ufunc.at does not accept an Ellipsis tuple as the index
    np.add.at(num, cast(Any, (..., i)), m.vo * m.sign * m.g_fwd * s[..., j])
    np.add.at(num, cast(Any, (..., j)), m.vo * m.sign * m.g_bwd * s[..., i])
    return num / m.g_total


def grid_coupling_power(m: GridMapping, v_bias: np.ndarray, v_out: np.ndarray) -> np.ndarray:
    """Power (W) dissipated in the step's resistor network at each time point, sum over resistors of dV^2 G.
    v_bias, v_out: [T, N] bias-node and buffered-output (+-Vo tanh) voltages (V)."""
    vb = np.asarray(v_bias, dtype=np.float64)
    vo = np.asarray(v_out, dtype=np.float64)
    p = ((m.v_src - vb) ** 2 * m.g_src).sum(-1)
    i, j = m.edges[:, 0], m.edges[:, 1]
    p = p + ((m.sign * vo[..., j] - vb[..., i]) ** 2 * m.g_fwd).sum(-1)
    p = p + ((m.sign * vo[..., i] - vb[..., j]) ** 2 * m.g_bwd).sum(-1)
    return p


def grid_deck(m: GridMapping, sizing: cells.CellSizing, process, noise_files: Sequence[str | Path],
              init_spins: np.ndarray | None = None, vw: float = 2e-4, ic_v: float = 1.5e-3,
              save_bias: bool = True, mismatch: str | None = None) -> str:
    """Deck text of the whole step: ``m.n`` cells of ``cells.ct_deck`` wired as ``m`` describes, one noise file
    per cell, ``.ic`` at ``init_spins`` [N] (+-1: v(a) = Vdd/2 + s ic_v, v(b) = Vdd/2 - s ic_v), ``.save`` of
    v(a<k>), v(b<k>), i(vdd) and (``save_bias``) v(bias<k>) only. ``mismatch="pdk"``: the process's statistical
    library (chips drawn by ``setseed`` + ``reset``, ``cells.ct_deck``)."""
    n = m.n
    if not (math.isfinite(vw) and vw > 0):
        raise ValueError(f"vw: expected > 0 V, got {vw!r}")
    if len(noise_files) != n:
        raise ValueError(f"noise_files: expected {n} files (one per cell), got {len(noise_files)}")
    text = cells.ct_deck([0.0] * n, sizing, process, noise_files=noise_files, mismatch=mismatch,
                         title=f"spicenet rng: one DTM step, {n} coupled p-bit cells (whole grid)")
    by_target: list[list[str]] = [[] for _ in range(n)]
    for e, (i, j) in enumerate(m.edges):
        if m.sign[e] == 0:
            continue
        node_j, node_i = (f"o{j}", f"o{i}") if m.sign[e] > 0 else (f"ob{j}", f"ob{i}")
        by_target[i].append(f"rc{i}x{j} {node_j} bias{i} {1.0 / m.g_fwd[e]:.9g}")
        by_target[j].append(f"rc{j}x{i} {node_i} bias{j} {1.0 / m.g_bwd[e]:.9g}")
    out: list[str] = []
    found = 0
    for line in text.splitlines():
        hit = re.match(r"^vb(\d+) bias(\d+) 0 dc ", line)
        if hit is None:
            if line.strip().lower() != ".end":
                out.append(line)
            continue
        k = int(hit.group(1))
        found += 1
        out.append(f"vb{k} bsrc{k} 0 dc {m.v_src[k]:.12g}")
        out.append(f"rb{k} bsrc{k} bias{k} {1.0 / m.g_src[k]:.9g}")
        out.extend(by_target[k])
    if found != n:
        raise ValueError(f"cells.ct_deck: found {found} bias sources for {n} cells; the cell generator changed")
    for k in range(n):
        out.append(f"bo{k} o{k} 0 v = {m.vo:.9g} * tanh((v(a{k}) - v(b{k})) / {vw:.9g})")
        out.append(f"bob{k} ob{k} 0 v = -{m.vo:.9g} * tanh((v(a{k}) - v(b{k})) / {vw:.9g})")
    if init_spins is not None:
        s = np.asarray(init_spins, dtype=np.float64).reshape(-1)
        if s.shape != (n,) or not np.all(np.abs(s) == 1):
            raise ValueError(f"init_spins: expected [{n}] values +-1")
        mid = 0.5 * sizing.vdd
        ics = [f"v(a{k})={mid + s[k] * ic_v:.9g} v(b{k})={mid - s[k] * ic_v:.9g}" for k in range(n)]
        for i in range(0, n, 4):
            out.append(".ic " + " ".join(ics[i:i + 4]))
    names = ["i(vdd)"] + [f"v({nd}{k})" for k in range(n) for nd in (("a", "b", "bias") if save_bias else ("a", "b"))]
    for i in range(0, len(names), 12):
        out.append(".save " + " ".join(names[i:i + 12]))
    out.append(".end")
    return "\n".join(out) + "\n"


def grid_step_bm(dtm, step: int, x_cond: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(edges [E, 2], quantised couplings [E], total biases h [N]) of DTM step ``step`` conditioned on x_t
    ``x_cond`` [D] (+-1): h = b + gamma x_t on the data nodes, b on the latents."""
    p = dtm.steps[step - 1]
    w = dtm.quantiser(p.weights).double().numpy()
    h = dtm.quantiser(p.biases).double().numpy().copy()
    h[dtm.data_nodes] += dtm.quantiser(p.gamma).double().numpy() * np.asarray(x_cond, np.float64)
    return dtm.graph.edges.copy(), w, h
