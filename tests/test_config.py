"""The one config path (spicenet.config): every shipped config loads through its family's schema, the schemas
render to TOML that loads back to their defaults, and bad input is a one-line ConfigError naming the key's path."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from spicenet.cli import main
from spicenet.config import as_sections, defaults, describe, load_config, setting
from spicenet.errors import ConfigError
from spicenet.families import registered

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Toy:
    """A schema of every kind of field the loader handles."""

    rate: float = setting(1.0, "a rate", unit="1/s", section="model")
    count: int = setting(3, "a count", section="model")
    on: bool = setting(True, "a switch", section="train")
    name: str = setting("a", "a name", section="train")
    widths: list[int] = setting([4, 2], "layer widths", section="model")
    step: float = setting(1e-9, "a top-level step", unit="s")
    seed: int = 0  # not settable from TOML

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"[model] count = {self.count!r} is out of range")


def _lists(value):
    """Tuples as lists, recursively (TOML has arrays only)."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return [_lists(v) for v in value] if isinstance(value, (list, tuple)) else value


def _schemas():
    for family in registered().values():
        for name, schema in family.schemas.items():
            yield family, name, schema()


def _config_files():
    """(family, schema name, path) of every shipped TOML that a registered schema reads."""
    by_trainer = {name: (family, name) for family, name, _ in _schemas() if name != "calibration"}
    calibrations = {family.calibration_config or family.name: family for family, name, _ in _schemas()
                    if name == "calibration"}
    for path in sorted((ROOT / "training").glob("*.toml")):
        stem = path.stem
        hits = [t for t in by_trainer if stem == t or stem.startswith(t + "_")]
        if hits:
            yield by_trainer[hits[0]][0], hits[0], path
    for path in sorted((ROOT / "calibration").glob("*.toml")):
        base = path.stem.removesuffix("_quick")
        if base in calibrations:
            yield calibrations[base], "calibration", path


def test_every_family_offers_its_schemas():
    names = {(family.name, name) for family, name, _ in _schemas()}
    # every trainer of a registered family with schemas has one (a trainer without one cannot be shown)
    for family in registered().values():
        if family.schemas:
            for trainer in family.trainer_names:
                assert (family.name, trainer) in names, f"{family.name}: trainer {trainer} has no schema"


@pytest.mark.parametrize("family,name,path", list(_config_files()), ids=lambda v: getattr(v, "name", str(v)))
def test_shipped_config_loads_through_its_schema(family, name, path):
    schema = family.schemas[name]()
    raw = tomllib.loads(path.read_text())
    if name == "calibration":
        raw = {k: v for k, v in raw.items() if k != "process"}  # per-process override tables
    fixed = {"seed": 0} if "seed" in schema.__dataclass_fields__ else {}
    cfg = load_config(schema, raw, str(path), **fixed)
    # what the file sets is what the config holds (ints given for floats compare equal)
    flat = as_sections(cfg)
    for section, values in raw.items():
        for key, value in (values.items() if isinstance(values, dict) else [(section, values)]):
            got = flat[section][key] if isinstance(values, dict) else flat[key]
            assert _lists(got) == value, f"{path.name}: [{section}] {key}"


def test_there_are_shipped_configs_for_every_schema_kind():
    seen = {(f.name, n) for f, n, _ in _config_files()}
    assert {("rng", "dtm"), ("oscillator", "ais"), ("resistive", "eqprop"), ("resistive", "ffebm"),
            ("rng", "calibration")} <= seen


@pytest.mark.parametrize("family,name,schema", list(_schemas()),
                         ids=lambda v: v.name if hasattr(v, "trainers") else getattr(v, "__name__", str(v)))
def test_describe_renders_toml_that_loads_back_to_the_defaults(family, name, schema):
    text = describe(schema, f"{family.name} {name}")
    parsed = tomllib.loads(text)
    assert parsed == _lists(defaults(schema))
    fixed = {"seed": 0} if "seed" in schema.__dataclass_fields__ else {}
    assert load_config(schema, parsed, "described", **fixed) == schema(**fixed)
    # every settable key is documented in the text, next to its default
    for section, keys in (("", [k for k, v in parsed.items() if not isinstance(v, dict)]),
                          *[(s, list(v)) for s, v in parsed.items() if isinstance(v, dict)]):
        for key in keys:
            line = next(i for i, ln in enumerate(text.splitlines()) if ln.startswith(f"{key} = "))
            assert text.splitlines()[line - 1].startswith("# "), f"{section}.{key} has no doc line"


