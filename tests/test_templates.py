"""Template rendering validates every parameter before anything runs; values are numbers, never SPICE text."""

from __future__ import annotations

import pytest

from spicenet.errors import ParameterError, TemplateError
from spicenet.spice.analysis import validate_analysis
from spicenet.spice.templates import list_templates, load_template, parse_template
from spicenet.spice.units import format_value, parse_value


@pytest.mark.parametrize("text,unit,value", [("1k", "Ohm", 1e3), ("1.5kOhm", "Ohm", 1.5e3), ("10n", "F", 1e-8),
                                             ("2meg", "", 2e6), ("3mV", "V", 3e-3), ("0.3V", "V", 0.3),
                                             ("-1e-3", "A", -1e-3), (4, "", 4.0)])
def test_parse_value_si_prefixes(text, unit, value):
    assert parse_value(text, unit) == pytest.approx(value, rel=1e-15)


def test_format_value_round_trips_full_precision():
    for value in (1e-15, 0.1 + 0.2, 123456789.123, -3.3e-9, 7.0):
        assert float(format_value(value)) == value


def test_every_shipped_template_parses_and_renders_with_defaults():
    from spicenet.spice.process import get_process

    templates = list_templates()
    assert "basic/rc" in templates and "basic/current_mirror" in templates
    for name, path in templates.items():
        tpl = parse_template(path, name)
        deck = tpl.render({}, get_process("generic") if tpl.uses else None)
        assert deck.rstrip().endswith(".end"), name
        assert "${" not in deck, name


@pytest.mark.parametrize("params,needle", [
    ({"rr": 5}, "unknown parameter 'rr'"),
    ({"r": "1kF"}, "parameter 'r'"),           # wrong unit
    ({"r": "abc"}, "parameter 'r'"),           # not a number
    ({"r": -5}, "out of range"),               # below the declared range
    ({"c": 1.0}, "out of range"),              # above the declared range
    ({"r": "1 \n.control\nshell rm -rf /\n.endc"}, "parameter 'r'"),  # injection attempt
    ({"r": "1k; shell ls"}, "parameter 'r'"),
    ({"r": "{1k*2}"}, "parameter 'r'"),        # SPICE expressions are not values
    ({"r": float("nan")}, "parameter 'r'"),
])
def test_bad_parameters_are_rejected_with_name_and_template(params, needle):
    tpl = load_template("basic/rc")
    with pytest.raises(ParameterError) as info:
        tpl.render(params)
    message = str(info.value)
    assert needle in message and "basic/rc" in message
    assert "\n" not in message


def test_missing_parameter_without_default(tmp_path):
    path = tmp_path / "t.cir"
    path.write_text("* t\n* @param r unit=Ohm range=[1, 1e6] doc=no default\nr1 a 0 ${r}\n.end\n")
    tpl = parse_template(path)
    with pytest.raises(ParameterError, match="'r' has no default"):
        tpl.render({})
    assert "r1 a 0 2000" in tpl.render({"r": "2k"})


def test_undeclared_placeholder_is_a_template_error(tmp_path):
    path = tmp_path / "t.cir"
    path.write_text("* t\nr1 a 0 ${r}\n.end\n")
    with pytest.raises(TemplateError, match=r"\$\{r\} is not declared"):
        parse_template(path)


def test_unknown_template_names_the_known_ones():
    with pytest.raises(ParameterError, match="no template named 'nonesuch'"):
        load_template("nonesuch")


@pytest.mark.parametrize("bad", ["tran 1n 1u; shell ls", "run", "tran 1n", "op\nshell ls", "ac foo 10 1 1g",
                                 "tran 1n 1u `ls`", ""])
def test_analysis_strings_are_validated(bad):
    with pytest.raises(ParameterError):
        validate_analysis(bad)


def test_analysis_normalisation():
    assert validate_analysis(".TRAN 1n 1u") == "tran 1n 1u"
    assert validate_analysis("dc vin 0 1 0.01") == "dc vin 0 1 0.01"


DIVIDER = """* my divider: your own template file, outside the shipped netlists/
* @param r1 default=1k unit=Ohm range=[1, 1e9] doc=top resistor
* @param r2 default=3k unit=Ohm range=[1, 1e9] doc=bottom resistor
* @analysis op
v1 in 0 dc 1
ra in out ${r1}
rb out 0 ${r2}
.end
"""


