"""Finding and reading MNIST / Fashion-MNIST: IDX files, the shared npz archives, the embedded sample, download.

Every reader returns raw uint8 images ``(N, 28, 28)`` (0..255) and uint8 labels ``(N,)``; splitting, resizing and
encoding are done by :func:`spicenet.data.load_dataset`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spicenet.errors import DataError

DATASETS = ("mnist", "fashion")
_ALIASES = {
    "mnist": "mnist",
    "fashion": "fashion",
    "fashion_mnist": "fashion",
    "fashion-mnist": "fashion",
    "fashionmnist": "fashion",
    "fmnist": "fashion",
}
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# Sub-folders of a data directory searched for IDX files (torchvision's layout included).
_IDX_SUBDIRS = {
    "mnist": ("mnist", "MNIST", "MNIST/raw", "mnist/raw"),
    "fashion": ("fashion", "fashion_mnist", "fashion-mnist", "FashionMNIST", "FashionMNIST/raw", "fashion-mnist/raw"),
}
_NPZ_PATTERNS = {
    "mnist": ("mnist.npz", "mnist_*.npz", "mnist-*.npz"),
    "fashion": ("fashion_mnist*.npz", "fashion-mnist*.npz", "fashion*.npz"),
}
# Official mirrors and the md5 of each gz file (the values torchvision checks).
DOWNLOAD_URLS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    "fashion": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
DOWNLOAD_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
SAMPLE_DIR = Path(__file__).resolve().parent / "samples"
HOW_TO_PROVIDE = (
    "provide it with path=... / --data DIR (IDX files, gz or not, or an npz with 'images'+'labels'), "
    "set SPICENET_DATA=DIR, put the npz files in ../shared/data, or allow download (source='download')"
)


@dataclass(frozen=True)
class RawData:
    """uint8 images (N, 28, 28) and labels; ``split`` tells whether train/test come pre-split (IDX, sample)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    origin: str


def canonical_name(name: str) -> str:
    """Map a dataset name or alias ('fashion_mnist', 'fmnist', ...) to 'mnist' or 'fashion'."""
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise ValueError(f"name: expected one of {sorted(_ALIASES)}, got {name!r}")
    return _ALIASES[key]


def repo_root() -> Path:
    """The folder holding the ``spicenet`` package (the repository root in a checkout)."""
    return Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    """``$SPICENET_CACHE`` or ``~/.cache/spicenet``."""
    env = os.environ.get("SPICENET_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "spicenet"


def search_dirs(path: str | os.PathLike | None = None) -> list[Path]:
    """Directories searched for data, in order: ``path``, ``$SPICENET_DATA``, ``<repo>/../shared/data``,
    ``<cwd>/../shared/data``, ``<cwd>/shared/data``, and the download cache ``<cache>/datasets``."""
    out: list[Path] = []
    if path is not None:
        out.append(Path(path).expanduser())
    env = os.environ.get("SPICENET_DATA")
    if env:
        out.extend(Path(p).expanduser() for p in env.split(os.pathsep) if p)
    out += [repo_root().parent / "shared" / "data", Path.cwd().parent / "shared" / "data", Path.cwd() / "shared" / "data"]
    out.append(cache_root() / "datasets")
    seen: set[Path] = set()
    uniq = []
    for p in out:
        r = p.resolve() if p.exists() else p
        if r not in seen:
            seen.add(r)
            uniq.append(p)
    return uniq


# ----------------------------------------------------------------------------------------------------- IDX
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed): magic 0x0000TTDD, big-endian dims, then the data."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {p}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{p}: not an IDX file (bad magic number)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    code, ndim = raw[2], raw[3]
    if code not in dtypes:
        raise DataError(f"{p}: unknown IDX type code 0x{code:02x}")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=dtypes[code], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{p}: IDX header says {dims} ({int(np.prod(dims))} values) but file holds {data.size}")
    return data.reshape(dims).astype(data.dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzip when the name ends in .gz); used by tests and caches."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "wb") as fh:
        fh.write(header + a.tobytes())


def _find_idx_file(d: Path, stem: str) -> Path | None:
    for cand in (d / stem, d / f"{stem}.gz", d / stem.replace("-idx", ".idx"), d / f"{stem.replace('-idx', '.idx')}.gz"):
        if cand.is_file():
            return cand
    return None


def idx_dir_has(d: Path) -> bool:
    """True when ``d`` holds the four IDX files (gz or not)."""
    return all(_find_idx_file(d, stem) is not None for stem in IDX_FILES.values())


def load_idx_dir(d: str | os.PathLike) -> RawData:
    """Read the four standard IDX files (official train/test split) from directory ``d``."""
    d = Path(d)
    files = {k: _find_idx_file(d, stem) for k, stem in IDX_FILES.items()}
    missing = [IDX_FILES[k] for k, v in files.items() if v is None]
    if missing:
        raise DataError(f"IDX files missing in {d}: {', '.join(missing)} (gz or not)")
    arrays = {k: read_idx(v) for k, v in files.items()}  # type: ignore[arg-type]
    for part in ("train", "test"):
        xi, yi = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if xi.ndim != 3 or xi.shape[1:] != (28, 28) or yi.shape != (xi.shape[0],):
            raise DataError(f"{d}: {part} IDX shapes {xi.shape} / {yi.shape} are not (N, 28, 28) / (N,)")
    return RawData(
        arrays["train_images"].astype(np.uint8),
        arrays["train_labels"].astype(np.uint8),
        arrays["test_images"].astype(np.uint8),
        arrays["test_labels"].astype(np.uint8),
        origin=f"idx:{d}",
    )


