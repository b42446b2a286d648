"""``spicenet validate RUN`` for the resistive family: the trained conductances back in ngspice.

For each fresh Monte-Carlo chip (seed stream ``RES_VALIDATE_CHIP``, disjoint from the training and held-out
evaluation chips) the mismatch-aware model's realised conductances become real resistors (``R = 1/G``, quantised
level times the chip's factor) in one deck (:func:`network_deck`) whose diodes are the process's own diode (wrapper
``X.. a k diode area=..``, the chip's Is mismatch as an area factor; :func:`process_diode_deck`), not the fitted
law; ngspice computes the operating point of every test input, by default as the points of DC sweeps (``method =
"sweep"``: :func:`~spicenet.cells.resistive.netlist.sweep_deck`, ``sweep_inputs`` inputs per run, each point a full
Newton solve to the deck's tolerances; a failed sweep is solved again input by input) or one ``.op`` per input
through the engine's alter path (``method = "op"``). The surrogate solver computes the same chip. Reported: accuracies (argmax of the output node
voltages), the gap surrogate - SPICE in percentage points, the max node-voltage difference and the number of inputs
whose largest node difference exceeds 1 mV (``inputs_node_err_over_1mv``: a max alone hides whether one input or many
leave the model, e.g. hidden nodes driven past the process diode's reverse breakdown, which the fitted law lacks), and
the energy per inference.

Energy per inference: ``E = P t_settle`` with ``P = -sum_k V_k I_k`` over every source at the ``.op`` (ngspice
branch currents are negative for a delivering source; the sum is the power dissipated in the resistors and diodes),
averaged over inputs, and ``t_settle = settle_taus * max_i C_node / G_ii``: the slowest node's RC constant with an
assumed node capacitance ``C_node`` (calibration ``[energy] c_node_f``, wiring plus junction capacitance) and
``G_ii`` the total conductance of the resistors at node i (diode conductances left out: an upper bound on the
time constant). 5 tau settles a step to within e^-5 = 0.7 %.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from spicenet.cells.resistive.calibrate import METHODS, spice_node_voltages
from spicenet.cells.resistive.eqprop import accuracy
from spicenet.cells.resistive.network import ResistiveNetwork
from spicenet.cells.resistive.train import chip_seed, load_trained, make_chip, merged_train_config, test_data
from spicenet.cells.resistive import streams
from spicenet.cells.resistive.family import resistive_energy
from spicenet.errors import ConfigError, DataError
from spicenet.plotting import per_chip_points, subplots
from spicenet.progress import progress_iter
from spicenet.spice.engine import Engine
from spicenet.spice.job import MAX_TIMEOUT_S
from spicenet.train import RunDir
from spicenet.train.threads import restores_torch_threads

__all__ = ["ResistiveValidationConfig", "settle_time", "validate_resistive"]


@dataclass(frozen=True)
class ResistiveValidationConfig:
    """Settings of a resistive (EqProp or ff-EBM) validation (``spicenet validate RUN --set KEY=VALUE``; the demo
    replaces fields via ``settings``). The quick and full validations differ only in their chip count (3 / 10).

    n_test: test inputs simulated on every chip (one ``.op`` each), drawn with the validation seed from the test
    split after dropping any image that is also in the training set; fewer when the split is smaller (reported as
    ``n_test``). A large network's ``.op`` costs seconds (1568-100-100-10: ~0.1 s; 1568-1000-10 exceeds the
    engine's 120 s limit per run), so this is the knob that bounds the validation's wall time.
    source: where the test split comes from (``spicenet.data.SOURCES``: "auto" tries the idx files, the npz sets
    of ../shared/data, then the download cache, and falls back to the embedded 200-image sample).
    method: "sweep" (default) solves ``sweep_inputs`` inputs per ngspice run as the points of one DC sweep, "op" one
    ``.op`` per input (:func:`~spicenet.cells.resistive.calibrate.spice_node_voltages`). The two agree to the
    solver tolerance (tested); the sweep orders the sparse matrix once per run instead of once per input, which is
    what a large network's ``.op`` spends its time on (784-100-100-10: 25 s per ``.op``, 0.7 s per sweep point).
    sweep_inputs: inputs per DC-sweep run.
    timeout_s: ngspice's time limit per run [s] (a run past it is killed and its inputs reported as failed runs).
    Measured one worker: 784-100-100-10 ~26 s for a run of 25 inputs; 784-1000-10 (Kendall's layout with 1,000
    hidden nodes, 1.57 M resistors) 143 s for a run of 5 inputs: raise it, e.g. ``--set timeout_s=3600``.
    """

    n_test: int = 500
    source: str = "auto"
    method: str = "sweep"
    sweep_inputs: int = 25
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        from spicenet.data import SOURCES

        if isinstance(self.n_test, bool) or not isinstance(self.n_test, int) or self.n_test < 1:
            raise ConfigError(f"resistive validation: n_test must be an integer >= 1, got {self.n_test!r}")
        if self.method not in METHODS:
            raise ConfigError(f"resistive validation: method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if isinstance(self.sweep_inputs, bool) or not isinstance(self.sweep_inputs, int) or self.sweep_inputs < 1:
            raise ConfigError(f"resistive validation: sweep_inputs must be an integer >= 1, got {self.sweep_inputs!r}")
        if isinstance(self.timeout_s, bool) or not isinstance(self.timeout_s, (int, float)) or not (
                0 < self.timeout_s <= MAX_TIMEOUT_S):
            raise ConfigError(f"resistive validation: timeout_s must be a number of seconds in (0, {MAX_TIMEOUT_S:g}], "
                              f"got {self.timeout_s!r}")
        if self.source not in SOURCES:
            raise ConfigError(f"resistive validation: source must be one of {', '.join(SOURCES)}, "
                              f"got {self.source!r}")


def settle_time(net: ResistiveNetwork, chip: Any, c_node_f: float, taus: float) -> float:
    """``taus * max_i C_node / G_ii`` (s): G_ii the resistor conductance at free node i (S) on ``chip``."""
    if not (c_node_f > 0 and taus > 0):
        raise ValueError(f"c_node_f and taus must be > 0, got {c_node_f!r}, {taus!r}")
    with torch.no_grad():
        circ = net.circuit(chip)
        g_ii = torch.diagonal(circ.laplacian()) / circ.scale()  # unscaled KCL diagonal (amplifier rows weighted)
    g_min = float(g_ii.min())
    if g_min <= 0:
        raise ValueError("a free node has no resistor attached (G_ii = 0): its settle time is unbounded")
    return taus * c_node_f / g_min


def _train_images(cfg: dict[str, Any]) -> set[bytes]:
    from spicenet.data import load_dataset

    d = cfg["data"]
    ds = load_dataset(d["dataset"], source=d["source"], size=int(d["size"]), split_seed=0,
                      n_train=int(d["n_train"]) or None)
    return {np.ascontiguousarray(row, dtype=np.float64).tobytes() for row in ds.flat("train")}


@restores_torch_threads
def validate_resistive(run_dir: Path, *, chips: int | None, quick: bool, workers: int, seed: int,
                       config: ResistiveValidationConfig | None = None) -> dict[str, Any]:
    """Run the SPICE validation of a resistive run directory (module docstring) and write ``validate.json``.

    ``chips`` (default 3 quick / 10 full) fresh chips; ``config``: the test inputs and how ngspice solves them
    (:class:`ResistiveValidationConfig`; None: its defaults, 500 inputs of the npz test split via ``source="auto"``,
    else the embedded sample's 200, reported in ``n_test``).
    """
    config = ResistiveValidationConfig() if config is None else config
    t0 = time.perf_counter()
    run = RunDir.open(run_dir)
    meta = run.meta()
    if meta.get("family") != "resistive":
        raise ConfigError(f"{run_dir}: run.json family is {meta.get('family')!r}, not 'resistive'")
    ffebm = meta.get("trainer") == "ffebm"
    if ffebm:
        from spicenet.cells.resistive.ffebm_train import merged_ffebm_config

        cfg = merged_ffebm_config(run.config())
    else:
        cfg = merged_train_config(run.config())
    n_chips = int(chips) if chips else (3 if quick else 10)
    if n_chips < 1:
        raise ValueError(f"chips must be >= 1, got {chips!r}")
    n_want = config.n_test
    try:
        x, y, origin = test_data(cfg, source=config.source, n_test=None)
    except (DataError, FileNotFoundError, ValueError) as exc:
        if config.source != "auto":  # a source the user named: its failure is the answer
            raise DataError(f"resistive validation: no test data from source {config.source!r}: {exc}") from None
        x, y, origin = test_data(cfg, source="sample", n_test=None)
    seen = _train_images(cfg)
    fresh = np.array([np.ascontiguousarray(r, dtype=np.float64).tobytes() not in seen for r in x.numpy()])
    dropped = int((~fresh).sum())
    x, y = x[torch.as_tensor(fresh)], y[torch.as_tensor(fresh)]
    if x.shape[0] > n_want:
        idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(int(seed)))[:n_want]
        x, y = x[idx], y[idx]
    torch.set_num_threads(1)  # ngspice workers share the cores; small batched solves are fastest on one thread
    solve = {"method": config.method, "sweep_inputs": config.sweep_inputs, "timeout_s": float(config.timeout_s)}
    if ffebm:
        return _validate_ffebm(run, x, y, origin, dropped, n_chips=n_chips, workers=workers, seed=seed, t0=t0,
                               solve=solve)
    return _validate(run, cfg, x, y, origin, dropped, n_chips=n_chips, workers=workers, seed=seed, t0=t0,
                     solve=solve)


def _validate(run: RunDir, cfg: dict[str, Any], x: torch.Tensor, y: torch.Tensor, origin: str, dropped: int, *,
              n_chips: int, workers: int, seed: int, t0: float, solve: dict[str, Any]) -> dict[str, Any]:
    net, spec = load_trained(run.path, "injected")
    options = dict(spec["spice_options"])
    out = net.out_slice
    per_chip = []
    scatter = None
    with Engine(workers=max(1, int(workers)), timeout_s=solve["timeout_s"]) as engine:
        for c in progress_iter(range(n_chips), desc="validate chips"):
            t1 = time.perf_counter()
            chip = make_chip(net, spec, chip_seed(seed, streams.VALIDATE_CHIP, c))
            with torch.no_grad():
                v_sur = net.equilibrium(x, chip=chip).v.numpy()
            t_sur = time.perf_counter() - t1
            t2 = time.perf_counter()
            v_sp, power, errors = spice_node_voltages(net, chip, x, engine=engine, options=options, prefix=f"c{c}",
                                                      process=spec.get("process"), area=spec.get("diode_area", 1.0),
                                                      method=solve["method"], sweep_inputs=solve["sweep_inputs"])
            t_sp = time.perf_counter() - t2
            ok = np.isfinite(v_sp).all(axis=1)
            if not ok.any():
                raise DataError(f"validation chip {c}: every ngspice run failed, first: {errors[:1]}")
            lab = y[torch.as_tensor(ok)]
            acc_sur = accuracy(torch.as_tensor(v_sur[ok][:, out]), lab)
            acc_sp = accuracy(torch.as_tensor(v_sp[ok][:, out]), lab)
            agree = float(np.mean(v_sur[ok][:, out].argmax(1) == v_sp[ok][:, out].argmax(1)))
            t_settle = settle_time(net, chip, spec["c_node_f"], spec["settle_taus"])
            p_mean = float(np.mean(power[ok]))
            energy = resistive_energy(t_settle, p_static_w=p_mean)
            per_chip.append({"chip": c, "surrogate_accuracy": acc_sur, "spice_accuracy": acc_sp,
                             "gap_pp": 100.0 * (acc_sur - acc_sp), "prediction_agreement": agree,
                             "max_node_err_v": float(np.abs(v_sur[ok] - v_sp[ok]).max()),
                             "inputs_node_err_over_1mv": int((np.abs(v_sur[ok] - v_sp[ok]).max(axis=1) > 1e-3).sum()),
                             "failed_runs": len(errors), "power_w": p_mean, "power_max_w": float(np.max(power[ok])),
                             "settle_time_s": t_settle, "energy_per_inference_j": energy["energy_j"],
                             "wall_surrogate_s": round(t_sur, 3), "wall_spice_s": round(t_sp, 3)})
            if scatter is None:
                scatter = (v_sur[ok], v_sp[ok])
    accs_sur = [p["surrogate_accuracy"] for p in per_chip]
    accs_sp = [p["spice_accuracy"] for p in per_chip]
    result = {
        "surrogate": {"accuracy": float(np.mean(accs_sur)), "accuracy_worst": float(np.min(accs_sur)),
                      "per_chip": accs_sur},
        "spice": {"accuracy": float(np.mean(accs_sp)), "accuracy_worst": float(np.min(accs_sp)), "per_chip": accs_sp,
                  "options": options, "failed_runs": int(sum(p["failed_runs"] for p in per_chip)), **solve,
                  "diodes": f"process {spec.get('process')} diode, area {spec.get('diode_area', 1.0)}"},
        "gap": {"accuracy_pp": float(np.mean([p["gap_pp"] for p in per_chip])),
                "max_abs_accuracy_pp": float(np.max(np.abs([p["gap_pp"] for p in per_chip]))),
                "max_node_err_v": float(np.max([p["max_node_err_v"] for p in per_chip])),
                "inputs_node_err_over_1mv": int(sum(p["inputs_node_err_over_1mv"] for p in per_chip)),
                "prediction_agreement": float(np.mean([p["prediction_agreement"] for p in per_chip]))},
        "energy_per_inference_j": float(np.mean([p["energy_per_inference_j"] for p in per_chip])),
        "power_w": float(np.mean([p["power_w"] for p in per_chip])),
        "settle_time_s": float(np.mean([p["settle_time_s"] for p in per_chip])),
        "settle_assumption": f"t_settle = {spec['settle_taus']} * max_i C_node/G_ii, C_node = {spec['c_node_f']} F",
        "chips": n_chips, "n_test": int(x.shape[0]), "test_source": origin, "test_dropped_in_train": dropped,
        "layer_sizes": list(net.layer_sizes), "per_chip": per_chip,
        "wall_s": round(time.perf_counter() - t0, 2),
    }
    if scatter is not None:
        result["plots"] = [_plot(run, scatter, per_chip, net)]
    tmp = run.path / ".validate.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, run.path / "validate.json")
    return result


def _validate_ffebm(run: RunDir, x: torch.Tensor, y: torch.Tensor, origin: str, dropped: int, *, n_chips: int,
                    workers: int, seed: int, t0: float, solve: dict[str, Any]) -> dict[str, Any]:
    """ff-EBM: every block in ngspice on fresh chips (stream 3, one chip per block), block k+1's inputs computed by
    the torch feedforward layer from block k's *SPICE* output voltages; the surrogate chain is run alongside.
    Per block, the surrogate solved on the same (SPICE-derived) inputs gives the node-voltage error."""
    from spicenet.cells.resistive.ffebm_train import block_chips, load_ffebm

    model, specs = load_ffebm(run.path)
    per_chip = []
    with Engine(workers=max(1, int(workers)), timeout_s=solve["timeout_s"]) as engine:
        for c in progress_iter(range(n_chips), desc="validate chips"):
            t1 = time.perf_counter()
            chips = block_chips(model, specs, seed, 3, c)  # 3: streams.VALIDATE_CHIP (chip_seed's number)
            h_sur, h_sp = x, x
            ok = np.ones(x.shape[0], dtype=bool)
            over = np.zeros(x.shape[0], dtype=bool)  # inputs with a node difference > 1 mV in some block
            blocks, errors_all, energy, power = [], 0, 0.0, 0.0
            for k, (block, spec, chip) in enumerate(zip(cast(Sequence[ResistiveNetwork], model.blocks), specs, chips)):
                with torch.no_grad():
                    v_sur = block.equilibrium(h_sur, chip=chip).v
                    v_sur_sp_in = block.equilibrium(h_sp, chip=chip).v.numpy()
                v_sp, pw, errors = spice_node_voltages(block, chip, h_sp, engine=engine,
                                                       options=dict(spec["spice_options"]), prefix=f"c{c}b{k}",
                                                       process=spec.get("process"), area=spec.get("diode_area", 1.0),
                                                       method=solve["method"], sweep_inputs=solve["sweep_inputs"])
                errors_all += len(errors)
                ok &= np.isfinite(v_sp).all(axis=1)
                if not ok.any():
                    raise DataError(f"validation chip {c} block {k}: every ngspice run failed, first: {errors[:1]}")
                t_settle = settle_time(block, chip, spec["c_node_f"], spec["settle_taus"])
                p_mean = float(np.mean(pw[ok]))
                e_k = resistive_energy(t_settle, p_static_w=p_mean)["energy_j"]
                energy, power = energy + e_k, power + p_mean
                err_k = np.zeros(x.shape[0])
                err_k[ok] = np.abs(v_sur_sp_in[ok] - v_sp[ok]).max(axis=1)
                over |= err_k > 1e-3
                blocks.append({"block": k, "max_node_err_v": float(err_k[ok].max()),
                               "inputs_node_err_over_1mv": int((err_k[ok] > 1e-3).sum()),
                               "failed_runs": len(errors), "power_w": p_mean, "settle_time_s": t_settle,
                               "energy_per_inference_j": e_k})
                out = block.out_slice
                v_sp_out = torch.as_tensor(np.nan_to_num(v_sp[:, out]))
                with torch.no_grad():
                    if k < len(model.ff):
                        h_sur = model.ff[k](v_sur[:, out])
                        h_sp = model.ff[k](v_sp_out)
                    else:
                        o_sur, o_sp = v_sur[:, out], v_sp_out
            mask = torch.as_tensor(ok)
            acc_sur = accuracy(o_sur[mask], y[mask])
            acc_sp = accuracy(o_sp[mask], y[mask])
            per_chip.append({"chip": c, "surrogate_accuracy": acc_sur, "spice_accuracy": acc_sp,
                             "gap_pp": 100.0 * (acc_sur - acc_sp),
                             "prediction_agreement": float((o_sur[mask].argmax(1) == o_sp[mask].argmax(1))
                                                           .double().mean()),
                             "max_node_err_v": max(b["max_node_err_v"] for b in blocks), "blocks": blocks,
                             "inputs_node_err_over_1mv": int((over & ok).sum()),
                             "failed_runs": errors_all, "power_w": power, "energy_per_inference_j": energy,
                             "wall_s": round(time.perf_counter() - t1, 3)})
    accs_sur = [p["surrogate_accuracy"] for p in per_chip]
    accs_sp = [p["spice_accuracy"] for p in per_chip]
    result = {
        "surrogate": {"accuracy": float(np.mean(accs_sur)), "accuracy_worst": float(np.min(accs_sur)),
                      "per_chip": accs_sur},
        "spice": {"accuracy": float(np.mean(accs_sp)), "accuracy_worst": float(np.min(accs_sp)), "per_chip": accs_sp,
                  "options": dict(specs[0]["spice_options"]),
                  "failed_runs": int(sum(p["failed_runs"] for p in per_chip)), **solve,
                  "diodes": f"process {specs[0].get('process')} diode, area {specs[0].get('diode_area', 1.0)}"},
        "gap": {"accuracy_pp": float(np.mean([p["gap_pp"] for p in per_chip])),
                "max_abs_accuracy_pp": float(np.max(np.abs([p["gap_pp"] for p in per_chip]))),
                "max_node_err_v": float(np.max([p["max_node_err_v"] for p in per_chip])),
                "inputs_node_err_over_1mv": int(sum(p["inputs_node_err_over_1mv"] for p in per_chip)),
                "prediction_agreement": float(np.mean([p["prediction_agreement"] for p in per_chip]))},
        "energy_per_inference_j": float(np.mean([p["energy_per_inference_j"] for p in per_chip])),
        "power_w": float(np.mean([p["power_w"] for p in per_chip])),
        "blocks": len(model.blocks),
        "block_sizes": [list(b.layer_sizes) for b in cast(Sequence[ResistiveNetwork], model.blocks)],
        "chips": n_chips, "n_test": int(x.shape[0]), "test_source": origin, "test_dropped_in_train": dropped,
        "per_chip": per_chip, "wall_s": round(time.perf_counter() - t0, 2),
    }
    tmp = run.path / ".validate.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, run.path / "validate.json")
    return result


def _plot(run: RunDir, scatter: tuple[np.ndarray, np.ndarray], per_chip: list[dict[str, Any]],
          net: ResistiveNetwork) -> str:

    v_sur, v_sp = scatter
    fig, ax = subplots(1, 2, figsize=(10, 4))
    ax[0].plot(v_sp.flatten(), v_sur.flatten(), ".", ms=1, alpha=0.4, label="all free nodes")
    ax[0].plot(v_sp[:, net.out_slice].flatten(), v_sur[:, net.out_slice].flatten(), ".", ms=2, label="outputs")
    lim = [float(min(v_sp.min(), v_sur.min())), float(max(v_sp.max(), v_sur.max()))]
    ax[0].plot(lim, lim, "k-", lw=0.5)
    ax[0].set(xlabel="ngspice .op node voltage (V)", ylabel="surrogate node voltage (V)",
              title=f"chip 0: max |dV| {np.abs(v_sur - v_sp).max():.1e} V")
    ax[0].legend()
    c = [p["chip"] for p in per_chip]
    per_chip_points(ax[1], {"surrogate": (c, [p["surrogate_accuracy"] for p in per_chip]),
                            "ngspice": (c, [p["spice_accuracy"] for p in per_chip])},
                    xlabel="validation chip", ylabel="test accuracy")
    ax[1].set(title="accuracy per Monte-Carlo chip")
    fig.tight_layout()
    p = run.plots / "validate.png"
    fig.savefig(p, dpi=110)
    return str(p)
