"""Image transforms shared by all trainers: area resize, binarisation, encodings.

All functions take images as a numpy array of shape ``(N, H, W)`` (or ``(H, W)``) with pixel values on the
0..255 scale (uint8 or float) unless stated otherwise.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

ENCODINGS = ("float", "binary", "spin", "uint8")
"""Supported encodings: ``float`` = grey level in [0, 1]; ``binary`` = {0, 1} (threshold); ``spin`` = {-1, +1}
(threshold); ``uint8`` = raw 0..255 (after resizing, rounded)."""

BINARY_THRESHOLD = 127
"""A pixel is 'on' when its 0..255 grey value is strictly greater than this (the shared data's convention)."""


@lru_cache(maxsize=32)
def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Overlap matrix A (n_out x n_in): A[i, j] = |[j, j+1) ∩ [i s, (i+1) s)| / s, with s = n_in / n_out.

    Each output pixel is the mean of the input over its footprint, weighting partially covered input pixels by the
    covered fraction (exact area averaging; rows sum to 1).
    """
    s = n_in / n_out
    a = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        lo, hi = i * s, (i + 1) * s
        for j in range(int(np.floor(lo)), min(int(np.ceil(hi)), n_in)):
            overlap = min(hi, j + 1) - max(lo, j)
            if overlap > 0:
                a[i, j] = overlap / s
    a.setflags(write=False)
    return a


def resize_area(images: np.ndarray, size: int) -> np.ndarray:
    """Resize square images to ``size`` x ``size`` by exact area averaging; returns float64 on the input's scale.

    out[n, i, k] = sum_{j, l} A[i, j] x[n, j, l] A[k, l] with A the footprint-overlap matrix (see ``_area_matrix``),
    so the image mean is preserved exactly and 28 -> 14 is the 2x2 block mean. Upsampling (size > H) replicates
    pixels by area as well. ``size == H`` returns a float copy.
    """
    x = np.asarray(images)
    if x.ndim not in (2, 3) or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"images: expected shape (N, H, H) or (H, H), got {x.shape}")
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size: expected a positive integer, got {size!r}")
    n_in = x.shape[-1]
    xf = x.astype(np.float64)
    if size == n_in:
        return xf.copy()
    a = _area_matrix(n_in, int(size))
    return np.einsum("ij,...jl,kl->...ik", a, xf, a, optimize=True)


def binarize(images: np.ndarray, threshold: float = BINARY_THRESHOLD) -> np.ndarray:
    """Return uint8 {0, 1}: 1 where the 0..255 grey value is strictly greater than ``threshold``."""
    x = np.asarray(images)
    if not 0 <= threshold <= 255:
        raise ValueError(f"threshold: expected a value in [0, 255], got {threshold}")
    return (x > threshold).astype(np.uint8)


def encode(images: np.ndarray, encoding: str = "float", threshold: float = BINARY_THRESHOLD) -> np.ndarray:
    """Encode 0..255 images: ``float`` -> x/255 (float32), ``binary`` -> {0,1}, ``spin`` -> {-1,+1} (float32),
    ``uint8`` -> rounded 0..255 uint8. The binary encodings use ``x > threshold``."""
    x = np.asarray(images)
    if encoding == "float":
        return (x.astype(np.float32) / np.float32(255.0)).astype(np.float32)
    if encoding == "binary":
        return binarize(x, threshold).astype(np.float32)
    if encoding == "spin":
        return (2.0 * binarize(x, threshold).astype(np.float32) - 1.0).astype(np.float32)
    if encoding == "uint8":
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)
    raise ValueError(f"encoding: expected one of {ENCODINGS}, got {encoding!r}")


def to_unit_interval(images: np.ndarray, encoding: str) -> np.ndarray:
    """Map encoded images back to grey levels in [0, 1] (float32): the inverse view used by metrics and plots."""
    x = np.asarray(images, dtype=np.float32)
    if encoding in ("float", "binary"):
        return x
    if encoding == "spin":
        return (x + 1.0) / 2.0
    if encoding == "uint8":
        return x / 255.0
    raise ValueError(f"encoding: expected one of {ENCODINGS}, got {encoding!r}")
