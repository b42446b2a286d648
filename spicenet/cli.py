"""The ``spicenet`` command line (the verbs and their JSON keys: README, "Command line").

Every verb takes ``--json`` and then prints exactly one JSON object on stdout; logs and progress bars go to stderr.
Exit code 0 on success; otherwise a one-line error ``spicenet VERB: error: <what> <where>`` on stderr and exit code
2 (bad input: ``UsageError``, argparse errors, the argument checks of ``check_args``) or 1 (a simulation or run
that failed). ``--debug`` (or ``SPICENET_DEBUG=1``) shows the traceback instead. Modules add verbs with
``register(subparsers)``; a handler returns the JSON-able result dict.

Every verb's arguments pass one validation layer before the verb runs (``check_args``), by argument name, so verbs
added by other modules get the same checks: ``--workers`` in [1, 1024], ``--seed`` in [0, 2^63), ``--chips`` in [0, 10^6]
(``validate``: >= 1), ``--timeout`` in (0, 10^6] s, ``-o`` in an existing writable folder (a file output not naming a
folder, a folder output not naming a file), ``--config`` a readable UTF-8 TOML file, ``--surrogate`` a readable
surrogate file of the trainer's family, ``validate RUN_DIR`` a run directory with a readable ``run.json`` of a
known family, ``--scheduler`` reachable. A verb that fails on bad input leaves no output it created behind.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from spicenet import __version__
from spicenet.errors import ParameterError, SpicenetError, UsageError, read_toml

# Modules that add verbs of their own (each exposes ``register(subparsers)``); a module absent from the install
# is simply not offered.
VERB_MODULES = ("spicenet.spice.pdk", "spicenet.metrics.cli", "spicenet.families", "spicenet.demo",
                "spicenet.report")


# -- core verbs --------------------------------------------------------------------------------------------------
def cmd_doctor(args: argparse.Namespace) -> dict[str, Any]:
    """Check ngspice (shared library and batch), processes, torch and dask."""
    from spicenet.spice.engine import Engine
    from spicenet.sweep import ngspice_version

    modes: dict[str, Any] = {}
    deck = "doctor\nv1 a 0 1\nr1 a b 1k\nr2 b 0 1k\n.end\n"
    for mode in ("shared", "batch"):
        try:
            with Engine(mode=mode, timeout_s=60) as engine:
                value = engine.simulate(deck, "op").scalar("v(b)")
            modes[mode] = {"ok": abs(value - 0.5) < 1e-9}
        except Exception as exc:  # noqa: BLE001 - doctor reports, it does not crash
            modes[mode] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    processes: dict[str, Any]
    try:
        from spicenet.spice.process import available_processes
        processes = available_processes()
    except Exception as exc:  # noqa: BLE001
        processes = {"error": str(exc)}
    info: dict[str, Any] = {"spicenet_version": __version__, "ngspice_version": ngspice_version(), "modes": modes,
                            "processes": processes}
    try:
        import torch
        info["torch"] = {"version": torch.__version__, "cuda": torch.cuda.is_available(),
                         "threads": torch.get_num_threads()}
    except ImportError as exc:
        info["torch"] = {"error": str(exc)}
    try:
        import dask
        import distributed
        info["dask"] = {"version": dask.__version__, "distributed": distributed.__version__}
    except ImportError as exc:
        info["dask"] = {"error": str(exc)}
    info["cpus"] = os.cpu_count()
    info["ok"] = bool(modes["shared"]["ok"] and modes["batch"]["ok"] and processes.get("generic")
                      and "error" not in info["torch"])
    info["missing"] = _doctor_missing(info)
    return info


def _doctor_missing(info: dict[str, Any]) -> list[dict[str, str]]:
    """What a failed doctor check lacks and how to install it (ngspice is the only system prerequisite)."""
    missing = []
    if not info["modes"]["shared"]["ok"]:
        missing.append({"what": "libngspice (ngspice shared library, used by the default 'shared' engine mode)",
                        "install": "apt-get install libngspice0 (Debian/Ubuntu; libngspice0-dev adds libngspice.so), "
                                   "or set NGSPICE_LIBRARY_PATH to the library file"})
    if not info["modes"]["batch"]["ok"] or info["ngspice_version"] == "unknown":
        missing.append({"what": "ngspice executable on PATH (batch mode, version check)",
                        "install": "apt-get install ngspice (Debian/Ubuntu), brew install ngspice (macOS)"})
    if "error" in info["torch"]:
        missing.append({"what": "torch", "install": "pip install torch (the CPU build is enough)"})
    if "error" in info["dask"]:
        missing.append({"what": "dask[distributed] (sweeps on a cluster)",
                        "install": "pip install 'dask[distributed]'"})
    return missing


def cmd_netlists(args: argparse.Namespace) -> dict[str, Any]:
    """List the shipped templates with their parameters."""
    from spicenet.spice.templates import list_templates, parse_template

    templates = []
    for name, path in list_templates().items():
        tpl = parse_template(path, name)
        templates.append({"name": name, "doc": tpl.doc, "analysis": tpl.analysis, "uses": list(tpl.uses),
                          "params": [_finite(p.as_dict()) for p in tpl.params.values()]})
    return {"templates": templates}


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    d = dict(d)
    d["range"] = [None if not math.isfinite(x) else x for x in d["range"]]
    return d


def _parse_assignments(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ParameterError(f"-p {item!r}: expected name=value")
        key, value = item.split("=", 1)
        if key.strip() in out:
            raise ParameterError(f"-p {key.strip()}: given twice ({out[key.strip()]!r} and {value.strip()!r})")
        out[key.strip()] = value.strip()
    return out


def cmd_simulate(args: argparse.Namespace) -> dict[str, Any]:
    """Simulate a template (validated parameters) or a plain SPICE netlist file; store the result as HDF5.

    A file with a template header line (``* @param``, ``* @analysis`` ...) is a template; any other file is a plain
    netlist, run as written (its own analysis cards unless ``--analysis`` is given; ``--process`` adds that
    process's header, see ``engine.plain_deck``). Every run is stored, failed ones with their error; when any run
    failed the verb reports ``ok: false`` and exits 1."""
    from spicenet.spice.analysis import read_netlist, validate_analysis
    from spicenet.seeds import MONTECARLO_CHIP, ngspice_seed
    from spicenet.spice.engine import Engine, montecarlo_runs, plain_deck, render
    from spicenet.errors import NetlistError
    from spicenet.spice.job import RunSpec
    from spicenet.spice.results import SimResult
    from spicenet.spice.templates import is_template, load_template
    from spicenet.store import RunRecord, RunStore
    from spicenet.sweep import ngspice_version

    t0 = time.perf_counter()
    params = _parse_assignments(args.param or [])
    source = Path(args.source)
    plain = source.is_file() and not is_template(source.read_bytes().decode("utf-8", "replace"))
    if plain:
        if params:
            raise ParameterError(f"{source}: -p applies to templates; a plain netlist has no declared parameters")
        netlist = read_netlist(source)
        deck = plain_deck(netlist.deck, args.process, args.mismatch)
        analyses = [args.analysis] if args.analysis is not None else list(netlist.analyses)
        if not analyses:
            raise ParameterError(f"{source}: the netlist has no analysis card; give --analysis")
        params_record: dict[str, Any] = {"source": str(source)}
        param_units: dict[str, str] = {}
    else:
        tpl = load_template(args.source)
        deck = render(args.source, params, args.process or "generic", args.mismatch)
        analyses = [args.analysis if args.analysis is not None else tpl.analysis or "op"]
        params_record = {k: v for k, v in tpl.resolve(params).items()}
        param_units = {k: p.unit for k, p in tpl.params.items()}
    analyses = [validate_analysis(a) for a in analyses]
    if args.chips and deck.mismatch is None:
        raise ParameterError("--chips needs --mismatch pelgrom|pdk (and a deck with process transistors)")
    runs: list[RunSpec] = []
    noisy = "trrandom" in deck.text.lower()  # TRRANDOM noise is seeded from --seed: same seed, same numbers
    for k, analysis in enumerate(analyses):
        prefix = f"p{k:05d}-"  # one run-id scheme with sweeps: point (= analysis here), then -nom / -c<chip>
        if args.chips and deck.mismatch == "pelgrom":  # the nominal chip (-1) too, its devices reset by alter
            from spicenet.spice import mismatch as mm
            restore = mm.nominal_commands(mm.find_devices(deck.text, deck.process), deck.process)
            runs.append(RunSpec(id=f"{prefix}nom", analysis=analysis, commands=restore, meta={"chip": -1},
                                seed=ngspice_seed(args.seed, MONTECARLO_CHIP, 0) if noisy else None))
        if args.chips:
            runs += montecarlo_runs(deck, analysis, range(args.chips), args.seed, prefix,
                                    noise_seed=args.seed if noisy else None)
        else:
            runs.append(RunSpec(id=f"{prefix}nom", analysis=analysis, meta={"chip": -1},
                                seed=ngspice_seed(args.seed, MONTECARLO_CHIP, 0) if noisy else None))
    out = Path(args.output)
    vectors: list[str] = []
    points = 0
    errors: list[str] = []
    process_name = deck.process.name if deck.process is not None else "none"
    with Engine(mode=args.mode, workers=args.workers, timeout_s=args.timeout) as engine, \
            RunStore(out, config={"source": args.source, "params": params, "analyses": analyses,
                                  "process": process_name}, expected_rows=len(runs)) as store:
        store.set_root_attrs(spicenet_version=__version__, ngspice_version=ngspice_version())
        by_id = {run.id: run for run in runs}
        outcomes = engine.simulate_many(deck, runs, progress="simulate" if len(runs) > 1 else None)
        for run_id, outcome in outcomes.items():
            run = by_id[run_id]
            res = outcome if isinstance(outcome, SimResult) else None
            if res is not None:
                vectors = sorted(set(vectors) | set(res.vectors))
                scale = res.scale
                points = max(points, len(res.vectors[scale]) if scale else 1)
            else:
                errors.append(f"{run_id}: {outcome}")
            store.append(RunRecord(
                id=run_id, params=params_record, seed=args.seed, chip=int(run.meta.get("chip", -1)),
                process=process_name, status="ok" if res is not None else "failed",
                error=None if res is not None else f"{type(outcome).__name__}: {outcome}", netlist=deck.text,
                vectors=res.vectors if res is not None else {}, units=res.units if res is not None else {},
                measurements={},
                attrs={"analysis": run.analysis, "mode": args.mode, "wall_s": res.wall_s if res is not None else None,
                       "retries": res.attempts if res is not None else getattr(outcome, "attempts", [])},
                point=int(run_id[1:6]), param_units=param_units, alters=run.commands,
                scale=res.scale if res is not None else None))
    rejected = [o for o in outcomes.values() if isinstance(o, NetlistError)]
    if rejected and len(rejected) == len(runs):  # ngspice refused the deck itself: bad input, no output kept
        raise NetlistError(f"{args.source}: {rejected[0]}")
    for line in errors:
        print(f"spicenet: run {line}", file=sys.stderr)
    result: dict[str, Any] = {"ok": not errors, "output": str(out), "vectors": vectors, "points": points,
                              "runs": len(runs), "failed": len(errors), "wall_s": round(time.perf_counter() - t0, 4)}
    if errors:
        count = f"all {len(runs)}" if len(errors) == len(runs) else f"{len(errors)} of {len(runs)}"
        result["error"] = f"{count} runs failed (stored with their errors in {out}); first: {errors[0]}"
    return result


def cmd_sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Run a grid x Monte-Carlo sweep from a TOML config into an HDF5 store."""
    from spicenet.sweep import SweepConfig, run_sweep

    config = SweepConfig.from_toml(Path(args.config))
    summary = run_sweep(config, Path(args.output), workers=args.workers, resume=args.resume,
                        scheduler=args.scheduler, mode=args.mode, progress=not args.no_progress)
    result = summary.as_dict()
    if summary.failed and not summary.done:  # failed runs are data, but a sweep where none ran is not a success
        result["ok"] = False
        result["error"] = f"all {summary.failed} runs failed (stored with their errors in {args.output})"
    return result


def cmd_baseline(args: argparse.Namespace) -> dict[str, Any]:
    """Train a digital GAN / VAE baseline (``spicenet.baselines.train``); keys ``run_dir``, ``metrics``."""
    from spicenet.baselines.train import train

    for flag, value in (("--width", args.width), ("--iters", args.iters)):
        if value is not None and value < 1:
            raise UsageError(f"argument {flag}: must be >= 1, got {value}")
    return train(args.kind, dataset=args.dataset, size=args.size, run_dir=Path(args.output), quick=args.quick,
                 seed=args.seed, compare=args.compare, width=args.width, iters=args.iters,
                 compare_config=args.compare_config)


# -- parser ------------------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``spicenet VERB: error: ...``, exit 2) instead of usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {_one_line(message)}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="spicenet", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    _add_verbosity_flags(parser, argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"spicenet {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    p = sub.add_parser("doctor", help="check ngspice, processes, torch and dask")
    p.set_defaults(handler=cmd_doctor)

    p = sub.add_parser("netlists", help="list templates and their parameters")
    p.set_defaults(handler=cmd_netlists)

    p = sub.add_parser("simulate", help="simulate a template or a plain SPICE netlist file")
    p.add_argument("source", help="template name (see `spicenet netlists`), path of your own template (.cir with "
                   "'* @param' lines) or path of a plain SPICE netlist")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE", help="template parameter (repeatable)")
    p.add_argument("--process", default=None, help="process: generic, sky130 or your process.toml (README "
                   "Processes; templates: default generic; a plain "
                   "netlist runs as written unless given, then the process header -- model library and "
                   ".options gmin=1e-18 -- is added)")
    p.add_argument("--analysis", default=None, help='e.g. "tran 1n 1u", "op", "dc vin 0 1 0.01", "ac dec 10 1 1g"')
    p.add_argument("--mismatch", choices=("pelgrom", "pdk"), default=None, help="Monte-Carlo mismatch model")
    p.add_argument("--chips", type=int, default=0, help="Monte-Carlo chips (with --mismatch)")
    p.add_argument("--seed", type=int, default=0, help="seed of the mismatch and of TRRANDOM noise sources")
    p.add_argument("--mode", choices=("shared", "batch"), default="shared", help="ngspice shared library or -b")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--timeout", type=float, default=300.0, help="per-run time limit in seconds")
    p.add_argument("-o", "--output", required=True, help="HDF5 output file")
    p.set_defaults(handler=cmd_simulate)

    p = sub.add_parser("sweep", help="grid x Monte-Carlo sweep from a TOML config")
    p.add_argument("config", help="sweep config (TOML)")
    p.add_argument("-o", "--output", required=True, help="HDF5 output file")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address (default: local process pool)")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)), help="local worker processes")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep, skipping finished points")
    p.add_argument("--mode", choices=("shared", "batch"), default="shared")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=cmd_sweep)

    p = sub.add_parser("baseline", help="train a digital GAN / VAE baseline on an analog trainer's data and FID")
    p.add_argument("kind", choices=("gan", "vae"), help="DCGAN-style GAN or VAE (spicenet.baselines)")
    p.add_argument("--dataset", required=True, choices=("mnist", "fashion"))
    p.add_argument("--size", type=int, required=True, choices=(8, 14, 28), help="image side [px]")
    from spicenet.baselines.reference import comparable
    from spicenet.families import _registered_or_exit

    _registered_or_exit()  # a broken family entry point: its one-line error and exit 2, not a traceback
    compared = comparable()  # the registered trainers with a baseline reference
    defaults = ", ".join(f"{name} for {data}" for name, (_, t) in compared.items() for data in t.baseline_datasets)
    p.add_argument("--compare", choices=tuple(compared), default=None,
                   help="analog trainer whose config gives the split, encoding, FID samples and parameter count "
                   f"to match (default: {defaults or 'none'})")
    p.add_argument("--compare-config", default=None, metavar="TOML",
                   help="the compared trainer's config file (default: its shipped config; give a full config "
                   "from training/ to match a full run)")
    p.add_argument("--quick", action="store_true", help="the quick settings, beside the trainer's --quick config")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=None, help="network width (default: matched parameter count)")
    p.add_argument("--iters", type=int, default=None, help="training iterations (default: 2000 quick, 20000)")
    p.add_argument("-o", "--output", required=True, help="run directory")
    p.set_defaults(handler=cmd_baseline)

    for name in VERB_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.register(sub)
    _add_json_flag(parser)
    return parser


