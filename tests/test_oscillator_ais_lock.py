"""AIS lock penalty (``spicenet.cells.oscillator.ais.lock_penalty``) against Adler's law on a coupled pair, its
autograd gradient against finite differences, and its wiring into the training loop."""

from __future__ import annotations

import math

import pytest
import torch

from spicenet.cells.oscillator.ais import AISConfig, AISTrainer, lock_penalty
from spicenet.cells.oscillator.phase import ChipMismatch, PhaseModelParams, PhaseOscillatorNetwork

F0 = 1.0e9  # PhaseModelParams default: k_per_code = 5e12 rad/s/S * 2e-6 S = 1e7 rad/s
CODE = 5.0  # K = 5e7 rad/s per direction; the pair's difference psi = phi_0 - phi_1 obeys
K = 5.0e7   # dpsi/dt = dw - 2 K sin(psi): locked iff |dw| <= 2 K, else it beats at sqrt(dw^2 - (2K)^2) (Adler)


def pair_run(dw: float, window_s: float, n_window: int, code: torch.Tensor | float = CODE,
             settle_s: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Noise-free RK4 of the Kuramoto pair (ring 0 detuned by ``dw`` rad/s, ring 1 the reference) over
    ``settle_s`` then a window of ``window_s`` in ``n_window`` steps: returns (phi0, trajectory, dt)."""
    params = PhaseModelParams(f0_hz=F0, h_sin=(1.0,), h_cos=(0.0,))
    net = PhaseOscillatorNetwork(2, params, dtype=torch.float64)
    dt = window_s / n_window
    n_settle = int(math.ceil(settle_s / dt))
    c = torch.as_tensor(code, dtype=torch.float64)
    codes = torch.stack([torch.stack([c * 0, c]), torch.stack([c, c * 0])])
    chip = ChipMismatch(torch.tensor([dw / (2 * math.pi), 0.0], dtype=torch.float64),
                        torch.ones(2, 2, dtype=torch.float64))
    phi0 = torch.tensor([[0.3, 2.0]], dtype=torch.float64)
    out = net(phi0, dt * (n_settle + n_window), n_settle + n_window, codes, chip=chip, method="rk4",
              return_trajectory=True)
    return phi0, out.trajectory, out.dt


def adler_beat(dw: float) -> float:
    """Mean beat frequency [rad/s] of the unlocked pair, ``sqrt(dw^2 - (2K)^2)`` (Adler)."""
    return math.sqrt(dw ** 2 - (2 * K) ** 2)


@pytest.mark.parametrize("ratio", [1.2, 1.6, -1.3])
def test_unlocked_pair_penalty_is_adlers_beat_frequency(ratio: float):
    """A window of exactly 20 beat periods (psi advances by exactly 20 x 2 pi, whatever the start, since the
    unlocked flow on the circle has no transient) gives the penalty of Adler's mean beat frequency."""
    dw = ratio * 2 * K
    beat = adler_beat(dw)
    w = 4000
    phi0, traj, dt = pair_run(dw, 20 * 2 * math.pi / beat, w)
    expected = (beat / (2 * math.pi * F0)) ** 2
    got = float(lock_penalty(phi0, traj, w, dt, F0, reference_index=1))
    assert got == pytest.approx(expected, rel=1e-6)
    # without a reference the offset is taken to the rings' mean phase: each ring is off by half the beat
    got_mean = float(lock_penalty(phi0, traj, w, dt, F0, reference_index=None))
    assert got_mean == pytest.approx(expected / 4, rel=1e-6)


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.9, -0.9])
def test_locked_pair_penalty_vanishes(ratio: float):
    """|dw| <= 2K: after the lock transient (rate sqrt((2K)^2 - dw^2), 40 time constants) the pair runs at one
    frequency, at Adler's phase difference asin(dw / 2K), and the penalty is zero."""
    dw = ratio * 2 * K
    settle = 40 / math.sqrt((2 * K) ** 2 - dw ** 2)
    window = 10 * 2 * math.pi / (2 * K)
    phi0, traj, dt = pair_run(dw, window, 2000, settle_s=settle)
    scale = (0.1 * 2 * K / (2 * math.pi * F0)) ** 2  # the penalty of a beat at 10 % of 2K
    assert float(lock_penalty(phi0, traj, 2000, dt, F0, reference_index=1)) < 1e-12 * scale
    psi = traj[0, -1, 0] - traj[0, -1, 1]
    assert float(torch.remainder(psi - math.asin(dw / (2 * K)) + math.pi, 2 * math.pi) - math.pi) == \
        pytest.approx(0.0, abs=1e-9)


