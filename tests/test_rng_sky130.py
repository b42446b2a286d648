"""The continuous-time p-bit on sky130 (issue 4): the shipped operating point of ``calibration/rng.toml``
``[process.sky130]`` against independent criteria.

* Bistability: a cross-coupled pair is DC bistable exactly when the loop gain at its symmetric fixed point exceeds
  1; for two identical inverters that is the small-signal gain of ONE inverter at its trip point (v_out = v_in)
  being > 1. The gain comes from a dc sweep of a lone inverter; the hysteresis from up/down dc sweeps of the bias
  of the full cell. The two must agree at every supply, and the operating supply must sit just below the
  threshold (monostable, flat potential: that is what makes it telegraph under noise).
* Noise off: the same deck gives bit-identical waveforms and x = v(a) - v(b) never changes sign.
* Noise on (shot noise S = 2 q sum I coth(Vds / 2 V_T) sized from the operating point): P(1) grows with the bias;
  the nominal cell is mirror-symmetric, so P(1) at vb = 0 is 1/2 and P(+v) + P(-v) = 1 (binomial error bars from
  the measured correlation time).
* PDK mismatch (the process's own statistical model): the same (seed, chip) gives the same chip.
"""

from __future__ import annotations

import math
import tomllib

import numpy as np
import pytest

from spicenet.cells.rng import cells, measure
from spicenet.cells.rng.calibrate import locate_v0, parse_config, switching_point
from spicenet.spice import pdk
from spicenet.spice.engine import Deck, Engine
from spicenet.spice.job import RunSpec
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(pdk.library_path("sky130") is None,
                                reason="sky130 is not installed (spicenet pdk install sky130)")


@pytest.fixture(scope="module")
def setup():
    from spicenet.spice.process import get_process

    config = tomllib.loads((ROOT / "calibration" / "rng.toml").read_text())
    cfg = parse_config(config, "sky130")
    with Engine(workers=2, timeout_s=120) as eng:
        yield cfg, get_process("sky130"), eng


def _inverter_gain(eng: Engine, process, sizing: cells.CellSizing, vdds: list[float]) -> dict[float, float]:
    """Small-signal gain -dVout/dVin of one inverter of the cell (same sizes, same low-Vt shifts) at its trip point."""
    text = (f"* one inverter of the sky130 p-bit\n{process.header()}vdd vdd 0 dc {sizing.vdd}\nvin in 0 dc 0\n"
            f"xp out in vdd vdd pfet w={sizing.wp} l={sizing.l}\nxn out in 0 0 nfet w={sizing.wn} l={sizing.l}\n.end\n")
    shifts = tuple(process.alter_commands("xn", sizing.dvtn, 1.0) + process.alter_commands("xp", sizing.dvtp, 1.0))
    runs = [RunSpec(f"v{k}", f"dc vin 0 {v:.9g} {v / 1000:.9g}", shifts + (f"alter vdd dc = {v:.9g}",),
                    save=("v(out)",)) for k, v in enumerate(vdds)]
    out = eng.simulate_many(Deck(text, process), runs)
    gains = {}
    for k, v in enumerate(vdds):
        res = out[f"v{k}"]
        vin, vout = res[res.scale], res["v(out)"]
        trip = switching_point(vin, vout - vin)
        gains[v] = float(np.interp(trip, vin, -np.gradient(vout, vin)))
    return gains


def _hysteresis(eng: Engine, process, sizing: cells.CellSizing, vdds: list[float]) -> dict[float, float]:
    """v_up - v_down (V) of the nominal cell's bias sweeps (0 = one single-valued branch)."""
    deck = Deck(cells.ct_deck([0.0], sizing, process, save_all=False), process)
    shifts = cells.device_commands(process, sizing, [None], 0)
    r, s = 0.01, 1e-5
    runs = []
    for k, v in enumerate(vdds):
        extra = shifts + (f"alter vdd dc = {v:.9g}",)
        runs.append(RunSpec(f"up{k}", f"dc vb0 {-r} {r} {s}", extra, save=("v(a0)", "v(b0)")))
        runs.append(RunSpec(f"dn{k}", f"dc vb0 {r} {-r} {-s}", extra, save=("v(a0)", "v(b0)")))
    out = eng.simulate_many(deck, runs)
    hyst = {}
    for k, v in enumerate(vdds):
        up, dn = out[f"up{k}"], out[f"dn{k}"]
        v_up = switching_point(up[up.scale], up["v(a0)"] - up["v(b0)"])
        v_dn = switching_point(dn[dn.scale], dn["v(a0)"] - dn["v(b0)"])
        hyst[v] = v_up - v_dn
    return hyst


