"""Run hygiene of ``spicenet train``: an existing run needs ``--resume``, ``--epochs`` extends a finished run, and the
extended run equals an uninterrupted run of the same length (eqprop and dtm trainers); wall times accumulate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spicenet.cli import main
from spicenet.surrogate import SurrogateFile, SurrogateParam

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _resistive_surrogate(path: Path) -> Path:
    """A resistive surrogate with the generic process's calibrated numbers (no ngspice needed to train on it)."""
    rng = np.random.default_rng(0)
    attrs = {"bits": 4, "c_node_f": 1e-14, "diode_area": 1.0, "diode_is_nominal": 1e-14, "diode_n_nominal": 1.0,
             "diode_rs_nominal": 0.0, "g_lsb": 1.25e-6, "g_mode": "device", "g_sigma": 0.4, "gmin": 1e-12,
             "input_gain": 4.0, "settle_taus": 5.0, "sigma_ln_is": 0.096, "sigma_n_rel": 1e-3, "v_bias": 1.0,
             "vb": 0.3, "spice_abstol": 1e-15, "spice_reltol": 1e-6, "spice_vntol": 1e-9}
    sf = SurrogateFile("resistive", "generic", params={
        "diode_is": SurrogateParam(rng.lognormal(np.log(1e-14), 0.1, 4), unit="A", mean=1e-14, std=1e-15),
        "diode_n": SurrogateParam(np.ones(4), unit="", mean=1.0, std=0.0),
        "diode_rs": SurrogateParam(np.zeros(4), unit="ohm", mean=0.0, std=0.0)},
        extra={"levels": 1.25e-6 * np.arange(16.0)}, attrs=attrs)
    return sf.save(path)


def _rng_surrogate(path: Path) -> Path:
    """An rng surrogate with the generic p-bit cell's calibrated numbers (v0, vs, tau, E_bit)."""
    rng = np.random.default_rng(0)
    sf = SurrogateFile("rng", "generic", params={
        "v0": SurrogateParam(rng.normal(-6.5e-4, 5.2e-3, 6), unit="V", mean=-6.5e-4, std=5.2e-3),
        "vs": SurrogateParam(np.abs(rng.normal(2.2e-4, 4.4e-5, 6)), unit="V", mean=2.2e-4, std=4.4e-5, positive=True),
        "tau_s": SurrogateParam(np.abs(rng.normal(3.5e-8, 1e-8, 6)), unit="s", mean=3.5e-8, std=1e-8, positive=True)},
        energy={"energy_per_bit_j": 1.06e-16},
        attrs={"vdd": 0.04, "dt_s": 1e-9,
               "sizing": '{"vdd": 0.04, "wn": 1.0, "wp": 2.5, "l": 0.15, "cload": 0.0, "dvtn": -0.25, "dvtp": 0.25}'})
    return sf.save(path)


EQPROP_TOML = """
[data]
n_train = 40
n_test = 20
[model]
hidden = [4]
[train]
epochs = 2
batch_size = 20
ideal = false
[mismatch]
eval_chips = 2
"""

