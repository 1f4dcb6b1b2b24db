"""Likelihood scorers (ELBO/IWAE, KL, posterior-sampling uncertainty) and the NLL helpers they share.

Why apart: these need a VAE (posterior + decoder likelihood); their maths (importance weights, per-pixel NLL)
is also used by the gradient and restoration scorers through ``_neg_elbo`` in base.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from vaedx.anomaly.base import BaseScorer, _Batch, _neg_elbo, _require_vae, is_torch_model, model_config
from vaedx.errors import ConfigError, ModelMismatchError
from vaedx.models.base import ModelOutput

_LOG_2PI = math.log(2.0 * math.pi)


def _logscale(model: Any, out: ModelOutput) -> torch.Tensor | None:
    if out.recon_logscale is not None:
        return out.recon_logscale
    fn = getattr(model, "recon_logscale", None)
    return fn() if callable(fn) else None


def model_pixel_nll(model: Any, x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
    """Per-pixel -log p(x|z) (N,C,H,W): ``model.pixel_nll`` when the model offers it (ConvVAE does), so the
    map always sums to the model's own recon_nll; otherwise :func:`likelihood_nll` from its config."""
    if hasattr(model, "pixel_nll"):
        return model.pixel_nll(x, out)
    return likelihood_nll(model_config(model), x, out, _logscale(model, out))


def likelihood_nll(
    cfg: Any, x: torch.Tensor, out: ModelOutput, logscale: torch.Tensor | None = None
) -> torch.Tensor:
    """-log p(x|z) per pixel for cfg.likelihood (gaussian, gaussian_learned, bernoulli, laplace) and
    cfg.sigma, for models that do not compute it themselves."""
    kind, sigma = getattr(cfg, "likelihood", "gaussian"), float(getattr(cfg, "sigma", 1.0))
    if kind == "bernoulli":
        logits = out.logits if out.logits is not None else torch.logit(out.x_hat, eps=1e-6)
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    if kind == "laplace":
        return (x - out.x_hat).abs() / sigma + math.log(2 * sigma)
    if kind == "gaussian_learned":
        ls = out.recon_logscale if out.recon_logscale is not None else logscale
        if ls is None:
            raise ModelMismatchError("model has a 'gaussian_learned' likelihood but no learned log-sigma")
        return 0.5 * ((x - out.x_hat) * torch.exp(-ls)) ** 2 + ls + 0.5 * _LOG_2PI
    if kind == "gaussian":
        return 0.5 * ((x - out.x_hat) / sigma) ** 2 + math.log(sigma) + 0.5 * _LOG_2PI
    raise ConfigError(f"unknown decoder likelihood '{kind}' (gaussian, gaussian_learned, bernoulli, laplace)")


def decode_output(model: Any, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor | None) -> ModelOutput:
    """ModelOutput for an arbitrary latent z (forward() only decodes the posterior mean in eval mode).

    Bernoulli models keep their logits (``decode_raw``) so the NLL is exact, not logit(sigmoid) clamped.
    """
    logits = None
    if getattr(model_config(model), "likelihood", None) == "bernoulli" and hasattr(model, "decode_raw"):
        logits = model.decode_raw(z)
        x_hat = torch.sigmoid(logits)
    else:
        x_hat = model.decode(z)
    out = ModelOutput(x_hat=x_hat, z=z, mu=mu, logvar=logvar, logits=logits)
    out.recon_logscale = _logscale(model, out)
    return out


