"""Image-quality metrics with the project's own feature nets (FID/KID/classifier accuracy), optional Inception FID.

Names are imported lazily (PEP 562) so that ``spicenet`` verbs that do not need torch start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "spicenet.metrics.features": ("FEATURES_VERSION", "FeatureNet", "FeatureNetInfo", "classifier_accuracy",
                                  "extract_features", "feature_cache_path", "load_feature_net", "prepare_images",
                                  "train_features"),
    "spicenet.metrics.fid": ("fid_from_features", "frechet_distance", "gaussian_stats", "kid_from_features"),
    "spicenet.metrics.images": ("fid_key", "image_metrics"),
    "spicenet.metrics.inception": ("inception_available", "inception_fid"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'spicenet.metrics' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
