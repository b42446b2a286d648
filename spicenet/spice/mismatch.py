"""Monte-Carlo device mismatch: Pelgrom's law sampled per device per chip, pushed into a loaded deck with ``alter``.

Pelgrom (1989): for a transistor of gate area W*L (um^2),
    sigma(dVth) = A_vt / sqrt(W L)            [A_vt in V*um]
    sigma(dbeta/beta) = A_beta / sqrt(W L)     [A_beta as a fraction*um]
Each chip is a seed; the per-device draws come from ``numpy.random.default_rng(SeedSequence([seed, chip]))`` in the
order the devices appear in the deck, so the same (seed, chip) gives bit-identical values. The values are applied
as ``alter m.<instance>.m0 delvto=...`` (and the process's beta parameter) on a loaded deck: no re-parse per chip.

For sky130 the PDK's own statistical model can be used instead (mode ``pdk``): the deck is rendered with
``mc_mm_switch=1`` and each chip is ``setseed <seed>`` + ``reset``, which re-draws its ``agauss`` parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from spicenet.errors import ParameterError
from spicenet.spice.units import parse_value

_X_LINE = re.compile(r"^\s*(x\S+)\s+(.*)$", re.IGNORECASE)


@dataclass(frozen=True)
class Device:
    """A transistor instance of a rendered deck: instance name (lower case), logical kind, W and L in um."""

    name: str
    kind: str
    w: float
    l: float


def find_devices(deck: str, process) -> list[Device]:
    """The top-level transistor instances (``X... nfet w=.. l=..``) of a rendered deck, in deck order."""
    by_subckt = {sub.lower(): kind for kind, sub in process.devices.items() if kind in process.pelgrom}
    devices = []
    in_subckt = 0
    for line in deck.splitlines():
        lower = line.strip().lower()
        if lower.startswith(".subckt"):
            in_subckt += 1
        elif lower.startswith(".ends"):
            in_subckt -= 1
        match = _X_LINE.match(line)
        if not match or in_subckt:
            continue
        tokens = match.group(2).split()
        words = [t for t in tokens if "=" not in t]
        if not words or words[-1].lower() not in by_subckt:
            continue
        params = dict(t.lower().split("=", 1) for t in tokens if "=" in t)
        try:
            w, l = parse_value(params["w"]), parse_value(params["l"])
        except (KeyError, ValueError):
            raise ParameterError(f"device {match.group(1)!r}: mismatch needs numeric w= and l= (um), got "
                                 f"{line.strip()!r}") from None
        devices.append(Device(match.group(1).lower(), by_subckt[words[-1].lower()], w, l))
    return devices


def chip_seed(seed: int, chip: int) -> np.random.SeedSequence:
    """The seed sequence of chip ``chip`` of a Monte-Carlo run seeded ``seed``."""
    if seed < 0 or chip < 0:
        raise ParameterError(f"seed and chip must be >= 0, got seed={seed}, chip={chip}")
    return np.random.SeedSequence([int(seed), int(chip)])


def sample_chip(devices: list[Device], process, seed: int, chip: int) -> dict[str, tuple[float, float]]:
    """Per device: (dVth in V, beta factor 1 + dbeta/beta) drawn from Pelgrom's law for chip ``chip``."""
    # PCG64 seeded by the sequence is exactly what default_rng builds, without its argument dispatch (measured
    # 38 -> 22 us per chip on a loaded 2-core machine; planning is a per-run cost of sub-millisecond sweeps)
    gen = np.random.Generator(np.random.PCG64(chip_seed(seed, chip)))
    draws = gen.standard_normal((len(devices), 2))
    values = {}
    for device, (z_vt, z_beta) in zip(devices, draws):
        a_vt, a_beta = process.pelgrom[device.kind]
        area = np.sqrt(device.w * device.l)
        values[device.name] = (float(z_vt * a_vt / area), float(1.0 + z_beta * a_beta / area))
    return values


def chip_commands(devices: list[Device], process, seed: int, chip: int) -> tuple[str, ...]:
    """The ``alter`` commands that put chip ``chip``'s mismatch into a loaded deck."""
    commands: list[str] = []
    for name, (dvt, beta) in sample_chip(devices, process, seed, chip).items():
        commands.extend(process.alter_commands(name, dvt, beta))
    return tuple(commands)


def nominal_commands(devices: list[Device], process) -> tuple[str, ...]:
    """The ``alter`` commands that restore every device to nominal (no mismatch)."""
    commands: list[str] = []
    for device in devices:
        commands.extend(process.alter_commands(device.name, 0.0, 1.0))
    return tuple(commands)
