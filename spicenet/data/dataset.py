"""``load_dataset``: one entry point for MNIST / Fashion-MNIST with deterministic splits, resizing and encodings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spicenet import seeds
from spicenet.data import loaders
from spicenet.data.loaders import HOW_TO_PROVIDE, RawData, canonical_name
from spicenet.data.transforms import ENCODINGS, encode, resize_area
from spicenet.errors import DataError

SOURCES = ("sample", "npz", "idx", "download", "auto")
SIZES = (28, 14, 8)
CLASS_NAMES = {
    "mnist": tuple(str(i) for i in range(10)),
    "fashion": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
}
# Test fraction used to split pooled npz sets: the official ratios (10k of 70k) by default.
DEFAULT_TEST_FRACTION = 1.0 / 7.0


@dataclass
class Dataset:
    """Images ``x_*`` of shape (N, size, size) in ``encoding`` and uint8 labels ``y_*`` (0..9)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    size: int
    encoding: str
    origin: str
    classes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n_pixels(self) -> int:
        return self.size * self.size

    def flat(self, part: str = "train") -> np.ndarray:
        """Images of ``part`` ('train'/'test') flattened to (N, size*size)."""
        x = {"train": self.x_train, "test": self.x_test}[part]
        return x.reshape(x.shape[0], -1)

    def tensors(self, part: str = "train", device: str = "cpu", flat: bool = False):
        """(images float32 tensor, labels int64 tensor) of ``part`` on ``device``."""
        import torch

        x = self.flat(part) if flat else {"train": self.x_train, "test": self.x_test}[part]
        y = {"train": self.y_train, "test": self.y_test}[part]
        return (torch.as_tensor(np.asarray(x, dtype=np.float32), device=device),
                torch.as_tensor(y.astype(np.int64), device=device))

    def summary(self) -> dict:
        """JSON-able description (for run directories and reports)."""
        return {
            "name": self.name, "origin": self.origin, "size": self.size, "encoding": self.encoding,
            "n_train": int(self.x_train.shape[0]), "n_test": int(self.x_test.shape[0]),
        }


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded class-stratified split of indices: each class contributes round(n_c * test_fraction) test items.

    Returns (train_idx, test_idx), each shuffled (so a class-grouped source is mixed)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: expected a value in (0, 1), got {test_fraction}")
    y = np.asarray(labels)
    gen = seeds.numpy_generator(seed, seeds.SPLIT)
    train, test = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[gen.permutation(idx.size)]
        k = int(round(idx.size * test_fraction))
        test.append(idx[:k])
        train.append(idx[k:])
    tr, te = np.concatenate(train), np.concatenate(test)
    return tr[gen.permutation(tr.size)], te[gen.permutation(te.size)]