def log_likelihood(model: Any, x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
    """log p(x|z) per image (N,); the model's own ``log_likelihood(x, x_hat)`` when it has one."""
    if hasattr(model, "log_likelihood"):
        return model.log_likelihood(x, out.x_hat)
    return -model_pixel_nll(model, x, out).flatten(1).sum(1)


def _gaussian_logpdf(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return (-0.5 * ((z - mu) ** 2 * torch.exp(-logvar) + logvar + _LOG_2PI)).flatten(1).sum(1)


def importance_log_weights(model: Any, x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """log p(x|z_k) + log p(z_k) - log q(z_k|x) for K posterior samples, shape (K, N).

    -logmeanexp over K is the IWAE estimate of -log p(x) (Burda et al. 2016); its mean over K is the
    single-sample -ELBO estimate, so -logmeanexp <= mean(-log w) holds sample by sample (Jensen).
    """
    mu, logvar = model.encode(x)
    if logvar is None:
        raise ModelMismatchError(
            f"importance weights need a posterior variance; {type(model).__name__} has none"
        )
    mu, logvar = mu.float(), logvar.float()  # log-densities in float32 even under autocast
    std = torch.exp(0.5 * logvar)
    rows = []
    for _ in range(k):
        eps = torch.randn(mu.shape, generator=generator).to(mu)
        z = mu + std * eps
        log_px = log_likelihood(model, x, decode_output(model, z, mu, logvar))
        log_pz = _gaussian_logpdf(z, torch.zeros_like(z), torch.zeros_like(z))
        rows.append(log_px + log_pz - _gaussian_logpdf(z, mu, logvar))
    return torch.stack(rows)


def iwae_nll(log_w: torch.Tensor) -> torch.Tensor:
    """-log (1/K sum_k w_k) per image from (K, N) log-weights, computed stably with logsumexp."""
    return -(torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0]))



class ELBOScorer(BaseScorer):
    """Image score -ELBO = recon_nll + KL (k=1, posterior mean, deterministic) or, for k > 1, the IWAE
    estimate of -log p(x) from k seeded posterior samples, which is tighter. Map: per-pixel NLL of the
    reconstruction. ``extra``: recon_nll, kl (per image)."""

    name = "elbo"

    def __init__(self, model: Any, k: int = 1, seed: int = 0, **opts: Any) -> None:
        _require_vae(model, "elbo")
        super().__init__(model, **opts)
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        self.k, self.seed = k, seed

    def _score_batch(self, x: torch.Tensor, generator: torch.Generator) -> _Batch:
        neg_elbo, terms, out = _neg_elbo(self.model, x)
        m = self._reduce(model_pixel_nll(self.model, x, out))
        scores = (
            neg_elbo if self.k == 1 else iwae_nll(importance_log_weights(self.model, x, self.k, generator))
        )
        return _Batch(m, scores, {"recon_nll": terms["recon_nll"], "kl": terms["kl"]})


class KLScorer(BaseScorer):
    """Image score KL(q(z|x) || p(z)) alone: how far from the healthy prior the encoder puts the image.

    KL has no pixel map of its own, so the map is the L1 residual (use 'grad_kl' for a KL-based map).
    """

    name = "kl"

    def __init__(self, model: Any, **opts: Any) -> None:
        _require_vae(model, "kl")
        super().__init__(model, **opts)

    def _score_batch(self, x: torch.Tensor, generator: torch.Generator) -> _Batch:
        _, terms, out = _neg_elbo(self.model, x)
        return _Batch(self._reduce((x - out.x_hat).abs()), terms["kl"])



class UncertaintyScorer(BaseScorer):
    """Decode m seeded samples z ~ q(z|x): map = mean residual |x - x_hat_m|; ``extra["variance"]`` =
    per-pixel variance of the decoded samples (zero for deterministic models), and "mean_reconstruction".

    Pixels the model is unsure about (high variance) are where residuals are least trustworthy; the variance
    map lets callers discount them.
    """

    name = "uncertainty"

    def __init__(self, model: Any, m: int = 10, seed: int = 0, **opts: Any) -> None:
        if not is_torch_model(model):
            raise ModelMismatchError(f"scorer 'uncertainty' needs a torch model; got {type(model).__name__}")
        super().__init__(model, **opts)
        if m < 1:
            raise ConfigError(f"m must be >= 1, got {m}")
        self.m, self.seed = m, seed

    def _score_batch(self, x: torch.Tensor, generator: torch.Generator) -> _Batch:
        mu, logvar = self.model.encode(x)
        std = torch.zeros_like(mu) if logvar is None else torch.exp(0.5 * logvar)
        samples = []
        for _ in range(self.m):
            eps = torch.randn(mu.shape, generator=generator).to(mu)
            samples.append(self.model.decode(mu + std * eps))
        x_hats = torch.stack(samples).float()  # (m, n, C, H, W); variances in float32 under autocast
        residual = self._reduce((x.unsqueeze(0) - x_hats).abs().mean(0))
        variance = self._reduce(x_hats.var(0, unbiased=False))
        extra = {"variance": variance, **self._recon_extra(x_hats.mean(0), "mean_reconstruction")}
        return _Batch(residual, extra=extra)


