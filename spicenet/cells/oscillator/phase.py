"""Phase surrogate of a network of coupled ring oscillators: ``PhaseOscillatorNetwork`` (torch).

Physics (rotating frame of the nominal carrier ``2 pi f0 t``; phases ``phi`` in **radians**, time in **seconds**)::

    dphi_i/dt = 2 pi df_i + sum_j K_ij(t) H(phi_j - phi_i) - L_i(t) sin(2 phi_i) + b_i(t) + sqrt(2 D) xi_i(t)

- ``df_i`` [Hz]: detuning of oscillator i from ``f0`` (per-chip mismatch, ``ChipMismatch.detuning_hz``).
- ``H(x) = sum_k a_k sin(k x) + c_k cos(k x)``, ``k = 1..K_h`` (calibrated harmonics, dimensionless; ``a = (1,)``
  and ``c = 0`` is the Kuramoto / AIS form).
- ``K_ij`` [rad/s]: coupling through a binary-weighted resistor bank. A signed code ``c_ij`` in ``[-15, 15]``
  (4 magnitude bits + a polarity bit) gives conductance ``G = |c_ij| * g_unit_s`` [S] and
  ``K = k_per_siemens * G * gain_ij`` with ``gain_ij`` the chip's multiplicative gain error. A negative code taps
  the complementary output of ring j (a shift of pi), so its contribution is ``|K| H(phi_j + pi - phi_i)``: odd
  harmonics change sign, even harmonics do not. Hence the model uses ``M_odd = k * c`` and ``M_even = k * |c|``.
- ``L_i`` [rad/s]: second-harmonic injection (SHIL) strength; for ``L > 0`` the stable phases are 0 and pi
  (phase binarisation); alone, ``tan(phi(t)) = tan(phi(0)) exp(-2 L t)``.
- ``b_i`` [rad/s]: bias (a frequency shift injected per oscillator).
- ``D`` [rad^2/s]: phase diffusion constant; with noise only, ``Var[phi(t) - phi(0)] = 2 D t``.

**Node loading** (optional, ``PhaseModelParams.load_*``, calibrated by ``spicenet calibrate oscillator``): a bank
of conductance G from ``p0`` of ring i to a node of ring j carries ``G (v_j - v_i) = G (vdd/2 - v_i) +
G (v_j - vdd/2)``. The second term is the zero-mean coupling described by H; the first is a resistive load to
mid-supply that does *not* average out over the neighbours' phases and is not a superposition of pair effects (it
shrinks the swing). Each ring's loads ``G_p,i`` / ``G_n,i`` [S] on its two rails follow from the codes and the
netlist topology (bank (i, j), i < j, hangs on ``p0`` of ring i and on ``p0`` (c > 0) or ``n0`` (c < 0) of ring j):
``G_p,i = g_unit (sum_{j>i} |c_ij| + sum_{j<i} max(c_ij, 0))``, ``G_n,i = g_unit sum_{j<i} max(-c_ij, 0)``. The
model adds the measured frequency pull ``2 pi df_load(G_p,i, G_n,i)`` (bilinear in a 2-D table) to the drift of
ring i, and scales everything injected into ring i (its couplings ``K_ij`` and its SHIL ``L_i``) by the measured
coupling gain ``g_load(G_i) / g_load(|c_ij| g_unit)`` with ``G_i = G_p,i + G_n,i`` (the pair calibration's K
already holds the load of its own resistor; SHIL only ``g_load(G_i)``). Loads beyond the table are clamped to its
last point: keep networks inside the calibrated range (``AISConfig.node_g_max_s``).

The phases returned are *unwrapped* (not reduced mod 2 pi). Conversions at the edges:
``to_units_of_pi`` / ``from_units_of_pi`` give the AIS authors' ``x = phi / pi``; in those units their model
``dx_i/dt = sum_j K'_ij sin(pi (x_i - x_j)) - L'_i sin(2 pi x_i) + b'_i`` is this one with ``K = -pi K'``,
``L = pi L'``, ``b = pi b'`` (see ``from_ais_units``).

Integrators (fixed step ``dt = t_end / n_steps``, all differentiable by autograd): classical RK4 (noise-free)
and Heun (deterministic, or stochastic Heun for the additive noise, which converges to the Ito = Stratonovich
solution). Schedules are piecewise constant (``PiecewiseSchedule``); each stage evaluates them at its own time.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

import torch
from torch import Tensor, nn

from spicenet.cells.oscillator.schedule import PiecewiseSchedule, max_code

if TYPE_CHECKING:
    from spicenet.cells.oscillator.training import SurrogateInfo

__all__ = [
    "PhaseModelParams",
    "ChipMismatch",
    "sample_chip",
    "PhaseTrajectory",
    "PhaseOscillatorNetwork",
    "to_units_of_pi",
    "from_units_of_pi",
    "from_ais_units",
    "wrap_phase",
    "phase_to_intensity",
    "interp1",
    "interp2",
]


def to_units_of_pi(phi: Tensor) -> Tensor:
    """Radians -> the AIS authors' units ``x = phi / pi`` (x = 0, 1 are the two binarised states)."""
    return phi / math.pi


def from_units_of_pi(x: Tensor) -> Tensor:
    """AIS units (``x = phi / pi``) -> radians."""
    return x * math.pi


