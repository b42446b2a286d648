"""Workers die with their parent: after ``kill -9`` (or SIGTERM) of ``spicenet sweep`` no worker process (nor an
``ngspice -b`` of the batch mode) is left after 5 s, even while they are busy in a long run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc), zombies excluded."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and prctl")
@pytest.mark.parametrize("sig,mode", [(signal.SIGKILL, "shared"), (signal.SIGTERM, "shared"),
                                      (signal.SIGKILL, "batch")])
def test_no_worker_survives_its_killed_parent(tmp_path, sig, mode):
    config = tmp_path / "long.toml"
    # a transient far too long to finish (1 ps steps over 1 s): every worker stays busy in ngspice
    config.write_text('template = "basic/rc"\nanalysis = "tran 1p 1"\ntimeout_s = 600\n[grid]\nr = ["1k", "2k", "3k"]\n')
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "spicenet", "sweep", str(config), "-o", str(tmp_path / "o.h5"),
                             "--workers", "2", "--mode", mode, "--no-progress"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        want = 4 if mode == "batch" else 2  # two workers (and in batch mode their ngspice -b)
        workers: set[int] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(workers) < want:
            workers = _children(proc.pid)
            time.sleep(0.2)
        assert len(workers) >= want, f"workers did not start: {workers}"
        time.sleep(1.0)  # busy in the analysis
        proc.send_signal(sig)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.1)
        left = [pid for pid in workers if _alive(pid)]
        assert not left, f"{len(left)} worker processes outlived spicenet ({sig!r}): {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _children(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_worker_enforces_the_run_timeout_when_its_parent_cannot(tmp_path):
    """A parent that is alive but stopped (SIGSTOP) cannot kill an overdue worker: the worker's watchdog does, at
    1.1 x timeout + 5 s."""
    script = tmp_path / "parent.py"
    script.write_text(
        "from spicenet.spice.engine import Engine\n"
        "with Engine(timeout_s=2.0) as e:\n"
        "    e.simulate('rc\\nv1 a 0 pulse(0 1 0 1n 1n 1u 2u)\\nr1 a b 1k\\nc1 b 0 1n\\n.end\\n', 'tran 1p 1')\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        workers: set[int] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not workers:
            workers = _children(proc.pid)
            time.sleep(0.05)
        assert workers
        proc.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 20 and any(_alive(pid) for pid in workers):
            time.sleep(0.1)
        waited = time.monotonic() - t0
        assert not any(_alive(pid) for pid in workers), "the overdue worker was not killed"
        assert waited < 12.0
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait(timeout=30)


# -- results sent in batches -------------------------------------------------------------------------------------
DIVIDER = "divider\nv1 a 0 1\nr1 a b 1k\nr2 b 0 1k\n.end\n"
# op runs are instant on it; "tran 1f 1 0 1f" runs far past any test's patience
SLOW = "slow\nv1 a 0 sin(0.5 1 1g)\nr1 a b 1k\nr2 b 0 1k\nc1 b 0 1p\n.end\n"


def _divider_runs(n: int, bad_at: int | None = None) -> tuple:
    from spicenet.spice.job import RunSpec

    runs = [RunSpec(f"r{k:04d}", "op", commands=(f"alter r1 resistance = {1000.0 + 7.0 * k!r}",)) for k in range(n)]
    if bad_at is not None:
        runs.insert(bad_at, RunSpec("bad", "op", commands=("alter rnope = 5",)))
    return tuple(runs)


def test_batched_results_equal_one_message_per_run():
    """Hundreds of runs come back in a few messages, bit for bit what one message per run gives, each equal to the
    divider law v(b) = R2 / (R1 + R2); a failing run in the middle of a batch is data with ngspice's words and
    the runs around it are kept."""
    from spicenet.spice.job import Job
    from spicenet.spice.results import SimResult
    from spicenet.spice.worker import WorkerPool

    runs = _divider_runs(300, bad_at=150)
    jobs = [Job(DIVIDER, runs[:160]), Job(DIVIDER, runs[160:])]
    with WorkerPool(workers=2) as pool:
        batched = dict(pool.run(jobs))
        messages = pool.stats.messages
    with WorkerPool(workers=2, batch_runs=1) as pool:
        single = dict(pool.run(jobs))
        assert pool.stats.messages == len(runs)  # the reference: one message per run, failed or not
    assert messages < 100
    assert sorted(batched) == sorted(single) == sorted(r.id for r in runs)
    assert "rnope" in str(batched["bad"]) and str(batched["bad"]) == str(single["bad"])
    for k, run in enumerate(r for r in runs if r.id != "bad"):
        a, b = batched[run.id], single[run.id]
        assert isinstance(a, SimResult) and a.units == b.units
        assert {n: v.tobytes() for n, v in a.vectors.items()} == {n: v.tobytes() for n, v in b.vectors.items()}
        r1 = 1000.0 + 7.0 * k
        assert a.scalar("v(b)") == pytest.approx(1000.0 / (r1 + 1000.0), rel=1e-9)


def test_a_crash_resends_the_runs_its_worker_finished_but_had_not_sent():
    """Results wait in the worker (here for up to 60 s); a worker killed in a later run loses the ones it had not
    sent. The shared slot tells the parent which run it died in: that one fails with WorkerCrashed, the finished
    ones are simulated again in a fresh worker (same numbers), the job's remaining runs go on."""
    import threading

    from spicenet.errors import WorkerCrashed
    from spicenet.spice.job import Job, RunSpec
    from spicenet.spice.results import SimResult
    from spicenet.spice.worker import WorkerPool

    fast = tuple(RunSpec(f"f{k}", "op", commands=(f"alter r1 resistance = {1000.0 + k!r}",)) for k in range(30))
    runs = fast + (RunSpec("slow", "tran 1f 1 0 1f"), RunSpec("after", "op"))
    with WorkerPool(workers=1, batch_runs=1000, batch_wait_s=60.0) as pool:
        def kill_soon() -> None:
            time.sleep(2.0)
            os.kill(pool.pids()[0], signal.SIGKILL)

        threading.Thread(target=kill_soon, daemon=True).start()
        out = dict(pool.run([Job(SLOW, runs, timeout_s=60.0)]))
        stats = pool.stats
    assert isinstance(out["slow"], WorkerCrashed) and "died" in str(out["slow"])
    assert stats.crashes == 1 and stats.resent == 30
    assert isinstance(out["after"], SimResult)
    for k in range(30):
        assert isinstance(out[f"f{k}"], SimResult)
        # the sin source's operating point is its value at t = 0, its offset 0.5 V; then the divider law
        assert out[f"f{k}"].scalar("v(b)") == pytest.approx(0.5 * 1000.0 / (2000.0 + k), rel=1e-9)


