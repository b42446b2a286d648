"""Your own PDK: ``--process path/to/process.toml``. Processes written here (a level-1 CMOS library with renamed
wrappers in a ``.lib tt`` section; a BSIM4 library with Pelgrom coefficients) run shipped templates; the results
equal raw ``ngspice -b`` on hand-written decks that use the library directly (no spicenet header, no shims), the
level-1 mirror equals the square law, Monte-Carlo chips equal raw ngspice with the same ``alter`` lines, the drawn
threshold shifts follow the file's A_vt, and a bad file is a one-line error naming the key."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq

from spicenet.spice.process import get_process
from spicenet.store import read_runs
from tests.test_robustness_cli import run_main
from tests.test_robustness_decks import reference
from tests.test_robustness_inputs import _toml_value, assert_usage_error, values

NGSPICE = shutil.which("ngspice")
pytestmark = pytest.mark.skipif(NGSPICE is None, reason="ngspice not installed")

# level 1: Id = kp/2 W/L (Vgs - vto)^2 (1 + lambda Vds) in saturation (Vsb = 0 here, so gamma does not act)
KP, VTO, LAMBDA = 120e-6, 0.45, 0.05
LEVEL1 = f"""* tiny level-1 CMOS library: one corner section, wrappers my_n / my_p (w, l in um)
.lib tt
.model n1 nmos level=1 vto={VTO} kp={KP} lambda={LAMBDA} gamma=0.4 phi=0.7 tox=4n cgso=3e-10 cgdo=3e-10 cj=1e-3
.model p1 pmos level=1 vto=-{VTO} kp=40u lambda={LAMBDA} gamma=0.4 phi=0.7 tox=4n cgso=3e-10 cgdo=3e-10 cj=1e-3
.subckt my_n d g s b w=1 l=1
m1 d g s b n1 w={{w*1e-6}} l={{l*1e-6}} ad={{w*0.5e-12}} as={{w*0.5e-12}}
.ends my_n
.subckt my_p d g s b w=1 l=1
m1 d g s b p1 w={{w*1e-6}} l={{l*1e-6}} ad={{w*0.5e-12}} as={{w*0.5e-12}}
.ends my_p
.endl tt
"""
LEVEL1_TOML = """library = "models/lvl1.lib"
corner = "tt"
vdd = 1.2
inner_instance = "m1"
[devices]
nfet = "my_n"
pfet = "my_p"
"""
BSIM4 = """* a BSIM4 card with ngspice's defaults in a wrapper of the library's own name
.model nb nmos level=54 version=4.5
.subckt bn d g s b w=1 l=1
m0 d g s b nb w={w*1e-6} l={l*1e-6}
.ends bn
"""
A_VT, A_BETA = 5e-3, 0.02
BSIM4_TOML = f"""library = "bsim.lib"
vdd = 1.2
[devices]
nfet = "bn"
[mismatch]
pelgrom = {{ nfet = {{ a_vt = {A_VT}, a_beta = {A_BETA} }} }}
"""
RING = "".join(f"x{k} n{k % 5 + 1} n{k} 0 0 {{n}} w=1 l=0.15\nxp{k} n{k % 5 + 1} n{k} vdd vdd {{p}} w=2 l=0.15\n"
               for k in range(1, 6))
RING_BODY = ("vdd vdd 0 1.2\n" + RING + "".join(f"c{k} n{k} 0 5f\n" for k in range(1, 6))
             + ".ic v(n1)=0 v(n2)=1.2 v(n3)=0 v(n4)=1.2 v(n5)=0\n")
MIRROR_BODY = "iin 0 g 10u\nxm1 g g 0 0 {n} w=1 l=1\nxm2 d g 0 0 {n} w=1 l=1\nvout d 0 1\n"


@pytest.fixture
def pdk(tmp_path) -> Path:
    folder = tmp_path / "pdk"
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "lvl1.lib").write_text(LEVEL1)
    (folder / "level1.toml").write_text(LEVEL1_TOML)
    (folder / "bsim.lib").write_text(BSIM4)
    (folder / "bsim4.toml").write_text(BSIM4_TOML)
    return folder




def _simulate(capsys, argv: list[str]) -> list:
    code, out, err = run_main(capsys, ["simulate", *argv])
    assert code == 0, err
    output = argv[argv.index("-o") + 1]
    return sorted(read_runs(output), key=lambda r: r.chip)


def _raw_deck(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.cir"
    path.write_text(text)
    return path


def test_level1_process_file_runs_shipped_templates_like_raw_ngspice(capsys, tmp_path, pdk):
    library = pdk / "models" / "lvl1.lib"
    process = get_process(str(pdk / "level1.toml"))
    assert process.name == str((pdk / "level1.toml").resolve()) and process.corner == "tt"
    assert process.mismatch_modes == () and process.vdd_nominal == 1.2
    # 5-stage ring (nfet and pfet) vs the same ring written by hand on the wrappers my_n / my_p
    (ring,) = _simulate(capsys, ["oscillator/ring5", "--process", str(pdk / "level1.toml"), "--analysis",
                                 "tran 10p 5n 0 10p uic", "-o", str(tmp_path / "ring.h5")])
    assert f'.lib "{library}" tt' in ring.netlist
    raw = _raw_deck(tmp_path, "ring", f'ring by hand\n.lib "{library}" tt\n.options gmin=1e-18\n'
                    + RING_BODY.format(n="my_n", p="my_p") + ".tran 10p 5n 0 10p uic\n.end\n")
    (expected,) = reference(raw, tmp_path / "ref_ring").values()
    assert sorted(ring.vectors) == sorted(expected)
    for name, (ref, unit) in expected.items():
        assert ring.units[name] == unit
        # the shim level reorders ngspice's matrix: round-off differences near 1e-14 (V, A), same time points
        np.testing.assert_allclose(ring.vectors[name], ref, rtol=1e-9, atol=1e-12, err_msg=name)
    v5 = np.asarray(ring.vectors["v(n5)"])
    assert v5.max() > 1.0 and v5[np.asarray(ring.vectors["time"]) > 1e-9].min() < 0.2  # it oscillates
    # nMOS mirror at 10 uA vs raw ngspice and vs the level-1 square law
    (mirror,) = _simulate(capsys, ["basic/current_mirror", "--process", str(pdk / "level1.toml"), "-p", "iref=10u",
                                   "-p", "vdd=1", "-o", str(tmp_path / "mirror.h5")])
    raw = _raw_deck(tmp_path, "mirror", f'mirror by hand\n.lib "{library}" tt\n.options gmin=1e-18\n'
                    + MIRROR_BODY.format(n="my_n") + ".op\n.end\n")
    (expected,) = reference(raw, tmp_path / "ref_mirror").values()
    assert sorted(mirror.vectors) == sorted(expected)
    for name, (ref, _unit) in expected.items():
        np.testing.assert_allclose(mirror.vectors[name], ref, rtol=1e-12, err_msg=name)
    beta = KP * 1.0 / 1.0
    vgs = brentq(lambda v: beta / 2 * (v - VTO) ** 2 * (1 + LAMBDA * v) - 10e-6, VTO, 2.0)
    iout = beta / 2 * (vgs - VTO) ** 2 * (1 + LAMBDA * 1.0)
    assert -float(np.asarray(mirror.vectors["i(vout)"]).reshape(-1)[0]) == pytest.approx(iout, rel=1e-6)
    assert float(np.asarray(mirror.vectors["v(g)"]).reshape(-1)[0]) == pytest.approx(vgs, rel=1e-6)


def test_relative_process_path_is_recorded_absolute(capsys, tmp_path, pdk, monkeypatch):
    monkeypatch.chdir(pdk / "models")
    (record,) = _simulate(capsys, ["basic/current_mirror", "--process", "../level1.toml", "-o",
                                   str(tmp_path / "m.h5")])
    assert record.process == str((pdk / "level1.toml").resolve())
    assert get_process(record.process) == get_process(str(pdk / "level1.toml"))  # what a reader gets back


def test_process_file_in_a_sweep_is_read_beside_the_config(capsys, tmp_path, pdk):
    config = pdk / "sweep.toml"
    config.write_text('template = "basic/current_mirror"\nprocess = "level1.toml"\nanalysis = "op"\n'
                      '[params]\nvdd = "1"\n[grid]\niref = ["10u", "20u"]\n')
    code, out, err = run_main(capsys, ["sweep", str(config), "-o", str(tmp_path / "s.h5"), "--workers", "1",
                                       "--no-progress"])
    assert code == 0, err
    swept = sorted(read_runs(tmp_path / "s.h5"), key=lambda r: r.params["iref"])
    (alone,) = _simulate(capsys, ["basic/current_mirror", "--process", str(pdk / "level1.toml"), "-p", "iref=10u",
                                  "-p", "vdd=1", "-o", str(tmp_path / "m.h5")])
    np.testing.assert_array_equal(swept[0].vectors["i(vout)"], alone.vectors["i(vout)"])
    assert abs(float(np.asarray(swept[1].vectors["i(vout)"]).reshape(-1)[0])) > 1.9e-5


def test_pelgrom_chips_of_a_process_file_equal_raw_ngspice_with_their_alters(capsys, tmp_path, pdk):
    chips = 40
    records = _simulate(capsys, ["basic/current_mirror", "--process", str(pdk / "bsim4.toml"), "--mismatch",
                                 "pelgrom", "--chips", str(chips), "--seed", "5", "-o", str(tmp_path / "mc.h5")])
    assert [r.chip for r in records] == [-1, *range(chips)]
    # the threshold shifts drawn for the two 1 x 1 um devices follow the file's A_vt / sqrt(W L)
    shifts = [float(m) for r in records[1:] for m in re.findall(r"delvto\s*=\s*(\S+)", " ".join(r.alters))]
    assert len(shifts) == 2 * chips
    sigma = np.std(shifts, ddof=1)
    assert 0.7 * A_VT < sigma < 1.3 * A_VT  # 80 draws: sampling error of sigma ~8 %
    currents = [-float(np.asarray(r.vectors["i(vout)"]).reshape(-1)[0]) for r in records]
    assert np.std(currents[1:]) > 0.02 * abs(currents[0])  # subthreshold: 5 mV moves the copy by ~15 %
    # chips 0 and 1 again in raw ngspice: the library, the options, the stored alter lines (on the wrapper bn
    # itself: m.xm1.xw.m0 of spicenet's nfet shim is m.xm1.m0 here), op
    library = pdk / "bsim.lib"
    assert all(".xw.m0 " in line for r in records[1:] for line in r.alters)
    for record in records[1:3]:
        body = MIRROR_BODY.format(n="bn").replace("10u", "10n").replace("vout d 0 1", "vout d 0 0.6")
        alters = [line.replace(".xw.m0 ", ".m0 ") for line in record.alters]
        control = "\n".join([*alters, "op", "set numdgt=15", "print -i(vout)"])
        raw = _raw_deck(tmp_path, "chip", f'chip\n.include "{library}"\n.options gmin=1e-18\n{body}'
                        f".control\n{control}\n.endc\n.end\n")
        proc = subprocess.run([NGSPICE, "-b", str(raw)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
        value = float(proc.stdout.split("-i(vout) =")[1].split()[0])
        assert currents[record.chip + 1] == pytest.approx(value, rel=1e-12)


STATISTICAL = """* statistical variant: a global threshold shift drawn at each parse (setseed + reset)
.param dvt_chip = agauss(0, 0.01, 1)
.model nb nmos level=54 version=4.5 vth0={0.4+dvt_chip}
.subckt bn d g s b w=1 l=1
m0 d g s b nb w={w*1e-6} l={l*1e-6}
.ends bn
"""


def test_pdk_mismatch_mode_of_a_process_file_draws_from_its_statistical_library(capsys, tmp_path, pdk):
    """``--mismatch pdk``: the chips load ``pdk_library`` and are re-drawn by setseed + reset. A diode-connected
    subthreshold device at fixed current moves its gate voltage by its threshold shift, so the chips' v(g) spread
    is agauss's sigma (10 mV); the same seed gives the same chips bit for bit."""
    (pdk / "nominal.lib").write_text(STATISTICAL.replace("{0.4+dvt_chip}", "0.4").replace(".param dvt", "* dvt"))
    (pdk / "statistical.lib").write_text(STATISTICAL)
    (pdk / "mc.toml").write_text('library = "nominal.lib"\nvdd = 1.2\n[devices]\nnfet = "bn"\n[mismatch]\n'
                                 'pdk_library = "statistical.lib"\n')
    process = get_process(str(pdk / "mc.toml"))
    assert process.mismatch_modes == ("pdk",) and "statistical.lib" in process.header("pdk")
    argv = ["basic/current_mirror", "--process", str(pdk / "mc.toml"), "--mismatch", "pdk", "--chips", "30",
            "--seed", "3"]
    first = _simulate(capsys, [*argv, "-o", str(tmp_path / "a.h5")])
    again = _simulate(capsys, [*argv, "-o", str(tmp_path / "b.h5")])
    gates = np.array([float(np.asarray(r.vectors["v(g)"]).reshape(-1)[0]) for r in first])
    assert len(gates) == 30 and 0.007 < np.std(gates, ddof=1) < 0.013  # 30 draws: sigma known to ~13 %
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.vectors["v(g)"], b.vectors["v(g)"])
    (nominal,) = _simulate(capsys, argv[:3] + ["-o", str(tmp_path / "n.h5")])
    assert abs(float(np.asarray(nominal.vectors["v(g)"]).reshape(-1)[0]) - np.mean(gates)) < 0.01


