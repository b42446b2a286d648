"""Core of a denoising thermodynamic model (DTM) trainer on a sparse p-bit grid (Python API).

Reference: Jelincic et al., "An efficient probabilistic hardware architecture for diffusion-like models"
(Extropic, arXiv:2510.23972). Data are binary vectors x in {-1, +1}^D.

Forward process (binary noising): step t flips every pixel independently with probability q_t,

    q(x_t | x_{t-1}) = prod_i [ (1 - q_t) 1{x_t,i = x_{t-1},i} + q_t 1{x_t,i != x_{t-1},i} ],

so E[x_t,i x_0,i] = prod_{s<=t} (1 - 2 q_s) and x_{t-1} given x_0 is x_0 flipped with probability
(1 - prod_{s<t}(1 - 2 q_s)) / 2.

Reverse model: for each step t a conditional Boltzmann machine on the same L x L grid (``graph.grid_graph``).
D of its nodes are *data* nodes carrying x_{t-1}; the others are latent. x_t enters through the biases of the
data nodes: b_i + gamma_i x_t,i. With spins s = (x_{t-1}, z),

    p_theta(x_{t-1}, z | x_t) ∝ exp(beta [ sum_edges J_ij s_i s_j + sum_i b_i s_i + sum_{i in data} gamma_i x_t,i s_i ]).

Gradient (maximum likelihood of x_{t-1} given x_t, Monte Carlo): for every parameter theta with energy term
phi_theta(s), d log p / d theta = beta (<phi>_clamped - <phi>_free): clamped = data nodes held at x_{t-1}
(latents sampled), free = data and latents sampled, both conditioned on x_t; each phase runs K Gibbs sweeps of
``gibbs.BlockGibbsSampler``, the free phase starting from the clamped phase's final state (contrastive
divergence, CD-K, one chain per training example). Generation runs t = T..1, each step sampling the BM conditioned on x_t for K
sweeps and reading x_{t-1} off the data nodes; x_T starts uniform (the forward chain's limit).

Adaptive Correlation Penalty (ACP). Strong couplings make the free chain mix slowly, so K sweeps stop
sampling the model. ACP adds to the objective -lambda_t/2 sum_edges C_ij^2 with C_ij = <s_i s_j> - <s_i><s_j>
(connected correlations in the free phase); its gradient is approximated by dC_ij/dJ_ij ≈ beta (1 - <s_i s_j>^2)
> 0 and the coupling update gets -lambda_t C_ij (1 - <s_i s_j>^2) beta. lambda_t adapts from the measured
autocorrelation r_t of the free chain at lag K (correlation of each spin between the start and the end of the
K sweeps, averaged): lambda_t <- lambda_t * acp_rate if r_t > acp_target, else lambda_t / acp_rate
(clipped to [acp_min, acp_max]).

Quantisation: ``quantiser`` (a callable on a tensor of couplings or biases) is applied to the float master
weights before every use in sampling (straight-through: updates go to the float weights), modelling the
coupling DAC of the hardware. Mismatch: optional per-cell ``offset``/``gain`` (see ``gibbs``) of a chip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from spicenet.progress import progress_iter
from spicenet.train.quant import quantize_grid

from .gibbs import BlockGibbsSampler, make_generator
from .graph import SparseGraph, grid_graph

__all__ = ["DTMConfig", "DTM", "uniform_quantiser", "forward_noise", "total_variation"]


def uniform_quantiser(bits: int, max_abs: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Symmetric uniform quantiser to ``2**(bits-1) - 1`` levels per sign on [-max_abs, max_abs] (clipping).

    Levels ``k * step``, ``step = max_abs / (2**(bits-1) - 1)``, ``|k| <= 2**(bits-1) - 1``; round to nearest, ties
    half to even: :func:`spicenet.train.quant.quantize_grid` (forward only; the DTM's gradients are moment estimates).
    """
    if bits < 2:
        raise ValueError(f"bits: expected >= 2, got {bits}")
    if not max_abs > 0:
        raise ValueError(f"max_abs: expected > 0, got {max_abs}")
    levels = 2 ** (bits - 1) - 1
    step = max_abs / levels

    def q(x: torch.Tensor) -> torch.Tensor:
        return quantize_grid(x, step, -levels, levels)

    return q


def forward_noise(x: torch.Tensor, flip_prob: float, generator: torch.Generator) -> torch.Tensor:
    """Flip each ±1 entry of ``x`` independently with probability ``flip_prob`` (0 <= flip_prob <= 1/2)."""
    if not 0.0 <= flip_prob <= 0.5:
        raise ValueError(f"flip_prob: expected 0 <= q <= 0.5, got {flip_prob}")
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return torch.where(u < flip_prob, -x, x)


