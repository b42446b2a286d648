"""SPICE side of the coupled-oscillator family: phase extraction on synthetic waveforms with known phases, the
coupling-function algebra against Adler's closed form, lock in phase / anti-phase of coupled rings in ngspice,
switched coupling banks, and the calibrated phase model (phase.py with the fitted H) against ngspice vs detuning
(locked phase and lock range)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spicenet.cells.oscillator import measure as om
from spicenet.cells.oscillator.calibrate import (
    OscCalibrationConfig,
    _dv_for,
    _estimate_lock,
    _free_running,
    _pair_item,
    _pair_lock,
    _run_jobs,
    fit_h_sin,
    lock_range,
    locked_phase,
    odd_part,
    stable_edge,
)
from spicenet.cells.oscillator.netlist import NetworkSpec, RingSpec, deck, network_netlist, pair_netlist, pwl
from spicenet.cells.oscillator.phase import ChipMismatch, PhaseModelParams, PhaseOscillatorNetwork

RING = RingSpec(n_stages=3)


# ------------------------------------------------------------------------------------------ phase extraction
def test_phase_extraction_synthetic_sine() -> None:
    """Two sines at 1 GHz, b ahead of a by 0.7 rad: the extracted difference is 0.7; frequency/amplitude exact."""
    f, dphi, amp = 1.0e9, 0.7, 0.4
    t = np.linspace(0, 50e-9, 200_001)
    va = 0.6 + amp * np.sin(2 * math.pi * f * t)
    vb = 0.6 + amp * np.sin(2 * math.pi * f * t + dphi)
    lk = om.locked_difference(t, va, vb, t_start=5e-9)
    assert abs(lk.dphi - dphi) < 1e-4
    assert lk.locked and abs(lk.drift) < 1e-4
    fa, aa = om.frequency_amplitude(t, va, 5e-9)
    assert abs(fa / f - 1) < 1e-6 and abs(aa - amp) < 1e-4
    # unwrapped phase grows as 2 pi f t (slope) and the first crossing is phase 0
    grid = np.linspace(10e-9, 40e-9, 50)
    th = om.phase_series(t, va, grid, t_start=5e-9)
    slope = np.polyfit(grid, th, 1)[0]
    assert abs(slope / (2 * math.pi * f) - 1) < 1e-6
    # a detuned pair: the difference drifts at the beat frequency (2 MHz)
    vc = 0.6 + amp * np.sin(2 * math.pi * (f + 2e6) * t)
    lk2 = om.locked_difference(t, va, vc, t_start=5e-9)
    assert not lk2.locked and abs(lk2.beat_hz - 2e6) < 2e6 * 1e-3


def test_phase_increment_variance_random_walk() -> None:
    """A square wave whose phase is a Wiener process with known D: Var[dphi(tau)] = 2 D tau (within statistics)."""
    rng = np.random.default_rng(1)
    f, d_true, dt = 1.0e9, 2.0e6, 2e-12
    n = 500_000  # 1 us
    phi = 2 * math.pi * f * dt * np.arange(n) + np.cumsum(rng.normal(0, math.sqrt(2 * d_true * dt), n))
    t = dt * np.arange(n)
    v = np.tanh(5 * np.sin(phi))
    lags = np.array([2e-9, 5e-9, 10e-9])
    var = om.phase_increment_variance(t, v, lags)
    np.testing.assert_allclose(var, 2 * d_true * lags, rtol=0.2)


# ------------------------------------------------------------------------------------------ coupling algebra
def test_locked_phase_matches_adler_closed_form() -> None:
    """Pure sine H: x = asin(dw / 2K), lock range 2K, x_max = pi/2; with harmonics, S(x) inverts exactly."""
    k = 3.0e7
    dw = np.array([-5e7, -1e7, 0.0, 2e7, 5.9e7])
    np.testing.assert_allclose(locked_phase(dw, k, [1.0]), np.arcsin(dw / (2 * k)), atol=1e-9)
    assert abs(stable_edge([1.0]) - math.pi / 2) < 1e-9
    assert abs(lock_range(k, [1.0]) - 2 * k) < 1e-3
    assert np.isnan(locked_phase(6.1e7, k, [1.0])[0])
    a = [1.0, 0.1, -0.08]
    x = locked_phase(dw, k, a)
    np.testing.assert_allclose(2 * k * odd_part(x, a), dw, rtol=1e-9, atol=1e-3)


def test_fit_h_sin_recovers_known_harmonics() -> None:
    """Synthetic locked phases from known (kappa, a): least_squares returns them."""
    kappa, a = 5.0e12, np.array([1.0, 0.05, -0.06])
    g = np.repeat([1 / 25e3, 1 / 50e3, 1 / 100e3], 6)
    u = np.tile([-0.6, 0.2, 0.4, 0.6, 0.75, 0.85], 3)
    dw = u * np.array([lock_range(kappa * gi, a) for gi in g])
    x = locked_phase(dw, kappa * g, a)
    k_fit, a_fit = fit_h_sin(dw, g, x, 3)
    assert abs(k_fit / kappa - 1) < 1e-4
    np.testing.assert_allclose(a_fit, a, atol=1e-4)


def test_pwl_text() -> None:
    assert pwl([0, 1e-9], [0, 1], rise=1e-11) == "PWL(0 0 1e-09 0 1.01e-09 1)"
    with pytest.raises(ValueError, match="times"):
        pwl([1e-9], [1])


# ------------------------------------------------------------------------------------------ SPICE
def _lock(engine, text: str, t_end: float = 45e-9, window: float = 15e-9) -> om.LockResult:
    r = engine.simulate(deck(text), f"tran 10p {t_end:.6g} 0 10p uic")
    return om.locked_difference(r["time"], om.osc_signal(r, 0), om.osc_signal(r, 1), t_end - window)


def test_identical_rings_lock_in_phase_and_anti_phase(engine) -> None:
    """Positive coupling (p0-p0) pulls two identical rings from 1.5 rad apart to 0; negative coupling (p0 to the
    complementary n0) pulls them to pi."""
    pos = _lock(engine, pair_netlist(RING, 50e3, +1, phases=(0.0, 1.5)))
    assert pos.locked and abs(pos.dphi) < 0.02, pos
    neg = _lock(engine, pair_netlist(RING, 50e3, -1, phases=(0.0, 1.5)))
    assert neg.locked and abs(om.wrap(neg.dphi - math.pi)) < 0.02, neg
    # control: no coupling keeps the initial offset (no lock mechanism, identical frequencies)
    free = _lock(engine, pair_netlist(RING, 1e12, +1, phases=(0.0, 1.5)), t_end=25e-9, window=10e-9)
    assert abs(free.dphi) > 1.0


def test_switched_bank_flips_lock_from_in_phase_to_anti_phase(engine) -> None:
    """A 4-bit bank at code +15 for 40 ns then -15 (PWL switches, polarity tap): in phase, then anti-phase."""
    codes = np.zeros((2, 2, 2), int)
    codes[0, 0, 1], codes[1, 0, 1] = 15, -15
    net = NetworkSpec(codes=codes, times=np.array([0.0, 40e-9]), phases=np.array([0.0, 1.2]), ring=RING,
                      r_lsb=200e3)
    text = network_netlist(net)
    switches = [ln for ln in text.splitlines() if ln.startswith("s") and ln.endswith(" swbank")]
    assert len(switches) == 4 + 2 and "PWL(" in text  # 4 bit switches + 2 polarity switches
    r = engine.simulate(deck(text), "tran 10p 80n 0 10p uic")
    t, va, vb = r["time"], om.osc_signal(r, 0), om.osc_signal(r, 1)
    first = om.locked_difference(t[t < 40e-9], va[t < 40e-9], vb[t < 40e-9], 25e-9)
    second = om.locked_difference(t, va, vb, 65e-9)
    assert first.locked and abs(first.dphi) < 0.05, first
    assert second.locked and abs(om.wrap(second.dphi - math.pi)) < 0.05, second


@pytest.fixture(scope="module")
def engine2():
    from spicenet.spice.engine import Engine

    with Engine(mode="shared", workers=2, timeout_s=120) as eng:
        yield eng


def test_calibrated_phase_model_matches_spice_vs_detuning(engine2) -> None:
    """Fit H (2 harmonics) on 4 detunings of a 50 kOhm pair; the phase model (PhaseOscillatorNetwork with the
    fitted H, integrated to steady state) predicts the locked phase at 3 *other* detunings within 0.05 rad, and
    SPICE locks at 0.9 and slips at 1.1 times the model's lock range."""
    engine = engine2
    cfg = OscCalibrationConfig(ring=RING, vdd_offsets=(-0.01, 0.0, 0.01), free_t_end=25e-9, resistances=(50e3,),
                               fractions=(0.25, 0.5, 0.7, 0.85), n_harmonics=2, negative_resistances=(),
                               pair_t_end=45e-9, window_s=12e-9)
    free = _free_running(engine, cfg, "generic")
    dwl0 = _estimate_lock(engine, cfg, "generic", free)

    def run(fracs, dwl, x0s=None):
        items = []
        for k, u in enumerate(fracs):
            x0 = math.asin(min(u, 0.95)) if x0s is None else x0s[k]
            items.append(_pair_item(cfg, "generic", f"t{k}", 50e3, 1, _dv_for(free, u * dwl / (2 * math.pi)), x0))
        out = _run_jobs(engine, items, "test")
        res = []
        for k, u in enumerate(fracs):
            dv = _dv_for(free, u * dwl / (2 * math.pi))
            dw = 2 * math.pi * float(np.polyval(free["poly"], dv) - np.polyval(free["poly"], 0.0))
            res.append((dw, _pair_lock(out[f"t{k}"], cfg, 1)))
        return res

    train = run(cfg.fractions, dwl0)
    assert all(lk["locked"] for _, lk in train)
    dw = np.array([d for d, _ in train])
    x = np.array([lk["x"] for _, lk in train])
    kappa, a = fit_h_sin(dw, np.full(dw.size, 1 / 50e3), x, 2)
    k = kappa / 50e3
    dwl = lock_range(k, a)
    # held-out detunings, predicted by the torch phase model (independent integrator of the same equation)
    test_fracs = [-0.6, 0.4, 0.8]
    x_model = locked_phase(np.array(test_fracs) * dwl, k, a)
    held = run(test_fracs + [0.9, 1.1], dwl, list(x_model) + [locked_phase(0.9 * dwl, k, a)[0]] * 2)
    params = PhaseModelParams(f0_hz=free["f0"], h_sin=tuple(a), h_cos=(0.0,) * len(a), g_unit_s=1 / 50e3,
                              k_per_siemens=kappa)
    netw = PhaseOscillatorNetwork(2, params, dtype=torch.float64)
    codes = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    det = torch.tensor([[0.0, d / (2 * math.pi)] for d, _ in held[:3]], dtype=torch.float64)
    chip = ChipMismatch(det, torch.ones(3, 2, 2, dtype=torch.float64))
    traj = netw(torch.zeros(3, 2, dtype=torch.float64), 400e-9, 4000, codes, chip=chip)
    x_torch = (traj.phases[:, 1] - traj.phases[:, 0]).numpy()
    np.testing.assert_allclose(x_torch, x_model, atol=2e-3)  # the torch model settles on the algebraic root
    x_spice = np.array([lk["x"] for _, lk in held[:3]])
    assert all(lk["locked"] for _, lk in held[:3])
    np.testing.assert_allclose(x_torch, x_spice, atol=0.05)
    assert held[3][1]["locked"], "SPICE must lock at 0.9 x the model's lock range"
    assert not held[4][1]["locked"], "SPICE must slip at 1.1 x the model's lock range"


