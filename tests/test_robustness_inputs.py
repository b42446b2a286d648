"""Bad input: every case is one line ``spicenet VERB: error: ...`` on stderr, exit 2, no traceback, nothing on stdout
and nothing written. ``main()`` runs in this process, so an exception it lets through fails the test with its
traceback (an escape, not a one-line error). Explicit cases first (the ones found by the independent checks), then
hypothesis properties over CLI arguments, sweep TOML configs and template parameters."""

from __future__ import annotations

import json
import math
import re
import string
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spicenet.cli import main

DECKS = Path(__file__).parent / "decks"


def run_main(capsys, argv: list[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_usage_error(capsys, argv, folder: Path | None = None, needle: str | None = None) -> str:
    before = sorted(p.name for p in folder.iterdir()) if folder is not None else None
    code, out, err = run_main(capsys, argv)
    lines = err.strip().splitlines()
    assert code == 2, f"{argv}: exit {code}, stderr {err[-800:]!r}"
    assert len(lines) == 1, f"{argv}: stderr must be one line, got {err!r}"
    assert re.match(r"^spicenet( [a-z-]+)?: error: \S", lines[0]), lines[0]
    assert "Traceback" not in err and out == "", (out, err)
    if needle is not None:
        assert needle in lines[0], lines[0]
    if folder is not None:
        assert sorted(p.name for p in folder.iterdir()) == before, f"{argv}: wrote {folder}"
    return lines[0]


# -- explicit cases ----------------------------------------------------------------------------------------------
def _files(tmp: Path) -> dict[str, Path]:
    (tmp / "ro").mkdir()
    plain = tmp / "plain.cir"
    plain.write_text("plain\nv1 a 0 1\nr1 a 0 1k\n.op\n.end\n")
    control = tmp / "control.cir"
    control.write_text("c\nv1 a 0 1\nr1 a 0 1k\n.control\nshell touch pwned\n.endc\n.op\n.end\n")
    inc = tmp / "inc.lib"
    inc.write_text("* lib\n.control\necho hi\n.endc\n")
    via_include = tmp / "via_include.cir"
    via_include.write_text("c\n.include inc.lib\nv1 a 0 1\nr1 a 0 1k\n.op\n.end\n")
    latin = tmp / "latin.cir"
    latin.write_bytes(b"t\nv1 a 0 1\nr1 a 0 1k \xe9\xff\n.op\n.end\n")
    noana = tmp / "noana.cir"
    noana.write_text("t\nv1 a 0 1\nr1 a 0 1k\n.end\n")
    badcard = tmp / "badcard.cir"
    badcard.write_text("t\nv1 a 0 1\nr1 a 0 1k\n.tran 1n\n.end\n")
    rejected = tmp / "rejected.cir"
    rejected.write_text("t\nv1 a 0 1\nr1 a 0 bogus(\n.op\n.end\n")
    braces = tmp / "braces.cir"
    braces.write_text("t\n.param a=1\nv1 a 0 1\nr1 a 0 1k\n.dc v1 0 {nope*2} 0.1\n.end\n")
    shell = tmp / "shell.cir"
    shell.write_text("t\nv1 a 0 1\nr1 a 0 1k\n.dc v1 0 {__import__('os').system('touch pwned')} 0.1\n.end\n")
    disto = tmp / "disto.cir"
    disto.write_text("t\nv1 a 0 dc 0 ac 1 distof1 0.1\nr1 a 0 1k\n.op\n.disto dec 2 1k 10k\n.end\n")
    notpl = tmp / "passive.cir"
    notpl.write_text("* @param r default=1k unit=Ohm\n* @analysis op\nv1 a 0 1\nr1 a 0 ${r}\n.end\n")
    return {"plain": plain, "control": control, "via_include": via_include, "latin": latin, "noana": noana,
            "badcard": badcard, "passive": notpl, "disto": disto, "rejected": rejected, "braces": braces,
            "shell": shell}


def simulate_cases(f: dict[str, Path], out: str) -> list[tuple[list[str], str]]:
    rc = ["simulate", "basic/rc", "-o", out]
    return [
        (rc + ["--workers", "0"], "--workers"), (rc + ["--workers", "-3"], "--workers"),
        (rc + ["--workers", "two"], "--workers"),
        (rc + ["--timeout", "inf"], "--timeout"), (rc + ["--timeout", "nan"], "--timeout"),
        (rc + ["--timeout", "0"], "--timeout"), (rc + ["--timeout", "-1"], "--timeout"),
        (rc + ["--timeout", "1e300"], "--timeout"), (rc + ["--chips", "100000000"], "--chips"),
        (rc + ["--seed", str(2**63)], "--seed"), (rc + ["--seed", "-1"], "--seed"),
        (rc + ["--seed", "1e3"], "--seed"), (rc + ["--chips", "-5"], "--chips"),
        (rc + ["--mismatch", "pelgrom", "--chips", "3"], "no process transistors"),
        (rc + ["--mismatch", "bogus"], "--mismatch"), (rc + ["--chips", "3"], "--chips needs --mismatch"),
        (rc + ["--process", "nonesuch"], "unknown process"),
        (rc + ["--analysis", "tran 1n"], "analysis"), (rc + ["--analysis", "TRAN 1n 1u; shell ls"], "token"),
        (rc + ["--analysis", "ac dec 10 1 1g foo"], "analysis"), (rc + ["--analysis", "pz 1 0 2 0 vol bad"], "pz"),
        (rc + ["-p", "r=1k\n.control"], "parameter 'r'"), (rc + ["-p", "r"], "expected name=value"),
        (rc + ["-p", "r=1k", "-p", "r=2k"], "given twice"),
        (rc + ["-p", "nope=1"], "unknown parameter"),
        (["simulate", str(f["plain"]), "-o", out, "-p", "r=1"], "plain netlist"),
        (["simulate", str(f["control"]), "-o", out], ".control"),
        (["simulate", str(f["via_include"]), "-o", out], ".control"),
        (["simulate", str(f["latin"]), "-o", out], "not UTF-8"),
        (["simulate", str(f["noana"]), "-o", out], "no analysis"),
        (["simulate", str(f["badcard"]), "-o", out], "line 4"),
        (["simulate", str(f["disto"]), "-o", out], ".disto analyses are not supported"),
        (["simulate", str(f["braces"]), "-o", out], "'nope' is not a .param"),
        (["simulate", str(f["shell"]), "-o", out], "cannot evaluate"),
        (["simulate", str(f["rejected"]), "-o", out], "line 3: 'r1 a 0 bogus('"),
        (["simulate", str(f["rejected"]), "-o", out, "--mode", "batch"], "line 3: 'r1 a 0 bogus('"),
        (["simulate", str(f["plain"]), "-o", out, "--mismatch", "pelgrom"], "needs a process"),
        (["simulate", "no/such/template", "-o", out], "no template named"),
        (["simulate", "basic/rc"], "-o"),
    ]


def output_cases(f: dict[str, Path], tmp: Path) -> list[tuple[list[str], str]]:
    rc = ["simulate", "basic/rc"]
    return [
        (rc + ["-o", str(tmp / "missing" / "x.h5")], "does not exist"),
        (rc + ["-o", str(tmp)], "is a folder"),
        (rc + ["-o", "/proc/spicenet-x.h5"], "cannot write"),
        (rc + ["-o", "/sys/spicenet-x.h5"], "cannot write"),
    ]


def sweep_cases(tmp: Path, out: str) -> list[tuple[list[str], str]]:
    base = 'template = "basic/rc"\nanalysis = "op"\n'
    bodies = {
        "grid_int": (base + "grid = 5\n", "grid"), "save_int": (base + "save = [1]\n", "save"),
        "save_str": (base + 'save = "v(out)"\n', "save"), "save_unknown": (base + 'save = ["v(nope)"]\n', "nope"),
        "save_current": (base + 'save = ["i(r1)"]\n', "branch current"),
        "seed_bool": (base + "seed = true\n", "seed"), "seed_big": (base + f"seed = {2**63}\n", "seed"),
        "chips_bool": (base + "[montecarlo]\nchips = true\n", "chips"),
        "chips_neg": (base + "[montecarlo]\nchips = -5\n", "chips"),
        "timeout_str": (base + 'timeout_s = "abc"\n', "timeout_s"), "timeout_nan": (base + "timeout_s = nan\n", "timeout_s"),
        "timeout_zero": (base + "timeout_s = 0\n", "timeout_s"),
        "timeout_huge": (base + "timeout_s = 1e300\n", "timeout_s"),
        "too_many_runs": (base + "[grid]\n" + "".join(f"p{k} = [{', '.join(['1'] * 20)}]\n" for k in range(8)),
                          "runs"),
        "measure_key": (base + '[measure.m]\nkind = "mean"\nvector = "v(out)"\nlevl = 0.5\n', "levl"),
        "measure_kind": (base + '[measure.m]\nkind = "median"\nvector = "v(out)"\n', "kind"),
        "energy_no_supply": (base + '[measure.e]\nkind = "energy"\nvector = "i(vin)"\n', "supply"),
        "measure_unsaved": (base + 'save = ["v(in)"]\n[measure.m]\nkind = "mean"\nvector = "v(out)"\n', "save"),
        "unknown_key": (base + "colour = 1\n", "colour"), "both": (base + 'netlist = "x.cir"\n', "exactly one"),
        "params_list": (base + "[params]\nr = [1, 2]\n", "params.r"), "bad_param": (base + '[params]\nr = "1 k"\n', "'r'"),
        "mode": (base + '[montecarlo]\nchips = 2\nmode = "gauss"\n', "mode"),
        "mismatch_passive": (base + '[montecarlo]\nchips = 2\nmode = "pelgrom"\n', "transistors"),
        "inputs_rows": (base + '[inputs]\nsources = ["vin"]\nrows = "0.1"\n', "inputs.rows"),
        "toml_syntax": ("template = \n", "CONFIG"),
        "control_netlist": ('netlist = "control.cir"\n', ".control"),
        "control_included": ('netlist = "via_include.cir"\n', "included file"),
    }
    cases = []
    for name, (body, needle) in bodies.items():
        path = tmp / f"{name}.toml"
        path.write_text(body)
        cases.append((["sweep", str(path), "-o", out], needle))
    raw = tmp / "bytes.toml"
    raw.write_bytes(b'template = "basic/rc"\n# \xff\xfe\n')
    cases.append((["sweep", str(raw), "-o", out], "UTF-8"))
    good = tmp / "good.toml"
    good.write_text(base)
    cases += [(["sweep", str(tmp / "absent.toml"), "-o", out], "no such file"),
              (["sweep", str(good), "-o", out, "--workers", "0"], "--workers"),
              (["sweep", str(good), "-o", out, "--scheduler", "tcp://127.0.0.1:9"], "cannot connect"),
              (["sweep", str(good), "-o", out, "--scheduler", "not an address"], "--scheduler")]
    return cases


def run_dir_cases(tmp: Path) -> list[tuple[list[str], str]]:
    def run_dir(name: str, meta: bytes | None) -> str:
        d = tmp / name
        d.mkdir()
        if meta is not None:
            (d / "run.json").write_bytes(meta)
        return str(d)

    cases = [
        (["validate", str(tmp / "nope")], "no such run directory"),
        (["validate", run_dir("empty", None)], "no run.json"),
        (["validate", run_dir("corrupt", b'{"family": "rng", ')], "unreadable run.json"),
        (["validate", run_dir("binary", b"\x00\xff\xfe")], "unreadable run.json"),
        (["validate", run_dir("nofamily", json.dumps({"seed": 1}).encode())], "'family'"),
        (["validate", run_dir("otherfamily", json.dumps({"family": "bogus"}).encode())], "'family'"),
        (["validate", run_dir("list", b"[1, 2]")], "'family'"),
    ]
    def complete(name: str, family: str, config: bytes = b"{}", files: dict[str, bytes] | None = None) -> str:
        d = Path(run_dir(name, json.dumps({"family": family}).encode()))
        (d / "config.json").write_bytes(config)
        for rel, data in (files or {}).items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_bytes(data)
        return str(d)

    garbage = np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    import io

    import torch

    buffer = io.BytesIO()
    torch.save([1, 2], buffer)  # a valid torch file that is no model
    pickled_list = buffer.getvalue()
    cases += [
        (["validate", run_dir("noconfig", json.dumps({"family": "resistive"}).encode())], "no config.json"),
        (["validate", complete("badconfig", "rng", b'{"model": ')], "unreadable config.json"),
        (["validate", complete("listconfig", "oscillator", b"[1]")], "JSON object"),
        (["validate", complete("badmodel", "rng", files={"model.pt": garbage})], "unreadable model file"),
        (["validate", complete("badckpt", "oscillator", files={"checkpoints/ckpt-000000015.pt": garbage})],
         "unreadable model file"),
        (["validate", complete("listmodel", "resistive", files={"model.pt": pickled_list})],
         "not a spicenet model file"),
    ]
    good = run_dir("good", json.dumps({"family": "rng"}).encode())
    cases += [(["validate", good, "--chips", "-5"], "--chips"), (["validate", good, "--chips", "0"], "--chips"),
              (["validate", good, "--workers", "0"], "--workers")]
    return cases


def surrogate_cases(tmp: Path) -> list[tuple[list[str], str]]:
    flipped = tmp / "flipped.h5"
    rng = np.random.default_rng(0)
    flipped.write_bytes(b"\x89HDF\r\n\x1a\n" + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    nan = tmp / "nan.h5"
    with h5py.File(nan, "w") as f:
        g = f.create_group("surrogate")
        g.attrs["family"], g.attrs["process"] = "rng", "generic"
        g.create_dataset("params/v0", data=np.array([0.0, np.nan]))
    nogroup = tmp / "nogroup.h5"
    with h5py.File(nogroup, "w") as f:
        f.create_dataset("x", data=[1])
    out = str(tmp / "run")
    return [(["train", "dtm", "--surrogate", str(p), "-o", out], "surrogate")
            for p in (flipped, nan, nogroup, tmp / "absent.h5")] + [(["report", str(nan)], "surrogate")]


def config_cases(tmp: Path) -> list[tuple[list[str], str]]:
    bad_utf8 = tmp / "cal.toml"
    bad_utf8.write_bytes(b"chips = 3 # \xff\n")
    bad_toml = tmp / "cal2.toml"
    bad_toml.write_text("chips = = 3\n")
    wrong_types = []
    for k, body in enumerate(['chips = "x"\n', "chips = 3.5\n", "chips = true\n", 'std_target = "0.03"\n']):
        typed = tmp / f"typed{k}.toml"
        typed.write_text(body)
        wrong_types.append((["calibrate", "rng", "--config", str(typed), "-o", str(tmp / "s.h5")],
                            f"rng calibration: {body.split()[0]} must be"))
    shipped = Path(__file__).resolve().parents[1] / "spicenet" / "data" / "surrogates"
    trainers = {"eqprop": "resistive", "ffebm": "resistive", "ais": "oscillator", "dtm": "rng"}
    for k, (trainer, body, needle) in enumerate([
            ("eqprop", '[train]\nepochs = "x"\n', "eqprop config: [train] epochs must be an integer"),
            ("eqprop", "[train]\nepochs = 2.5\n", "[train] epochs must be an integer"),
            ("eqprop", "[train]\nideal = 1\n", "[train] ideal must be true or false"),
            ("ffebm", '[ffebm]\nlr_ff = "x"\n', "[ffebm] lr_ff must be a number"),
            ("ais", "[bogus]\nx = 1\n", "unknown section [bogus]"),
            ("ais", "[mismatch]\nevl_chips = 3\n", "unknown key [mismatch] evl_chips"),
            ("ais", '[data]\nn_train = "x"\n', "[data] n_train must be an integer"),
            ("dtm", '[train]\niters = "x"\n', "[train] iters must be an integer")]):
        typed = tmp / f"train{k}.toml"
        typed.write_text(body)
        surrogate = shipped / f"{trainers[trainer]}_quick_generic.h5"
        wrong_types.append((["train", trainer, "--surrogate", str(surrogate), "--config", str(typed), "-o",
                             str(tmp / "run")], needle))
    for k, (body, needle) in enumerate([("[pair]\nresistance = [5e3]\n", "unknown key [pair] resistance"),
                                        ("[ring]\nbogus = 1\n", "unknown key [ring] bogus"),
                                        ("[montecarlo]\nchip = 3\n", "unknown key [montecarlo] chip")]):
        typed = tmp / f"osc{k}.toml"  # a misspelt oscillator key must not fall back to its default silently
        typed.write_text(body)
        wrong_types.append((["calibrate", "oscillator", "--quick", "--config", str(typed), "-o",
                             str(tmp / "o.h5")], needle))
    out = str(tmp / "s.h5")
    return wrong_types + [(["calibrate", "rng", "--config", str(bad_utf8), "-o", out], "UTF-8"),
            (["calibrate", "rng", "--config", str(bad_toml), "-o", out], "--config"),
            (["calibrate", "rng", "--config", str(tmp / "absent.toml"), "-o", out], "no such file"),
            (["calibrate", "rng", "-o", out, "--workers", "0"], "--workers"),
            (["calibrate", "rng", "-o", out, "--seed", str(2**64)], "--seed")]


def test_explicit_bad_inputs_are_one_line_errors(capsys, tmp_path):
    files = _files(tmp_path)
    work = tmp_path / "out"
    work.mkdir()
    out = str(work / "x.h5")
    (tmp_path / "runs").mkdir()
    cases = (simulate_cases(files, out) + output_cases(files, tmp_path) + sweep_cases(tmp_path, out)
             + run_dir_cases(tmp_path / "runs"))
    cases += surrogate_cases(tmp_path) + config_cases(tmp_path)
    for argv, needle in cases:
        assert_usage_error(capsys, argv, work, needle)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    assert not (tmp_path / "run").exists() and not (tmp_path / "s.h5").exists()
    assert len(cases) >= 80, len(cases)


def test_resume_of_a_corrupt_or_foreign_store_is_bad_input(capsys, tmp_path):
    """``sweep --resume`` of a file that is no run store, or of another sweep's store, exits 2 and writes nothing
    beside it (a store in use by another writer stays exit 1: not the user's input)."""
    from spicenet.sweep import SweepConfig, run_sweep

    folder = tmp_path / "stores"
    folder.mkdir()
    (folder / "junk.h5").write_bytes(np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (folder / "text.h5").write_text("not hdf5\n")
    first = tmp_path / "first.toml"
    first.write_text('template = "basic/rc"\nanalysis = "op"\n')
    run_sweep(SweepConfig.from_toml(first), folder / "other.h5", workers=1, progress=False)
    other = tmp_path / "other.toml"
    other.write_text('template = "basic/rc"\nanalysis = "op"\n[params]\nr = "2k"\n')
    for store, needle in (("junk.h5", "cannot open run store"), ("text.h5", "cannot open run store"),
                          ("other.h5", "config differs")):
        assert_usage_error(capsys, ["sweep", str(other), "-o", str(folder / store), "--resume", "--workers", "1",
                                    "--no-progress"], folder, needle)


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception) as info:
        main(["simulate", "basic/rc", "--workers", "0", "-o", str(tmp_path / "x.h5"), "--debug"])
    assert "--workers" in str(info.value)


# -- properties --------------------------------------------------------------------------------------------------
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

bad_ints = st.one_of(st.integers(max_value=0), st.integers(min_value=2**63, max_value=2**80))
bad_seeds = st.one_of(st.integers(max_value=-1), st.integers(min_value=2**63, max_value=2**80))
bad_timeouts = st.one_of(st.floats(max_value=0.0, allow_nan=False), st.just(math.inf), st.just(-math.inf),
                         st.just(math.nan), st.floats(min_value=1.0001e6, allow_nan=False))
junk = st.text(alphabet=string.ascii_letters + "!@#%^&*;{}", min_size=1, max_size=8).filter(
    lambda t: not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", t) and not t.startswith("-"))


@FAST
@given(flag=st.sampled_from(["--workers", "--seed", "--chips", "--timeout"]), data=st.data())
def test_property_numeric_cli_arguments(capsys, tmp_path, flag, data):
    strategy = {"--workers": bad_ints, "--seed": bad_seeds, "--chips": st.integers(max_value=-1),
                "--timeout": bad_timeouts}[flag]
    value = data.draw(st.one_of(strategy.map(str), junk))
    work = tmp_path / "w"
    work.mkdir(exist_ok=True)
    assert_usage_error(capsys, ["simulate", "basic/rc", "-o", str(work / "x.h5"), flag, value], work)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


scalars = st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(string.printable.strip(), max_size=6))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.sampled_from("abc"), inner, max_size=2)),
                      max_leaves=5)
