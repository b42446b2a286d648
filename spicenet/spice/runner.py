"""Execute a ``Job`` in this process on an ngspice shared-library ``Session``.

For each run: reseed (``setseed`` + ``reset``) when asked, push its ``alter`` commands, issue the analysis, and read
the new plot. A failed analysis is classified from ngspice's own messages:

- convergence ("timestep too small", "singular matrix", gmin/source stepping failed, "iteration limit"):
  retried up the ``RETRY_LADDER``; after the last step a ``ConvergenceError`` names the analysis, the ladder tried
  and the node/device ngspice blamed;
- anything else (an unknown device or node, an invalid argument, a bad model): ``SimulationError`` with ngspice's
  own message, at once (no retries). "simulation(s) aborted" is ngspice's last line of *every* failed analysis,
  so it marks a failure, not its cause.

An analysis may make more than one plot (``noise``: spectra and integrated totals): every plot it made is read.

A deck that ngspice cannot parse fails every run with ``NetlistError`` holding ngspice's message and the offending
line. Results are returned as ``(run_id, SimResult | SpicenetError)`` through the ``emit`` callback as each finishes,
so a caller that kills a hung worker still has every earlier result.
"""

from __future__ import annotations

import re
import time
from typing import Callable

from spicenet.errors import ConvergenceError, NetlistError, SimulationError, SpicenetError
from spicenet.spice.analysis import with_max_step
from spicenet.spice.job import RETRY_LADDER, Job, RunSpec
from spicenet.spice.ngshared import Session
from spicenet.spice.results import Plot, SimResult, merge_plots

_CONVERGENCE = re.compile(r"timestep too small|singular matrix|stepping failed|iteration limit|no convergence|"
                          r"gmin step|failed to converge|dc solution failed", re.IGNORECASE)
_ABORTED = re.compile(r"simulation\(s\) aborted|circuit not parsed", re.IGNORECASE)
_BLAME = re.compile(r"(?:trouble with|check node)\s+(?:node\s+)?\"?([^\"]+?)\"?\s*$", re.IGNORECASE)

Outcome = SimResult | SpicenetError
Emit = Callable[[str, Outcome], None]


def _content(lines: list[str]) -> list[str]:
    return [line.partition(" ")[2].strip() for line in lines]


def blamed(lines: list[str]) -> str | None:
    """The node or device ngspice names in a convergence failure ("trouble with node "x"", "check node x")."""
    for text in reversed(_content(lines)):
        match = _BLAME.search(text)
        if match:
            return match.group(1).rstrip(".:")
    return None


def load_deck(session: Session, job: Job) -> NetlistError | None:
    """Remove any loaded circuit, send the init commands, load the deck; a NetlistError when ngspice rejects it."""
    session.command("destroy all")
    session.command("remcirc")
    session.command("set num_threads=1")
    for command in job.init_commands:
        session.command(command)
    lines = session.load(job.deck)
    errors = [text for text in Session.errors(lines) if not text.lower().startswith("warning")]
    if any(re.search(r"error|unknown|not parsed|could not|undefined", t, re.I) for t in errors):
        return NetlistError(f"ngspice rejected the netlist: {parse_error_message(_content(lines))}")
    return None


def parse_error_message(lines: list[str]) -> str:
    """One line from ngspice's parse complaint: "line N: <offending line>: <reason>" where ngspice gives them."""
    texts = [t.strip() for t in lines if t.strip()]
    for i, text in enumerate(texts):
        match = re.search(r"error on line (\d+)", text, re.IGNORECASE)
        if match:
            offending = texts[i + 1] if i + 1 < len(texts) else "?"
            reason = texts[i + 2] if i + 2 < len(texts) else ""
            return f"line {match.group(1)}: {offending!r}: {reason}".rstrip(": ")
    picked = [t for t in texts if re.search(r"error|unknown|could not|undefined|not parsed", t, re.I)]
    return "; ".join(picked[:3]) or "no reason given"


def _convergence_message(contents: list[str]) -> str:
    """The most telling line of a convergence failure (ngspice's "doAnalyses: ..." line when there is one)."""
    for text in contents:
        if text.lower().startswith("doanalyses"):
            return text
    return next((t for t in contents if _CONVERGENCE.search(t) and "trying gmin" not in t.lower()), "")