def test_load_config_reads_types_and_sections():
    cfg = load_config(Toy, {"model": {"rate": 2, "widths": [8]}, "train": {"on": False}, "step": 5}, "toy",
                      seed=7)
    assert cfg == Toy(rate=2.0, count=3, on=False, widths=[8], step=5.0, seed=7)
    assert type(cfg.rate) is float and type(cfg.step) is float  # an int given for a float becomes a float
    assert load_config(Toy, {}, "toy") == Toy()  # negative control: nothing given, the defaults


@pytest.mark.parametrize("config,message", [
    ({"modle": {"rate": 1.0}}, "toy: unknown section [modle] (known: [model], [train])"),
    ({"model": {"rat": 1.0}}, "toy: unknown key [model] rat (known in [model]: rate, count, widths)"),
    ({"model": {"on": True}}, "toy: unknown key [model] on (known in [model]: rate, count, widths)"),
    ({"rate": 1.0}, "toy: unknown key rate (known in the top level: step)"),
    ({"model": {"count": 2.5}}, "toy: [model] count must be an integer, got 2.5 (float)"),
    ({"model": {"count": "3"}}, "toy: [model] count must be an integer, got '3' (str)"),
    ({"model": {"rate": True}}, "toy: [model] rate must be a number, got True (bool)"),
    ({"train": {"on": 1}}, "toy: [train] on must be true or false, got 1 (int)"),
    ({"model": {"widths": [4, "x"]}}, "toy: [model] widths[1] must be an integer, got 'x' (str)"),
    ({"model": {"widths": 4}}, "toy: [model] widths must be a list, got 4 (int)"),
    ({"model": {"count": 0}}, "toy: [model] count = 0 is out of range"),
    ({"model": {"rate": float("nan")}}, "toy: [model] rate must be finite, got nan"),
])
def test_load_config_rejects_bad_input_naming_the_key(config, message):
    with pytest.raises(ConfigError) as info:
        load_config(Toy, config, "toy")
    assert str(info.value) == message


def test_setting_needs_a_doc():
    with pytest.raises(ValueError, match="doc"):
        setting(1, "")


def test_config_show_cli(capsys):
    import json

    for family in (f for f in registered().values() if f.schemas):
        assert main(["config", "show", family.name]) == 0
        text = capsys.readouterr().out
        for name, schema in family.schemas.items():
            assert f"({family.name}): {schema().__name__}, every key at its default" in text
            assert main(["config", "show", family.name, name]) == 0
            one = capsys.readouterr().out
            assert tomllib.loads(one) == _lists(defaults(schema()))  # what a user copies into a file
            assert main(["config", "show", family.name, name, "--json"]) == 0
            out = json.loads(capsys.readouterr().out)
            assert set(out["configs"]) == {name} and "human_text" not in out
            assert out["configs"][name]["toml"] == one
    assert main(["config", "show", "rng", "nosuchconfig"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spicenet config: error: family 'rng' has no config schema 'nosuchconfig'")
    assert len(err.splitlines()) == 1


def test_a_misspelt_training_key_is_one_line_exit_2(tmp_path, capsys):
    cfg = tmp_path / "dtm.toml"
    cfg.write_text((ROOT / "training" / "dtm_quick.toml").read_text().replace("[model]\n", "[model]\ngird = 4\n"))
    sur = ROOT / "spicenet" / "data" / "surrogates" / "rng_quick_generic.h5"
    code = main(["train", "dtm", "--surrogate", str(sur), "--config", str(cfg), "-o", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "unknown key [model] gird" in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("family", [f for f in registered().values() if f.schemas], ids=lambda f: f.name)
def test_the_demo_quick_settings_load_through_the_schemas(family):
    """`spicenet demo --quick` changes shipped quick configs (Family.quick_overrides): each changed config must
    still load, with the changed value in place."""
    from spicenet.demo import apply_overrides

    for stage, name, settings in (("calibration", "calibration", lambda: family.calibration_settings(True)),
                                  *[("training", t.name, lambda t=t: family.training_settings(t, True))
                                    for t in family.trainers[:1]]):
        if name not in family.schemas or not any(o.stage == stage for o in family.quick_overrides):
            continue
        config = apply_overrides(settings(), family.name, stage)
        if stage == "calibration":
            config = {k: v for k, v in config.items() if k != "process"}
        schema = family.schemas[name]()
        fixed = {"seed": 0} if "seed" in schema.__dataclass_fields__ else {}
        flat = _lists(as_sections(load_config(schema, config, f"{family.name} quick {stage}", **fixed)))
        for o in (o for o in family.quick_overrides if o.stage == stage):
            *tables, key = o.key.split(".")
            got = flat
            for t in tables:
                got = got[t]
            assert got[key] == o.value, o.key
