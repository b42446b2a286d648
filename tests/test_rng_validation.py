"""Statistics of the rng SPICE validation (``spicenet.cells.rng.validation``) and the per-cell export mapping.

Independent references: detailed balance (the stationary law of Glauber dynamics with unit gains is the
Boltzmann law of exact enumeration); a plain numpy random-scan Gibbs chain (per-cell gains); the two-state
Markov chain's analytic correlation (n_eff = M (1 - r) / (1 + r)); the exact binomial mean absolute deviation
for a 2-state TV floor; Monte-Carlo spread of the trim fit vs its delta-method standard errors; Millman's
closed form for the per-cell mapping; maximum-likelihood recovery of a known coupling gain and bias shift.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from spicenet.cells.rng import export
from spicenet.cells.rng.gibbs import exact_enumeration, sparse_from_dense
from spicenet.cells.rng.validation import (ValidationConfig, effective_samples, fit_correction, fit_trim_se,
                                           state_counts, stationary_law, tv_distance, tv_floor)
from spicenet.errors import ConfigError


def _machine(n: int, seed: int, scale: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    j = np.triu(rng.normal(0, scale, (n, n)), 1)
    return j + j.T, rng.normal(0, scale, n)


def _exact(j: np.ndarray, b: np.ndarray, beta: float) -> np.ndarray:
    e, w = sparse_from_dense(j)
    return exact_enumeration(b.size, e, w, b, beta).probs


def test_stationary_law_unit_gain_is_boltzmann() -> None:
    j, b = _machine(5, 1)
    assert np.allclose(stationary_law(j, b, 1.3), _exact(j, b, 1.3), atol=1e-12)
    off = np.array([0.3, -0.2, 0.0, 0.5, -0.1])             # offsets = bias shift -offset / (2 beta)
    assert np.allclose(stationary_law(j, b, 1.3, offset=off), _exact(j, b - off / 2.6, 1.3), atol=1e-12)
    with pytest.raises(ValueError, match="gain"):
        stationary_law(j, b, 1.0, gain=np.array([1.0, 1.0, 0.0, 1.0, 1.0]))


def test_stationary_law_with_gains_matches_random_scan_gibbs() -> None:
    """Per-cell gains break detailed balance; the solved law must match a long random-scan Gibbs chain."""
    n, beta = 3, 1.0
    j = np.array([[0, 1.2, -0.8], [1.2, 0, 0.9], [-0.8, 0.9, 0]])
    b = np.array([0.4, -0.3, 0.2])
    gain = np.array([0.5, 1.8, 1.0])
    law = stationary_law(j, b, beta, gain=gain)
    rng = np.random.default_rng(3)
    chains, burn, steps = 4000, 60, 300                     # independent chains, vectorised over chains
    s = rng.choice([-1.0, 1.0], size=(chains, n))
    counts = np.zeros(2 ** n)
    rows = np.arange(chains)
    for t in range(steps):
        i = rng.integers(0, n, chains)
        x = 2 * beta * (b[i] + np.einsum("cj,cj->c", j[i], s))
        s[rows, i] = np.where(rng.random(chains) < 1 / (1 + np.exp(-x / gain[i])), 1.0, -1.0)
        if t >= burn:
            counts += np.bincount(((s > 0) * (1 << np.arange(n))).sum(1), minlength=2 ** n)
    emp = counts / counts.sum()
    assert tv_distance(emp, law) < 0.01                      # ~200k effective samples over 8 states
    assert tv_distance(law, _exact(j, b, beta)) > 0.03       # and the gains do matter


def test_effective_samples_of_a_two_state_markov_chain() -> None:
    """Flip probability q per read: correlation r^k with r = 1 - 2 q, tau_int = (1 + r) / (2 (1 - r))."""
    rng = np.random.default_rng(5)
    m, q = 200_000, 0.1
    flips = rng.random((m, 2)) < q
    bits = (np.cumsum(flips, axis=0) % 2).astype(bool)
    n_eff, taus = effective_samples(bits)
    r = 1 - 2 * q
    assert taus == pytest.approx(np.full(2, (1 + r) / (2 * (1 - r))), rel=0.08)
    assert n_eff == pytest.approx(m * (1 - r) / (1 + r), rel=0.08)
    iid = rng.random((50_000, 3)) < 0.3
    assert effective_samples(iid)[0] == pytest.approx(50_000, rel=0.05)


def test_tv_floor_two_states_exact_binomial() -> None:
    """For 2 states TV = |p_hat - p|; its mean is the binomial mean absolute deviation."""
    p, m = 0.3, 400
    k = np.arange(m + 1)
    exact = float(np.sum(binom.pmf(k, m, p) * np.abs(k / m - p)))
    assert tv_floor(np.array([1 - p, p]), m, reps=4000, seed=2) == pytest.approx(exact, rel=0.04)
    with pytest.raises(ValueError, match="m"):
        tv_floor(np.array([0.5, 0.5]), 0)


def test_trim_standard_errors_match_monte_carlo_spread() -> None:
    v0, vs = 1.0e-3, 2.2e-4
    levels = v0 + vs * np.array([-1.5, 0.0, 1.5])
    p_true = 1 / (1 + np.exp(-(levels - v0) / vs))
    n_eff = np.full(3, 2000.0)
    rng = np.random.default_rng(7)
    fits = np.array([fit_trim_se(levels, rng.binomial(2000, p_true) / 2000, n_eff) for _ in range(600)])
    _, _, se0, ses = fit_trim_se(levels, p_true, n_eff)
    assert abs(fits[:, 0].mean() - v0) < 0.2 * se0 and abs(fits[:, 1].mean() / vs - 1) < 0.02
    assert fits[:, 0].std() == pytest.approx(se0, rel=0.12)
    assert fits[:, 1].std() == pytest.approx(ses, rel=0.12)


def test_per_cell_mapping_closed_form() -> None:
    """Row k of the network is scaled to cell k's slope: v_k = v0_k + vs_k 2 beta (b_k + sum J_kj s_j)."""
    j = np.array([[0, 0.7, -0.4], [0.7, 0, 0.2], [-0.4, 0.2, 0]])
    b = np.array([0.3, -0.5, 0.1])
    v0 = np.array([1e-3, -2e-3, 4e-4])
    vs = np.array([2.0e-4, 2.6e-4, 1.8e-4])
    m = export.map_weights(j, b, 1.1, vs, v0, 0.04)
    states = ((np.arange(8)[:, None] >> np.arange(3)) & 1) * 2.0 - 1.0
    want = v0 + vs * 2 * 1.1 * (b + states @ j)
    assert np.allclose(export.bias_voltages(m, states), want, atol=1e-15, rtol=1e-12)
    assert not np.allclose(m.g_couple, m.g_couple.T, rtol=1e-3, atol=0.0)   # asymmetric rows
    same = export.map_weights(j, b, 1.1, np.full(3, 2.2e-4), v0, 0.04)
    scalar = export.map_weights(j, b, 1.1, 2.2e-4, v0, 0.04)
    assert np.array_equal(same.g_couple, scalar.g_couple) and np.array_equal(same.v_src, scalar.v_src)
    with pytest.raises(ValueError, match="vs_design"):
        export.map_weights(j, b, 1.0, np.array([2e-4, -1e-4, 2e-4]), v0, 0.04)


