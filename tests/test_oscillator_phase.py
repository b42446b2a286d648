"""PhaseOscillatorNetwork and schedules against analytic results (Adler, SHIL closed form, diffusion law),
an independent scipy integration (RK4 / Heun convergence order, AIS-units mapping) and autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

from spicenet.cells.oscillator.phase import (
    ChipMismatch,
    PhaseModelParams,
    PhaseOscillatorNetwork,
    from_ais_units,
    phase_to_intensity,
    sample_chip,
    wrap_phase,
)
from spicenet.cells.oscillator.schedule import PiecewiseSchedule, quantize_codes_ste

F64 = torch.float64
# one code LSB = 1e7 rad/s
P1 = PhaseModelParams(f0_hz=1e9, g_unit_s=1e-6, k_per_siemens=1e13, h_sin=(1.0,), h_cos=(0.0,))


def pair_chips(d_omega: np.ndarray) -> ChipMismatch:
    """Batch of 2-oscillator chips with omega_1 - omega_2 = d_omega (rad/s), symmetric about f0."""
    det = torch.tensor(np.stack([d_omega / (4 * math.pi), -d_omega / (4 * math.pi)], 1), dtype=F64)
    return ChipMismatch(det, torch.ones(2, 2, dtype=F64))


def pair_codes(code: float) -> torch.Tensor:
    return torch.tensor([[0.0, code], [code, 0.0]], dtype=F64)


# ---------------------------------------------------------------- (a) Adler's equation
def test_adler_locked_phase_and_lock_range():
    net = PhaseOscillatorNetwork(2, P1, dtype=F64)
    code = 5.0
    k = code * P1.k_per_code  # 5e7 rad/s
    ratios = np.array([0.0, 0.3, 0.7, 0.95, -0.6])
    out = net(torch.zeros(len(ratios), 2, dtype=F64), 2e-6, 2000, pair_codes(code), chip=pair_chips(ratios * 2 * k))
    psi = (out.phases[:, 0] - out.phases[:, 1]).numpy()
    np.testing.assert_allclose(psi, np.arcsin(ratios), atol=1e-6)


def test_adler_drift_frequency_outside_lock():
    net = PhaseOscillatorNetwork(2, P1, dtype=F64)
    code = 4.0
    k = code * P1.k_per_code
    ratios = np.array([1.05, 1.3, 2.0, -1.5])
    d_omega = ratios * 2 * k
    out = net(torch.zeros(len(ratios), 2, dtype=F64), 2e-6, 6000, pair_codes(code), chip=pair_chips(d_omega),
              return_trajectory=True)
    psi = (out.trajectory[:, :, 0] - out.trajectory[:, :, 1]).numpy()
    t = out.times.numpy()
    for b in range(len(ratios)):
        y = psi[b] * np.sign(d_omega[b])  # increasing
        levels = np.arange(np.ceil(y[0] / (2 * np.pi)) + 1, np.floor(y[-1] / (2 * np.pi))) * 2 * np.pi
        assert len(levels) >= 5
        crossings = np.interp(levels, y, t)
        omega_beat = 2 * np.pi / np.mean(np.diff(crossings))
        expected = math.sqrt(d_omega[b] ** 2 - (2 * k) ** 2)
        assert abs(omega_beat / expected - 1) < 2e-3, (ratios[b], omega_beat, expected)


def test_harmonic_coupling_locked_phase_and_frequency_shift():
    """dpsi/dt = d_omega - 2K sum a_k sin(k psi); locked common frequency shift = K sum c_k cos(k psi)."""
    a, c = (1.0, 0.3, -0.1), (0.2, 0.1, 0.05)
    p = PhaseModelParams(f0_hz=1e9, g_unit_s=1e-6, k_per_siemens=1e13, h_sin=a, h_cos=c)
    net = PhaseOscillatorNetwork(2, p, dtype=F64)
    code = 6.0
    k = code * p.k_per_code
    g = lambda x: sum(ak * math.sin((i + 1) * x) for i, ak in enumerate(a))
    xs = np.linspace(0, np.pi, 20001)
    x_max = xs[np.argmax([g(x) for x in xs])]
    ratios = np.array([0.2, 0.6, 0.9]) * g(x_max)
    d_omega = ratios * 2 * k
    out = net(torch.zeros(3, 2, dtype=F64), 2e-6, 2000, pair_codes(code), chip=pair_chips(d_omega),
              return_trajectory=True)
    psi = (out.phases[:, 0] - out.phases[:, 1]).numpy()
    for b, r in enumerate(ratios):
        root = brentq(lambda x: g(x) - r, 0.0, x_max)
        assert abs(psi[b] - root) < 1e-6
        shift = k * sum(ck * math.cos((i + 1) * root) for i, ck in enumerate(c))
        tr = out.trajectory[b, :, 0].numpy()
        slope = (tr[-1] - tr[-501]) / (out.times[-1] - out.times[-501]).item()
        assert abs(slope - shift) < 1e-6 * k


def test_negative_code_taps_complementary_phase():
    """Code -c: coupling |K| H(phi_j + pi - phi_i) => dpsi/dt = d_omega + 2|K| sum a_k (-1)^(k+1) sin(k psi)."""
    a = (1.0, 0.4)
    p = PhaseModelParams(f0_hz=1e9, g_unit_s=1e-6, k_per_siemens=1e13, h_sin=a, h_cos=(0.1, 0.3))
    net = PhaseOscillatorNetwork(2, p, dtype=F64)
    k = 5.0 * p.k_per_code
    d_omega = np.array([0.0, 0.5 * 2 * k])
    out = net(torch.full((2, 2), 0.3, dtype=F64) * torch.tensor([1.0, -1.0], dtype=F64), 2e-6, 2000,
              pair_codes(-5.0), chip=pair_chips(d_omega))
    psi = wrap_phase(out.phases[:, 0] - out.phases[:, 1]).numpy() % (2 * np.pi)
    g = lambda x: sum(ak * (-1) ** (i + 2) * math.sin((i + 1) * x) for i, ak in enumerate(a))
    assert abs(psi[0] - np.pi) < 1e-6
    root = brentq(lambda x: d_omega[1] / (2 * k) + g(x), np.pi, np.pi + 1.0)
    assert abs(psi[1] - root) < 1e-6


# ---------------------------------------------------------------- (b) SHIL
def test_shil_closed_form_and_binarisation():
    n, L = 8, 3e7
    net = PhaseOscillatorNetwork(n, P1, dtype=F64)
    gen = torch.Generator().manual_seed(3)
    phi0 = (torch.rand(16, n, generator=gen, dtype=F64) * 2 - 1) * math.pi * 0.999
    out = net(phi0, 4e-7, 800, torch.zeros(n, n, dtype=F64), shil=torch.full((n,), L, dtype=F64),
              return_trajectory=True)
    t = out.times[199].item()
    exact = torch.atan2(torch.sin(phi0) * math.exp(-L * t), torch.cos(phi0) * math.exp(L * t))
    torch.testing.assert_close(out.trajectory[:, 199], exact, atol=1e-7, rtol=0)
    final = torch.remainder(out.phases, 2 * math.pi)
    dist = torch.minimum(torch.minimum(final, (final - math.pi).abs()), 2 * math.pi - final)
    assert float(dist.max()) < 1e-6  # e^{-2 L T} = e^{-24}
    near_pi = (final - math.pi).abs() < 0.1
    assert 0 < int(near_pi.sum()) < near_pi.numel()  # both states reached
    assert torch.equal(near_pi, phi0.abs() > math.pi / 2)  # each phase goes to the nearer stable state


# ---------------------------------------------------------------- (c) phase diffusion
def test_phase_diffusion_variance_grows_as_2Dt_and_is_seeded():
    n, bsz = 2, 4000
    d = torch.tensor([1e6, 3e6], dtype=F64)  # rad^2/s per oscillator
    net = PhaseOscillatorNetwork(n, P1, dtype=F64)
    run = lambda seed: net(torch.zeros(bsz, n, dtype=F64), 1e-6, 100, torch.zeros(n, n, dtype=F64), method="heun",
                           noise=True, phase_diffusion=d, generator=torch.Generator().manual_seed(seed),
                           return_trajectory=True)
    out = run(11)
    se = math.sqrt(2 / (bsz - 1))  # relative standard error of a Gaussian sample variance
    for step in (49, 99):
        t = out.times[step].item()
        var = out.trajectory[:, step].var(0)
        rel = (var / (2 * d * t) - 1).abs()
        assert float(rel.max()) < 4 * se, (var, 2 * d * t)
    assert float(out.phases.mean(0).abs().max()) < 4 * math.sqrt(2 * 3e6 * 1e-6 / bsz)
    assert torch.equal(run(11).phases, out.phases)
    assert not torch.equal(run(12).phases, out.phases)


def test_noise_arguments_are_checked():
    net = PhaseOscillatorNetwork(2, P1, dtype=F64)
    z = torch.zeros(1, 2, dtype=F64)
    with pytest.raises(ValueError, match="heun"):
        net(z, 1e-7, 10, torch.zeros(2, 2, dtype=F64), noise=True, generator=torch.Generator())
    with pytest.raises(ValueError, match="generator"):
        net(z, 1e-7, 10, torch.zeros(2, 2, dtype=F64), method="heun", noise=True)
    with pytest.raises(ValueError, match="phi0"):
        net(torch.zeros(1, 3), 1e-7, 10, torch.zeros(2, 2, dtype=F64))
    with pytest.raises(ValueError, match="k_codes"):
        net(z, 1e-7, 10, torch.zeros(3, 3, dtype=F64))
    with pytest.raises(ValueError, match="shil"):
        net(z, 1e-7, 10, torch.zeros(2, 2, dtype=F64), shil=torch.zeros(3, dtype=F64))


# ---------------------------------------------------------------- (d) convergence order vs scipy
A3, C3 = (1.0, 0.25, -0.1), (0.15, -0.05, 0.02)
P3 = PhaseModelParams(f0_hz=1e9, g_unit_s=1e-6, k_per_siemens=1e13, h_sin=A3, h_cos=C3)


def reference_rhs(codes: np.ndarray, det_hz: np.ndarray, shil: np.ndarray, bias: np.ndarray):
    """The model equation written out directly (explicit sum over j and harmonics, negative taps by +pi)."""
    kpc = P3.k_per_code

    def f(_t, phi):
        out = 2 * np.pi * det_hz - shil * np.sin(2 * phi) + bias
        for i in range(len(phi)):
            for j in range(len(phi)):
                if i == j or codes[i, j] == 0:
                    continue
                x = phi[j] - phi[i] + (np.pi if codes[i, j] < 0 else 0.0)
                h = sum(A3[m] * np.sin((m + 1) * x) + C3[m] * np.cos((m + 1) * x) for m in range(3))
                out[i] += kpc * abs(codes[i, j]) * h
        return out

    return f


def test_rk4_fourth_order_and_heun_second_order_with_schedules():
    rng = np.random.default_rng(0)
    n, t_end = 3, 1e-7
    codes = np.array([[[0, 7, -3], [7, 0, 12], [-3, 12, 0]], [[0, -9, 4], [-9, 0, 2], [4, 2, 0]]], float)
    shil = np.array([[1e7, 3e7, 0.0], [4e7, 0.0, 2e7]])
    bias = np.array([[1e7, -2e7, 0.5e7], [0.0, 1e7, -1e7]])
    det = rng.normal(0, 5e6, n)
    phi0 = rng.uniform(-np.pi, np.pi, n)
    durs = [0.5 * t_end, 0.5 * t_end]
    y = phi0
    for s in range(2):
        sol = solve_ivp(reference_rhs(codes[s], det, shil[s], bias[s]), (0, durs[s]), y, method="DOP853",
                        rtol=1e-13, atol=1e-13)
        y = sol.y[:, -1]
    ref = torch.tensor(y)
    net = PhaseOscillatorNetwork(n, P3, dtype=F64)
    chip = ChipMismatch(torch.tensor(det), torch.ones(n, n, dtype=F64))
    sched = lambda v: PiecewiseSchedule(torch.tensor(v), torch.tensor(durs, dtype=F64))
    errs = {}
    for method in ("rk4", "heun"):
        for steps in (40, 80, 160, 320):
            out = net(torch.tensor(phi0).unsqueeze(0), t_end, steps, sched(codes), shil=sched(shil),
                      bias=sched(bias), chip=chip, method=method)
            errs[method, steps] = float((out.phases[0] - ref).abs().max())
    assert errs["rk4", 160] < 1e-6
    for a, b in ((40, 80), (80, 160), (160, 320)):
        assert 12 < errs["rk4", a] / errs["rk4", b] < 21, errs
    assert 3.5 < errs["heun", 160] / errs["heun", 320] < 4.5, errs


def test_ais_units_mapping_matches_ais_equation():
    """The AIS authors' form in x = phi/pi integrated by scipy equals the network after from_ais_units."""
    n = 3
    k_ais = np.array([[0, 0.8, -0.5], [0.8, 0, 0.3], [-0.5, 0.3, 0]])
    l_ais, b_ais = np.array([0.4, 0.2, 0.0]), np.array([0.1, -0.2, 0.05])
    x0 = np.array([0.3, 1.4, -0.6])

    def f(_t, x):
        return (k_ais * np.sin(np.pi * (x[:, None] - x[None, :]))).sum(1) - l_ais * np.sin(2 * np.pi * x) + b_ais

    ref = solve_ivp(f, (0, 3.0), x0, method="DOP853", rtol=1e-12, atol=1e-12).y[:, -1]
    tu = 1e-8  # one AIS time unit = 10 ns
    k, l, b = from_ais_units(torch.tensor(k_ais), torch.tensor(l_ais), torch.tensor(b_ais), tu)
    p = PhaseModelParams(f0_hz=1e9, g_unit_s=1.0, k_per_siemens=1.0, h_sin=(1.0,), h_cos=(0.0,))
    net = PhaseOscillatorNetwork(n, p, dtype=F64)
    out = net(torch.tensor(x0).unsqueeze(0) * math.pi, 3.0 * tu, 600, k, shil=l, bias=b)
    np.testing.assert_allclose(out.phases[0].numpy() / math.pi, ref, atol=1e-8)


