"""Phase, frequency and amplitude of oscillators from simulated waveforms.

Readout: ``osc_signal`` (differential ``p0 - n0`` of a ring). Phase definition (radians, unwrapped): the k-th rising crossing of ``level`` (default mid-swing) is phase
``2 pi k``; between crossings the phase is interpolated linearly in time (a free-running oscillator advances
uniformly within one period). Crossing times are themselves linearly interpolated between samples. A rising
crossing that comes *earlier* therefore means a phase *ahead*: for two oscillators of the same frequency,
``phi_b - phi_a = 2 pi (t_a - t_b) / T``. Relative to a reference of frequency ``f_ref``:
``phi(t) = theta(t) - 2 pi f_ref t`` (the phase model's rotating frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spicenet.spice import measure as _m

__all__ = ["osc_signal", "rising_crossings", "phase_series", "frequency_amplitude", "locked_difference", "LockResult",
           "wrap", "phase_increment_variance"]


def osc_signal(result, i: int, stage: int = 0, differential: bool = True) -> np.ndarray:
    """Readout waveform [V] of oscillator ``i`` in a ``SimResult`` (``netlist`` naming): the differential
    ``v(o<i>p<k>) - v(o<i>n<k>)`` by default, else ``v(o<i>p<k>)``.

    The differential readout is exactly symmetric under swapping the rails, so a coupling attached to ``n0``
    (negative) and one attached to ``p0`` (positive) are read alike; a single rail is distorted by the coupling
    current flowing into it (measured: ~2% of the locked phase when only one rail is coupled).
    """
    p = np.asarray(result[f"v(o{i}p{stage})"], float)
    return p - np.asarray(result[f"v(o{i}n{stage})"], float) if differential else p


def wrap(x: np.ndarray | float) -> np.ndarray | float:
    """Reduce angles to ``[-pi, pi)``."""
    return np.remainder(np.asarray(x) + math.pi, 2 * math.pi) - math.pi


def _level(v: np.ndarray, level: float | None) -> float:
    return 0.5 * (float(np.min(v)) + float(np.max(v))) if level is None else float(level)


def rising_crossings(t: np.ndarray, v: np.ndarray, level: float | None = None, t_start: float = 0.0) -> np.ndarray:
    """Rising crossing times [s] of ``level`` (default: mid-swing of ``v`` after ``t_start``) at or after ``t_start``."""
    t, v = np.asarray(t, float), np.asarray(v, float)
    sel = t >= t_start
    if sel.sum() < 2:
        raise ValueError(f"t_start={t_start!r} leaves fewer than 2 samples")
    return _m.crossings(t[sel], v[sel], _level(v[sel], level), "rise")


def phase_series(t: np.ndarray, v: np.ndarray, t_grid: np.ndarray, level: float | None = None,
                 t_start: float = 0.0) -> np.ndarray:
    """Unwrapped phase theta [rad] of waveform ``v`` at times ``t_grid`` (NaN outside the first..last crossing).

    The first rising crossing at or after ``t_start`` is phase 0; crossing k is ``2 pi k``.
    """
    tc = rising_crossings(t, v, level, t_start)
    if tc.size < 2:
        raise ValueError("fewer than 2 rising crossings: no oscillation")
    tg = np.asarray(t_grid, float)
    out = np.interp(tg, tc, 2 * math.pi * np.arange(tc.size))
    out[(tg < tc[0]) | (tg > tc[-1])] = np.nan
    return out


def frequency_amplitude(t: np.ndarray, v: np.ndarray, t_start: float = 0.0) -> tuple[float, float]:
    """(frequency [Hz] from the mean rising-crossing period, amplitude [V] = (max - min) / 2) after ``t_start``."""
    tc = rising_crossings(t, v, None, t_start)
    if tc.size < 3:
        raise ValueError(f"fewer than 3 rising crossings after t_start={t_start!r}: no oscillation")
    sel = np.asarray(t) >= t_start
    vv = np.asarray(v, float)[sel]
    return float((tc.size - 1) / (tc[-1] - tc[0])), 0.5 * float(vv.max() - vv.min())


@dataclass(frozen=True)
class LockResult:
    """Locked phase difference of b relative to a over a window.

    dphi: circular mean of ``phi_b - phi_a`` [rad] in [-pi, pi); spread: its circular std [rad];
    drift: total change of the unwrapped difference over the window [rad]; beat_hz: drift / window / 2pi;
    f_a, f_b: mean frequencies [Hz]; locked: ``|drift| < drift_tol`` and ``spread < spread_tol``.
    """

    dphi: float
    spread: float
    drift: float
    beat_hz: float
    f_a: float
    f_b: float
    locked: bool


def locked_difference(t: np.ndarray, va: np.ndarray, vb: np.ndarray, t_start: float, n_grid: int = 400,
                      drift_tol: float = 0.1, spread_tol: float = 0.1) -> LockResult:
    """Phase of waveform ``vb`` minus phase of ``va`` over ``[t_start, t_end]`` and whether they are locked.

    Both phases are aligned so that the difference is the physical one: ``2 pi (t_a - t_b) / T`` for the rising
    crossings of a and b nearest each other.
    """
    t = np.asarray(t, float)
    ta = rising_crossings(t, va, None, t_start)
    tb = rising_crossings(t, vb, None, t_start)
    if ta.size < 3 or tb.size < 3:
        raise ValueError("fewer than 3 rising crossings in the window: no oscillation")
    lo, hi = max(ta[0], tb[0]), min(ta[-1], tb[-1])
    if not hi > lo:
        raise ValueError("window too short for both oscillators")
    grid = np.linspace(lo, hi, n_grid)
    pa = np.interp(grid, ta, 2 * math.pi * np.arange(ta.size))
    pb = np.interp(grid, tb, 2 * math.pi * np.arange(tb.size))
    # absolute alignment: crossing index offsets are arbitrary, so take the difference modulo 2 pi
    d = pb - pa
    z = np.exp(1j * d)
    mean = complex(z.mean())
    dphi = float(wrap(np.angle(mean)))
    r = min(abs(mean), 1.0)
    spread = float(math.sqrt(max(-2.0 * math.log(max(r, 1e-300)), 0.0)))
    drift = float(d[-1] - d[0])
    window = hi - lo
    fa = (ta.size - 1) / (ta[-1] - ta[0])
    fb = (tb.size - 1) / (tb[-1] - tb[0])
    return LockResult(dphi, spread, drift, float(drift / window / (2 * math.pi)), float(fa), float(fb),
                      bool(abs(drift) < drift_tol and spread < spread_tol))


def phase_increment_variance(t: np.ndarray, v: np.ndarray, lags_s: np.ndarray, t_start: float = 0.0,
                             n_grid: int = 4000) -> np.ndarray:
    """Variance [rad^2] of ``phi(t + tau) - phi(t)`` for each lag ``tau`` in ``lags_s``, with ``phi`` the phase
    relative to the oscillator's own mean frequency over the window (overlapping increments).

    For a phase-diffusing oscillator ``Var = 2 D tau`` (D the phase diffusion constant [rad^2/s]).
    """
    t = np.asarray(t, float)
    tc = rising_crossings(t, v, None, t_start)
    if tc.size < 4:
        raise ValueError("fewer than 4 rising crossings: cannot measure phase noise")
    # phase sampled at the crossings: phi_k = 2 pi k - 2 pi f_mean (t_k - t_0) is the timing-jitter phase
    k = np.arange(tc.size)
    slope, icpt = np.polyfit(tc - tc[0], k, 1)
    out = []
    grid = np.linspace(tc[0], tc[-1], n_grid)
    phi = 2 * math.pi * (np.interp(grid, tc, k) - slope * (grid - tc[0]))
    dt = grid[1] - grid[0]
    for tau in np.asarray(lags_s, float):
        m = int(round(tau / dt))
        if m < 1 or m >= grid.size - 1:
            raise ValueError(f"lag {tau!r} s does not fit the window of {grid[-1] - grid[0]:.3g} s")
        inc = phi[m:] - phi[:-m]
        out.append(float(np.var(inc)))
    return np.asarray(out)
