"""MONAI's ``AutoencoderKL`` (latent-diffusion autoencoder) as a vaedx model (``--arch monai-autoencoderkl``).

Mapping from ModelConfig: ``widths`` -> ``channels`` (len(widths) - 1 downsamplings), ``latent_dim`` ->
``latent_channels`` of the spatial latent, ``residual`` -> ``num_res_blocks`` (at least 1). GroupNorm is
built in (gcd(32, widths) groups), so ``norm`` must be "group". No attention blocks: at 28-128 px they cost
more than they give a VAE used for anomaly scoring.

The latent is spatial, (latent_dim, H', W') with H' = padded H / 2**(len(widths) - 1); the adapter flattens
it, so ``model.latent_dim`` is latent_dim * H' * W' and the KL is summed over all of it, as MONAI's
``KL loss`` of this network is. MONAI's ``forward`` samples z even in eval mode; the adapter decodes mu.
"""

from __future__ import annotations

import torch

from vaedx.errors import ConfigError
from vaedx.models.adapter import NetworkAdapter, group_count, import_monai_nets
from vaedx.models.config import ModelConfig

ARCH = "monai-autoencoderkl"


class MonaiAutoencoderKL(NetworkAdapter):
    """``monai.networks.nets.AutoencoderKL`` with a flat view of its spatial latent."""

    def __init__(self, cfg: ModelConfig):
        nets = import_monai_nets(ARCH)
        if cfg.norm != "group":
            raise ConfigError(f"arch {ARCH!r} has GroupNorm built in; use norm 'group', not {cfg.norm!r}")
        levels = len(cfg.widths) - 1
        super().__init__(cfg, multiple=2**levels)
        c, ph, pw = self.padded_shape
        self.latent_grid = (cfg.latent_dim, ph // 2**levels, pw // 2**levels)
        self.latent_dim = cfg.latent_dim * self.latent_grid[1] * self.latent_grid[2]
        self.net = nets.AutoencoderKL(
            spatial_dims=2,
            in_channels=c,
            out_channels=c,
            num_res_blocks=max(cfg.residual, 1),
            channels=tuple(cfg.widths),
            attention_levels=(False,) * len(cfg.widths),
            latent_channels=cfg.latent_dim,
            norm_num_groups=group_count(cfg.widths, 32),
            with_encoder_nonlocal_attn=False,
            with_decoder_nonlocal_attn=False,
        )

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, sigma = self.net.encode(x)
        return mu.flatten(1), 2.0 * torch.log(sigma).flatten(1)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.net.decode(z.view(-1, *self.latent_grid))
