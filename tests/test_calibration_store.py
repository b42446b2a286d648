"""Calibrations as sweeps (issue 15): every ngspice run of ``spicenet calibrate`` goes to the run store beside the
surrogate (``cal.h5`` -> ``cal.runs.h5``, :mod:`spicenet.spice.recorded`), and ``--resume`` reads stored runs back
instead of simulating them again.

- the store lists exactly the runs the surrogate's provenance names (``runs_file``, ``run_ids``);
- a resume of a finished calibration simulates nothing and writes a bit-identical surrogate;
- a resume after a kill (records partly only in the journal) simulates only the missing runs;
- a changed deck is simulated again, not replayed; failed runs are stored with ngspice's error and retried;
- the CLI refuses an existing run store without ``--resume`` (exit 2), as ``spicenet sweep`` does.

The resistive family's quick calibration (a few seconds) is the calibration under test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from spicenet import open_runs
from spicenet.spice.engine import Deck, Engine
from spicenet.spice.job import RunSpec
from spicenet.spice.recorded import RecordedEngine, RunRecorder, resume_calibrations, run_hash, runs_path
from spicenet.spice.results import SimResult
from spicenet.spice.worker import WorkerPool
from spicenet.store import StoreExistsError, read_run
from spicenet.surrogate import SurrogateFile

needs_ngspice = pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice not installed")


def _counting(seen: list):
    """A ``WorkerPool.run`` that notes every (deck, run id) it is asked to simulate in ``seen``."""
    original = WorkerPool.run

    def counting(self, jobs):
        jobs = list(jobs)
        seen.extend((job.deck, run.id) for job in jobs for run in job.runs)
        yield from original(self, jobs)

    return counting


@pytest.fixture
def simulated(monkeypatch):
    """Every (deck, run id) the worker pools are asked to simulate."""
    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(WorkerPool, "run", _counting(seen))
    return seen


def _calibrate(output: Path, resume: bool | None = None) -> dict:
    from spicenet.cells.resistive.calibrate import calibrate_resistive
    from spicenet.families import get_family

    config = get_family("resistive").calibration_settings(True)
    return calibrate_resistive(config, process="generic", quick=True, output=output, workers=1, seed=0,
                               resume=resume)


def _same_surrogate(a: Path, b: Path) -> None:
    sa, sb = SurrogateFile.load(a), SurrogateFile.load(b)
    assert sa.params.keys() == sb.params.keys() and sa.extra.keys() == sb.extra.keys()
    for name in sa.params:
        assert np.array_equal(sa.params[name].values, sb.params[name].values), name
    for name in sa.extra:
        assert np.array_equal(sa.extra[name], sb.extra[name]), name
    assert sa.attrs == sb.attrs
    assert sa.provenance["run_ids"] == sb.provenance["run_ids"]


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """One finished quick calibration: (result, surrogate path, a copy of the surrogate)."""
    folder = tmp_path_factory.mktemp("cal")
    out = folder / "cal.h5"
    res = _calibrate(out)
    keep = folder / "first.h5"
    shutil.copy(out, keep)
    return res, out, keep


@needs_ngspice
def test_store_lists_every_run_the_provenance_names(first):
    res, out, _ = first
    store = out.with_name("cal.runs.h5")
    assert runs_path(out) == store and store.is_file()
    prov = SurrogateFile.load(out).provenance
    assert prov["runs_file"] == "cal.runs.h5"
    table = open_runs(store).table()
    assert len(table) == len(prov["run_ids"]) and list(table["id"]) == prov["run_ids"]
    assert set(table["status"]) == {"ok"}
    chips = res["fit"]["chips"]
    stages = table["stage"].value_counts().to_dict()
    assert stages["iv_nominal"] == 1 and stages["iv_mc"] == chips  # both sweeps use ids d0000...: prefixed
    assert {"levels", "solver"} <= set(stages)
    run = read_run(store, "iv_mc:d0001")
    assert "Xd1 a 0 diode" in run.netlist and run.alters and run.attrs["analysis"].startswith("dc vd")
    assert run.vectors["i(vd)"].size == run.vectors["v-sweep"].size > 4 and run.attrs["wall_s"] > 0


@needs_ngspice
def test_resume_of_a_finished_calibration_simulates_nothing_and_fits_the_same(first, simulated):
    res, out, keep = first
    again = _calibrate(out, resume=True)
    assert simulated == []
    assert again["fit"] == res["fit"]
    _same_surrogate(keep, out)


@needs_ngspice
def test_resume_after_a_kill_simulates_only_the_missing_runs(first, tmp_path, monkeypatch, simulated):
    from spicenet.cells.resistive import calibrate as cal
    from spicenet.store import RunStore

    res, _, keep = first
    out = tmp_path / "cal.h5"
    networks = []
    original = cal.spice_node_voltages

    class Killed(Exception):
        pass

    def dies_at_the_third_network(*args, **kwargs):
        if len(networks) == 2:
            raise Killed
        networks.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(cal, "spice_node_voltages", dies_at_the_third_network)
    close = RunStore.close
    monkeypatch.setattr(RunStore, "close", lambda self: self._abandon())  # like a SIGKILL: the journal stays
    with pytest.raises(Killed):
        _calibrate(out)
    monkeypatch.setattr(cal, "spice_node_voltages", original)
    monkeypatch.setattr(RunStore, "close", close)
    stored = len(simulated)  # every run simulated before the kill was recorded (committed or in the journal)
    assert stored > 0 and not out.exists()
    simulated.clear()
    again = _calibrate(out, resume=True)
    total = len(SurrogateFile.load(out).provenance["run_ids"])
    assert len(simulated) == total - stored > 0
    assert again["fit"] == res["fit"]
    _same_surrogate(keep, out)
    assert len(open_runs(runs_path(out)).table()) == total


@needs_ngspice
def test_a_changed_deck_is_simulated_again_not_replayed(first, tmp_path, monkeypatch, simulated):
    from spicenet.cells.resistive import calibrate as cal

    res, out, keep = first
    work = tmp_path / "cal.h5"
    shutil.copy(out, work)
    shutil.copy(runs_path(out), runs_path(work))
    monkeypatch.setattr(cal, "IV_OPTIONS", cal.IV_OPTIONS + "\n* a changed I-V deck")
    again = _calibrate(work, resume=True)
    assert len(simulated) == 1 + res["fit"]["chips"]  # the two I-V stages, nothing else
    assert all("* a changed I-V deck" in deck for deck, _ in simulated)
    assert "* a changed I-V deck" in read_run(runs_path(work), "iv_mc:d0001").netlist  # the new record replaced it
    assert "* a changed I-V deck" not in read_run(runs_path(out), "iv_mc:d0001").netlist
    assert again["fit"] == res["fit"]  # a comment changes no number


@needs_ngspice
def test_failed_runs_are_stored_with_their_error_and_retried_on_resume(tmp_path, simulated):
    deck = Deck("* t\nv1 a 0 dc 1\nr1 a 0 1k\n.end\n")
    runs = [RunSpec("x0", "op"), RunSpec("x1", "dc v1 0 1 0.5"), RunSpec("x2", "ac dec 2 1 10"),
            RunSpec("bad", "op", commands=("alter r9 = 5",))]
    store = tmp_path / "t.runs.h5"
    with RecordedEngine(Engine(), store, resume=False, process="generic", seed=3) as engine:
        with engine.stage("a"):
            first = engine.simulate_many(deck, runs)
        engine.simulate_many(deck, runs[:1])  # the same id again, outside the stage
        engine.simulate_many(deck, runs[:1])
        assert engine.run_ids == ["a:x0", "a:x1", "a:x2", "a:bad", "x0", "x0~2"]
    table = open_runs(store).table().set_index("id")
    assert table.loc["a:bad", "status"] == "failed" and "r9" in table.loc["a:bad", "error"]
    assert table.loc["a:x0", "seed"] == 3 and table.loc["a:x1", "analysis"] == "dc v1 0 1 0.5"
    simulated.clear()
    with RecordedEngine(Engine(), store, resume=True, process="generic", seed=3) as engine:
        engine.stage("a")
        again = engine.simulate_many(deck, runs)
        assert engine.recorder.counts == {"simulated": 0, "replayed": 3, "failed": 1}
    assert [rid for _, rid in simulated] == ["bad"]  # failed: simulated again
    for rid in ("x0", "x1", "x2"):
        a, b = first[rid], again[rid]
        assert isinstance(a, SimResult) and isinstance(b, SimResult)
        assert list(a.vectors) == list(b.vectors) and a.units == b.units and a.scale == b.scale
        for name in a.vectors:  # ac made the column complex: the real runs still come back real
            assert a.vectors[name].dtype == b.vectors[name].dtype and np.array_equal(a.vectors[name], b.vectors[name])


def test_the_run_hash_follows_file_contents_not_their_paths(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    for folder in (one, two):
        (folder / "noise.txt").write_text("0 1e-9 2e-9\n")
    run = RunSpec("r", "tran 1n 1u")

    def deck(folder: Path) -> str:
        return f'* t\n.model n filesource (file="{folder / "noise.txt"}")\n.end\n'

    assert run_hash(deck(one), (), run) == run_hash(deck(two), (), run)
    (two / "noise.txt").write_text("0 1e-9 3e-9\n")
    assert run_hash(deck(one), (), run) != run_hash(deck(two), (), run)
    assert run_hash(deck(one), (), run) != run_hash(deck(one), (), RunSpec("r", "tran 1n 2u"))
    assert run_hash(deck(one), (), run) != run_hash(deck(one), (), RunSpec("r", "tran 1n 1u", seed=4))


def test_an_existing_store_needs_resume(tmp_path, capsys):
    from spicenet.cli import main

    store = tmp_path / "cal.runs.h5"
    store.write_bytes(b"")
    assert main(["calibrate", "resistive", "--quick", "-o", str(tmp_path / "cal.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cal.runs.h5 already exists" in err[0] and "--resume" in err[0]
    with pytest.raises(StoreExistsError):
        RunRecorder(store).engine(Engine()).close()
    with resume_calibrations(True):
        assert RunRecorder(store).resume is True
    assert RunRecorder(store).resume is False


@needs_ngspice
def test_cli_resume_reaches_the_family_verb(first, tmp_path, capsys, simulated):
    import json

    from spicenet.cli import main

    res, out, keep = first
    work = tmp_path / "cal.h5"
    shutil.copy(runs_path(out), runs_path(work))  # a store without its surrogate: a calibration killed before saving
    assert main(["calibrate", "resistive", "--quick", "--workers", "1", "-o", str(work), "--resume", "--json"]) == 0
    assert simulated == []  # the verb keeps its documented signature: --resume reaches the store by context
    assert json.loads(capsys.readouterr().out)["fit"] == res["fit"]
    _same_surrogate(keep, work)
