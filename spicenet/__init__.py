"""spicenet: SPICE-level models of analog and probabilistic hardware for machine learning.

netlist templates -> ngspice simulation (Monte-Carlo mismatch, injected noise) -> calibrated behavioural
surrogates -> torch training with mismatch-aware noise injection -> export back to a netlist -> ngspice
validation, with the surrogate-vs-SPICE gap and the energy reported.
"""

__version__ = "0.1.0"