def total_variation(samples: torch.Tensor, probs: torch.Tensor) -> float:
    """TV distance between the empirical law of ±1 samples [n, D] (D <= 20) and a distribution [2^D]."""
    d = samples.shape[1]
    if probs.shape != (2 ** d,):
        raise ValueError(f"probs: expected shape ({2 ** d},), got {tuple(probs.shape)}")
    k = ((samples > 0).long() * (2 ** torch.arange(d))).sum(1)
    emp = torch.bincount(k, minlength=2 ** d).double() / samples.shape[0]
    return 0.5 * float((emp - probs.double()).abs().sum())


@dataclass
class DTMConfig:
    """Hyper-parameters of a DTM (see module docstring).

    size/degree/pattern: the grid of every step's BM. n_steps: T. flip_probs: q_1..q_T (default: equal steps
    whose product (1 - 2q)^T = 0.05). sweeps: K per phase (both phases run one chain per training example).
    lr: SGD step. beta: inverse temperature. acp_*: Adaptive Correlation
    Penalty. seed: everything random (init, noising, sampling).
    """

    size: int = 4
    degree: int = 8
    pattern: str = "moore"
    periodic: bool = True
    n_steps: int = 2
    flip_probs: list[float] | None = None
    sweeps: int = 10
    lr: float = 0.05
    beta: float = 1.0
    init_scale: float = 0.01
    acp_lambda: float = 0.0
    acp_target: float = 0.05
    acp_rate: float = 1.2
    acp_min: float = 1e-4
    acp_max: float = 1.0
    seed: int = 0

    def resolved_flip_probs(self) -> list[float]:
        if self.flip_probs is not None:
            if len(self.flip_probs) != self.n_steps:
                raise ValueError(f"flip_probs: expected {self.n_steps} values, got {len(self.flip_probs)}")
            qs = [float(q) for q in self.flip_probs]
            if not all(0.0 < q <= 0.5 for q in qs):
                raise ValueError(f"flip_probs: expected 0 < q <= 0.5, got {qs}")
            return qs
        q = 0.5 * (1.0 - 0.05 ** (1.0 / self.n_steps))
        return [q] * self.n_steps


@dataclass
class _StepParams:
    weights: torch.Tensor  # [E] float64 master copy
    biases: torch.Tensor  # [N]
    gamma: torch.Tensor  # [D] coupling of x_t into the data nodes
    acp_lambda: float
    autocorr: float = float("nan")