#: per loaded deck: (analysis, save, k) -> the raw names of the vectors kept from the k-th plot that analysis made
Layouts = dict[tuple[str, tuple[str, ...] | None, int], list[str]]


def _read_plots(session: Session, made: list[str], analysis: str, save: tuple[str, ...] | None,
                layouts: Layouts | None) -> list[Plot]:
    """The plots an analysis made, filtered to ``save``. An analysis of one loaded deck makes plots with the same
    vectors every run, so after the first run (``layouts``) only the kept vectors are looked up, not the whole
    plot; a plot that does not have them all is walked again."""
    keep = set(save) if save else None  # filtered while reading: big decks, few vectors kept
    plots = []
    for k, name in enumerate(made):
        key = (analysis, save, k)
        known = layouts.get(key) if layouts is not None else None
        plot = session.read_plot(name, keep, known) if known is not None else None
        if plot is None or len(session.kept) != len(known):  # type: ignore[arg-type]
            plot = session.read_plot(name, keep)
            if layouts is not None:
                layouts[key] = session.kept
        plots.append(plot)
    return plots


def run_one(session: Session, run: RunSpec, layouts: Layouts | None = None) -> SimResult:
    """Simulate one run on the loaded deck, climbing the retry ladder on convergence failures. ``layouts``: the
    vector layouts of this loaded deck's plots (see ``_read_plots``), filled and used across its runs."""
    attempts: list[dict] = []
    t0 = time.perf_counter()
    last_lines: list[str] = []
    for step, (name, options, shorten) in enumerate(RETRY_LADDER):
        for option in options:
            session.command(option)
        analysis = with_max_step(run.analysis) if shorten else run.analysis
        if step:  # a failed attempt may have left a partial plot (the first attempt starts from none)
            session.command("destroy all")
        if run.seed is not None:
            session.command(f"setseed {int(run.seed)}")
            session.command("reset")
        for command in run.commands:
            errors = Session.errors(session.command(command))
            if errors:
                raise SimulationError(f"run {run.id!r}: {command!r} failed: {errors[0]}")
        before = set(session.plot_names())
        lines = session.command(analysis)
        last_lines = lines
        contents = _content(lines)
        failed = any(_ABORTED.search(t) for t in contents)
        made = [p for p in reversed(session.plot_names()) if p not in before and p != "const"]
        if not failed and made:
            plots = _read_plots(session, made, analysis, run.save, layouts)
            session.command("destroy all")
            vectors, units = merge_plots(plots, run.save)
            if step:
                attempts.append({"step": name, "ok": True})
            return SimResult(analysis=run.analysis, vectors=vectors, units=units, mode="shared",
                             wall_s=time.perf_counter() - t0, attempts=attempts)
        errors = Session.errors(lines)
        convergence = any(_CONVERGENCE.search(t) for t in contents)
        if not convergence:
            message = "; ".join(e for e in errors if not _ABORTED.search(e))[:400] or "; ".join(errors[:1]) \
                or "no result produced"
            raise SimulationError(f"run {run.id!r}: {run.analysis!r} failed: {message}")
        attempts.append({"step": name, "ok": False, "blamed": blamed(lines),
                         "message": _convergence_message(contents)})
    where = blamed(last_lines) or "unknown node"
    error = ConvergenceError(f"run {run.id!r}: {run.analysis.split()[0]} analysis did not converge "
                             f"(trouble with {where}) after {', '.join(a['step'] for a in attempts)}")
    error.attempts = attempts  # type: ignore[attr-defined]
    raise error


def execute_job(session: Session, job: Job, emit: Emit, skip: int = 0) -> None:
    """Run ``job.runs[skip:]`` on ``session``, emitting each outcome as soon as it is known."""
    failure = load_deck(session, job)
    dirty = False
    layouts: Layouts = {}
    for run in job.runs[skip:]:
        if failure is not None:
            emit(run.id, failure)
            continue
        if dirty:  # the ladder changed options: start the next run from the deck as written
            failure = load_deck(session, job)
            dirty = False
            if failure is not None:
                emit(run.id, failure)
                continue
        try:
            result = run_one(session, run, layouts)
            dirty = bool(result.attempts)
            emit(run.id, result)
        except SpicenetError as error:
            dirty = True
            emit(run.id, error)
