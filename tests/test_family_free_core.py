"""The core of spicenet knows no family or trainer by name (issue 15): no Python file of ``spicenet/`` outside
``spicenet/cells/`` holds a registered family or trainer name (``spicenet.families.registered()``) in its code.

The files are read with :mod:`tokenize`: comments are not code, nor are docstrings (string statements: the first
statement of a module, class or function, and attribute docstrings), found with :mod:`ast`. A finding is a NAME
token with a name as one of its words (split at underscores and lower-to-upper case changes: ``ais_energy``,
``AISGenerator``, ``spicenet.cells.rng.pbit``) or a STRING token holding one as a word, any case (``"dtm"``,
``f"trained with EqProp"``). Data files (.h5, .md, .toml) are not code and not read.

The one idiom left open: ``rng``, the usual name of a numpy/torch random generator (``rng =
np.random.default_rng(seed)``), is not the family when it is an identifier, unless it is part of a dotted name
into spicenet (``spicenet.cells.rng``), and the checkpoint key ``"rng"`` of :mod:`spicenet.train.run` holds the
random generators' state (existing run directories are resumed with it).
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "spicenet"
IDENTIFIER_IDIOMS = {"rng"}  # a random generator when it is an identifier (numpy's default_rng; not a dotted name into spicenet)
ALLOWED_STRINGS = {("spicenet/train/run.py", "rng")}  # (path, token text): the checkpoint key of the RNG state
_STRING_TYPES = {tokenize.STRING} | ({tokenize.FSTRING_MIDDLE} if hasattr(tokenize, "FSTRING_MIDDLE") else set())


def registered_names() -> tuple[str, ...]:
    """Every registered family and trainer name."""
    from spicenet.families import registered

    families = registered()
    return tuple(sorted({*families, *(t for f in families.values() for t in f.trainer_names)}))


def _docstring_starts(tree: ast.AST) -> set[tuple[int, int]]:
    """(line, column) where each string statement (docstrings, attribute docstrings) starts."""
    return {(node.lineno, node.col_offset) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}


def _words(identifier: str) -> list[str]:
    """The words of an identifier, lower case: split at underscores and case changes (``AISGenerator`` ->
    ais, generator; ``default_rng`` -> default, rng)."""
    return [w.lower() for part in identifier.split("_")
            for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", part)]


def _import_hits(tree: ast.AST, names: tuple[str, ...]) -> list[tuple[int, str, str]]:
    """Names in the module paths and imported names of imports from spicenet (absolute or relative): there even
    the identifier idioms are the families (``from spicenet.cells import rng``)."""
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == "spicenet"):
            paths = [node.module or "", *(a.name for a in node.names)]
        elif isinstance(node, ast.Import):
            paths = [a.name for a in node.names if a.name.split(".")[0] == "spicenet"]
        else:
            continue
        hits += [(node.lineno, part, path) for path in paths for part in path.split(".") if part in names]
    return hits


def names_in_code(source: str, names: tuple[str, ...]) -> list[tuple[int, str, str]]:
    """(line, name, token text) for every NAME or STRING token of ``source`` (docstrings and comments aside) that
    holds one of ``names`` as a word, and every import from spicenet naming one."""
    if not names:
        return []
    word = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(map(re.escape, names)) + r")(?![A-Za-z0-9])", re.IGNORECASE)
    tree = ast.parse(source)
    skip = _docstring_starts(tree)
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
              if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)]
    hits = set(_import_hits(tree, names))
    for i, tok in enumerate(tokens):
        if tok.type in _STRING_TYPES and tok.start not in skip:
            text = _literal(tok.string)
            if text.isidentifier() and len(_words(text)) > 1:  # an identifier in a string (__all__): its words
                hits |= {(tok.start[0], w, tok.string) for w in _words(text)
                         if w in names and w not in IDENTIFIER_IDIOMS}
            else:
                hits |= {(tok.start[0], m.group(1).lower(), tok.string) for m in word.finditer(tok.string)}
        elif tok.type == tokenize.NAME:
            # the dotted name this token is part of: NAME (. NAME)*, its parts before this one
            j = i
            while (j >= 2 and tokens[j - 1].string == "." and tokens[j - 2].type == tokenize.NAME
                   and not keyword.iskeyword(tokens[j - 2].string)):
                j -= 2
            dotted_into_spicenet = i > j and tokens[j].string in ("spicenet", "cells")
            hits |= {(tok.start[0], w, tok.string) for w in _words(tok.string)
                     if w in names and (w not in IDENTIFIER_IDIOMS or dotted_into_spicenet)}
    return sorted(hits)


def core_files(package: Path = PACKAGE) -> list[Path]:
    """Every Python file of the package outside its ``cells/`` folder."""
    return sorted(p for p in package.rglob("*.py") if "cells" not in p.relative_to(package).parts[:1])


def findings(package: Path = PACKAGE, names: tuple[str, ...] | None = None) -> list[str]:
    """"path:line: name in text" for every name found in the core files (the allowed idioms aside)."""
    names = registered_names() if names is None else names
    out = []
    for path in core_files(package):
        rel = f"spicenet/{path.relative_to(package).as_posix()}"
        for line, name, text in names_in_code(path.read_text(encoding="utf-8"), names):
            if (rel, _literal(text)) not in ALLOWED_STRINGS:
                out.append(f"{rel}:{line}: {name} in {text}")
    return out


def _literal(text: str) -> str:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return value if isinstance(value, str) else text


def test_the_registry_names_the_shipped_families_and_trainers() -> None:
    assert {"rng", "oscillator", "resistive", "dtm", "ais", "eqprop", "ffebm"} <= set(registered_names())
    assert len(core_files()) > 20 and not any("cells" in p.parts for p in core_files())


def test_no_family_or_trainer_name_in_the_core_code() -> None:
    assert findings() == []


def test_the_scanner_flags_planted_names(tmp_path: Path) -> None:
    names = ("rng", "oscillator", "resistive", "dtm", "ais", "eqprop", "ffebm")
    assert [(n, t) for _, n, t in names_in_code('x = "dtm"\n', names)] == [("dtm", '"dtm"')]
    planted = '''"""Docstrings may name rng, eqprop and the oscillator family."""
import numpy as np
from spicenet.cells.rng import family
# a comment about dtm is not code
LABEL = f"trained with EqProp {1}"
rng = np.random.default_rng(0)
X = 1
"""An attribute docstring about resistive networks."""


class AISGenerator:
    """A docstring: ffebm."""

    def ais_energy(self, x):
        return self.rng, spicenet.cells.oscillator.phase
'''
    found = sorted({(line, name) for line, name, _ in names_in_code(planted, names)})
    assert found == [(3, "rng"), (5, "eqprop"), (11, "ais"), (14, "ais"), (15, "oscillator")]
    # the files of a package: cells/ is skipped, the rest is read
    package = tmp_path / "spicenet"
    (package / "cells" / "rng").mkdir(parents=True)
    (package / "cells" / "rng" / "family.py").write_text('NAME = "rng"\n')
    (package / "clean.py").write_text('"""About the rng family."""\nrng = 1\n')
    assert findings(package, names) == []
    (package / "sub").mkdir()
    (package / "sub" / "demo.py").write_text('FAMILIES = ("resistive",)\n')
    assert findings(package, names) == ["spicenet/sub/demo.py:1: resistive in \"resistive\""]


# -- what the core reads from the families instead of their names ---------------------------------------------------
def test_top_level_names_and_baseline_comparisons_come_from_the_registry() -> None:
    import spicenet
    from spicenet.baselines.reference import comparable
    from spicenet.baselines.train import default_compare
    from spicenet.families import registered

    exports = {name: target for f in registered().values() for name, target in f.exports.items()}
    assert {"PBit", "ResistiveNetwork", "PhaseOscillatorNetwork"} <= set(exports)
    for name, target in exports.items():
        module, _, attr = target.partition(":")
        assert name in spicenet.__all__ and name in dir(spicenet)
        assert getattr(spicenet, name).__module__ == module and getattr(spicenet, name).__name__ == attr
    compared = comparable()
    assert list(compared) == ["dtm", "ais"]  # registry order: the rng family, then the oscillator one
    assert (default_compare("fashion"), default_compare("fashion_mnist"), default_compare("mnist")) == (
        "dtm", "dtm", "ais")
    assert all(t.baseline_datasets for _, t in compared.values())


def test_an_export_name_of_two_families_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types
    from importlib import metadata

    import spicenet.families as fam

    module = types.ModuleType("toy_duplicate_export")
    module.FAMILY = fam.Family(name="toy3", exports={"PBit": "toy_duplicate_export:FAMILY"})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "toy_duplicate_export", module)
    real = fam._entry_points()
    extra = metadata.EntryPoint("toy3", "toy_duplicate_export:FAMILY", fam.ENTRY_POINT_GROUP)
    monkeypatch.setattr(fam, "_entry_points", lambda: [*real, extra])
    fam.registered.cache_clear()
    try:
        with pytest.raises(fam.FamilyError, match="'toy3 = toy_duplicate_export:FAMILY'.*export 'PBit' is already "
                           "exported by family 'rng'"):
            fam.registered()
    finally:
        monkeypatch.undo()
        fam.registered.cache_clear()
