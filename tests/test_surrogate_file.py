"""Surrogate HDF5 files (plain-h5py layout, round trip) and chip sampling from their mismatch distributions."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from spicenet.errors import DataError
from spicenet.surrogate import SurrogateFile, SurrogateParam, file_sha256
from spicenet.train import ChipSampler, MismatchModel, ParamDist, evaluate_over_chips


def _surrogate() -> SurrogateFile:
    rng = np.random.default_rng(0)
    return SurrogateFile(
        family="rng",
        process="generic",
        params={
            "offset": SurrogateParam(rng.normal(0.0, 0.01, size=(16, 4)), unit="V", description="comparator offset"),
            "gain": SurrogateParam(rng.lognormal(0.0, 0.1, size=16), unit="1", positive=True, std_global=0.02),
        },
        correlation=np.array([[1.0, 0.5], [0.5, 1.0]]),
        correlation_names=["offset", "gain"],
        energy={"energy_per_bit_j": 2.5e-15},
        extra={"sigmoid/v": np.linspace(-1, 1, 5), "sigmoid/p": np.linspace(0, 1, 5)},
        attrs={"temperature_c": 27.0},
        provenance={"runs_file": "runs.h5", "run_ids": ["r0", "r1"], "config": {"chips": 16}},
    )


def test_round_trip_and_plain_h5py_layout(tmp_path) -> None:
    sf = _surrogate()
    p = sf.save(tmp_path / "s.h5")
    with h5py.File(p, "r") as f:  # the contract: readable with plain h5py
        g = f["surrogate"]
        assert g.attrs["family"] == "rng" and g.attrs["process"] == "generic"
        assert {"created", "spicenet_version"} <= set(g.attrs)
        assert g.attrs["energy_per_bit_j"] == pytest.approx(2.5e-15)
        d = g["params/offset"]
        assert d.shape == (16, 4) and d.attrs["unit"] == "V"
        assert d.attrs["mean"] == pytest.approx(d[()].mean()) and d.attrs["std"] == pytest.approx(d[()].std(ddof=1))
        assert json.loads(g["correlation"].attrs["names"]) == ["offset", "gain"]
        np.testing.assert_allclose(g["extra/sigmoid/v"][()], np.linspace(-1, 1, 5))
        assert json.loads(f["provenance"].attrs["run_ids"]) == ["r0", "r1"]
        assert json.loads(f["provenance"].attrs["config"]) == {"chips": 16}
    back = SurrogateFile.load(p)
    assert back.family == "rng" and back.energy == sf.energy and back.attrs == {"temperature_c": 27.0}
    np.testing.assert_array_equal(back.params["offset"].values, sf.params["offset"].values)
    assert back.params["gain"].positive and back.params["gain"].std_global == 0.02
    np.testing.assert_array_equal(back.correlation, sf.correlation)
    assert set(back.extra) == {"sigmoid/v", "sigmoid/p"}
    assert back.provenance["run_ids"] == ["r0", "r1"] and back.provenance["config"] == {"chips": 16}
    assert len(file_sha256(p)) == 64


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="correlation"):
        SurrogateFile("rng", "generic", params={"a": SurrogateParam(np.ones(3))},
                      correlation=np.array([[1.0, 2.0], [2.0, 1.0]]), correlation_names=["a", "a"])
    with pytest.raises(ValueError, match="energy"):
        SurrogateFile("rng", "generic", energy={"per_bit": 1.0})
    with pytest.raises(ValueError, match="values"):
        SurrogateParam(np.array([1.0, np.nan]))
    with pytest.raises(DataError, match="calibrate"):
        SurrogateFile.load("/nonexistent/s.h5")


def test_chip_sampling_reproducible_and_device_independent(tmp_path) -> None:
    p = _surrogate().save(tmp_path / "s.h5")
    m = MismatchModel.from_surrogate(p)
    a = m.sample_chip(7, shape=(100,))
    b = m.sample_chip(7, shape=(100,))
    c = m.sample_chip(8, shape=(100,))
    assert torch.equal(a["offset"], b["offset"]) and torch.equal(a["gain"], b["gain"])
    assert not torch.equal(a["offset"], c["offset"])
    # the numbers of one parameter do not depend on which other parameters were requested (no correlation)
    m0 = MismatchModel({"x": ParamDist(0.0, 1.0), "y": ParamDist(0.0, 1.0)})
    assert torch.equal(m0.sample_chip(3, 10)["x"], m0.sample_chip(3, 10, params=["x"])["x"])
    # float64 request gives the same draws as float32 up to rounding
    d = m.sample_chip(7, shape=(100,), dtype=torch.float64)
    assert torch.allclose(d["offset"].float(), a["offset"])


def test_sampled_moments_match_the_distributions() -> None:
    m = MismatchModel(
        {"v": ParamDist(0.1, 0.02), "r": ParamDist(1e3, 100.0, positive=True), "g": ParamDist(2.0, 0.0, std_global=0.5)},
        correlation=np.array([[1.0, -0.6], [-0.6, 1.0]]), correlation_names=["v", "r"],
    )
    chip = m.sample_chip(1, shape=(200_000,), dtype=torch.float64)
    v, r = chip["v"].numpy(), chip["r"].numpy()
    n = v.size
    se = 4 / np.sqrt(n)
    assert abs(v.mean() - 0.1) < se * 0.02 and abs(v.std() / 0.02 - 1) < 0.02
    assert abs(r.mean() / 1e3 - 1) < se * 0.1 and abs(r.std() / 100.0 - 1) < 0.03  # log-normal moment match
    assert r.min() > 0
    # Gaussian copula: corr(v, log r) = -0.6 exactly in the latent space
    assert np.corrcoef(v, np.log(r))[0, 1] == pytest.approx(-0.6, abs=0.01)
    # die-to-die only: one value per chip, spread across chips = std_global
    g = np.array([m.sample_chip(s, shape=(5,), params=["g"])["g"].numpy() for s in range(2000)])
    assert np.all(g == g[:, :1])
    assert g[:, 0].std() == pytest.approx(0.5, rel=0.05)
    # scale=0 gives the nominal chip
    assert torch.all(m.sample_chip(5, 3, scale=0.0)["v"] == torch.tensor(0.1))
    assert torch.all(m.nominal_chip(3)["r"] == 1e3)


def test_chip_sampler_streams_and_eval_report() -> None:
    m = MismatchModel({"w": ParamDist(0.0, 1.0)})
    s = ChipSampler(m, shape=(4,), per="step", seed=11, n_eval=5)
    assert torch.equal(s.chip(step=3)["w"], ChipSampler(m, (4,), per="step", seed=11).chip(step=3)["w"])
    assert not torch.equal(s.chip(step=3)["w"], s.chip(step=4)["w"])
    assert torch.equal(s.chip(step=3, batch=0)["w"], s.chip(step=3, batch=1)["w"])  # per step: batches share
    sb = ChipSampler(m, (4,), per="batch", seed=11)
    assert not torch.equal(sb.chip(step=3, batch=0)["w"], sb.chip(step=3, batch=1)["w"])
    sf = ChipSampler(m, (4,), per="fixed", seed=11)
    assert torch.equal(sf.chip(step=0)["w"], sf.chip(step=99, epoch=7)["w"])
    train_seeds = {s.train_seed(step=i) for i in range(1000)}
    assert not (train_seeds & set(s.eval_seeds)) and len(set(s.eval_seeds)) == 5
    chips = s.eval_chips()
    assert [c.seed for c in chips] == s.eval_seeds
    rep = evaluate_over_chips(lambda c: float(c["w"].sum()), chips)
    vals = np.array([float(c["w"].sum()) for c in chips])
    assert rep["mean"] == pytest.approx(vals.mean()) and rep["worst"] == pytest.approx(vals.min())
    assert rep["p10"] == pytest.approx(np.sort(vals)[0] + 0.4 * (np.sort(vals)[1] - np.sort(vals)[0]))
    low = evaluate_over_chips(lambda c: float(c["w"].sum()), chips, higher_is_better=False)
    assert low["worst"] == pytest.approx(vals.max())
    with pytest.raises(ValueError, match="per"):
        ChipSampler(m, per="sometimes")
