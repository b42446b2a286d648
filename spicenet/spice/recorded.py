"""Calibration runs recorded in a run store: every simulation of ``spicenet calibrate`` is kept, and resumable.

A calibration (``spicenet calibrate FAMILY -o cal.h5``) writes, beside its surrogate file, the run store
``cal.runs.h5`` (:func:`runs_path`: the surrogate's name with the suffix ``.runs.h5``): a layout-2 HDF5 run store of
:mod:`spicenet.store`, the same crash-safe journaled format a ``spicenet sweep`` writes, so
``spicenet.open_runs("cal.runs.h5").table()`` lists every run of the calibration -- its id, analysis, chip,
seed (the calibration's; the run's own ngspice seed is ``noise_seed`` in ``extra``), status (``ok`` | ``failed``),
ngspice's error, wall time, retries, its netlist (``/decks``), its ``alter`` commands and its saved vectors. The
surrogate's provenance names it: ``runs_file`` (the store's path relative to the surrogate's folder, i.e. its name)
and ``run_ids`` (the ids of every run the calibration used, in the order it asked for them).

:class:`RecordedEngine` is an :class:`~spicenet.spice.engine.Engine` wrapping the engine a calibration made: the
same ``job``/``run``/``run_all``/``simulate``/``simulate_many`` calls (they all go through :meth:`RecordedEngine.run`),
and every finished run -- a failed one with its error and status ``failed``: failures are data, as in a sweep -- is
appended to the store before the calibration sees it. With ``resume=True`` (``spicenet calibrate --resume``) a run
already stored with status ``ok`` under the same id *and* the same run hash is not simulated again: its stored
vectors come back as the :class:`~spicenet.spice.results.SimResult` (bit-identical values), so a killed calibration
continues where it stopped and fits exactly what an uninterrupted one fits. The run hash (``run_hash`` in ``extra``,
:func:`run_hash`) covers everything that defines the simulation: the deck text -- with every quoted absolute path
of an existing file (a model library ``.include``, a noise ``filesource``) replaced by the sha256 of the file's
bytes, so a noise file re-written to another temporary folder with the same content still matches, and a changed
model library does not --, the init commands, the analysis, the ``alter`` commands, the seed and the saved vectors.
A changed deck (another config, another fit upstream) is therefore simulated again and its new record replaces the
stored row; failed runs are always simulated again (as a resumed sweep retries failed points). Not in the hash: the
ngspice version and the engine mode (shared/batch).

Run ids must be unique within one calibration. :meth:`RecordedEngine.stage` names a stage; its runs are stored as
``<stage>:<run id>`` (the calibration still sees its own ids). An id that a calibration asks for a second time
anyway gets ``~2``, ``~3``, ... appended in the store (in call order, so a resumed calibration gets the same ids).

A :class:`RunRecorder` is the store of one calibration; several engines may record into it one after another
(:meth:`RunRecorder.engine`; the oscillator's network refinement runs in a second engine). The default of
``resume`` is the one :func:`resume_calibrations` sets (the CLI's ``--resume``), so family verbs that keep the
``calibrate(config, *, process, quick, output, workers, seed)`` signature get it without a new keyword.
Without resume an existing store is refused (:class:`~spicenet.store.StoreExistsError`, as ``spicenet sweep``
does).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import h5py
import numpy as np

from spicenet.errors import SpicenetError
from spicenet.spice.engine import Deck, Engine
from spicenet.spice.job import Job, RunSpec
from spicenet.spice.results import SimResult
from spicenet.spice.runner import Outcome

__all__ = ["RUNS_SUFFIX", "RecordedEngine", "RunRecorder", "resume_calibrations", "run_hash", "runs_path"]

RUNS_SUFFIX = ".runs.h5"
"""Suffix of a calibration's run store beside its surrogate file (``cal.h5`` -> ``cal.runs.h5``)."""

_RESUME: contextvars.ContextVar[bool] = contextvars.ContextVar("spicenet_calibration_resume", default=False)


def runs_path(output: str | os.PathLike[str]) -> Path:
    """The run store of the calibration whose surrogate is ``output``: ``cal.h5`` -> ``cal.runs.h5``."""
    return Path(output).with_suffix(RUNS_SUFFIX)


