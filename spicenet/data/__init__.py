"""Datasets: MNIST / Fashion-MNIST from IDX files, the shared npz archives, an embedded sample or the official
download; deterministic splits, area resizing (28/14/8 px), binarisation and {0,1} / {-1,+1} encodings."""

from spicenet.data.dataset import (
    CLASS_NAMES,
    SIZES,
    SOURCES,
    Dataset,
    balanced_subset,
    build_samples,
    load_dataset,
    load_raw,
    stratified_split,
)
from spicenet.data.loaders import DATASETS, canonical_name, download, load_idx_dir, load_npz, read_idx, write_idx
from spicenet.data.transforms import ENCODINGS, binarize, encode, resize_area, to_unit_interval

__all__ = [
    "CLASS_NAMES", "DATASETS", "ENCODINGS", "SIZES", "SOURCES", "Dataset", "balanced_subset", "binarize",
    "build_samples", "canonical_name", "download", "encode", "load_dataset", "load_idx_dir", "load_npz", "load_raw",
    "read_idx", "resize_area", "stratified_split", "to_unit_interval", "write_idx",
]
