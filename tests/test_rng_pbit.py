"""PBit surrogate: P(1) vs the logistic law (binomial z-scores), Markov-chain autocorrelation vs exp(-k dt/tau)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spicenet.cells.rng.pbit import PBit, markov_flip_probabilities


def _gen(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _chip() -> tuple[torch.Tensor, torch.Tensor]:
    # 3 chips x 5 cells, mismatch of the size seen in SPICE (V0 spread ~ tens of Vs, Vs ~ 0.3 mV)
    rng = np.random.default_rng(7)
    v0 = torch.tensor(rng.normal(0.0, 5e-3, (3, 5)))
    vs = torch.tensor(rng.uniform(0.25e-3, 0.45e-3, (3, 5)))
    return v0, vs


def _binomial_z(bits: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    n = bits.shape[0]
    return (bits.mean(0) - p) / torch.sqrt(p * (1 - p) / n)


def _logistic(v: torch.Tensor, v0: torch.Tensor, vs: torch.Tensor) -> torch.Tensor:
    # independent statement of the law: 1 / (1 + exp(-(v - v0) / vs))
    return 1.0 / (1.0 + torch.exp(-(v - v0) / vs))


def test_p1_matches_logistic_within_binomial_error() -> None:
    v0, vs = _chip()
    pb = PBit(v0, vs, dtype=torch.float64)
    n = 20000
    for k in (-1.5, -0.3, 0.0, 0.8):  # bias k slopes from each cell's own transition
        v = v0 + k * vs
        bits = pb.sample(v.expand(n, -1, -1), generator=_gen(1))
        z = _binomial_z(bits, _logistic(v, v0, vs))
        assert z.abs().max() < 4.5, f"k={k}: max |z| {z.abs().max():.2f}"


def test_wrong_slope_fails_the_check() -> None:
    v0, vs = _chip()
    pb = PBit(v0, vs * 1.3, dtype=torch.float64)  # deliberately wrong vs
    n = 20000
    v = v0 + 1.0 * vs
    bits = pb.sample(v.expand(n, -1, -1), generator=_gen(2))
    z = _binomial_z(bits, _logistic(v, v0, vs))
    assert z.abs().max() > 6.0


def test_same_seed_same_bits_and_shapes() -> None:
    v0, vs = _chip()
    pb = PBit(v0, vs)
    a = pb.sample(v0, generator=_gen(3))
    b = pb.sample(v0, generator=_gen(3))
    assert torch.equal(a, b) and a.shape == (3, 5)
    pbt = PBit(v0, vs, tau_s=1e-7, dt_s=2e-8)
    assert torch.equal(pbt.sample_stream(v0, 10, generator=_gen(4)), pbt.sample_stream(v0, 10, generator=_gen(4)))


def test_markov_stream_stationary_p_and_autocorrelation() -> None:
    tau, dt = 100e-9, 40e-9
    rho = math.exp(-dt / tau)
    v0 = torch.zeros(64)
    vs = torch.full((64,), 1e-3)
    pb = PBit(v0, vs, tau_s=tau, dt_s=dt, dtype=torch.float64)
    assert pb.rho == pytest.approx(rho, rel=1e-12)
    p = 0.3
    v = torch.full((64,), math.log(p / (1 - p)) * 1e-3)
    n = 20000
    x = pb.sample_stream(v, n, generator=_gen(5))  # [n, 64]
    assert x.shape == (n, 64)
    # stationary P(1): the variance of the mean of an AR(1) stream is p(1-p)/n * (1+rho)/(1-rho)
    xm = x.mean()
    se = math.sqrt(p * (1 - p) / (n * 64) * (1 + rho) / (1 - rho))
    assert abs(xm.item() - p) < 4.5 * se
    # autocorrelation at lags 1..4 vs exp(-k dt / tau); standard error of a sample autocorrelation ~ 1/sqrt(n*cells)
    xc = x - x.mean(0)
    var = (xc * xc).mean()
    for k in (1, 2, 4):
        r = (xc[k:] * xc[:-k]).mean() / var
        assert abs(r.item() - math.exp(-k * dt / tau)) < 5.0 * math.sqrt((1 + rho**2) / (1 - rho**2) / (n * 64)), k
    # and a deliberately wrong tau is rejected by the same check
    assert abs((xc[1:] * xc[:-1]).mean() / var - math.exp(-dt / (2 * tau))) > 0.05


def test_independent_stream_has_no_correlation_and_flip_probabilities() -> None:
    pb = PBit(torch.zeros(8), torch.ones(8), dtype=torch.float64)
    x = pb.sample_stream(torch.zeros(8), 20000, generator=_gen(6))
    xc = x - x.mean(0)
    r1 = (xc[1:] * xc[:-1]).mean() / (xc * xc).mean()
    assert abs(r1.item()) < 5.0 / math.sqrt(20000 * 8)
    # two-state chain algebra: stationary p = a / (a + b), lag-1 correlation 1 - a - b
    p = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    a, b = markov_flip_probabilities(p, 0.7)
    torch.testing.assert_close(a / (a + b), p)
    torch.testing.assert_close(1 - a - b, torch.full_like(p, 0.7))


def test_time_varying_bias_and_initial_state() -> None:
    pb = PBit(torch.zeros(2), torch.ones(2), tau_s=1e-6, dt_s=1e-9, dtype=torch.float64)
    v = torch.zeros(5, 2)
    x = pb.sample_stream(v, 5, generator=_gen(8), state=torch.tensor([1.0, 0.0]), time_varying=True)
    assert x.shape == (5, 2)
    # rho = exp(-1e-3): with 5 steps the chance of any refresh is tiny; the state is held
    assert torch.equal(x[0], torch.tensor([1.0, 0.0], dtype=torch.float64))


def test_energy_and_gibbs_nonideality() -> None:
    pb = PBit(torch.tensor([1e-3, -2e-3]), torch.tensor([0.3e-3, 0.45e-3]), energy_per_bit_j=350e-18,
              dtype=torch.float64)
    assert pb.energy_j(1000) == pytest.approx(350e-15)
    off, gain = pb.gibbs_nonideality(0.0, 0.3e-3)
    # the chip's response at v = v0_nom + vs_nom * x must equal sigmoid((x - offset) / gain)
    x = torch.linspace(-4, 4, 9, dtype=torch.float64)[:, None]
    torch.testing.assert_close(pb.prob(0.0 + 0.3e-3 * x), torch.sigmoid((x - off) / gain))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(v0=torch.zeros(3), vs=torch.tensor([1.0, -1.0, 1.0])), "vs"),
        (dict(v0=torch.zeros(2, 2, 2), vs=torch.ones(2)), "v0"),
        (dict(v0=torch.zeros(3), vs=torch.ones(3), tau_s=1e-7), "dt_s"),
        (dict(v0=torch.zeros(3), vs=torch.ones(3), tau_s=-1.0, dt_s=1e-9), "tau_s"),
        (dict(v0=torch.zeros(3), vs=torch.ones(3), energy_per_bit_j=-1.0), "energy_per_bit_j"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PBit(**kwargs)


def test_draw_chips_mismatch_moments_and_seed() -> None:
    chips = PBit.draw_chips(400, 50, v0_mean=1e-3, v0_std=4e-3, vs_mean=0.34e-3, vs_std=0.05e-3,
                            generator=_gen(9), dtype=torch.float64, tau_s=40e-9, dt_s=100e-9)
    n = 400 * 50
    assert chips.shape == (400, 50)
    assert abs(chips.v0.mean().item() - 1e-3) < 5 * 4e-3 / math.sqrt(n)
    assert abs(chips.v0.std().item() / 4e-3 - 1) < 5 / math.sqrt(2 * n)
    assert abs(chips.vs.mean().item() - 0.34e-3) < 5 * 0.05e-3 / math.sqrt(n)
    assert abs(chips.vs.std().item() / 0.05e-3 - 1) < 0.05
    assert torch.all(chips.vs > 0)
    again = PBit.draw_chips(400, 50, 1e-3, 4e-3, 0.34e-3, 0.05e-3, generator=_gen(9), dtype=torch.float64)
    assert torch.equal(again.v0, chips.v0) and torch.equal(again.vs, chips.vs)
