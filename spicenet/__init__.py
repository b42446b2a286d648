"""spicenet: SPICE-level models of analog and probabilistic hardware for machine learning.

netlist templates -> ngspice simulation (Monte-Carlo mismatch, injected noise) -> calibrated behavioural
surrogates -> torch training with mismatch-aware noise injection -> export back to a netlist -> ngspice
validation, with the surrogate-vs-SPICE gap and the energy reported.

The public API, importable from here (each name is imported on first use, so ``import spicenet`` stays light):

* families, built from a calibration file (``spicenet calibrate FAMILY -o cal.h5``, or a shipped one from
  :func:`shipped_surrogate`): :class:`PBit` (``PBit.from_surrogate``), :class:`ResistiveNetwork`
  (``ResistiveNetwork.from_surrogate``), :class:`PhaseOscillatorNetwork`
  (``PhaseOscillatorNetwork.from_surrogate``); each has ``sample_chip(seed, scale)`` drawing a fabricated chip
  from the calibrated mismatch. These come from the registered families' ``exports``
  (:class:`spicenet.families.Family`): the entry points are read on the first access of such a name;
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
}
_CORE = ["__version__", "shipped_surrogate", "run_sweep", *_LAZY]
# __all__ is _CORE and the registered families' exports: computed on first access (__getattr__)

if TYPE_CHECKING:  # static checkers and IDEs see the real objects (the families' exports are Any to them)
    from spicenet.spice.engine import Engine, render, simulate
    from spicenet.store import open_runs
    from spicenet.surrogate import SurrogateFile
    from spicenet.sweep import SweepConfig, SweepSummary


def _family_exports() -> dict[str, str]:
    """Public name -> "module:attribute" of every registered family's ``exports`` (reads the entry points)."""
    from spicenet.families import registered

    return {name: target for family in registered().values() for name, target in family.exports.items()
            if name not in _CORE}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(import_module(module), attr)
    elif name == "__all__":
        value = [*_CORE, *_family_exports()]
    else:
        here = Path(__file__).parent
        if name.startswith("_") or (here / f"{name}.py").is_file() or (here / name).is_dir():
            # a submodule (``from spicenet import progress`` asks here first) or a private name
            raise AttributeError(f"module 'spicenet' has no attribute {name!r}")
        from spicenet.families import FamilyError

        try:
            exports = _family_exports()
        except FamilyError as exc:  # an AttributeError, so that hasattr() and from-imports behave
            raise AttributeError(f"module 'spicenet' has no attribute {name!r} ({exc})") from exc
        if name not in exports:
            raise AttributeError(f"module 'spicenet' has no attribute {name!r}")
        module, _, attr = exports[name].partition(":")
        value = getattr(import_module(module), attr)
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__() -> list[str]:
    try:
        names = __getattr__("__all__")
    except Exception:  # noqa: BLE001 - a broken family entry point: dir() still lists the core names
        names = _CORE
    return sorted(set(globals()) | set(names))


_SHIPPED = "_quick_generic.h5"  # data/surrogates/<family>_quick_generic.h5


def shipped_surrogate(family: str) -> Path:
    """Path of the small calibration shipped with the package for ``family`` (a registered family with a file
    ``spicenet/data/surrogates/<family>_quick_generic.h5``, e.g. "rng", "oscillator" or "resistive"): the output of
    ``spicenet calibrate FAMILY --quick --seed 0`` on the generic process (how each was made:
    ``spicenet/data/surrogates/PROVENANCE.md``). For examples and tests; calibrate your own for work."""
    from spicenet.families import registered

    folder = Path(__file__).resolve().parent / "data" / "surrogates"
    shipped = [name for name in registered() if (folder / f"{name}{_SHIPPED}").is_file()]
    if family not in shipped:
        raise ValueError(f"family: expected one of {', '.join(shipped) or 'none'}, got {family!r}")
    return folder / f"{family}{_SHIPPED}"


def run_sweep(config: "SweepConfig | dict[str, Any] | str | os.PathLike[str]", output: str | os.PathLike[str], *,
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
