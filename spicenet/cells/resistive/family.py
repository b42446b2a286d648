"""The resistive family's verbs (protocol: :mod:`spicenet.families`): ``calibrate`` (diode law, conductance levels,
mismatch, solver accuracy from SPICE), ``train`` (centered EqProp with and without mismatch injection) and
``validate`` (trained conductances back to ngspice .op on fresh Monte-Carlo chips)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def calibrate(config: dict[str, Any], *, process: str, quick: bool, output: Path, workers: int,
              seed: int) -> dict[str, Any]:
    """Fit the process diode (Is, n, Rs), the conductance levels and their spread, check the solver against ngspice;
    write the surrogate file ``output`` and PNGs beside it (see :mod:`spicenet.cells.resistive.calibrate`)."""
    from spicenet.cells.resistive.calibrate import calibrate_resistive

    return calibrate_resistive(config, process=process, quick=quick, output=output, workers=workers, seed=seed)


def train(config: dict[str, Any], *, surrogate: Path, quick: bool, run_dir: Path, device: str,
          seed: int) -> dict[str, Any]:
    """Centered EqProp on the calibrated network, mismatch-aware and without injection, both evaluated on the same
    held-out chips (see :mod:`spicenet.cells.resistive.train`); a config with an ``[ffebm]`` section (the
    ``training/ffebm*.toml`` of trainer ``ffebm``) trains feedforward-tied resistive blocks instead
    (:mod:`spicenet.cells.resistive.ffebm_train`)."""
    from spicenet.cells.resistive.train import train_resistive

    if "ffebm" in config:
        from spicenet.cells.resistive.ffebm_train import train_ffebm

        return train_ffebm(config, surrogate=surrogate, quick=quick, run_dir=run_dir, device=device, seed=seed)

    return train_resistive(config, surrogate=surrogate, quick=quick, run_dir=run_dir, device=device, seed=seed)


def validate(run_dir: Path, *, chips: int | None, quick: bool, workers: int, seed: int,
             settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export the trained conductances to netlists, run ngspice .op per test input on fresh chips, compare with the
    surrogate; energy per inference from source powers (see :mod:`spicenet.cells.resistive.validate`)."""
    from spicenet.cells.resistive.validate import validate_resistive
    from spicenet.families import no_settings

    no_settings("resistive", settings)

    return validate_resistive(run_dir, chips=chips, quick=quick, workers=workers, seed=seed)
