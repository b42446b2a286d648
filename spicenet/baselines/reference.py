"""The analog generator a baseline is set beside: its trainer config, evaluation protocol and parameter count.

``compare = "dtm"`` reads ``training/dtm[_quick].toml`` and ``"ais"`` reads ``training/ais[_quick].toml`` (the same
files ``spicenet train dtm|ais [--quick]`` use, through ``spicenet.families.load_config``), or the trainer's config
file given as ``config_path`` (``--compare-config``, e.g. a full config). From that config the
baseline takes the data source and split (``source``, ``n_train``, ``n_test``: the held-out FID reference is the
trainer's test split) and the number of generated images per FID (dtm ``eval.eval_samples``, ais
``train.n_eval_samples``); the encoding follows the family: binarized (``spin`` from ``load_dataset``, pixels
{0, 1} for the networks) for the DTM, grey levels in [0, 1] for AIS.

Parameter counts are those of the family's own model objects built from the config:

* DTM: per denoising step the couplings (one per graph edge), a bias per p-bit and the data coupling gamma per
  pixel: ``T (E + N + D)`` (``DTM.steps``);
* AIS: the generator's trainable tensors (coupling codes per edge and segment, SHIL and bias per oscillator and
  segment; ``AISGenerator.parameters``); the digital critic is training-only and not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spicenet.errors import ConfigError

__all__ = ["COMPARE", "AnalogReference", "analog_reference"]

COMPARE = ("dtm", "ais")


@dataclass(frozen=True)
class AnalogReference:
    """What a baseline copies from the analog trainer's config, and that generator's size."""

    compare: str           # "dtm" | "ais"
    config_name: str       # e.g. "dtm_quick"
    dataset: str           # the config's own dataset and image size (the analog model's counts are for these)
    size: int
    source: str
    n_train: int | None
    n_test: int | None
    n_eval_samples: int    # generated images per FID
    encoding: str          # "binary" (DTM) | "grey" (AIS)
    n_params: int          # the analog generator's trainable scalars
    params_detail: dict[str, Any]


def analog_reference(compare: str, quick: bool, seed: int = 0, config_path: str | None = None) -> AnalogReference:
    """The reference of ``compare`` ("dtm" / "ais") from its shipped (quick) training config, or from the training
    config file ``config_path`` (e.g. ``training/ais_mnist_full.toml``: the baseline then matches that run's split,
    FID sample count and parameter count)."""
    from pathlib import Path

    from spicenet.families import load_config

    if compare not in COMPARE:
        raise ConfigError(f"--compare: expected one of {', '.join(COMPARE)}, got {compare!r}")
    config = load_config(config_path, "training", compare, quick)
    name = Path(config_path).stem if config_path else f"{compare}{'_quick' if quick else ''}"
    if compare == "dtm":
        from spicenet.cells.rng.dtm import DTM
        from spicenet.cells.rng.training import parse_config

        cfg = parse_config(config)
        model = DTM(cfg.image_size ** 2, cfg.dtm_config(seed))
        parts = {"couplings": sum(p.weights.numel() for p in model.steps),
                 "biases": sum(p.biases.numel() for p in model.steps),
                 "data_couplings": sum(p.gamma.numel() for p in model.steps)}
        detail = {**parts, "edges": int(model.graph.n_edges), "cells": int(model.graph.n_nodes),
                  "steps": cfg.steps, "weight_bits": cfg.weight_bits}
        return AnalogReference("dtm", name, cfg.dataset, cfg.image_size, cfg.source, cfg.n_train or None,
                               cfg.n_test or None, cfg.eval_samples, "binary", int(sum(parts.values())), detail)
    from spicenet.cells.oscillator.ais import AISGenerator
    from spicenet.cells.oscillator.training import build_ais_config

    ais_cfg, data = build_ais_config(config, seed)
    gen = AISGenerator(ais_cfg)
    parts = {name_: int(p.numel()) for name_, p in gen.named_parameters()}
    detail = {**parts, "edges": int(gen.n_edges), "oscillators": int(ais_cfg.n_oscillators),
              "segments": ais_cfg.n_segments, "bits": ais_cfg.n_bits}
    n_eval = int(dict(config.get("train", {})).get("n_eval_samples", 500))  # the AIS trainer's default
    return AnalogReference("ais", name, str(data.get("dataset", "mnist")), ais_cfg.height, str(data.get("source", "sample")),
                           int(data.get("n_train", 0)) or None, int(data.get("n_test", 0)) or None, n_eval, "grey",
                           int(sum(parts.values())), detail)
