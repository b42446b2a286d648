"""One netlist source: the family generators' cells are the shipped templates' text.

``spicenet.cells.rng.cells.ct_deck`` copies the cell of ``netlists/rng/ct_cell.cir`` once per cell and
``spicenet.cells.oscillator.netlist`` composes its rings of the stage of ``netlists/oscillator/dring3.cir``. These
tests render the templates and the generators with the same parameters and compare them as netlist lines, with
renaming maps written out here (not the generators' own), so the generators' text and the templates cannot drift
apart: a change to either side that is not a pure renaming of the same elements fails here.
"""

from __future__ import annotations

import pytest

from spicenet.cells.oscillator.netlist import RingSpec, pair_netlist, ring_lines, ring_netlist
from spicenet.cells.rng import cells
from spicenet.spice import fragments
from spicenet.spice.process import get_process
from spicenet.spice.templates import load_template

GENERIC = get_process("generic")


def netlist_lines(deck: str) -> list[str]:
    """A deck's lines without the title, comments, blank lines and ``.end``, whitespace normalised."""
    out = []
    for line in deck.splitlines()[1:]:
        line = " ".join(line.split())
        if line and not line.startswith("*") and line.lower() != ".end":
            out.append(line)
    return out


def renamed(line: str, names: dict[str, str]) -> str:
    return " ".join(names.get(token, token) for token in line.split())


# ------------------------------------------------------------------------------------------------ rng cell --
CELL_LOCAL = ("vma", "vmb", "vb", "esa", "esb", "xpa", "xna", "xpb", "xnb", "pa", "pb", "bias", "sa", "sb", "a", "b")
"""Element names and nodes of the template's cell that each cell of ct_deck suffixes with its index."""


@pytest.mark.parametrize("sizing,biases", [
    (cells.CellSizing(), [0.0]),
    (cells.CellSizing(), [1e-4, -2.5e-4, 0.0]),
    (cells.CellSizing(vdd=0.062, wn=2.0, wp=2.0, l=0.15, dvtn=-0.5, dvtp=0.565), [3e-4]),
    (cells.CellSizing(vdd=0.0415, wn=1.3, wp=3.25, l=0.18), [-0.001, 0.002]),
])
def test_ct_deck_cells_are_the_template_cell(sizing, biases):
    """Every cell of ct_deck is ct_cell.cir rendered with the same vdd / vb / wn / wp / l, its names and local
    nodes suffixed with the cell index, the supply line once, the template's TRRANDOM sources left out."""
    deck = netlist_lines(cells.ct_deck(biases, sizing, GENERIC))
    template = load_template("rng/ct_cell")
    expected: list[str] = []
    for k, vb in enumerate(biases):
        values = {"vdd": sizing.vdd, "vb": vb, "wn": sizing.wn, "wp": sizing.wp, "l": sizing.l}
        lines = netlist_lines(template.render(values, GENERIC))
        if k == 0:
            expected += [line for line in lines if line.split()[0] in (".include", ".options", "vdd")]
        expected += [renamed(line, {name: f"{name}{k}" for name in CELL_LOCAL}) for line in lines
                     if line.split()[0] in CELL_LOCAL]
    assert deck == expected


def test_ct_deck_pwl_bias_and_extras_keep_the_template_cell():
    """A PWL bias changes only the value of vb<k>; load capacitors and filesource noise come after the cell."""
    sizing = cells.CellSizing(cload=2e-15)
    deck = netlist_lines(cells.ct_deck([[(0.0, 0.0), (1e-7, 1e-4)]], sizing, GENERIC, noise_files=["/tmp/n0.txt"]))
    assert "vb0 bias0 0 pwl(0 0 1e-07 0.0001)" in deck
    plain = netlist_lines(cells.ct_deck([0.0], cells.CellSizing(), GENERIC))
    assert [line for line in deck if not line.startswith("vb0 ")][:len(plain) - 1] == \
        [line for line in plain if not line.startswith("vb0 ")]
    assert deck[len(plain):len(plain) + 3] == ["cla0 a0 0 2e-15", "clb0 b0 0 2e-15", "an0 %i([a0 b0]) nsrc0"]


