"""The README's "Python quickstart" code block runs as written (like thrml's README test), from a directory outside
the repository, and its numbers hold: the surrogate agrees with ngspice on the same chip, the step moved the
conductances and kept them on the programmable range, and the p-bit carries its calibrated tau and energy."""

from __future__ import annotations

import re

import h5py
import pytest
import torch

from tests.conftest import ROOT


def quickstart_code() -> str:
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Python quickstart\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert section, "README.md has no '## Python quickstart' section"
    blocks = re.findall(r"^```python\n(.*?)^```", section.group(1), flags=re.S | re.M)
    assert len(blocks) == 1, f"expected one python block in the quickstart, found {len(blocks)}"
    return blocks[0]


def test_quickstart_is_short_and_placed_after_quick_start():
    text = (ROOT / "README.md").read_text()
    heads = re.findall(r"^## (.+)$", text, flags=re.M)
    assert heads.index("Python quickstart") == heads.index("Quick start") + 1
    assert len(quickstart_code().strip().splitlines()) <= 20


def test_readme_quickstart_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "__quickstart__"}
    exec(compile(quickstart_code(), "README.md:quickstart", "exec"), ns)  # noqa: S102 - the README's own code
    out = capsys.readouterr().out
    assert "max |surrogate - ngspice|" in out and "J/bit" in out
    net, v_sur, v_spice = ns["net"], ns["v_sur"], ns["v_spice"]
    assert v_spice.shape == (3, 10) and torch.isfinite(v_spice).all()
    assert float((v_sur - v_spice).abs().max()) < 1e-6  # ngspice .op of the exported chip vs the torch solver
    init = type(net).from_surrogate(ns["cal"], [64, 32, 10], seed=0)  # the same network before the step
    with torch.no_grad():
        moved = [float((p - q).abs().max()) for p, q in zip(net.parameters(), init.parameters())]
        g_max = len(net.spec["levels"]) - 1
        assert all(float(p.min()) >= 0 and float(p.max()) <= g_max for p in net.parameters())
    assert max(moved) > 0
    with h5py.File(ns["pbit"].calibration["path"], "r") as f:
        energy = float(f["surrogate"].attrs["energy_per_bit_j"])
        tau = float(f["surrogate/params/tau_s"].attrs["mean"])
    assert ns["pbit"].energy_per_bit_j == pytest.approx(energy, rel=1e-12)
    assert ns["pbit"].tau_s == pytest.approx(tau, rel=1e-12)
