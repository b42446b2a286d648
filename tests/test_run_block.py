"""A Monte-Carlo point planned as a ``RunBlock`` is the same runs as ``montecarlo_runs`` makes one by one, and the
worker's block path (vectors read straight into column bytes) stores what the per-run path returns.

References: ``montecarlo_runs`` (per-chip Pelgrom draws through ``mismatch.chip_commands``, the engine's
Monte-Carlo contract) for the planned commands and seeds; ``Engine.simulate_many`` on a plain list of ``RunSpec``s
(``runner.execute_job``, one ``SimResult`` per run) for the simulated numbers. Both are independent of the block
code: a wrong chip's draws, a shifted seed or a vector read from the wrong plot changes the comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spicenet.spice.engine import Engine, montecarlo_block, montecarlo_runs, render
from spicenet.sweep import SweepConfig, run_sweep

CHIPS = [0, 1, 2, 7, 31, 999, 12345]


@pytest.mark.parametrize("template", ["basic/current_mirror", "oscillator/ring5"])
@pytest.mark.parametrize("seed", [0, 11])
@pytest.mark.parametrize("noise_seed", [None, 5])
def test_block_runs_equal_montecarlo_runs(template: str, seed: int, noise_seed: int | None) -> None:
    deck = render(template, {}, "generic", "pelgrom")
    expected = montecarlo_runs(deck, "op", CHIPS, seed, id_prefix="p00003-", noise_seed=noise_seed, save=("v(d)",))
    block = montecarlo_block(deck, "op", CHIPS, seed, id_prefix="p00003-", noise_seed=noise_seed, save=("v(d)",))
    assert len(block) == len(expected)
    assert list(block) == expected
    assert [block[k] for k in range(len(block))] == expected
    assert list(block[2:5]) == expected[2:5] and list(block[::-1]) == expected[::-1]
    assert all(run.commands for run in block)  # Pelgrom: every chip alters every transistor


def test_block_runs_differ_between_seeds_and_chips() -> None:
    """Negative control: the comparison above would notice draws that ignore the seed or the chip."""
    deck = render("basic/current_mirror", {}, "generic", "pelgrom")
    a = montecarlo_block(deck, "op", [0, 1], 0)
    b = montecarlo_block(deck, "op", [0, 1], 1)
    assert a[0].commands != a[1].commands
    assert a[0].commands != b[0].commands


def _stored(out: Path, vector: str) -> dict[int, np.ndarray]:
    """chip -> the stored vector of that chip's run (plain h5py, columnar layout 2)."""
    import h5py

    with h5py.File(out, "r") as f:
        chips = f["table/chip"][:]
        g = f[f"vectors/{vector}"]
        data, offset, length = g["data"][:], g["offset"][:], g["length"][:]
    return {int(c): data[o:o + n] for c, o, n in zip(chips, offset, length)}


@pytest.mark.parametrize(("template", "analysis", "vector"), [
    ("basic/current_mirror", "op", "i(vout)"),
    ("oscillator/ring5", "tran 10p 1n 0 10p uic", "v(n5)"),
])
def test_block_path_stores_what_the_per_run_path_returns(tmp_path: Path, template: str, analysis: str,
                                                         vector: str) -> None:
    chips = 5
    cfg = {"template": template, "process": "generic", "analysis": analysis, "seed": 3, "save": [vector],
           "montecarlo": {"chips": chips, "mode": "pelgrom"}}
    out = tmp_path / "runs.h5"
    summary = run_sweep(SweepConfig.from_dict(cfg), out, workers=2, progress=False)
    assert summary.failed == 0
    stored = _stored(out, vector)
    deck = render(template, {}, "generic", "pelgrom")
    runs = montecarlo_runs(deck, analysis, range(chips), 3, save=(vector,))
    with Engine(workers=1) as engine:
        results = engine.simulate_many(deck, runs)
    assert sorted(stored) == list(range(chips))
    spread = []
    for chip, run in enumerate(runs):
        ref = np.asarray(results[run.id].vectors[vector], dtype=np.float64)
        assert stored[chip].shape == ref.shape and np.array_equal(stored[chip], ref), f"chip {chip}"
        spread.append(ref[-1])
    assert len(set(spread)) == chips  # the chips differ: a run stored under the wrong chip would be noticed
