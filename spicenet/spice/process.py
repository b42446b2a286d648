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
* a **process file** (your own PDK): ``get_process("path/to/process.toml")``, or ``--process path/to/process.toml``.
  The built-in processes and a file go through the same constructor, :func:`process_from_dict`, which validates
  every key (one-line ``ProcessError`` naming the key and the file)::

      library = "models/mine.lib"      # required: the model library, relative to the TOML's folder
      corner = "tt"                    # optional: include it as `.lib "<library>" tt` (else `.include`)
      vdd = 1.8                        # required: nominal supply [V]
      options = ".options gmin=1e-18"  # optional (this default: see GMIN_OPTIONS); "" adds none
      init_commands = []               # optional `set`/`unset`/`option` commands sent before a deck is loaded
      inner_instance = "m0"            # optional: the MOSFET instance inside the nfet/pfet wrappers (mismatch)
      [devices]                        # wrapper subcircuits of the library; at least one
      nfet = "nfet"                    # X.. d g s b <nfet> w=<um> l=<um>
      pfet = "pfet"
      diode = "diode"                  # X.. a k <diode> area=<multiple of the model area>
      [mismatch]                       # optional; modes: "pelgrom" with coefficients, "pdk" with a library
      pelgrom = { nfet = { a_vt = 4e-3, a_beta = 0.01 } }   # A_vt [V*um], A_beta [fraction*um]
      pdk_library = "models/mine_mc.lib"                   # variant with the PDK's own statistical model
      pdk_options = ".param mc_mm_switch=1"                # header lines of the "pdk" mode

  Templates instantiate ``nfet``/``pfet``/``diode``: a wrapper of another name gets a shim subcircuit of the
  logical name around it (inner MOSFET then ``xw.<inner_instance>``), so nfet and pfet are either both renamed or
  neither. Pelgrom mismatch is pushed with ``alter ... delvto``/``mulu0``: instance parameters of BSIM3/BSIM4
  cards (a level-1 card has neither; use it without mismatch or with a ``pdk_library``).
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, cast

from spicenet.errors import ProcessError, read_toml
from spicenet.spice import pdk

GMIN_OPTIONS = ".options gmin=1e-18"

WIDTH_RANGE_UM = (0.42, 1000.0)
"""Transistor width W [um] that every template and every family's cell generator accepts (sky130's smallest
nfet_01v8 / pfet_01v8 width is 0.42 um); one range for all, checked against the templates by the tests."""
LENGTH_RANGE_UM = (0.15, 100.0)
"""Channel length L [um] that every template and cell generator accepts (sky130's minimum is 0.15 um)."""


def check_geometry(name: str, value: float, kind: str) -> None:
    """ValueError naming ``name`` unless ``value`` [um] lies in :data:`WIDTH_RANGE_UM` (``kind`` "w") or
    :data:`LENGTH_RANGE_UM` (``kind`` "l")."""
    lo, hi = WIDTH_RANGE_UM if kind == "w" else LENGTH_RANGE_UM
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{name} must be in [{lo:g}, {hi:g}] um, got {value!r}")
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
    inner_instance: str = "m0"                      # MOSFET instance path inside the nfet/pfet deck wrappers
    mismatch_modes: tuple[str, ...] = ("pelgrom",)
    mismatch_library: Path | None = None            # included instead of ``library`` when mismatch == "pdk"
    corner: str | None = None                       # `.lib "<library>" <corner>` instead of `.include`
    pdk_options: str = ""                           # header lines added in "pdk" mismatch mode
    shims: str = ""                                 # nfet/pfet/diode subcircuits around differently named wrappers

    def header(self, mismatch: str | None = None) -> str:
        """Deck lines to put after the title line: the library (``.include``, or ``.lib "<library>" <corner>``),
        the wrapper shims, the options and, when ``mismatch == "pdk"``, the PDK-mismatch library variant instead
        and the ``pdk_options`` (sky130: ``.param mc_mm_switch=1``; then draw chips with ``setseed N`` (N >= 1) +
        ``reset``; every ``reset`` re-reads the deck)."""
        if mismatch is not None and mismatch not in self.mismatch_modes:
            raise ValueError(f"mismatch: {mismatch!r} is not a mismatch mode of process {self.name} "
                             f"(choose from {', '.join(self.mismatch_modes) or 'none'} or None)")
        library = self.mismatch_library if mismatch == "pdk" and self.mismatch_library else self.library
        lines = [f'.lib "{library}" {self.corner}' if self.corner else f'.include "{library}"']
        lines += [text for text in (self.shims, self.options) if text]
        if mismatch == "pdk" and self.pdk_options:
            lines.append(self.pdk_options)
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


