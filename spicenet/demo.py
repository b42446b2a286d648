"""``spicenet demo [--quick]``: the whole loop on the embedded defaults, one family after another.

Steps: ``doctor``; a Monte-Carlo sweep of the subthreshold current mirror (the core); then for every family that
implements them: ``calibrate`` (generic process, ngspice) -> ``train`` (torch, on the calibrated surrogate, with
mismatch injection) -> ``validate`` (the trained model exported back to a netlist and simulated in ngspice on
Monte-Carlo chips) -> ``report`` (``spicenet.report.build_report`` on the run directory, when that module exists).
Every step is real in both modes; ``--quick`` only passes smaller settings (:func:`quick_overrides`) on top of the
shipped quick configs (``calibration/<family>_quick.toml``, ``training/<trainer>_quick.toml``). The families are
the registered ones (:func:`spicenet.families.registered`; ``--family NAME`` picks some); each brings its summary
row (``Family.row``) and its quick settings (``Family.quick_overrides``).

Each step's JSON is collected; a failing step is recorded with its error and the demo goes on (the steps that need
its output are left out). At the end a per-family summary (fit quality, trained metric on the surrogate, metric in
SPICE, gap, energy per sample/image/inference, wall time) and the steps table are printed on stderr and written to
``<output>/summary.md`` (with links to every PNG the families wrote under ``<output>/<family>/``) and
``<output>/summary.json``. The demo replaces its own ``<output>/<family>/`` folders on every run.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import resource
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

from spicenet.errors import ConfigError
from spicenet.families import Family, Override, Trainer, get_family, registered
from spicenet.progress import note

__all__ = ["Override", "quick_overrides", "apply_overrides", "shipped_value", "validation_settings", "family_row",
           "run_demo", "render_summary", "register"]


# -- quick-mode settings -----------------------------------------------------------------------------------------
# What `spicenet demo --quick` changes relative to the shipped quick settings (which `spicenet
# calibrate/train/validate --quick` and the full demo use; the summary lists each shipped value beside the demo's)
# is each family's table ``Family.quick_overrides`` (an ``Override`` per key). The demo's quick mode may go below
# the minimum counts a family sets for `calibrate --quick`: it shows the whole loop, it does not certify a
# calibration. A key that is not in the shipped config is an error of that step (a renamed key is never ignored
# silently). Validation settings beyond `chips` go through the protocol's `validate(..., settings=...)`
# (spicenet/families.py), which replaces those fields of the family's quick() validation config
# (``Family.validation_defaults``, which the summary reads for the shipped values).
def quick_overrides(families: Sequence[str] | None = None) -> tuple[Override, ...]:
    """The quick-demo overrides of the registered ``families`` (None: all), in registry order."""
    found = registered()
    names = list(found) if families is None else list(families)
    return tuple(o for name in names for o in get_family(name).quick_overrides)


def _walk(config: dict[str, Any], key: str, what: str) -> tuple[dict[str, Any], str]:
    """(table, leaf) of a dotted ``key`` in ``config``; ValueError naming ``what`` and the key when absent."""
    *parents, leaf = key.split(".")
    table: Any = config
    for part in parents:
        table = table.get(part) if isinstance(table, dict) else None
        if not isinstance(table, dict):
            raise ValueError(f"override {what} {key!r}: [{part}] is not a table of the config")
    if leaf not in table:
        raise ValueError(f"override {what} {key!r}: key not in the config")
    return table, leaf


def apply_overrides(config: dict[str, Any], family: str, stage: str,
                    overrides: tuple[Override, ...] | None = None) -> dict[str, Any]:
    """A deep copy of ``config`` with the ``overrides`` (None: the family's ``quick_overrides``) of
    ``family``/``stage`` set (dotted keys walk TOML tables).

    Raises ValueError naming the key when a dotted key is not in ``config`` (or walks through a non-table)."""
    if stage not in ("calibration", "training"):
        raise ValueError(f"stage: expected 'calibration' or 'training', got {stage!r}")
    out = copy.deepcopy(config)
    if overrides is None:
        overrides = get_family(family).quick_overrides
    for o in overrides:
        if o.family == family and o.stage == stage:
            table, leaf = _walk(out, o.key, f"{family} {stage}")
            table[leaf] = copy.deepcopy(o.value)
    return out


def shipped_value(o: Override) -> Any:
    """The value ``o`` replaces: from the shipped quick config, the validation config's ``quick()`` defaults, or
    the family's default chip count (None: "the family's default")."""
    family = get_family(o.family)
    if o.stage == "validation":
        if o.key == "chips":
            return None
        if family.validation_defaults is None:
            raise ValueError(f"override {o.family} validation {o.key!r}: the family's validation has no settings")
        return getattr(family.validation_defaults(), o.key)
    trainer = family.demo_trainer
    if o.stage == "training" and trainer is None:
        raise ValueError(f"override {o.family} training {o.key!r}: the family has no trainer")
    config = family.calibration_settings(True) if o.stage == "calibration" else \
        family.training_settings(trainer, True)  # type: ignore[arg-type]
    table, leaf = _walk(config, o.key, f"{o.family} {o.stage}")
    return table[leaf]


def validation_settings(family: str, quick: bool, overrides: tuple[Override, ...] | None = None
                        ) -> tuple[int | None, dict[str, Any]]:
    """(chips, other settings) of the family's SPICE validation: the quick overrides (None: the family's
    ``quick_overrides``), else (None, {}) = the family's defaults."""
    if not quick:
        return None, {}
    if overrides is None:
        overrides = get_family(family).quick_overrides
    chips: int | None = None
    other: dict[str, Any] = {}
    for o in overrides:
        if o.family == family and o.stage == "validation":
            if o.key == "chips":
                chips = int(o.value)
            else:
                other[o.key] = o.value
    return chips, other


def _validate(family: Family, run_dir: Path, quick: bool, workers: int, seed: int) -> dict[str, Any]:
    """The family's ``validate`` with the quick settings (:func:`validation_settings`), through the protocol's
    ``settings`` argument."""
    chips, other = validation_settings(family.name, quick)
    assert family.validate is not None
    return family.validate(run_dir, chips=chips, quick=True, workers=workers, seed=seed, settings=other or None)


# -- the summary row of a family ---------------------------------------------------------------------------------
def _get(d: Any, path: str) -> Any:
    """``d["a"]["b"]`` for ``path = "a.b"``; None when any part is missing."""
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def _number(value: Any) -> float | None:
    """A finite float, or None (missing, non-numeric, NaN, inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            import numpy as np
            if isinstance(value, np.generic):
                value = value.item()
            else:
                return None
        except ImportError:  # pragma: no cover
            return None
    value = float(value)
    return value if math.isfinite(value) else None


def _fid_key(metrics: dict[str, Any] | None) -> str | None:
    """The ``fid_spicenet_<dataset>`` key of a trainer's metrics (the project's own-feature-net FID)."""
    keys = sorted(k for k in (metrics or {}) if k.startswith("fid_spicenet_"))
    return keys[0] if keys else None


def family_row(family: str, results: dict[str, dict[str, Any] | None], wall_s: float) -> dict[str, Any]:
    """The summary row of ``family`` from its steps' results (``{"calibrate"|"train"|"validate": dict|None}``).

    Values are finite floats or None; ``missing`` lists the ``stage:path`` of every None (absent key, failed
    step, non-finite number), so the tables can say "n/a" and why. The columns are the family's ``Family.row``
    (see :class:`spicenet.families.Family`)."""
    found = registered()
    if family not in found:
        raise ValueError(f"family: expected one of {sorted(found)}, got {family!r}")
    spec = found[family].row
    trainer = found[family].demo_trainer
    fid = _fid_key(_get(results.get("train"), "metrics"))
    missing: list[str] = []

    def value(stage: str, path: str | None) -> float | None:
        if path is None:
            return None
        path = path.replace("{fid}", fid or "fid_spicenet_<dataset>")
        v = _number(_get(results.get(stage), path))
        if v is None:
            missing.append(f"{stage}:{path}")
        return v

    def column(item: tuple[str, str, str]) -> dict[str, Any]:
        label, stage, path = item
        return {"name": label, "value": value(stage, path)}

    label, stage, sur_path, spice_path = spec["energy"]
    row: dict[str, Any] = {
        "family": family,
        "trainer": trainer.name if trainer is not None else None,
        "fit": {label_: value(stage_, path_) for label_, stage_, path_ in spec["fit"]},
        "surrogate_metric": column(spec["surrogate_metric"]),
        "spice_metric": column(spec["spice_metric"]),
        "gap": column(spec["gap"]),
        "energy": {"name": label, "surrogate_j": value(stage, sur_path), "spice_j": value(stage, spice_path)},
        "extra": {name: value(stage_, path_) for name, stage_, path_ in spec["extra"]},
        "wall_s": round(float(wall_s), 2),
    }
    row["missing"] = missing
    row["not_reported"] = [f"energy surrogate_j ({family}'s steps report no surrogate energy)"] if sur_path is None \
        else []
    return row


# -- steps -------------------------------------------------------------------------------------------------------
def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its finished child processes (the ngspice workers of
    an engine are reaped when the engine closes, at the end of each step)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _step(name: str, fn: Callable[[], dict[str, Any]], steps: list[dict[str, Any]], total: int | None = None
          ) -> dict[str, Any] | None:
    """Run one step, append {"step", "ok", "wall_s", "result" | "error"} to ``steps``; the result or None.

    Any Exception is a failed step (the demo reports and goes on); a result with ``"ok": False`` (doctor) too.
    ``cpu_s`` (CPU seconds of the demo and its finished workers) tells a slow step from a busy machine."""
    where = f"{len(steps) + 1}/{total}" if total else f"{len(steps) + 1}"
    note(f"[demo {where}] {name} ...")
    t0, c0 = time.perf_counter(), _cpu_s()
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - a demo step's failure is data, reported in the summary
        wall, cpu = round(time.perf_counter() - t0, 2), round(_cpu_s() - c0, 2)
        print(f"[demo {where}] {name} FAILED after {wall} s: {type(exc).__name__}: {exc}", file=sys.stderr,
              flush=True)
        if "SPICENET_DEBUG" in os.environ:
            traceback.print_exc()
        steps.append({"step": name, "ok": False, "wall_s": wall, "cpu_s": cpu,
                      "error": f"{type(exc).__name__}: {exc}"})
        return None
    wall, cpu = round(time.perf_counter() - t0, 2), round(_cpu_s() - c0, 2)
    ok = not (isinstance(result, dict) and result.get("ok") is False)
    note(f"[demo {where}] {name} {'ok' if ok else 'NOT ok'} ({wall} s wall, {cpu} s CPU)")
    entry = {"step": name, "ok": ok, "wall_s": wall, "cpu_s": cpu, "result": result}
    if not ok:
        entry["error"] = "the step reported ok = false"
    steps.append(entry)
    return result if ok else None


def _core_sweep(out: Path, quick: bool) -> dict[str, Any]:
    """Monte-Carlo (Pelgrom) .op sweep of the subthreshold current mirror at Iref = 1, 10, 100 nA; adds the spread
    sigma(ln(Iout / Iref)) over chips per Iref (subthreshold: ~ sigma(dVt) / (n V_T), independent of Iref)."""
    import numpy as np

    from spicenet.store import open_runs
    from spicenet.sweep import SweepConfig, run_sweep

    config = SweepConfig.from_dict({
        "template": "basic/current_mirror", "process": "generic", "analysis": "op", "seed": 1, "save": ["i(vout)"],
        "grid": {"iref": ["1n", "10n", "100n"]}, "montecarlo": {"chips": 20 if quick else 200, "mode": "pelgrom"}})
    path = out / "mirror_mc.h5"
    for stale in (path, Path(str(path) + ".journal")):
        stale.unlink(missing_ok=True)
    summary = run_sweep(config, path, workers=2, progress=True).as_dict()
    spread = {}
    iout = open_runs(path).to_xarray("i(vout)")  # point x chip, the iref coordinate in A
    for iref, index in (("1n", 0), ("10n", 1), ("100n", 2)):
        ratios = np.log(-iout.values[index] / float(iout["iref"].values[index]))
        spread[iref] = round(float(np.std(ratios[np.isfinite(ratios)], ddof=1)), 4)
    summary["sigma_ln_iout_over_iref"] = spread
    return summary


def _fresh_family_dir(folder: Path) -> None:
    """Empty the demo's own ``<output>/<family>`` folder (a re-run would otherwise resume a run whose surrogate
    changed); refuse a non-empty folder that does not look like demo output."""
    if not folder.exists():
        return
    entries = list(folder.iterdir())
    if entries and not ((folder / "surrogate.h5").exists() or (folder / "run").is_dir()):
        raise ConfigError(f"{folder} exists and is not a demo output folder (no surrogate.h5, no run/)")
    shutil.rmtree(folder)


def _report_builder() -> Callable[..., dict[str, Any]] | None:
    """``spicenet.report.build_report`` when that module exists (it is written separately), else None."""
    try:
        from spicenet.report import build_report
    except ModuleNotFoundError as exc:
        if exc.name in ("spicenet.report",):
            return None
        raise
    return build_report


def run_demo(out: Path, quick: bool = False, workers: int = 2, seed: int = 0,
             families: Sequence[str] | None = None) -> dict[str, Any]:
    """Run every available step into the folder ``out``, for the registered ``families`` (None: all of them, in
    registry order; an unregistered name is a ConfigError).

    Returns {"steps": [{"step", "ok", "wall_s", "result" | "error"}], "families": {family: row (family_row)},
    "summary": path of summary.md, "plots": [PNG paths], "overrides": [...] (quick), "notes": [...], "ok": all steps
    ok, "wall_s": total}."""
    if workers < 1:
        raise ConfigError(f"workers: expected >= 1, got {workers}")
    from spicenet.cli import cmd_doctor

    t_start, c_start = time.perf_counter(), _cpu_s()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps: list[dict[str, Any]] = []
    notes: list[str] = []
    build_report = _report_builder()
    if build_report is None:
        notes.append("report step left out: spicenet.report (build_report) is not installed yet")
    found = registered()
    chosen = list(found) if families is None else list(dict.fromkeys(families))
    for name in chosen:
        get_family(name)  # ConfigError naming the registered families
    selected = {name: found[name] for name in chosen if found[name].calibrate is not None}
    total = 2 + sum(1 + (f.train is not None and f.demo_trainer is not None) + (f.validate is not None)
                    + (build_report is not None and f.train is not None) for f in selected.values())

    _step("doctor", lambda: cmd_doctor(None), steps, total)  # type: ignore[arg-type]
    _step("core: Monte-Carlo sweep of a subthreshold current mirror", lambda: _core_sweep(out, quick), steps, total)
    rows: dict[str, dict[str, Any]] = {}
    for name, fam in selected.items():
        first = len(steps)
        folder = out / name
        results: dict[str, dict[str, Any] | None] = {"calibrate": None, "train": None, "validate": None}
        try:
            _fresh_family_dir(folder)
        except ConfigError as exc:
            steps.append({"step": f"{name}: prepare {folder}", "ok": False, "wall_s": 0.0, "error": str(exc)})
            rows[name] = family_row(name, results, 0.0)
            continue
        folder.mkdir(parents=True)
        surrogate = folder / "surrogate.h5"
        run_dir = folder / "run"
        trainer = fam.demo_trainer

        def calibrate(fam: Family = fam, surrogate: Path = surrogate) -> dict[str, Any]:
            config = fam.calibration_settings(True)
            if quick:
                config = apply_overrides(config, fam.name, "calibration")
            assert fam.calibrate is not None
            return fam.calibrate(config, process="generic", quick=True, output=surrogate, workers=workers,
                                 seed=seed)

        def train(fam: Family = fam, trainer: Trainer | None = trainer, surrogate: Path = surrogate,
                  run_dir: Path = run_dir) -> dict[str, Any]:
            assert trainer is not None  # only called for a family with a trainer
            config = fam.training_settings(trainer, True)
            if quick:
                config = apply_overrides(config, fam.name, "training")
            assert fam.train is not None
            return fam.train(config, surrogate=surrogate, quick=True, run_dir=run_dir, device="cpu", seed=seed)

        results["calibrate"] = _step(f"{name}: calibrate", calibrate, steps, total)
        if results["calibrate"] is not None and trainer is not None and fam.train is not None:
            results["train"] = _step(f"{name}: train {trainer.name}", train, steps, total)
        if results["train"] is not None and fam.validate is not None:
            results["validate"] = _step(f"{name}: validate in SPICE",
                                        functools.partial(_validate, fam, run_dir, quick, workers, seed), steps, total)
        if results["train"] is not None and build_report is not None:
            _step(f"{name}: report", functools.partial(build_report, run_dir), steps, total)
        rows[name] = family_row(name, results, sum(s["wall_s"] for s in steps[first:]))
    plots = sorted(str(p) for p in out.glob("*/**/*.png"))
    result: dict[str, Any] = {
        "steps": steps, "families": rows, "summary": str(out / "summary.md"), "plots": plots,
        "quick": bool(quick), "overrides": _overrides_table(list(selected)) if quick else [], "notes": notes,
        "ok": all(s["ok"] for s in steps), "wall_s": round(time.perf_counter() - t_start, 2),
        "cpu_s": round(_cpu_s() - c_start, 2),
    }
    text = render_summary(result, out)
    (out / "summary.md").write_text(text)
    from spicenet.cli import json_default

    (out / "summary.json").write_text(json.dumps(result, indent=2, default=json_default))
    note("\n" + text)
    return result


# -- summary -----------------------------------------------------------------------------------------------------
def _overrides_table(families: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The quick overrides of ``families`` (:func:`quick_overrides`) as records with the shipped value each
    replaces ("?" when it cannot be read)."""
    rows = []
    for o in quick_overrides(families):
        try:
            shipped = shipped_value(o)
        except Exception as exc:  # noqa: BLE001 - the table reports, the step that uses the key fails
            shipped = f"? ({type(exc).__name__}: {exc})"
        rows.append({"family": o.family, "stage": o.stage, "key": o.key, "value": o.value,
                     "shipped": "family default" if shipped is None else shipped, "why": o.why})
    return rows


