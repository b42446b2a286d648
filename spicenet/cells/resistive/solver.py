"""Batched steady-state (DC operating point) solver for layered diode-resistor networks.

Circuit (what ngspice's ``.op`` solves for the deck of :mod:`spicenet.cells.resistive.netlist`):

* ``n_src`` ideal voltage sources with voltages ``v_src`` [B, n_src] (V), tied to the ``N`` free nodes by
  conductances ``s`` [n_src, N] (S);
* free-free conductances ``a`` [N, N] (S, symmetric, zero diagonal);
* at every free node i up to two diodes (orientation fixed here and in the netlist):
  - the *upper* diode, anode = node i, cathode = a rail at ``u_i`` (``+vb`` unless ``rails`` says otherwise): it
    conducts when ``V_i > u_i``; current leaving the node ``I_up = f(V_i - u_i)``;
  - the *lower* diode, anode = a rail at ``l_i`` (``-vb`` by default), cathode = node i: it conducts when
    ``V_i < l_i``; current entering the node ``I_lo = f(l_i - V_i)``;
  ``present`` removes single diodes: a rectifier unit (Scellier 2024's excitatory / inhibitory nodes) has only
  the lower diode from a 0 V rail (``V_i >= 0``, up to a junction drop) or only the upper one to 0 V (``V_i <= 0``);
* a diode is a junction with ngspice's law and ``gmin`` in parallel with the junction, in series with ``rs``:
  ``f(v_d) = I`` with ``I = j(v_d - I rs)``, ``j(u) = Is (exp(u / (n V_T)) - 1) + gmin u`` for ``u >= -3 n V_T``
  and ``j(u) = -Is (1 + (3 n V_T / (e u))^3) + gmin u`` below (ngspice ``dioload.c``, no breakdown),
  ``V_T = k T / q`` with ngspice's CODATA-2014 constants (T = 300.15 K: 25.8649 mV);
* optional nudging: a conductance ``beta`` (S) from every output node to a target voltage ``target`` (the
  current ``-beta (V_out - y)`` = ``-beta dC/dV`` of the cost ``C = sum (V_out - y)^2 / 2``; ``beta`` may be
  negative), and optional constant injected currents ``i_inj`` [B, N] (A, positive = into the node).

Kirchhoff's current law at every free node (residual in A, positive = net current leaving):

    F(V) = Lap V - s^T v_src + I_up(V) - I_lo(V) + beta (V_out - y) - i_inj = 0,
    Lap = diag(sum_j a_ij + sum_s s_si) - a.

F is the gradient of the strictly convex co-content ``E(V) + beta C(V) - i_inj . V`` (for beta >= 0), so the
root is unique. It is found by Newton's method in float64 on the dense batched Jacobian
``J = Lap + diag(g_up + g_lo + beta)`` (Cholesky; LU when a negative beta makes J indefinite), with SPICE's
junction-voltage limiting (``pnjlim``) applied to every diode, until ``max |F| < tol_i`` (A) and the last
Newton step ``max |dV| < tol_v`` (V).

Amplifiers (Kendall et al. 2020). A circuit with bidirectional amplifiers between layers (see
:class:`spicenet.cells.resistive.network.ResistiveNetwork`) has a non-symmetric KCL Jacobian; multiplying the KCL
row of node i by a positive weight ``w_i`` (``node_scale``) makes it the Hessian of a convex energy. Such a circuit
is given in that scaled form: ``s`` and ``a`` hold the scaled (symmetric, possibly negative off-diagonal)
couplings, ``diag`` the scaled linear diagonal, and the solver scales the diode currents, the nudge and the injected
currents of node i by ``w_i``. Scaling rows does not move the root, so the solution is ngspice's; the residual
reported and tested against ``tol_i`` is the unscaled KCL residual (A).

Differentiation: with ``differentiable=True`` the converged solution ``V*`` is detached and one more Newton
step ``V = V* - J(V*)^-1 F(V*; theta)`` is taken with the autograd graph; since ``F(V*) = 0`` its derivative
``dV/dtheta = -J^-1 dF/dtheta`` is exactly the implicit-function-theorem derivative (theta = s, a, v_src,
target, i_inj; the diode parameters are treated as constants).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from spicenet.errors import ConvergenceError

BOLTZMANN = 1.38064852e-23  # J/K, ngspice 39 const.h (CODATA 2014)
CHARGE = 1.6021766208e-19  # C, ngspice 39 const.h (CODATA 2014)
ROOM_TEMPERATURE = 300.15  # K, ngspice default TEMP = TNOM = 27 C
NGSPICE_GMIN = 1e-12  # S, ngspice default gmin (in parallel with every junction)

__all__ = [
    "BOLTZMANN",
    "CHARGE",
    "ROOM_TEMPERATURE",
    "NGSPICE_GMIN",
    "Circuit",
    "SolveResult",
    "thermal_voltage",
    "junction_current",
    "diode_current",
    "pnjlim",
    "solve",
]


def thermal_voltage(temperature: float = ROOM_TEMPERATURE) -> float:
    """Thermal voltage ``V_T = k T / q`` (V) at ``temperature`` (K)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 K, got {temperature!r}")
    return BOLTZMANN * temperature / CHARGE


