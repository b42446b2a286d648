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
from typing import Iterable, Iterator

import numpy as np

from spicenet.errors import SimulationError, SimulationTimeout, SpicenetError, WorkerCrashed
from spicenet.spice.job import Job
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


class _Outbox:
    """The worker's sending side: finished runs wait in a buffer and go as one message (see the module docstring);
    a flusher thread sends a buffer that has waited ``wait_s`` while the main thread is inside ngspice (cffi calls
    release the GIL). One lock orders every send."""

    def __init__(self, conn: Connection, runs: int = BATCH_RUNS, wait_s: float = BATCH_WAIT_S) -> None:
        self.conn, self.runs, self.wait_s = conn, runs, wait_s
        self.lock = threading.Lock()
        self.items: list[tuple[str, Outcome]] = []
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

    def send(self, message: tuple) -> None:
        """A job-level message, after every result still waiting."""
        with self.lock:
            self._flush()
            self.conn.send(message)

    def _flush(self) -> None:
        if self.items:
            items, self.items = self.items, []
            self.conn.send(("runs", self.token, *pack_outcomes(items), _rss_mb()))

    def _loop(self) -> None:
        while True:
            time.sleep(min(self.wait_s, 0.5))
            with self.lock:
                if self.items and time.monotonic() - self.since >= self.wait_s:
                    try:
                        self._flush()
                    except OSError:  # the parent is gone: the watchdog ends this process
                        return


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

        try:
            if mode == "batch":
                from spicenet.spice.batch import execute_job_batch
                execute_job_batch(job, emit, skip)
            else:
                if session is None:
                    from spicenet.spice.ngshared import Session
                    session = Session()
                from spicenet.spice.runner import execute_job
                execute_job(session, job, emit, skip)
        except SpicenetError as error:  # a job-level failure: report it for the runs not yet emitted
            sender.send(("error", token, error, _rss_mb()))
        except Exception as error:  # noqa: BLE001 - never let a bug kill the worker silently
            sender.send(("error", token, SimulationError(f"{type(error).__name__}: {error}"), _rss_mb()))
        watchdog.disarm()
        sender.send(("done", token, _rss_mb()))


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
    finished run waits in its worker before it is sent."""

    def __init__(self, workers: int = 1, mode: str = "shared", recycle_after: int = 20_000,
                 max_rss_mb: float = 1024.0, batch_runs: int = BATCH_RUNS, batch_wait_s: float = BATCH_WAIT_S,
                 max_growth_mb: float = 512.0) -> None:
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
        self.stats = PoolStats()
        self._workers: list[_Worker] = []
        self._tokens = 0

    # -- lifecycle --------------------------------------------------------------------------------------------
    def _start(self, eager: bool = False) -> _Worker:
        p2c_r, p2c_w = os.pipe()
        c2p_r, c2p_w = os.pipe()
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
                         slot=slot)
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
        pending: deque[tuple[int, Job, int]] = deque()
        job_list: list[Job] = []
        for job in jobs:
            if job.needs_fresh_process and len(job.runs) > 1:  # one run per job, each in a fresh worker
                for run in job.runs:
                    single = Job(job.deck, (run,), job.init_commands, job.timeout_s, job.label)
                    pending.append((len(job_list), single, 0))
                    job_list.append(single)
                continue
            pending.append((len(job_list), job, 0))
            job_list.append(job)
        self.start(max(1, len(pending)))
        while pending or any(w.job_index is not None for w in self._workers):
            for worker in self._workers:
                if worker.job_index is None and pending:
                    index, job, skip = pending.popleft()
                    self._tokens += 1
                    worker.job_index, worker.token, worker.progress = index, self._tokens, skip
                    worker.dispatched, worker.used = time.monotonic(), True
                    worker.outbox.send((worker.token, job, skip, self.batch_runs, self.batch_wait_s))
            busy = [w for w in self._workers if w.job_index is not None]
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

    def _drain(self, worker: _Worker, job: Job, pending: deque, job_list: list[Job]) -> Iterator[tuple[str, Outcome]]:
        """Handle every message the worker has already sent (one wait() per burst, not per message)."""
        while True:
            try:
                message = worker.inbox.recv()
            except (EOFError, OSError):
                yield from self._fail_current(worker, job, pending, job_list, crashed=True)
                return
            yield from self._handle(worker, job, message)
            if worker.job_index is None or not worker.inbox.poll(0):
                return

    def _handle(self, worker: _Worker, job: Job, message: tuple) -> Iterator[tuple[str, Outcome]]:
        kind = message[0]
        worker.rss_mb = message[-1]
        if worker.rss0_mb is None:
            worker.rss0_mb = worker.rss_mb
        self.stats.peak_rss_mb = max(self.stats.peak_rss_mb, worker.rss_mb)
        if kind == "runs":
            self.stats.messages += 1
            items = unpack_outcomes(message[2], message[3])
            worker.progress += len(items)
            worker.runs_done += len(items)
            yield from items
        elif kind == "error":
            for run in job.runs[worker.progress:]:
                yield run.id, message[2]
            worker.progress = len(job.runs)
        elif kind == "done":
            worker.job_index = None
            self.stats.rss_history.append(worker.rss_mb)
            if (job.needs_fresh_process or worker.runs_done >= self.recycle_after
                    or worker.rss_mb > self.max_rss_mb or worker.rss_mb - worker.rss0_mb > self.max_growth_mb):
                self._replace(worker, kill=False)
                self.stats.recycled += 1

    def _fail_current(self, worker: _Worker, job: Job, pending: deque, job_list: list[Job],
                      crashed: bool) -> Iterator[tuple[str, Outcome]]:
        """The worker died or overran: kill it, fail the run it was in, queue the runs it had finished but not sent
        (simulated again) and the job's remaining runs for fresh workers."""
        index, progress = worker.job_index, worker.progress
        if not crashed:
            worker.proc.kill()  # first, so that the slot is final when it is read
            worker.proc.wait()
        where = self._where(worker)
        position = progress if where is None else min(max(where[0], progress), len(job.runs))
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
        run = job.runs[position]
        if crashed:
            self.stats.crashes += 1
            code = worker.proc.poll()
            error: SpicenetError = WorkerCrashed(f"run {run.id!r}: worker process died (exit code {code}) while "
                                                 f"simulating it")
        else:
            self.stats.timeouts += 1
            error = SimulationTimeout(f"run {run.id!r}: no result within {job.timeout_s:g} s; worker killed")
        yield run.id, error

    def _replace(self, worker: _Worker, kill: bool) -> None:
        self._stop(worker, kill=kill)
        fresh = self._start()
        self._workers[self._workers.index(worker)] = fresh