BAD = {
    "no_library": ("vdd = 1.2\n[devices]\nnfet = \"my_n\"\n", "library: missing"),
    "library_absent": ('library = "nope.lib"\nvdd = 1.2\n[devices]\nnfet = "my_n"\n', "library: model library"),
    "vdd_text": ('library = "models/lvl1.lib"\nvdd = "1.2"\n[devices]\nnfet = "my_n"\n', "vdd:"),
    "vdd_negative": ('library = "models/lvl1.lib"\nvdd = -1\n[devices]\nnfet = "my_n"\n', "vdd:"),
    "unknown_key": ('library = "models/lvl1.lib"\nvdd = 1\nvth = 0.4\n[devices]\nnfet = "my_n"\n', "vth: unknown"),
    "no_devices": ('library = "models/lvl1.lib"\nvdd = 1\n', "devices: missing"),
    "device_kind": ('library = "models/lvl1.lib"\nvdd = 1\n[devices]\nnpn = "q1"\n', "devices.npn"),
    "device_undefined": ('library = "models/lvl1.lib"\nvdd = 1\n[devices]\nnfet = "nmos_x"\n', "devices.nfet"),
    "device_number": ('library = "models/lvl1.lib"\nvdd = 1\n[devices]\nnfet = 3\n', "devices.nfet"),
    "half_renamed": ('library = "models/lvl1.lib"\nvdd = 1\n[devices]\nnfet = "my_n"\npfet = "pfet"\n', "devices:"),
    "corner_absent": ('library = "models/lvl1.lib"\ncorner = "ff"\nvdd = 1\n[devices]\nnfet = "my_n"\n', "corner:"),
    "pelgrom_shape": ('library = "bsim.lib"\nvdd = 1\n[devices]\nnfet = "bn"\n[mismatch]\npelgrom = { nfet = 4 }\n',
                      "mismatch.pelgrom.nfet"),
    "pelgrom_big": ('library = "bsim.lib"\nvdd = 1\n[devices]\nnfet = "bn"\n[mismatch]\n'
                    'pelgrom = { nfet = { a_vt = 4, a_beta = 0.01 } }\n', "mismatch.pelgrom.nfet.a_vt"),
    "pelgrom_pfet": ('library = "bsim.lib"\nvdd = 1\n[devices]\nnfet = "bn"\n[mismatch]\n'
                     'pelgrom = { pfet = { a_vt = 4e-3, a_beta = 0.01 } }\n', "mismatch.pelgrom.pfet"),
    "mismatch_key": ('library = "bsim.lib"\nvdd = 1\n[devices]\nnfet = "bn"\n[mismatch]\nmode = "pdk"\n',
                     "mismatch.mode"),
    "pdk_options_alone": ('library = "bsim.lib"\nvdd = 1\n[devices]\nnfet = "bn"\n[mismatch]\n'
                          'pdk_options = ".param mc=1"\n', "mismatch.pdk_options"),
    "options_control": ('library = "bsim.lib"\nvdd = 1\noptions = ".control\\nshell touch pwned"\n[devices]\n'
                        'nfet = "bn"\n', "options:"),
    "init_shell": ('library = "bsim.lib"\nvdd = 1\ninit_commands = ["shell touch pwned"]\n[devices]\nnfet = "bn"\n',
                   "init_commands:"),
    "inner_bad": ('library = "bsim.lib"\nvdd = 1\ninner_instance = "m0; quit"\n[devices]\nnfet = "bn"\n',
                  "inner_instance:"),
    "library_control": ('library = "control.lib"\nvdd = 1\n[devices]\nnfet = "bn"\n', "a .control block"),
    "toml_syntax": ("library = = 1\n", "process file"),
}


