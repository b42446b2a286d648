"""Dataset loaders: IDX (written here), npz, embedded sample, missing-data error, splits, resize, encodings."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from spicenet.data import (
    balanced_subset,
    binarize,
    encode,
    load_dataset,
    read_idx,
    resize_area,
    stratified_split,
)
from spicenet.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _fake_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def _write_idx_by_hand(path: Path, arr: np.ndarray, gz: bool) -> None:
    # Independent of spicenet.data.write_idx: the IDX layout spelled out from the MNIST page.
    header = b"\x00\x00\x08" + bytes([arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_directory_round_trip(tmp_path: Path, gz: bool) -> None:
    xtr, ytr = _fake_set(40, 1)
    xte, yte = _fake_set(20, 2)
    d = tmp_path / "MNIST" / "raw"
    d.mkdir(parents=True)
    for stem, a in [("train-images-idx3-ubyte", xtr), ("train-labels-idx1-ubyte", ytr),
                    ("t10k-images-idx3-ubyte", xte), ("t10k-labels-idx1-ubyte", yte)]:
        _write_idx_by_hand(d / stem, a, gz)
    # found through the torchvision layout under a search dir, official split kept, uint8 untouched
    ds = load_dataset("mnist", "idx", tmp_path, encoding="uint8")
    np.testing.assert_array_equal(ds.x_train, xtr)
    np.testing.assert_array_equal(ds.y_test, yte)
    assert ds.origin.startswith("idx:")
    # explicit directory holding the files directly
    ds2 = load_dataset("mnist", "idx", d, encoding="float")
    np.testing.assert_allclose(ds2.x_test, xte / 255.0, atol=1e-7)
    # fashion must not pick up the MNIST folder
    with pytest.raises(DataError, match="no IDX files found"):
        load_dataset("fashion", "idx", tmp_path)


def test_read_idx_rejects_truncated(tmp_path: Path) -> None:
    p = tmp_path / "bad"
    p.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">III", 5, 28, 28) + b"\x00" * 100)
    with pytest.raises(DataError, match="IDX header"):
        read_idx(p)


def test_npz_pooled_split_deterministic_and_stratified(tmp_path: Path) -> None:
    x, y = _fake_set(700, 3)
    order = np.argsort(y, kind="stable")  # grouped by class, like the shared files
    np.savez_compressed(tmp_path / "mnist_700.npz", images=x[order], labels=y[order])
    a = load_dataset("mnist", "npz", tmp_path, encoding="uint8", split_seed=5)
    b = load_dataset("mnist", "npz", tmp_path, encoding="uint8", split_seed=5)
    c = load_dataset("mnist", "npz", tmp_path, encoding="uint8", split_seed=6)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.x_train.shape[0] == 600 and a.x_test.shape[0] == 100  # 1/7 of 70 per class = 10
    assert np.all(np.bincount(a.y_test, minlength=10) == 10)
    # shuffled: labels of the first 20 train items are not one class
    assert len(set(a.y_train[:20].tolist())) > 3
    # train and test disjoint and together the whole set (compare as sets of image bytes)
    rows = {r.tobytes() for r in x}
    got_tr = {r.tobytes() for r in a.x_train}
    got_te = {r.tobytes() for r in a.x_test}
    assert not (got_tr & got_te) and (got_tr | got_te) == rows


def test_env_var_and_missing_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPICENET_CACHE", str(tmp_path / "cache"))
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("SPICENET_DATA", str(empty))
    with pytest.raises(DataError) as ei:
        load_dataset("fashion", "idx", empty)
    msg = str(ei.value)
    assert str(empty) in msg and "SPICENET_DATA" in msg and "\n" not in msg
    x, y = _fake_set(70, 4)
    np.savez(empty / "fashion_mnist_small.npz", images=x, labels=y)
    ds = load_dataset("fashion", "npz", encoding="uint8")  # found through SPICENET_DATA
    assert ds.x_train.shape[0] + ds.x_test.shape[0] == 70


def test_embedded_samples() -> None:
    for name in ("mnist", "fashion"):
        ds = load_dataset(name, encoding="uint8")
        assert ds.x_train.shape == (300, 28, 28) and ds.x_test.shape == (200, 28, 28)
        assert np.all(np.bincount(ds.y_train, minlength=10) == 30)
        assert np.all(np.bincount(ds.y_test, minlength=10) == 20)
        path = Path(__file__).resolve().parents[1] / "spicenet" / "data" / "samples" / f"{name}_sample.npz"
        assert path.stat().st_size < 400_000
        # real images: train and test disjoint
        assert not ({r.tobytes() for r in ds.x_train} & {r.tobytes() for r in ds.x_test})
    # Fashion-MNIST's published mean pixel is 0.286 (72.9/255); a 300-image sample lands near it
    f = load_dataset("fashion", encoding="float")
    assert abs(float(f.x_train.mean()) - 0.286) < 0.03


@pytest.mark.skipif(not (SHARED / "mnist_10k.npz").is_file(), reason="shared data not present")
def test_shared_npz_facts() -> None:
    m = load_dataset("mnist", "npz", SHARED, encoding="binary")
    ink = np.concatenate([m.x_train, m.x_test]).mean()
    assert abs(ink - 0.133) < 0.002  # README: MNIST ink fraction (>127) is 0.133


def test_resize_area_against_block_mean_and_mean_preservation() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(3, 28, 28))
    r14 = resize_area(x, 14)
    block = x.reshape(3, 14, 2, 14, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(r14, block, rtol=1e-12)
    r7 = resize_area(x, 7)
    np.testing.assert_allclose(r7, x.reshape(3, 7, 4, 7, 4).mean(axis=(2, 4)), rtol=1e-12)
    r8 = resize_area(x, 8)  # 3.5 px footprints: mean preserved exactly, constant stays constant
    np.testing.assert_allclose(r8.mean(axis=(1, 2)), x.mean(axis=(1, 2)), rtol=1e-12)
    np.testing.assert_allclose(resize_area(np.full((28, 28), 9.0), 8), 9.0)
    # pixel (0,0) of the 8 px image covers rows/cols [0, 3.5): weights 1,1,1,0.5 per axis / 3.5
    w = np.array([1, 1, 1, 0.5]) / 3.5
    np.testing.assert_allclose(r8[0, 0, 0], w @ x[0, :4, :4] @ w, rtol=1e-12)
    with pytest.raises(ValueError, match="size"):
        resize_area(x, 0)


def test_encodings_and_binarize_threshold() -> None:
    x = np.array([[0, 127, 128, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(binarize(x), [[0, 0, 1, 1]])
    np.testing.assert_array_equal(encode(x, "spin"), [[-1, -1, 1, 1]])
    np.testing.assert_array_equal(encode(x, "binary"), [[0, 0, 1, 1]])
    np.testing.assert_allclose(encode(x, "float"), x / 255.0, rtol=1e-6)
    with pytest.raises(ValueError, match="encoding"):
        encode(x, "bogus")
    ds = load_dataset("mnist", size=8, encoding="spin")
    assert ds.x_train.shape == (300, 8, 8) and set(np.unique(ds.x_train)) <= {-1.0, 1.0}


def test_split_helpers() -> None:
    y = np.repeat(np.arange(10), 50)
    tr, te = stratified_split(y, 0.2, seed=1)
    assert tr.size == 400 and te.size == 100 and np.all(np.bincount(y[te]) == 10)
    assert np.intersect1d(tr, te).size == 0
    np.testing.assert_array_equal(tr, stratified_split(y, 0.2, seed=1)[0])
    sub = balanced_subset(y, 25, seed=2)
    counts = np.bincount(y[sub], minlength=10)
    assert counts.sum() == 25 and counts.max() - counts.min() <= 1 and np.unique(sub).size == 25
