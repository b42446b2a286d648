"""Netlist templates: plain ``.cir`` files with a declared parameter header, rendered with validated values.

Header lines (SPICE comments at the top of the file, after the title line)::

    * @param r  default=1k unit=Ohm range=[1, 1e9] doc=series resistance
    * @param n  default=5  type=int range=[3, 101]  doc=number of stages
    * @analysis tran 1n 10u          (default analysis when the caller gives none)
    * @uses nfet pfet                 (process devices the deck instantiates; omit for passive decks)
    * @supply vdd                     (voltage sources whose energy is reported)
    * @doc one line of description (may repeat)

In the body, ``${name}`` is replaced by the validated value, written as a plain number. Rendering fails before
any simulation on an unknown parameter, a missing one (no default), a value that is not a number with an optional
SI prefix and the declared unit, or a value outside its declared range: parameters are values, never SPICE text.
The process header (model library ``.include`` and ``.options``) is inserted after the title line.
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from spicenet.errors import ParameterError, TemplateError
from spicenet.spice.units import format_value, parse_value

_PARAM_LINE = re.compile(r"^\*\s*@param\s+(\w+)\s+(.*)$")
_KEYVAL = re.compile(r"(\w+)=(\[[^\]]*\]|\S+)")
_DIRECTIVE = re.compile(r"^\*\s*@(analysis|uses|supply|doc)\b\s*(.*)$")


@dataclass(frozen=True)
class Param:
    """A declared template parameter: a value with a unit and an inclusive range."""

    name: str
    default: float | None
    unit: str = ""
    low: float = -math.inf
    high: float = math.inf
    kind: str = "float"  # "float" | "int"
    doc: str = ""

    def validate(self, value: Any, template: str) -> float | int:
        """Parse and range-check ``value``; raise ParameterError naming the parameter and the template."""
        try:
            number = parse_value(value, self.unit)
        except ValueError as exc:
            raise ParameterError(f"template {template!r}: parameter {self.name!r}: {exc}") from None
        if self.kind == "int":
            if number != int(number):
                raise ParameterError(f"template {template!r}: parameter {self.name!r} must be an integer, got {value!r}")
            number = int(number)
        if not self.low <= number <= self.high:
            raise ParameterError(f"template {template!r}: parameter {self.name!r} = {number:g} {self.unit} is out of "
                                 f"range [{self.low:g}, {self.high:g}]")
        return number

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "default": self.default, "unit": self.unit, "range": [self.low, self.high],
                "type": self.kind, "doc": self.doc}


@dataclass(frozen=True)
class Template:
    """A parsed netlist template."""

    name: str
    path: Path
    body: str
    params: Mapping[str, Param]
    analysis: str | None = None
    uses: tuple[str, ...] = ()
    supplies: tuple[str, ...] = ()
    doc: str = ""
    placeholders: frozenset[str] = field(default_factory=frozenset)

    def resolve(self, values: Mapping[str, Any] | None = None) -> dict[str, float | int]:
        """Validated parameter values: defaults overridden by ``values``."""
        values = dict(values or {})
        unknown = sorted(set(values) - set(self.params))
        if unknown:
            raise ParameterError(f"template {self.name!r}: unknown parameter {unknown[0]!r} "
                                 f"(known: {', '.join(sorted(self.params))})")
        resolved: dict[str, float | int] = {}
        for name, param in self.params.items():
            if name in values:
                resolved[name] = param.validate(values[name], self.name)
            elif param.default is None:
                raise ParameterError(f"template {self.name!r}: parameter {name!r} has no default and was not given")
            else:
                resolved[name] = param.validate(param.default, self.name)
        return resolved

    def substitute(self, values: Mapping[str, Any] | None = None) -> str:
        """The file's text with validated values substituted (no process header): what a family generator
        instantiates as a cell (``spicenet.spice.fragments``)."""
        resolved = self.resolve(values)
        return string.Template(self.body).substitute({k: format_value(float(v)) for k, v in resolved.items()})

    def render(self, values: Mapping[str, Any] | None = None, process: Any = None,
               mismatch: str | None = None) -> str:
        """The deck text: validated values substituted, the process header after the title line, ``.end`` last.

        ``process`` is a ``spicenet.spice.process.Process`` (required when the template ``@uses`` devices).
        """
        lines = self.substitute(values).splitlines()
        header = ""
        if self.uses:
            if process is None:
                raise ParameterError(f"template {self.name!r} uses {', '.join(self.uses)}: a process is required")
            missing = [d for d in self.uses if d not in process.devices]
            if missing:
                raise ParameterError(f"template {self.name!r} uses {missing[0]!r}, which process {process.name!r} "
                                     f"does not provide")
            header = process.header(mismatch=mismatch)
        out = [lines[0]] + ([header] if header else []) + lines[1:]
        if not any(line.strip().lower() == ".end" for line in out):
            out.append(".end")
        return "\n".join(out) + "\n"


_ANY_DIRECTIVE = re.compile(r"^\*\s*@(param|analysis|uses|supply|doc)\b", re.MULTILINE)


def is_template(text: str) -> bool:
    """True when ``text`` has a template header line (``* @param``, ``* @analysis``, ``* @uses``, ``* @supply`` or
    ``* @doc``): such a file is rendered as a template (its ``@analysis`` is its default analysis even without
    parameters); any other file is a plain netlist."""
    return _ANY_DIRECTIVE.search(text) is not None


def parse_template(path: Path, name: str | None = None) -> Template:
    """Read a template file and its header; raise TemplateError on a malformed header or placeholder."""
    path = Path(path)
    try:
        body = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise TemplateError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise TemplateError(f"{path}: {exc.strerror or exc}") from None
    # relative .include/.lib paths name files beside the template (as ngspice -b does for a deck file)
    from spicenet.spice.analysis import resolve_includes

    body = resolve_includes(body, path.resolve().parent)
    name = name or path.stem
    params: dict[str, Param] = {}
    analysis, uses, supplies, doc = None, (), (), []
    for lineno, line in enumerate(body.splitlines(), 1):
        stripped = line.strip()
        match = _PARAM_LINE.match(stripped)
        if match:
            params[match.group(1)] = _parse_param(match.group(1), match.group(2), path, lineno)
            continue
        match = _DIRECTIVE.match(stripped)
        if match:
            key, value = match.group(1), match.group(2).strip()
            if key == "analysis":
                analysis = value
            elif key == "uses":
                uses = tuple(value.split())
            elif key == "supply":
                supplies = tuple(value.lower().split())
            else:
                doc.append(value)
    try:
        ids = {m.group("named") or m.group("braced") for m in string.Template.pattern.finditer(body)
               if m.group("named") or m.group("braced")}
        invalid = [m.group(0) for m in string.Template.pattern.finditer(body) if m.group("invalid") is not None]
    except Exception as exc:  # pragma: no cover - regex on text cannot fail in practice
        raise TemplateError(f"{path}: {exc}") from None
    if invalid:
        raise TemplateError(f"{path}: stray '$' (write '$$' for a literal dollar sign)")
    undeclared = sorted(ids - set(params))
    if undeclared:
        raise TemplateError(f"{path}: placeholder ${{{undeclared[0]}}} is not declared with '* @param'")
    return Template(name=name, path=path, body=body, params=params, analysis=analysis, uses=uses,
                    supplies=supplies, doc=" ".join(doc), placeholders=frozenset(ids))


def _parse_param(name: str, spec: str, path: Path, lineno: int) -> Param:
    doc = ""
    if "doc=" in spec:
        spec, doc = spec.split("doc=", 1)
    fields = dict(_KEYVAL.findall(spec))
    unit = fields.get("unit", "")
    kind = fields.get("type", "float")
    if kind not in ("float", "int"):
        raise TemplateError(f"{path}:{lineno}: parameter {name!r}: type must be float or int, got {kind!r}")
    low, high = -math.inf, math.inf
    if "range" in fields:
        parts = fields["range"].strip("[]").split(",")
        if len(parts) != 2:
            raise TemplateError(f"{path}:{lineno}: parameter {name!r}: range must be [low, high]")
        try:
            low, high = (parse_value(p.strip(), unit) for p in parts)
        except ValueError as exc:
            raise TemplateError(f"{path}:{lineno}: parameter {name!r}: bad range: {exc}") from None
    default = None
    if "default" in fields:
        try:
            default = parse_value(fields["default"], unit)
        except ValueError as exc:
            raise TemplateError(f"{path}:{lineno}: parameter {name!r}: bad default: {exc}") from None
    return Param(name=name, default=default, unit=unit, low=low, high=high, kind=kind, doc=doc.strip())


def netlists_root() -> Path:
    """The folder of shipped templates: package ``spicenet.netlists`` (installed) or ``<repo>/netlists`` (checkout)."""
    try:
        root = Path(str(resources.files("spicenet.netlists")))
        if root.is_dir():
            return root
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "netlists"


def list_templates(root: Path | None = None) -> dict[str, Path]:
    """Template name (``family/stem``) -> path, for every ``.cir`` under the netlists folder (models/ excluded)."""
    root = root or netlists_root()
    found = {}
    for path in sorted(root.rglob("*.cir")):
        rel = path.relative_to(root)
        if rel.parts[0] == "models":
            continue
        found[rel.with_suffix("").as_posix()] = path
    return found


def load_template(name: str | Path, root: Path | None = None) -> Template:
    """The template called ``name``: a shipped name (``basic/rc`` or a unique stem such as ``rc``), a name under
    another ``root`` folder, or the path of your own ``.cir`` file with a ``* @param`` header."""
    if Path(name).suffix == ".cir" or Path(name).is_file():
        path = Path(name)
        if not path.is_file():
            raise ParameterError(f"template file {str(name)!r} not found")
        return parse_template(path, path.stem)
    name = str(name)
    templates = list_templates(root)
    if name in templates:
        return parse_template(templates[name], name)
    stems = [key for key in templates if key.split("/")[-1] == name]
    if len(stems) == 1:
        return parse_template(templates[stems[0]], stems[0])
    hint = f"ambiguous: {', '.join(stems)}" if stems else f"known: {', '.join(templates) or 'none'}"
    raise ParameterError(f"no template named {name!r} ({hint})")