def test_fit_correction_recovers_gain_and_bias_shift() -> None:
    j, b = _machine(4, 11, 0.6)
    alpha, db = 0.85, np.array([0.1, -0.05, 0.0, 0.08])
    law = _exact(j * alpha, b + db, 1.0)
    a, d, dnll = fit_correction(law * 1e7, j, b, 1.0)                  # exact frequencies
    assert a == pytest.approx(alpha, abs=1e-4) and np.allclose(d, db, atol=1e-4) and dnll > 0
    rng = np.random.default_rng(1)
    a2, d2, _ = fit_correction(rng.multinomial(200_000, law).astype(float), j, b, 1.0)
    assert abs(a2 - alpha) < 0.03 and np.all(np.abs(d2 - db) < 0.02)
    a0, d0, dnll0 = fit_correction(_exact(j, b, 1.0) * 1e7, j, b, 1.0)  # nothing to correct
    assert a0 == pytest.approx(1.0, abs=1e-4) and np.allclose(d0, 0, atol=1e-4) and dnll0 < 1e-3


def test_state_counts_and_config_checks() -> None:
    bits = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [1, 1, 0]])
    assert state_counts(bits).tolist() == [0, 1, 0, 2, 1, 0, 0, 0]
    with pytest.raises(ConfigError, match="vs_mapping"):
        ValidationConfig(vs_mapping="typical")
    with pytest.raises(ConfigError, match="spacing_s"):
        ValidationConfig(spacing_s=1e-9, dt=2e-9)
    q = ValidationConfig.quick()
    assert q.n_cells == 4 and q.closed_loop and q.spacing_s * q.samples >= 400e-6