# ---------------------------------------------------------------- autograd, mismatch, masks, hidden
def test_gradients_match_finite_differences():
    n = 3
    net = PhaseOscillatorNetwork(n, P3, dtype=F64)
    phi0 = torch.tensor([[0.2, -1.0, 2.0], [1.0, 0.5, -0.3]], dtype=F64)
    codes = torch.tensor([[[0, 3, -2], [3, 0, 5], [-2, 5, 0]], [[0, 1.5, 2], [1.5, 0, -4], [2, -4, 0]]], dtype=F64,
                         requires_grad=True)
    shil = torch.tensor([[1e7, 2e7, 0.5e7], [0.0, 1e7, 3e7]], dtype=F64, requires_grad=True)
    bias = torch.tensor([[1e6, -2e6, 3e6], [0.0, 1e6, -1e6]], dtype=F64, requires_grad=True)
    durs = torch.tensor([3e-8, 2e-8], dtype=F64)

    def f(c, l, b):
        return net(phi0, 5e-8, 25, PiecewiseSchedule(c, durs), shil=PiecewiseSchedule(l * 1e7, durs),
                   bias=PiecewiseSchedule(b * 1e6, durs)).phases

    assert torch.autograd.gradcheck(f, (codes, shil / 1e7, bias / 1e6), eps=1e-6, atol=1e-6)


