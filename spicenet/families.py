"""Cell families and the verbs they share: ``calibrate``, ``train``, ``validate``.

A family is one package under ``spicenet/cells/<family>/`` whose module ``family.py`` implements this protocol
(functions, looked up by name, so adding a fourth family touches no other family)::

    def calibrate(config: dict, *, process: str, quick: bool, output: Path, workers: int, seed: int) -> dict
        # simulate + fit + plots; writes the surrogate file `output` (spicenet.surrogate) and PNGs beside it;
        # returns {"output": str, "fit": {...family metrics...}, "plots": [paths]}
    def train(config: dict, *, surrogate: Path, quick: bool, run_dir: Path, device: str, seed: int) -> dict
        # returns {"run_dir": str, "metrics": {...}}
    def validate(run_dir: Path, *, chips: int, quick: bool, workers: int, seed: int,
                 settings: dict | None = None) -> dict
        # returns {"surrogate": {...}, "spice": {...}, "gap": {...}, "chips": int}; ``settings`` replaces fields
        # of the family's validation config (``with_settings``); a family without one rejects them (``no_settings``)

Default configs are ``calibration/<family>[_quick].toml`` and ``training/<trainer>[_quick].toml`` (shipped in the
package). A family that does not implement a verb yet is not offered that verb.
"""

from __future__ import annotations

import argparse
import importlib
import os
import tomllib
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

from spicenet.errors import ConfigError

FAMILIES: dict[str, str] = {"rng": "rng", "oscillator": "oscillator", "resistive": "resistive"}
TRAINERS: dict[str, str] = {"dtm": "rng", "ais": "oscillator", "eqprop": "resistive", "ffebm": "resistive"}
# The config key ``train --epochs N`` sets (the run's length: epochs, or iterations for dtm and ais) and whether
# the trainer can resume a run from its checkpoints (``train --resume``).
RUN_LENGTH: dict[str, tuple[str, str, bool]] = {"eqprop": ("train", "epochs", True), "ffebm": ("train", "epochs", True),
                                                "dtm": ("train", "iters", True), "ais": ("train", "iterations", False)}


def family_module(family: str) -> ModuleType | None:
    """The family's ``family`` module, or None when the family has none yet."""
    try:
        return importlib.import_module(f"spicenet.cells.{FAMILIES[family]}.family")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith(f"spicenet.cells.{FAMILIES[family]}"):
            return None
        raise


def _config_dir(package: str, fallback: str) -> Path:
    try:
        root = Path(str(resources.files(package)))
        if root.is_dir():
            return root
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[1] / fallback


def load_config(path: str | Path | None, kind: str, name: str, quick: bool) -> dict[str, Any]:
    """The TOML config at ``path``, or the shipped default ``<kind>/<name>[_quick].toml``."""
    if path is None:
        folder = _config_dir(f"spicenet.{kind}_configs", kind)
        path = folder / f"{name}{'_quick' if quick else ''}.toml"
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: {exc}") from None


def check_like(default: Any, value: Any, where: str) -> None:
    """ConfigError naming ``where`` unless ``value`` is of the kind of ``default``: true/false for a bool, an
    integer (not a bool) for an int, a number for a float, text for a str, a list for a list; any value when the
    default is None."""
    kinds = {bool: ((bool,), "true or false"), int: ((int,), "an integer"), float: ((int, float), "a number"),
             str: ((str,), "a string"), list: ((list,), "a list")}
    kind = kinds.get(type(default))
    if kind is not None and type(value) not in kind[0]:
        raise ConfigError(f"{where} must be {kind[1]}, got {value!r} ({type(value).__name__})")


def merge_sections(defaults: dict[str, dict[str, Any]], config: dict[str, Any], what: str) -> dict[str, dict[str, Any]]:
    """``defaults`` (section -> key -> default) overridden by the TOML ``config`` section by section; an unknown
    section or key, or a value of another kind than its default (:func:`check_like`), is a one-line ConfigError
    naming ``what`` and ``section.key``."""
    out = {k: dict(v) for k, v in defaults.items()}
    for section, values in config.items():
        if section not in out or not isinstance(values, dict):
            raise ConfigError(f"{what}: unknown section [{section}] (known: {', '.join(out)})")
        for key, val in values.items():
            if key not in out[section]:
                raise ConfigError(f"{what}: unknown key {section}.{key} (known: {', '.join(out[section])})")
            check_like(out[section][key], val, f"{what}: {section}.{key}")
            out[section][key] = val
    return out


def dataclass_from_config(cls: type, values: dict[str, Any], what: str) -> Any:
    """``cls(**values)`` for a config dataclass; an unknown key or a bad value is a one-line ConfigError naming
    ``what`` (e.g. "dtm config") and the key."""
    import dataclasses

    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{what}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    scalars = {"int": ((int,), "an integer"), "float": ((int, float), "a number"), "bool": ((bool,), "true or false"),
               "str": ((str,), "a string")}
    for f in dataclasses.fields(cls):  # fields annotated with one scalar type get a value of that type
        kind = scalars.get(f.type if isinstance(f.type, str) else getattr(f.type, "__name__", ""))
        if kind is not None and f.name in values and type(values[f.name]) not in kind[0]:
            raise ConfigError(f"{what}: {f.name} must be {kind[1]}, got {values[f.name]!r} "
                              f"({type(values[f.name]).__name__})")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _available(verb: str, names: dict[str, str]) -> list[str]:
    out = []
    for name, family in names.items():
        module = family_module(family)
        if module is not None and hasattr(module, verb):
            out.append(name)
    return out


