"""``spicenet report``: yield/log-normal numbers against hand counts and scipy, the page's tables against values
computed by hand from the synthetic run, self-containment (inline PNGs only, no script, escaped text), rendering in
headless Chromium (every image decodes), bad inputs, the CLI verb, and the file layout against the family writers.

The run directories are synthesised with the real writers (RunDir, SurrogateFile, spicenet.energy, train.plots) in
the layout the families write (see spicenet/cells/*/training.py, validation.py / validate.py)."""

from __future__ import annotations

import base64
import json
import math
import struct
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from spicenet import report
from spicenet.errors import DataError
from tests.conftest import ROOT, run_cli

PNG = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------------ helpers
class _Tables(HTMLParser):
    """Every <table> of a page as (caption, rows of cell texts); the <img> src attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[list[str], list[list[str]]]] = []
        self.imgs: list[str] = []
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append(([], []))
        elif tag == "tr" and self.tables:
            self.tables[-1][1].append([])
        elif tag in ("td", "th", "caption"):
            self._text = []
        elif tag == "img":
            self.imgs.append(dict(attrs).get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if self._text is None:
            return
        if tag in ("td", "th"):
            self.tables[-1][1][-1].append("".join(self._text))
        elif tag == "caption":
            self.tables[-1][0].append("".join(self._text))
        else:
            return
        self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def _parse(path: Path) -> _Tables:
    p = _Tables()
    p.feed(Path(path).read_text(encoding="utf-8"))
    return p


def _row(parsed: _Tables, first_cell: str, caption: str = "") -> list[str]:
    """The first row whose first cell starts with ``first_cell`` in a table whose caption contains ``caption``."""
    rows = [r for cap, t in parsed.tables if caption in "".join(cap) for r in t if r and r[0].startswith(first_cell)]
    assert rows, f"no table row starting with {first_cell!r} (caption {caption!r})"
    return rows[0]


def _png(path: Path, size: tuple[float, float] = (3, 2)) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=50)
    ax.plot([0, 1], [1, 0])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


FID_CHIPS = [9.0, 10.5, 11.0, 12.0, 20.0]  # spec 11 (set by the test) -> 3 of 5 chips pass
ACC_CHIPS = [0.79, 0.75, 0.70, 0.81]  # at a spec of 0.72: 3 of 4 chips pass
CONFUSION = [[5, 1, 0], [2, 7, 1], [0, 0, 4]]  # C[true, predicted]
VS_VALUES = [1.7e-4, 1.9e-4, 2.0e-4, 2.2e-4, 2.5e-4]


def _surrogate(path: Path) -> Path:
    from spicenet.surrogate import SurrogateFile, SurrogateParam

    SurrogateFile(
        family="rng", process="generic",
        params={"v0": SurrogateParam(np.array([-2e-3, 1e-3, 4e-3, -6e-3, 0.5e-3]), unit="V", description="bias"),
                "vs": SurrogateParam(np.array(VS_VALUES), unit="V", positive=True, description="slope")},
        energy={"energy_per_bit_j": 1e-16}, extra={"p_one": np.full((5, 3), 0.5)},
        attrs={"r2": 0.998}, provenance={"config": {"chips": 5}, "seed": 0, "mismatch": "pelgrom"},
    ).save(path)
    _png(path.with_name(path.stem + "_p1.png"))
    return path


def _run(path: Path, surrogate: Path, family: str, trainer: str, metrics: dict, validation: tuple[str, dict]) -> Path:
    from spicenet.train import RunDir
    from spicenet.train.plots import plot_curves

    run = RunDir.create(path, {"lr": 0.05, "note": "<script>alert(1)</script>"}, surrogate=surrogate, seed=3)
    meta = run.meta()
    meta.update({"family": family, "trainer": trainer, "quick": True})
    (run.path / "run.json").write_text(json.dumps(meta))
    for epoch in range(5):
        run.log_metrics(epoch, loss=1.0 / (epoch + 1), accuracy=0.5 + 0.05 * epoch)
    run.write_final_metrics(metrics)
    plot_curves(list(range(5)), {"loss": [1, 0.5, 0.3, 0.2, 0.1]}, run.plots / "loss_curves.png")
    run.save_sample_grid(np.random.default_rng(0).random((4, 5, 5)), "samples_nominal.png")
    name, data = validation
    (run.path / name).parent.mkdir(parents=True, exist_ok=True)
    (run.path / name).write_text(json.dumps(data))
    _png(run.path / ("validation/validation.png" if name.startswith("validation/") else "plots/validate.png"))
    return run.path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo-like folder: rng/{surrogate.h5, surrogate_p1.png, run/}, resistive/run/, summary.md."""
    from spicenet.cells.rng.family import dtm_energy

    root = tmp_path_factory.mktemp("demo")
    sur = _surrogate(root / "rng" / "surrogate.h5")
    energy = dtm_energy(1e-16, n_cells=324, sweeps_per_step=10, steps=4)
    _run(root / "rng" / "run", sur, "rng", "dtm",
         {"fid_spicenet_fashion": 10.0, "chips": {"fid_values": FID_CHIPS, "n": 5}, "energy": energy,
          "energy_per_sample_j": energy["energy_j"]},
         ("validation/validation.json", {
             "surrogate": {"energy_per_sample_j": 4e-16, "tv_same_chips_mean": 0.03},
             "spice": {"energy_per_sample_j": 6e-16, "chips": [
                 {"chip": 0, "tv_vs_exact": 0.05, "energy_per_sample_j": 5e-16, "counts": [1, 2]},
                 {"chip": 1, "tv_vs_exact": 0.12, "energy_per_sample_j": 7e-16, "counts": [2, 1]}]},
             "gap": {"tv_distance": 0.085}, "chips": 2}))
    _run(root / "resistive" / "run", sur, "resistive", "eqprop",
         {"test_accuracy": 0.80, "chip_accuracies": ACC_CHIPS, "test_accuracy_no_injection": 0.82,
          "chip_accuracies_no_injection": [0.6, 0.7, 0.5, 0.81], "confusion_matrix": CONFUSION},
         ("validate.json", {"surrogate": {"accuracy": 0.8}, "spice": {"accuracy": 0.79, "confusion_matrix": [[1, 2]]},
                            "gap": {"accuracy_pp": 1.0}, "energy_per_inference_j": 2.5e-12,
                            "per_chip": [{"chip": 0, "spice_accuracy": 0.78, "energy_per_inference_j": 2e-12},
                                         {"chip": 1, "spice_accuracy": 0.80, "energy_per_inference_j": 3e-12}]}))
    (root / "resistive" / "run" / "plots" / "broken.png").write_bytes(b"not a png")  # noted, not inlined
    (root / "summary.md").write_text("# spicenet demo\n| step | ok |\n")
    return root