def test_cell_devices_are_the_template_transistors():
    """cell_devices (the names, kinds and sizes that mismatch and the alter commands use) lists the template's
    transistors in deck order."""
    sizing = cells.CellSizing(wn=1.3, wp=3.25, l=0.18)
    lines = netlist_lines(load_template("rng/ct_cell").render({"wn": 1.3, "wp": 3.25, "l": 0.18}, GENERIC))
    devices = []
    for line in (ln for ln in lines if ln.startswith("x")):
        tokens = line.split()
        params = dict(t.split("=") for t in tokens if "=" in t)
        model = next(t for t in tokens if "=" not in t and t in ("nfet", "pfet"))
        devices.append((tokens[0], model, float(params["w"]), float(params["l"])))
    assert [(d.name, d.kind, d.w, d.l) for d in cells.cell_devices(0, sizing, "")] == devices


def test_cell_template_ranges_are_the_generator_ranges():
    """vdd, vb and the threshold shifts of ct_cell.cir have the ranges that CellSizing / ct_deck check."""
    params = load_template("rng/ct_cell").params
    assert (params["vdd"].low, params["vdd"].high) == cells.CELL_VDD_RANGE_V
    assert (params["vb"].low, params["vb"].high) == cells.CELL_BIAS_RANGE_V
    for name in ("dvtn", "dvtp"):
        assert (params[name].low, params[name].high) == cells.CELL_VT_SHIFT_RANGE_V
    lo, hi = cells.CELL_BIAS_RANGE_V
    for ok in (lo, hi):
        cells.ct_deck([ok], cells.CellSizing(), GENERIC)
    for bad in (lo * (1 + 1e-9), hi * (1 + 1e-9)):
        with pytest.raises(ValueError, match="bias"):
            cells.ct_deck([bad], cells.CellSizing(), GENERIC)
    lo, hi = cells.CELL_VT_SHIFT_RANGE_V
    cells.CellSizing(dvtn=lo, dvtp=hi)
    with pytest.raises(ValueError, match="dvtp"):
        cells.CellSizing(dvtp=hi * (1 + 1e-9))


# ------------------------------------------------------------------------------------------------- rings --
RINGS = [RingSpec(n_stages=3),
         RingSpec(n_stages=3, wn=1.3, wp=2.6, l=0.2, cload=7e-15, vdd=1.5, latch=0.6)]


def ring_values(spec: RingSpec) -> dict[str, float]:
    return {"vdd": spec.vdd, "wn": spec.wn, "wp": spec.wp, "wnl": spec.latch * spec.wn,
            "wpl": spec.latch * spec.wp, "l": spec.l, "cload": spec.cload}


def no_ic(lines: list[str]) -> list[str]:
    return [line for line in lines if not line.lower().startswith(".ic")]


@pytest.mark.parametrize("spec", RINGS)
def test_dring3_is_the_generators_three_stage_ring(spec):
    """dring3.cir rendered with a RingSpec's values is ring_netlist(spec) (process header, supply, every transistor
    and load, in order), but for the hand-set .ic kick."""
    template = netlist_lines(load_template("oscillator/dring3").render(ring_values(spec), GENERIC))
    assert no_ic(template) == no_ic(netlist_lines(ring_netlist(spec)))


