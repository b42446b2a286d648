"""FID/KID math against closed forms; feature-net FID sanity on the embedded sample; energy accounting."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.ndimage import gaussian_filter

from spicenet.data import load_dataset
from spicenet.metrics import (
    classifier_accuracy,
    extract_features,
    feature_cache_path,
    fid_from_features,
    frechet_distance,
    image_metrics,
    kid_from_features,
    load_feature_net,
    train_features,
)
from spicenet.errors import DataError


def test_frechet_distance_closed_forms() -> None:
    rng = np.random.default_rng(0)
    # diagonal covariances: FID = |dmu|^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = rng.uniform(0.5, 2, 6), rng.uniform(0.5, 2, 6)
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    want = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(want, rel=1e-10)
    # general SPD: the textbook formula with scipy's sqrtm of the product
    q1, q2 = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = q1 @ q1.T + 0.1 * np.eye(6), q2 @ q2.T + 0.1 * np.eye(6)
    ref = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * np.real(scipy.linalg.sqrtm(s1 @ s2)))
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-9)


def test_kid_against_explicit_loops() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(7, 3)), rng.normal(0.5, 1, size=(7, 3))
    k = lambda u, v: (u @ v / 3 + 1) ** 3  # noqa: E731
    m = 7
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    # one subset of the full size = a permutation of all points: the statistic is permutation invariant
    kid, _ = kid_from_features(x, y, n_subsets=1, subset_size=7)
    assert kid == pytest.approx(xx + yy - 2 * xy, rel=1e-10)
    # unbiased: for two samples of the same distribution the mean over many subsets is ~0
    big = rng.normal(size=(4000, 4))
    mean, std = kid_from_features(big[:2000], big[2000:], n_subsets=50, subset_size=100, seed=3)
    assert abs(mean) < 3 * std / np.sqrt(50) + 1e-3


@pytest.fixture(scope="module")
def mnist_net():
    torch.set_num_threads(1)
    net, info = train_features("mnist", "sample", seed=0, cache=False, progress=False)
    assert info.train_seconds < 30
    return net, info, load_dataset("mnist", "sample")


def test_feature_net_deterministic_and_accurate(mnist_net, tmp_path) -> None:
    net, info, ds = mnist_net
    # 300 training images, 20 epochs: clearly better than chance (0.1) on the held-out 200
    assert info.test_accuracy > 0.7
    assert classifier_accuracy(ds.x_test, ds.y_test, net) == pytest.approx(info.test_accuracy)
    net2, _ = train_features("mnist", "sample", seed=0, epochs=1, out=tmp_path / "a.pt", progress=False)
    net3, _ = train_features("mnist", "sample", seed=0, epochs=1, out=tmp_path / "b.pt", progress=False)
    for p, q in zip(net2.state_dict().values(), net3.state_dict().values()):
        assert torch.equal(p, q)
    loaded, info3 = load_feature_net("mnist", tmp_path / "b.pt")
    for p, q in zip(net3.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(p, q)
    assert info3.epochs == 1


def test_fid_sanity_on_embedded_sample(mnist_net) -> None:
    net, _, ds = mnist_net
    rng = np.random.default_rng(0)
    tr, te = ds.x_train, ds.x_test
    ref = extract_features(tr, net)
    fid = lambda imgs: fid_from_features(ref, extract_features(imgs, net))  # noqa: E731
    report = image_metrics(te, tr, "mnist", net=net)
    real = report["fid_spicenet_mnist"]
    assert real == pytest.approx(fid(te))
    assert "fid_inception" not in report or report["fid_inception"] != real  # never mixed
    noise = fid(rng.uniform(0, 1, te.shape))
    blank = fid(np.zeros_like(te))
    shuf = fid(np.stack([im.ravel()[rng.permutation(784)].reshape(28, 28) for im in te]))
    assert real < 0.05 * min(noise, blank, shuf)
    blurred = [fid(gaussian_filter(te, (0, s, s))) for s in (0.0, 1.0, 2.0, 3.0)]
    assert blurred[0] == pytest.approx(real)
    assert all(a < b for a, b in zip(blurred, blurred[1:])), blurred
    # low-resolution inputs: 8 px real vs 8 px real stays small compared with 8 px noise
    d8 = load_dataset("mnist", size=8, encoding="float")
    ref8 = extract_features(d8.x_train, net)
    r8 = fid_from_features(ref8, extract_features(d8.x_test, net))
    n8 = fid_from_features(ref8, extract_features(rng.uniform(0, 1, d8.x_test.shape), net))
    assert r8 < 0.1 * n8
    # spin-encoded inputs are mapped to [0, 1]: same features as the {0,1} encoding
    b = load_dataset("mnist", encoding="binary")
    s = load_dataset("mnist", encoding="spin")
    np.testing.assert_allclose(extract_features(s.x_test, net), extract_features(b.x_test, net), rtol=1e-6)
    # KID: real-vs-real near 0, noise far away
    assert report["kid_spicenet_mnist"] < 0.05 * kid_from_features(ref, extract_features(rng.uniform(0, 1, te.shape), net))[0]


def test_missing_feature_net_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SPICENET_CACHE", str(tmp_path))
    assert feature_cache_path("fashion") == tmp_path / "features" / "fashion-v1.pt"
    with pytest.raises(DataError, match="train-features"):
        load_feature_net("fashion")


def test_fid_from_features_matches_gaussian_truth() -> None:
    # two large Gaussian samples with known parameters: the estimate converges to the closed form
    rng = np.random.default_rng(5)
    f1 = rng.normal(0, 1, size=(20000, 2))
    f2 = rng.normal(1, 2, size=(20000, 2))
    want = 2 * 1.0 + 2 * (1 - 2) ** 2  # |dmu|^2 = 2, sum (sqrt(1) - sqrt(4))^2 = 2
    assert fid_from_features(f1, f2) == pytest.approx(want, rel=0.03)


# ----------------------------------------------------------------------------------------------------- energy
def test_energy_formulas_hand_computed() -> None:
    from spicenet.cells.oscillator.family import oscillator_energy
    from spicenet.cells.resistive.family import resistive_energy
    from spicenet.cells.rng.family import dtm_energy
    from spicenet.energy import energy_from_surrogate, format_energy

    # DTM: 8 steps x 100 sweeps x 784 cells x 2 fJ = 1,254,400 fJ = 1.2544 nJ; + 800 sweeps x 10 fJ = 8 pJ
    r = dtm_energy(2e-15, 784, 100, 8, e_sweep_overhead_j=1e-14)
    assert r["terms"]["pbit_updates"] == pytest.approx(1.2544e-9)
    assert r["energy_j"] == pytest.approx(1.2544e-9 + 8e-12)
    assert r["inputs"]["bit_updates"] == 627_200
    # oscillators: 64 osc x 1000 cycles x 5 fJ + 2016 couplings x 1000 x 0.1 fJ = 320 pJ + 201.6 pJ
    o = oscillator_energy(5e-15, 64, 1000, n_couplings=64 * 63 // 2, e_coupling_cycle_j=1e-16)
    assert o["energy_j"] == pytest.approx(521.6e-12)
    # resistive: sources 1 V x 2 mA and 0.5 V x 1 mA for 10 ns = 25 pJ per solve, 2 solves = 50 pJ
    e = resistive_energy(1e-8, v=[1.0, 0.5], i=[2e-3, 1e-3], n_solves=2)
    assert e["energy_j"] == pytest.approx(50e-12)
    assert resistive_energy(1e-6, p_static_w=1e-3)["energy_j"] == pytest.approx(1e-9)
    assert energy_from_surrogate({"energy_per_bit_j": 2e-15}, "rng", n_cells=10, sweeps_per_step=3, steps=2)[
        "energy_j"] == pytest.approx(120e-15)
    assert format_energy(2.5e-12) == "2.5 pJ" and format_energy(1.2544e-9) == "1.254 nJ"
    with pytest.raises(ValueError, match="e_bit_j"):
        dtm_energy(-1.0, 1, 1, 1)
    with pytest.raises(ValueError, match="exactly one"):
        resistive_energy(1e-9)


def test_cli_registration_train_features(tmp_path) -> None:
    import argparse

    from spicenet.metrics.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["metrics", "train-features", "fashion", "--source", "sample", "--epochs", "1",
                              "-o", str(tmp_path / "f.pt")])
    out = args.handler(args)
    assert out["output"] == str(tmp_path / "f.pt") and (tmp_path / "f.pt").is_file()
    assert out["family"] == "fashion" and out["n_train"] == 300 and out["epochs"] == 1
    json_ok = __import__("json").dumps(out)
    assert "fashion" in json_ok
