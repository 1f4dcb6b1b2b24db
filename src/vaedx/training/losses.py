"""The beta-VAE objective, KL annealing schedules and free bits.

**Scale of beta.** The loss for one image is ``recon_nll + beta * KL`` where ``recon_nll`` is the
negative log-likelihood *summed over all pixels and channels* and ``KL`` is KL(q(z|x) || N(0, I)) *summed
over latent dimensions*; the batch loss is the mean of that over images. So beta=1 is exactly the negative
ELBO, beta>1 is Higgins et al.'s beta-VAE, and beta does not need re-tuning when the image size changes.
(PyTorch-VAE's ``kld_weight`` mixed a per-pixel mean with a batch-size ratio, which is why its "right"
value confused users for years; here there is no hidden normalisation.)

**Free bits** (Kingma et al. 2016): each latent dimension's KL, averaged over the batch, is floored at
``free_bits`` nats, so the optimiser gains nothing by pushing a dimension below that and posterior collapse
is discouraged. With ``free_bits=0`` the term equals the plain batch-mean KL.
"""

from __future__ import annotations

from typing import Literal

import torch

from vaedx.models.base import ModelOutput
from vaedx.models.ssim import ssim_map

AnnealKind = Literal["none", "linear", "cyclical"]


def kl_weight(
    step: int,
    *,
    beta: float,
    schedule: AnnealKind,
    steps_per_epoch: int,
    anneal_epochs: int = 0,
    total_steps: int = 0,
    cycles: int = 4,
    ratio: float = 0.5,
) -> float:
    """beta_t for a global optimiser step (0-based), updated every step, not every epoch.

    linear: 0 -> beta over ``anneal_epochs`` epochs, then beta. cyclical (Fu et al. 2019): the run is cut
    into ``cycles`` equal periods; in each, beta rises linearly over the first ``ratio`` of the period and
    then stays at beta.
    """
    if schedule == "none":
        return beta
    if schedule == "linear":
        ramp = anneal_epochs * steps_per_epoch
        return beta if ramp <= 0 else beta * min(1.0, step / ramp)
    if schedule == "cyclical":
        period = total_steps / max(cycles, 1)
        if period <= 0:
            return beta
        tau = (step % period) / period
        return beta * min(1.0, tau / ratio)
    raise ValueError(f"unknown KL schedule {schedule!r}")


def free_bits_kl(kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """sum_j max(free_bits, mean_batch KL_j): a scalar, the KL term of the training loss."""
    per_dim = kl_per_dim.mean(0)
    if free_bits > 0:
        per_dim = per_dim.clamp_min(free_bits)
    return per_dim.sum()


def ssim_term(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per-image sum over pixels of (1 - SSIM), on the same per-image-sum scale as the NLL."""
    return (1.0 - ssim_map(x_hat.float(), x.float())).flatten(1).sum(1)


def vae_loss(
    model: torch.nn.Module,
    x: torch.Tensor,
    out: ModelOutput,
    *,
    beta: float,
    free_bits: float = 0.0,
    ssim_weight: float = 0.0,
    out_ce: ModelOutput | None = None,
    ce_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(scalar loss to minimise, detached per-batch means for logging).

    loss = mean_batch(recon_nll [+ ssim_weight * (1 - SSIM) summed over pixels]) + beta * free-bits KL.
    For the AE the KL is zero, so the same function serves both.

    ``out_ce``: the model's output for a copy of ``x`` with patches masked out (ceVAE, Zimmerer et al.
    2019); ``ce_weight`` times its reconstruction NLL against the clean ``x`` is added (logged as "ce").
    Its KL is not: the ELBO of the clean image already regularises the same encoder. Weight 0 (or no
    ``out_ce``) leaves the loss exactly as without it.
    """
    terms = model.elbo_terms(x, out)  # type: ignore[operator]
    recon = terms["recon_nll"]
    if ssim_weight > 0:
        recon = recon + ssim_weight * ssim_term(x, out.x_hat)
    # the AE has no KL at all: free bits must not add a constant to its loss
    kl = free_bits_kl(terms["kl_per_dim"], free_bits) if out.logvar is not None else recon.new_zeros(())
    loss = recon.mean() + beta * kl
    logs = {"loss": loss, "recon": terms["recon_nll"].mean(), "kl": terms["kl"].mean()}
    if out_ce is not None and ce_weight > 0:
        inpaint = model.elbo_terms(x, out_ce)["recon_nll"].mean()  # type: ignore[operator]
        loss = loss + ce_weight * inpaint
        logs.update(loss=loss, ce=inpaint)
    logs = {k: v.detach() for k, v in logs.items()}
    return loss, logs
