"""The CLI contract of DESIGN.md: verbs, --json keys, exit codes and one-line errors."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from spicenet import open_runs
from tests.conftest import run_cli


def _json(proc) -> dict:
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"stdout must hold exactly one JSON object, got: {proc.stdout[:500]}"
    return json.loads(lines[0])


def test_doctor():
    out = _json(run_cli("doctor", "--json"))
    assert out["ok"] is True
    assert out["ngspice_version"].startswith("ngspice-")
    assert out["modes"]["shared"]["ok"] and out["modes"]["batch"]["ok"]
    assert out["processes"]["generic"] is True


def test_netlists_lists_templates_with_params():
    out = _json(run_cli("netlists", "--json"))
    by_name = {t["name"]: t for t in out["templates"]}
    rc = by_name["basic/rc"]
    r = next(p for p in rc["params"] if p["name"] == "r")
    assert r["unit"] == "Ohm" and r["default"] == 1000.0 and r["range"] == [1.0, 1e12]


def test_simulate_template(tmp_path):
    out = _json(run_cli("simulate", "basic/rc", "-p", "r=2k", "-p", "c=1n", "--analysis", "tran 10n 10u",
                        "-o", str(tmp_path / "rc.h5"), "--json"))
    assert set(out) >= {"output", "vectors", "points", "wall_s"}
    assert "v(out)" in out["vectors"] and out["points"] > 100
    (run,) = open_runs(tmp_path / "rc.h5")
    t, v = run.vectors["time"], run.vectors["v(out)"]
    assert run.units["v(out)"] == "V" and run.params["r"] == 2000.0
    assert "r1 in out 2000" in run.netlist
    with h5py.File(tmp_path / "rc.h5", "r") as f:  # plain h5py: the columnar layout 2
        assert f.attrs["store_layout"] == 2 and list(f["table/id"].asstr()[:]) == ["p00000-nom"]
        np.testing.assert_array_equal(f["vectors/v(out)/data"][:], v)
    assert np.max(np.abs(v - (1 - np.exp(-t / 2e-6)))) < 1e-3


def test_simulate_plain_netlist_uses_its_own_analyses(tmp_path):
    deck = tmp_path / "divider.cir"
    deck.write_text("divider\nv1 a 0 2\nr1 a b 3k\nr2 b 0 1k\n.op\n.dc v1 0 2 0.5\n.end\n")
    out = _json(run_cli("simulate", str(deck), "-o", str(tmp_path / "d.h5"), "--json"))
    assert out["runs"] == 2 and out["failed"] == 0
    runs = open_runs(tmp_path / "d.h5")
    op, dc = runs["p00000-nom"], runs["p00001-nom"]
    assert op.attrs["analysis"] == "op" and dc.attrs["analysis"].startswith("dc")
    assert float(np.asarray(op.vectors["v(b)"]).reshape(-1)[0]) == pytest.approx(0.5)
    assert np.allclose(dc.vectors["v(b)"], dc.vectors["v(a)"] / 4)


def test_simulate_monte_carlo(tmp_path):
    out = _json(run_cli("simulate", "basic/current_mirror", "--mismatch", "pelgrom", "--chips", "5", "--seed", "2",
                        "-o", str(tmp_path / "mc.h5"), "--json"))
    assert out["runs"] == 6  # 5 chips and the nominal circuit (chip -1)
    table = open_runs(tmp_path / "mc.h5").table()
    assert sorted(table["chip"]) == [-1, 0, 1, 2, 3, 4] and set(table["status"]) == {"ok"}
    currents = open_runs(tmp_path / "mc.h5").to_xarray("i(vout)").values.reshape(-1)
    assert len(set(currents)) == 6  # every chip differs from the others and from the nominal one


@pytest.mark.parametrize("args,needle", [
    (["simulate", "basic/rc", "-p", "r=1k;shell ls", "-o", "x.h5"], "parameter 'r'"),
    (["simulate", "basic/rc", "-p", "zz=1", "-o", "x.h5"], "unknown parameter 'zz'"),
    (["simulate", "nonesuch", "-o", "x.h5"], "no template named"),
    (["simulate", "basic/rc", "--analysis", "tran 1n 1u; shell ls", "-o", "x.h5"], "analysis"),
])
def test_bad_input_gives_one_line_error_and_exit_2(tmp_path, args, needle):
    args = [a if a != "x.h5" else str(tmp_path / "x.h5") for a in args]
    proc = run_cli(*args, "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert not (tmp_path / "x.h5").exists()


def test_simulation_failure_is_stored_and_reported(tmp_path):
    deck = tmp_path / "nc.cir"
    deck.write_text("nc\nv1 a 0 1\nd1 a 0 dd\nd2 0 a dd\n.model dd d is=1e-30 n=0.02\n.op\n.end\n")
    proc = run_cli("simulate", str(deck), "-o", str(tmp_path / "nc.h5"), "--json")
    assert proc.returncode == 1
    assert "all 1 runs failed" in proc.stderr
    run = open_runs(tmp_path / "nc.h5")["p00000-nom"]
    assert run.status == "failed" and "did not converge" in run.error


@pytest.mark.parametrize("flags,progress,debug", [
    ((), True, False),            # default: a progress bar on stderr, stdout the JSON object only
    (("-q",), False, False),      # before the verb
    (("AFTER", "-q"), False, False),  # after the verb
    (("-v",), True, True),        # debug detail (the parsed arguments) on top of the bar
])
def test_global_quiet_verbose_and_simulate_chips_progress(tmp_path, flags, progress, debug):
    after = flags[:1] == ("AFTER",)
    verb = ["simulate", "basic/current_mirror", "--mismatch", "pelgrom", "--chips", "3", "-o",
            str(tmp_path / "mc.h5"), "--json"]
    args = [*verb, *flags[1:]] if after else [*flags, *verb]
    proc = run_cli(*args)
    assert _json(proc)["runs"] == 4
    assert ("simulate:" in proc.stderr and "/4" in proc.stderr) is progress
    assert ("spicenet: simulate: " in proc.stderr) is debug
    if not progress:
        assert proc.stderr == ""


def test_quiet_and_verbose_exclude_each_other(tmp_path):
    proc = run_cli("-q", "doctor", "-v")
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "-q and -v" in proc.stderr
