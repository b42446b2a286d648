"""Device selection, run directories and resume-after-kill reproducibility (quantisation: tests/test_quant.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spicenet.errors import ConfigError
from spicenet.surrogate import SurrogateFile, SurrogateParam
from spicenet.train import ChipSampler, MismatchModel, RunDir, resolve_device


def test_device_resolution() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
        assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="device"):
        resolve_device("tpu")


def _problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    return x, y


def _model(seed: int) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


class _Killed(KeyboardInterrupt):
    pass


def _train(rd: RunDir, mismatch: ChipSampler, model: torch.nn.Module, *, epochs: int = 3, batch_size: int = 16,
           checkpoint_every: int = 3, kill_after: int | None = None) -> int:
    """A trainer's loop over RunDir: resume from the newest checkpoint (model, optimizer, noise generator, partial
    epoch sums), drop metric rows past it, checkpoint every few steps and at epoch ends. ``kill_after``: raise after
    that step's metrics row was logged but before its checkpoint. Returns the step it resumed from (0: fresh)."""
    x, y = _problem()
    n = x.shape[0]
    per_epoch = n // batch_size
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    noise = torch.Generator().manual_seed(11)
    step, sums = 0, {"loss": 0.0, "abs_err": 0.0}
    ck = rd.load_checkpoint(model=model, optimizer=opt, generators={"noise": noise})
    if ck is not None:
        step, sums = int(ck["step"]), dict(ck["extra"]["sums"])
        rd.truncate_metrics(step // per_epoch - 1)
    resumed = step
    while step < epochs * per_epoch:
        epoch, b = divmod(step, per_epoch)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(1000 + epoch))
        idx = perm[b * batch_size:(b + 1) * batch_size]
        chip = mismatch.chip(step=step)
        pred = model(x[idx] * chip["gain"] + 0.05 * torch.randn(batch_size, 3, generator=noise)).squeeze(-1)
        loss = ((pred - y[idx]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sums["loss"] += float(loss.detach())
        sums["abs_err"] += float((pred - y[idx]).abs().mean().detach())
        step += 1
        end = step % per_epoch == 0
        if end:
            rd.log_metrics(epoch, step=step, **{k: v / per_epoch for k, v in sums.items()})
            sums = {k: 0.0 for k in sums}
        if step == kill_after:
            raise _Killed("simulated kill")
        if end or step % checkpoint_every == 0:
            rd.save_checkpoint(step=step, epoch=step // per_epoch, model=model, optimizer=opt,
                               generators={"noise": noise}, extra={"sums": sums})
    return resumed


def test_resume_after_kill_matches_uninterrupted_run(tmp_path) -> None:
    torch.set_num_threads(1)
    sf = SurrogateFile("rng", "generic", params={"gain": SurrogateParam(np.full(4, 1.0), std=0.1, positive=True)})
    spath = sf.save(tmp_path / "s.h5")
    mm = MismatchModel.from_surrogate(spath)
    cfg = {"lr": 0.05, "epochs": 3, "batch_size": 16}

    def run(path, kill_after=None, init_seed=0):
        model = _model(init_seed)
        rd = RunDir.create(path, cfg, surrogate=spath, seed=1)
        resumed = _train(rd, ChipSampler(mm, (3,), per="step", seed=1), model, kill_after=kill_after)
        return model, resumed, rd

    full, resumed_full, rd_full = run(tmp_path / "full")
    assert resumed_full == 0 and len(rd_full.read_metrics()) == 3
    # killed after step 8 logged epoch 1 but before its checkpoint: the newest checkpoint is after step 6
    with pytest.raises(_Killed):
        run(tmp_path / "killed", kill_after=8)
    rd = RunDir.open(tmp_path / "killed")
    assert [p.name for p in rd.list_checkpoints()] == ["ckpt-000000004.pt", "ckpt-000000006.pt"]  # keep=2
    assert [r["epoch"] for r in rd.read_metrics()] == [0, 1]
    # resumed with a differently initialised model object: everything must come from the checkpoint
    resumed, at, _ = run(tmp_path / "killed", init_seed=123)
    assert at == 6
    for p, q in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(p, q)
    # per-epoch metrics identical too (epoch 1, half done at the checkpoint, was dropped on resume and redone)
    assert rd.read_metrics() == rd_full.read_metrics()
    assert [r["epoch"] for r in rd.read_metrics()] == [0, 1, 2]
    rows = rd.read_metrics()
    assert rows[-1]["loss"] < rows[0]["loss"]  # the loss went down over training
    import hashlib
    assert rd.meta()["surrogate_sha256"] == hashlib.sha256(spath.read_bytes()).hexdigest()


def test_run_dir_files_and_guards(tmp_path) -> None:
    rd = RunDir.create(tmp_path / "r", {"a": 1, "arr": np.arange(3)}, seed=0)
    assert json.loads((rd.path / "config.json").read_text()) == {"a": 1, "arr": [0, 1, 2]}
    rd.log_metrics(0, loss=2.0)
    rd.log_metrics(1, loss=1.0, fid=5.5)
    rd.log_metrics(2, loss=0.5)
    rd.log_metrics(1, loss=0.9)  # re-logging epoch 1 drops epoch 2 (left by a killed run)
    assert rd.read_metrics() == [{"epoch": 0, "loss": 2.0}, {"epoch": 1, "loss": 0.9}]
    png = rd.plot_metrics()
    grid = rd.save_sample_grid(np.random.default_rng(0).uniform(size=(10, 64)))
    for p in (png, grid):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = rd.write_final_metrics({"acc": np.float32(0.5), "nan": float("nan")})
    assert json.loads(out.read_text()) == {"acc": 0.5, "nan": None}
    with pytest.raises(ConfigError, match="config differs"):
        RunDir.create(tmp_path / "r", {"a": 2})
    with pytest.raises(ConfigError, match="holds a run already"):
        RunDir.create(tmp_path / "r", {"a": 1}, resume=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a run directory"):
        RunDir.create(tmp_path / "other", {})


def test_reopening_fills_settings_added_since_the_run_started_with_their_defaults(tmp_path) -> None:
    """A key the stored config lacks counts as its schema default on reopening (a setting added later does not
    block a resume); the same key at another value is still a changed config."""
    old = {"train": {"epochs": 2, "lr": 0.1}}
    RunDir.create(tmp_path / "r", old, length_key="train.epochs")
    defaults = {"train": {"epochs": 10, "lr": 0.3, "hardware": True}, "mismatch": {"eval_chips": 10}}
    new = {"train": {"epochs": 4, "lr": 0.1, "hardware": True}, "mismatch": {"eval_chips": 10}}
    with pytest.raises(ConfigError, match="config differs"):
        RunDir.create(tmp_path / "r", new, length_key="train.epochs")  # without the schema: a difference
    RunDir.create(tmp_path / "r", new, length_key="train.epochs", defaults=defaults)
    for changed in ({"train": {**new["train"], "hardware": False}, "mismatch": {"eval_chips": 10}},
                    {"train": {**new["train"], "lr": 0.3}, "mismatch": {"eval_chips": 10}}):
        with pytest.raises(ConfigError, match="config differs"):
            RunDir.create(tmp_path / "r", changed, length_key="train.epochs", defaults=defaults)


def test_reopening_a_run_whose_trainer_stores_the_toml_as_given(tmp_path) -> None:
    """Writing a default out (or leaving it out) in the new TOML is no change; leaving out a key the run had at
    another value is one (it now means the default)."""
    defaults = {"train": {"iterations": 10, "lr": 0.3}}
    RunDir.create(tmp_path / "a", {"train": {"iterations": 2}}, length_key="train.iterations", defaults=defaults)
    RunDir.create(tmp_path / "a", {"train": {"iterations": 4, "lr": 0.3}}, length_key="train.iterations",
                  defaults=defaults)
    RunDir.create(tmp_path / "b", {"train": {"iterations": 2, "lr": 0.1}}, length_key="train.iterations",
                  defaults=defaults)
    with pytest.raises(ConfigError, match="config differs"):
        RunDir.create(tmp_path / "b", {"train": {"iterations": 4}}, length_key="train.iterations", defaults=defaults)


def _drop_stored_key(run_dir, section: str | None, key: str) -> None:
    """Make a run look older: remove ``key`` (of ``section``, or top level) from its stored config.json."""
    path = run_dir / "config.json"
    config = json.loads(path.read_text())
    (config[section] if section else config).pop(key)
    path.write_text(json.dumps(config))


def test_dtm_and_ais_runs_resume_after_a_setting_is_added_to_their_schema(tmp_path) -> None:
    """The rng (DTM) and oscillator (AIS) trainers hand their schema defaults to RunDir.create: a run whose stored
    config predates a setting reopens; the same setting at a non-default value is still a changed config."""
    import dataclasses
    from types import SimpleNamespace



    from spicenet.cells.oscillator import training as ais
    from spicenet.cells.rng import training as dtm

    surrogate = tmp_path / "sur.h5"
    surrogate.write_bytes(b"calibration stand-in")
    cfg = dtm.DTMTrainConfig()
    dtm._open_run(tmp_path / "dtm", cfg, 0, surrogate, torch.device("cpu"), {}, True)
    _drop_stored_key(tmp_path / "dtm", None, "acp_rate")
    dtm._open_run(tmp_path / "dtm", cfg, 0, surrogate, torch.device("cpu"), {}, True)
    with pytest.raises(ConfigError, match="config differs"):
        dtm._open_run(tmp_path / "dtm", dataclasses.replace(cfg, acp_rate=2 * cfg.acp_rate), 0, surrogate,
                      torch.device("cpu"), {}, True)

    config = {"train": {"iterations": 4, "lr_codes": 0.2}, "data": {"size": 8}}
    full = ais.parse_config(config, 0)
    data = SimpleNamespace(ds=SimpleNamespace(name="mnist", origin="sample"), x_train=np.zeros((3, 8, 8)),
                           reference=np.zeros((2, 8, 8)))
    ais._open_run(tmp_path / "ais", config, surrogate, 0, torch.device("cpu"), full, data, True)
    _drop_stored_key(tmp_path / "ais", "train", "lr_codes")
    ais._open_run(tmp_path / "ais", config, surrogate, 0, torch.device("cpu"), full, data, True)
    with pytest.raises(ConfigError, match="config differs"):
        ais._open_run(tmp_path / "ais", {**config, "train": {"iterations": 4, "lr_codes": 0.5}}, surrogate, 0,
                      torch.device("cpu"), full, data, True)


def test_checkpoint_restores_generators(tmp_path) -> None:
    rd = RunDir.create(tmp_path / "g", {})
    g = torch.Generator().manual_seed(5)
    model = torch.nn.Linear(2, 1)
    torch.randn(3, generator=g)
    rd.save_checkpoint(step=1, epoch=0, model=model, generators={"noise": g})
    want = torch.randn(4, generator=g)
    g2 = torch.Generator().manual_seed(999)
    rd.load_checkpoint(model=model, generators={"noise": g2})
    assert torch.equal(torch.randn(4, generator=g2), want)


def test_run_length_extension_and_finished_state(tmp_path) -> None:
    cfg = {"train": {"epochs": 2, "lr": 0.1}}
    rd = RunDir.create(tmp_path / "r", cfg, length_key="train.epochs")
    assert rd.run_length == {"key": "train.epochs", "value": 2} and not rd.finished
    rd.write_final_metrics({"acc": 0.5})
    assert rd.finished and rd.meta()["finished_length"] == 2
    # the same run at the same length reopens unchanged; another key changed is still refused
    assert RunDir.create(tmp_path / "r", cfg, length_key="train.epochs").finished
    with pytest.raises(ConfigError, match="config differs"):
        RunDir.create(tmp_path / "r", {"train": {"epochs": 4, "lr": 0.2}}, length_key="train.epochs")
    # a longer length: config.json follows, the extension is recorded, the run is unfinished until metrics again
    rd = RunDir.create(tmp_path / "r", {"train": {"epochs": 4, "lr": 0.1}}, length_key="train.epochs")
    assert rd.config()["train"]["epochs"] == 4 and not rd.finished
    assert [(e["key"], e["from"], e["to"]) for e in rd.meta()["extended"]] == [("train.epochs", 2, 4)]
    assert json.loads((rd.path / "metrics.json").read_text()) == {"acc": 0.5}  # the old result kept until then
    rd.write_final_metrics({"acc": 0.6})
    assert rd.finished
    # without length_key any config change is refused, as before
    with pytest.raises(ConfigError, match="config differs"):
        RunDir.create(tmp_path / "r", {"train": {"epochs": 5, "lr": 0.1}})


def test_check_training_output_messages(tmp_path) -> None:
    from spicenet.errors import UsageError
    from spicenet.train import check_training_output

    check_training_output(tmp_path / "new", resume=False, length=None)  # a new run: nothing to refuse
    check_training_output(tmp_path / "new", resume=True, length=3)
    rd = RunDir.create(tmp_path / "r", {"train": {"epochs": 2}}, length_key="train.epochs")
    with pytest.raises(UsageError, match=r"holds an unfinished run; pass --resume"):
        check_training_output(rd.path, resume=False, length=None)
    check_training_output(rd.path, resume=True, length=None)  # an unfinished run continues
    rd.write_final_metrics({})
    with pytest.raises(UsageError, match=r"holds a finished run; pass --resume"):
        check_training_output(rd.path, resume=False, length=5)
    for length in (None, 1, 2):
        with pytest.raises(UsageError, match=r"finished at 2 \(train.epochs\); pass --epochs N with N > 2"):
            check_training_output(rd.path, resume=True, length=length)
    check_training_output(rd.path, resume=True, length=3)
    with pytest.raises(UsageError, match="cannot resume"):
        check_training_output(rd.path, resume=True, length=3, can_resume=False)


def test_wall_clock_accumulates_over_sessions(tmp_path) -> None:
    from spicenet.train import WallClock

    first = WallClock(start=0.0)  # a session that started at perf_counter() == 0
    first.add("train", 2.0)
    first.add("train", 0.5)
    st = first.state()
    assert st["train"] == 2.5 and st["sessions"] == 1.0 and st["wall_s"] > 0
    rd = RunDir.create(tmp_path / "w", {})
    rd.save_checkpoint(step=1, epoch=0, model={}, extra={"wall": st})
    second = WallClock.from_checkpoint(rd.load_checkpoint(restore_rng=False))
    second.add("train", 1.0)
    assert second.total("train") == 3.5 and second.sessions == 2
    assert second.elapsed() >= st["wall_s"]
    assert WallClock.from_checkpoint(None).total("train") == 0.0


def test_progress_helper_follows_verbosity(capsys) -> None:
    from spicenet import progress

    try:
        for level, shown in ((progress.NORMAL, True), (progress.QUIET, False)):
            progress.set_verbosity(level)
            assert list(progress.progress_iter(range(3), desc="work-xyz")) == [0, 1, 2]
            progress.logger().info("info-line")
            progress.logger().debug("debug-line")
            progress.note("[status-line]")
            err = capsys.readouterr().err
            assert ("work-xyz" in err) is shown and ("info-line" in err) is shown and "debug-line" not in err
            assert ("[status-line]\n" in err) is shown
        progress.set_verbosity(progress.VERBOSE)
        progress.logger().debug("debug-line")
        assert "spicenet: debug-line" in capsys.readouterr().err
        progress.set_verbosity(progress.NORMAL)
        list(progress.progress_iter(range(3), desc="work-off", enabled=False))  # the caller's own switch wins
        assert "work-off" not in capsys.readouterr().err
        with pytest.raises(ValueError, match="verbosity"):
            progress.set_verbosity(3)
    finally:
        progress.set_verbosity(progress.NORMAL)
