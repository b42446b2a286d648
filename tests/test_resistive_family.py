"""Resistive family verbs: calibration (diode fit vs the model card, bank spread vs sqrt(k), solver vs ngspice),
training (run directory, metrics), SPICE validation (gap, energy conservation), CLI."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.special
import torch

from spicenet.cells.resistive import family
from spicenet.cells.resistive.calibrate import diode_law, fit_diode, level_chip
from spicenet.cells.resistive.network import ResistiveNetwork, programmable_levels
from spicenet.cells.resistive.solver import thermal_voltage
from spicenet.cells.resistive.train import load_trained
from spicenet.surrogate import SurrogateFile

needs_ngspice = pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice not installed")
ROOT = Path(__file__).resolve().parents[1]

TINY_CAL = {
    "diode": {"chips": 4, "points": 16},
    "conductance": {"chips": 60},
    "solver_check": {"networks": 20, "inputs": 1},
}
TINY_TRAIN = {
    "data": {"n_train": 60, "n_test": 40},
    "model": {"hidden": [8]},
    "train": {"epochs": 2, "batch_size": 20},
    "mismatch": {"eval_chips": 3},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _card_diode() -> tuple[float, float]:
    """is and n of the generic process diode, read from the model card."""
    text = (ROOT / "netlists" / "models" / "generic.lib").read_text()
    block = re.search(r"\.model\s+dgen_generic\s+d(.*?)\n\s*\n", text, re.S | re.I).group(1)
    val = {m.group(1).lower(): float(m.group(2)) for m in re.finditer(r"\+\s*(\w+)\s*=\s*([0-9.eE+-]+)", block)}
    return val["is"], val["n"]


def test_fit_diode_recovers_series_resistance_law_from_lambert_w():
    vt = thermal_voltage()
    is_, n, rs = 3e-15, 1.3, 150.0
    v = np.linspace(0.2, 0.9, 40)
    # independent: I = n Vt / Rs * W(Is Rs / (n Vt) exp((V + Is Rs)/(n Vt))) - Is with scipy's lambertw
    arg = is_ * rs / (n * vt) * np.exp((v + is_ * rs) / (n * vt))
    i = n * vt / rs * np.real(scipy.special.lambertw(arg)) - is_
    assert np.allclose(diode_law(v, is_, n, rs), i, rtol=1e-10)
    fit = fit_diode(v, i)
    assert fit["is_"] == pytest.approx(is_, rel=1e-4)
    assert fit["n"] == pytest.approx(n, rel=1e-5)
    assert fit["rs"] == pytest.approx(rs, rel=1e-4)
    assert fit["r2"] > 1 - 1e-10
    # pure Shockley: Rs reported as 0
    i0 = 1e-14 * np.expm1(v / vt)
    fit0 = fit_diode(v, i0)
    assert fit0["rs"] == 0.0 and fit0["n"] == pytest.approx(1.0, rel=1e-6)


def test_level_chip_spread_follows_unit_resistor_law_and_is_seeded():
    levels = 1e-6 * np.arange(16)
    net = ResistiveNetwork([200, 100, 10], g_unit=1e-6, init_range=(0.6, 15.4), quantize=programmable_levels(levels),
                           bias=False, seed=3)
    chip = level_chip(net, levels, g_sigma=0.3, sigma_ln_is=0.1, sigma_n=0.0, seed=5)
    k = torch.round(net.conductances()[0][0] / 1e-6)
    f = chip.g_factor[0]
    for level in (1, 4, 9):
        sel = f[k == level]
        assert sel.numel() > 500
        assert float(sel.std()) == pytest.approx(0.3 / math.sqrt(level), rel=0.12)
    assert float(torch.log(chip.is_factor).std()) == pytest.approx(0.1, rel=0.15)
    again = level_chip(net, levels, g_sigma=0.3, sigma_ln_is=0.1, sigma_n=0.0, seed=5)
    assert torch.equal(again.g_factor[0], f) and torch.equal(again.is_factor, chip.is_factor)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    out = tmp_path_factory.mktemp("cal") / "res.h5"
    res = family.calibrate(TINY_CAL, process="generic", quick=True, output=out, workers=1, seed=0)
    return res, out


@needs_ngspice
def test_calibrate_matches_model_card_and_ngspice(calibrated):
    res, out = calibrated
    fit = res["fit"]
    for key in ("diode_is", "diode_n", "diode_rs", "r2", "levels", "solver_max_err_v"):
        assert key in fit
    is_card, n_card = _card_diode()
    assert fit["diode_is"] == pytest.approx(is_card, rel=0.02)
    assert fit["diode_n"] == pytest.approx(n_card, rel=0.01)
    assert fit["diode_rs"] < 1.0  # the card has rs = 0
    assert fit["r2"] > 0.999
    assert fit["solver_max_err_v"] < 1e-3 and fit["solver_inputs"] >= 20
    assert fit["levels"] == pytest.approx(list(1.25e-6 * np.arange(16)), rel=1e-12)
    # the SPICE Monte-Carlo bank spread recovers the unit tolerance (60 chips: ~10 % sampling error)
    assert fit["g_sigma_measured"] == pytest.approx(fit["g_sigma"], rel=0.25)
    # Pelgrom forward-voltage spread -> ln Is spread = sigma_vd / (n Vt) (4 devices: loose)
    sur = SurrogateFile.load(out)
    assert sur.family == "resistive" and sur.params["diode_is"].values.shape == (4,)
    assert all(Path(p).is_file() for p in res["plots"])


@pytest.fixture(scope="module")
def trained(calibrated, tmp_path_factory):
    _, sur = calibrated
    run_dir = tmp_path_factory.mktemp("run") / "r"
    res = family.train(TINY_TRAIN, surrogate=sur, quick=True, run_dir=run_dir, device="cpu", seed=0)
    return res, run_dir


@needs_ngspice
def test_train_writes_run_and_metrics(trained):
    res, run_dir = trained
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["family"] == "resistive"
    m = res["metrics"]
    for key in ("test_accuracy", "chip_mean", "chip_worst"):
        assert 0.0 <= m[key] <= 1.0 and 0.0 <= m[key + "_no_injection"] <= 1.0
        assert m["chip_worst"] <= m["chip_mean"]
    assert len(m["chip_accuracies"]) == 3
    c = np.asarray(m["confusion_matrix"])  # nominal chip: counts C[true, predicted] over the test set
    assert c.shape == (10, 10) and c.sum() == m["n_test"]
    assert np.trace(c) / c.sum() == pytest.approx(m["test_accuracy"])
    rows = (run_dir / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2
    net, _ = load_trained(run_dir)
    levels = 1.25e-6 * np.arange(16)
    g = net.conductances()[0][0].detach().numpy()
    assert np.all(np.min(np.abs(g[..., None] - levels), axis=-1) < 1e-15)  # on the programmable levels
    assert all(float(p.detach().min()) >= 0 for p in net.parameters())


@needs_ngspice
def test_train_rerun_resumes_from_checkpoint_with_same_metrics(trained, calibrated):
    res, run_dir = trained
    again = family.train(TINY_TRAIN, surrogate=calibrated[1], quick=True, run_dir=run_dir, device="cpu", seed=0)
    for key in ("test_accuracy", "chip_accuracies", "chip_accuracies_no_injection"):
        assert again["metrics"][key] == res["metrics"][key]
    assert len((run_dir / "metrics.csv").read_text().strip().splitlines()) == 1 + 2


@needs_ngspice
def test_validate_gap_and_energy_conservation(trained):
    from spicenet.cells.resistive.calibrate import spice_node_voltages
    from spicenet.spice.engine import Engine

    _, run_dir = trained
    from spicenet.cells.resistive.validate import ResistiveValidationConfig, validate_resistive

    res = validate_resistive(run_dir, chips=1, quick=True, workers=1, seed=0,

                             config=ResistiveValidationConfig(n_test=40, source="sample"))
    assert res["chips"] == 1 and res["n_test"] == 40
    assert abs(res["gap"]["accuracy_pp"]) <= 2.5  # at most one of 40 inputs may flip
    assert res["gap"]["max_node_err_v"] < 1e-6 and res["gap"]["inputs_node_err_over_1mv"] == 0
    assert all(p["inputs_node_err_over_1mv"] == 0 for p in res["per_chip"])
    assert res["energy_per_inference_j"] > 0
    assert res["spice"]["diodes"].startswith("process generic")  # SPICE ran the process diode, not the fitted law
    # Tellegen: power delivered by the sources = sum G dV^2 over resistors + sum I_d V_d over diodes (solver V)
    net, spec = load_trained(run_dir)
    x = torch.rand(3, net.n_in, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        v = net.equilibrium(x).v
        circ = net.circuit()
    vs = net.source_voltages(x)
    p_res = (((vs[:, :, None] - v[:, None, :]) ** 2) * circ.s).sum((1, 2))
    p_res = p_res + 0.5 * (((v[:, :, None] - v[:, None, :]) ** 2) * circ.a).sum((1, 2))  # a counts edges twice
    vt = thermal_voltage() * spec["n"]
    vd_up, vd_lo = v - spec["vb"], -spec["vb"] - v
    i_up = spec["is_"] * torch.expm1(vd_up / vt) + spec["gmin"] * vd_up
    i_lo = spec["is_"] * torch.expm1(vd_lo / vt) + spec["gmin"] * vd_lo
    p_dio = (i_up * vd_up + i_lo * vd_lo).sum(1)
    with Engine(workers=1) as eng:
        _, p_spice, errors = spice_node_voltages(net, None, x, engine=eng, options=spec["spice_options"])
    assert not errors
    assert np.allclose(p_spice, (p_res + p_dio).numpy(), rtol=1e-6)


@needs_ngspice
def test_validate_cli_set_chooses_test_inputs_and_rejects_bad_settings(trained, capsys):
    """``spicenet validate RUN --set n_test=N`` simulates N inputs per chip (what a large network needs to fit its
    wall time); an unknown field, a bad value or a malformed item exits 2 with one line naming it, and the report
    already written stays as it was."""
    import json as _json

    from spicenet.cli import main

    _, run_dir = trained
    code = main(["validate", str(run_dir), "--chips", "1", "--quick", "--set", "n_test=25", "--set", "source=sample",
                 "--json"])
    out = capsys.readouterr()
    assert code in (0, None), out.err[-500:]
    res = _json.loads(out.out)
    assert res["n_test"] == 25 and res["chips"] == 1 and res["test_source"].startswith("sample")
    report = (run_dir / "validate.json").read_text()
    assert _json.loads(report)["n_test"] == 25
    for bad, says in ((["--set", "n_tests=5"], "unknown key 'n_tests'"), (["--set", "n_test=0"], "n_test must be"),
                      (["--set", "n_test"], "expected KEY=VALUE"), (["--set", "source=nowhere"], "source must be")):
        try:
            code = main(["validate", str(run_dir), "--chips", "1", *bad, "--json"])
        except SystemExit as exc:
            code = exc.code
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 2 and len(err) == 1 and says in err[0], (bad, code, err)
        assert (run_dir / "validate.json").read_text() == report


@needs_ngspice
@pytest.mark.parametrize("units,amp", [("clamp", None), ("rectifier", 4.0)])
def test_dc_sweep_operating_points_equal_one_op_per_input(units, amp, monkeypatch):
    """The validation's default solve (the inputs as the points of DC sweeps, ``sweep_deck``) gives ngspice's own
    ``.op`` answer for every input: node voltages and delivered power against one ``.op`` per input through
    ``alter`` and against the solver, with chunks that do not divide the inputs and a single-input sweep; a sweep
    ngspice cannot run is solved again input by input (here: an analysis naming a source the deck lacks)."""
    import spicenet.cells.resistive.calibrate as rc
    from spicenet.cells.resistive.calibrate import spice_node_voltages
    from spicenet.cells.resistive.network import sample_chip
    from spicenet.spice.engine import Engine

    net = ResistiveNetwork([12, 8, 6, 3], input_gain=20.0, seed=3, amp_gain=amp, units=units)
    chip = sample_chip(net, sigma_g=0.1, sigma_is=0.2, seed=4)
    x = torch.rand(11, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    opts = {"reltol": 1e-9, "vntol": 1e-12, "abstol": 1e-15}
    with torch.no_grad():
        v_sol = net.equilibrium(x, chip=chip).v.numpy()
    assert float(np.abs(v_sol).max()) > 0.3  # the diodes conduct: a nonlinear operating point
    with Engine(workers=2) as eng:
        kw = dict(engine=eng, options=opts)
        v_op, p_op, e_op = spice_node_voltages(net, chip, x, method="op", **kw)
        v_sw, p_sw, e_sw = spice_node_voltages(net, chip, x, method="sweep", sweep_inputs=4, **kw)
        v_1, p_1, _ = spice_node_voltages(net, chip, x[3:4], method="sweep", **kw)
        monkeypatch.setattr(rc, "sweep_analysis", lambda n: f"dc vnosuchsource 0 {n - 1} 1")
        v_fb, p_fb, e_fb = spice_node_voltages(net, chip, x[:5], method="sweep", sweep_inputs=2, **kw)
    assert not (e_op or e_sw or e_fb)
    assert np.abs(v_sw - v_op).max() < 1e-9 and np.abs(v_sw - v_sol).max() < 1e-9
    assert np.allclose(p_sw, p_op, rtol=1e-8) and p_op.min() > 0
    assert np.abs(v_1 - v_op[3:4]).max() < 1e-9 and np.allclose(p_1, p_op[3:4], rtol=1e-8)
    assert np.array_equal(v_fb, v_op[:5]) and np.array_equal(p_fb, p_op[:5])  # the op path, run for run
    with pytest.raises(ValueError, match="method"):
        spice_node_voltages(net, chip, x, engine=None, options=opts, method="tran")  # type: ignore[arg-type]


@needs_ngspice
def test_process_diode_breaks_down_where_the_surrogate_law_does_not():
    """A known limit, measured: a rectifier node driven past the generic process diode's reverse breakdown
    (``bv = 10`` V in netlists/models/generic.lib) is held near 10.4 V by ngspice, while the solver's fitted law
    (ngspice's junction law without a breakdown branch, as the fitted-law deck) lets it follow its inputs; below
    breakdown the three agree. This is what ``inputs_node_err_over_1mv`` counts in a validation."""
    from spicenet.cells.resistive.calibrate import spice_node_voltages
    from spicenet.spice.engine import Engine

    net = ResistiveNetwork([2, 2, 1], input_gain=200.0, seed=0, units="rectifier")
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.05, 0.02]], dtype=torch.float64)
    with torch.no_grad():
        v_sol = net.equilibrium(x).v.numpy()
    opts = {"reltol": 1e-9, "vntol": 1e-12, "abstol": 1e-15}
    with Engine(workers=1) as eng:
        v_proc, _, e1 = spice_node_voltages(net, None, x, engine=eng, options=opts, process="generic")
        v_law, _, e2 = spice_node_voltages(net, None, x, engine=eng, options=opts)
    assert not (e1 or e2)
    assert np.abs(v_law - v_sol).max() < 1e-9  # the fitted-law deck is the solver's circuit
    assert v_sol[:2, 0].min() > 12.0  # the excitatory node follows its 200 V input far past 10 V ...
    assert np.all((v_proc[:2, 0] > 10.0) & (v_proc[:2, 0] < 11.0))  # ... the process diode breaks down near 10 V
    assert np.abs(v_proc[2] - v_sol[2]).max() < 1e-6  # below breakdown the process diode is the fitted law


def test_sweep_deck_drives_each_input_by_a_pwl_of_the_sweep_index():
    """Each input source of the sweep deck is a B source whose pwl knot b is input b times the gain (and its
    negated copy); the sweep source is the only new voltage source; bad shapes are refused."""
    from spicenet.cells.resistive.netlist import SWEEP_SOURCE, network_deck, sweep_analysis, sweep_deck

    net = ResistiveNetwork([3, 2, 2], input_gain=7.0, seed=0)
    x = torch.tensor([[0.1, 0.5, 1.0], [0.0, 0.25, 0.75], [1.0, 1.0, 0.0]], dtype=torch.float64)
    deck = sweep_deck(net, x)
    joined = deck.replace("\n+ ", " ")
    line = next(ln for ln in joined.splitlines() if ln.startswith("binp1 "))
    knots = [float(t) for t in re.findall(r"[-+0-9.e]+", line.split("pwl(", 1)[1].split(")", 1)[1])]
    assert knots == [0, 3.5, 1, 1.75, 2, 7.0]
    assert "binn2 inn2 0 V=pwl(" in joined and not re.search(r"^vin[pn]", deck, re.M)
    plain = [ln for ln in network_deck(net).splitlines() if not ln.startswith("vin")]
    swept = [ln for ln in deck.splitlines() if not ln.startswith(("bin", "+", SWEEP_SOURCE))]
    assert swept == plain  # the rest of the circuit is the deck of the alter path
    assert sweep_analysis(3) == f"dc {SWEEP_SOURCE} 0 2 1"
    for bad in (x[0], torch.zeros(0, 3), torch.zeros(2, 4)):
        with pytest.raises(ValueError, match="x must be"):
            sweep_deck(net, bad)
    from spicenet.cells.resistive.netlist import sweep_from_deck

    assert sweep_from_deck(network_deck(net), net, x) == deck  # what spice_node_voltages does per chunk
    with pytest.raises(ValueError, match="lacks the input sources"):
        sweep_from_deck(network_deck(ResistiveNetwork([2, 2, 2], seed=0)), net, x)


def test_process_diode_deck_swaps_every_diode_and_keeps_area_mismatch():
    from spicenet.cells.resistive.calibrate import process_diode_deck
    from spicenet.cells.resistive.netlist import network_deck
    from spicenet.cells.resistive.network import sample_chip

    net = ResistiveNetwork([3, 4, 2], seed=1)
    chip = sample_chip(net, sigma_is=0.2, sigma_n=0.0, seed=2)
    deck = process_diode_deck(network_deck(net, chip=chip), net, chip, "generic", 2.0)
    lines = deck.splitlines()
    assert lines[1].startswith(".include") and lines[1].rstrip().endswith('generic.lib"')
    xd = [ln for ln in lines if ln.startswith(("Xdu_", "Xdl_"))]
    assert len(xd) == 2 * net.n_free and not [ln for ln in lines if ln.startswith(("du_", "dl_"))]
    first = xd[0].split()  # Xdu_h1_0 h1_0 rail_p diode area=...
    assert first[1:4] == ["h1_0", "rail_p", "diode"]
    assert float(first[4].split("=")[1]) == pytest.approx(2.0 * float(chip.is_factor[0, 0]), rel=1e-12)


@pytest.mark.slow
@needs_ngspice
def test_cli_calibrate_quick_json(tmp_path):
    out = tmp_path / "s.h5"
    proc = subprocess.run([sys.executable, "-m", "spicenet", "calibrate", "resistive", "--quick", "--json",
                           "--workers", "1", "-o", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fit = json.loads(proc.stdout)["fit"]
    assert fit["solver_max_err_v"] < 1e-3 and fit["r2"] > 0.999


TINY_DEEP = {**TINY_TRAIN, "model": {"hidden": [8, 6], "amp_gain": 4.0},
             "train": {"epochs": 2, "batch_size": 20, "ideal": True}}
TINY_FFEBM = {**{k: v for k, v in TINY_TRAIN.items() if k != "model"}, "model": {"amp_gain": 4.0},
              "ffebm": {"blocks": [[8, 6], [6, 10]]}}


@needs_ngspice
def test_deep_amplifier_run_validates_in_ngspice_and_conserves_energy(calibrated, tmp_path):
    from spicenet.cells.resistive.calibrate import spice_node_voltages
    from spicenet.cells.resistive.validate import ResistiveValidationConfig, validate_resistive
    from spicenet.spice.engine import Engine

    run_dir = tmp_path / "deep"
    res = family.train(TINY_DEEP, surrogate=calibrated[1], quick=True, run_dir=run_dir, device="cpu", seed=0)
    m = res["metrics"]
    for key in ("accuracy_ideal", "accuracy_nominal", "accuracy_chip_mean", "accuracy_chip_worst",
                "accuracy_nominal_no_injection", "accuracy_chip_worst_no_injection"):
        assert 0.0 <= m[key] <= 1.0
    assert m["accuracy_nominal"] == m["test_accuracy"] and m["amp_gain"] == 4.0
    ideal, _ = load_trained(run_dir, "ideal")
    assert ideal.quantize is None  # float conductances
    val = validate_resistive(run_dir, chips=1, quick=True, workers=1, seed=0,
                             config=ResistiveValidationConfig(n_test=30, source="sample"))
    assert val["gap"]["max_node_err_v"] < 1e-6 and abs(val["gap"]["accuracy_pp"]) <= 100.0 / 30
    # Tellegen with amplifiers: power delivered by the input/bias/rail sources and the amplifiers (VCVS + backward
    # CCCS, from ngspice) = power dissipated in the resistors (across amplifier output - node) and the diodes
    net, spec = load_trained(run_dir)
    x = torch.rand(3, net.n_in, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        v = net.equilibrium(x).v
        gw, gb = net.conductances()
    vs = net.source_voltages(x)
    p_res = (((vs[:, : 2 * net.n_in, None] - v[:, None, net.layer_slice(1)]) ** 2) * gw[0]).sum((1, 2))
    for k in range(1, len(gw)):
        drive = net.drive_voltages(v[:, net.layer_slice(k)])
        p_res = p_res + (((drive[:, :, None] - v[:, None, net.layer_slice(k + 1)]) ** 2) * gw[k]).sum((1, 2))
    for k, g in enumerate(gb, start=1):
        p_res = p_res + (((vs[:, 2 * net.n_in:, None] - v[:, None, net.layer_slice(k)]) ** 2) * g).sum((1, 2))
    vt = thermal_voltage() * spec["n"]
    vd_up, vd_lo = v - spec["vb"], -spec["vb"] - v
    p_dio = (spec["is_"] * torch.expm1(vd_up / vt) * vd_up + spec["is_"] * torch.expm1(vd_lo / vt) * vd_lo
             + spec["gmin"] * (vd_up ** 2 + vd_lo ** 2)).sum(1)
    with Engine(workers=1) as eng:
        _, p_spice, errors = spice_node_voltages(net, None, x, engine=eng, options=spec["spice_options"])
    assert not errors
    assert np.allclose(p_spice, (p_res + p_dio).numpy(), rtol=1e-6)


@needs_ngspice
def test_ffebm_train_and_blockwise_ngspice_validation(calibrated, tmp_path):
    from spicenet.cells.resistive.ffebm_train import load_ffebm
    from spicenet.cells.resistive.validate import ResistiveValidationConfig, validate_resistive

    run_dir = tmp_path / "ff"
    res = family.train(TINY_FFEBM, surrogate=calibrated[1], quick=True, run_dir=run_dir, device="cpu", seed=0)
    m = res["metrics"]
    assert m["blocks"] == 2 and m["block_sizes"] == [[64, 8, 6], [6, 6, 10]]
    assert m["accuracy_chip_worst"] <= m["accuracy_chip_mean"]
    assert json.loads((run_dir / "run.json").read_text())["trainer"] == "ffebm"
    model, _ = load_ffebm(run_dir)
    assert all(float(p.detach().min()) >= 0 for b in model.blocks for p in b.parameters())
    val = validate_resistive(run_dir, chips=1, quick=True, workers=1, seed=0,
                             config=ResistiveValidationConfig(n_test=30, source="sample"))
    assert val["blocks"] == 2 and len(val["per_chip"][0]["blocks"]) == 2
    # block 2 was fed from block 1's SPICE outputs: its surrogate solve on those inputs agrees with ngspice
    assert val["gap"]["max_node_err_v"] < 1e-6 and abs(val["gap"]["accuracy_pp"]) <= 100.0 / 30
    assert val["energy_per_inference_j"] > 0


@needs_ngspice
def test_v_bias_override_reaches_solver_and_ngspice_deck():
    """``[model] v_bias`` (net_spec's ``v_bias``) sets the bias rails of the solver and of the exported deck alike:
    ngspice's ``.op`` of the deck agrees with the solver at the new rails, and the outputs differ from those at the
    surrogate's rails (so an override ignored by either side fails); a negative rail is a ConfigError."""
    import spicenet
    from spicenet.cells.resistive.train import build_network, net_spec
    from spicenet.errors import ConfigError

    sur = SurrogateFile.load(spicenet.shipped_surrogate("resistive"))
    x = torch.rand(3, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    outs = {}
    for v_bias in (0.0, 3.0):
        spec = net_spec(sur, [6, 4, 3], True, amp_gain=4.0, input_gain=2.0, v_bias=v_bias)
        net = build_network(spec, init_max=6.0, seed=3, ideal=True)
        net.spec = spec
        assert net.v_bias == (3.0 if v_bias else float(sur.attrs["v_bias"]))
        v_sur = net(x)
        v_spice = net.spice_outputs(x)
        assert float((v_sur - v_spice).abs().max()) < 1e-6
        outs[v_bias] = v_sur
    assert float((outs[3.0] - outs[0.0]).abs().max()) > 1e-2
    with pytest.raises(ConfigError, match="v_bias"):
        net_spec(sur, [6, 4, 3], True, v_bias=-1.0)


@needs_ngspice
def test_cross_entropy_training_logs_the_cross_entropy_of_the_trained_outputs(calibrated, tmp_path):
    """``[train] loss = "ce"``: the logged test loss of the last epoch is the cross-entropy of the saved model's
    output voltages at ``t_out`` (recomputed with torch's own cross_entropy); a bad loss name or t_out is a
    ConfigError."""
    from spicenet.cells.resistive.train import merged_train_config, test_data
    from spicenet.errors import ConfigError

    cfg = {**TINY_TRAIN, "train": {**TINY_TRAIN["train"], "loss": "ce", "t_out": 0.05}}
    res = family.train(cfg, surrogate=calibrated[1], quick=True, run_dir=tmp_path / "ce", device="cpu", seed=0)
    m = res["metrics"]
    assert m["loss"] == "ce" and m["t_out"] == 0.05
    net, _ = load_trained(tmp_path / "ce", "plain")
    xt, yt, _ = test_data(merged_train_config(cfg), n_test=40)
    with torch.no_grad():
        ref = float(torch.nn.functional.cross_entropy(net(xt) / 0.05, yt))
    last = (tmp_path / "ce" / "metrics.csv").read_text().strip().splitlines()
    header, row = last[0].split(","), last[-1].split(",")
    assert float(row[header.index("test_loss_no_injection")]) == pytest.approx(ref, rel=1e-9)
    for bad in ({"loss": "hinge"}, {"t_out": 0.0}):
        with pytest.raises(ConfigError, match=r"\[train\] (loss|t_out)"):
            merged_train_config({"train": bad})


@needs_ngspice
def test_ideal_only_run_trains_the_full_runs_ideal_network(trained, calibrated, tmp_path):
    """``[train] hardware = false``: the ideal network alone, on the same seeded minibatches, is bit for bit the
    ideal network of the three-model run (its conductances and ``accuracy_ideal``); there are no 4-bit metrics,
    loading or validating the 4-bit network is a one-line ConfigError (exit 2), and ``hardware = false`` without
    ``ideal`` is refused."""
    from spicenet.cells.resistive.train import merged_train_config
    from spicenet.errors import ConfigError

    full_res, full_dir = trained
    cfg = {**TINY_TRAIN, "train": {**TINY_TRAIN["train"], "hardware": False}}
    res = family.train(cfg, surrogate=calibrated[1], quick=True, run_dir=tmp_path / "ideal", device="cpu", seed=0)
    m = res["metrics"]
    assert m["accuracy_ideal"] == full_res["metrics"]["accuracy_ideal"]
    assert m["hardware"] is False and "accuracy_nominal" not in m and "chip_worst" not in m
    alone, _ = load_trained(tmp_path / "ideal", "ideal")
    ref, _ = load_trained(full_dir, "ideal")
    for a, b in zip(alone.parameters(), ref.parameters()):
        assert torch.equal(a, b)
    header = (tmp_path / "ideal" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "test_accuracy_ideal" in header and "test_accuracy" not in header
    with pytest.raises(ConfigError, match="hardware = false"):
        load_trained(tmp_path / "ideal", "injected")
    proc = subprocess.run([sys.executable, "-m", "spicenet", "validate", str(tmp_path / "ideal"), "--quick"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "no 'injected' network" in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(ConfigError, match=r"\[train\] hardware = false needs ideal = true"):
        merged_train_config({"train": {"hardware": False, "ideal": False}})
    from spicenet.cells.resistive.ffebm_train import merged_ffebm_config
    with pytest.raises(ConfigError, match=r"\[train\] hardware = false is not supported by ffebm"):
        merged_ffebm_config({"train": {"hardware": False}})


@needs_ngspice
def test_rectifier_units_train_and_validate_in_ngspice(calibrated, tmp_path):
    """``[model] units = "rectifier"`` end to end: the trained 4-bit network's hidden nodes rectify (excitatory
    half >= 0 V, inhibitory half <= 0 V, each up to one junction drop), and ngspice, running the process diode,
    reproduces its node voltages and accuracy; a unit name that does not exist is a ConfigError naming the key."""
    from spicenet.cells.resistive.train import merged_train_config
    from spicenet.cells.resistive.validate import ResistiveValidationConfig, validate_resistive
    from spicenet.errors import ConfigError

    cfg = {**TINY_TRAIN, "model": {"hidden": [8], "units": "rectifier", "input_gain": 10.0}}
    family.train(cfg, surrogate=calibrated[1], quick=True, run_dir=tmp_path / "rect", device="cpu", seed=0)
    net, spec = load_trained(tmp_path / "rect")
    assert net.units == "rectifier" and spec["units"] == "rectifier"
    x = torch.rand(16, net.n_in, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        h = net.equilibrium(x).v[:, net.layer_slice(1)]
    assert float(h[:, :4].min()) > -0.8 and float(h[:, 4:].max()) < 0.8
    assert float(h.abs().max()) > spec["vb"] + 0.4  # beyond where the clamp units would have held them
    res = validate_resistive(tmp_path / "rect", chips=1, quick=True, workers=1, seed=0,
                             config=ResistiveValidationConfig(n_test=40, source="sample"))
    assert abs(res["gap"]["accuracy_pp"]) <= 2.5 and res["gap"]["max_node_err_v"] < 1e-6
    with pytest.raises(ConfigError, match=r"\[model\] units"):
        merged_train_config({"model": {"units": "relu"}})
