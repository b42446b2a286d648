"""Analysis commands and the dot cards of plain netlists.

An analysis is a validated one-line ngspice command (``op``, ``dc``, ``tran``, ``ac``, ``noise``, ``tf``, ``sens``,
``pz``). The same command string drives both engine modes: sent with ``ngSpice_Command`` in shared mode, written
into a ``.control`` block in batch mode. Tokens are restricted to names and numbers (no ``;``, quotes, newlines), so
an analysis string cannot smuggle other commands into ngspice. Commands are lower-cased: ngspice lower-cases a
netlist when it reads it, but not an interactive command (``DC V1 ...`` in shared mode finds no device ``V1``).
Numbers follow ngspice's own rules (:func:`spicenet.spice.units.spice_number`: ``10ns`` is 10n).

Plain netlists (:func:`read_netlist`): the first line is the title; a ``+`` line continues the card above it;
``;``, `` $`` and ``//`` start inline comments. Policy for ``.control`` blocks (one rule for ``simulate``, sweep
``netlist =``, templates and ``.include``d files): **spicenet never runs a ``.control`` block** and refuses a deck
that has one (a one-line error naming the file and line), because a control script runs outside the engine's
analyses, seeds, timeouts and result reading (and may run ``shell``). Give the analyses as dot cards (``.tran ...``)
or with ``--analysis`` instead. Relative ``.include``/``.lib`` paths are resolved against the folder of the file
that names them, as ``ngspice -b deck.cir`` does, in both engine modes. ``.disto``, ``.pss``, ``.sp`` and ``.hb``
cards are refused (not run, not silently dropped); ``.meas``, ``.four``, ``.print`` and ``.plot`` make no vectors
and are left to ngspice.
"""

from __future__ import annotations

import ast
import math
import operator
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from spicenet.errors import ParameterError
from spicenet.spice.units import spice_number

_TOKEN = re.compile(r"^[A-Za-z0-9_.+\-()#:,]+$")
# kind -> allowed argument counts (``uic`` of tran not counted)
_ARITY: dict[str, tuple[int, ...]] = {"op": (0,), "dc": (4, 8), "tran": (2, 3, 4), "ac": (4,), "noise": (6, 7),
                                      "tf": (2,), "sens": (1, 6), "pz": (6,)}
_NUMERIC: dict[str, tuple[int, ...]] = {"dc": (1, 2, 3, 5, 6, 7), "tran": (0, 1, 2, 3), "ac": (1, 2, 3),
                                        "noise": (3, 4, 5, 6), "sens": (3, 4, 5)}
_SWEEP_TYPES = ("dec", "oct", "lin")
ANALYSIS_KINDS = tuple(_ARITY)
_CARDS = tuple("." + kind for kind in ANALYSIS_KINDS)
# analyses ngspice has that spicenet does not run (their several plots share vector names): refused, not dropped
UNSUPPORTED_CARDS = (".disto", ".pss", ".sp", ".hb")


def validate_analysis(text: str) -> str:
    """Return the normalised (lower-case, single-spaced) analysis command or raise ParameterError naming what is
    wrong."""
    tokens = str(text).strip().lower().split()
    if not tokens:
        raise ParameterError("analysis is empty (expected e.g. 'op', 'tran 1n 1u', 'dc vin 0 1 0.01')")
    kind = tokens[0].lstrip(".")
    if kind not in _ARITY:
        raise ParameterError(f"analysis {text!r}: unknown kind {tokens[0]!r} (expected one of {', '.join(_ARITY)})")
    for token in tokens[1:]:
        if not _TOKEN.match(token):
            raise ParameterError(f"analysis {text!r}: token {token!r} is not a name or a number")
    args = tokens[1:]
    if kind == "tran" and args and args[-1] == "uic":
        args = args[:-1]
    if len(args) not in _ARITY[kind]:
        counts = " or ".join(map(str, _ARITY[kind]))
        raise ParameterError(f"analysis {text!r}: {kind} takes {counts} arguments, got {len(args)}")
    for i in _NUMERIC.get(kind, ()):
        if i < len(args):
            try:
                spice_number(args[i])
            except ValueError as exc:
                raise ParameterError(f"analysis {text!r}: argument {i + 1}: {exc}") from None
    if kind == "ac" and args[0] not in _SWEEP_TYPES:
        raise ParameterError(f"analysis {text!r}: ac sweep type must be dec, oct or lin")
    if kind == "noise" and args[2] not in _SWEEP_TYPES:
        raise ParameterError(f"analysis {text!r}: noise sweep type must be dec, oct or lin")
    if kind == "sens" and len(args) == 6 and (args[1] != "ac" or args[2] not in _SWEEP_TYPES):
        raise ParameterError(f"analysis {text!r}: an ac sensitivity is 'sens <output> ac dec|oct|lin n f1 f2'")
    if kind == "pz" and (args[4] not in ("cur", "vol") or args[5] not in ("pol", "zer", "pz")):
        raise ParameterError(f"analysis {text!r}: pz takes 4 nodes, cur|vol and pol|zer|pz")
    return " ".join([kind] + tokens[1:])


