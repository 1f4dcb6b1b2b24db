"""The interface every reconstruction model in vaedx offers (VAE, AE, and - outside torch - PCA).

Later stages (anomaly scorers, diagnosis, report, serve, export) are written against this interface only,
so a baseline can be dropped in wherever a VAE is used and compared in the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from vaedx.models.config import ModelConfig


@dataclass
class ModelOutput:
    """x_hat: reconstruction in data space (mean of the decoder likelihood).

    mu/logvar: the posterior q(z|x); logvar is None for a deterministic AE.
    """

    x_hat: torch.Tensor
    z: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor | None
    recon_logscale: torch.Tensor | None = None  # learned Gaussian log-sigma, when the likelihood has one
    logits: torch.Tensor | None = None  # decoder output before its final activation (Bernoulli logits)


@runtime_checkable
class ReconstructionModel(Protocol):
    latent_dim: int

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mu, logvar) of q(z|x); logvar is None for deterministic models."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean image for latent z, in data space."""

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """decode(mu): the deterministic reconstruction used for scoring."""


class LatentAutoencoder(nn.Module):
    """``forward``, ``reconstruct`` and ``interpolate`` for every torch model: ConvVAE/ConvAE and each
    :class:`vaedx.models.adapter.NetworkAdapter`.

    One copy, so the ELBO, the scorers and the protocol check see the same ModelOutput from a ConvVAE and
    from a wrapped MONAI network. A subclass supplies ``encode``, ``decode_raw`` (cropped, before the final
    activation) and ``recon_logscale``; only the latent step (:meth:`_latent`) is meant to be overridden.
    """

    cfg: ModelConfig
    image_shape: tuple[int, int, int]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def recon_logscale(self) -> torch.Tensor | None:
        raise NotImplementedError

    def _activate(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(raw) if self.cfg.likelihood == "bernoulli" else raw

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean image for latent z, in data space (sigmoid of the logits for Bernoulli)."""
        return self._activate(self.decode_raw(z))

    def _latent(self, mu: torch.Tensor, logvar: torch.Tensor | None) -> torch.Tensor:
        """z for the decoder: a draw from q(z|x) in train mode, the posterior mean otherwise.

        Eval mode must decode mu (MONAI's VarAutoEncoder samples there, issue 8413), or anomaly scores
        change from one call to the next; a deterministic model (logvar None) always decodes mu.
        """
        if not self.training or logvar is None:
            return mu
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        mu, logvar = self.encode(x)
        z = self._latent(mu, logvar)
        raw = self.decode_raw(z)
        return ModelOutput(
            x_hat=self._activate(raw),
            z=z,
            mu=mu,
            logvar=logvar,
            recon_logscale=self.recon_logscale(),
            logits=raw if self.cfg.likelihood == "bernoulli" else None,
        )

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """decode(mu): deterministic in every mode, which is what scoring needs."""
        return self.decode(self.encode(x)[0])

    @torch.no_grad()
    def interpolate(self, x1: torch.Tensor, x2: torch.Tensor, steps: int = 8) -> torch.Tensor:
        """Decode ``steps`` points between the posterior means of two images -> (steps, C, H, W)."""
        x = torch.stack([x1.reshape(self.image_shape), x2.reshape(self.image_shape)])
        mu = self.encode(x.to(next(self.parameters())))[0]
        a = torch.linspace(0, 1, steps, device=mu.device, dtype=mu.dtype)[:, None]
        return self.decode((1 - a) * mu[0] + a * mu[1])