def _pelgrom_table(coefficients: Mapping[str, tuple[float, float]]) -> dict[str, dict[str, float]]:
    return {device: {"a_vt": a_vt, "a_beta": a_beta} for device, (a_vt, a_beta) in coefficients.items()}


_WRAPPERS = {"nfet": "nfet", "pfet": "pfet", "diode": "diode"}


def _generic() -> Process:
    return process_from_dict({"library": str(generic_library()), "vdd": 1.2, "devices": dict(_WRAPPERS),
                              "mismatch": {"pelgrom": _pelgrom_table(_GENERIC_PELGROM)}}, name="generic")


def _sky130() -> Process:
    lib, mm_lib = pdk.library_path("sky130"), pdk.mismatch_library_path("sky130")
    if lib is None or mm_lib is None:
        raise ProcessError("process sky130 is not installed: run `spicenet pdk install sky130`")
    # The full PDK needs `set ngbehavior=hsa`; the reduced library does not (its .param defaults sit on the
    # .subckt lines) and gives bit-identical Id-Vg curves either way, so no init command is imposed.
    return process_from_dict({"library": str(lib.resolve()), "vdd": 1.8, "devices": dict(_WRAPPERS),
                              "mismatch": {"pelgrom": _pelgrom_table(_SKY130_PELGROM),
                                           "pdk_library": str(mm_lib.resolve()),
                                           "pdk_options": ".param mc_mm_switch=1"}}, name="sky130")


_FACTORIES = {"generic": _generic, "sky130": _sky130}
KNOWN_PROCESSES = tuple(_FACTORIES)


def is_process_file(name: str) -> bool:
    """True when ``name`` names a process file (ends in ``.toml`` or holds a path separator), not a built-in."""
    return name.lower().endswith(".toml") or "/" in name or "\\" in name


def get_process(name: str) -> Process:
    """The process called ``name``: "generic" (always), "sky130" (once installed) or the path of a process TOML
    file (see the module docstring; relative to the current folder). Raises ProcessError otherwise."""
    if isinstance(name, str) and is_process_file(name):
        return load_process_file(name)
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ProcessError(f"process: unknown process {name!r}; known: {', '.join(_FACTORIES)}, or the path of a "
                           f"process .toml file")
    return factory()


# ------------------------------------------------------------------------------------------- process files --

_PROCESS_KEYS = {"library", "corner", "vdd", "options", "init_commands", "inner_instance", "devices", "mismatch"}
_MISMATCH_KEYS = {"pelgrom", "pdk_library", "pdk_options"}
_NAME = re.compile(r"^[a-z_][a-z0-9_$.-]*$", re.I)
_PATH = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
_SHIM = "xw"                                    # instance name of the wrapper inside a shim subcircuit
_SHIM_TEXT = {"nfet": ".subckt nfet d g s b w=1 l=1\n{x} d g s b {sub} w={{w}} l={{l}}\n.ends nfet",
              "pfet": ".subckt pfet d g s b w=1 l=1\n{x} d g s b {sub} w={{w}} l={{l}}\n.ends pfet",
              "diode": ".subckt diode a k area=1\n{x} a k {sub} area={{area}}\n.ends diode"}
_INCLUDE = re.compile(r"^\s*\.(?:include|inc|lib)\s+(\"[^\"]+\"|'[^']+'|\S+)(\s+\S+)?\s*$", re.I)


