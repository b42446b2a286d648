"""The rng family (protocol: :mod:`spicenet.families`): its verbs ``calibrate``, ``train`` (DTM) and ``validate``,
its energy formula, demo row, report layout and quick-demo settings, in the object :data:`FAMILY` (registered as
the ``spicenet.families`` entry point ``rng``). Heavy modules are imported when a verb runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from spicenet.families import Family, Override, ReportLayout, Trainer

if TYPE_CHECKING:
    from spicenet.baselines.reference import AnalogReference


def calibrate(config: dict[str, Any], *, process: str, quick: bool, output: Path, workers: int,
              seed: int) -> dict[str, Any]:
    """Simulate Monte-Carlo chips of the continuous-time p-bit, fit P(1) = sigmoid((V - V0)/Vs), measure tau and
    energy per bit, write the surrogate file ``output`` and PNG plots beside it.
    Returns {"output": str, "fit": {...}, "plots": [paths]} (see :func:`calibrate_rng`)."""
    from spicenet.cells.rng.calibrate import calibrate_rng

    return calibrate_rng(config, process=process, quick=quick, output=output, workers=workers, seed=seed)


def train(config: dict[str, Any], *, surrogate: Path, quick: bool, run_dir: Path, device: str,
          seed: int) -> dict[str, Any]:
    """DTM on binarized images with chips drawn from the calibrated (V0, Vs) distribution (see
    :func:`spicenet.cells.rng.training.train`). Returns {"run_dir", "metrics"}."""
    from spicenet.cells.rng.training import train as train_dtm

    return train_dtm(config, surrogate=surrogate, quick=quick, run_dir=run_dir, device=device, seed=seed)


def validate(run_dir: Path, *, chips: int | None, quick: bool, workers: int, seed: int,
             settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export a small Boltzmann machine of the trained model to a p-bit netlist and compare SPICE samples with exact
    enumeration and the surrogate (see :func:`spicenet.cells.rng.validation.validate`). ``settings`` replaces
    fields of :class:`spicenet.cells.rng.validation.ValidationConfig` (its ``quick()`` defaults when ``quick``)."""
    from spicenet.cells.rng.validation import ValidationConfig, validate as validate_dtm
    from spicenet.families import with_settings

    config = with_settings(ValidationConfig.quick() if quick else ValidationConfig(), settings, "rng validation")
    return validate_dtm(run_dir, chips=chips, quick=quick, workers=workers, seed=seed, config=config)


def dtm_energy(e_bit_j: float, n_cells: int, sweeps_per_step: int, steps: int,
               e_sweep_overhead_j: float = 0.0) -> dict[str, Any]:
    """DTM sample energy: E_sample = T * K * N * E_bit + T * K * E_sweep_overhead (J per generated sample).

    e_bit_j: energy of one p-bit update (one random bit), J; n_cells: N p-bits updated per sweep; sweeps_per_step: K
    Gibbs sweeps per denoising step; steps: T denoising steps; e_sweep_overhead_j: per-sweep fixed cost (clocking).
    """
    from spicenet.energy import breakdown, check_counts, check_nonneg

    check_nonneg(e_bit_j=e_bit_j, e_sweep_overhead_j=e_sweep_overhead_j)
    check_counts(n_cells=n_cells, sweeps_per_step=sweeps_per_step, steps=steps)
    sweeps = steps * sweeps_per_step
    terms = {"pbit_updates": sweeps * n_cells * e_bit_j}
    if e_sweep_overhead_j:
        terms["sweep_overhead"] = sweeps * e_sweep_overhead_j
    return breakdown("rng", "E_sample = T*K*N*E_bit + T*K*E_sweep", terms, {
        "e_bit_j": e_bit_j, "n_cells": n_cells, "sweeps_per_step": sweeps_per_step, "steps": steps,
        "e_sweep_overhead_j": e_sweep_overhead_j, "bit_updates": sweeps * n_cells})


def energy_from_surrogate(energy_attrs: dict[str, float], **structure: Any) -> dict[str, Any]:
    """:func:`dtm_energy` from the surrogate's ``energy_per_bit_j`` (+ ``energy_per_sweep_j``) and the structure
    ``n_cells``, ``sweeps_per_step``, ``steps``."""
    from spicenet.energy import need

    return dtm_energy(need(energy_attrs, "energy_per_bit_j", "rng"), structure["n_cells"],
                      structure["sweeps_per_step"], structure["steps"],
                      float(energy_attrs.get("energy_per_sweep_j", 0.0)))


def baseline_reference(config: dict[str, Any], config_name: str, seed: int) -> AnalogReference:
    """The DTM built from the training config ``config`` as ``spicenet baseline --compare dtm`` sees it
    (:class:`spicenet.baselines.reference.AnalogReference`): binarized images, ``eval.eval_samples`` images per
    FID, ``T (E + N + D)`` parameters (per denoising step the couplings, a bias per p-bit, gamma per pixel)."""
    from spicenet.baselines.reference import AnalogReference
    from spicenet.cells.rng.dtm import DTM
    from spicenet.cells.rng.training import parse_config

    cfg = parse_config(config)
    model = DTM(cfg.image_size ** 2, cfg.dtm_config(seed))
    parts = {"couplings": sum(p.weights.numel() for p in model.steps),
             "biases": sum(p.biases.numel() for p in model.steps),
             "data_couplings": sum(p.gamma.numel() for p in model.steps)}
    detail = {**parts, "edges": int(model.graph.n_edges), "cells": int(model.graph.n_nodes),
              "steps": cfg.steps, "weight_bits": cfg.weight_bits}
    return AnalogReference("dtm", config_name, cfg.dataset, cfg.image_size, cfg.source, cfg.n_train or None,
                           cfg.n_test or None, cfg.eval_samples, "binary", int(sum(parts.values())), detail)


