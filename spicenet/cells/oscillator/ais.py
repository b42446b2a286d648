"""AIS trainer core: a coupled-oscillator generator trained as a Wasserstein GAN (gradient penalty) on its end state.

Generator (``AISGenerator``): a ``PhaseOscillatorNetwork`` of ``H*W`` visible oscillators (one per pixel, on the
image grid) plus ``n_hidden`` hidden ones (spread over the same plane), sparse connectivity (pairs closer than
``radius`` grid units, pairs involving a hidden oscillator closer than ``hidden_radius``, plus every other pair with
probability ``extra_density``, seeded). Learnable piecewise-constant schedules over ``n_segments`` equal segments
of the horizon ``t_end = periods / f0``:

- coupling codes ``c_e(s)``, one per resistor (undirected edge e; ``K_ij = K_ji``), rounded to signed ``n_bits``
  levels with a straight-through estimator (``quantize_codes_ste``), then projected onto the per-node
  conductance budget (``node_g_max_s`` > 0): ``sum_j |c_ij| g_unit <= G_max`` for every ring i and segment
  (``budget_codes``). A ring loaded by many banks changes its frequency, swing and sensitivity (see
  ``phase.py``, node loading); the budget keeps trained networks inside the load range that was calibrated;
- SHIL strength ``L_i(s) = shil_max * sigmoid(u_i(s))`` [rad/s];
- bias ``b_i(s) = bias_max * tanh(v_i(s))`` [rad/s].

Coupling (phase differences), SHIL (pi-periodic), bias and detuning (frequency offsets) are all invariant under
``phi -> phi + pi`` for every oscillator at once, so absolute phases cannot tell black from white; as in oscillator Ising machines, a *reference oscillator* (``reference=True``, the
last index) is coupled to every oscillator (its couplings play the role of per-pixel fields; they start at code 0)
and pixels are read relative to it (a phase detector against the reference). Latent = random initial phases, uniform in [0, 2 pi)
for every oscillator (seeded). Output pixel = ``(1 - cos(phi_i - phi_ref)) / 2`` of the visible oscillators
(``(1 - cos phi_i) / 2`` without a reference). Phase diffusion (stochastic Heun) is on during training
when ``noise`` is set. Mismatch-aware training: a ``chip_sampler(generator) -> ChipMismatch`` gives a fresh chip
(detunings, coupling gains) for every batch.

Critic: a small digital MLP on the pixel intensities; loss = WGAN-GP (Gulrajani et al. 2017):
``L_D = E[D(fake)] - E[D(real)] + gp_weight * E[(||grad D(x_hat)|| - 1)^2]``, ``L_G = -E[D(fake)]``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from spicenet.cells.oscillator.phase import (
    ChipMismatch,
    PhaseModelParams,
    PhaseOscillatorNetwork,
    phase_to_intensity,
    sample_chip,
)
from spicenet.cells.oscillator.schedule import PiecewiseSchedule, max_code, quantize_codes_ste
from spicenet.config import setting
from spicenet.progress import progress_bar

__all__ = ["AISConfig", "grid_connectivity", "budget_codes", "node_code_load", "AISGenerator", "Critic", "gradient_penalty", "AISResult", "train_ais",
           "AISTrainer", "AIS_STREAMS", "perturbed_chip", "fidelity_penalty", "lock_penalty"]

ChipSampler = Callable[[torch.Generator], ChipMismatch]


@dataclass(frozen=True)
class AISConfig:
    """Everything that defines an AIS run (physical scales in rad/s, horizon in oscillator periods).

    ``checkpoint_every`` [iterations] only sets how often a resumable state is handed out (``AISTrainer.run``); an
    interrupted-and-resumed run equals an uninterrupted one whatever its value."""

    height: int = 8
    width: int = 8
    n_hidden: int = setting(16, "hidden oscillators (spread over the image plane)", section="model")
    n_segments: int = setting(4, "piecewise-constant segments of the code / SHIL / bias schedules",
                              section="model")
    periods: float = setting(100.0, "horizon in periods of the calibrated f0", section="model")
    n_steps: int = setting(100, "stochastic Heun steps over the horizon", section="model")
    radius: float = setting(1.0, "visible-visible neighbourhood (Euclidean)", unit="grid units", section="model")
    hidden_radius: float = setting(2.5, "neighbourhood of pairs with a hidden oscillator", unit="grid units",
                                   section="model")
    extra_density: float = setting(0.0, "probability of each other pair getting a resistor bank", section="model")
    reference: bool = setting(True, "add a reference oscillator coupled to all; pixels read against it",
                              section="model")
    n_bits: int = setting(4, "magnitude bits of each resistor bank (+ a polarity bit)", unit="bit", section="model")
    code_init_std: float = setting(2.0, "std of the initial codes", unit="LSB", section="model")
    shil_max: float = setting(1.0e8, "largest SHIL strength (SHIL current = L / shil_strength)", unit="rad/s",
                              section="model")
    bias_max: float = setting(3.0e7, "largest bias (supply offset = b / (2 pi df/dVdd))", unit="rad/s",
                              section="model")
    noise: bool = setting(True, "calibrated phase diffusion during training", section="model")
    f0_std_rel: float = 0.0  # default chip sampler: relative f0 spread
    k_gain_std_rel: float = 0.0  # default chip sampler: relative coupling-gain spread
    batch_size: int = setting(64, "generated and real images per critic / generator step", section="train")
    iterations: int = setting(200, "generator iterations", section="train")
    n_critic: int = setting(3, "critic steps per generator step", section="train")
    gp_weight: float = setting(10.0, "WGAN-GP gradient-penalty weight", section="train")
    lr_codes: float = setting(0.2, "Adam learning rate of the coupling codes", unit="LSB", section="train")
    lr_analog: float = setting(0.05, "Adam learning rate of the SHIL and bias pre-activations", section="train")
    lr_critic: float = setting(1e-3, "Adam learning rate of the critic", section="train")
    critic_hidden: int = setting(128, "hidden width of the critic MLP", section="train")
    seed: int = 0
    node_g_max_s: float = setting(0.0, "per-ring budget of total bank conductance (0 = none)", unit="S",
                                  section="model")
    # fidelity penalty (see ``fidelity_penalty``): weight (0 = off), latents per step and the model-error scales
    fidelity_weight: float = setting(0.0, "weight of the mean squared pixel change under a model error (0 = off)",
                                     section="train")
    fidelity_batch: int = setting(16, "latents per generator step for the fidelity penalty", section="train")
    fidelity_phase_std_rad: float = setting(0.05, "fidelity penalty: initial-phase error std", unit="rad",
                                            section="train")
    fidelity_detuning_std_rel: float = setting(1e-3, "fidelity penalty: per-ring frequency error std / f0",
                                               section="train")
    fidelity_k_gain_std_rel: float = setting(0.05, "fidelity penalty: per-resistor coupling-gain error std",
                                             section="train")
    latch_periods: float = setting(0.0, "read-out latch after the horizon: banks open, SHIL at shil_max (0 = none)",
                                   unit="periods of f0", section="model")
    # lock penalty (see ``lock_penalty``): weight (0 = off) and the window at the end of the horizon it averages
    # the rings' frequencies over [periods of f0] (0 = the last segment, ``periods / n_segments``)
    lock_weight: float = setting(0.0, "weight of the squared relative frequency offset to the reference (0 = off)",
                                 section="train")
    lock_periods: float = setting(0.0, "lock penalty window at the end of the horizon (0 = the last segment)",
                                  unit="periods of f0", section="train")
    # resumable runs: hand the whole training state to ``AISTrainer.run``'s ``on_checkpoint`` every this many
    # iterations and after the last one (0 = after the last one only); it does not change what is trained
    checkpoint_every: int = setting(25, "iterations between resumable checkpoints (0 = after the last only)",
                                    section="train")

    def __post_init__(self) -> None:
        for key in ("height", "width", "n_segments", "n_steps", "batch_size", "iterations", "n_critic",
                    "critic_hidden", "fidelity_batch"):
            v = getattr(self, key)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{key} must be an int >= 1, got {v!r}")
        for key in ("n_hidden", "checkpoint_every"):
            v = getattr(self, key)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{key} must be an int >= 0, got {v!r}")
        for key in ("periods", "radius", "shil_max", "bias_max", "lr_codes", "lr_analog", "lr_critic"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{key} must be > 0, got {v!r}")
        for key in ("latch_periods", "hidden_radius", "code_init_std", "f0_std_rel", "k_gain_std_rel", "gp_weight", "node_g_max_s",
                    "fidelity_weight", "fidelity_phase_std_rad", "fidelity_detuning_std_rel",
                    "fidelity_k_gain_std_rel", "lock_weight", "lock_periods"):
            v = getattr(self, key)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{key} must be >= 0, got {v!r}")
        if self.lock_periods > self.periods:
            raise ValueError(f"lock_periods ({self.lock_periods!r}) must be <= periods ({self.periods!r})")
        if not 0.0 <= self.extra_density <= 1.0:
            raise ValueError(f"extra_density must be in [0, 1], got {self.extra_density!r}")
        max_code(self.n_bits)

    @property
    def lock_window_steps(self) -> int:
        """Integration steps in the lock penalty's window, ``round(lock_periods / (periods + latch_periods) *
        n_steps)`` (``lock_periods`` = the last segment's ``periods / n_segments`` when 0), at least 1."""
        w = self.lock_periods if self.lock_periods > 0 else self.periods / self.n_segments
        return max(1, min(self.n_steps, int(round(w / (self.periods + self.latch_periods) * self.n_steps))))

    @property
    def n_visible(self) -> int:
        return self.height * self.width

    @property
    def n_oscillators(self) -> int:
        """Visible + hidden (+ 1 reference)."""
        return self.n_visible + self.n_hidden + int(self.reference)


def grid_connectivity(height: int, width: int, n_hidden: int, radius: float, hidden_radius: float,
                      extra_density: float, seed: int, reference: bool = False) -> tuple[Tensor, Tensor]:
    """Symmetric boolean mask [N, N] (no self loops) and positions [N, 2] (row, col) of
    N = H*W + n_hidden (+ 1 reference) nodes.

    Visible node ``r*W + c`` sits at (r, c); hidden nodes sit at the centres of a ``gh x gw`` lattice covering the
    image. Pairs are connected when their distance is <= ``radius`` (both visible) or <= ``hidden_radius`` (at least
    one hidden); every other pair independently with probability ``extra_density`` (numpy rng of ``seed``). The
    optional reference node (last index, placed at the image centre) is connected to every other node.
    """
    if height < 1 or width < 1 or n_hidden < 0:
        raise ValueError(f"height, width must be >= 1 and n_hidden >= 0, got {height}, {width}, {n_hidden}")
    rr, cc = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    pos = [np.stack([rr.ravel(), cc.ravel()], 1).astype(float)]
    if n_hidden:
        gh = max(1, int(round(math.sqrt(n_hidden * height / width))))
        gw = int(math.ceil(n_hidden / gh))
        hr, hc = np.meshgrid((np.arange(gh) + 0.5) * height / gh - 0.5, (np.arange(gw) + 0.5) * width / gw - 0.5,
                             indexing="ij")
        pos.append(np.stack([hr.ravel(), hc.ravel()], 1)[:n_hidden])
    p = np.concatenate(pos, 0)
    n = p.shape[0]
    nv = height * width
    dist = np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1))
    hidden = np.arange(n) >= nv
    any_hidden = hidden[:, None] | hidden[None, :]
    local = np.where(any_hidden, dist <= hidden_radius + 1e-9, dist <= radius + 1e-9)
    rng = np.random.default_rng(seed)
    extra = np.triu(rng.random((n, n)) < extra_density, 1)
    extra = extra | extra.T
    mask = (local | extra) & ~np.eye(n, dtype=bool)
    if reference:
        mask = np.pad(mask, ((0, 1), (0, 1)))
        mask[-1, :-1] = mask[:-1, -1] = True
        p = np.concatenate([p, [[(height - 1) / 2, (width - 1) / 2]]], 0)
    return torch.from_numpy(mask), torch.from_numpy(p)


