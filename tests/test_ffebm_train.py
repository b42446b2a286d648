"""``spicenet train ffebm`` config and trainer: the ``[model]`` rails reach every block, blocks without a hidden
layer (``[n_out]``), the ``[train] ideal`` reference model, and both through ``spicenet validate`` in ngspice."""

from __future__ import annotations

import shutil

import pytest
import torch

import spicenet
from spicenet.cells.resistive import family
from spicenet.cells.resistive.ffebm_train import (FFEBMTrainConfig, block_specs, build_ffebm, load_ffebm,
                                                  merged_ffebm_config)
from spicenet.config import load_config
from spicenet.errors import ConfigError
from spicenet.surrogate_schema import load_surrogate

needs_ngspice = pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice not installed")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sur():
    return load_surrogate(spicenet.shipped_surrogate("resistive"), "resistive")


def test_model_rails_and_bias_voltage_reach_every_block() -> None:
    """``[model] vb`` / ``v_bias`` are ffebm config keys (inherited from eqprop); they used to be accepted and
    silently dropped by :func:`block_specs` (every block kept the calibration's 0.3 V rails)."""
    sur = _sur()
    cfg = merged_ffebm_config({"model": {"vb": 1.0, "v_bias": 2.5, "amp_gain": 4.0},
                               "ffebm": {"blocks": [[6, 5], [10]]}})
    specs = block_specs(sur, 8, cfg)
    assert [s["layer_sizes"] for s in specs] == [[8, 6, 5], [5, 10]]
    assert all(s["vb"] == 1.0 and s["v_bias"] == 2.5 for s in specs)
    model = build_ffebm(specs, init_max=2.0, seed=0)
    assert all(b.vb == 1.0 and b.v_bias == 2.5 for b in model.blocks)
    default = block_specs(sur, 8, merged_ffebm_config({"ffebm": {"blocks": [[10]]}}))[0]
    assert default["vb"] == pytest.approx(float(sur.attrs["vb"]))
    assert default["units"] == "clamp" and all(b.units == "clamp" for b in model.blocks)


def test_model_units_reach_every_block() -> None:
    """``[model] units`` is an ffebm config key (inherited from eqprop) and used to be dropped the same way: every
    block of a ``units = "rectifier"`` config has one diode per hidden node (half excitatory, half inhibitory)."""
    cfg = merged_ffebm_config({"model": {"units": "rectifier", "amp_gain": 4.0}, "ffebm": {"blocks": [[6, 5], [4, 10]]}})
    model = build_ffebm(block_specs(_sur(), 8, cfg), init_max=2.0, seed=0)
    assert all(b.units == "rectifier" for b in model.blocks)
    with pytest.raises((ConfigError, ValueError), match="units"):
        merged_ffebm_config({"model": {"units": "relu"}, "ffebm": {"blocks": [[10]]}})


def test_blocks_without_hidden_layer_are_accepted_and_empty_blocks_are_not() -> None:
    cfg = load_config(FFEBMTrainConfig, {"ffebm": {"blocks": [[12], [7, 12], [10]]}}, "ffebm config")
    assert cfg.blocks == [[12], [7, 12], [10]]
    for bad in ([[12], []], [[0], [10]], []):
        with pytest.raises((ConfigError, ValueError), match="blocks"):
            load_config(FFEBMTrainConfig, {"ffebm": {"blocks": bad}}, "ffebm config")
    assert FFEBMTrainConfig().ideal is False  # an ffebm run without the key trains one model, as before


def test_ideal_ffebm_has_float_conductances_and_the_same_start() -> None:
    specs = block_specs(_sur(), 8, merged_ffebm_config({"ffebm": {"blocks": [[6], [10]]}}))
    q = build_ffebm(specs, init_max=2.0, seed=3)
    f = build_ffebm(specs, init_max=2.0, seed=3, ideal=True)
    assert all(b.quantize is not None for b in q.blocks) and all(b.quantize is None for b in f.blocks)
    for a, b in zip(q.state_dict().values(), f.state_dict().values()):
        assert torch.equal(a, b)


TINY = {"data": {"n_train": 60, "n_test": 40}, "model": {"amp_gain": 4.0},
        "train": {"epochs": 2, "batch_size": 20, "ideal": True}, "mismatch": {"eval_chips": 2},
        "ffebm": {"blocks": [[8], [6, 10]]}}


@needs_ngspice
def test_ffebm_with_a_single_layer_block_trains_an_ideal_twin_and_validates_in_ngspice(tmp_path) -> None:
    from spicenet.cells.resistive.validate import ResistiveValidationConfig, validate_resistive

    run_dir = tmp_path / "ff1"
    res = family.train(TINY, surrogate=spicenet.shipped_surrogate("resistive"), quick=True, run_dir=run_dir,
                       device="cpu", seed=0)
    m = res["metrics"]
    assert m["block_sizes"] == [[64, 8], [8, 6, 10]]
    assert 0.0 <= m["accuracy_ideal"] <= 1.0 and 0.0 <= m["accuracy_nominal"] <= 1.0
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert "test_accuracy_ideal" in rows[0] and len(rows) == 3
    ideal, _ = load_ffebm(run_dir, which="ideal")
    injected, _ = load_ffebm(run_dir)
    assert all(b.quantize is None for b in ideal.blocks) and all(b.quantize is not None for b in injected.blocks)
    assert any(not torch.equal(a, b) for a, b in zip(ideal.state_dict().values(), injected.state_dict().values()))
    with pytest.raises(ValueError, match="which"):
        load_ffebm(run_dir, which="plain")
    val = validate_resistive(run_dir, chips=1, quick=True, workers=1, seed=0,
                             config=ResistiveValidationConfig(n_test=30, source="sample"))
    assert val["blocks"] == 2 and val["block_sizes"] == [[64, 8], [8, 6, 10]]
    assert val["gap"]["max_node_err_v"] < 1e-6 and abs(val["gap"]["accuracy_pp"]) <= 100.0 / 30
    assert val["gap"]["inputs_node_err_over_1mv"] == 0
    assert all(b["inputs_node_err_over_1mv"] == 0 for p in val["per_chip"] for b in p["blocks"])


@needs_ngspice
def test_rectifier_ffebm_validates_in_ngspice(tmp_path) -> None:
    """An ff-EBM of rectifier blocks (amplifiers in the first) exported block by block: ngspice's node voltages
    equal the solver's on SPICE-derived inputs, and the units are recorded in the run."""
    from spicenet.cells.resistive.validate import ResistiveValidationConfig, validate_resistive

    cfg = {**TINY, "model": {"amp_gain": 4.0, "units": "rectifier", "input_gain": 30.0},
           "train": {"epochs": 1, "batch_size": 20, "ideal": False}, "ffebm": {"blocks": [[8, 6], [6, 10]]}}
    run_dir = tmp_path / "rect"
    family.train(cfg, surrogate=spicenet.shipped_surrogate("resistive"), quick=True, run_dir=run_dir, device="cpu",
                 seed=0)
    model, specs = load_ffebm(run_dir)
    assert all(b.units == "rectifier" for b in model.blocks) and all(s["units"] == "rectifier" for s in specs)
    val = validate_resistive(run_dir, chips=1, quick=True, workers=1, seed=0,
                             config=ResistiveValidationConfig(n_test=30, source="sample"))
    assert val["blocks"] == 2 and val["gap"]["max_node_err_v"] < 1e-6
    assert abs(val["gap"]["accuracy_pp"]) <= 100.0 / 30