def test_shil_pulls_frequency_to_half_the_injection(engine) -> None:
    """Second-harmonic injection at 2 f_inj locks a ring detuned by 3 MHz to exactly f_inj; without it the ring
    keeps its own frequency (control)."""
    from spicenet.cells.oscillator.netlist import ring_netlist

    r0 = engine.simulate(deck(ring_netlist(RING)), "tran 10p 25e-9 0 10p uic")
    f0 = om.frequency_amplitude(r0["time"], om.osc_signal(r0, 0), 10e-9)[0]
    f_inj = f0 + 3e6
    r = engine.simulate(deck(ring_netlist(RING, shil_a=100e-6, f_inj=f_inj)), "tran 10p 50e-9 0 10p uic")
    f_locked = om.frequency_amplitude(r["time"], om.osc_signal(r, 0), 30e-9)[0]
    assert abs(f_locked / f_inj - 1) < 2e-5, (f_locked, f_inj)
    assert abs(f0 / f_inj - 1) > 5e-4


@pytest.mark.slow
def test_phase_diffusion_scales_with_noise_power(engine) -> None:
    """D is proportional to the injected current-noise PSD: doubling sigma multiplies D by ~4 (two seeds each)."""
    from spicenet.cells.oscillator.netlist import ring_netlist
    from spicenet.spice.job import RunSpec

    lags = np.array([2e-9, 4e-9, 8e-9, 16e-9])
    d = {}
    for sigma in (15e-6, 30e-6):
        dk = deck(ring_netlist(RING, noise_a=sigma, noise_dt=10e-12))
        out = engine.simulate_many(dk, [RunSpec(f"s{k}", "tran 10p 200n 0 10p uic", seed=11 + k) for k in range(2)])
        var = np.mean([om.phase_increment_variance(o["time"], om.osc_signal(o, 0), lags, 10e-9)
                       for o in out.values()], 0)
        d[sigma] = np.polyfit(lags, var, 1)[0] / 2
    assert d[15e-6] > 0
    assert 2.5 < d[30e-6] / d[15e-6] < 6.0, d


