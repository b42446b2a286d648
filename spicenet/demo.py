"""``spicenet demo``: the whole loop on the embedded defaults, one family after another.

Steps: ``doctor``; a Monte-Carlo sweep of the subthreshold current mirror (the core); then for every family that
implements them, ``calibrate`` (quick config, generic process) -> ``train`` (quick) -> ``validate`` (quick).
Each step's JSON is collected; a failing step is recorded with its error and the demo goes on. A markdown summary
(``demo-out/summary.md``) and the steps' plots are written to the output folder.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from spicenet.errors import SpicenetError
from spicenet.families import FAMILIES, TRAINERS, family_module, load_config


def _step(name: str, fn: Callable[[], dict[str, Any]], steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    print(f"[demo] {name} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        result = fn()
        steps.append({"step": name, "ok": True, "wall_s": round(time.perf_counter() - t0, 2), "result": result})
        return result
    except (SpicenetError, ValueError, RuntimeError) as exc:
        print(f"[demo] {name} failed: {exc}", file=sys.stderr)
        if "SPICENET_DEBUG" in __import__("os").environ:
            traceback.print_exc()
        steps.append({"step": name, "ok": False, "wall_s": round(time.perf_counter() - t0, 2),
                      "error": f"{type(exc).__name__}: {exc}"})
        return None


def _core_sweep(out: Path, quick: bool) -> dict[str, Any]:
    import h5py
    import numpy as np

    from spicenet.sweep import SweepConfig, run_sweep

    config = SweepConfig.from_dict({
        "template": "basic/current_mirror", "process": "generic", "analysis": "op", "seed": 1, "save": ["i(vout)"],
        "grid": {"iref": ["1n", "10n", "100n"]}, "montecarlo": {"chips": 20 if quick else 200, "mode": "pelgrom"}})
    path = out / "mirror_mc.h5"
    for stale in (path, Path(str(path) + ".journal")):
        stale.unlink(missing_ok=True)
    summary = run_sweep(config, path, workers=2, progress=True).as_dict()
    spread = {}
    with h5py.File(path, "r") as f:
        for iref, index in (("1n", 0), ("10n", 1), ("100n", 2)):
            ratios = [np.log(-float(np.asarray(g["i(vout)"])[0]) / float(iref[:-1]) / 1e-9)
                      for name, g in f["runs"].items() if name.startswith(f"p{index:05d}")]
            spread[iref] = round(float(np.std(ratios, ddof=1)), 4)
    summary["sigma_ln_iout_over_iref"] = spread
    return summary


def run_demo(out: Path, quick: bool = False) -> dict[str, Any]:
    """Run every available step; return {"steps": [...], "summary": path}."""
    from spicenet.cli import cmd_doctor

    out.mkdir(parents=True, exist_ok=True)
    steps: list[dict[str, Any]] = []
    _step("doctor", lambda: cmd_doctor(None), steps)  # type: ignore[arg-type]
    _step("core: Monte-Carlo sweep of a subthreshold current mirror", lambda: _core_sweep(out, quick), steps)
    for family in FAMILIES:
        module = family_module(family)
        if module is None or not hasattr(module, "calibrate"):
            continue
        surrogate = out / family / "surrogate.h5"
        surrogate.parent.mkdir(parents=True, exist_ok=True)
        cal = _step(f"{family}: calibrate", lambda: module.calibrate(
            load_config(None, "calibration", family, True), process="generic", quick=True, output=surrogate,
            workers=2, seed=0), steps)
        trainer = next((t for t, f in TRAINERS.items() if f == family), None)
        if cal is None or trainer is None or not hasattr(module, "train"):
            continue
        run_dir = out / family / "run"
        trained = _step(f"{family}: train {trainer}", lambda: module.train(
            load_config(None, "training", trainer, True), surrogate=surrogate, quick=True, run_dir=run_dir,
            device="cpu", seed=0), steps)
        if trained is None or not hasattr(module, "validate"):
            continue
        _step(f"{family}: validate in SPICE", lambda: module.validate(run_dir, chips=None, quick=True, workers=2,
                                                                      seed=0), steps)
    summary = out / "summary.md"
    summary.write_text(_markdown(steps))
    return {"steps": steps, "summary": str(summary), "ok": all(s["ok"] for s in steps)}


def _markdown(steps: list[dict[str, Any]]) -> str:
    lines = ["# spicenet demo", "", "| step | ok | wall s | key numbers |", "|---|---|---|---|"]
    for s in steps:
        result = s.get("result") or {}
        numbers = result.get("fit") or result.get("metrics") or result.get("gap") or {
            k: v for k, v in result.items() if isinstance(v, (int, float, str)) and k != "output"}
        text = json.dumps(numbers, default=str)[:300] if s["ok"] else s.get("error", "")
        lines.append(f"| {s['step']} | {'yes' if s['ok'] else 'NO'} | {s['wall_s']} | {text} |")
    return "\n".join(lines) + "\n"


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="the whole loop on the embedded defaults")
    p.add_argument("--quick", action="store_true", help="smallest settings (< 3 min)")
    p.add_argument("-o", "--output", default="demo-out", help="output folder (default demo-out)")
    p.set_defaults(handler=lambda args: run_demo(Path(args.output), args.quick))
