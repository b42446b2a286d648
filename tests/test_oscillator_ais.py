"""AIS trainer core: connectivity against direct enumeration, quantised schedules, WGAN-GP penalty against its
closed form for a linear critic, and a short mismatch-aware training that must move samples toward the data
(kernel MMD and mode hits computed here, independently of the trainer)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import torch.nn.functional as F
import pytest
import torch

from spicenet.cells.oscillator.ais import AISConfig, AISGenerator, gradient_penalty, grid_connectivity, train_ais
from spicenet.cells.oscillator.phase import ChipMismatch, PhaseModelParams

SAMPLE_MNIST = Path(__file__).resolve().parents[1] / "spicenet" / "data" / "samples" / "mnist_sample.npz"


def mmd2(x: torch.Tensor, y: torch.Tensor, sigma: float = 1.0) -> float:
    """Biased squared MMD with a Gaussian kernel on flattened images."""
    x, y = x.flatten(1).double(), y.flatten(1).double()
    k = lambda a, b: torch.exp(-torch.cdist(a, b) ** 2 / (2 * sigma**2))  # noqa: E731
    return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


def test_grid_connectivity_matches_enumeration():
    h, w = 4, 5
    mask, pos = grid_connectivity(h, w, 0, 1.0, 0.0, 0.0, seed=0)
    expect = np.zeros((h * w, h * w), bool)
    for (r1, c1), (r2, c2) in itertools.product(itertools.product(range(h), range(w)), repeat=2):
        expect[r1 * w + c1, r2 * w + c2] = abs(r1 - r2) + abs(c1 - c2) == 1
    assert np.array_equal(mask.numpy(), expect)
    assert int(mask.sum()) // 2 == 2 * h * w - h - w
    diag, _ = grid_connectivity(h, w, 0, math.sqrt(2), 0.0, 0.0, seed=0)
    assert int(diag.sum()) // 2 == (2 * h * w - h - w) + 2 * (h - 1) * (w - 1)
    full, _ = grid_connectivity(h, w, 3, 1.0, 1.0, 1.0, seed=0)
    assert int(full.sum()) == 23 * 22
    # extra pairs: Bernoulli(p) on the non-local pairs, symmetric, seeded
    m1, _ = grid_connectivity(8, 8, 0, 1.0, 0.0, 0.3, seed=5)
    m2, _ = grid_connectivity(8, 8, 0, 1.0, 0.0, 0.3, seed=5)
    local, _ = grid_connectivity(8, 8, 0, 1.0, 0.0, 0.0, seed=5)
    assert torch.equal(m1, m2) and torch.equal(m1, m1.T) and not bool(m1.diagonal().any())
    n_other = 64 * 63 // 2 - int(local.sum()) // 2
    got = (int(m1.sum()) - int(local.sum())) // 2
    assert abs(got / n_other - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n_other)


def test_reference_oscillator_is_coupled_to_all_and_readout_is_flip_invariant():
    mask, pos = grid_connectivity(3, 3, 2, 1.0, 1.0, 0.0, seed=0, reference=True)
    assert mask.shape == (12, 12) and bool(mask[11, :11].all()) and bool(mask[:11, 11].all())
    torch.testing.assert_close(pos[11], torch.tensor([1.0, 1.0], dtype=pos.dtype))
    # coupling, SHIL and bias are invariant under phi -> phi + pi for all oscillators: so must the image be
    cfg = AISConfig(height=3, width=3, n_hidden=2, n_steps=20, seed=2)
    gen = AISGenerator(cfg)
    with torch.no_grad():
        gen.bias_raw.normal_(0, 1, generator=torch.Generator().manual_seed(0))
        gen.shil_raw.normal_(0, 1, generator=torch.Generator().manual_seed(1))
    phi0 = gen.sample_latent(8, torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = gen(phi0), gen(phi0 + math.pi)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    free = AISGenerator(AISConfig(height=3, width=3, n_hidden=2, n_steps=20, seed=2, reference=False))
    phi0 = phi0[:, :11]
    with torch.no_grad():  # without a reference, the absolute readout flips black and white
        torch.testing.assert_close(free(phi0), 1 - free(phi0 + math.pi), atol=1e-4, rtol=0)


def test_hidden_oscillators_are_placed_and_connected():
    mask, pos = grid_connectivity(4, 4, 4, 1.0, 1.5, 0.0, seed=0)
    assert pos.shape == (20, 2)
    centres = torch.tensor([[0.5, 0.5], [0.5, 2.5], [2.5, 0.5], [2.5, 2.5]], dtype=pos.dtype)
    torch.testing.assert_close(pos[16:], centres)
    # each hidden node sits at the centre of a 2x2 block: its 4 pixels at distance sqrt(0.5), the next ring at
    # sqrt(2.5) > 1.5; hidden-hidden distance 2
    assert mask[16:, :16].sum(1).tolist() == [4, 4, 4, 4]
    assert not bool(mask[16:, 16:].any())


def test_generator_schedules_are_quantised_symmetric_and_seeded():
    cfg = AISConfig(height=3, width=3, n_hidden=2, n_segments=3, n_steps=10, code_init_std=9.0, seed=4)
    gen = AISGenerator(cfg)
    k = gen.code_matrices().detach()
    assert k.shape == (3, 12, 12) and gen.reference_index == 11
    assert torch.equal(k, k.round()) and float(k.abs().max()) == 15
    assert torch.equal(k, k.transpose(1, 2))
    assert not bool((k * (1 - gen.network.mask)).any())
    st = gen.export_state()
    assert st["codes"].dtype == np.int64 and np.array_equal(st["codes"], k.numpy().astype(np.int64))
    np.testing.assert_allclose(st["durations_s"].sum(), cfg.periods / gen.params.f0_hz)
    assert gen.density == pytest.approx(gen.n_edges / (12 * 11 / 2))
    a = AISGenerator(cfg).sample(5, torch.Generator().manual_seed(1))
    b = AISGenerator(cfg).sample(5, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (5, 3, 3) and float(a.min()) >= 0 and float(a.max()) <= 1


def test_gradients_reach_every_schedule_through_the_ode():
    cfg = AISConfig(height=2, width=2, n_hidden=1, n_segments=2, n_steps=8, seed=1)
    gen = AISGenerator(cfg, PhaseModelParams(phase_diffusion=1e5))
    g = torch.Generator().manual_seed(0)
    chip = ChipMismatch(torch.full((6,), 1e6), torch.ones(6, 6))
    x = gen(gen.sample_latent(16, g), chip, g)
    (x * torch.linspace(-1, 1, 4).view(1, 2, 2)).sum().backward()
    for p in (gen.codes_raw, gen.shil_raw, gen.bias_raw):
        assert p.grad is not None and torch.isfinite(p.grad).all() and float(p.grad.abs().sum()) > 0


def test_gradient_penalty_of_linear_critic_is_closed_form():
    w = torch.tensor([0.3, -2.0, 1.0, 0.5])
    critic = lambda x: x @ w  # noqa: E731  grad = w everywhere
    gp = gradient_penalty(critic, torch.rand(7, 4), torch.rand(7, 4), torch.Generator().manual_seed(0))
    assert float(gp) == pytest.approx((float(w.norm()) - 1) ** 2, rel=1e-6)


def test_short_mismatch_aware_training_moves_samples_to_the_data():
    """Two modes on 4x4 (vertical stripes and their complement). The flip symmetry of coupling + SHIL makes the
    task representable (antiphase horizontally, in phase vertically); training must pull samples onto it."""
    torch.set_num_threads(1)
    h = w = 4
    stripe = (torch.arange(w) % 2).float().expand(h, w)
    modes = torch.stack([stripe, 1 - stripe])
    data = modes.repeat(256, 1, 1)
    # flip-symmetric data: no reference oscillator needed (its readout is tested above)
    cfg = AISConfig(height=h, width=w, n_hidden=0, n_segments=2, periods=100, n_steps=30, iterations=150,
                    batch_size=64, n_critic=2, lr_codes=0.4, f0_std_rel=0.002, k_gain_std_rel=0.05, seed=0,
                    reference=False)
    params = PhaseModelParams(phase_diffusion=1e5)
    eval_gen = lambda: torch.Generator().manual_seed(99)  # noqa: E731
    before = AISGenerator(cfg, params).sample(512, eval_gen())
    res = train_ais(data, cfg, params, progress=False)
    after = res.generator.sample(512, eval_gen())
    m0, m1 = mmd2(before, data[:512]), mmd2(after, data[:512])
    assert m1 < 0.25 * m0, (m0, m1)
    linf = lambda x: (x.flatten(1)[:, None, :] - modes.flatten(1)[None]).abs().amax(-1)  # noqa: E731
    assert float((linf(before).min(1).values < 0.25).float().mean()) < 0.05
    dist = linf(after)  # L_inf distance to each mode
    hit = dist.min(1).values < 0.25
    which = dist.argmin(1)
    assert float(hit.float().mean()) > 0.4
    assert 0.25 < float((which[hit] == 0).float().mean()) < 0.75  # both modes, no collapse
    # the physics it must have found: antiphase (negative code) across columns, in phase (positive) along them
    gen = res.generator
    same_row = gen.edge_i // w == gen.edge_j // w
    last = gen.edge_codes().detach()[-1]
    assert float(last[same_row].mean()) < -3 and float(last[~same_row].mean()) > 3
    assert len(res.history) == cfg.iterations and all(math.isfinite(r["loss_critic"]) for r in res.history)


@pytest.mark.slow
def test_mnist_two_digits_8x8_with_reference_and_hidden():
    """8x8 area-downsampled MNIST 0s and 1s (embedded sample), 16 hidden + reference, mismatch-aware:
    the kernel MMD to the data must drop at least 5x (measured ~0.70 -> 0.02-0.05 on the full 0/1 set)."""
    torch.set_num_threads(1)
    z = np.load(SAMPLE_MNIST)
    x = np.concatenate([z["x_train"], z["x_test"]])
    y = np.concatenate([z["y_train"], z["y_test"]])
    imgs = torch.tensor(x[np.isin(y, [0, 1])], dtype=torch.float32)[:, None] / 255
    data = F.interpolate(imgs, size=(8, 8), mode="area")[:, 0].clamp(0, 1)
    cfg = AISConfig(height=8, width=8, n_hidden=16, n_segments=4, periods=100, n_steps=40, radius=1.5,
                    hidden_radius=2.5, extra_density=0.02, iterations=200, batch_size=64, n_critic=3, lr_codes=0.3,
                    f0_std_rel=0.002, k_gain_std_rel=0.05, seed=0)
    params = PhaseModelParams(phase_diffusion=1e5)
    before = AISGenerator(cfg, params).sample(400, torch.Generator().manual_seed(9))
    res = train_ais(data, cfg, params, progress=False)
    after = res.generator.sample(400, torch.Generator().manual_seed(9))
    m0, m1 = mmd2(before, data, 2.0), mmd2(after, data, 2.0)
    assert m1 < 0.2 * m0, (m0, m1)