def node_code_load(codes: Tensor, edge_i: Tensor, edge_j: Tensor, n: int) -> Tensor:
    """Total code magnitude per ring: ``sum_e |c_e|`` over the edges touching it, ``[S, E] -> [S, N]``
    (times ``g_unit`` this is the ring's total bank conductance in S)."""
    mag = codes.abs()
    load = torch.zeros(codes.shape[0], n, device=codes.device, dtype=codes.dtype)
    return load.index_add(1, edge_i, mag).index_add(1, edge_j, mag)


def budget_codes(codes: Tensor, edge_i: Tensor, edge_j: Tensor, n: int, budget: float) -> Tensor:
    """Project integer codes ``[S, E]`` onto the per-node budget ``sum_{e at i} |c_e| <= budget`` (codes units).

    Every ring over budget scales its edges by ``s_i = budget / load_i``; an edge takes the smaller scale of its two
    ends and is truncated toward zero, so ``|c'_e| <= s_i |c_e|`` and each ring's load ends ``<= budget`` exactly
    (integers in, integers out). Straight-through gradient: ``d c'/d c = s_e`` (the truncation is treated as identity).
    """
    if not (math.isfinite(budget) and budget >= 0):
        raise ValueError(f"budget must be a finite code sum >= 0, got {budget!r}")
    if codes.dim() != 2 or edge_i.shape != (codes.shape[1],) or edge_j.shape != (codes.shape[1],):
        raise ValueError(f"codes must be [S, E] with E = len(edge_i) = len(edge_j), got {tuple(codes.shape)}")
    load = node_code_load(codes.detach(), edge_i, edge_j, n)
    scale = torch.where(load > budget, budget / load.clamp_min(1e-12), torch.ones_like(load))
    s_e = torch.minimum(scale[:, edge_i], scale[:, edge_j])
    y = codes * s_e
    # truncate toward zero; the nudge keeps an exact product (e.g. 7 * 20/28) from rounding down to 4.999..
    # (exact values sit >= 1/load >= 1e-4 from the next integer, so the budget still holds)
    return y + (torch.trunc(y + 1e-6 * torch.sign(y)) - y).detach()


