"""The ``[data]`` keys that every trainer's config schema shares, as :func:`spicenet.config.setting` fields (one
doc per key; each schema adds its own image-size key)."""

from __future__ import annotations

from typing import Any

from spicenet.config import setting

__all__ = ["dataset_setting", "source_setting", "n_train_setting", "n_test_setting"]


def dataset_setting(default: str) -> Any:
    """``[data] dataset``: mnist | fashion."""
    return setting(default, "mnist | fashion", section="data")


def source_setting() -> Any:
    """``[data] source``: where the images come from (``spicenet.data.load_dataset``)."""
    return setting("sample", "sample (embedded) | npz (../shared/data) | idx | auto", section="data")


def n_train_setting() -> Any:
    """``[data] n_train``: training images, 0 = all."""
    return setting(0, "training images (0 = all)", section="data")


def n_test_setting() -> Any:
    """``[data] n_test``: held-out images, 0 = all."""
    return setting(0, "held-out test images: a classifier's test set, a generator's FID reference (0 = all)",
                   section="data")
