"""The resistive family's random streams (:mod:`spicenet.seeds`), with the words its sites used before (published
numbers unchanged). ``train.chip_seed`` maps the former stream numbers 1, 2, 3 to the chip streams."""

from __future__ import annotations

from spicenet.seeds import Layout, register

__all__ = ["TRAIN_CHIP", "EVAL_CHIP", "VALIDATE_CHIP", "LEVELS", "SOLVER_CHECK", "DIODE"]

TRAIN_CHIP = register("RES_TRAIN_CHIP", 1, index="step (ffebm: step * blocks + block)", shared=True, draws=(
    "resistive train / ffebm_train: the injected chip of a training step"))
EVAL_CHIP = register("RES_EVAL_CHIP", 2, index="chip (ffebm: chip * blocks + block)", draws=(
    "resistive train / ffebm_train: the held-out evaluation chips"))
VALIDATE_CHIP = register("RES_VALIDATE_CHIP", 3, index="chip (ffebm: chip * blocks + block)", shared=True, draws=(
    "resistive validate: the chips compared with ngspice"))
LEVELS = register("RES_LEVELS", 0x6B4E, layout=Layout.NUMPY, draws=(
    "resistive calibrate.conductance_levels: the unit-resistor factors per chip"))
SOLVER_CHECK = register("RES_SOLVER_CHECK", 0x50C4, layout=Layout.NUMPY, draws=(
    "resistive calibrate.solver_vs_spice: the random networks' shapes and inputs"))
DIODE = register("RES_DIODE", 0xD10D, layout=Layout.NUMPY, draws=(
    "resistive calibrate: the diode's Vd shift per Monte-Carlo chip"))
