"""System identification of the phase model on SPICE trajectories of whole networks (multiple shooting).

The pair and load calibrations measure the model's terms one at a time, on one or two rings with DC loads. In a
network a ring carries many banks to neighbours at other phases; its frequency pull and injection gain are then
not exactly the mean-field tables (measured on a trained 81-ring quick network: the surrogate's per-ring phase
velocity was off by 6-11 MHz RMS when started from the SPICE state, correlated with the ring's load). This module
refines the load tables and the coupling function from SPICE trajectories of networks with the exported circuit:

    minimise  sum_{runs, starts k} mean_i ( phi_i^model(t_k + W | phi^spice(t_k)) - phi_i^spice(t_k + W) )^2
              + reg * (relative change of every refined number)^2

i.e. from the SPICE phases at each start ``t_k`` (the differential read-out, ``export.spice_readout_phases``) the
surrogate integrates a window ``W`` (a few periods; RK4) and its phases are compared with SPICE's at ``t_k + W``
(multiple shooting: the error of the vector field, not of a chaotic long trajectory). Refined (by autograd, Adam):
the frequency-pull table ``load_df_hz`` [Hz], the injection-gain table ``load_k_gain`` (as log-gains) and the
harmonics ``h_sin`` / ``h_cos`` of H (their common scale is the coupling strength). The k-code table, SHIL and
bias mapping are kept. The refined numbers go back into ``PhaseModelParams``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from spicenet.cells.oscillator.phase import PhaseModelParams, PhaseOscillatorNetwork
from spicenet.cells.oscillator.schedule import PiecewiseSchedule

__all__ = ["NetworkTrajectory", "window_schedule", "shooting_error", "fit_network_model", "FitReport"]


@dataclass
class NetworkTrajectory:
    """One SPICE run of a network: its schedules (codes [S, N, N], SHIL [S, N] rad/s, bias [S, N] rad/s over the
    same durations), the connectivity ``mask`` [N, N], the read-out ``times`` [T] (s) and ``phases`` [B, T, N]
    (rad, rotating frame of f0; B latents of the same network, NaN where a ring had no crossing yet)."""

    codes: PiecewiseSchedule
    shil: PiecewiseSchedule
    bias: PiecewiseSchedule
    mask: Tensor
    times: np.ndarray
    phases: np.ndarray

    def __post_init__(self) -> None:
        p = np.asarray(self.phases, float)
        if p.ndim != 3 or p.shape[1] != len(self.times) or p.shape[2] != self.mask.shape[0]:
            raise ValueError(f"phases must be [B, T={len(self.times)}, N={self.mask.shape[0]}], got {p.shape}")


def window_schedule(s: PiecewiseSchedule, t0: float, length: float) -> PiecewiseSchedule:
    """The part of schedule ``s`` on ``[t0, t0 + length)`` as a schedule starting at 0 (seconds)."""
    if not (length > 0 and 0 <= t0 and t0 + length <= s.total_duration * (1 + 1e-9)):
        raise ValueError(f"window [{t0}, {t0 + length}] s must lie inside the schedule (0..{s.total_duration} s)")
    edges = np.concatenate([[0.0], np.cumsum(s.durations.numpy())])
    first = int(np.searchsorted(edges, t0, side="right") - 1)
    last = int(np.searchsorted(edges, t0 + length, side="left") - 1)
    last = max(first, min(last, len(edges) - 2))
    starts = np.maximum(edges[first:last + 1], t0)
    ends = np.minimum(edges[first + 1:last + 2], t0 + length)
    dur = ends - starts
    keep = dur > length * 1e-9
    return PiecewiseSchedule(s.values[first:last + 1][torch.as_tensor(keep)], torch.as_tensor(dur[keep]))


class _Refinable(nn.Module):
    """The network with the load tables and H harmonics as learnable parameters (around the calibrated values)."""

    def __init__(self, n: int, params: PhaseModelParams, mask: Tensor) -> None:
        super().__init__()
        if not params.has_load_model or params.load_g_s is None or params.load_gain_g_s is None:
            raise ValueError("network refinement needs a surrogate with both load tables (frequency pull and gain)")
        self.params = params
        self.net = PhaseOscillatorNetwork(n, params, mask=mask, dtype=torch.float64)
        if self.net._fast:
            raise ValueError("network refinement needs H with more than the first sine harmonic")
        self.d_df = nn.Parameter(torch.zeros_like(self.net._load_df))  # [Hz / 1e7]
        self.d_log_gain = nn.Parameter(torch.zeros_like(self.net._gain_vals))
        self.d_h_sin = nn.Parameter(torch.zeros_like(self.net.h_sin))
        self.d_h_cos = nn.Parameter(torch.zeros_like(self.net.h_cos))
        self._base = {k: getattr(self.net, k).clone() for k in ("_load_df", "_gain_vals", "h_sin", "h_cos")}

    def refresh(self) -> None:
        """Set the network's tables from the parameters (keeps the autograd graph)."""
        b = self._base
        self.net._load_df = b["_load_df"] + 1e7 * self.d_df
        self.net._gain_vals = b["_gain_vals"] * torch.exp(self.d_log_gain)
        self.net.h_sin = b["h_sin"] + self.d_h_sin
        self.net.h_cos = b["h_cos"] + self.d_h_cos

    def penalty(self) -> Tensor:
        b = self._base
        scale_df = b["_load_df"].abs().max().clamp(min=1e6)
        return ((1e7 * self.d_df / scale_df) ** 2).mean() + (self.d_log_gain ** 2).mean() + \
            (self.d_h_sin ** 2).mean() + (self.d_h_cos ** 2).mean()

    def refined(self) -> PhaseModelParams:
        with torch.no_grad():
            self.refresh()
            h_sin = list(self.params.h_sin)
            h_cos = list(self.params.h_cos)
            for j, k in enumerate(self.net._harmonic_list):
                h_sin[k - 1] = float(self.net.h_sin[j])
                h_cos[k - 1] = float(self.net.h_cos[j])
            return dataclasses.replace(self.params, h_sin=tuple(h_sin), h_cos=tuple(h_cos),
                                       load_df_hz=tuple(float(v) for v in self.net._load_df.reshape(-1)),
                                       load_k_gain=tuple(float(v) for v in self.net._gain_vals))