def test_bad_process_files_are_one_line_errors_naming_the_key(capsys, tmp_path, pdk):
    (pdk / "control.lib").write_text(BSIM4 + ".control\nshell touch pwned\n.endc\n")
    (pdk / "latin.toml").write_bytes(b'library = "bsim.lib" # \xff\n')
    work = tmp_path / "out"
    work.mkdir()
    cases = []
    for name, (body, needle) in BAD.items():
        (pdk / f"{name}.toml").write_text(body)
        cases.append((str(pdk / f"{name}.toml"), needle))
    cases += [(str(pdk / "latin.toml"), "not UTF-8"), (str(pdk / "absent.toml"), "no such file"),
              (str(pdk) + "/", "is a folder"), ("gf180", "or the path of a process .toml")]
    for process, needle in cases:
        for argv in (["simulate", "basic/current_mirror", "--process", process, "-o", str(work / "x.h5")],
                     ["simulate", "basic/rc", "--process", process, "-o", str(work / "x.h5")]):
            assert_usage_error(capsys, argv, work, needle)
    sweep = pdk / "bad_sweep.toml"
    sweep.write_text('template = "basic/current_mirror"\nprocess = "vdd_text.toml"\n')
    assert_usage_error(capsys, ["sweep", str(sweep), "-o", str(work / "s.h5")], work, "vdd:")
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