# ----------------------------------------------------------------------------------------------------- npz
def load_npz(path: str | os.PathLike) -> RawData:
    """Read an npz with ``images`` + ``labels`` (pooled, as in ../shared/data) or Keras-style ``x_train``,
    ``y_train``, ``x_test``, ``y_test`` (pre-split)."""
    p = Path(path)
    try:
        with np.load(p) as z:
            keys = set(z.files)
            if {"images", "labels"} <= keys:
                x, y = z["images"], z["labels"]
                out = RawData(_as_images(x, p), np.asarray(y).astype(np.uint8), None, None, origin=f"npz:{p}")
            elif {"x_train", "y_train", "x_test", "y_test"} <= keys:
                out = RawData(
                    _as_images(z["x_train"], p),
                    np.asarray(z["y_train"]).astype(np.uint8),
                    _as_images(z["x_test"], p),
                    np.asarray(z["y_test"]).astype(np.uint8),
                    origin=f"npz:{p}",
                )
            else:
                raise DataError(f"{p}: npz holds {sorted(keys)}; expected images+labels or x_train/y_train/x_test/y_test")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read npz {p}: {exc}") from exc
    if out.x_train.shape[0] != out.y_train.shape[0]:
        raise DataError(f"{p}: {out.x_train.shape[0]} images but {out.y_train.shape[0]} labels")
    return out


def _as_images(x: np.ndarray, p: Path) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 2 and x.shape[1] == 784:
        x = x.reshape(-1, 28, 28)
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise DataError(f"{p}: images have shape {x.shape}, expected (N, 28, 28)")
    if x.dtype != np.uint8:
        scale = 255.0 if float(np.max(x)) <= 1.0 + 1e-6 else 1.0
        x = np.clip(np.rint(x.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    return x


def find_npz(name: str, dirs: list[Path]) -> Path | None:
    """First npz in ``dirs`` whose name matches the set (``mnist_*.npz`` never matches a fashion file)."""
    name = canonical_name(name)
    for d in dirs:
        if d.is_file() and d.suffix == ".npz":
            return d
        if not d.is_dir():
            continue
        for pat in _NPZ_PATTERNS[name]:
            hits = sorted(h for h in d.glob(pat) if name == "fashion" or "fashion" not in h.name.lower())
            if hits:
                return hits[0]
    return None


def find_idx_dir(name: str, dirs: list[Path], explicit: Path | None = None) -> Path | None:
    """First directory holding the set's IDX files: ``<dir>/<alias>`` (e.g. ``MNIST/raw``); the directory itself
    only when it was given explicitly (MNIST and Fashion share file names)."""
    name = canonical_name(name)
    if explicit is not None and explicit.is_dir() and idx_dir_has(explicit):
        return explicit
    for d in dirs:
        for sub in _IDX_SUBDIRS[name]:
            if (d / sub).is_dir() and idx_dir_has(d / sub):
                return d / sub
    return None


# -------------------------------------------------------------------------------------------------- sample
def sample_path(name: str) -> Path:
    """Path of the embedded sample npz of a set (shipped inside the package)."""
    return SAMPLE_DIR / f"{canonical_name(name)}_sample.npz"


def load_sample(name: str) -> RawData:
    """The embedded class-balanced sample (about 300 train + 200 test images) of ``name``."""
    p = sample_path(name)
    if not p.is_file():
        raise DataError(f"embedded sample {p} is missing: reinstall spicenet or rebuild it with spicenet.data.build_samples()")
    raw = load_npz(p)
    return RawData(raw.x_train, raw.y_train, raw.x_test, raw.y_test, origin=f"sample:{p.name}")


# ------------------------------------------------------------------------------------------------ download
def download(name: str, cache_dir: str | os.PathLike | None = None, timeout_s: float = 60.0) -> Path:
    """Download the four official gz IDX files into ``<cache>/datasets/<name>`` (md5-checked, atomic); returns the
    folder. Files already present and valid are not fetched again."""
    name = canonical_name(name)
    target = Path(cache_dir) if cache_dir is not None else cache_root() / "datasets" / name
    target.mkdir(parents=True, exist_ok=True)
    for fname, md5 in DOWNLOAD_MD5[name].items():
        dest = target / fname
        if dest.is_file() and _md5(dest) == md5:
            continue
        errors = []
        for base in DOWNLOAD_URLS[name]:
            url = base + fname
            from spicenet.progress import note

            note(f"spicenet.data: downloading {url}")
            try:
                with urllib.request.urlopen(url, timeout=timeout_s) as resp, tempfile.NamedTemporaryFile(
                    dir=target, delete=False, suffix=".part"
                ) as tmp:
                    shutil.copyfileobj(resp, tmp)
                    tmp_path = Path(tmp.name)
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                errors.append(f"{url}: {exc}")
                continue
            if _md5(tmp_path) != md5:
                tmp_path.unlink(missing_ok=True)
                errors.append(f"{url}: md5 mismatch")
                continue
            os.replace(tmp_path, dest)
            break
        else:
            raise DataError(f"download of {name} file {fname} failed ({'; '.join(errors)}); {HOW_TO_PROVIDE}")
    return target


def _md5(p: Path) -> str:
    h = hashlib.md5()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
