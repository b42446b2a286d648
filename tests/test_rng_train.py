"""DTM training on calibrated p-bit chips, chip evaluation, and the BM -> resistor-network export checked in SPICE."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from spicenet.cells.rng import export
from spicenet.cells.rng.training import ChipModel, spatial_data_nodes, train
from spicenet.cells.rng.validation import fit_trim, state_counts, tv_distance, tv_floor
from spicenet.surrogate import SurrogateFile, SurrogateParam

V0_MEAN, V0_STD, VS_MEAN, VS_STD, E_BIT = -6.5e-4, 5.2e-3, 2.2e-4, 4.4e-5, 1.06e-16
SIZING = '{"vdd": 0.04, "wn": 1.0, "wp": 2.5, "l": 0.15, "cload": 0.0, "dvtn": -0.25, "dvtp": 0.25}'


@pytest.fixture(scope="module")
def surrogate(tmp_path_factory):
    """A surrogate file with the calibrated numbers of the generic-process cell (v0, vs, tau, E_bit)."""
    rng = np.random.default_rng(0)
    sf = SurrogateFile("rng", "generic", params={
        "v0": SurrogateParam(rng.normal(V0_MEAN, V0_STD, 6), unit="V", mean=V0_MEAN, std=V0_STD),
        "vs": SurrogateParam(np.abs(rng.normal(VS_MEAN, VS_STD, 6)), unit="V", mean=VS_MEAN, std=VS_STD, positive=True),
        "tau_s": SurrogateParam(np.abs(rng.normal(3.5e-8, 1e-8, 6)), unit="s", mean=3.5e-8, std=1e-8, positive=True)},
        energy={"energy_per_bit_j": E_BIT}, attrs={"vdd": 0.04, "dt_s": 1e-9, "sizing": SIZING})
    return sf.save(tmp_path_factory.mktemp("sur") / "rng.h5")


TINY = {
    "data": {"dataset": "mnist", "source": "sample", "image_size": 8},
    "model": {"grid": 10, "degree": 8, "steps": 2, "sweeps": 5, "weight_bits": 5},
    "train": {"iters": 30, "batch": 32, "log_every": 15, "checkpoint_every": 15, "fid_log_samples": 100},
    "mismatch": {"enabled": True},
    "eval": {"eval_chips": 3, "eval_samples": 100},
}


@pytest.fixture(scope="module")
def tiny_run(surrogate, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run") / "dtm"
    return train(TINY, surrogate=surrogate, quick=True, run_dir=out, seed=3, progress=False)


def test_train_writes_run_and_metrics(tiny_run):
    from pathlib import Path

    run = Path(tiny_run["run_dir"])
    meta = json.loads((run / "run.json").read_text())
    assert meta["family"] == "rng" and meta["trainer"] == "dtm"
    m = json.loads((run / "metrics.json").read_text())
    assert set(m) == set(tiny_run["metrics"])
    for key in ("fid_spicenet_mnist", "fid_floor_train_vs_test", "energy_per_sample_j", "chips"):
        assert key in m, key
    assert len(m["chips"]["fid_values"]) == 3
    assert m["chips"]["fid_worst"] == max(m["chips"]["fid_values"])
    assert math.isclose(m["chips"]["fid_mean"], float(np.mean(m["chips"]["fid_values"])), rel_tol=1e-12)
    # energy per sample = T * K * N * E_bit with N = grid^2 cells
    assert math.isclose(m["energy_per_sample_j"], 2 * 5 * 10 * 10 * E_BIT, rel_tol=1e-12)
    assert (run / "model.pt").is_file() and (run / "plots" / "samples_nominal.png").is_file()
    assert len(list((run / "checkpoints").glob("ckpt-*.pt"))) >= 1
    # a trained model must beat i.i.d. uniform pixels under the same FID estimator (a floor it must clear)
    from spicenet.data import load_dataset
    from spicenet.metrics import extract_features, fid_from_features, load_feature_net

    ds = load_dataset("mnist", "sample", size=8, encoding="spin")
    net, _ = load_feature_net("mnist")
    g = torch.Generator().manual_seed(0)
    noise = torch.where(torch.rand((100, 64), generator=g) < 0.5, -1.0, 1.0).numpy()
    fid_uniform = fid_from_features(extract_features(ds.flat("test"), net, "spin"), extract_features(noise, net, "spin"))
    assert m["fid_spicenet_mnist"] < fid_uniform


def test_chip_evaluation_reproducible(tiny_run, surrogate):
    from pathlib import Path

    from spicenet.cells.rng.training import evaluate_fid_over_chips, load_model
    from spicenet.data import load_dataset
    from spicenet.metrics import load_feature_net

    dtm, _ = load_model(Path(tiny_run["run_dir"]))
    chips = ChipModel(surrogate)
    ds = load_dataset("mnist", "sample", size=8, encoding="spin")
    net, _ = load_feature_net("mnist")
    args = (dtm, chips, [11, 12], 80, ds.flat("test"), "mnist", net)
    a = evaluate_fid_over_chips(*args, seed=5)
    b = evaluate_fid_over_chips(*args, seed=5)
    c = evaluate_fid_over_chips(*args, seed=6)
    assert a["values"] == b["values"]
    assert a["values"] != c["values"]


def test_chip_model_statistics(surrogate):
    """Offsets/gains follow the calibrated distribution: untrimmed offset std = v0_std / vs_nom, trimmed
    offset std = residual / vs_nom, gain mean 1 and std vs_std / vs_mean."""
    n = 20000
    raw = ChipModel(surrogate, v0_trim=False)
    off, gain = raw.nonideality(1, n)
    off2, gain2 = raw.nonideality(1, n)
    assert torch.equal(off, off2) and torch.equal(gain, gain2)
    assert not torch.equal(off, raw.nonideality(2, n)[0])
    tol = 4 / math.sqrt(n)
    assert abs(off.std().item() / (V0_STD / VS_MEAN) - 1) < 3 * tol
    assert abs(off.mean().item()) < 4 * V0_STD / VS_MEAN / math.sqrt(n)
    assert abs(gain.mean().item() - 1) < 4 * (VS_STD / VS_MEAN) / math.sqrt(n)
    assert abs(gain.std().item() / (VS_STD / VS_MEAN) - 1) < 3 * tol
    trimmed = ChipModel(surrogate, v0_trim=True, v0_residual_std_v=5e-5)
    off_t, _ = trimmed.nonideality(1, n)
    assert abs(off_t.std().item() / (5e-5 / VS_MEAN) - 1) < 3 * tol


def test_spatial_embedding_keeps_neighbours():
    nodes = spatial_data_nodes(14, 18)
    assert len(set(nodes.tolist())) == 196
    r, c = np.divmod(nodes.reshape(14, 14), 18)
    assert np.all(np.diff(r, axis=0) >= 1) and np.all(np.diff(r, axis=0) <= 2)
    assert np.all(np.diff(c, axis=1) >= 1) and np.all(np.diff(c, axis=1) <= 2)
    with pytest.raises(ValueError, match="image_size"):
        spatial_data_nodes(20, 18)


def test_statistics_helpers():
    from spicenet.cells.rng.gibbs import exact_enumeration

    ex = exact_enumeration(3, np.array([[0, 1], [1, 2]]), np.array([0.3, -0.2]), np.array([0.1, 0.0, -0.4]))
    bits = (ex.states > 0).astype(int)
    assert np.array_equal(state_counts(bits), np.ones(8))  # state k of exact_enumeration lands in bin k
    assert tv_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == 1.0
    # TV floor of m i.i.d. draws over K states ~ sum_k sqrt(p_k (1 - p_k) / (2 pi m)) (normal approximation)
    p = np.full(16, 1 / 16)
    m = 4000
    approx = float(np.sum(np.sqrt(p * (1 - p) / (2 * np.pi * m))))
    assert abs(tv_floor(p, m, reps=200) / approx - 1) < 0.1


def test_fit_trim_recovers_logistic():
    v0, vs = 1.3e-3, 2.5e-4
    levels = v0 + vs * np.array([-1.5, 0.0, 1.5])
    p = 1 / (1 + np.exp(-(levels - v0) / vs))
    a, b = fit_trim(levels, p, np.full(3, 1000.0))
    assert abs(a - v0) < 1e-9 and abs(b / vs - 1) < 1e-9


def test_mapping_bias_shift_closed_form():
    """Millman's node voltage of the mapped network equals v0_ref + vs 2 beta (b + J s) for every state."""
    j = np.array([[0, 0.7, -0.4], [0.7, 0, 0.2], [-0.4, 0.2, 0]])
    b = np.array([0.3, -0.5, 0.1])
    v0 = np.array([1e-3, -2e-3, 4e-4])
    m = export.map_weights(j, b, 1.3, 2.2e-4, v0, 0.04)
    s = np.array([[1, -1, 1], [-1, -1, 1], [1, 1, -1]], float)
    want = v0 + 2.2e-4 * 2 * 1.3 * (b + s @ j)
    assert np.allclose(export.bias_voltages(m, s), want, atol=1e-15, rtol=1e-12)
    with pytest.raises(ValueError, match="vo"):
        export.map_weights(j * 500, b, 1.0, 2.2e-4, v0, 0.04)


