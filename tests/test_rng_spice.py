"""SPICE side of the rng family: p-bit cell decks, noise files, measurements, calibration.

Independent references: the two-state Markov (random telegraph) process's analytic correlation time and dwell
times; white-noise PSD of sampled Gaussian noise (Welch); the shot-noise limits 2qI (Vds >> V_T) and 4kT*I/Vds
(Vds -> 0); the a<->b mirror symmetry of the nominal cell (P(-v) = 1 - P(v), V0 = 0); the logistic law's
logit-linearity (logit P(2v) = 2 logit P(v) when V0 = 0) checked within binomial error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import welch

from spicenet.cells.rng import cells, measure
from spicenet.cells.rng.calibrate import RngCalibrationConfig, calibrate_rng, parse_config
from spicenet.errors import ConfigError
from spicenet.spice.engine import Deck, Engine, render
from spicenet.spice.job import RunSpec
from spicenet.spice.process import get_process

SIZING = cells.CellSizing(vdd=0.040, dvtn=-0.25, dvtp=0.25)
DT = 1e-9


# ----------------------------------------------------------------------------------- no simulator needed --
def _telegraph(k01: float, k10: float, dt: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u = rng.random(n)
    s = np.zeros(n, dtype=bool)
    for i in range(1, n):
        s[i] = (u[i] >= k10 * dt) if s[i - 1] else (u[i] < k01 * dt)
    return s


def test_tau_and_dwells_of_a_telegraph_process() -> None:
    k01, k10, dt = 1 / 40e-9, 1 / 60e-9, 1e-9   # mean dwell 40 ns in 0, 60 ns in 1
    s = _telegraph(k01, k10, dt, 400_000, seed=1)
    tau_exact = 1 / (k01 + k10)                  # 24 ns
    tau = measure.tau_from_autocorrelation(measure.autocorrelation(s, 300), dt)
    assert tau == pytest.approx(tau_exact, rel=0.08)
    d0, d1 = measure.dwell_times(np.where(s, 1.0, -1.0), dt, 0.5)
    assert d0.mean() == pytest.approx(40e-9, rel=0.05)
    assert d1.mean() == pytest.approx(60e-9, rel=0.05)
    assert measure.tau_from_dwells(d0, d1) == pytest.approx(tau_exact, rel=0.06)
    assert measure.integrated_tau(measure.autocorrelation(s, 300), dt) == pytest.approx(tau_exact, rel=0.1)
    assert measure.p_one(np.where(s, 1.0, -1.0)) == pytest.approx(0.6, abs=0.02)


def test_logistic_fit_recovers_parameters() -> None:
    v = np.linspace(-1e-3, 1e-3, 11) + 2e-3
    p = measure.sigmoid(v, 2.1e-3, 0.25e-3)
    fit = measure.fit_logistic(v, p)
    assert fit["v0"] == pytest.approx(2.1e-3, abs=1e-9)
    assert fit["vs"] == pytest.approx(0.25e-3, rel=1e-6)
    assert fit["r2"] == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="v, p"):
        measure.fit_logistic(v[:2], p[:2])


def test_shot_noise_limits_and_sampled_white_noise_psd() -> None:
    q = cells.Q_E
    assert cells.shot_noise_psd([1e-9], [1.0]) == pytest.approx(2 * q * 1e-9, rel=1e-9)          # saturation
    assert cells.shot_noise_psd([1e-12], [1e-5]) == pytest.approx(4 * 1.380649e-23 * 300.15 * 1e-12 / 1e-5,
                                                                  rel=1e-3)                       # 4kT g
    psd = 3.2e-26
    rms = cells.noise_rms(psd, DT)
    x = cells.noise_samples(seed=5, chip=2, cell=0, rms=[rms, rms], n=2**16)
    f, s = welch(x[:, 0], fs=1 / DT, nperseg=1024)                                               # one-sided
    assert np.mean(s[1:]) == pytest.approx(psd, rel=0.05)
    assert abs(np.corrcoef(x[:, 0], x[:, 1])[0, 1]) < 0.02
    again = cells.noise_samples(seed=5, chip=2, cell=0, rms=[rms, rms], n=2**16)
    other = cells.noise_samples(seed=5, chip=3, cell=0, rms=[rms, rms], n=2**16)
    assert np.array_equal(x, again) and not np.array_equal(x, other)


def test_generators_validate_inputs(tmp_path) -> None:
    proc = get_process("generic")
    with pytest.raises(ValueError, match="vdd"):
        cells.CellSizing(vdd=2.0)
    with pytest.raises(ValueError, match="noise_files"):
        cells.ct_deck([0.0, 0.0], SIZING, proc, noise_files=[tmp_path / "a.txt"])
    with pytest.raises(ValueError, match="quote"):
        cells.ct_deck([0.0], SIZING, proc, noise_files=[tmp_path / 'a".txt'])
    with pytest.raises(ValueError, match="PWL times"):
        cells.ct_deck([[(0.0, 0.0), (0.0, 1e-3)]], SIZING, proc)
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config({"chipz": 3}, "generic")
    with pytest.raises(ConfigError, match="std_target"):
        parse_config({"std_target": 0.0}, "generic")
    assert parse_config({"vdd": 0.04, "process": {"sky130": {"vdd": 0.058}}}, "sky130").vdd == 0.058
    deck = cells.ct_deck([0.0, 1e-3], SIZING, proc)
    from spicenet.spice import mismatch
    assert [d.name for d in mismatch.find_devices(deck, proc)] == \
        [d.name for d in cells.cell_devices(0, SIZING) + cells.cell_devices(1, SIZING)]


# ------------------------------------------------------------------------------------------ ngspice runs --
def _noise_deck(tmp_path, bias, t_stop: float, scale: float, chip: int = 0, stream: int = 0) -> Deck:
    proc = get_process("generic")
    rms = cells.noise_rms(3.2e-26, DT)   # ~4 nA per sample: the op-point value of this cell (2.4 x 2qI)
    path = cells.write_noise_file(tmp_path / f"n{chip}_{stream}.txt", seed=11, chip=chip, cell=0, rms=[rms, rms],
                                  dt=DT, t_stop=t_stop, stream=stream)
    return Deck(cells.ct_deck([bias], SIZING, proc, noise_files=[path], noise_scale=scale), proc)


def test_noise_off_is_deterministic_and_noise_on_flips(tmp_path) -> None:
    proc = get_process("generic")
    nominal = cells.device_commands(proc, SIZING, [None], seed=0)
    off = _noise_deck(tmp_path, 0.3e-3, 3e-6, scale=0.0)
    on = _noise_deck(tmp_path, 0.0, 6e-6, scale=1.0)
    tran = f"tran {DT} 3u 0 {DT}"
    with Engine(workers=1) as engine:
        first = engine.simulate(off, tran, commands=nominal)
        second = engine.simulate(off, tran, commands=nominal)
        noisy = engine.simulate(on, f"tran {DT} 6u 0 {DT}", commands=nominal)
    for name in ("time", "v(a0)", "v(b0)"):
        assert np.array_equal(first[name], second[name])
    x = measure.resample(first["time"], first["v(a0)"] - first["v(b0)"], DT, 0.5e-6, None)
    assert np.all(x > 0)                                       # settled in state 1, never flips
    assert np.ptp(x[-1000:]) < 1e-6                            # a fixed point, not a noisy trace
    xn = measure.resample(noisy["time"], noisy["v(a0)"] - noisy["v(b0)"], DT, 0.5e-6, None)
    d0, d1 = measure.dwell_times(xn, DT, 0.5 * float(np.std(xn)))
    assert d0.size + d1.size >= 10                             # telegraphs (tau ~ 40 ns: ~100 flips expected)


def test_nominal_cell_is_logistic_within_binomial_error(tmp_path) -> None:
    """Nominal devices: the cell is mirror-symmetric, so V0 = 0 (checked by the noise-free sweeps). A logistic
    P = sigmoid(v / Vs) then obeys logit P(-v) = -logit P(v) and logit P(2v) = 2 logit P(v); each is checked
    within 3.5 binomial standard errors (N_eff = T / (2 tau_int), tau_int measured)."""
    proc = get_process("generic")
    nominal = cells.device_commands(proc, SIZING, [None], seed=0)
    v = 0.22e-3
    biases, t_level, settle = [-v, v, 2 * v], 110e-6, 0.4e-6
    with Engine(workers=2, timeout_s=300) as engine:
        sweep_deck = Deck(cells.ct_deck([0.0], SIZING, proc), proc)
        sweeps = engine.simulate_many(sweep_deck, [
            RunSpec("up", "dc vb0 -5m 5m 10u", nominal), RunSpec("dn", "dc vb0 5m -5m -10u", nominal)])
        jobs = [engine.job(_noise_deck(tmp_path, b, t_level, 1.0, chip=0, stream=k + 1),
                           [RunSpec(f"b{k}", f"tran {DT} {t_level} 0 {DT}", nominal)]) for k, b in enumerate(biases)]
        runs = engine.run_all(jobs)
    from spicenet.cells.rng.calibrate import switching_point
    up = switching_point(sweeps["up"]["v-sweep"], sweeps["up"]["v(a0)"] - sweeps["up"]["v(b0)"])
    dn = switching_point(sweeps["dn"]["v-sweep"], sweeps["dn"]["v(a0)"] - sweeps["dn"]["v(b0)"])
    assert abs(up) < 2e-5 and abs(dn) < 2e-5                    # V0 = 0 by symmetry (no hysteresis at 40 mV)
    p, se = [], []
    for k in range(3):
        r = runs[f"b{k}"]
        xs = measure.resample(r["time"], r["v(a0)"] - r["v(b0)"], DT, settle, None)
        bits = xs > 0
        tau_int = measure.integrated_tau(measure.autocorrelation(bits, 1500), DT)
        n_eff = measure.effective_bits(t_level - settle, tau_int)
        p.append(measure.p_one(xs))
        se.append(float(measure.binomial_std(p[-1], n_eff)))
    p, se = np.array(p), np.array(se)
    assert 0.05 < p[0] < 0.45 and 0.55 < p[1] < 0.95 and p[2] > p[1]
    logit = np.log(p / (1 - p))
    dlogit = se / (p * (1 - p))
    assert abs(logit[0] + logit[1]) < 3.5 * math.hypot(dlogit[0], dlogit[1])
    assert abs(logit[2] - 2 * logit[1]) < 3.5 * math.hypot(dlogit[2], 2 * dlogit[1])


def test_calibration_tiny_config(tmp_path) -> None:
    from spicenet.surrogate import SurrogateFile

    config = {"chips": 2, "points": 5, "std_target": 0.03, "pilot": 10e-6, "extra_chips": 0, "vdd": 0.040,
              "dvtn": -0.25, "dvtp": 0.25, "tau_guess": 45e-9}
    out = calibrate_rng(config, output=tmp_path / "rng.h5", workers=2, seed=3)
    fit = out["fit"]
    assert fit["chips"] == 2 and fit["r2"] > 0.95
    assert fit["max_abs_err"] < 0.1
    assert 0.05e-3 < fit["vs"] < 1e-3 and 5e-9 < fit["tau_s"] < 500e-9
    assert 1e-9 < fit["power_w"] < 1e-8                       # ~20 nA per inverter at 40 mV: ~1.6 nW
    assert 10e-18 < fit["energy_per_bit_j"] < 10e-15
    assert fit["tau_int_s"] == pytest.approx(fit["tau_s"], rel=0.6)   # exp fit vs integral of the same C(t)
    assert len(out["plots"]) == 4 and all((tmp_path / p).is_file() for p in out["plots"])
    sur = SurrogateFile.load(out["output"])
    assert sur.family == "rng" and set(sur.params) >= {"v0", "vs", "tau_s"}
    assert sur.params["v0"].values.shape == (2,) and sur.params["vs"].unit == "V"
    assert sur.energy["energy_per_bit_j"] == pytest.approx(fit["energy_per_bit_j"])
    # the noisy V0 agrees with the noise-free up/down sweep midpoint (an independent estimate) within ~Vs
    v0_dc = sur.extra["v0_dc"]
    assert np.all(np.abs(sur.params["v0"].values - v0_dc) < 2 * sur.params["vs"].values)


def test_quick_config_is_valid() -> None:
    from spicenet.families import load_config

    cfg = parse_config(load_config(None, "calibration", "rng", quick=True), "generic")
    full = parse_config(load_config(None, "calibration", "rng", quick=False), "generic")
    assert cfg.chips >= 5 and cfg.points >= 7 and cfg.std_target <= 0.015
    assert full.chips >= 20 and full.points >= 11 and full.std_target <= 0.01
    assert isinstance(cfg, RngCalibrationConfig)


# ---------------------------------------------------------------------------------------- clocked latch --
def _latch_bits(result, fclk: float = 1e6) -> np.ndarray:
    t, x = result["time"], result["v(a)"] - result["v(b)"]
    n = int(t[-1] * fclk)
    return np.interp((np.arange(n) + 0.95) / fclk, t, x) > 0   # read just before the next equalise phase


def test_latch_noise_off_deterministic_and_bias_moves_p1() -> None:
    with Engine(workers=2) as engine:
        off = render("rng/latch", {"vb": 0.5e-3, "inoise": 0}, process="generic")
        a, b = engine.simulate(off, "tran 1n 8u"), engine.simulate(off, "tran 1n 8u")
        high = engine.simulate(render("rng/latch", {"vb": 0.5e-3}, process="generic"), "tran 1n 10u", seed=4)
        low = engine.simulate(render("rng/latch", {"vb": -0.5e-3}, process="generic"), "tran 1n 10u", seed=4)
    assert np.array_equal(a["v(a)"], b["v(a)"])
    assert _latch_bits(a).all()                                 # biased, noise off: the same bit every cycle
    p_low, p_high = _latch_bits(low).mean(), _latch_bits(high).mean()
    assert p_high < 1.0                                         # noise on: the same bias now gives some zeros
    assert p_low < p_high                                       # and P(1) grows with the bias
