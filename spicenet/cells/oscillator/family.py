"""The oscillator family (protocol: :mod:`spicenet.families`): its verbs ``calibrate``, ``train`` (AIS) and
``validate`` (back to SPICE), its energy formula, demo row, report layout and quick-demo settings, in the object
:data:`FAMILY` (entry point ``oscillator``). Heavy modules are imported when a verb runs, so the CLI starts fast."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from spicenet.families import Family, Override, ReportLayout, Trainer

if TYPE_CHECKING:
    from spicenet.baselines.reference import AnalogReference


def calibrate(config: dict[str, Any], *, process: str, quick: bool, output: Path, workers: int,
              seed: int) -> dict[str, Any]:
    """Simulate the pseudo-differential ring oscillator and coupled pairs in ngspice; fit f0, amplitude, the
    coupling function H (Fourier harmonics) and the R -> K map from the locked phase of detuned pairs, SHIL
    strength, phase diffusion, energy per cycle, the node-loading tables (frequency pull vs the mid-supply load on
    each rail, coupling gain vs total load) and the Monte-Carlo spread of f0 and coupling gain; write the
    surrogate file ``output`` and PNG plots beside it. Returns {"output", "fit", "plots"}
    (see :func:`spicenet.cells.oscillator.calibrate.calibrate_oscillator`)."""
    from spicenet.cells.oscillator.calibrate import calibrate_oscillator

    return calibrate_oscillator(config, process=process, quick=quick, output=output, workers=workers, seed=seed)


def train(config: dict[str, Any], *, surrogate: Path, quick: bool, run_dir: Path, device: str,
          seed: int) -> dict[str, Any]:
    """AIS as a WGAN-GP on the calibrated phase model, mismatch-aware (see
    :func:`spicenet.cells.oscillator.training.train`). Returns {"run_dir", "metrics"}."""
    from spicenet.cells.oscillator.training import train as train_ais

    return train_ais(config, surrogate=surrogate, quick=quick, run_dir=run_dir, device=device, seed=seed)


def validate(run_dir: Path, *, chips: int | None, quick: bool, workers: int, seed: int,
             settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Generate images with the exported network in ngspice and with the surrogate on the same latents and chips,
    and compare them (pixel MAE, read-out error, FID of both sides; see
    :func:`spicenet.cells.oscillator.validation.validate`). ``settings`` replaces fields of
    ``AISValidationConfig``."""
    from spicenet.cells.oscillator.validation import validate as validate_ais

    return validate_ais(run_dir, chips=chips, quick=quick, workers=workers, seed=seed, settings=settings)


def oscillator_energy(e_cycle_j: float, n_osc: int, cycles: float, n_couplings: int = 0,
                      e_coupling_cycle_j: float = 0.0) -> dict[str, Any]:
    """Oscillator-network energy per solve/sample: E = N * C * E_cycle + M * C * E_coupling_cycle.

    e_cycle_j: energy one oscillator dissipates per oscillation cycle (J); cycles: C cycles run (anneal length x
    frequency); n_couplings: M coupling elements; e_coupling_cycle_j: energy per coupling per cycle (J).
    """
    from spicenet.energy import breakdown, check_counts, check_nonneg

    check_nonneg(e_cycle_j=e_cycle_j, cycles=cycles, e_coupling_cycle_j=e_coupling_cycle_j)
    check_counts(n_osc=n_osc, n_couplings=n_couplings)
    terms = {"oscillators": n_osc * cycles * e_cycle_j}
    if n_couplings:
        terms["couplings"] = n_couplings * cycles * e_coupling_cycle_j
    return breakdown("oscillator", "E = N*C*E_cycle + M*C*E_coupling", terms, {
        "e_cycle_j": e_cycle_j, "n_osc": n_osc, "cycles": cycles, "n_couplings": n_couplings,
        "e_coupling_cycle_j": e_coupling_cycle_j})