def _starts(times: np.ndarray, phases: np.ndarray, window_s: float, every_s: float) -> list[tuple[int, int]]:
    """(start, end) index pairs on the read-out grid: windows of ``window_s`` every ``every_s`` with finite
    phases for every latent and ring at both ends."""
    out = []
    t_next = -1.0
    for k, t in enumerate(times):
        if t < t_next:
            continue
        j = int(np.argmin(np.abs(times - (t + window_s))))
        if times[j] <= t or abs(times[j] - t - window_s) > 0.5 * window_s:
            break
        if np.all(np.isfinite(phases[:, [k, j]])):
            out.append((k, j))
            t_next = t + every_s
    return out


def shooting_error(model: _Refinable, data: NetworkTrajectory, window_s: float, every_s: float,
                   steps_per_window: int = 16) -> Tensor:
    """Mean squared phase error [rad^2] at the end of every shooting window of ``data`` (module docstring)."""
    model.refresh()
    errs = []
    for k, j in _starts(data.times, data.phases, window_s, every_s):
        t0, t1 = float(data.times[k]), float(data.times[j])
        w = t1 - t0
        out = model.net(torch.as_tensor(data.phases[:, k]), w, steps_per_window, window_schedule(data.codes, t0, w),
                        shil=window_schedule(data.shil, t0, w), bias=window_schedule(data.bias, t0, w),
                        method="rk4")
        errs.append(((out.phases - torch.as_tensor(data.phases[:, j])) ** 2).mean())
    if not errs:
        raise ValueError("no shooting window with finite SPICE phases at both ends")
    return torch.stack(errs).mean()


@dataclass
class FitReport:
    """Shooting RMS error [rad] over the window before and after the refinement, per data set."""

    window_s: float
    rms_before: list[float]
    rms_after: list[float]
    iterations: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def fit_network_model(params: PhaseModelParams, data: Sequence[NetworkTrajectory], *, window_s: float = 1.5e-9,
                      every_s: float = 0.75e-9, iterations: int = 60, lr: float = 0.02, reg: float = 1e-3,
                      progress: bool = False) -> tuple[PhaseModelParams, FitReport]:
    """Refine ``params`` on SPICE network trajectories ``data`` (module docstring); returns the refined params and
    the shooting errors before / after. Deterministic (no random draws)."""
    if not data:
        raise ValueError("fit_network_model needs at least one SPICE network trajectory")
    models = [_Refinable(d.mask.shape[0], params, d.mask) for d in data]
    shared = models[0]
    for m in models[1:]:  # one set of parameters for every network
        m.d_df, m.d_log_gain, m.d_h_sin, m.d_h_cos = shared.d_df, shared.d_log_gain, shared.d_h_sin, shared.d_h_cos

    def rms_all() -> list[float]:
        with torch.no_grad():
            return [float(torch.sqrt(shooting_error(m, d, window_s, every_s))) for m, d in zip(models, data)]

    before = rms_all()
    opt = torch.optim.Adam(shared.parameters(), lr=lr)
    from spicenet.progress import progress_iter

    for _ in progress_iter(range(iterations), desc="network refinement", enabled=progress):
        opt.zero_grad(set_to_none=True)
        loss = sum(shooting_error(m, d, window_s, every_s) for m, d in zip(models, data)) / len(data)
        loss = loss + reg * shared.penalty()
        loss.backward()
        opt.step()
    after = rms_all()
    return shared.refined(), FitReport(window_s, before, after, iterations)