class AISGenerator(nn.Module):
    """Oscillator-network generator with learnable quantised couplings and analog SHIL / bias schedules."""

    # registered buffers (declared for the type checker: nn.Module.__getattr__ is typed Tensor | Module)
    edge_i: Tensor
    edge_j: Tensor
    positions: Tensor

    def __init__(self, config: AISConfig, params: PhaseModelParams | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.config = config
        self.params = params if params is not None else PhaseModelParams(n_bits=config.n_bits)
        if self.params.n_bits != config.n_bits:
            raise ValueError(f"params.n_bits ({self.params.n_bits}) must equal config.n_bits ({config.n_bits})")
        n, nv, s = config.n_oscillators, config.n_visible, config.n_segments
        mask, pos = grid_connectivity(config.height, config.width, config.n_hidden, config.radius,
                                      config.hidden_radius, config.extra_density, config.seed, config.reference)
        self.network = PhaseOscillatorNetwork(n, self.params, mask=mask, visible=list(range(nv)), device=device,
                                              dtype=dtype)
        iu, ju = torch.nonzero(torch.triu(mask, 1), as_tuple=True)
        self.register_buffer("edge_i", iu.to(device))
        self.register_buffer("edge_j", ju.to(device))
        self.register_buffer("positions", pos.to(device=device, dtype=dtype))
        g = torch.Generator().manual_seed(config.seed)
        e = iu.numel()
        raw = config.code_init_std * torch.randn(s, e, generator=g)
        if config.reference:  # fields start at zero: the initial distribution is flip-symmetric
            raw[:, ju == n - 1] = 0.0
        self.codes_raw = nn.Parameter(raw.to(device, dtype))
        self.shil_raw = nn.Parameter(torch.zeros(s, n).to(device, dtype))
        self.bias_raw = nn.Parameter(torch.zeros(s, n).to(device, dtype))
        self.t_end = (config.periods + config.latch_periods) / self.params.f0_hz
        self.reference_index = n - 1 if config.reference else None

    # ------------------------------------------------------------------ schedules (what the hardware gets)
    @property
    def n_edges(self) -> int:
        return int(self.edge_i.numel())

    @property
    def density(self) -> float:
        """Connected pairs / all pairs N(N-1)/2."""
        n = self.config.n_oscillators
        return self.n_edges / max(1, n * (n - 1) // 2)

    @property
    def budget_code_sum(self) -> float | None:
        """Per-ring budget in code units, ``floor(node_g_max_s / g_unit_s)`` (None without a budget)."""
        if self.config.node_g_max_s <= 0:
            return None
        return float(math.floor(self.config.node_g_max_s / self.params.g_unit_s + 1e-9))

    def edge_codes(self) -> Tensor:
        """Signed integer codes per segment and resistor [S, E] within the node budget (STE: gradients reach
        ``codes_raw``)."""
        q = quantize_codes_ste(self.codes_raw, self.config.n_bits, signed=True)
        b = self.budget_code_sum
        if b is not None:
            q = budget_codes(q, self.edge_i, self.edge_j, self.config.n_oscillators, b)
        return q

    def node_conductance_s(self) -> Tensor:
        """Total bank conductance [S] hanging on each ring per segment ``[S, N]`` (the exported codes)."""
        with torch.no_grad():
            return node_code_load(self.edge_codes(), self.edge_i, self.edge_j, self.config.n_oscillators) * \
                self.params.g_unit_s

    def code_matrices(self) -> Tensor:
        """Symmetric signed code matrices [S, N, N]."""
        n = self.config.n_oscillators
        q = self.edge_codes()
        dense = torch.zeros(q.shape[0], n * n, device=q.device, dtype=q.dtype)
        dense = dense.index_add(1, self.edge_i * n + self.edge_j, q).index_add(1, self.edge_j * n + self.edge_i, q)
        return dense.view(-1, n, n)

    def shil_rad_s(self) -> Tensor:
        return self.config.shil_max * torch.sigmoid(self.shil_raw)

    def bias_rad_s(self) -> Tensor:
        return self.config.bias_max * torch.tanh(self.bias_raw)

    def schedules(self) -> tuple[PiecewiseSchedule, PiecewiseSchedule, PiecewiseSchedule]:
        """(codes [S,N,N], SHIL [S,N] rad/s, bias [S,N] rad/s) as piecewise schedules over ``t_end``: the
        ``n_segments`` learned segments share ``periods / f0`` equally; with ``latch_periods`` > 0 a read-out latch
        segment follows (every bank open, SHIL ``shil_max`` on every ring, no bias), in which each ring relaxes
        alone to the nearer SHIL state, ``tan(phi(t)) = tan(phi(t_l)) exp(-2 L t)``: the image is held, and a
        small phase error at the latch's start shrinks by ``exp(-2 L t_latch)`` unless it crosses pi/2."""
        codes, shil, bias = self.code_matrices(), self.shil_rad_s(), self.bias_rad_s()
        s = self.config.n_segments
        dur = torch.full((s,), self.config.periods / self.params.f0_hz / s, dtype=torch.float64)
        if self.config.latch_periods > 0:
            codes = torch.cat((codes, torch.zeros_like(codes[:1])))
            shil = torch.cat((shil, torch.full_like(shil[:1], self.config.shil_max)))
            bias = torch.cat((bias, torch.zeros_like(bias[:1])))
            dur = torch.cat((dur, torch.tensor([self.config.latch_periods / self.params.f0_hz], dtype=torch.float64)))
        return PiecewiseSchedule(codes, dur), PiecewiseSchedule(shil, dur), PiecewiseSchedule(bias, dur)

    def export_state(self) -> dict:
        """Plain numpy description for export to a netlist: integer codes, schedules, mask, timing, params."""
        with torch.no_grad():
            k, l, b = self.schedules()
            return {
                "codes": k.values.round().to(torch.int64).cpu().numpy(),
                "shil_rad_s": l.values.cpu().numpy(),
                "bias_rad_s": b.values.cpu().numpy(),
                "durations_s": k.durations.numpy(),
                "mask": self.network.mask.cpu().numpy() > 0,
                "positions": self.positions.cpu().numpy(),
                "visible": self.network.visible_idx.cpu().numpy(),
                "reference_index": self.reference_index,
                "n_steps": self.config.n_steps,
                "t_end_s": self.t_end,
                "params": asdict(self.params),
                "config": asdict(self.config),
            }

    # ------------------------------------------------------------------ sampling
    def sample_latent(self, batch: int, generator: torch.Generator) -> Tensor:
        """Initial phases [batch, N], uniform in [0, 2 pi) (the latent)."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch!r}")
        n = self.config.n_oscillators
        dev = self.network.device
        return 2 * math.pi * torch.rand(batch, n, generator=generator, device=generator.device,
                                        dtype=self.network.dtype).to(dev)

    def forward(self, phi0: Tensor, chip: ChipMismatch | None = None, noise_generator: torch.Generator | None = None,
                return_trajectory: bool = False) -> Tensor:
        """Pixel intensities [B, H, W] of the final visible phases from initial phases ``phi0`` [B, N].
        Phase noise is on when ``config.noise`` and a ``noise_generator`` are given."""
        return self.images(self.run(phi0, chip, noise_generator, return_trajectory).phases)

    def images(self, phases: Tensor) -> Tensor:
        """Pixel intensities [B, H, W] of final phases [B, N] (``phase_to_intensity`` of ``readout_phases``)."""
        return phase_to_intensity(self.readout_phases(phases)).view(-1, self.config.height, self.config.width)

    def readout_phases(self, phases: Tensor) -> Tensor:
        """Visible phases [B, H*W] as read out: relative to the reference oscillator when there is one."""
        vis = phases[:, self.network.visible_idx]
        if self.reference_index is not None:
            vis = vis - phases[:, self.reference_index:self.reference_index + 1]
        return vis

    def run(self, phi0: Tensor, chip: ChipMismatch | None = None, noise_generator: torch.Generator | None = None,
            return_trajectory: bool = False):
        """The underlying ``PhaseTrajectory`` (final phases of all oscillators, optional trajectory)."""
        k, l, b = self.schedules()
        noise = bool(self.config.noise and noise_generator is not None and self.params.phase_diffusion > 0)
        return self.network(phi0, self.t_end, self.config.n_steps, k, shil=l, bias=b, chip=chip, method="heun",
                            noise=noise, generator=noise_generator if noise else None,
                            return_trajectory=return_trajectory)

    @torch.no_grad()
    def sample(self, batch: int, generator: torch.Generator, chip: ChipMismatch | None = None,
               noise: bool = True) -> Tensor:
        """``batch`` images [B, H, W] in [0, 1] from fresh latents (and phase noise when ``noise``)."""
        phi0 = self.sample_latent(batch, generator)
        return self(phi0, chip, generator if noise else None)


class Critic(nn.Module):
    """Digital critic: MLP on the P pixel intensities, LeakyReLU(0.2), scalar output (no sigmoid; WGAN)."""

    def __init__(self, n_pixels: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_pixels, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                                 nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).squeeze(-1)


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, generator: torch.Generator) -> Tensor:
    """WGAN-GP term ``E[(||grad_x D(x_hat)||_2 - 1)^2]`` on random interpolates of real and fake [B, ...]."""
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), generator=generator, device=generator.device,
                     dtype=real.dtype).to(real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


@dataclass
class AISResult:
    """Trained generator and critic, per-iteration history and wall time."""

    generator: AISGenerator
    critic: Critic
    history: list[dict] = field(default_factory=list)
    wall_s: float = 0.0


def perturbed_chip(chip: ChipMismatch | None, n: int, f0_hz: float, detuning_std_rel: float,
                   k_gain_std_rel: float, generator: torch.Generator, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> ChipMismatch:
    """``chip`` (nominal when None) with a model error on top: detuning ``+ N(0, (detuning_std_rel f0)^2)`` [Hz] per
    ring and coupling gains ``* (1 + N(0, k_gain_std_rel^2))`` per resistor (symmetric), drawn from ``generator``."""
    base = chip if chip is not None else ChipMismatch.nominal(n, device=device, dtype=dtype)
    err = sample_chip(n, f0_hz, detuning_std_rel, k_gain_std_rel, generator, device=device, dtype=dtype)
    return ChipMismatch(base.detuning_hz.to(device, dtype) + err.detuning_hz,
                        base.k_gain.to(device, dtype) * err.k_gain)


def fidelity_penalty(gen: "AISGenerator", chip: ChipMismatch | None, generator: torch.Generator) -> Tensor:
    """Mean squared pixel change of the generator under a random model error (differentiable).

    A circuit is the surrogate plus an unknown model error: start phases off by ~0.01-0.05 rad (the ``.ic`` start),
    couplings off by a few percent, rings detuned by a fraction of a permille. A generator whose end state is a
    chaotic function of its inputs turns such errors into different images (measured on an untrained-for-fidelity
    quick network: 0.01 rad of initial-phase error moved the read-out by 0.18 rad RMS). The penalty

        P = E_{phi0, delta} mean_pixels (x(phi0; chip) - x(phi0 + delta_phi; chip + delta_chip))^2

    with ``delta_phi ~ N(0, fidelity_phase_std_rad^2)`` and ``delta_chip`` from ``perturbed_chip`` (both runs
    noise-free) makes the image a robust function of the latent, which is what a SPICE validation of single images
    needs. It is added to the generator loss with weight ``fidelity_weight``.
    """
    c = gen.config
    n = c.n_oscillators
    phi = gen.sample_latent(c.fidelity_batch, generator)
    pert = perturbed_chip(chip, n, gen.params.f0_hz, c.fidelity_detuning_std_rel, c.fidelity_k_gain_std_rel,
                          generator, device=gen.network.device, dtype=gen.network.dtype)
    dphi = c.fidelity_phase_std_rad * torch.randn(phi.shape, generator=generator, device=generator.device,
                                                  dtype=phi.dtype).to(phi.device)
    return ((gen(phi, chip, None) - gen(phi + dphi, pert, None)) ** 2).mean()


def lock_penalty(phi0: Tensor, trajectory: Tensor, window_steps: int, dt_s: float, f0_hz: float,
                 reference_index: int | None) -> Tensor:
    """Mean squared frequency offset of the rings to the reference over the end of the horizon (differentiable).

    From the initial phases ``phi0`` [B, N] and the trajectory [B, T, N] (phases after each of T steps of
    ``dt_s`` seconds), the mean angular frequency of ring i relative to the reference over the last
    ``w = window_steps`` steps is ``Omega_i = (psi_i(T) - psi_i(T - w)) / (w dt)`` [rad/s] with
    ``psi_i = phi_i - phi_ref`` (relative to the mean phase of all rings without a reference), and

        P = mean_{batch, i != ref} (Omega_i / (2 pi f0))^2.

    A network whose rings all run at the reference's frequency at the end (locked; for two rings, Adler's
    ``|dw| <= 2 K``) gives P = 0: its read-out is a stable fixed point of the phase differences, which contracts
    model errors instead of amplifying them. A drifting pair gives its beat frequency, ``sqrt(dw^2 - (2K)^2)``
    for Kuramoto coupling (Adler). It is added to the generator loss with weight ``AISConfig.lock_weight``.
    """
    if trajectory.dim() != 3 or phi0.dim() != 2 or trajectory.shape[::2] != phi0.shape:
        raise ValueError(f"trajectory must be [B, T, N] and phi0 [B, N], got {tuple(trajectory.shape)}, "
                         f"{tuple(phi0.shape)}")
    if not (isinstance(window_steps, int) and 1 <= window_steps <= trajectory.shape[1]):
        raise ValueError(f"window_steps must be an int in [1, {trajectory.shape[1]}], got {window_steps!r}")
    if not (dt_s > 0 and f0_hz > 0):
        raise ValueError(f"dt_s and f0_hz must be > 0, got {dt_s!r}, {f0_hz!r}")
    end, start = trajectory[:, -1], (trajectory[:, -1 - window_steps] if window_steps < trajectory.shape[1]
                                     else phi0.to(trajectory))
    dphi = end - start
    if reference_index is not None:
        rel = dphi - dphi[:, reference_index:reference_index + 1]
        keep = torch.ones(dphi.shape[1], dtype=torch.bool, device=dphi.device)
        keep[reference_index] = False
        rel = rel[:, keep]
    else:
        rel = dphi - dphi.mean(1, keepdim=True)
    return ((rel / (window_steps * dt_s * 2 * math.pi * f0_hz)) ** 2).mean()


AIS_STREAMS = ("data", "latent", "chip", "gp", "fidelity")
"""Names of the training loop's random streams (``AISTrainer.generators``), seeded ``config.seed + 1, + 2, ...``
in this order: real minibatch indices, latents and phase noise, the default chip sampler, the WGAN-GP
interpolation weights, the fidelity penalty's latents and model errors."""


class AISTrainer:
    """The WGAN-GP loop of :func:`train_ais` as an object whose whole state can be saved and restored.

    State: generator and critic weights (``model_state``), both Adam optimizers, the iteration count and the
    per-iteration history (``loop_state``), and the random streams ``generators`` (torch generators named by
    ``AIS_STREAMS``; a checkpoint stores them with ``spicenet.train.rng_state``). Nothing else is random: the
    critic's initial weights come from ``config.seed`` under a forked global RNG, and a ``chip_sampler`` with its
    own position (e.g. an indexed chip stream) must be checkpointed by its owner. Restoring all of it after ``k``
    iterations and running on gives bit-identical weights and history to an uninterrupted run, for any later
    length (``config.iterations`` is not read by ``step``).
    """

    def __init__(self, data: Tensor, config: AISConfig, params: PhaseModelParams | None = None,
                 chip_sampler: ChipSampler | None = None, device: torch.device | str = "cpu") -> None:
        if not isinstance(data, Tensor) or data.dim() != 3 or tuple(data.shape[1:]) != (config.height, config.width):
            raise ValueError(f"data must have shape [M, {config.height}, {config.width}], "
                             f"got {tuple(getattr(data, 'shape', ()))}")
        if float(data.min()) < 0 or float(data.max()) > 1:
            raise ValueError(f"data must be intensities in [0, 1], got range [{float(data.min())}, "
                             f"{float(data.max())}]")
        self.config = config
        self.device = device
        self.gen = AISGenerator(config, params, device=device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.critic = Critic(config.n_visible, config.critic_hidden).to(device)
        self.data = data.to(device=device, dtype=torch.float32)
        self.generators = {name: torch.Generator().manual_seed(config.seed + 1 + k)
                           for k, name in enumerate(AIS_STREAMS)}
        if chip_sampler is None and (config.f0_std_rel > 0 or config.k_gain_std_rel > 0):
            p = self.gen.params
            chip_sampler = lambda g: sample_chip(config.n_oscillators, p.f0_hz, config.f0_std_rel,  # noqa: E731
                                                 config.k_gain_std_rel, g, device=device)
        self.chip_sampler = chip_sampler
        self.opt_g = torch.optim.Adam([{"params": [self.gen.codes_raw], "lr": config.lr_codes},
                                       {"params": [self.gen.shil_raw, self.gen.bias_raw], "lr": config.lr_analog}],
                                      betas=(0.5, 0.9))
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=config.lr_critic, betas=(0.5, 0.9))
        self.iteration = 0
        self.history: list[dict] = []

    # ------------------------------------------------------------------ state
    def model_state(self) -> dict[str, dict[str, Tensor]]:
        """``{"generator", "critic"}`` state dicts."""
        return {"generator": self.gen.state_dict(), "critic": self.critic.state_dict()}

    def loop_state(self) -> dict:
        """``{"iteration", "optimizers": {"generator", "critic"}, "history"}``: the rest of the state (without the
        random streams)."""
        return {"iteration": self.iteration,
                "optimizers": {"generator": self.opt_g.state_dict(), "critic": self.opt_d.state_dict()},
                "history": [dict(r) for r in self.history]}

    def load_state(self, model: dict[str, dict[str, Tensor]], loop: dict) -> None:
        """Inverse of ``model_state`` / ``loop_state`` (restore ``generators`` separately, e.g. with
        ``spicenet.train.restore_rng_state``)."""
        self.gen.load_state_dict(model["generator"])
        self.critic.load_state_dict(model["critic"])
        self.opt_g.load_state_dict(loop["optimizers"]["generator"])
        self.opt_d.load_state_dict(loop["optimizers"]["critic"])
        self.iteration = int(loop["iteration"])
        self.history = [dict(r) for r in loop["history"]]
        if len(self.history) != self.iteration:
            raise ValueError(f"training state: {len(self.history)} history records for {self.iteration} iterations")

    # ------------------------------------------------------------------ the loop
    def step(self) -> dict:
        """One iteration: a chip, ``n_critic`` critic steps, one generator step; returns (and records) its row
        ``{"iteration", "loss_critic", "loss_generator", "wasserstein", "fidelity_penalty", "lock_penalty"}``
        (the lock penalty is computed on the generator step's own trajectory, phase noise included: over the
        window its noise floor ``~4 D / (w dt (2 pi f0)^2)`` has no gradient)."""
        config, gen, critic, g = self.config, self.gen, self.critic, self.generators
        data, bsz = self.data, config.batch_size
        chip = self.chip_sampler(g["chip"]) if self.chip_sampler is not None else None
        loss_d = torch.zeros(())
        w_est = torch.zeros(())
        with torch.no_grad():  # fakes for all critic steps in one batched simulation
            fakes = gen(gen.sample_latent(bsz * config.n_critic, g["latent"]), chip, g["latent"])
        for step in range(config.n_critic):
            real = data[torch.randint(0, data.shape[0], (bsz,), generator=g["data"]).to(self.device)]
            fake = fakes[step * bsz:(step + 1) * bsz]
            d_real, d_fake = critic(real).mean(), critic(fake).mean()
            gp = gradient_penalty(critic, real.flatten(1), fake.flatten(1), g["gp"])
            loss_d = d_fake - d_real + config.gp_weight * gp
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            w_est = (d_real - d_fake).detach()
        phi0 = gen.sample_latent(bsz, g["latent"])
        locking = config.lock_weight > 0
        out = gen.run(phi0, chip, g["latent"], return_trajectory=locking)
        fake = gen.images(out.phases)
        loss_g = -critic(fake).mean()
        lock_pen = torch.zeros(())
        if locking:
            lock_pen = lock_penalty(phi0, out.trajectory, config.lock_window_steps, out.dt, gen.params.f0_hz,
                                    gen.reference_index)
            loss_g = loss_g + config.lock_weight * lock_pen
        fid_pen = torch.zeros(())
        if config.fidelity_weight > 0:
            fid_pen = fidelity_penalty(gen, chip, g["fidelity"])
            loss_g = loss_g + config.fidelity_weight * fid_pen
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        rec = {"iteration": self.iteration, "loss_critic": float(loss_d.detach()),
               "loss_generator": float(loss_g.detach()), "wasserstein": float(w_est),
               "fidelity_penalty": float(fid_pen.detach()), "lock_penalty": float(lock_pen.detach())}
        self.history.append(rec)
        self.iteration += 1
        return rec

    def run(self, iterations: int, *, progress: bool = True, on_iteration: Callable[[dict], None] | None = None,
            on_checkpoint: Callable[["AISTrainer"], None] | None = None) -> None:
        """Step from ``self.iteration`` up to ``iterations`` (ValueError when already beyond it); after each step
        ``on_iteration(row)``, and ``on_checkpoint(self)`` when the count done is a multiple of
        ``config.checkpoint_every`` (> 0) or equals ``iterations``."""
        if not isinstance(iterations, int) or iterations < self.iteration:
            raise ValueError(f"iterations must be an int >= the {self.iteration} done, got {iterations!r}")
        every = self.config.checkpoint_every
        bar = progress_bar(iterations, "ais", enabled=progress, initial=self.iteration)
        try:
            while self.iteration < iterations:
                rec = self.step()
                bar.update(1)
                if progress:
                    bar.set_postfix(w=f"{rec['wasserstein']:.3f}")
                if on_iteration is not None:
                    on_iteration(rec)
                if on_checkpoint is not None and ((every and self.iteration % every == 0)
                                                  or self.iteration == iterations):
                    on_checkpoint(self)
        finally:
            bar.close()


def train_ais(data: Tensor, config: AISConfig, params: PhaseModelParams | None = None,
              chip_sampler: ChipSampler | None = None, device: torch.device | str = "cpu",
              progress: bool = True) -> AISResult:
    """Train an ``AISGenerator`` on ``data`` [M, H, W] (intensities in [0, 1]) with WGAN-GP for
    ``config.iterations`` iterations (an :class:`AISTrainer` run from scratch, without checkpoints).

    Each iteration draws one chip (``chip_sampler``, or ``sample_chip`` with ``config.f0_std_rel`` /
    ``config.k_gain_std_rel`` when those are > 0, else the nominal chip), does ``n_critic`` critic steps on fresh
    real minibatches and fakes simulated without gradient (one batched run for all critic steps), then one generator
    step with backpropagation through the ODE. All randomness comes from ``config.seed`` (``AIS_STREAMS``).
    """
    t_start = time.perf_counter()
    trainer = AISTrainer(data, config, params, chip_sampler, device)
    trainer.run(config.iterations, progress=progress)
    return AISResult(trainer.gen, trainer.critic, trainer.history, time.perf_counter() - t_start)
