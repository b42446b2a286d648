"""The engine against independent references: analytic RC step/AC responses, the Shockley law of a model card,
and the two engine modes against each other (ring oscillator frequency)."""

from __future__ import annotations

import numpy as np
import pytest

from spicenet.spice import measure
from spicenet.spice.engine import render

VT_27C = 1.380649e-23 * 300.15 / 1.602176634e-19  # thermal voltage at 27 C (ngspice's default temperature), V


def test_rc_step_matches_analytic(engine):
    r, c, vstep = 2e3, 1e-9, 1.0
    result = engine.simulate(render("basic/rc", {"r": "2k", "c": "1n", "vstep": vstep}), "tran 10n 10u 0 10n")
    t, v = result["time"], result["v(out)"]
    analytic = vstep * (1.0 - np.exp(-t / (r * c)))
    assert t[-1] == pytest.approx(10e-6)
    assert np.max(np.abs(v - analytic)) < 1e-3 * vstep


def test_rc_ac_matches_analytic(engine):
    r, c = 1e3, 1e-9
    result = engine.simulate(render("basic/rc", {"r": r, "c": c}), "ac dec 20 1k 100meg")
    f = np.real(result["frequency"])
    gain = result["v(out)"]
    analytic = 1.0 / (1.0 + 2j * np.pi * f * r * c)
    assert f.size > 100
    assert np.max(np.abs(gain - analytic)) < 1e-3
    # the -3 dB point is the corner frequency 1/(2 pi R C)
    f3db = np.interp(3.0103, -20 * np.log10(np.abs(gain)), f)
    assert f3db == pytest.approx(1 / (2 * np.pi * r * c), rel=1e-2)


def test_diode_dc_sweep_follows_shockley(engine):
    i_s, n = 2e-14, 1.3
    result = engine.simulate(render("basic/diode", {"is": i_s, "n": n}), "dc vd 0.1 0.7 0.01")
    v = np.real(result["v(a)"]) if "v(a)" in result else np.real(result["v-sweep"])
    i = -np.real(result["i(vd)"])
    shockley = i_s * (np.exp(v / (n * VT_27C)) - 1.0)
    assert v.size == 61
    # ngspice adds gmin (1e-12 S) in parallel with the junction; Newton stops within reltol 1e-3 / abstol 1e-12 A
    error = np.abs(i - shockley - 1e-12 * v)
    assert np.all(error < 1e-3 * shockley + 1e-12)
    big = shockley > 1e-9
    assert big.sum() > 20 and np.max(error[big] / shockley[big]) < 1e-4


def test_ring_oscillator_frequency_equal_in_shared_and_batch(engine, batch_engine):
    deck = render("oscillator/ring5", {}, "generic")
    analysis = "tran 10p 20n 0 10p uic"
    shared = engine.simulate(deck, analysis)
    batch = batch_engine.simulate(deck, analysis)
    f_shared = measure.frequency(shared["time"], shared["v(n5)"])
    f_batch = measure.frequency(batch["time"], batch["v(n5)"])
    assert 1e8 < f_shared < 2e10
    assert f_shared == pytest.approx(f_batch, rel=1e-9)
    # energy drawn from the supply is positive and the same in both modes
    e_shared = measure.supply_energy(shared["time"], shared["v(vdd)"], shared["i(vdd)"])
    e_batch = measure.supply_energy(batch["time"], batch["v(vdd)"], batch["i(vdd)"])
    assert e_shared > 0
    assert e_shared == pytest.approx(e_batch, rel=1e-9)


def test_supply_energy_of_a_resistor_is_v2_over_r_times_t():
    t = np.linspace(0, 1e-6, 1001)
    v = np.full_like(t, 1.2)
    i = -v / 1e3  # a 1 kOhm load: current out of the + terminal
    assert measure.supply_energy(t, v, i) == pytest.approx(1.2**2 / 1e3 * 1e-6, rel=1e-12)
    assert measure.supply_energy(t, v, i, 0.25e-6, 0.75e-6) == pytest.approx(1.2**2 / 1e3 * 0.5e-6, rel=1e-9)


def test_measure_helpers_on_a_known_square_wave():
    t = np.linspace(0, 10e-6, 100001)
    y = (np.sin(2 * np.pi * 1e6 * t) > 0.5).astype(float)  # 1 MHz, duty = 1/3
    assert measure.frequency(t, y) == pytest.approx(1e6, rel=1e-3)
    assert measure.duty(t, y) == pytest.approx(1 / 3, abs=2e-3)
    settle = measure.settling_time(t, 1 - np.exp(-t / 1e-6), tolerance=0.01, final=1.0)
    assert settle == pytest.approx(np.log(100) * 1e-6, rel=1e-3)
