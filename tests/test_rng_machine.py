"""Whole-machine export of a trained DTM (spicenet.cells.rng.machine, .whole): the full grid of one denoising step
as one netlist, and the T steps chained in ngspice.

Independent references: ngspice's own operating point of the exported resistor network (every bias node must sit
at the Boltzmann field v0_k + 2 beta vs_k (h_k + sum_j J_kj s_j / alpha) computed here from the DTM's dense
couplings, and the sources' power must equal the network's dissipation); a hand count of the deck's cells and
couplings; and chains whose steps are made nearly deterministic (|2 beta h| = 6: P = 0.9975), so the images the
chained SPICE run must produce follow from the chain's definition (step T writes a pattern, every later step copies
(gamma > 0) or inverts (gamma < 0) its conditioning), with a negative control that flips one step's sign.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from spicenet.cells.rng import cells, machine
from spicenet.cells.rng.dtm import DTM, DTMConfig, uniform_quantiser
from spicenet.spice.engine import Engine, plain_deck
from spicenet.spice.process import get_process

torch.set_num_threads(1)
SIZING = cells.CellSizing(vdd=0.040, dvtn=-0.25, dvtp=0.25)
VS_GENERIC = 0.213e-3   # the generic cell's measured logistic slope (V; README, `calibrate rng --quick`)


def _trained_like_dtm(size: int, n_data: int, steps: int, seed: int) -> DTM:
    """A DTM whose every step holds random 6-bit couplings, biases and conditioning gains (as after training)."""
    dtm = DTM(n_data, DTMConfig(size=size, n_steps=steps, beta=1.0, seed=seed), quantiser=uniform_quantiser(6, 1.0))
    g = torch.Generator().manual_seed(seed)
    for p in dtm.steps:
        p.weights = 0.15 * torch.randn(p.weights.shape, generator=g, dtype=torch.float64)
        p.biases = 0.4 * torch.randn(p.biases.shape, generator=g, dtype=torch.float64)
        p.gamma = 0.5 * torch.randn(p.gamma.shape, generator=g, dtype=torch.float64)
    return dtm


def _dense_coupling(dtm: DTM, step: int) -> np.ndarray:
    """J [N, N] of the step's quantised couplings, from the graph's edge list (symmetric)."""
    n = dtm.graph.n_nodes
    w = dtm.quantiser(dtm.steps[step - 1].weights).double().numpy()
    j = np.zeros((n, n))
    for (a, b), v in zip(dtm.graph.edges, w):
        j[a, b] += v
        j[b, a] += v
    return j


def _network_lines(deck: str) -> list[str]:
    """The exported deck's bias sources, bias resistors and coupling resistors (nothing of the cells)."""
    return [ln for ln in deck.splitlines() if re.match(r"^(vb\d+ bsrc\d+ 0 dc |rb\d+ |rc\d+x\d+ )", ln)]


