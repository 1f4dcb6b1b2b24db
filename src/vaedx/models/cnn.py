"""Supervised CNN: the VAE's encoder architecture plus a linear class head.

The encoder is built by the same code as ConvVAE's (a ConvAE's encoder and latent projection), so a
baseline trained on labels only differs from the VAE-based methods in its training signal, and a trained
VAE's encoder can start it (:meth:`SupervisedCNN.load_vae_encoder`) for fine-tuning.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vaedx.errors import ConfigError
from vaedx.models.config import ModelConfig
from vaedx.models.fastconv import FAST_ARCH, FastConvAE
from vaedx.models.vae import ConvAE

#: The architectures whose encoder the CNN can be built from (and a VAE of which it can be started from).
CNN_ARCHS = ("conv", FAST_ARCH)


class SupervisedCNN(nn.Module):
    """ConvAE encoder (conv trunk + projection to latent_dim) followed by a linear class head."""

    def __init__(self, cfg: ModelConfig, n_classes: int):
        super().__init__()
        arch = cfg.network()
        if arch not in CNN_ARCHS:
            raise ConfigError(
                f"the supervised CNN and encoder fine-tuning need a {' or '.join(CNN_ARCHS)} network; this "
                f"run's arch is {arch} (its latents still work with diagnose fit)"
            )
        # borrow the encoder of the matching autoencoder; its decoder is dropped with ``ae``
        ae = FastConvAE(cfg) if arch == FAST_ARCH else ConvAE(cfg)
        self.encoder, self.to_latent, self._pad, self._check = ae.encoder, ae.to_latent, ae._pad, ae._check
        self.head = nn.Linear(cfg.latent_dim, n_classes)
        self.cfg, self.n_classes = cfg, n_classes

    def load_vae_encoder(self, vae: nn.Module) -> None:
        """Copy a ConvVAE's encoder and the posterior-mean rows of its latent projection."""
        self.encoder.load_state_dict(vae.encoder.state_dict())
        d = self.cfg.latent_dim
        with torch.no_grad():
            self.to_latent.weight.copy_(vae.to_latent.weight[:d])
            self.to_latent.bias.copy_(vae.to_latent.bias[:d])

    def encoder_into(self, vae_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The inverse of :meth:`load_vae_encoder`: a ConvVAE state dict with this network's encoder and
        posterior-mean projection written in (decoder and log-variance rows left as they were)."""
        out = {k: v.detach().cpu().clone() for k, v in vae_state.items()}
        for k, v in self.encoder.state_dict().items():
            out[f"encoder.{k}"] = v.detach().cpu().clone()
        d = self.cfg.latent_dim
        out["to_latent.weight"][:d] = self.to_latent.weight.detach().cpu()
        out["to_latent.bias"][:d] = self.to_latent.bias.detach().cpu()
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        h = self.encoder(F.pad(x, self._pad) if any(self._pad) else x)
        return self.head(self.to_latent(h.flatten(1)))

    @torch.no_grad()
    def predict_proba(self, images: Any, batch_size: int = 256) -> np.ndarray:
        was, dev = self.training, self.head.weight.device
        self.eval()
        try:
            out = []
            for s in range(0, len(images), batch_size):
                xb = torch.from_numpy(np.array(images[s : s + batch_size], dtype=np.float32))
                out.append(self(xb.to(dev)).softmax(1).double().cpu().numpy())
        finally:
            self.train(was)
        return np.concatenate(out)
