"""Every deck of the corpus ``tests/decks/`` gives, in both engine modes, exactly what raw ``ngspice -b`` gives.

The reference is ``ngspice -b -r ref.raw deck.cir`` run on the deck file as written (its own analysis cards, its
relative includes), with an ASCII raw file parsed here by a reader of its own (not spicenet's). Names: the raw
file's variable names, lower-cased, with the one documented exception that the dc sweep scale keeps its plot
name (``v(v-sweep)`` -> ``v-sweep``, ``i(i-sweep)`` -> ``i-sweep``); units: the raw file's vector type through the
documented table. Values: equal to 1e-12 relative (the ASCII reference has 15 significant digits); an ac
frequency scale is real (spicenet returns it as float; the raw file's imaginary part of it is garbage).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from spicenet.spice.analysis import read_netlist
from spicenet.spice.job import RunSpec
from spicenet.spice.results import SimResult

DECKS = Path(__file__).parent / "decks"
DECK_FILES = sorted(DECKS.glob("*.cir"))
NGSPICE = shutil.which("ngspice")

PLOT_KINDS = {"operating point": "op", "dc transfer characteristic": "dc", "ac analysis": "ac",
              "transient analysis": "tran", "transfer function": "tf", "sensitivity analysis": "sens",
              "pole-zero analysis": "pz", "noise spectral density curves": "noise", "integrated noise": "noise"}
UNITS = {"time": "s", "frequency": "Hz", "voltage": "V", "current": "A", "voltage-density": "V/sqrt(Hz)",
         "current-density": "A/sqrt(Hz)", "temp-sweep": "degC", "res-sweep": "Ohm"}
SCALE_RENAMES = {"v(v-sweep)": "v-sweep", "i(i-sweep)": "i-sweep"}


def parse_ascii_raw(text: str) -> list[dict]:
    """[{plot, vars: [(name, type)], values: array [points, vars] (complex when flagged)}] of an ASCII raw file."""
    plots, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        header: dict[str, str] = {}
        while not lines[i].startswith("Variables:"):
            key, _, value = lines[i].partition(":")
            header[key.strip().lower()] = value.strip()
            i += 1
        n_vars, n_points = int(header["no. variables"]), int(header["no. points"])
        variables = [tuple(lines[i + 1 + k].split()[1:3]) for k in range(n_vars)]
        i += 1 + n_vars
        assert lines[i].startswith("Values:")
        i += 1
        tokens: list[str] = []
        while len(tokens) < n_points * (n_vars + 1):
            tokens += lines[i].split()
            i += 1
        complex_ = "complex" in header["flags"]
        rows = []
        for p in range(n_points):
            row = tokens[p * (n_vars + 1) + 1:(p + 1) * (n_vars + 1)]
            rows.append([complex(*map(float, t.split(","))) if complex_ else float(t) for t in row])
        plots.append({"plot": header["plotname"], "vars": variables, "values": np.array(rows)})
        while i < len(lines) and not lines[i].strip():
            i += 1
    return plots


def reference(deck: Path, workdir: Path) -> dict[str, dict[str, tuple[np.ndarray, str]]]:
    """analysis kind -> {expected name: (values, expected unit)} from raw ``ngspice -b -r``."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / ".spiceinit").write_text("set filetype=ascii\nset num_threads=1\n")
    raw = workdir / "ref.raw"
    proc = subprocess.run([NGSPICE, "-b", "-r", str(raw), str(deck)], cwd=workdir, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and raw.exists(), proc.stdout[-1500:] + proc.stderr[-1500:]
    out: dict[str, dict[str, tuple[np.ndarray, str]]] = {}
    for plot in parse_ascii_raw(raw.read_text()):
        kind = PLOT_KINDS[plot["plot"].lower()]
        table = out.setdefault(kind, {})
        for k, (name, vtype) in enumerate(plot["vars"]):
            key = SCALE_RENAMES.get(name.lower(), name.lower())
            values = plot["values"][:, k]
            if vtype == "frequency":  # real; ngspice -r writes an uninitialised imaginary part for this scale
                values = values.real
            table[key] = (values, UNITS.get(vtype, ""))
    return out


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    if NGSPICE is None:
        pytest.skip("ngspice not installed")
    base = tmp_path_factory.mktemp("ref")
    return {deck.name: reference(deck, base / deck.stem) for deck in DECK_FILES}


def _spicenet(engine, deck: Path) -> dict[str, SimResult]:
    netlist = read_netlist(deck)
    kinds = [a.split()[0] for a in netlist.analyses]
    assert len(kinds) == len(set(kinds)), f"{deck.name}: one analysis per kind keeps the comparison unambiguous"
    runs = [RunSpec(id=f"a{k}", analysis=a) for k, a in enumerate(netlist.analyses)]
    outcomes = engine.simulate_many(netlist.deck, runs)
    results = {}
    for run in runs:
        outcome = outcomes[run.id]
        assert isinstance(outcome, SimResult), f"{deck.name}: {run.analysis}: {outcome}"
        results[run.analysis.split()[0]] = outcome
    return results


def test_corpus_covers_the_analyses_and_syntax_forms():
    text = {deck.name: deck.read_text() for deck in DECK_FILES}
    kinds = {a.split()[0] for deck in DECK_FILES for a in read_netlist(deck).analyses}
    assert kinds == {"op", "dc", "ac", "tran", "noise", "tf", "sens", "pz"}
    joined = "\n".join(text.values())
    for form in (".DC VIN", ".AC DEC", ".include models/", ".lib lib/", ".param", ".func", ".subckt", "\n+ ",
                 " oct ", " lin ", "10ns", "uic", ".dc temp", "MEG", ".save", ".temp", ".nodeset", ".ic", "K1", "{vmax/npts}",
                 "\nT1", "\nS1", "\nQ1", "\nJ1", "\nM1", "\nB1", "\nE1", "\nF1", "\nG1", "\nH1"):
        assert form in joined, form
    assert any(len(a.split()) == 9 for deck in DECK_FILES for a in read_netlist(deck).analyses)  # nested dc


@pytest.mark.parametrize("mode", ["shared", "batch"])
def test_every_vector_of_every_deck_equals_raw_ngspice(mode, references, engine, batch_engine):
    eng = engine if mode == "shared" else batch_engine
    compared = 0
    for deck in DECK_FILES:
        ref = references[deck.name]
        got = _spicenet(eng, deck)
        assert set(got) == set(ref), f"{deck.name}: analyses {sorted(got)} vs ngspice {sorted(ref)}"
        for kind, result in got.items():
            expected = ref[kind]
            assert sorted(result.vectors) == sorted(expected), f"{deck.name} {kind} ({mode}): names differ"
            for name, (values, unit) in expected.items():
                assert result.units[name] == unit, f"{deck.name} {kind} {name}: unit {result.units[name]!r}"
                np.testing.assert_allclose(result.vectors[name], values, rtol=1e-12, atol=1e-300,
                                           err_msg=f"{deck.name} {kind} {name} ({mode})")
                compared += 1
    assert compared >= 170  # 185 vectors in 24 decks when written


def test_both_modes_give_identical_names_units_and_bits(engine, batch_engine):
    for deck in DECK_FILES:
        shared, batch = _spicenet(engine, deck), _spicenet(batch_engine, deck)
        for kind in shared:
            assert list(shared[kind].vectors) == list(batch[kind].vectors), f"{deck.name} {kind}: order"
            assert shared[kind].units == batch[kind].units
            for name, values in shared[kind].vectors.items():
                np.testing.assert_array_equal(values, batch[kind].vectors[name], err_msg=f"{deck.name} {name}")