def from_ais_units(k_ais: Tensor | float, l_ais: Tensor | float, b_ais: Tensor | float,
                   time_unit_s: float = 1.0) -> tuple[Tensor | float, Tensor | float, Tensor | float]:
    """Map AIS coefficients (x in units of pi, time in ``time_unit_s``) to this model's K, L, b in rad/s.

    AIS: ``dx_i/dt' = sum_j K' sin(pi(x_i - x_j)) - L' sin(2 pi x_i) + b'`` with ``t = t' * time_unit_s``.
    Multiplying by pi and using ``sin(pi(x_i - x_j)) = -sin(phi_j - phi_i)`` gives ``K = -pi K' / time_unit_s``,
    ``L = pi L' / time_unit_s``, ``b = pi b' / time_unit_s``.
    """
    if not time_unit_s > 0:
        raise ValueError(f"time_unit_s must be > 0, got {time_unit_s!r}")
    s = math.pi / time_unit_s
    return -s * k_ais, s * l_ais, s * b_ais


def wrap_phase(phi: Tensor) -> Tensor:
    """Reduce phases to ``[-pi, pi)``."""
    return torch.remainder(phi + math.pi, 2 * math.pi) - math.pi


def phase_to_intensity(phi: Tensor) -> Tensor:
    """Pixel intensity of a phase: ``(1 - cos phi) / 2`` in [0, 1]; phase 0 -> 0 (black), pi -> 1 (white)."""
    return 0.5 * (1.0 - torch.cos(phi))


@dataclass(frozen=True)
class PhaseModelParams:
    """Calibrated constants of the phase model (defaults are placeholders of the right order for the generic
    5-stage ring at ~1 GHz, to be replaced by ``spicenet calibrate oscillator`` figures).

    f0_hz: nominal oscillation frequency [Hz]. h_sin / h_cos: Fourier coefficients a_k, c_k of H (k = 1..).
    g_unit_s: conductance of one LSB of the resistor bank [S] (code c -> G = |c| g_unit_s).
    k_per_siemens: coupling strength per unit conductance [rad/s/S]. n_bits: magnitude bits of a bank.
    phase_diffusion: D [rad^2/s] of each free-running oscillator.
    k_code_table: optional measured coupling strength K [rad/s] of each bank code 0..2^n_bits-1 (SPICE's K is
    slightly sublinear in G); when given it replaces ``k_per_code * |c|``, interpolated linearly between codes so
    that the straight-through gradient of a code stays defined.
    load_g_s / load_df_hz: node-loading frequency pull (module docstring): grid of rail loads [S] (from 0) and the
    pull f - f0 [Hz] on grid x grid (p-rail load major; nested lists accepted). load_gain_g_s / load_k_gain: total
    node load grid [S] (from 0) and the injection gain K(G) / K(0) there. None = no load model (the plain model).
    """

    f0_hz: float = 1.0e9
    h_sin: tuple[float, ...] = (1.0, 0.0, 0.0)
    h_cos: tuple[float, ...] = (0.0, 0.0, 0.0)
    g_unit_s: float = 2.0e-6
    k_per_siemens: float = 5.0e12
    n_bits: int = 4
    phase_diffusion: float = 0.0
    k_code_table: tuple[float, ...] | None = None
    load_g_s: tuple[float, ...] | None = None
    load_df_hz: tuple[float, ...] | None = None
    load_gain_g_s: tuple[float, ...] | None = None
    load_k_gain: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.f0_hz) and self.f0_hz > 0):
            raise ValueError(f"f0_hz must be > 0, got {self.f0_hz!r}")
        if len(self.h_sin) == 0 or len(self.h_sin) != len(self.h_cos):
            raise ValueError(f"h_sin and h_cos must be non-empty and of equal length, got {self.h_sin!r}, "
                             f"{self.h_cos!r}")
        if not all(math.isfinite(v) for v in (*self.h_sin, *self.h_cos)):
            raise ValueError(f"h_sin/h_cos must be finite, got {self.h_sin!r}, {self.h_cos!r}")
        if not (math.isfinite(self.g_unit_s) and self.g_unit_s > 0):
            raise ValueError(f"g_unit_s must be > 0 S, got {self.g_unit_s!r}")
        if not (math.isfinite(self.k_per_siemens) and self.k_per_siemens > 0):
            raise ValueError(f"k_per_siemens must be > 0 rad/s/S, got {self.k_per_siemens!r}")
        max_code(self.n_bits)
        if not (math.isfinite(self.phase_diffusion) and self.phase_diffusion >= 0):
            raise ValueError(f"phase_diffusion must be >= 0 rad^2/s, got {self.phase_diffusion!r}")
        if self.k_code_table is not None:
            table = tuple(float(v) for v in self.k_code_table)
            if len(table) != max_code(self.n_bits) + 1 or table[0] != 0.0 or not all(
                    math.isfinite(v) and v >= 0 for v in table):
                raise ValueError(f"k_code_table must hold {max_code(self.n_bits) + 1} finite values >= 0 starting "
                                 f"at 0, got {self.k_code_table!r}")
            object.__setattr__(self, "k_code_table", table)
        if (self.load_g_s is None) != (self.load_df_hz is None):
            raise ValueError("load_g_s and load_df_hz must be given together")
        if self.load_g_s is not None:
            grid = _grid(self.load_g_s, "load_g_s")
            df = tuple(float(v) for v in _flatten(self.load_df_hz))
            if len(df) != len(grid) ** 2 or not all(math.isfinite(v) for v in df):
                raise ValueError(f"load_df_hz must hold {len(grid)}x{len(grid)} finite values [Hz] (p-rail load major), "
                                 f"got {len(df)} values")
            object.__setattr__(self, "load_g_s", grid)
            object.__setattr__(self, "load_df_hz", df)
        if (self.load_gain_g_s is None) != (self.load_k_gain is None):
            raise ValueError("load_gain_g_s and load_k_gain must be given together")
        if self.load_gain_g_s is not None:
            assert self.load_k_gain is not None  # given together with load_gain_g_s (checked above)
            grid = _grid(self.load_gain_g_s, "load_gain_g_s")
            gain = tuple(float(v) for v in self.load_k_gain)
            if len(gain) != len(grid) or not all(math.isfinite(v) and v > 0 for v in gain):
                raise ValueError(f"load_k_gain must hold {len(grid)} finite values > 0, got {self.load_k_gain!r}")
            object.__setattr__(self, "load_gain_g_s", grid)
            object.__setattr__(self, "load_k_gain", gain)

    @property
    def has_load_model(self) -> bool:
        """True when the node-loading tables (frequency pull and/or coupling gain vs load) are present."""
        return self.load_g_s is not None or self.load_gain_g_s is not None

    @property
    def k_per_code(self) -> float:
        """Coupling strength of one code LSB [rad/s]: ``k_per_siemens * g_unit_s``."""
        return self.k_per_siemens * self.g_unit_s

    @property
    def period_s(self) -> float:
        return 1.0 / self.f0_hz

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PhaseModelParams":
        """Build from a mapping (e.g. a calibration ``fit``).

        ``h_harmonics`` may be given as ``{"sin": [...], "cos": [...]}``."""
        kw = dict(d)
        h = kw.pop("h_harmonics", None)
        if h is not None:
            kw["h_sin"], kw["h_cos"] = tuple(float(v) for v in h["sin"]), tuple(float(v) for v in h["cos"])
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(kw) - known
        if unknown:
            raise ValueError(f"unknown PhaseModelParams keys: {sorted(unknown)}")
        for key in ("h_sin", "h_cos", "k_code_table", "load_g_s", "load_gain_g_s", "load_k_gain", "load_df_hz"):
            if kw.get(key) is not None:
                kw[key] = tuple(float(v) for v in _flatten(kw[key]))
        return cls(**kw)


