"""Shared training machinery: mismatch-aware chip sampling, quantisation, run directories and checkpoints, plots.

``mismatch`` (chips drawn by seed from a surrogate's distributions, evaluation over chips), ``quant`` (the uniform
grid and nearest-level quantisers behind every family's weight/code quantiser), ``run`` (run directories: atomic
checkpoints, metrics, resume/extension guards, wall clock), ``plots`` and ``device``.
"""

from spicenet.train.device import resolve_device
from spicenet.train.mismatch import (
    PER_CHOICES,
    Chip,
    ChipSampler,
    MismatchModel,
    ParamDist,
    evaluate_over_chips,
)
from spicenet.train.plots import plot_curves, sample_grid
from spicenet.train.quant import quantize_grid, quantize_grid_ste, quantize_nearest
from spicenet.train.run import RunDir, WallClock, check_training_output, restore_rng_state, rng_state

__all__ = [
    "PER_CHOICES", "Chip", "ChipSampler", "MismatchModel", "ParamDist", "RunDir", "WallClock",
    "check_training_output", "evaluate_over_chips", "plot_curves", "quantize_grid", "quantize_grid_ste",
    "quantize_nearest", "resolve_device", "restore_rng_state", "rng_state", "sample_grid",
]
