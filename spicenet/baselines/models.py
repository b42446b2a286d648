"""The digital baselines: a small DCGAN-style generator / discriminator and a VAE, sized to an analog generator.

All images are S x S (S in 8, 14, 28) with one channel; h = S / 2. The *generator* (also the VAE's decoder) maps a
latent z ~ N(0, I_z) to per-pixel probabilities p in (0, 1):

    z --Linear(z, w h^2)--> BN --ReLU--> reshape (w, h, h) --ConvT(w, w, 4, stride 2, pad 1)--> (w, S, S)
      --BN--ReLU--> Conv(w, 1, 3, pad 1) --> logits --sigmoid--> p

(the VAE's decoder has no batch norm: normalising over the batch lets it amplify a latent the encoder has
collapsed to the prior, and it would decode the posterior mean with other statistics than it trained with).

(DCGAN, Radford et al. 2016: strided transposed convolutions, batch norm, ReLU, no pooling). A sample is p itself
for grey-level data and a Bernoulli draw from p for binarized data (a binary image, like a DTM sample).

The *discriminator* mirrors it: Conv(1, w, 4, 2, 1) --LeakyReLU 0.2--> Conv(w, 2w, 3, 1, 1) --LeakyReLU-->
Linear(2w h^2, 1) (a logit). The VAE's *encoder*: Conv(1, w, 4, 2, 1) --LeakyReLU--> Linear(w h^2, 2 z) (mean and
log-variance of q(z|x)). Both are training-time machinery: what generates an image at run time is the generator
alone, and its parameter count is the one set beside the analog generator's (the AIS critic is likewise digital
and training-only).

``width`` w is the one size knob; :func:`matched_width` picks the w whose generator parameter count is closest to
a target (the analog generator's count, :mod:`spicenet.baselines.reference`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SIZES", "Generator", "Discriminator", "Encoder", "VAE", "n_params", "matched_width"]

SIZES = (8, 14, 28)


def _check(size: int, width: int, z_dim: int) -> None:
    if size not in SIZES:
        raise ValueError(f"size: expected one of {SIZES}, got {size!r}")
    if width < 1 or z_dim < 1:
        raise ValueError(f"width and z_dim must be >= 1, got {width}, {z_dim}")


def n_params(module: nn.Module) -> int:
    """Number of trainable scalars of ``module`` (batch-norm running statistics are buffers, not counted)."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


class Generator(nn.Module):
    """DCGAN-style generator z [B, z_dim] -> pixel logits [B, S*S] (see the module docstring)."""

    def __init__(self, size: int, width: int, z_dim: int = 16, batch_norm: bool = True) -> None:
        super().__init__()
        _check(size, width, z_dim)
        self.size, self.width, self.z_dim, self.h = size, width, z_dim, size // 2
        d = width * self.h * self.h
        norm1: nn.Module = nn.BatchNorm1d(d) if batch_norm else nn.Identity()
        norm2: nn.Module = nn.BatchNorm2d(width) if batch_norm else nn.Identity()
        self.net = nn.Sequential(
            nn.Linear(z_dim, d), norm1, nn.ReLU(), nn.Unflatten(1, (width, self.h, self.h)),
            nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), norm2, nn.ReLU(),
            nn.Conv2d(width, 1, 3, padding=1), nn.Flatten(),
        )

    def forward(self, z: Tensor) -> Tensor:
        """Pixel logits [B, S*S] (p = sigmoid(logits))."""
        return self.net(z)

    def latent(self, n: int, generator: torch.Generator) -> Tensor:
        """n latents z ~ N(0, I) from ``generator``."""
        return torch.randn(n, self.z_dim, generator=generator)


class Discriminator(nn.Module):
    """DCGAN-style discriminator images [B, S*S] in [0, 1] -> logit [B] (real > 0)."""

    def __init__(self, size: int, width: int) -> None:
        super().__init__()
        _check(size, width, 1)
        h = size // 2
        self.net = nn.Sequential(
            nn.Unflatten(1, (1, size, size)),
            nn.Conv2d(1, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * width * h * h, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1)


class Encoder(nn.Module):
    """VAE encoder images [B, S*S] in [0, 1] -> (mean, log-variance) of q(z|x), each [B, z_dim]."""

    def __init__(self, size: int, width: int, z_dim: int = 16) -> None:
        super().__init__()
        _check(size, width, z_dim)
        h = size // 2
        self.z_dim = z_dim
        self.net = nn.Sequential(
            nn.Unflatten(1, (1, size, size)),
            nn.Conv2d(1, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(width * h * h, 2 * z_dim),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(x)
        return out[:, : self.z_dim], out[:, self.z_dim:]


class VAE(nn.Module):
    """Variational auto-encoder (Kingma & Welling 2014) with a Bernoulli likelihood p(x|z) = prod_i p_i^x_i
    (1 - p_i)^(1 - x_i), p = sigmoid(decoder(z)), prior N(0, I), q(z|x) = N(mu, diag exp(logvar)).

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || N(0, I)),  KL = 1/2 sum_j (mu_j^2 + exp(lv_j) - 1 - lv_j)   [nats]

    For grey-level x in [0, 1] the same cross-entropy is used (the common choice for MNIST); it is not a normalised
    density of continuous x, so that ELBO is a training objective, not a bound on log p(x)."""

    def __init__(self, size: int, width: int, z_dim: int = 16) -> None:
        super().__init__()
        self.encoder = Encoder(size, width, z_dim)
        self.decoder = Generator(size, width, z_dim, batch_norm=False)
        self.z_dim = z_dim

    def elbo(self, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """Per-image (ELBO, reconstruction log-likelihood, KL) [B] in nats, one reparameterised z per image."""
        mu, lv = self.encoder(x)
        eps = torch.randn(mu.shape, generator=generator)
        logits = self.decoder(mu + torch.exp(0.5 * lv) * eps)
        rec = -nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
        kl = 0.5 * (mu.pow(2) + lv.exp() - 1.0 - lv).sum(1)
        return rec - kl, rec, kl

    def reconstruct(self, x: Tensor) -> Tensor:
        """Pixel probabilities of the decoder at the posterior mean [B, S*S]."""
        return torch.sigmoid(self.decoder(self.encoder(x)[0]))


def matched_width(size: int, target: int, z_dim: int = 16, max_width: int = 256, batch_norm: bool = True) -> int:
    """The width w in [1, max_width] whose :class:`Generator` (``batch_norm`` as given) parameter count is closest
    to ``target`` (ties: the smaller w)."""
    if target < 1:
        raise ValueError(f"target: expected a parameter count >= 1, got {target}")
    best, best_err = 1, None
    for w in range(1, max_width + 1):
        err = abs(n_params(Generator(size, w, z_dim, batch_norm)) - target)
        if best_err is None or err < best_err:
            best, best_err = w, err
        elif err > best_err:  # the count grows monotonically with w
            break
    return best