def energy_from_surrogate(energy_attrs: dict[str, float], **structure: Any) -> dict[str, Any]:
    """:func:`oscillator_energy` from the surrogate's ``energy_per_cycle_j`` (+ ``energy_per_coupling_cycle_j``)
    and the structure ``n_osc``, ``cycles``, ``n_couplings``."""
    from spicenet.energy import need

    return oscillator_energy(need(energy_attrs, "energy_per_cycle_j", "oscillator"), structure["n_osc"],
                             structure["cycles"], structure.get("n_couplings", 0),
                             float(energy_attrs.get("energy_per_coupling_cycle_j", 0.0)))


def baseline_reference(config: dict[str, Any], config_name: str, seed: int) -> AnalogReference:
    """The AIS generator built from the training config ``config`` as ``spicenet baseline --compare ais`` sees it
    (:class:`spicenet.baselines.reference.AnalogReference`): grey images, ``train.n_eval_samples`` images per
    FID, the generator's trainable tensors as parameters (the digital critic is training-only, not counted)."""
    from spicenet.baselines.reference import AnalogReference
    from spicenet.cells.oscillator.ais import AISGenerator
    from spicenet.cells.oscillator.training import build_ais_config

    ais_cfg, data = build_ais_config(config, seed)
    gen = AISGenerator(ais_cfg)
    parts = {name: int(p.numel()) for name, p in gen.named_parameters()}
    detail = {**parts, "edges": int(gen.n_edges), "oscillators": int(ais_cfg.n_oscillators),
              "segments": ais_cfg.n_segments, "bits": ais_cfg.n_bits}
    n_eval = int(dict(config.get("train", {})).get("n_eval_samples", 500))  # the AIS trainer's default
    return AnalogReference("ais", config_name, str(data.get("dataset", "mnist")), ais_cfg.height,
                           str(data.get("source", "sample")), int(data.get("n_train", 0)) or None,
                           int(data.get("n_test", 0)) or None, n_eval, "grey", int(sum(parts.values())), detail)


def _calibration_schema() -> type:
    from spicenet.cells.oscillator.calibrate import OscCalibrationConfig

    return OscCalibrationConfig


def _ais_schema() -> type:
    from spicenet.cells.oscillator.training import AISTrainConfig

    return AISTrainConfig


def _validation_defaults() -> Any:
    from spicenet.cells.oscillator.validation import AISValidationConfig

    return AISValidationConfig.quick()


def _surrogate_schema() -> Any:
    from spicenet.cells.oscillator.schema import SCHEMA

    return SCHEMA