@pytest.mark.slow
def test_quick_like_calibration_writes_a_usable_surrogate(tmp_path) -> None:
    """A reduced calibration end to end: surrogate file with the contract keys, phase-model params loadable by
    phase.py, lock-range checks passed in SPICE, per-chip f0 scattered around the nominal f0."""
    from spicenet.cells.oscillator.family import calibrate
    from spicenet.surrogate import SurrogateFile

    cfg = {"free": {"vdd_offsets": [-0.01, 0.0, 0.01], "t_end": 25e-9},
           "pair": {"resistances": [50e3, 100e3], "fractions": [-0.5, 0.3, 0.6, 0.8], "negative_resistances": [],
                    "n_harmonics": 2, "t_end": 50e-9, "window_s": 15e-9, "check_fractions": [0.9, 1.1]},
           "shil": {"dvdd": [-0.006, -0.003, 0.003, 0.006], "t_end": 50e-9},
           "noise": {"seeds": 1, "t_end": 100e-9}, "montecarlo": {"chips": 3}}
    res = calibrate(cfg, process="generic", quick=True, output=tmp_path / "osc.h5", workers=2, seed=3)
    fit = res["fit"]
    for key in ("f0_hz", "k_per_siemens", "h_harmonics", "shil_strength", "phase_diffusion", "energy_per_cycle_j",
                "f0_std_rel", "max_rel_err"):
        assert key in fit
    assert fit["max_rel_err"] < 0.05 and fit["lock_checks_passed"] == fit["lock_checks"] == 4
    sf = SurrogateFile.load(res["output"])
    assert sf.family == "oscillator" and set(sf.params) == {"f0_hz", "k_gain"}
    assert abs(sf.params["f0_hz"].mean / fit["f0_hz"] - 1) < 0.05
    assert fit["energy_per_cycle_j"] > 0 and fit["phase_diffusion"] > 0 and fit["shil_strength"] > 0
    PhaseModelParams.from_dict(fit["phase_model_params"])
    assert all(p.endswith(".png") for p in res["plots"]) and len(res["plots"]) == 6


