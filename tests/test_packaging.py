"""A non-editable install (pip install .) ships the templates, the model library, configs and data samples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def _fresh_venv_with_wheel(tmp_path):
    """Build the wheel, make a fresh venv and install the wheel into it with ``--no-index``: pip may download
    nothing, so every requirement (torch included) must resolve against distributions already installed. They come
    from the test interpreter's site-packages through a ``.pth`` line (a plain path entry: its own ``.pth`` files,
    the editable spicenet among them, are not processed, so ``import spicenet`` finds the wheel's copy)."""
    import sysconfig

    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(dist), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = dist.glob("spicenet-*.whl")
    venv = tmp_path / "venv"
    made = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True,
                          timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, timeout=60).stdout.strip()
    (Path(site) / "_spicenet_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    inst = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-index", "-q", str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stderr[-2000:]
    return wheel, venv, Path(site)


def test_wheel_in_a_fresh_venv_doctor_and_readme_quickstart(tmp_path):
    """The built wheel: metadata true (Requires-Python, licence, extras), py.typed and the shipped calibrations
    inside; installed in a fresh venv, ``spicenet doctor --json`` is ok and the README quickstart runs."""
    import zipfile

    from tests.test_readme_quickstart import quickstart_code

    wheel, venv, site = _fresh_venv_with_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read("spicenet-0.1.0.dist-info/METADATA").decode()
    assert "spicenet/py.typed" in names
    assert {f"spicenet/data/surrogates/{f}_quick_generic.h5" for f in ("rng", "oscillator", "resistive")} <= names
    license_file = next(n for n in names if n.endswith("dist-info/licenses/LICENSE"))
    with zipfile.ZipFile(wheel) as z:
        assert "Apache License" in z.read(license_file).decode()[:200]
    assert "Requires-Python: >=3.11" in meta and "License: Apache-2.0" in meta
    for extra in ("test", "analysis", "bench", "docs"):
        assert f"Provides-Extra: {extra}" in meta
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(home), "OMP_NUM_THREADS": "1"}
    doctor = subprocess.run([str(venv / "bin" / "spicenet"), "doctor", "--json"], capture_output=True, text=True,
                            cwd=home, env=env, timeout=300)
    assert doctor.returncode == 0, doctor.stdout[-2000:] + doctor.stderr[-2000:]
    info = json.loads(doctor.stdout)
    assert info["ok"] is True and info["missing"] == [] and info["processes"]["generic"] is True
    probe = "import spicenet; print(spicenet.__file__)\n" + quickstart_code()
    run = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, cwd=home,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    first, *rest = run.stdout.splitlines()
    assert first.startswith(str(site)), first  # the wheel's copy, not the checkout
    assert any("max |surrogate - ngspice|" in line for line in rest)


def test_doctor_says_what_is_missing_and_how_to_install_it(tmp_path):
    """Without ngspice on PATH and with NGSPICE_LIBRARY_PATH at a file that does not exist, doctor fails (exit 1)
    and names both the executable and the shared library with an install command for each."""
    env = {"PATH": "/nonexistent", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1",
           "NGSPICE_LIBRARY_PATH": str(tmp_path / "no" / "libngspice.so"), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "spicenet", "doctor", "--json"], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=300)
    assert out.returncode == 1, out.stderr[-2000:]
    info = json.loads(out.stdout)
    assert info["ok"] is False and info["ngspice_version"] == "unknown"
    missing = {m["what"].split(" ")[0]: m["install"] for m in info["missing"]}
    assert set(missing) == {"libngspice", "ngspice"}
    assert "apt-get install libngspice0" in missing["libngspice"] and "NGSPICE_LIBRARY_PATH" in missing["libngspice"]
    assert "apt-get install ngspice" in missing["ngspice"]
