"""``spicenet demo --quick --json``: the whole loop (SPICE calibration -> surrogate training -> SPICE validation) of
every family, run once per module in a subprocess (~2-3 min on 2 cores), plus fast checks of the demo's own helpers.

What the numbers are checked against (independent of the demo code):
* ranges set by physics or by the metric's definition: probabilities and TV distances in [0, 1] (TV is half an L1
  distance between two distributions), a logistic fit of measured P(1) with r2 > 0.9, energies between 1e-18 J and
  1e-3 J and above the Landauer bound k_B T ln 2 per bit produced;
* bounds that relate two numbers of a run: a generator's FID is not below the real-data floor (train vs test
  images), the pixel MAE lies between flipped/2 and flipped + (1 - flipped)/2 for the share of pixels flipped, two
  classifiers agreeing on a share a of the inputs differ in accuracy by at most 1 - a;
* the families' own files on disk (metrics.json, validation.json, validate.json), read here with plain json:
  the summary must report the numbers the steps wrote, not numbers of its own;
* the core sweep's mirror spread against the subthreshold Pelgrom law sigma(ln(Iout/Iref)) = sqrt(2) sigma_Vt / (n V_T)
  being independent of Iref (the same spread at 1, 10, 100 nA within sampling error).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import run_cli

FAMILY_STEPS = ("calibrate", "train", "validate in SPICE")
K_B = 1.380649e-23  # J/K (SI, exact)
LANDAUER_300K = K_B * 300.0 * math.log(2.0)  # J per bit


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc = run_cli("demo", "--quick", "--json", "-o", str(out), timeout=900)
    assert proc.stdout.strip(), f"no JSON on stdout; stderr tail:\n{proc.stderr[-3000:]}"
    result = json.loads(proc.stdout)
    return {"out": out, "proc": proc, "result": result}


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# -- the demo run ------------------------------------------------------------------------------------------------
def test_every_step_ok_and_exit_status_zero(demo):
    result, proc = demo["result"], demo["proc"]
    failed = [(s["step"], s.get("error")) for s in result["steps"] if not s["ok"]]
    assert not failed, failed
    assert result["ok"] is True
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert exactly_one_json_object(proc.stdout)
    names = [s["step"] for s in result["steps"]]
    assert names[:2] == ["doctor", "core: Monte-Carlo sweep of a subthreshold current mirror"]
    for family in ("rng", "oscillator", "resistive"):
        for step in FAMILY_STEPS:
            assert any(n.startswith(f"{family}: {step.split()[0]}") for n in names), (family, step, names)
    for s in result["steps"]:
        assert _finite(s["wall_s"]) and s["wall_s"] >= 0
        assert isinstance(s["result"], dict)
    assert _finite(result["wall_s"]) and result["wall_s"] >= sum(s["wall_s"] for s in result["steps"]) - 1.0


def exactly_one_json_object(stdout: str) -> bool:
    decoder = json.JSONDecoder()
    text = stdout.strip()
    _, end = decoder.raw_decode(text)
    return text[end:].strip() == ""


def test_family_rows_have_finite_numbers_in_sane_ranges(demo):
    fams = demo["result"]["families"]
    assert set(fams) == {"rng", "oscillator", "resistive"}
    for family, row in fams.items():
        assert row["missing"] == [], (family, row["missing"])
        for name, v in row["fit"].items():
            assert _finite(v), (family, name, v)
        for col in ("surrogate_metric", "spice_metric", "gap"):
            assert _finite(row[col]["value"]), (family, col, row[col])
        spice_e = row["energy"]["spice_j"]
        assert _finite(spice_e) and 1e-18 < spice_e < 1e-3, (family, spice_e)
        if row["energy"]["surrogate_j"] is not None:
            assert 1e-18 < row["energy"]["surrogate_j"] < 1e-3, (family, row["energy"])

    out = demo["out"]
    rng = fams["rng"]
    assert rng["fit"]["r2 (worst chip)"] > 0.9
    assert 0.0 <= rng["fit"]["max_abs_err P(1)"] <= 0.2  # a P(1) error, at most a few binomial stds
    # no generator beats real data: the FID of real training images against the test images (same feature net,
    # same count) is the floor, up to the sampling noise of 200 images
    rng_metrics = json.loads((out / "rng" / "run" / "metrics.json").read_text())
    assert rng["surrogate_metric"]["value"] >= 0.8 * rng_metrics["fid_floor_train_vs_test"] > 0.0
    assert 0.0 <= rng["spice_metric"]["value"] <= 1.0
    assert 0.0 <= rng["gap"]["value"] <= 1.0

    osc = fams["oscillator"]
    assert 0.0 <= osc["fit"]["max_rel_err locked phase"] < 1.0
    osc_val = json.loads((out / "oscillator" / "run" / "validation.json").read_text())
    fid_spice, fid_sur = osc_val["spice"]["fid"], osc_val["surrogate"]["fid"]
    assert osc["spice_metric"]["value"] == fid_spice and fid_spice > 0.0 and fid_sur > 0.0  # 2 images: a smoke test
    assert osc_val["gap"]["fid_rel"] == pytest.approx(abs(fid_spice - fid_sur) / fid_sur, rel=1e-9)
    # pixel MAE against the share of pixels flipped across 1/2: each flipped pixel differs by more than 1/2, every
    # other one by at most 1/2, so flipped / 2 <= MAE <= flipped + (1 - flipped) / 2
    flipped = osc_val["gap"]["pixels_flipped"]
    assert flipped / 2.0 <= osc["gap"]["value"] <= flipped + (1.0 - flipped) / 2.0
    assert 1e9 < osc["extra"]["f0_hz"] < 2e10  # a 3-stage ring at 1.2 V: GHz

    res = fams["resistive"]
    assert res["fit"]["diode r2 (worst device)"] > 0.99
    assert 0.1 < res["surrogate_metric"]["value"] <= 1.0  # above chance (10 classes)
    assert 0.1 < res["spice_metric"]["value"] <= 1.0
    # two classifiers that agree on a share a of the same inputs differ in accuracy by at most 1 - a (per chip)
    res_val = json.loads((out / "resistive" / "run" / "validate.json").read_text())
    for chip in res_val["per_chip"]:
        assert abs(chip["gap_pp"]) <= 100.0 * (1.0 - chip["prediction_agreement"]) + 1e-9, chip
    assert abs(res["gap"]["value"]) <= 100.0 * (1.0 - res["extra"]["prediction_agreement"]) + 1e-9
    assert res["gap"]["value"] == pytest.approx(sum(c["gap_pp"] for c in res_val["per_chip"])
                                                / len(res_val["per_chip"]), rel=1e-12)


def test_rng_validation_runs_the_whole_trained_machine(demo):
    """The whole-machine part of the rng validation simulated every cell of the trained grid for every one of the
    T chained steps, for the images the demo asked for (its overrides: 4 images on 1 chip), with the couplings as
    mapped (the default: no gain trim), and its FID gap is the stated normalisation of its own two FIDs. Checked
    against the run's training config and the demo's overrides, read independently here."""
    run = demo["out"] / "rng" / "run"
    tcfg = json.loads((run / "config.json").read_text())
    val = json.loads((run / "validation" / "validation.json").read_text())
    gap, whole = val["gap"], val["whole_machine"]
    assert gap["cells_simulated"] == gap["grid_cells"] == tcfg["grid"] ** 2
    assert gap["steps"] == tcfg["steps"]
    assert gap["images"] == 4 and gap["machine_chip_count"] == 1
    assert gap["coupling_gain_trim"] == 1.0 and whole["gain_trim_mode"] == "none"
    fid_spice, fid_sur = val["spice"]["fid"], val["surrogate"]["fid"]
    assert fid_spice > 0 and fid_sur > 0
    assert gap["fid_rel"] == pytest.approx(abs(fid_spice - fid_sur) / fid_sur, rel=1e-9)
    # a probability difference, from one read per image (the override)
    assert 0.0 < gap["marginal_mae"] <= 1.0 and gap["reads_per_image"] == 1


def test_energies_exceed_landauer_bound(demo):
    """A p-bit sample of n cells produces n random bits: it cannot cost less than n k_B T ln 2 (T = 300 K)."""
    rng_val = json.loads((demo["out"] / "rng" / "run" / "validation" / "validation.json").read_text())
    n_cells = rng_val["machine"]["n_cells"]
    assert demo["result"]["families"]["rng"]["energy"]["spice_j"] > n_cells * LANDAUER_300K


def test_summary_reports_the_numbers_the_steps_wrote(demo):
    """The table's numbers are the ones in the families' own output files (read independently here)."""
    out, fams = demo["out"], demo["result"]["families"]
    rng_val = json.loads((out / "rng" / "run" / "validation" / "validation.json").read_text())
    rng_metrics = json.loads((out / "rng" / "run" / "metrics.json").read_text())
    assert fams["rng"]["spice_metric"]["value"] == pytest.approx(rng_val["spice"]["tv_vs_exact_mean"], rel=1e-12)
    assert fams["rng"]["energy"]["spice_j"] == pytest.approx(rng_val["spice"]["energy_per_sample_j"], rel=1e-12)
    assert fams["rng"]["surrogate_metric"]["value"] == pytest.approx(rng_metrics["fid_spicenet_fashion"], rel=1e-12)
    osc_val = json.loads((out / "oscillator" / "run" / "validation.json").read_text())
    assert fams["oscillator"]["spice_metric"]["value"] == pytest.approx(osc_val["spice"]["fid"], rel=1e-12)
    res_val = json.loads((out / "resistive" / "run" / "validate.json").read_text())
    assert fams["resistive"]["spice_metric"]["value"] == pytest.approx(res_val["spice"]["accuracy"], rel=1e-12)
    assert fams["resistive"]["energy"]["spice_j"] == pytest.approx(res_val["energy_per_inference_j"], rel=1e-12)


def test_summary_files_and_plots_exist(demo):
    out, result = demo["out"], demo["result"]
    summary = Path(result["summary"])
    assert summary == out / "summary.md" and summary.is_file()
    text = summary.read_text()
    for family in ("rng", "oscillator", "resistive"):
        assert f"| {family} (" in text
        pngs = sorted((out / family).rglob("*.png"))
        assert len(pngs) >= 2, (family, pngs)
        for p in pngs:
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", p
            rel = str(p.relative_to(out))
            assert f"]({rel})" in text, rel
    for s in result["steps"]:
        if s["step"].endswith(": report"):  # present once spicenet.report exists
            page = Path(s["result"]["report"])
            assert page.is_file() and page.stat().st_size > 0
            assert f"]({page.relative_to(out)})" in text
    assert json.loads((out / "summary.json").read_text())["ok"] is True
    assert "## Quick-mode settings" in text  # the quick demo says what it shrank


def test_core_sweep_spread_is_independent_of_iref(demo):
    """Subthreshold mirror: Iout/Iref = exp(dVt / (n V_T)), so sigma(ln(Iout/Iref)) does not depend on Iref (it
    falls slowly towards moderate inversion, where gm/Id drops). The same 20 chips serve every Iref, so sampling
    error largely cancels in the ratio; allow a factor 1.8."""
    core = demo["result"]["steps"][1]["result"]
    spread = core["sigma_ln_iout_over_iref"]
    values = [spread[k] for k in ("1n", "10n", "100n")]
    assert all(v > 0 for v in values)
    assert max(values) / min(values) < 1.8
    assert core["failed"] == 0 and core["done"] == 60


# -- the demo's helpers (fast, no simulation) --------------------------------------------------------------------
def test_quick_overrides_name_existing_keys():
    """Every quick override names a key of the shipped settings (read here with the families' own loaders), and
    applying the table changes exactly those keys without touching the shipped config."""
    import dataclasses
    import tomllib

    from spicenet.demo import apply_overrides, quick_overrides, shipped_value
    from spicenet.families import get_family

    root = Path(__file__).resolve().parents[1]
    overrides = quick_overrides()
    assert {o.family for o in overrides} >= {"rng", "oscillator", "resistive"}
    for o in overrides:
        assert o.stage in ("calibration", "training", "validation") and o.why
        family = get_family(o.family)
        assert o in family.quick_overrides  # each family's table holds only its own rows
        if o.stage == "validation":
            if o.key == "chips":
                assert isinstance(o.value, int) and o.value >= 0
                continue
            fields = {f.name for f in dataclasses.fields(type(family.validation_defaults()))}
            assert o.key in fields, (o.family, o.key)
            continue
        name = o.family if o.stage == "calibration" else family.trainers[0].name
        shipped = tomllib.loads((root / o.stage / f"{name}_quick.toml").read_text())  # the file, read directly
        value = shipped
        for part in o.key.split("."):
            value = value[part]
        assert shipped_value(o) == value
        changed = apply_overrides(shipped, o.family, o.stage)
        value = changed
        for part in o.key.split("."):
            value = value[part]
        assert value == o.value
        assert family.config(o.stage, name, True) == shipped  # the shipped config is not mutated


def test_apply_overrides_sets_nested_keys_and_rejects_unknown_ones():
    from spicenet.demo import Override, apply_overrides

    config = {"a": 1, "sec": {"b": 2, "c": [1, 2]}}
    table = (Override("f", "training", "sec.b", 5, "x"), Override("f", "training", "a", 7, "y"),
             Override("g", "training", "a", 9, "other family"))
    out = apply_overrides(config, "f", "training", table)
    assert out == {"a": 7, "sec": {"b": 5, "c": [1, 2]}}
    assert config == {"a": 1, "sec": {"b": 2, "c": [1, 2]}}
    with pytest.raises(ValueError, match="sec.zz"):
        apply_overrides(config, "f", "training", (Override("f", "training", "sec.zz", 1, "typo"),))
    with pytest.raises(ValueError, match="a.b"):
        apply_overrides(config, "f", "training", (Override("f", "training", "a.b", 1, "not a table"),))
    with pytest.raises(ValueError, match="stage"):
        apply_overrides(config, "f", "validation", table)


def test_row_of_a_family_marks_missing_values_as_none():
    from spicenet.demo import family_row

    results = {"calibrate": {"fit": {"r2": 0.99, "max_abs_err": float("nan")}},
               "train": {"metrics": {"fid_spicenet_fashion": 7.5, "energy_per_sample_j": 1e-12}},
               "validate": None}
    row = family_row("rng", results, 12.345)
    assert row["fit"] == {"r2 (worst chip)": 0.99, "max_abs_err P(1)": None}
    assert row["surrogate_metric"]["value"] == 7.5
    assert row["spice_metric"]["value"] is None and row["energy"]["spice_j"] is None
    assert "calibrate:fit.max_abs_err" in row["missing"]
    assert "validate:spice.tv_vs_exact_mean" in row["missing"]
    assert row["wall_s"] == 12.35
    with pytest.raises(ValueError, match="family"):
        family_row("nope", results, 0.0)


def test_a_failed_step_gives_exit_status_1_and_still_one_json_object(monkeypatch, capsys, tmp_path):
    """The CLI contract: exactly one JSON object on stdout, a one-line error on stderr, non-zero exit status."""
    import spicenet.demo as demo_mod
    from spicenet.cli import main

    fake = {"steps": [{"step": "doctor", "ok": True, "wall_s": 0.1, "cpu_s": 0.1, "result": {}},
                      {"step": "rng: calibrate", "ok": False, "wall_s": 0.2, "cpu_s": 0.2, "error": "boom"}],
            "families": {}, "summary": str(tmp_path / "summary.md"), "ok": False, "wall_s": 0.3, "cpu_s": 0.3}
    monkeypatch.setattr(demo_mod, "run_demo", lambda out, quick, workers, seed, families: fake)
    assert main(["demo", "--quick", "--json", "-o", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert exactly_one_json_object(captured.out)
    assert json.loads(captured.out)["ok"] is False
    err_lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(err_lines) == 1 and "rng: calibrate" in err_lines[0]


def test_validation_settings_replace_config_fields_and_are_checked(monkeypatch, tmp_path):
    """The protocol's `settings` reach the rng validation config (quick defaults otherwise); an unknown field, or
    settings for a family whose validation has none, are one-line ConfigErrors."""
    import spicenet.cells.rng.validation as rv
    from spicenet.errors import ConfigError
    from spicenet.families import family_module

    seen = {}
    monkeypatch.setattr(rv, "validate", lambda run_dir, **kw: seen.update(kw) or {})
    family_module("rng").validate(tmp_path, chips=1, quick=True, workers=1, seed=0, settings={"samples": 12345})
    assert seen["config"].samples == 12345
    assert seen["config"].n_cells == rv.ValidationConfig.quick().n_cells
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        family_module("rng").validate(tmp_path, chips=1, quick=True, workers=1, seed=0, settings={"bogus": 1})
    with pytest.raises(ConfigError, match="unknown key 'x'"):
        family_module("resistive").validate(tmp_path, chips=1, quick=True, workers=1, seed=0, settings={"x": 1})
    import spicenet.cells.resistive.validate as resv

    monkeypatch.setattr(resv, "validate_resistive", lambda run_dir, **kw: seen.update(kw) or {})
    family_module("resistive").validate(tmp_path, chips=1, quick=True, workers=1, seed=0, settings={"n_test": 7})
    assert seen["config"].n_test == 7 and seen["config"].source == "auto" and seen["config"].method == "sweep"
    family_module("resistive").validate(tmp_path, chips=1, quick=True, workers=1, seed=0,
                                        settings={"method": "op", "timeout_s": 3600, "sweep_inputs": 5})
    c = seen["config"]
    assert (c.method, c.timeout_s, c.sweep_inputs) == ("op", 3600, 5)
    for bad in ({"n_test": 0}, {"n_test": 2.5}, {"source": "nowhere"}, {"method": "tran"}, {"sweep_inputs": 0},
                {"timeout_s": 0}, {"timeout_s": True}):
        with pytest.raises(ConfigError, match="resistive validation: (n_test|source|method|sweep_inputs|timeout_s)"):
            family_module("resistive").validate(tmp_path, chips=1, quick=True, workers=1, seed=0, settings=bad)
    from spicenet.families import no_settings  # the helper for a plug-in family whose validation has no settings

    with pytest.raises(ConfigError, match="no settings"):
        no_settings("toy", {"x": 1})
    no_settings("toy", None)