def _calibrate(args: argparse.Namespace) -> dict[str, Any]:
    module = family_module(args.family)
    config = load_config(args.config, "calibration", args.family, args.quick)
    return module.calibrate(config, process=args.process, quick=args.quick, output=Path(args.output),
                            workers=args.workers, seed=args.seed)


def _train(args: argparse.Namespace) -> dict[str, Any]:
    module = family_module(TRAINERS[args.trainer])
    config = load_config(args.config, "training", args.trainer, args.quick)
    length = getattr(args, "epochs", None)
    if length is None and getattr(args, "resume", False) and (Path(args.output) / "run.json").is_file():
        import json  # resuming an (extended) run without --epochs: the length it was last given

        length = (json.loads((Path(args.output) / "run.json").read_text()).get("run_length") or {}).get("value")
    if length is not None and args.trainer in RUN_LENGTH:
        section, key, _ = RUN_LENGTH[args.trainer]
        config.setdefault(section, {})[key] = int(length)
    from spicenet.progress import logger

    logger().debug(f"train {args.trainer}: config {args.config or 'shipped default'}"
                   + (f", {RUN_LENGTH[args.trainer][0]}.{RUN_LENGTH[args.trainer][1]} = {length}" if length else ""))
    return module.train(config, surrogate=Path(args.surrogate), quick=args.quick, run_dir=Path(args.output),
                        device=args.device, seed=args.seed)


def _validate(args: argparse.Namespace) -> dict[str, Any]:
    import json

    run_dir = Path(args.run_dir)
    meta = run_dir / "run.json"
    if not meta.is_file():
        raise ConfigError(f"{run_dir} is not a training run directory (no run.json)")
    family = json.loads(meta.read_text())["family"]
    module = family_module(family)
    if module is None or not hasattr(module, "validate"):
        raise ConfigError(f"family {family!r} has no SPICE validation yet")
    return module.validate(run_dir, chips=args.chips, quick=args.quick, workers=args.workers, seed=args.seed)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``calibrate``, ``train`` and ``validate`` for the families that implement them."""
    workers = max(1, os.cpu_count() or 1)
    families = _available("calibrate", FAMILIES)
    if families:
        p = subparsers.add_parser("calibrate", help="simulate a cell family, fit its surrogate, write plots")
        p.add_argument("family", choices=families)
        p.add_argument("--config", default=None, help="calibration TOML (default: the shipped one)")
        p.add_argument("--process", default="generic")
        p.add_argument("--quick", action="store_true", help="the quick variant (fewer chips/points)")
        p.add_argument("--workers", type=int, default=workers)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("-o", "--output", required=True, help="surrogate file (.h5)")
        p.set_defaults(handler=_calibrate)
    trainers = _available("train", TRAINERS)
    if trainers:
        p = subparsers.add_parser("train", help="train on a calibrated surrogate with mismatch injection")
        p.add_argument("trainer", choices=trainers)
        p.add_argument("--surrogate", required=True)
        p.add_argument("--config", default=None)
        p.add_argument("--quick", action="store_true")
        p.add_argument("--device", default="cpu", help="cpu or cuda")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("-o", "--output", required=True, help="run directory")
        p.add_argument("--resume", action="store_true", help="continue the run in -o from its newest checkpoint "
                       "(an existing run directory is refused without it; ais cannot resume)")
        p.add_argument("--epochs", type=int, default=None, help="the run's length, replacing the config's: epochs "
                       "(eqprop, ffebm) or iterations (dtm, ais); with --resume, N above a finished run's extends it")
        p.set_defaults(handler=_train)
    if _available("validate", TRAINERS):
        p = subparsers.add_parser("validate", help="export a trained run to a netlist and check it in ngspice")
        p.add_argument("run_dir")
        p.add_argument("--chips", type=int, default=None)
        p.add_argument("--quick", action="store_true")
        p.add_argument("--workers", type=int, default=workers)
        p.add_argument("--seed", type=int, default=0)
        p.set_defaults(handler=_validate)


def with_settings(base: Any, settings: dict[str, Any] | None, what: str) -> Any:
    """The config dataclass ``base`` with the fields named in ``settings`` replaced (validated like a config file:
    an unknown key or a bad value is a one-line ConfigError naming ``what``)."""
    import dataclasses

    if not settings:
        return base
    return dataclass_from_config(type(base), {**dataclasses.asdict(base), **settings}, what)


def no_settings(family: str, settings: dict[str, Any] | None) -> None:
    """ConfigError when ``settings`` are given to a family whose validation has no settings."""
    if settings:
        raise ConfigError(f"{family} validation has no settings to replace (got {', '.join(sorted(settings))})")