# per key: a strategy of values that are wrong for it (by type or range)
WRONG = {
    "seed": values.filter(lambda v: not (isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63)),
    "timeout_s": values.filter(lambda v: not (isinstance(v, (int, float)) and not isinstance(v, bool)
                                              and math.isfinite(v) and v > 0)),
    "save": st.one_of(values.filter(lambda v: not (isinstance(v, list) and v and all(
        isinstance(x, str) and x.strip() for x in v))),
        st.lists(st.sampled_from(["v(nope)", "i(r1)", "v(in,zz)", "i(nothing)", "v(x)"]), min_size=1, max_size=3)),
    "grid": values.filter(lambda v: not isinstance(v, dict) or any(
        not isinstance(x, list) or not x for x in v.values()) or not v),
    "analysis": values.filter(lambda v: not isinstance(v, str) or not v.strip()),
    "montecarlo": st.fixed_dictionaries({"chips": values.filter(
        lambda v: not (isinstance(v, int) and not isinstance(v, bool) and v >= 0))}),
}


@FAST
@given(key=st.sampled_from(sorted(WRONG)), data=st.data())
def test_property_sweep_configs_with_a_wrong_value(capsys, tmp_path, key, data):
    value = data.draw(WRONG[key])
    if key == "grid" and isinstance(value, dict) and not value:
        value = 5
    body = 'template = "basic/rc"\n'
    if key != "analysis":
        body += 'analysis = "op"\n'
    if key in ("grid", "montecarlo") and isinstance(value, dict):
        body += f"[{key}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in value.items())
    else:
        body = f"{key} = {_toml_value(value)}\n" + body
    work = tmp_path / "w"
    work.mkdir(exist_ok=True)
    config = tmp_path / "c.toml"
    config.write_text(body)
    assert_usage_error(capsys, ["sweep", str(config), "-o", str(work / "o.h5")], work)


# template parameter values that are not "a number, optional SI prefix, optional unit Ohm, within [1, 1e12]":
# text with a character no such number has, or a number out of range
bad_text = st.text(alphabet=string.printable, min_size=1, max_size=12).filter(
    lambda t: re.search(r"[^0-9a-zA-Z.+\-]", t.strip()) is not None or not t.strip())
out_of_range = st.one_of(st.floats(max_value=0.999, allow_nan=False, allow_infinity=False),
                         st.floats(min_value=1.0001e12, allow_nan=False, allow_infinity=False)).map(repr)


@FAST
@given(value=st.one_of(bad_text, out_of_range))
def test_property_template_parameters(capsys, tmp_path, value):
    work = tmp_path / "w"
    work.mkdir(exist_ok=True)
    assert_usage_error(capsys, ["simulate", "basic/rc", "-p", f"r={value}", "-o", str(work / "x.h5")], work,
                       "parameter 'r'")
