"""Batched block (chromatic) Gibbs sampling of a sparse Boltzmann machine of p-bits, and exact enumeration.

Model. Spins s_i in {-1, +1}, i = 0..N-1, symmetric couplings J (zero diagonal) on the edges of a sparse graph,
biases b, inverse temperature beta:

    E(s) = -( sum_{i<j} J_ij s_i s_j + sum_i b_i s_i ),      P(s) = exp(-beta E(s)) / Z.

The conditional of one spin given the rest is the p-bit law

    P(s_i = +1 | s_-i) = sigmoid(x_i),    x_i = 2 beta (b_i + sum_j J_ij s_j),

(thrml's convention). Nodes of one colour of a proper colouring are conditionally independent, so block Gibbs
updates a whole colour at once; one *sweep* updates every colour once, in colour order.

Hardware non-idealities (optional). A fabricated p-bit i does not compute sigmoid(x_i) exactly: its transition
sits at an offset and its slope differs (see ``PBit.gibbs_nonideality``). The sampler then uses

    P(s_i = +1 | s_-i) = sigmoid((x_i - offset_i) / gain_i),

with ``offset`` (dimensionless, in units of the ideal logit) and ``gain`` (> 0, 1 = ideal) of shape [N] (one chip
for all chains) or [N, chains] (a different chip per chain). With one common gain g and any offsets this is
exactly the Boltzmann machine with beta' = beta / g and b'_i = b_i - offset_i / (2 beta); with per-cell gains
the chain is no longer reversible and its stationary law is whatever the hardware would produce.

Clamping: a subset of nodes can be held at given values per chain (conditional sampling, e.g. the data and
conditioning nodes of a DTM step). Their rows of the state are never written.

Implementation (fast path measured, then tuned; speed in the README, "Benchmarks"): states are node-major
[N, chains]; nodes are permuted internally so that each colour's free nodes form a contiguous block of rows; the logit
of a block is ONE ``torch.sparse.mm`` of that block's CSR rows with the working state, whose extra rows hold a
constant +1 (the bias column, pre-scaled 2 beta b / gain) and, with 16-bit uniforms, the logistic noise of each free node
(a -1 column): s_i = sign(x_i - L_i) with L_i = logit((V_i + 1/2) / 2^16), V_i uniform on {0..65535}, drawn four
per 64-bit word of one ``random_`` call per sweep and mapped through a 65536-entry table. This draws s_i = +1
with probability round(2^16 p_i) / 2^16 (|error| <= 2^-17 = 7.6e-6 on every conditional; ``uniform_bits=24``
uses float32 ``torch.rand`` and sign(sigmoid(x) - u) instead, ~1.6x slower). Random numbers come from a
caller-supplied ``torch.Generator`` (same seed -> same samples).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Iterator, cast

import numpy as np
import scipy.sparse as sp
import torch

from .graph import SparseGraph, coupling_matrix

__all__ = [
    "BlockGibbsSampler",
    "Moments",
    "ExactResult",
    "exact_enumeration",
    "make_generator",
    "state_index",
    "logistic_noise_table",
    "sparse_from_dense",
]

MAX_EXACT_SPINS = 20


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(int(seed))
    return g


@dataclass
class Moments:
    """Sample moments of a Boltzmann machine.

    Attributes:
        mean: <s_i>, [N] (or [N, chains] when per chain), float64 on CPU.
        edge_corr: <s_i s_j> for each graph edge (i, j), [E] (or [E, chains]).
        n_samples: recorded sweeps per chain.
        n_chains: chains.
        state: the final state [N, chains] (original node order), to continue the chains.
    """

    mean: torch.Tensor
    edge_corr: torch.Tensor
    n_samples: int
    n_chains: int
    state: torch.Tensor


@dataclass
class ExactResult:
    """Exact distribution of a small Boltzmann machine by enumeration of all 2^N states.

    State k has spin i = +1 when bit i of k is set (``state_index`` computes k from a state).

    Attributes:
        states: [2^N, N] float64 spins.
        probs: [2^N] float64 probabilities.
        mean: [N] exact <s_i>.
        edge_corr: [E] exact <s_i s_j> on the given edges.
        log_z: log partition function (of exp(-beta E)).
    """

    states: np.ndarray
    probs: np.ndarray
    mean: np.ndarray
    edge_corr: np.ndarray
    log_z: float


def _check_model(n_nodes: int, edges: np.ndarray, weights: np.ndarray, biases: np.ndarray, beta: float) -> None:
    if weights.shape != (edges.shape[0],):
        raise ValueError(f"weights: expected shape ({edges.shape[0]},), got {weights.shape}")
    if biases.shape != (n_nodes,):
        raise ValueError(f"biases: expected shape ({n_nodes},), got {biases.shape}")
    if not (np.all(np.isfinite(weights)) and np.all(np.isfinite(biases))):
        raise ValueError("weights/biases: non-finite value")
    if not np.isfinite(beta) or beta < 0:
        raise ValueError(f"beta: expected a finite value >= 0, got {beta}")


def exact_enumeration(
    n_nodes: int,
    edges: np.ndarray,
    weights: np.ndarray | torch.Tensor,
    biases: np.ndarray | torch.Tensor,
    beta: float = 1.0,
) -> ExactResult:
    """Exact Boltzmann distribution P(s) = exp(beta (sum_e w_e s_i s_j + sum_i b_i s_i)) / Z for N <= 20 spins."""
    if not 1 <= n_nodes <= MAX_EXACT_SPINS:
        raise ValueError(f"n_nodes: exact enumeration needs 1 <= N <= {MAX_EXACT_SPINS}, got {n_nodes}")
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    w = np.asarray(torch.as_tensor(weights).detach().cpu().double() if isinstance(weights, torch.Tensor)
                   else weights, dtype=np.float64).reshape(-1)
    b = np.asarray(torch.as_tensor(biases).detach().cpu().double() if isinstance(biases, torch.Tensor)
                   else biases, dtype=np.float64).reshape(-1)
    _check_model(n_nodes, edges, w, b, beta)
    k = np.arange(2 ** n_nodes, dtype=np.int64)
    states = ((k[:, None] >> np.arange(n_nodes)) & 1).astype(np.float64) * 2.0 - 1.0
    pair = states[:, edges[:, 0]] * states[:, edges[:, 1]]
    log_w = beta * (pair @ w + states @ b)
    m = log_w.max()
    p = np.exp(log_w - m)
    z = p.sum()
    p /= z
    return ExactResult(states=states, probs=p, mean=p @ states, edge_corr=p @ pair, log_z=float(m + np.log(z)))


def state_index(state: torch.Tensor) -> torch.Tensor:
    """Index k = sum_i [s_i = +1] 2^i of node-major states [N, chains] -> [chains] int64 (N <= 62)."""
    if state.dim() != 2 or state.shape[0] > 62:
        raise ValueError(f"state: expected [N <= 62, chains], got {tuple(state.shape)}")
    pow2 = torch.pow(2, torch.arange(state.shape[0], device=state.device, dtype=torch.int64))
    return ((state > 0).to(torch.int64) * pow2[:, None]).sum(0)


@functools.lru_cache(maxsize=8)
def logistic_noise_table(device: str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Logistic quantiles L[V] = logit((V + 1/2) / 2^16) for the 16-bit codes V = 0..65535 (a constant; cached).

    With V uniform, P(L[V] < x) = round(2^16 sigmoid(x)) / 2^16: comparing a logit with L[V] draws a p-bit.
    """
    v = (torch.arange(65536, dtype=torch.float64) + 0.5) / 65536.0
    return torch.logit(v).to(torch.device(device), dtype)