def test_sim_options_inserted_before_end() -> None:
    deck = "* t\nr1 a 0 1k\n.end\n"
    out = export.with_sim_options(deck)
    assert out.splitlines()[-2] == export.SIM_OPTIONS and out.splitlines()[-1] == ".end"
    with pytest.raises(ValueError, match="options"):
        export.with_sim_options(deck, ".control\nshell rm -rf /")
    with pytest.raises(ValueError, match="text"):
        export.with_sim_options("* no end\n")


def test_per_cell_mapping_in_spice_op(engine) -> None:
    """2 cells, different design slopes, noise off, with the simulation options: each bias node settles at
    v0_k + 2 beta vs_k (b_k + J s_other) for the state SPICE latches (Millman, per-cell row scaling)."""
    from spicenet.cells.rng import cells
    from spicenet.spice.engine import Deck
    from spicenet.spice.job import RunSpec
    from spicenet.spice.process import get_process

    proc = get_process("generic")
    sz = cells.CellSizing(vdd=0.040, dvtn=-0.25, dvtp=0.25)
    j = np.array([[0.0, 0.6], [0.6, 0.0]])
    b = np.array([2.0, -2.0])                                 # puts the cells in known states
    v0, vs = np.array([0.4e-3, -0.2e-3]), np.array([1.9e-4, 2.6e-4])
    m = export.map_weights(j, b, 1.0, vs, v0, sz.vdd)
    deck = Deck(export.with_sim_options(export.bm_deck(m, sz, proc)), proc)
    res = engine.simulate_many(deck, [RunSpec("op", "op", cells.device_commands(proc, sz, [None, None], 0))])["op"]
    x = np.array([res.scalar(f"v(a{k})") - res.scalar(f"v(b{k})") for k in range(2)])
    assert np.all(np.abs(x) > 5e-3)                           # latched: the buffers saturate
    s = np.sign(x)
    assert s.tolist() == [1.0, -1.0]                          # the biases win over the coupling
    for k in range(2):
        want = v0[k] + 2 * vs[k] * (b[k] + j[k, 1 - k] * s[1 - k])
        assert abs(res.scalar(f"v(bias{k})") - want) < 2e-7


def test_correction_standard_errors_match_monte_carlo_spread() -> None:
    """i.i.d. draws from stationary_law (unit gains: the Boltzmann law with couplings alpha J, biases b + db): the
    ML alpha is unbiased and its Hessian standard error equals the spread over repeated samples; reads repeated r
    times with n_eff = M / r carry the information of the M / r distinct draws (same estimate, same errors)."""
    from spicenet.cells.rng.validation import fit_correction_map

    j, b = _machine(4, 11, 0.6)
    alpha, db, beta = 0.85, np.array([0.1, -0.05, 0.0, 0.08]), 1.0
    law = stationary_law(j * alpha, b + db, beta)
    rng = np.random.default_rng(21)
    fits = [fit_correction_map(rng.multinomial(4000, law).astype(float), j, b, beta) for _ in range(150)]
    a = np.array([f.alpha for f in fits])
    se = np.mean([f.se_alpha for f in fits])
    assert abs(a.mean() - alpha) < 0.25 * se                         # unbiased (150 reps: mean error se / 12)
    assert a.std() == pytest.approx(se, rel=0.15)
    d = np.array([f.db for f in fits])
    assert d.std(0) == pytest.approx(np.mean([f.se_db for f in fits], 0), rel=0.15)
    cnt = rng.multinomial(4000, law).astype(float)
    one, dup = fit_correction_map(cnt, j, b, beta), fit_correction_map(5 * cnt, j, b, beta, n_eff=4000.0)
    assert dup.alpha == pytest.approx(one.alpha, abs=1e-5) and dup.se_alpha == pytest.approx(one.se_alpha, rel=1e-6)
    assert abs(one.alpha - alpha) < 3.5 * one.se_alpha               # a known alpha within its standard error


