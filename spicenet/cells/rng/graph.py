"""Sparse local graphs for Boltzmann machines of p-bits: 2-D grids, colourings, CSR coupling matrices.

A hardware p-bit array only wires each cell to a few neighbours on the die, so the Boltzmann machines it can
host are sparse local graphs. Nodes of an ``L x L`` grid are numbered row-major, ``node = y * L + x``.

Neighbourhood patterns (each offset ``(dy, dx)`` is taken with both signs, so ``degree = 2 * len(offsets)``):

- ``"moore"``: the nearest offsets by Euclidean distance: degree 4 is the von Neumann neighbourhood, 8 the
  Moore (king's move) neighbourhood, 12 adds the axial 2-steps, 20 the knight's moves, 24 the full 5x5 box.
- ``"bipartite"``: only offsets with odd ``|dy| + |dx|``, in the style of the DTCA grids (Extropic's denoising
  thermodynamic models use bipartite local grids so that two colour blocks update in parallel); any such
  pattern is 2-colourable by the parity of ``y + x`` (on a torus when ``L`` is even). Degree 4 is the von
  Neumann neighbourhood, 8 adds the two rotation-related offsets (1, 2) and (2, -1), 12 all four offsets of
  length sqrt(5), 16 adds (0, 3) and (3, 0), and so on.

Colouring: a proper colouring (no edge inside a colour) lets block Gibbs sampling update a whole colour at once.
``colour_graph`` returns the exact 2-colouring when the graph is bipartite, otherwise the best of a greedy
(largest-degree-first) colouring and, for grids, the lattice colourings ``c = (a*y + b*x) mod k``.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

__all__ = [
    "SparseGraph",
    "neighbourhood_offsets",
    "grid_graph",
    "graph_from_edges",
    "two_colouring",
    "greedy_colouring",
    "colour_graph",
    "check_colouring",
    "coupling_matrix",
    "coupling_csr",
    "random_couplings",
]

_PATTERNS = ("moore", "bipartite")


@dataclass(frozen=True)
class SparseGraph:
    """An undirected simple graph with a proper colouring.

    Attributes:
        n_nodes: number of nodes N.
        edges: int64 array [E, 2], each undirected edge once with ``edges[:, 0] < edges[:, 1]``, sorted.
        colours: int64 array [N], a proper colouring with colours ``0 .. n_colours - 1``.
        shape: ``(L, L)`` for grid graphs (row-major node numbering), ``None`` otherwise.
        bipartite: whether ``colours`` is an exact 2-colouring.
    """

    n_nodes: int
    edges: np.ndarray
    colours: np.ndarray
    shape: tuple[int, int] | None = None
    bipartite: bool = False
    offsets: tuple[tuple[int, int], ...] = field(default=())

    @property
    def n_edges(self) -> int:
        return int(self.edges.shape[0])

    @property
    def n_colours(self) -> int:
        return int(self.colours.max()) + 1 if self.n_nodes else 0

    def degrees(self) -> np.ndarray:
        """Degree of every node, int64 [N]."""
        return np.bincount(self.edges.ravel(), minlength=self.n_nodes).astype(np.int64)

    def colour_blocks(self) -> list[np.ndarray]:
        """Node indices of each colour, ascending."""
        return [np.flatnonzero(self.colours == c) for c in range(self.n_colours)]


def _canonical_edges(edges: np.ndarray, n_nodes: int) -> np.ndarray:
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if edges.size and (edges.min() < 0 or edges.max() >= n_nodes):
        raise ValueError(f"edges: node index out of range [0, {n_nodes}): min {edges.min()}, max {edges.max()}")
    if np.any(edges[:, 0] == edges[:, 1]):
        raise ValueError(f"edges: self-loop at node {int(edges[edges[:, 0] == edges[:, 1]][0, 0])}")
    edges = np.sort(edges, axis=1)
    edges = np.unique(edges, axis=0) if edges.size else edges.reshape(0, 2)
    return edges


def neighbourhood_offsets(degree: int, pattern: str = "moore") -> list[tuple[int, int]]:
    """Offsets ``(dy, dx)`` (one per +/- pair) of a local grid neighbourhood of the given degree.

    Offsets are ordered by Euclidean length; within a length shell the order is a 90-degree rotation orbit
    ``(a, b), (b, -a)`` first, so that a partial shell keeps 90-degree rotation symmetry.
    """
    if pattern not in _PATTERNS:
        raise ValueError(f"pattern: expected one of {_PATTERNS}, got {pattern!r}")
    if degree < 2 or degree % 2:
        raise ValueError(f"degree: expected an even integer >= 2, got {degree}")
    half = degree // 2
    r = int(math.isqrt(2 * half)) + 3
    cands = []
    for dy in range(0, r + 1):
        for dx in range(-r, r + 1):
            if (dy, dx) <= (0, 0):  # keep one of each +/- pair: dy > 0, or dy == 0 and dx > 0
                continue
            if pattern == "bipartite" and (abs(dy) + abs(dx)) % 2 == 0:
                continue
            cands.append((dy, dx))

    def canon(o: tuple[int, int]) -> tuple[int, int]:
        return o if o > (0, 0) else (-o[0], -o[1])

    def key(o: tuple[int, int]) -> tuple[int, int, int, int]:
        a, b = abs(o[0]), abs(o[1])
        # orbit representative (max, min) and chirality class: (a, b) and its 90-degree rotation (b, -a) together
        chir = 0 if (o[0] >= 0) == (o[1] >= 0) or o[0] == 0 or o[1] == 0 else 1
        if a < b:
            chir = 1 - chir
        return (o[0] ** 2 + o[1] ** 2, chir, -a, b)

    cands = sorted({canon(o) for o in cands}, key=key)
    if half > len(cands):
        raise ValueError(f"degree: {degree} too large for pattern {pattern!r}")
    return cands[:half]


def graph_from_edges(n_nodes: int, edges: np.ndarray, colours: np.ndarray | None = None) -> SparseGraph:
    """A ``SparseGraph`` from an edge list; colours it with ``colour_graph`` unless ``colours`` is given."""
    if n_nodes < 1:
        raise ValueError(f"n_nodes: expected >= 1, got {n_nodes}")
    edges = _canonical_edges(edges, n_nodes)
    if colours is None:
        colours, bip = colour_graph(n_nodes, edges)
    else:
        colours = np.asarray(colours, dtype=np.int64)
        if colours.shape != (n_nodes,):
            raise ValueError(f"colours: expected shape ({n_nodes},), got {colours.shape}")
        if not check_colouring(edges, colours):
            raise ValueError("colours: not a proper colouring (an edge joins two nodes of one colour)")
        bip = int(colours.max()) + 1 <= 2
    return SparseGraph(n_nodes=n_nodes, edges=edges, colours=colours, bipartite=bip)


def grid_graph(
    size: int,
    degree: int = 8,
    pattern: str = "moore",
    periodic: bool = True,
    offsets: list[tuple[int, int]] | None = None,
) -> SparseGraph:
    """An ``size x size`` grid graph with a local neighbourhood of the given degree (see module docstring).

    Args:
        size: side L (>= 2); N = L * L nodes, ``node = y * L + x``.
        degree: neighbours per interior node (even); ignored when ``offsets`` is given.
        pattern: ``"moore"`` or ``"bipartite"``.
        periodic: wrap around (torus). Requires every offset to be shorter than L/2 so that no pair of offsets
            lands on the same neighbour and no node is its own neighbour.
        offsets: explicit ``(dy, dx)`` list (one per +/- pair) instead of ``degree``/``pattern``.
    """
    if size < 2:
        raise ValueError(f"size: expected >= 2, got {size}")
    offs = list(offsets) if offsets is not None else neighbourhood_offsets(degree, pattern)
    if not offs:
        raise ValueError("offsets: empty neighbourhood")
    if periodic:
        span = max(max(abs(dy), abs(dx)) for dy, dx in offs)
        if 2 * span >= size:
            raise ValueError(f"size: {size} too small for a periodic grid with offsets up to {span} (need > {2 * span})")
    ys, xs = np.divmod(np.arange(size * size, dtype=np.int64), size)
    src, dst = [], []
    for dy, dx in offs:
        y2, x2 = ys + dy, xs + dx
        if periodic:
            y2, x2 = y2 % size, x2 % size
            ok = np.ones_like(y2, dtype=bool)
        else:
            ok = (y2 >= 0) & (y2 < size) & (x2 >= 0) & (x2 < size)
        src.append((ys * size + xs)[ok])
        dst.append((y2 * size + x2)[ok])
    edges = _canonical_edges(np.stack([np.concatenate(src), np.concatenate(dst)], axis=1), size * size)
    colours, bip = colour_graph(size * size, edges, grid_size=size)
    return SparseGraph(n_nodes=size * size, edges=edges, colours=colours, shape=(size, size), bipartite=bip,
                       offsets=tuple((dy, dx) for dy, dx in offs))


def check_colouring(edges: np.ndarray, colours: np.ndarray) -> bool:
    """True when no edge joins two nodes of the same colour."""
    edges = np.asarray(edges).reshape(-1, 2)
    return bool(np.all(colours[edges[:, 0]] != colours[edges[:, 1]]))


def _adjacency(n_nodes: int, edges: np.ndarray) -> list[np.ndarray]:
    a = sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n_nodes, n_nodes)).tocsr()
    a = (a + a.T).tocsr()
    return [a.indices[a.indptr[i]:a.indptr[i + 1]] for i in range(n_nodes)]


def two_colouring(n_nodes: int, edges: np.ndarray) -> np.ndarray | None:
    """Exact 2-colouring by breadth-first search, or ``None`` when the graph has an odd cycle."""
    edges = _canonical_edges(edges, n_nodes)
    adj = _adjacency(n_nodes, edges)
    col = -np.ones(n_nodes, dtype=np.int64)
    for start in range(n_nodes):
        if col[start] >= 0:
            continue
        col[start] = 0
        q = deque([start])
        while q:
            u = q.popleft()
            for v in adj[u]:
                if col[v] < 0:
                    col[v] = 1 - col[u]
                    q.append(v)
                elif col[v] == col[u]:
                    return None
    return col


def greedy_colouring(n_nodes: int, edges: np.ndarray) -> np.ndarray:
    """Greedy colouring, nodes visited by decreasing degree (Welsh-Powell); at most max degree + 1 colours."""
    edges = _canonical_edges(edges, n_nodes)
    adj = _adjacency(n_nodes, edges)
    order = np.argsort(-np.array([len(a) for a in adj]), kind="stable")
    col = -np.ones(n_nodes, dtype=np.int64)
    for u in order:
        used = {int(c) for c in col[adj[u]] if c >= 0}
        c = 0
        while c in used:
            c += 1
        col[u] = c
    return col


def _lattice_colouring(size: int, edges: np.ndarray, max_colours: int) -> np.ndarray | None:
    ys, xs = np.divmod(np.arange(size * size, dtype=np.int64), size)
    for k in range(2, max_colours + 1):
        for a in range(k):
            for b in range(k):
                col = (a * ys + b * xs) % k
                if len(np.unique(col)) == k and check_colouring(edges, col):
                    return col
    return None


def colour_graph(n_nodes: int, edges: np.ndarray, grid_size: int | None = None) -> tuple[np.ndarray, bool]:
    """A proper colouring with few colours and whether it is an exact bipartition.

    Bipartite graphs get the exact 2-colouring. Otherwise the greedy colouring is compared with the lattice
    colourings ``(a*y + b*x) mod k`` (grids only; they give 4 colours on a Moore torus with L divisible by 4)
    and the one with fewer colours is returned.
    """
    edges = _canonical_edges(edges, n_nodes)
    if len(edges) == 0:
        return np.zeros(n_nodes, dtype=np.int64), False
    two = two_colouring(n_nodes, edges)
    if two is not None:
        return two, True
    best = greedy_colouring(n_nodes, edges)
    if grid_size is not None:
        lat = _lattice_colouring(grid_size, edges, int(best.max()) + 1)
        if lat is not None and lat.max() < best.max():
            best = lat
    return best, False


def coupling_matrix(n_nodes: int, edges: np.ndarray, weights: np.ndarray) -> sp.csr_matrix:
    """Symmetric scipy CSR coupling matrix J (zero diagonal) with ``J[i, j] = J[j, i] = w_e`` for edge e = (i, j)."""
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if weights.shape[0] != edges.shape[0]:
        raise ValueError(f"weights: expected {edges.shape[0]} values (one per edge), got {weights.shape[0]}")
    if np.any(edges[:, 0] == edges[:, 1]):
        raise ValueError("edges: self-loops are not allowed (J must have a zero diagonal)")
    if not np.all(np.isfinite(weights)):
        raise ValueError("weights: non-finite value")
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    vals = np.concatenate([weights, weights])
    j = sp.coo_matrix((vals, (rows, cols)), shape=(n_nodes, n_nodes)).tocsr()
    j.sum_duplicates()
    j.sort_indices()
    return j


def coupling_csr(
    n_nodes: int,
    edges: np.ndarray,
    weights: np.ndarray | torch.Tensor,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The symmetric coupling matrix as a ``torch.sparse_csr_tensor`` [N, N] (zero diagonal)."""
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().cpu().double().numpy()
    j = coupling_matrix(n_nodes, edges, weights)
    with warnings.catch_warnings():  # "CSR support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(j.indptr.astype(np.int64)),
            torch.from_numpy(j.indices.astype(np.int64)),
            torch.from_numpy(j.data).to(dtype),
            size=(n_nodes, n_nodes),
            device=device,
            check_invariants=False,
        )


def random_couplings(graph: SparseGraph, scale: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random Gaussian edge weights ``w ~ N(0, scale^2)`` [E] and biases ``b ~ N(0, scale^2)`` [N] (float64)."""
    if scale < 0:
        raise ValueError(f"scale: expected >= 0, got {scale}")
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal(graph.n_edges), scale * rng.standard_normal(graph.n_nodes)
