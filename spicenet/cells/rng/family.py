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