# ------------------------------------------------------------------------------------------------ numbers
def test_yield_counts_by_hand() -> None:
    assert report.yield_at(FID_CHIPS, 11.0) == pytest.approx(3 / 5)  # 9, 10.5, 11 <= 11
    assert report.yield_at(ACC_CHIPS, 0.72, higher_is_better=True) == pytest.approx(3 / 4)  # all but 0.70
    t, y = report.yield_curve([2.0, 1.0, 1.0])
    np.testing.assert_array_equal(t, [1.0, 1.0, 2.0])
    np.testing.assert_allclose(y, [2 / 3, 2 / 3, 1.0])  # ties: both chips at 1.0 pass a spec of 1.0
    t, y = report.yield_curve(ACC_CHIPS, higher_is_better=True)
    np.testing.assert_array_equal(t, [0.70, 0.75, 0.79, 0.81])
    np.testing.assert_allclose(y, [1.0, 0.75, 0.5, 0.25])
    with pytest.raises(ValueError, match="values"):
        report.yield_curve([])
    with pytest.raises(ValueError, match="values"):
        report.yield_at([1.0, float("nan")], 1.0)
    with pytest.raises(ValueError, match="spec"):
        report.yield_at([1.0], float("inf"))


@pytest.mark.parametrize("mean,std", [(1.0, 0.1), (2e-4, 3e-5), (3.7e-8, 1.8e-8), (5.0, 7.5)])
def test_lognormal_overlay_has_the_surrogate_moments(mean: float, std: float) -> None:
    mu, s = report.lognormal_from_moments(mean, std)
    dist = stats.lognorm(s, scale=math.exp(mu))
    assert dist.mean() == pytest.approx(mean, rel=1e-12)
    assert dist.std() == pytest.approx(std, rel=1e-9)
    assert report.lognormal_from_moments(mean, 0.0) == pytest.approx((math.log(mean), 0.0))  # no spread
    with pytest.raises(ValueError, match="mean"):
        report.lognormal_from_moments(-1.0, 0.1)
    with pytest.raises(ValueError, match="std"):
        report.lognormal_from_moments(1.0, -0.1)