@contextlib.contextmanager
def resume_calibrations(resume: bool = True) -> Iterator[None]:
    """Within the block, a :class:`RunRecorder` made without ``resume`` resumes its store (``calibrate --resume``)."""
    token = _RESUME.set(bool(resume))
    try:
        yield
    finally:
        _RESUME.reset(token)


# ------------------------------------------------------------------------------------------------- run hash
_QUOTED = re.compile(r'"([^"\n]+)"')
_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_digest(path: str) -> str | None:
    """sha256 of a file's bytes (cached by path, size and mtime), None when ``path`` is no absolute file path."""
    if not os.path.isabs(path):
        return None
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return None
    if not os.path.isfile(path):
        return None
    key = (path, stat.st_size, stat.st_mtime_ns)
    digest = _FILE_DIGESTS.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        digest = _FILE_DIGESTS[key] = h.hexdigest()
    return digest


def _content_text(deck: str) -> str:
    """The deck with every quoted absolute path of an existing file replaced by the sha256 of its bytes."""
    def sub(match: re.Match[str]) -> str:
        digest = _file_digest(match.group(1))
        return match.group(0) if digest is None else f'"sha256:{digest}"'

    return _QUOTED.sub(sub, deck)


def run_hash(deck: str, init_commands: tuple[str, ...], run: RunSpec) -> str:
    """What defines one simulation, hashed (see the module docstring): a stored run is replayed only when equal."""
    text = json.dumps({"deck": _content_text(deck), "init": list(init_commands), "analysis": run.analysis,
                       "commands": list(run.commands), "seed": run.seed,
                       "save": None if run.save is None else list(run.save)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------------------------------------- the store
class _Snapshot:
    """The ``ok`` runs of a store file as it was opened (id -> row, run hash), read back as SimResults."""

    def __init__(self, path: Path) -> None:
        self.f = h5py.File(path, "r")
        from spicenet.store import store_layout

        self.rows: dict[str, tuple[int, str]] = {}
        if store_layout(self.f) != 2 or "table" not in self.f:
            return  # a layout-1 file (no calibration writes one): nothing is replayed, everything is re-simulated
        table = self.f["table"]
        n = int(table.attrs["rows"])
        ids = table["id"].asstr()[:n]
        status = table["status"].asstr()[:n]
        extra = table["extra"].asstr()[:n]
        for row, (rid, st, ex) in enumerate(zip(ids, status, extra)):
            if st == "ok" and ex:
                digest = json.loads(ex).get("run_hash")
                if digest:
                    self.rows[str(rid)] = (row, str(digest))
        self.analysis = table["analysis"].asstr()[:n]
        self.wall_s = table["wall_s"][:n]
        self.axis = table["axis"][:n]
        self.extra = extra
        axes = self.f["axes"]
        self.axes = (axes["name"].asstr()[:], axes["unit"].asstr()[:], axes["offset"][:], axes["length"][:])
        self.vectors: dict[str, tuple[h5py.Dataset, np.ndarray, np.ndarray, str, bool]] = {}
        self.present: dict[int, list[str]] = {row: [] for row, _ in self.rows.values()}
        wanted = np.zeros(n, dtype=bool)
        wanted[[row for row, _ in self.rows.values()]] = True
        for key in self.f["vectors"]:
            g = self.f["vectors"][key]
            name = str(g.attrs.get("name", key))
            lengths = g["length"][:n]
            self.vectors[name] = (g["data"], g["offset"][:n], lengths, str(g.attrs.get("unit", "")),
                                  bool(g.attrs.get("scalar", False)))
            for k in np.nonzero((lengths >= 0) & wanted)[0]:
                self.present[int(k)].append(name)
        self._whole: dict[str, np.ndarray] = {}
        self._budget = 256 << 20  # bytes of whole columns held in memory
        self._axis_data = axes["data"]

    def _values(self, name: str, start: int, length: int) -> np.ndarray:
        """``length`` values of vector ``name`` from ``start``: a column of at most 16 MiB is read once, whole (up
        to 256 MiB of them; one h5py read per run costs ~0.3 ms), a larger one sliced."""
        whole = self._whole.get(name)
        if whole is None:
            data = self.vectors[name][0]
            nbytes = int(data.size) * int(data.dtype.itemsize)
            if nbytes > 16 << 20 or nbytes > self._budget:
                return data[start:start + length]
            whole = self._whole[name] = data[:]
            self._budget -= nbytes
        return whole[start:start + length].copy()

    def result(self, rid: str, digest: str) -> SimResult | None:
        """The stored result of run ``rid`` when its run hash is ``digest``, else None."""
        found = self.rows.get(rid)
        if found is None or found[1] != digest:
            return None
        row = found[0]
        extra = json.loads(self.extra[row])
        complex_names = set(extra.get("complex", ()))
        vectors: dict[str, np.ndarray] = {}
        units: dict[str, str] = {}
        axis = int(self.axis[row])
        if axis >= 0:
            names, aunits, offsets, lengths = self.axes
            start = int(offsets[axis])
            vectors[str(names[axis])] = self._axis_data[start:start + int(lengths[axis])]
            units[str(names[axis])] = str(aunits[axis])
        for name in sorted(self.present[row]):  # a plot's own order: its scale, then the other names sorted
            _, offsets, lengths, unit, scalar = self.vectors[name]
            length = int(lengths[row])
            arr = self._values(name, int(offsets[row]), length)
            if scalar and length == 1:
                arr = arr.reshape(())
            if arr.dtype.kind == "c" and name not in complex_names:
                arr = np.ascontiguousarray(arr.real)  # real values stored in a column another run made complex
            vectors[name], units[name] = arr, unit
        wall = float(self.wall_s[row])
        return SimResult(analysis=str(self.analysis[row]), vectors=vectors, units=units,
                         mode=str(extra.get("mode", "shared")), wall_s=0.0 if np.isnan(wall) else wall,
                         attempts=list(extra.get("retries", [])))

    def close(self) -> None:
        self.f.close()


class RunRecorder:
    """The run store of one calibration (see the module docstring): opened by the first engine that records into
    it, closed when the last one closes, reopened (resumed) by a later one.

    ``resume``: None takes :func:`resume_calibrations`'s setting (default False: an existing store is refused).
    ``process``/``seed``: what every record names (the calibration's process and seed); ``config``: the
    calibration (family, config, ...) stored as the store's root attr ``config`` (JSON text). ``compression``:
    of the store's numeric columns and vectors (lossless; a calibration makes many vector names with few runs each,
    whose mostly empty chunks gzip shrinks ~8x: 30 MB -> 3.7 MB for the resistive quick calibration)."""

    def __init__(self, path: str | os.PathLike[str], *, resume: bool | None = None, process: str = "",
                 seed: int = 0, config: dict[str, Any] | None = None, compression: str | None = "gzip") -> None:
        self.path = Path(path)
        self.resume = _RESUME.get() if resume is None else bool(resume)
        self.process = process or "none"
        self.seed = int(seed)
        self.config = dict(config or {})
        self.compression = compression
        #: every stored id this calibration asked for, in the order it asked (the surrogate's provenance)
        self.run_ids: list[str] = []
        #: runs simulated and recorded / replayed from the store / failed (recorded with their error)
        self.counts = {"simulated": 0, "replayed": 0, "failed": 0}
        self._used: set[str] = set()
        self._store: Any = None
        self._snapshot: _Snapshot | None = None
        self._refs = 0
        self._opened = False

    # --------------------------------------------------------------------------------------------- lifetime
    def engine(self, engine: Engine) -> "RecordedEngine":
        """``engine`` recording into this store (close it, or use it as a context manager)."""
        return RecordedEngine(engine, self)

    def _open(self) -> None:
        if self._refs == 0:
            from spicenet.store import RunStore
            from spicenet.sweep import ngspice_version
            from spicenet import __version__

            # a reopening (a second engine of the same calibration) continues the file this calibration began
            # a calibration's run count is not known up front; it is typically 10^2-10^4 runs of many vectors each:
            # 1,024-row chunks (a larger calibration just has more of them)
            self._store = RunStore(self.path, resume=self.resume or self._opened, compression=self.compression,
                                   expected_rows=1024)
            try:
                self._store.set_root_attrs(spicenet_version=__version__, ngspice_version=ngspice_version(),
                                           config=json.dumps(self.config, sort_keys=True, default=str))
                if self.resume and self.path.exists():
                    self._snapshot = _Snapshot(self.path)
                    from spicenet.progress import logger

                    logger().debug(f"calibration runs: resuming {self.path} ({len(self._snapshot.rows)} stored "
                                   f"ok runs can be replayed)")
            except BaseException:
                self._store.close()
                self._store = None
                raise
            self._opened = True
        self._refs += 1

    def _release(self) -> None:
        if self._refs <= 0:
            return
        self._refs -= 1
        if self._refs == 0:
            snapshot, store = self._snapshot, self._store
            self._snapshot = self._store = None
            from spicenet.progress import logger

            c = self.counts
            logger().debug(f"calibration runs: {self.path}: {c['simulated']} simulated ok, {c['failed']} failed, "
                           f"{c['replayed']} read back from the store")
            try:
                if snapshot is not None:
                    snapshot.close()
            finally:
                if store is not None:
                    store.close()

    def close(self) -> None:
        """Close the store now (whatever engines still hold it)."""
        if self._refs > 0:
            self._refs = 1
            self._release()

    def __enter__(self) -> "RunRecorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def provenance(self, surrogate: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """``{"runs_file", "run_ids"}`` for a surrogate's provenance: the store's path relative to the folder of
        ``surrogate`` (its bare name when beside it) and the ids of the runs this calibration used."""
        runs_file = str(self.path)
        if surrogate is not None:
            runs_file = os.path.relpath(self.path.resolve(), Path(surrogate).resolve().parent)
        return {"runs_file": runs_file, "run_ids": list(self.run_ids)}

    # ------------------------------------------------------------------------------------------------- runs
    def _assign(self, stage: str | None, run_id: str) -> str:
        """The stored id of a run: ``<stage>:<id>``, made unique within the calibration with ``~2``, ``~3``...
        (a ``/``, which a store id cannot hold, is written ``%2F``)."""
        run_id = run_id.replace("/", "%2F")
        key = f"{stage}:{run_id}" if stage else run_id
        if key in self._used:
            n = 2
            while f"{key}~{n}" in self._used:
                n += 1
            key = f"{key}~{n}"
        self._used.add(key)
        self.run_ids.append(key)
        return key

    def _stored(self, key: str, digest: str) -> SimResult | None:
        return None if self._snapshot is None else self._snapshot.result(key, digest)

    def _record(self, key: str, stage: str | None, job: Job, run: RunSpec, digest: str, outcome: Outcome,
                mode: str) -> None:
        from spicenet.store import RunRecord

        if self._store is None:
            raise SpicenetError(f"calibration run store {self.path} is closed")
        result = outcome if isinstance(outcome, SimResult) else None
        attrs: dict[str, Any] = {"analysis": run.analysis, "mode": result.mode if result else mode,
                                 "wall_s": result.wall_s if result else None,
                                 "retries": result.attempts if result else getattr(outcome, "attempts", []),
                                 "noise_seed": run.seed, "run_hash": digest}
        if stage:
            attrs["stage"] = stage
        if job.label:
            attrs["label"] = job.label
        if job.init_commands:
            attrs["init_commands"] = list(job.init_commands)
        if run.meta:
            attrs["meta"] = json.loads(json.dumps(run.meta, default=str))
        chip = run.meta.get("chip", -1)
        if not isinstance(chip, (int, np.integer)) or isinstance(chip, bool) or chip < -1:
            chip = -1
        vectors: dict[str, np.ndarray] = result.vectors if result else {}
        complex_names = [name for name, arr in vectors.items() if np.iscomplexobj(arr)]
        if complex_names:
            attrs["complex"] = complex_names
        record = RunRecord(
            id=key, params={"stage": stage} if stage else {}, seed=self.seed, chip=int(chip), process=self.process,
            status="ok" if result else "failed", error=None if result else f"{type(outcome).__name__}: {outcome}",
            netlist=job.deck, vectors=vectors, units=result.units if result else {}, attrs=attrs,
            alters=run.commands, scale=result.scale if result else None)
        self._store.append(record)
        self.counts["simulated" if result else "failed"] += 1


class _Stage:
    """Sets an engine's stage at once; as a context manager it restores the previous stage at the end."""

    def __init__(self, engine: "RecordedEngine", name: str | None) -> None:
        if name is not None and (not name or "/" in name or ":" in name or not name.isprintable()):
            raise ValueError(f"stage name must be a printable string without '/' or ':', got {name!r}")
        self.engine, self.previous = engine, engine.current_stage
        engine.current_stage = name

    def __enter__(self) -> "_Stage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.engine.current_stage = self.previous


class RecordedEngine(Engine):
    """``engine`` with every run recorded in a run store, and (resume) stored runs replayed (module docstring).

    ``store``: the store's path (a :class:`RunRecorder` made with ``resume`` and ``recorder_kwargs`` is owned and
    closed with this engine) or a shared :class:`RunRecorder`. Closing closes ``engine`` too."""

    def __init__(self, engine: Engine, store: str | os.PathLike[str] | RunRecorder, resume: bool | None = None,
                 **recorder_kwargs: Any) -> None:
        # no Engine.__init__: the wrapped engine's pool does the work
        self.inner = engine
        self.mode, self.timeout_s, self.pool = engine.mode, engine.timeout_s, engine.pool
        if isinstance(store, RunRecorder):
            if resume is not None or recorder_kwargs:
                raise ValueError("resume and recorder settings belong to the RunRecorder when one is given")
            self.recorder = store
        else:
            self.recorder = RunRecorder(store, resume=resume, **recorder_kwargs)
        self.current_stage: str | None = None
        self._closed = False
        try:
            self.recorder._open()
        except BaseException:
            engine.close()
            raise

    @property
    def run_ids(self) -> list[str]:
        """The stored ids of every run asked for so far (of the whole recorder)."""
        return list(self.recorder.run_ids)

    @property
    def runs_file(self) -> Path:
        return self.recorder.path

    def stage(self, name: str | None) -> _Stage:
        """Name the stage of the following runs (stored as ``<name>:<id>``; None: no prefix). Takes effect at
        once; ``with engine.stage(name):`` restores the previous stage after the block."""
        return _Stage(self, name)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.inner.close()
        finally:
            self.recorder._release()

    def __enter__(self) -> "RecordedEngine":
        return self

    def job(self, deck: Deck | str, runs: Sequence[RunSpec], label: str = "", timeout_s: float | None = None) -> Job:
        return self.inner.job(deck, runs, label=label, timeout_s=timeout_s)

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[str, Outcome]]:
        """Stream ``(run_id, SimResult | SpicenetError)`` for every run of every job (the caller's own ids):
        first the runs replayed from the store, then the simulated ones as they finish, each recorded before it
        is yielded. The stored ids are assigned (and the stage read) when ``run`` is called."""
        if self._closed:
            raise SpicenetError("the recorded engine is closed")
        rec = self.recorder
        stage = self.current_stage
        todo: list[Job] = []
        replayed: list[tuple[str, SimResult]] = []
        pending: dict[str, list[tuple[str, Job, RunSpec, str]]] = {}
        for job in jobs:
            left = []
            for run in job.runs:
                key = rec._assign(stage, run.id)
                digest = run_hash(job.deck, job.init_commands, run)
                stored = rec._stored(key, digest) if rec.resume else None
                if stored is not None:
                    replayed.append((run.id, stored))
                else:
                    pending.setdefault(run.id, []).append((key, job, run, digest))
                    left.append(run)
            if len(left) == len(job.runs):
                todo.append(job)
            elif left:
                todo.append(dataclasses.replace(job, runs=tuple(left)))
        return self._stream(stage, replayed, todo, pending)

    def _stream(self, stage: str | None, replayed: list[tuple[str, SimResult]], todo: list[Job],
                pending: dict[str, list[tuple[str, Job, RunSpec, str]]]) -> Iterator[tuple[str, Outcome]]:
        rec = self.recorder
        for run_id, result in replayed:
            rec.counts["replayed"] += 1
            yield run_id, result
        if not todo:
            return
        for run_id, outcome in self.inner.run(todo):
            waiting = pending.get(run_id)
            if waiting:
                key, job, run, digest = waiting.pop(0)
                rec._record(key, stage, job, run, digest, outcome, self.mode)
            yield run_id, outcome
