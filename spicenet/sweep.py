"""Sweeps: a parameter grid x Monte-Carlo chips of one template, run on a process pool or a Dask cluster, streamed
into the HDF5 store (resumable; a killed sweep loses no finished point).

Config (TOML)::

    template = "basic/current_mirror"     # a shipped template (or "my_cell.cir": your template, path relative to
                                           # this file) ...
    # netlist = "my_deck.cir"              # ... or a plain SPICE file (analysis from `analysis` or its one own card;
                                           # relative includes against its folder; no .control, see analysis.py)
    process = "generic"                    # templates: default generic; a plain netlist gets the process header
                                           # (model library + .options gmin=1e-18) only when process is given;
                                           # or "my_pdk.toml": your process file, path relative to this file
    analysis = "op"                        # default: the template's @analysis
    seed = 1                               # mismatch seed; chip k of a point uses (seed, k)
    save = ["i(vout)"]                     # vectors to store (default: all)
    timeout_s = 60                         # per run
    [params]                               # fixed parameter values
    vdd = "0.3"
    [grid]                                 # cartesian product of these lists
    iref = ["1n", "10n"]
    [montecarlo]
    chips = 200                            # 0 = nominal only
    mode = "pelgrom"                       # "pelgrom" | "pdk" (sky130) | "none"
    noise_seed = 7                         # optional: TRRANDOM noise seed per chip (default: the sweep seed)
    [inputs]                               # optional: operating points pushed into the loaded deck with alter
    sources = ["vin0", "vin1"]             # voltage/current sources whose dc value each row sets
    rows = [[0.1, 0.2], [0.3, 0.4]]        # or file = "inputs.npy" (2-D array, one row per run)
    [measure.iout]                         # scalar measurements stored with each run
    kind = "value"                         # value | final | mean | min | max | frequency | period | duty | settling | energy
    vector = "i(vout)"                     # also: level, tolerance; energy: supply = "vdd" (vector = its current
                                           # i(vdd); voltage v(vdd) or volts = <number>)

Every value is type-checked (a wrong type, an unknown key, an unknown save/measure vector of the deck: ConfigError
naming the key and the file).

Run ids are ``p<grid index>[-i<input row>]-c<chip>`` (``-nom`` for the nominal run), so a resumed sweep knows
what is done. Chips and input rows are variants of one loaded deck (``alter``), the fast path of ngspice.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import threading
import time
import tomllib
from dataclasses import dataclass, field, replace
from importlib import import_module
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from spicenet import __version__
from spicenet.errors import ConfigError, SpicenetError
from spicenet.spice import measure as meas
from spicenet.spice.analysis import read_netlist, unknown_vector, validate_analysis
from spicenet.spice.engine import Deck, derived_seed, montecarlo_block, plain_deck, render
from spicenet.spice.job import MAX_TIMEOUT_S, Job, RunBlock, RunSpec
from spicenet.spice.results import SimResult
from spicenet.spice.worker import ResultColumns, WorkerPool, batch_outcomes
from spicenet.store import (NamedColumn, RecordBatch, RunRecord, RunStore, StoreConfigError, VectorColumn, _alter_matrix,
                            _extra_text, _split_alters, _validate)

MEASURE_KINDS = ("value", "final", "mean", "min", "max", "frequency", "period", "duty", "settling", "energy")


#: a sweep journals its finished runs once this many wait or this many seconds after the last append, whichever
#: comes first: the time bounds what a kill can lose; the row bound, memory. Each append costs ~30 HDF5 column
#: writes once streaming has begun, so short runs are appended in large batches (256-run batches cost a 1,000-run
#: ``.op`` sweep ~5 ms more of the parent's CPU than one batch)
APPEND_RUNS = 4096
APPEND_WAIT_S = 0.25

#: input tables up to this many rows are stored inline in a run store's config (see ``SweepConfig.as_dict``)
INLINE_INPUT_ROWS = 64


@dataclass
class SweepConfig:
    """A validated sweep config (see the module docstring for the TOML keys)."""

    template: str | None = None
    netlist: Path | None = None
    process: str = "generic"
    analysis: str | None = None
    seed: int = 0
    save: tuple[str, ...] | None = None
    timeout_s: float = 120.0
    params: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    chips: int = 0
    mismatch: str = "none"
    noise_seed: int | None = None
    measure: dict[str, dict[str, Any]] = field(default_factory=dict)
    input_sources: tuple[str, ...] = ()
    input_rows: np.ndarray | None = None
    source: str = "<dict>"
    process_given: bool = False  # a plain netlist gets the process header only when the config names a process

    @classmethod
    def from_toml(cls, path: Path) -> "SweepConfig":
        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"sweep config {path} not found") from None
        except OSError as exc:
            raise ConfigError(f"sweep config {path}: cannot read: {exc.strerror or exc}") from None
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            line = raw[:exc.start].count(b"\n") + 1
            raise ConfigError(f"sweep config {path}: line {line}: not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"sweep config {path}: {exc}") from None
        config = cls.from_dict(data, source=str(path), base=path.parent)
        if config.netlist is not None and not config.netlist.is_absolute():
            config.netlist = (path.parent / config.netlist).resolve()
        if config.template and config.template.endswith(".cir") and not Path(config.template).is_absolute():
            config.template = str((path.parent / config.template).resolve())  # your own template, beside the config
        from spicenet.spice.process import is_process_file

        if is_process_file(config.process) and not Path(config.process).expanduser().is_absolute():
            config.process = str((path.parent / config.process).resolve())  # a process file, beside the config
        return config

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>", base: Path | None = None) -> "SweepConfig":
        """Validate every key and value (type, range, cross-key rules); ConfigError naming the key and ``source``.
        A relative ``inputs.file`` is read against ``base`` (``from_toml``: the config's folder; default: the
        current folder)."""
        check = _Checker(source)
        check.keys(data, "", {"template", "netlist", "process", "analysis", "seed", "save", "timeout_s", "params",
                              "grid", "montecarlo", "measure", "inputs"})
        if ("template" in data) == ("netlist" in data):
            raise ConfigError(f"{source}: give exactly one of 'template' or 'netlist'")
        template = check.text(data, "template") if "template" in data else None
        netlist = check.text(data, "netlist") if "netlist" in data else None
        # a plain netlist runs as written unless the config names a process ("none": explicitly none)
        process = check.text(data, "process") if "process" in data else ("generic" if template else "none")
        mc = check.table(data, "montecarlo")
        check.keys(mc, "montecarlo.", {"chips", "mode", "noise_seed"})
        params = check.table(data, "params")
        for key, value in params.items():
            check.scalar(value, f"params.{key}")
        grid = check.table(data, "grid")
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{source}: grid.{key} must be a non-empty list, got {values!r}")
            for k, value in enumerate(values):
                check.scalar(value, f"grid.{key}[{k}]")
        chips = check.integer(mc, "chips", 0, MAX_CHIPS + 1, default=0, where="montecarlo.chips")
        mode = check.text(mc, "mode", where="montecarlo.mode") if "mode" in mc else ("pelgrom" if chips else "none")
        if mode not in ("pelgrom", "pdk", "none"):
            raise ConfigError(f"{source}: montecarlo.mode must be pelgrom, pdk or none, got {mode!r}")
        noise_seed = check.integer(mc, "noise_seed", 0, 2**63, default=None, where="montecarlo.noise_seed")
        seed = check.integer(data, "seed", 0, 2**63, default=0)
        timeout_s = check.number(data, "timeout_s", default=120.0)
        if not 0 < timeout_s <= MAX_TIMEOUT_S:
            raise ConfigError(f"{source}: timeout_s must be in (0, {MAX_TIMEOUT_S:g}] seconds, got {timeout_s!r}")
        save = None
        if "save" in data:
            names = data["save"]
            if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
                raise ConfigError(f"{source}: save must be a non-empty list of vector names such as "
                                  f"[\"v(out)\", \"i(vdd)\"], got {names!r}")
            save = tuple(n.strip().lower() for n in names)
        analysis = None
        if "analysis" in data:
            try:
                analysis = validate_analysis(check.text(data, "analysis"))
            except SpicenetError as exc:
                raise ConfigError(f"{source}: {exc}") from None
        measure = check.table(data, "measure")
        for name, spec in measure.items():
            _check_measure(check, name, spec, save)
        sources, rows = _inputs(data.get("inputs"), source, base)
        total = math.prod(len(v) for v in grid.values()) * max(chips, 1) * (len(rows) if rows is not None else 1)
        if total > MAX_RUNS:
            raise ConfigError(f"{source}: the sweep has {total:.3g} runs (grid x chips x input rows); at most "
                              f"{MAX_RUNS:g} per sweep")
        return cls(template=template, netlist=Path(netlist) if netlist is not None else None,
                   process=process, analysis=analysis, seed=seed, save=save, timeout_s=timeout_s,
                   params=dict(params), grid={k: list(v) for k, v in grid.items()}, chips=chips, mismatch=mode,
                   noise_seed=noise_seed, measure=measure, input_sources=sources, input_rows=rows, source=source,
                   process_given=process != "none" and netlist is not None)

    def as_dict(self, inline_rows: bool = False) -> dict[str, Any]:
        """The config as stored in a run store (its ``config`` attr; a resume must match it). Input rows are kept
        inline up to ``INLINE_INPUT_ROWS`` rows; a longer table is recorded by its shape and the SHA-256 of its
        float64 bytes (every run's row is in the store's ``params`` columns anyway, and the JSON of 10^6 rows would
        be ~200 MB of text). ``inline_rows``: the form of stores written before that (every row inline, no
        digest), to resume them."""
        out: dict[str, Any] = {"process": self.process, "seed": self.seed, "timeout_s": self.timeout_s,
                               "params": self.params, "grid": self.grid,
                               "montecarlo": {"chips": self.chips, "mode": self.mismatch}, "measure": self.measure}
        if self.template:
            out["template"] = self.template
        if self.netlist:
            out["netlist"] = str(self.netlist)
        if self.analysis:
            out["analysis"] = self.analysis
        if self.save:
            out["save"] = list(self.save)
        if self.noise_seed is not None:
            out["montecarlo"]["noise_seed"] = self.noise_seed
        if self.input_rows is not None and inline_rows:
            out["inputs"] = {"sources": list(self.input_sources), "rows": self.input_rows.tolist()}
        elif self.input_rows is not None:
            rows = np.ascontiguousarray(self.input_rows, dtype=np.float64)
            out["inputs"] = {"sources": list(self.input_sources), "rows_shape": list(rows.shape),
                             "rows_sha256": hashlib.sha256(rows.tobytes()).hexdigest()}
            if len(rows) <= INLINE_INPUT_ROWS:
                out["inputs"]["rows"] = rows.tolist()
        return out

    def points(self) -> list[dict[str, Any]]:
        """The grid points: fixed params overridden by each combination of grid values (grid order preserved)."""
        keys = list(self.grid)
        combos = itertools.product(*(self.grid[k] for k in keys)) if keys else [()]
        return [{**self.params, **dict(zip(keys, combo))} for combo in combos]


_MEASURE_KEYS = {"kind", "vector", "level", "tolerance", "supply", "volts"}
MAX_CHIPS = 1_000_000
MAX_RUNS = 10_000_000


class _Checker:
    """Type checks of TOML values, each failure a ConfigError naming the key and the file."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, expected: str, value: Any) -> ConfigError:
        return ConfigError(f"{self.source}: {where} must be {expected}, got {value!r} ({type(value).__name__})")

    def keys(self, table: dict[str, Any], prefix: str, known: set[str]) -> None:
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(f"{self.source}: unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(known))})")

    def table(self, data: dict[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "a table ([" + key + "])", value)
        return value

    def text(self, data: dict[str, Any], key: str, where: str | None = None) -> str:
        value = data[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where or key, "a non-empty string", value)
        return value

    def integer(self, data: dict[str, Any], key: str, low: int, high: int | None = None, default: Any = 0,
                where: str | None = None) -> Any:
        if key not in data:
            return default
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where or key, "an integer", value)
        if value < low or (high is not None and value >= high):
            upper = "" if high is None else " and < 2^63" if high == 2**63 else f" and <= {high - 1}"
            raise self.fail(where or key, f">= {low}{upper}", value)
        return value

    def number(self, data: dict[str, Any], key: str, default: float) -> float:
        if key not in data:
            return default
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, "a finite number", value)
        return float(value)

    def scalar(self, value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(where, "a number or a string such as \"10k\"", value)


def _check_measure(check: _Checker, name: str, spec: Any, save: tuple[str, ...] | None) -> None:
    where = f"measure.{name}"
    if not isinstance(spec, dict):
        raise check.fail(where, "a table", spec)
    check.keys(spec, where + ".", _MEASURE_KEYS)
    if spec.get("kind") not in MEASURE_KINDS:
        raise ConfigError(f"{check.source}: {where}.kind must be one of {', '.join(MEASURE_KINDS)}, "
                          f"got {spec.get('kind')!r}")
    if "vector" not in spec:
        raise ConfigError(f"{check.source}: {where} needs vector (the vector to measure, e.g. \"v(out)\")")
    vector = check.text(spec, "vector", where + ".vector").strip().lower()
    spec["vector"] = vector
    for key in ("level", "tolerance", "volts"):
        if key in spec:
            check.number(spec, key, 0.0)
    if spec["kind"] == "energy":
        if "supply" not in spec:
            raise ConfigError(f"{check.source}: {where}: kind = \"energy\" needs supply = \"<voltage source name>\" "
                              f"(vector is that source's current, e.g. \"i(vdd)\"; its voltage is v(<supply>) or "
                              f"volts = <number>)")
        spec["supply"] = check.text(spec, "supply", where + ".supply").strip().lower()
    if save is not None:
        needed = [vector] + ([f"v({spec['supply']})"] if spec["kind"] == "energy" and "volts" not in spec else [])
        missing = [n for n in needed if n not in save]
        if missing:
            raise ConfigError(f"{check.source}: {where} measures {missing[0]!r}, which save does not keep "
                              f"(save = {list(save)})")


@dataclass
class PlannedPoint:
    """One grid point: its rendered deck and the runs (chips x input rows) to simulate on it, as a ``RunBlock``
    (a sequence of ``RunSpec``)."""

    index: int
    params: dict[str, Any]
    deck: Deck
    analysis: str
    runs: RunBlock


def _inputs(spec: Any, source: str, base: Path | None = None) -> tuple[tuple[str, ...], np.ndarray | None]:
    """Validate the [inputs] table: source names and a 2-D float array of rows (inline or an .npy file, a relative
    path read against ``base`` when given)."""
    if spec is None:
        return (), None
    import re

    check = _Checker(source)
    if not isinstance(spec, dict):
        raise check.fail("inputs", "a table ([inputs])", spec)
    check.keys(spec, "inputs.", {"sources", "rows", "file"})
    names = spec.get("sources", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise check.fail("inputs.sources", "a list of source names", names)
    sources = tuple(n.lower() for n in names)
    if not sources or not all(re.match(r"^[vi][a-z0-9_]*$", s) for s in sources):
        raise ConfigError(f"{source}: inputs.sources must list voltage/current source names (v.../i...), got {sources}")
    if ("rows" in spec) == ("file" in spec):
        raise ConfigError(f"{source}: inputs needs exactly one of 'rows' or 'file'")
    if "file" in spec:
        check.text(spec, "file", "inputs.file")
    else:
        rows_in = spec["rows"]
        if not isinstance(rows_in, list) or not all(
                isinstance(r, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in r)
                for r in rows_in):
            raise check.fail("inputs.rows", "a list of lists of numbers", rows_in)
    try:
        if "file" in spec:
            file = Path(spec["file"]).expanduser()
            rows = np.load(base / file if base is not None and not file.is_absolute() else file, allow_pickle=False)
        else:
            rows = np.asarray(spec["rows"], dtype=float)
        rows = np.asarray(rows, dtype=float)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: inputs: {' '.join(str(exc).split())}") from None
    if rows.ndim != 2 or rows.shape[1] != len(sources) or not np.all(np.isfinite(rows)):
        raise ConfigError(f"{source}: inputs rows must be finite, shape [n, {len(sources)}], got {rows.shape}")
    return sources, rows


def input_commands(sources: tuple[str, ...], row: np.ndarray) -> tuple[str, ...]:
    """``alter <source> dc = <value>`` for one input row."""
    return tuple(f"alter {name} dc = {float(value)!r}" for name, value in zip(sources, row))


def plan(config: SweepConfig) -> list[PlannedPoint]:
    """Render every grid point (validating all parameters before anything runs) and list its runs."""
    from spicenet.spice.templates import load_template

    planned = []
    tpl = load_template(config.template) if config.template else None
    for index, params in enumerate(config.points()):
        if tpl is not None:
            deck = render(str(config.template), params, config.process,
                          None if config.mismatch == "none" else config.mismatch)
            analysis = config.analysis or tpl.analysis
        else:
            if params:
                raise ConfigError(f"{config.source}: params/grid need a template; a plain netlist has no parameters")
            netlist = read_netlist(config.netlist)  # type: ignore[arg-type]
            deck = plain_deck(netlist.deck, config.process if config.process_given else None,
                              None if config.mismatch == "none" else config.mismatch)
            if not config.analysis and len(netlist.analyses) > 1:
                raise ConfigError(f"{config.source}: netlist {config.netlist} has {len(netlist.analyses)} analyses "
                                  f"({', '.join(netlist.analyses)}); a sweep runs one: set analysis = \"...\"")
            analysis = config.analysis or (netlist.analyses[0] if netlist.analyses else None)
        if not analysis:
            raise ConfigError(f"{config.source}: no analysis given and the deck declares none")
        if index == 0:
            _check_vectors(config, deck.text, validate_analysis(analysis))
        # noise (TRRANDOM) is seeded from the sweep seed unless montecarlo.noise_seed says otherwise
        noise_seed = config.noise_seed
        if noise_seed is None and "trrandom" in deck.text.lower():
            noise_seed = config.seed
        planned.append(PlannedPoint(index, params, deck, analysis, _point_block(config, index, deck, analysis,
                                                                                noise_seed)))
    return planned


def _point_block(config: SweepConfig, index: int, deck: Deck, analysis: str, noise_seed: int | None) -> RunBlock:
    """The runs of one grid point as a ``RunBlock``: its chips (or the nominal run), each with every input row
    (ids ``p<point>[-i<row>]-c<chip>|-nom``); the same runs, ``RunSpec`` for ``RunSpec``, as
    ``montecarlo_runs`` plus ``input_commands`` make."""
    prefix = f"p{index:05d}-"
    if config.chips:
        base = montecarlo_block(deck, analysis, range(config.chips), config.seed, prefix, noise_seed, config.save,
                                point=index)
    else:
        seed = derived_seed(noise_seed, 0) if noise_seed is not None else None
        base = RunBlock(ids=(f"{prefix}nom",), analysis=validate_analysis(analysis), save=config.save,
                        chips=np.array([-1], dtype=np.int64),
                        seeds=None if seed is None else np.array([seed], dtype=np.int64), meta_seed=config.seed,
                        point=index)
    if config.input_rows is None:
        return base
    n_rows = len(config.input_rows)
    block = base.take(np.repeat(np.arange(len(base)), n_rows))
    rows = np.tile(np.arange(n_rows, dtype=np.int64), len(base))
    cut = len(prefix)
    ids = tuple(f"{prefix}i{k:06d}-{rid[cut:]}" for rid, k in zip(block.ids, rows.tolist()))
    block = replace(block, ids=ids, input_sources=config.input_sources, input_rows=rows,
                    input_values=np.ascontiguousarray(config.input_rows[rows], dtype=np.float64))
    if len(block):
        block[0]  # noqa: B018 - RunSpec checks the commands of the first run
    return block


def _check_vectors(config: SweepConfig, deck: str, analysis: str) -> None:
    """Reject save names and measured vectors the deck cannot produce (see ``analysis.unknown_vector``)."""
    wanted = [("save", name) for name in config.save or ()]
    for name, spec in config.measure.items():
        wanted.append((f"measure.{name}.vector", spec["vector"]))
        if spec["kind"] == "energy":
            wanted.append((f"measure.{name}.supply", f"i({spec['supply']})"))
    for where, name in wanted:
        reason = unknown_vector(deck, name, analysis)
        if reason is not None:
            raise ConfigError(f"{config.source}: {where}: {name!r}: {reason}")


MEASURE_UNITS = {"frequency": "Hz", "period": "s", "duty": "", "settling": "s", "energy": "J"}


def measure_result(result: SimResult, specs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Scalar measurements of one result; a measurement that cannot be made is NaN (see ``measure_run`` for why)."""
    return measure_run(result, specs)[0]


def _time_axis(t: np.ndarray | None, kind: str) -> np.ndarray:
    if t is None:
        raise ValueError(f"the result has no scale vector (time axis) for a {kind} measurement")
    return t


def measure_run(result: SimResult, specs: dict[str, dict[str, Any]]) -> tuple[dict[str, float], dict[str, str]]:
    """``(values, errors)``: every measurement of one result, and for each one that could not be made (a period of
    a waveform that stopped oscillating, a missing vector) its reason; its value is NaN. A sweep stores such a run
    with status ``measure_failed`` and the reasons as its error."""
    out: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name, spec in specs.items():
        try:
            y = np.real(result[spec["vector"]])
            scale = result.scale
            t = np.real(result[scale]) if scale else None
            kind = spec["kind"]
            if kind in ("value", "final"):
                out[name] = float(y[-1])
            elif kind in ("mean", "min", "max"):
                out[name] = float(getattr(np, kind)(y))
            elif kind == "frequency":
                out[name] = meas.frequency(_time_axis(t, kind), y, spec.get("level"))
            elif kind == "period":
                out[name] = meas.period(_time_axis(t, kind), y, spec.get("level"))
            elif kind == "duty":
                out[name] = meas.duty(_time_axis(t, kind), y, spec.get("level"))
            elif kind == "settling":
                out[name] = meas.settling_time(_time_axis(t, kind), y, spec.get("tolerance", 0.01))
            elif kind == "energy":
                supply = spec["supply"]
                out[name] = meas.supply_energy(_time_axis(t, kind), np.real(result[f"v({supply})"]) if f"v({supply})" in result
                                               else np.full_like(y, float(spec["volts"])), y)
            if not np.isfinite(out[name]):
                errors[name] = f"{kind} of {spec['vector']} is {out[name]}"
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            out[name] = float("nan")
            message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            errors[name] = f"{spec.get('kind')} of {spec.get('vector')}: {message or type(exc).__name__}"
    return out, errors


def measurement_units(specs: dict[str, dict[str, Any]], units: dict[str, str]) -> dict[str, str]:
    """The unit of each measurement: the vector's own for value/final/mean/min/max, else the kind's."""
    return {name: units.get(spec.get("vector", ""), "") if spec.get("kind") not in MEASURE_UNITS
            else MEASURE_UNITS[spec["kind"]] for name, spec in specs.items()}


def chunked_jobs(points: list[PlannedPoint], done: set[str], workers: int, timeout_s: float,
                 max_runs_per_job: int = 500) -> list[Job]:
    """Jobs of at most ``max_runs_per_job`` runs, skipping ``done`` ids; enough jobs to keep every worker busy."""
    todo: list[tuple[PlannedPoint, Any]] = []
    for p in points:
        runs: Any = p.runs
        if done:
            runs = runs.take([k for k, rid in enumerate(runs.ids) if rid not in done]) if isinstance(runs, RunBlock) \
                else [r for r in runs if r.id not in done]
        todo.append((p, runs))
    total = sum(len(runs) for _, runs in todo)
    size = max(1, min(max_runs_per_job, int(np.ceil(total / max(1, 2 * workers)))))
    jobs = []
    for point, runs in todo:
        for i in range(0, len(runs), size):
            part = runs[i:i + size]
            jobs.append(Job(deck=point.deck.text, runs=part if isinstance(part, RunBlock) else tuple(part),
                            init_commands=point.deck.init_commands, timeout_s=timeout_s, label=f"p{point.index:05d}"))
    return jobs


def _run_job_remote(job: Job, mode: str) -> list[tuple[str, Any]]:
    """Dask task: run one job in a private worker process (timeouts and crashes handled as locally)."""
    from spicenet.spice.worker import WorkerPool

    with WorkerPool(workers=1, mode=mode) as pool:
        return list(pool.run([job]))


def execute(jobs: list[Job], workers: int, mode: str, scheduler: str | None,
            pool: WorkerPool | None = None) -> Iterator[tuple[str, Any]]:
    """Outcomes ``(run_id, SimResult | SpicenetError)`` of every run of ``jobs``, in completion order, on ``pool``
    (left open), a local pool or, with ``scheduler``, on a Dask cluster (:func:`execute_batches` run by run)."""
    for job, start, batch in execute_batches(jobs, workers, mode, scheduler, pool):
        yield from batch_outcomes(job, start, batch)


def execute_batches(jobs: list[Job], workers: int, mode: str, scheduler: str | None,
                    pool: WorkerPool | None = None,
                    dispatched: Callable[[], None] | None = None) -> Iterator[tuple[Job, int, Any]]:
    """:func:`execute` by message: ``(job, start, batch)`` with the outcomes of ``job.runs[start:]`` as
    ``(run_id, outcome)`` pairs or one ``ResultColumns`` (``WorkerPool.run_batches``); ``dispatched``: called
    once the first jobs are out."""
    if scheduler is None and pool is not None:
        yield from pool.run_batches(jobs, dispatched)
        return
    if scheduler is None:
        with WorkerPool(workers=workers, mode=mode) as own:
            yield from own.run_batches(jobs, dispatched)
        return
    if dispatched is not None:
        dispatched()
    dist: Any = import_module("distributed")

    with dist.Client(scheduler, timeout="30s") as client:
        futures = {client.submit(_run_job_remote, job, mode, pure=False): job for job in jobs}
        for future in dist.as_completed(futures):
            yield futures[future], 0, future.result()


@dataclass
class SweepSummary:
    output: str
    done: int
    failed: int
    skipped: int
    wall_s: float

    def as_dict(self) -> dict[str, Any]:
        return {"output": self.output, "done": self.done, "failed": self.failed, "skipped": self.skipped,
                "wall_s": round(self.wall_s, 4)}


def run_sweep(config: SweepConfig, output: Path, *, workers: int = 1, resume: bool = False,
              scheduler: str | None = None, mode: str = "shared", progress: bool = True,
              pool: WorkerPool | None = None) -> SweepSummary:
    """Plan, simulate and store a sweep. Failed points are stored with their error and the sweep goes on.

    ``pool``: a started ``WorkerPool`` to run on (left open for the next sweep; its own worker count and mode
    apply). Without one the sweep starts its workers before planning, so they load ngspice meanwhile, and stops
    them at the end (both counted in ``wall_s``)."""
    if pool is None and scheduler is None:
        t_start = time.perf_counter()
        with WorkerPool(workers=workers, mode=mode) as own:
            summary = run_sweep(config, output, workers=workers, resume=resume, mode=mode, progress=progress,
                                pool=own.start())
        summary.wall_s = time.perf_counter() - t_start
        return summary
    t0 = time.perf_counter()
    points = plan(config)
    by_index = {point.index: point for point in points}
    point_params = {point.index: _numeric_params(config, point.params) for point in points}
    store: RunStore | None = None
    opener: _StoreOpener | None = None
    if resume:
        store = _open_store(Path(output), config, resume)
        done = store.done_ids()
        if done:
            done &= {rid for point in points for rid in point.runs.ids}
    else:  # a new store is made (and its creation fsync-ed) while the first runs are simulated
        RunStore.check_new(output)
        opener = _StoreOpener(Path(output), config,  # started once the first jobs are out (it holds the GIL)
                              sum(len(point.runs) for point in points))
        done = set()
    writer = _BatchWriter(store, opener)
    try:
        jobs = chunked_jobs(points, done, pool.n_workers if pool is not None else workers, config.timeout_s)
        total = sum(len(j.runs) for j in jobs)
        bar = _progress(total, progress, "sweep")
        writer.bar = bar
        n_ok = n_failed = 0
        for job, start, outcomes in execute_batches(jobs, workers, mode, scheduler, pool,
                                                    opener.start if opener is not None else None):
            block: RunBlock = job.runs  # type: ignore[assignment]
            point = by_index[block.point]
            batch = sweep_batch(config, point, block, start, outcomes, mode, point_params[point.index])
            failed = batch.status.count("failed")
            n_ok += len(batch) - failed
            n_failed += failed
            writer.add(batch)
        writer.flush(final=True)
        bar.close()
        assert writer.store is not None
        writer.store.close()
    except BaseException as exc:
        writer.abandon(exc)
        raise
    return SweepSummary(str(output), n_ok, n_failed, len(done), time.perf_counter() - t0)


class _BatchWriter:
    """A sweep's finished runs on their way into its store, appended in few large batches: each append costs ~30
    HDF5 column writes of the parent process, which on a machine with as many workers as cores comes out of the
    simulations' time. So batches wait until ``APPEND_RUNS`` runs or ``APPEND_WAIT_S`` seconds have gathered (a
    kill loses at most that much simulation, which a resume runs again); the rest is appended at the end. The
    store may still be opening in the background (``opener``). (Appending early when one worker has run out of
    work while the other finishes gained nothing measurable on the 1,000-run ``.op`` benchmark: the pool's
    scheduling ends both workers within ~2 ms of each other.)"""

    def __init__(self, store: "RunStore | None", opener: "_StoreOpener | None") -> None:
        self.store, self.opener = store, opener
        self.batches: list[RecordBatch] = []
        self.waiting = 0
        self.flushed = time.monotonic()
        self.bar: Any = None

    def _ready(self, wait: bool) -> "RunStore | None":
        opener = self.opener
        if self.store is None and opener is not None:
            if wait:
                if opener.ident is None:  # nothing was run: the store is still made
                    opener.start()
                self.store = opener.get()
            elif opener.ident is not None and not opener.is_alive():
                self.store = opener.get()
        return self.store

    def add(self, batch: RecordBatch) -> None:
        self.batches.append(batch)
        self.waiting += len(batch)
        if self.waiting >= APPEND_RUNS or time.monotonic() - self.flushed > APPEND_WAIT_S:
            self.flush()

    def flush(self, final: bool = False) -> None:
        """Append what waits, once the store is open (``final``: wait for it)."""
        store = self._ready(final)
        if store is None:
            return
        if self.batches:
            store.append_batch(RecordBatch.concat(self.batches))
        if self.bar is not None:
            self.bar.update(self.waiting)
        self.batches, self.waiting, self.flushed = [], 0, time.monotonic()

    def abandon(self, exc: BaseException) -> None:
        """On an error: commit what was appended (never raising on top of ``exc``); the rest is simulated again on
        resume."""
        store = self.store
        if store is None and self.opener is not None and self.opener.ident is not None:
            try:
                store = self.opener.get()
            except BaseException:  # noqa: BLE001 - the first error is the one raised
                store = None
        if store is not None:
            store.__exit__(type(exc), exc, exc.__traceback__)


def _open_store(output: Path, config: SweepConfig, resume: bool, expected_rows: int | None = None) -> "RunStore":
    from spicenet.store import RunStore

    try:
        store = RunStore(output, config=config.as_dict(), resume=resume, expected_rows=expected_rows)
    except StoreConfigError:
        # a store written before input tables were recorded by digest holds them inline: resume it as that
        if not (resume and config.input_rows is not None):
            raise
        store = RunStore(output, config=config.as_dict(inline_rows=True), resume=resume)
    try:
        store.set_root_attrs(spicenet_version=__version__, ngspice_version=ngspice_version())
    except BaseException:
        store._abandon()
        raise
    return store


class _StoreOpener(threading.Thread):
    """Opens a sweep's store in the background (making a new file costs two fsyncs), so that its first runs are
    simulated meanwhile; ``get`` waits for it and raises what opening raised."""

    def __init__(self, output: Path, config: SweepConfig, expected_rows: int) -> None:
        super().__init__(name="spicenet-store-open", daemon=True)
        self.output, self.config, self.expected_rows = output, config, expected_rows
        self.store: RunStore | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.store = _open_store(self.output, self.config, False, self.expected_rows)
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread by get()
            self.error = exc

    def get(self) -> "RunStore":
        self.join()
        if self.error is not None:
            raise self.error
        assert self.store is not None
        return self.store


def _numeric_params(config: SweepConfig, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A point's parameters as floats in SI units ("50k" -> 50000.0) with their declared units (templates); values
    that are no numbers stay text."""
    units: dict[str, str] = {}
    values: dict[str, Any] = {}
    declared: Mapping[str, Any] = {}
    if config.template:
        from spicenet.spice.templates import load_template

        tpl = load_template(config.template)
        declared = tpl.params
        values.update(tpl.resolve({k: v for k, v in params.items() if k in declared}))
    for key, value in params.items():
        if key in declared:
            units[key] = declared[key].unit
            continue
        from spicenet.spice.units import parse_value

        try:
            values[key] = parse_value(value) if not isinstance(value, bool) else value
        except (ValueError, TypeError):
            values[key] = str(value)
    return {k: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
            for k, v in values.items()}, units


def sweep_record(config: SweepConfig, point: PlannedPoint, run: RunSpec, outcome: Any, mode: str,
                 params_units: tuple[dict[str, Any], dict[str, str]]) -> RunRecord:
    """The store record of one sweep run (also what ``simulate`` stores): parameters as floats with units, the
    chip's alter commands as its delta from the point's netlist, measurements with their failures."""
    ok = isinstance(outcome, SimResult)
    params, units = dict(params_units[0]), dict(params_units[1])
    alters = run.commands
    if "input" in run.meta and config.input_rows is not None:
        row = run.meta["input"]
        params["input_row"] = float(row)
        for name, value in zip(config.input_sources, config.input_rows[row]):
            params[name] = float(value)
            units[name] = "V" if name.startswith("v") else "A"
        alters = run.commands[:len(run.commands) - len(config.input_sources)]  # inputs are parameters
    status, error = ("ok", None) if ok else ("failed", f"{type(outcome).__name__}: {outcome}")
    measurements: dict[str, float] = {}
    if ok and config.measure:
        measurements, problems = measure_run(outcome, config.measure)
        if problems:
            status = "measure_failed"
            error = "; ".join(f"measure {name!r}: {why}" for name, why in problems.items())
    return RunRecord(
        id=run.id, params=params, seed=config.seed, chip=int(run.meta.get("chip", -1)), process=config.process,
        status=status, error=error, netlist=point.deck.text, vectors=outcome.vectors if ok else {},
        units=outcome.units if ok else {}, measurements=measurements,
        attrs={"analysis": point.analysis, "mode": mode, "wall_s": outcome.wall_s if ok else None,
               "retries": outcome.attempts if ok else getattr(outcome, "attempts", []), "noise_seed": run.seed},
        point=point.index, param_units=units,
        measurement_units=measurement_units(config.measure, outcome.units if ok else {}), alters=tuple(alters),
        scale=outcome.scale if ok else None)


@functools.lru_cache(maxsize=1)
def ngspice_version() -> str:
    """ngspice's version string from ``ngspice -v`` ("ngspice-39"), or "unknown"."""
    import re
    import subprocess

    try:
        out = subprocess.run(["ngspice", "-v"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(r"ngspice-(\d+(?:\.\d+)?)", out)
    return f"ngspice-{match.group(1)}" if match else "unknown"


def _progress(total: int, enabled: bool, desc: str) -> Any:
    from spicenet.progress import progress_bar

    return progress_bar(total, desc, enabled=enabled)


def sweep_batch(config: SweepConfig, point: PlannedPoint, block: RunBlock, start: int,
                outcomes: list[tuple[str, Any]] | ResultColumns, mode: str,
                params_units: tuple[dict[str, Any], dict[str, str]]) -> RecordBatch:
    """The store records of runs ``block[start:]`` (``outcomes``: what the pool sent for them) as one
    ``RecordBatch``: column for column what :func:`sweep_record` makes of each run, without per-run objects when
    the outcomes come as ``ResultColumns``."""
    if not isinstance(outcomes, ResultColumns):
        records = [_validate(sweep_record(config, point, block[start + k], outcome, mode, params_units))
                   for k, (_, outcome) in enumerate(outcomes)]
        return RecordBatch.from_records(records)
    cols = outcomes
    n = cols.count
    stop = start + n
    ok = np.ones(n, dtype=bool)
    if cols.errors:
        ok[list(cols.errors)] = False
    status = ["ok" if good else "failed" for good in ok.tolist()] if cols.errors else ["ok"] * n
    error = [""] * n
    for k, err in cols.errors.items():
        error[k] = f"{type(err).__name__}: {err}"
    retries = np.zeros(n, dtype=np.int64)
    tries: dict[int, Any] = {k: list(a) for k, a in cols.attempts.items() if ok[k]}
    for k, err in cols.errors.items():
        attempts = getattr(err, "attempts", [])
        if attempts:
            tries[k] = attempts
    for k, attempts in tries.items():
        retries[k] = len(attempts) if isinstance(attempts, list) else int(attempts or 0)
    seeds = [block.seed(k) for k in range(start, stop)] if block.seeds is not None else [None] * n
    if block.seeds is None and not tries:
        extra = [_extra_text({"mode": mode, "noise_seed": None})] * n
    else:
        extra = []
        for k, seed in enumerate(seeds):
            attrs: dict[str, Any] = {"mode": mode, "noise_seed": seed}
            if k in tries and tries[k]:
                attrs["retries"] = tries[k]
            extra.append(_extra_text(attrs))
    # alters: the mismatch deltas (the inputs are parameters)
    alters = [""] * n
    if block.explicit is not None:
        split = [_split_alters(block.explicit[k]) for k in range(start, stop)]
        pairs = [numeric for numeric, _ in split]
        alters = ["\n".join(text) for _, text in split]
        alter_targets, alter_values = _alter_matrix(pairs)
        altered = np.array([bool(row) for row in pairs], dtype=bool)
    else:
        alter_targets = list(block.alter_targets)
        alter_values = cols.alter_values if cols.alter_values is not None else np.zeros((n, 0))
        altered = np.full(n, bool(alter_targets))
    # parameters: the point's, then the input row and its source values
    params: dict[str, NamedColumn] = {}
    units = dict(params_units[1])
    present = np.ones(n, dtype=bool)
    for key, value in params_units[0].items():
        if isinstance(value, str):
            params[key] = NamedColumn(np.full(n, value, dtype=object), present, "")
        else:
            params[key] = NamedColumn(np.full(n, np.nan if value is None else float(value)), present, "")
    if block.input_rows is not None and config.input_rows is not None:
        rows = block.input_rows[start:stop]
        params["input_row"] = NamedColumn(rows.astype(np.float64), present, "")
        values = config.input_rows[rows]
        for j, name in enumerate(config.input_sources):
            params[name] = NamedColumn(values[:, j].astype(np.float64), present, "")
            units[name] = "V" if name.startswith("v") else "A"
    for key, col in params.items():
        col.unit = units.get(key) or ""
    # vectors: the scale (time, frequency, sweep) to the axes, the others as columns
    placeholders: dict[str, Any] = dict.fromkeys(cols.names)  # SimResult.scale only asks which names there are
    scale = SimResult(analysis=cols.analysis, vectors=placeholders, units={}).scale if cols.names else None
    vectors: dict[str, VectorColumn] = {}
    scales = None
    for j, name in enumerate(cols.names):
        lengths = cols.lengths[:, j]
        zero_d = (lengths >= 0) if cols.ndims[j] == 0 else None
        data = cols.data[j]
        if data.dtype.kind == "f" and data.dtype != np.float64:
            data = data.astype(np.float64)
        if name == scale:
            scales = VectorColumn(np.asarray(data, dtype=np.float64), lengths)
            continue
        vectors[name] = VectorColumn(data, lengths, cols.units[j], zero_d)
    measure, status, error = _batch_measurements(config, cols, ok, status, error)
    return RecordBatch(
        ids=list(block.ids[start:stop]), status=status, error=error, seed=np.full(n, config.seed, dtype=np.int64),
        chip=block.chips[start:stop] if block.chips is not None else np.full(n, -1, dtype=np.int64),
        point=np.full(n, point.index, dtype=np.int64), process=[config.process] * n, netlists=[point.deck.text],
        deck=np.zeros(n, dtype=np.int64), analysis=[point.analysis] * n, wall_s=np.where(ok, cols.wall_s, np.nan),
        retries=retries, extra=extra, alters=alters, alter_targets=alter_targets, alter_values=alter_values,
        altered=altered, params=params, measure=measure, vectors=vectors,
        scale=[scale if good else None for good in ok.tolist()] if scale is not None else [None] * n,
        scale_units=[cols.units[cols.names.index(scale)] if good else "" for good in ok.tolist()]
        if scale is not None else [""] * n, scales=scales)


def _batch_measurements(config: SweepConfig, cols: ResultColumns, ok: np.ndarray, status: list[str],
                        error: list[str]) -> tuple[dict[str, NamedColumn], list[str], list[str]]:
    """The ``[measure]`` columns of a batch (NaN and status ``measure_failed`` with the reasons where one could not
    be made, as :func:`measure_run`); ``value``/``final`` of real vectors are read straight from the columns."""
    specs = config.measure
    if not specs or not ok.any():
        return {}, status, error
    n = cols.count
    values = {name: np.full(n, np.nan) for name in specs}
    problems: dict[int, dict[str, str]] = {}
    simple = all(spec["kind"] in ("value", "final") and spec["vector"] in cols.names
                 and cols.data[cols.names.index(spec["vector"])].dtype.kind == "f"
                 and cols.ndims[cols.names.index(spec["vector"])] == 1 for spec in specs.values())
    if simple:
        for name, spec in specs.items():
            j = cols.names.index(spec["vector"])
            lengths = cols.lengths[:, j]
            ends = np.cumsum(np.maximum(lengths, 0)) - 1
            good = ok & (lengths > 0)
            values[name][good] = cols.data[j][ends[good]]
            for k in np.nonzero(ok & (lengths == 0))[0].tolist():  # an empty vector: as measure_run says it
                problems.setdefault(k, {})[name] = f"{spec['kind']} of {spec['vector']}: index -1 is out of bounds " \
                                                   f"for axis 0 with size 0"
            for k in np.nonzero(good & ~np.isfinite(values[name]))[0].tolist():
                problems.setdefault(k, {})[name] = f"{spec['kind']} of {spec['vector']} is {values[name][k]}"
    else:
        offsets = cols.offsets
        for k in np.nonzero(ok)[0].tolist():
            got, why = measure_run(cols.outcome(k, offsets), specs)  # type: ignore[arg-type]
            for name, value in got.items():
                values[name][k] = value
            if why:
                problems[k] = why
    if problems:
        status, error = list(status), list(error)
        for k, why in problems.items():
            status[k] = "measure_failed"
            error[k] = "; ".join(f"measure {name!r}: {reason}" for name, reason in why.items())
    units_ok = measurement_units(specs, dict(zip(cols.names, cols.units)))
    units_failed = measurement_units(specs, {})
    first_ok = int(np.argmax(ok))
    first_failed = int(np.argmax(~ok)) if not ok.all() else n
    order = (units_ok, units_failed) if first_ok < first_failed else (units_failed, units_ok)
    # failed runs have no measurements: present only where simulated; the unit the first run gives one
    measure = {name: NamedColumn(values[name], ok.copy(), order[0][name] or order[1][name]) for name in specs}
    return measure, status, error
