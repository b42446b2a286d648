"""The RNG family's random streams (:mod:`spicenet.seeds`), with the words its sites used before (published
numbers unchanged). Training's per-step and evaluation chips are the core's ``MISMATCH_TRAIN_CHIP`` and
``MISMATCH_EVAL_CHIP``; the cells of a validation's chips are Monte-Carlo chips (``PATCH_CELLS``,
``MACHINE_CELLS``)."""

from __future__ import annotations

from spicenet.seeds import ChipBlock, Layout, register

__all__ = ["CELL_NOISE", "BATCH", "CHIP_SAMPLES", "SAMPLE_CPU", "SAMPLE_CHAINS", "V0_TRIM", "FID_LOG", "NOMINAL",
           "PATCH_SURROGATE", "PATCH_FRESH_CHIP", "PATCH_FRESH_SAMPLES", "PATCH_FRESH_MANY", "PATCH_IDEAL",
           "MACHINE_X_T", "MACHINE_X_ALT", "MACHINE_STEP_SPINS", "MACHINE_CHIP", "MACHINE_CHAIN", "MACHINE_PAIRED",
           "MACHINE_ALT_CHAIN", "MACHINE_DRAW", "MACHINE_HELD_DRAW", "MACHINE_HELD_CHAIN", "PATCH_CELLS",
           "MACHINE_CELLS"]

X = Layout.XOR31  # the former spicenet.train.mismatch._seed_int, kept for every integer seed of the family

# a Monte-Carlo block: record 0 of cell 0 is chip c's Pelgrom sequence (numpy pads the entropy with zeros): its first
# rows, inside the settle time every measurement discards, repeat the cell's device draws
CELL_NOISE = register("RNG_CELL_NOISE", None, index="chip, cell, record", arity=3, layout=Layout.NUMPY, draws=(
    "rng cells.noise_samples: the noise currents of cell k of Monte-Carlo chip c, record r (0 calibration "
    "transient, 1 calibration pilot, 2 validation trim, 3 patch network, 4 patch closed-loop pass, "
    "100 + b (T + 1) + t whole machine image b step t)"))
# training
BATCH = register("RNG_BATCH", 3, index="iteration", layout=X, shared=True, draws="rng training: minibatch indices")
CHIP_SAMPLES = register("RNG_CHIP_SAMPLES", 4, index="chip seed", layout=X, shared=True, draws=(
    "rng training.evaluate_fid_over_chips (and the worst chip's grid): the sample seed of one evaluation chip"))
SAMPLE_CPU = register("RNG_SAMPLE_CPU", 5, parent="sample seed", layout=X, draws=(
    "rng training.sample_with_seed: the DTM's CPU generator"))
SAMPLE_CHAINS = register("RNG_SAMPLE_CHAINS", 6, parent="sample seed", layout=X, draws=(
    "rng training.sample_with_seed: the Gibbs chains' generator"))
V0_TRIM = register("RNG_V0_TRIM", 7, parent="chip seed", layout=X, shared=True, draws=(
    "rng training.ChipModel.cells: the residual v0 trim error per cell"))
FID_LOG = register("RNG_FID_LOG", 8, index="iteration", layout=X, draws=(
    "rng training: the sample seed of a logged nominal FID"))
NOMINAL = register("RNG_NOMINAL", 9, layout=X, draws="rng training: the sample seed of the nominal evaluation")
# patch validation
PATCH_SURROGATE = register("RNG_PATCH_SURROGATE", 11, index="chip", layout=X, draws=(
    "rng validation: surrogate Gibbs counts with a SPICE chip's measured gains"))
PATCH_FRESH_CHIP = register("RNG_PATCH_FRESH_CHIP", 12, index="chip", layout=X, draws=(
    "rng validation: a fresh chip-model chip"))
PATCH_FRESH_SAMPLES = register("RNG_PATCH_FRESH_SAMPLES", 13, index="chip", layout=X, draws=(
    "rng validation: Gibbs counts on a fresh chip (as many samples as SPICE)"))
PATCH_FRESH_MANY = register("RNG_PATCH_FRESH_MANY", 14, index="chip", layout=X, draws=(
    "rng validation: Gibbs counts on a fresh chip (many samples)"))
PATCH_IDEAL = register("RNG_PATCH_IDEAL", 15, layout=X, draws="rng validation: Gibbs counts of the ideal sampler")
# whole machine
MACHINE_X_T = register("RNG_MACHINE_X_T", 3, index="chip", layout=Layout.NUMPY, shared=True, draws=(
    "rng whole._machine_plan: the SPICE chain's x_T spins"))
MACHINE_X_ALT = register("RNG_MACHINE_X_ALT", 4, index="chip", layout=Layout.NUMPY, shared=True, draws=(
    "rng whole._gap_metrics: the other x_T spins of the unpaired floor"))
MACHINE_STEP_SPINS = register("RNG_MACHINE_STEP_SPINS", 7, index="chip, image, step", layout=Layout.NUMPY,
                              shared=True, draws="rng whole.run_chain: the initial spins of one step's grid deck")
MACHINE_CHIP = register("RNG_MACHINE_CHIP", 21, index="chip", layout=X, draws=(
    "rng whole: the chip-model draw of SPICE chip c"))
MACHINE_CHAIN = register("RNG_MACHINE_CHAIN", 22, index="chip", layout=X, draws=(
    "rng whole: the surrogate chain on chip c"))
MACHINE_PAIRED = register("RNG_MACHINE_PAIRED", 23, index="chip, draw", layout=X, draws=(
    "rng whole: teacher-forced marginals per chip-model draw"))
MACHINE_ALT_CHAIN = register("RNG_MACHINE_ALT_CHAIN", 24, index="chip", layout=X, draws=(
    "rng whole: the surrogate chain of the unpaired floor"))
MACHINE_DRAW = register("RNG_MACHINE_DRAW", 25, index="chip, draw", layout=X, draws=(
    "rng whole: chip-model draws 1.. averaged per chip"))
MACHINE_HELD_DRAW = register("RNG_MACHINE_HELD_DRAW", 26, index="chip, draw", layout=X, draws=(
    "rng whole: held-out chip-model draws"))
MACHINE_HELD_CHAIN = register("RNG_MACHINE_HELD_CHAIN", 27, index="chip, draw", layout=X, draws=(
    "rng whole: the held-out draws' marginal chains"))

PATCH_CELLS = ChipBlock(1000, 97, 32, "rng validation: the patch's cells (n_cells <= 12)")
MACHINE_CELLS = ChipBlock(50000, 997, 1000, "rng whole: the whole machine's cells (one per grid node)")
