"""The oscillator family's verbs (protocol: spicenet/families.py): ``calibrate``, ``train`` (AIS) and
``validate`` (back to SPICE). Heavy modules are imported when a verb runs, so the CLI starts fast."""

from __future__ import annotations

from pathlib import Path
from typing import Any



def calibrate(config: dict[str, Any], *, process: str, quick: bool, output: Path, workers: int,
              seed: int) -> dict[str, Any]:
    """Simulate the pseudo-differential ring oscillator and coupled pairs in ngspice; fit f0, amplitude, the
    coupling function H (Fourier harmonics) and the R -> K map from the locked phase of detuned pairs, SHIL
    strength, phase diffusion, energy per cycle, the node-loading tables (frequency pull vs the mid-supply load on
    each rail, coupling gain vs total load) and the Monte-Carlo spread of f0 and coupling gain; write the
    surrogate file ``output`` and PNG plots beside it. Returns {"output", "fit", "plots"}
    (see :func:`spicenet.cells.oscillator.calibrate.calibrate_oscillator`)."""
    from spicenet.cells.oscillator.calibrate import calibrate_oscillator

    return calibrate_oscillator(config, process=process, quick=quick, output=output, workers=workers, seed=seed)


def train(config: dict[str, Any], *, surrogate: Path, quick: bool, run_dir: Path, device: str,
          seed: int) -> dict[str, Any]:
    """AIS as a WGAN-GP on the calibrated phase model, mismatch-aware (see
    :func:`spicenet.cells.oscillator.training.train`). Returns {"run_dir", "metrics"}."""
    from spicenet.cells.oscillator.training import train as train_ais

    return train_ais(config, surrogate=surrogate, quick=quick, run_dir=run_dir, device=device, seed=seed)


def validate(run_dir: Path, *, chips: int | None, quick: bool, workers: int, seed: int,
             settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Generate images with the exported network in ngspice and with the surrogate on the same latents and chips,
    and compare them (pixel MAE, read-out error, FID of both sides; see
    :func:`spicenet.cells.oscillator.validation.validate`). ``settings`` replaces fields of
    ``AISValidationConfig``."""
    from spicenet.cells.oscillator.validation import validate as validate_ais

    return validate_ais(run_dir, chips=chips, quick=quick, workers=workers, seed=seed, settings=settings)
