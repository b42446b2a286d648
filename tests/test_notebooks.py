"""The example notebooks (examples/*.ipynb) run top to bottom on the embedded defaults.

Each notebook compares its SPICE results with an independent reference and ``assert``s the comparison itself
(RC step vs the analytic exponential, Monte-Carlo spread vs Pelgrom's law, Gibbs histogram vs exact enumeration,
SPICE locked phase vs the phase model, EqProp vs autograd and solver vs ngspice ``.op``, inverter threshold vs the
weak-inversion law), so a physics regression fails the cell and therefore the test. The last cell writes the
notebook's headline numbers to ``$SPICENET_EXAMPLES_OUT/summary.json``; the test checks them again here.

The kernel is a private kernelspec (written into a temporary folder put on ``JUPYTER_PATH``) that launches this very
interpreter (``sys.executable``), so it sees the same environment as pytest whatever kernelspecs the machine has;
each notebook runs in its own ``tmp_path`` (working directory, and ``$SPICENET_EXAMPLES_OUT`` for its outputs), and
the test checks that nothing was written into ``examples/``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbclient
import nbformat
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = ["01_simulate_and_sweep", "02_pbit_boltzmann", "03_oscillator_pair", "04_resistive_eqprop",
             "05_custom_template"]
CELL_TIMEOUT_S = 240


KERNEL = "spicenet-notebook-test"


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A kernelspec that starts ``sys.executable -m ipykernel_launcher``, visible through ``JUPYTER_PATH``."""
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "spicenet tests", "language": "python"}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(root))
        mp.setenv("OMP_NUM_THREADS", "1")
        from jupyter_client.kernelspec import KernelSpecManager

        assert KernelSpecManager().get_kernel_spec(KERNEL).argv[0] == sys.executable
        yield KERNEL


def run_notebook(name: str, kernel: str, workdir: Path, out: Path) -> tuple[dict, float]:
    """Execute ``examples/<name>.ipynb`` in ``workdir`` with its outputs in ``out``; return the summary the notebook
    wrote (``out/summary.json``, written by its last cell after all its asserts) and the wall time (s)."""
    nb = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs"), f"{name}: committed notebooks must have their outputs stripped"
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, startup_timeout=120, kernel_name=kernel,
                                     resources={"metadata": {"path": str(workdir)}})
    t0 = time.perf_counter()
    client.execute()   # raises CellExecutionError (with the traceback) on any failing cell
    wall = time.perf_counter() - t0
    figures = sum("image/png" in o.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
                  for o in cell.outputs)
    assert figures >= 1, f"{name}: no inline figure was displayed"
    return json.loads((out / "summary.json").read_text()), wall


def test_examples_folder_lists_the_five_notebooks():
    found = sorted(p.stem for p in EXAMPLES.glob("*.ipynb"))
    assert found == NOTEBOOKS
    readme = (EXAMPLES / "README.md").read_text()
    for name in NOTEBOOKS:
        assert f"{name}.ipynb" in readme


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name: str, kernel_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    before = sorted(p.name for p in EXAMPLES.iterdir())
    out = tmp_path / "out"
    monkeypatch.setenv("SPICENET_EXAMPLES_OUT", str(out))   # the kernel inherits the environment
    summary, wall = run_notebook(name, kernel_name, tmp_path, out)
    print(f"{name}: {wall:.1f} s")
    assert summary["check_passed"] is True
    assert sorted(p.name for p in EXAMPLES.iterdir()) == before, "a notebook wrote into examples/"
    if name == "01_simulate_and_sweep":
        assert summary["rc_max_err_v"] < 2e-3                       # tau = 2 us sampled at 10 ns
        assert abs(summary["energy_ratio"] - 1) < 0.01              # E = C V^2 (1 - exp(-t/tau))
        assert all(abs(r - 1) < 0.15 for r in summary["pelgrom_ratio"])
        assert abs(summary["pelgrom_slope"] + 0.5) < 0.06           # sigma ~ 1/sqrt(WL)
        assert abs(summary["chip_slope"] - 1) < 0.03 and summary["chip_corr"] > 0.999
    elif name == "02_pbit_boltzmann":
        assert summary["r2"] > 0.98
        assert 0 < summary["vs_v"] < 1e-3 and 1e-9 < summary["tau_s"] < 1e-6
        assert summary["tv_ideal"] < 1.5 * summary["tv_floor"] + 0.005
        assert summary["tv_gain_vs_hot"] < 1.5 * summary["tv_floor"] + 0.005
        assert summary["tv_trimmed"] < summary["tv_untrimmed"]
    elif name == "03_oscillator_pair":
        assert 1e9 < summary["f0_hz"] < 5e9
        assert all(row["locked"] for row in summary["test"])
        assert summary["err_root_rad"] < 0.1 and summary["err_ode_rad"] < 0.1
    elif name == "04_resistive_eqprop":
        assert summary["eqprop_vs_autograd_rel_err"] < 1e-4
        assert summary["spice_err_law_v"] < 1e-6 and summary["spice_err_process_v"] < 1e-3
        assert summary["test_accuracy"] > 0.4
        acc = summary["accuracy_40"]
        assert acc["spice_law"] == acc["solver"] and acc["spice_chip"] == acc["solver_chip"]
    elif name == "05_custom_template":
        assert abs(summary["chip_slope"] - 1) < 0.05 and summary["chip_corr"] > 0.99
        assert abs(summary["sigma_vm_v"] / summary["sigma_pelgrom_v"] - 1) < 0.2
