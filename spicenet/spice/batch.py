"""Batch fallback: each run is one ``ngspice -b`` process on a deck with a ``.control`` block; results are read
back from an ngspice binary raw file into the same ``SimResult`` objects as the shared-library path.

Slower (a process per run, ~10-20 ms each) but independent of the shared library: used by ``spicenet doctor``, as a
cross-check of the shared mode in the tests, and where libngspice is unavailable. ``ngspice -b`` exits 0 even when
the operating point fails and then writes no raw file, so success is judged by the raw file being written.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from spicenet.errors import ConvergenceError, NetlistError, SimulationError, SpicenetError
from spicenet.spice.analysis import with_max_step
from spicenet.spice.job import RETRY_LADDER, Job, RunSpec
from spicenet.spice.results import Plot, SimResult, merge_plots, vector_name, vector_unit
from spicenet.spice.runner import _ABORTED, _CONVERGENCE, Emit, blamed, parse_error_message

# The most plots one analysis makes (noise: spectra + integrated totals); the control block writes this many plots
# back from the newest, plus the constants plot, which the reader drops.
_MAX_PLOTS = 2
_CONSTANTS = "constants"  # Plotname of ngspice's constants plot (Title: Constant values)


def read_raw(path: Path) -> list[Plot]:
    """Parse an ngspice raw file (binary or ascii; real or complex; several plots) into ``Plot``s."""
    data = Path(path).read_bytes()
    plots: list[Plot] = []
    pos = 0
    while pos < len(data):
        header: dict[str, str] = {}
        variables: list[tuple[str, str]] = []
        while True:
            end = data.index(b"\n", pos)
            line = data[pos:end].decode("latin-1")
            pos = end + 1
            if line.startswith("Variables:"):
                count = int(header["no. variables"])
                for _ in range(count):
                    end = data.index(b"\n", pos)
                    parts = data[pos:end].decode("latin-1").split()
                    pos = end + 1
                    variables.append((parts[1], parts[2]))
                continue
            if line.startswith(("Binary:", "Values:")):
                binary = line.startswith("Binary:")
                break
            key, _, value = line.partition(":")
            header[key.strip().lower()] = value.strip()
        n_vars, n_points = len(variables), int(header["no. points"])
        complex_ = "complex" in header.get("flags", "").lower()
        width = 2 if complex_ else 1
        if binary:
            count = n_vars * n_points * width
            values = np.frombuffer(data, dtype="<f8", count=count, offset=pos).copy()
            pos += count * 8
        else:  # ascii: per point "index value value ..." (complex values as "re,im")
            stop = data.find(b"\nTitle:", pos)
            stop = len(data) if stop < 0 else stop
            tokens = data[pos:stop].decode("latin-1").split()
            pos = stop + 1
            per_point = n_vars + 1
            flat = [float(x) for i, tok in enumerate(tokens[: per_point * n_points]) if i % per_point
                    for x in tok.split(",")]
            values = np.asarray(flat)
        table = values.reshape(n_points, n_vars, width)
        vectors, units = {}, {}
        for k, (name, kind) in enumerate(variables):
            column = table[:, k, 0] + 1j * table[:, k, 1] if complex_ else table[:, k, 0]
            norm = vector_name(name, kind)
            vectors[norm], units[norm] = column, vector_unit(kind)
        plots.append(Plot(name=header.get("plotname", ""), vectors=vectors, units=units))
        while pos < len(data) and data[pos:pos + 1] in (b"\n", b" "):
            pos += 1
    return plots


def _deck_with_control(deck: str, commands: list[str], raw: Path) -> str:
    lines = [line for line in deck.splitlines() if line.strip().lower() != ".end"]
    # write the plots of the analysis, newest first (``setplot previous`` walks back to the constants plot)
    # (``plainwrite``: the vectors as they are; without it ``write`` evaluates "all" and adds a vector "all" to a pz
    # plot)
    writes = ["set plainwrite", f"write {raw}", "set appendwrite"] + ["setplot previous", f"write {raw}"] * _MAX_PLOTS
    control = [".control", "set num_threads=1", "set filetype=binary", *commands, *writes, "quit 0", ".endc"]
    return "\n".join(lines + control + [".end"]) + "\n"


def _run_once(job: Job, run: RunSpec, extra: tuple[str, ...], analysis: str, workdir: Path) -> tuple[list[Plot], str]:
    raw = workdir / f"{abs(hash((run.id, analysis, extra)))}.raw"
    raw.unlink(missing_ok=True)
    commands = list(extra)
    if run.seed is not None:
        commands += [f"setseed {int(run.seed)}", "reset"]
    commands += list(run.commands) + [analysis]
    deck_path = workdir / "deck.cir"
    deck_path.write_text(_deck_with_control(job.deck, commands, raw))
    (workdir / ".spiceinit").write_text("\n".join(job.init_commands) + "\n")
    from spicenet.spice.worker import die_with_parent

    proc = subprocess.run(["ngspice", "-b", str(deck_path)], cwd=workdir, capture_output=True, text=True, errors="replace",
                          timeout=job.timeout_s, env=dict(os.environ, OMP_NUM_THREADS="1"),
                          preexec_fn=die_with_parent)  # ngspice segfaults without HOME
    output = proc.stdout + "\n" + proc.stderr
    if not raw.exists():
        return [], output
    plots = [p for p in read_raw(raw) if p.name.strip().lower() != _CONSTANTS]
    return plots[::-1], output


def run_one_batch(job: Job, run: RunSpec, workdir: Path) -> SimResult:
    """One run in ``ngspice -b`` with the same retry ladder as the shared mode."""
    t0 = time.perf_counter()
    extra: tuple[str, ...] = ()
    attempts: list[dict] = []
    output = ""
    for step, (name, options, shorten) in enumerate(RETRY_LADDER):
        extra = extra + options
        analysis = with_max_step(run.analysis) if shorten else run.analysis
        plots, output = _run_once(job, run, extra, analysis, workdir)
        lower = output.lower()
        if re.search(r"error on line|unknown parameter|unknown subckt|could not find|circuit not parsed", lower):
            raise NetlistError(f"ngspice rejected the netlist: {parse_error_message(output.splitlines())}")
        aborted = bool(_ABORTED.search(output))
        if plots and not aborted:
            if step:
                attempts.append({"step": name, "ok": True})
            vectors, units = merge_plots(plots, run.save)
            return SimResult(analysis=run.analysis, vectors=vectors, units=units,
                             mode="batch", wall_s=time.perf_counter() - t0, attempts=attempts)
        lines = ["stderr " + l for l in output.splitlines()]
        if not _CONVERGENCE.search(output):
            raise SimulationError(f"run {run.id!r}: {run.analysis!r} failed: {_batch_message(output)}")
        attempts.append({"step": name, "ok": False, "blamed": blamed(lines)})
    error = ConvergenceError(f"run {run.id!r}: {run.analysis.split()[0]} analysis did not converge (trouble with "
                             f"{blamed(['stderr ' + l for l in output.splitlines()]) or 'unknown node'}) after "
                             f"{', '.join(a['step'] for a in attempts)}")
    error.attempts = attempts  # type: ignore[attr-defined]
    raise error


def _batch_message(output: str) -> str:
    """ngspice's own words for a failed analysis: its error lines, without the closing "simulation(s) aborted"."""
    picked = []
    for line in output.splitlines():
        text = line.strip()
        if re.search(r"error|not in the circuit|no such|invalid|unknown|not found|could not|can't", text, re.I) \
                and not _ABORTED.search(text) and text not in picked:
            picked.append(text)
    return "; ".join(picked)[:400] or "no result written"


def execute_job_batch(job: Job, emit: Emit, skip: int = 0) -> None:
    """Run ``job.runs[skip:]`` with ``ngspice -b``, emitting each outcome."""
    with tempfile.TemporaryDirectory(prefix="spicenet-batch-") as tmp:
        for run in job.runs[skip:]:
            try:
                emit(run.id, run_one_batch(job, run, Path(tmp)))
            except subprocess.TimeoutExpired:
                from spicenet.errors import SimulationTimeout
                emit(run.id, SimulationTimeout(f"run {run.id!r}: ngspice -b ran past {job.timeout_s:g} s"))
            except SpicenetError as error:
                emit(run.id, error)