def _add_json_flag(parser: argparse.ArgumentParser) -> None:
    """Give every leaf verb a ``--json`` flag (also those added by other modules)."""
    for action in parser._actions:  # noqa: SLF001 - argparse has no public walk
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for child in action.choices.values():
                _add_json_flag(child)
            return
    if "--json" not in parser._option_string_actions:  # noqa: SLF001
        parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    if "--debug" not in parser._option_string_actions:  # noqa: SLF001
        parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    if "--quiet" not in parser._option_string_actions:  # noqa: SLF001
        _add_verbosity_flags(parser, argparse.SUPPRESS)


def _add_verbosity_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    """The global ``-q`` / ``-v`` (accepted before and after the verb; see ``spicenet.progress``)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", default=default,
                       help="no progress bars or info lines on stderr (errors still print)")
    group.add_argument("-v", "--verbose", action="store_true", default=default,
                       help="debug detail on stderr (the parsed arguments, the config a run uses, what it resumed from)")


def json_default(value: Any) -> Any:
    """``json.dumps`` hook for the results verbs return: numpy scalars/arrays and paths."""
    try:
        import numpy as np
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


# -- the argument validation layer -------------------------------------------------------------------------------
DIRECTORY_OUTPUTS = {"train", "demo", "baseline"}   # verbs whose -o names a folder; every other -o names a file
MAX_WORKERS = 1024
MAX_CHIPS = 1_000_000


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _check_int(args: argparse.Namespace, dest: str, flag: str, low: int, high: int | None = None) -> None:
    value = getattr(args, dest, None)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"argument {flag}: expected an integer, got {value!r}")
    if value < low or (high is not None and value >= high):
        bound = f">= {low}" if high is None else f"in [{low}, {high - 1}]" if high != 2**63 else f"in [{low}, 2^63)"
        raise UsageError(f"argument {flag}: must be {bound}, got {value}")


def _check_output(path_text: str, verb: str, resume: bool = False) -> None:
    path = Path(path_text)
    folder = path.resolve().parent
    if verb in DIRECTORY_OUTPUTS:
        if path.exists() and not path.is_dir():
            raise UsageError(f"-o {path_text}: exists and is not a folder")
    elif path.is_dir():
        raise UsageError(f"-o {path_text}: is a folder; give a file name")
    elif path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"-o {path_text}: the file exists and is not writable")
    elif path.exists() and verb in ("simulate", "sweep") and not resume:
        hint = "pass --resume to continue it or remove it" if verb == "sweep" else "remove it or choose another name"
        raise UsageError(f"-o {path_text}: already exists; {hint}")
    if verb == "calibrate" and not resume:  # the calibration's run store, as a sweep's store: --resume or remove it
        from spicenet.spice.recorded import runs_path
        from spicenet.store import journal_path

        store = runs_path(path)
        if store.exists() or (journal_path(store).is_file() and journal_path(store).stat().st_size > 0):
            raise UsageError(f"-o {path_text}: its run store {store} already exists; pass --resume to continue the "
                             f"calibration or remove it")
    if not folder.is_dir():
        raise UsageError(f"-o {path_text}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"-o {path_text}: folder {folder} is not writable")
    import tempfile

    try:  # a real probe: permissions say yes for root on a read-only file system
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".spicenet-probe-"):
            pass
    except OSError as exc:
        raise UsageError(f"-o {path_text}: cannot write in folder {folder}: {exc.strerror or exc}") from None


def _check_config(path_text: str, flag: str = "--config") -> None:
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"{flag} {path_text}: " + ("is a folder, not a file" if path.is_dir() else "no such file"))
    read_toml(path, f"{flag} {path_text}", UsageError)


def _check_surrogate(args: argparse.Namespace, path: str | None = None, flag: str = "--surrogate") -> None:
    from spicenet.surrogate import SurrogateFile

    path = args.surrogate if path is None else path
    try:
        surrogate = SurrogateFile.load(path)
    except SpicenetError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:  # the reader's failure modes
        raise UsageError(f"{flag} {path}: unreadable surrogate file: {type(exc).__name__}: {_one_line(exc)}".strip()) \
            from None
    trainer = getattr(args, "trainer", None)
    if trainer is not None:
        from spicenet.families import trainers

        found = trainers().get(trainer)
        family = found[0].name if found is not None else None
        if family is not None and surrogate.family != family:
            raise UsageError(f"--surrogate {path}: a {surrogate.family!r} surrogate; trainer {trainer!r} needs a "
                             f"{family!r} one")


def _check_run_dir(path_text: str) -> None:
    import json

    from spicenet.families import registered

    meta = Path(path_text) / "run.json"
    if not Path(path_text).is_dir():
        raise UsageError(f"{path_text}: no such run directory")
    if not meta.is_file():
        raise UsageError(f"{path_text}: not a training run directory (no run.json)")
    try:
        data = json.loads(meta.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{meta}: unreadable run.json: {_one_line(exc)}") from None
    family = data.get("family") if isinstance(data, dict) else None
    if family not in registered():
        raise UsageError(f"{meta}: 'family' must name one of {', '.join(registered())}, got {family!r}")
    config = Path(path_text) / "config.json"  # the run layout (spicenet.train.run): every family reads it
    try:
        settings = json.loads(config.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path_text}: not a complete training run directory (no config.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{config}: unreadable config.json: {_one_line(exc)}") from None
    if not isinstance(settings, dict):
        raise UsageError(f"{config}: config.json must hold a JSON object, got {type(settings).__name__}")
    checkpoints = sorted((Path(path_text) / "checkpoints").glob("ckpt-*.pt"))
    for model in [p for p in [Path(path_text) / "model.pt", *checkpoints[-1:]] if p.is_file()]:
        import torch

        try:  # the files validate loads: the final model and the newest checkpoint
            blob = torch.load(model, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 -- unpickling garbage raises anything; the message is the point
            raise UsageError(f"{model}: unreadable model file: {type(exc).__name__}: {_one_line(exc)}") from None
        if not isinstance(blob, dict):
            raise UsageError(f"{model}: not a spicenet model file (a {type(blob).__name__}, not a dict)")


def _check_train_output(args: argparse.Namespace) -> None:
    """``train -o DIR``: an existing run needs ``--resume``; a finished one is only extended (``--epochs N``)."""
    from spicenet.families import trainers
    from spicenet.train.run import check_training_output

    _check_int(args, "epochs", "--epochs", 1)
    found = trainers().get(args.trainer)
    can_resume = found[1].can_resume if found is not None else True
    if args.resume and not can_resume:
        raise UsageError(f"--resume: trainer {args.trainer} checkpoints only its finished run and cannot resume; "
                         "train into a new -o")
    check_training_output(args.output, resume=bool(args.resume), length=args.epochs, can_resume=can_resume)


def _check_scheduler(address: str) -> None:
    import re
    import socket

    if address.startswith("inproc://"):
        return
    match = re.match(r"^(?:(?:tcp|tls|ws|wss)://)?\[?([A-Za-z0-9_.:-]+?)\]?:(\d{1,5})$", address.strip())
    if match is None:
        raise UsageError(f"--scheduler {address!r}: expected tcp://HOST:PORT (or tls://, ws://, wss://)")
    host, port = match.group(1), int(match.group(2))
    try:
        with socket.create_connection((host, port), timeout=5):
            pass
    except OSError as exc:
        raise UsageError(f"--scheduler {address}: cannot connect: {exc.strerror or exc}") from None


def check_args(args: argparse.Namespace) -> None:
    """The validation layer every verb's arguments pass before it runs (see the module docstring)."""
    verb = args.verb
    _check_int(args, "workers", "--workers", 1, MAX_WORKERS + 1)
    _check_int(args, "seed", "--seed", 0, 2**63)
    from spicenet.spice.job import MAX_TIMEOUT_S

    _check_int(args, "chips", "--chips", 0 if verb == "simulate" else 1, MAX_CHIPS + 1)
    timeout = getattr(args, "timeout", None)
    if timeout is not None and not (isinstance(timeout, (int, float)) and 0 < timeout <= MAX_TIMEOUT_S):
        raise UsageError(f"argument --timeout: must be a number of seconds in (0, {MAX_TIMEOUT_S:g}], got {timeout!r}")
    if getattr(args, "config", None) is not None:
        _check_config(args.config, "CONFIG" if verb == "sweep" else "--config")
    if getattr(args, "output", None) is not None:
        _check_output(args.output, verb, bool(getattr(args, "resume", False)))
    if getattr(args, "surrogate", None) is not None:
        _check_surrogate(args)
    if verb == "train":
        _check_train_output(args)
    if verb == "validate" and getattr(args, "run_dir", None) is not None:
        _check_run_dir(args.run_dir)
    if verb == "report" and getattr(args, "run_dir", None) and Path(args.run_dir).is_file() \
            and Path(args.run_dir).suffix == ".h5":
        _check_surrogate(args, args.run_dir, "")
    if getattr(args, "scheduler", None):
        _check_scheduler(args.scheduler)
    process = getattr(args, "process", None)
    if isinstance(process, str):
        from spicenet.spice.process import is_process_file, load_process_file

        if is_process_file(process):  # validated now, and absolute from here on (stores and surrogates record it)
            args.process = load_process_file(process).name


