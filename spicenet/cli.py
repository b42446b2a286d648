"""The ``spicenet`` command line (contract in DESIGN.md).

Every verb takes ``--json`` and then prints exactly one JSON object on stdout; logs and progress bars go to stderr.
Exit code 0 on success; otherwise a one-line error on stderr and exit code 2 (bad input) or 1 (anything else).
Modules add verbs with ``register(subparsers)``; a handler returns the JSON-able result dict.
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
from spicenet.errors import ConfigError, ParameterError, SpicenetError

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
    return info


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
    out = {}
    for item in items:
        if "=" not in item:
            raise ParameterError(f"-p {item!r}: expected name=value")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def cmd_simulate(args: argparse.Namespace) -> dict[str, Any]:
    """Simulate a template (validated parameters) or a plain SPICE netlist file; store the result as HDF5."""
    from spicenet.spice.analysis import dot_lines, strip_analyses, validate_analysis
    from spicenet.spice.engine import Deck, Engine, montecarlo_runs, render
    from spicenet.spice.job import RunSpec
    from spicenet.spice.results import SimResult
    from spicenet.spice.templates import load_template
    from spicenet.store import RunRecord, RunStore
    from spicenet.sweep import ngspice_version

    t0 = time.perf_counter()
    params = _parse_assignments(args.param or [])
    source = Path(args.source)
    if source.is_file() and "* @param" not in source.read_text(errors="replace"):  # plain netlist, not a template
        if params:
            raise ParameterError(f"{source}: -p applies to templates; a plain netlist has no declared parameters")
        text = source.read_text()
        deck = Deck(strip_analyses(text))
        analyses = [args.analysis] if args.analysis else dot_lines(text)
        if not analyses:
            raise ParameterError(f"{source}: the netlist has no analysis line; give --analysis")
        params_record: dict[str, Any] = {"source": str(source)}
    else:
        tpl = load_template(args.source)
        deck = render(args.source, params, args.process, args.mismatch)
        analyses = [args.analysis or tpl.analysis or "op"]
        params_record = {k: v for k, v in tpl.resolve(params).items()}
    analyses = [validate_analysis(a) for a in analyses]
    if args.chips and deck.mismatch is None:
        raise ParameterError("--chips needs --mismatch pelgrom|pdk (and a template that uses process devices)")
    runs: list[RunSpec] = []
    for k, analysis in enumerate(analyses):
        prefix = f"a{k}-{analysis.split()[0]}-"
        if args.chips:
            runs += montecarlo_runs(deck, analysis, range(args.chips), args.seed, prefix)
        else:
            runs.append(RunSpec(id=f"{prefix}nom", analysis=analysis, meta={"chip": -1}))
    out = Path(args.output)
    vectors: list[str] = []
    points = 0
    failed = 0
    with Engine(mode=args.mode, workers=args.workers, timeout_s=args.timeout) as engine, \
            RunStore(out, config={"source": args.source, "params": params, "analyses": analyses,
                                  "process": args.process}) as store:
        store.set_root_attrs(spicenet_version=__version__, ngspice_version=ngspice_version())
        by_id = {run.id: run for run in runs}
        for run_id, outcome in engine.simulate_many(deck, runs).items():
            run = by_id[run_id]
            ok = isinstance(outcome, SimResult)
            if ok:
                vectors = sorted(set(vectors) | set(outcome.vectors))
                scale = outcome.scale
                points = max(points, len(outcome.vectors[scale]) if scale else 1)
            else:
                failed += 1
                print(f"spicenet: run {run_id} failed: {outcome}", file=sys.stderr)
            store.append(RunRecord(
                id=run_id, params=params_record, seed=args.seed, chip=int(run.meta.get("chip", -1)),
                process=args.process if deck.process else "none", status="ok" if ok else "failed",
                error=None if ok else f"{type(outcome).__name__}: {outcome}", netlist=deck.text,
                vectors=outcome.vectors if ok else {}, units=outcome.units if ok else {}, measurements={},
                attrs={"analysis": run.analysis, "mode": args.mode, "wall_s": outcome.wall_s if ok else None,
                       "retries": outcome.attempts if ok else getattr(outcome, "attempts", [])}))
    if failed == len(runs):
        raise SpicenetError(f"all {failed} runs failed (stored with their errors in {out})")
    return {"output": str(out), "vectors": vectors, "points": points, "runs": len(runs), "failed": failed,
            "wall_s": round(time.perf_counter() - t0, 4)}


def cmd_sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Run a grid x Monte-Carlo sweep from a TOML config into an HDF5 store."""
    from spicenet.sweep import SweepConfig, run_sweep

    config = SweepConfig.from_toml(Path(args.config))
    summary = run_sweep(config, Path(args.output), workers=args.workers, resume=args.resume,
                        scheduler=args.scheduler, mode=args.mode, progress=not args.no_progress)
    return summary.as_dict()


# -- parser ------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spicenet", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"spicenet {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("doctor", help="check ngspice, processes, torch and dask")
    p.set_defaults(handler=cmd_doctor)

    p = sub.add_parser("netlists", help="list templates and their parameters")
    p.set_defaults(handler=cmd_netlists)

    p = sub.add_parser("simulate", help="simulate a template or a plain SPICE netlist file")
    p.add_argument("source", help="template name (see `spicenet netlists`), path of your own template (.cir with "
                   "'* @param' lines) or path of a plain SPICE netlist")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE", help="template parameter (repeatable)")
    p.add_argument("--process", default="generic", help="process: generic or sky130 (default generic)")
    p.add_argument("--analysis", default=None, help='e.g. "tran 1n 1u", "op", "dc vin 0 1 0.01", "ac dec 10 1 1g"')
    p.add_argument("--mismatch", choices=("pelgrom", "pdk"), default=None, help="Monte-Carlo mismatch model")
    p.add_argument("--chips", type=int, default=0, help="Monte-Carlo chips (with --mismatch)")
    p.add_argument("--seed", type=int, default=0, help="mismatch seed")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], dict[str, Any]] = args.handler
    try:
        result = handler(args)
    except (ParameterError, ConfigError) as exc:
        print(f"spicenet {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except SpicenetError as exc:
        print(f"spicenet {args.verb}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"spicenet {args.verb}: interrupted", file=sys.stderr)
        return 130
    if getattr(args, "json", False):
        print(json.dumps(result, default=json_default))
    else:
        _print_human(result)
    if result.get("ok") is False:  # a verb that reports overall success (doctor, demo) and did not succeed
        if result.get("error"):
            print(f"spicenet {args.verb}: error: {result['error']}", file=sys.stderr)
        return 1
    return 0


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
