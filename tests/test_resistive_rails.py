"""The diode-rail override ``[model] vb`` of the eqprop/ffebm configs: it reaches the network, the exported deck
and ngspice, and the solver still matches ngspice ``.op`` with the rails moved (the diode law is a function of
V - vb, so only the clamp level moves)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import spicenet
from spicenet.cells.resistive.train import EqPropTrainConfig, build_network, net_spec
from spicenet.config import load_config
from spicenet.errors import ConfigError
from spicenet.surrogate_schema import load_surrogate


def _spec(vb: float) -> dict:
    sur = load_surrogate(spicenet.shipped_surrogate("resistive"), "resistive")
    return net_spec(sur, [6, 5, 3], True, 4.0, 0.0, 30.0, 0.0, vb)


def test_vb_replaces_the_calibrated_rails_in_the_network_and_the_deck() -> None:
    from spicenet.cells.resistive.netlist import network_deck

    calibrated = _spec(0.0)["vb"]
    assert calibrated == pytest.approx(0.3)
    net = build_network(_spec(1.0), init_max=4.0, seed=0, ideal=True)
    assert net.vb == 1.0
    deck = network_deck(net).splitlines()
    assert "vdp rail_p 0 DC 1" in deck and "vdn rail_n 0 DC -1" in deck


def test_a_negative_vb_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"\[model\] vb"):
        load_config(EqPropTrainConfig, {"model": {"vb": -0.5}}, "eqprop config")


def test_wider_rails_widen_the_clamp() -> None:
    """With large inputs the hidden nodes sit near the rails: |V| bounded by about vb + the diodes' forward drop at
    the node current (< 0.7 V here), and the bound moves with vb."""
    x = torch.ones(4, 6, dtype=torch.float64)
    x[:, 3:] = 0.0
    peaks = []
    for vb in (0.3, 1.0):
        net = build_network(_spec(vb), init_max=4.0, seed=0, ideal=True)
        with torch.no_grad():
            v = net.equilibrium(x).v
        peaks.append(float(v.abs().max()))
        assert peaks[-1] < vb + 0.7
    assert peaks[1] > peaks[0] + 0.3


@pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice not installed")
def test_solver_matches_ngspice_with_moved_rails() -> None:
    from spicenet.cells.resistive.calibrate import spice_node_voltages
    from spicenet.spice.engine import Engine

    spec = _spec(1.0)
    net = build_network(spec, init_max=4.0, seed=3, ideal=True)
    x = torch.rand(3, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        v = net.equilibrium(x).v.numpy()
    with Engine(workers=1) as eng:
        v_spice, _, errors = spice_node_voltages(net, None, x, engine=eng, options=spec["spice_options"])
    assert not errors
    assert np.abs(v_spice - v).max() < 1e-6
    assert np.abs(v).max() > 0.5  # the nodes use the wider swing, which the calibrated 0.3 V rails would clamp
