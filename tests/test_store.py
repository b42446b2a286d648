"""HDF5 run store: contract layout read with plain h5py, resume, refusal to overwrite, and crash safety
(SIGKILL of a writer at random and at chosen moments, torn journal tails)."""

from __future__ import annotations

import datetime as dt
import errno
import os
import inspect
import json
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

import spicenet
from spicenet.store import (
    JournalWarning,
    RunRecord,
    RunStore,
    StoreError,
    StoreExistsError,
    dataset_name,
    journal_path,
    read_run,
    read_runs,
    vector_name,
)

REPO = Path(__file__).resolve().parents[1]


def make_record(rid: str, n: int = 64, status: str = "ok") -> RunRecord:
    """A record whose content is a pure function of its id (so a reader can check it independently)."""
    rng = np.random.default_rng(zlib.crc32(rid.encode()))
    t = np.linspace(0.0, 1e-6, n)
    if status == "failed":
        return RunRecord(
            id=rid, params={"w": 1e-6, "nf": 2, "corner": "tt"}, seed=7, chip=3, process="generic",
            status="failed", error=f"timestep too small at node out ({rid})", netlist=f"* deck {rid}\n.end\n",
            vectors={}, units={}, measurements={},
            attrs={"analysis": "tran 1n 1u", "wall_s": None, "retries": [{"gmin": 1e-9}]},
        )
    return RunRecord(
        id=rid,
        params={"w": float(rng.uniform(1e-6, 2e-6)), "nf": 2, "corner": "tt"},
        seed=int(rng.integers(0, 2**63 - 1)),
        chip=int(rng.integers(-1, 100)),
        process="generic",
        status="ok",
        error=None,
        netlist=f"* deck {rid}\nR1 in out 1k\nC1 out 0 1p\n.end\n",
        vectors={"time": t, "v(out)": rng.normal(size=n), "i(vdd)": rng.normal(size=n) * 1e-6},
        units={"time": "s", "v(out)": "V", "i(vdd)": "A"},
        measurements={"freq": float(rng.uniform(1e6, 1e7)), "duty": float("nan")},
        attrs={"analysis": "tran 1n 1u", "wall_s": 0.01, "mode": "shared", "retries": []},
    )


def assert_same(a: RunRecord, b: RunRecord) -> None:
    assert (a.id, a.params, a.seed, a.chip, a.process, a.status, a.error, a.netlist) == (
        b.id, b.params, b.seed, b.chip, b.process, b.status, b.error, b.netlist)
    assert set(a.vectors) == set(b.vectors)
    for name in a.vectors:
        np.testing.assert_array_equal(np.asarray(a.vectors[name]), np.asarray(b.vectors[name]))
        assert a.units.get(name, "") == b.units.get(name, "")
    assert json.dumps(a.measurements, sort_keys=True) == json.dumps(b.measurements, sort_keys=True)
    assert a.attrs == b.attrs


# ------------------------------------------------------------------------------------------ layout / round trip


