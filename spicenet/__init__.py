"""spicenet: SPICE-level models of analog and probabilistic hardware for machine learning.

netlist templates -> ngspice simulation (Monte-Carlo mismatch, injected noise) -> calibrated behavioural
surrogates -> torch training with mismatch-aware noise injection -> export back to a netlist -> ngspice
validation, with the surrogate-vs-SPICE gap and the energy reported.
"""

__version__ = "0.1.0"


def __getattr__(name: str):  # lazy: `import spicenet` stays light; spicenet.open_runs imports h5py on first use
    if name == "open_runs":
        from spicenet.store import open_runs

        return open_runs
    raise AttributeError(f"module 'spicenet' has no attribute {name!r}")