def test_hysteresis_appears_exactly_where_inverter_gain_exceeds_one(setup) -> None:
    cfg, process, eng = setup
    sizing = cfg.sizing
    vdds = [sizing.vdd - 0.004, sizing.vdd, sizing.vdd + 0.004, sizing.vdd + 0.008]
    gains = _inverter_gain(eng, process, sizing, vdds)
    hyst = _hysteresis(eng, process, sizing, vdds)
    for v in vdds:
        if gains[v] > 1.02:
            assert hyst[v] > 1e-4, f"vdd {v}: gain {gains[v]:.3f} > 1 but no hysteresis ({hyst[v]:.2e} V)"
        elif gains[v] < 0.98:
            assert abs(hyst[v]) < 2e-5, f"vdd {v}: gain {gains[v]:.3f} < 1 but hysteresis {hyst[v]:.2e} V"
    # the operating point is monostable but close to the threshold; a few mV above it the loop is bistable
    assert 0.9 < gains[sizing.vdd] < 1.0
    assert gains[vdds[-1]] > 1.05 and hyst[vdds[-1]] > hyst[vdds[-2]] > 0
    # gain rises with the supply (subthreshold: gain ~ (exp(Vdd / 2 V_T) - 1) / n)
    assert all(gains[a] < gains[b] for a, b in zip(vdds, vdds[1:]))


def _noise_run(eng: Engine, process, cfg, biases, scale: float, t_stop: float, tmp_path, seed: int = 3):
    """One transient of the nominal cell through the PWL ``biases`` with shot noise times ``scale``."""
    sizing = cfg.sizing
    shifts = cells.device_commands(process, sizing, [None], 0)
    op = eng.simulate_many(Deck(cells.ct_deck([0.0], sizing, process), process),
                           [RunSpec("op", "op", shifts)])["op"]
    va, vb = op.scalar("v(a0)"), op.scalar("v(b0)")
    ia, ib = abs(op.scalar("i(vma0)")), abs(op.scalar("i(vmb0)"))
    assert va == pytest.approx(vb, abs=1e-9)        # symmetric cell, vb = 0: the symmetric fixed point
    rms = [cells.noise_rms(cells.shot_noise_psd([i, i], [v, sizing.vdd - v]), cfg.dt) for i, v in ((ia, va), (ib, vb))]
    path = cells.write_noise_file(tmp_path / f"n{seed}.txt", seed=seed, chip=0, cell=0, rms=rms, dt=cfg.dt,
                                  t_stop=t_stop)
    deck = Deck(cells.ct_deck([biases], sizing, process, noise_files=[path], noise_scale=scale, save_all=False),
                process)
    run = RunSpec("tran", f"tran {cfg.dt:.6g} {t_stop:.9g} 0 {cfg.dt:.6g}", shifts, save=("v(a0)", "v(b0)"))
    return eng.simulate_many(deck, [run])["tran"]


def test_noise_off_is_deterministic_and_never_flips(setup, tmp_path) -> None:
    cfg, process, eng = setup
    level = [(0.0, 0.1e-3), (3e-6, 0.1e-3)]            # +0.1 mV: just above V0 = 0 of the nominal cell
    a = _noise_run(eng, process, cfg, level, 0.0, 3e-6, tmp_path)
    b = _noise_run(eng, process, cfg, level, 0.0, 3e-6, tmp_path)
    assert np.array_equal(a["v(a0)"], b["v(a0)"])
    x = a["v(a0)"] - a["v(b0)"]
    assert np.all(x[a["time"] > 0.5e-6] > 0)


