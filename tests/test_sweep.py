"""Sweeps: grid x chips into the HDF5 store; resume after SIGKILL loses no finished point; Dask on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from spicenet.sweep import SweepConfig, run_sweep
from tests.conftest import ROOT

MIRROR = """
template = "basic/current_mirror"
process = "generic"
analysis = "op"
seed = 3
save = ["i(vout)", "v(g)"]
[params]
vdd = "0.6"
[grid]
iref = ["5n", "20n"]
[montecarlo]
chips = {chips}
mode = "pelgrom"
[measure.iout]
kind = "value"
vector = "i(vout)"
"""


def _config(tmp_path: Path, chips: int) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(MIRROR.format(chips=chips))
    return path


def _iout(path: Path) -> dict[str, float]:
    with h5py.File(path, "r") as f:
        return {rid: float(np.asarray(g["i(vout)"])[0]) for rid, g in f["runs"].items() if g.attrs["status"] == "ok"}


def test_sweep_layout_and_contract(tmp_path):
    out = tmp_path / "runs.h5"
    summary = run_sweep(SweepConfig.from_toml(_config(tmp_path, 4)), out, workers=2, progress=False)
    assert (summary.done, summary.failed, summary.skipped) == (8, 0, 0)
    with h5py.File(out, "r") as f:
        assert f.attrs["ngspice_version"].startswith("ngspice-")
        assert json.loads(f.attrs["config"])["montecarlo"]["chips"] == 4
        run = f["runs/p00001-c00002"]
        assert json.loads(run.attrs["params"])["iref"] == "20n"
        assert run.attrs["chip"] == 2 and run.attrs["process"] == "generic" and run.attrs["status"] == "ok"
        assert "nfet" in run.attrs["netlist"]
        assert run["i(vout)"].attrs["unit"] == "A"
        assert set(run.keys()) == {"i(vout)", "v(g)"}
        iout = -float(run["i(vout)"][0])
        assert json.loads(run.attrs["measurements"])["iout"] == pytest.approx(-iout)
    # the grid point's reference current sets the output current (mirror ratio within mismatch)
    assert 10e-9 < iout < 40e-9


def test_failed_point_is_stored_with_its_error_and_the_sweep_goes_on(tmp_path):
    cfg = tmp_path / "s.toml"
    deck = tmp_path / "nc.cir"
    deck.write_text("nc\nv1 a 0 1\nd1 a 0 dd\nd2 0 a dd\n.model dd d is=1e-30 n=0.02\n.op\n.end\n")
    cfg.write_text(f'netlist = "{deck.name}"\n')
    summary = run_sweep(SweepConfig.from_toml(cfg), tmp_path / "o.h5", progress=False)
    assert (summary.done, summary.failed) == (0, 1)
    with h5py.File(tmp_path / "o.h5", "r") as f:
        run = f["runs/p00000-nom"]
        assert run.attrs["status"] == "failed" and "ConvergenceError" in run.attrs["error"]


def test_sweep_killed_with_sigkill_resumes_without_losing_points(tmp_path):
    cfg = _config(tmp_path, 400)
    out = tmp_path / "runs.h5"
    cmd = [sys.executable, "-m", "spicenet", "sweep", str(cfg), "-o", str(out), "--workers", "1", "--json",
           "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    journal = Path(str(out) + ".journal")
    while time.monotonic() < deadline:  # kill once some points are finished (committed or journalled)
        if (out.exists() and journal.exists() and journal.stat().st_size > 50_000) or proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with h5py.File(out, "r") as f:  # the file always opens
        before = len(f["runs"]) if "runs" in f else 0
    resumed = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads(resumed.stdout)
    assert summary["done"] + summary["skipped"] == 800 and summary["failed"] == 0
    assert summary["skipped"] >= before  # finished points, journalled or committed, were not redone
    assert summary["skipped"] > 0
    print("killed with", before, "committed; resume skipped", summary["skipped"], "did", summary["done"])
    reference = run_sweep(SweepConfig.from_toml(cfg), tmp_path / "ref.h5", workers=2, progress=False)
    assert reference.done == 800
    assert _iout(out) == _iout(tmp_path / "ref.h5")  # bit-identical to an uninterrupted sweep


def test_dask_local_cluster_gives_the_same_results(tmp_path):
    from distributed import LocalCluster

    cfg = SweepConfig.from_toml(_config(tmp_path, 6))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        remote = run_sweep(cfg, tmp_path / "dask.h5", scheduler=cluster.scheduler_address, progress=False)
    local = run_sweep(cfg, tmp_path / "local.h5", workers=1, progress=False)
    assert remote.done == local.done == 12
    assert _iout(tmp_path / "dask.h5") == _iout(tmp_path / "local.h5")


def test_bad_config_key_is_named(tmp_path):
    from spicenet.errors import ConfigError

    path = tmp_path / "s.toml"
    path.write_text('template = "basic/rc"\n[montecarlo]\nchipz = 3\n')
    with pytest.raises(ConfigError, match="montecarlo.chipz"):
        SweepConfig.from_toml(path)
    path.write_text('template = "basic/rc"\n[grid]\nr = ["1k", "-5"]\n')
    with pytest.raises(Exception, match="parameter 'r'"):
        run_sweep(SweepConfig.from_toml(path), tmp_path / "x.h5", progress=False)
    assert not (tmp_path / "x.h5").exists()  # rejected before anything ran or was written
