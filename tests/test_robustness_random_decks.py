"""Random decks (hypothesis): linear and diode networks with every analysis kind, written as plain netlists with
random card case and number spellings; spicenet in both modes gives what raw ``ngspice -b`` gives (same comparison
as the corpus in test_robustness_decks)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spicenet.spice.analysis import read_netlist
from spicenet.spice.job import RunSpec
from spicenet.spice.results import SimResult
from tests.test_robustness_decks import NGSPICE, reference

VALUES = {"r": ["1k", "2.2kOhm", "470", "10K", "1e4", "3.3k"], "c": ["1n", "10pF", "2.2nF", "100p", "1e-9"],
          "l": ["1u", "10uH", "4.7u"], "tstep": ["10ns", "5n", "20nS"], "tstop": ["2us", "1u", "3us"]}


@st.composite
def decks(draw):
    n = draw(st.integers(2, 5))
    nodes = [f"n{k}" for k in range(1, n + 1)]
    lines = [f"V1 n1 0 DC {draw(st.sampled_from(['1', '0.5', '2V']))} AC 1 PULSE(0 1 0 1n 1n 500n 1u)"]
    for k, node in enumerate(nodes, 1):  # every node has a dc path to ground
        lines.append(f"R{k} {node} 0 {draw(st.sampled_from(VALUES['r']))}")
    count = draw(st.integers(1, 6))
    for j in range(count):
        kind = draw(st.sampled_from("rcdl"))
        a, b = draw(st.sampled_from(nodes)), draw(st.sampled_from(nodes + ["0"]))
        if a == b or (kind == "l" and ("n1" in (a, b) or "0" in (a, b))):  # no voltage-source/inductor loops
            continue
        if kind == "d":
            lines.append(f"D{j} {a} {b} dm")
        else:
            lines.append(f"{kind.upper()}x{j} {a} {b} {draw(st.sampled_from(VALUES[kind]))}")
    lines.append(".model dm d is=1e-14 n=1.1 rs=10 cjo=1p")
    out = draw(st.sampled_from(nodes))
    analysis = draw(st.sampled_from([
        ".op", ".dc V1 0 1 0.25", ".ac dec 3 1k 100meg", ".ac oct 2 10k 1meg", ".ac lin 5 1k 5k",
        f".tran {draw(st.sampled_from(VALUES['tstep']))} {draw(st.sampled_from(VALUES['tstop']))}",
        f".tf v({out}) V1", f".noise v({out}) V1 dec 2 1k 1meg", f".sens v({out})"]))
    if draw(st.booleans()):
        analysis = analysis.upper().replace("V(", "v(") if not analysis.startswith(".noise") else analysis.upper()
    return "random deck\n" + "\n".join(lines) + f"\n{analysis}\n.end\n"


@pytest.mark.skipif(NGSPICE is None, reason="ngspice not installed")
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(text=decks())
def test_random_decks_equal_raw_ngspice_in_both_modes(tmp_path_factory, engine, batch_engine, text):
    work = tmp_path_factory.mktemp("rnd")
    deck = work / "deck.cir"
    deck.write_text(text)
    ref = reference(deck, work / "ref")
    netlist = read_netlist(deck)
    (analysis,) = netlist.analyses
    results = {}
    for mode, eng in (("shared", engine), ("batch", batch_engine)):
        outcome = eng.simulate_many(netlist.deck, [RunSpec(id="r", analysis=analysis)])["r"]
        assert isinstance(outcome, SimResult), f"{mode}: {outcome}\n{text}"
        results[mode] = outcome
    (expected,) = ref.values()
    for mode, result in results.items():
        assert sorted(result.vectors) == sorted(expected), f"{mode}\n{text}"
        for name, (values, unit) in expected.items():
            assert result.units[name] == unit, (mode, name)
            np.testing.assert_allclose(result.vectors[name], values, rtol=1e-12, atol=1e-300,
                                       err_msg=f"{mode} {name}\n{text}")
    for name, values in results["shared"].vectors.items():
        np.testing.assert_array_equal(values, results["batch"].vectors[name])
