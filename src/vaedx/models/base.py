"""The interface every reconstruction model in vaedx offers (VAE, AE, and - outside torch - PCA).

Later stages (anomaly scorers, diagnosis, report, serve, export) are written against this interface only,
so a baseline can be dropped in wherever a VAE is used and compared in the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch


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