DTM_TOML = """
[data]
dataset = "mnist"
image_size = 8
[model]
grid = 10
steps = 2
sweeps = 2
weight_bits = 5
[train]
iters = 4
batch = 16
log_every = 2
checkpoint_every = 2
fid_log_samples = 0
[eval]
eval_chips = 1
eval_samples = 20
"""


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _train(capsys, trainer: str, surrogate: Path, config: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return _cli(capsys, "-q", "train", trainer, "--surrogate", str(surrogate), "--config", str(config), "-o",
                str(out), "--json", *extra)


@pytest.fixture(scope="module")
def resistive_sur(tmp_path_factory) -> Path:
    return _resistive_surrogate(tmp_path_factory.mktemp("sur") / "res.h5")


def test_eqprop_existing_run_refused_resume_extends_like_an_uninterrupted_run(capsys, tmp_path, resistive_sur):
    cfg = tmp_path / "eqprop.toml"
    cfg.write_text(EQPROP_TOML)
    run = tmp_path / "run"
    rc, out, _ = _train(capsys, "eqprop", resistive_sur, cfg, run)
    assert rc == 0
    first = json.loads(out)["metrics"]
    assert first["epochs"] == 2 and first["sessions"] == 1 and first["resumed_from_epoch"] is None
    metrics_before = (run / "metrics.json").read_text()

    # the same -o again: refused with one line naming the folder and the flag; the finished metrics untouched
    rc, out, err = _train(capsys, "eqprop", resistive_sur, cfg, run)
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(run) in lines[0] and "--resume" in lines[0] and "finished" in lines[0]
    # --resume without a longer length: nothing to continue, says how to extend
    rc, _, err = _train(capsys, "eqprop", resistive_sur, cfg, run, "--resume")
    assert rc == 2 and "--epochs" in err and len(err.strip().splitlines()) == 1
    rc, _, err = _train(capsys, "eqprop", resistive_sur, cfg, run, "--resume", "--epochs", "2")
    assert rc == 2 and "N > 2" in err
    assert (run / "metrics.json").read_text() == metrics_before

    # extend to 3 epochs
    rc, out, _ = _train(capsys, "eqprop", resistive_sur, cfg, run, "--resume", "--epochs", "3")
    assert rc == 0
    ext = json.loads(out)["metrics"]
    assert ext["epochs"] == 3 and ext["sessions"] == 2 and ext["resumed_from_epoch"] == 2
    for k in ("injected", "plain"):  # training time accumulated over both sessions, not restarted at 0
        assert ext["wall_train_s"][k] > first["wall_train_s"][k] > 0
    assert ext["wall_s"] > first["wall_train_s"]["injected"]
    meta = json.loads((run / "run.json").read_text())
    assert meta["run_length"] == {"key": "train.epochs", "value": 3} and meta["finished_length"] == 3
    assert [(e["from"], e["to"]) for e in meta["extended"]] == [(2, 3)]

    # reference: one uninterrupted 3-epoch run with the same config and seed
    ref = tmp_path / "ref"
    rc, out, _ = _train(capsys, "eqprop", resistive_sur, cfg, ref, "--epochs", "3")
    assert rc == 0
    want = json.loads(out)["metrics"]
    assert (run / "metrics.csv").read_text() == (ref / "metrics.csv").read_text()
    for key in ("test_accuracy", "chip_accuracies", "chip_accuracies_no_injection", "confusion_matrix"):
        assert ext[key] == want[key]
    a, b = torch.load(run / "model.pt", weights_only=False), torch.load(ref / "model.pt", weights_only=False)
    for k in ("injected", "plain"):
        for name, t in a[k].items():
            assert torch.equal(t, b[k][name]), (k, name)

    # a longer run can be resumed to any length >= its checkpoint, never shortened below it
    rc, _, err = _train(capsys, "eqprop", resistive_sur, cfg, run, "--resume", "--epochs", "1")
    assert rc == 2


def test_interrupted_run_needs_resume_and_continues(capsys, tmp_path, resistive_sur):
    cfg = tmp_path / "eqprop.toml"
    cfg.write_text(EQPROP_TOML)
    run = tmp_path / "run"
    assert _train(capsys, "eqprop", resistive_sur, cfg, run)[0] == 0
    # make it look killed after epoch 0: drop the final metrics and the last checkpoint
    (run / "metrics.json").unlink()
    ckpts = sorted((run / "checkpoints").glob("ckpt-*.pt"))
    assert len(ckpts) == 2
    ckpts[-1].unlink()
    rc, _, err = _train(capsys, "eqprop", resistive_sur, cfg, run)
    assert rc == 2 and "unfinished" in err and "--resume" in err
    rc, out, _ = _train(capsys, "eqprop", resistive_sur, cfg, run, "--resume")
    assert rc == 0
    m = json.loads(out)["metrics"]
    assert m["resumed_from_epoch"] == 1 and m["sessions"] == 2 and m["epochs"] == 2
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 1 + 2


def test_dtm_extension_equals_uninterrupted_run(capsys, tmp_path):
    sur = _rng_surrogate(tmp_path / "rng.h5")
    cfg = tmp_path / "dtm.toml"
    cfg.write_text(DTM_TOML)
    run, ref = tmp_path / "run", tmp_path / "ref"
    rc, out, _ = _train(capsys, "dtm", sur, cfg, run)
    assert rc == 0
    first = json.loads(out)["metrics"]
    rc, _, err = _train(capsys, "dtm", sur, cfg, run)
    assert rc == 2 and str(run) in err and "--resume" in err
    rc, out, _ = _train(capsys, "dtm", sur, cfg, run, "--resume", "--epochs", "8")
    assert rc == 0
    ext = json.loads(out)["metrics"]
    assert ext["iters"] == 8 and ext["sessions"] == 2 and ext["resumed_from_iter"] == 4
    assert ext["train_wall_s"] > first["train_wall_s"] > 0
    rc, out, _ = _train(capsys, "dtm", sur, cfg, ref, "--epochs", "8")
    assert rc == 0
    want = json.loads(out)["metrics"]
    a = torch.load(run / "model.pt", weights_only=False)["state"]
    b = torch.load(ref / "model.pt", weights_only=False)["state"]
    for i, (sa, sb) in enumerate(zip(a["steps"], b["steps"])):
        for name in sa:
            if isinstance(sa[name], torch.Tensor):
                assert torch.equal(sa[name], sb[name]), (i, name)
    assert ext["chips"]["fid_values"] == want["chips"]["fid_values"]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]  # noqa: E731
    from spicenet.train import RunDir

    assert strip(RunDir(run).read_metrics()) == strip(RunDir(ref).read_metrics())


