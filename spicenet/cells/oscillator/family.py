"""The oscillator family's verbs (protocol: spicenet/families.py). ``calibrate`` lives here; the AIS trainer and
the SPICE validation verbs are added beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any



def calibrate(config: dict[str, Any], *, process: str, quick: bool, output: Path, workers: int,
              seed: int) -> dict[str, Any]:
    """Simulate the pseudo-differential ring oscillator and coupled pairs in ngspice; fit f0, amplitude, the
    coupling function H (Fourier harmonics) and the R -> K map from the locked phase of detuned pairs, SHIL
    strength, phase diffusion, energy per cycle and the Monte-Carlo spread of f0 and coupling gain; write the
    surrogate file ``output`` and PNG plots beside it. Returns {"output", "fit", "plots"}
    (see :func:`spicenet.cells.oscillator.calibrate.calibrate_oscillator`)."""
    from spicenet.cells.oscillator.calibrate import calibrate_oscillator

    return calibrate_oscillator(config, process=process, quick=quick, output=output, workers=workers, seed=seed)
