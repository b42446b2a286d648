"""The oscillator family's surrogate file (``spicenet calibrate oscillator``), as :mod:`spicenet.surrogate_schema`
declares it: what :func:`spicenet.cells.oscillator.calibrate.calibrate_oscillator` writes and what training
(:func:`~spicenet.cells.oscillator.training.load_surrogate_info`), export
(:func:`~spicenet.cells.oscillator.export.hardware_map`) and validation read. Required: the per-chip mismatch
params, the energy per cycle, the phase-model constants and the circuit constants of the export; the calibration's
diagnostic tables are checked when present."""

from __future__ import annotations

from spicenet.surrogate_schema import AttrSpec, ExtraSpec, ParamSpec, SurrogateSchema

SCHEMA = SurrogateSchema(
    family="oscillator",
    version=1,
    doc="coupled ring oscillators: phase model (H harmonics, coupling per code, SHIL, load pull) + f0 / gain mismatch",
    params=(
        ParamSpec("f0_hz", "Hz", "chips", True, "free-running frequency of one ring per Monte-Carlo chip"),
        ParamSpec("k_gain", "", "chips", True, "coupling gain K_chip / K_nominal of a pair per chip"),
    ),
    energy=("energy_per_cycle_j",),
    attrs=(
        AttrSpec("phase_model_params", "json", "", "PhaseModelParams of the phase model (f0_hz, h_harmonics, "
                 "g_unit_s, k_per_siemens, n_bits, phase_diffusion, k_code_table, load tables)"),
        AttrSpec("ring", "json", "", "the calibrated RingSpec (n_stages, wn, wp, l, cload, vdd, latch, differential)"),
        AttrSpec("r_lsb_ohm", "float", "ohm", "resistor of one LSB of a coupling bank"),
        AttrSpec("shil_f_inj_hz", "float", "Hz", "SHIL reference frequency (= the nominal f0)"),
        AttrSpec("df_dvdd_hz_per_v", "float", "Hz/V", "supply pushing of the ring frequency"),
        AttrSpec("step_s", "float", "s", "transient step of the calibration (default 10 ps)", required=False),
        AttrSpec("f0_hz", "float", "Hz", "nominal free-running frequency", required=False),
        AttrSpec("g_unit_s", "float", "S", "conductance of one bank LSB (1 / r_lsb_ohm)", required=False),
        AttrSpec("n_bits", "int", "", "magnitude bits of a coupling bank", required=False),
        AttrSpec("ic_table_nodes", "str", "", "JSON list: ring nodes of the columns of extra/ic_table",
                 required=False),
    ),
    extras=(
        ExtraSpec("shil_strength", "float", (), "rad/s/A", "SHIL locking strength L per injected amp"),
        ExtraSpec("shil_phase_rad", "float", (), "rad", "locked phase offset of the SHIL at psi = 0"),
        ExtraSpec("h_sin", "float", ("harmonics",), "", "sine coefficients of the coupling function H",
                  required=False),
        ExtraSpec("h_cos", "float", ("harmonics",), "", "cosine coefficients of H", required=False),
        ExtraSpec("r_table_ohm", "float", ("pair_resistors",), "ohm", "coupling resistors of the pair fit",
                  required=False),
        ExtraSpec("k_table_rad_s", "float", ("pair_resistors",), "rad/s", "coupling strength K at each resistor",
                  required=False),
        ExtraSpec("k_per_siemens", "float", (), "rad/s/S", "coupling strength per unit conductance", required=False),
        ExtraSpec("k_code_rad_s", "float", ("codes",), "rad/s", "K of each bank code 0..2^n_bits - 1",
                  required=False),
        ExtraSpec("phase_diffusion", "float", (), "rad^2/s", "phase diffusion D of a free ring", required=False),
        ExtraSpec("phase_diffusion_per_psd", "float", (), "", "D per unit noise PSD of the noise fit",
                  required=False),
        ExtraSpec("f_vs_vdd/vdd", "float", ("vdd_points",), "V", "supplies of the pushing sweep", required=False),
        ExtraSpec("f_vs_vdd/f", "float", ("vdd_points",), "Hz", "free-running frequency at each supply",
                  required=False),
        ExtraSpec("pair/dw", "float", ("pair_points",), "rad/s", "detuning of each pair run", required=False),
        ExtraSpec("pair/r", "float", ("pair_points",), "ohm", "coupling resistor of each pair run", required=False),
        ExtraSpec("pair/sign", "int", ("pair_points",), "", "coupling sign of each pair run", required=False),
        ExtraSpec("pair/x_spice", "float", ("pair_points",), "", "locked phase quantity measured in SPICE",
                  required=False),
        ExtraSpec("pair/x_model", "float", ("pair_points",), "", "the same from the fitted K table",
                  required=False),
        ExtraSpec("pair/x_model_linear_k", "float", ("pair_points",), "", "the same with K = k_per_siemens G",
                  required=False),
        ExtraSpec("ic_table", "float", ("ic_phases", "ring_nodes"), "V",
                  "ring node voltages on the limit cycle at evenly spaced phases", required=False),
        ExtraSpec("load/g_s", "float", ("load_points",), "S", "rail-load grid of the frequency-pull model",
                  required=False),
        ExtraSpec("load/f_hz", "float", ("load_points", "load_points"), "Hz", "frequency on the load grid",
                  required=False),
        ExtraSpec("load/df_hz", "float", ("load_points", "load_points"), "Hz", "pull f - f0 on the load grid",
                  required=False),
        ExtraSpec("load/swing_v", "float", ("load_points", "load_points"), "V", "swing on the load grid",
                  required=False),
        ExtraSpec("load/gain_g_s", "float", ("gain_points",), "S", "total node-load grid of the gain model",
                  required=False),
        ExtraSpec("load/k_gain", "float", ("gain_points",), "", "injection gain K(G) / K(0) on that grid",
                  required=False),
    ),
)


def surrogate_schema() -> SurrogateSchema:
    """The oscillator surrogate schema (``Family.surrogate_schema``)."""
    return SCHEMA