class DTM:
    """A chain of T conditional Boltzmann machines on a p-bit grid, trained by clamped-minus-free moments.

    Args:
        n_data: D, number of data pixels (<= size*size); data node i sits at a spread-out grid position.
        config: hyper-parameters.
        quantiser: applied to couplings and biases before sampling (None = float).
        offset: per-cell p-bit logit offset [N] of the chip that runs the model (None = ideal).
        gain: per-cell p-bit logit gain [N] of that chip (None = ideal); see ``PBit.gibbs_nonideality``.
        chip_sampler: mismatch-aware training: called with a torch.Generator before every training step, returns
            a fresh chip's ``(offset, gain)`` [N] (e.g. drawn from the calibrated PBit distribution and mapped by
            ``PBit.gibbs_nonideality``); that chip runs both phases of the step. ``sample`` uses offset/gain.
        device: torch device for the samplers.
    """

    def __init__(
        self,
        n_data: int,
        config: DTMConfig | None = None,
        quantiser: Callable[[torch.Tensor], torch.Tensor] | None = None,
        offset: torch.Tensor | None = None,
        gain: torch.Tensor | None = None,
        chip_sampler: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.cfg = cfg = config or DTMConfig()
        self.chip_sampler = chip_sampler
        self.graph: SparseGraph = grid_graph(cfg.size, cfg.degree, cfg.pattern, periodic=cfg.periodic)
        n = self.graph.n_nodes
        if not 1 <= n_data <= n:
            raise ValueError(f"n_data: expected 1 <= D <= {n}, got {n_data}")
        if cfg.n_steps < 1 or cfg.sweeps < 1:
            raise ValueError(f"config: n_steps and sweeps must be >= 1, got {cfg.n_steps}, {cfg.sweeps}")
        self.flip_probs = cfg.resolved_flip_probs()
        self.n_data = n_data
        # spread data nodes over the grid: every k-th node in a row-major scan of a stride pattern
        self.data_nodes = np.sort(np.linspace(0, n - 1, n_data).round().astype(np.int64)) if n_data < n \
            else np.arange(n)
        if len(np.unique(self.data_nodes)) != n_data:
            raise ValueError(f"n_data: cannot place {n_data} distinct data nodes on {n} grid nodes")
        self.quantiser = quantiser or (lambda x: x)
        self.offset, self.gain = offset, gain
        self.device = torch.device(device)
        g = torch.Generator().manual_seed(cfg.seed)
        self.steps = [
            _StepParams(
                weights=cfg.init_scale * torch.randn(self.graph.n_edges, generator=g, dtype=torch.float64),
                biases=torch.zeros(n, dtype=torch.float64),
                gamma=torch.zeros(n_data, dtype=torch.float64),
                acp_lambda=cfg.acp_lambda,
            )
            for _ in range(cfg.n_steps)
        ]
        self._gen = make_generator(cfg.seed + 1, self.device)
        self._cpu_gen = torch.Generator().manual_seed(cfg.seed + 2)
        self._data_idx = torch.from_numpy(self.data_nodes)
        self._samplers: dict = {}

    # ---------------------------------------------------------------------------------------------- sampling
    def _build(self, p: _StepParams, chain_bias: torch.Tensor, clamp: bool,
               chip: tuple[torch.Tensor | None, torch.Tensor | None] | None = None) -> BlockGibbsSampler:
        """The BM of one step with (quantised) parameters ``p`` and per-chain conditioning bias [N, chains],
        run by ``chip`` = (offset, gain) (default: the model's own offset/gain). Samplers are cached per step
        and phase; only their parameters are refreshed."""
        chip = chip if chip is not None else (self.offset, self.gain)
        key = (id(p), clamp)
        smp = self._samplers.get(key)
        w, b = self.quantiser(p.weights), self.quantiser(p.biases)
        if smp is None:
            smp = BlockGibbsSampler(self.graph, w, b, self.cfg.beta, clamped=self.data_nodes if clamp else None,
                                    offset=chip[0], gain=chip[1], device=self.device)
            self._samplers[key] = smp
        smp.set_parameters(w, b, chain_bias=chain_bias, nonideality=chip)
        return smp

    def noised_pair(self, x0: torch.Tensor, t: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_{t-1}, x_t) [B, D] drawn from the forward process started at x0 [B, D]."""
        keep = 1.0
        for q in self.flip_probs[: t - 1]:
            keep *= 1.0 - 2.0 * q
        x_prev = forward_noise(x0, 0.5 * (1.0 - keep), generator)
        return x_prev, forward_noise(x_prev, self.flip_probs[t - 1], generator)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Generate ``n`` data vectors [n, D] in {-1, +1} by running the reverse chain t = T..1."""
        gen = generator or self._gen
        cpu_gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=self._cpu_gen)))
        x = torch.where(torch.rand((n, self.n_data), generator=cpu_gen) < 0.5, -1.0, 1.0).double()
        for t in range(self.cfg.n_steps, 0, -1):
            p = self.steps[t - 1]
            cb = torch.zeros((self.graph.n_nodes, n), dtype=torch.float64)
            cb[self._data_idx] = self.quantiser(p.gamma)[:, None] * x.T
            smp = self._build(p, cb, clamp=False)
            s = smp.run(smp.random_state(n, gen), self.cfg.sweeps, gen)
            x = s[self._data_idx].T.double().cpu()
        return x

    # ---------------------------------------------------------------------------------------------- training
    def train_step(self, x0: torch.Tensor) -> list[dict]:
        """One SGD update of every step's BM on a batch x0 [B, D] (±1); returns per-step diagnostics."""
        x0 = torch.as_tensor(x0, dtype=torch.float64)
        if x0.dim() != 2 or x0.shape[1] != self.n_data:
            raise ValueError(f"x0: expected [batch, {self.n_data}], got {tuple(x0.shape)}")
        if torch.any(x0.abs() != 1):
            raise ValueError("x0: expected entries in {-1, +1}")
        cfg, beta = self.cfg, self.cfg.beta
        ei = torch.from_numpy(self.graph.edges[:, 0])
        ej = torch.from_numpy(self.graph.edges[:, 1])
        out = []
        chip = self.chip_sampler(self._cpu_gen) if self.chip_sampler is not None else None
        for t in range(1, cfg.n_steps + 1):
            p = self.steps[t - 1]
            x_prev, x_t = self.noised_pair(x0, t, self._cpu_gen)
            bsz = x0.shape[0]
            # clamped phase: one chain per example, data nodes at x_{t-1}
            cb = torch.zeros((self.graph.n_nodes, bsz), dtype=torch.float64)
            cb[self._data_idx] = self.quantiser(p.gamma)[:, None] * x_t.T
            smp_c = self._build(p, cb, clamp=True, chip=chip)
            s0 = smp_c.random_state(bsz, self._gen, clamp_values=x_prev.T)
            mc = smp_c.moments(smp_c.run(s0, cfg.sweeps, self._gen), 1, self._gen, per_chain=True)
            # free phase: the same conditioning, data nodes free; started from the clamped phase's state
            smp_f = self._build(p, cb, clamp=False, chip=chip)
            start = mc.state
            mf = smp_f.moments(start, 1, self._gen, burn_in=cfg.sweeps - 1, per_chain=True)
            # lag-K autocorrelation of the free chain (start -> end), averaged over spins
            a, b = start.double().cpu(), mf.state.double().cpu()
            ca = a - a.mean(1, keepdim=True)
            cb_ = b - b.mean(1, keepdim=True)
            den = (ca.pow(2).mean(1) * cb_.pow(2).mean(1)).sqrt().clamp_min(1e-12)
            r = float(((ca * cb_).mean(1) / den).mean())
            # gradients of the conditional log-likelihood (clamped minus free)
            d_w = beta * (mc.edge_corr.mean(1) - mf.edge_corr.mean(1))
            d_b = beta * (mc.mean.mean(1) - mf.mean.mean(1))
            xt_d = x_t.T  # [D, B]
            d_g = beta * ((mc.mean[self._data_idx] - mf.mean[self._data_idx]) * xt_d).mean(1)
            # ACP: shrink couplings in proportion to the free phase's connected correlations
            m_f = mf.mean.mean(1)
            sisj = mf.edge_corr.mean(1)
            conn = sisj - m_f[ei] * m_f[ej]
            d_w = d_w - p.acp_lambda * beta * conn * (1.0 - sisj.pow(2))
            p.weights += cfg.lr * d_w
            p.biases += cfg.lr * d_b
            p.gamma += cfg.lr * d_g
            if cfg.acp_lambda > 0:
                p.acp_lambda = float(np.clip(p.acp_lambda * (cfg.acp_rate if r > cfg.acp_target else 1 / cfg.acp_rate),
                                             cfg.acp_min, cfg.acp_max))
            p.autocorr = r
            out.append({"t": t, "autocorr": r, "acp_lambda": p.acp_lambda,
                        "grad_norm": float(torch.cat([d_w, d_b, d_g]).norm())})
        return out

    def fit(self, data: torch.Tensor, n_iters: int, batch: int = 64, progress: bool = True) -> list[list[dict]]:
        """``n_iters`` SGD steps on minibatches drawn (seeded) from ``data`` [n, D]; tqdm progress on stderr."""
        if n_iters < 0 or batch < 1:
            raise ValueError(f"n_iters/batch: expected >= 0 / >= 1, got {n_iters}/{batch}")
        data = torch.as_tensor(data, dtype=torch.float64)
        log = []
        for _ in progress_iter(range(n_iters), desc="dtm", enabled=progress):
            idx = torch.randint(0, data.shape[0], (batch,), generator=self._cpu_gen)
            log.append(self.train_step(data[idx]))
        return log

    def load_state_dict(self, state: dict) -> None:
        """Restore the parameters saved by ``state_dict`` (the config must describe the same grid and T)."""
        steps = state.get("steps", [])
        if len(steps) != self.cfg.n_steps:
            raise ValueError(f"state: expected {self.cfg.n_steps} steps, got {len(steps)}")
        for p, d in zip(self.steps, steps):
            for name in ("weights", "biases", "gamma"):
                v = torch.as_tensor(d[name], dtype=torch.float64)
                if v.shape != getattr(p, name).shape:
                    raise ValueError(f"state: {name} has shape {tuple(v.shape)}, expected {tuple(getattr(p, name).shape)}")
                setattr(p, name, v.clone())
            p.acp_lambda = float(d["acp_lambda"])

    def state_dict(self) -> dict:
        """Parameters of every step (float master weights) and the config, for checkpoints."""
        return {"config": self.cfg.__dict__, "data_nodes": self.data_nodes.tolist(),
                "steps": [{"weights": p.weights.clone(), "biases": p.biases.clone(), "gamma": p.gamma.clone(),
                           "acp_lambda": p.acp_lambda} for p in self.steps]}