def _calibration_schema() -> type:
    from spicenet.cells.rng.calibrate import RngCalibrationConfig

    return RngCalibrationConfig


def _dtm_schema() -> type:
    from spicenet.cells.rng.training import DTMTrainConfig

    return DTMTrainConfig


def _validation_defaults() -> Any:
    from spicenet.cells.rng.validation import ValidationConfig

    return ValidationConfig.quick()


def _surrogate_schema() -> Any:
    from spicenet.cells.rng.schema import SCHEMA

    return SCHEMA


FAMILY = Family(
    name="rng",
    rank=10,
    surrogate_schema=_surrogate_schema,
    trainers=(Trainer("dtm", length=("train", "iters"), length_unit="iterations",
                      baseline_reference=baseline_reference, baseline_datasets=("fashion",)),),
    calibrate=calibrate, train=train, validate=validate,
    row={
        "fit": [("r2 (worst chip)", "calibrate", "fit.r2"), ("max_abs_err P(1)", "calibrate", "fit.max_abs_err")],
        "surrogate_metric": ("FID own-net, nominal chip (DTM)", "train", "metrics.{fid}"),
        "spice_metric": ("TV(SPICE, exact) mean over chips", "validate", "spice.tv_vs_exact_mean"),
        "gap": ("TV(SPICE, surrogate) same chip", "validate", "gap.tv_spice_vs_surrogate_same_chip"),
        "energy": ("J per sample of the exported patch", "validate", "surrogate.energy_per_sample_j",
                   "spice.energy_per_sample_j"),
        "extra": [("energy_trained_dtm_j", "train", "metrics.energy_per_sample_j"),
                  ("tv_surrogate_same_chips", "validate", "surrogate.tv_same_chips_mean"),
                  ("tv_floor_n_eff", "validate", "gap.tv_floor_n_eff"),
                  ("whole_grid_cells_in_spice", "validate", "gap.cells_simulated"),
                  ("fid_chips_mean", "train", "metrics.chips.fid_mean")],
    },
    report=ReportLayout(
        validation_files=("validation/validation.json",),
        chip_series=(
            ("metrics", "chips.fid_values", "FID over held-out chips", False, "fid_spicenet_*", None),
            ("metrics", "chips.values", "FID over held-out chips", False, "fid_spicenet_*", None),
            ("metrics", "chips_untrimmed.fid_values", "FID over chips, V0 not trimmed", False, "fid_spicenet_*",
             None),
            ("validation", "spice.chips.[].tv_vs_exact", "SPICE chips: TV distance to exact", False, None, None),
        ),
        chip_energy=(("spice.chips.[].energy_per_sample_j", "J per sample"),),
    ),
    energy=energy_from_surrogate,
    # what `spicenet demo --quick` changes (calibration/rng_quick.toml, training/dtm_quick.toml, rng/validation.py)
    quick_overrides=(
    Override("rng", "calibration", "chips", 3,
             "3 Monte-Carlo chips: the v0/vs/tau spread is still estimated (3 is the least for their correlation)"),
    Override("rng", "calibration", "points", 5,
             "5 bias points over V0 +- 3 Vs still pin the 2-parameter logistic (r2, max_abs_err over 5 points)"),
    Override("rng", "calibration", "std_target", 0.03,
             "each bias level held for ~280 effective bits (binomial std 0.03 at P = 1/2): ~4.6x shorter transients"),
    Override("rng", "calibration", "pilot", 10e-6, "tau pilot of 10 us (~200 tau) per chip"),
    Override("rng", "calibration", "extra_chips", 1, "one replacement chip"),
    Override("rng", "training", "train.iters", 100,
             "100 CD-K steps: the nominal-chip FID is near its plateau after ~100 steps (metrics.csv of a full run)"),
    Override("rng", "training", "eval.eval_chips", 3, "FID on 3 held-out mismatch chips"),
    Override("rng", "training", "eval.eval_samples", 200,
             "200 generated images per FID (the held-out set has 200): the FID estimate is biased up a little"),
    Override("rng", "validation", "chips", 1, "one Monte-Carlo chip in SPICE"),
    Override("rng", "validation", "samples", 10000,
             "10000 reads of the exported 4-cell machine: a shorter coupled transient, a higher TV floor"),
    Override("rng", "validation", "calib_samples", 5000,
             "5000 reads for the closed-loop correction transient: a coarser correction of the mapping"),
    Override("rng", "validation", "trim_level_s", 30e-6,
             "30 us per trim level: the per-cell (v0, vs) trim is less precise"),
    Override("rng", "validation", "machine_images", 4,
             "the whole grid in SPICE for 4 images (all T steps): FID and marginal MAE of 4 images are not meaningful"),
    Override("rng", "validation", "machine_reads", 1, "one read of the last step (the image) only"),
    Override("rng", "validation", "machine_chips", 1, "the whole grid on one Monte-Carlo chip"),
    ),
    validation_defaults=_validation_defaults,
    schemas={"calibration": _calibration_schema, "dtm": _dtm_schema},
    exports={"PBit": "spicenet.cells.rng.pbit:PBit"},
)