def test_round_trip_plain_h5py_contract_paths(tmp_path: Path) -> None:
    path = tmp_path / "runs.h5"
    config = {"template": "rc", "grid": {"r": [1e3, 2e3]}, "chips": 2}
    ok = make_record("p000000-c0000", n=200)
    failed = make_record("p000001-c0000", status="failed")
    freq = np.logspace(0, 6, 50)
    h = 1.0 / (1.0 + 1j * freq / 1e3)
    special = RunRecord(
        id="p000002-c0001", params={"r": 1e3}, seed=1, chip=1, process="sky130", status="ok", error=None,
        netlist="* ac\n.end\n",
        vectors={"frequency": freq, "v(out)": h, "i(x1/m1)": np.float32([1.5, 2.5]), "@m1[id]": np.float64(3e-9),
                 "v(x1.n#2)": np.arange(4)},
        units={"frequency": "Hz", "v(out)": "V", "i(x1/m1)": "A", "@m1[id]": "A"},
    )
    with RunStore(path, config) as store:
        store.set_root_attrs(ngspice_version="ngspice-39")
        for rec in (ok, failed, special):
            store.append(rec)

    with h5py.File(path, "r") as f:  # plain h5py, paths of the DESIGN.md contract (layout 2)
        assert f.attrs["spicenet_version"] == spicenet.__version__
        assert f.attrs["ngspice_version"] == "ngspice-39"
        assert json.loads(f.attrs["config"]) == config
        assert f.attrs["store_layout"] == 2 and "vectors" in json.loads(f.attrs["layout"])
        created = dt.datetime.fromisoformat(f.attrs["created"])
        assert abs((dt.datetime.now(dt.timezone.utc) - created).total_seconds()) < 120
        t = f["table"]
        assert int(t.attrs["rows"]) == 3
        assert list(t["id"].asstr()[:]) == [ok.id, failed.id, special.id]
        assert t["params/w"][0] == ok.params["w"] and t["params/nf"][0] == 2.0  # parameters as floats
        assert t["params/corner"].asstr()[0] == "tt"
        assert (t["seed"][0], t["chip"][0], t["process"].asstr()[0], t["status"].asstr()[0]) == (
            ok.seed, ok.chip, "generic", "ok")
        assert t["error"].asstr()[0] == "" and f["decks/netlist"].asstr()[t["deck"][0]] == ok.netlist
        assert t["analysis"].asstr()[0] == "tran 1n 1u" and t["wall_s"][0] == 0.01 and t["retries"][1] == 1
        assert t["measure/freq"][0] == ok.measurements["freq"] and np.isnan(t["measure/duty"][0])
        # the time axis is stored once in /axes; the other vectors ragged with offsets
        axis = t["axis"][0]
        a = f["axes"]
        assert a["name"].asstr()[axis] == "time" and a["unit"].asstr()[axis] == "s"
        np.testing.assert_array_equal(a["data"][a["offset"][axis]:a["offset"][axis] + a["length"][axis]],
                                      ok.vectors["time"])
        for name in ("v(out)", "i(vdd)"):
            g = f[f"vectors/{name}"]
            assert g["data"].dtype == (np.complex128 if name == "v(out)" else np.float64)
            assert g.attrs["unit"] == ok.units[name] and g.attrs["name"] == name
            o, n = g["offset"][0], g["length"][0]
            np.testing.assert_array_equal(g["data"][o:o + n], ok.vectors[name])
            assert g["length"][1] == -1  # the failed run has no vectors
        assert t["status"].asstr()[1] == "failed" and t["error"].asstr()[1] == failed.error
        gs = f["vectors/v(out)"]
        assert gs["data"].dtype == np.complex128  # an ac run made the column complex; real runs kept exactly
        o, n = gs["offset"][2], gs["length"][2]
        np.testing.assert_array_equal(gs["data"][o:o + n], h)
        # only "/" (and "%") is escaped; the exact name is in the "name" attr
        assert "i(x1%2Fm1)" in f["vectors"] and f["vectors/i(x1%2Fm1)"].attrs["name"] == "i(x1/m1)"
        assert f["vectors/v(x1.n#2)"].attrs["unit"] == ""

    back = {r.id: r for r in read_runs(path)}
    assert sorted(back) == ["p000000-c0000", "p000001-c0000", "p000002-c0001"]
    assert_same(back[ok.id], ok)
    assert_same(back[failed.id], failed)
    assert back[special.id].vectors["i(x1/m1)"].tolist() == [1.5, 2.5]
    assert back[special.id].vectors["@m1[id]"].shape == () and back[special.id].vectors["@m1[id]"] == 3e-9
    assert_same(read_run(path, ok.id), ok)
    meta = {r.id: r for r in read_runs(path, load_vectors=False)}
    assert meta[ok.id].vectors == {} and meta[ok.id].params == ok.params and meta[failed.id].error == failed.error
    with pytest.raises(KeyError, match="p999"):
        read_run(path, "p999")
    assert not journal_path(path).exists()


@pytest.mark.parametrize("name", ["v(out)", "i(x1/m1)", "a%2Fb", "%", ".", "..", ".x", "v(a/b/%c)"])
def test_dataset_name_escape_is_reversible_and_has_no_slash(name: str) -> None:
    escaped = dataset_name(name)
    assert "/" not in escaped and escaped not in (".", "..")
    assert vector_name(escaped) == name


