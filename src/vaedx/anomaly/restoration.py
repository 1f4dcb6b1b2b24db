"""MAP restoration scorer: iteratively restore the image towards the healthy prior (needs a VAE)."""

from __future__ import annotations

import math
from typing import Any

import torch

from vaedx.anomaly.base import BaseScorer, _Batch, _neg_elbo, _require_vae
from vaedx.errors import ConfigError


class RestorationScorer(BaseScorer):
    """MAP restoration (Chen, You, Tezcan, Konukoglu 2020): starting at x_r = x, minimise
    -ELBO(x_r) + lam * D(x_r - x) over x_r by Adam steps with the model frozen; map = |x - x_r|.

    The healthy prior pulls lesions towards normal tissue while the data term D ("tv": total variation of the
    change, as in the paper; "l1": its L1 norm) keeps healthy pixels where they are. Adam makes ``lr`` a step
    in intensity units whatever the likelihood's scale; its first steps can overshoot on already-healthy
    images, so each image keeps its lowest-objective iterate (never worse than x itself). ``lam`` trades
    against the NLL's pixel weight (1/sigma^2 for a Gaussian), so tune it per model on healthy validation
    images, as the paper does; TV leaves a global intensity shift free, L1 does not. ``signed=True`` keeps
    only x - x_r > 0 (what the restoration had to darken), as ``residual_signed`` does for hyper-intense
    lesions. ``extra``: restored
    images (N,C,H,W), the objective per step (N, steps + 1) and the best objective reached (N,).
    """

    name = "restoration"
    needs_grad = True

    def __init__(
        self,
        model: Any,
        steps: int = 100,
        lr: float = 5e-3,
        lam: float = 1.0,
        data_term: str = "tv",
        signed: bool = False,
        **opts: Any,
    ) -> None:
        _require_vae(model, "restoration")
        super().__init__(model, **opts)
        if steps < 1:
            raise ConfigError(f"steps must be >= 1, got {steps}")
        if data_term not in ("tv", "l1"):
            raise ConfigError(f"data_term must be 'tv' or 'l1', got '{data_term}'")
        self.steps, self.lr, self.lam, self.data_term = steps, lr, lam, data_term
        self.signed = signed

    def _data_term(self, d: torch.Tensor) -> torch.Tensor:
        if self.data_term == "l1":
            return d.abs().flatten(1).sum(1)
        dh = (d[..., 1:, :] - d[..., :-1, :]).abs().flatten(1).sum(1)
        return dh + (d[..., :, 1:] - d[..., :, :-1]).abs().flatten(1).sum(1)

    def _objective(self, x_r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return _neg_elbo(self.model, x_r)[0] + self.lam * self._data_term(x_r - x)

    def _score_batch(self, x: torch.Tensor, generator: torch.Generator) -> _Batch:
        x = x.detach()
        x_r = x.clone().requires_grad_(True)
        opt = torch.optim.Adam([x_r], lr=self.lr)
        best, best_obj, history = x.clone(), torch.full((x.shape[0],), math.inf, device=x.device), []
        for step in range(self.steps + 1):
            obj = self._objective(x_r, x)
            history.append(obj.detach())
            better = obj.detach() < best_obj
            best[better], best_obj[better] = x_r.detach()[better], obj.detach()[better]
            if step < self.steps:
                (x_r.grad,) = torch.autograd.grad(obj.sum(), x_r)  # weights stay frozen: no .backward()
                opt.step()
        change = x - best
        m = self._reduce(change.clamp(min=0) if self.signed else change.abs())
        extra = {"restored": best, "objective": torch.stack(history, dim=1), "best_objective": best_obj}
        return _Batch(m, extra=extra)