def test_penalty_gradient_matches_finite_differences():
    """d P / d code through the ODE (autograd) equals a central difference of the same simulation."""
    dw = 1.3 * 2 * K

    def pen(code: torch.Tensor) -> torch.Tensor:
        phi0, traj, dt = pair_run(dw, 3 * 2 * math.pi / adler_beat(dw), 300, code=code)
        return lock_penalty(phi0, traj, 150, dt, F0, reference_index=1)  # 1.5 beats: the start matters

    c = torch.tensor(CODE, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(pen(c), c)
    h = 1e-4
    fd = (pen(torch.tensor(CODE + h, dtype=torch.float64)) - pen(torch.tensor(CODE - h, dtype=torch.float64))) / (2 * h)
    assert float(grad) == pytest.approx(float(fd), rel=1e-5)
    assert abs(float(grad)) > 0


def test_lock_penalty_rejects_bad_shapes_and_windows():
    phi0, traj = torch.zeros(2, 3), torch.zeros(2, 5, 3)
    with pytest.raises(ValueError, match="window_steps"):
        lock_penalty(phi0, traj, 6, 1e-9, F0, 2)
    with pytest.raises(ValueError, match="trajectory"):
        lock_penalty(torch.zeros(2, 4), traj, 1, 1e-9, F0, 2)
    with pytest.raises(ValueError, match="lock_periods"):
        AISConfig(periods=10.0, lock_periods=11.0)


def test_trainer_adds_the_weighted_penalty_of_its_own_trajectory():
    """Two trainers of the same seed, lock_weight 0 and 500: the first iteration's critic step is the same, so
    their generator losses differ by exactly weight x P, and P is the penalty recomputed here from the generator
    step's own simulation (its latents and phase noise replayed from a copy of the latent stream)."""
    torch.set_num_threads(1)
    data = (torch.rand(64, 3, 3, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    params = PhaseModelParams(phase_diffusion=1e5)
    base = dict(height=3, width=3, n_hidden=1, n_segments=2, periods=20.0, n_steps=20, batch_size=8, n_critic=1,
                iterations=1, seed=3, shil_max=1e7)
    off = AISTrainer(data, AISConfig(**base), params)
    on = AISTrainer(data, AISConfig(**base, lock_weight=500.0, lock_periods=5.0), params)
    assert on.config.lock_window_steps == 5 and AISConfig(**base).lock_window_steps == 10  # last segment
    latent = torch.Generator()
    latent.set_state(on.generators["latent"].get_state())
    gen = on.gen
    with torch.no_grad():
        gen(gen.sample_latent(base["batch_size"] * base["n_critic"], latent), None, latent)  # the critic's fakes
        phi0 = gen.sample_latent(base["batch_size"], latent)
        out = gen.run(phi0, None, latent, return_trajectory=True)
        expected = float(lock_penalty(phi0, out.trajectory, 5, out.dt, params.f0_hz, gen.reference_index))
    row_off, row_on = off.step(), on.step()
    assert row_off["lock_penalty"] == 0.0
    assert row_on["lock_penalty"] == pytest.approx(expected, rel=1e-6) and expected > 1e-6
    assert row_on["loss_critic"] == row_off["loss_critic"]
    assert row_on["loss_generator"] - row_off["loss_generator"] == pytest.approx(500.0 * expected, rel=1e-4)