def test_chip_gain_scales_coupling_and_detuning_shifts_frequency():
    net = PhaseOscillatorNetwork(2, P1, dtype=F64)
    k = 5.0 * P1.k_per_code
    d_omega = 0.5 * 2 * k
    gain = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=F64)  # symmetric resistor error of -20 %
    det = torch.tensor([d_omega / (4 * math.pi), -d_omega / (4 * math.pi)], dtype=F64)
    out = net(torch.zeros(1, 2, dtype=F64), 2e-6, 2000, pair_codes(5.0), chip=ChipMismatch(det, gain))
    psi = float(out.phases[0, 0] - out.phases[0, 1])
    assert abs(psi - math.asin(d_omega / (2 * 0.8 * k))) < 1e-6
    chip = sample_chip(6, 1e9, 0.01, 0.05, torch.Generator().manual_seed(1), dtype=F64)
    chip2 = sample_chip(6, 1e9, 0.01, 0.05, torch.Generator().manual_seed(1), dtype=F64)
    assert torch.equal(chip.detuning_hz, chip2.detuning_hz) and torch.equal(chip.k_gain, chip.k_gain.T)
    assert 1e6 < float(chip.detuning_hz.std()) < 3e7


def test_mask_removes_couplings_and_hidden_indices():
    n = 4
    mask = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]])
    net = PhaseOscillatorNetwork(n, P1, mask=mask, visible=[0, 2], dtype=F64)
    assert net.hidden_idx.tolist() == [1, 3]
    codes = torch.full((n, n), 10.0, dtype=F64)
    phi0 = torch.tensor([[0.0, 1.0, 2.0, 2.5]], dtype=F64)
    out = net(phi0, 3e-7, 300, codes)
    # pairs (0,1) and (2,3) each synchronise to their own midpoint; nothing crosses between pairs
    torch.testing.assert_close(out.phases, torch.tensor([[0.5, 0.5, 2.25, 2.25]], dtype=F64), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.visible, out.phases[:, [0, 2]])
    with pytest.raises(ValueError, match="visible"):
        PhaseOscillatorNetwork(n, P1, visible=[0, 4])


