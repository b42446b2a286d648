"""Analysis commands (``op``, ``dc``, ``tran``, ``ac``, ``noise``): validated one-line ngspice commands.

The same command string drives both engine modes: sent with ``ngSpice_Command`` in shared mode, written into a
``.control`` block in batch mode. Tokens are restricted to names and numbers (no ``;``, quotes, newlines), so an
analysis string cannot smuggle other commands into ngspice.
"""

from __future__ import annotations

import re

from spicenet.errors import ParameterError
from spicenet.spice.units import parse_value

_TOKEN = re.compile(r"^[A-Za-z0-9_.+\-()#:]+$")
_ARITY = {"op": (0, 0), "dc": (4, 8), "tran": (2, 5), "ac": (4, 4), "noise": (6, 7)}


def validate_analysis(text: str) -> str:
    """Return the normalised analysis command or raise ParameterError naming what is wrong."""
    tokens = str(text).strip().split()
    if not tokens:
        raise ParameterError("analysis is empty (expected e.g. 'op', 'tran 1n 1u', 'dc vin 0 1 0.01')")
    kind = tokens[0].lower().lstrip(".")
    if kind not in _ARITY:
        raise ParameterError(f"analysis {text!r}: unknown kind {tokens[0]!r} (expected one of {', '.join(_ARITY)})")
    for token in tokens[1:]:
        if not _TOKEN.match(token):
            raise ParameterError(f"analysis {text!r}: token {token!r} is not a name or a number")
    args = tokens[1:]
    low, high = _ARITY[kind]
    if kind == "tran" and args and args[-1].lower() == "uic":
        args = args[:-1]
    if not low <= len(args) <= high:
        raise ParameterError(f"analysis {text!r}: {kind} takes {low}..{high} arguments, got {len(args)}")
    numeric = {"tran": range(len(args)), "ac": range(1, 4), "dc": (1, 2, 3, 5, 6, 7), "noise": (3, 4, 5, 6)}.get(kind, ())
    for i in numeric:
        if i < len(args):
            try:
                parse_value(args[i])
            except ValueError as exc:
                raise ParameterError(f"analysis {text!r}: argument {i + 1}: {exc}") from None
    if kind == "ac" and args[0].lower() not in ("dec", "oct", "lin"):
        raise ParameterError(f"analysis {text!r}: ac sweep type must be dec, oct or lin")
    return " ".join([kind] + tokens[1:])


def with_max_step(analysis: str, divisor: float = 10.0) -> str:
    """A ``tran`` command with its maximum internal step set to tstep/``divisor`` (a convergence aid)."""
    tokens = analysis.split()
    if tokens[0] != "tran":
        return analysis
    uic = tokens[-1].lower() == "uic"
    args = tokens[1:-1] if uic else tokens[1:]
    tstep = parse_value(args[0])
    tstart = args[2] if len(args) >= 3 else "0"
    tmax = tstep / divisor
    if len(args) >= 4:
        tmax = min(tmax, parse_value(args[3]) / divisor)
    return " ".join(["tran", args[0], args[1], tstart, repr(tmax)] + (["uic"] if uic else []))


def dot_lines(deck: str) -> list[str]:
    """The analysis lines (``.op``, ``.tran`` ...) of a plain netlist, as analysis commands (dot removed)."""
    found = []
    in_control = False
    for line in deck.splitlines():
        s = line.strip().lower()
        if s.startswith(".control"):
            in_control = True
        elif s.startswith(".endc"):
            in_control = False
        elif not in_control and s.split() and s.split()[0] in (".op", ".dc", ".tran", ".ac", ".noise"):
            found.append(line.strip()[1:])
    return found


def strip_analyses(deck: str) -> str:
    """The deck without its dot analysis lines and ``.control`` blocks (the engine issues analyses itself)."""
    out, in_control = [], False
    for line in deck.splitlines():
        s = line.strip().lower()
        if s.startswith(".control"):
            in_control = True
            continue
        if s.startswith(".endc"):
            in_control = False
            continue
        if in_control or (s.split() and s.split()[0] in (".op", ".dc", ".tran", ".ac", ".noise")):
            continue
        out.append(line)
    return "\n".join(out) + "\n"