def test_noise_on_p1_rises_with_bias_and_is_symmetric(setup, tmp_path) -> None:
    cfg, process, eng = setup
    v = 1.5 * cfg.vs_guess                              # P(1) ~ sigmoid(+-1.5) = 0.18 / 0.82
    t_level, settle = 16e-6, 0.4e-6
    levels = [-v, 0.0, v]
    res = _noise_run(eng, process, cfg, cells.staircase(levels, t_level), 1.0, t_level * len(levels), tmp_path)
    x = res["v(a0)"] - res["v(b0)"]
    p, sigma = [], []
    for k in range(len(levels)):
        xs = measure.resample(res["time"], x, cfg.dt, k * t_level + settle, (k + 1) * t_level)
        bits = xs > 0
        acf = measure.autocorrelation(bits, 2000)
        n_eff = measure.effective_bits(xs.size * cfg.dt, max(measure.integrated_tau(acf, cfg.dt), cfg.dt))
        p.append(bits.mean())
        sigma.append(math.sqrt(max(bits.mean() * (1 - bits.mean()), 0.05) / n_eff))
    p, sigma = np.array(p), np.array(sigma)
    assert p[0] + 3 * math.hypot(sigma[0], sigma[1]) < p[1] < p[2] - 3 * math.hypot(sigma[1], sigma[2])
    assert abs(p[1] - 0.5) < 4 * sigma[1]                          # mirror symmetry: V0 = 0
    assert abs(p[0] + p[2] - 1.0) < 4 * math.hypot(sigma[0], sigma[2])
    assert 0.02 < p[0] < 0.45 and 0.55 < p[2] < 0.98               # a sigmoid, not a step: the noise matters


def test_pdk_mismatch_chips_are_reproducible_and_distinct(setup) -> None:
    cfg, process, eng = setup
    assert cfg.mismatch == "pdk" and "pdk" in process.mismatch_modes
    first = locate_v0(eng, cfg, process, [0, 1], seed=5)
    again = locate_v0(eng, cfg, process, [0, 1], seed=5)
    assert first[0]["v0_dc"] == again[0]["v0_dc"] and first[1]["v0_dc"] == again[1]["v0_dc"]
    assert first[0]["v0_dc"] != first[1]["v0_dc"]
    # the PDK mismatch offset is ~ 10 mV (std) at W = 2, L = 0.15 um: non-zero, well inside the sweep
    assert all(0 < abs(first[c]["v0_dc"]) < cfg.sweep_range for c in (0, 1))


def test_shipped_configs_select_the_sky130_cell_and_pdk_mismatch() -> None:
    from spicenet.families import load_config

    quick = parse_config(load_config(None, "calibration", "rng", quick=True), "sky130")
    full = parse_config(load_config(None, "calibration", "rng", quick=False), "sky130")
    generic = parse_config(load_config(None, "calibration", "rng", quick=False), "generic")
    assert quick.sizing == full.sizing != generic.sizing
    assert quick.mismatch == full.mismatch == "pdk" and generic.mismatch == "pelgrom"
    assert full.chips >= 20 and full.points >= 11 and full.std_target <= 0.01
    assert quick.chips >= 5 and quick.points >= 7


@pytest.mark.slow   # ~10 s of CPU, 25-30 s wall on the 2 shared cores: the end-to-end pdk calibration path
def test_tiny_pdk_calibration_agrees_with_noise_free_v0(tmp_path) -> None:
    from spicenet.cells.rng.calibrate import calibrate_rng
    from spicenet.surrogate import SurrogateFile

    config = tomllib.loads((ROOT / "calibration" / "rng_quick.toml").read_text())
    config.update(chips=1, points=5, std_target=0.05, pilot=0.0, extra_chips=0, sweep_step=1e-4)
    out = calibrate_rng(config, process="sky130", output=tmp_path / "rng.h5", workers=2, seed=2)
    fit = out["fit"]
    assert fit["chips"] == 1 and fit["r2"] > 0.9 and fit["max_abs_err"] < 0.15
    sur = SurrogateFile.load(out["output"])
    assert sur.process == "sky130" and sur.attrs["mismatch"] == "pdk"
    # the noisy logistic V0 and the noise-free up/down sweep midpoint are independent estimates of one offset
    vs = sur.params["vs"].values
    assert np.all(np.abs(sur.params["v0"].values - sur.extra["v0_dc"]) < 2 * vs)
    assert np.all((0.05e-3 < vs) & (vs < 1e-3))
    # P(1) rises through the bias points (a binomial error of ~0.05 per point)
    assert np.all(np.diff(sur.extra["p_one"][0]) > -0.1) and sur.extra["p_one"][0][-1] - sur.extra["p_one"][0][0] > 0.5