def test_batched_chip_matches_individual_runs():
    n = 4
    net = PhaseOscillatorNetwork(n, P3, dtype=F64)
    chips = [sample_chip(n, 1e9, 0.005, 0.1, torch.Generator().manual_seed(s), dtype=F64) for s in range(3)]
    batched = ChipMismatch(torch.stack([c.detuning_hz for c in chips]), torch.stack([c.k_gain for c in chips]))
    gen = torch.Generator().manual_seed(0)
    codes = torch.randint(-15, 16, (n, n), generator=gen).to(F64)
    phi0 = torch.rand(3, n, generator=gen, dtype=F64) * 6
    bias = PiecewiseSchedule(torch.tensor([[1e7, 0, -1e7, 2e7], [0, 3e7, 0, -1e7]], dtype=F64),
                             torch.tensor([2e-8, 3e-8], dtype=F64))
    out = net(phi0, 5e-8, 50, codes, bias=bias, chip=batched)
    for b, c in enumerate(chips):
        single = net(phi0[b:b + 1], 5e-8, 50, codes, bias=bias, chip=c)
        torch.testing.assert_close(out.phases[b], single.phases[0], atol=1e-12, rtol=0)


# ---------------------------------------------------------------- schedule + quantiser
def test_piecewise_schedule_segments():
    s = PiecewiseSchedule(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([1.0, 2.0, 0.5]))
    t = torch.tensor([-1.0, 0.0, 0.999, 1.0, 2.9, 3.0, 3.49, 3.5, 10.0])
    assert s.segment_index(t).tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert s.at(t)[:, 0].tolist() == [1, 1, 1, 2, 2, 3, 3, 3, 3]
    assert s.total_duration == 3.5
    with pytest.raises(ValueError, match="durations"):
        PiecewiseSchedule(torch.zeros(2, 3), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="durations"):
        PiecewiseSchedule(torch.zeros(2, 3), torch.tensor([1.0]))


