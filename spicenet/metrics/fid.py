"""Fréchet distance and kernel inception distance (KID) on feature vectors.

FID between Gaussians N(mu1, S1), N(mu2, S2) fitted to two feature sets:

    FID = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2})

(tr (S1 S2)^{1/2} = tr (S1^{1/2} S2 S1^{1/2})^{1/2}: same eigenvalues; the symmetric form is computed with eigh,
which is stable where scipy.linalg.sqrtm of the non-symmetric product can return complex noise).

KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3,
averaged over ``n_subsets`` random subsets of size ``subset_size``.
"""

from __future__ import annotations

import numpy as np


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d) of features (N, d), float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features: expected shape (N >= 2, d), got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, s1) and N(mu2, s2) (see module docstring)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(s1, np.float64)), np.atleast_2d(np.asarray(s2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mu/sigma: inconsistent shapes {mu1.shape}, {mu2.shape}, {s1.shape}, {s2.shape}")
    r1 = _sqrt_psd(s1)
    w = np.linalg.eigvalsh(r1 @ s2 @ r1)
    tr_covmean = float(np.sum(np.sqrt(np.clip(w, 0, None))))
    d = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(d, 0.0)


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """FID between two feature sets (N1, d), (N2, d)."""
    return frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2))


def kid_from_features(f1: np.ndarray, f2: np.ndarray, n_subsets: int = 20, subset_size: int = 200,
                      seed: int = 0) -> tuple[float, float]:
    """KID: mean and std over subsets of the unbiased MMD^2 with k(x, y) = (x.y/d + 1)^3.

    MMD^2_u = [sum_{i!=j} k(x_i,x_j)]/(m(m-1)) + [sum_{i!=j} k(y_i,y_j)]/(m(m-1)) - 2 mean_{i,j} k(x_i,y_j)."""
    x, y = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"features: expected (N1, d) and (N2, d), got {x.shape} and {y.shape}")
    m = min(subset_size, x.shape[0], y.shape[0])
    if m < 2:
        raise ValueError(f"subset_size: need at least 2 samples per set, got {m}")
    d = x.shape[1]
    gen = np.random.default_rng(seed)
    vals = []
    for _ in range(n_subsets):
        a = x[gen.choice(x.shape[0], m, replace=False)]
        b = y[gen.choice(y.shape[0], m, replace=False)]
        kxx = (a @ a.T / d + 1) ** 3
        kyy = (b @ b.T / d + 1) ** 3
        kxy = (a @ b.T / d + 1) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
        vals.append(mmd)
    return float(np.mean(vals)), float(np.std(vals))
