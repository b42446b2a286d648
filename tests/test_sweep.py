"""Sweeps: grid x chips into the HDF5 store; resume after SIGKILL loses no finished point; Dask on loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from spicenet.spice.engine import montecarlo_runs, render
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
    """id -> i(vout) of every ok run, read with plain h5py from layout 2's columns."""
    with h5py.File(path, "r") as f:
        assert f.attrs["store_layout"] == 2
        n = int(f["table"].attrs["rows"])
        ids, status = f["table/id"].asstr()[:n], f["table/status"].asstr()[:n]
        g = f["vectors/i(vout)"]
        data, offset, length = g["data"][:], g["offset"][:n], g["length"][:n]
    return {rid: float(data[o]) for rid, st, o, k in zip(ids, status, offset, length) if st == "ok" and k == 1}


def test_sweep_layout_and_contract(tmp_path):
    out = tmp_path / "runs.h5"
    summary = run_sweep(SweepConfig.from_toml(_config(tmp_path, 4)), out, workers=2, progress=False)
    assert (summary.done, summary.failed, summary.skipped) == (8, 0, 0)
    with h5py.File(out, "r") as f:  # plain h5py
        assert f.attrs["ngspice_version"].startswith("ngspice-")
        assert json.loads(f.attrs["config"])["montecarlo"]["chips"] == 4
        assert "table" in json.loads(f.attrs["layout"])  # the layout describes itself
        table = f["table"]
        n = int(table.attrs["rows"])
        ids = list(table["id"].asstr()[:n])
        row = ids.index("p00001-c00002")
        assert table["params/iref"][row] == pytest.approx(20e-9, rel=1e-12) and table["params/iref"].attrs["unit"] == "A"
        assert table["params/vdd"][row] == 0.6
        assert (table["chip"][row], table["point"][row]) == (2, 1)
        assert table["process"].asstr()[row] == "generic" and table["status"].asstr()[row] == "ok"
        assert "nfet" in f["decks/netlist"].asstr()[table["deck"][row]]
        assert len(f["decks/netlist"]) == 2  # the netlist once per point, not once per run
        # the chip's delta from the deck: numeric alter values, one column per target, equal to what was simulated
        targets = list(f["alters/target"].asstr()[:])
        values = table["alter_values"][row]
        cfg = SweepConfig.from_toml(_config(tmp_path, 4))
        deck = render(cfg.template, cfg.points()[1], cfg.process, cfg.mismatch)
        (spec,) = montecarlo_runs(deck, "op", [2], cfg.seed)
        assert len(spec.commands) == len(targets) > 0
        for command in spec.commands:
            target, _, value = command.rpartition("=")
            assert values[targets.index(" ".join(target.split()))] == float(value)
        assert set(f["vectors"]) == {"i(vout)", "v(g)"} and f["vectors/i(vout)"].attrs["unit"] == "A"
        g = f["vectors/i(vout)"]
        iout = -float(g["data"][g["offset"][row]])
        assert table["measure/iout"][row] == pytest.approx(-iout)
    # the grid point's reference current sets the output current (mirror ratio within mismatch)
    assert 10e-9 < iout < 40e-9


def test_open_runs_to_xarray_and_numeric_table(tmp_path):
    """to_xarray gives point x chip with numeric parameter coordinates; the table sorts parameters as numbers
    ("5n" < "20n" < "100n", which as text would sort "100n" < "20n" < "5n")."""
    from spicenet import open_runs

    cfg = tmp_path / "s.toml"
    cfg.write_text(MIRROR.format(chips=3).replace('iref = ["5n", "20n"]', 'iref = ["20n", "100n", "5n"]'))
    out = tmp_path / "runs.h5"
    run_sweep(SweepConfig.from_toml(cfg), out, workers=2, progress=False)
    runs = open_runs(out)
    da = runs.to_xarray("i(vout)")
    assert da.dims == ("point", "chip") and da.shape == (3, 3)
    assert da["iref"].dtype == np.float64 and list(da["iref"].values) == pytest.approx([20e-9, 100e-9, 5e-9], rel=1e-12)
    assert da["iref"].attrs["unit"] == "A" and da.attrs["unit"] == "A"
    assert list(da["chip"].values) == [0, 1, 2]
    ref = _iout(out)  # plain h5py
    for p in range(3):
        for c in range(3):
            assert da.values[p, c] == ref[f"p{p:05d}-c{c:05d}"]
    # the output current follows iref point by point (the coordinate lines up with the data)
    ratio = -da.mean("chip") / da["iref"]
    assert np.all((ratio > 0.5) & (ratio < 2.0))
    df = runs.table()
    assert len(df) == 9 and df["iref"].dtype == np.float64
    assert list(df.sort_values("iref")["iref"].unique()) == pytest.approx([5e-9, 20e-9, 100e-9], rel=1e-12)
    assert df.attrs["units"]["iref"] == "A"
    assert set(df["status"]) == {"ok"} and (df["wall_s"] > 0).all()
    records = {r.id: r for r in runs}
    assert set(records) == set(df["id"]) and records["p00001-c00002"].params["iref"] == pytest.approx(100e-9, rel=1e-12)