def _flatten(x: Any) -> list[Any]:
    """Nested sequences (e.g. a 2-D table as lists of lists) -> flat list."""
    out: list[Any] = []
    for v in x:
        if isinstance(v, (list, tuple)) or (hasattr(v, "__len__") and not isinstance(v, str)):
            out += _flatten(v)
        else:
            out.append(v)
    return out


def _grid(values: Any, name: str) -> tuple[float, ...]:
    grid = tuple(float(v) for v in values)
    if len(grid) < 2 or grid[0] != 0.0 or any(not (math.isfinite(b) and b > a) for a, b in zip(grid, grid[1:])):
        raise ValueError(f"{name} must be >= 2 increasing conductances [S] starting at 0, got {values!r}")
    return grid


def interp1(x: Tensor, grid: Tensor, values: Tensor) -> Tensor:
    """Piecewise-linear ``values(x)`` on an increasing ``grid`` (clamped to the end points outside it);
    differentiable in ``x`` inside the grid."""
    xc = torch.minimum(torch.maximum(x, grid[0]), grid[-1])
    lo = torch.searchsorted(grid, xc.detach().contiguous(), right=True).clamp(1, grid.numel() - 1) - 1
    w = (xc - grid[lo]) / (grid[lo + 1] - grid[lo])
    return values[lo] * (1 - w) + values[lo + 1] * w


def interp2(x: Tensor, y: Tensor, grid: Tensor, table: Tensor) -> Tensor:
    """Bilinear ``table(x, y)`` on the square ``grid x grid`` (``table[ix, iy]``), clamped outside it."""
    n = grid.numel()

    def locate(v: Tensor) -> tuple[Tensor, Tensor]:
        vc = torch.minimum(torch.maximum(v, grid[0]), grid[-1])
        lo = torch.searchsorted(grid, vc.detach().contiguous(), right=True).clamp(1, n - 1) - 1
        return lo, (vc - grid[lo]) / (grid[lo + 1] - grid[lo])

    ix, wx = locate(x)
    iy, wy = locate(y)
    flat = table.reshape(-1)
    t00, t01 = flat[ix * n + iy], flat[ix * n + iy + 1]
    t10, t11 = flat[(ix + 1) * n + iy], flat[(ix + 1) * n + iy + 1]
    return (t00 * (1 - wy) + t01 * wy) * (1 - wx) + (t10 * (1 - wy) + t11 * wy) * wx