def test_mismatch_mode_inputs_are_validated(tmp_path) -> None:
    from spicenet.cells.rng.calibrate import calibrate_rng
    from spicenet.errors import ConfigError
    from spicenet.spice.engine import derived_seed
    from spicenet.spice.process import get_process

    sky, generic = get_process("sky130"), get_process("generic")
    sizing = cells.CellSizing()
    commands, run_seed = cells.chip_setup(sky, sizing, 3, 7, "pdk")
    assert run_seed == derived_seed(7, 3)
    assert commands == cells.device_commands(sky, sizing, [None], 7)       # the low-Vt shifts only
    assert cells.chip_setup(sky, sizing, 3, 7, "pelgrom") == (cells.device_commands(sky, sizing, [3], 7), None)
    with pytest.raises(ValueError, match="mode"):
        cells.chip_setup(generic, sizing, 0, 0, "pdk")
    with pytest.raises(ValueError, match="mode"):
        cells.chip_setup(sky, sizing, 0, 0, "agauss")
    with pytest.raises(ValueError, match="mismatch"):
        cells.ct_deck([0.0], sizing, sky, mismatch="monte")
    assert "mc_mm_switch=1" in cells.ct_deck([0.0], sizing, sky, mismatch="pdk")
    assert "mc_mm_switch" not in cells.ct_deck([0.0], sizing, sky)
    with pytest.raises(ConfigError, match="mismatch"):
        calibrate_rng({"mismatch": "pdk"}, process="generic", output=tmp_path / "x.h5")
    with pytest.raises(ConfigError, match="mismatch"):
        calibrate_rng({"mismatch": "both"}, process="sky130", output=tmp_path / "x.h5")


# ------------------------------------------------------------------------------- clocked latch on sky130 --
def _latch_bits(result, fclk: float = 1e6) -> np.ndarray:
    t, x = result["time"], result["v(a)"] - result["v(b)"]
    n = int(round(t[-1] * fclk))
    return np.interp((np.arange(n) + 0.95) / fclk, t, x) > 0   # read just before the next equalise phase


def test_latch_on_sky130_noise_off_follows_the_bias_sign(setup) -> None:
    from spicenet.spice.engine import render

    _, _, eng = setup
    bits = {}
    for vb in (0.3e-3, -0.3e-3):
        res = eng.simulate(render("rng/latch", {"vb": vb, "inoise": 0}, process="sky130"), "tran 1n 4u")
        bits[vb] = _latch_bits(res)
        assert np.ptp(res["v(a)"]) > 0.4 * 1.2                # it regenerates to a rail every cycle
    assert bits[0.3e-3].all() and not bits[-0.3e-3].any()


@pytest.mark.slow   # 2 x 40 clock periods with TRRANDOM noise: ~40 s
def test_latch_on_sky130_noise_on_p1_rises_with_bias(setup) -> None:
    from spicenet.spice.engine import render

    _, _, eng = setup
    p = {}
    for vb, seed in ((-0.4e-3, 11), (0.4e-3, 12)):
        bits = _latch_bits(eng.simulate(render("rng/latch", {"vb": vb, "inoise": 30e-9}, process="sky130"),
                                        "tran 1n 40u", seed=seed))
        p[vb] = bits.mean()
    # decision noise ~0.4 mV (kT/C of 50 fF): P(1) ~ 0.16 / 0.84; binomial std of 40 bits <= 0.08
    assert p[-0.4e-3] + 0.3 < p[0.4e-3]
    assert 0.0 < p[0.4e-3] and p[-0.4e-3] < 1.0 and p[0.4e-3] > 0.5 > p[-0.4e-3]
