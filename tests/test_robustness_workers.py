"""Workers die with their parent: after ``kill -9`` (or SIGTERM) of ``spicenet sweep`` no worker process (nor an
``ngspice -b`` of the batch mode) is left after 5 s, even while they are busy in a long run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
