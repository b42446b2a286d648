"""Monte-Carlo mismatch: Pelgrom's law through a subthreshold current mirror, and seeds.

Independent reference: in weak inversion Iout/Iref = (beta2/beta1) exp((Vt1 - Vt2)/(n U_T)), so
sigma(ln(Iout/Iref)) = sqrt(2 sigma_vt^2/(n U_T)^2 + 2 sigma_beta^2) with sigma = A/sqrt(W L) (Pelgrom 1989). The
slope factor n is measured from the same process's Id-Vg curve in SPICE, not taken from the model card.
"""

from __future__ import annotations

import numpy as np
import pytest

from spicenet.spice import mismatch
from spicenet.spice.engine import montecarlo_runs, render
from spicenet.spice.process import get_process

U_T = 1.380649e-23 * 300.15 / 1.602176634e-19
IREF = 10e-9


def _slope_factor(engine) -> float:
    """n from the SPICE subthreshold slope of the mirror's diode-connected device: d ln(Id)/d Vg = 1/(n U_T)."""
    lo = engine.simulate(render("basic/current_mirror", {"iref": IREF / 1.5}, "generic"), "op")
    hi = engine.simulate(render("basic/current_mirror", {"iref": IREF * 1.5}, "generic"), "op")
    dvg = hi.scalar("v(g)") - lo.scalar("v(g)")
    return float(dvg / (np.log(2.25) * U_T))


def _log_ratios(engine, seed: int, chips: int = 200) -> np.ndarray:
    deck = render("basic/current_mirror", {"iref": IREF}, "generic", "pelgrom")
    runs = montecarlo_runs(deck, "op", range(chips), seed)
    outcomes = engine.simulate_many(deck, runs)
    return np.array([np.log(-outcomes[r.id].scalar("i(vout)") / IREF) for r in runs])


def test_mirror_spread_matches_pelgrom(engine):
    process = get_process("generic")
    n = _slope_factor(engine)
    assert 1.0 < n < 1.3  # 60-78 mV/dec
    sigma_vt, sigma_beta = process.pelgrom_sigma("nfet", 1.0, 1.0)
    predicted = np.sqrt(2 * (sigma_vt / (n * U_T)) ** 2 + 2 * sigma_beta**2)
    # the std of 200 samples has a 5% standard error, so this is a 2-sigma check; the per-chip test below is tight
    measured = np.std(_log_ratios(engine, seed=1), ddof=1)
    assert measured == pytest.approx(predicted, rel=0.10)


def test_mirror_chips_follow_their_own_drawn_mismatch(engine):
    """Per chip, the simulated ln(Iout/Iref) tracks the linearised prediction from that chip's drawn dVt/beta."""
    process = get_process("generic")
    n = _slope_factor(engine)
    deck = render("basic/current_mirror", {"iref": IREF}, "generic", "pelgrom")
    devices = mismatch.find_devices(deck.text, process)
    assert [d.name for d in devices] == ["xm1", "xm2"]
    lr = _log_ratios(engine, seed=5, chips=60)
    predicted = []
    for chip in range(60):
        values = mismatch.sample_chip(devices, process, 5, chip)
        (dvt1, b1), (dvt2, b2) = values["xm1"], values["xm2"]
        predicted.append((dvt1 - dvt2) / (n * U_T) + np.log(b2 / b1))
    predicted = np.array(predicted)
    offset = np.mean(lr - predicted)  # the nominal mirror ratio (DIBL at vdd != Vgs)
    assert abs(offset) < 0.15
    assert np.corrcoef(lr, predicted)[0, 1] > 0.99
    # the sensitivity d ln(Iout)/d(dVt) is 1/(n U_T) with n measured independently from the Id-Vg slope
    dvt = np.array([mismatch.sample_chip(devices, process, 5, c)["xm1"][0] - mismatch.sample_chip(devices, process, 5, c)["xm2"][0] for c in range(60)])
    beta = np.array([np.log(mismatch.sample_chip(devices, process, 5, c)["xm2"][1] / mismatch.sample_chip(devices, process, 5, c)["xm1"][1]) for c in range(60)])
    slope = np.linalg.lstsq(np.c_[dvt, np.ones_like(dvt)], lr - beta, rcond=None)[0][0]
    assert slope == pytest.approx(1 / (n * U_T), rel=0.03)


def test_same_seed_identical_different_seed_differs(engine):
    a = _log_ratios(engine, seed=3, chips=20)
    b = _log_ratios(engine, seed=3, chips=20)
    c = _log_ratios(engine, seed=4, chips=20)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_trrandom_noise_is_reproducible_by_seed(engine):
    deck = ("noise\nvn n 0 dc 0 trrandom(2 1n 0 1m 0)\nr1 n out 1k\nc1 out 0 1p\n.end\n")
    from spicenet.spice.job import RunSpec

    runs = [RunSpec(id=f"r{k}", analysis="tran 1n 200n", seed=s) for k, s in enumerate((7, 7, 8))]
    out = engine.simulate_many(deck, runs, chunk=1)
    v = [out[f"r{k}"]["v(n)"] for k in range(3)]
    assert np.std(v[0]) > 1e-4  # noise is on
    assert np.array_equal(v[0], v[1])
    assert not np.array_equal(v[0], v[2])


def test_sky130_pdk_mismatch_spreads_and_is_reproducible(engine):
    """sky130's own statistical model (mc_mm_switch=1, setseed + reset per chip)."""
    deck = render("basic/current_mirror", {"iref": IREF, "l": 0.5}, "sky130", "pdk")
    ratios = []
    for seed in (2, 2):
        runs = montecarlo_runs(deck, "op", range(12), seed)
        out = engine.simulate_many(deck, runs)
        ratios.append(np.array([np.log(-out[r.id].scalar("i(vout)") / IREF) for r in runs]))
    assert np.array_equal(ratios[0], ratios[1])
    assert 0.02 < np.std(ratios[0]) < 1.0
    nominal = engine.simulate(render("basic/current_mirror", {"iref": IREF, "l": 0.5}, "sky130"), "op")
    assert np.log(-nominal.scalar("i(vout)") / IREF) == pytest.approx(np.median(ratios[0]), abs=0.3)
