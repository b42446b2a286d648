"""The resistive family (protocol: :mod:`spicenet.families`): its verbs ``calibrate`` (diode law, conductance levels,
mismatch, solver accuracy from SPICE), ``train`` (centered EqProp with and without mismatch injection; FF-EBM) and
``validate`` (trained conductances back to ngspice .op on fresh Monte-Carlo chips), its energy formula, demo row,
report layout and quick-demo settings, in the object :data:`FAMILY` (entry point ``resistive``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from spicenet.families import Family, Override, ReportLayout, Trainer


def calibrate(config: dict[str, Any], *, process: str, quick: bool, output: Path, workers: int,
              seed: int) -> dict[str, Any]:
    """Fit the process diode (Is, n, Rs), the conductance levels and their spread, check the solver against ngspice;
    write the surrogate file ``output`` and PNGs beside it (see :mod:`spicenet.cells.resistive.calibrate`)."""
    from spicenet.cells.resistive.calibrate import calibrate_resistive

    return calibrate_resistive(config, process=process, quick=quick, output=output, workers=workers, seed=seed)


def train(config: dict[str, Any], *, surrogate: Path, quick: bool, run_dir: Path, device: str,
          seed: int) -> dict[str, Any]:
    """Centered EqProp on the calibrated network, mismatch-aware and without injection, both evaluated on the same
    held-out chips (see :mod:`spicenet.cells.resistive.train`); a config with an ``[ffebm]`` section (the
    ``training/ffebm*.toml`` of trainer ``ffebm``) trains feedforward-tied resistive blocks instead
    (:mod:`spicenet.cells.resistive.ffebm_train`)."""
    from spicenet.cells.resistive.train import train_resistive

    if "ffebm" in config:
        from spicenet.cells.resistive.ffebm_train import train_ffebm

        return train_ffebm(config, surrogate=surrogate, quick=quick, run_dir=run_dir, device=device, seed=seed)

    return train_resistive(config, surrogate=surrogate, quick=quick, run_dir=run_dir, device=device, seed=seed)


def validate(run_dir: Path, *, chips: int | None, quick: bool, workers: int, seed: int,
             settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export the trained conductances to netlists, run ngspice .op per test input on fresh chips, compare with the
    surrogate; energy per inference from source powers (see :mod:`spicenet.cells.resistive.validate`). ``settings``
    replaces fields of :class:`spicenet.cells.resistive.validate.ResistiveValidationConfig` (``n_test``,
    ``source``, ``method``, ``sweep_inputs``, ``timeout_s``)."""
    from spicenet.cells.resistive.validate import ResistiveValidationConfig, validate_resistive
    from spicenet.families import with_settings

    config = with_settings(ResistiveValidationConfig(), settings, "resistive validation")
    return validate_resistive(run_dir, chips=chips, quick=quick, workers=workers, seed=seed, config=config)


def _validation_defaults() -> Any:
    from spicenet.cells.resistive.validate import ResistiveValidationConfig

    return ResistiveValidationConfig()


def resistive_energy(t_settle_s: float, *, p_static_w: float | None = None, v: Sequence[float] | None = None,
                     i: Sequence[float] | None = None, n_solves: int = 1) -> dict[str, Any]:
    """Resistive-network energy per inference: E = n_solves * E_solve with E_solve = P_static * t_settle, or
    E_solve = t_settle * sum_k V_k I_k over the sources (V in volts, I in amperes, power delivered by each source).

    Give exactly one of ``p_static_w`` or (``v``, ``i``). EqProp training uses n_solves = 2 (free + nudged).
    """
    import numpy as np

    from spicenet.energy import breakdown, check_counts, check_nonneg

    check_nonneg(t_settle_s=t_settle_s, p_static_w=p_static_w)
    check_counts(n_solves=n_solves)
    if (p_static_w is None) == (v is None or i is None):
        raise ValueError("p_static_w / v, i: give exactly one of p_static_w or both v and i")
    if p_static_w is None:
        va, ia = np.asarray(v, dtype=np.float64), np.asarray(i, dtype=np.float64)
        if va.shape != ia.shape:
            raise ValueError(f"v, i: shapes differ: {va.shape} vs {ia.shape}")
        p = float(np.sum(va * ia))
        if p < 0:
            raise ValueError(f"v, i: net delivered power sum(V*I) = {p} W is negative; check the sign convention")
    else:
        p = float(p_static_w)
    e_solve = p * t_settle_s
    return breakdown("resistive", "E = n_solves * P * t_settle, P = P_static or sum V_k I_k",
                     {"solves": n_solves * e_solve},
                     {"t_settle_s": t_settle_s, "power_w": p, "e_solve_j": e_solve, "n_solves": n_solves})


