"""Fault handling: every failure is data with a clear message, never a hang or a PySpice traceback."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from spicenet.errors import ConvergenceError, NetlistError, SimulationTimeout, WorkerCrashed
from spicenet.spice.engine import Engine
from spicenet.spice.job import Job, RunSpec
from spicenet.spice.results import SimResult
from spicenet.spice.worker import WorkerPool

DIVIDER = "divider\nv1 a 0 1\nr1 a b 1k\nr2 b 0 1k\n.end\n"
# Two antiparallel "diodes" with an absurd emission coefficient: no operating point exists numerically.
NONCONVERGING = "nc\nv1 a 0 1\nd1 a 0 dd\nd2 0 a dd\n.model dd d is=1e-30 n=0.02\n.end\n"
# A transient asked to resolve 1 second in femtosecond steps: runs far past any sane time limit.
HANGS = "hang\nv1 a 0 sin(0 1 1g)\nr1 a b 1k\nc1 b 0 1p\n.end\n"


@pytest.mark.parametrize("mode", ["shared", "batch"])
def test_malformed_netlist_names_the_line(mode):
    with Engine(mode=mode) as engine:
        with pytest.raises(NetlistError) as info:
            engine.simulate("bad deck\nr1 in out notavalue\nc1 out 0 1n\n.end\n", "op")
    message = str(info.value)
    assert "line 2" in message and "r1 in out notavalue" in message
    assert "\n" not in message


@pytest.mark.parametrize("mode", ["shared", "batch"])
def test_non_converging_deck_climbs_the_ladder_then_names_the_device(mode):
    with Engine(mode=mode) as engine:
        with pytest.raises(ConvergenceError) as info:
            engine.simulate(NONCONVERGING, "op")
    error = info.value
    assert "op analysis did not converge" in str(error) and "d1" in str(error)
    steps = [a["step"] for a in error.attempts]
    assert steps == ["plain", "gmin_stepping", "source_stepping", "smaller_max_step", "looser_reltol"]


def test_a_failure_does_not_stop_the_other_runs(engine):
    runs = [RunSpec(id="good1", analysis="op"), RunSpec(id="bad", analysis="op", commands=("alter rnope = 5",)),
            RunSpec(id="good2", analysis="op")]
    out = engine.run_all([engine.job(DIVIDER, runs)])
    assert isinstance(out["good1"], SimResult) and isinstance(out["good2"], SimResult)
    assert out["good2"].scalar("v(b)") == pytest.approx(0.5)
    assert "rnope" in str(out["bad"])


def test_hanging_deck_is_killed_at_the_timeout_and_the_pool_goes_on():
    with WorkerPool(workers=1) as pool:
        jobs = [Job(HANGS, (RunSpec("hang", "tran 1f 1 0 1f"), RunSpec("after", "op")), timeout_s=3.0),
                Job(DIVIDER, (RunSpec("next", "op"),), timeout_s=30.0)]
        t0 = time.monotonic()
        out = dict(pool.run(jobs))
        elapsed = time.monotonic() - t0
    assert isinstance(out["hang"], SimulationTimeout)
    assert "3 s" in str(out["hang"])
    assert isinstance(out["after"], SimResult)  # the job's remaining run went to a fresh worker
    assert out["next"].scalar("v(b)") == pytest.approx(0.5)
    assert elapsed < 30
    assert pool.stats.timeouts == 1


def test_crashed_worker_fails_its_run_and_the_rest_complete():
    with WorkerPool(workers=1) as pool:
        runs = (RunSpec("slow", "tran 1f 1 0 1f"), RunSpec("after", "op"))
        jobs = [Job(HANGS, runs, timeout_s=60.0), Job(DIVIDER, (RunSpec("next", "op"),))]

        def kill_soon() -> None:
            time.sleep(1.5)
            os.kill(pool.pids()[0], signal.SIGKILL)

        threading.Thread(target=kill_soon, daemon=True).start()
        out = dict(pool.run(jobs))
    assert isinstance(out["slow"], WorkerCrashed)
    assert "died" in str(out["slow"])
    assert isinstance(out["after"], SimResult) and isinstance(out["next"], SimResult)
    assert pool.stats.crashes == 1


def test_memory_stays_flat_over_10000_runs():
    """Workers are recycled every 2,500 runs: resident memory after 10,000 runs stays near the first batches'."""
    runs = tuple(RunSpec(f"r{k}", "op", commands=(f"alter r1 resistance = {1000 + k}",)) for k in range(10_000))
    jobs = [Job(DIVIDER, runs[i:i + 500]) for i in range(0, len(runs), 500)]
    with WorkerPool(workers=1, recycle_after=2500) as pool:
        outcomes = dict(pool.run(jobs))
    assert len(outcomes) == 10_000
    last = outcomes["r9999"]
    assert last.scalar("v(b)") == pytest.approx(1000 / (1000 + 1000 + 9999))
    assert pool.stats.recycled >= 3
    history = np.array(pool.stats.rss_history)
    assert history.max() < history[:5].max() + 50  # MiB
