"""Exception types of spicenet. Every error carries a one-line message naming what is wrong and where.

The CLI prints ``str(error)`` on one line of stderr and exits non-zero for any ``SpicenetError``.
"""

from __future__ import annotations


class SpicenetError(Exception):
    """Base class: an error the user can act on (bad input, failed simulation, missing data)."""


class ParameterError(SpicenetError, ValueError):
    """A template parameter is unknown, missing, malformed, of the wrong unit or out of range."""


class TemplateError(SpicenetError):
    """A netlist template file is malformed (bad header, undeclared placeholder)."""


class NetlistError(SpicenetError):
    """ngspice rejected a netlist; the message holds ngspice's own words and the offending line."""


class SimulationError(SpicenetError):
    """An analysis failed in ngspice for a reason other than convergence."""


class ConvergenceError(SimulationError):
    """An analysis did not converge after the whole retry ladder; names the analysis and the failing node/device."""


class SimulationTimeout(SimulationError):
    """A simulation ran past its per-run time limit and its worker process was killed."""


class WorkerCrashed(SimulationError):
    """The worker process running a simulation died (segfault, abort, out of memory)."""


class ProcessError(SpicenetError):
    """A process/PDK is unknown or not installed."""


class ConfigError(SpicenetError, ValueError):
    """A TOML config (sweep, calibration, training) is malformed; names the key and the file."""


class DataError(SpicenetError):
    """A dataset could not be found or read; says where it looked and how to provide it."""
