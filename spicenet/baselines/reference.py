"""The analog generator a baseline is set beside: its trainer config, evaluation protocol and parameter count.

The trainers a baseline can be compared with are the registered ones with a ``baseline_reference``
(:class:`spicenet.families.Trainer`; :func:`comparable`): ``compare = "<trainer>"`` reads that trainer's default
config ``training/<trainer>[_quick].toml`` (the same file ``spicenet train <trainer> [--quick]`` uses, through
``Family.training_settings``), or the trainer's config file given as ``config_path`` (``--compare-config``, e.g. a
full config), and the trainer's family builds the reference from it. From that config the baseline takes the data
source and split (``source``, ``n_train``, ``n_test``: the held-out FID reference is the trainer's test split) and
the number of generated images per FID; the encoding follows the family: binarized (``spin`` from
``load_dataset``, pixels {0, 1} for the networks) for the DTM, grey levels in [0, 1] for AIS.

Parameter counts are those of the family's own model objects built from the config:

* DTM: per denoising step the couplings (one per graph edge), a bias per p-bit and the data coupling gamma per
  pixel: ``T (E + N + D)`` (``DTM.steps``);
* AIS: the generator's trainable tensors (coupling codes per edge and segment, SHIL and bias per oscillator and
  segment; ``AISGenerator.parameters``); the digital critic is training-only and not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spicenet.errors import ConfigError

if TYPE_CHECKING:
    from spicenet.families import Family, Trainer

__all__ = ["AnalogReference", "analog_reference", "comparable"]


@dataclass(frozen=True)
class AnalogReference:
    """What a baseline copies from the analog trainer's config, and that generator's size."""

    compare: str           # the trainer's name
    config_name: str       # e.g. "<trainer>_quick"
    dataset: str           # the config's own dataset and image size (the analog model's counts are for these)
    size: int
    source: str
    n_train: int | None
    n_test: int | None
    n_eval_samples: int    # generated images per FID
    encoding: str          # "binary" | "grey"
    n_params: int          # the analog generator's trainable scalars
    params_detail: dict[str, Any]


def comparable() -> dict[str, tuple[Family, Trainer]]:
    """The registered trainers a baseline can be compared with (those with a ``baseline_reference``), by name, in
    the registry's order: (its family, the Trainer)."""
    from spicenet.families import trainers

    return {name: (family, trainer) for name, (family, trainer) in trainers().items()
            if trainer.baseline_reference is not None}


def analog_reference(compare: str, quick: bool, seed: int = 0, config_path: str | None = None) -> AnalogReference:
    """The reference of the trainer ``compare`` (one of :func:`comparable`) from its shipped (quick) training
    config, or from the training config file ``config_path`` (e.g. a full config of ``training/``: the baseline
    then matches that run's split, FID sample count and parameter count)."""
    from pathlib import Path

    found = comparable()
    if compare not in found:
        raise ConfigError(f"--compare: expected one of {', '.join(found) or 'none'}, got {compare!r}")
    family, trainer = found[compare]
    assert trainer.baseline_reference is not None  # comparable() keeps only those
    config = family.training_settings(trainer, quick, config_path)
    name = Path(config_path).stem if config_path else f"{trainer.config_name}{'_quick' if quick else ''}"
    return trainer.baseline_reference(config, name, seed)
