"""The rng family's verbs (protocol: spicenet/families.py). This module holds ``calibrate``; the trainer and
SPICE validation verbs live beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any



def calibrate(config: dict[str, Any], *, process: str, quick: bool, output: Path, workers: int,
              seed: int) -> dict[str, Any]:
    """Simulate Monte-Carlo chips of the continuous-time p-bit, fit P(1) = sigmoid((V - V0)/Vs), measure tau and
    energy per bit, write the surrogate file ``output`` and PNG plots beside it.
    Returns {"output": str, "fit": {...}, "plots": [paths]} (see :func:`calibrate_rng`)."""
    from spicenet.cells.rng.calibrate import calibrate_rng

    return calibrate_rng(config, process=process, quick=quick, output=output, workers=workers, seed=seed)


def train(config: dict[str, Any], *, surrogate: Path, quick: bool, run_dir: Path, device: str,
          seed: int) -> dict[str, Any]:
    """DTM on binarized images with chips drawn from the calibrated (V0, Vs) distribution (see
    :func:`spicenet.cells.rng.training.train`). Returns {"run_dir", "metrics"}."""
    from spicenet.cells.rng.training import train as train_dtm

    return train_dtm(config, surrogate=surrogate, quick=quick, run_dir=run_dir, device=device, seed=seed)


def validate(run_dir: Path, *, chips: int | None, quick: bool, workers: int, seed: int,
             settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export a small Boltzmann machine of the trained model to a p-bit netlist and compare SPICE samples with exact
    enumeration and the surrogate (see :func:`spicenet.cells.rng.validation.validate`). ``settings`` replaces
    fields of :class:`spicenet.cells.rng.validation.ValidationConfig` (its ``quick()`` defaults when ``quick``)."""
    from spicenet.cells.rng.validation import ValidationConfig, validate as validate_dtm
    from spicenet.families import with_settings

    config = with_settings(ValidationConfig.quick() if quick else ValidationConfig(), settings, "rng validation")
    return validate_dtm(run_dir, chips=chips, quick=quick, workers=workers, seed=seed, config=config)
