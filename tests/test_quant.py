"""spicenet.train.quant: level sets, rounding error, clamping, ties, the straight-through gradient, nearest level."""

from __future__ import annotations

import pytest
import torch

from spicenet.cells.oscillator.schedule import quantize_codes_ste
from spicenet.cells.resistive.network import programmable_levels
from spicenet.cells.rng.dtm import uniform_quantiser
from spicenet.train.quant import quantize_grid, quantize_grid_ste, quantize_nearest


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("step", "k_min", "k_max"), [(1.0, -15, 15), (1.0, 0, 7), (0.25, -3, 3), (1 / 31, -31, 31),
                                                      (0.7, -2, 5)])
def test_grid_levels_error_and_clamping(dtype: torch.dtype, step: float, k_min: int, k_max: int) -> None:
    lo, hi = k_min * step, k_max * step
    x = torch.linspace(lo - 3 * step, hi + 3 * step, 20001, dtype=dtype)
    q = quantize_grid(x, step, k_min, k_max)
    assert q.dtype == dtype
    # level set: exactly the multiples k * step, k_min <= k <= k_max, every one of them reached
    want = torch.arange(k_min, k_max + 1, dtype=dtype) * step
    assert torch.equal(torch.unique(q), want)
    # inside the range the error is at most half a step; beyond it the end levels
    inside = (x >= lo) & (x <= hi)
    tol = 8 * torch.finfo(dtype).eps * max(abs(lo), abs(hi), 1.0)
    assert float((q - x)[inside].abs().max()) <= step / 2 + tol
    assert bool((q[x < lo] == want[0]).all()) and bool((q[x > hi] == want[-1]).all())
    # the STE variant has the same values
    assert torch.equal(quantize_grid_ste(x, step, k_min, k_max), q)


def test_grid_ties_round_half_to_even() -> None:
    x = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5], dtype=torch.float64)
    assert quantize_grid(x, 1.0, -15, 15).tolist() == [-2.0, -2.0, -0.0, 0.0, 2.0, 2.0, 4.0]
    assert quantize_grid(x * 0.5, 0.5, -15, 15).tolist() == [-1.0, -1.0, 0.0, 0.0, 1.0, 1.0, 2.0]
    assert quantize_grid_ste(x, 1.0, -15, 15).tolist() == [-2.0, -2.0, 0.0, 0.0, 2.0, 2.0, 4.0]
    # a zero level from the STE variant is +0.0 (c + (0 - c))
    assert not bool(torch.signbit(quantize_grid_ste(torch.tensor([-0.3, -0.0]), 1.0, -1, 1)).any())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grid_ste_gradient_is_one_inside_zero_outside(dtype: torch.dtype) -> None:
    x = torch.tensor([-5.0, -2.0, -1.9, -0.3, 0.0, 0.26, 1.5, 2.0, 2.01, 9.0], dtype=dtype, requires_grad=True)
    w = torch.arange(1, 11, dtype=dtype)
    (quantize_grid_ste(x, 0.5, -4, 4) * w).sum().backward()  # range [-2, 2], ends included
    inside = torch.tensor([0, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=dtype)
    assert torch.equal(x.grad, w * inside)
    # the plain quantiser's gradient is round's: zero everywhere
    x.grad = None
    (quantize_grid(x, 0.5, -4, 4) * w).sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(w))


def test_grid_argument_checks() -> None:
    x = torch.zeros(3)
    for step in (0.0, -1.0, float("inf"), float("nan"), True):
        with pytest.raises(ValueError, match="step"):
            quantize_grid(x, step, -1, 1)
    with pytest.raises(ValueError, match="k_min"):
        quantize_grid(x, 1.0, -1.5, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k_min <= k_max"):
        quantize_grid_ste(x, 1.0, 2, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nearest_matches_brute_force_argmin(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    levels = torch.sort(torch.rand(9, generator=g, dtype=torch.float64) * 4 - 1).values
    x = torch.cat([torch.rand(5003, generator=g, dtype=torch.float64) * 8 - 3, levels,
                   torch.tensor([-50.0, 50.0, 0.0, -0.0])]).to(dtype).reshape(4, -1)
    q = quantize_nearest(x, levels)
    assert q.shape == x.shape and q.dtype == dtype
    lv = levels.to(dtype)
    # brute force: the distance to the chosen level is the smallest distance to any level
    best = torch.stack([(x - v).abs() for v in lv]).min(dim=0).values
    assert torch.equal((x - q).abs(), best)
    assert bool(torch.isin(q, lv).all())
    assert bool((q[x <= lv[0]] == lv[0]).all()) and bool((q[x >= lv[-1]] == lv[-1]).all())


def test_nearest_ties_go_to_the_lower_level_and_checks() -> None:
    levels = torch.tensor([0.0, 1.0, 2.0, 4.0], dtype=torch.float64)
    x = torch.tensor([0.5, 1.5, 3.0, 3.0001, -7.0, 10.0], dtype=torch.float64)
    assert quantize_nearest(x, levels).tolist() == [0.0, 1.0, 2.0, 4.0, 0.0, 4.0]
    assert quantize_nearest(x, levels[2:3]).tolist() == [2.0] * 6  # one level: everything maps to it
    assert quantize_nearest(x, levels.flip(0)).tolist() == [0.0, 1.0, 2.0, 4.0, 0.0, 4.0]  # order does not matter
    assert quantize_nearest(torch.tensor([float("nan"), 2.2]), levels).tolist() == [0.0, 2.0]  # NaN: the lowest level
    for bad in (torch.zeros(0), torch.zeros(2, 2)):
        with pytest.raises(ValueError, match="levels"):
            quantize_nearest(x, bad)


def test_family_quantisers_are_the_shared_ones() -> None:
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(2000, generator=g, dtype=torch.float64) - 0.5) * 40
    assert torch.equal(quantize_codes_ste(x, 4, signed=True), quantize_grid_ste(x, 1.0, -15, 15))
    assert torch.equal(quantize_codes_ste(x, 3, signed=False), quantize_grid_ste(x, 1.0, 0, 7))
    assert torch.equal(uniform_quantiser(6, 1.0)(x / 20), quantize_grid(x / 20, 1 / 31, -31, 31))
    levels = [3e-6, 1e-6, 0.0, 2e-6]
    assert torch.equal(programmable_levels(levels)(x.abs() * 1e-7),
                       quantize_nearest(x.abs() * 1e-7, torch.tensor(sorted(levels), dtype=torch.float64)))
