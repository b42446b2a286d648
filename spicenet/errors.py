"""Exception types of spicenet. Every error carries a one-line message naming what is wrong and where.

The CLI prints ``str(error)`` on one line of stderr and exits non-zero for any ``SpicenetError``: 2 for a
``UsageError`` (bad input: an argument, a config, a template, a file the verb was given), 1 for anything else
(a simulation that failed, a worker that crashed).
"""

from __future__ import annotations

from pathlib import Path


class SpicenetError(Exception):
    """Base class: an error the user can act on (bad input, failed simulation, missing data)."""


class UsageError(SpicenetError):
    """Bad input the user gave (an argument, a config value, a file): the CLI exits 2."""


class ParameterError(UsageError, ValueError):
    """A template parameter is unknown, missing, malformed, of the wrong unit or out of range."""


class TemplateError(UsageError):
    """A netlist template file is malformed (bad header, undeclared placeholder)."""


class NetlistError(UsageError):
    """ngspice rejected a netlist; the message holds ngspice's own words and the offending line. Bad input: a verb
    whose every run failed with it (``simulate``) exits 2 and keeps no output; in a sweep it is a failed run."""


class SimulationError(SpicenetError):
    """An analysis failed in ngspice for a reason other than convergence."""


class ConvergenceError(SimulationError):
    """An analysis did not converge after the whole retry ladder; names the analysis and the failing node/device."""


class SimulationTimeout(SimulationError):
    """A simulation ran past its per-run time limit and its worker process was killed."""


class WorkerCrashed(SimulationError):
    """The worker process running a simulation died (segfault, abort, out of memory)."""


class ProcessError(UsageError):
    """A process/PDK is unknown or not installed."""


class ConfigError(UsageError, ValueError):
    """A TOML config (sweep, calibration, training) is malformed; names the key and the file."""


class DataError(UsageError):
    """A dataset could not be found or read; says where it looked and how to provide it."""


def read_toml(path: Path, label: str, error: type[SpicenetError] = ConfigError) -> dict:
    """The TOML document at ``path``; a file that cannot be read, is not UTF-8 or is not TOML raises ``error`` with
    one line ``"<label>: <what is wrong>"`` (``label`` names the file for the user, e.g. ``"--config x.toml"``)."""
    import tomllib

    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise error(f"{label}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{label}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{label}: {' '.join(str(exc).split())}") from None
