"""The resistive family's surrogate file (``spicenet calibrate resistive``), as :mod:`spicenet.surrogate_schema`
declares it: what :func:`spicenet.cells.resistive.calibrate.calibrate_resistive` writes and what the trainers
(:func:`spicenet.cells.resistive.train.net_spec`, behind ``train eqprop`` / ``train ffebm`` and
:meth:`~spicenet.cells.resistive.network.ResistiveNetwork.from_surrogate`) read. Required: the nominal diode law,
its spreads, the rails, the conductance LSB and levels; the per-device diode fits (the spreads above come from
them), the energy and solver settings and the calibration's raw curves are checked when present."""

from __future__ import annotations

from spicenet.surrogate_schema import AttrSpec, ExtraSpec, ParamSpec, SurrogateSchema

SCHEMA = SurrogateSchema(
    family="resistive",
    version=1,
    doc="diode-resistor network: fitted diode law (Is, n, Rs) + spreads, programmable conductance levels",
    params=(
        ParamSpec("diode_is", "A", "chips", None, "diode saturation current (fit per Monte-Carlo device)",
                  required=False),
        ParamSpec("diode_n", "", "chips", None, "diode ideality factor (fit per device)", required=False),
        ParamSpec("diode_rs", "ohm", "chips", None, "diode series resistance (fit per device)", required=False),
    ),
    attrs=(
        AttrSpec("input_gain", "float", "V", "ideal input-driver gain (V per unit input)"),
        AttrSpec("v_bias", "float", "V", "bias-rail voltage (rails +v_bias and -v_bias)"),
        AttrSpec("vb", "float", "V", "diode rail voltage"),
        AttrSpec("gmin", "float", "S", "conductance from every node to ground"),
        AttrSpec("diode_is_nominal", "float", "A", "nominal diode saturation current"),
        AttrSpec("diode_n_nominal", "float", "", "nominal diode ideality factor"),
        AttrSpec("diode_rs_nominal", "float", "ohm", "nominal diode series resistance"),
        AttrSpec("diode_area", "float", "", "diode area factor of the calibration"),
        AttrSpec("g_lsb", "float", "S", "conductance of one level step"),
        AttrSpec("g_sigma", "float", "", "relative conductance spread of one unit"),
        AttrSpec("sigma_ln_is", "float", "", "spread of ln Is over devices"),
        AttrSpec("sigma_n_rel", "float", "", "relative spread of the ideality factor"),
        AttrSpec("g_mode", "str", "", "how a level is built: bank (default) or device", required=False),
        AttrSpec("bits", "int", "", "bits of a programmable conductance", required=False),
        AttrSpec("c_node_f", "float", "F", "node capacitance of the energy model (default 10 fF)", required=False),
        AttrSpec("settle_taus", "float", "", "time constants to settle (default 5)", required=False),
        AttrSpec("spice_reltol", "float", "", "ngspice reltol of the validation (default 1e-6)", required=False),
        AttrSpec("spice_vntol", "float", "V", "ngspice vntol (default 1e-9)", required=False),
        AttrSpec("spice_abstol", "float", "A", "ngspice abstol (default 1e-15)", required=False),
        AttrSpec("g_sigma_measured", "float", "", "unit spread measured on the bank Monte Carlo", required=False),
        AttrSpec("sigma_vd_v", "float", "V", "diode threshold spread of the calibration", required=False),
        AttrSpec("r2", "float", "", "worst R^2 of the diode fits", required=False),
        AttrSpec("temperature_k", "float", "K", "temperature of the fits", required=False),
        AttrSpec("solver_max_err_v", "float", "V", "worst solver - SPICE node-voltage error", required=False),
    ),
    extras=(
        ExtraSpec("levels", "float", ("levels",), "S", "the programmable conductance levels"),
        ExtraSpec("levels_mc", "float", ("bank_chips", "levels"), "S", "levels of each Monte-Carlo bank",
                  required=False),
        ExtraSpec("level_rel_sd", "float", ("*",), "", "relative spread of each non-zero level", required=False),
        ExtraSpec("iv_v", "float", ("iv_points",), "V", "diode I-V sweep voltages", required=False),
        ExtraSpec("iv_i", "float", ("diode_chips", "iv_points"), "A", "diode current of each device",
                  required=False),
        ExtraSpec("vd_shift", "float", ("diode_chips",), "V", "threshold shift of each device", required=False),
        ExtraSpec("solver_err_v", "float", ("*",), "V", "solver - SPICE error per checked input", required=False),
    ),
)


def surrogate_schema() -> SurrogateSchema:
    """The resistive surrogate schema (``Family.surrogate_schema``)."""
    return SCHEMA
