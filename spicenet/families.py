"""Cell families and the verbs they share: ``calibrate``, ``train``, ``validate``.

A family is one :class:`Family` object, found through the entry-point group ``spicenet.families``
(:data:`ENTRY_POINT_GROUP`). The project's own families are registered in its ``setup.cfg`` like any other::

    [options.entry_points]
    spicenet.families =
        myfamily = mypackage.family:FAMILY

so a fourth family is a package of its own (README "Adding a family"; ``examples/fourth_family/``): installing it
makes ``spicenet calibrate/train/validate/report/demo`` offer it, and no file of spicenet changes. The CLI, the
demo, the report and the energy code iterate over :func:`registered` and know no family or trainer by name.

The three verbs keep these signatures (each may be None: the family is then not offered that verb)::

    def calibrate(config: dict, *, process: str, quick: bool, output: Path, workers: int, seed: int) -> dict
        # simulate + fit + plots; writes the surrogate file `output` (spicenet.surrogate) and PNGs beside it;
        # returns {"output": str, "fit": {...family metrics...}, "plots": [paths]}
    def train(config: dict, *, surrogate: Path, quick: bool, run_dir: Path, device: str, seed: int) -> dict
        # returns {"run_dir": str, "metrics": {...}}; run.json of the run names the family ("family": name)
    def validate(run_dir: Path, *, chips: int | None, quick: bool, workers: int, seed: int,
                 settings: dict | None = None) -> dict
        # returns {"surrogate": {...}, "spice": {...}, "gap": {...}, "chips": int}; ``settings`` replaces fields
        # of the family's validation config (``with_settings``); a family without one rejects them (``no_settings``)

Default configs are ``calibration/<family>[_quick].toml`` and ``training/<trainer>[_quick].toml`` under the
family's ``config_root`` (None: the folders shipped inside spicenet).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from spicenet.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from spicenet.baselines.reference import AnalogReference

ENTRY_POINT_GROUP = "spicenet.families"

CalibrateVerb = Callable[..., dict[str, Any]]
TrainVerb = Callable[..., dict[str, Any]]
ValidateVerb = Callable[..., dict[str, Any]]
EnergyFormula = Callable[..., dict[str, Any]]
# (training config, its name e.g. "<trainer>_quick", seed) -> the generator a digital baseline is sized to
BaselineReference = Callable[[dict[str, Any], str, int], "AnalogReference"]


class FamilyError(UsageError):
    """A ``spicenet.families`` entry point that cannot be used (does not load, is not a Family, duplicates a
    family or trainer name): the CLI prints the one line naming it and exits 2."""


@dataclass(frozen=True)
class Override:
    """One quick-demo setting: ``key`` of the ``stage`` settings of ``family`` set to ``value``; ``why`` gives the
    reason and what it costs in accuracy.

    ``stage`` ``"calibration"`` / ``"training"``: ``key`` is a dotted path in the shipped quick TOML config
    (``calibration/<family>_quick.toml``, ``training/<trainer>_quick.toml``), e.g. ``"pair.t_end"``.
    ``stage`` ``"validation"``: ``key`` ``"chips"`` is the protocol's Monte-Carlo chip count; any other key is a field
    of the family's validation config dataclass (``Family.validation_defaults``), replaced in its ``quick()``
    defaults."""

    family: str
    stage: str
    key: str
    value: Any
    why: str


@dataclass(frozen=True)
class Trainer:
    """A trainer of a family. ``length``: the (section, key) of its training config that ``train --epochs N`` sets
    (the run's length), None when it has none; ``length_unit`` names what N counts ("epochs", "iterations");
    ``can_resume``: ``train --resume`` continues a run from its checkpoints. ``config``: the name of its default
    config ``training/<config>[_quick].toml`` ("": the trainer's name).

    ``baseline_reference(config, config_name, seed)``: the :class:`spicenet.baselines.reference.AnalogReference`
    (data split, encoding, FID sample count, parameter count) of the generator this trainer builds from the
    training config ``config``, which ``spicenet baseline --compare <trainer>`` sizes a digital baseline to (None:
    not offered to ``--compare``). ``baseline_datasets``: the datasets (canonical names, ``spicenet.data``) whose
    baseline is compared with this trainer when ``--compare`` is not given."""

    name: str
    length: tuple[str, str] | None = None
    length_unit: str = "epochs"
    can_resume: bool = True
    config: str = ""
    baseline_reference: BaselineReference | None = None
    baseline_datasets: tuple[str, ...] = ()

    @property
    def config_name(self) -> str:
        return self.config or self.name


@dataclass(frozen=True)
class ReportLayout:
    """Where a family's run keeps what ``spicenet report`` shows.

    ``validation_files``: the validation JSON, first existing one (paths relative to the run directory).
    ``chip_series``: (source "metrics" | "validation", dotted path of per-chip values, label, higher_is_better,
    path of the nominal value | None, path of a goal | None); a path part ``[]`` maps over a list, ``*`` over a
    dict's values, other parts may be glob patterns. ``chip_energy``: (path of per-chip SPICE energies in J, label).
    ``energy_parts``: (part of the validation JSON, "" = its top level; bar prefix) holding scalar ``energy*_j``."""

    validation_files: tuple[str, ...] = ("validation/validation.json",)
    chip_series: tuple[tuple[str, str, str, bool, str | None, str | None], ...] = ()
    chip_energy: tuple[tuple[str, str], ...] = ()
    energy_parts: tuple[tuple[str, str], ...] = (("surrogate", "validation surrogate: "),
                                                 ("spice", "validation spice: "))


@dataclass(frozen=True)
class Family:
    """One cell family: its name, trainers, verbs, configs, demo summary row, report layout, energy formula and
    quick-demo overrides.

    ``row`` (the demo's summary row): {"fit": [(label, stage, dotted path)], "surrogate_metric" / "spice_metric" /
    "gap": (label, stage, path), "energy": (label, stage, surrogate path | None, SPICE path | None), "extra":
    [(name, stage, path)]}; stage is the step whose result holds the value ("calibrate" {"fit"}, "train"
    {"metrics"}, "validate" {"surrogate", "spice", "gap"}); "{fid}" stands for the trainer's
    ``fid_spicenet_<dataset>`` metrics key. ``energy(energy_attrs, **structure)``: the family's energy breakdown
    (:mod:`spicenet.energy`) from a surrogate's ``energy_*`` attrs and the model structure.
    ``validation_defaults()``: the family's quick() validation config dataclass (None: its validation has no
    settings). ``config_root``: folder with ``calibration/`` and ``training/`` TOMLs (None: spicenet's own).
    ``rank``: place in listings (the demo's order, summary rows; ties by name), since entry points come unordered.
    ``calibration_config``: the name of the default ``calibration/<name>[_quick].toml`` ("": the family's name).
    ``schemas``: config name ("calibration" or a trainer's name) -> a function returning the config's schema, a
    dataclass of :func:`spicenet.config.setting` fields (imported when called: ``spicenet config show`` prints
    it with its defaults and docs). ``exports``: public name -> ``"module:attribute"`` of the family's objects
    offered at the top level of ``spicenet`` (``spicenet.<name>``, imported on first access; a name another
    family exports is refused)."""

    name: str
    trainers: tuple[Trainer, ...] = ()
    calibrate: CalibrateVerb | None = None
    train: TrainVerb | None = None
    validate: ValidateVerb | None = None
    row: Mapping[str, Any] = field(default_factory=dict)
    report: ReportLayout = ReportLayout()
    energy: EnergyFormula | None = None
    quick_overrides: tuple[Override, ...] = ()
    validation_defaults: Callable[[], Any] | None = None
    config_root: Path | None = None
    rank: int = 100
    calibration_config: str = ""
    schemas: Mapping[str, Callable[[], type]] = field(default_factory=dict)
    exports: Mapping[str, str] = field(default_factory=dict)
    # returns the family's spicenet.surrogate_schema.SurrogateSchema (imported when called): what its surrogate
    # files hold; SurrogateFile.save stamps its version, load_surrogate(path, family) checks files against it
    surrogate_schema: Callable[[], Any] | None = None

    @property
    def trainer_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.trainers)

    @property
    def demo_trainer(self) -> Trainer | None:
        """The trainer the demo runs: the first one."""
        return self.trainers[0] if self.trainers else None

    def config(self, kind: str, name: str, quick: bool, path: str | Path | None = None) -> dict[str, Any]:
        """The TOML config at ``path``, or this family's default ``<kind>/<name>[_quick].toml``."""
        return load_config(path, kind, name, quick, root=self.config_root)

    def calibration_settings(self, quick: bool, path: str | Path | None = None) -> dict[str, Any]:
        """The calibration TOML at ``path``, or the family's default one."""
        return self.config("calibration", self.calibration_config or self.name, quick, path)

    def training_settings(self, trainer: Trainer, quick: bool, path: str | Path | None = None) -> dict[str, Any]:
        """The training TOML at ``path``, or ``trainer``'s default one."""
        return self.config("training", trainer.config_name, quick, path)


def _entry_label(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    where = f", distribution {dist.name}" if dist is not None else ""
    return f"entry point '{ep.name} = {ep.value}' (group {ENTRY_POINT_GROUP}{where})"


def _entry_points() -> list[metadata.EntryPoint]:
    """The ``spicenet.families`` entry points of every distribution on the path. Not
    ``metadata.entry_points(group=...)``: that keeps only the first copy of a distribution's metadata, and a stale
    copy (a build folder's ``*.egg-info`` in the current folder) would hide the installed one's families."""
    return [ep for dist in metadata.distributions() for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]


@functools.cache
def registered() -> dict[str, Family]:
    """Every family registered in the entry-point group ``spicenet.families``, by name (ordered by rank, name).

    Raises :class:`FamilyError` naming the entry point when one does not load, is not a :class:`Family`, has a
    name other than its family's, or repeats a family, trainer or export name. Cached: call
    ``registered.cache_clear()`` after installing a family in the running process."""
    unique: dict[str, metadata.EntryPoint] = {}
    for ep in _entry_points():  # names first: a duplicate is reported as such, whichever copy comes first
        first = unique.setdefault(ep.name, ep)
        if first.value != ep.value:
            raise FamilyError(f"{_entry_label(ep)}: duplicate family name {ep.name!r} (also {_entry_label(first)})")
        # the same value twice: one distribution found twice on the path (a build's egg-info beside the install)
    out: dict[str, Family] = {}
    trainers: dict[str, str] = {}
    exports: dict[str, str] = {}
    for ep in unique.values():
        label = _entry_label(ep)
        try:
            family = ep.load()
        except Exception as exc:  # noqa: BLE001 - any failure of a third-party import is reported the same way
            first_line = (str(exc).splitlines() or [""])[0]
            raise FamilyError(f"{label}: cannot load: {type(exc).__name__}: {first_line}") from None
        if not isinstance(family, Family):
            raise FamilyError(f"{label}: is a {type(family).__name__}, not a spicenet.families.Family")
        if family.name != ep.name:
            raise FamilyError(f"{label}: the Family is named {family.name!r}, the entry point {ep.name!r}")
        for t in family.trainer_names:
            if t in trainers or t in out:
                raise FamilyError(f"{label}: trainer {t!r} is already a trainer of family {trainers.get(t, t)!r}")
            trainers[t] = family.name
        for export in family.exports:
            if export in exports:
                raise FamilyError(f"{label}: export {export!r} is already exported by family {exports[export]!r}")
            exports[export] = family.name
        out[family.name] = family
    return {name: out[name] for name in sorted(out, key=lambda n: (out[n].rank, n))}


def get_family(name: str) -> Family:
    """The registered family ``name``; ConfigError naming the registered ones otherwise."""
    families = registered()
    if name not in families:
        raise ConfigError(f"family {name!r} is not registered (registered: {', '.join(families) or 'none'})")
    return families[name]


def trainers() -> dict[str, tuple[Family, Trainer]]:
    """Every registered trainer by name: (its family, the Trainer)."""
    return {t.name: (f, t) for f in registered().values() for t in f.trainers}


def trainer_family(trainer: str) -> Family:
    """The family of the registered trainer ``trainer``; ConfigError naming the registered ones otherwise."""
    found = trainers()
    if trainer not in found:
        raise ConfigError(f"trainer {trainer!r} is not registered (registered: {', '.join(found) or 'none'})")
    return found[trainer][0]


def family_module(family: str) -> Family | None:
    """The registered :class:`Family` ``family`` (its verbs are attributes, as in a module), or None when no
    family of that name is registered."""
    return registered().get(family)


def _config_dir(package: str, fallback: str) -> Path:
    try:
        root = Path(str(resources.files(package)))
        if root.is_dir():
            return root
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[1] / fallback


def load_config(path: str | Path | None, kind: str, name: str, quick: bool, *,
                root: Path | None = None) -> dict[str, Any]:
    """The TOML config at ``path``, or the default ``<kind>/<name>[_quick].toml``: under the folder ``root`` (a
    family's ``config_root``), else shipped inside spicenet."""
    if path is None:
        folder = Path(root) / kind if root is not None else _config_dir(f"spicenet.{kind}_configs", kind)
        path = folder / f"{name}{'_quick' if quick else ''}.toml"
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: {exc}") from None


def dataclass_from_config(cls: type, values: dict[str, Any], what: str) -> Any:
    """``cls(**values)`` for a settings dataclass without TOML sections (a family's validation settings,
    :func:`with_settings`); an unknown key or a bad value is a one-line ConfigError naming ``what`` and the key.
    TOML configs go through :func:`spicenet.config.load_config`."""
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


def _calibrate(args: argparse.Namespace) -> dict[str, Any]:
    family = get_family(args.family)
    assert family.calibrate is not None  # argparse offers only families with the verb
    config = family.calibration_settings(args.quick, args.config)
    from spicenet.spice.recorded import resume_calibrations

    # --resume reaches the family's run store (spicenet.spice.recorded) without a keyword of the verb
    with resume_calibrations(bool(getattr(args, "resume", False))):
        return family.calibrate(config, process=args.process, quick=args.quick, output=Path(args.output),
                                workers=args.workers, seed=args.seed)


def _train(args: argparse.Namespace) -> dict[str, Any]:
    family, trainer = trainers()[args.trainer]
    assert family.train is not None  # argparse offers only trainers of families with the verb
    config = family.training_settings(trainer, args.quick, args.config)
    length = getattr(args, "epochs", None)
    if length is None and getattr(args, "resume", False) and (Path(args.output) / "run.json").is_file():
        import json  # resuming an (extended) run without --epochs: the length it was last given

        length = (json.loads((Path(args.output) / "run.json").read_text()).get("run_length") or {}).get("value")
    if length is not None and trainer.length is not None:
        section, key = trainer.length
        config.setdefault(section, {})[key] = int(length)
    from spicenet.progress import logger

    logger().debug(f"train {trainer.name}: config {args.config or 'shipped default'}"
                   + (f", {'.'.join(trainer.length)} = {length}" if length and trainer.length else ""))
    return family.train(config, surrogate=Path(args.surrogate), quick=args.quick, run_dir=Path(args.output),
                        device=args.device, seed=args.seed)


def _validate(args: argparse.Namespace) -> dict[str, Any]:
    import json

    run_dir = Path(args.run_dir)
    meta = run_dir / "run.json"
    if not meta.is_file():
        raise ConfigError(f"{run_dir} is not a training run directory (no run.json)")
    name = json.loads(meta.read_text())["family"]
    family = registered().get(name)
    if family is None or family.validate is None:
        raise ConfigError(f"family {name!r} has no SPICE validation yet")
    settings = parse_settings(getattr(args, "settings", None) or [], "--set")
    return family.validate(run_dir, chips=args.chips, quick=args.quick, workers=args.workers, seed=args.seed,
                           settings=settings or None)


def parse_settings(items: list[str], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` strings as a settings dict: VALUE parsed as a TOML value (``100``, ``0.5``, ``true``,
    ``"text"``, ``[1, 2]``), a bare word, path or address that is no TOML value kept as a string (``source=npz``,
    ``scheduler=tcp://host:8786``). A malformed item or a repeated key is a one-line UsageError naming ``flag`` and
    the item; the keys themselves are checked by the family (:func:`with_settings`)."""
    from spicenet.errors import UsageError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise UsageError(f"argument {flag}: expected KEY=VALUE, got {item!r}")
        if not key.isidentifier():
            raise UsageError(f"argument {flag}: {key!r} is not a settings field name (in {item!r})")
        if key in out:
            raise UsageError(f"argument {flag}: {key!r} given twice")
        try:
            out[key] = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            if not re.fullmatch(r"[\w.:/@+-]+", text.strip()):  # a word, a path, an address (tcp://host:8786)
                raise UsageError(f"argument {flag}: {text.strip()!r} is neither a TOML value nor a plain word "
                                 f"(in {item!r}; quote strings: {key}='\"...\"')") from None
            out[key] = text.strip()
    return out


def _config_show(args: argparse.Namespace) -> dict[str, Any]:
    from spicenet.config import defaults, describe

    family = get_family(args.family)
    names = [args.name] if args.name else list(family.schemas)
    if args.name and args.name not in family.schemas:
        raise ConfigError(f"family {family.name!r} has no config schema {args.name!r} "
                          f"(has: {', '.join(family.schemas) or 'none'})")
    from spicenet.cli import HUMAN_TEXT

    out: dict[str, Any] = {"family": family.name, "configs": {}}
    for name in names:
        schema = family.schemas[name]()
        what = "spicenet calibrate" if name == "calibration" else f"spicenet train {name}"
        text = describe(schema, f"{what} ({family.name}): {schema.__name__}, every key at its default")
        out["configs"][name] = {"schema": f"{schema.__module__}.{schema.__qualname__}", "toml": text,
                                "defaults": defaults(schema)}
    out[HUMAN_TEXT] = "\n".join(c["toml"] for c in out["configs"].values())
    return out


def _registered_or_exit() -> dict[str, Family]:
    """:func:`registered`, or the one-line error of a broken entry point on stderr and exit status 2 (the parser
    is being built, before the CLI's own error handling)."""
    try:
        return registered()
    except FamilyError as exc:
        print(f"spicenet: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``calibrate``, ``train`` and ``validate`` for the registered families that implement them."""
    workers = max(1, os.cpu_count() or 1)
    families = _registered_or_exit().values()
    calibrating = [f.name for f in families if f.calibrate is not None]
    training = [t for f in families if f.train is not None for t in f.trainers]
    if calibrating:
        p = subparsers.add_parser("calibrate", help="simulate a cell family, fit its surrogate, write plots")
        p.add_argument("family", choices=calibrating)
        p.add_argument("--config", default=None, help="calibration TOML (default: the shipped one)")
        p.add_argument("--process", default="generic")
        p.add_argument("--quick", action="store_true", help="the quick variant (fewer chips/points)")
        p.add_argument("--workers", type=int, default=workers)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("-o", "--output", required=True,
                       help="surrogate file (.h5); every ngspice run is recorded beside it in the run store "
                       "<output stem>.runs.h5 (spicenet.open_runs), which must not exist yet unless --resume")
        p.add_argument("--resume", action="store_true",
                       help="continue the calibration whose run store is beside -o: runs stored ok with the same "
                       "deck are read back instead of simulated again (changed or failed runs are simulated)")
        p.set_defaults(handler=_calibrate)
    if training:
        units: dict[str, list[str]] = {}
        for t in training:
            if t.length is not None:
                units.setdefault(t.length_unit, []).append(t.name)
        lengths = ", ".join(f"{unit} ({', '.join(names)})" for unit, names in units.items())
        fixed = [t.name for t in training if not t.can_resume]
        p = subparsers.add_parser("train", help="train on a calibrated surrogate with mismatch injection")
        p.add_argument("trainer", choices=[t.name for t in training])
        p.add_argument("--surrogate", required=True)
        p.add_argument("--config", default=None)
        p.add_argument("--quick", action="store_true")
        p.add_argument("--device", default="cpu", help="cpu or cuda")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("-o", "--output", required=True, help="run directory")
        p.add_argument("--resume", action="store_true", help="continue the run in -o from its newest checkpoint "
                       "(an existing run directory is refused without it"
                       + (f"; {', '.join(fixed)} cannot resume)" if fixed else ")"))
        p.add_argument("--epochs", type=int, default=None, help=f"the run's length, replacing the config's: {lengths}"
                       "; with --resume, N above a finished run's extends it")
        p.set_defaults(handler=_train)
    if any(f.schemas for f in families):
        p = subparsers.add_parser("config", help="print a family's config schemas with their defaults and docs")
        p.add_argument("action", choices=["show"])
        p.add_argument("family", choices=[f.name for f in families if f.schemas])
        p.add_argument("name", nargs="?", default=None, help="one config: calibration or a trainer (default: all)")
        p.set_defaults(handler=_config_show)
    if any(f.validate is not None for f in families):
        p = subparsers.add_parser("validate", help="export a trained run to a netlist and check it in ngspice")
        p.add_argument("run_dir")
        p.add_argument("--chips", type=int, default=None)
        p.add_argument("--quick", action="store_true")
        p.add_argument("--workers", type=int, default=workers)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                       help="replace one field of the run's family's validation settings (repeatable; VALUE is a "
                       "TOML value, a bare word is a string), e.g. --set n_test=100; each family's fields: README, "
                       "Command line")
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
