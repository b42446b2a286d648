"""Shared training machinery: mismatch-aware chip sampling, quantisation (STE), run directories, a resumable loop."""

from spicenet.train.device import resolve_device
from spicenet.train.loop import StepContext, epoch_permutation, fit
from spicenet.train.mismatch import (
    PER_CHOICES,
    Chip,
    ChipSampler,
    MismatchModel,
    ParamDist,
    evaluate_over_chips,
)
from spicenet.train.plots import plot_curves, sample_grid
from spicenet.train.quant import quantize_ste, quantize_uniform, sign_ste
from spicenet.train.run import RunDir, WallClock, check_training_output, restore_rng_state, rng_state

__all__ = [
    "PER_CHOICES", "Chip", "ChipSampler", "MismatchModel", "ParamDist", "RunDir", "StepContext", "WallClock",
    "check_training_output",
    "epoch_permutation", "evaluate_over_chips", "fit", "plot_curves", "quantize_ste", "quantize_uniform",
    "resolve_device", "restore_rng_state", "rng_state", "sample_grid", "sign_ste",
]