def with_max_step(analysis: str, divisor: float = 10.0) -> str:
    """A ``tran`` command with its maximum internal step set to tstep/``divisor`` (a convergence aid)."""
    tokens = analysis.split()
    if tokens[0] != "tran":
        return analysis
    uic = tokens[-1].lower() == "uic"
    args = tokens[1:-1] if uic else tokens[1:]
    tstep = spice_number(args[0])
    tstart = args[2] if len(args) >= 3 else "0"
    tmax = tstep / divisor
    if len(args) >= 4:
        tmax = min(tmax, spice_number(args[3]) / divisor)
    return " ".join(["tran", args[0], args[1], tstart, repr(tmax)] + (["uic"] if uic else []))


# -- plain netlists ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Card:
    """One logical line of a netlist: its text (continuations joined, inline comments removed) and the 1-based
    numbers of the physical lines it spans."""

    text: str
    first: int
    last: int


def _strip_comment(line: str) -> str:
    cut = len(line)
    for pattern in (";", " $", "\t$", "//"):
        k = line.find(pattern)
        if k >= 0:
            cut = min(cut, k)
    return line[:cut].rstrip()


def cards(deck: str) -> list[Card]:
    """The logical lines of a netlist after its title line: ``+`` continuations joined to their card, comment
    lines (``*``) and inline comments dropped."""
    lines = deck.splitlines()
    out: list[Card] = []
    for number, raw in enumerate(lines[1:], 2):
        stripped = raw.strip()
        if not stripped or stripped.startswith("*"):
            continue
        if stripped.startswith("+") and out:
            prev = out[-1]
            out[-1] = Card(f"{prev.text} {_strip_comment(stripped[1:]).strip()}".strip(), prev.first, number)
            continue
        out.append(Card(_strip_comment(stripped), number, number))
    return out


def _is_analysis(card: Card) -> bool:
    words = card.text.split()
    return bool(words) and words[0].lower() in _CARDS


def dot_lines(deck: str) -> list[str]:
    """The analysis cards (``.op``, ``.tran`` ...) of a plain netlist, as analysis commands (dot removed), in deck
    order."""
    return [card.text.strip()[1:] for card in cards(deck) if _is_analysis(card)]


def strip_analyses(deck: str) -> str:
    """The deck without its analysis cards (and their continuation lines): the engine issues analyses itself."""
    drop: set[int] = set()
    for card in cards(deck):
        if _is_analysis(card):
            drop.update(range(card.first, card.last + 1))
    kept = [line for number, line in enumerate(deck.splitlines(), 1) if number not in drop]
    return "\n".join(kept) + "\n"


_INCLUDE = re.compile(r"^(\s*\.(?:include|inc|lib)\s+)(\"[^\"]*\"|'[^']*'|\S+)(.*)$", re.IGNORECASE)


def _include_target(line: str) -> tuple[str, str, str] | None:
    """(prefix, path, rest) of an ``.include``/``.lib`` line that names a file, else None (``.lib name`` inside a
    library file defines a section and names no file)."""
    match = _INCLUDE.match(line)
    if match is None:
        return None
    prefix, path, rest = match.groups()
    if prefix.strip().lower() == ".lib" and not rest.strip() and not path.startswith(("'", '"')):
        return None
    return prefix, path.strip("\"'"), rest


def resolve_includes(deck: str, base: Path) -> str:
    """The deck with every relative ``.include``/``.lib`` file path made absolute against ``base`` (the folder of
    the file holding the deck). Nested includes are resolved by ngspice against their own file's folder."""
    out = []
    for line in deck.splitlines():
        target = _include_target(line)
        if target is not None:
            prefix, path, rest = target
            expanded = os.path.expanduser(path)
            if not os.path.isabs(expanded):
                line = f'{prefix}"{(Path(base) / expanded).resolve()}"{rest}'
            elif expanded != path:
                line = f'{prefix}"{expanded}"{rest}'
        out.append(line)
    return "\n".join(out) + ("\n" if deck.endswith("\n") or not deck else "")


_INCLUDE_LINES = re.compile(r"^[ \t]*\.(?:include|inc|lib)[ \t].*$", re.IGNORECASE | re.MULTILINE)
_CONTROL_LINE = re.compile(r"^[ \t]*\.control", re.IGNORECASE | re.MULTILINE)