def _remove_new(path: Path | None, existed: bool) -> None:
    """Remove an output a failed verb created (it did not exist before the verb ran)."""
    import shutil

    if path is None or existed or not path.exists():
        return
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False) or os.environ.get("SPICENET_DEBUG"))
    quiet, verbose = bool(getattr(args, "quiet", False)), bool(getattr(args, "verbose", False))
    if quiet and verbose:
        print(f"spicenet {args.verb}: error: -q and -v exclude each other", file=sys.stderr)
        return 2
    from spicenet import progress

    progress.set_verbosity(progress.QUIET if quiet else progress.VERBOSE if verbose else progress.NORMAL)
    progress.logger().debug(f"{args.verb}: " + ", ".join(f"{k}={v!r}" for k, v in sorted(vars(args).items())
                                                         if k not in ("handler", "verb")))
    handler: Callable[[argparse.Namespace], dict[str, Any]] = args.handler
    output = Path(args.output) if getattr(args, "output", None) else None
    existed = output is not None and output.exists()
    try:
        check_args(args)
        result = handler(args)
    except UsageError as exc:
        _remove_new(output, existed)
        if debug:
            raise
        print(f"spicenet {args.verb}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except SpicenetError as exc:
        if debug:
            raise
        print(f"spicenet {args.verb}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"spicenet {args.verb}: interrupted", file=sys.stderr)
        return 130
    human = result.pop(HUMAN_TEXT, None)  # a verb's own rendering for a terminal (not part of the JSON)
    try:
        if getattr(args, "json", False):
            print(json.dumps(result, default=json_default))
        elif human is not None:
            print(human, end="" if str(human).endswith("\n") else "\n")
        else:
            _print_human(result)
        sys.stdout.flush()
    except BrokenPipeError:  # `spicenet ... | head`: the reader left; not an error of the verb
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if result.get("ok") is False:  # a verb that reports overall success (doctor, demo) and did not succeed
        if result.get("error"):
            print(f"spicenet {args.verb}: error: {_one_line(result['error'])}", file=sys.stderr)
        return 1
    return 0


HUMAN_TEXT = "human_text"
"""Result key of a verb's own terminal rendering: printed instead of the result without ``--json``, never in the
JSON."""


def _print_human(result: dict[str, Any], indent: str = "") -> None:
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            _print_human(value, indent + "  ")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            print(f"{indent}{key}:")
            for item in value:
                print(f"{indent}  - " + ", ".join(f"{k}={v}" for k, v in item.items() if not isinstance(v, list)))
        else:
            print(f"{indent}{key}: {value}")