def test_correction_shrinks_a_small_sample_toward_the_prior() -> None:
    """Gaussian prior N(1, sd^2) on alpha, N(0, sd^2) on db: a noisy small sample is pulled toward (1, 0), a large
    one is not; tight priors pin the prior; over machines whose alpha is drawn from the prior the posterior mean
    has the lower mean squared error than the ML fit (Bayes risk)."""
    from spicenet.cells.rng.validation import fit_correction_map

    j, b = _machine(4, 11, 0.6)
    beta = 1.0
    rng = np.random.default_rng(4)
    law = stationary_law(j * 0.8, b + np.array([0.15, -0.1, 0.0, 0.1]), beta)
    small = rng.multinomial(300, law).astype(float)
    ml = fit_correction_map(small, j, b, beta)
    mp = fit_correction_map(small, j, b, beta, prior_sd_alpha=0.1, prior_sd_db=0.1)
    assert abs(mp.alpha - 1) < abs(ml.alpha - 1) and np.linalg.norm(mp.db) < np.linalg.norm(ml.db)
    assert mp.se_alpha < ml.se_alpha and np.all(mp.se_db < ml.se_db)   # prior precision adds to the data's
    pinned = fit_correction_map(small, j, b, beta, prior_sd_alpha=1e-4, prior_sd_db=1e-4)
    assert abs(pinned.alpha - 1) < 1e-3 and np.all(np.abs(pinned.db) < 1e-3)
    big_ml = fit_correction_map(law * 1e7, j, b, beta)
    big_mp = fit_correction_map(law * 1e7, j, b, beta, prior_sd_alpha=0.1, prior_sd_db=0.1)
    assert big_mp.alpha == pytest.approx(0.8, abs=1e-3) and big_ml.alpha == pytest.approx(0.8, abs=1e-4)
    fixed = fit_correction_map(law * 1e7, j, b, beta, fixed_alpha=0.8)  # db alone at the true alpha
    assert fixed.alpha == 0.8 and fixed.cov[0, 0] == 0 and np.allclose(fixed.db, [0.15, -0.1, 0.0, 0.1], atol=1e-4)
    err_ml, err_mp = [], []
    for _ in range(60):
        a_true = 1 + 0.1 * rng.normal()
        cnt = rng.multinomial(200, stationary_law(j * a_true, b, beta)).astype(float)
        err_ml.append(fit_correction_map(cnt, j, b, beta).alpha - a_true)
        err_mp.append(fit_correction_map(cnt, j, b, beta, prior_sd_alpha=0.1, prior_sd_db=0.1).alpha - a_true)
    assert np.mean(np.square(err_mp)) < 0.7 * np.mean(np.square(err_ml))
    with pytest.raises(ValueError, match="n_eff"):
        fit_correction_map(small, j, b, beta, n_eff=0.0)
    with pytest.raises(ValueError, match="prior_sd_db"):
        fit_correction_map(small, j, b, beta, prior_sd_db=-1.0)


def test_pool_shrink_alpha_gaussian_posterior() -> None:
    """Inverse-variance pooling and the conjugate Gaussian update, by hand."""
    from spicenet.cells.rng.validation import pool_shrink_alpha

    a, se = pool_shrink_alpha(np.array([0.8, 0.9]), np.array([0.05, 0.05]))
    assert a == pytest.approx(0.85) and se == pytest.approx(0.05 / np.sqrt(2))
    a, se = pool_shrink_alpha(np.array([0.8, 1.0]), np.array([0.02, 0.04]))  # weights 4 : 1
    assert a == pytest.approx(0.84)
    a, se = pool_shrink_alpha(np.array([0.8]), np.array([0.1]), prior=1.0, prior_sd=0.1)  # equal precisions
    assert a == pytest.approx(0.9) and se == pytest.approx(0.1 / np.sqrt(2))
    with pytest.raises(ValueError, match="se"):
        pool_shrink_alpha(np.array([0.8]), np.array([0.0]))