FFEBM_TOML = """
[ffebm]
blocks = [[8, 4], [4, 10]]
[data]
n_train = 40
n_test = 20
[model]
amp_gain = 4.0
[train]
epochs = 1
batch_size = 20
ideal = false
[mismatch]
eval_chips = 2
"""


def test_ffebm_extension_equals_uninterrupted_run(capsys, tmp_path, resistive_sur):
    cfg = tmp_path / "ffebm.toml"
    cfg.write_text(FFEBM_TOML)
    run, ref = tmp_path / "run", tmp_path / "ref"
    assert _train(capsys, "ffebm", resistive_sur, cfg, run)[0] == 0
    rc, out, _ = _train(capsys, "ffebm", resistive_sur, cfg, run, "--resume", "--epochs", "2")
    assert rc == 0
    ext = json.loads(out)["metrics"]
    assert ext["epochs"] == 2 and ext["sessions"] == 2 and ext["resumed_from_epoch"] == 1
    rc, out, _ = _train(capsys, "ffebm", resistive_sur, cfg, ref, "--epochs", "2")
    assert rc == 0
    want = json.loads(out)["metrics"]
    assert (run / "metrics.csv").read_text() == (ref / "metrics.csv").read_text()
    assert ext["chip_accuracies"] == want["chip_accuracies"]
    a = torch.load(run / "model.pt", weights_only=False)["ffebm"]
    b = torch.load(ref / "model.pt", weights_only=False)["ffebm"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


AIS_TOML = """
[data]
dataset = "mnist"
source = "sample"
size = 8
n_train = 60
n_test = 40
[model]
n_hidden = 0
n_segments = 2
periods = 20.0
n_steps = 6
[train]
iterations = 6
batch_size = 8
n_critic = 1
n_eval_samples = 8
log_every = 2
checkpoint_every = 3
fidelity_weight = 0.1
fidelity_batch = 4
[mismatch]
eval_chips = 1
"""
# every random stream of the AIS loop is used: the shipped calibration's mismatch (chip stream), phase noise,
# WGAN-GP interpolates, the fidelity penalty; checkpoints at 3 and 6, csv rows at 0, 2, 4 and the last

_AIS_SESSION_KEYS = ("wall_s", "train_wall_s", "sessions", "resumed_from_iteration")


class _Killed(Exception):
    """Stands for a kill of the training process."""


@pytest.fixture(scope="module")
def ais_setup(tmp_path_factory) -> dict:
    """The shipped oscillator calibration, the tiny AIS config and an uninterrupted 6-iteration reference run."""
    import spicenet

    d = tmp_path_factory.mktemp("ais")
    cfg = d / "ais.toml"
    cfg.write_text(AIS_TOML)
    sur = spicenet.shipped_surrogate("oscillator")
    ref = d / "ref"
    assert main(["-q", "train", "ais", "--surrogate", str(sur), "--config", str(cfg), "-o", str(ref), "--json"]) == 0
    return {"cfg": cfg, "sur": sur, "ref": ref}


def _ais_same_as_reference(run: Path, ref: Path) -> dict:
    """metrics.csv byte-identical, generator and critic weights bit-identical (torch.equal), metrics.json equal but
    for the per-session keys; returns the run's metrics."""
    from spicenet.train import RunDir

    assert (run / "metrics.csv").read_text() == (ref / "metrics.csv").read_text()
    a = torch.load(RunDir(run).latest_checkpoint(), weights_only=False)
    b = torch.load(RunDir(ref).latest_checkpoint(), weights_only=False)
    assert a["step"] == b["step"] == 6
    for part in ("generator", "critic"):
        assert a["model"][part].keys() == b["model"][part].keys()
        for name, t in a["model"][part].items():
            assert torch.equal(t, b["model"][part][name]), (part, name)
    assert a["extra"]["ais_state"]["history"] == b["extra"]["ais_state"]["history"]
    m, want = (json.loads((p / "metrics.json").read_text()) for p in (run, ref))
    assert {k: v for k, v in m.items() if k not in _AIS_SESSION_KEYS} == \
        {k: v for k, v in want.items() if k not in _AIS_SESSION_KEYS}
    assert want["sessions"] == 1 and want["resumed_from_iteration"] is None
    return m


def test_ais_killed_run_resumes_to_the_uninterrupted_run(capsys, monkeypatch, tmp_path, ais_setup):
    from spicenet.cells.oscillator.ais import AISTrainer

    real_step = AISTrainer.step

    def dies_at_5(self: AISTrainer) -> dict:
        if self.iteration == 5:
            raise _Killed
        return real_step(self)

    run = tmp_path / "run"
    with monkeypatch.context() as mp:
        mp.setattr(AISTrainer, "step", dies_at_5)
        with pytest.raises(_Killed):
            _train(capsys, "ais", ais_setup["sur"], ais_setup["cfg"], run)
    # what the kill left: the checkpoint at 3, csv rows beyond it (0, 2, 4), no metrics.json
    assert [p.name for p in sorted((run / "checkpoints").glob("ckpt-*.pt"))] == ["ckpt-000000003.pt"]
    assert [r.split(",")[0] for r in (run / "metrics.csv").read_text().splitlines()[1:]] == ["0", "2", "4"]
    assert not (run / "metrics.json").exists()
    rc, _, err = _train(capsys, "ais", ais_setup["sur"], ais_setup["cfg"], run)
    assert rc == 2 and "unfinished" in err and "--resume" in err and len(err.strip().splitlines()) == 1
    rc, out, _ = _train(capsys, "ais", ais_setup["sur"], ais_setup["cfg"], run, "--resume")
    assert rc == 0
    m = _ais_same_as_reference(run, ais_setup["ref"])
    assert json.loads(out)["metrics"] == m
    assert m["sessions"] == 2 and m["resumed_from_iteration"] == 3 and m["iterations"] == 6
    assert m["train_wall_s"] > 0


def test_ais_finished_run_extends_to_the_uninterrupted_run(capsys, tmp_path, ais_setup):
    run = tmp_path / "run"
    rc, out, _ = _train(capsys, "ais", ais_setup["sur"], ais_setup["cfg"], run, "--epochs", "4")
    assert rc == 0
    first = json.loads(out)["metrics"]
    assert first["iterations"] == 4 and first["sessions"] == 1
    # a finished 4-iteration run logs its last row (3), which a 6-iteration run does not have
    assert [r.split(",")[0] for r in (run / "metrics.csv").read_text().splitlines()[1:]] == ["0", "2", "3"]
    before = (run / "metrics.json").read_text()
    rc, _, err = _train(capsys, "ais", ais_setup["sur"], ais_setup["cfg"], run, "--resume", "--epochs", "4")
    assert rc == 2 and "N > 4" in err
    assert (run / "metrics.json").read_text() == before
    rc, out, _ = _train(capsys, "ais", ais_setup["sur"], ais_setup["cfg"], run, "--resume", "--epochs", "6")
    assert rc == 0
    m = _ais_same_as_reference(run, ais_setup["ref"])
    assert m["sessions"] == 2 and m["resumed_from_iteration"] == 4 and m["iterations"] == 6
    assert m["train_wall_s"] > first["train_wall_s"] > 0  # the first session's training time carried, not reset
    meta = json.loads((run / "run.json").read_text())
    assert meta["run_length"] == {"key": "train.iterations", "value": 6} and meta["finished_length"] == 6
    assert [(e["from"], e["to"]) for e in meta["extended"]] == [(4, 6)]
    # never shorter than the checkpoint
    rc, _, err = _train(capsys, "ais", ais_setup["sur"], ais_setup["cfg"], run, "--resume", "--epochs", "5")
    assert rc == 2


def test_trainers_give_back_the_callers_torch_thread_count(capsys, tmp_path, resistive_sur):
    """torch's thread count is process state: a trainer that runs its solves on one thread (``[train] threads = 1``)
    restores the caller's count on return and when it fails (negative control: the count is changed while it runs)."""
    import torch

    from spicenet.train.threads import restores_torch_threads

    cfg = tmp_path / "eqprop.toml"
    cfg.write_text(EQPROP_TOML)
    before = torch.get_num_threads()
    caller = 2 if before != 2 else 3
    seen: list[int] = []

    @restores_torch_threads
    def failing() -> None:
        torch.set_num_threads(1)
        seen.append(torch.get_num_threads())
        raise RuntimeError("boom")

    try:
        torch.set_num_threads(caller)
        assert _train(capsys, "eqprop", resistive_sur, cfg, tmp_path / "run")[0] == 0
        assert torch.get_num_threads() == caller
        with pytest.raises(RuntimeError):
            failing()
        assert seen == [1] and torch.get_num_threads() == caller
    finally:
        torch.set_num_threads(before)
