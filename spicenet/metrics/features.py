"""The project's own feature network for FID/KID/accuracy (no Inception download needed).

A small CNN per dataset family (``mnist``, ``fashion``): conv(1->16, 3x3) - ReLU - maxpool - conv(16->32, 3x3) -
ReLU - maxpool - fc(1568->64) - ReLU [penultimate features, 64-d] - fc(64->10). Inputs of 8, 14 or 28 px are
brought to 28 px by bilinear interpolation; training augments each batch by area-downsampling to a random size in
{28, 14, 8} and back, so the features stay meaningful for low-resolution generators. Training is seeded, CPU and
deterministic (same seed + data -> bit-identical weights). Weights are cached at
``$SPICENET_CACHE/features/<family>-v1.pt`` (default ``~/.cache/spicenet``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spicenet.data import canonical_name, load_dataset
from spicenet.data.loaders import cache_root
from spicenet.errors import DataError

FEATURES_VERSION = 1
FEATURE_DIM = 64
FAMILIES = ("mnist", "fashion")


class FeatureNet(nn.Module):
    """Small CNN classifier; ``features(x)`` gives the 64-d penultimate activations used by FID/KID."""

    feature_scale: torch.Tensor  # buffer: RMS of the training set's penultimate features

    def __init__(self, n_classes: int = 10, feature_dim: int = FEATURE_DIM) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, feature_dim)
        self.fc2 = nn.Linear(feature_dim, n_classes)
        # features() divides by this scale, set after training so that real training images give features of
        # unit RMS per dimension: FID/KID are then in units of the real data's feature spread.
        self.register_buffer("feature_scale", torch.ones(()))

    def _penultimate(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return F.relu(self.fc1(h.flatten(1)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) grey levels in [0, 1] -> (N, 64) penultimate features / feature_scale."""
        return self._penultimate(x) / self.feature_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self._penultimate(x))


def prepare_images(images: np.ndarray | torch.Tensor, value_range: str = "auto", device: str | torch.device = "cpu") -> torch.Tensor:
    """Bring images to the net's input: float32 (N, 1, 28, 28) in [0, 1].

    images: (N, H, H), (N, 1, H, H) or flat (N, H*H) with H in {8, 14, 28}. value_range: ``unit`` ([0, 1] or
    {0, 1}), ``spin`` ({-1, +1} -> (x+1)/2), ``byte`` (0..255 -> x/255) or ``auto`` (spin when min < 0, byte when
    max > 1.5, else unit). Smaller images are upsampled bilinearly to 28 px.
    """
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    x = x.detach().to(device=device, dtype=torch.float32)
    if x.ndim == 2:
        side = int(round(x.shape[1] ** 0.5))
        if side * side != x.shape[1]:
            raise ValueError(f"images: flat width {x.shape[1]} is not a square number of pixels")
        x = x.reshape(-1, side, side)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] != x.shape[3] or x.shape[2] not in (8, 14, 28):
        raise ValueError(f"images: expected (N, H, H) / (N, 1, H, H) / (N, H*H) with H in 8/14/28, got {tuple(x.shape)}")
    if value_range == "auto":
        value_range = "spin" if float(x.min()) < 0 else ("byte" if float(x.max()) > 1.5 else "unit")
    if value_range == "spin":
        x = (x + 1.0) / 2.0
    elif value_range == "byte":
        x = x / 255.0
    elif value_range != "unit":
        raise ValueError(f"value_range: expected auto/unit/spin/byte, got {value_range!r}")
    if x.shape[-1] != 28:
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    return x


