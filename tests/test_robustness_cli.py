"""Decks and errors through the CLI: ngspice's own message reaches the user (no retry ladder for it), a partial
failure is not exit 0, templates without parameters keep their analysis, ``--process`` on a plain deck is applied
(and nothing is added without it), relative includes work from any folder in batch mode, unit letters and upper
case in ``--analysis``, TRRANDOM noise reproducible from the sweep seed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from spicenet.cli import main
from spicenet.errors import ConvergenceError, SimulationError

DECKS = Path(__file__).parent / "decks"
NGSPICE = shutil.which("ngspice")
RES = "t\nv1 a 0 1\nr1 a 0 1k\n.end\n"



def _by_analysis(path) -> dict:
    """The store's runs keyed by analysis kind (``op``, ``dc``, ``tran``...): read through the store API (layout 2)."""
    from spicenet.store import read_runs

    return {r.attrs["analysis"].split()[0].lower(): r for r in read_runs(path)}

def run_main(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def raw_ngspice(tmp_path: Path, deck: str) -> str:
    path = tmp_path / "raw.cir"
    path.write_text(deck)
    proc = subprocess.run([NGSPICE, "-b", "-r", str(tmp_path / "raw.raw"), str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("analysis,card,needle", [
    ("dc vnope 0 1 0.1", ".dc vnope 0 1 0.1", '"vnope" is not in the circuit'),
    ("tran 0 1u", ".tran 0 1u", "TSTEP is invalid"),
    ("noise v(a) vnope dec 2 1 10", ".noise v(a) vnope dec 2 1 10", None),
])
@pytest.mark.parametrize("mode", ["shared", "batch"])
def test_ngspice_message_reaches_the_user_without_retries(tmp_path, engine, batch_engine, mode, analysis, card,
                                                          needle):
    if NGSPICE is None:
        pytest.skip("ngspice not installed")
    reference = raw_ngspice(tmp_path, RES.replace(".end", card + "\n.end"))
    if needle is not None:
        assert needle in reference  # what ngspice itself says
    eng = engine if mode == "shared" else batch_engine
    with pytest.raises(SimulationError) as info:
        eng.simulate(RES, analysis)
    assert not isinstance(info.value, ConvergenceError), str(info.value)
    assert not getattr(info.value, "attempts", None)
    message = str(info.value)
    assert "did not converge" not in message and "simulation(s) aborted" not in message
    if needle is not None:
        assert needle in message
    else:  # ngspice's own error line, whatever it is, is in the message
        lines = [l.strip() for l in reference.splitlines() if "doAnalyses" in l or "rror" in l]
        assert lines and any(l in message for l in lines), (lines, message)


def test_bad_model_is_ngspice_words_with_the_line(engine):
    from spicenet.errors import NetlistError

    with pytest.raises(NetlistError, match=r"line 3: 'd1 a 0 dd'"):
        engine.simulate("t\nv1 a 0 1\nd1 a 0 dd\n.model dd foo is=1e-14\n.end\n", "op")


def test_one_failing_analysis_is_not_exit_0(capsys, tmp_path):
    deck = tmp_path / "half.cir"
    deck.write_text("half\nv1 a 0 1\nr1 a 0 1k\n.op\n.dc vnope 0 1 0.5\n.end\n")
    code, out, err = run_main(capsys, ["simulate", str(deck), "-o", str(tmp_path / "h.h5"), "--json"])
    assert code == 1
    result = json.loads(out)
    assert result["ok"] is False and result["runs"] == 2 and result["failed"] == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("spicenet simulate: error: 1 of 2 runs failed") and '"vnope" is not in the circuit' in last
    runs = _by_analysis(tmp_path / "h.h5")
    assert runs["op"].status == "ok" and runs["dc"].status == "failed"


def test_template_without_params_keeps_its_analysis(capsys, tmp_path):
    tpl = tmp_path / "fixed.cir"
    tpl.write_text("* fixed divider\n* @analysis dc v1 0 2 0.5\nv1 a 0 1\nr1 a b 1k\nr2 b 0 1k\n.end\n")
    code, out, err = run_main(capsys, ["simulate", str(tpl), "-o", str(tmp_path / "t.h5"), "--json"])
    assert code == 0, err
    run = _by_analysis(tmp_path / "t.h5")["dc"]
    np.testing.assert_allclose(run.vectors["v(b)"], run.vectors["v-sweep"] / 2, rtol=1e-12)


@pytest.mark.parametrize("process", ["generic", "sky130"])
def test_process_on_a_plain_deck_is_applied_and_absent_without_it(capsys, tmp_path, process):
    from spicenet.spice.process import available_processes, get_process

    if not available_processes()[process]:
        pytest.skip(f"process {process} not installed")
    vdd = get_process(process).vdd_nominal
    deck = tmp_path / "inv.cir"
    deck.write_text(f"inverter of process wrappers\nvdd vdd 0 {vdd}\nvin in 0 0\n"
                    "xn out in 0 0 nfet w=1 l=0.15\nxp out in vdd vdd pfet w=2 l=0.15\n.op\n.end\n")
    code, out, err = run_main(capsys, ["simulate", str(deck), "--process", process, "-o", str(tmp_path / "g.h5")])
    assert code == 0, err
    run = _by_analysis(tmp_path / "g.h5")["op"]
    assert float(np.asarray(run.vectors["v(out)"]).reshape(-1)[0]) == pytest.approx(vdd, abs=1e-3)  # input low
    assert "gmin=1e-18" in run.netlist and str(get_process(process).library) in run.netlist
    # without --process nothing is added: ngspice does not know the wrappers, and says so
    code, out, err = run_main(capsys, ["simulate", str(deck), "-o", str(tmp_path / "n.h5")])
    assert code == 2 and "nfet" in err.lower() and not (tmp_path / "n.h5").exists()
    plain = tmp_path / "plain.cir"
    plain.write_text("plain\nv1 a 0 1\nr1 a 0 1k\n.op\n.end\n")
    assert run_main(capsys, ["simulate", str(plain), "-o", str(tmp_path / "p.h5")])[0] == 0
    assert "gmin" not in _by_analysis(tmp_path / "p.h5")["op"].netlist


def test_relative_include_in_batch_mode_from_another_folder(tmp_path):
    env_cwd = tmp_path / "elsewhere"
    env_cwd.mkdir()
    import os
    import sys

    deck = os.path.relpath(DECKS / "include_relative.cir", env_cwd)  # relative to the folder it is run from

    proc = subprocess.run([sys.executable, "-m", "spicenet", "simulate", str(deck), "--mode", "batch", "-o",
                           str(tmp_path / "i.h5"), "--json"], cwd=env_cwd, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-1500:]
    runs = _by_analysis(tmp_path / "i.h5")
    assert float(np.asarray(runs["op"].vectors["v(a)"]).reshape(-1)[0]) == 0.0  # V1 is 0 at the operating point
    assert np.asarray(runs["dc"].vectors["v(b)"]).shape == (11,)


def test_upper_case_and_unit_letters_in_analysis(capsys, tmp_path):
    code, out, err = run_main(capsys, ["simulate", "basic/rc", "--analysis", "TRAN 10ns 5us", "-o",
                                       str(tmp_path / "u.h5"), "--json"])
    assert code == 0, err
    t = np.asarray(_by_analysis(tmp_path / "u.h5")["tran"].vectors["time"])
    assert t[-1] == pytest.approx(5e-6)


def test_noise_deck_reproducible_from_the_sweep_seed(tmp_path):
    from spicenet.store import read_runs
    from spicenet.sweep import SweepConfig, run_sweep

    deck = tmp_path / "noise.cir"
    deck.write_text("noisy rc\ninz 0 a dc 0 trrandom(2 10n 0 1u 0)\nr1 a 0 1k\nc1 a 0 10p\n.tran 10n 1u\n.end\n")

    def sweep(seed: int, name: str) -> np.ndarray:
        cfg = SweepConfig.from_dict({"netlist": str(deck), "seed": seed}, source="t")
        run_sweep(cfg, tmp_path / name, workers=1, progress=False)
        (record,) = list(read_runs(tmp_path / name))
        return np.asarray(record.vectors["v(a)"])

    a, b, c = sweep(3, "a.h5"), sweep(3, "b.h5"), sweep(4, "c.h5")
    assert np.std(a) > 0
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_sweep_where_every_run_fails_is_not_exit_0(capsys, tmp_path):
    deck = tmp_path / "d.cir"
    deck.write_text("d\nv1 a 0 1\nr1 a 0 1k\n.dc vnope 0 1 0.5\n.end\n")
    config = tmp_path / "s.toml"
    config.write_text('netlist = "d.cir"\n')
    code, out, err = run_main(capsys, ["sweep", str(config), "-o", str(tmp_path / "s.h5"), "--workers", "1",
                                       "--no-progress", "--json"])
    result = json.loads(out)
    assert code == 1 and result["ok"] is False and result["failed"] == 1 and result["done"] == 0
    assert err.strip().splitlines()[-1].startswith("spicenet sweep: error: all 1 runs failed")


def test_sweep_and_simulate_store_the_same_numeric_parameters(capsys, tmp_path):
    """``r = "50k"`` is stored as the float 5e4 (unit Ohm) by both verbs, not as the text "50k"."""
    from spicenet.store import read_runs

    code, out, err = run_main(capsys, ["simulate", "basic/rc", "-p", "r=50k", "--analysis", "op", "-o",
                                       str(tmp_path / "sim.h5")])
    assert code == 0, err
    config = tmp_path / "s.toml"
    config.write_text('template = "basic/rc"\nanalysis = "op"\n[grid]\nr = ["50k", "2.2MEG"]\n')
    code, out, err = run_main(capsys, ["sweep", str(config), "-o", str(tmp_path / "sw.h5"), "--workers", "1",
                                       "--no-progress"])
    assert code == 0, err
    (sim,) = list(read_runs(tmp_path / "sim.h5"))
    swept = sorted(read_runs(tmp_path / "sw.h5"), key=lambda r: r.params["r"])
    for record in (sim, swept[0]):
        assert type(record.params["r"]) is float and record.params["r"] == 5e4
        assert record.param_units["r"] == "Ohm"
    assert swept[1].params["r"] == 2.2e6
    np.testing.assert_array_equal(sim.vectors["v(out)"], swept[0].vectors["v(out)"])


def test_gmin_of_the_process_header_changes_sky130_off_current_as_documented(capsys, tmp_path):
    """README (Engine): the header's gmin=1e-18 gives a sky130 nfet (W/L = 1/0.15 um, Vgs = 0, Vds = 1.8 V) 0.25 pA
    where ngspice's default gmin gives 2.05 pA. Both checked with raw ``ngspice -b`` on the same library; spicenet's
    ``--process sky130`` run equals the one with the option."""
    from spicenet.spice.process import available_processes, get_process

    if NGSPICE is None or not available_processes()["sky130"]:
        pytest.skip("needs ngspice and the sky130 process")
    library = get_process("sky130").library
    body = "vd d 0 1.8\nvg g 0 0\nxn d g 0 0 nfet w=1 l=0.15\n"

    def raw_current(options: str) -> float:
        text = raw_ngspice(tmp_path, f"off\n.include \"{library}\"\n{options}\n{body}.op\n"
                                     ".control\nrun\nprint -i(vd)\n.endc\n.end\n")
        return float(text.split("-i(vd) =")[1].split()[0])

    with_option, default = raw_current(".options gmin=1e-18"), raw_current("")
    assert with_option == pytest.approx(0.25e-12, rel=0.03) and default == pytest.approx(2.05e-12, rel=0.03)
    deck = tmp_path / "off.cir"
    deck.write_text("off\n" + body + ".op\n.end\n")
    code, out, err = run_main(capsys, ["simulate", str(deck), "--process", "sky130", "-o", str(tmp_path / "o.h5")])
    assert code == 0, err
    current = -float(np.asarray(_by_analysis(tmp_path / "o.h5")["op"].vectors["i(vd)"]).reshape(-1)[0])
    assert current == pytest.approx(with_option, rel=1e-5)  # print shows 7 digits


def test_sweep_inputs_file_is_read_beside_the_config(capsys, tmp_path, monkeypatch):
    """A relative ``[inputs] file`` is read against the config's folder, like ``netlist``/``template``, from any
    current folder: the divider's output is half of each input row."""
    from spicenet.store import read_runs

    folder = tmp_path / "cfg"
    folder.mkdir()
    np.save(folder / "rows.npy", np.array([[0.2], [0.8]]))
    (folder / "div.cir").write_text("div\nvin a 0 0\nr1 a b 1k\nr2 b 0 1k\n.op\n.end\n")
    (folder / "s.toml").write_text('netlist = "div.cir"\n[inputs]\nsources = ["vin"]\nfile = "rows.npy"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = run_main(capsys, ["sweep", str(folder / "s.toml"), "-o", str(tmp_path / "s.h5"), "--workers",
                                       "1", "--no-progress"])
    assert code == 0, err
    got = sorted(float(np.asarray(r.vectors["v(b)"]).reshape(-1)[0]) for r in read_runs(tmp_path / "s.h5"))
    assert got == pytest.approx([0.1, 0.4], rel=1e-12)
