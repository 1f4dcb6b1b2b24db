"""Convolutional VAE and its deterministic twin (AE), sharing one encoder/decoder.

Design choices and why:

* Inputs of any size (28x28, 100x120, 256x256) are zero-padded symmetrically to a multiple of 2**depth and
  the output is cropped back, so users never have to resize to a power of two.
* In eval mode the VAE uses the posterior *mean* (decode(mu)); sampling at eval time (as MONAI's
  VarAutoEncoder does, bug #8413) makes anomaly scores random from one call to the next.
* ``elbo_terms`` returns per-image terms (NLL summed over pixels, KL summed over latent dimensions), so
  anomaly scorers can rank single images by them and beta=1 is the true ELBO.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vaedx.errors import ModelMismatchError
from vaedx.models.base import LatentAutoencoder, ModelOutput
from vaedx.models.config import ModelConfig

MIN_LOG_SIGMA = math.log(1e-3)  # below ~1/255 a learned sigma only chases quantisation noise
_LOG_2PI = math.log(2 * math.pi)


def make_norm(kind: str, ch: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "group":
        return nn.GroupNorm(math.gcd(ch, 8), ch)
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=True)
    return nn.Identity()


class ResBlock(nn.Module):
    """Pre-activation residual block (norm-act-conv twice) at constant width."""

    def __init__(self, ch: int, norm: str):
        super().__init__()
        self.body = nn.Sequential(
            make_norm(norm, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
            make_norm(norm, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _level(cin: int, cout: int, cfg: ModelConfig, up: bool) -> nn.Sequential:
    conv = nn.ConvTranspose2d(cin, cout, 4, 2, 1) if up else nn.Conv2d(cin, cout, 4, 2, 1)
    blocks = [ResBlock(cout, cfg.norm) for _ in range(cfg.residual)]
    return nn.Sequential(conv, make_norm(cfg.norm, cout), nn.SiLU(), *blocks)


def padded_size(size: tuple[int, int], depth: int) -> tuple[int, int]:
    m = 2**depth
    return (-(-size[0] // m) * m, -(-size[1] // m) * m)


class _ConvAutoencoder(LatentAutoencoder):
    """Shared encoder/decoder; subclasses decide whether the latent is stochastic (``stochastic``: the
    encoder gives a logvar, which :meth:`LatentAutoencoder._latent` samples with in train mode)."""

    stochastic = False

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c, h, w = cfg.require_shape()
        self.cfg = cfg
        self.latent_dim = cfg.latent_dim
        self.image_shape = (c, h, w)
        ph, pw = padded_size((h, w), cfg.depth)
        self._pad = ((pw - w) // 2, pw - w - (pw - w) // 2, (ph - h) // 2, ph - h - (ph - h) // 2)
        self._bottleneck = (cfg.widths[-1], ph // 2**cfg.depth, pw // 2**cfg.depth)
        flat = math.prod(self._bottleneck)
        ws = cfg.widths
        self.encoder = nn.Sequential(
            nn.Conv2d(c, ws[0], 3, padding=1), make_norm(cfg.norm, ws[0]), nn.SiLU(),
            *[_level(a, b, cfg, up=False) for a, b in zip([ws[0], *ws[:-1]], ws, strict=True)],
        )  # fmt: skip
        self.to_latent = nn.Linear(flat, cfg.latent_dim * (2 if self.stochastic else 1))
        self.from_latent = nn.Linear(cfg.latent_dim, flat)
        rev = ws[::-1]
        self.decoder = nn.Sequential(
            *[_level(a, b, cfg, up=True) for a, b in zip(rev, [*rev[1:], ws[0]], strict=True)],
            nn.Conv2d(ws[0], c, 3, padding=1),
        )
        self.log_sigma: nn.Parameter | None = None
        if cfg.likelihood == "gaussian_learned":
            shape = (1,) if cfg.learned_sigma == "global" else (c, h, w)
            self.log_sigma = nn.Parameter(torch.full(shape, math.log(cfg.sigma)))

    # -- shape handling ---------------------------------------------------------------------------------
    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ModelMismatchError(
                f"model expects (N, {', '.join(map(str, self.image_shape))}) inputs, got {tuple(x.shape)}"
            )

    def _crop(self, y: torch.Tensor) -> torch.Tensor:
        left, _, top, _ = self._pad
        _, h, w = self.image_shape
        return y[..., top : top + h, left : left + w]

    # -- encoder / decoder ------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mu, logvar) of q(z|x); logvar is None for the AE."""
        self._check(x)
        h = self.encoder(F.pad(x, self._pad) if any(self._pad) else x)
        out = self.to_latent(h.flatten(1))
        if not self.stochastic:
            return out, None
        mu, logvar = out.chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder output before its final activation (logits for Bernoulli), cropped to the image size."""
        h = F.silu(self.from_latent(z)).view(-1, *self._bottleneck)
        return self._crop(self.decoder(h))

    def recon_logscale(self) -> torch.Tensor | None:
        """Learned log-sigma, floored at log(1e-3) so an all-black background cannot drive the NLL to -inf."""
        return None if self.log_sigma is None else self.log_sigma.clamp_min(MIN_LOG_SIGMA)

    # -- likelihood -------------------------------------------------------------------------------------
    def pixel_nll(self, x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
        """-log p(x|z) per pixel and channel (N, C, H, W), in float32 even under autocast."""
        x = x.float()
        kind, sigma = self.cfg.likelihood, self.cfg.sigma
        if kind == "bernoulli":
            logits = out.logits if out.logits is not None else torch.logit(out.x_hat.float(), eps=1e-6)
            return F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none")
        x_hat = out.x_hat.float()
        if kind == "laplace":
            return (x - x_hat).abs() / sigma + math.log(2 * sigma)
        if kind == "gaussian_learned":
            ls = out.recon_logscale if out.recon_logscale is not None else self.recon_logscale()
            ls = ls.float()  # type: ignore[union-attr]
            return 0.5 * ((x - x_hat) * torch.exp(-ls)) ** 2 + ls + 0.5 * _LOG_2PI
        return 0.5 * ((x - x_hat) / sigma) ** 2 + math.log(sigma) + 0.5 * _LOG_2PI

    def elbo_terms(self, x: torch.Tensor, out: ModelOutput) -> dict[str, torch.Tensor]:
        """Per-image terms, each (N,): recon_nll (sum over pixels), kl (sum over latent dims), neg_elbo, mse.

        ``kl_per_dim`` (N, latent_dim) is included for free bits and for latent-usage diagnostics.
        """
        recon = self.pixel_nll(x, out).flatten(1).sum(1)
        if out.logvar is None:
            kl_dim = torch.zeros(out.mu.shape, device=out.mu.device, dtype=torch.float32)
        else:
            mu, lv = out.mu.float(), out.logvar.float()
            kl_dim = 0.5 * (mu**2 + lv.exp() - 1.0 - lv)
        kl = kl_dim.sum(1)
        mse = (x.float() - out.x_hat.float()).pow(2).flatten(1).mean(1)
        return {"recon_nll": recon, "kl": kl, "kl_per_dim": kl_dim, "neg_elbo": recon + kl, "mse": mse}


class ConvVAE(_ConvAutoencoder):
    """Gaussian-posterior VAE: samples z in training, uses the posterior mean in eval mode."""

    stochastic = True

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images decoded from z ~ N(0, I) (drawn on the generator's device, then moved)."""
        dev = generator.device if generator is not None else self.from_latent.weight.device
        z = torch.randn(n, self.latent_dim, generator=generator, device=dev)
        return self.decode(z.to(self.from_latent.weight))


class ConvAE(_ConvAutoencoder):
    """Deterministic autoencoder with the VAE's architecture: the baseline a VAE must beat."""

    stochastic = False
