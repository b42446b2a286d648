"""The family registry (spicenet.families): a cell family is one ``Family`` object found through the entry-point
group ``spicenet.families``.

* A throwaway family written here into tmp_path (a package + a ``*.dist-info`` with ``entry_points.txt``, put on
  the path of a subprocess) is offered by ``spicenet calibrate NAME``, ``train TRAINER`` and ``validate RUN`` with
  no other change, and its verbs really run and write their outputs; without it on the path it is not offered.
* A broken, foreign or duplicate entry point gives a one-line error naming it (exit status 2).
* ``git grep`` + the Python syntax tree find no family or trainer name in spicenet/ outside spicenet/cells/<family>/
  (docstrings and comments aside); the same check finds a planted one.
* ``examples/fourth_family`` (a thermal-noise kT/C bit source) installed with pip into a folder of its own runs
  through ``spicenet calibrate/train/validate/report`` and ``spicenet demo --family thermal``; its numbers are
  checked against the analytic law <v_n^2> = kT/C and P(1) = 1/2 erfc(v_th / (sigma sqrt 2)).
"""

from __future__ import annotations

import json
import tomllib
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from statistics import NormalDist

import pytest

ROOT = Path(__file__).resolve().parents[1]
K_B = 1.380649e-23  # J/K (SI, exact)


