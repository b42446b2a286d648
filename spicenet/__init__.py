"""spicenet: SPICE-level models of analog and probabilistic hardware for machine learning.

netlist templates -> ngspice simulation (Monte-Carlo mismatch, injected noise) -> calibrated behavioural
surrogates -> torch training with mismatch-aware noise injection -> export back to a netlist -> ngspice
validation, with the surrogate-vs-SPICE gap and the energy reported.

The public API, importable from here (each name is imported on first use, so ``import spicenet`` stays light):

* families, built from a calibration file (``spicenet calibrate FAMILY -o cal.h5``, or a shipped one from
  :func:`shipped_surrogate`): :class:`PBit` (``PBit.from_surrogate``), :class:`ResistiveNetwork`
  (``ResistiveNetwork.from_surrogate``), :class:`PhaseOscillatorNetwork`
  (``PhaseOscillatorNetwork.from_surrogate``); each has ``sample_chip(seed, scale)`` drawing a fabricated chip
  from the calibrated mismatch;
* the engine: :func:`render` (template + parameters + process -> deck), :func:`simulate` (one ngspice run),
  :func:`run_sweep` (grid x Monte-Carlo chips into an HDF5 store; not ``sweep``, which is the module
  ``spicenet.sweep``), :func:`open_runs` (read a store);
* files: :class:`SurrogateFile`, :class:`SweepConfig`.

Units are SI (V, A, S, ohm, s, Hz, J) unless a name ends in ``_lsb`` (conductance LSBs of the calibration).
"""

from __future__ import annotations

import os
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> (module, attribute): imported on first access (PEP 562)
_LAZY: dict[str, tuple[str, str]] = {
    "open_runs": ("spicenet.store", "open_runs"),
    "render": ("spicenet.spice.engine", "render"),
    "simulate": ("spicenet.spice.engine", "simulate"),
    "Engine": ("spicenet.spice.engine", "Engine"),
    "SweepConfig": ("spicenet.sweep", "SweepConfig"),
    "SurrogateFile": ("spicenet.surrogate", "SurrogateFile"),
    "PBit": ("spicenet.cells.rng.pbit", "PBit"),
    "ResistiveNetwork": ("spicenet.cells.resistive.network", "ResistiveNetwork"),
    "PhaseOscillatorNetwork": ("spicenet.cells.oscillator.phase", "PhaseOscillatorNetwork"),
}

__all__ = ["__version__", "shipped_surrogate", "run_sweep", *_LAZY]

if TYPE_CHECKING:  # static checkers and IDEs see the real objects
    from spicenet.cells.oscillator.phase import PhaseOscillatorNetwork
    from spicenet.cells.resistive.network import ResistiveNetwork
    from spicenet.cells.rng.pbit import PBit
    from spicenet.spice.engine import Engine, render, simulate
    from spicenet.store import open_runs
    from spicenet.surrogate import SurrogateFile
    from spicenet.sweep import SweepConfig, SweepSummary


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(import_module(module), attr)
        globals()[name] = value  # later accesses skip __getattr__
        return value
    raise AttributeError(f"module 'spicenet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


SHIPPED_FAMILIES = ("rng", "oscillator", "resistive")


def shipped_surrogate(family: str) -> Path:
    """Path of the small calibration shipped with the package for ``family`` ("rng", "oscillator" or
    "resistive"): the output of ``spicenet calibrate FAMILY --quick --seed 0`` on the generic process (how each
    was made: ``spicenet/data/surrogates/PROVENANCE.md``). For examples and tests; calibrate your own for work."""
    if family not in SHIPPED_FAMILIES:
        raise ValueError(f"family: expected one of {', '.join(SHIPPED_FAMILIES)}, got {family!r}")
    path = Path(__file__).resolve().parent / "data" / "surrogates" / f"{family}_quick_generic.h5"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the shipped {family} calibration is missing from this install")
    return path


def run_sweep(config: "SweepConfig | dict[str, Any] | str | os.PathLike", output: str | os.PathLike, *,
          workers: int = 1, resume: bool = False, scheduler: str | None = None, mode: str = "shared",
          progress: bool = False) -> "SweepSummary":
    """Run a grid x Monte-Carlo sweep into the HDF5 store ``output`` (what ``spicenet sweep`` does).

    ``config`` is a :class:`SweepConfig`, a dict with the TOML layout (``[sweep]``, ``[grid]``, ``[montecarlo]``,
    ...) or the path of a TOML file. ``workers`` ngspice worker processes (or a Dask ``scheduler`` address);
    ``resume`` skips the runs the store already holds. Read the result with :func:`open_runs`."""
    from spicenet.sweep import SweepConfig
    from spicenet.sweep import run_sweep as _run

    if isinstance(config, SweepConfig):
        cfg = config
    elif isinstance(config, dict):
        cfg = SweepConfig.from_dict(config)
    else:
        cfg = SweepConfig.from_toml(Path(config))
    return _run(cfg, Path(output), workers=workers, resume=resume, scheduler=scheduler, mode=mode, progress=progress)
