"""Image-quality metrics with the project's own feature nets (FID/KID/classifier accuracy), optional Inception FID."""

from spicenet.metrics.features import (
    FEATURES_VERSION,
    FeatureNet,
    FeatureNetInfo,
    classifier_accuracy,
    extract_features,
    feature_cache_path,
    load_feature_net,
    prepare_images,
    train_features,
)
from spicenet.metrics.fid import fid_from_features, frechet_distance, gaussian_stats, kid_from_features
from spicenet.metrics.images import fid_key, image_metrics
from spicenet.metrics.inception import inception_available, inception_fid

__all__ = [
    "FEATURES_VERSION", "FeatureNet", "FeatureNetInfo", "classifier_accuracy", "extract_features",
    "feature_cache_path", "fid_from_features", "fid_key", "frechet_distance", "gaussian_stats", "image_metrics",
    "inception_available", "inception_fid", "kid_from_features", "load_feature_net", "prepare_images",
    "train_features",
]
