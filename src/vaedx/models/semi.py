"""Semi-supervised VAE "M2" (Kingma, Rezende, Mohamed & Welling 2014), built on the ConvVAE blocks.

Generative model p(x | y, z) p(z) p(y) with a uniform p(y); inference q(y | x) (a classifier head) and
q(z | x, y). The conv encoder trunk is shared by both heads, so unlabelled images shape the features the
classifier uses - the point of semi-supervision. Per image, with L(x, y) = -ELBO(x, y) = recon NLL + KL
+ log K (the last term is -log p(y)):

* labelled:   L(x, y) + alpha * CE(q(y|x), y)
* unlabelled: U(x) = sum_y q(y|x) L(x, y) - H(q(y|x))

The paper's objective is sum_l L + sum_u U + alpha' * mean_l CE with alpha' = 0.1 * N, i.e. per labelled
image L + alpha * CE with alpha = 0.1 * N / N_l - the default here. Every step uses a mixed batch and
minimises mean_l [L + alpha * CE] + mean_u U. Weighting the two batch means equally (the paper's sum
weights them N_l : N_u) upweights the few labelled images, as common implementations of M2 do; with the
sum, 1 % labels left q(y|x) almost no supervised signal and it collapsed onto one class in our tests.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from vaedx.errors import ConfigError
from vaedx.models.base import ModelOutput
from vaedx.models.config import ModelConfig
from vaedx.models.vae import ConvVAE


class SemiConfig(BaseModel):
    """Architecture of an M2 model plus the classes its outputs stand for (store label codes)."""

    model_config = ConfigDict(extra="forbid")

    model: ModelConfig
    classes: list[int] = Field(min_length=2)
    label_names: list[str]
    alpha: float = Field(ge=0, description="Weight of the classification loss per labelled image.")
    classifier_hidden: int = Field(default=64, ge=1)


class SemiVAE(ConvVAE):
    """ConvVAE whose latent heads also see a one-hot class, plus a classifier head q(y|x)."""

    def __init__(self, cfg: ModelConfig, n_classes: int, hidden: int = 64):
        if n_classes < 2:
            raise ConfigError(f"M2 needs at least 2 classes, got {n_classes}")
        super().__init__(cfg)
        flat, d = math.prod(self._bottleneck), cfg.latent_dim
        self.n_classes = n_classes
        self.classifier = nn.Sequential(nn.Linear(flat, hidden), nn.SiLU(), nn.Linear(hidden, n_classes))
        self.to_latent = nn.Linear(flat + n_classes, 2 * d)  # q(z | x, y)
        self.from_latent = nn.Linear(d + n_classes, flat)  # p(x | y, z)

    # -- inference --------------------------------------------------------------------------------------
    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.encoder(F.pad(x, self._pad) if any(self._pad) else x).flatten(1)

    def class_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(y | x)."""
        return self.classifier(self.trunk(x))

    def _onehot(self, y: torch.Tensor) -> torch.Tensor:
        return F.one_hot(y.long(), self.n_classes).float() if y.dim() == 1 else y.float()

    def _posterior(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_latent(torch.cat([h, y], dim=1)).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x, y); without ``y`` it conditions on q(y | x) (soft), so M2 fits the ReconstructionModel
        interface and its posterior can feed the latent classifiers like any VAE's."""
        h = self.trunk(x)
        return self._posterior(h, self._onehot(y) if y is not None else self.classifier(h).softmax(1))

    # -- generation -------------------------------------------------------------------------------------
    def decode_raw(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder output for latent z and class y (one-hot or index; None = uniform over classes)."""
        if y is None:
            y = z.new_full((z.shape[0], self.n_classes), 1.0 / self.n_classes)
        h = F.silu(self.from_latent(torch.cat([z, self._onehot(y).to(z)], dim=1))).view(-1, *self._bottleneck)
        return self._crop(self.decoder(h))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self._activate(self.decode_raw(z, y))

    def _output(self, h: torch.Tensor, y: torch.Tensor) -> ModelOutput:
        mu, logvar = self._posterior(h, y)
        z = self._latent(mu, logvar)
        raw = self.decode_raw(z, y)
        logits = raw if self.cfg.likelihood == "bernoulli" else None
        return ModelOutput(self._activate(raw), z, mu, logvar, self.recon_logscale(), logits)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> ModelOutput:
        h = self.trunk(x)
        return self._output(h, self._onehot(y) if y is not None else self.classifier(h).softmax(1))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        q = self.classifier(h).softmax(1)
        return self.decode(self._posterior(h, q)[0], q)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y: int | None = None) -> torch.Tensor:
        """n images from z ~ N(0, I) and class ``y`` (None: classes drawn uniformly)."""
        dev = self.from_latent.weight
        z = torch.randn(n, self.latent_dim, generator=generator).to(dev)
        ys = (
            torch.full((n,), y) if y is not None else torch.randint(self.n_classes, (n,), generator=generator)
        )
        return self.decode(z, ys.to(dev.device))

    # -- objective --------------------------------------------------------------------------------------
    def _neg_elbo(self, x: torch.Tensor, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """L(x, y) per image: recon NLL + KL(q(z|x,y) || N(0, I)) - log p(y)."""
        return self.elbo_terms(x, self._output(h, y))["neg_elbo"] + math.log(self.n_classes)

    def loss(
        self,
        x_l: torch.Tensor | None,
        y_l: torch.Tensor | None,
        x_u: torch.Tensor | None,
        *,
        alpha: float,
        w_l: float = 1.0,
        w_u: float = 1.0,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """(w_l * mean_l [L + alpha CE] + w_u * mean_u U, logged parts); y_l are class indices 0..K-1."""
        total, logs = torch.zeros(()), {}
        if x_l is not None and y_l is not None and len(x_l):
            h = self.trunk(x_l)
            ce = F.cross_entropy(self.classifier(h), y_l.long(), reduction="none")
            nelbo = self._neg_elbo(x_l, h, self._onehot(y_l))
            total = total.to(h) + w_l * (nelbo + alpha * ce).mean()
            logs |= {"labelled_nelbo": float(nelbo.detach().mean()), "ce": float(ce.detach().mean())}
        if x_u is not None and len(x_u):
            h, k, b = self.trunk(x_u), self.n_classes, len(x_u)
            logq = self.classifier(h).log_softmax(1)
            ys = torch.arange(k, device=h.device).repeat_interleave(b)  # class-major copies of the batch
            nelbo = self._neg_elbo(x_u.repeat(k, 1, 1, 1), h.repeat(k, 1), self._onehot(ys)).view(k, b).T
            u = (logq.exp() * (nelbo + logq)).sum(1)  # sum_y q L - H(q)
            total = total.to(h) + w_u * u.mean()
            logs |= {"unlabelled": float(u.detach().mean())}
        return total, {"loss": float(total.detach()), **logs}

    @torch.no_grad()
    def predict_proba(self, images: Any, batch_size: int = 256) -> np.ndarray:
        """(N, K) q(y | x) in eval mode, reading ``images`` in chunks."""
        was, dev = self.training, self.from_latent.weight
        self.eval()
        try:
            out = []
            for s in range(0, len(images), batch_size):
                xb = torch.from_numpy(np.array(images[s : s + batch_size], dtype=np.float32))
                out.append(self.class_logits(xb.to(dev)).softmax(1).double().cpu().numpy())
        finally:
            self.train(was)
        return np.concatenate(out)


# ------------------------------------------------------------------------------------------- persistence
