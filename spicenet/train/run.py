"""Run directories: config, surrogate hash, resumable checkpoints, per-epoch metrics CSV, plots, final metrics.json.

Layout of a run directory::

    run.json          meta: created, spicenet/torch versions, seed, device, surrogate path + sha256, dataset
    config.json       the training config (dict); config.toml: verbatim copy of the TOML file when given
    checkpoints/      ckpt-<step:09d>.pt (model, optimizer, RNG states, epoch, step, extra); newest = resume point
    metrics.csv       one row per logged epoch (columns grow as new keys appear)
    plots/            loss curves, sample grids (PNG)
    metrics.json      final metrics

All files are written atomically (temporary file + os.replace), so a kill leaves either the old or the new file.

Resuming and extending: a trainer passes ``length_key`` (the dotted config key of the run's length, e.g.
``train.epochs``) to :meth:`RunDir.create`; reopening a run then accepts a config that differs from the stored one
in that key only (a longer run: ``run.json`` records ``run_length`` and every change in ``extended``). A run is
*finished* when metrics.json was written at the current ``run_length`` (:attr:`RunDir.finished`). Wall times
accumulate over the sessions (processes) of a run through :class:`WallClock`, whose state rides in every
checkpoint: a resumed or extended run reports the time of the work its result is made of (earlier sessions up to
the checkpoint it resumed from, plus the whole last session), never zero.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

import spicenet
from spicenet.csvtable import read_rows
from spicenet.errors import ConfigError, DataError, UsageError
from spicenet.surrogate import file_sha256


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic_write_bytes(path, text.encode())


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().tolist()
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Snapshot of torch's global CPU (and CUDA) RNG, numpy's legacy global RNG and the given generators."""
    st: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    st["generators"] = {k: g.get_state() for k, g in (generators or {}).items()}
    return st


def restore_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    """Inverse of :func:`rng_state` (generators are restored in place by name)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for k, g in (generators or {}).items():
        if k not in state.get("generators", {}):
            raise DataError(f"checkpoint has no state for generator {k!r}")
        g.set_state(state["generators"][k])


class WallClock:
    """Wall time [s] of a run, accumulated over the sessions (process runs) that produced it.

    ``carried`` is the clock state a checkpoint recorded (``state()``), empty for a new run. Named totals
    (``add(name, seconds)``, e.g. per-model training time) and the whole-run ``elapsed()`` are the carried values
    plus this session's: total = carried + session. ``sessions`` counts the sessions including this one."""

    def __init__(self, carried: dict[str, float] | None = None, start: float | None = None) -> None:
        self._t0 = time.perf_counter() if start is None else float(start)  # this session's start (perf_counter)
        self.carried = {str(k): float(v) for k, v in (carried or {}).items()}
        self.session: dict[str, float] = {}

    @classmethod
    def from_checkpoint(cls, blob: dict[str, Any] | None, start: float | None = None) -> "WallClock":
        """The clock of a run resumed from checkpoint ``blob`` (None: a new run; reads ``blob["extra"]["wall"]``);
        ``start``: this session's ``time.perf_counter()`` at its start (default: now)."""
        return cls(((blob or {}).get("extra") or {}).get("wall"), start)

    def add(self, name: str, seconds: float) -> None:
        """Add ``seconds`` of this session to the named total ``name``."""
        self.session[name] = self.session.get(name, 0.0) + float(seconds)

    def total(self, name: str) -> float:
        """Carried + this session's seconds of ``name``."""
        return self.carried.get(name, 0.0) + self.session.get(name, 0.0)

    def elapsed(self) -> float:
        """Whole-run wall time [s]: the carried ``wall_s`` plus the time since this session's clock started."""
        return self.carried.get("wall_s", 0.0) + time.perf_counter() - self._t0

    @property
    def sessions(self) -> int:
        """Sessions that produced the run so far, this one included."""
        return int(self.carried.get("sessions", 0)) + 1

    def state(self) -> dict[str, float]:
        """What a checkpoint stores (``extra={"wall": clock.state()}``) for the next session to carry on."""
        names = set(self.carried) | set(self.session)
        out = {k: self.total(k) for k in names}
        out.update({"wall_s": self.elapsed(), "sessions": float(self.sessions)})
        return out