def test_failed_measurement_is_flagged_not_a_silent_nan(tmp_path):
    """A period measured on an RC step (no oscillation) gives status measure_failed with the reason; the run's
    vectors are still stored and a measurement that worked keeps its value."""
    from spicenet import open_runs

    cfg = tmp_path / "s.toml"
    cfg.write_text('template = "basic/rc"\nanalysis = "tran 10n 5u"\nsave = ["v(out)"]\n'
                   '[measure.T]\nkind = "period"\nvector = "v(out)"\n'
                   '[measure.vend]\nkind = "final"\nvector = "v(out)"\n')
    summary = run_sweep(SweepConfig.from_toml(cfg), tmp_path / "m.h5", progress=False)
    assert (summary.done, summary.failed) == (1, 0)
    (run,) = open_runs(tmp_path / "m.h5")
    assert run.status == "measure_failed" and "'T'" in run.error and "no oscillation" in run.error
    assert np.isnan(run.measurements["T"]) and run.measurements["vend"] == run.vectors["v(out)"][-1]
    assert run.measurement_units["T"] == "s"


def test_failed_point_is_stored_with_its_error_and_the_sweep_goes_on(tmp_path):
    cfg = tmp_path / "s.toml"
    deck = tmp_path / "nc.cir"
    deck.write_text("nc\nv1 a 0 1\nd1 a 0 dd\nd2 0 a dd\n.model dd d is=1e-30 n=0.02\n.op\n.end\n")
    cfg.write_text(f'netlist = "{deck.name}"\n')
    summary = run_sweep(SweepConfig.from_toml(cfg), tmp_path / "o.h5", progress=False)
    assert (summary.done, summary.failed) == (0, 1)
    from spicenet import open_runs

    run = open_runs(tmp_path / "o.h5")["p00000-nom"]
    assert run.status == "failed" and "ConvergenceError" in run.error and run.vectors == {}


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
        before = int(f["table"].attrs["rows"]) if "table" in f else 0
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


def test_inputs_sweep_to_xarray_has_an_input_dim(tmp_path):
    """[inputs] rows pushed by alter: to_xarray gives point x input x chip, each value the divider's own output
    (v(b) = v1 * r2 / (r1 + r2) = v1 / 4), and the table holds the input source values as float columns."""
    from spicenet import open_runs

    deck = tmp_path / "div.cir"
    deck.write_text("divider\nv1 a 0 dc 0\nr1 a b 3k\nr2 b 0 1k\n.end\n")
    rows = np.random.default_rng(11).uniform(-2, 2, (5, 1))
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'netlist = "{deck.name}"\nanalysis = "op"\nsave = ["v(b)"]\n'
                   f'[inputs]\nsources = ["v1"]\nrows = {rows.tolist()}\n')
    summary = run_sweep(SweepConfig.from_toml(cfg), tmp_path / "in.h5", progress=False)
    assert summary.done == 5
    runs = open_runs(tmp_path / "in.h5")
    da = runs.to_xarray("v(b)")
    assert da.dims == ("point", "input", "chip") and da.shape == (1, 5, 1)
    np.testing.assert_allclose(da.values[0, :, 0], rows[:, 0] / 4, rtol=1e-9, atol=1e-12)
    df = runs.table().sort_values("input_row")
    np.testing.assert_array_equal(df["v1"].to_numpy(), rows[:, 0])
    assert df.attrs["units"]["v1"] == "V"


def test_sweeps_on_one_started_pool_equal_a_sweep_that_starts_its_own(tmp_path):
    """``run_sweep(pool=...)`` runs on the caller's started workers and leaves them running for the next sweep; the
    stores hold the same numbers, bit for bit, as a sweep that starts and stops its own workers."""
    from spicenet.spice.worker import WorkerPool

    config = SweepConfig.from_toml(_config(tmp_path, 6))
    run_sweep(config, tmp_path / "own.h5", workers=2, progress=False)
    with WorkerPool(workers=2).start() as pool:
        pids = pool.pids()
        for name in ("a.h5", "b.h5"):
            summary = run_sweep(config, tmp_path / name, progress=False, pool=pool)
            assert (summary.done, summary.failed) == (12, 0)
        assert pool.pids() == pids  # the same two workers ran both sweeps and are still up
    own, a, b = (_iout(tmp_path / name) for name in ("own.h5", "a.h5", "b.h5"))
    assert len(own) == 12 and own == a == b


