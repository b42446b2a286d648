"""Waveform measurements every cell family needs: crossings, period/frequency, duty, settling, supply energy.

All functions take numpy arrays of a time (or other scale) vector ``t`` and a signal ``y`` of the same length;
crossing times are linearly interpolated between samples.
"""

from __future__ import annotations

import numpy as np


def _check(t: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(t, dtype=float)
    y = np.asarray(np.real(y), dtype=float)
    if t.ndim != 1 or t.shape != y.shape:
        raise ValueError(f"t and y must be 1-D of the same length, got shapes {t.shape} and {y.shape}")
    if t.size < 2:
        raise ValueError(f"need at least 2 samples, got {t.size}")
    return t, y


def crossings(t: np.ndarray, y: np.ndarray, level: float, direction: str = "both") -> np.ndarray:
    """Times where ``y`` crosses ``level`` (``direction`` "rise", "fall" or "both"), linearly interpolated."""
    if direction not in ("rise", "fall", "both"):
        raise ValueError(f"direction must be 'rise', 'fall' or 'both', got {direction!r}")
    t, y = _check(t, y)
    d = y - level
    s0, s1 = d[:-1], d[1:]
    rise = (s0 < 0) & (s1 >= 0)
    fall = (s0 > 0) & (s1 <= 0)
    mask = rise if direction == "rise" else fall if direction == "fall" else (rise | fall)
    idx = np.nonzero(mask)[0]
    frac = s0[idx] / (s0[idx] - s1[idx])
    return t[idx] + frac * (t[idx + 1] - t[idx])


def period(t: np.ndarray, y: np.ndarray, level: float | None = None, skip: int = 1) -> float:
    """Mean period (s) from rising crossings of ``level`` (default: mid-swing), dropping the first ``skip`` cycles
    (start-up). Raises ValueError when fewer than two cycles remain."""
    t, y = _check(t, y)
    if level is None:
        level = 0.5 * (float(np.min(y)) + float(np.max(y)))
    rises = crossings(t, y, level, "rise")[skip:]
    if rises.size < 2:
        raise ValueError(f"fewer than 2 rising crossings of {level:.4g} after skipping {skip}: no oscillation")
    return float((rises[-1] - rises[0]) / (rises.size - 1))


def frequency(t: np.ndarray, y: np.ndarray, level: float | None = None, skip: int = 1) -> float:
    """Mean frequency (Hz) = 1 / period."""
    return 1.0 / period(t, y, level, skip)


def duty(t: np.ndarray, y: np.ndarray, level: float | None = None) -> float:
    """Fraction of time ``y`` is above ``level`` (default mid-swing), integrated over whole cycles when possible."""
    t, y = _check(t, y)
    if level is None:
        level = 0.5 * (float(np.min(y)) + float(np.max(y)))
    rises = crossings(t, y, level, "rise")
    if rises.size >= 2:
        lo, hi = rises[0], rises[-1]
    else:
        lo, hi = t[0], t[-1]
    fine = np.linspace(lo, hi, max(10 * t.size, 1000))
    return float(np.mean(np.interp(fine, t, y) > level))


def settling_time(t: np.ndarray, y: np.ndarray, tolerance: float = 0.01, final: float | None = None) -> float:
    """Time after which ``y`` stays within ``tolerance`` (relative to the step size) of its final value."""
    t, y = _check(t, y)
    final = float(y[-1]) if final is None else final
    step = abs(final - float(y[0])) or 1.0
    outside = np.nonzero(np.abs(y - final) > tolerance * step)[0]
    if outside.size == 0:
        return float(t[0])
    last = outside[-1]
    return float(t[min(last + 1, t.size - 1)])


def supply_energy(t: np.ndarray, v: np.ndarray, i: np.ndarray, t0: float | None = None,
                  t1: float | None = None) -> float:
    """Energy (J) delivered by a voltage source over [t0, t1]: E = -integral v(t) i(t) dt.

    ``i`` is ngspice's branch current of the source (positive into its + terminal), hence the minus sign: a
    supply delivering power has i < 0 and E > 0. Trapezoidal rule on the simulator's own time points, with the
    window edges interpolated.
    """
    t, v = _check(t, v)
    _, i = _check(t, i)
    t0 = t[0] if t0 is None else t0
    t1 = t[-1] if t1 is None else t1
    if not t[0] <= t0 < t1 <= t[-1]:
        raise ValueError(f"window [{t0}, {t1}] must lie inside the simulated time [{t[0]}, {t[-1]}]")
    p = -v * i
    inside = (t > t0) & (t < t1)
    tt = np.concatenate([[t0], t[inside], [t1]])
    pp = np.concatenate([[np.interp(t0, t, p)], p[inside], [np.interp(t1, t, p)]])
    return float(np.trapezoid(pp, tt))


def average_power(t: np.ndarray, v: np.ndarray, i: np.ndarray, t0: float | None = None,
                  t1: float | None = None) -> float:
    """Mean power (W) delivered by a source over [t0, t1] = supply_energy / (t1 - t0)."""
    t = np.asarray(t, dtype=float)
    t0 = t[0] if t0 is None else t0
    t1 = t[-1] if t1 is None else t1
    return supply_energy(t, v, i, t0, t1) / (t1 - t0)