def _fmt(value: Any) -> str:
    """A number in 4 significant digits, "n/a" for None."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_summary(result: dict[str, Any], out: Path) -> str:
    """Markdown: the per-family table, the steps table, the quick overrides, notes and links to the PNGs."""
    mode = "quick" if result.get("quick") else "full"
    lines = [f"# spicenet demo ({mode})", "",
             f"All steps ok: **{'yes' if result['ok'] else 'NO'}**; total wall time {result['wall_s']} s "
             f"({result.get('cpu_s', 'n/a')} CPU s).", "",
             "## Families", "",
             "| family | fit quality | trained metric (surrogate) | metric in SPICE | gap | energy surrogate / SPICE "
             "| wall s |", "|---|---|---|---|---|---|---|"]
    for family, row in result["families"].items():
        fit = "; ".join(f"{k} {_fmt(v)}" for k, v in row["fit"].items())
        sm, sp, gap, en = row["surrogate_metric"], row["spice_metric"], row["gap"], row["energy"]
        lines.append(f"| {family} ({row['trainer']}) | {fit} | {sm['name']}: {_fmt(sm['value'])} | "
                     f"{sp['name']}: {_fmt(sp['value'])} | {gap['name']}: {_fmt(gap['value'])} | "
                     f"{_fmt(en['surrogate_j'])} / {_fmt(en['spice_j'])} ({en['name']}) | {row['wall_s']} |")
    lines.append("")
    na = [(f, m) for f, row in result["families"].items() for m in row["missing"]]
    if na:
        lines.append("n/a: the value was not produced (failed step or key absent from the step's result): "
                     + ", ".join(f"{f} {m}" for f, m in na) + ".")
        lines.append("")
    absent = [note for row in result["families"].values() for note in row.get("not_reported", [])]
    if absent:
        lines += ["n/a by design: " + "; ".join(absent) + ".", ""]
    extras = [(f, k, v) for f, row in result["families"].items() for k, v in row["extra"].items()]
    if extras:
        lines += ["More numbers: " + "; ".join(f"{f} {k} {_fmt(v)}" for f, k, v in extras) + ".", ""]
    lines += ["## Steps", "", "| step | ok | wall s | CPU s | error |", "|---|---|---|---|---|"]
    for s in result["steps"]:
        error = str(s.get("error", "")).replace("|", "/").replace("\n", " ")[:300]
        lines.append(f"| {s['step']} | {'yes' if s['ok'] else 'NO'} | {s['wall_s']} | {s.get('cpu_s', 'n/a')} "
                     f"| {error} |")
    lines.append("")
    if result.get("overrides"):
        lines += ["## Quick-mode settings (on top of the shipped quick configs)", "",
                  "These may go below the minimum counts of `spicenet calibrate --quick`:"
                  " the quick demo shows the loop; it does not certify a calibration.", "",
                  "| family | stage | key | demo | shipped quick | why |", "|---|---|---|---|---|---|"]
        for o in result["overrides"]:
            lines.append(f"| {o['family']} | {o['stage']} | `{o['key']}` | {o['value']} | {o['shipped']} | {o['why']} |")
        lines.append("")
    for line in result.get("notes", []):
        lines.append(f"Note: {line}.")
    if result.get("notes"):
        lines.append("")
    reports = [str((s.get("result") or {}).get("report")) for s in result["steps"]
               if s["ok"] and isinstance(s.get("result"), dict) and s["result"].get("report")]
    if reports:
        lines += ["## Reports (HTML)", ""] + [f"- [{os.path.relpath(r, out)}]({os.path.relpath(r, out)})"
                                               for r in reports] + [""]
    plots = result.get("plots", [])
    if plots:
        lines += ["## Plots", ""]
        for p in plots:
            rel = os.path.relpath(p, out)
            lines.append(f"- [{rel}]({rel})")
        lines.append("")
    return "\n".join(lines)


# -- command line ------------------------------------------------------------------------------------------------
def _handle(args) -> dict[str, Any]:
    """The ``demo`` verb. A failed step gives ``ok: false`` and an ``error`` line, which the CLI turns into exit
    status 1 after printing the result."""
    result = run_demo(Path(args.output), quick=args.quick, workers=args.workers, seed=args.seed,
                      families=args.family)
    if not result["ok"]:
        failed = [s["step"] for s in result["steps"] if not s["ok"]]
        result["error"] = (f"{len(failed)} of {len(result['steps'])} steps failed: {', '.join(failed)} "
                           f"(see {result['summary']})")
    if getattr(args, "json", False):
        return result
    # human output: the tables are already on stderr; stdout gets the outline, not every step's full JSON
    return {"summary": result["summary"], "ok": result["ok"], "error": result.get("error"),
            "wall_s": result["wall_s"], "cpu_s": result["cpu_s"],
            "steps": [{"step": s["step"], "ok": s["ok"], "wall_s": s["wall_s"]} for s in result["steps"]]}


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="the whole loop on the embedded defaults")
    p.add_argument("--quick", action="store_true", help="smallest settings (< 3 min on 2 cores)")
    p.add_argument("-o", "--output", default="demo-out", help="output folder (default demo-out)")
    p.add_argument("--workers", type=int, default=2, help="ngspice worker processes (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of every step (default 0)")
    p.add_argument("--family", action="append", default=None, choices=list(registered()),
                   help="run only this registered family (repeatable; default: every registered family)")
    p.set_defaults(handler=_handle)