def test_own_template_file_renders_simulates_and_sweeps(tmp_path):
    """A user's .cir template with a @param header works by path in render, `simulate` and a sweep config (path
    relative to the config); the divider output is r2 / (r1 + r2) x 1 V."""
    import json

    import numpy as np

    from spicenet.errors import ParameterError
    from spicenet.spice.engine import render
    from tests.conftest import run_cli

    path = tmp_path / "cells" / "divider.cir"
    path.parent.mkdir()
    path.write_text(DIVIDER)
    deck = render(path, {"r1": "2k"}, process=None)
    assert "ra in out 2000" in deck.text
    with pytest.raises(ParameterError, match="r2"):
        render(str(path), {"r2": "-5"}, process=None)
    with pytest.raises(ParameterError, match="not found"):
        render(tmp_path / "nope.cir")

    out = tmp_path / "sim.h5"
    run_cli("simulate", str(path), "-p", "r1=1k", "-p", "r2=1k", "-o", str(out), "--json", check=True)
    from spicenet import open_runs

    (run,) = open_runs(out)
    assert float(np.asarray(run.vectors["v(out)"]).reshape(-1)[0]) == pytest.approx(0.5, rel=1e-9)

    config = tmp_path / "sweep.toml"
    config.write_text('template = "cells/divider.cir"\nprocess = "generic"\nsave = ["v(out)"]\n'
                      '[grid]\nr2 = ["1k", "3k"]\n')
    proc = run_cli("sweep", str(config), "-o", str(tmp_path / "sw.h5"), "--workers", "1", "--json", check=True)
    assert json.loads(proc.stdout)["done"] == 2
    values = sorted(open_runs(tmp_path / "sw.h5").to_xarray("v(out)").values.reshape(-1))
    assert values == pytest.approx([0.5, 0.75], rel=1e-9)


def test_shipped_templates_and_the_cell_generators_accept_the_same_ranges():
    """One range per parameter: every transistor width / length of a shipped template is declared with the range
    the families' generators check (spicenet.spice.process.WIDTH_RANGE_UM / LENGTH_RANGE_UM), the ring and
    p-bit supplies with the ranges of RingSpec / CellSizing, the p-bit bias and threshold shifts with those of
    ct_deck / CellSizing; the generators reject just outside those ranges."""
    from spicenet.cells.oscillator.netlist import RING_VDD_RANGE_V, RingSpec
    from spicenet.cells.rng.cells import CELL_BIAS_RANGE_V, CELL_VDD_RANGE_V, CELL_VT_SHIFT_RANGE_V, CellSizing
    from spicenet.spice.process import LENGTH_RANGE_UM, WIDTH_RANGE_UM

    checked = 0
    for name, path in list_templates().items():
        tpl = parse_template(path, name)
        for p in tpl.params.values():
            if p.unit == "um" and p.name.startswith("w"):
                assert (p.low, p.high) == WIDTH_RANGE_UM, f"{name}: {p.name}"
                checked += 1
            elif p.unit == "um" and p.name == "l":
                assert (p.low, p.high) == LENGTH_RANGE_UM, f"{name}: {p.name}"
                checked += 1
            elif p.name in ("vdd", "vdd1") and name.startswith("oscillator/"):
                assert (p.low, p.high) == RING_VDD_RANGE_V, f"{name}: {p.name}"
                checked += 1
            elif p.name == "vdd" and name == "rng/ct_cell":
                assert (p.low, p.high) == CELL_VDD_RANGE_V, f"{name}: {p.name}"
                checked += 1
            elif p.name == "vb" and name == "rng/ct_cell":
                assert (p.low, p.high) == CELL_BIAS_RANGE_V, f"{name}: {p.name}"
                checked += 1
            elif p.name in ("dvtn", "dvtp") and name == "rng/ct_cell":
                assert (p.low, p.high) == CELL_VT_SHIFT_RANGE_V, f"{name}: {p.name}"
                checked += 1
    assert checked >= 20
    for spec, field, (lo, hi) in ((RingSpec, "wn", WIDTH_RANGE_UM), (RingSpec, "l", LENGTH_RANGE_UM),
                                  (RingSpec, "vdd", RING_VDD_RANGE_V), (CellSizing, "wp", WIDTH_RANGE_UM),
                                  (CellSizing, "l", LENGTH_RANGE_UM), (CellSizing, "vdd", CELL_VDD_RANGE_V),
                                  (CellSizing, "dvtn", CELL_VT_SHIFT_RANGE_V)):
        for ok in (lo, hi):  # the ends are accepted (the ring's latch inverters, latch x wn, need latch = 1 at wn = lo)
            spec(**{field: ok, **({"latch": 1.0} if spec is RingSpec else {})})
        for bad in (lo - abs(lo) * 1e-9, hi + abs(hi) * 1e-9):
            with pytest.raises(ValueError, match=field):
                spec(**{field: bad, **({"latch": 1.0} if spec is RingSpec else {})})
    with pytest.raises(ValueError, match="latch"):  # default latch 0.5 at the smallest width: 0.21 um inverters
        RingSpec(wn=WIDTH_RANGE_UM[0])
