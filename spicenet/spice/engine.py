"""The engine: render -> jobs -> worker processes -> results. The one entry point families and the CLI use.

``Engine`` owns a ``WorkerPool`` (shared-library mode by default, ``ngspice -b`` batch mode as fallback) and turns
decks, analyses and Monte-Carlo chips into jobs. ``Engine.simulate`` is the one-off call (raises on failure);
``Engine.run`` streams outcomes of many runs where failures are data.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from spicenet.errors import ParameterError, SpicenetError
from spicenet.spice import mismatch
from spicenet.spice.analysis import validate_analysis
from spicenet.spice.job import Z_MAX, Job, PelgromDraws, RunBlock, RunSpec
from spicenet.spice.results import SimResult
from spicenet.spice.runner import Outcome
from spicenet.spice.worker import WorkerPool


@dataclass(frozen=True)
class Deck:
    """A rendered deck with what the engine needs to load it: text, process (or None), init commands."""

    text: str
    process: Any = None
    mismatch: str | None = None  # None | "pelgrom" | "pdk"

    @property
    def init_commands(self) -> tuple[str, ...]:
        return tuple(self.process.init_commands) if self.process is not None else ()


def render(template: str | Path, params: Mapping[str, Any] | None = None, process: str | None = "generic",
           mismatch_mode: str | None = None, root: Path | None = None) -> Deck:
    """Render a template for a process into a ``Deck`` (validated before anything runs). ``template`` is a shipped
    name, a name under the folder ``root``, or the path of a ``.cir`` template file (see ``load_template``)."""
    from spicenet.spice.templates import load_template

    from spicenet.spice.process import KNOWN_PROCESSES, get_process

    tpl = load_template(template, root)
    if process and process not in KNOWN_PROCESSES:
        get_process(process)  # raises ProcessError naming the known ones (also for a template without devices)
    proc = None
    if tpl.uses and process:
        proc = get_process(process)
    if mismatch_mode not in (None, "pelgrom", "pdk"):
        raise ParameterError(f"mismatch mode must be 'pelgrom' or 'pdk', got {mismatch_mode!r}")
    if mismatch_mode and proc is None:
        raise ParameterError(f"template {tpl.name!r} has no process transistors (no '* @uses' line): "
                             f"{mismatch_mode} mismatch needs some")
    if mismatch_mode and proc is not None and mismatch_mode not in proc.mismatch_modes:
        raise ParameterError(f"process {proc.name!r} has no {mismatch_mode!r} mismatch "
                             f"(has {', '.join(proc.mismatch_modes) or 'none'})")
    return Deck(tpl.render(params, proc, mismatch=mismatch_mode), proc, mismatch_mode)


def plain_deck(text: str, process: str | None = None, mismatch_mode: str | None = None) -> Deck:
    """A plain netlist (analysis cards already removed) as a ``Deck``. Without ``process`` the deck runs exactly as
    written (nothing added: no model library, no ``.options``). With ``process`` the process header -- its model
    library ``.include`` (the ``nfet``/``pfet``/``diode`` wrappers) and its ``.options`` (``gmin=1e-18``, see
    ``spicenet.spice.process.GMIN_OPTIONS``) -- goes after the title line, as for a template that ``@uses`` devices;
    ``mismatch_mode`` then applies to the deck's wrapper instances."""
    if process is None:
        if mismatch_mode:
            raise ParameterError(f"{mismatch_mode} mismatch on a plain netlist needs a process (--process generic|sky130)")
        return Deck(text)
    from spicenet.spice.process import get_process

    proc = get_process(process)
    if mismatch_mode not in (None, *proc.mismatch_modes):
        raise ParameterError(f"process {proc.name!r} has no {mismatch_mode!r} mismatch "
                             f"(has {', '.join(proc.mismatch_modes) or 'none'})")
    lines = text.splitlines()
    body = "\n".join(lines[:1] + [proc.header(mismatch=mismatch_mode).rstrip("\n")] + lines[1:]) + "\n"
    return Deck(body, proc, mismatch_mode)


