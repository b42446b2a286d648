"""Parsing and formatting of SPICE-style numbers with SI prefixes and units.

A parameter value is a plain number, optionally with an SI prefix (f p n u m k meg g t, SPICE's case-insensitive
convention: ``m`` is milli, ``meg`` is mega) and a unit suffix that must match the declared unit
(``1.5kOhm``, ``10n``, ``0.3V``). Anything else -- expressions, spaces, newlines, SPICE keywords -- is rejected:
parameters are values, never SPICE text.
"""

from __future__ import annotations

import math
import re

SI_PREFIXES: dict[str, float] = {
    "t": 1e12, "g": 1e9, "meg": 1e6, "k": 1e3, "": 1.0, "m": 1e-3, "u": 1e-6, "µ": 1e-6,
    "n": 1e-9, "p": 1e-12, "f": 1e-15, "a": 1e-18,
}

# Unit names accepted as a suffix, by canonical unit. Comparison is case-insensitive.
UNIT_ALIASES: dict[str, tuple[str, ...]] = {
    "V": ("v",), "A": ("a",), "Ohm": ("ohm", "ohms", "Ω"), "S": ("s", "siemens"), "F": ("f",), "H": ("h",),
    "s": ("s", "sec"), "Hz": ("hz",), "K": ("k",), "W": ("w",), "J": ("j",), "um": ("um",), "m": ("m",), "": (),
}

_NUMBER = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)([a-zA-Zµ]*)$")


def parse_value(text: str | float | int, unit: str = "") -> float:
    """Return the float value of ``text`` ("10n", "1.5kOhm", 3e-9) in base units of ``unit``.

    Raises ValueError with a one-line message when the text is not a plain number with an optional SI prefix and
    the declared unit (or a unit-less suffix).
    """
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is a boolean, not a number")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        raw = str(text).strip()
        match = _NUMBER.match(raw)
        if match is None:
            raise ValueError(f"{text!r} is not a number with an optional SI prefix and unit")
        value = float(match.group(1)) * _suffix_scale(match.group(2), unit, text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not finite")
    return value


def _suffix_scale(suffix: str, unit: str, text: object) -> float:
    s = suffix.lower()
    if not s:
        return 1.0
    aliases = tuple(a.lower() for a in UNIT_ALIASES.get(unit, (unit.lower(),)) if a) if unit else ()
    # Try "prefix + unit", then "unit" alone, then "prefix" alone (longest prefix first: "meg" before "m").
    for prefix in sorted(SI_PREFIXES, key=len, reverse=True):
        if not s.startswith(prefix):
            continue
        rest = s[len(prefix):]
        if rest == "" or rest in aliases:
            if rest == "" and prefix == "":
                continue
            return SI_PREFIXES[prefix]
    if s in aliases:
        return 1.0
    expected = f" (expected an SI prefix and/or unit {unit!r})" if unit else " (expected an SI prefix)"
    raise ValueError(f"{text!r} has an unknown suffix {suffix!r}{expected}")


def format_value(value: float) -> str:
    """Format a float for a SPICE deck: full precision (17 significant digits), no prefix, never locale-dependent."""
    if not math.isfinite(value):
        raise ValueError(f"cannot write non-finite value {value!r} into a netlist")
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


_SPICE_NUMBER = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:[eE]([+-]?)(\d+))?((?![eEdD])[a-zA-Z]*)$")
_SPICE_EXPONENT = {"t": 12, "g": 9, "k": 3, "u": -6, "n": -9, "p": -12, "f": -15, "m": -3}  # ngspice 39: no "a" (atto)
_SPICE_SCALE = _SPICE_EXPONENT


def spice_number(text: str) -> float:
    """A number as ngspice reads it in a netlist or an analysis line (ngspice's ``INPevaluate``): mantissa, an
    optional exponent (``e``), one optional scale factor (T G Meg K mil m u n p f, any case; ngspice 39 has
    no ``a`` for atto: ``1A`` is 1) and then any
    letters, which are ignored (``10ns`` = 10n, ``5us`` = 5u, ``1kohm`` = 1k, ``2v`` = 2, ``1mil`` = 25.4u).

    Stricter than ngspice only in refusing anything but letters after the number (``1n;``, ``1n*2``) and an
    exponent letter without digits (``1e``, ``1em``) and Fortran ``d`` exponents (``2d-2``): ngspice's readers
    disagree on those (its deck reader refuses ``2d-2``, reads ``1em`` as 1m). Used for
    analysis arguments; template parameters use :func:`parse_value`, which checks the unit."""
    match = _SPICE_NUMBER.match(str(text).strip())
    if match is None:
        raise ValueError(f"{text!r} is not a SPICE number (digits, optional exponent, scale factor and unit letters)")
    mantissa, sign, digits, letters = match.groups()
    exponent = int(digits) * (-1 if sign == "-" else 1) if digits else 0
    low = letters.lower()
    factor = 1.0
    if low.startswith("meg"):
        exponent += 6
    elif low.startswith("mil"):
        exponent, factor = exponent - 6, 25.4
    elif low[:1] in _SPICE_SCALE:
        exponent += _SPICE_EXPONENT[low[:1]]
    value = float(f"{mantissa}e{exponent}") * factor
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not finite")
    return value
