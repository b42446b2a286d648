"""The rng family's surrogate file (``spicenet calibrate rng``), as :mod:`spicenet.surrogate_schema` declares it:
what :func:`spicenet.cells.rng.calibrate.build_surrogate` writes and what training
(:class:`~spicenet.cells.rng.training.ChipModel`), :meth:`spicenet.cells.rng.pbit.PBit.from_surrogate` and the
validations (patch machine and whole DTM) read. Required: the per-chip sigmoid ``v0`` / ``vs``, the energy per bit
and the sample period; ``tau_s``, the cell sizing, the mismatch mode and the per-chip calibration curves are checked
when present."""

from __future__ import annotations

from spicenet.surrogate_schema import AttrSpec, ExtraSpec, ParamSpec, SurrogateSchema

SCHEMA = SurrogateSchema(
    family="rng",
    version=1,
    doc="continuous-time p-bit: P(1) = sigmoid((v - v0) / vs) per chip, autocorrelation time, energy per bit",
    params=(
        ParamSpec("v0", "V", "chips", False, "bias at P(1) = 1/2 (differential bias vb)"),
        ParamSpec("vs", "V", "chips", True, "logistic slope: P = sigmoid((v - v0) / vs)"),
        ParamSpec("tau_s", "s", "chips", True, "bit-stream autocorrelation time at P ~ 1/2 (exp fit); without it "
                  "the p-bit's bits are independent and the whole-DTM validation assumes 40 ns", required=False),
    ),
    energy=("energy_per_bit_j",),
    attrs=(
        AttrSpec("dt_s", "float", "s", "sample period of the calibration's bit streams"),
        AttrSpec("vdd", "float", "V", "supply of the cell (used when sizing is absent)", required=False),
        AttrSpec("sizing", "json", "", "the cell's CellSizing (vdd, wn, wp, l, cload, dvtn, dvtp); default: the "
                 "default sizing at vdd", required=False),
        AttrSpec("mismatch", "str", "", "mismatch mode of the calibration: pelgrom (default) or pdk",
                 required=False),
        AttrSpec("power_w", "float", "W", "mean cell power", required=False),
        AttrSpec("r2", "float", "", "worst R^2 of the sigmoid fits", required=False),
        AttrSpec("max_abs_err", "float", "", "worst |P - sigmoid| of the fits", required=False),
        AttrSpec("bits_per_point", "int", "", "bits read per bias point", required=False),
        AttrSpec("cell", "str", "", "the cell, in words", required=False),
        AttrSpec("bit_energy_definition", "str", "", "how energy_per_bit_j is defined", required=False),
    ),
    extras=(
        ExtraSpec("chips", "int", ("chips",), "", "Monte-Carlo chip ids", required=False),
        ExtraSpec("levels_v", "float", ("chips", "levels"), "V", "bias levels of each chip's P(1) curve",
                  required=False),
        ExtraSpec("p_one", "float", ("chips", "levels"), "", "measured P(1) at each level", required=False),
        ExtraSpec("p_sigma", "float", ("chips", "levels"), "", "standard error of p_one", required=False),
        ExtraSpec("v0_dc", "float", ("chips",), "V", "DC (noise-free) transition bias", required=False),
        ExtraSpec("tau_dwell_s", "float", ("chips",), "s", "mean dwell time", required=False),
        ExtraSpec("tau_int_s", "float", ("chips",), "s", "integrated autocorrelation time", required=False),
        ExtraSpec("acf_at_half", "float", ("chips", "lags"), "", "bit autocorrelation at P ~ 1/2", required=False),
        ExtraSpec("power_w", "float", ("chips",), "W", "cell power", required=False),
        ExtraSpec("tau_pilot_s", "float", ("chips",), "s", "pilot estimate of tau", required=False),
        ExtraSpec("t_level_s", "float", ("chips",), "s", "time simulated per level", required=False),
        ExtraSpec("energy_per_bit_j", "float", ("chips",), "J", "energy per effective bit", required=False),
        ExtraSpec("r2", "float", ("chips",), "", "R^2 of the sigmoid fit", required=False),
        ExtraSpec("noise_rms_a", "float", ("chips", 2), "A", "rms shot-noise current of the two sources",
                  required=False),
    ),
)


def surrogate_schema() -> SurrogateSchema:
    """The rng surrogate schema (``Family.surrogate_schema``)."""
    return SCHEMA
