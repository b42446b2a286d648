"""Processes (device-model sets) a spicenet deck can be rendered for: ``generic`` and ``sky130``.

Templates are process-agnostic: they use only the wrapper subcircuits ``nfet``/``pfet``
(``X<name> d g s b nfet w=<um> l=<um>``) and ``diode`` (``X<name> a k diode area=<..>``). Each process's library
defines these wrappers; inside each the MOSFET is named ``m0`` so per-device mismatch is pushed with

    alter m.<xname>.m0 delvto=<dVt>      threshold shift [V], added to the model's vth0
    alter m.<xname>.m0 mulu0=<factor>    mobility multiplier = beta factor (BSIM4 instance parameter)

(``alter`` settings are lost on ``reset``; push them after it). Pelgrom's law gives the per-device spread:
sigma(dVt) = A_vt / sqrt(W*L), sigma(dbeta/beta) = A_beta / sqrt(W*L), W and L in um.

* ``generic``: a hand-written BSIM4 card shipped with spicenet (``netlists/models/generic.lib``), Vdd 1.2 V,
  Vth ~0.40 V, ~65 mV/dec. Mismatch: ``pelgrom`` only (A_vt = 4 mV*um, A_beta = 1 %*um; Pelgrom et al., IEEE JSSC
  24(5) 1989; Kinget, IEEE JSSC 40(6) 2005 -- typical of 130-65 nm bulk CMOS).
* ``sky130``: SkyWater nfet_01v8/pfet_01v8 (tt) reduced by :mod:`spicenet.spice.pdk` (``spicenet pdk install
  sky130``), Vdd 1.8 V, ~89 mV/dec at L = 0.15 um. Mismatch: ``pdk`` (the PDK's own model: the header includes the
  per-instance library variant and ``.param mc_mm_switch=1``; chips are drawn with ``setseed N`` + ``reset``) or
  ``pelgrom`` (alter-based on the fast nominal variant; coefficients measured from the PDK model, see
  ``_SKY130_PELGROM``). Both variants give Id-Vg curves identical to the full PDK (tt).
"""

from __future__ import annotations

import importlib.resources
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from spicenet.errors import ProcessError
from spicenet.spice import pdk

GMIN_OPTIONS = ".options gmin=1e-18"
"""Part of every process header (templates that ``@uses`` devices; a plain netlist only with ``--process``).
ngspice's default gmin (1e-12 S across every junction) floors subthreshold currents near 1e-12 A; 1e-18 removes
the floor. It changes results: a sky130 nfet (W/L = 1/0.15 um, Vgs = 0, Vds = 1.8 V) draws 0.25 pA with it and
2.05 pA with the default (measured), so a deck of your own run without ``--process`` gets nothing added and keeps
ngspice's default."""

_INSTANCE = re.compile(r"^x[a-z0-9_]*(\.x[a-z0-9_]*)*$")

# generic: A_vt 4 mV*um, A_beta 1 %*um for both polarities (see module docstring for sources).
_GENERIC_PELGROM = {"nfet": (4.0e-3, 0.01), "pfet": (4.0e-3, 0.01)}

# sky130: A_vt is the *effective* (gate-referred) subthreshold spread of the PDK's mismatch model (vth0, voff and
# toxe slopes together), measured with mc_mm_switch=1 on W = L = 1 um devices over 100 seeds (|Vds| = 0.1 V):
# sigma(ln Id) / (d ln Id / dVg): nfet at Vgs = 0.3 V 0.208 * 34.7 mV = 7.2 mV; pfet at Vgs = -0.5 V
# 0.182 * 35.0 mV = 6.4 mV (+-7 % sampling error). The model threshold alone (@m[vth]) spreads less (nfet 3.9 mV,
# pfet 5.7 mV): the voff slope (7 mV*um for the nfet) moves only the subthreshold current. A_beta is the PDK's toxe
# slope (beta ~ Cox ~ 1/toxe): 0.34 %*um (nfet), 0.44 %*um (pfet).
_SKY130_PELGROM = {"nfet": (7.2e-3, 0.0034), "pfet": (6.4e-3, 0.0044)}


