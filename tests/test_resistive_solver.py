"""Steady-state solver of the resistive network vs ngspice `.op`, vs numpy's linear nodal solution, vs Lambert W."""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.special
import torch

from spicenet.cells.resistive.netlist import (
    alter_commands,
    free_node_names,
    input_source_names,
    network_deck,
    network_netlist,
)
from spicenet.cells.resistive.network import ResistiveNetwork, programmable_levels, sample_chip
from spicenet.cells.resistive.solver import diode_current, solve, thermal_voltage

needs_ngspice = pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice not installed")
TIGHT = {"reltol": 1e-9, "abstol": 1e-15, "vntol": 1e-12}
# at TIGHT tolerances ngspice agrees to ~1e-13 V; 1e-9 V still catches a missing gmin (~3e-8 V here) or
# CODATA-2018 instead of ngspice's CODATA-2014 k/q (~2e-7 V)
SPICE_TOL = 1e-9


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run_ngspice(deck: str, tmp_path: Path, control: list[str]) -> list[dict[str, float]]:
    """Run a deck in batch mode with a .control block; returns one dict of printed vectors per `print all`."""
    body = deck.replace(".op\n", "").replace(".end\n", "")
    text = body + ".control\nset numdgt=15\n" + "\n".join(control) + "\nquit 0\n.endc\n.end\n"
    path = tmp_path / "deck.cir"
    path.write_text(text)
    proc = subprocess.run(["ngspice", "-b", str(path)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    blocks = proc.stdout.split("No. of Data Rows")[1:]
    assert blocks, f"ngspice printed nothing: {proc.stdout[-500:]} {proc.stderr[-500:]}"
    return [{m.group(1).lower(): float(m.group(2)) for m in re.finditer(r"^(\S+) = (\S+)$", b, re.M)}
            for b in blocks]


def _ngspice_nodes(net: ResistiveNetwork, printed: dict[str, float]) -> np.ndarray:
    return np.array([printed[name] for name in free_node_names(net)])


# five random networks: sizes, gain, series R, mismatch, seed
CASES = [
    ([4, 5, 3], 15.0, 0.0, False, 0),
    ([6, 8, 4], 15.0, 0.0, True, 1),
    ([3, 4, 4, 2], 20.0, 0.0, False, 2),
    ([5, 6, 3], 15.0, 200.0, True, 3),
    ([8, 3, 5, 2], 20.0, 50.0, False, 4),
]


@needs_ngspice
@pytest.mark.parametrize("sizes,gain,rs,mismatch,seed", CASES)
def test_solver_matches_ngspice_op(tmp_path, sizes, gain, rs, mismatch, seed):
    net = ResistiveNetwork(sizes, input_gain=gain, rs=rs, seed=seed, init_range=(0.05, 1.0))
    chip = sample_chip(net, sigma_g=0.1, sigma_is=0.3, sigma_n=0.02, seed=seed) if mismatch else None
    x = torch.rand(2, sizes[0], generator=torch.Generator().manual_seed(100 + seed))
    res = net.equilibrium(x, chip=chip)
    assert bool(res.converged.all()) and float(res.residual.max()) < 1e-12
    circ = net.circuit(chip)
    vt = thermal_voltage()
    max_on = 0.0
    for b in range(2):
        printed = _run_ngspice(network_netlist(net, x[b], chip=chip, options=TIGHT), tmp_path, ["op", "print all"])
        v_spice = _ngspice_nodes(net, printed[0])
        assert np.abs(v_spice - res.v[b].numpy()).max() < SPICE_TOL
        # diode currents from ngspice's voltages by the Shockley law (rs = 0 cases): some diodes must be on
        if rs == 0.0:
            vd = np.stack([v_spice - net.vb, -net.vb - v_spice], axis=1)
            i_d = circ.is_.numpy() * np.expm1(vd / (circ.n.numpy() * vt))
            max_on = max(max_on, float(i_d.max()))
    if rs == 0.0:
        assert max_on > 1e-6, f"no diode conducts > 1 uA (max {max_on:.3g} A): the test would not test diodes"


@needs_ngspice
def test_default_ngspice_tolerances_within_1mv_and_rs_diodes_on(tmp_path):
    net = ResistiveNetwork([6, 8, 4], input_gain=20.0, rs=100.0, seed=7)
    x = torch.rand(1, 6, generator=torch.Generator().manual_seed(7))
    res = net.equilibrium(x)
    printed = _run_ngspice(network_netlist(net, x[0]), tmp_path, ["op", "print all"])
    v_spice = _ngspice_nodes(net, printed[0])
    assert np.abs(v_spice - res.v[0].numpy()).max() < 1e-3
    # the diodes are on: some node is clamped beyond vb by more than 0.4 V
    assert np.abs(v_spice).max() > net.vb + 0.4


@needs_ngspice
def test_alter_deck_loops_over_inputs(tmp_path):
    net = ResistiveNetwork([5, 6, 3], input_gain=8.0, seed=11)
    x = torch.rand(3, 5, generator=torch.Generator().manual_seed(11))
    deck = network_deck(net, options=TIGHT)
    assert ".op" not in deck.splitlines()
    assert all(f"{p} " in deck and f"{n} " in deck for p, n in input_source_names(net))
    control = []
    for b in range(3):
        control += alter_commands(net, x[b]) + ["op", "print all"]
    printed = _run_ngspice(deck, tmp_path, control)
    res = net.equilibrium(x)
    assert len(printed) == 3
    for b in range(3):
        assert printed[b]["inp0"] == pytest.approx(net.input_gain * float(x[b, 0]), abs=1e-12)
        assert np.abs(_ngspice_nodes(net, printed[b]) - res.v[b].numpy()).max() < SPICE_TOL


@needs_ngspice
def test_nudged_phase_matches_ngspice(tmp_path):
    net = ResistiveNetwork([4, 6, 3], input_gain=8.0, seed=5)
    x = torch.rand(1, 4, generator=torch.Generator().manual_seed(5))
    target = torch.tensor([[0.3, -0.4, 0.1]], dtype=torch.float64)
    for beta in (2e-5, -2e-6):
        res = net.equilibrium(x, beta=beta, target=target)
        printed = _run_ngspice(network_netlist(net, x[0], beta=beta, target=target[0], options=TIGHT), tmp_path,
                               ["op", "print all"])
        assert np.abs(_ngspice_nodes(net, printed[0]) - res.v[0].numpy()).max() < SPICE_TOL
    free = net.equilibrium(x).v[0, net.out_slice]
    nudged = net.equilibrium(x, beta=2e-5, target=target).v[0, net.out_slice]
    # the nudge pulls every output towards its target
    assert bool(((nudged - target[0]).abs() < (free - target[0]).abs()).all())


def test_linear_network_equals_numpy_nodal_solution():
    """Diodes removed: KCL is linear; build the nodal matrix edge by edge here and solve with numpy."""
    sizes = [5, 4, 6, 3]
    net = ResistiveNetwork(sizes, input_gain=3.0, seed=21, diodes=False)
    x = torch.rand(4, 5, generator=torch.Generator().manual_seed(21), dtype=torch.float64)
    res = net.equilibrium(x)
    gw, gb = (list(map(lambda t: t.detach().numpy(), g)) for g in net.conductances())
    names = free_node_names(net)
    index = {n: i for i, n in enumerate(names)}
    n_free = len(names)
    for b in range(4):
        src = np.concatenate([3.0 * x[b].numpy(), -3.0 * x[b].numpy()])
        mat = np.zeros((n_free, n_free))
        rhs = np.zeros(n_free)
        for i in range(2 * sizes[0]):  # sources -> layer 1
            for j in range(sizes[1]):
                k = index[f"h1_{j}"]
                mat[k, k] += gw[0][i, j]
                rhs[k] += gw[0][i, j] * src[i]
        for layer in range(1, len(sizes) - 1):  # free-free edges
            for i in range(sizes[layer]):
                for j in range(sizes[layer + 1]):
                    p, q, g = index[f"h{layer}_{i}"], index[f"h{layer + 1}_{j}"], gw[layer][i, j]
                    mat[p, p] += g
                    mat[q, q] += g
                    mat[p, q] -= g
                    mat[q, p] -= g
        for layer in range(1, len(sizes)):  # bias sources +/- v_bias
            for i, vsrc in enumerate((net.v_bias, -net.v_bias)):
                for j in range(sizes[layer]):
                    k = index[f"h{layer}_{j}"]
                    mat[k, k] += gb[layer - 1][i, j]
                    rhs[k] += gb[layer - 1][i, j] * vsrc
        expected = np.linalg.solve(mat, rhs)
        assert np.abs(res.v[b].numpy() - expected).max() < 1e-12


def test_series_resistance_diode_matches_lambert_w():
    """Shockley diode with series R (gmin = 0): I = nVt/Rs W(Is Rs/(nVt) exp((V + Is Rs)/(nVt))) - Is."""
    vt = thermal_voltage()
    is_, n, rs = 1e-14, 1.3, 150.0
    v = torch.linspace(-0.09, 3.0, 67, dtype=torch.float64)  # above -3 nVt: pure Shockley branch
    i, g, u, _ = diode_current(v, torch.tensor(is_, dtype=torch.float64), torch.tensor(n * vt, dtype=torch.float64),
                               rs, 0.0)
    nvt = n * vt
    arg = np.log(is_ * rs / nvt) + (v.numpy() + is_ * rs) / nvt  # W(exp(arg)) via the log form for large args
    w = np.real(scipy.special.wrightomega(arg))
    expected = nvt / rs * w - is_
    assert np.allclose(i.numpy(), expected, rtol=1e-9, atol=1e-20)
    # terminal conductance: numerical derivative of the analytic current
    h = 1e-6
    d_expected = (np.real(scipy.special.wrightomega(arg + h / nvt)) - np.real(scipy.special.wrightomega(arg - h / nvt)))
    d_expected *= nvt / rs / (2 * h)
    assert np.allclose(g.numpy(), d_expected, rtol=1e-5, atol=1e-15)


def test_layered_and_dense_linear_solves_agree_and_iterations_reported():
    net = ResistiveNetwork([7, 5, 6, 4], input_gain=12.0, seed=3)
    x = torch.rand(6, 7, generator=torch.Generator().manual_seed(3))
    circ = net.circuit()
    dense = dataclasses.replace(circ, layers=None)
    a = solve(circ, net.source_voltages(x))
    b = solve(dense, net.source_voltages(x))
    assert torch.allclose(a.v, b.v, atol=1e-12, rtol=0)
    assert a.iterations.shape == (6,) and bool((a.iterations >= 1).all())
    assert float(a.residual.max()) < 1e-12
    # each sample stops iterating at its own convergence: solved alone, it takes the same steps to the same state
    assert len(set(a.iterations.tolist())) > 1  # the batch mixes fast and slow samples
    for k in range(6):
        alone = solve(circ, net.source_voltages(x[k:k + 1]))
        assert int(alone.iterations[0]) == int(a.iterations[k])
        assert torch.allclose(alone.v[0], a.v[k], atol=1e-13, rtol=0)


@pytest.mark.parametrize("layers", [(5,), (7, 3), (4, 6, 2), (3, 8, 8, 2), (6, 2, 9, 4, 3), (9, 9, 9, 9)])
def test_block_elimination_equals_dense_solve(layers):
    """``_solve_layered`` (elimination from both ends towards a pivot layer) against LAPACK on the assembled
    matrix, for chains whose pivot sits at an end, in the middle, and behind dense intermediate blocks."""
    from spicenet.cells.resistive.solver import _matvec, _pivot_layer, _solve_layered

    g = torch.Generator().manual_seed(len(layers))
    n = sum(layers)
    starts = np.cumsum((0,) + layers)
    lap = torch.zeros(n, n, dtype=torch.float64)
    for k in range(len(layers) - 1):
        a = torch.rand(layers[k], layers[k + 1], generator=g, dtype=torch.float64) * 1e-4
        lap[starts[k]:starts[k + 1], starts[k + 1]:starts[k + 2]] = -a
        lap[starts[k + 1]:starts[k + 2], starts[k]:starts[k + 1]] = -a.T
    lap += torch.diag(-lap.sum(1) + 1e-6)
    diag = torch.rand(5, n, generator=g, dtype=torch.float64) ** 4 * 1e-2  # some nodes diode-clamped, most not
    rhs = torch.randn(5, n, generator=g, dtype=torch.float64) * 1e-5
    expect = torch.linalg.solve(lap + torch.diag_embed(diag), rhs.unsqueeze(-1)).squeeze(-1)
    got = _solve_layered(lap, diag, rhs, layers)
    assert torch.allclose(got, expect, rtol=1e-10, atol=1e-12 * float(expect.abs().max()))
    # the residual's product from the coupling blocks equals the dense one
    assert torch.allclose(_matvec(rhs, lap, layers), rhs @ lap, rtol=0, atol=1e-12 * float((rhs @ lap).abs().max()))
    # the pivot is the cheap layer: the 10 outputs behind 1,000 hidden nodes, the middle of 100-100-10
    assert _pivot_layer((100, 100, 10)) == 1 and _pivot_layer((1000, 10)) == 1 and _pivot_layer((5,)) == 0


def test_forward_in_chunks_equals_one_solve():
    net = ResistiveNetwork([6, 5, 4, 3], input_gain=10.0, seed=2, amp_gain=3.0)
    x = torch.rand(11, 6, generator=torch.Generator().manual_seed(2))
    chip = sample_chip(net, sigma_g=0.1, sigma_is=0.3, seed=4)
    whole = net.equilibrium(x, chip=chip).v[:, net.out_slice]
    assert torch.allclose(net(x, chip=chip, chunk=3), whole, atol=1e-13, rtol=0)  # 4 chunks, the last of 2
    assert not torch.allclose(net(x, chunk=3), whole, atol=1e-6, rtol=0)  # the chip is applied to every chunk
    with pytest.raises(ValueError, match="chunk"):
        net(x, chunk=0)


def test_same_seed_same_chip_and_levels_hook():
    net = ResistiveNetwork([3, 4, 2], seed=0)
    c1, c2 = sample_chip(net, seed=5), sample_chip(net, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(c1.g_factor, c2.g_factor))
    assert torch.equal(c1.is_factor, c2.is_factor) and not torch.equal(c1.is_factor, sample_chip(net, seed=6).is_factor)
    levels = [0.0, 2e-6, 5e-6, 1e-5]
    qnet = ResistiveNetwork([3, 4, 2], seed=0, quantize=programmable_levels(levels))
    for g in qnet.conductances()[0]:
        d = (g.detach().unsqueeze(-1) - torch.tensor(levels, dtype=torch.float64)).abs()
        assert float(d.min(-1).values.max()) == 0.0


def test_bad_arguments_raise_value_error():
    net = ResistiveNetwork([3, 4, 2], seed=0)
    with pytest.raises(ValueError, match="x must be"):
        net.equilibrium(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="target"):
        net.equilibrium(torch.zeros(2, 3), beta=1e-6)
    with pytest.raises(ValueError, match="layer_sizes"):
        ResistiveNetwork([3])
    with pytest.raises(ValueError, match="is_"):
        ResistiveNetwork([3, 2], is_=-1.0)
    with pytest.raises(ValueError, match="x must be"):
        network_netlist(net, torch.zeros(4))
    assert math.isfinite(thermal_voltage())


# deep networks with Kendall's bidirectional amplifiers (VCVS gain A forward, CCCS gain b backward)
AMP_CASES = [
    ([4, 5, 3], 15.0, 4.0, None, 0.0, False, 10),
    ([5, 6, 4, 3], 15.0, 3.0, None, 0.0, True, 11),
    ([6, 5, 4, 4, 2], 12.0, 2.0, 0.7, 100.0, True, 12),
]


@needs_ngspice
@pytest.mark.parametrize("sizes,gain,amp,back,rs,mismatch,seed", AMP_CASES)
def test_amplifier_network_matches_ngspice_op(tmp_path, sizes, gain, amp, back, rs, mismatch, seed):
    net = ResistiveNetwork(sizes, input_gain=gain, rs=rs, seed=seed, init_range=(0.05, 1.0), amp_gain=amp,
                           amp_back=back)
    assert net.weights[1].shape[0] == 2 * sizes[1]  # + and - amplifier copies of every hidden node
    chip = sample_chip(net, sigma_g=0.1, sigma_is=0.3, sigma_n=0.02, seed=seed) if mismatch else None
    x = torch.rand(2, sizes[0], generator=torch.Generator().manual_seed(200 + seed))
    res = net.equilibrium(x, chip=chip)
    assert bool(res.converged.all()) and float(res.residual.max()) < 1e-12
    deck = network_netlist(net, x[0], chip=chip, options=TIGHT)
    assert deck.count("\nea") == 2 * sum(sizes[1:-1]) and deck.count("\nfa") == 2 * sum(sizes[1:-1])
    for b in range(2):
        printed = _run_ngspice(network_netlist(net, x[b], chip=chip, options=TIGHT), tmp_path, ["op", "print all"])
        v_spice = _ngspice_nodes(net, printed[0])
        assert np.abs(v_spice - res.v[b].numpy()).max() < SPICE_TOL
        # the amplified hidden nodes sit beyond the diode knee somewhere: the test runs through the nonlinearity
    assert float(res.v.abs().max()) > net.vb + 0.4


def test_amplifier_kcl_unscaled():
    """Independent of the row-scaled form: recompute every node's KCL from the amplifier equations directly."""
    net = ResistiveNetwork([3, 4, 3, 2], input_gain=6.0, seed=5, amp_gain=3.0, init_range=(0.1, 1.0))
    x = torch.rand(3, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    v = net.equilibrium(x).v
    gw, gb = net.conductances()
    vs = net.source_voltages(x)
    a, bk = net.amp_gain, net.amp_back
    i_leave = torch.zeros_like(v)
    sl = [net.layer_slice(k) for k in range(1, 4)]
    i_leave[:, sl[0]] += ((v[:, sl[0]].unsqueeze(1) - vs[:, :6].unsqueeze(2)) * gw[0]).sum(1)
    for k in (1, 2):
        vi, vj = v[:, sl[k - 1]], v[:, sl[k]]
        drive = torch.cat((a * vi, -a * vi), 1)                      # amplifier outputs
        cur = (drive.unsqueeze(2) - vj.unsqueeze(1)) * gw[k]          # [B, 2n, m] into layer k+1
        i_leave[:, sl[k]] -= cur.sum(1)
        sign = torch.cat((torch.ones(vi.shape[1]), -torch.ones(vi.shape[1]))).double()
        back = bk * sign[None, :] * cur.sum(2)                       # CCCS currents leaving node i
        i_leave[:, sl[k - 1]] += back[:, : vi.shape[1]] + back[:, vi.shape[1]:]
    for k, g in enumerate(gb):
        i_leave[:, sl[k]] += ((v[:, sl[k]].unsqueeze(1) - vs[:, 6:].unsqueeze(2)) * g).sum(1)
    vt = thermal_voltage()
    i_d = net.is_ * torch.expm1((v - net.vb) / vt) - net.is_ * torch.expm1((-net.vb - v) / vt) + 2 * net.gmin * v
    assert float((i_leave + i_d).detach().abs().max()) < 1e-12


# rectifier units (Scellier 2024's deep resistive network): excitatory / inhibitory hidden halves, one diode to 0 V
RECTIFIER_CASES = [
    ([4, 6, 3], 15.0, None, 0.0, False, 20),
    ([5, 8, 3], 15.0, None, 100.0, True, 21),
    ([5, 6, 4, 3], 15.0, 4.0, 0.0, True, 22),
]


@needs_ngspice
@pytest.mark.parametrize("sizes,gain,amp,rs,mismatch,seed", RECTIFIER_CASES)
def test_rectifier_network_matches_ngspice_op(tmp_path, sizes, gain, amp, rs, mismatch, seed):
    net = ResistiveNetwork(sizes, input_gain=gain, rs=rs, seed=seed, init_range=(0.05, 1.0), amp_gain=amp,
                           units="rectifier")
    chip = sample_chip(net, sigma_g=0.1, sigma_is=0.3, sigma_n=0.02, seed=seed) if mismatch else None
    x = torch.rand(3, sizes[0], generator=torch.Generator().manual_seed(300 + seed)) - 0.3
    res = net.equilibrium(x, chip=chip)
    assert bool(res.converged.all()) and float(res.residual.max()) < 1e-12
    deck = network_netlist(net, x[0], chip=chip, options=TIGHT)
    n_hidden = sum(sizes[1:-1])
    # one diode per hidden node, two per output node
    assert deck.count("\ndu_") + deck.count("\ndl_") == n_hidden + 2 * sizes[-1]
    for b in range(3):
        printed = _run_ngspice(network_netlist(net, x[b], chip=chip, options=TIGHT), tmp_path, ["op", "print all"])
        v_spice = _ngspice_nodes(net, printed[0])
        assert np.abs(v_spice - res.v[b].numpy()).max() < SPICE_TOL
    # the test runs through the rectification: some excitatory node is held at ~0 V by its diode (driven below
    # ground), and some hidden node sits far beyond the clamp rails the clamp units would impose
    hidden = res.v[:, : n_hidden]
    assert float(hidden.abs().max()) > net.vb + 0.4
    h1 = res.v[:, net.layer_slice(1)]
    exc, inh = h1[:, : sizes[1] // 2], h1[:, sizes[1] // 2:]
    assert float(exc.min()) > -0.8 and float(inh.max()) < 0.8  # at most one junction drop past 0 V


def test_rectifier_units_are_a_relu_of_the_linear_node_voltage():
    """One excitatory and one inhibitory node, each fed by one source through G: the node follows the source on
    its side of 0 V (to the reverse leakage Is + gmin |V| over G, ~2e-7 V) and is held one junction drop past 0 V on
    the other, where the diode sinks the source current: ``|V| = nVt ln(1 + (G (|v_s| - |V|) - gmin |V|) / Is)``
    (rs = 0), solved here by fixed-point iteration."""
    net = ResistiveNetwork([1, 2, 1], input_gain=1.0, bias=False, seed=0, units="rectifier")
    with torch.no_grad():
        net.weights[0].copy_(torch.tensor([[1.0, 1.0], [0.0, 0.0]]))  # +x drives both hidden nodes
        net.weights[1].zero_()  # no load: the output is disconnected
    g = net.g_unit
    vt = thermal_voltage()
    for vs in (2.0, -2.0):
        v = net.equilibrium(torch.tensor([[vs]])).v[0]
        exc, inh = float(v[0]), float(v[1])
        drop = 0.0
        for _ in range(60):  # contraction: d(rhs)/d|V| ~ nVt G / (G |v_s|) << 1
            drop = net.n * vt * math.log1p((g * (abs(vs) - drop) - net.gmin * drop) / net.is_)
        if vs > 0:
            assert exc == pytest.approx(vs, abs=1e-6) and inh == pytest.approx(drop, abs=1e-9)
        else:
            assert exc == pytest.approx(-drop, abs=1e-9) and inh == pytest.approx(vs, abs=1e-6)
    with pytest.raises(ValueError, match="units"):
        ResistiveNetwork([2, 2, 1], units="relu")
