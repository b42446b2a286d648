"""Worker processes that run ngspice jobs, with per-run timeouts, crash isolation and recycling.

ngspice's shared library is a process-wide singleton, not thread-safe, grows by MiBs per transient and can abort
the process on some errors. Every simulation therefore runs in a child process started with ``subprocess`` (not
``multiprocessing``, so pools also work inside daemonic Dask workers) and spoken to over two pipes with
``multiprocessing.connection.Connection`` (framed messages).

The parent (``WorkerPool``) hands each idle worker one job (a deck and a chunk of runs) per message. The worker
sends the finished runs back in batches, not one message per run: a batch goes when ``batch_runs`` runs are waiting
or the oldest has waited ``batch_wait_s`` (checked after every run and by a flusher thread while a run is still
inside ngspice, so results stream out however long the next run takes), and before every job-level message.
Results travel in a compact form (names, units, dtypes and one byte string of all the batch's vector data; an
error as its pickled exception) and are rebuilt into ``SimResult`` objects with the same bits in the parent.

Which run a worker is in, and since when, the parent reads from a small shared-memory slot the worker writes at the
start of every run (a seqlock-guarded ``(dispatch token, run position, start time)``; ``time.monotonic`` is one
clock system-wide on Linux), not from the messages. So, however the results are batched:

- a run that exceeds its job's ``timeout_s`` (counted from its own start) gets its worker killed (SIGKILL); that run
  fails with ``SimulationTimeout``;
- a worker that dies (segfault, abort, OOM kill) fails the run it was in with ``WorkerCrashed``;
- in both cases the runs it had finished but not yet sent are simulated again in a fresh worker (the same commands
  on a freshly loaded deck: the same numbers), and the job's remaining runs go to a fresh worker;
- a worker is replaced after ``recycle_after`` runs (20,000), once its resident memory has grown by ``max_growth_mb``
  (512 MiB) since its first results, or once it passes ``max_rss_mb`` (1 GiB), which keeps memory flat over
  arbitrarily many runs (a fresh worker costs ~0.5 s of CPU: replacing one every 2,000 sub-millisecond runs, as
  before, took a third of a sweep's time).

Workers start in parallel (``WorkerPool.start`` returns at once; a pool's first workers load libngspice before they
wait for their first job, so that overlaps with the caller's planning; a replacement reads its job first, so that
the parent never waits to hand it over) and stop in parallel (``close``).

Workers die with their parent and never outlive a run's time limit, even when the parent is killed (SIGKILL,
SIGTERM) and cannot clean up: each worker asks the kernel for SIGKILL when its parent dies
(``prctl(PR_SET_PDEATHSIG)``, Linux), and a watchdog thread in the worker kills it when its parent process is gone
(the parent pid changed: reparented), when the parent's pipe closes, or when the current run has run past its
job's ``timeout_s`` (plus a grace of 10 % + 5 s, so the parent's own timeout normally fires first). ``ngspice -b``
processes of the batch mode get the same parent-death signal. (Linux sends it when the *thread* that started the
worker ends: a pool used from a short-lived thread sees its workers replaced, as after a crash.)
"""

from __future__ import annotations

import math
import mmap
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable, Iterable, Iterator, Union, cast

import numpy as np

from spicenet.errors import SimulationError, SimulationTimeout, SpicenetError, WorkerCrashed
from spicenet.spice.job import Job, RunBlock
from spicenet.spice.results import SimResult
from spicenet.spice.runner import Outcome

#: a batch of results is sent once this many runs are waiting ...
BATCH_RUNS = 256
#: ... or once the oldest waiting result is this old (seconds)
BATCH_WAIT_S = 0.02


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - non-Linux
        return 0.0


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux ``prctl``; a no-op elsewhere). Also usable
    as a ``preexec_fn`` (the setting survives ``exec``)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


class _Watchdog:
    """A daemon thread that SIGKILLs this worker when its parent is gone or the current run is overdue."""

    def __init__(self, parent_pid: int, period_s: float = 0.5) -> None:
        self.parent_pid, self.period_s = parent_pid, period_s
        self.deadline: float | None = None  # monotonic time after which the current run is overdue
        threading.Thread(target=self._loop, name="spicenet-watchdog", daemon=True).start()

    def arm(self, timeout_s: float) -> None:
        self.deadline = time.monotonic() + 1.1 * timeout_s + 5.0

    def disarm(self) -> None:
        self.deadline = None

    def _loop(self) -> None:
        while True:
            overdue = self.deadline is not None and time.monotonic() > self.deadline
            if os.getppid() != self.parent_pid or overdue:
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(self.period_s)


# -- where a worker is: a shared-memory slot ---------------------------------------------------------------------
_SEQ = struct.Struct("q")
_POS = struct.Struct("qqd")  # dispatch token, position of the run in its job, monotonic start time of that run
_SLOT_BYTES = _SEQ.size + _POS.size


