"""A shipped template as the one source of a cell that a family generator instantiates many times.

The family generators compose decks of many cells (N p-bit cells in ``spicenet.cells.rng.cells.ct_deck``, rings of
any number of stages and networks of rings in ``spicenet.cells.oscillator.netlist``) from the element lines of a
template under ``netlists/`` rendered with validated values (:func:`element_lines`): the template's header checks
every value against its declared range, and the SPICE text of the cell exists once, in the ``.cir`` file. A copy
of a cell is made by renaming its element names and nodes (:func:`rename`); the deck stays flat (no
``.subckt``), so node and device names are those the families measure, ``alter`` and draw mismatch for.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from spicenet.spice.templates import Template

__all__ = ["element_lines", "node_slice", "rename", "with_value"]


def element_lines(template: Template, values: Mapping[str, Any] | None = None) -> list[str]:
    """The template's netlist lines rendered with ``values`` (validated; defaults for the rest), without the title
    line, comments, blank lines or ``.end``; ``+`` continuation lines are joined to their line."""
    lines: list[str] = []
    for raw in template.substitute(values).splitlines()[1:]:
        line = raw.strip()
        if not line or line.startswith("*") or line.lower() == ".end":
            continue
        if line.startswith("+") and lines:
            lines[-1] = f"{lines[-1]} {line[1:].strip()}"
        else:
            lines.append(line)
    return lines


_NODES = {"r": 2, "c": 2, "l": 2, "v": 2, "i": 2, "b": 2, "d": 2, "e": 4, "g": 4, "s": 4, "m": 4}


def node_slice(tokens: list[str]) -> slice:
    """Positions of the nodes in an element line's tokens (element letter ``r c l v i b d``: 2 nodes; ``e g s m``:
    4; ``x``: every token between the name and the subcircuit name, which precedes the first ``key=value``)."""
    kind = tokens[0][:1].lower()
    if kind == "x":
        end = next((k for k, t in enumerate(tokens) if "=" in t), len(tokens)) - 1
        if end < 2:
            raise ValueError(f"subcircuit instance without nodes: {' '.join(tokens)!r}")
        return slice(1, end)
    if kind not in _NODES or len(tokens) <= _NODES[kind]:
        raise ValueError(f"cannot locate the nodes of {' '.join(tokens)!r} (element letters: x, "
                         f"{', '.join(sorted(_NODES))})")
    return slice(1, 1 + _NODES[kind])


def rename(line: str, names: Mapping[str, str] | Callable[[str], str]) -> str:
    """``line`` with its element name and its nodes renamed by ``names`` (a mapping: names it lacks are kept; or a
    function of the name). Values, model names and parameters are never touched; tokens are rejoined by one
    space."""
    tokens = line.split()
    new = names if callable(names) else (lambda name: names.get(name, name))
    nodes = node_slice(tokens)
    out = [new(tokens[0])]
    out += [new(t) if nodes.start <= k < nodes.stop else t for k, t in enumerate(tokens[1:], 1)]
    return " ".join(out)


def with_value(line: str, value: str) -> str:
    """``line`` (an element with 2 nodes, e.g. a source) with everything after its nodes replaced by ``value``."""
    tokens = line.split()
    return " ".join(tokens[:node_slice(tokens).stop] + [value])