@dataclass
class ChipMismatch:
    """One chip's mismatch: ``detuning_hz`` [N] or [B, N] (f_i - f0) and multiplicative ``k_gain`` [N, N] or
    [B, N, N] (1 = nominal) applied to every coupling K_ij."""

    detuning_hz: Tensor
    k_gain: Tensor

    def check(self, n: int) -> None:
        if self.detuning_hz.shape[-1] != n or self.detuning_hz.dim() not in (1, 2):
            raise ValueError(f"detuning_hz must have shape [N] or [B, N] with N={n}, "
                             f"got {tuple(self.detuning_hz.shape)}")
        if self.k_gain.shape[-2:] != (n, n) or self.k_gain.dim() not in (2, 3):
            raise ValueError(f"k_gain must have shape [N, N] or [B, N, N] with N={n}, got {tuple(self.k_gain.shape)}")

    @classmethod
    def nominal(cls, n: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> "ChipMismatch":
        return cls(torch.zeros(n, device=device, dtype=dtype), torch.ones(n, n, device=device, dtype=dtype))


def sample_chip(n: int, f0_hz: float, f0_std_rel: float, k_gain_std_rel: float, generator: torch.Generator,
                device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> ChipMismatch:
    """Draw one chip: ``df_i ~ N(0, (f0_std_rel f0)^2)`` [Hz], ``gain_ij ~ 1 + N(0, k_gain_std_rel^2)`` (one draw per
    resistor, so ``gain_ij = gain_ji``); drawn on ``generator.device`` in float64, returned on ``device``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n!r}")
    if not f0_std_rel >= 0 or not k_gain_std_rel >= 0:
        raise ValueError(f"f0_std_rel and k_gain_std_rel must be >= 0, got {f0_std_rel!r}, {k_gain_std_rel!r}")
    z = torch.randn(n, generator=generator, device=generator.device, dtype=torch.float64).to(device)
    g = torch.randn(n, n, generator=generator, device=generator.device, dtype=torch.float64).to(device)
    g = torch.triu(g, 1)
    g = g + g.T
    return ChipMismatch((z * f0_std_rel * f0_hz).to(dtype), (1.0 + k_gain_std_rel * g).to(dtype))


@dataclass
class PhaseTrajectory:
    """Result of a simulation. ``phases`` [B, N] final (unwrapped, rad); ``visible`` [B, N_visible];
    ``trajectory`` [B, n_rec, N] phases after steps ``record_every, 2 record_every, ..`` (or None);
    ``times`` [n_rec] (s) of the recorded points; ``dt`` the step (s)."""

    phases: Tensor
    visible: Tensor
    trajectory: Tensor | None
    times: Tensor | None
    dt: float


ScheduleLike = PiecewiseSchedule | Tensor | None


class PhaseOscillatorNetwork(nn.Module):
    """Batched phase model of N coupled oscillators (see module docstring for the equation and units).

    n_oscillators: N. mask: [N, N] connectivity (nonzero = a resistor bank exists from j into i; the diagonal is
    ignored), default all-to-all. visible: indices of the visible oscillators (default all); the others are hidden.
    """

    # registered buffers (declared for the type checker: nn.Module.__getattr__ is typed Tensor | Module)
    mask: Tensor
    visible_idx: Tensor
    hidden_idx: Tensor
    harmonics: Tensor
    h_sin: Tensor
    h_cos: Tensor
    _odd_cols: Tensor
    _load_grid: Tensor
    _load_df: Tensor
    _gain_grid: Tensor
    _gain_vals: Tensor
    _upper: Tensor
    _lower: Tensor

    def __init__(self, n_oscillators: int, params: PhaseModelParams | None = None, mask: Tensor | None = None,
                 visible: Sequence[int] | Tensor | None = None, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if not isinstance(n_oscillators, int) or n_oscillators < 1:
            raise ValueError(f"n_oscillators must be an int >= 1, got {n_oscillators!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        self.n = n_oscillators
        self.params = params if params is not None else PhaseModelParams()
        self.surrogate_info: SurrogateInfo | None = None  # the calibration when built by from_surrogate
        n = n_oscillators
        if mask is None:
            m = torch.ones(n, n, dtype=dtype)
        else:
            m = torch.as_tensor(mask)
            if m.shape != (n, n):
                raise ValueError(f"mask must have shape [{n}, {n}], got {tuple(m.shape)}")
            m = (m != 0).to(dtype)
        m = m * (1.0 - torch.eye(n, dtype=dtype))
        self.register_buffer("mask", m.to(device))
        if visible is None:
            vis = torch.arange(n)
        else:
            vis = torch.as_tensor(visible, dtype=torch.long).flatten()
            if vis.numel() == 0 or int(vis.min()) < 0 or int(vis.max()) >= n or torch.unique(vis).numel() != vis.numel():
                raise ValueError(f"visible must be distinct indices in 0..{n - 1}, got {vis.tolist()}")
        hid = torch.tensor([i for i in range(n) if i not in set(vis.tolist())], dtype=torch.long)
        self.register_buffer("visible_idx", vis.to(device))
        self.register_buffer("hidden_idx", hid.to(device))
        # keep only the harmonics with a nonzero coefficient (fewer ops per step; k = 1 alone is the fast path)
        active = [k for k in range(len(self.params.h_sin)) if self.params.h_sin[k] != 0 or self.params.h_cos[k] != 0]
        self.register_buffer("harmonics", torch.tensor([k + 1 for k in active], dtype=dtype, device=device))
        self.register_buffer("h_sin", torch.tensor([self.params.h_sin[k] for k in active], dtype=dtype, device=device))
        self.register_buffer("h_cos", torch.tensor([self.params.h_cos[k] for k in active], dtype=dtype, device=device))
        self._harmonic_list = [k + 1 for k in active]
        self._has_even = any(k % 2 == 0 for k in self._harmonic_list)
        self._sin_only = all(self.params.h_cos[k] == 0 for k in active)
        self.register_buffer("_odd_cols", torch.tensor([k % 2 == 1 for k in self._harmonic_list] * 2, device=device))
        self._fast = self._harmonic_list == [1] and self._sin_only
        pr = self.params
        if pr.load_g_s is not None:
            self.register_buffer("_load_grid", torch.tensor(pr.load_g_s, dtype=dtype, device=device), persistent=False)
            k = len(pr.load_g_s)
            self.register_buffer("_load_df", torch.tensor(pr.load_df_hz, dtype=dtype, device=device).view(k, k), persistent=False)
        if pr.load_gain_g_s is not None:
            self.register_buffer("_gain_grid", torch.tensor(pr.load_gain_g_s, dtype=dtype, device=device), persistent=False)
            self.register_buffer("_gain_vals", torch.tensor(pr.load_k_gain, dtype=dtype, device=device), persistent=False)
        self.register_buffer("_upper", torch.triu(torch.ones(n, n, dtype=dtype), 1).to(device), persistent=False)
        self.register_buffer("_lower", torch.tril(torch.ones(n, n, dtype=dtype), -1).to(device), persistent=False)

    @classmethod
    def from_surrogate(cls, path: str | os.PathLike[str], n_oscillators: int, *, mask: Tensor | None = None,
                       visible: Sequence[int] | Tensor | None = None, n_bits: int | None = None,
                       device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float32) -> "PhaseOscillatorNetwork":
        """The phase model of ``n_oscillators`` rings on an oscillator calibration (``spicenet calibrate oscillator
        -o path``): the fitted coupling function (harmonics of H), coupling per code K (rad/s), SHIL gain, load
        model and f0 (Hz) as :func:`spicenet.cells.oscillator.training.load_surrogate_info` reads them for
        ``spicenet train ais`` (``n_bits`` overrides the coupling bank width). Fields the file lacks fall back to
        documented defaults, listed in ``net.surrogate_info.fallbacks``; ``net.surrogate_info`` also holds the f0
        and coupling-gain mismatch moments that :meth:`sample_chip` draws from."""
        from spicenet.cells.oscillator.training import load_surrogate_info

        info = load_surrogate_info(path, n_bits)
        net = cls(n_oscillators, info.params, mask=mask, visible=visible, device=device, dtype=dtype)
        net.surrogate_info = info
        return net

    def sample_chip(self, seed: int, scale: float = 1.0) -> ChipMismatch:
        """One fabricated chip from the calibrated mismatch: ring frequencies f_i (Hz, log-normal with the
        calibrated f0 mean/std, returned as the detuning ``f_i - f0``) and one coupling-gain factor per resistor
        pair (log-normal, calibrated k_gain mean/std), both times ``scale`` (0 = nominal), as ``spicenet train
        ais`` draws them (:func:`spicenet.cells.oscillator.training.make_chip_sampler`). Same seed -> same chip;
        on this network's device and dtype."""
        from spicenet.cells.oscillator.training import chip_to_mismatch, make_chip_sampler

        if self.surrogate_info is None:
            raise ValueError("sample_chip: this network was not built from a calibration (use "
                             "PhaseOscillatorNetwork.from_surrogate)")
        sampler = make_chip_sampler(self.surrogate_info, self.n, int(seed), float(scale), 1)
        chip = sampler.model.sample_chip(int(seed), shapes=sampler.shapes, dtype=torch.float64, scale=float(scale))
        mm = chip_to_mismatch(chip, self.params.f0_hz, self.n, self.device)
        return ChipMismatch(mm.detuning_hz.to(self.dtype), mm.k_gain.to(self.dtype))

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        """Device of the buffers (follows ``.to()``)."""
        return self.mask.device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the buffers (follows ``.float()``, ``.double()``, ``.to(dtype)``)."""
        return self.mask.dtype

    def coupling_rad_s(self, codes: Tensor, chip: ChipMismatch | None = None) -> tuple[Tensor, Tensor]:
        """Coupling matrices for signed codes ``[..., N, N]``: ``(M_odd, M_even)`` in rad/s with
        ``M_odd = k_per_code * c * mask * gain`` (odd harmonics) and ``M_even`` the same with ``|c|``.
        With a batched chip gain the result gains a batch axis before the last two."""
        n = self.n
        if codes.shape[-2:] != (n, n):
            raise ValueError(f"k codes must end in [{n}, {n}], got {tuple(codes.shape)}")
        c = codes.to(device=self.device, dtype=self.dtype) * self.mask
        k_odd, k_even = self._k_of_code(c), self._k_of_code(c.abs())
        if chip is not None:
            g = chip.k_gain.to(device=self.device, dtype=self.dtype)
            if g.dim() == 3:
                k_odd, k_even = k_odd.unsqueeze(-3), k_even.unsqueeze(-3)  # [..., 1, N, N] * [B, N, N]
            return k_odd * g, k_even * g
        return k_odd, k_even

    def rail_loads(self, codes: Tensor) -> tuple[Tensor, Tensor]:
        """Bank conductance [S] hanging on the ``p0`` and ``n0`` rails of every ring for signed codes ``[..., N, N]``
        (symmetric): ``(G_p, G_n)`` each ``[..., N]`` (topology of ``netlist.network_netlist``; module docstring)."""
        n = self.n
        if codes.shape[-2:] != (n, n):
            raise ValueError(f"codes must end in [{n}, {n}], got {tuple(codes.shape)}")
        c = codes.to(device=self.device, dtype=self.dtype) * self.mask
        g = self.params.g_unit_s
        g_p = g * ((c.abs() * self._upper).sum(-1) + (torch.relu(c) * self._lower).sum(-1))
        g_n = g * (torch.relu(-c) * self._lower).sum(-1)
        return g_p, g_n

    def load_terms(self, codes: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """Node-loading terms for codes ``[..., N, N]``: frequency pull ``df_load(G_p, G_n)`` [Hz] ``[..., N]``,
        injection gain ``g_load(G_p + G_n)`` ``[..., N]`` and the pair reference gain ``g_load(|c_ij| g_unit)``
        ``[..., N, N]`` (None where the surrogate has no such table)."""
        pr = self.params
        if not pr.has_load_model:
            return None, None, None
        g_p, g_n = self.rail_loads(codes)
        df = interp2(g_p, g_n, self._load_grid, self._load_df) if pr.load_g_s is not None else None
        row = pair = None
        if pr.load_gain_g_s is not None:
            row = interp1(g_p + g_n, self._gain_grid, self._gain_vals)
            c = codes.to(device=self.device, dtype=self.dtype).abs() * pr.g_unit_s
            pair = interp1(c, self._gain_grid, self._gain_vals)
        return df, row, pair

    def _k_of_code(self, c: Tensor) -> Tensor:
        """Signed K [rad/s] of (signed) codes ``c``: ``k_per_code * c``, or the calibrated table K(|c|) with the sign
        of c, interpolated piecewise-linearly along the signed code axis (so dK/dc at c = 0 is K(1), not 0)."""
        table = self.params.k_code_table
        if table is None:
            return self.params.k_per_code * c
        top = len(table) - 1
        values = torch.tensor([-v for v in reversed(table[1:])] + list(table), device=self.device, dtype=self.dtype)
        x = c.clamp(-top, top) + top
        lo = x.detach().floor().clamp(max=2 * top - 1).long()
        frac = x - lo.to(x.dtype)
        return values[lo] * (1 - frac) + values[lo + 1] * frac

    def _as_schedule(self, x: ScheduleLike, t_end: float, tail: tuple[int, ...], name: str) -> PiecewiseSchedule | None:
        if x is None:
            return None
        if isinstance(x, PiecewiseSchedule):
            sched = x
        elif isinstance(x, Tensor):
            if tuple(x.shape) != tail:
                raise ValueError(f"{name} as a constant tensor must have shape {list(tail)}, got {tuple(x.shape)}")
            sched = PiecewiseSchedule.constant(x, t_end)
        else:
            raise ValueError(f"{name} must be a PiecewiseSchedule, a Tensor or None, got {type(x).__name__}")
        if tuple(sched.values.shape[1:]) != tail:
            raise ValueError(f"{name} values must have shape [S, {', '.join(map(str, tail))}], "
                             f"got {tuple(sched.values.shape)}")
        return sched

    def _rhs(self, phi: Tensor, mt_odd: Tensor, mt_even: Tensor | None, drift: Tensor,
             two_l: Tensor | None) -> Tensor:
        """dphi/dt for phases [B, N]; ``mt_*`` are transposed coupling matrices [N, N] or [B, N, N] (rad/s; for
        the k = 1 sin-only fast path ``a_1`` is folded in), ``drift = 2 pi df + b``, ``two_l = 2 L``."""
        s1, c1 = torch.sin(phi), torch.cos(phi)
        if self._fast:
            y = torch.matmul(torch.stack((s1, c1), 1), mt_odd)  # [B, 2, N]: sum_j M_ij (sin, cos) phi_j
            # a_1 sum_j M_ij sin(phi_j - phi_i) = cos(phi_i) (M sin phi)_i - sin(phi_i) (M cos phi)_i
            coup = torch.addcmul(c1 * y[:, 0], s1, y[:, 1], value=-1.0)
        elif self._harmonic_list:
            kphi = phi.unsqueeze(1) * self.harmonics.unsqueeze(-1)  # [B, Kh, N]
            s, c = torch.sin(kphi), torch.cos(kphi)
            kh = s.shape[1]
            feats = torch.cat((s, c), 1)  # [B, 2Kh, N]
            y = torch.matmul(feats, mt_odd)
            if mt_even is not None:  # negative codes and even harmonics: even rows use |c|
                y = torch.where(self._odd_cols.unsqueeze(-1), y, torch.matmul(feats, mt_even))
            ys, yc = y[:, :kh], y[:, kh:]
            a, cc = self.h_sin.unsqueeze(-1), self.h_cos.unsqueeze(-1)
            # sum_j M_ij [a_k sin(k(phi_j - phi_i)) + c_k cos(k(phi_j - phi_i))], expanded with angle sums
            coup = (c * (ys * a + yc * cc) + s * (ys * cc - yc * a)).sum(1)
        else:
            coup = torch.zeros_like(phi)
        out = drift + coup
        if two_l is not None:
            out = torch.addcmul(out, two_l, s1 * c1, value=-1.0)  # - L sin(2 phi)
        return out

    # ------------------------------------------------------------------ simulate
    def forward(self, phi0: Tensor, t_end: float, n_steps: int, k_codes: ScheduleLike, shil: ScheduleLike = None,
                bias: ScheduleLike = None, chip: ChipMismatch | None = None,
                method: Literal["rk4", "heun"] = "rk4", noise: bool = False,
                phase_diffusion: float | Tensor | None = None, generator: torch.Generator | None = None,
                return_trajectory: bool = False, record_every: int = 1) -> PhaseTrajectory:
        """Integrate from ``phi0`` [B, N] (rad) over ``t_end`` seconds in ``n_steps`` fixed steps.

        k_codes: signed codes [S, N, N] schedule (or a constant [N, N] tensor); shil: L [S, N] rad/s; bias:
        b [S, N] rad/s (constants [N] accepted). noise=True adds phase diffusion ``D`` (``phase_diffusion`` or
        ``params.phase_diffusion``; scalar or [N]) and needs ``method='heun'`` and a seeded ``generator`` (the
        increments are drawn on ``generator.device`` and moved to the network's device).
        """
        self._check_forward_args(phi0, t_end, n_steps, method, record_every)
        phi = phi0.to(device=self.device, dtype=self.dtype)
        dt = float(t_end) / n_steps
        k_s, l_s, b_s = self._forward_schedules(k_codes, shil, bias, t_end)
        omega = self._detuning_rad_s(chip)
        mt_odd, mt_even, load_drift, shil_gain = self._coupling_terms(k_s, chip)
        two_l, drift = self._shil_and_drift(l_s, b_s, omega)
        sigma = self._noise_sigma(noise, method, generator, phase_diffusion, dt)
        terms = _StepTerms(mt_odd, mt_even, drift, two_l, load_drift, shil_gain,
                           self._stage_segments(n_steps, dt, method, k_s, l_s, b_s))
        phi, rec = self._integrate(phi, terms, n_steps, dt, method, sigma, generator, return_trajectory,
                                   record_every)
        traj = torch.stack(rec, 1) if return_trajectory else None
        times = (torch.arange(1, len(rec) + 1, dtype=torch.float64) * record_every * dt) if return_trajectory else None
        return PhaseTrajectory(phi, phi[:, self.visible_idx], traj, times, dt)

    # ------------------------------------------------------------------ forward stages
    def _check_forward_args(self, phi0: Tensor, t_end: float, n_steps: int, method: str, record_every: int) -> None:
        """ValueError unless ``phi0`` is [B, N] (rad), ``t_end`` a finite time > 0 s, ``n_steps`` and
        ``record_every`` ints >= 1 and ``method`` 'rk4' or 'heun' (checked in this order)."""
        n = self.n
        if not isinstance(phi0, Tensor) or phi0.dim() != 2 or phi0.shape[1] != n:
            raise ValueError(f"phi0 must have shape [B, {n}], got {tuple(getattr(phi0, 'shape', ()))}")
        if not (isinstance(t_end, (int, float)) and math.isfinite(t_end) and t_end > 0):
            raise ValueError(f"t_end must be a finite time > 0 s, got {t_end!r}")
        if not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be an int >= 1, got {n_steps!r}")
        if method not in ("rk4", "heun"):
            raise ValueError(f"method must be 'rk4' or 'heun', got {method!r}")
        if not isinstance(record_every, int) or record_every < 1:
            raise ValueError(f"record_every must be an int >= 1, got {record_every!r}")

    def _forward_schedules(self, k_codes: ScheduleLike, shil: ScheduleLike, bias: ScheduleLike, t_end: float
                           ) -> tuple[PiecewiseSchedule, PiecewiseSchedule | None, PiecewiseSchedule | None]:
        """The code schedule [S, N, N] (required), the SHIL schedule L [S, N] (rad/s) and the bias schedule
        b [S, N] (rad/s) of a ``forward`` call, constants expanded over ``t_end`` seconds."""
        n = self.n
        k_s = self._as_schedule(k_codes, t_end, (n, n), "k_codes")
        if k_s is None:
            raise ValueError("k_codes must be given (use zeros for uncoupled oscillators)")
        return k_s, self._as_schedule(shil, t_end, (n,), "shil"), self._as_schedule(bias, t_end, (n,), "bias")

    def _detuning_rad_s(self, chip: ChipMismatch | None) -> Tensor:
        """The chip's detuning as an angular frequency ``2 pi df`` [rad/s], [N] or [B, N] (zeros without a chip)."""
        if chip is not None:
            chip.check(self.n)
            return 2.0 * math.pi * chip.detuning_hz.to(device=self.device, dtype=self.dtype)
        return torch.zeros(self.n, device=self.device, dtype=self.dtype)

    def _coupling_terms(self, k_s: PiecewiseSchedule, chip: ChipMismatch | None
                        ) -> tuple[list[Tensor], list[Tensor] | None, list[Tensor] | None, list[Tensor] | None]:
        """Per code segment: the transposed coupling matrices ``(M_odd^T, M_even^T)`` [N, N] or [B, N, N] (rad/s;
        ``a_1`` folded in on the k = 1 sin-only fast path; ``M_even`` only when even harmonics meet negative codes),
        with the node-loading gain applied to every row, the loading frequency pull ``2 pi df_load`` [N] (rad/s)
        and the SHIL gain ``g_load(G_i)`` [N] (None where the surrogate has no such table)."""
        m_odd_all, m_even_all = self.coupling_rad_s(k_s.values, chip)  # [S, (B,) N, N]
        load_drift = shil_gain = None
        if self.params.has_load_model:
            dfl, row_gain, pair_gain = self.load_terms(k_s.values)
            if row_gain is not None:
                assert pair_gain is not None  # load_terms gives row and pair gains together
                factor = row_gain.unsqueeze(-1) / pair_gain  # [S, N, N]: row i = ring i's sensitivity
                if m_odd_all.dim() == 4:
                    factor = factor.unsqueeze(1)
                m_odd_all, m_even_all = m_odd_all * factor, m_even_all * factor
                shil_gain = list(row_gain.unbind(0))
            if dfl is not None:
                load_drift = list((2.0 * math.pi * dfl).unbind(0))
        need_even = self._has_even and bool((k_s.values.detach() < 0).any())
        if self._fast:
            m_odd_all = m_odd_all * self.params.h_sin[0]
        mt_odd = list(m_odd_all.transpose(-1, -2).unbind(0))
        mt_even = list(m_even_all.transpose(-1, -2).unbind(0)) if need_even else None
        return mt_odd, mt_even, load_drift, shil_gain

    def _shil_and_drift(self, l_s: PiecewiseSchedule | None, b_s: PiecewiseSchedule | None, omega: Tensor
                        ) -> tuple[list[Tensor] | None, list[Tensor]]:
        """Per segment: ``2 L`` [N] (rad/s; None without SHIL) and the drift ``2 pi df + b`` [N] or [B, N] (rad/s;
        one entry, the detuning alone, without a bias schedule)."""
        two_l = None if l_s is None else list((2.0 * l_s.values.to(device=self.device, dtype=self.dtype)).unbind(0))
        b_vals = None if b_s is None else b_s.values.to(device=self.device, dtype=self.dtype)
        drift = [omega] if b_vals is None else [omega + bv for bv in b_vals.unbind(0)]  # [N] or [B, N] each
        return two_l, drift

    def _noise_sigma(self, noise: bool, method: str, generator: torch.Generator | None,
                     phase_diffusion: float | Tensor | None, dt: float) -> Tensor | None:
        """Std of the phase increment of one step ``sqrt(2 D dt)`` [rad] (scalar or [N]) with noise on, else None;
        noise needs ``method='heun'``, a generator and ``D >= 0`` rad^2/s."""
        if not noise:
            return None
        if method != "heun":
            raise ValueError("noise=True needs method='heun' (RK4 is the noise-free path)")
        if generator is None:
            raise ValueError("noise=True needs a seeded torch.Generator (generator=...)")
        d = self.params.phase_diffusion if phase_diffusion is None else phase_diffusion
        d_t = torch.as_tensor(d, device=self.device, dtype=self.dtype)
        if bool((d_t < 0).any()):
            raise ValueError(f"phase_diffusion must be >= 0 rad^2/s, got {d!r}")
        return torch.sqrt(2.0 * d_t * dt)  # std of the Wiener increment times sqrt(2D)

    @staticmethod
    def _stage_segments(n_steps: int, dt: float, method: str, k_s: PiecewiseSchedule,
                        l_s: PiecewiseSchedule | None, b_s: PiecewiseSchedule | None) -> dict[str, list[list[int]]]:
        """Segment index of every stage of every step, ``idx[name][stage][step]`` for the schedules given (k, l,
        b), computed once from float64 times (s). A step [t_n, t_n + dt] uses the segment active inside it: stage
        times are nudged into the open interval, so a boundary that coincides with a step edge never makes the end
        stage of a step see the next segment (full order when aligned)."""
        steps = torch.arange(n_steps, dtype=torch.float64)
        eps = 1e-3
        stage_fracs = (eps, 0.5, 1.0 - eps) if method == "rk4" else (eps, 1.0 - eps)
        idx = {}
        for name, sch in (("k", k_s), ("l", l_s), ("b", b_s)):
            if sch is None:
                continue
            idx[name] = [sch.segment_index((steps + f) * dt).tolist() for f in stage_fracs]
        return idx

    def _integrate(self, phi: Tensor, terms: "_StepTerms", n_steps: int, dt: float, method: str,
                   sigma: Tensor | None, generator: torch.Generator | None, record: bool, record_every: int
                   ) -> tuple[Tensor, list[Tensor]]:
        """``n_steps`` fixed steps of ``dt`` seconds from phases ``phi`` [B, N] (rad): the final phases and, with
        ``record``, the phases after every ``record_every``-th step."""
        rec: list[Tensor] = []
        for i in range(n_steps):
            if method == "rk4":
                phi = self._rk4_step(phi, terms, i, dt)
            else:
                phi = self._heun_step(phi, terms, i, dt, sigma, generator)
            if record and (i + 1) % record_every == 0:
                rec.append(phi)
        return phi, rec

    def _rk4_step(self, phi: Tensor, terms: "_StepTerms", i: int, dt: float) -> Tensor:
        """Phases [B, N] (rad) after classical RK4 step ``i`` of ``dt`` seconds (stages 0, 1, 1, 2 of ``terms``)."""
        ph = terms.at(1, i)
        k1 = self._rhs(phi, *terms.at(0, i))
        k2 = self._rhs(torch.add(phi, k1, alpha=0.5 * dt), *ph)
        k3 = self._rhs(torch.add(phi, k2, alpha=0.5 * dt), *ph)
        k4 = self._rhs(torch.add(phi, k3, alpha=dt), *terms.at(2, i))
        return torch.add(phi, torch.add(k1 + k4, k2 + k3, alpha=2.0), alpha=dt / 6.0)

    def _heun_step(self, phi: Tensor, terms: "_StepTerms", i: int, dt: float, sigma: Tensor | None,
                   generator: torch.Generator | None) -> Tensor:
        """Phases [B, N] (rad) after Heun step ``i`` of ``dt`` seconds; with ``sigma`` (rad) the stochastic Heun
        step, one Wiener increment drawn from ``generator`` and used in both stages."""
        f0 = self._rhs(phi, *terms.at(0, i))
        if sigma is not None:  # stochastic Heun: the same Wiener increment in both stages
            assert generator is not None  # sigma is set only with noise=True, which requires a generator
            z = torch.randn(phi.shape[0], self.n, generator=generator, device=generator.device, dtype=self.dtype)
            dw = sigma * z.to(self.device)
            f1 = self._rhs(torch.add(phi, f0, alpha=dt) + dw, *terms.at(1, i))
            return torch.add(phi, f0 + f1, alpha=0.5 * dt) + dw
        f1 = self._rhs(torch.add(phi, f0, alpha=dt), *terms.at(1, i))
        return torch.add(phi, f0 + f1, alpha=0.5 * dt)


@dataclass
class _StepTerms:
    """Per-segment right-hand-side terms of one ``PhaseOscillatorNetwork.forward`` call: transposed coupling
    matrices ``mt_odd`` / ``mt_even`` [N, N] or [B, N, N] (rad/s) per code segment, drifts ``2 pi df + b`` [N] or
    [B, N] (rad/s) per bias segment, ``two_l = 2 L`` [N] (rad/s) per SHIL segment, the node-loading pull
    ``2 pi df_load`` (rad/s) and SHIL gain per code segment (None when absent), and ``idx[name][stage][step]``, the
    segment of schedule ``name`` (k, l, b) that stage ``stage`` of step ``step`` uses."""

    mt_odd: list[Tensor]
    mt_even: list[Tensor] | None
    drift: list[Tensor]
    two_l: list[Tensor] | None
    load_drift: list[Tensor] | None
    shil_gain: list[Tensor] | None
    idx: dict[str, list[list[int]]]

    def at(self, stage: int, step: int) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        """``(M_odd^T, M_even^T, drift, 2 L)`` (rad/s) of stage ``stage`` of step ``step``, with the node loading
        added to the drift and applied to the SHIL."""
        ik = self.idx["k"][stage][step]
        dr = self.drift[self.idx["b"][stage][step]] if "b" in self.idx else self.drift[0]
        tl = self.two_l[self.idx["l"][stage][step]] if self.two_l is not None else None
        if self.load_drift is not None:
            dr = dr + self.load_drift[ik]
        if tl is not None and self.shil_gain is not None:
            tl = tl * self.shil_gain[ik]
        return (self.mt_odd[ik], self.mt_even[ik] if self.mt_even is not None else None, dr, tl)