@pytest.mark.parametrize("jval", [0.8, -0.8])
def test_mapping_bias_shift_in_spice(engine, jval):
    """2-cell netlist, noise off: the bias node of each cell sits at v0_ref + 2 beta vs (b + J s_other), with
    s_other = sign of the other cell's output as SPICE settles it (op)."""
    from spicenet.spice.engine import Deck
    from spicenet.spice.job import RunSpec
    from spicenet.spice.process import get_process

    from spicenet.cells.rng import cells

    proc = get_process("generic")
    sz = cells.CellSizing(**json.loads(SIZING))
    j = np.array([[0.0, jval], [jval, 0.0]])
    b = np.array([2.0, -2.0])  # strong enough to put the cells in known states
    v0 = np.array([0.5e-3, -0.3e-3])
    vs, beta = 2.2e-4, 1.0
    m = export.map_weights(j, b, beta, vs, v0, sz.vdd)
    deck = Deck(export.bm_deck(m, sz, proc), proc)
    res = engine.simulate_many(deck, [RunSpec("op", "op", cells.device_commands(proc, sz, [None, None], 0))])["op"]
    x = np.array([res.scalar(f"v(a{k})") - res.scalar(f"v(b{k})") for k in range(2)])
    assert np.all(np.abs(x) > 5e-3)  # both cells latched (the buffers saturate)
    s = np.sign(x)
    for k in range(2):
        want = v0[k] + 2 * beta * vs * (b[k] + j[k, 1 - k] * s[1 - k])
        assert abs(res.scalar(f"v(bias{k})") - want) < 2e-7, (k, res.scalar(f"v(bias{k})"), want)
    # the intended shift: flipping the neighbour moves the bias by 4 beta vs |J| (0.70 mV here)
    assert math.isclose(4 * beta * vs * abs(jval), 7.04e-4, rel_tol=1e-12)


@pytest.mark.slow
def test_validate_small_machine_matches_exact(tiny_run):
    """End to end: the run's 3-cell patch machine in ngspice on one chip, TV vs exact within 3x the finite-sample
    floor at the measured number of effective (decorrelated) samples plus 0.03."""
    from pathlib import Path

    from spicenet.cells.rng.validation import ValidationConfig, validate

    cfg = ValidationConfig(n_cells=3, samples=30000, calib_samples=20000, trim_level_s=30e-6, surrogate_samples=20000)
    r = validate(Path(tiny_run["run_dir"]), chips=1, quick=True, workers=1, seed=0, config=cfg, progress=False)
    assert r["chips"] == 1
    assert r["gap"]["tv_distance"] < 3 * r["gap"]["tv_floor_n_eff"] + 0.03
    assert r["gap"]["energy_per_sample_j"] > 0
