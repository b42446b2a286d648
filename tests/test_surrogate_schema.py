"""Surrogate schemas (spicenet.surrogate_schema): the shipped files pass their family's schema; a broken, foreign
or too-new file fails at load with one line naming the file, the family and the item; save() stamps the version."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import spicenet
from spicenet.errors import DataError
from spicenet.surrogate import SurrogateFile, SurrogateParam
from spicenet.surrogate_schema import (UNVERSIONED, ExtraSpec, ParamSpec, SurrogateSchema, load_surrogate,
                                       schema_for)

FAMILIES = ("rng", "oscillator", "resistive")


def _copy(family: str, tmp_path: Path, name: str = "cal.h5") -> Path:
    out = tmp_path / name
    shutil.copyfile(spicenet.shipped_surrogate(family), out)
    return out


def _error(path: Path, family: str) -> str:
    with pytest.raises(DataError) as info:
        load_surrogate(path, family)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    return msg


@pytest.mark.parametrize("family", FAMILIES)
def test_shipped_surrogates_pass_their_schema(family: str) -> None:
    path = spicenet.shipped_surrogate(family)
    schema = schema_for(family)
    assert schema is not None and schema.family == family and schema.version >= 1
    sur = load_surrogate(path, family)
    assert sur.schema_version is None  # written before schemas: read as version 1
    assert schema.problem(sur) is None and sur.process == "generic"
    for p in schema.params:  # every declared item the shipped file holds matches its declaration
        if p.name in sur.params:
            assert sur.params[p.name].unit == p.unit


def test_schemas_declare_what_the_readers_need() -> None:
    need = {"rng": {"v0", "vs"}, "oscillator": {"f0_hz", "k_gain"}, "resistive": set()}
    for family, params in need.items():
        schema = schema_for(family)
        assert schema is not None
        assert {p.name for p in schema.params if p.required} == params
    osc = schema_for("oscillator")
    assert osc is not None and {"ring", "r_lsb_ohm", "shil_f_inj_hz", "df_dvdd_hz_per_v", "phase_model_params"} <= {
        a.name for a in osc.attrs if a.required}
    assert {"shil_strength", "shil_phase_rad"} == {x.path for x in osc.extras if x.required}
    res = schema_for("resistive")
    assert res is not None and [x.path for x in res.extras if x.required] == ["levels"]
    assert osc.energy == ("energy_per_cycle_j",) and schema_for("rng").energy == ("energy_per_bit_j",)  # type: ignore[union-attr]


def test_missing_required_param_is_named(tmp_path) -> None:
    path = _copy("rng", tmp_path)
    with h5py.File(path, "a") as f:
        del f["surrogate/params/vs"]
        del f["surrogate/correlation"]  # its names list vs
    assert _error(path, "rng") == f"{path}: rng surrogate v1: params/vs missing"
    path = _copy("oscillator", tmp_path, "osc.h5")
    with h5py.File(path, "a") as f:
        del f["surrogate/params/f0_hz"]
    assert _error(path, "oscillator") == f"{path}: oscillator surrogate v1: params/f0_hz missing"


def test_missing_attr_extra_energy_and_process_are_named(tmp_path) -> None:
    path = _copy("resistive", tmp_path)
    with h5py.File(path, "a") as f:
        del f["surrogate"].attrs["vb"]
    assert _error(path, "resistive").endswith("resistive surrogate v1: attr vb missing")
    path = _copy("resistive", tmp_path, "lv.h5")
    with h5py.File(path, "a") as f:
        del f["surrogate/extra/levels"]
    assert _error(path, "resistive").endswith(": extra/levels missing")
    path = _copy("oscillator", tmp_path, "e.h5")
    with h5py.File(path, "a") as f:
        del f["surrogate"].attrs["energy_per_cycle_j"]
    assert _error(path, "oscillator").endswith(": energy_per_cycle_j missing")
    path = _copy("rng", tmp_path, "p.h5")
    with h5py.File(path, "a") as f:
        f["surrogate"].attrs["process"] = ""
    assert "process attr missing" in _error(path, "rng")


def test_wrong_shape_unit_dtype_and_json_are_named(tmp_path) -> None:
    path = _copy("rng", tmp_path)
    with h5py.File(path, "a") as f:
        v0 = f["surrogate/params/v0"]
        attrs = dict(v0.attrs)
        data = v0[()]
        del f["surrogate/params/v0"]
        d = f.create_dataset("surrogate/params/v0", data=np.stack([data, data], axis=1))
        d.attrs.update(attrs)
    assert _error(path, "rng") == f"{path}: rng surrogate v1: params/v0 has shape [5, 2], expected [chips]"
    path = _copy("oscillator", tmp_path, "unit.h5")
    with h5py.File(path, "a") as f:
        f["surrogate/params/f0_hz"].attrs["unit"] = "kHz"
    assert _error(path, "oscillator").endswith("params/f0_hz in unit 'kHz', expected 'Hz'")
    path = _copy("resistive", tmp_path, "levels.h5")
    with h5py.File(path, "a") as f:
        levels = f["surrogate/extra/levels"][()]
        del f["surrogate/extra/levels"]
        f.create_dataset("surrogate/extra/levels", data=levels.reshape(4, 4))
    assert _error(path, "resistive").endswith("extra/levels has shape [4, 4], expected [levels]")
    path = _copy("rng", tmp_path, "chips.h5")  # a named axis binds across the extras
    with h5py.File(path, "a") as f:
        p = f["surrogate/extra/p_one"][()]
        del f["surrogate/extra/p_one"]
        f.create_dataset("surrogate/extra/p_one", data=p[:3])
    assert "extra/p_one has shape [3, 7], expected [chips, levels] with chips = 5" in _error(path, "rng")
    path = _copy("oscillator", tmp_path, "ring.h5")
    with h5py.File(path, "a") as f:
        f["surrogate"].attrs["ring"] = "{n_stages: 3"
    assert "attr ring is not JSON" in _error(path, "oscillator")
    path = _copy("rng", tmp_path, "vs.h5")
    with h5py.File(path, "a") as f:
        f["surrogate/params/vs"].attrs["positive"] = False
    assert "params/vs is not marked positive (log-normal), expected positive" in _error(path, "rng")


def test_newer_schema_version_is_refused_older_files_read(tmp_path) -> None:
    path = _copy("oscillator", tmp_path)
    schema = schema_for("oscillator")
    assert schema is not None
    with h5py.File(path, "a") as f:
        f["surrogate"].attrs["schema_version"] = schema.version + 1
    assert _error(path, "oscillator") == (f"{path}: oscillator surrogate: written by a newer spicenet (schema "
                                          f"v{schema.version + 1}, this reads v{schema.version})")
    with h5py.File(path, "a") as f:
        f["surrogate"].attrs["schema_version"] = "two"
    assert "schema_version 'two' is not an integer" in _error(path, "oscillator")
    with h5py.File(path, "a") as f:
        del f["surrogate"].attrs["schema_version"]
    sur = load_surrogate(path, "oscillator")  # a file written before schemas: version 1
    assert sur.schema_version is None and UNVERSIONED == 1


def test_family_mismatch_is_one_line(tmp_path) -> None:
    path = _copy("rng", tmp_path)
    assert _error(path, "oscillator") == f"{path}: a rng surrogate, expected family oscillator"
    from spicenet.errors import ConfigError

    with pytest.raises(ConfigError):  # what the family loaders raised for it before schemas
        load_surrogate(path, "resistive")


def test_save_stamps_the_schema_version(tmp_path) -> None:
    sur = SurrogateFile.load(spicenet.shipped_surrogate("rng"))
    out = sur.save(tmp_path / "stamped.h5")
    schema = schema_for("rng")
    assert schema is not None
    with h5py.File(out, "r") as f:
        assert int(f["surrogate"].attrs["schema_version"]) == schema.version
    back = load_surrogate(out, "rng")
    assert back.schema_version == schema.version and "schema_version" not in back.attrs
    back.save(tmp_path / "again.h5")  # a loaded file saves again (schema_version is not an extra attr)
    # a family without a registered schema: no version is stamped, the file still loads
    toy = SurrogateFile("nosuchfamily", "generic", params={"a": SurrogateParam(np.ones(3))})
    with h5py.File(toy.save(tmp_path / "toy.h5"), "r") as f:
        assert "schema_version" not in f["surrogate"].attrs
    assert load_surrogate(tmp_path / "toy.h5", "nosuchfamily").family == "nosuchfamily"


def test_unreadable_param_names_the_file(tmp_path) -> None:
    path = tmp_path / "nan.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("surrogate")
        g.attrs["family"], g.attrs["process"] = "rng", "generic"
        g.create_dataset("params/v0", data=np.array([0.0, np.nan]))
    with pytest.raises(DataError, match=r"nan\.h5: params/v0: values: contains NaN"):
        load_surrogate(path, "rng")


def test_schema_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="shape"):
        ParamSpec("x", "V", shape="cells")
    with pytest.raises(ValueError, match="dtype"):
        ExtraSpec("x", dtype="complex")
    with pytest.raises(ValueError, match="energy"):
        SurrogateSchema("toy", 1, energy=("per_bit",))
    with pytest.raises(ValueError, match="version"):
        SurrogateSchema("toy", 0)


def test_family_load_points_fail_at_load(tmp_path) -> None:
    from spicenet.cells.oscillator.export import hardware_map
    from spicenet.cells.oscillator.training import load_surrogate_info

    rng_file = spicenet.shipped_surrogate("rng")
    with pytest.raises(DataError, match="a rng surrogate, expected family resistive"):
        spicenet.ResistiveNetwork.from_surrogate(rng_file, [4, 2])
    with pytest.raises(DataError, match="a rng surrogate, expected family oscillator"):
        load_surrogate_info(rng_file)
    with pytest.raises(DataError, match="a rng surrogate, expected family oscillator"):
        hardware_map(rng_file)
    with pytest.raises(DataError, match="a resistive surrogate, expected family rng"):
        spicenet.PBit.from_surrogate(spicenet.shipped_surrogate("resistive"), 4)
    broken = _copy("oscillator", tmp_path)
    with h5py.File(broken, "a") as f:
        del f["surrogate/extra/shil_strength"]
    with pytest.raises(DataError, match="oscillator surrogate v1: extra/shil_strength missing"):
        load_surrogate_info(broken)


def _main(capsys, argv: list[str]) -> tuple[int, str, str]:
    from spicenet.cli import main

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    out = capsys.readouterr()
    return int(code or 0), out.out, out.err


def test_cli_train_on_a_foreign_or_broken_surrogate_exits_2_with_one_line(capsys, tmp_path) -> None:
    run = tmp_path / "run"
    code, out, err = _main(capsys, ["train", "dtm", "--surrogate", str(spicenet.shipped_surrogate("oscillator")),
                                    "-o", str(run)])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and out == "", err
    assert lines[0].startswith("spicenet train: error: ") and "oscillator" in lines[0] and "rng" in lines[0]
    assert not run.exists()
    broken = _copy("rng", tmp_path)
    with h5py.File(broken, "a") as f:
        del f["surrogate"].attrs["dt_s"]
    code, out, err = _main(capsys, ["train", "dtm", "--surrogate", str(broken), "-o", str(run)])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and out == "", err
    assert lines[0].endswith("rng surrogate v1: attr dt_s missing") and not run.exists()
