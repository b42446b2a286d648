"""Block Gibbs sampler vs exact enumeration (thrml-style checks), graphs, clamping and p-bit non-idealities.

Error budget. Chains are independent, so the sampler's true standard error (autocorrelation included) is
measured from the spread between ``G`` groups of chains: se = std(group estimates) / sqrt(G). Every check
asserts both that the error is small against the target AND that se is small enough for the check to mean
something, and the same check run on a deliberately wrong beta must fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spicenet.cells.rng.gibbs import (
    BlockGibbsSampler,
    exact_enumeration,
    logistic_noise_table,
    make_generator,
    state_index,
)
from spicenet.cells.rng.graph import (
    check_colouring,
    coupling_csr,
    graph_from_edges,
    grid_graph,
    neighbourhood_offsets,
    random_couplings,
    two_colouring,
)

torch.set_num_threads(1)


def _random_bm(n: int = 10, seed: int = 1, scale: float = 0.5):
    rng = np.random.default_rng(seed)
    edges = np.array([(i, j) for i in range(n) for j in range(i + 1, n) if rng.random() < 0.4])
    g = graph_from_edges(n, edges)
    return g, rng.normal(0, scale, g.n_edges), rng.normal(0, scale, n)


def _sampled_probs(g, w, b, beta, chains=16384, sweeps=1000, groups=32, seed=0):
    smp = BlockGibbsSampler(g, w, b, beta)
    gen = make_generator(seed)
    s = smp.random_state(chains, gen)
    counts, _ = smp.histogram(s, sweeps, gen, burn_in=50, chain_groups=groups)
    c = counts.double().numpy()
    f_groups = c / c.sum(1, keepdims=True)
    return c.sum(0) / c.sum(), f_groups.std(0, ddof=1) / np.sqrt(groups)


# ----------------------------------------------------------------------------------------------- exact / thrml style
def test_exact_enumeration_against_brute_force() -> None:
    g, w, b = _random_bm(6, seed=3)
    ex = exact_enumeration(6, g.edges, w, b, beta=0.7)
    j = np.zeros((6, 6))
    j[g.edges[:, 0], g.edges[:, 1]] = w
    j = j + j.T
    p = {}
    for k in range(64):
        s = np.array([1.0 if (k >> i) & 1 else -1.0 for i in range(6)])
        p[k] = np.exp(0.7 * (0.5 * s @ j @ s + b @ s))
    z = sum(p.values())
    np.testing.assert_allclose(ex.probs, [p[k] / z for k in range(64)], rtol=1e-12)
    assert ex.log_z == pytest.approx(np.log(z), rel=1e-12)
    assert torch.equal(state_index(torch.tensor(ex.states.T)), torch.arange(64))


def test_random_10_spin_bm_matches_exact_distribution() -> None:
    """thrml-style: max relative error < 0.02 on the probable states (P > 0.01)."""
    g, w, b = _random_bm(10, seed=1)
    assert check_colouring(g.edges, g.colours) and g.n_colours > 2  # a real multi-colour block schedule
    ex = exact_enumeration(10, g.edges, w, b, beta=1.0)
    f, se = _sampled_probs(g, w, b, 1.0)
    probable = ex.probs > 0.01
    assert probable.sum() >= 5
    rel = np.abs(f[probable] - ex.probs[probable]) / ex.probs[probable]
    # the measured relative standard error must be well below the 0.02 target (~16M samples)
    assert np.max(se[probable] / ex.probs[probable]) < 0.02 / 4
    assert rel.max() < 0.02, f"max relative error {rel.max():.4f}"
    z = (f[probable] - ex.probs[probable]) / se[probable]
    assert np.abs(z).max() < 5.0
    # deliberately wrong beta: the same check must fail
    ex_wrong = exact_enumeration(10, g.edges, w, b, beta=1.2)
    pw = ex_wrong.probs > 0.01
    assert np.max(np.abs(f[pw] - ex_wrong.probs[pw]) / ex_wrong.probs[pw]) > 0.05


def _grid_moment_z(beta_model: float, beta_ref: float, seed: int = 0) -> tuple[float, float, np.ndarray]:
    g = grid_graph(4, degree=8, pattern="moore", periodic=True)  # 16 spins, 64 edges, 4 colours
    w, b = random_couplings(g, scale=0.4, seed=11)
    ex = exact_enumeration(16, g.edges, w, b, beta=beta_ref)
    smp = BlockGibbsSampler(g, w, b, beta_model)
    gen = make_generator(seed)
    groups, chains = 16, 1024
    s = smp.random_state(chains * groups, gen)
    mo = smp.moments(s, 300, gen, burn_in=50, per_chain=True)
    m = mo.mean.numpy().reshape(16, groups, chains).mean(2)
    e = mo.edge_corr.numpy().reshape(g.n_edges, groups, chains).mean(2)
    zm = (m.mean(1) - ex.mean) / (m.std(1, ddof=1) / np.sqrt(groups))
    ze = (e.mean(1) - ex.edge_corr) / (e.std(1, ddof=1) / np.sqrt(groups))
    return float(np.abs(zm).max()), float(np.abs(ze).max()), e.std(1, ddof=1) / np.sqrt(groups)


def test_grid_site_and_edge_z_scores_vs_exact() -> None:
    zm, ze, se = _grid_moment_z(1.0, 1.0)
    assert se.max() < 5e-3  # the z-test resolves differences of ~0.02 in <s_i s_j>
    assert zm < 5.0 and ze < 5.0, (zm, ze)
    zm_w, ze_w, _ = _grid_moment_z(1.25, 1.0)  # sampler at the wrong beta
    assert max(zm_w, ze_w) > 8.0


# ----------------------------------------------------------------------------------------------- clamping
@pytest.mark.parametrize("uniform_bits", [16, 24])
def test_clamped_conditional_matches_exact_conditional(uniform_bits: int) -> None:
    g, w, b = _random_bm(8, seed=5, scale=0.7)
    clamped = np.array([1, 4, 6])
    ex = exact_enumeration(8, g.edges, w, b, beta=1.0)
    smp = BlockGibbsSampler(g, w, b, 1.0, clamped=clamped, uniform_bits=uniform_bits)
    gen = make_generator(2)
    chains = 8192
    # first half of the chains clamped to (+1, -1, +1), second half to (-1, -1, -1)
    cv = torch.tensor([[1.0, -1.0], [-1.0, -1.0], [1.0, -1.0]]).repeat_interleave(chains // 2, dim=1)
    s = smp.random_state(chains, gen, clamp_values=cv)
    mo = smp.moments(s, 400, gen, burn_in=30, per_chain=True)
    assert torch.equal(mo.state[torch.tensor(clamped)], cv)  # clamped rows were never written
    for half, vals in enumerate(([1, -1, 1], [-1, -1, -1])):
        sel = np.all(ex.states[:, clamped] == np.array(vals), axis=1)
        pc = ex.probs * sel
        pc /= pc.sum()
        exact_mean = pc @ ex.states
        m = mo.mean[:, half * chains // 2:(half + 1) * chains // 2].numpy()
        groups = m.reshape(8, 16, -1).mean(2)
        se = groups.std(1, ddof=1) / 4.0
        free = np.setdiff1d(np.arange(8), clamped)
        z = (groups.mean(1)[free] - exact_mean[free]) / se[free]
        assert np.abs(z).max() < 5.0, (half, z)
        # the unconditional means differ from the conditional ones: the check can tell them apart
        assert np.abs(ex.mean[free] - exact_mean[free]).max() > 10 * se[free].max()


# ----------------------------------------------------------------------------------------------- non-idealities
def test_common_gain_and_offsets_equal_rescaled_boltzmann_machine() -> None:
    """sigmoid((x - o_i)/g) with one gain g is the BM with beta/g and b_i - o_i/(2 beta)."""
    g, w, b = _random_bm(8, seed=9, scale=0.5)
    rng = np.random.default_rng(4)
    off = torch.tensor(rng.normal(0, 0.5, 8))
    gain = 1.4
    beta = 1.0
    smp = BlockGibbsSampler(g, w, b, beta, offset=off, gain=torch.full((8,), gain))
    gen = make_generator(3)
    s = smp.random_state(16384, gen)
    mo = smp.moments(s, 300, gen, burn_in=30, per_chain=True)
    ex = exact_enumeration(8, g.edges, w, b - off.numpy() / (2 * beta), beta=beta / gain)
    groups = mo.mean.numpy().reshape(8, 16, -1).mean(2)
    z = (groups.mean(1) - ex.mean) / (groups.std(1, ddof=1) / 4.0)
    assert np.abs(z).max() < 5.0, z
    ideal = exact_enumeration(8, g.edges, w, b, beta=beta)
    assert np.abs((groups.mean(1) - ideal.mean) / (groups.std(1, ddof=1) / 4.0)).max() > 8.0


def test_per_chain_chips() -> None:
    """offset/gain [N, chains]: each half of the chains is a different chip with its own exact law."""
    g, w, b = _random_bm(8, seed=9, scale=0.5)
    chains = 8192
    off = torch.zeros(8, chains)
    off[:, chains // 2:] = 0.8
    gain = torch.ones(8, chains)
    gain[:, chains // 2:] = 1.5
    smp = BlockGibbsSampler(g, w, b, 1.0, offset=off, gain=gain)
    gen = make_generator(4)
    mo = smp.moments(smp.random_state(chains, gen), 300, gen, burn_in=30, per_chain=True)
    for half, (o, gg) in enumerate(((0.0, 1.0), (0.8, 1.5))):
        ex = exact_enumeration(8, g.edges, w, b - o / 2.0, beta=1.0 / gg)
        m = mo.mean[:, half * chains // 2:(half + 1) * chains // 2].numpy().reshape(8, 16, -1).mean(2)
        z = (m.mean(1) - ex.mean) / (m.std(1, ddof=1) / 4.0)
        assert np.abs(z).max() < 5.0, (half, z)
    with pytest.raises(ValueError, match="offset"):
        smp.random_state(100, gen)


# ----------------------------------------------------------------------------------------------- graphs, misc
@pytest.mark.parametrize("degree,pattern,colours", [(4, "moore", 2), (8, "moore", 4), (8, "bipartite", 2),
                                                    (12, "bipartite", 2), (12, "moore", None)])
def test_grid_graphs(degree: int, pattern: str, colours: int | None) -> None:
    g = grid_graph(8, degree=degree, pattern=pattern, periodic=True)
    deg = g.degrees()
    assert np.all(deg == degree)
    assert g.n_edges == 64 * degree // 2
    assert check_colouring(g.edges, g.colours)
    if colours is not None:
        assert g.n_colours == colours
    assert g.bipartite == (two_colouring(64, g.edges) is not None)
    j = coupling_csr(64, g.edges, np.arange(1, g.n_edges + 1, dtype=float), dtype=torch.float64).to_dense()
    assert torch.equal(j, j.T) and torch.all(torch.diagonal(j) == 0)
    assert int((j != 0).sum()) == 2 * g.n_edges
    # open boundary: corner of a Moore grid has 3 neighbours
    go = grid_graph(5, degree=8, pattern="moore", periodic=False)
    assert go.degrees()[0] == 3 and go.degrees()[12] == 8 and check_colouring(go.edges, go.colours)


def test_offsets_and_colouring_of_odd_cycle() -> None:
    assert neighbourhood_offsets(8, "moore") == [(1, 0), (0, 1), (1, 1), (1, -1)]
    assert all((abs(a) + abs(b)) % 2 == 1 for a, b in neighbourhood_offsets(24, "bipartite"))
    tri = graph_from_edges(3, np.array([[0, 1], [1, 2], [0, 2]]))
    assert not tri.bipartite and tri.n_colours == 3
    assert two_colouring(3, tri.edges) is None


def test_seeded_reproducibility_and_bad_inputs() -> None:
    g = grid_graph(6, degree=4)
    w, b = random_couplings(g, 0.3, seed=1)
    smp = BlockGibbsSampler(g, w, b, 1.0)
    s0 = smp.random_state(8, make_generator(5))
    a = smp.run(s0, 10, make_generator(6))
    c = smp.run(s0, 10, make_generator(6))
    assert torch.equal(a, c) and set(a.unique().tolist()) <= {-1.0, 1.0}
    samples = smp.sample(s0, 3, make_generator(6), thin=10)
    assert torch.equal(samples[0], a)
    with pytest.raises(ValueError, match="weights"):
        BlockGibbsSampler(g, w[:-1], b)
    with pytest.raises(ValueError, match="gain"):
        BlockGibbsSampler(g, w, b, gain=torch.zeros(36))
    with pytest.raises(ValueError, match="state"):
        smp.run(torch.ones(5, 2), 1, make_generator(0))
    with pytest.raises(ValueError, match="n_nodes"):
        exact_enumeration(30, np.zeros((0, 2), dtype=int), np.zeros(0), np.zeros(30))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_exact() -> None:
    g, w, b = _random_bm(8, seed=1)
    ex = exact_enumeration(8, g.edges, w, b, beta=1.0)
    smp = BlockGibbsSampler(g, w, b, 1.0, device="cuda")
    gen = make_generator(0, "cuda")
    mo = smp.moments(smp.random_state(16384, gen), 300, gen, burn_in=30, per_chain=True)
    m = mo.mean.numpy().reshape(8, 16, -1).mean(2)
    z = (m.mean(1) - ex.mean) / (m.std(1, ddof=1) / 4.0)
    assert np.abs(z).max() < 5.0


def test_chain_bias_conditions_each_chain() -> None:
    """chain_bias [N, chains]: chain c samples the BM with biases b + chain_bias[:, c] (exact per half)."""
    g, w, b = _random_bm(8, seed=2, scale=0.5)
    chains = 8192
    extra = np.random.default_rng(3).normal(0, 0.7, 8)
    cb = torch.zeros(8, chains, dtype=torch.float64)
    cb[:, chains // 2:] = torch.tensor(extra)[:, None]
    smp = BlockGibbsSampler(g, w, b, 1.0)
    smp.set_parameters(w, b, chain_bias=cb)
    gen = make_generator(8)
    mo = smp.moments(smp.random_state(chains, gen), 300, gen, burn_in=30, per_chain=True)
    for half, bb in enumerate((b, b + extra)):
        ex = exact_enumeration(8, g.edges, w, bb, beta=1.0)
        m = mo.mean[:, half * chains // 2:(half + 1) * chains // 2].numpy().reshape(8, 16, -1).mean(2)
        z = (m.mean(1) - ex.mean) / (m.std(1, ddof=1) / 4.0)
        assert np.abs(z).max() < 5.0, (half, z)


def test_16bit_noise_table_realises_rounded_probabilities() -> None:
    """All 2^16 uniform codes V: the fraction with logit((V + 1/2) / 2^16) < x is round(2^16 sigmoid(x)) / 2^16."""
    table = logistic_noise_table("cpu", torch.float32).double()
    for p in (1e-4, 0.013, 0.25, 0.5, 0.7311, 0.99995):
        x = float(np.log(p / (1 - p)))
        frac = (table < x).double().mean().item()
        assert abs(frac - round(65536 * p) / 65536) <= 1 / 65536 + 1e-12
        assert abs(frac - p) <= 2.0 ** -16


@pytest.mark.parametrize("uniform_bits", [16, 24])
def test_single_pbit_tail_probability(uniform_bits: int) -> None:
    """One spin with bias b: P(+1) = sigmoid(2 beta b) down to 1e-3, binomial z-score over 10^6 draws."""
    g = graph_from_edges(1, np.zeros((0, 2), dtype=np.int64))
    for p in (1e-3, 0.3):
        b = 0.5 * np.log(p / (1 - p))
        smp = BlockGibbsSampler(g, np.zeros(0), np.array([b]), 1.0, uniform_bits=uniform_bits)
        gen = make_generator(11)
        s = smp.run(smp.random_state(1_000_000, gen), 1, gen)
        f = (s > 0).double().mean().item()
        assert abs(f - p) / np.sqrt(p * (1 - p) / 1e6) < 5.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_samples", [1, 5])
def test_moments_are_the_averages_of_the_recorded_sweeps(dtype, n_samples) -> None:
    """moments() equals the mean of the states sample() records on the same schedule and generator (<s_i> and
    <s_i s_j> per chain, computed here from the records), and leaves the final state a valid spin state (the
    accumulation must not write into the chain, in any dtype)."""
    g, w, b = _random_bm(8, seed=5)
    smp = BlockGibbsSampler(g, w, b, 0.8, dtype=dtype)
    start = smp.random_state(64, make_generator(1))
    rec = smp.sample(start, n_samples, make_generator(2), burn_in=3, thin=2).double()  # [n, N, chains]
    m = smp.moments(start, n_samples, make_generator(2), burn_in=3, thin=2, per_chain=True)
    ei, ej = torch.from_numpy(g.edges[:, 0]), torch.from_numpy(g.edges[:, 1])
    assert torch.equal(m.mean, rec.mean(0))
    assert torch.allclose(m.edge_corr, (rec[:, ei] * rec[:, ej]).mean(0), rtol=0, atol=1e-15)
    assert set(torch.unique(m.state).tolist()) <= {-1.0, 1.0}
    assert torch.equal(m.state.double(), rec[-1])