def load_process_file(path: str | Path) -> Process:
    """The process described by the TOML file ``path`` (module docstring), validated; its ``name`` is the file's
    absolute path (what a store or surrogate records, and what ``get_process`` reads back). Cached by path and
    modification time."""
    path = Path(path).expanduser()
    try:
        resolved = path.resolve(strict=True)
        stat = resolved.stat()
    except OSError:
        raise ProcessError(f"process file {path}: no such file") from None
    if not resolved.is_file():
        raise ProcessError(f"process file {path}: is a folder, not a TOML file")
    return _load_process_file(str(resolved), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _load_process_file(path: str, mtime_ns: int, size: int) -> Process:
    del mtime_ns, size  # cache key only
    data = read_toml(Path(path), f"process file {path}", ProcessError)
    return process_from_dict(data, name=path, base=Path(path).parent, source=f"process file {path}")


def process_from_dict(data: Mapping[str, Any], name: str, base: Path | None = None,
                      source: str | None = None) -> Process:
    """Validate a process description (the keys of a process TOML file, module docstring) and build its
    ``Process``. Relative paths are read against ``base``; every error is a ProcessError naming ``source`` and
    the key. The built-in processes are made by this function too."""
    where = source or f"process {name}"
    if not isinstance(data, Mapping):
        raise ProcessError(f"{where}: expected a table of keys")
    keys = _KeyReader(where, base)
    library, corner, vdd = _process_supply(keys, data)
    options, commands, inner = _process_commands(keys, data)
    devices, renamed, mos = _process_devices(keys, data)
    pelgrom, pdk_library, pdk_options = _process_mismatch(keys, data, mos)
    for lib, key in ((library, "library"), (pdk_library, "mismatch.pdk_library")):
        if lib is not None:
            _check_library(lib, corner, devices, keys.fail, key)
    shims = "\n".join(_SHIM_TEXT[kind].format(x=_SHIM, sub=sub) for kind, sub in renamed.items())
    return Process(name=name, library=library, devices={k: k for k in devices},
                   init_commands=tuple(commands), options=options, vdd_nominal=vdd, pelgrom=pelgrom,
                   inner_instance=f"{_SHIM}.{inner}" if any(k in renamed for k in mos) else inner,
                   mismatch_modes=(("pelgrom",) if pelgrom else ()) + (("pdk",) if pdk_library else ()),
                   mismatch_library=pdk_library, corner=corner, pdk_options=pdk_options, shims=shims)


class _KeyReader:
    """Typed readers of the keys of one process description: every error is a ProcessError
    ``"<where>: <key>: <what>"``; relative library paths are read against ``base`` (else the current folder)."""

    def __init__(self, where: str, base: Path | None) -> None:
        self.where = where
        self.base = base

    def fail(self, key: str, what: str) -> ProcessError:
        """The ProcessError for ``key`` (to raise)."""
        return ProcessError(f"{self.where}: {key}: {what}")

    def text(self, table: Mapping[str, Any], key: str, default: str | None = None, prefix: str = "") -> str | None:
        """``table[key]`` (``default`` when absent), which must be a string or None."""
        value = table.get(key, default)
        if value is not None and not isinstance(value, str):
            raise self.fail(prefix + key, f"must be a string, got {value!r} ({type(value).__name__})")
        return value

    def file(self, table: Mapping[str, Any], key: str, prefix: str = "") -> Path | None:
        """The resolved path of the existing file ``table[key]`` names (None when absent)."""
        value = self.text(table, key, prefix=prefix)
        if value is None:
            return None
        candidate = Path(value).expanduser()
        if not candidate.is_absolute():
            candidate = (self.base or Path.cwd()) / candidate
        if not candidate.is_file():
            raise self.fail(prefix + key, f"model library {value!r} not found (looked at {candidate})")
        return candidate.resolve()

    def lines_of(self, value: str | None, key: str, allowed: tuple[str, ...]) -> str:
        """The non-blank lines of ``value``, stripped, each of which must start with one of ``allowed``."""
        out = []
        for line in (value or "").splitlines():
            if line.strip() and not line.strip().lower().startswith(allowed):
                raise self.fail(key, f"every line must start with {' or '.join(allowed)}, got {line.strip()!r}")
            if line.strip():
                out.append(line.strip())
        return "\n".join(out)


def _process_supply(keys: _KeyReader, data: Mapping[str, Any]) -> tuple[Path, str | None, float]:
    """(model library path, corner section or None, nominal supply Vdd [V]) of a description whose keys are all
    known (``_PROCESS_KEYS``)."""
    unknown = sorted(set(data) - _PROCESS_KEYS)
    if unknown:
        raise keys.fail(unknown[0], f"unknown key (known: {', '.join(sorted(_PROCESS_KEYS))})")
    if "library" not in data:
        raise keys.fail("library", "missing (the model library file to include)")
    library = keys.file(data, "library")
    assert library is not None
    corner = keys.text(data, "corner")
    if corner is not None and not _NAME.match(corner):
        raise keys.fail("corner", f"{corner!r} is not a library section name")
    vdd = data.get("vdd")
    if isinstance(vdd, bool) or not isinstance(vdd, (int, float)) or not (math.isfinite(vdd) and 0 < vdd <= 100):
        raise keys.fail("vdd", f"must be the nominal supply in V, a number in (0, 100], got {vdd!r}")
    return library, corner, float(vdd)


def _process_commands(keys: _KeyReader, data: Mapping[str, Any]) -> tuple[str, list[str], str]:
    """(the ``.option``/``.param``/``.temp`` header lines, the ``set``/``unset``/``option`` init commands, the
    MOSFET instance inside the wrappers, lower-case)."""
    options = keys.lines_of(keys.text(data, "options", GMIN_OPTIONS), "options", (".option", ".param", ".temp"))
    commands = data.get("init_commands", [])
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        raise keys.fail("init_commands", f"must be a list of strings, got {commands!r}")
    for command in commands:
        if "\n" in command or ";" in command or command.split()[:1] not in (["set"], ["unset"], ["option"]):
            raise keys.fail("init_commands", f"only single set/unset/option commands are allowed, got {command!r}")
    inner = cast(str, keys.text(data, "inner_instance", "m0"))  # a str: text() returns the default when absent
    if not _PATH.match(inner.lower()):
        raise keys.fail("inner_instance", f"{inner!r} is not an instance name like 'm0' (or a path like 'x1.m0')")
    return options, commands, inner.lower()


def _process_devices(keys: _KeyReader, data: Mapping[str, Any]
                     ) -> tuple[Mapping[str, str], dict[str, str], list[str]]:
    """([devices] (logical device -> the library's wrapper subcircuit), the renamed ones (device -> lower-case
    wrapper name, those needing a shim), the MOSFETs among the devices (nfet, pfet))."""
    devices = data.get("devices")
    if not isinstance(devices, Mapping) or not devices:
        raise keys.fail("devices", "missing: a table naming the library's wrapper subcircuits (nfet, pfet, diode)")
    for kind, sub in devices.items():
        if kind not in _WRAPPERS:
            raise keys.fail(f"devices.{kind}", f"unknown device (known: {', '.join(_WRAPPERS)})")
        if not isinstance(sub, str) or not _NAME.match(sub):
            raise keys.fail(f"devices.{kind}", f"must be a subcircuit name, got {sub!r}")
    renamed = {kind: sub.lower() for kind, sub in devices.items() if sub.lower() != kind}
    mos = [kind for kind in ("nfet", "pfet") if kind in devices]
    if 0 < len([k for k in mos if k in renamed]) < len(mos):
        raise keys.fail("devices", "rename both nfet and pfet wrappers or neither (the mismatch alter path is one "
                                   f"for both), got {dict(devices)}")
    if set(renamed.values()) & set(_WRAPPERS):
        raise keys.fail("devices", f"a wrapper may not carry another device's logical name, got {dict(devices)}")
    return devices, renamed, mos


def _process_mismatch(keys: _KeyReader, data: Mapping[str, Any], mos: list[str]
                      ) -> tuple[dict[str, tuple[float, float]], Path | None, str]:
    """([mismatch]: Pelgrom coefficients per MOSFET (A_vt [V*um], A_beta [fraction*um]), the PDK statistical
    library or None, the header lines of the "pdk" mode)."""
    mismatch = data.get("mismatch", {})
    if not isinstance(mismatch, Mapping):
        raise keys.fail("mismatch", f"must be a table, got {mismatch!r}")
    unknown = sorted(set(mismatch) - _MISMATCH_KEYS)
    if unknown:
        raise keys.fail(f"mismatch.{unknown[0]}", f"unknown key (known: {', '.join(sorted(_MISMATCH_KEYS))})")
    pelgrom = _pelgrom_coefficients(keys, mismatch.get("pelgrom", {}), mos)
    pdk_library = keys.file(mismatch, "pdk_library", "mismatch.")
    pdk_options = keys.lines_of(keys.text(mismatch, "pdk_options", "", "mismatch."), "mismatch.pdk_options",
                                (".option", ".param"))
    if pdk_options and pdk_library is None:
        raise keys.fail("mismatch.pdk_options", "needs mismatch.pdk_library")
    return pelgrom, pdk_library, pdk_options


def _pelgrom_coefficients(keys: _KeyReader, table: Any, mos: list[str]) -> dict[str, tuple[float, float]]:
    """MOSFET -> (A_vt [V*um] in [0, 0.1), A_beta [fraction*um] in [0, 1)) of ``[mismatch] pelgrom``."""
    pelgrom: dict[str, tuple[float, float]] = {}
    if not isinstance(table, Mapping):
        raise keys.fail("mismatch.pelgrom", f"must be a table of devices, got {table!r}")
    for kind, coef in table.items():
        key = f"mismatch.pelgrom.{kind}"
        if kind not in mos:
            raise keys.fail(key, f"not a MOSFET of [devices] (has {', '.join(mos) or 'none'})")
        if not isinstance(coef, Mapping) or set(coef) != {"a_vt", "a_beta"}:
            raise keys.fail(key, f"must be {{ a_vt = <V*um>, a_beta = <fraction*um> }}, got {coef!r}")
        for part, high in (("a_vt", 0.1), ("a_beta", 1.0)):
            value = coef[part]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < high:
                raise keys.fail(f"{key}.{part}", f"must be a number in [0, {high:g}), got {value!r}")
        pelgrom[kind] = (float(coef["a_vt"]), float(coef["a_beta"]))
    return pelgrom


def _check_library(library: Path, corner: str | None, devices: Mapping[str, str], fail, key: str) -> None:
    """The library (and the files it includes) defines every wrapper subcircuit, holds the corner's ``.lib``
    section and no ``.control`` block; else a ProcessError naming ``key``."""
    stat = library.stat()
    found, sections, control = _scan_library(str(library), stat.st_mtime_ns, stat.st_size)
    if control is not None:
        raise fail(key, f"{control}: a .control block (spicenet does not run them)")
    if corner is not None and corner.lower() not in sections:
        raise fail("corner", f"{library} has no '.lib {corner}' section (has {', '.join(sorted(sections)) or 'none'})")
    for kind, sub in devices.items():
        if sub.lower() not in found:
            raise fail(f"devices.{kind}", f"{library} (with its includes) defines no subcircuit {sub!r}")


@functools.lru_cache(maxsize=32)
def _scan_library(library: str, mtime_ns: int, size: int) -> tuple[frozenset[str], frozenset[str], str | None]:
    """(subcircuit names defined in ``library`` and the files it includes, its own ``.lib`` section names, the
    first ``.control`` line as "file: line N" or None). Cached by path and modification time of the library."""
    del mtime_ns, size  # cache key only
    top = Path(library)
    found: set[str] = set()
    sections: set[str] = set()
    seen: set[Path] = set()
    stack = [top]
    while stack and len(seen) < 200:
        path = stack.pop()
        if path in seen:
            continue
        seen.add(path)
        try:
            lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
        except OSError:
            continue  # ngspice reports an unreadable include itself, with the deck line
        for number, line in enumerate(lines, 1):
            words = line.split()
            if not words:
                continue
            head = words[0].lower()
            if head == ".subckt" and len(words) > 1:
                found.add(words[1].lower())
            elif head == ".control":
                return frozenset(found), frozenset(sections), f"{path}: line {number}"
            elif head == ".lib" and len(words) == 2 and path == top:
                sections.add(words[1].lower())
            match = _INCLUDE.match(line)
            if match and not (head == ".lib" and match.group(2) is None):
                target = Path(match.group(1).strip("\"'")).expanduser()
                stack.append(target if target.is_absolute() else path.parent / target)
    return frozenset(found), frozenset(sections), None


def available_processes() -> dict[str, bool]:
    """Built-in process name -> whether it can be used now (its model library is present)."""
    out = {}
    for name, factory in _FACTORIES.items():
        try:
            factory()
            out[name] = True
        except ProcessError:
            out[name] = False
    return out
