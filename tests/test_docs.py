"""The documentation site builds with ``mkdocs build --strict`` (every warning, e.g. a docstring that names a
parameter the signature lacks, is an error) and holds the README, the API reference and the notebooks."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# mkdocs comes with the [docs] extra, which `make setup` installs; without it the build cannot be checked here.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or
                                importlib.util.find_spec("mkdocstrings") is None,
                                reason="mkdocs/mkdocstrings not installed (pip install -e '.[docs]'): docs build unchecked")


def test_docs_build_strict(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "WARNING" not in out.stderr, out.stderr[-4000:]
    # the README is the front page, quickstart included
    index = (site / "index.html").read_text()
    assert "Python quickstart" in index and "Families" in index
    # one API page per module listed in docs/api, each rendered from the module's docstrings
    pages = sorted(p.stem for p in (ROOT / "docs" / "api").glob("spicenet*.md"))
    assert {"spicenet", "spicenet.cells.rng.pbit", "spicenet.cells.resistive.network",
            "spicenet.cells.oscillator.phase", "spicenet.sweep", "spicenet.store"} <= set(pages)
    for name in pages:
        html = (site / "api" / name / "index.html").read_text()
        assert 'class="doc doc-' in html, name  # mkdocstrings rendered something
    pbit = (site / "api" / "spicenet.cells.rng.pbit" / "index.html").read_text()
    assert "from_surrogate" in pbit and re.search(r"energy per effective\s+independent bit", pbit)
    # the notebooks are pages of the site
    for nb in sorted((ROOT / "examples").glob("*.ipynb")):
        assert (site / "examples" / nb.stem / "index.html").is_file(), nb.name