def test_initial_phases_from_limit_cycle_table(engine) -> None:
    """Uncoupled identical rings started by .ic at set phases keep those phase differences: within 0.04 rad with
    the limit-cycle table of a free-running run (the analytic clipped-sine start is coarser, < 0.15 rad)."""
    from spicenet.cells.oscillator.netlist import limit_cycle_table, ring_netlist, ring_node_names

    r = engine.simulate(deck(ring_netlist(RING)), "tran 10p 25n 0 10p uic")
    table = limit_cycle_table(r["time"], [r[f"v({n})"] for n in ring_node_names(0, RING)], om.osc_signal(r, 0),
                              64, 10e-9)
    ph = np.array([0.0, 1.0, 2.5, 4.0, 5.5])
    for tab, tol in ((table, 0.04), (None, 0.15)):
        net = NetworkSpec(codes=np.zeros((1, 5, 5), int), times=[0.0], phases=ph, ring=RING, ic_table=tab)
        res = engine.simulate(deck(network_netlist(net)), "tran 10p 12n 0 10p uic")
        d = np.array([om.locked_difference(res["time"], om.osc_signal(res, 0), om.osc_signal(res, i), 4e-9).dphi
                      for i in range(5)])
        assert np.max(np.abs(om.wrap(d - ph))) < tol, (tab is None, d - ph)