def test_the_time_limit_counts_from_each_runs_own_start():
    """A job whose runs together take longer than the per-run limit, with no result sent before the job ends: no
    run is killed, because the parent times each run from its own start (read from the worker's slot), not from
    the last message it received."""
    from spicenet.spice.job import Job, RunSpec
    from spicenet.spice.results import SimResult
    from spicenet.spice.worker import WorkerPool

    rc = "rc\nv1 a 0 pulse(0 1 0 1n 1n 1u 2u)\nr1 a b 1k\nc1 b 0 1n\n.end\n"
    runs = tuple(RunSpec(f"t{k}", "tran 0.2n 10u") for k in range(20))
    limit = 2.0
    with WorkerPool(workers=1, batch_runs=1000, batch_wait_s=60.0) as pool:
        out = dict(pool.run([Job(rc, runs, timeout_s=limit)]))
        assert pool.stats.timeouts == 0 and pool.stats.messages == 1
    assert all(isinstance(o, SimResult) for o in out.values()), [str(o) for o in out.values()][:3]
    assert sum(o.wall_s for o in out.values()) > limit  # else the test shows nothing: make the runs longer
    t, v = out["t19"]["time"], out["t19"]["v(b)"]
    # the first high phase of the pulse (from 0.5 ns, rise 1 ns, to 1.001 us) charges RC = 1 us: 1 - exp(-t/RC)
    assert np.interp(1.0e-6, t, v) == pytest.approx(1 - np.exp(-(1.0e-6 - 0.5e-9) / 1e-6), abs=2e-3)


def test_a_worker_is_recycled_when_its_memory_grows_not_every_few_thousand_runs():
    """ngspice keeps ~1 KB per op run; a worker is replaced once its resident memory has grown by max_growth_mb
    since its first results (here 1 MiB, reached within 3,000 runs), and not at all under the default limits
    (the negative control), where the old fixed 2,000-run recycling cost a fresh process per 2,000 runs."""
    from spicenet.spice.job import Job
    from spicenet.spice.worker import WorkerPool

    runs = _divider_runs(3000)
    jobs = [Job(DIVIDER, runs[i:i + 500]) for i in range(0, len(runs), 500)]
    results = []
    for growth in (1.0, 512.0):
        with WorkerPool(workers=1, max_growth_mb=growth) as pool:
            results.append(dict(pool.run(jobs)))
            history, recycled = np.array(pool.stats.rss_history), pool.stats.recycled
        if growth == 1.0:
            assert recycled >= 1 and history.max() < history[0] + 1.0 + 2.0  # + at most one job's growth
        else:
            assert recycled == 0 and history[-1] > history[0]  # it did grow: the 1 MiB limit was a real test
    for k in (0, 1499, 2999):
        r1 = 1000.0 + 7.0 * k
        assert results[0][f"r{k:04d}"].scalar("v(b)") == results[1][f"r{k:04d}"].scalar("v(b)") \
            == pytest.approx(1000.0 / (r1 + 1000.0), rel=1e-9)