@dataclass(frozen=True)
class Circuit:
    """Dense description of one chip's network, independent of the layer structure.

    Attributes:
        s: [n_src, N] conductances (S) from the voltage sources to the free nodes, >= 0.
        a: [N, N] symmetric free-free conductances (S), >= 0, zero diagonal.
        is_: [N, 2] diode saturation currents (A); column 0 upper diode (node -> +vb), column 1 lower (-vb -> node).
        n: [N, 2] diode ideality factors.
        out_index: [n_out] long indices of the output nodes among the N free nodes.
        rs: diode series resistance (ohm), 0 = none.
        vb: diode bias voltage (V): the upper diodes end at +vb, the lower ones at -vb.
        gmin: conductance (S) in parallel with every junction (ngspice's gmin).
        temperature: device temperature (K).
        layers: sizes of consecutive free layers (node order) when ``a`` only couples adjacent layers and no
            layer has internal edges; the solver then eliminates layer by layer (block elimination from both
            ends, :func:`_solve_layered`) and forms ``v @ lap`` from the coupling blocks, instead of dense batched
            products and factorisations. None = dense.
        diodes: False removes the diodes (and their gmin): a purely linear network.
        diag: [N] explicit diagonal of the linear nodal matrix (S, scaled like the rows), None = ``sum a + sum s``
            (a plain resistor network). Needed when ``a`` holds amplifier couplings (negative entries allowed).
        node_scale: [N] positive KCL row weights ``w_i`` (module docstring), None = all ones.
        rails: [N, 2] rail voltages (V) of each node's upper (column 0, the cathode) and lower (column 1, the
            anode) diode, None = ``(+vb, -vb)`` at every node.
        present: [N, 2] bool, which of each node's two diodes exist (same columns), None = all of them. An absent
            diode carries no current and no gmin.
    """

    s: Tensor
    a: Tensor
    is_: Tensor
    n: Tensor
    out_index: Tensor
    rs: float = 0.0
    vb: float = 0.0
    gmin: float = NGSPICE_GMIN
    temperature: float = ROOM_TEMPERATURE
    layers: tuple[int, ...] | None = None
    diodes: bool = True
    diag: Tensor | None = None
    node_scale: Tensor | None = None
    rails: Tensor | None = None
    present: Tensor | None = None

    def __post_init__(self) -> None:
        if self.s.dim() != 2:
            raise ValueError(f"s must be [n_src, N], got shape {tuple(self.s.shape)}")
        n_free = self.s.shape[1]
        if tuple(self.a.shape) != (n_free, n_free):
            raise ValueError(f"a must be [{n_free}, {n_free}], got shape {tuple(self.a.shape)}")
        for name in ("is_", "n"):
            t = getattr(self, name)
            if tuple(t.shape) != (n_free, 2):
                raise ValueError(f"{name} must be [{n_free}, 2], got shape {tuple(t.shape)}")
        if bool((self.is_ <= 0).any()):
            raise ValueError(f"is_ must be > 0 A, got min {float(self.is_.min())!r}")
        if bool((self.n <= 0).any()):
            raise ValueError(f"n must be > 0, got min {float(self.n.min())!r}")
        if self.rs < 0:
            raise ValueError(f"rs must be >= 0 ohm, got {self.rs!r}")
        if self.gmin < 0:
            raise ValueError(f"gmin must be >= 0 S, got {self.gmin!r}")
        if self.layers is not None and (sum(self.layers) != n_free or min(self.layers) < 1):
            raise ValueError(f"layers must be positive sizes summing to {n_free}, got {self.layers!r}")
        for name in ("diag", "node_scale"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != (n_free,):
                raise ValueError(f"{name} must be [{n_free}], got shape {tuple(t.shape)}")
        if self.node_scale is not None and bool((self.node_scale <= 0).any()):
            raise ValueError("node_scale must be > 0")
        for name in ("rails", "present"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != (n_free, 2):
                raise ValueError(f"{name} must be [{n_free}, 2], got shape {tuple(t.shape)}")
        if self.rails is not None and not bool(torch.isfinite(self.rails).all()):
            raise ValueError("rails must be finite voltages")
        if self.present is not None and self.present.dtype != torch.bool:
            raise ValueError(f"present must be a bool tensor, got {self.present.dtype}")
        if self.out_index.dim() != 1 or (self.out_index.numel() and int(self.out_index.max()) >= n_free):
            raise ValueError(f"out_index must be 1-D indices < {n_free}, got {self.out_index.tolist()!r}")

    @property
    def n_free(self) -> int:
        """Number of free (unknown-voltage) nodes N."""
        return self.s.shape[1]

    @property
    def n_src(self) -> int:
        """Number of voltage sources."""
        return self.s.shape[0]

    def laplacian(self) -> Tensor:
        """Nodal conductance matrix of the linear part, ``diag(sum a + sum s) - a`` [N, N] (S), or
        ``diag(diag) - a`` when an explicit diagonal is given (scaled rows, see the module docstring)."""
        d = self.a.sum(1) + self.s.sum(0) if self.diag is None else self.diag
        return torch.diag(d) - self.a

    def rail_voltages(self) -> Tensor:
        """[N, 2] rail voltages (V): upper diode's cathode, lower diode's anode (``(+vb, -vb)`` by default)."""
        if self.rails is not None:
            return self.rails.to(self.s.dtype)
        base = torch.tensor([self.vb, -self.vb], dtype=self.s.dtype, device=self.s.device)
        return base.expand(self.n_free, 2)

    def diode_mask(self) -> Tensor | None:
        """[N, 2] 1.0 where a diode exists, 0.0 where not (``present``), in the circuit's dtype; None = all exist."""
        return None if self.present is None else self.present.to(self.s.dtype)

    def scale(self) -> Tensor:
        """KCL row weights ``w`` [N] (ones for a plain resistor network)."""
        if self.node_scale is None:
            return torch.ones(self.n_free, dtype=self.s.dtype, device=self.s.device)
        return self.node_scale


@dataclass(frozen=True)
class SolveResult:
    """Steady state of a batch: node voltages ``v`` [B, N] (V), Newton ``iterations`` [B] (long; the iteration at
    which that sample met both tolerances), final ``residual`` [B] (max |KCL residual|, A), ``converged`` [B]."""

    v: Tensor
    iterations: Tensor
    residual: Tensor
    converged: Tensor


def junction_current(u: Tensor, is_: Tensor, vte: Tensor, gmin: float) -> tuple[Tensor, Tensor]:
    """ngspice junction law with gmin: current ``j(u)`` (A) and conductance ``dj/du`` (S) at junction voltage u (V).

    ``j = Is (exp(u/vte) - 1) + gmin u`` for ``u >= -3 vte``, else ``-Is (1 + (3 vte / (e u))^3) + gmin u``.
    """
    fwd = u >= -3.0 * vte
    u_f = torch.where(fwd, u, -3.0 * vte)
    ex = torch.exp(torch.clamp(u_f / vte, max=700.0))
    u_r = torch.where(fwd, -3.0 * vte, u)
    arg = (3.0 * vte / (u_r * math.e)) ** 3
    i = torch.where(fwd, is_ * (ex - 1.0), -is_ * (1.0 + arg)) + gmin * u
    g = torch.where(fwd, is_ * ex / vte, is_ * 3.0 * arg / u_r) + gmin
    return i, g


def diode_current(
    vd: Tensor, is_: Tensor, vte: Tensor, rs: float, gmin: float, max_inner: int = 100
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Current through a junction in series with ``rs``: solves ``I = j(vd - I rs)``.

    Returns ``(I, g_eff, u, g_j)``: current (A), terminal conductance ``dI/dvd = g_j / (1 + rs g_j)`` (S), junction
    voltage u (V) and junction conductance g_j (S). ``rs = 0`` is the direct path; otherwise a safeguarded Newton
    (bisection on the bracket between 0 and vd, where ``u + rs j(u) - vd`` changes sign) runs to machine precision.
    """
    if rs == 0.0:
        i, g = junction_current(vd, is_, vte, gmin)
        return i, g, vd, g
    with torch.no_grad():
        zero = torch.zeros_like(vd)
        lo = torch.minimum(vd, zero)
        hi = torch.maximum(vd, zero)
        start = vte * torch.log1p(torch.clamp(vd, min=0.0) / (rs * is_))
        u = torch.where(vd > 0, torch.minimum(vd, start), vd)
        for _ in range(max_inner):
            i, g = junction_current(u, is_, vte, gmin)
            h = u + rs * i - vd
            lo = torch.where(h < 0, u, lo)
            hi = torch.where(h > 0, u, hi)
            un = u - h / (1.0 + rs * g)
            bad = (un < lo) | (un > hi) | ~torch.isfinite(un)
            un = torch.where(bad, 0.5 * (lo + hi), un)
            step = (un - u).abs().max()
            u = un
            if float(step) <= 1e-15:
                break
    i, g = junction_current(u, is_, vte, gmin)
    return i, g / (1.0 + rs * g), u, g


def pnjlim(vnew: Tensor, vold: Tensor, vte: Tensor, vcrit: Tensor) -> Tensor:
    """SPICE junction-voltage limiting (Nagel): a forward step beyond ``vcrit`` grows only logarithmically."""
    cond = (vnew > vcrit) & ((vnew - vold).abs() > 2.0 * vte)
    arg = 1.0 + (vnew - vold) / vte
    lim_pos = torch.where(arg > 0, vold + vte * torch.log(torch.clamp(arg, min=1e-300)), vcrit)
    lim_neg = vte * torch.log(torch.clamp(vnew / vte, min=1e-300))
    return torch.where(cond, torch.where(vold > 0, lim_pos, lim_neg), vnew)


def _node_diodes(circuit: Circuit, v: Tensor, vte: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Diode terminal voltages [B, N, 2] and (current leaving node, conductance, junction u, g_j) per node."""
    rails = circuit.rail_voltages()
    vd = torch.stack((v - rails[:, 0], rails[:, 1] - v), dim=-1)
    if not circuit.diodes:
        zero = torch.zeros_like(v)
        return vd, zero, zero, vd, torch.zeros_like(vd)
    i, g, u, gj = diode_current(vd, circuit.is_, vte, circuit.rs, circuit.gmin)
    mask = circuit.diode_mask()
    if mask is not None:
        i, g, gj = i * mask, g * mask, gj * mask
    i_node, g_node = i[..., 0] - i[..., 1], g[..., 0] + g[..., 1]
    if circuit.node_scale is not None:
        i_node, g_node = i_node * circuit.node_scale, g_node * circuit.node_scale
    return vd, i_node, g_node, u, gj


def _solve_dense(lap: Tensor, diag: Tensor, rhs: Tensor) -> Tensor:
    """Solve ``(lap + diag(diag)) x = rhs`` for a batch ([B, N]); Cholesky, LU if not positive definite."""
    jac = lap + torch.diag_embed(diag)
    chol, info = torch.linalg.cholesky_ex(jac)
    if bool((info == 0).all()):
        return torch.cholesky_solve(rhs.unsqueeze(-1), chol).squeeze(-1)
    return torch.linalg.solve(jac, rhs.unsqueeze(-1)).squeeze(-1)


def _layer_slices(layers: tuple[int, ...]) -> list[slice]:
    """Node-index slice of each layer of a layered network (layers in node order)."""
    out, start = [], 0
    for n in layers:
        out.append(slice(start, start + n))
        start += n
    return out


@functools.lru_cache(maxsize=64)
def _pivot_layer(layers: tuple[int, ...]) -> int:
    """The layer that :func:`_solve_layered` solves last (both ends are eliminated towards it): the one with the
    fewest multiply-adds, counting for every dense Schur block of n nodes an LU (n^3 / 3), its right-hand sides (n^2
    per column: the layer's own and one per node of the layer it is eliminated into) and the product that forms
    the next block. The chain's end layers are diagonal and cost nothing to eliminate."""
    m = len(layers)

    def cost(p: int) -> float:
        total = layers[p] ** 3 / 3.0 + layers[p] ** 2 if m > 1 else 0.0
        for k in list(range(p)) + list(range(p + 1, m)):
            nxt = layers[k + 1] if k < p else layers[k - 1]
            dense = k not in (0, m - 1)
            total += (layers[k] ** 3 / 3.0 + layers[k] ** 2 * (1 + nxt)) if dense else layers[k] * nxt
            total += layers[k] * nxt * nxt  # the Schur product into the next layer
        return total

    return min(range(m), key=cost)


def _schur_block(d: Tensor, terms: list[tuple[Tensor, Tensor]]) -> Tensor:
    """``diag(d) - sum W a`` [B, n, n] for the eliminated neighbours' terms ``(W [B, n, m], a [m, n])``, each
    product as one matrix product over the whole batch (rows ``(b, i)``), accumulated in place."""
    b, n = d.shape
    c = torch.empty(b, n, n, dtype=d.dtype, device=d.device)
    flat = c.view(b * n, n)
    for j, (w, a) in enumerate(terms):
        prod = w.reshape(b * n, w.shape[-1])
        if j == 0:
            torch.mm(prod, a, out=flat)
            flat.neg_()
        else:
            flat.addmm_(prod, a, alpha=-1.0)
    c.diagonal(dim1=-2, dim2=-1).add_(d)
    return c


def _eliminate(d: Tensor, r: Tensor, a: Tensor, terms: list[tuple[Tensor, Tensor]]
               ) -> tuple[Tensor | None, tuple[Tensor, Tensor], Tensor]:
    """One block-elimination step of layer k towards the next layer: with ``C = diag(d) - sum W a`` (``terms`` empty:
    C diagonal), ``w = C^-1 r``, ``Z = C^-1 a``. Returns ``([w | Z] or None, (Z^T, a), w a)``: what the
    back-substitution needs (None when C is diagonal: then ``x = (r + a x_next) / d`` directly), the next layer's
    Schur term ``a^T Z = Z^T a`` (C symmetric) as a factor pair, and the right-hand-side term it receives."""
    if not terms:
        return None, (a.T.contiguous() / d.unsqueeze(1), a), (r / d) @ a
    c = _schur_block(d, terms)
    sol = torch.linalg.solve(c, torch.cat((r.unsqueeze(-1), a.expand(r.shape[0], -1, -1)), -1))
    z = sol[..., 1:]
    return sol, (z.transpose(1, 2).contiguous(), a), sol[..., 0] @ a


def _solve_layered(lap: Tensor, diag: Tensor, rhs: Tensor, layers: tuple[int, ...]) -> Tensor:
    """Same system when the nodes form layers coupled only to neighbours (block-tridiagonal, diagonal blocks
    diagonal; ``lap`` symmetric): block elimination from both ends towards a pivot layer p (:func:`_pivot_layer`),
    ``C_k = D_k - A^T C_{k-1}^-1 A`` along each side (the end layers are diagonal, so a 1568-100-100-10 network
    has a single dense 100 x 100 solve per sample), then back-substitution ``x_k = C_k^-1 (r_k + A x_next)``."""
    d = torch.diagonal(lap) + diag
    sl = _layer_slices(layers)
    p = _pivot_layer(layers)
    back: dict[int, tuple[Tensor, Tensor, Tensor | None]] = {}  # layer -> (its rhs, coupling a, [w | Z] or None)
    pivot_terms: list[tuple[Tensor, Tensor]] = []
    r_p = rhs[:, sl[p]]
    for order, step in ((range(p), 1), (range(len(layers) - 1, p, -1), -1)):  # top side, bottom side
        terms: list[tuple[Tensor, Tensor]] = []
        r_in: Tensor | None = None
        for k in order:
            a = -lap[sl[k], sl[k + step]]  # coupling conductances of layer k to the next one towards p
            r = rhs[:, sl[k]] if r_in is None else rhs[:, sl[k]] + r_in
            wz, term, r_in = _eliminate(d[:, sl[k]], r, a, terms)
            back[k] = (r, a, wz)
            terms = [term]
        if r_in is not None:
            pivot_terms += terms
            r_p = r_p + r_in
    if pivot_terms:
        x_p = torch.linalg.solve(_schur_block(d[:, sl[p]], pivot_terms), r_p.unsqueeze(-1)).squeeze(-1)
    else:
        x_p = r_p / d[:, sl[p]]
    xs = {p: x_p}
    for k in list(range(p - 1, -1, -1)) + list(range(p + 1, len(layers))):
        nxt = xs[k + 1] if k < p else xs[k - 1]
        r, a, wz = back[k]
        if wz is None:  # diagonal block
            xs[k] = (r + nxt @ a.T) / d[:, sl[k]]
        else:
            xs[k] = wz[..., 0] + (wz[..., 1:] @ nxt.unsqueeze(-1)).squeeze(-1)
    return torch.cat([xs[k] for k in range(len(layers))], dim=1)


def _matvec(v: Tensor, lap: Tensor, layers: tuple[int, ...] | None) -> Tensor:
    """``v @ lap`` for a batch ``v`` [B, N]; for a layered ``lap`` from its diagonal and the blocks between adjacent
    layers only (a 1568-1000-10 network: ~2 % of the dense product's multiply-adds)."""
    if layers is None:
        return v @ lap
    out = v * torch.diagonal(lap)
    sl = _layer_slices(layers)
    for upper, lower in zip(sl[:-1], sl[1:]):
        out[:, lower] += v[:, upper] @ lap[upper, lower]
        out[:, upper] += v[:, lower] @ lap[lower, upper]
    return out


def _initial_guess(circuit: Circuit, lap: Tensor, beta_vec: Tensor, b: Tensor, vte: Tensor, lin) -> Tensor:
    """Start near the answer: the solution without diodes, with every node that would overdrive a diode pulled
    back to that diode's rail ``r`` plus ``nVt ln(1 + G_node |V_lin - r| / Is)`` (the drop at which the diode sinks
    the excess current)."""
    w = circuit.scale()
    mask = circuit.diode_mask()
    n_diodes = 2.0 if mask is None else mask.sum(1)
    gdiag = torch.diagonal(lap) + beta_vec + (circuit.gmin * n_diodes * w if circuit.diodes else 0.0)
    v_lin = lin(lap, (gdiag - torch.diagonal(lap)).expand_as(b), b)
    if not circuit.diodes:
        return v_lin
    rails = circuit.rail_voltages()
    g_node = (torch.diagonal(lap) / w).clamp(min=0.0)
    v = v_lin
    for col, sign in ((0, 1.0), (1, -1.0)):  # upper diode: V above its rail; lower: V below its rail
        over = (sign * (v_lin - rails[:, col])).clamp(min=0.0)
        if mask is not None:
            over = over * mask[:, col]
        drop = vte[:, col] * torch.log1p(g_node * over / circuit.is_[:, col])
        v = torch.where(over > 0, rails[:, col] + sign * torch.minimum(over, drop), v)
    return v


def solve(
    circuit: Circuit,
    v_src: Tensor,
    *,
    beta: float = 0.0,
    target: Tensor | None = None,
    i_inj: Tensor | None = None,
    v0: Tensor | None = None,
    tol_i: float = 1e-12,
    tol_v: float = 1e-9,
    max_iter: int = 200,
    differentiable: bool = False,
    check: bool = True,
) -> SolveResult:
    """Steady state of a batch of inputs (free phase for ``beta = 0`` and ``i_inj = None``, nudged otherwise).

    Args:
        circuit: the network (float64 tensors recommended; computation runs in ``circuit.s.dtype``).
        v_src: [B, n_src] source voltages (V).
        beta: nudging conductance (S) from each output node to its target voltage; may be negative.
        target: [B, n_out] target voltages (V), required when ``beta != 0``.
        i_inj: [B, N] currents injected into the free nodes (A).
        v0: [B, N] initial guess (V); zeros by default.
        tol_i: KCL residual tolerance (A). tol_v: Newton step tolerance (V). max_iter: Newton iteration limit.
        differentiable: attach the implicit derivative (one graph-carrying Newton step at the solution).
        check: raise ConvergenceError when some sample did not converge.
    """
    n_free, n_src = circuit.n_free, circuit.n_src
    if v_src.dim() != 2 or v_src.shape[1] != n_src:
        raise ValueError(f"v_src must be [B, {n_src}], got shape {tuple(v_src.shape)}")
    batch = v_src.shape[0]
    dtype, device = circuit.s.dtype, circuit.s.device
    if beta != 0.0:
        if target is None or tuple(target.shape) != (batch, circuit.out_index.numel()):
            got = None if target is None else tuple(target.shape)
            raise ValueError(f"target must be [{batch}, {circuit.out_index.numel()}] when beta != 0, got {got}")
    if i_inj is not None and tuple(i_inj.shape) != (batch, n_free):
        raise ValueError(f"i_inj must be [{batch}, {n_free}], got shape {tuple(i_inj.shape)}")
    if v0 is not None and tuple(v0.shape) != (batch, n_free):
        raise ValueError(f"v0 must be [{batch}, {n_free}], got shape {tuple(v0.shape)}")
    if not (tol_i > 0 and tol_v > 0 and max_iter >= 1):
        raise ValueError(f"tol_i, tol_v, max_iter must be positive, got {tol_i!r}, {tol_v!r}, {max_iter!r}")

    vte = circuit.n * thermal_voltage(circuit.temperature)
    vcrit = vte * torch.log(vte / (math.sqrt(2.0) * circuit.is_))
    w = circuit.scale().to(dtype)
    beta_vec = torch.zeros(n_free, dtype=dtype, device=device)
    if beta != 0.0:
        beta_vec[circuit.out_index] = beta * w[circuit.out_index]

    def source_current(lap_s: Tensor, vs: Tensor, tgt: Tensor | None, inj: Tensor | None) -> Tensor:
        b = vs.to(dtype) @ lap_s
        if beta != 0.0 and tgt is not None:
            b = b.index_add(1, circuit.out_index, beta_vec[circuit.out_index] * tgt.to(dtype))
        if inj is not None:
            b = b + inj.to(dtype) * w
        return b

    layers = circuit.layers
    has = circuit.present if circuit.present is not None else torch.ones(n_free, 2, dtype=torch.bool, device=device)

    def lin(lap_: Tensor, diag_: Tensor, rhs_: Tensor) -> Tensor:
        if layers is None:
            return _solve_dense(lap_, diag_, rhs_)
        return _solve_layered(lap_, diag_, rhs_, layers)

    with torch.no_grad():
        lap = circuit.laplacian().detach()
        b = source_current(circuit.s.detach(), v_src.detach(), None if target is None else target.detach(),
                           None if i_inj is None else i_inj.detach())
        v = _initial_guess(circuit, lap, beta_vec, b, vte, lin) if v0 is None else v0.detach().to(dtype).clone()
        its = torch.full((batch,), -1, dtype=torch.long, device=device)
        last_step = torch.full((batch,), math.inf, dtype=dtype, device=device)
        res = torch.full((batch,), math.inf, dtype=dtype, device=device)
        for it in range(max_iter + 1):
            _, i_d, g_d, u, gj = _node_diodes(circuit, v, vte)
            f = _matvec(v, lap, layers) + beta_vec * v + i_d - b
            res = (f / w).abs().amax(dim=1)
            done = (res < tol_i) & (last_step < tol_v)
            its = torch.where(done & (its < 0), torch.full_like(its, it), its)
            if bool((its >= 0).all()) or it == max_iter:
                break
            # Newton step only for the samples still iterating (a converged sample keeps its state: in a batch
            # whose samples need 5-15 iterations the linear solves are the cost, ~40 % of them saved)
            active = its < 0
            if bool(active.all()):
                dv = -lin(lap, g_d + beta_vec, f)
            else:
                dv = torch.zeros_like(v)
                dv[active] = -lin(lap, (g_d + beta_vec)[active], f[active])
            if circuit.diodes:  # SPICE limiting of each junction: predicted junction step du = dvd / (1 + rs g_j)
                k = 1.0 + circuit.rs * gj
                u0 = pnjlim(u[..., 0] + dv / k[..., 0], u[..., 0], vte[:, 0], vcrit[:, 0])
                dv = torch.where(has[:, 0], (u0 - u[..., 0]) * k[..., 0], dv)
                u1 = pnjlim(u[..., 1] - dv / k[..., 1], u[..., 1], vte[:, 1], vcrit[:, 1])
                dv = torch.where(has[:, 1], -(u1 - u[..., 1]) * k[..., 1], dv)
            last_step = dv.abs().amax(dim=1)
            v = v + dv
        converged = its >= 0
        if check and not bool(converged.all()):
            bad = int((~converged).nonzero()[0, 0])
            raise ConvergenceError(
                f"resistive solve: {int((~converged).sum())}/{batch} samples did not converge in {max_iter} Newton "
                f"iterations (sample {bad}: residual {float(res[bad]):.3g} A)"
            )
        its = torch.where(converged, its, torch.full_like(its, max_iter))

    if differentiable:
        lap_g = circuit.laplacian()
        b_g = source_current(circuit.s, v_src, target, i_inj)
        _, i_d, g_d, _, _ = _node_diodes(circuit, v, vte)
        f = v @ lap_g + beta_vec * v + i_d - b_g
        v = v - lin(lap, (g_d + beta_vec).detach(), f)
    return SolveResult(v=v, iterations=its, residual=res, converged=converged)