def test_bad_records_rejected_with_named_argument(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r.h5") as store:
        for bad, word in [
            (dict(id="a/b"), "id"),
            (dict(status="done"), "status"),
            (dict(status="failed", error=None), "error"),
            (dict(seed=-1), "seed"),
            (dict(params={"w": [1, 2]}), "param 'w'"),
            (dict(units={"v(nope)": "V"}), "v\\(nope\\)"),
            (dict(vectors={"v(s)": np.array(["x"])}), "v\\(s\\)"),
            (dict(attrs={"x": object()}), "attrs"),
        ]:
            rec = make_record("p0")
            for k, v in bad.items():
                setattr(rec, k, v)
            with pytest.raises(ValueError, match=word):
                store.append(rec)
        assert store.statuses() == {}


# ------------------------------------------------------------------------------------------ resume / overwrite


def test_overwrite_refused_resume_skips_done_and_retries_failed(tmp_path: Path) -> None:
    path = tmp_path / "runs.h5"
    with RunStore(path, {"a": 1}) as store:
        store.append(make_record("p0"))
        store.append(make_record("p1", status="failed"))
    before = path.read_bytes()
    with pytest.raises(StoreExistsError, match=str(path)):
        RunStore(path, {"a": 1})
    assert path.read_bytes() == before and not journal_path(path).exists()
    with pytest.raises(StoreError, match="config differs"):
        RunStore(path, {"a": 2}, resume=True)

    with RunStore(path, {"a": 1}, resume=True) as store:
        assert store.done_ids() == {"p0"}  # failed points are not done: a resumed sweep retries them
        with pytest.raises(StoreError, match="in use"):
            RunStore(path, resume=True)
        store.append(make_record("p1"))  # the retry succeeds and replaces the failed group
        store.append(make_record("p2"))
    with h5py.File(path, "r") as f:
        assert sorted(f["table/id"].asstr()[:]) == ["p0", "p1", "p2"]  # the retry replaced its row
        status = dict(zip(f["table/id"].asstr()[:], f["table/status"].asstr()[:]))
        assert status["p1"] == "ok"
    assert_same(read_run(path, "p1"), make_record("p1"))
    with RunStore(path, resume=True) as store:
        assert store.done_ids() == {"p0", "p1", "p2"}


def test_gzip_option_compresses_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "z.h5"
    long = make_record("long", n=10_000)
    short = make_record("short", n=100)
    with RunStore(path, compression="gzip") as store:
        store.append(long)
        store.append(short)
    with h5py.File(path, "r") as f:
        ds = f["vectors/v(out)/data"]
        assert ds.compression == "gzip" and ds.chunks is not None and ds.dtype == np.float64
        assert f["table/measure/freq"].compression == "gzip"
    assert_same(read_run(path, "long"), long)
    assert_same(read_run(path, "short"), short)


def test_copy_cost_is_a_bounded_fraction_of_wall_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Auto-commits wait max(interval, o_prev*(1-f)/f) after the last commit (o = per-commit overhead), so the file
    copy (made slow here: a large file) takes <= ~f of the wall time; a commit per append would spend ~90% copying."""
    import spicenet.store as st

    real_copy = st._copy_file

    def slow_copy(src: Path, dst: Path) -> None:
        real_copy(src, dst)
        time.sleep(0.04)  # a ~40 MB file

    monkeypatch.setattr(st, "_copy_file", slow_copy)
    f = 0.2
    store = RunStore(tmp_path / "b.h5", commit_interval_s=0.0, max_commit_fraction=f, journal_fsync_s=1.0)
    t0 = time.monotonic()
    for k in range(200):
        time.sleep(0.002)  # a short simulation
        store.append(make_record(f"p{k:04d}", n=50))
    wall = time.monotonic() - t0
    fraction = store.stats["overhead_s"] / wall
    assert 2 <= store.stats["commits"] <= 20, store.stats  # batches: not one commit per append, not a single one
    print(f"copy-on-commit overhead fraction {fraction:.3f} (f = {f}), {store.stats}")
    assert fraction < f * 1.25, (fraction, store.stats)
    assert store.next_commit_interval() >= 0.04 * (1 - f) / f
    store.close()
    assert len(list(read_runs(tmp_path / "b.h5"))) == 200


# -------------------------------------------------------------------------------------------------- journal


def _abandoned_store(path: Path, n: int) -> list[RunRecord]:
    """Appends n records with no commit and drops the store as a kill would."""
    recs = [make_record(f"p{k}") for k in range(n)]
    store = RunStore(path, commit_interval_s=1e9)
    for rec in recs:
        store.append(rec)
    store._abandon()
    return recs


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_torn_journal_tail_is_ignored(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "j.h5"
    recs = _abandoned_store(path, 3)
    with h5py.File(path, "r") as f:
        assert int(f["table"].attrs["rows"]) == 0  # nothing committed yet: everything is in the journal
    jp = journal_path(path)
    data = bytearray(jp.read_bytes())
    if damage == "truncate":
        data = data[:-10]
    elif damage == "flip":
        data[-5] ^= 0xFF
    else:
        data += b"SNJ1\x00\x01garbage"
    jp.write_bytes(bytes(data))
    with pytest.warns(JournalWarning, match="ignored"):
        store = RunStore(path, resume=True)
    kept = 3 if damage == "garbage" else 2
    assert store.done_ids() == {r.id for r in recs[:kept]}
    store.close()
    back = {r.id: r for r in read_runs(path)}
    assert sorted(back) == sorted(r.id for r in recs[:kept])
    for rec in recs[:kept]:
        assert_same(back[rec.id], rec)


def test_new_store_refuses_when_only_a_journal_exists(tmp_path: Path) -> None:
    path = tmp_path / "j.h5"
    recs = _abandoned_store(path, 2)
    path.unlink()
    with pytest.raises(StoreExistsError, match="journal"):
        RunStore(path)
    with RunStore(path, resume=True) as store:  # the journal alone rebuilds the points
        assert store.done_ids() == {r.id for r in recs}
    # an empty journal and no file (a kill while a new store was being created) is no store: a new one opens
    fresh = tmp_path / "fresh.h5"
    journal_path(fresh).write_bytes(b"")
    with RunStore(fresh) as store:
        store.append(recs[0])
    assert [r.id for r in read_runs(fresh)] == [recs[0].id]


# -------------------------------------------------------------------------------------------- SIGKILL tests

CHILD_HEAD = textwrap.dedent(
    """
    import os, signal, sys, time, zlib
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    import spicenet.store as st
    from spicenet.store import RunRecord
    """
)
CHILD_BODY = textwrap.dedent(
    """
    path, prefix, n, stage = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    interval = float(sys.argv[6])

    def die(*a, **k):
        os.kill(os.getpid(), signal.SIGKILL)

    store = st.RunStore(path, {"sweep": "kill-test"}, resume=True, commit_interval_s=interval,
                        max_commit_fraction=0.5, journal_fsync_s=0.05)
    if stage == "in_h5_write":
        real = st._Layout2.write
        def write(*a, **k):
            real(*a, **k)
            die()  # the batch is written into the open copy, which is neither closed nor renamed
        st._Layout2.write = write
    elif stage == "before_replace":
        os.replace = die
    elif stage == "after_replace":
        os.ftruncate = die
    for k in range(n):
        rid = f"{prefix}-{k:05d}"
        store.append(make_record(rid, n=300))
        print(rid, flush=True)
        if stage == "random":
            time.sleep(0.002)
    if stage == "close":
        store.close()
    elif stage != "random":
        store.commit()
    print("END", flush=True)
    """
)
# the child gets make_record's source rather than importing this module (which would import pytest: slower start)
CHILD = CHILD_HEAD + inspect.getsource(make_record) + CHILD_BODY


def _child(path: Path, prefix: str, n: int, stage: str, interval: float) -> subprocess.Popen[str]:
    """The writer process; its stderr goes to ``<path>.<prefix>.err`` (read it with ``_err``)."""
    err = open(f"{path}.{prefix}.err", "w")
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(REPO), str(path), prefix, str(n), stage, str(interval)],
        stdout=subprocess.PIPE, stderr=err, text=True, cwd=str(REPO),
    )
    err.close()
    return proc


def _finish(proc: subprocess.Popen[str]) -> str:
    """The rest of the child's stdout (through the same buffered reader as any readline before) after it ended."""
    rest = proc.stdout.read()
    proc.stdout.close()
    proc.wait(timeout=60)
    return rest


def _err(path: Path, prefix: str) -> str:
    return Path(f"{path}.{prefix}.err").read_text()[-2000:]


def _committed_ids(path: Path) -> set[str]:
    with h5py.File(path, "r") as f:  # must always open with plain h5py
        return set(f["table/id"].asstr()[: int(f["table"].attrs["rows"])])


def _check_recovered(path: Path, reported: list[str]) -> set[str]:
    """Resume and check every reported id is stored, bit-identical to what the child appended."""
    with RunStore(path, {"sweep": "kill-test"}, resume=True) as store:
        done = store.done_ids()
    missing = set(reported) - done
    assert not missing, f"lost {len(missing)} appended points, e.g. {sorted(missing)[:3]}"
    for rid in reported[:: max(1, len(reported) // 5)] + reported[-1:]:
        assert_same(read_run(path, rid), make_record(rid, n=300))
    return done


def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "kill.h5"
    rng = np.random.default_rng(20261123)
    trials = 12
    pending_at_kill = []
    all_reported: list[str] = []
    allowed_extra: set[str] = set()
    killed_in_commit = 0
    for trial in range(trials):
        proc = _child(path, f"t{trial:02d}", 100_000, "random", 0.03)
        first = proc.stdout.readline()  # the store is open and one point is appended
        assert first.endswith("\n"), _err(path, f"t{trial:02d}")
        time.sleep(float(rng.uniform(0.0, 0.3)))
        proc.send_signal(signal.SIGKILL)
        rest = _finish(proc)
        assert proc.returncode == -signal.SIGKILL
        lines = (first + rest).split("\n")[:-1]  # only complete lines: ids whose append had returned
        assert "END" not in lines
        killed_in_commit += path.with_name(path.name + ".tmp").exists()
        committed = _committed_ids(path)
        pending_at_kill.append(len(set(lines) - committed))
        all_reported += lines
        # the kill may land after append() returned but before the id was printed: at most that one id is extra
        allowed_extra.add(f"t{trial:02d}-{len(lines):05d}")
        done = _check_recovered(path, all_reported)
        invented = done - set(all_reported) - allowed_extra
        assert not invented, (trial, sorted(invented))
    # the journal path was exercised: some kills left appended points that were not yet in the HDF5 file
    assert sum(n > 0 for n in pending_at_kill) >= 3, pending_at_kill
    print(f"kills: {trials}, with points only in the journal: {sum(n > 0 for n in pending_at_kill)}, "
          f"inside a commit (stale .tmp): {killed_in_commit}, points: {len(all_reported)}")


@pytest.mark.parametrize("stage", ["in_h5_write", "before_replace", "after_replace"])
def test_sigkill_inside_commit(tmp_path: Path, stage: str) -> None:
    path = tmp_path / "commit.h5"
    proc = _child(path, "a", 3, "close", 0.0)  # first child: 3 points, closed cleanly
    _finish(proc)
    assert proc.returncode == 0, _err(path, "a")
    base = _committed_ids(path)
    assert base == {"a-00000", "a-00001", "a-00002"} and not journal_path(path).exists()
    proc = _child(path, "b", 4, stage, 1e9)  # appends 4, then killed inside commit()
    out = _finish(proc)
    assert proc.returncode == -signal.SIGKILL, _err(path, "b")
    reported = out.split("\n")[:-1]
    assert reported == [f"b-{k:05d}" for k in range(4)]
    # the live file is untouched until os.replace, complete after it
    expected = base | set(reported) if stage == "after_replace" else base
    assert _committed_ids(path) == expected
    tmp = path.with_name(path.name + ".tmp")
    assert tmp.exists() == (stage != "after_replace")
    assert journal_path(path).stat().st_size > 0
    done = _check_recovered(path, sorted(base) + reported)
    assert done == base | set(reported) and not tmp.exists()
    with h5py.File(path, "r") as f:
        assert int(f["table"].attrs["rows"]) == 7  # replay after a kill between replace and truncate adds no duplicates


# ------------------------------------------------------------------------------- layout 1, disk full, lock race


def _write_layout1(path: Path) -> list[dict]:
    """A layout-1 store written with plain h5py as the old writer did (one group per run, JSON attrs, parameters
    as the sweep then stored them: strings such as "50k")."""
    runs = []
    with h5py.File(path, "w") as f:
        f.attrs.update({"spicenet_version": "0.1.0", "ngspice_version": "ngspice-39", "created": "2026-11-01T00:00:00",
                        "config": "{}", "store_layout": 1})
        g = f.create_group("runs")
        for p, r in enumerate(["50k", "100k", "200k"]):
            for chip in range(2):
                rid = f"p{p:05d}-c{chip:05d}"
                value = 1e-3 * (p + 1) + 1e-6 * chip
                run = g.create_group(rid)
                run.attrs.update({"params": json.dumps({"r": r}), "seed": 1, "chip": chip, "process": "generic",
                                  "status": "ok", "netlist": f"* r={r}\n.end\n",
                                  "measurements": json.dumps({"iout": value}),
                                  "extra": json.dumps({"analysis": "op", "wall_s": 0.001, "retries": []})})
                ds = run.create_dataset("i(vout)", data=np.array([value]))
                ds.attrs.update({"name": "i(vout)", "unit": "A"})
                runs.append({"id": rid, "r": r, "chip": chip, "value": value})
    return runs


def test_layout1_store_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "v1.h5"
    expected = _write_layout1(path)
    back = {r.id: r for r in read_runs(path)}
    assert sorted(back) == sorted(e["id"] for e in expected)
    for e in expected:
        assert back[e["id"]].vectors["i(vout)"].tolist() == [e["value"]] and back[e["id"]].params == {"r": e["r"]}
    runs = spicenet.open_runs(path)
    df = runs.table()
    assert len(df) == 6 and df["r"].dtype == np.float64  # "50k" -> 50000.0: sorts as a number
    assert list(df.sort_values("r")["r"].unique()) == [50e3, 100e3, 200e3]
    da = runs.to_xarray("i(vout)")
    assert da.dims == ("point", "chip") and list(da["r"].values) == [50e3, 100e3, 200e3]
    for e in expected:
        assert da.values[int(e["id"][1:6]), e["chip"]] == e["value"]


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_in_journal_write_keeps_earlier_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import spicenet.store as st

    path = tmp_path / "full.h5"
    recs = [make_record(f"p{k}") for k in range(4)]
    store = RunStore(path, commit_interval_s=1e9)
    store.append_many(recs[:2])
    real_write = os.write

    def half_write(fd, data):  # the disk fills up in the middle of a record: a partial write, then ENOSPC
        n = real_write(fd, bytes(data[: len(data) // 2]))
        monkeypatch.setattr(st.os, "write", _enospc)
        return n

    monkeypatch.setattr(st.os, "write", half_write)
    with pytest.raises(StoreError, match="cannot write its journal"):
        store.append(recs[2])
    monkeypatch.setattr(st.os, "write", real_write)
    store.append(recs[3])  # space came back: the journal was cut back, so this record follows intact ones
    store._abandon()  # as a kill would
    with RunStore(path, resume=True) as again:  # no JournalWarning: no torn record in the middle
        assert again.done_ids() == {"p0", "p1", "p3"}
    for rec in (recs[0], recs[1], recs[3]):
        assert_same(read_run(path, rec.id), rec)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.h5"]


def test_disk_full_in_commit_leaves_no_tmp_and_raises_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import spicenet.store as st

    path = tmp_path / "full.h5"
    recs = [make_record(f"p{k}") for k in range(3)]
    before_files = None
    with pytest.raises(RuntimeError, match="the sweep's own error") as info:
        with RunStore(path, commit_interval_s=1e9) as store:
            store.append_many(recs)
            before_files = path.read_bytes()
            monkeypatch.setattr(st._Layout2, "write", _enospc)  # the copy is written when the disk is full
            raise RuntimeError("the sweep's own error")
    # __exit__ tried to commit, failed, and did not chain a second error onto the first
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert path.read_bytes() == before_files  # the live file untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.h5", "full.h5.journal"]  # no .tmp left
    with pytest.raises(StoreError, match="commit failed") as once:  # the lock was released; a resume while the
        RunStore(path, resume=True)  # disk is still full fails with one error, and changes nothing
    assert once.value.__suppress_context__  # one traceback: the OSError is not printed under it
    assert path.read_bytes() == before_files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.h5", "full.h5.journal"]
    monkeypatch.undo()
    with RunStore(path, resume=True) as store3:  # space again: every record comes back from the journal
        assert store3.done_ids() == {"p0", "p1", "p2"}
    for rec in recs:
        assert_same(read_run(path, rec.id), rec)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.h5"]


def test_lock_race_loser_keeps_the_winners_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loser saw no journal (so it thinks it created it), the winner created and locked it in between: the
    loser must fail with 'in use' and leave the winner's journal alone (else a third writer could get in)."""
    path = tmp_path / "race.h5"
    winner = RunStore(path, commit_interval_s=1e9)
    jp = journal_path(path)
    real_exists = Path.exists
    calls = {"n": 0}

    def exists(self: Path) -> bool:
        if self == jp and calls["n"] == 0:
            calls["n"] += 1
            return False  # the loser's look came before the winner's create
        return real_exists(self)

    monkeypatch.setattr(Path, "exists", exists)
    with pytest.raises(StoreError, match="in use"):
        RunStore(path, resume=True)
    monkeypatch.undo()
    assert calls["n"] == 1 and jp.exists()
    with pytest.raises(StoreError, match="in use"):  # the lock still holds: no second writer
        RunStore(path, resume=True)
    winner.append(make_record("p0"))
    winner.close()
    assert_same(read_run(path, "p0"), make_record("p0"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race.h5"]


def _wave_record(rid: str, point: int, chip: int, t: np.ndarray, tau: float) -> RunRecord:
    return RunRecord(id=rid, params={"tau": tau}, seed=1, chip=chip, process="generic", status="ok", error=None,
                     netlist=f"* point {point}\n.end\n", vectors={"time": t, "v(out)": 1.0 - np.exp(-t / tau)},
                     units={"time": "s", "v(out)": "V"}, attrs={"analysis": "tran 1n 1u", "wall_s": 0.0},
                     point=point, param_units={"tau": "s"}, scale="time")


def test_to_xarray_shared_axis_and_grid_interpolation(tmp_path: Path) -> None:
    """Runs on one time grid: dims point x chip x time, the axis stored once. Runs with their own time points:
    refused without grid, interpolated onto grid (checked against the analytic exponential at the grid points)."""
    shared = tmp_path / "shared.h5"
    t = np.linspace(0, 1e-6, 101)
    with RunStore(shared) as store:
        store.append_many([_wave_record(f"p{p:05d}-c{c:05d}", p, c, t, tau) for p, tau in enumerate((1e-7, 3e-7))
                           for c in range(3)])
    with h5py.File(shared, "r") as f:
        assert len(f["axes/name"]) == 1 and f["axes/data"].shape == (101,)  # 6 runs, one time axis
    da = spicenet.open_runs(shared).to_xarray("v(out)")
    assert da.dims == ("point", "chip", "time") and da.shape == (2, 3, 101)
    np.testing.assert_array_equal(da["time"].values, t)
    assert list(da["tau"].values) == [1e-7, 3e-7] and da["tau"].attrs["unit"] == "s"
    np.testing.assert_allclose(da.values[1, 2], 1.0 - np.exp(-t / 3e-7), rtol=0, atol=0)

    ragged = tmp_path / "ragged.h5"
    rng = np.random.default_rng(5)
    with RunStore(ragged) as store:
        for p, tau in enumerate((1e-7, 3e-7)):
            for c in range(2):
                own = np.sort(np.r_[0.0, rng.uniform(0, 1e-6, 400), 1e-6])  # a variable-step transient
                store.append(_wave_record(f"p{p:05d}-c{c:05d}", p, c, own, tau))
    runs = spicenet.open_runs(ragged)
    with pytest.raises(ValueError, match="grid"):
        runs.to_xarray("v(out)")
    grid = np.linspace(0, 1e-6, 11)
    da = runs.to_xarray("v(out)", grid=grid)
    assert da.dims == ("point", "chip", "time") and da.shape == (2, 2, 11)
    for p, tau in enumerate((1e-7, 3e-7)):
        np.testing.assert_allclose(da.values[p], np.broadcast_to(1.0 - np.exp(-grid / tau), (2, 11)), atol=2e-3)


def test_resume_of_a_layout1_store_appends_layout1_groups(tmp_path: Path) -> None:
    path = tmp_path / "v1.h5"
    _write_layout1(path)
    with RunStore(path, resume=True) as store:
        assert len(store.done_ids()) == 6
        store.append(make_record("p00009-c00000"))
    with h5py.File(path, "r") as f:
        assert f.attrs["store_layout"] == 1 and len(f["runs"]) == 7 and "table" not in f
    assert_same(read_run(path, "p00009-c00000"), make_record("p00009-c00000"))


def test_alter_deltas_are_numeric_columns_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    chips = {c: (f"alter xm1 delvto = {0.001 * c!r}", f"alter xm2  w = {1e-6 + 1e-8 * c!r}") for c in range(3)}
    with RunStore(path) as store:
        for c, alters in chips.items():
            rec = make_record(f"p00000-c{c:05d}")
            rec.alters = alters + (("alter vin dc = {x}",) if c == 2 else ())  # not a number: kept as text
            store.append(rec)
    with h5py.File(path, "r") as f:
        assert list(f["alters/target"].asstr()[:]) == ["alter xm1 delvto", "alter xm2 w"]
        values = f["table/alter_values"][:]
        assert values.shape == (3, 2)
        for c in range(3):
            assert list(values[c]) == [0.001 * c, 1e-6 + 1e-8 * c]
        assert list(f["table/alters"].asstr()[:]) == ["", "", "alter vin dc = {x}"]
    for c in range(3):
        back = read_run(path, f"p00000-c{c:05d}").alters
        assert back[:2] == (f"alter xm1 delvto = {0.001 * c!r}", f"alter xm2 w = {1e-6 + 1e-8 * c!r}")
        assert back[2:] == (("alter vin dc = {x}",) if c == 2 else ())


def test_measure_failed_runs_are_done_failed_runs_are_retried(tmp_path: Path) -> None:
    path = tmp_path / "m.h5"
    measured = make_record("p1")
    measured.status, measured.error = "measure_failed", "measure 'f': no oscillation"
    with RunStore(path) as store:
        store.append_many([make_record("p0"), measured, make_record("p2", status="failed")])
    with RunStore(path, resume=True) as store:
        assert store.done_ids() == {"p0", "p1"}
    back = read_run(path, "p1")
    assert back.status == "measure_failed" and back.error == measured.error
    np.testing.assert_array_equal(back.vectors["v(out)"], measured.vectors["v(out)"])


def test_nearly_full_disk_refuses_the_commit_before_hdf5_sees_it(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked for real on a 1 MB and an 8 MB tmpfs (h5py turns a failed flush into RuntimeErrors and "Exception
    ignored" tracebacks): commits that cannot fit are refused from statvfs; appends still journal and return."""
    import spicenet.store as st

    path = tmp_path / "nf.h5"
    recs = [make_record(f"p{k}") for k in range(5)]
    store = RunStore(path, commit_interval_s=0.0)  # every append wants to commit
    real = os.statvfs

    class Tiny:
        f_bavail, f_frsize = 10, 4096  # 40 kB free

    monkeypatch.setattr(st.os, "statvfs", lambda p: Tiny())
    for rec in recs:
        store.append(rec)  # durable in the journal: no error although no commit can be made
    assert store.stats["commits"] == 0 and store.done_ids() == {r.id for r in recs}
    with pytest.raises(StoreError, match="nearly full"):
        store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nf.h5", "nf.h5.journal"]
    monkeypatch.setattr(st.os, "statvfs", real)
    with RunStore(path, resume=True) as again:
        assert again.done_ids() == {r.id for r in recs}
    for rec in recs:
        assert_same(read_run(path, rec.id), rec)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nf.h5"]
