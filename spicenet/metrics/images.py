"""One call for the image-quality report of a generator: own-feature FID/KID, accuracy, optional Inception FID."""

from __future__ import annotations

import numpy as np
import torch

from spicenet.data import canonical_name
from spicenet.metrics.features import (
    FeatureNet,
    classifier_accuracy,
    extract_features,
    load_feature_net,
    prepare_images,
)
from spicenet.metrics.fid import fid_from_features, kid_from_features
from spicenet.metrics.inception import inception_fid


def fid_key(family: str) -> str:
    """Report key of the project's FID: ``fid_spicenet_<family>`` (never the Inception number)."""
    return f"fid_spicenet_{canonical_name(family)}"


def image_metrics(
    generated: np.ndarray | torch.Tensor,
    reference: np.ndarray | torch.Tensor,
    family: str,
    *,
    labels: np.ndarray | torch.Tensor | None = None,
    net: FeatureNet | None = None,
    value_range: str = "auto",
    kid_subsets: int = 20,
    seed: int = 0,
    with_inception: bool = True,
) -> dict:
    """Compare generated images with real reference images of the same resolution and encoding.

    Returns ``fid_spicenet_<family>``, ``kid_spicenet_<family>`` (+ ``_std``), ``accuracy`` when ``labels`` (the
    intended classes of conditional samples) are given, ``fid_inception`` when local Inception weights exist
    (else absent), and ``n_generated`` / ``n_reference``. ``net`` defaults to the cached feature net of ``family``.
    """
    family = canonical_name(family)
    if net is None:
        net, _ = load_feature_net(family)
    fg = extract_features(generated, net, value_range)
    fr = extract_features(reference, net, value_range)
    kid, kid_std = kid_from_features(fr, fg, n_subsets=kid_subsets, seed=seed)
    out: dict = {
        fid_key(family): fid_from_features(fr, fg),
        f"kid_spicenet_{family}": kid,
        f"kid_spicenet_{family}_std": kid_std,
        "n_generated": int(fg.shape[0]),
        "n_reference": int(fr.shape[0]),
    }
    if labels is not None:
        out["accuracy"] = classifier_accuracy(generated, labels, net, value_range)
    if with_inception:
        v = inception_fid(prepare_images(reference, value_range), prepare_images(generated, value_range))
        if v is not None:
            out["fid_inception"] = v
    return out