def included_files(deck: str, base: Path | None = None) -> list[Path]:
    """The files a deck's ``.include``/``.lib`` lines name (relative ones against ``base`` or the current folder)."""
    found = []
    for match in _INCLUDE_LINES.finditer(deck):  # a regex over the whole text: fast on decks of 100k lines
        target = _include_target(match.group(0))
        if target is not None:
            path = Path(os.path.expanduser(target[1]))
            found.append(path if path.is_absolute() else Path(base or ".") / path)
    return found


def _control_line(text: str) -> int | None:
    match = _CONTROL_LINE.search(text)
    return None if match is None else text.count("\n", 0, match.start()) + 1


@lru_cache(maxsize=256)
def _file_control(path: str, mtime: float, size: int) -> tuple[str, int] | None:
    """(file, line) of a ``.control`` card in ``path`` or in a file it includes (recursively), else None."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None  # ngspice reports a missing include itself
    line = _control_line(text)
    if line is not None:
        return path, line
    for child in included_files(text, Path(path).parent):
        hit = _scan_file(child)
        if hit is not None:
            return hit
    return None


def _scan_file(path: Path) -> tuple[str, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return _file_control(str(path.resolve()), st.st_mtime, st.st_size)


def check_no_control(deck: str, where: str = "deck") -> None:
    """Raise ParameterError when the deck or a file it includes has a ``.control`` block (see the module
    docstring for the policy)."""
    hint = "spicenet does not run .control blocks: give the analyses as dot cards (.tran ...) or --analysis"
    line = _control_line(deck)
    if line is not None:
        raise ParameterError(f"{where}: line {line}: .control block: {hint}")
    for path in included_files(deck):
        hit = _scan_file(path)
        if hit is not None:
            raise ParameterError(f"{where}: included file {hit[0]}: line {hit[1]}: .control block: {hint}")


@dataclass(frozen=True)
class Netlist:
    """A plain netlist read from a file: the deck to load (analysis cards removed, include paths absolute) and its
    analyses (validated commands, deck order)."""

    path: Path
    deck: str
    analyses: tuple[str, ...]


def read_netlist(path: str | Path) -> Netlist:
    """Read and check a plain netlist file (see the module docstring); ParameterError on anything unusable."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ParameterError(f"netlist {str(path)!r} not found") from None
    except OSError as exc:
        raise ParameterError(f"netlist {str(path)!r}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ParameterError(f"netlist {str(path)!r}: line {line}: not UTF-8 text") from None
    if not text.strip():
        raise ParameterError(f"netlist {str(path)!r} is empty")
    deck = resolve_includes(text, path.resolve().parent)
    check_no_control(deck, f"netlist {str(path)!r}")
    analyses = []
    params: dict[str, float] | None = None
    for card in cards(deck):
        words = card.text.split()
        if words and words[0].lower() in UNSUPPORTED_CARDS:
            raise ParameterError(f"netlist {str(path)!r}: line {card.first}: {words[0]} analyses are not supported "
                                 f"(supported: {', '.join(ANALYSIS_KINDS)})")
        if _is_analysis(card):
            text = card.text
            try:
                if "{" in text:  # ngspice's numparam substitutes {expr}; issued as commands they need the values
                    params = deck_params(deck) if params is None else params
                    text = substitute_braces(text, params)
                analyses.append(validate_analysis(text))
            except ParameterError as exc:
                raise ParameterError(f"netlist {str(path)!r}: line {card.first}: {exc}") from None
    return Netlist(path=path, deck=strip_analyses(deck), analyses=tuple(analyses))


_VECTOR = re.compile(r"^([vi])\((.+)\)$")
_BRANCH_ELEMENTS = ("v", "e", "h", "l", "b")  # elements whose current ngspice keeps as a vector (x#branch)


def unknown_vector(deck: str, name: str, analysis: str) -> str | None:
    """Why ``name`` cannot be a vector of ``analysis`` on ``deck`` (None when it can or cannot be judged).

    Judged for ``v(node[,node])`` and ``i(source)`` of op/dc/tran/ac results against the deck's top-level cards:
    a node must appear on some element card (or be ground, or a subcircuit path ``x1.n``), a current must be that of
    a voltage source, controlled voltage source, inductor or behavioural source. Other names (scales, noise,
    tf/sens/pz outputs, ``@device[param]``) are not judged."""
    if analysis.split()[0] not in ("op", "dc", "tran", "ac"):
        return None
    match = _VECTOR.match(name.strip().lower())
    if match is None:
        return None
    nodes: set[str] = {"0", "gnd"}
    elements: set[str] = set()
    depth = 0
    for card in cards(deck):
        words = card.text.lower().replace("(", " ").replace(")", " ").replace(",", " ").split()
        if not words:
            continue
        if words[0].startswith(".subckt"):
            depth += 1
        elif words[0].startswith(".ends"):
            depth = max(0, depth - 1)
        elif not words[0].startswith(".") and depth == 0:
            elements.add(words[0])
            nodes.update(w for w in words[1:] if "=" not in w)
    kind, inner = match.groups()
    if kind == "v":
        for node in (n.strip() for n in inner.split(",")):
            if node not in nodes and not (node.startswith("x") and "." in node):
                return f"no node {node!r} in the deck"
        return None
    if inner in elements and inner[0] in _BRANCH_ELEMENTS or (inner.startswith("x") and "." in inner):
        return None
    if inner in elements:
        return f"{inner!r} has no branch current (i() names a voltage source, E/H source, inductor or B source)"
    return f"no element {inner!r} in the deck"


# -- {expr} in analysis cards ------------------------------------------------------------------------------------
_PARAM_ASSIGN = re.compile(r"([A-Za-z_][\w]*)\s*=\s*(\{[^}]*\}|'[^']*'|[^\s{}']+)")
_SPICE_LITERAL = re.compile(r"(?<![\w.])((?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[A-Za-z]*)")
_FUNCS: dict[str, Callable[..., Any]] = {"sqrt": math.sqrt, "exp": math.exp, "log": math.log, "ln": math.log, "log10": math.log10, "abs": abs,
                                          "min": min, "max": max, "pow": pow, "sin": math.sin, "cos": math.cos,
                                          "tan": math.tan, "atan": math.atan}
_BINOPS: dict[type, Callable[[float, float], Any]] = {ast.Add: operator.add, ast.Sub: operator.sub,
                                                      ast.Mult: operator.mul, ast.Div: operator.truediv,
                                                      ast.Pow: operator.pow}


def deck_params(deck: str) -> dict[str, float]:
    """The top-level ``.param`` values of a deck (outside subcircuits), in order, each evaluated with the ones
    before it; a value spicenet cannot evaluate is left out (using it then fails with a message)."""
    values: dict[str, float] = {}
    depth = 0
    for card in cards(deck):
        low = card.text.lower()
        if low.startswith(".subckt"):
            depth += 1
        elif low.startswith(".ends"):
            depth = max(0, depth - 1)
        elif depth == 0 and low.split()[:1] == [".param"]:
            for name, value in _PARAM_ASSIGN.findall(card.text[len(".param"):]):
                try:
                    values[name.lower()] = evaluate(value.strip("{}'"), values)
                except ParameterError:
                    pass
    return values


def evaluate(expr: str, params: dict[str, float]) -> float:
    """A numparam-style expression: SPICE numbers (``3k``), ``.param`` names, + - * / ** ^, parentheses and a few
    functions (sqrt exp log ln log10 abs min max pow sin cos tan atan). ParameterError for anything else."""
    text = _SPICE_LITERAL.sub(lambda m: repr(_literal(m.group(1))), expr.strip()).replace("^", "**")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ParameterError(f"cannot evaluate {{{expr}}}") from None

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id.lower() not in params:
                raise ParameterError(f"cannot evaluate {{{expr}}}: {node.id!r} is not a .param of the deck")
            return params[node.id.lower()]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = value(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)):
            a, b = value(node.left), value(node.right)
            try:
                return float(_BINOPS[type(node.op)](a, b))
            except (ZeroDivisionError, OverflowError, TypeError) as exc:
                raise ParameterError(f"cannot evaluate {{{expr}}}: {exc}") from None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.lower() in _FUNCS \
                and not node.keywords:
            try:
                return float(_FUNCS[node.func.id.lower()](*(value(a) for a in node.args)))
            except (ValueError, TypeError, OverflowError) as exc:
                raise ParameterError(f"cannot evaluate {{{expr}}}: {exc}") from None
        raise ParameterError(f"cannot evaluate {{{expr}}} (spicenet evaluates numbers, .param names, + - * / ^ "
                             f"and {', '.join(_FUNCS)} in analysis cards)")

    result = value(tree)
    if not math.isfinite(result):
        raise ParameterError(f"{{{expr}}} is not finite")
    return result


def _literal(token: str) -> float:
    try:
        return spice_number(token)
    except ValueError as exc:
        raise ParameterError(f"cannot evaluate {token!r}: {exc}") from None


def substitute_braces(text: str, params: dict[str, float]) -> str:
    """``text`` with every ``{expr}`` replaced by its value (full precision)."""
    return re.sub(r"\{([^{}]*)\}", lambda m: repr(evaluate(m.group(1), params)), text)