def test_quantize_codes_ste_forward_and_gradient():
    x = torch.tensor([-20.0, -14.6, -7.6, -0.4, 0.3, 2.5001, 14.6, 16.0], requires_grad=True)
    q = quantize_codes_ste(x, 4, signed=True)
    assert q.tolist() == [-15, -15, -8, 0, 0, 3, 15, 15]
    q.sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 1, 1, 1, 0]
    u = quantize_codes_ste(torch.tensor([-3.0, 7.4, 40.0]), 3, signed=False)
    assert u.tolist() == [0, 7, 7]


def test_phase_to_intensity_and_wrap():
    phi = torch.tensor([0.0, math.pi, 2 * math.pi, -math.pi / 2, 7.0], dtype=F64)
    expect = torch.tensor([0.0, 1.0, 0.0, 0.5, (1 - math.cos(7.0)) / 2], dtype=F64)
    torch.testing.assert_close(phase_to_intensity(phi), expect)
    w = wrap_phase(phi)
    assert float(w.max()) < math.pi and float(w.min()) >= -math.pi
    torch.testing.assert_close(torch.cos(w), torch.cos(phi))


def test_params_from_calibration_dict_and_validation():
    p = PhaseModelParams.from_dict({"f0_hz": 1.07e9, "k_per_siemens": 3e12, "g_unit_s": 1e-6,
                                    "h_harmonics": {"sin": [1.0, 0.2, 0.05], "cos": [0.0, 0.1, 0.0]}})
    assert p.h_sin == (1.0, 0.2, 0.05) and p.h_cos == (0.0, 0.1, 0.0)
    assert p.k_per_code == pytest.approx(3e6) and p.period_s == pytest.approx(1 / 1.07e9)
    with pytest.raises(ValueError, match="unknown"):
        PhaseModelParams.from_dict({"f0": 1e9})
    with pytest.raises(ValueError, match="h_sin"):
        PhaseModelParams(h_sin=(1.0, 0.1), h_cos=(0.0,))
    with pytest.raises(ValueError, match="phase_diffusion"):
        PhaseModelParams(phase_diffusion=-1.0)