def _get_key(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _with_defaults(config: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``config`` with every key of ``defaults`` it lacks (at any depth) set to the default."""
    out = dict(config)
    for key, value in defaults.items():
        if key not in out:
            out[key] = value
        elif isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = _with_defaults(out[key], value)
    return out


def _without_key(config: dict[str, Any], dotted: str) -> dict[str, Any]:
    out = json.loads(json.dumps(config))
    node: Any = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.get(part, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict):
        node.pop(parts[-1], None)
    return out


class RunDir:
    """A training run's directory (see the module docstring for its layout)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.plots = self.path / "plots"

    # ------------------------------------------------------------------------------------------------ create
    @classmethod
    def create(cls, path: str | os.PathLike, config: dict[str, Any], *, config_file: str | os.PathLike | None = None,
               surrogate: str | os.PathLike | None = None, seed: int | None = None, device: str = "cpu",
               dataset: dict[str, Any] | None = None, resume: bool = True,
               length_key: str | None = None, defaults: dict[str, Any] | None = None) -> "RunDir":
        """Create (or, with ``resume``, reopen) a run directory. Reopening checks the config and the surrogate hash
        match the stored ones (ConfigError otherwise); a non-empty folder that is not a run is refused.

        ``length_key``: dotted key of the run's length in ``config`` (e.g. ``"train.epochs"``). Its value is kept
        in run.json as ``run_length``; a reopened run may differ from the stored config in that key (the run is
        extended or, before it got there, shortened: the trainer checks its checkpoint is not beyond it).

        ``defaults``: the config schema's defaults (nested like ``config``); when reopening, a key that the stored or
        the new config lacks counts as its default, so a setting added to the schema since the run started does not
        block its resume, and neither does writing a default out (trainers that store the TOML as given)."""
        run = cls(path)
        meta_path = run.path / "run.json"
        sha = file_sha256(surrogate) if surrogate is not None else None
        new_config = _jsonable(config)
        length = _get_key(new_config, length_key) if length_key else None
        if meta_path.is_file():
            if not resume:
                raise ConfigError(f"{run.path} holds a run already and this trainer cannot resume it; "
                                  "choose another -o")
            meta = run.meta()
            if meta.get("surrogate_sha256") != sha:
                raise ConfigError(f"{run.path}: surrogate changed since the run started (sha256 {meta.get('surrogate_sha256')} != {sha})")
            old_config = run.config()
            if defaults is not None:
                old_config = _with_defaults(old_config, _jsonable(defaults))
                new_config = _with_defaults(new_config, _jsonable(defaults))
            same = old_config == new_config if not length_key else \
                _without_key(old_config, length_key) == _without_key(new_config, length_key)
            if not same:
                raise ConfigError(f"{run.path}: config differs from the one the run started with; use a new run directory")
            old_length = _get_key(old_config, length_key) if length_key else None
            if length_key and old_length != length:
                _atomic_write_text(run.path / "config.json", json.dumps(new_config, indent=2, sort_keys=True))
                meta.setdefault("extended", []).append(
                    {"key": length_key, "from": old_length, "to": length,
                     "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
            if length_key:
                meta["run_length"] = {"key": length_key, "value": length}
                run._write_meta(meta)
            return run
        if run.path.exists() and any(run.path.iterdir()):
            raise ConfigError(f"{run.path} exists, is not empty and is not a run directory")
        run.path.mkdir(parents=True, exist_ok=True)
        run.checkpoints.mkdir(exist_ok=True)
        run.plots.mkdir(exist_ok=True)
        _atomic_write_text(run.path / "config.json", json.dumps(_jsonable(config), indent=2, sort_keys=True))
        if config_file is not None:
            shutil.copyfile(config_file, run.path / ("config" + Path(config_file).suffix))
        meta = {
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "spicenet_version": spicenet.__version__,
            "torch_version": torch.__version__,
            "seed": seed,
            "device": str(device),
            "surrogate": str(Path(surrogate).resolve()) if surrogate is not None else None,
            "surrogate_sha256": sha,
            "dataset": dataset,
        }
        if length_key:
            meta["run_length"] = {"key": length_key, "value": length}
        _atomic_write_text(meta_path, json.dumps(_jsonable(meta), indent=2))
        return run

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunDir":
        """Open an existing run directory (DataError when ``run.json`` is missing)."""
        run = cls(path)
        if not (run.path / "run.json").is_file():
            raise DataError(f"{run.path} is not a run directory (no run.json)")
        return run

    def meta(self) -> dict[str, Any]:
        return json.loads((self.path / "run.json").read_text())

    def _write_meta(self, meta: dict[str, Any]) -> None:
        _atomic_write_text(self.path / "run.json", json.dumps(_jsonable(meta), indent=2))

    @property
    def run_length(self) -> dict[str, Any] | None:
        """``{"key", "value"}``: the run's length as its trainer declared it (None for runs that did not)."""
        return self.meta().get("run_length")

    @property
    def finished(self) -> bool:
        """metrics.json was written at the current run length (an extension under way is not finished)."""
        if not (self.path / "metrics.json").is_file():
            return False
        meta = self.meta()
        length = meta.get("run_length")
        return length is None or meta.get("finished_length") == length.get("value")

    def config(self) -> dict[str, Any]:
        return json.loads((self.path / "config.json").read_text())

    # ------------------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self, *, step: int, epoch: int, model: torch.nn.Module | dict[str, Any],
                        optimizer: torch.optim.Optimizer | None = None,
                        generators: dict[str, torch.Generator] | None = None,
                        extra: dict[str, Any] | None = None, keep: int = 2) -> Path:
        """Atomically write ``ckpt-<step>.pt`` with model/optimizer state dicts, RNG states, epoch, step and
        ``extra``; delete all but the newest ``keep`` checkpoints."""
        if keep < 1:
            raise ValueError(f"keep: expected >= 1, got {keep}")
        blob = {
            "step": int(step),
            "epoch": int(epoch),
            "model": model.state_dict() if isinstance(model, torch.nn.Module) else model,
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "rng": rng_state(generators),
            "extra": extra or {},
        }
        buf = io.BytesIO()
        torch.save(blob, buf)
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        p = self.checkpoints / f"ckpt-{int(step):09d}.pt"
        _atomic_write_bytes(p, buf.getvalue())
        for old in self.list_checkpoints()[:-keep]:
            old.unlink(missing_ok=True)
        return p

    def list_checkpoints(self) -> list[Path]:
        return sorted(self.checkpoints.glob("ckpt-*.pt"))

    def latest_checkpoint(self) -> Path | None:
        c = self.list_checkpoints()
        return c[-1] if c else None

    def load_checkpoint(self, path: str | os.PathLike | None = None, *, model: torch.nn.Module | None = None,
                        optimizer: torch.optim.Optimizer | None = None,
                        generators: dict[str, torch.Generator] | None = None,
                        map_location: str | torch.device = "cpu", restore_rng: bool = True) -> dict[str, Any] | None:
        """Load a checkpoint (default: the newest; None when there is none) into ``model``/``optimizer``/
        ``generators`` and restore the global RNG states; returns the checkpoint dict (step, epoch, extra, ...)."""
        p = Path(path) if path is not None else self.latest_checkpoint()
        if p is None:
            return None
        try:
            blob = torch.load(p, map_location=map_location, weights_only=False)
        except (OSError, RuntimeError, EOFError) as exc:
            raise DataError(f"cannot read checkpoint {p}: {exc}") from exc
        if model is not None:
            model.load_state_dict(blob["model"])
        if optimizer is not None and blob["optimizer"] is not None:
            optimizer.load_state_dict(blob["optimizer"])
        if restore_rng:
            restore_rng_state(blob["rng"], generators)
        return blob

    # ----------------------------------------------------------------------------------------------- metrics
    @property
    def metrics_csv(self) -> Path:
        return self.path / "metrics.csv"

    def read_metrics(self) -> list[dict[str, Any]]:
        """Rows of metrics.csv with numbers parsed (empty cells -> None)."""
        return read_rows(self.metrics_csv)

    def log_metrics(self, epoch: int, **metrics: float) -> None:
        """Append (or replace) the row of ``epoch``; rows of later epochs (left by a killed run) are dropped."""
        rows = [r for r in self.read_metrics() if r.get("epoch") is not None and r["epoch"] < epoch]
        rows.append({"epoch": int(epoch), **{k: _jsonable(v) for k, v in metrics.items()}})
        self._write_rows(rows)

    def truncate_metrics(self, last_epoch: int) -> None:
        """Keep only rows with epoch <= ``last_epoch`` (call on resume from a checkpoint)."""
        self._write_rows([r for r in self.read_metrics() if r.get("epoch") is not None and r["epoch"] <= last_epoch])

    def _write_rows(self, rows: list[dict[str, Any]]) -> None:
        cols: list[str] = []
        for r in rows:  # columns in first-seen order; a column left empty by every row is dropped
            cols += [k for k in r if k not in cols and r[k] is not None]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
        _atomic_write_text(self.metrics_csv, buf.getvalue())

    def write_final_metrics(self, metrics: dict[str, Any]) -> Path:
        """Write metrics.json (JSON-able: numpy/torch values converted, NaN -> null) and mark the run finished at
        its current length (run.json ``finished_length``)."""
        p = self.path / "metrics.json"
        _atomic_write_text(p, json.dumps(_jsonable(metrics), indent=2, sort_keys=True))
        meta = self.meta()
        if meta.get("run_length") is not None:
            meta["finished_length"] = meta["run_length"].get("value")
            self._write_meta(meta)
        return p

    # ------------------------------------------------------------------------------------------------- plots
    def plot_metrics(self, keys: list[str] | None = None, name: str = "loss_curves.png", logy: bool = False) -> Path:
        """Plot metric columns (default: every column whose name contains 'loss') against epoch as a PNG."""
        from spicenet.train.plots import plot_curves

        rows = self.read_metrics()
        if not rows:
            raise DataError(f"{self.metrics_csv}: no metrics logged yet")
        keys = keys or [k for k in rows[0] if "loss" in k]
        series: dict[str, Sequence[float | None]] = {k: [r.get(k) for r in rows] for k in keys}
        return plot_curves([r["epoch"] for r in rows], series, self.plots / name, logy=logy)

    def save_sample_grid(self, images: np.ndarray | torch.Tensor, name: str = "samples.png", **kw: Any) -> Path:
        """Save images (N, H, W) / (N, H*H) as a grid PNG under plots/."""
        from spicenet.train.plots import sample_grid

        return sample_grid(images, self.plots / name, **kw)


def check_training_output(path: str | os.PathLike, *, resume: bool, length: int | None,
                          length_flag: str = "--epochs", can_resume: bool = True) -> None:
    """The rule for a training verb's output folder ``path`` (UsageError, one line naming the folder and the flag):

    * a folder without run.json is a new run (``resume`` then simply starts it);
    * a folder holding a run needs ``resume`` (otherwise the run would be continued or overwritten silently), and a
      trainer that cannot resume (``can_resume=False``) refuses it;
    * a *finished* run is continued only to a longer length: ``length`` (``--epochs N``) above its ``run_length``.
    """
    run = RunDir(path)
    if not (run.path / "run.json").is_file():
        return
    state = "a finished run" if run.finished else "an unfinished run"
    if not can_resume:
        raise UsageError(f"-o {run.path} holds {state} and this trainer cannot resume; choose another -o")
    if not resume:
        raise UsageError(f"-o {run.path} holds {state}; pass --resume to continue it (with {length_flag} N to "
                         f"extend a finished one) or choose another -o")
    if run.finished:
        done = (run.run_length or {}).get("value")
        if done is None:
            raise UsageError(f"-o {run.path} holds a finished run that records no run length; it cannot be extended")
        if length is None or int(length) <= int(done):
            raise UsageError(f"-o {run.path} holds a run finished at {done} ({(run.run_length or {}).get('key')}); "
                             f"pass {length_flag} N with N > {done} to extend it")