# -- property: a wrong value for any key of a process file is a one-line error naming that key --------------------
_INNER = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
WRONG = {
    "vdd": values.filter(lambda v: isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 100
                         or v != v),
    "corner": values.filter(lambda v: v != "tt"),
    "library": values.filter(lambda v: v != "models/lvl1.lib"),
    "inner_instance": values.filter(lambda v: not (isinstance(v, str) and _INNER.match(v.lower()))),
    "options": values.filter(lambda v: not isinstance(v, str) or any(
        line.strip() and not line.strip().lower().startswith((".option", ".param", ".temp")) for line in v.splitlines())),
    "init_commands": values.filter(lambda v: not isinstance(v, list) or any(
        not isinstance(c, str) or c.split()[:1] not in (["set"], ["unset"], ["option"]) for c in v)),
    "devices": values.filter(lambda v: not isinstance(v, dict) or not v or any(k not in ("nfet", "pfet") for k in v)),
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(sorted(WRONG)), data=st.data())
def test_property_process_file_with_a_wrong_value(capsys, tmp_path_factory, key, data):
    folder = tmp_path_factory.mktemp("pdk")
    (folder / "models").mkdir()
    (folder / "models" / "lvl1.lib").write_text(LEVEL1)
    good = {"library": "models/lvl1.lib", "corner": "tt", "vdd": 1.2, "inner_instance": "m1"}
    good[key] = data.draw(WRONG[key])
    devices = good.pop("devices", {"nfet": "my_n", "pfet": "my_p"})
    body = "".join(f"{k} = {_toml_value(v)}\n" for k, v in good.items())
    body += f"devices = {_toml_value(devices)}\n" if not isinstance(devices, dict) else (
        "[devices]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in devices.items()))
    (folder / "p.toml").write_text(body)
    work = folder / "out"
    work.mkdir()
    assert_usage_error(capsys, ["simulate", "basic/current_mirror", "--process", str(folder / "p.toml"), "-o",
                                str(work / "x.h5")], work, key)