FAMILY = Family(
    name="oscillator",
    rank=20,
    surrogate_schema=_surrogate_schema,
    trainers=(Trainer("ais", length=("train", "iterations"), length_unit="iterations",
                      baseline_reference=baseline_reference, baseline_datasets=("mnist",)),),
    calibrate=calibrate, train=train, validate=validate,
    row={
        "fit": [("max_rel_err locked phase", "calibrate", "fit.max_rel_err")],
        "surrogate_metric": ("FID own-net, nominal chip (AIS)", "train", "metrics.{fid}"),
        "spice_metric": ("FID own-net of the SPICE-generated images", "validate", "spice.fid"),
        "gap": ("pixel MAE SPICE vs surrogate (same latents, chips)", "validate", "gap.pixel_mae"),
        "energy": ("J per image", "validate", "surrogate.energy_per_image_j", "spice.energy_per_image_j"),
        "extra": [("fid_chips_mean", "train", "metrics.fid_chips_mean"),
                  ("readout_rms_rad", "validate", "gap.readout_rms_rad"),
                  ("fid_rel", "validate", "gap.fid_rel"),
                  ("phase_diff_nmse", "validate", "gap.phase_diff_nmse"),
                  ("f0_hz", "calibrate", "fit.f0_hz")],
    },
    report=ReportLayout(
        validation_files=("validation.json",),
        chip_series=(
            ("metrics", "chips.values", "FID over held-out chips", False, "fid_spicenet_*", None),
            ("validation", "gap.per_chip.*.pixel_mae", "SPICE chips: pixel MAE vs surrogate (same latents)", False,
             None, None),
        ),
        chip_energy=(("gap.per_chip.*.energy_per_image_j", "J per image"),),
    ),
    energy=energy_from_surrogate,
    # what `spicenet demo --quick` changes (calibration/oscillator_quick.toml, training/ais_quick.toml)
    quick_overrides=(
    Override("oscillator", "calibration", "free.vdd_offsets", [-0.01, 0.0, 0.01],
             "f(Vdd) from 3 supplies (quadratic through 3 points)"),
    Override("oscillator", "calibration", "pair.resistances", [25e3, 50e3],
             "R -> K table and its power law from 2 resistances (the slow high-R pairs are left out)"),
    Override("oscillator", "calibration", "pair.negative_resistances", [],
             "no negative-coupling pairs (H is fitted from positive coupling only)"),
    Override("oscillator", "calibration", "pair.n_harmonics", 2, "H with 2 harmonics"),
    Override("oscillator", "calibration", "pair.fractions", [-0.5, 0.3, 0.6, 0.8],
             "4 detunings per resistance (>= n_harmonics + 1 locked points)"),
    Override("oscillator", "calibration", "shil.dvdd", [-0.006, -0.002, 0.002, 0.006],
             "SHIL lock (3 parameters) fitted on 4 supply offsets"),
    Override("oscillator", "calibration", "noise.seeds", 1, "phase diffusion from one noise run"),
    Override("oscillator", "calibration", "noise.t_end", 100e-9,
             "100 ns noise transient (lags up to 16 ns): the diffusion slope from fewer increments"),
    Override("oscillator", "calibration", "montecarlo.chips", 3, "f0 / coupling-gain spread from 3 chips"),
    Override("oscillator", "calibration", "load.g_s", [0.0, 200e-6, 400e-6, 800e-6],
             "node-load frequency-pull table on a 4 x 4 grid (10 runs with the rail symmetry instead of 36); "
             "bilinear interpolation between coarser points"),
    Override("oscillator", "calibration", "load.gain_g_s", [0.0, 400e-6, 800e-6],
             "coupling gain vs node load at 3 loads"),
    Override("oscillator", "training", "model.periods", 15.0,
             "horizon of 15 periods of f0: the SPICE transient of the exported network (the slowest step of the "
             "demo) and every training step are shorter in proportion"),
    Override("oscillator", "training", "model.n_steps", 20,
             "20 Heun steps over the shorter horizon: about the same step (0.75 periods)"),
    Override("oscillator", "training", "train.iterations", 40, "40 WGAN-GP iterations"),
    Override("oscillator", "training", "train.n_eval_samples", 100, "100 generated images per FID"),
    Override("oscillator", "training", "mismatch.eval_chips", 2, "FID on 2 held-out chips"),
    Override("oscillator", "validation", "chips", 0,
             "nominal chip only: the Monte-Carlo chip (a rings-only detuning transient plus a second 81-ring network "
             "transient, ~30 CPU s) is left out; rng and resistive still validate on a Monte-Carlo chip"),
    Override("oscillator", "calibration", "network.networks", 0,
             "no network refinement (random 81-ring networks in SPICE + the multiple-shooting fit, minutes)"),
    Override("oscillator", "validation", "images", 2,
             "2 latents (2 images per side) instead of 12 x 3 chips: the FID of 2 images is only a smoke test"),
    ),
    validation_defaults=_validation_defaults,
    schemas={"calibration": _calibration_schema, "ais": _ais_schema},
    exports={"PhaseOscillatorNetwork": "spicenet.cells.oscillator.phase:PhaseOscillatorNetwork"},
)
