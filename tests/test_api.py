"""The public API at ``spicenet`` top level: families built from the shipped calibrations, checked against the
calibration files read with plain h5py, ngspice itself and analytic laws; dtype/device follow torch."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tomllib

import h5py
import numpy as np
import pytest
import torch

import spicenet
from spicenet.errors import ConfigError
from tests.conftest import ROOT


def _attrs(path) -> dict:
    with h5py.File(path, "r") as f:
        g = f["surrogate"]
        out = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in g.attrs.items()}
        out["params"] = {k: dict(d.attrs) for k, d in g["params"].items()}
    return out


def test_import_is_light_and_names_resolve():
    code = ("import sys, spicenet\n"
            "heavy = [m for m in ('torch', 'h5py', 'numpy', 'scipy') if m in sys.modules]\n"
            "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
    for name in spicenet.__all__:
        assert getattr(spicenet, name) is not None
    with pytest.raises(AttributeError):
        spicenet.no_such_name  # noqa: B018
    with pytest.raises(ValueError, match="family"):
        spicenet.shipped_surrogate("gf180")


def test_pbit_from_surrogate_carries_the_calibration():
    path = spicenet.shipped_surrogate("rng")
    a = _attrs(path)
    n = 4000
    pb = spicenet.PBit.from_surrogate(path, n, seed=3, dtype=torch.float64)
    assert pb.shape == (n,)
    # energy and tau from the file, not unset
    assert pb.energy_per_bit_j == pytest.approx(a["energy_per_bit_j"], rel=1e-12)
    assert pb.energy_j(1000) == pytest.approx(1000 * a["energy_per_bit_j"], rel=1e-12)
    assert pb.tau_s == pytest.approx(a["params"]["tau_s"]["mean"], rel=1e-12)
    assert pb.dt_s == pytest.approx(a["dt_s"]) and pb.rho == pytest.approx(math.exp(-a["dt_s"] / pb.tau_s))
    # cells follow the calibrated mismatch moments (4000 cells: the sample mean is within 4 standard errors)
    for name, t in (("v0", pb.v0), ("vs", pb.vs)):
        m, s = a["params"][name]["mean"], a["params"][name]["std"]
        assert abs(float(t.mean()) - m) < 4 * s / math.sqrt(n), name
        assert float(t.std()) == pytest.approx(s, rel=0.1), name
    # P(1) at each cell's own v0 is 1/2 (the fitted law)
    assert torch.allclose(pb.prob(pb.v0), torch.full((n,), 0.5, dtype=torch.float64))
    # seeded chips: same seed same chip, another seed another chip; n_chips stacks seeds seed, seed + 1
    assert torch.equal(spicenet.PBit.from_surrogate(path, n, seed=3, dtype=torch.float64).v0, pb.v0)
    other = pb.sample_chip(4)
    assert other.shape == pb.shape and not torch.equal(other.v0, pb.v0)
    many = spicenet.PBit.from_surrogate(path, 16, seed=3, n_chips=2)
    assert many.shape == (2, 16) and many.v0.dtype == torch.float32
    assert torch.allclose(many.v0[1], spicenet.PBit.from_surrogate(path, 16, seed=4).v0)
    nominal = spicenet.PBit.from_surrogate(path, 8, scale=0.0, dtype=torch.float64)
    assert torch.allclose(nominal.v0, torch.full((8,), a["params"]["v0"]["mean"], dtype=torch.float64))
    assert pb.float().v0.dtype == torch.float32
    with pytest.raises(ConfigError, match="family"):
        spicenet.PBit.from_surrogate(spicenet.shipped_surrogate("resistive"), 4)


def test_resistive_network_from_surrogate_matches_ngspice_and_follows_dtype():
    path = spicenet.shipped_surrogate("resistive")
    a = _attrs(path)
    net = spicenet.ResistiveNetwork.from_surrogate(path, [16, 8, 10], seed=1)
    assert net.g_unit == pytest.approx(a["g_lsb"], rel=1e-12) and net.vb == pytest.approx(a["vb"], rel=1e-12)
    assert net.is_ == pytest.approx(a["diode_is_nominal"], rel=1e-12)
    assert net.weights[0].dtype == torch.float64 and net.device == torch.device("cpu")
    chip = net.sample_chip(7)
    assert all(torch.equal(g1, g2) for g1, g2 in zip(chip.g_factor, net.sample_chip(7).g_factor))
    assert all(torch.all(f == 1) for f in net.sample_chip(7, scale=0.0).g_factor)
    x = torch.rand(3, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        v_sur = net(x, chip=chip)
    v_spice = net.spice_outputs(x, chip)  # ngspice .op with the process's own diode
    assert v_spice.shape == (3, 10) and torch.isfinite(v_spice).all()
    assert float((v_sur - v_spice).abs().max()) < 1e-6
    # .float() casts the parameters and the outputs, as torch modules do; .double() back
    net.float()
    assert all(p.dtype == torch.float32 for p in net.parameters())
    with torch.no_grad():
        v32 = net(x.float(), chip=chip)
    assert v32.dtype == torch.float32 and float((v32.double() - v_sur).abs().max()) < 1e-4
    net.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in net.parameters())
    small = spicenet.ResistiveNetwork.from_surrogate(path, [16, 8, 10], init_max_lsb=2.0, ideal=True)
    assert small.quantize is None and all(float(p.detach().max()) <= 2.0 for p in small.parameters())
    bare = spicenet.ResistiveNetwork([4, 2])
    with pytest.raises(ValueError, match="from_surrogate"):
        bare.sample_chip(0)


def test_phase_oscillator_network_from_surrogate():
    path = spicenet.shipped_surrogate("oscillator")
    a = _attrs(path)
    pm = json.loads(a["phase_model_params"])
    f0 = a["params"]["f0_hz"]
    net = spicenet.PhaseOscillatorNetwork.from_surrogate(path, 6)
    assert net.params.f0_hz == pytest.approx(pm["f0_hz"], rel=1e-12)
    assert net.surrogate_info.fallbacks == []
    chips = [net.sample_chip(s) for s in range(300)]
    assert chips[0].detuning_hz.dtype == torch.float32
    assert torch.equal(net.sample_chip(0).detuning_hz, chips[0].detuning_hz)
    f = torch.stack([c.detuning_hz for c in chips]).double() + pm["f0_hz"]
    # ring frequencies: the calibrated f0 spread (1800 draws; log-normal moments matched to mean/std)
    assert float(f.std()) == pytest.approx(f0["std"], rel=0.1)
    assert abs(float(f.mean()) - f0["mean"]) < 4 * f0["std"] / math.sqrt(f.numel())
    g = torch.stack([c.k_gain for c in chips])
    assert torch.equal(g, g.transpose(1, 2))  # one resistor per pair
    # scale 0: every ring at the Monte-Carlo mean f0, which sits off the phase model's nominal f0 by the file's own
    # difference (as in training)
    nominal = net.sample_chip(0, scale=0.0).detuning_hz.double()
    assert torch.allclose(nominal, torch.full((6,), f0["mean"] - pm["f0_hz"], dtype=torch.float64), atol=1.0)
    net.double()
    assert net.dtype == torch.float64 and net.mask.dtype == torch.float64
    assert net.sample_chip(1).k_gain.dtype == torch.float64
    phi0 = torch.zeros(2, 6, dtype=torch.float64)
    codes = torch.zeros(6, 6)
    out = net(phi0, 1e-9, 4, codes)
    assert out.phases.dtype == torch.float64


def test_render_simulate_and_sweep_from_the_top_level(tmp_path):
    # RC step: v(out) = 1 - exp(-t / RC) (analytic), R = 1 kOhm, C = 1 nF
    deck = spicenet.render("basic/rc", {"r": "1k", "c": "1n"})
    res = spicenet.simulate(deck, "tran 5n 5u 0 5n")
    t, v = res["time"], res["v(out)"]
    k = np.searchsorted(t, 1e-6)
    assert v[k] == pytest.approx(1 - math.exp(-t[k] / 1e-6), abs=5e-3)
    cfg = tomllib.loads("""
template = "basic/rc"
analysis = "op"
[params]
c = "1n"
[grid]
r = ["1k", "2k"]
""")
    summary = spicenet.run_sweep(cfg, tmp_path / "runs.h5")
    assert summary.done == 2 and summary.failed == 0
    table = spicenet.open_runs(tmp_path / "runs.h5").table()
    assert sorted(table["r"]) == [1e3, 2e3]