def test_confusion_counts_checks_its_input() -> None:
    np.testing.assert_array_equal(report.confusion_counts(CONFUSION), CONFUSION)
    for bad in ([[1, 2]], [[1, -1], [0, 2]], [[0.5, 1], [1, 1]], [[0, 0], [0, 0]]):
        with pytest.raises(ValueError, match="confusion_matrix"):
            report.confusion_counts(bad)


# ------------------------------------------------------------------------------------------------ pages
def _check_self_contained(path: Path, images: int) -> _Tables:
    text = path.read_text(encoding="utf-8")
    parsed = _parse(path)
    assert len(parsed.imgs) == images
    for src in parsed.imgs:
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data.startswith(PNG)
        width, height = struct.unpack(">II", data[16:24])
        assert width > 0 and height > 0
    low = text.lower()
    assert "<script" not in low and "<link" not in low and "http://" not in low and "https://" not in low
    return parsed


def test_run_report_tables_and_images(demo: Path, tmp_path: Path) -> None:
    run = demo / "rng" / "run"
    out = tmp_path / "r.html"
    res = report.build_report(run, out, progress=False, specs={"chips.fid_values": 11.0})  # a user-set spec
    assert res["report"] == str(out) and res["kind"] == "run"
    titles = " | ".join(res["sections"])
    for part in ("calibration", "mismatch", "provenance", "training", "samples", "metrics", "chips and yield",
                 "energy", "surrogate vs SPICE"):
        assert part in titles
    on_disk = [*run.glob("plots/*.png"), *run.glob("validation/*.png"), demo / "rng" / "surrogate_p1.png"]
    derived = 4  # parameter histograms, metrics.csv curves, yield curve, energy chart
    assert res["images"] == len(on_disk) + derived == 8
    parsed = _check_self_contained(out, res["images"])
    text = out.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # the config value, escaped

    fid = _row(parsed, "FID over held-out chips")
    assert fid[1] == "metrics: chips.fid_values"
    # columns: metric, chips, nominal, mean, best, worst, spec, yield at spec
    assert fid[2:] == ["5", "10", f"{np.mean(FID_CHIPS):.4g}", "9", "20", "11", "0.6"]
    tv = _row(parsed, "SPICE chips: TV distance to exact")
    assert tv[2:] == ["2", "None", "0.085", "0.05", "0.12", "None", "None"]
    # E = T K N E_bit = 4 * 10 * 324 * 1e-16 J
    e = _row(parsed, "pbit_updates")
    assert float(e[1]) == pytest.approx(4 * 10 * 324 * 1e-16, rel=1e-3) and e[2] == "1.296 pJ"
    assert _row(parsed, "validation spice: energy_per_sample_j")[2] == "600 aJ"
    vs = _row(parsed, "vs", "mismatch distribution")  # mismatch table: unit, mean, std, std/|mean|
    assert vs[1] == "V" and float(vs[2]) == pytest.approx(np.mean(VS_VALUES), rel=1e-3)
    assert float(vs[3]) == pytest.approx(np.std(VS_VALUES, ddof=1), rel=1e-3)
    assert float(vs[4]) == pytest.approx(np.std(VS_VALUES, ddof=1) / np.mean(VS_VALUES), rel=1e-3)
    assert _row(parsed, "seed", "run.json")[1] == "3"  # provenance from run.json
    from spicenet.train import RunDir

    assert report.read_rows(run / "metrics.csv") == RunDir(run).read_metrics()  # torch-free reader


def test_demo_report_renders_in_chromium(demo: Path, tmp_path: Path) -> None:
    res = report.build_report(demo, progress=False,  # a user-set spec, by the row label (3 of 4 chips >= 0.72)
                              specs={"accuracy over held-out chips (mismatch-aware)": 0.72})
    assert res["kind"] == "demo" and res["report"] == str(demo / "report.html")
    assert res["sections"][0].startswith("demo summary")
    assert any(s.startswith("rng/run:") for s in res["sections"])
    assert any(s.startswith("resistive/run:") for s in res["sections"])
    assert sum(s.startswith("rng/surrogate: calibration") for s in res["sections"]) == 1  # not repeated per run
    parsed = _check_self_contained(Path(res["report"]), res["images"])
    assert "broken.png: not a readable PNG, left out" in Path(res["report"]).read_text()
    counts = [t for cap, t in parsed.tables if "confusion_matrix (counts)" in "".join(cap)]
    assert len(counts) == 1 and counts[0][1:] == [[str(i), *map(str, row)] for i, row in enumerate(CONFUSION)]
    assert "spice.confusion_matrix: confusion_matrix: expected a square K x K table" in Path(res["report"]).read_text()
    acc = _row(parsed, "accuracy over held-out chips (mismatch-aware)")
    assert acc[2:] == ["4", "0.8", f"{np.mean(ACC_CHIPS):.4g}", "0.81", "0.7", "0.72", "0.75"]
    plain = _row(parsed, "accuracy over held-out chips (no injection)")  # no spec set: none invented
    assert plain[-2:] == ["None", "None"]
    shot = tmp_path / "shot.png"
    r = report.render_in_chromium(Path(res["report"]), shot, window=(1000, 1600))  # fails if chromium is missing
    assert r["returncode"] == 0
    assert r["images"] == res["images"] and r["broken"] == 0 and r["errors"] == []
    assert len(r["widths"]) == res["images"] and min(r["widths"]) > 0
    data = shot.read_bytes()
    assert data.startswith(PNG) and struct.unpack(">II", data[16:24]) == (1000, 1600)