def _divider_inputs(tmp_path: Path, rows: np.ndarray) -> SweepConfig:
    deck = tmp_path / "div.cir"
    deck.write_text("divider\nv1 a 0 dc 0\nr1 a b 3k\nr2 b 0 1k\n.end\n")
    np.save(tmp_path / "rows.npy", rows)
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'netlist = "{deck.name}"\nanalysis = "op"\nsave = ["v(b)"]\n'
                   f'[inputs]\nsources = ["v1"]\nfile = "rows.npy"\n')
    return SweepConfig.from_toml(cfg)


def test_a_long_input_table_is_stored_by_digest_and_a_changed_table_refuses_resume(tmp_path):
    """A table longer than INLINE_INPUT_ROWS goes into the store's config as its shape and SHA-256 (the values are
    the runs' ``v1`` column, each v(b) = v1 / 4); resuming with one value changed is refused as a different sweep,
    while the identical table resumes with nothing to do. Short tables stay inline."""
    import hashlib

    from spicenet.store import StoreError
    from spicenet.sweep import INLINE_INPUT_ROWS

    rows = np.random.default_rng(5).uniform(-1, 1, (INLINE_INPUT_ROWS + 36, 1))
    out = tmp_path / "long.h5"
    assert run_sweep(_divider_inputs(tmp_path, rows), out, progress=False).done == len(rows)
    with h5py.File(out, "r") as f:
        stored = json.loads(f.attrs["config"])["inputs"]
        n = int(f["table"].attrs["rows"])
        v1, row = f["table/params/v1"][:n], f["table/params/input_row"][:n].astype(int)
        g = f["vectors/v(b)"]
        vb = g["data"][:][g["offset"][:n]]
    assert "rows" not in stored and stored["rows_shape"] == [len(rows), 1]
    assert stored["rows_sha256"] == hashlib.sha256(rows.astype(np.float64).tobytes()).hexdigest()
    np.testing.assert_array_equal(v1, rows[row, 0])
    np.testing.assert_allclose(vb, rows[row, 0] / 4, rtol=1e-9, atol=1e-12)
    again = run_sweep(_divider_inputs(tmp_path, rows), out, resume=True, progress=False)
    assert (again.done, again.skipped) == (0, len(rows))
    changed = rows.copy()
    changed[17, 0] += 1e-9
    with pytest.raises(StoreError, match="config differs"):
        run_sweep(_divider_inputs(tmp_path, changed), out, resume=True, progress=False)
    short = _divider_inputs(tmp_path, rows[:3])
    assert short.as_dict()["inputs"]["rows"] == rows[:3].tolist()
    # a store written before digests (every row inline in its config) still resumes, and still refuses other rows
    with h5py.File(out, "r+") as f:
        legacy = json.loads(f.attrs["config"])
        legacy["inputs"] = {"sources": ["v1"], "rows": rows.tolist()}
        f.attrs["config"] = json.dumps(legacy, sort_keys=True)
    again = run_sweep(_divider_inputs(tmp_path, rows), out, resume=True, progress=False)
    assert (again.done, again.skipped) == (0, len(rows))
    with pytest.raises(StoreError, match="config differs"):
        run_sweep(_divider_inputs(tmp_path, changed), out, resume=True, progress=False)


def test_store_chunks_follow_the_sweep_size_and_a_store_outgrows_them(tmp_path):
    """A 6-run sweep's per-run columns get the smallest chunk (not 8192 rows of fill values); a store made for 4 runs
    takes 600 (more than two chunks) and reads every one back; the chunk sizes themselves follow chunk_rows."""
    from spicenet.store import RunRecord, RunStore, chunk_rows, read_runs

    assert [chunk_rows(n) for n in (None, 0, 1, 256, 257, 5000, 10**6)] == [8192, 256, 256, 256, 512, 8192, 8192]
    run_sweep(SweepConfig.from_toml(_config(tmp_path, 2)), tmp_path / "small.h5", progress=False)
    with h5py.File(tmp_path / "small.h5", "r") as f:
        assert f["table/id"].chunks == (256,) and f["table/params/iref"].chunks == (256,)
        assert f["decks/netlist"].chunks[0] < 256
    path = tmp_path / "grow.h5"
    with RunStore(path, expected_rows=4) as store:
        store.append_many([RunRecord(id=f"r{k}", params={"x": float(k)}, seed=0, chip=-1, process="generic",
                                     status="ok", error=None, netlist="* n\n", vectors={"v": np.arange(k % 3 + 1, dtype=float) * k}) for k in range(600)])
    got = {rec.id: rec for rec in read_runs(path)}
    assert len(got) == 600
    for k in (0, 255, 256, 511, 599):
        assert got[f"r{k}"].params["x"] == k
        np.testing.assert_array_equal(got[f"r{k}"].vectors["v"], np.arange(k % 3 + 1, dtype=float) * k)
