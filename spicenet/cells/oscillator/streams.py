"""The oscillator family's random streams (:mod:`spicenet.seeds`), with the values its sites used before
(published numbers unchanged)."""

from __future__ import annotations

from spicenet.seeds import Layout, register

__all__ = ["PHASE_NOISE"]

PHASE_NOISE = register("OSC_PHASE_NOISE", None, index="realisation k", arity=1, layout=Layout.NUMPY, base=1000,
                       draws=("oscillator calibrate._noise: the ngspice TRRANDOM seed of phase-noise run k = "
                              "Monte-Carlo chip 1000 + k (clear of the Pelgrom chips 0..chips-1)"))
