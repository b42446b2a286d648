"""Run directories: config, surrogate hash, resumable checkpoints, per-epoch metrics CSV, plots, final metrics.json.

Layout of a run directory::

    run.json          meta: created, spicenet/torch versions, seed, device, surrogate path + sha256, dataset
    config.json       the training config (dict); config.toml: verbatim copy of the TOML file when given
    checkpoints/      ckpt-<step:09d>.pt (model, optimizer, RNG states, epoch, step, extra); newest = resume point
    metrics.csv       one row per logged epoch (columns grow as new keys appear)
    plots/            loss curves, sample grids (PNG)
    metrics.json      final metrics

All files are written atomically (temporary file + os.replace), so a kill leaves either the old or the new file.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

import spicenet
from spicenet.csvtable import read_rows
from spicenet.errors import ConfigError, DataError
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
               dataset: dict[str, Any] | None = None, resume: bool = True) -> "RunDir":
        """Create (or, with ``resume``, reopen) a run directory. Reopening checks the config and the surrogate hash
        match the stored ones (ConfigError otherwise); a non-empty folder that is not a run is refused."""
        run = cls(path)
        meta_path = run.path / "run.json"
        sha = file_sha256(surrogate) if surrogate is not None else None
        if meta_path.is_file():
            if not resume:
                raise ConfigError(f"run directory {run.path} exists; pass resume=True or choose another -o")
            meta = run.meta()
            if meta.get("surrogate_sha256") != sha:
                raise ConfigError(f"{run.path}: surrogate changed since the run started (sha256 {meta.get('surrogate_sha256')} != {sha})")
            if run.config() != _jsonable(config):
                raise ConfigError(f"{run.path}: config differs from the one the run started with; use a new run directory")
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
        """Write metrics.json (JSON-able: numpy/torch values converted, NaN -> null)."""
        p = self.path / "metrics.json"
        _atomic_write_text(p, json.dumps(_jsonable(metrics), indent=2, sort_keys=True))
        return p

    # ------------------------------------------------------------------------------------------------- plots
    def plot_metrics(self, keys: list[str] | None = None, name: str = "loss_curves.png", logy: bool = False) -> Path:
        """Plot metric columns (default: every column whose name contains 'loss') against epoch as a PNG."""
        from spicenet.train.plots import plot_curves

        rows = self.read_metrics()
        if not rows:
            raise DataError(f"{self.metrics_csv}: no metrics logged yet")
        keys = keys or [k for k in rows[0] if "loss" in k]
        series = {k: [r.get(k) for r in rows] for k in keys}
        return plot_curves([r["epoch"] for r in rows], series, self.plots / name, logy=logy)

    def save_sample_grid(self, images: np.ndarray | torch.Tensor, name: str = "samples.png", **kw: Any) -> Path:
        """Save images (N, H, W) / (N, H*H) as a grid PNG under plots/."""
        from spicenet.train.plots import sample_grid

        return sample_grid(images, self.plots / name, **kw)
