"""Shared fixtures: one engine (worker process) per test module, the repo root, a small environment for the CLI."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def engine():
    from spicenet.spice.engine import Engine

    with Engine(mode="shared", timeout_s=120) as eng:
        yield eng


@pytest.fixture(scope="module")
def batch_engine():
    from spicenet.spice.engine import Engine

    with Engine(mode="batch", timeout_s=120) as eng:
        yield eng


def run_cli(*args: str, timeout: float = 600, check: bool = False):
    """Run ``python -m spicenet ARGS`` in a subprocess; return the CompletedProcess."""
    import subprocess

    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "spicenet", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"spicenet {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


@pytest.fixture
def one_torch_thread():
    """Small batched torch solves are slowest with OpenMP threads on a busy 2-core machine: run them on one."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
