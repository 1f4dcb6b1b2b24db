"""`ConvUNet`: the convolutional autoencoder with U-Net skip connections, a denoising autoencoder (kind dae).

Why it exists: for lesion localisation in brain MRI, a decoder that sees the encoder's feature maps at every
resolution gives back sharp detail that a bottleneck-only decoder blurs away, and blur is what dominates the
residual maps of a plain VAE. Kascenas et al. (MIDL 2022) used exactly this, a U-Net trained to remove
coarse noise, and it beat the VAEs they compared with.

Why it is not a VAE: with a path around the bottleneck the latent no longer constrains the reconstruction;
trained on clean images the network learns to copy its input, tumours included, and finds nothing. It only
detects anomalies when trained to remove a corruption (``denoise: coarse``, which training turns on for it),
and it has no likelihood: ``stochastic`` is False, so the ELBO, KL, gradient, restoration and sampling
scorers refuse it, and ``decode(z)`` (a latent alone, no feature maps) refuses too. The residual and SSIM
scorers use :meth:`ConvUNet.reconstruct`, which passes the skips.

Layout: the encoder and the dense latent are ConvAE's; the decoder concatenates, before each up-sampling
level and before the output convolution, the encoder feature map of the same resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vaedx.errors import ModelMismatchError
from vaedx.models.base import ModelOutput
from vaedx.models.config import ModelConfig
from vaedx.models.vae import _ConvAutoencoder, _level

_STEM = 3  # the encoder's first modules (conv, norm, act) at full resolution; then one module per level


class ConvUNet(_ConvAutoencoder):
    """ConvAE's encoder and latent, and a decoder fed the encoder's feature maps at each resolution."""

    stochastic = False

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        ws, c = cfg.widths, self.image_shape[0]
        rev = ws[::-1]
        # level k (deepest first) sees its own input and the encoder map of that resolution: twice the width
        ups = [_level(2 * a, b, cfg, up=True) for a, b in zip(rev, [*rev[1:], ws[0]], strict=True)]
        self.decoder = nn.ModuleList([*ups, nn.Conv2d(2 * ws[0], c, 3, padding=1)])

    # -- encoder ------------------------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(mu, skips): the latent code and the encoder maps, full resolution first, deepest last."""
        self._check(x)
        h = F.pad(x, self._pad) if any(self._pad) else x
        skips = []
        for i, module in enumerate(self.encoder):
            h = module(h)
            if i >= _STEM - 1:
                skips.append(h)
        return self.to_latent(h.flatten(1)), skips

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mu, None): the bottleneck code; a deterministic network has no posterior variance."""
        return self.features(x)[0], None

    # -- decoder ------------------------------------------------------------------------------------------
    def decode_skips(self, z: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Decoder output before its final activation, from the code and the encoder maps, cropped."""
        if len(skips) != len(self.decoder):
            raise ModelMismatchError(f"expected {len(self.decoder)} skip maps, got {len(skips)}")
        h = F.silu(self.from_latent(z)).view(-1, *self._bottleneck)
        for module, skip in zip(self.decoder, skips[::-1], strict=True):
            h = module(torch.cat([h, skip], dim=1))
        return self._crop(h)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Refused: the decoder needs the encoder's feature maps, so a latent alone decodes to nothing."""
        raise ModelMismatchError(
            "a skip-connection network (denoising autoencoder) decodes from its encoder's feature maps, "
            "not from a latent alone: it cannot decode, sample or interpolate; use reconstruct(x)"
        )

    def forward(self, x: torch.Tensor) -> ModelOutput:
        mu, skips = self.features(x)
        raw = self.decode_skips(mu, skips)
        bernoulli = self.cfg.likelihood == "bernoulli"
        return ModelOutput(
            x_hat=self._activate(raw), z=mu, mu=mu, logvar=None,
            recon_logscale=self.recon_logscale(), logits=raw if bernoulli else None,
        )  # fmt: skip

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """What the residual and SSIM scorers compare with: the full pass, skips included."""
        return self._activate(self.decode_skips(*self.features(x)))
