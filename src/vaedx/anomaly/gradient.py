"""Gradient scorers: which pixels would have to change to make the image more probable (needs a VAE)."""

from __future__ import annotations

from typing import Any

import torch

from vaedx.anomaly.base import BaseScorer, _Batch, _neg_elbo, _require_vae
from vaedx.errors import ConfigError


class GradientScorer(BaseScorer):
    """|d(-ELBO)/dx| ("elbo"), |dKL/dx| ("kl") or |x - x_hat| * |dKL/dx| ("combi", Zimmerer et al. 2019).

    The gradient says which pixels would have to change to make the image more probable under the healthy
    model. The posterior mean is used (eval mode), so maps are deterministic.
    """

    name = "grad_elbo"
    needs_grad = True
    _NAMES = {"elbo": "grad_elbo", "kl": "grad_kl", "combi": "combi"}

    def __init__(self, model: Any, target: str = "elbo", **opts: Any) -> None:
        if target not in self._NAMES:
            raise ConfigError(f"target must be one of {', '.join(self._NAMES)}, got '{target}'")
        _require_vae(model, self._NAMES[target])
        super().__init__(model, **opts)
        self.target, self.name = target, self._NAMES[target]

    def _score_batch(self, x: torch.Tensor, generator: torch.Generator) -> _Batch:
        x = x.detach().clone().requires_grad_(True)
        neg_elbo, terms, out = _neg_elbo(self.model, x)
        objective = neg_elbo if self.target == "elbo" else terms["kl"]
        (grad,) = torch.autograd.grad(objective.sum(), x)  # images are independent in eval mode
        g = grad.abs()
        if self.target == "combi":
            g = (x - out.x_hat).abs().detach() * g
        return _Batch(self._reduce(g).detach(), extra=self._recon_extra(out.x_hat.detach()))