def _spicenet(*args: str, path: Path | None = None, cwd: Path | None = None, timeout: float = 300
              ) -> subprocess.CompletedProcess:
    """``python -m spicenet ARGS`` in a subprocess, with ``path`` prepended to PYTHONPATH."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "spicenet", *args], capture_output=True, text=True, env=env,
                          cwd=cwd or ROOT, timeout=timeout)


def _dist(site: Path, name: str, entry_points: str) -> None:
    """A minimal installed-distribution record: ``<name>-0.1.dist-info/{METADATA, entry_points.txt}``."""
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[spicenet.families]\n{entry_points}\n")


TOY_FAMILY = '''
"""A throwaway spicenet family: verbs that do trivial arithmetic but write the real files."""
import json
from pathlib import Path

from spicenet.families import Family, ReportLayout, Trainer

ROOT = Path(__file__).resolve().parent


def calibrate(config, *, process, quick, output, workers, seed):
    from spicenet.surrogate import SurrogateFile, SurrogateParam

    values = [config["scale"] * (k + 1) for k in range(3)]
    SurrogateFile(family="toyfam", process=process, params={"level": SurrogateParam(values=values, unit="V")},
                  attrs={"scale": config["scale"], "seed": seed}).save(output)
    return {"output": str(output), "fit": {"scale": config["scale"]}, "plots": []}


def train(config, *, surrogate, quick, run_dir, device, seed):
    from spicenet.surrogate import SurrogateFile
    from spicenet.train.run import RunDir

    sf = SurrogateFile.load(surrogate)
    run = RunDir.create(run_dir, config, surrogate=surrogate, seed=seed, device=device, resume=False)
    meta = json.loads((run.path / "run.json").read_text())
    meta.update({"family": "toyfam", "trainer": "toytrain"})
    (run.path / "run.json").write_text(json.dumps(meta))
    metrics = {"steps": config["train"]["steps"], "level_sum": float(sf.params["level"].values.sum())}
    run.write_final_metrics(metrics)
    return {"run_dir": str(run.path), "metrics": metrics}


def validate(run_dir, *, chips, quick, workers, seed, settings=None):
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    result = {"surrogate": {"level_sum": metrics["level_sum"]}, "spice": {"level_sum": metrics["level_sum"]},
              "gap": {"level_sum": 0.0}, "chips": chips}
    (Path(run_dir) / "toy_validation.json").write_text(json.dumps(result))
    return result


FAMILY = Family(name="toyfam", trainers=(Trainer("toytrain", length=("train", "steps")),),
                calibrate=calibrate, train=train, validate=validate,
                report=ReportLayout(validation_files=("toy_validation.json",)), config_root=ROOT)
NOT_A_FAMILY = {"name": "toyfam"}
'''


@pytest.fixture
def toy_site(tmp_path: Path) -> Path:
    """tmp_path/site: the package ``toyfam_pkg`` (with its own default configs) and its distribution record."""
    site = tmp_path / "site"
    pkg = site / "toyfam_pkg"
    (pkg / "calibration").mkdir(parents=True)
    (pkg / "training").mkdir()
    (pkg / "__init__.py").write_text(TOY_FAMILY)
    (pkg / "calibration" / "toyfam.toml").write_text("scale = 2.5\n")
    (pkg / "training" / "toytrain.toml").write_text("[train]\nsteps = 3\n")
    _dist(site, "toyfam", "toyfam = toyfam_pkg:FAMILY")
    return site


def test_a_throwaway_family_is_offered_by_the_cli(toy_site: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    absent = _spicenet("calibrate", "toyfam", "-o", "x.h5", cwd=work)  # not on the path: not offered
    assert absent.returncode == 2 and "invalid choice: 'toyfam'" in absent.stderr

    cal = _spicenet("calibrate", "toyfam", "-o", "sur.h5", "--seed", "7", "--json", path=toy_site, cwd=work)
    assert cal.returncode == 0, cal.stderr
    from spicenet.surrogate import SurrogateFile

    sf = SurrogateFile.load(work / "sur.h5")
    assert sf.family == "toyfam" and sf.attrs["scale"] == 2.5 and sf.attrs["seed"] == 7  # the family's own TOML
    assert sf.params["level"].values.tolist() == [2.5, 5.0, 7.5]

    train = _spicenet("train", "toytrain", "--surrogate", "sur.h5", "-o", "run", "--epochs", "5", "--json",
                      path=toy_site, cwd=work)
    assert train.returncode == 0, train.stderr
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    assert metrics == {"steps": 5, "level_sum": 15.0}  # --epochs set the trainer's declared length key
    assert json.loads((work / "run" / "run.json").read_text())["family"] == "toyfam"

    val = _spicenet("validate", "run", "--chips", "2", "--json", path=toy_site, cwd=work)
    assert val.returncode == 0, val.stderr
    assert json.loads((work / "run" / "toy_validation.json").read_text())["chips"] == 2
    assert json.loads(val.stdout)["surrogate"]["level_sum"] == 15.0

    rejected = _spicenet("train", "toytrain", "--surrogate", str(ROOT / "spicenet" / "data" / "surrogates" /
                         "rng_quick_generic.h5"), "-o", "run2", path=toy_site, cwd=work)
    assert rejected.returncode == 2 and "trainer 'toytrain' needs a 'toyfam' one" in rejected.stderr


@pytest.mark.parametrize("entry, message", [
    ("broken = toyfam_nowhere:FAMILY", "cannot load: ModuleNotFoundError"),
    ("toyfam = toyfam_pkg:NOT_A_FAMILY", "is a dict, not a spicenet.families.Family"),
    ("other = toyfam_pkg:FAMILY", "the Family is named 'toyfam', the entry point 'other'"),
    ("rng = toyfam_pkg:FAMILY", "duplicate family name 'rng'"),
])
def test_a_bad_entry_point_is_a_one_line_error_naming_it(tmp_path: Path, toy_site: Path, entry: str,
                                                         message: str) -> None:
    shutil.rmtree(toy_site / "toyfam-0.1.dist-info")
    _dist(toy_site, "toybad", entry)
    proc = _spicenet("doctor", path=toy_site, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert f"entry point '{entry}'" in lines[0] and "toybad" in lines[0] and message in lines[0], lines[0]


def test_a_trainer_name_of_two_families_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import types
    from importlib import metadata

    import spicenet.families as fam

    module = types.ModuleType("toy_duplicate_trainer")
    module.FAMILY = fam.Family(name="toy2", trainers=(fam.Trainer("dtm"),))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "toy_duplicate_trainer", module)
    real = fam._entry_points()
    extra = metadata.EntryPoint("toy2", "toy_duplicate_trainer:FAMILY", fam.ENTRY_POINT_GROUP)
    monkeypatch.setattr(fam, "_entry_points", lambda: [*real, extra])
    fam.registered.cache_clear()
    try:
        with pytest.raises(fam.FamilyError, match="'toy2 = toy_duplicate_trainer:FAMILY'.*trainer 'dtm' is "
                           "already a trainer of family 'rng'"):
            fam.registered()
    finally:
        monkeypatch.undo()
        fam.registered.cache_clear()
    assert list(fam.registered())[:3] == ["rng", "oscillator", "resistive"]


# -- the fourth family, installed from examples/fourth_family --------------------------------------------------------
@pytest.fixture(scope="module")
def thermal_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/fourth_family built and installed by pip into a folder of its own (a copy is built, so that the
    checkout gets no build/ or egg-info)."""
    base = tmp_path_factory.mktemp("fourth")
    source = base / "src"
    shutil.copytree(ROOT / "examples" / "fourth_family", source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = base / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(site), str(source)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return site


def test_the_fourth_family_runs_through_calibrate_train_validate_report(thermal_site: Path, tmp_path: Path
                                                                         ) -> None:
    run = lambda *a: _spicenet(*a, path=thermal_site, cwd=tmp_path)  # noqa: E731
    cal = run("calibrate", "thermal", "--quick", "-o", "sur.h5", "--json")
    assert cal.returncode == 0, cal.stderr
    fit = json.loads(cal.stdout)["fit"]
    assert abs(fit["gamma"] - 1.0) < 5e-3 and fit["max_rel_err"] < 5e-3  # ngspice .noise against kT/C
    assert (tmp_path / "sur_ktc.png").read_bytes()[:4] == b"\x89PNG"

    train = run("train", "threshold", "--surrogate", "sur.h5", "--quick", "-o", "run", "--json")
    assert train.returncode == 0, train.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    design = json.loads((tmp_path / "run" / "config.json").read_text())["design"]
    sigma = math.sqrt(K_B * (design["temperature"] + 273.15) / design["capacitance"])  # analytic kT/C
    v_th = sigma * NormalDist().inv_cdf(1.0 - design["p_target"])  # P(v > v_th) = p for v ~ N(0, sigma^2)
    assert metrics["v_th_v"] == pytest.approx(v_th, rel=0.01)

    val = run("validate", "run", "--chips", "3", "--json")
    assert val.returncode == 0, val.stderr
    result = json.loads((tmp_path / "run" / "validation" / "validation.json").read_text())
    assert result["chips"] == 3 and len(result["spice"]["chips"]) == 3
    for chip in result["spice"]["chips"]:
        analytic = math.sqrt(K_B * (design["temperature"] + 273.15) / chip["capacitance_f"])
        assert chip["sigma_v"] == pytest.approx(analytic, rel=5e-3)  # the exported cell in ngspice
        assert chip["p_one"] == pytest.approx(1.0 - NormalDist(0.0, chip["sigma_v"]).cdf(metrics["v_th_v"]),
                                              abs=1e-9)
    assert abs(result["spice"]["p_one"] - design["p_target"]) < 0.02

    rep = run("report", "run", "-o", "page.html", "--json")
    assert rep.returncode == 0, rep.stderr
    page = (tmp_path / "page.html").read_text()
    assert "run: chips and yield" in page and "SPICE chips: P(1)" in page  # the family's report layout

    show = run("config", "show", "thermal", "threshold")  # the family's own schema, through spicenet's one path
    assert show.returncode == 0, show.stderr
    assert tomllib.loads(show.stdout) == {"design": {"p_target": 0.2, "capacitance": 1e-13, "temperature": 27.0},
                                          "train": {"steps": 400, "lr": 0.05, "batch_chips": 16}}
    assert "# sampling capacitor [F] (a number)" in show.stdout
    (tmp_path / "typo.toml").write_text("[train]\nsteps = 3\nbatch_chip = 4\n")
    bad = run("train", "threshold", "--surrogate", "sur.h5", "--config", "typo.toml", "-o", "run2")
    assert bad.returncode == 2 and "unknown key [train] batch_chip" in bad.stderr


def test_demo_family_runs_only_the_fourth_family(thermal_site: Path, tmp_path: Path) -> None:
    proc = _spicenet("demo", "--quick", "--family", "thermal", "--json", "-o", "demo", path=thermal_site,
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert list(result["families"]) == ["thermal"]
    assert [s["step"] for s in result["steps"]][2:] == ["thermal: calibrate", "thermal: train threshold",
                                                        "thermal: validate in SPICE", "thermal: report"]
    row = result["families"]["thermal"]
    assert row["missing"] == [] and row["trainer"] == "threshold"
    val = json.loads((tmp_path / "demo" / "thermal" / "run" / "validation" / "validation.json").read_text())
    assert row["spice_metric"]["value"] == val["spice"]["p_one"]  # the summary shows what the step wrote
    assert row["energy"]["spice_j"] == pytest.approx(val["spice"]["energy_per_bit_j"], rel=1e-12)
    steps = json.loads((tmp_path / "demo" / "thermal" / "run" / "config.json").read_text())["train"]["steps"]
    assert steps == 100  # the family's quick override reached the trainer
    assert "| thermal (threshold) |" in (tmp_path / "demo" / "summary.md").read_text()