def montecarlo_runs(deck: Deck, analysis: str, chips: Sequence[int], seed: int, id_prefix: str = "",
                    noise_seed: int | None = None, save: tuple[str, ...] | None = None) -> list[RunSpec]:
    """One run per chip. Pelgrom mode: per-device ``alter`` values drawn from (seed, chip); PDK mode: ngspice's
    ``setseed`` from (seed, chip) + ``reset`` re-draws the PDK's ``agauss`` mismatch. ``noise_seed`` (when given
    and not in PDK mode) reseeds TRRANDOM noise per run with a seed derived from (noise_seed, chip)."""
    analysis = validate_analysis(analysis)
    runs = []
    devices = mismatch.find_devices(deck.text, deck.process) if deck.mismatch == "pelgrom" else []
    if deck.mismatch == "pelgrom" and not devices:
        raise ParameterError("Pelgrom mismatch asked for a deck with no process transistors (X... nfet/pfet)")
    for chip in chips:
        commands: tuple[str, ...] = ()
        run_seed = None
        if deck.mismatch == "pelgrom":
            commands = mismatch.chip_commands(devices, deck.process, seed, chip)
        if deck.mismatch == "pdk":
            run_seed = derived_seed(seed, chip)
        elif noise_seed is not None:
            run_seed = derived_seed(noise_seed, chip)
        runs.append(RunSpec(id=f"{id_prefix}c{chip:05d}", analysis=analysis, commands=commands, seed=run_seed,
                            save=save, meta={"chip": chip, "seed": seed}))
    return runs


def montecarlo_block(deck: Deck, analysis: str, chips: Sequence[int], seed: int, id_prefix: str = "",
                     noise_seed: int | None = None, save: tuple[str, ...] | None = None, point: int = 0,
                     ids: Sequence[str] | None = None) -> RunBlock:
    """The runs of :func:`montecarlo_runs` as a :class:`RunBlock` (the same ids, seeds, commands and meta; its
    ``RunSpec``s compare equal). Pelgrom draws are made where the runs are simulated unless they could fail
    ``Process.alter_commands``'s range checks (a spread of more than 1/``Z_MAX`` V or 1/``Z_MAX`` of beta) or the
    process formats its commands otherwise: then each chip's commands are made here, as ``montecarlo_runs`` does."""
    analysis = validate_analysis(analysis)
    chip_list = [int(c) for c in chips]
    chip_arr = np.array(chip_list, dtype=np.int64)
    if ids is None:
        ids = [f"{id_prefix}c{chip:05d}" for chip in chip_list]
    seeds = None
    if deck.mismatch == "pdk" or (noise_seed is not None and deck.mismatch != "pdk"):
        base = seed if deck.mismatch == "pdk" else noise_seed
        seeds = np.array([derived_seed(base, chip) for chip in chip_list], dtype=np.int64)  # type: ignore[arg-type]
    block = RunBlock(ids=tuple(ids), analysis=analysis, save=save, chips=chip_arr, seeds=seeds, meta_seed=seed,
                     point=point)
    if deck.mismatch != "pelgrom":
        return block
    devices = mismatch.find_devices(deck.text, deck.process)
    if not devices:
        raise ParameterError("Pelgrom mismatch asked for a deck with no process transistors (X... nfet/pfet)")
    draws = _pelgrom_draws(devices, deck.process, seed)
    if draws is not None and chip_list:
        block = replace(block, pelgrom=draws)
        if block.commands(0) != mismatch.chip_commands(devices, deck.process, seed, chip_list[0]):
            draws = None  # the process formats its alter commands otherwise: make them here, one chip at a time
    if draws is None:
        block = replace(block, pelgrom=None, explicit=tuple(
            mismatch.chip_commands(devices, deck.process, seed, chip) for chip in chip_list))
    if chip_list:
        block[0]  # noqa: B018 - RunSpec checks the commands of the first run
    return block


