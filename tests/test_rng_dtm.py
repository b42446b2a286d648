"""DTM core (spicenet.cells.rng.dtm): forward noising, learning a tiny binary distribution (TV vs data), ACP,
quantisation and mismatch-aware training. Uses the block Gibbs sampler tested in test_rng_gibbs.py."""

from __future__ import annotations

import numpy as np
import torch

from spicenet.cells.rng.dtm import DTM, DTMConfig, forward_noise, total_variation, uniform_quantiser

torch.set_num_threads(1)


def _bars_data(n: int = 4000):
    pats = torch.tensor([[1, 1, -1, -1], [-1, -1, 1, 1], [1, -1, 1, -1], [-1, 1, -1, 1]], dtype=torch.float64)
    w = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    probs = torch.zeros(16, dtype=torch.float64)
    probs[((pats > 0).long() * (2 ** torch.arange(4))).sum(1)] = w
    g = torch.Generator().manual_seed(0)
    return pats[torch.multinomial(w, n, replacement=True, generator=g)], probs


def test_dtm_learns_2x2_bars_distribution() -> None:
    """Samples of the trained 2-step DTM match a 4-pattern 2x2 data law far better than at init (TV)."""
    data, probs = _bars_data()
    cfg = DTMConfig(size=4, degree=8, n_steps=2, sweeps=10, lr=0.1, seed=1)
    m = DTM(4, cfg)
    tv0 = total_variation(m.sample(4000), probs)
    m.fit(data, 60, batch=128, progress=False)
    tv1 = total_variation(m.sample(4000), probs)
    # TV of 4000 exact samples of a 4-state law is ~0.02; an untrained model is near-uniform (TV ~0.75)
    assert tv0 > 0.6
    assert tv1 < 0.2 and tv1 < tv0 / 3, (tv0, tv1)
    # same seed -> same model and samples
    a, b = DTM(4, cfg), DTM(4, cfg)
    for m_ in (a, b):
        m_.fit(data, 5, batch=64, progress=False)
    assert torch.equal(a.steps[1].weights, b.steps[1].weights) and torch.equal(a.sample(50), b.sample(50))
    m3 = DTM(4, cfg)
    m3.load_state_dict(m.state_dict())
    for a, b in zip(m3.steps, m.steps):
        assert torch.equal(a.weights, b.weights) and torch.equal(a.gamma, b.gamma)


def test_dtm_forward_noise_and_acp_and_quantiser() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.ones(200000, dtype=torch.float64)
    y = forward_noise(x, 0.2, g)
    assert abs((y < 0).double().mean().item() - 0.2) < 5 * (0.2 * 0.8 / 200000) ** 0.5
    # cumulative flip probability of the pair x_{t-1}: (1 - (1 - 2q)^(t-1)) / 2
    m = DTM(4, DTMConfig(n_steps=3, flip_probs=[0.1, 0.2, 0.3]))
    xp, xt = m.noised_pair(torch.ones(200000, 4, dtype=torch.float64), 3, g)
    p_prev = 0.5 * (1 - 0.8 * 0.6)
    assert abs((xp < 0).double().mean().item() - p_prev) < 5 * (p_prev * (1 - p_prev) / 800000) ** 0.5
    assert abs((xt != xp).double().mean().item() - 0.3) < 5 * (0.21 / 800000) ** 0.5
    q = uniform_quantiser(3, 1.0)  # levels -1, -2/3, ..., 1
    torch.testing.assert_close(q(torch.tensor([0.1, 0.4, -0.9, 5.0])), torch.tensor([0.0, 1 / 3, -1.0, 1.0]))
    # ACP: with a target autocorrelation below what the chain shows, lambda grows and couplings stay smaller
    data, _ = _bars_data()
    base = DTM(4, DTMConfig(lr=0.1, seed=2))
    acp = DTM(4, DTMConfig(lr=0.1, seed=2, acp_lambda=0.05, acp_target=-1.0, acp_max=2.0))
    base.fit(data, 30, batch=128, progress=False)
    log = acp.fit(data, 30, batch=128, progress=False)
    assert log[-1][0]["acp_lambda"] > 0.05 * 1.2 ** 10
    assert acp.steps[0].weights.abs().sum() < base.steps[0].weights.abs().sum()
    # a quantised model only ever samples with quantised couplings and still learns
    mq = DTM(4, DTMConfig(lr=0.1, seed=1), quantiser=uniform_quantiser(4, 2.0))
    mq.fit(data, 40, batch=128, progress=False)
    assert mq.steps[0].weights.abs().max() > 0.2
    smp = mq._build(mq.steps[0], torch.zeros(16, 8, dtype=torch.float64), clamp=False)
    levels = smp.weights_np / (2.0 / 7)
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-9)
    assert len(np.unique(np.round(levels))) > 2


def test_dtm_mismatch_aware_training_draws_a_chip_per_step() -> None:
    data, probs = _bars_data()
    calls = []

    def chip(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(1)
        return 0.3 * torch.randn(16, generator=gen, dtype=torch.float64), \
            1.0 + 0.1 * torch.rand(16, generator=gen, dtype=torch.float64)

    m = DTM(4, DTMConfig(lr=0.1, seed=1), chip_sampler=chip)
    m.fit(data, 40, batch=128, progress=False)
    assert len(calls) == 40
    assert total_variation(m.sample(4000), probs) < 0.25


def test_total_variation_against_hand_computed_value() -> None:
    samples = torch.tensor([[1.0, 1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]])
    # empirical law over k = [s0 > 0] + 2 [s1 > 0]: k=3: 1/2, k=1: 1/4, k=0: 1/4
    probs = torch.tensor([0.25, 0.25, 0.25, 0.25], dtype=torch.float64)
    assert total_variation(samples, probs) == 0.5 * (0 + 0 + 0.25 + 0.25)