class _Slot:
    """``(token, position, started)`` of the run a worker is in, in a shared mapping of a memfd. One writer (the
    worker), one reader (the parent); a sequence number, odd while a write is in progress, lets the reader detect
    and retry a torn read."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.map = mmap.mmap(fd, _SLOT_BYTES)
        self.seq = 0

    @classmethod
    def create(cls) -> "_Slot":
        # close-on-exec (the default): only the worker it is passed to (``pass_fds``) inherits it
        fd = os.memfd_create("spicenet-worker") if hasattr(os, "memfd_create") else _tmp_fd()
        os.ftruncate(fd, _SLOT_BYTES)
        return cls(fd)

    def write(self, token: int, position: int) -> None:
        self.seq += 1
        _SEQ.pack_into(self.map, 0, self.seq)
        _POS.pack_into(self.map, _SEQ.size, token, position, time.monotonic())
        self.seq += 1
        _SEQ.pack_into(self.map, 0, self.seq)

    def read(self) -> tuple[int, int, float] | None:
        for _ in range(1000):
            (s1,) = _SEQ.unpack_from(self.map, 0)
            if s1 % 2 == 0:
                value = _POS.unpack_from(self.map, _SEQ.size)
                (s2,) = _SEQ.unpack_from(self.map, 0)
                if s1 == s2:
                    return value
        return None  # a writer that died in the middle of a write

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


def _tmp_fd() -> int:  # pragma: no cover - systems without memfd_create
    import tempfile

    fd, path = tempfile.mkstemp(prefix="spicenet-slot-")
    os.unlink(path)
    return fd


# -- results on the wire -----------------------------------------------------------------------------------------
def pack_outcomes(items: list[tuple[str, Outcome]]) -> tuple[list[tuple], bytes]:
    """A batch of ``(run_id, outcome)`` as ``(entries, data)``: per run its id and either its pickled error or its
    result's scalars with the names, units, dtypes and shapes of its vectors; ``data`` holds every vector's bytes
    in order. Far cheaper to pickle and unpickle than the ``SimResult`` objects with their numpy arrays."""
    entries: list[tuple] = []
    chunks: list[bytes] = []
    for run_id, outcome in items:
        if isinstance(outcome, SimResult):
            arrays = list(outcome.vectors.values())
            chunks.extend(a.tobytes() for a in arrays)
            entries.append((run_id, outcome.analysis, tuple(outcome.vectors), tuple(outcome.units.items()),
                            tuple(a.dtype.str for a in arrays), tuple(a.shape for a in arrays), outcome.mode,
                            outcome.wall_s, outcome.attempts, outcome.log))
        else:
            entries.append((run_id, pickle.dumps(outcome)))
    return entries, b"".join(chunks)


def unpack_outcomes(entries: list[tuple], data: bytes) -> list[tuple[str, Outcome]]:
    """Inverse of :func:`pack_outcomes`: every array a writable copy with the original dtype, shape and bits."""
    out: list[tuple[str, Outcome]] = []
    offset = 0
    for entry in entries:
        if len(entry) == 2:
            out.append((entry[0], pickle.loads(entry[1])))
            continue
        run_id, analysis, names, units, dtypes, shapes, mode, wall_s, attempts, log = entry
        vectors = {}
        for name, dtype, shape in zip(names, dtypes, shapes):
            dt = np.dtype(dtype)
            count = int(np.prod(shape, dtype=np.int64))
            vectors[name] = np.frombuffer(data, dt, count, offset).reshape(shape).copy()
            offset += count * dt.itemsize
        out.append((run_id, SimResult(analysis=analysis, vectors=vectors, units=dict(units), mode=mode,
                                      wall_s=wall_s, attempts=attempts, log=log)))
    return out


@dataclass
class ResultColumns:
    """Finished runs of a block job (a :class:`~spicenet.spice.job.RunBlock`) as columns: one message, no
    per-run objects. Vector ``names[j]`` of run ``k`` is ``data[j][offsets[j][k]:][:lengths[k, j]]`` (length -1:
    the run has none -- it failed); ``errors``, ``attempts`` (convergence retries) and ``logs`` hold what only some
    runs have, by position in the batch; ``alter_values`` the values its mismatch commands pushed
    (``RunBlock.alter_values``). :meth:`outcome` rebuilds a run's ``SimResult`` with the same bits."""

    count: int
    analysis: str
    names: tuple[str, ...]
    units: tuple[str, ...]
    ndims: tuple[int, ...]
    data: tuple[np.ndarray, ...]
    lengths: np.ndarray  # (count, len(names)) int64
    wall_s: np.ndarray  # (count,) float64, NaN where failed
    errors: dict[int, SpicenetError] = field(default_factory=dict)
    attempts: dict[int, list[dict]] = field(default_factory=dict)
    logs: dict[int, list[str]] = field(default_factory=dict)
    alter_values: np.ndarray | None = None
    mode: str = "shared"

    @property
    def offsets(self) -> np.ndarray:
        """(count, len(names)): where each run's values start in ``data[j]``."""
        sizes = np.maximum(self.lengths, 0)
        return np.cumsum(sizes, axis=0) - sizes

    def outcome(self, k: int, offsets: np.ndarray | None = None) -> Outcome:
        if k in self.errors:
            return self.errors[k]
        offsets = self.offsets if offsets is None else offsets
        vectors = {}
        for j, name in enumerate(self.names):
            n = int(self.lengths[k, j])
            if n < 0:
                continue
            arr = self.data[j][int(offsets[k, j]):int(offsets[k, j]) + n].copy()
            vectors[name] = arr.reshape(()) if self.ndims[j] == 0 else arr
        units = {name: unit for name, unit in zip(self.names, self.units) if name in vectors}
        return SimResult(analysis=self.analysis, vectors=vectors, units=units, mode=self.mode,
                         wall_s=float(self.wall_s[k]), attempts=list(self.attempts.get(k, [])),
                         log=list(self.logs.get(k, [])))

    def outcomes(self) -> list[Outcome]:
        offsets = self.offsets
        return [self.outcome(k, offsets) for k in range(self.count)]


_FAST = ()  # a lengths entry: the run's chunk sizes