def _as_f64(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


class BlockGibbsSampler:
    """Block Gibbs sampler of the Boltzmann machine on ``graph`` (see module docstring for the law).

    Args:
        graph: the sparse graph and its proper colouring.
        weights: coupling J_e per edge of ``graph.edges`` [E].
        biases: b_i [N].
        beta: inverse temperature (>= 0).
        clamped: nodes held fixed: a bool mask [N] or an index array; ``None`` for none.
        offset: p-bit offsets [N] or [N, chains] (dimensionless logit units), ``None`` = 0.
        gain: p-bit gains (> 0) [N] or [N, chains], ``None`` = 1.
        device: torch device for the state and the matrices.
        dtype: float32 (default, fast) or float64.
        uniform_bits: resolution of the uniforms each spin is compared with: 16 (default, fast: four per
            64-bit generator word; every conditional probability p is realised as round(2^16 p) / 2^16, an
            absolute error <= 2^-17 = 7.6e-6) or 24 (``torch.rand`` in float32, error < 2^-24).
    """

    def __init__(
        self,
        graph: SparseGraph,
        weights: np.ndarray | torch.Tensor,
        biases: np.ndarray | torch.Tensor,
        beta: float = 1.0,
        clamped: np.ndarray | torch.Tensor | None = None,
        offset: torch.Tensor | None = None,
        gain: torch.Tensor | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        uniform_bits: int = 16,
    ) -> None:
        if uniform_bits not in (16, 24):
            raise ValueError(f"uniform_bits: expected 16 or 24, got {uniform_bits}")
        self.uniform_bits = uniform_bits
        self._logit_table: torch.Tensor | None = None
        self.graph = graph
        self.device = torch.device(device)
        self.dtype = dtype
        n = graph.n_nodes
        mask = np.zeros(n, dtype=bool)
        if clamped is not None:
            c = clamped.detach().cpu().numpy() if isinstance(clamped, torch.Tensor) else np.asarray(clamped)
            if c.dtype == bool:
                if c.shape != (n,):
                    raise ValueError(f"clamped: bool mask must have shape ({n},), got {c.shape}")
                mask = c.copy()
            else:
                c = c.astype(np.int64).reshape(-1)
                if c.size and (c.min() < 0 or c.max() >= n):
                    raise ValueError(f"clamped: node index out of range [0, {n})")
                mask[c] = True
        self.clamped_mask = mask
        # node order: free nodes of colour 0, colour 1, ..., then clamped nodes
        order, bounds = [], []
        start = 0
        for colour in range(graph.n_colours):
            idx = np.flatnonzero((graph.colours == colour) & ~mask)
            if idx.size:
                order.append(idx)
                bounds.append((start, start + idx.size))
                start += idx.size
        self.n_free = start
        order.append(np.flatnonzero(mask))
        perm = np.concatenate(order).astype(np.int64)
        inv = np.empty(n, dtype=np.int64)
        inv[perm] = np.arange(n)
        self._perm_np, self._inv_np, self._bounds = perm, inv, bounds
        self.perm = torch.from_numpy(perm).to(self.device)
        self.inv_perm = torch.from_numpy(inv).to(self.device)
        # edge endpoints in permuted numbering (for moments)
        e = graph.edges
        self._ei = torch.from_numpy(inv[e[:, 0]]).to(self.device)
        self._ej = torch.from_numpy(inv[e[:, 1]]).to(self.device)
        # permuted CSR structure of J with, for each stored entry, the index of its edge
        eidx = np.arange(graph.n_edges, dtype=np.float64) + 1.0  # +1 so that no entry is an explicit zero
        jp = coupling_matrix(n, inv[e], eidx)  # symmetric, permuted numbering, data = edge id + 1
        self._csr_indptr = jp.indptr.astype(np.int64)
        self._csr_indices = jp.indices.astype(np.int64)
        self._csr_edge = (jp.data - 1.0).round().astype(np.int64)
        self.beta = float(beta)
        self.offset = self._node_tensor(offset, "offset")
        self.gain = self._node_tensor(gain, "gain")
        if self.gain is not None and torch.any(self.gain <= 0):
            raise ValueError(f"gain: expected > 0, got min {self.gain.min().item():.3g}")
        self.set_parameters(weights, biases, beta)

    # ------------------------------------------------------------------ parameters
    def _node_tensor(self, x: torch.Tensor | None, name: str) -> torch.Tensor | None:
        if x is None:
            return None
        t = torch.as_tensor(x, dtype=torch.float64).detach().cpu()
        n = self.graph.n_nodes
        if t.dim() not in (1, 2) or t.shape[0] != n:
            raise ValueError(f"{name}: expected shape [{n}] or [{n}, chains], got {tuple(t.shape)}")
        if not torch.all(torch.isfinite(t)):
            raise ValueError(f"{name}: non-finite value")
        return t

    def set_parameters(
        self,
        weights: np.ndarray | torch.Tensor,
        biases: np.ndarray | torch.Tensor,
        beta: float | None = None,
        chain_bias: torch.Tensor | None = None,
        nonideality: tuple[torch.Tensor | None, torch.Tensor | None] | None = None,
    ) -> None:
        """Replace J (per edge [E]), b [N] and optionally beta, keeping the graph and the clamping.

        ``chain_bias`` [N, chains] adds a per-chain bias (same units as b) to every node: the field becomes
        b_i + chain_bias[i, c] + sum_j J_ij s_j in chain c (conditioning inputs, e.g. x_t in a DTM step).
        ``nonideality`` = (offset, gain) replaces the p-bit non-idealities (e.g. a fresh chip); ``None`` keeps them.
        """
        if nonideality is not None:
            offset, gain = (self._node_tensor(t, name) for t, name in zip(nonideality, ("offset", "gain")))
            if gain is not None and torch.any(gain <= 0):
                raise ValueError(f"gain: expected > 0, got min {gain.min().item():.3g}")
            self.offset, self.gain = offset, gain
        w = _as_f64(weights, "weights").reshape(-1)
        b = _as_f64(biases, "biases").reshape(-1)
        beta = self.beta if beta is None else float(beta)
        _check_model(self.graph.n_nodes, self.graph.edges, w, b, beta)
        if chain_bias is not None:
            chain_bias = torch.as_tensor(chain_bias, dtype=torch.float64).detach().cpu()
            if chain_bias.dim() != 2 or chain_bias.shape[0] != self.graph.n_nodes:
                raise ValueError(f"chain_bias: expected [{self.graph.n_nodes}, chains], got {tuple(chain_bias.shape)}")
            if not torch.all(torch.isfinite(chain_bias)):
                raise ValueError("chain_bias: non-finite value")
        self.chain_bias = chain_bias
        self.beta = beta
        self.weights_np, self.biases_np = w, b
        perm = self._perm_np
        # per-node (permuted) scale 2 beta / gain and constant (2 beta b - offset) / gain
        row_gain = None
        if self.gain is not None and self.gain.dim() == 1:
            row_gain = self.gain.numpy()[perm]
        scale = 2.0 * beta / (row_gain if row_gain is not None else 1.0)
        vals = w[self._csr_edge] * np.repeat(np.broadcast_to(scale, (len(perm),)), np.diff(self._csr_indptr))
        tperm = torch.from_numpy(perm)

        def col(t: torch.Tensor) -> torch.Tensor:  # [N] -> [N, 1]; [N, chains] unchanged; permuted rows
            t = t[tperm]
            return t[:, None] if t.dim() == 1 else t

        const_t = torch.from_numpy(2.0 * beta * b[perm])[:, None]  # [N, 1]
        if chain_bias is not None:
            const_t = const_t + 2.0 * beta * chain_bias[tperm]  # [N, chains]
        if self.offset is not None:
            const_t = const_t - col(self.offset)
        if self.gain is not None:
            const_t = const_t / col(self.gain)
        self._inv_gain_chain = None
        if self.gain is not None and self.gain.dim() == 2:
            # per-chain gains cannot be folded into the CSR values: multiply the field by 1 / gain [N, chains]
            self._inv_gain_chain = (1.0 / col(self.gain)).to(self.device, self.dtype)
        # a [N, 1] constant rides in the sparse product as an extra column against a state row fixed at +1;
        # with 16-bit uniforms the logistic noise of node i rides in as a -1 entry against a noise row N+1+i
        self._folded = self._inv_gain_chain is None and const_t.shape[1] == 1
        self._noise_in_mat = self._folded and self.uniform_bits == 16
        self._const = const_t.to(self.device, self.dtype)  # [N, 1] or [N, chains]
        n = self.graph.n_nodes
        width = n + 1 + (self.n_free if self._noise_in_mat else 0)
        self._state_rows = width
        self._blocks = []
        for lo, hi in self._bounds:
            p0, p1 = self._csr_indptr[lo], self._csr_indptr[hi]
            crow = self._csr_indptr[lo:hi + 1] - p0
            cols = self._csr_indices[p0:p1]
            val = vals[p0:p1]
            if self._folded:
                r = np.arange(hi - lo)
                rows = [np.repeat(r, np.diff(crow)), r]
                cols = [cols, np.full(hi - lo, n)]
                val = [val, const_t[lo:hi, 0].numpy()]
                if self._noise_in_mat:
                    rows.append(r)
                    cols.append(n + 1 + lo + r)
                    val.append(-np.ones(hi - lo))
                blk = sp.csr_matrix((np.concatenate(val), (np.concatenate(rows), np.concatenate(cols))),
                                    shape=(hi - lo, width))
                blk.sort_indices()
                crow, cols, val = blk.indptr, blk.indices, blk.data
            with warnings.catch_warnings():  # "CSR support is in beta state"
                warnings.simplefilter("ignore", UserWarning)
                mat = torch.sparse_csr_tensor(torch.from_numpy(crow.astype(np.int64)),
                                              torch.from_numpy(cols.astype(np.int64)), torch.from_numpy(val),
                                              size=(hi - lo, width), dtype=self.dtype, device=self.device,
                                              check_invariants=False)
            self._blocks.append((lo, hi, mat, self._const[lo:hi]))

    @property
    def n_nodes(self) -> int:
        return self.graph.n_nodes

    def _check_chains(self, n_chains: int) -> None:
        for name, t in (("offset", self.offset), ("gain", self.gain), ("chain_bias", self.chain_bias)):
            if t is not None and t.dim() == 2 and t.shape[1] != n_chains:
                raise ValueError(f"{name}: has {t.shape[1]} chains, state has {n_chains}")

    # ------------------------------------------------------------------ states
    def random_state(
        self,
        n_chains: int,
        generator: torch.Generator,
        clamp_values: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Uniformly random spins [N, chains] (original node order) with clamped rows set to ``clamp_values``.

        ``clamp_values``: [n_clamped] or [n_clamped, chains] in {-1, +1}, in ascending node order of the clamped
        nodes; required when the sampler has clamped nodes.
        """
        if n_chains < 1:
            raise ValueError(f"n_chains: expected >= 1, got {n_chains}")
        self._check_chains(n_chains)
        u = torch.rand((self.n_nodes, n_chains), generator=generator, device=self.device, dtype=self.dtype)
        s = torch.ones_like(u).copysign_(u - 0.5)
        return self.clamp(s, clamp_values)

    def clamp(self, state: torch.Tensor, clamp_values: torch.Tensor | None) -> torch.Tensor:
        """Return ``state`` with the clamped nodes (ascending order) set to ``clamp_values`` (in place)."""
        idx = np.flatnonzero(self.clamped_mask)
        if idx.size == 0:
            if clamp_values is not None and torch.as_tensor(clamp_values).numel():
                raise ValueError("clamp_values: given but the sampler has no clamped nodes")
            return state
        if clamp_values is None:
            raise ValueError(f"clamp_values: required for the {idx.size} clamped nodes")
        cv = torch.as_tensor(clamp_values, dtype=self.dtype, device=self.device)
        if cv.shape[0] != idx.size or cv.dim() > 2:
            raise ValueError(f"clamp_values: expected [{idx.size}] or [{idx.size}, chains], got {tuple(cv.shape)}")
        if torch.any(cv.abs() != 1):
            raise ValueError("clamp_values: expected spins in {-1, +1}")
        state[torch.from_numpy(idx).to(self.device)] = cv if cv.dim() == 2 else cv[:, None].expand(-1, state.shape[1])
        return state

    def _to_perm(self, state: torch.Tensor) -> torch.Tensor:
        """Permuted working state [rows, chains]: N spins, the constant +1 node, then (16-bit fast path) one
        noise row per free node."""
        if state.dim() != 2 or state.shape[0] != self.n_nodes:
            raise ValueError(f"state: expected [{self.n_nodes}, chains], got {tuple(state.shape)}")
        self._check_chains(state.shape[1])
        s = torch.ones((self._state_rows, state.shape[1]), dtype=self.dtype, device=self.device)
        torch.index_select(state.to(self.device, self.dtype), 0, self.perm, out=s[:self.n_nodes])
        return s

    def _from_perm(self, s: torch.Tensor) -> torch.Tensor:
        return s.index_select(0, self.inv_perm)

    # ------------------------------------------------------------------ sweeps
    def _buffers(self, s: torch.Tensor) -> dict:
        n_free, n_chains = self.n_free, s.shape[1]
        bufs: dict = {"ones": torch.ones((n_free, n_chains), dtype=self.dtype, device=self.device)}
        if self.uniform_bits == 16:
            words = (n_free * n_chains + 3) // 4
            r = torch.empty(words, dtype=torch.int64, device=self.device)
            bufs["words"] = r
            bufs["u16"] = r.view(torch.uint16)[:n_free * n_chains]
            bufs["idx"] = torch.empty(n_free * n_chains, dtype=torch.int32, device=self.device)
            if self._noise_in_mat:
                bufs["noise"] = s[self.n_nodes + 1:]
            else:
                bufs["noise"] = torch.empty((n_free, n_chains), dtype=self.dtype, device=self.device)
            if self._logit_table is None:
                self._logit_table = logistic_noise_table(str(self.device), self.dtype)
        else:
            bufs["u"] = torch.empty((n_free, n_chains), dtype=self.dtype, device=self.device)
        return bufs

    def _sweep(self, s: torch.Tensor, generator: torch.Generator, bufs: dict) -> None:
        """One sweep in place on the permuted working state ``s`` (see ``_to_perm``).

        16-bit path: V uniform on {0..65535} (four per 64-bit generator word, one generator call per sweep),
        logistic noise L = logit((V + 1/2) / 2^16) from a table, s_i = sign(x_i - L). Since P(L < x) =
        P(V < 2^16 sigmoid(x) - 1/2), every conditional is realised as round(2^16 p) / 2^16.
        24-bit path: s_i = sign(sigmoid(x_i) - u), u = torch.rand (float32).
        """
        inv_gain, folded, ones = self._inv_gain_chain, self._folded, bufs["ones"]
        fast = self.uniform_bits == 16
        if fast:
            bufs["words"].random_(-(2 ** 63), None, generator=generator)
            bufs["idx"].copy_(bufs["u16"])
            noise = bufs["noise"]
            table = cast(torch.Tensor, self._logit_table)  # built by _buffers on this 16-bit path
            torch.index_select(table, 0, bufs["idx"], out=noise.view(-1))
        else:
            u = bufs["u"]
            torch.rand(u.shape, generator=generator, out=u)
        for lo, hi, mat, const in self._blocks:
            x = torch.sparse.mm(mat, s)  # [n_c, chains]: (2 beta / gain) sum_j J_ij s_j (+ const) (- noise)
            if not self._noise_in_mat:
                if inv_gain is not None:
                    x.mul_(inv_gain[lo:hi])
                if not folded:
                    x.add_(const)
                if fast:
                    x.sub_(noise[lo:hi])
                else:
                    x.sigmoid_().sub_(u[lo:hi])
            torch.copysign(ones[lo:hi], x, out=s[lo:hi])

    def run(self, state: torch.Tensor, n_sweeps: int, generator: torch.Generator) -> torch.Tensor:
        """Run ``n_sweeps`` sweeps from ``state`` [N, chains] and return the new state (a new tensor)."""
        if n_sweeps < 0:
            raise ValueError(f"n_sweeps: expected >= 0, got {n_sweeps}")
        s = self._to_perm(state)
        bufs = self._buffers(s)
        for _ in range(n_sweeps):
            self._sweep(s, generator, bufs)
        return self._from_perm(s)

    def sample(
        self,
        state: torch.Tensor,
        n_samples: int,
        generator: torch.Generator,
        burn_in: int = 0,
        thin: int = 1,
    ) -> torch.Tensor:
        """Samples [n_samples, N, chains] recorded every ``thin`` sweeps after ``burn_in`` sweeps."""
        self._check_schedule(n_samples, burn_in, thin)
        s = self._to_perm(state)
        out = torch.empty((n_samples, self.n_nodes, s.shape[1]), dtype=s.dtype, device=s.device)
        for k in self._recorded(s, generator, n_samples, burn_in, thin):
            out[k] = s[:self.n_nodes]
        return out.index_select(1, self.inv_perm)

    @staticmethod
    def _check_schedule(n_samples: int, burn_in: int, thin: int) -> None:
        if n_samples < 1:
            raise ValueError(f"n_samples: expected >= 1, got {n_samples}")
        if burn_in < 0:
            raise ValueError(f"burn_in: expected >= 0, got {burn_in}")
        if thin < 1:
            raise ValueError(f"thin: expected >= 1, got {thin}")

    def _recorded(self, s: torch.Tensor, generator: torch.Generator, n_samples: int, burn_in: int,
                  thin: int) -> Iterator[int]:
        """Sweep the permuted state ``s`` in place: ``burn_in`` sweeps, then yield k = 0..n_samples-1 after every
        ``thin`` further sweeps (the caller records ``s`` at each yield)."""
        bufs = self._buffers(s)
        for _ in range(burn_in):
            self._sweep(s, generator, bufs)
        for k in range(n_samples):
            for _ in range(thin):
                self._sweep(s, generator, bufs)
            yield k

    def moments(
        self,
        state: torch.Tensor,
        n_samples: int,
        generator: torch.Generator,
        burn_in: int = 0,
        thin: int = 1,
        per_chain: bool = False,
    ) -> Moments:
        """Estimate <s_i> and <s_i s_j> (graph edges) over recorded sweeps (and chains unless ``per_chain``).

        Accumulates in float64; clamped nodes contribute their clamped values.
        """
        self._check_schedule(n_samples, burn_in, thin)
        s = self._to_perm(state)
        # the sums start as float64 copies of the first recorded sweep (no zero-filled accumulators: with one
        # recorded sweep, the DTM trainer's case, the moments are the state itself)
        acc_s: torch.Tensor | None = None
        acc_e: torch.Tensor | None = None
        for _ in self._recorded(s, generator, n_samples, burn_in, thin):
            node, edge = s[:self.n_nodes], s[self._ei] * s[self._ej]
            acc_s = node.to(torch.float64, copy=True) if acc_s is None else acc_s.add_(node)  # never the state
            acc_e = edge.to(torch.float64) if acc_e is None else acc_e.add_(edge)
        assert acc_s is not None and acc_e is not None  # n_samples >= 1 (checked above)
        mean = acc_s.index_select(0, self.inv_perm) / n_samples
        corr = acc_e / n_samples
        if not per_chain:
            mean, corr = mean.mean(1), corr.mean(1)
        return Moments(mean=mean.cpu(), edge_corr=corr.cpu(), n_samples=n_samples, n_chains=s.shape[1],
                       state=self._from_perm(s))

    def histogram(
        self,
        state: torch.Tensor,
        n_samples: int,
        generator: torch.Generator,
        burn_in: int = 0,
        thin: int = 1,
        chain_groups: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Counts of each of the 2^N states (N <= 20) over recorded sweeps, [chain_groups, 2^N] int64.

        Chains are split into ``chain_groups`` equal contiguous groups (independent replicas, for honest
        standard errors that include autocorrelation). Returns ``(counts, final_state)``.
        """
        n = self.n_nodes
        if n > MAX_EXACT_SPINS:
            raise ValueError(f"state: histogram needs N <= {MAX_EXACT_SPINS}, got {n}")
        self._check_schedule(n_samples, burn_in, thin)
        chains = state.shape[1]
        if chain_groups < 1 or chains % chain_groups:
            raise ValueError(f"chain_groups: must divide the {chains} chains, got {chain_groups}")
        s = self._to_perm(state)
        pow2 = torch.pow(2, torch.from_numpy(self._perm_np)).to(self.device)  # 2^(original index) per row
        grp = (torch.arange(chains, device=self.device) // (chains // chain_groups)) * (2 ** n)
        counts = torch.zeros(chain_groups * 2 ** n, dtype=torch.int64, device=self.device)
        for _ in self._recorded(s, generator, n_samples, burn_in, thin):
            k = ((s[:n] > 0).to(torch.int64) * pow2[:, None]).sum(0) + grp
            counts += torch.bincount(k, minlength=chain_groups * 2 ** n)
        return counts.view(chain_groups, 2 ** n).cpu(), self._from_perm(s)

    def dense_coupling(self) -> np.ndarray:
        """J as a dense float64 [N, N] array in the original node order (for checks)."""
        return coupling_matrix(self.n_nodes, self.graph.edges, self.weights_np).toarray()


def sparse_from_dense(j: np.ndarray, tol: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Edges [E, 2] (i < j) and weights [E] of the entries of a symmetric dense J with |J_ij| > tol."""
    j = np.asarray(j, dtype=np.float64)
    if j.ndim != 2 or j.shape[0] != j.shape[1] or not np.allclose(j, j.T):
        raise ValueError(f"j: expected a symmetric square matrix, got shape {j.shape}")
    iu = np.triu_indices(j.shape[0], 1)
    keep = np.abs(j[iu]) > tol
    edges = np.stack([iu[0][keep], iu[1][keep]], axis=1).astype(np.int64)
    return edges, j[iu][keep]
