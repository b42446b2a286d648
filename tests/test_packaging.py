"""A non-editable install (pip install .) ships the templates, the model library, configs and data samples."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_non_editable_install_finds_templates_and_models(tmp_path):
    target = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                            "--target", str(target), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    probe = (
        "import json, spicenet, spicenet.spice.templates as t, spicenet.spice.process as p, spicenet.data as d\n"
        "from spicenet.families import load_config\n"
        "names = sorted(t.list_templates())\n"
        "print(json.dumps({'pkg': spicenet.__file__, 'root': str(t.netlists_root()), 'names': names,\n"
        "                  'lib': str(p.generic_library()), 'samples': str(d.load_dataset('mnist').origin)}))\n"
    )
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout)
    assert info["pkg"].startswith(str(target))
    assert info["root"].startswith(str(target)) and info["lib"].startswith(str(target))
    assert {"basic/rc", "basic/current_mirror", "oscillator/ring5"} <= set(info["names"])