class _Columns:
    """The worker's buffer of a block job's finished runs, made into a :class:`ResultColumns` when sent. Every ok
    run of one buffer has the same vectors (names, dtypes, ndims, units): a run with others is sent in the next."""

    def __init__(self, analysis: str, mode: str, alters: int) -> None:
        self.analysis, self.mode, self.alters = analysis, mode, alters
        self.layout: tuple | None = None  # (names, units, dtypes, ndims)
        self.chunks: list[list[bytes]] = []
        self.lengths: list[Any] = []  # per run: its lengths, None (failed) or _FAST (from its chunks)
        self.wall: list[float] = []
        self.errors: dict[int, SpicenetError] = {}
        self.attempts: dict[int, list[dict]] = {}
        self.logs: dict[int, list[str]] = {}
        self.alter_rows: list[list[float]] = []

    def __len__(self) -> int:
        return len(self.wall)

    def fits(self, layout: tuple) -> bool:
        return self.layout is None or self.layout == layout

    def add_fast(self, layout: tuple, chunks: list[bytes], wall_s: float, alters: list[float]) -> None:
        """An ok run read by the block path: one bytes chunk per vector of ``layout`` (float64)."""
        if self.layout is None:
            self.layout = layout
            self.chunks = [[] for _ in layout[0]]
        for column, chunk in zip(self.chunks, chunks):
            column.append(chunk)
        self.lengths.append(_FAST)
        self.wall.append(wall_s)
        self.alter_rows.append(alters)

    def add_fast_unchecked(self, chunks: list[bytes], wall_s: float, alters: list[float]) -> None:
        """``add_fast`` once the buffer has this run's layout."""
        for column, chunk in zip(self.chunks, chunks):
            column.append(chunk)
        self.lengths.append(_FAST)
        self.wall.append(wall_s)
        self.alter_rows.append(alters)

    def add_result(self, result: SimResult, alters: list[float]) -> None:
        arrays = [np.ascontiguousarray(a) for a in result.vectors.values()]
        layout = _layout_of(result, arrays)
        if self.layout is None:
            self.layout = layout
            self.chunks = [[] for _ in layout[0]]
        k = len(self.wall)
        for column, arr in zip(self.chunks, arrays):
            column.append(arr.tobytes())
        self.lengths.append(tuple(int(a.size) for a in arrays))
        self.wall.append(result.wall_s)
        if result.attempts:
            self.attempts[k] = result.attempts
        if result.log:
            self.logs[k] = result.log
        self.alter_rows.append(alters)

    def add_error(self, error: SpicenetError, alters: list[float]) -> None:
        k = len(self.wall)
        self.errors[k] = error
        self.lengths.append(None)
        self.wall.append(math.nan)
        self.alter_rows.append(alters)

    def take(self) -> ResultColumns:
        names, units, dtypes, ndims = self.layout if self.layout is not None else ((), (), (), ())
        none = (-1,) * len(names)
        rows = self.lengths
        if _FAST in rows:  # fast rows: the sizes of their chunks (each column holds one chunk per ok run)
            sizes = [iter([len(c) // np.dtype(dt).itemsize for c in column]) for column, dt in zip(self.chunks, dtypes)]
            rows = [tuple(next(it) for it in sizes) if row is _FAST else row for row in rows]
        lengths = np.array([none if row is None else row for row in rows], dtype=np.int64).reshape(
            len(self.wall), len(names))
        data = tuple(np.frombuffer(b"".join(column), dtype=np.dtype(dt)) for column, dt in zip(self.chunks, dtypes))
        alter_values = (np.array(self.alter_rows, dtype=np.float64).reshape(len(self.wall), self.alters)
                        if self.alters else None)
        cols = ResultColumns(count=len(self.wall), analysis=self.analysis, names=names, units=units, ndims=ndims,
                             data=data, lengths=lengths, wall_s=np.array(self.wall, dtype=np.float64),
                             errors=self.errors, attempts=self.attempts, logs=self.logs, alter_values=alter_values,
                             mode=self.mode)
        self.__init__(self.analysis, self.mode, self.alters)  # type: ignore[misc]
        return cols


def _layout_of(result: SimResult, arrays: list[np.ndarray]) -> tuple:
    names = tuple(result.vectors)
    return (names, tuple(result.units.get(n, "") for n in names), tuple(a.dtype.str for a in arrays),
            tuple(a.ndim for a in arrays))


class _Outbox:
    """The worker's sending side: finished runs wait in a buffer and go as one message (see the module docstring);
    a flusher thread sends a buffer that has waited ``wait_s`` while the main thread is inside ngspice (cffi calls
    release the GIL). One lock orders every send. Runs of a block job wait as columns (:class:`_Columns`), others
    as ``(run_id, outcome)`` items."""

    def __init__(self, conn: Connection, runs: int = BATCH_RUNS, wait_s: float = BATCH_WAIT_S) -> None:
        self.conn, self.runs, self.wait_s = conn, runs, wait_s
        self.lock = threading.Lock()
        self.items: list[tuple[str, Outcome]] = []
        self.columns: _Columns | None = None
        self.token = 0
        self.since = 0.0
        threading.Thread(target=self._loop, name="spicenet-flusher", daemon=True).start()

    def add(self, token: int, run_id: str, outcome: Outcome, runs: int, wait_s: float) -> None:
        """Queue one finished run (``runs``, ``wait_s``: this job's batch limits)."""
        with self.lock:
            if not self.items:
                self.since = time.monotonic()
            self.token, self.runs, self.wait_s = token, runs, wait_s
            self.items.append((run_id, outcome))
            if len(self.items) >= runs or time.monotonic() - self.since >= wait_s:
                self._flush()

    def begin_columns(self, token: int, columns: _Columns, runs: int, wait_s: float) -> None:
        """The runs of block job ``token`` go into ``columns`` (:meth:`add_columns`) from now on."""
        with self.lock:
            self._flush()
            self.token, self.runs, self.wait_s, self.columns = token, runs, wait_s, columns

    def add_columns(self, method: str, *args: Any) -> None:
        """``columns.<method>(*args)`` (one finished run), flushing first when its vectors differ from the
        buffer's (``add_result``) and after when the batch is due."""
        with self.lock:
            columns = self.columns
            assert columns is not None
            if method == "add_result" and not columns.fits(_layout_of(args[0], list(args[0].vectors.values()))):
                self._flush()
            elif method == "add_fast" and not columns.fits(args[0]):
                self._flush()
            if not len(columns):
                self.since = time.monotonic()
            getattr(columns, method)(*args)
            if len(columns) >= self.runs or time.monotonic() - self.since >= self.wait_s:
                self._flush()

    def add_fast(self, layout: tuple, chunks: list[bytes], wall_s: float, alters: list[float]) -> None:
        """``add_columns("add_fast", ...)`` without the indirection (the block path's per-run call)."""
        with self.lock:
            columns = self.columns
            assert columns is not None
            now = time.monotonic()
            if columns.layout is layout and columns.wall:
                columns.add_fast_unchecked(chunks, wall_s, alters)
            else:
                if columns.layout is not None and not columns.fits(layout):
                    self._flush()
                if not columns.wall:
                    self.since = now
                columns.add_fast(layout, chunks, wall_s, alters)
            if len(columns.wall) >= self.runs or now - self.since >= self.wait_s:
                self._flush()

    def send(self, message: tuple) -> None:
        """A job-level message, after every result still waiting."""
        with self.lock:
            self._flush()
            self.columns = None
            self.conn.send(message)

    def _flush(self) -> None:
        if self.items:
            items, self.items = self.items, []
            self.conn.send(("runs", self.token, *pack_outcomes(items), _rss_mb()))
        if self.columns is not None and len(self.columns):
            self.conn.send(("cols", self.token, self.columns.take(), _rss_mb()))

    def _loop(self) -> None:
        while True:
            time.sleep(min(self.wait_s, 0.5))
            with self.lock:
                waiting = self.items or (self.columns is not None and len(self.columns))
                if waiting and time.monotonic() - self.since >= self.wait_s:
                    try:
                        self._flush()
                    except OSError:  # the parent is gone: the watchdog ends this process
                        return


class _Replay:
    """A session for ``runner.run_one`` whose first ``analysis`` command is not sent again but answers with the
    lines of the attempt the block path already made (so the retry ladder starts exactly where it would have)."""

    def __init__(self, session: Any, analysis: str, lines: list[str]) -> None:
        self._session, self._analysis = session, analysis
        self._lines_of_attempt: list[str] | None = lines

    def command(self, text: str) -> list[str]:
        if self._lines_of_attempt is not None and text == self._analysis:
            lines, self._lines_of_attempt = self._lines_of_attempt, None
            return lines
        return self._session.command(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def _fast_layout(session: Any, plot: str, kept: list[str], result: SimResult) -> tuple | None:
    """How the block path reads the next runs' vectors straight into bytes: per vector of ``result`` (in its
    order) ``(b".<raw ngspice name>", vector type)``, when ``result`` is exactly the real vectors ``kept`` of one
    plot; else None (the runs are read as ``run_one`` reads them)."""
    lib, ffi = session._lib, session._ffi
    by_name: dict[str, tuple[bytes, int]] = {}
    for raw in kept:
        info = lib.ngGet_Vec_Info(f"{plot}.{raw}".encode("utf8"))
        if info == ffi.NULL or info.v_compdata != ffi.NULL:
            return None
        vtype = int(info.v_type)
        named = session._named.get((raw, vtype))
        if named is None:
            return None
        by_name[named[0]] = (b"." + raw.encode("utf8"), vtype)
    if set(by_name) != set(result.vectors) or len(by_name) != len(kept):
        return None
    if not all(a.dtype == np.float64 and a.ndim == 1 for a in result.vectors.values()):
        return None
    arrays = list(result.vectors.values())
    return tuple(by_name[name] for name in result.vectors), _layout_of(result, arrays)


def _plot_names(lib: Any, ffi: Any) -> list[bytes]:
    """``Session.plot_names`` as bytes (no decoding)."""
    names = []
    array = lib.ngSpice_AllPlots()
    i = 0
    while array[i] != ffi.NULL:
        names.append(ffi.string(array[i]))
        i += 1
    return names


def _block_alters(block: Any, start: int, stop: int) -> tuple[list[list[str]], list[list[float]]]:
    """The alter commands of runs ``start:stop`` of a block and the values of their mismatch part (as stored)."""
    commands: list[list[str]] = []
    values: list[list[float]] = []
    pel = block.pelgrom
    if block.explicit is not None:
        commands = [list(block.explicit[k]) for k in range(start, stop)]
        values = [[] for _ in commands]
    elif pel is not None and block.chips is not None:
        for row in pel.values(block.chips[start:stop]).tolist():
            texts = [f"{v:.12g}" for v in row]
            commands.append([p + t for p, t in zip(pel.prefixes, texts)])
            values.append([float(t) for t in texts])
    else:
        commands = [[] for _ in range(start, stop)]
        values = [[] for _ in commands]
    if block.input_values is not None:
        heads = [f"alter {name} dc = " for name in block.input_sources]
        for command, row in zip(commands, block.input_values[start:stop].tolist()):
            command.extend(h + repr(v) for h, v in zip(heads, row))
    return commands, values


#: runs whose alter commands the block path makes at a time
_DRAW_CHUNK = 64


def block_signature(job: Job) -> tuple | None:
    """What a block job's runs push into its loaded deck: jobs of one deck with the same signature alter the same
    things before every analysis, so the second can run on the deck as the first left it (None: not such a job)."""
    block = job.runs
    if not isinstance(block, RunBlock) or block.explicit is not None:
        return None
    return (job.deck, job.init_commands, block.pelgrom.prefixes if block.pelgrom is not None else (),
            block.input_sources)


def execute_block(session: Any, job: Job, out: _Outbox, skip: int, started: Any, loaded: bool = False) -> bool:
    """Run ``job.runs[skip:]`` (a ``RunBlock``) on ``session`` as ``runner.execute_job`` does -- the same commands,
    the same retry ladder, the same numbers -- but without per-run objects: each run's commands are made from the
    block's arrays, and once a run of the loaded deck has shown its plot's vectors the next runs' are copied
    straight into the outgoing columns. ``started(position)``: called as each run starts (the slot, the watchdog).
    ``loaded``: the deck is loaded already (the previous job, of the same :func:`block_signature`, ended cleanly).
    Returns whether this one did (every run's plots destroyed, no retry options left set)."""
    from spicenet.errors import SimulationError as _SimError
    from spicenet.spice.job import RunBlock, RunSpec
    from spicenet.spice.ngshared import Session
    from spicenet.spice.results import merge_plots
    from spicenet.spice.runner import _ABORTED, _content, _read_plots, load_deck, run_one

    block = job.runs
    assert isinstance(block, RunBlock), "execute_block needs a RunBlock job"
    lib, ffi, lines = session._lib, session._ffi, session._lines
    analysis = block.analysis
    save = block.save
    failure = None if loaded else load_deck(session, job)
    analysis_b = b""
    if failure is None:  # what Session.command raises at the first run's analysis
        if "\n" in analysis or len(analysis) > 1023:
            raise ValueError(f"an ngspice command must be one line of < 1024 characters: {analysis[:60]!r}")
        analysis_b = analysis.encode("ascii")
    # the plots left by this path's own "destroy all" (ngspice's "const"): 'before' of the next run
    after_destroy = set(session.plot_names())
    before_b = {p.encode("utf8") for p in after_destroy | {"const"}}
    clean = True
    dirty = False
    layouts: dict = {}
    fast: tuple | None = None  # (per vector (suffix, vtype), layout) once known
    n = len(block)
    k = skip

    def done(method: str, *args: Any) -> None:
        started(k + 1)  # the next run starts now (before the result is queued, as ``emit`` does)
        out.add_columns(method, *args)

    commands_chunk: list[list[str]] = []
    values_chunk: list[list[float]] = []
    chunk_start = skip
    for k in range(skip, n):
        if k - chunk_start >= len(commands_chunk):
            chunk_start = k
            commands_chunk, values_chunk = _block_alters(block, k, min(n, k + _DRAW_CHUNK))
        commands = commands_chunk[k - chunk_start]
        alters = values_chunk[k - chunk_start]
        if failure is not None:
            done("add_error", failure, alters)
            continue
        if dirty:  # the ladder changed options: start the next run from the deck as written
            failure = load_deck(session, job)
            dirty = False
            clean = False
            if failure is not None:
                done("add_error", failure, alters)
                continue
        seed = block.seed(k)
        t0 = time.perf_counter()
        try:
            if seed is not None:
                session.command(f"setseed {seed}")
                session.command("reset")
            for command in commands:
                lines.clear()
                rc = lib.ngSpice_Command(command.encode("ascii"))
                if lines or rc:  # as Session.command reports it
                    said = list(lines) + ([f"stderr spicenet: ngSpice_Command returned {rc} for {command!r}"]
                                          if rc else [])
                    errors = Session.errors(said)
                    if errors:
                        raise _SimError(f"run {block.ids[k]!r}: {command!r} failed: {errors[0]}")
            clean_before = clean
            before = after_destroy if clean else set(session.plot_names())
            clean = False
            lines.clear()  # the analysis, as Session.command sends it
            rc = lib.ngSpice_Command(analysis_b)
            said = list(lines) + ([f"stderr spicenet: ngSpice_Command returned {rc} for {analysis!r}"] if rc else [])
            text = "".join(said).lower()  # _ABORTED needs one of these words: test it only then
            failed = ("aborted" in text or "parsed" in text) and any(_ABORTED.search(t) for t in _content(said))
            if clean_before:  # the plots are "const" and what this analysis made
                names = _plot_names(lib, ffi)
                made = [p.decode("utf8", "replace") for p in reversed(names) if p not in before_b]
            else:
                made = [p for p in reversed(session.plot_names()) if p not in before and p != "const"]
            if failed or not made:  # the retry ladder, from where this attempt left it
                run = RunSpec(id=block.ids[k], analysis=analysis, commands=tuple(commands), seed=seed, save=save)
                result = run_one(cast(Session, _Replay(session, analysis, said)), run, layouts)
                dirty = bool(result.attempts)
                done("add_result", result, alters)
                continue
            if fast is not None and len(made) == 1:
                prefix = made[0].encode("utf8")
                chunks = []
                for suffix, vtype in fast[0]:
                    info = lib.ngGet_Vec_Info(prefix + suffix)
                    if info == ffi.NULL or info.v_type != vtype or info.v_compdata != ffi.NULL:
                        break
                    chunks.append(ffi.buffer(info.v_realdata, info.v_length * 8)[:])
                else:
                    lines.clear()
                    lib.ngSpice_Command(b"destroy all")
                    clean = True
                    started(k + 1)
                    out.add_fast(fast[1], chunks, time.perf_counter() - t0, alters)
                    continue
            plots = _read_plots(session, made, analysis, save, layouts)
            vectors, units = merge_plots(plots, save)
            result = SimResult(analysis=analysis, vectors=vectors, units=units, mode="shared",
                               wall_s=0.0, attempts=[])
            if fast is None and len(made) == 1:
                fast = _fast_layout(session, made[0], layouts.get((analysis, save, 0), []), result)
            session.command("destroy all")
            clean = True
            result.wall_s = time.perf_counter() - t0
            done("add_result", result, alters)
        except SpicenetError as error:
            dirty = True
            done("add_error", error, alters)
    return failure is None and not dirty and clean


def worker_main(read_fd: int, write_fd: int, mode: str, parent_pid: int | None = None,
                slot_fd: int | None = None, eager: bool = False) -> None:
    """Child loop: receive ``(token, job, skip, batch_runs, batch_wait_s)``; send ``("runs", token, entries, data,
    rss_mb)`` batches of finished runs (see :func:`pack_outcomes` and :class:`_Outbox`) and ``("done", token,
    rss_mb)`` per job (after ``("error", token, error, rss_mb)`` when the job failed as a whole); ``None`` (or the
    parent's pipe closing) ends the process. ``eager``: load libngspice before waiting for the first job (a pool's
    first workers, so that it overlaps the caller's planning; a replacement reads its job first, so that the parent
    never waits to send it)."""
    die_with_parent()
    parent_pid = os.getppid() if parent_pid is None else parent_pid
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    watchdog = _Watchdog(parent_pid)
    inbox, outbox = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    slot = _Slot(slot_fd) if slot_fd is not None else None
    sender = _Outbox(outbox)
    session = None
    loaded: tuple | None = None  # the block signature of the deck left loaded by the last job
    if mode == "shared" and eager:
        try:  # load libngspice now, while the parent is still planning; a failure is reported with the first job
            from spicenet.spice.ngshared import Session
            session = Session()
        except Exception:  # noqa: BLE001 - raised again (and reported) when the first job needs the session
            session = None
    while True:
        try:
            message = inbox.recv()
        except (EOFError, OSError):  # the parent closed its end (or died): nothing more to do
            os._exit(0)
        if message is None:
            os._exit(0)  # nothing is left to flush or free: skip the interpreter's and ngspice's teardown
        token, job, skip, batch_runs, batch_wait_s = message
        watchdog.arm(job.timeout_s)
        position = skip
        if slot is not None:
            slot.write(token, position)

        def emit(run_id: str, outcome: Outcome) -> None:
            nonlocal position
            watchdog.arm(job.timeout_s)
            position += 1
            if slot is not None:
                slot.write(token, position)  # the next run starts now
            sender.add(token, run_id, outcome, batch_runs, batch_wait_s)

        def started(k: int) -> None:
            watchdog.arm(job.timeout_s)
            if slot is not None:
                slot.write(token, k)

        try:
            if mode == "batch":
                from spicenet.spice.batch import execute_job_batch
                execute_job_batch(job, emit, skip)
            else:
                if session is None:
                    from spicenet.spice.ngshared import Session
                    session = Session()
                if isinstance(job.runs, RunBlock):
                    columns = _Columns(job.runs.analysis, "shared", len(job.runs.alter_targets))
                    sender.begin_columns(token, columns, batch_runs, batch_wait_s)
                    signature = block_signature(job)
                    same, loaded = loaded, None
                    if execute_block(session, job, sender, skip, started, signature is not None and same == signature):
                        loaded = signature
                else:
                    loaded = None
                    from spicenet.spice.runner import execute_job
                    execute_job(session, job, emit, skip)
        except SpicenetError as error:  # a job-level failure: report it for the runs not yet emitted
            loaded = None
            sender.send(("error", token, error, _rss_mb()))
        except Exception as error:  # noqa: BLE001 - never let a bug kill the worker silently
            loaded = None
            sender.send(("error", token, SimulationError(f"{type(error).__name__}: {error}"), _rss_mb()))
        watchdog.disarm()
        sender.send(("done", token, _rss_mb()))


#: what ``WorkerPool.run_batches`` yields per message: ``(run_id, outcome)`` pairs or a block's columns
Batch = Union[list[tuple[str, Outcome]], ResultColumns]


def run_ids(runs: Any, start: int, stop: int) -> list[str]:
    """The ids of runs ``start:stop`` of a job's runs (a ``RunBlock`` or a sequence of ``RunSpec``)."""
    if isinstance(runs, RunBlock):
        return list(runs.ids[start:stop])
    return [run.id for run in runs[start:stop]]


_F_SETPIPE_SZ, _F_GETPIPE_SZ = 1031, 1032  # Linux fcntl commands


def batch_outcomes(job: Job, start: int, batch: "Batch") -> list[tuple[str, Outcome]]:
    """One ``run_batches`` batch as ``(run_id, outcome)`` pairs (``ResultColumns`` unpacked run by run)."""
    if isinstance(batch, ResultColumns):
        return list(zip(run_ids(job.runs, start, start + batch.count), batch.outcomes()))
    return list(batch)


def _grow_pipe(fd: int, size: int = 1 << 20) -> int:
    """Ask for a 1 MiB pipe (Linux; capped by /proc/sys/fs/pipe-max-size); returns its capacity in bytes."""
    import fcntl

    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, size)
    except OSError:
        pass
    try:
        return int(fcntl.fcntl(fd, _F_GETPIPE_SZ))
    except OSError:  # pragma: no cover - not Linux
        return 65536


@dataclass
class _Worker:
    proc: subprocess.Popen
    inbox: Connection
    outbox: Connection
    slot: _Slot
    runs_done: int = 0
    rss_mb: float = 0.0
    rss0_mb: float | None = None  # resident memory in its first message (ngspice and a deck loaded)
    job_index: int | None = None
    token: int = 0  # dispatch token of the current job (unique per pool)
    progress: int = 0  # runs of the current job received so far (skip included)
    dispatched: float = 0.0  # monotonic time the current job was sent
    used: bool = False  # has had a job
    queued: deque = field(default_factory=deque)  # (job index, token, skip) sent ahead, to start after the current
    retire: bool = False  # to be replaced once its queued jobs are done (recycling was due)
    pipe_bytes: int = 65536  # capacity of the pipe to it: a job sent ahead must fit (the send must not block)


@dataclass
class PoolStats:
    """Counters a caller can report: workers started, recycled, killed on timeout, crashed; runs simulated again
    after a crash or timeout (finished but not yet sent); peak worker RSS."""

    started: int = 0
    recycled: int = 0
    timeouts: int = 0
    crashes: int = 0
    resent: int = 0
    messages: int = 0  # result messages received (each a batch of runs)
    peak_rss_mb: float = 0.0
    rss_history: list[float] = field(default_factory=list)


class WorkerPool:
    """A pool of ngspice worker processes. Use as a context manager; ``run(jobs)`` yields ``(run_id, outcome)``.

    ``batch_runs``: the most runs per result message (1: one message per run); ``batch_wait_s``: the longest a
    finished run waits in its worker before it is sent; ``prefetch``: 1 (default) sends each busy worker its next
    job ahead, so that it starts it without waiting for this process (0: one job at a time)."""

    def __init__(self, workers: int = 1, mode: str = "shared", recycle_after: int = 20_000,
                 max_rss_mb: float = 1024.0, batch_runs: int = BATCH_RUNS, batch_wait_s: float = BATCH_WAIT_S,
                 max_growth_mb: float = 512.0, prefetch: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if mode not in ("shared", "batch"):
            raise ValueError(f"mode must be 'shared' or 'batch', got {mode!r}")
        if batch_runs < 1:
            raise ValueError(f"batch_runs must be >= 1, got {batch_runs}")
        if not batch_wait_s > 0:
            raise ValueError(f"batch_wait_s must be > 0 seconds, got {batch_wait_s}")
        self.n_workers, self.mode = workers, mode
        self.recycle_after, self.max_rss_mb, self.max_growth_mb = recycle_after, max_rss_mb, max_growth_mb
        self.batch_runs, self.batch_wait_s = batch_runs, float(batch_wait_s)
        self.prefetch = prefetch
        self.stats = PoolStats()
        self._workers: list[_Worker] = []
        self._tokens = 0

    # -- lifecycle --------------------------------------------------------------------------------------------
    def _start(self, eager: bool = False) -> _Worker:
        p2c_r, p2c_w = os.pipe()
        c2p_r, c2p_w = os.pipe()
        pipe_bytes = _grow_pipe(p2c_w)
        _grow_pipe(c2p_r)  # results wait in the pipe, not in a blocked worker, while this process is busy
        slot = _Slot.create()
        env = dict(os.environ, OMP_NUM_THREADS="1")
        quiet = None if os.environ.get("SPICENET_DEBUG") else subprocess.DEVNULL
        code = ("import sys; from spicenet.spice.worker import worker_main; a = sys.argv; "
                "worker_main(int(a[1]), int(a[2]), a[3], int(a[4]), int(a[5]), a[6] == '1')")
        args = [str(p2c_r), str(c2p_w), self.mode, str(os.getpid()), str(slot.fd), "1" if eager else "0"]
        try:
            proc = subprocess.Popen([sys.executable, "-c", code, *args], pass_fds=(p2c_r, c2p_w, slot.fd),
                                    stdin=subprocess.DEVNULL, stdout=quiet, stderr=quiet, env=env,
                                    start_new_session=True)
        except BaseException:
            for fd in (p2c_r, p2c_w, c2p_r, c2p_w):
                os.close(fd)
            slot.close()
            raise
        os.close(p2c_r)
        os.close(c2p_w)
        worker = _Worker(proc, inbox=Connection(c2p_r, writable=False), outbox=Connection(p2c_w, readable=False),
                         slot=slot, pipe_bytes=pipe_bytes)
        self.stats.started += 1
        return worker

    def start(self, workers: int | None = None) -> "WorkerPool":
        """Start workers (all ``n_workers`` by default) without waiting for them to be ready: they load ngspice in
        parallel with whatever the caller does next. ``run`` starts any that are missing."""
        while len(self._workers) < min(self.n_workers, workers or self.n_workers):
            self._workers.append(self._start(eager=True))
        return self

    @staticmethod
    def _release(worker: _Worker) -> None:
        worker.inbox.close()
        worker.outbox.close()
        worker.slot.close()

    def _stop(self, worker: _Worker, kill: bool = False) -> None:
        self._stop_all([worker], kill=kill)

    def _stop_all(self, workers: list[_Worker], kill: bool = False) -> None:
        """Ask every idle worker to exit (busy ones, ones that never had a job and may still be loading ngspice, or
        all with ``kill``, get SIGKILL), then reap them all, each killed after 5 s at the latest: in parallel, not one
        after the other."""
        for worker in workers:
            if kill or worker.job_index is not None or not worker.used:
                if worker.proc.poll() is None:
                    worker.proc.kill()
                continue
            try:
                worker.outbox.send(None)
            except (OSError, BrokenPipeError):
                pass
        deadline = time.monotonic() + 5.0
        for worker in workers:
            try:
                worker.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
            self._release(worker)

    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests that kill one)."""
        return [w.proc.pid for w in self._workers]

    def close(self) -> None:
        """Stop every worker, in parallel: idle ones are asked to exit, busy ones (a run abandoned by an exception or
        Ctrl-C in the caller) are killed at once instead of being waited for."""
        workers, self._workers = self._workers, []
        self._stop_all(workers)

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scheduling -------------------------------------------------------------------------------------------
    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[str, Outcome]]:
        """Run every job; yield ``(run_id, SimResult | SpicenetError)`` in completion order."""
        for job, start, batch in self.run_batches(jobs):
            yield from batch_outcomes(job, start, batch)

    def run_batches(self, jobs: Iterable[Job], dispatched: Callable[[], None] | None = None
                    ) -> Iterator[tuple[Job, int, Batch]]:
        """Run every job; yield ``(job, start, batch)`` in completion order: the outcomes of ``job.runs[start:start
        + len(batch)]``, as ``(run_id, outcome)`` pairs or, for the runs a worker simulated of a ``RunBlock`` job, as
        one :class:`ResultColumns`. ``job`` is one of ``jobs`` or a part of one (runs simulated again after a
        crash, a job split into one run per fresh worker). ``dispatched``: called once, when every worker has its
        first job (the caller's own work then overlaps the simulations)."""
        pending: deque[tuple[int, Job, int]] = deque()
        job_list: list[Job] = []
        for job in jobs:
            if job.needs_fresh_process and len(job.runs) > 1:  # one run per job, each in a fresh worker
                for k in range(len(job.runs)):
                    single = Job(job.deck, job.runs[k:k + 1], job.init_commands, job.timeout_s, job.label)
                    pending.append((len(job_list), single, 0))
                    job_list.append(single)
                continue
            pending.append((len(job_list), job, 0))
            job_list.append(job)
        self.start(max(1, len(pending)))
        try:
            yield from self._schedule(pending, job_list, dispatched)
        finally:  # abandoned early (an error in the caller): busy workers are replaced, the pool stays usable
            for worker in list(self._workers):
                if worker.job_index is not None:
                    self._replace(worker, kill=True)

    def _schedule(self, pending: deque, job_list: list[Job],
                  dispatched: Callable[[], None] | None = None) -> Iterator[tuple[Job, int, Batch]]:
        while pending or any(w.job_index is not None for w in self._workers):
            for worker in self._workers:
                if worker.job_index is None and pending:
                    index, job, skip = pending.popleft()
                    self._tokens += 1
                    worker.job_index, worker.token, worker.progress = index, self._tokens, skip
                    worker.dispatched, worker.used = time.monotonic(), True
                    worker.outbox.send((worker.token, job, skip, self.batch_runs, self.batch_wait_s))
            for worker in self._workers:  # one job ahead, so that a worker never waits for this process
                if pending and worker.job_index is not None and not worker.queued and self._may_queue(
                        worker, job_list[worker.job_index], pending[0][1]):
                    index, job, skip = pending[0]
                    data = bytes(ForkingPickler.dumps((self._tokens + 1, job, skip, self.batch_runs,
                                                       self.batch_wait_s)))
                    if len(data) + 64 > worker.pipe_bytes:  # it would block until the worker reads it: not ahead
                        continue
                    pending.popleft()
                    self._tokens += 1
                    worker.queued.append((index, self._tokens, skip))
                    worker.outbox.send_bytes(data)
            busy = [w for w in self._workers if w.job_index is not None]
            if dispatched is not None:
                dispatched()
                dispatched = None
            if not busy:
                continue
            timeout = max(0.0, min(self._deadline(w, job_list) for w in busy) - time.monotonic())
            ready = wait([w.inbox for w in busy], timeout=timeout)
            for worker in busy:
                job = job_list[worker.job_index]  # type: ignore[index]
                if worker.inbox in ready:
                    yield from self._drain(worker, job, pending, job_list)
                elif time.monotonic() >= self._deadline(worker, job_list):
                    yield from self._fail_current(worker, job, pending, job_list, crashed=False)

    def _may_queue(self, worker: _Worker, current: Job, job: Job) -> bool:
        """Whether ``job`` may be sent to ``worker`` to start after its ``current`` one: not when either must run in
        a fresh process, nor when the worker is to be replaced (recycled) after the current one."""
        if self.prefetch < 1 or worker.retire or current.needs_fresh_process or job.needs_fresh_process:
            return False
        return worker.runs_done + len(current.runs) < self.recycle_after

    def _requeue(self, worker: _Worker, pending: deque, job_list: list[Job]) -> None:
        """Put the jobs sent ahead to ``worker`` back at the front of ``pending`` (it is being replaced)."""
        while worker.queued:
            index, _, skip = worker.queued.pop()
            pending.appendleft((index, job_list[index], skip))

    def _where(self, worker: _Worker) -> tuple[int, float] | None:
        """(position, start time) of the run the worker is in, from its slot, when it is about the current job."""
        state = worker.slot.read()
        if state is None or state[0] != worker.token:
            return None
        return state[1], state[2]

    def _deadline(self, worker: _Worker, job_list: list[Job]) -> float:
        """When the worker's current run is overdue: its own start (from the slot) plus the job's time limit."""
        timeout_s = job_list[worker.job_index].timeout_s  # type: ignore[index]
        where = self._where(worker)
        return (worker.dispatched if where is None else where[1]) + timeout_s

    def _drain(self, worker: _Worker, job: Job, pending: deque, job_list: list[Job]) -> Iterator[tuple[Job, int, Batch]]:
        """Handle every message the worker has already sent (one wait() per burst, not per message)."""
        while True:
            try:
                message = worker.inbox.recv()
            except (EOFError, OSError):
                yield from self._fail_current(worker, job, pending, job_list, crashed=True)
                return
            yield from self._handle(worker, job, message, pending, job_list)
            if worker.job_index is None or not worker.inbox.poll(0):
                return
            job = job_list[worker.job_index]  # (the next queued job once the current one is done)

    def _handle(self, worker: _Worker, job: Job, message: tuple, pending: deque,
                job_list: list[Job]) -> Iterator[tuple[Job, int, Batch]]:
        kind = message[0]
        worker.rss_mb = message[-1]
        if worker.rss0_mb is None:
            worker.rss0_mb = worker.rss_mb
        self.stats.peak_rss_mb = max(self.stats.peak_rss_mb, worker.rss_mb)
        start = worker.progress
        if kind == "runs":
            self.stats.messages += 1
            items = unpack_outcomes(message[2], message[3])
            worker.progress += len(items)
            worker.runs_done += len(items)
            yield job, start, items
        elif kind == "cols":
            self.stats.messages += 1
            columns: ResultColumns = message[2]
            worker.progress += columns.count
            worker.runs_done += columns.count
            yield job, start, columns
        elif kind == "error":
            worker.progress = len(job.runs)
            if start < len(job.runs):
                yield job, start, [(rid, message[2]) for rid in run_ids(job.runs, start, len(job.runs))]
        elif kind == "done":
            worker.job_index = None
            self.stats.rss_history.append(worker.rss_mb)
            due = (job.needs_fresh_process or worker.runs_done >= self.recycle_after
                   or worker.rss_mb > self.max_rss_mb or worker.rss_mb - worker.rss0_mb > self.max_growth_mb)
            if worker.queued:  # it has started the job sent ahead
                index, token, skip = worker.queued.popleft()
                worker.job_index, worker.token, worker.progress = index, token, skip
                worker.dispatched = time.monotonic()
                worker.retire = worker.retire or due
            elif due or worker.retire:
                self._replace(worker, kill=False)
                self.stats.recycled += 1

    def _fail_current(self, worker: _Worker, job: Job, pending: deque, job_list: list[Job],
                      crashed: bool) -> Iterator[tuple[Job, int, Batch]]:
        """The worker died or overran: kill it, fail the run it was in, queue the runs it had finished but not sent
        (simulated again) and the job's remaining runs for fresh workers."""
        index, progress = worker.job_index, worker.progress
        if not crashed:
            worker.proc.kill()  # first, so that the slot is final when it is read
            worker.proc.wait()
        where = self._where(worker)
        position = progress if where is None else min(max(where[0], progress), len(job.runs))
        self._requeue(worker, pending, job_list)
        self._replace(worker, kill=True)
        if position + 1 < len(job.runs):
            pending.appendleft((index, job, position + 1))
        if position > progress:  # finished in the dead worker, never received: simulate them again
            lost = Job(job.deck, job.runs[progress:position], job.init_commands, job.timeout_s, job.label)
            pending.appendleft((len(job_list), lost, 0))
            job_list.append(lost)
            self.stats.resent += len(lost.runs)
        if position >= len(job.runs):  # it died after its last run: nothing to blame
            return
        (run_id,) = run_ids(job.runs, position, position + 1)
        if crashed:
            self.stats.crashes += 1
            code = worker.proc.poll()
            error: SpicenetError = WorkerCrashed(f"run {run_id!r}: worker process died (exit code {code}) while "
                                                 f"simulating it")
        else:
            self.stats.timeouts += 1
            error = SimulationTimeout(f"run {run_id!r}: no result within {job.timeout_s:g} s; worker killed")
        yield job, position, [(run_id, error)]

    def _replace(self, worker: _Worker, kill: bool) -> None:
        self._stop(worker, kill=kill)
        fresh = self._start()
        self._workers[self._workers.index(worker)] = fresh
