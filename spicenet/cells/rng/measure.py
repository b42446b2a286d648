"""Measurements on simulated p-bit waveforms: P(1), autocorrelation time, dwell times, energy per bit, logistic fit.

The read-out of a continuous-time p-bit is the sign of its differential output x(t) = v(a) - v(b): bit = 1 while
x > 0. All statistics are taken on x resampled onto a uniform grid of step ``dt`` (the simulator's own points are
nearly uniform when the transient's maximum step equals the noise step, but breakpoints add a few).

Definitions (units SI):

* P(1) over a window = fraction of the window's time with x > 0.
* Autocorrelation of the +-1 bit stream s(t) = 2*bit - 1: C(k) = <(s_i - m)(s_{i+k} - m)> / var(s). A random
  telegraph signal (two-state Markov process with rates k01, k10) has C(t) = exp(-t / tau) with
  tau = 1 / (k01 + k10) = T0 * T1 / (T0 + T1), T0, T1 the mean dwell times in 0 and 1.
* Effective independent bits of a window of length T: the variance of the time average of s over T >> tau is
  var(s) * 2 tau_int / T, i.e. that of N_eff = T / (2 tau_int) independent bits, with the integrated
  correlation time tau_int = integral of C (= tau for a pure exponential; the bit stream of the cell has a fast
  initial drop from chatter near x = 0 plus the telegraph tail, so both are measured). The binomial std of P(1)
  is then sqrt(p (1 - p) / N_eff).
* Energy per bit: E_bit = P_avg * 2 tau_int = P_avg * T / N_eff (J), the supply energy spent per effective
  independent bit.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import curve_fit


def _window(t: np.ndarray, x: np.ndarray, dt: float, t0: float | None, t1: float | None) -> np.ndarray:
    t = np.asarray(t, dtype=float)
    x = np.asarray(np.real(x), dtype=float)
    if t.ndim != 1 or t.shape != x.shape or t.size < 2:
        raise ValueError(f"t, x: expected 1-D arrays of equal length >= 2, got shapes {t.shape} and {x.shape}")
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt: expected a sample step > 0 s, got {dt!r}")
    t0 = float(t[0]) if t0 is None else float(t0)
    t1 = float(t[-1]) if t1 is None else float(t1)
    slack = 1e-6 * float(t[-1] - t[0])  # the simulator's last point may fall short of t_stop by rounding
    if t[-1] < t1 <= t[-1] + slack:
        t1 = float(t[-1])
    if not t[0] <= t0 < t1 <= t[-1]:
        raise ValueError(f"window: [{t0:g}, {t1:g}] s is not inside the simulated time [{t[0]:g}, {t[-1]:g}] s")
    grid = np.arange(t0, t1, dt)
    return np.interp(grid, t, x)


def resample(t: np.ndarray, x: np.ndarray, dt: float, t0: float | None = None,
             t1: float | None = None) -> np.ndarray:
    """x on the uniform grid t0, t0 + dt, ... < t1 (linear interpolation of the simulator's points)."""
    return _window(t, x, dt, t0, t1)


def p_one(x: np.ndarray) -> float:
    """P(1): fraction of uniformly sampled ``x`` that is > 0."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"x: expected a non-empty 1-D array, got shape {x.shape}")
    return float(np.mean(x > 0))


def autocorrelation(bits: np.ndarray, max_lag: int) -> np.ndarray:
    """Normalised autocorrelation C(k), k = 0..max_lag, of a 0/1 (or real) sequence (FFT, biased estimator).
    A constant sequence has no defined correlation: returns C(0) = 1 and zeros."""
    s = np.asarray(bits, dtype=float)
    if s.ndim != 1 or s.size < 2:
        raise ValueError(f"bits: expected a 1-D sequence of >= 2 samples, got shape {s.shape}")
    if not 0 < max_lag < s.size:
        raise ValueError(f"max_lag: expected 0 < max_lag < {s.size}, got {max_lag}")
    s = s - s.mean()
    var = float(np.dot(s, s))
    out = np.zeros(max_lag + 1)
    out[0] = 1.0
    if var == 0.0:
        return out
    n = 1 << int(np.ceil(np.log2(2 * s.size)))
    f = np.fft.rfft(s, n)
    acf = np.fft.irfft(f * np.conj(f), n)[: max_lag + 1]
    return acf / var


def tau_from_autocorrelation(acf: np.ndarray, dt: float, floor: float = 0.1) -> float:
    """Correlation time (s) from a least-squares fit of C(k dt) = exp(-k dt / tau) over the lags where C is
    still above ``floor`` (the noisy tail is left out). Raises ValueError when C falls below ``floor`` at lag 1
    (tau unresolved by ``dt``)."""
    acf = np.asarray(acf, dtype=float)
    if acf.ndim != 1 or acf.size < 3:
        raise ValueError(f"acf: expected a 1-D array of >= 3 lags, got shape {acf.shape}")
    below = np.nonzero(acf < floor)[0]
    stop = int(below[0]) if below.size else acf.size
    if stop < 2:
        raise ValueError(f"acf: correlation drops below {floor} at lag 1; tau is not resolved by dt = {dt:g} s")
    lags = np.arange(stop) * dt
    guess = max(-lags[1] / np.log(max(acf[1], 1e-6)), dt)
    (tau,), _ = curve_fit(lambda k, tau: np.exp(-k / tau), lags, acf[:stop], p0=[guess], bounds=(dt * 1e-3, np.inf))
    return float(tau)


def integrated_tau(acf: np.ndarray, dt: float, window: float = 5.0) -> float:
    """Integrated autocorrelation time (s): tau_int = dt * (1/2 + sum_{k=1}^{M} C(k)), with Sokal's automatic
    window M = the smallest lag with M >= window * tau_int(M) / dt (the noisy tail of an estimated C would
    otherwise dominate the sum). The variance of a time average over T >> tau_int is var * 2 tau_int / T, so
    N_eff = T / (2 tau_int) holds for any correlation shape (for C = exp(-t/tau) and dt << tau, tau_int = tau)."""
    acf = np.asarray(acf, dtype=float)
    if acf.ndim != 1 or acf.size < 2:
        raise ValueError(f"acf: expected a 1-D array of >= 2 lags, got shape {acf.shape}")
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt: expected a sample step > 0 s, got {dt!r}")
    if not window > 0:
        raise ValueError(f"window: expected > 0, got {window!r}")
    partial = 0.5 + np.cumsum(acf[1:])            # tau_int(M) / dt for M = 1, 2, ...
    lags = np.arange(1, acf.size)
    ok = np.nonzero(lags >= window * partial)[0]
    m = int(ok[0]) if ok.size else acf.size - 2
    return float(dt * partial[m])


def dwell_times(x: np.ndarray, dt: float, hysteresis: float) -> tuple[np.ndarray, np.ndarray]:
    """Dwell times (s) in state 0 and in state 1 of a telegraph signal sampled every ``dt``, read with a Schmitt
    trigger at +-``hysteresis`` (V) so that noise chatter around x = 0 is not counted as flips. The first and
    last (censored) dwells are dropped."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"x: expected a 1-D array of >= 2 samples, got shape {x.shape}")
    if not hysteresis >= 0:
        raise ValueError(f"hysteresis: expected >= 0 V, got {hysteresis!r}")
    hi, lo = x > hysteresis, x < -hysteresis
    events = np.nonzero(hi | lo)[0]
    if events.size == 0:
        return np.zeros(0), np.zeros(0)
    state = hi[events].astype(np.int8)           # state at each decisive sample
    change = np.nonzero(np.diff(state))[0] + 1   # index into events where the state switches
    if change.size < 2:
        return np.zeros(0), np.zeros(0)
    times = events[change] * dt
    dwell = np.diff(times)
    which = state[change[:-1]]                   # state held during each full dwell
    return dwell[which == 0], dwell[which == 1]


def tau_from_dwells(d0: np.ndarray, d1: np.ndarray) -> float:
    """Telegraph correlation time tau = T0 T1 / (T0 + T1) (s) from mean dwell times T0, T1."""
    d0, d1 = np.asarray(d0, dtype=float), np.asarray(d1, dtype=float)
    if d0.size == 0 or d1.size == 0:
        raise ValueError(f"dwells: need dwells in both states, got {d0.size} and {d1.size}")
    m0, m1 = float(d0.mean()), float(d1.mean())
    return m0 * m1 / (m0 + m1)


def effective_bits(duration: float, tau: float) -> float:
    """N_eff = T / (2 tau): independent bits equivalent to a time average over ``duration`` (s)."""
    if not (duration > 0 and tau > 0):
        raise ValueError(f"duration, tau: expected > 0 s, got {duration!r}, {tau!r}")
    return duration / (2.0 * tau)


def binomial_std(p: np.ndarray | float, n_eff: np.ndarray | float) -> np.ndarray:
    """sqrt(p (1 - p) / N_eff): the standard error of a measured P(1)."""
    p, n = np.asarray(p, dtype=float), np.asarray(n_eff, dtype=float)
    if np.any((p < 0) | (p > 1)) or np.any(n <= 0):
        raise ValueError("p must lie in [0, 1] and n_eff must be > 0")
    return np.sqrt(p * (1.0 - p) / n)


def energy_per_bit(power_w: float, tau_s: float) -> float:
    """E_bit = P_avg * 2 tau (J per effective independent bit; pass the integrated correlation time)."""
    if not (power_w >= 0 and tau_s > 0):
        raise ValueError(f"power_w, tau_s: expected power >= 0 W and tau > 0 s, got {power_w!r}, {tau_s!r}")
    return float(power_w * 2.0 * tau_s)


def sigmoid(v: np.ndarray, v0: float, vs: float) -> np.ndarray:
    """P(1) = 1 / (1 + exp(-(v - v0) / vs))."""
    return 0.5 * (1.0 + np.tanh(0.5 * (np.asarray(v, dtype=float) - v0) / vs))


def fit_logistic(v: np.ndarray, p: np.ndarray, sigma: np.ndarray | None = None) -> dict[str, float]:
    """Weighted least-squares fit of P(1) = sigmoid((v - v0) / vs) (scipy.optimize.curve_fit).

    ``sigma``: per-point standard errors (floored at 1e-3 so that points at P = 0 or 1 keep a finite weight).
    Returns v0 [V], vs [V], their standard errors, r2 (1 - SS_res / SS_tot, unweighted) and max_abs_err
    (largest |fit - measured|)."""
    v, p = np.asarray(v, dtype=float), np.asarray(p, dtype=float)
    if v.ndim != 1 or v.shape != p.shape or v.size < 3:
        raise ValueError(f"v, p: expected 1-D arrays of equal length >= 3, got shapes {v.shape} and {p.shape}")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p: probabilities must lie in [0, 1]")
    s = None if sigma is None else np.maximum(np.asarray(sigma, dtype=float), 1e-3)
    span = float(v.max() - v.min()) or 1e-3
    inside = (p > 0.05) & (p < 0.95)
    v0_guess = float(np.interp(0.5, p[np.argsort(p)], v[np.argsort(p)])) if inside.any() else float(np.mean(v))
    (v0, vs), cov = curve_fit(sigmoid, v, p, p0=[v0_guess, span / 8], sigma=s, absolute_sigma=s is not None,
                              bounds=([v.min() - span, span * 1e-4], [v.max() + span, span * 10]))
    fit = sigmoid(v, v0, vs)
    ss_tot = float(np.sum((p - p.mean()) ** 2))
    r2 = 1.0 - float(np.sum((p - fit) ** 2)) / ss_tot if ss_tot > 0 else 0.0
    err = np.sqrt(np.diag(cov)) if np.all(np.isfinite(cov)) else np.full(2, np.nan)
    return {"v0": float(v0), "vs": float(vs), "v0_err": float(err[0]), "vs_err": float(err[1]), "r2": r2,
            "max_abs_err": float(np.max(np.abs(fit - p)))}