def _degrade(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Training augmentation: per batch, area-downsample to 14 or 8 px and upsample back (or keep 28 px)."""
    size = (28, 14, 8)[int(torch.randint(0, 3, (1,), generator=gen))]
    if size == 28:
        return x
    return F.interpolate(F.adaptive_avg_pool2d(x, size), size=(28, 28), mode="bilinear", align_corners=False)


@dataclass
class FeatureNetInfo:
    """Metadata stored with cached weights."""

    family: str
    version: int
    seed: int
    epochs: int
    data_origin: str
    n_train: int
    test_accuracy: float
    train_seconds: float


def train_features(
    dataset: str,
    source: str = "auto",
    path: str | None = None,
    *,
    epochs: int | None = None,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    n_train: int | None = 20000,
    out: str | Path | None = None,
    cache: bool = True,
    progress: bool = True,
) -> tuple[FeatureNet, FeatureNetInfo]:
    """Train the feature net of ``dataset``'s family (Adam, cross-entropy, seeded, CPU) and cache it.

    source/path select the data as in :func:`spicenet.data.load_dataset` (``auto`` = the full shared/IDX data,
    ``sample`` = the embedded 300 images, enough for tests). ``n_train`` caps the training set (class-balanced
    subset; None = all); ``epochs`` defaults to 20 below 2000 images, else 3. Weights go to ``out`` or, when ``cache``, to :func:`feature_cache_path`.
    """
    family = canonical_name(dataset)
    ds = load_dataset(family, source, path, encoding="float", split_seed=seed)
    if n_train is not None and n_train < ds.x_train.shape[0]:
        ds = load_dataset(family, source, path, encoding="float", split_seed=seed, n_train=n_train)
    if epochs is None:
        epochs = 20 if ds.x_train.shape[0] < 2000 else 3
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"epochs/batch_size/lr: expected positive values, got {epochs}/{batch_size}/{lr}")
    x = torch.as_tensor(ds.x_train[:, None], dtype=torch.float32)
    y = torch.as_tensor(ds.y_train.astype(np.int64))
    gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
        torch.manual_seed(int(seed))
        net = FeatureNet()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    n = x.shape[0]
    steps = epochs * ((n + batch_size - 1) // batch_size)
    t0 = time.perf_counter()
    bar = None
    if progress:
        from spicenet.progress import progress_bar

        bar = progress_bar(steps, f"feature net {family}")
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(net(_degrade(x[idx], gen)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
    if bar is not None:
        bar.close()
    net.eval()
    with torch.no_grad():
        f = torch.cat([net._penultimate(x[i : i + 500]) for i in range(0, n, 500)])
        net.feature_scale.fill_(float(f.pow(2).mean().sqrt().clamp_min(1e-12)))
    acc = classifier_accuracy(ds.x_test, ds.y_test, net, value_range="unit")
    info = FeatureNetInfo(family, FEATURES_VERSION, int(seed), int(epochs), ds.origin, int(n), float(acc),
                          time.perf_counter() - t0)
    target = Path(out) if out is not None else (feature_cache_path(family) if cache else None)
    if target is not None:
        save_feature_net(net, info, target)
    return net, info


def feature_cache_path(family: str, cache_dir: str | Path | None = None) -> Path:
    """``<cache>/features/<family>-v<version>.pt`` with cache = ``cache_dir`` or $SPICENET_CACHE or ~/.cache/spicenet."""
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    return root / "features" / f"{canonical_name(family)}-v{FEATURES_VERSION}.pt"


def save_feature_net(net: FeatureNet, info: FeatureNetInfo, path: str | Path) -> Path:
    """Atomically write weights + metadata."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    torch.save({"state_dict": net.state_dict(), "info": info.__dict__}, tmp)
    tmp.replace(p)
    return p


def load_feature_net(family: str, path: str | Path | None = None, *, train_if_missing: bool = False,
                     device: str | torch.device = "cpu") -> tuple[FeatureNet, FeatureNetInfo]:
    """Load cached weights of ``family`` (or from ``path``); train them (full data, ``source='auto'``) when
    missing and ``train_if_missing``, else raise DataError saying how to create them."""
    family = canonical_name(family)
    p = Path(path) if path is not None else feature_cache_path(family)
    if not p.is_file():
        if not train_if_missing:
            raise DataError(f"feature net for {family} not found at {p}; create it with `spicenet metrics train-features {family}`")
        net, info = train_features(family, out=p)
        return net.to(device), info
    blob = torch.load(p, map_location="cpu", weights_only=True)
    info = FeatureNetInfo(**blob["info"])
    if info.version != FEATURES_VERSION or info.family != family:
        raise DataError(f"{p}: feature net is {info.family} v{info.version}, expected {family} v{FEATURES_VERSION}")
    net = FeatureNet()
    net.load_state_dict(blob["state_dict"])
    return net.eval().to(device), info


@torch.no_grad()
def extract_features(images: np.ndarray | torch.Tensor, net: FeatureNet, value_range: str = "auto",
                     batch_size: int = 500) -> np.ndarray:
    """Penultimate features (N, 64) as float64 numpy."""
    dev = next(net.parameters()).device
    x = prepare_images(images, value_range, dev)
    net.eval()
    return torch.cat([net.features(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]).double().cpu().numpy()


@torch.no_grad()
def classifier_accuracy(images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, net: FeatureNet,
                        value_range: str = "auto") -> float:
    """Fraction of images the feature net classifies as their intended label (conditional generation quality)."""
    dev = next(net.parameters()).device
    x = prepare_images(images, value_range, dev)
    y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).long().to(dev)
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels: expected shape ({x.shape[0]},), got {tuple(y.shape)}")
    net.eval()
    pred = torch.cat([net(x[i : i + 500]).argmax(1) for i in range(0, x.shape[0], 500)])
    return float((pred == y).double().mean())
