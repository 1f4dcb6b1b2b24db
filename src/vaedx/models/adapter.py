"""`NetworkAdapter`: any encoder/decoder pair as a vaedx model (the protocol in :mod:`vaedx.models.protocol`).

A subclass builds its network and implements two methods on *padded* tensors: ``_encode(x) -> (mu,
logvar)`` with flat latents and ``_decode(z) -> raw output``. Everything else the engine and the scorers
need comes from here, and the likelihood and ELBO are ConvVAE's own code (``pixel_nll``, ``elbo_terms``),
so the ELBO of a MONAI network and of a ConvVAE are the same quantity and compare in one table.

Why the adapter decides the latent, never the wrapped network: MONAI's ``VarAutoEncoder.forward`` returns
``decode(mu + std)`` in eval mode unless ``use_mean_at_inference`` is set (MONAI issue 8413) and
``AutoencoderKL.forward`` samples in every mode; scoring needs decode(mu) in eval mode, so the adapter calls
the encoder and the decoder itself and samples only in train mode.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vaedx.errors import ConfigError
from vaedx.models.base import LatentAutoencoder
from vaedx.models.config import ModelConfig
from vaedx.models.vae import _ConvAutoencoder, padded_size


def import_monai_nets(arch: str) -> Any:
    """``monai.networks.nets``, imported only when a MONAI arch is built; one line when MONAI is missing."""
    try:
        from monai.networks import nets
    except ImportError:
        raise ConfigError(f"arch {arch!r} needs MONAI: pip install 'vaedx[monai]'") from None
    return nets


class NetworkAdapter(LatentAutoencoder):
    """Padding, cropping, latent sampling, ModelOutput and the ELBO around a subclass's encoder/decoder.

    ``multiple``: the padded height and width are multiples of it (the network's total downsampling), so
    28x28 or 100x120 inputs work with networks that need powers of two; outputs are cropped back.
    """

    def __init__(self, cfg: ModelConfig, multiple: int):
        super().__init__()
        if cfg.kind not in ("vae", "ae"):
            msg = f"arch {cfg.arch!r} is a torch network: kind must be vae or ae, not {cfg.kind!r}"
            raise ConfigError(msg)
        c, h, w = cfg.require_shape()
        self.cfg = cfg
        self.stochastic = cfg.kind == "vae"
        self.image_shape = (c, h, w)
        self.latent_dim = cfg.latent_dim  # subclasses with a spatial latent set the flat size
        depth = int(math.log2(multiple))
        ph, pw = padded_size((h, w), depth)
        self.padded_shape = (c, ph, pw)
        self._pad = ((pw - w) // 2, pw - w - (pw - w) // 2, (ph - h) // 2, ph - h - (ph - h) // 2)
        self.log_sigma: nn.Parameter | None = None
        if cfg.likelihood == "gaussian_learned":
            shape = (1,) if cfg.learned_sigma == "global" else (c, h, w)
            self.log_sigma = nn.Parameter(torch.full(shape, math.log(cfg.sigma)))

    # -- what a subclass implements, on padded tensors --------------------------------------------------
    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each (N, latent_dim), of the padded batch."""
        raise NotImplementedError

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        """Raw decoder output (before any final activation) of the padded size."""
        raise NotImplementedError

    # -- the protocol ------------------------------------------------------------------------------------
    _check = _ConvAutoencoder._check
    _crop = _ConvAutoencoder._crop
    recon_logscale = _ConvAutoencoder.recon_logscale
    pixel_nll = _ConvAutoencoder.pixel_nll
    elbo_terms = _ConvAutoencoder.elbo_terms

    def _device(self) -> torch.Tensor:
        return next(self.parameters())

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mu, logvar) of q(z|x); logvar is None for kind ae."""
        self._check(x)
        mu, logvar = self._encode(F.pad(x, self._pad) if any(self._pad) else x)
        return (mu, logvar.clamp(-30.0, 20.0)) if self.stochastic else (mu, None)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder output before its final activation (logits for Bernoulli), cropped to the image size."""
        return self._crop(self._decode(z))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images decoded from z ~ N(0, I) (drawn on the generator's device, then moved)."""
        ref = self._device()
        dev = generator.device if generator is not None else ref.device
        z = torch.randn(n, self.latent_dim, generator=generator, device=dev)
        return self.decode(z.to(ref))


def group_count(widths: list[int], most: int) -> int:
    """GroupNorm groups that divide every width: gcd(most, *widths)."""
    return math.gcd(most, *widths)