def test_exported_step_network_realises_the_trained_field_in_ngspice(tmp_path) -> None:
    """ngspice's .op of the exported network: v(bias_k) = v0_k + 2 beta vs_k (h_k + sum_j J_kj s_j / alpha) for a
    random spin state, to 1e-9 V; the sources deliver exactly the dissipation ``grid_coupling_power`` computes."""
    dtm = _trained_like_dtm(size=4, n_data=10, steps=2, seed=3)
    n, beta, alpha, vo = dtm.graph.n_nodes, 1.0, 0.8, SIZING.vdd
    rng = np.random.default_rng(0)
    vs = 1.7e-3 * (1 + 0.2 * rng.standard_normal(n))             # per-cell design slopes: catches a swapped edge
    v0 = 2e-3 * rng.standard_normal(n)
    x_cond = np.where(rng.random(dtm.n_data) < 0.5, -1.0, 1.0)
    s = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    edges, w, h = machine.grid_step_bm(dtm, 2, x_cond)
    m = machine.map_grid(n, edges, w, h, beta, vs, v0, vo, alpha=alpha)
    files = [tmp_path / f"n{k}.txt" for k in range(n)]
    deck = machine.grid_deck(m, SIZING, get_process("generic"), files, init_spins=s)

    # the deck: every cell once (4 transistors each), one noise source per cell, two resistors per coupling
    assert len(re.findall(r"^xna\d+ ", deck, re.M)) == n and len(re.findall(r"^an\d+ ", deck, re.M)) == n
    assert len(re.findall(r"^rc\d+x\d+ ", deck, re.M)) == 2 * int(np.count_nonzero(w))
    assert len(re.findall(r"^x[pn][ab]\d+ ", deck, re.M)) == 4 * n

    # the field the step's Gibbs law needs, from the dense J and the conditioning (independent of map_grid)
    j = _dense_coupling(dtm, 2)
    b = dtm.quantiser(dtm.steps[1].biases).double().numpy().copy()
    b[dtm.data_nodes] += dtm.quantiser(dtm.steps[1].gamma).double().numpy() * x_cond
    want = v0 + 2 * beta * vs * (b + j @ s / alpha)

    net = _network_lines(deck)
    net += [f"vo{k} o{k} 0 dc {vo * s[k]:.12g}" for k in range(n)]
    net += [f"vob{k} ob{k} 0 dc {-vo * s[k]:.12g}" for k in range(n)]
    with Engine(workers=1) as eng:
        r = eng.simulate(plain_deck("* exported step network\n" + "\n".join(net) + "\n.end\n"), "op")
    got = np.array([r.scalar(f"v(bias{k})") for k in range(n)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    np.testing.assert_allclose(machine.grid_bias_voltages(m, s), want, rtol=0, atol=1e-12)
    # power: sources deliver - V I (ngspice's current flows into the + terminal) = the resistors' dissipation
    delivered = -sum(m.v_src[k] * r.scalar(f"i(vb{k})") + vo * s[k] * r.scalar(f"i(vo{k})")
                     - vo * s[k] * r.scalar(f"i(vob{k})") for k in range(n))
    p = machine.grid_coupling_power(m, got[None], (vo * s)[None])[0]
    assert p == pytest.approx(delivered, rel=1e-9)
    # negative control: the conditioning of another image moves the data cells' fields
    _, _, h2 = machine.grid_step_bm(dtm, 2, -x_cond)
    m2 = machine.map_grid(n, edges, w, h2, beta, vs, v0, vo, alpha=alpha)
    assert np.abs(machine.grid_bias_voltages(m2, s) - want)[dtm.data_nodes].max() > 1e-4


def test_map_grid_rejects_bad_shapes_and_overloaded_cells() -> None:
    edges = np.array([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="edges, weights"):
        machine.map_grid(3, edges, np.ones(3), np.zeros(3), 1.0, 1e-3, np.zeros(3), 0.04)
    with pytest.raises(ValueError, match="h, edges"):
        machine.map_grid(3, np.array([[0, 0]]), np.ones(1), np.zeros(3), 1.0, 1e-3, np.zeros(3), 0.04)
    with pytest.raises(ValueError, match="too small for cell"):      # 2 beta vs sum|J| above 0.95 vo
        machine.map_grid(3, edges, np.full(2, 30.0), np.zeros(3), 1.0, 1e-3, np.zeros(3), 0.04)


def _copy_chain_dtm(pattern: np.ndarray, gammas: list[float], beta: float = 3.0) -> DTM:
    """T = len(gammas) steps on a 3x3 grid, all 9 cells data, no couplings: step T's biases write ``pattern``
    (|2 beta b| = 6), every other step t has gamma_t = gammas[t - 1] and no bias (copy if > 0, invert if < 0)."""
    T = len(gammas)
    dtm = DTM(9, DTMConfig(size=3, n_steps=T, beta=beta, seed=0), quantiser=uniform_quantiser(6, 1.0))
    for t, p in enumerate(dtm.steps, start=1):
        p.weights = torch.zeros_like(p.weights)
        p.biases = torch.as_tensor(pattern, dtype=torch.float64) if t == T else torch.zeros_like(p.biases)
        p.gamma = torch.full_like(p.gamma, 0.0 if t == T else gammas[t - 1])
    return dtm


def test_chained_generation_in_spice_follows_the_chain(tmp_path) -> None:
    """Three chained whole-grid SPICE steps on one Monte-Carlo chip (trimmed like the validation): step 3 writes a
    pattern, step 2 inverts it, step 1 copies it, so x_0 = -pattern for every image; flipping step 1's gamma (the
    negative control) gives +pattern; the last step's extra reads (40 ns apart) hold it too. Per-pixel error rate must stay near the cells' 1 - sigmoid(6) = 0.25 %
    (plus the trim residual): at most 3 wrong pixels of 9 x 4 images x 3 steps."""
    from spicenet.cells.rng.whole import locate_grid, run_chain

    pattern = np.array([1, -1, 1, 1, 1, -1, -1, 1, -1], dtype=np.float64)
    process = get_process("generic")
    chips = {0: [5000 + k for k in range(9)]}
    dt, images = 1e-9, 4
    with Engine(workers=2, timeout_s=300) as eng:
        trims = locate_grid(eng, SIZING, process, chips, seed=0, dt=dt)
        assert trims[0]["v0_dc"].shape == (9,) and np.all(np.abs(trims[0]["v0_dc"]) < 0.04)
        x_t = {0: np.where(np.random.default_rng(1).random((images, 9)) < 0.5, -1.0, 1.0)}
        out = {}
        for name, gammas in (("invert-copy", [1.0, -1.0, 0.0]), ("invert-invert", [-1.0, -1.0, 0.0])):
            dtm = _copy_chain_dtm(pattern, gammas)
            out[name] = run_chain(eng, dtm, SIZING, process, chips, trims, x_t, vs_design=VS_GENERIC, beta=dtm.cfg.beta,
                                  alpha=1.0, seed=0, dt=dt, step_time_s=200e-9, reads=3, read_spacing_s=40e-9,
                                  progress=False)
    for name, sign in (("invert-copy", -1.0), ("invert-invert", 1.0)):
        x = out[name]["x"]
        assert sorted(x) == [1, 2, 3, 4]                       # x_T (= 4) and the three steps' read-outs
        wrong = int((x[3][0] != pattern).sum() + (x[2][0] != -pattern).sum() + (x[1][0] != sign * pattern).sum())
        assert wrong <= 3, (name, x[3][0], x[2][0], x[1][0])
        reads = out[name]["reads"][0]                          # [images, 3, 9]: the last step read 3 times
        assert reads.shape == (images, 3, 9) and np.array_equal(reads[:, 0], x[1][0])
        assert int((reads != sign * pattern).sum()) <= 3
        e = out[name]["energy_j"][0]
        assert e.shape == (images,) and np.all(e > 0)
    # energy: the cells draw ~Vdd * I_supply over 3 steps of 200 ns; same schedule -> same order of magnitude
    assert out["invert-copy"]["energy_j"][0].mean() == pytest.approx(out["invert-invert"]["energy_j"][0].mean(),
                                                                       rel=0.2)


def test_effective_reads_of_an_ar1_sequence_and_the_floor() -> None:
    """n_eff of +-1 reads from a two-state Markov chain with lag-1 correlation rho = 1 - 2 q (flip prob q) is
    R (1 - rho) / (1 + rho); the floor falls as 1 / sqrt(draws) and vanishes for a deterministic circuit."""
    from spicenet.cells.rng.whole import effective_reads, marginal_mae_floor

    rng = np.random.default_rng(0)
    b, r, d, q = 400, 12, 50, 0.25                      # rho = 0.5 -> n_eff = 12 / 3 = 4
    s = np.empty((b, r, d))
    s[:, 0] = np.where(rng.random((b, d)) < 0.5, -1.0, 1.0)
    for k in range(1, r):
        s[:, k] = np.where(rng.random((b, d)) < q, -s[:, k - 1], s[:, k - 1])
    n_eff, rho = effective_reads(s)
    assert rho == pytest.approx(0.5, abs=0.03) and n_eff == pytest.approx(4.0, rel=0.1)
    assert effective_reads(s[:, :1]) == (1.0, pytest.approx(float("nan"), nan_ok=True))
    p = np.full((32, 200), 0.5)
    f1, f4 = marginal_mae_floor(p, draws=1), marginal_mae_floor(p, draws=4)
    assert f1 == pytest.approx(0.5 * np.sqrt(2 / np.pi) / np.sqrt(32), rel=0.05)   # E|mean of 32 +-0.5| ~ 0.0705
    assert f4 == pytest.approx(f1 / 2, rel=0.1)
    assert marginal_mae_floor(np.zeros((32, 10)), draws=4) == 0.0


def test_expected_mae_for_unknown_chips_falls_as_one_over_sqrt_chips() -> None:
    """A circuit equal to the surrogate on C chips whose cells the surrogate does not know: chip c shifts pixel i
    by eps_c,i ~ N(0, sigma^2) on every one of its images. With exact reads (draws -> large) the expected
    statistic is E|mean_c eps_c,i| = sigma sqrt(2 / pi) / sqrt(C) (equal images per chip), independent of the
    images per chip; read noise adds to it. Negative control: held-out draws equal to the prediction give 0."""
    from spicenet.cells.rng.whole import expected_mae_unknown_chip, marginal_mae_floor

    rng = np.random.default_rng(1)
    sigma, d, draws = 0.04, 4000, 10 ** 7
    for chips, per in ((1, 32), (4, 8), (4, 32)):
        pred = rng.uniform(0.2, 0.8, size=(chips * per, d))
        held = {c: [pred[c * per:(c + 1) * per] + rng.normal(0, sigma, size=(1, d)) for _ in range(3)]
                for c in range(chips)}
        mean, sd = expected_mae_unknown_chip(held, pred, draws, reps=16)
        assert mean == pytest.approx(sigma * np.sqrt(2 / np.pi) / np.sqrt(chips), rel=0.05)
        assert sd < 0.1 * mean
    exact = {0: [pred[:32]], 1: [pred[32:64]], 2: [pred[64:96]], 3: [pred[96:]]}
    assert expected_mae_unknown_chip(exact, pred, draws, reps=4)[0] < 1e-3
    # with one read per image the chip-free part equals the reads-only floor
    mean1, _ = expected_mae_unknown_chip(exact, pred, 1, reps=32)
    assert mean1 == pytest.approx(marginal_mae_floor(pred, draws=1), rel=0.05)


def test_sky130_pdk_chip_is_the_same_in_every_deck_of_the_chip(tmp_path) -> None:
    """PDK mismatch (sky130's own agauss model, setseed + reset per chip): the trim sweeps locate each cell's v0
    reproducibly and differently per chip, and the step deck (noise files, couplings, buffers added) draws the
    same devices: with noise off and each cell biased 1 mV (~6 Vs) to a random side of its located v0, started on
    the other side, every cell ends on the side of its bias. Negative control: the v0 of another chip fails."""
    import tomllib

    from spicenet.cells.rng.calibrate import parse_config
    from spicenet.cells.rng.whole import chip_runs, locate_grid
    from spicenet.spice import pdk
    from spicenet.spice.engine import Deck
    from spicenet.spice.job import RunSpec
    from tests.conftest import ROOT

    if pdk.library_path("sky130") is None:
        pytest.skip("sky130 is not installed (spicenet pdk install sky130)")
    cfg = parse_config(tomllib.loads((ROOT / "calibration" / "rng.toml").read_text()), "sky130")
    sizing, process, n, dt = cfg.sizing, get_process("sky130"), 4, 2e-9
    chips = {0: [100 + k for k in range(n)], 1: [200 + k for k in range(n)]}
    with Engine(workers=2, timeout_s=300) as eng:
        trims = locate_grid(eng, sizing, process, chips, seed=3, dt=dt, mismatch="pdk")
        again = locate_grid(eng, sizing, process, {0: chips[0]}, seed=3, dt=dt, mismatch="pdk")
        np.testing.assert_array_equal(trims[0]["v0_dc"], again[0]["v0_dc"])
        assert np.abs(trims[0]["v0_dc"] - trims[1]["v0_dc"]).min() > 1e-4     # PDK offsets ~10 mV std
        side = np.where(np.random.default_rng(0).random(n) < 0.5, -1.0, 1.0)
        files = [cells.write_noise_file(tmp_path / f"z{k}.txt", seed=0, chip=0, cell=k, rms=[0.0, 0.0], dt=dt,
                                        t_stop=400e-9) for k in range(n)]
        ends = {}
        for name, v0 in (("own", trims[0]["v0_dc"]), ("other chip", trims[1]["v0_dc"])):
            m = machine.map_grid(n, np.zeros((0, 2), np.int64), np.zeros(0), np.zeros(n), 1.0, 1e-3, v0 + 1e-3 * side,
                                 sizing.vdd)
            deck = Deck(machine.grid_deck(m, sizing, process, files, init_spins=-side, mismatch="pdk"), process, "pdk")
            r = eng.run_all([eng.job(deck, [RunSpec("t", f"tran {dt} 300n 0 {dt}",
                                                    *chip_runs(process, sizing, chips[0], 3, "pdk"))])])["t"]
            ends[name] = np.sign([r[f"v(a{k})"][-1] - r[f"v(b{k})"][-1] for k in range(n)])
    np.testing.assert_array_equal(ends["own"], side)
    assert not np.array_equal(ends["other chip"], side)


@pytest.mark.slow
def test_whole_machine_step_of_4ns_keeps_the_cell_law(tmp_path) -> None:
    """The whole machine's optional 4 ns step (``machine_dt``; not the default: see ValidationConfig) (noise rms recomputed from the same shot-noise PSD) against 2 ns:
    the same 8 trimmed cells biased at v0 + k Vs give the same logistic slope (fitted logit(P) = a + b k; b is
    the design's 1 for a correct Vs) within 15 %, and the same mean correlation time within 20 % (60 us
    = ~1500 tau per cell: P's standard error ~0.02, the slope's ~5 %)."""
    from spicenet.cells.rng import export, measure
    from spicenet.cells.rng.whole import locate_grid
    from spicenet.spice.engine import Deck
    from spicenet.spice.job import RunSpec

    process, n, t_stop = get_process("generic"), 8, 60e-6
    ks = np.array([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 0.0])
    chips = {0: [7100 + k for k in range(n)]}
    fit = {}
    with Engine(workers=1, timeout_s=600) as eng:
        for dt in (2e-9, 4e-9):
            tr = locate_grid(eng, SIZING, process, chips, seed=0, dt=dt)
            files = [cells.write_noise_file(tmp_path / f"n{k}_{dt:g}.txt", seed=0, chip=chips[0][k], cell=0,
                                            rms=tr[0]["rms"][k], dt=dt, t_stop=t_stop + 10 * dt) for k in range(n)]
            deck = cells.ct_deck(list(tr[0]["v0_dc"] + ks * VS_GENERIC), SIZING, process, noise_files=files,
                                 save_all=False)
            r = eng.run_all([eng.job(Deck(export.with_sim_options(deck), process),
                                     [RunSpec("t", f"tran {dt} {t_stop} 0 {dt}",
                                              cells.device_commands(process, SIZING, chips[0], 0))])])["t"]
            grid = np.arange(1e-6, t_stop, 2e-9)
            on = [np.interp(grid, r["time"], r[f"v(a{k})"] - r[f"v(b{k})"]) > 0 for k in range(n)]
            p = np.clip([s.mean() for s in on], 1e-3, 1 - 1e-3)
            slope = np.polyfit(ks, np.log(p / (1 - p)), 1)[0]
            tau = np.mean([measure.tau_from_autocorrelation(measure.autocorrelation(s, 200), 2e-9) for s in on])
            fit[dt] = (slope, tau)
    (b2, tau2), (b4, tau4) = fit[2e-9], fit[4e-9]
    assert 0.7 < b2 < 1.3                                   # the cells follow the calibrated law at all
    assert b4 == pytest.approx(b2, rel=0.15) and tau4 == pytest.approx(tau2, rel=0.2), fit
