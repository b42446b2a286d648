"""Worker processes that run ngspice jobs, with per-run timeouts, crash isolation and recycling.

ngspice's shared library is a process-wide singleton, not thread-safe, grows by MiBs per transient and can abort
the process on some errors. Every simulation therefore runs in a child process started with ``subprocess`` (not
``multiprocessing``, so pools also work inside daemonic Dask workers) and spoken to over two pipes with
``multiprocessing.connection.Connection`` (pickled, framed messages).

The parent (``WorkerPool``) hands each idle worker one job at a time and receives one message per finished run, so:

- a run that exceeds its job's ``timeout_s`` gets its worker killed (SIGKILL); that run fails with
  ``SimulationTimeout`` and the job's remaining runs go to a fresh worker;
- a worker that dies (segfault, abort, OOM kill) fails its current run with ``WorkerCrashed``, same recovery;
- a worker is replaced after ``recycle_after`` runs or once its resident memory passes ``max_rss_mb``, which keeps
  memory flat over arbitrarily many runs.

Workers die with their parent and never outlive a run's time limit, even when the parent is killed (SIGKILL,
SIGTERM) and cannot clean up: each worker asks the kernel for SIGKILL when its parent dies
(``prctl(PR_SET_PDEATHSIG)``, Linux), and a watchdog thread in the worker kills it when its parent process is gone
(the parent pid changed: reparented), when the parent's pipe closes, or when the current run has run past its
job's ``timeout_s`` (plus a grace of 10 % + 5 s, so the parent's own timeout normally fires first). ``ngspice -b``
processes of the batch mode get the same parent-death signal. (Linux sends it when the *thread* that started the
worker ends: a pool used from a short-lived thread sees its workers replaced, as after a crash.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Iterable, Iterator

from spicenet.errors import SimulationError, SimulationTimeout, SpicenetError, WorkerCrashed
from spicenet.spice.job import Job
from spicenet.spice.runner import Outcome


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


def worker_main(read_fd: int, write_fd: int, mode: str, parent_pid: int | None = None) -> None:
    """Child loop: receive ``(job_index, job, skip)``, send ``("run", job_index, run_id, outcome, rss_mb)`` per
    run and ``("done", job_index, rss_mb)`` per job; ``None`` (or the parent's pipe closing) ends the loop."""
    die_with_parent()
    parent_pid = os.getppid() if parent_pid is None else parent_pid
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    watchdog = _Watchdog(parent_pid)
    inbox, outbox = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    session = None
    while True:
        try:
            message = inbox.recv()
        except (EOFError, OSError):  # the parent closed its end (or died): nothing more to do
            return
        if message is None:
            return
        job_index, job, skip = message
        watchdog.arm(job.timeout_s)

        def emit(run_id: str, outcome: Outcome) -> None:
            watchdog.arm(job.timeout_s)
            outbox.send(("run", job_index, run_id, outcome, _rss_mb()))

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
            outbox.send(("error", job_index, error, _rss_mb()))
        except Exception as error:  # noqa: BLE001 - never let a bug kill the worker silently
            outbox.send(("error", job_index, SimulationError(f"{type(error).__name__}: {error}"), _rss_mb()))
        watchdog.disarm()
        outbox.send(("done", job_index, _rss_mb()))


@dataclass
class _Worker:
    proc: subprocess.Popen
    inbox: Connection
    outbox: Connection
    runs_done: int = 0
    rss_mb: float = 0.0
    job_index: int | None = None
    progress: int = 0  # runs of the current job emitted so far (skip included)
    deadline: float = 0.0


@dataclass
class PoolStats:
    """Counters a caller can report: workers started, recycled, killed on timeout, crashed; peak worker RSS."""

    started: int = 0
    recycled: int = 0
    timeouts: int = 0
    crashes: int = 0
    peak_rss_mb: float = 0.0
    rss_history: list[float] = field(default_factory=list)


class WorkerPool:
    """A pool of ngspice worker processes. Use as a context manager; ``run(jobs)`` yields ``(run_id, outcome)``."""

    def __init__(self, workers: int = 1, mode: str = "shared", recycle_after: int = 2000,
                 max_rss_mb: float = 1024.0) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if mode not in ("shared", "batch"):
            raise ValueError(f"mode must be 'shared' or 'batch', got {mode!r}")
        self.n_workers, self.mode = workers, mode
        self.recycle_after, self.max_rss_mb = recycle_after, max_rss_mb
        self.stats = PoolStats()
        self._workers: list[_Worker] = []

    # -- lifecycle --------------------------------------------------------------------------------------------
    def _start(self) -> _Worker:
        p2c_r, p2c_w = os.pipe()
        c2p_r, c2p_w = os.pipe()
        env = dict(os.environ, OMP_NUM_THREADS="1")
        quiet = None if os.environ.get("SPICENET_DEBUG") else subprocess.DEVNULL
        code = ("import sys; from spicenet.spice.worker import worker_main; "
                "worker_main(*map(int, sys.argv[1:3]), sys.argv[3], int(sys.argv[4]))")
        proc = subprocess.Popen([sys.executable, "-c", code, str(p2c_r), str(c2p_w), self.mode, str(os.getpid())],
                                pass_fds=(p2c_r, c2p_w), stdin=subprocess.DEVNULL, stdout=quiet, stderr=quiet,
                                env=env, start_new_session=True)
        os.close(p2c_r)
        os.close(c2p_w)
        worker = _Worker(proc, inbox=Connection(c2p_r, writable=False), outbox=Connection(p2c_w, readable=False))
        self.stats.started += 1
        return worker

    def _stop(self, worker: _Worker, kill: bool = False) -> None:
        try:
            if not kill:
                worker.outbox.send(None)
                worker.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired, BrokenPipeError):
            pass
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()
        worker.inbox.close()
        worker.outbox.close()

    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests that kill one)."""
        return [w.proc.pid for w in self._workers]

    def close(self) -> None:
        """Stop every worker: idle ones are asked to exit, busy ones (a run abandoned by an exception or Ctrl-C in
        the caller) are killed at once instead of being waited for."""
        for worker in self._workers:
            self._stop(worker, kill=worker.job_index is not None)
        self._workers = []

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
        while len(self._workers) < min(self.n_workers, max(1, len(pending))):
            self._workers.append(self._start())
        while pending or any(w.job_index is not None for w in self._workers):
            for worker in self._workers:
                if worker.job_index is None and pending:
                    index, job, skip = pending.popleft()
                    worker.job_index, worker.progress = index, skip
                    worker.deadline = time.monotonic() + job.timeout_s
                    worker.outbox.send((index, job, skip))
            busy = [w for w in self._workers if w.job_index is not None]
            if not busy:
                continue
            timeout = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            ready = wait([w.inbox for w in busy], timeout=timeout)
            for worker in busy:
                job = job_list[worker.job_index]  # type: ignore[index]
                if worker.inbox in ready:
                    yield from self._drain(worker, job, pending)
                elif time.monotonic() >= worker.deadline:
                    yield from self._fail_current(worker, job, pending, crashed=False)

    def _drain(self, worker: _Worker, job: Job, pending: deque) -> Iterator[tuple[str, Outcome]]:
        """Handle every message the worker has already sent (one wait() per burst, not per run)."""
        while True:
            try:
                message = worker.inbox.recv()
            except (EOFError, OSError):
                yield from self._fail_current(worker, job, pending, crashed=True)
                return
            yield from self._handle(worker, job, message)
            if worker.job_index is None or not worker.inbox.poll(0):
                return

    def _handle(self, worker: _Worker, job: Job, message: tuple) -> Iterator[tuple[str, Outcome]]:
        kind = message[0]
        worker.rss_mb = message[-1]
        self.stats.peak_rss_mb = max(self.stats.peak_rss_mb, worker.rss_mb)
        if kind == "run":
            worker.progress += 1
            worker.runs_done += 1
            worker.deadline = time.monotonic() + job.timeout_s
            yield message[2], message[3]
        elif kind == "error":
            for run in job.runs[worker.progress:]:
                yield run.id, message[2]
            worker.progress = len(job.runs)
        elif kind == "done":
            worker.job_index = None
            self.stats.rss_history.append(worker.rss_mb)
            if (job.needs_fresh_process or worker.runs_done >= self.recycle_after
                    or worker.rss_mb > self.max_rss_mb):
                self._replace(worker, kill=False)
                self.stats.recycled += 1

    def _fail_current(self, worker: _Worker, job: Job, pending: deque, crashed: bool) -> Iterator[tuple[str, Outcome]]:
        index, progress = worker.job_index, worker.progress
        run = job.runs[progress]
        if crashed:
            self.stats.crashes += 1
            code = worker.proc.poll()
            error: SpicenetError = WorkerCrashed(f"run {run.id!r}: worker process died (exit code {code}) while "
                                                 f"simulating it")
        else:
            self.stats.timeouts += 1
            error = SimulationTimeout(f"run {run.id!r}: no result within {job.timeout_s:g} s; worker killed")
        self._replace(worker, kill=True)
        if progress + 1 < len(job.runs):
            pending.appendleft((index, job, progress + 1))
        yield run.id, error

    def _replace(self, worker: _Worker, kill: bool) -> None:
        self._stop(worker, kill=kill)
        fresh = self._start()
        self._workers[self._workers.index(worker)] = fresh