@dataclass(frozen=True)
class Process:
    """A set of device models plus what every deck rendered for it needs (picklable: it travels to workers)."""

    name: str
    library: Path                                   # file to .include (absolute)
    devices: Mapping[str, str]                      # logical device -> wrapper subckt name
    init_commands: tuple[str, ...]                  # ngspice commands to send before loading a deck
    options: str                                    # .options line(s) every deck of this process needs
    vdd_nominal: float                              # V
    pelgrom: Mapping[str, tuple[float, float]]      # device -> (A_vt [V*um], A_beta [fraction*um])
    inner_instance: str = "m0"                      # MOSFET instance name inside the nfet/pfet wrappers
    mismatch_modes: tuple[str, ...] = ("pelgrom",)
    mismatch_library: Path | None = None            # included instead of ``library`` when mismatch == "pdk"

    def header(self, mismatch: str | None = None) -> str:
        """Deck lines to put after the title line: ``.include`` of the library, the options and, when
        ``mismatch == "pdk"``, the PDK-mismatch library variant and ``.param mc_mm_switch=1`` (then draw chips
        with ``setseed N`` (N >= 1) + ``reset``; every ``reset`` re-reads the deck)."""
        if mismatch is not None and mismatch not in self.mismatch_modes:
            raise ValueError(f"mismatch: {mismatch!r} is not a mismatch mode of process {self.name} "
                             f"(choose from {', '.join(self.mismatch_modes)} or None)")
        library = self.mismatch_library if mismatch == "pdk" and self.mismatch_library else self.library
        lines = [f'.include "{library}"', self.options]
        if mismatch == "pdk":
            lines.append(".param mc_mm_switch=1")
        return "\n".join(lines) + "\n"

    def alter_commands(self, instance: str, dvt: float, beta_factor: float) -> list[str]:
        """ngspice commands that give wrapper instance ``instance`` (e.g. ``"xn1"``, or ``"x1.xn1"`` inside a
        subcircuit) a threshold shift ``dvt`` [V] (added to vth0: raises an nMOS Vth, makes a pMOS Vth less
        negative) and a current-factor ``beta_factor`` (mobility multiplier; exact in the linear and subthreshold
        regions, slightly less in velocity-saturated strong inversion)."""
        name = instance.strip().lower()
        if not _INSTANCE.match(name):
            raise ValueError(f"instance: {instance!r} is not a wrapper subcircuit instance name like 'xn1'")
        if not math.isfinite(dvt) or abs(dvt) >= 1.0:
            raise ValueError(f"dvt: {dvt!r} V is not a finite threshold shift below 1 V in magnitude")
        if not math.isfinite(beta_factor) or not 0.0 < beta_factor < 10.0:
            raise ValueError(f"beta_factor: {beta_factor!r} is not a finite factor in (0, 10)")
        path = f"m.{name}.{self.inner_instance}"
        return [f"alter {path} delvto={dvt:.12g}", f"alter {path} mulu0={beta_factor:.12g}"]

    def pelgrom_sigma(self, device: str, w: float, l: float) -> tuple[float, float]:
        """Pelgrom spread of one device: (sigma dVt [V], sigma dbeta/beta) = (A_vt, A_beta) / sqrt(W*L), W, L um."""
        if device not in self.pelgrom:
            raise ValueError(f"device: {device!r} has no Pelgrom coefficients in process {self.name} "
                             f"(known: {', '.join(self.pelgrom)})")
        if not (math.isfinite(w) and w > 0):
            raise ValueError(f"w: {w!r} um is not a positive width")
        if not (math.isfinite(l) and l > 0):
            raise ValueError(f"l: {l!r} um is not a positive length")
        a_vt, a_beta = self.pelgrom[device]
        root = math.sqrt(w * l)
        return a_vt / root, a_beta / root


def generic_library() -> Path:
    """Absolute path of ``generic.lib``: in the installed package ``spicenet.netlists``, else ``<repo>/netlists``."""
    try:
        candidate = Path(str(importlib.resources.files("spicenet.netlists") / "models" / "generic.lib"))
        if candidate.is_file():
            return candidate.resolve()
    except (ModuleNotFoundError, TypeError, ValueError):
        pass
    fallback = Path(__file__).resolve().parents[2] / "netlists" / "models" / "generic.lib"
    if fallback.is_file():
        return fallback
    raise ProcessError("process generic: model library generic.lib not found in spicenet.netlists or netlists/")


def _generic() -> Process:
    return Process(
        name="generic",
        library=generic_library(),
        devices={"nfet": "nfet", "pfet": "pfet", "diode": "diode"},
        init_commands=(),
        options=GMIN_OPTIONS,
        vdd_nominal=1.2,
        pelgrom=dict(_GENERIC_PELGROM),
        inner_instance="m0",
        mismatch_modes=("pelgrom",),
    )


def _sky130() -> Process:
    lib, mm_lib = pdk.library_path("sky130"), pdk.mismatch_library_path("sky130")
    if lib is None or mm_lib is None:
        raise ProcessError("process sky130 is not installed: run `spicenet pdk install sky130`")
    return Process(
        name="sky130",
        library=lib.resolve(),
        devices={"nfet": "nfet", "pfet": "pfet", "diode": "diode"},
        # The full PDK needs `set ngbehavior=hsa`; the reduced library does not (its .param defaults sit on the
        # .subckt lines) and gives bit-identical Id-Vg curves either way, so no init command is imposed.
        init_commands=(),
        options=GMIN_OPTIONS,
        vdd_nominal=1.8,
        pelgrom=dict(_SKY130_PELGROM),
        inner_instance="m0",
        mismatch_modes=("pelgrom", "pdk"),
        mismatch_library=mm_lib.resolve(),
    )


_FACTORIES = {"generic": _generic, "sky130": _sky130}
KNOWN_PROCESSES = tuple(_FACTORIES)


def get_process(name: str) -> Process:
    """The process called ``name`` ("generic" always; "sky130" once installed). Raises ProcessError otherwise."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ProcessError(f"process: unknown process {name!r}; known: {', '.join(_FACTORIES)}")
    return factory()


def available_processes() -> dict[str, bool]:
    """Process name -> whether it can be used now (its model library is present)."""
    out = {}
    for name, factory in _FACTORIES.items():
        try:
            factory()
            out[name] = True
        except ProcessError:
            out[name] = False
    return out