def test_k_code_table_replaces_the_linear_law_and_keeps_gradients():
    """With a measured K table the coupling of code c is table[|c|] with the sign of c; without it k_per_code*c."""
    import torch

    from spicenet.cells.oscillator.phase import PhaseModelParams, PhaseOscillatorNetwork

    table = tuple(0.0 if k == 0 else 1e8 * k**0.97 for k in range(16))
    net = PhaseOscillatorNetwork(2, PhaseModelParams(k_code_table=table), dtype=torch.float64)
    codes = torch.tensor([[0.0, -7.0], [15.0, 0.0]], dtype=torch.float64, requires_grad=True)
    k_odd, k_even = net.coupling_rad_s(codes)
    assert k_odd[0, 1].item() == pytest.approx(-table[7]) and k_even[0, 1].item() == pytest.approx(table[7])
    assert k_odd[1, 0].item() == pytest.approx(table[15])
    k_odd.sum().backward()
    assert codes.grad[0, 1].item() == pytest.approx(table[7] - table[6]) or codes.grad[0, 1].item() == pytest.approx(table[8] - table[7])
    linear = PhaseOscillatorNetwork(2, PhaseModelParams(), dtype=torch.float64)
    assert linear.coupling_rad_s(codes.detach())[0][0, 1].item() == pytest.approx(-7 * PhaseModelParams().k_per_code)
    with pytest.raises(ValueError, match="k_code_table"):
        PhaseModelParams(k_code_table=(1.0,) * 16)