@pytest.mark.parametrize("spec", RINGS)
@pytest.mark.parametrize("sign", [1, -1])
def test_pair3_rings_are_the_generators_rings(spec, sign):
    """pair3.cir's supplies and two rings are pair_netlist's; its rpos / rneg join the nodes of the generator's
    coupling resistor for sign +1 / -1."""
    r, dvdd = 40e3, 0.05
    values = {**ring_values(spec), "vdd1": spec.vdd + dvdd, "rpos": r, "rneg": 1e12}
    template = no_ic(netlist_lines(load_template("oscillator/pair3").render(values, GENERIC)))
    generated = no_ic(netlist_lines(pair_netlist(spec, r, sign, dvdd=dvdd)))
    resistors = {line.split()[0]: line.split()[1:3] for line in template if line.startswith("r")}
    (coupling,) = [line for line in generated if line.startswith("rc ")]
    assert [line for line in template if not line.startswith("r")] == [line for line in generated if line != coupling]
    assert resistors["rpos" if sign == 1 else "rneg"] == coupling.split()[1:3]


def test_ring5_is_the_generators_single_ended_ring():
    """ring5.cir (its own node names n1..n5) is the generator's single-ended 5-stage ring up to names."""
    spec = RingSpec(n_stages=5, differential=False, wn=1.3, wp=2.6, l=0.2, cload=7e-15, vdd=1.5)
    values = {"vdd": spec.vdd, "wn": spec.wn, "wp": spec.wp, "l": spec.l, "cload": spec.cload}
    names = {"vdd": "vdd0"}
    for m in range(1, 6):  # stage m drives n<m+1> from n<m>: the generator's stage m-1 drives o0p<m-1>
        names[f"n{m}"] = f"o0p{(m - 2) % 5}"
        names[f"xn{m}"], names[f"xp{m}"] = f"xn0p{m - 1}", f"xp0p{m - 1}"
        names[f"c{m}"] = f"c0p{(m - 2) % 5}"
    template = no_ic(netlist_lines(load_template("oscillator/ring5").render(values, GENERIC)))
    generated = no_ic(netlist_lines(ring_netlist(spec)))
    assert sorted(renamed(line, names) for line in template) == sorted(generated)


def test_rings_of_any_length_are_copies_of_the_template_stage():
    """A 4-stage (twisted) ring and a second ring of a network: every line is a renamed copy of one of dring3's
    stage-0 elements (same element kind, model and values)."""
    spec = RingSpec(n_stages=4, wn=1.3, wp=2.6, l=0.2, cload=7e-15, vdd=1.5, latch=0.6)
    stage = {line.split()[0]: line for line in netlist_lines(load_template("oscillator/dring3").render(
        ring_values(spec), GENERIC))}
    lines = ring_lines(2, spec)
    assert len(lines) == 4 * 4 * 2 + 2 * 4
    assert "xn2p0 o2p0 o2n3 0 0 nfet w=1.3 l=0.2" in lines  # the twisted closure
    for line in lines:
        name = line.split()[0]
        proto = stage[{"xn": "xn0lp0" if "l" in name else "xn0p0", "xp": "xp0lp0" if "l" in name else "xp0p0",
                       "c2": "c0p0"}[name[:2]]]
        assert [t for t in line.split() if not t.startswith(("o2", "x", "c2", "vdd2"))] == \
            [t for t in proto.split() if not t.startswith(("o0", "x", "c0", "vdd0"))], line


# --------------------------------------------------------------------------------------------- fragments --
def test_rename_touches_only_names_and_nodes():
    assert fragments.rename("xa a b vdd 0 nfet w=1 l=0.15", {"a": "a1", "xa": "xa1", "nfet": "no", "w": "no"}) == \
        "xa1 a1 b vdd 0 nfet w=1 l=0.15"
    assert fragments.rename("esa sa 0 bias 0 0.5", lambda n: n + "7") == "esa7 sa7 07 bias7 07 0.5"
    assert fragments.rename("vb bias 0 dc 0", {"0": "x"}) == "vb bias x dc 0"
    assert fragments.with_value("vb3 bias3 0 dc 0", "pwl(0 0 1 1)") == "vb3 bias3 0 pwl(0 0 1 1)"
    with pytest.raises(ValueError, match="cannot locate"):
        fragments.rename("a1 [x y] model", {})
    with pytest.raises(ValueError, match="without nodes"):
        fragments.rename("x1 sub w=1", {})