def test_broken_image_is_detected_by_chromium(tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    good = base64.b64encode(_png(tmp_path / "a.png").read_bytes()).decode()
    page.write_text(f'<html><body><img src="data:image/png;base64,{good}"><img src="data:image/png;base64,AAAA">'
                    "</body></html>")
    r = report.render_in_chromium(page)
    assert r["returncode"] == 0 and r["images"] == 2 and r["broken"] == 1


def test_calibration_file_and_folder(demo: Path, tmp_path: Path) -> None:
    sur = demo / "rng" / "surrogate.h5"
    res = report.build_report(sur, progress=False)
    assert res["kind"] == "calibration" and res["report"] == str(sur.with_name("surrogate_report.html"))
    assert res["images"] == 2  # surrogate_p1.png + derived histograms
    _check_self_contained(Path(res["report"]), 2)
    folder = tmp_path / "cal"
    _surrogate(folder / "s.h5")
    res = report.build_report(folder, progress=False)
    assert res["kind"] == "calibration" and len(res["sections"]) == 2 and res["images"] == 2


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    import h5py

    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    with h5py.File(tmp_path / "store.h5", "w") as f:
        f.create_group("runs")
    for bad, words in ((tmp_path / "missing", "no such"), (tmp_path / "empty", "nothing to report"),
                       (tmp_path / "notes.txt", "not a run directory"), (tmp_path / "store.h5", "not a run")):
        with pytest.raises(DataError) as info:
            report.build_report(bad, progress=False)
        msg = str(info.value)
        assert str(bad) in msg and words in msg and "\n" not in msg


def test_cli_verb(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.html"
    proc = run_cli("report", str(demo / "rng" / "surrogate.h5"), "-o", str(out), "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["report"] == str(out) and res["kind"] == "calibration" and res["images"] == len(_parse(out).imgs) == 2
    assert res["sections"] == ["surrogate: calibration (rng)", "surrogate: mismatch (rng)"]
    proc = run_cli("report", str(tmp_path / "nope"), timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and str(tmp_path / "nope") in proc.stderr


def test_layout_matches_the_family_writers() -> None:
    """The file names and JSON keys each family's report layout (Family.report) looks for are ones that family's
    own modules write (its folder spicenet/cells/<family>/, read as text here)."""
    from spicenet.families import registered

    cells = ROOT / "spicenet" / "cells"
    sources = {p.relative_to(cells).as_posix(): p.read_text() for p in cells.glob("*/*.py")}
    assert '"validation.json"' in sources["rng/validation.py"] and 'out_dir / "validation.json"' in sources[
        "rng/validation.py"]
    assert '"validation.json"' in sources["oscillator/validation.py"]
    assert '"validate.json"' in sources["resistive/validate.py"]
    for name in ("rng", "oscillator", "resistive"):
        where = registered()[name].report
        own = "\n".join(text for rel, text in sources.items() if rel.startswith(f"{name}/") and rel != f"{name}/family.py")
        for vfile in where.validation_files:
            assert f'"{Path(vfile).name}"' in own, (name, vfile)
        assert where.chip_series and where.chip_energy, name
        for _, path, *_ in where.chip_series:
            leaf = path.split(".")[-1]
            if leaf.endswith("_no_injection"):  # resistive/train.py writes key + suffix
                assert '"_no_injection"' in sources["resistive/train.py"]
                leaf = leaf.removesuffix("_no_injection")
            assert f'"{leaf}"' in own, f"{name} {path}: key {leaf!r} not written by the family"
        for path, _ in where.chip_energy:
            assert f'"{path.split(".")[-1]}"' in own, (name, path)