def balanced_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Seeded, class-balanced choice of ``n`` indices (classes get floor(n/K) or one more), in shuffled order."""
    y = np.asarray(labels)
    if n < 1 or n > y.size:
        raise ValueError(f"n: expected 1..{y.size}, got {n}")
    gen = seeds.numpy_generator(seed, seeds.SUBSET)
    classes = np.unique(y)
    per = np.full(classes.size, n // classes.size)
    per[gen.permutation(classes.size)[: n % classes.size]] += 1
    picks = []
    for c, k in zip(classes, per):
        idx = np.flatnonzero(y == c)
        if k > idx.size:
            raise ValueError(f"n: class {c} has only {idx.size} items, {k} requested")
        picks.append(idx[gen.permutation(idx.size)[:k]])
    out = np.concatenate(picks)
    return out[gen.permutation(out.size)]


def _locate(name: str, source: str, path: str | os.PathLike | None, download: bool) -> RawData:
    explicit = Path(path).expanduser() if path is not None else None
    if source == "sample":
        return loaders.load_sample(name)
    dirs = loaders.search_dirs(explicit)
    looked = ", ".join(str(d) for d in dirs)
    if source in ("idx", "auto"):
        d = loaders.find_idx_dir(name, dirs, explicit)
        if d is not None:
            return loaders.load_idx_dir(d)
        if source == "idx":
            raise DataError(f"{name}: no IDX files found (looked in {looked} and their {name}/ sub-folders); {HOW_TO_PROVIDE}")
    if source in ("npz", "auto"):
        f = loaders.find_npz(name, dirs)
        if f is not None:
            return loaders.load_npz(f)
        if source == "npz":
            raise DataError(f"{name}: no npz found (looked in {looked}); {HOW_TO_PROVIDE}")
    if source == "download" or (source == "auto" and download):
        return loaders.load_idx_dir(loaders.download(name))
    raise DataError(f"{name}: not found (looked for IDX files and npz in {looked}; download not allowed); {HOW_TO_PROVIDE}")


def load_raw(name: str, source: str = "sample", path: str | os.PathLike | None = None, download: bool = False) -> RawData:
    """Raw uint8 data of a set from ``source`` (see :func:`load_dataset`), not split, resized or encoded."""
    name = canonical_name(name)
    if source not in SOURCES:
        raise ValueError(f"source: expected one of {SOURCES}, got {source!r}")
    return _locate(name, source, path, download)


def load_dataset(
    name: str,
    source: str = "sample",
    path: str | os.PathLike | None = None,
    *,
    size: int = 28,
    encoding: str = "float",
    split_seed: int = 0,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    n_train: int | None = None,
    n_test: int | None = None,
    download: bool = False,
) -> Dataset:
    """Load MNIST (``name='mnist'``) or Fashion-MNIST (``'fashion'``).

    source: ``sample`` (embedded ~300+200 images, the default), ``idx`` (the four standard IDX files, gz or not),
    ``npz`` (``images``+``labels`` archives as in ../shared/data, or Keras-style pre-split), ``download`` (official
    files, cached under ``$SPICENET_CACHE/datasets``), ``auto`` (idx, then npz, then the download cache; network only
    with ``download=True``). Directories searched: ``path``, ``$SPICENET_DATA``, ``../shared/data`` next to the repo
    and the CWD, the cache. Pre-split sources keep their split; pooled npz sets get a seeded class-stratified split
    with ``test_fraction``. ``n_train``/``n_test`` take seeded class-balanced subsets. Images are area-resized to
    ``size`` (28, 14 or 8 px) on the 0..255 scale, then encoded (``float`` [0,1], ``binary`` {0,1}, ``spin`` {-1,+1}
    with the threshold 127, or ``uint8``).
    """
    if size not in SIZES:
        raise ValueError(f"size: expected one of {SIZES}, got {size!r}")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding: expected one of {ENCODINGS}, got {encoding!r}")
    name = canonical_name(name)
    raw = load_raw(name, source, path, download)
    if raw.x_test is None:
        tr, te = stratified_split(raw.y_train, test_fraction, split_seed)
        xtr, ytr, xte, yte = raw.x_train[tr], raw.y_train[tr], raw.x_train[te], raw.y_train[te]
    else:
        xtr, ytr, xte, yte = raw.x_train, raw.y_train, raw.x_test, raw.y_test
    if n_train is not None:
        i = balanced_subset(ytr, n_train, split_seed)
        xtr, ytr = xtr[i], ytr[i]
    if n_test is not None:
        i = balanced_subset(yte, n_test, split_seed + 1)
        xte, yte = xte[i], yte[i]

    def prep(x: np.ndarray) -> np.ndarray:
        return encode(x if size == 28 else resize_area(x, size), encoding)

    return Dataset(name, prep(xtr), ytr.copy(), prep(xte), yte.copy(), size, encoding, raw.origin, CLASS_NAMES[name])


def build_samples(
    source_path: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    n_train: int = 300,
    n_test: int = 200,
    seed: int = 0,
) -> dict[str, str]:
    """Rebuild the embedded samples ``<name>_sample.npz`` (uint8, class-balanced, compressed) from the npz sets.

    Train and test images come from disjoint halves of a seeded stratified split of the pooled set."""
    out = Path(out_dir) if out_dir is not None else loaders.SAMPLE_DIR
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in loaders.DATASETS:
        raw = load_raw(name, "npz", source_path)
        tr, te = stratified_split(raw.y_train, 0.5, seed)
        itr = tr[balanced_subset(raw.y_train[tr], n_train, seed)]
        ite = te[balanced_subset(raw.y_train[te], n_test, seed + 1)]
        p = out / f"{name}_sample.npz"
        np.savez_compressed(
            p, x_train=raw.x_train[itr], y_train=raw.y_train[itr], x_test=raw.x_train[ite], y_test=raw.y_train[ite],
            origin=np.array(raw.origin),
        )
        written[name] = str(p)
    return written