def energy_from_surrogate(energy_attrs: dict[str, float], **structure: Any) -> dict[str, Any]:
    """E = n_solves * E_solve from the surrogate's ``energy_per_solve_j``, or :func:`resistive_energy` from
    ``energy_power_static_w`` and ``t_settle_s`` (structure, else the attr ``energy_t_settle_s``)."""
    from spicenet.energy import breakdown, need

    n = structure.get("n_solves", 1)
    if "energy_per_solve_j" in energy_attrs:
        e = need(energy_attrs, "energy_per_solve_j", "resistive")
        return breakdown("resistive", "E = n_solves * E_solve", {"solves": n * e}, {"e_solve_j": e, "n_solves": n})
    return resistive_energy(structure.get("t_settle_s", energy_attrs.get("energy_t_settle_s", 0.0)),
                            p_static_w=need(energy_attrs, "energy_power_static_w", "resistive"), n_solves=n)


def _calibration_schema() -> type:
    from spicenet.cells.resistive.calibrate import ResistiveCalibrationConfig

    return ResistiveCalibrationConfig


def _eqprop_schema() -> type:
    from spicenet.cells.resistive.train import EqPropTrainConfig

    return EqPropTrainConfig


def _ffebm_schema() -> type:
    from spicenet.cells.resistive.ffebm_train import FFEBMTrainConfig

    return FFEBMTrainConfig


def _surrogate_schema() -> Any:
    from spicenet.cells.resistive.schema import SCHEMA

    return SCHEMA


FAMILY = Family(
    name="resistive",
    rank=30,
    surrogate_schema=_surrogate_schema,
    trainers=(Trainer("eqprop", length=("train", "epochs")), Trainer("ffebm", length=("train", "epochs"))),
    calibrate=calibrate, train=train, validate=validate,
    schemas={"calibration": _calibration_schema, "eqprop": _eqprop_schema, "ffebm": _ffebm_schema},
    exports={"ResistiveNetwork": "spicenet.cells.resistive.network:ResistiveNetwork"},
    row={
        "fit": [("diode r2 (worst device)", "calibrate", "fit.r2"),
                ("diode max_rel_err", "calibrate", "fit.diode_max_rel_err"),
                ("solver max err V", "calibrate", "fit.solver_max_err_v")],
        "surrogate_metric": ("test accuracy, nominal chip (EqProp)", "train", "metrics.test_accuracy"),
        "spice_metric": ("ngspice accuracy, MC chips", "validate", "spice.accuracy"),
        "gap": ("accuracy gap surrogate - SPICE (pp)", "validate", "gap.accuracy_pp"),
        "energy": ("J per inference", "validate", None, "energy_per_inference_j"),
        "extra": [("prediction_agreement", "validate", "gap.prediction_agreement"),
                  ("surrogate_accuracy_same_chips", "validate", "surrogate.accuracy"),
                  ("chip_worst_accuracy", "train", "metrics.chip_worst")],
    },
    report=ReportLayout(
        validation_files=("validate.json",),
        chip_series=(
            ("metrics", "chip_accuracies", "accuracy over held-out chips (mismatch-aware)", True, "test_accuracy",
             None),
            ("metrics", "chip_accuracies_no_injection", "accuracy over held-out chips (no injection)", True,
             "test_accuracy_no_injection", None),
            ("validation", "per_chip.[].spice_accuracy", "SPICE chips: test accuracy", True, "surrogate.accuracy",
             None),
        ),
        chip_energy=(("per_chip.[].energy_per_inference_j", "J per inference"),),
        # validate.json keeps the SPICE totals at its top level
        energy_parts=(("surrogate", "validation surrogate: "), ("spice", "validation spice: "),
                      ("", "validation spice: ")),
    ),
    energy=energy_from_surrogate,
    # what `spicenet demo --quick` changes (training/eqprop_quick.toml; its calibration takes seconds as shipped)
    quick_overrides=(
    Override("resistive", "training", "train.epochs", 8,
             "8 EqProp epochs: test accuracy ~0.69 instead of ~0.72 after 15 (8x8 MNIST sample, metrics.csv)"),
    Override("resistive", "training", "mismatch.eval_chips", 3, "accuracy on 3 held-out chips"),
    Override("resistive", "validation", "chips", 1, "one Monte-Carlo chip in ngspice"),
    ),
    validation_defaults=_validation_defaults,
)
