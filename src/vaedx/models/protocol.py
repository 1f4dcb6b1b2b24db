"""The network protocol: what vaedx's training engine and anomaly scorers call on a torch network.

Why a written protocol: the engine, the twelve scorers, the report and the exporter never branch on the
class of the model; they call the members below and nothing else. A network from another library (MONAI's
``VarAutoEncoder``/``AutoencoderKL``, or your own) works with all of them once it offers these members,
which :class:`vaedx.models.adapter.NetworkAdapter` builds from just an encoder and a decoder.

Who calls what:

* training loop: ``model(x) -> ModelOutput`` (train mode may sample z), ``elbo_terms``, ``parameters()``,
  ``state_dict()`` (saved as safetensors), ``cfg`` (rebuilt from config.json by ``registry.build_model``);
* residual / SSIM scorers: ``reconstruct(x)`` (must be deterministic: decode the posterior mean);
* ELBO, KL, gradient, combi and restoration scorers: ``model(x)`` in eval mode (z = mu, so scores do not
  change from one call to the next), ``elbo_terms``, ``pixel_nll``, and ``stochastic`` (True for a VAE);
* IWAE (``elbo`` with k > 1) and uncertainty scorers: ``encode`` -> (mu, logvar), ``decode(z)`` of any z;
* input checks: ``image_shape`` (C, H, W); report: ``sample``, ``interpolate``.

Latents are flat, (N, latent_dim): a network with a spatial latent (AutoencoderKL) flattens it, so the KL
per dimension, free bits, sampling and interpolation mean the same thing for every network.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from vaedx.errors import ModelMismatchError
from vaedx.models.base import ModelOutput

ELBO_KEYS = ("recon_nll", "kl", "kl_per_dim", "neg_elbo", "mse")
MEMBERS = (
    "cfg", "latent_dim", "image_shape", "stochastic", "encode", "decode", "decode_raw", "reconstruct",
    "pixel_nll", "elbo_terms", "recon_logscale", "interpolate",
)  # fmt: skip


@runtime_checkable
class VaedxNetwork(Protocol):
    """A torch module (``nn.Module``) that vaedx can train, save, load and score with every scorer.

    A VAE (``stochastic``) also offers ``sample(n, generator=None)``: n images decoded from z ~ N(0, I),
    for the report; an AE has no prior to sample from, so the member is not part of the protocol proper.
    """

    cfg: Any  # the ModelConfig it was built from: kind, likelihood, sigma, arch, shape
    latent_dim: int  # size of the flat latent
    image_shape: tuple[int, int, int]  # (C, H, W) of the inputs
    stochastic: bool  # True when encode gives a posterior variance (a VAE); False for an AE
    training: bool

    def __call__(self, x: torch.Tensor) -> ModelOutput:
        """Encode, take z (a posterior sample in train mode, **the mean in eval mode**), decode."""

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mu, logvar) of q(z|x), each (N, latent_dim); logvar is None for an AE."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean image (N, C, H, W) of p(x|z) in data space for any z (N, latent_dim)."""

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder output before its final activation (Bernoulli logits); decode() activates it."""

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """decode(mu): deterministic in train and eval mode."""

    def pixel_nll(self, x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
        """-log p(x|z) per pixel and channel (N, C, H, W)."""

    def elbo_terms(self, x: torch.Tensor, out: ModelOutput) -> dict[str, torch.Tensor]:
        """Per image (N,): recon_nll, kl, neg_elbo, mse; and kl_per_dim (N, latent_dim)."""

    def recon_logscale(self) -> torch.Tensor | None:
        """Learned Gaussian log-sigma of the decoder, or None."""

    def interpolate(self, x1: torch.Tensor, x2: torch.Tensor, steps: int = 8) -> torch.Tensor:
        """Decoded points between the posterior means of two images, (steps, C, H, W)."""


def _fail(model: Any, problem: str) -> None:
    raise ModelMismatchError(f"{type(model).__name__} does not meet the vaedx network protocol: {problem}")


@torch.no_grad()
def check_network(model: Any, n: int = 2) -> None:
    """Raise ModelMismatchError naming the first broken promise of the protocol, on a random batch.

    Why run it rather than only look for the members: the promises that matter (shapes, eval-mode
    determinism, reconstruct == decode(mu)) are about behaviour, and a network that breaks one gives
    silently random or misshapen anomaly maps rather than an error.
    """
    if not isinstance(model, torch.nn.Module):
        _fail(model, "it is not a torch.nn.Module")
    missing = [m for m in MEMBERS if not hasattr(model, m)]
    if getattr(model, "stochastic", False) and not hasattr(model, "sample"):
        missing.append("sample")
    if missing:
        _fail(model, f"it lacks {', '.join(missing)}")
    was = model.training
    model.eval()
    try:
        p = next(iter(model.parameters()), None)
        dev, dt = (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)
        x = torch.rand(n, *model.image_shape, generator=torch.Generator().manual_seed(0)).to(dev, dt)
        mu, logvar = model.encode(x)
        if tuple(mu.shape) != (n, model.latent_dim):
            _fail(model, f"encode gave mu of shape {tuple(mu.shape)}, not (N, latent_dim={model.latent_dim})")
        if (logvar is None) == bool(model.stochastic):
            got = "None" if logvar is None else "a tensor"
            _fail(model, f"stochastic is {model.stochastic} but encode gave logvar={got}")
        if logvar is not None and logvar.shape != mu.shape:
            _fail(model, f"logvar has shape {tuple(logvar.shape)}, mu {tuple(mu.shape)}")
        x_hat = model.decode(mu)
        if tuple(x_hat.shape) != tuple(x.shape):
            _fail(model, f"decode gave shape {tuple(x_hat.shape)} for inputs of shape {tuple(x.shape)}")
        out = model(x)
        if not isinstance(out, ModelOutput):
            _fail(model, f"calling it returned {type(out).__name__}, not vaedx.models.ModelOutput")
        if not torch.equal(out.z, mu) or not torch.allclose(out.x_hat, x_hat, atol=1e-5):
            _fail(model, "in eval mode it must decode the posterior mean (z == mu), not a sample")
        if not torch.allclose(model.reconstruct(x), x_hat, atol=1e-5):
            _fail(model, "reconstruct(x) differs from decode(mu)")
        terms = model.elbo_terms(x, out)
        lacking = [k for k in ELBO_KEYS if k not in terms]
        if lacking:
            _fail(model, f"elbo_terms lacks {', '.join(lacking)}")
        if any(tuple(terms[k].shape) != (n,) for k in ELBO_KEYS if k != "kl_per_dim"):
            _fail(model, "elbo_terms must give one value per image for recon_nll, kl, neg_elbo and mse")
    finally:
        model.train(was)