def _pelgrom_draws(devices: list[mismatch.Device], process: Any, seed: int) -> PelgromDraws | None:
    """The lazily drawn mismatch of ``devices``, or None when a draw could fail ``alter_commands``' checks or its
    commands do not have the form ``<prefix><value:.12g>``."""
    mismatch.chip_seed(seed, 0)  # the seed's own check
    a_vt = np.array([process.pelgrom[d.kind][0] for d in devices], dtype=np.float64)
    a_beta = np.array([process.pelgrom[d.kind][1] for d in devices], dtype=np.float64)
    area = np.array([np.sqrt(d.w * d.l) for d in devices], dtype=np.float64)
    if not (np.all(np.isfinite(a_vt / area)) and np.all(np.isfinite(a_beta / area))
            and np.all(Z_MAX * np.abs(a_vt) / area < 0.999) and np.all(Z_MAX * np.abs(a_beta) / area < 0.999)):
        return None
    prefixes = []
    probe_vt, probe_beta = 0.5, 2.5
    for device in devices:
        commands = process.alter_commands(device.name, probe_vt, probe_beta)  # also checks the instance name
        if len(commands) != 2:
            return None
        for command, value in zip(commands, (probe_vt, probe_beta)):
            text = f"{value:.12g}"
            if not command.endswith("=" + text):
                return None
            prefixes.append(command[:-len(text)])
    return PelgromDraws(seed=int(seed), prefixes=tuple(prefixes), a_vt=a_vt, a_beta=a_beta, area=area)


def derived_seed(seed: int, index: int) -> int:
    """A 31-bit ngspice ``setseed`` value derived from (seed, index), reproducible."""
    return int(mismatch.chip_seed(seed, index).generate_state(1)[0] % (2**31 - 2)) + 1  # ngspice refuses seed 0


class Engine:
    """Runs jobs in worker processes. ``mode``: "shared" (libngspice via PySpice) or "batch" (``ngspice -b``)."""

    def __init__(self, mode: str = "shared", workers: int = 1, timeout_s: float = 120.0,
                 recycle_after: int = 20_000, max_rss_mb: float = 1024.0, max_growth_mb: float = 512.0) -> None:
        self.mode, self.timeout_s = mode, timeout_s
        self.pool = WorkerPool(workers=workers, mode=mode, recycle_after=recycle_after, max_rss_mb=max_rss_mb,
                               max_growth_mb=max_growth_mb)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.pool.close()

    def job(self, deck: Deck | str, runs: Sequence[RunSpec], label: str = "", timeout_s: float | None = None) -> Job:
        if isinstance(deck, str):
            deck = Deck(deck)
        return Job(deck=deck.text, runs=tuple(runs), init_commands=deck.init_commands,
                   timeout_s=timeout_s or self.timeout_s, label=label)

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[str, Outcome]]:
        """Stream ``(run_id, SimResult | SpicenetError)`` for every run of every job."""
        yield from self.pool.run(jobs)

    def run_all(self, jobs: Iterable[Job]) -> dict[str, Outcome]:
        return dict(self.run(jobs))

    def simulate(self, deck: Deck | str, analysis: str, *, seed: int | None = None,
                 commands: tuple[str, ...] = (), timeout_s: float | None = None) -> SimResult:
        """One analysis of one deck; raises the run's SpicenetError on failure."""
        run = RunSpec(id="run", analysis=validate_analysis(analysis), commands=commands, seed=seed)
        outcome = self.run_all([self.job(deck, [run], timeout_s=timeout_s)])["run"]
        if isinstance(outcome, SpicenetError):
            raise outcome
        return outcome

    def simulate_many(self, deck: Deck | str, runs: Sequence[RunSpec], chunk: int | None = None,
                      timeout_s: float | None = None, progress: str | None = None) -> dict[str, Outcome]:
        """Many runs on one deck, split into ``chunk``-sized jobs (default: one job per worker); ``progress``: the
        label of a progress bar on stderr counting finished runs (``spicenet.progress``; none when None)."""
        chunk = chunk or max(1, int(np.ceil(len(runs) / self.pool.n_workers)))
        jobs = [self.job(deck, runs[i:i + chunk], timeout_s=timeout_s) for i in range(0, len(runs), chunk)]
        if progress is None:
            return self.run_all(jobs)
        from spicenet.progress import progress_iter

        return dict(progress_iter(self.run(jobs), len(runs), progress))


def simulate(deck: Deck | str, analysis: str, mode: str = "shared", **kwargs: Any) -> SimResult:
    """Convenience: a one-off simulation in a fresh single-worker engine."""
    with Engine(mode=mode) as engine:
        return engine.simulate(deck, analysis, **kwargs)
