"""`FastConvVAE` / `FastConvAE` (``--arch conv-fast``): the ConvVAE with no feature map at full resolution.

Why it exists: a profile of one training step of the default ConvVAE at 128 px (widths 32,64,128,256, batch
64, one CPU thread) put about four fifths of the step's 5 s in the four layers that read or write 128x128
maps: the 3x3 stem (1 -> 32 channels), the first stride-2 level (32 -> 32), the last transposed-convolution
level (32 -> 32, up to 128x128) and the 3x3 head (32 -> 1; a convolution with one output channel runs at
about 1 GFLOP/s in oneDNN, 1.4 s of the step alone), plus GroupNorm, SiLU and layout copies on 32-channel
128x128 maps, which are memory-bound. Those layers hold 41 % of the FLOPs (853 of 2098 MFLOP per image,
forward and backward) and add nothing the latent can use: the bottleneck is the same.

Layout (same ``widths``, ``latent_dim``, ``norm``, ``residual``, padding and bottleneck as ConvVAE):

* stem: space-to-depth (``PixelUnshuffle(2)``: each 2x2 block of pixels becomes 4 channels) and a 3x3
  convolution to ``widths[0]``, so the first level already halves the resolution without a strided
  convolution over a full-resolution map;
* the other levels are ConvVAE's own (4x4 stride-2 convolution, norm, SiLU, residual blocks);
* head: a 3x3 convolution at half resolution to ``4 * C`` channels and depth-to-space
  (``PixelShuffle(2)``, the sub-pixel convolution of Shi et al., CVPR 2016), which puts every output pixel
  back without a transposed convolution at full resolution.

So every convolution runs at half the image size or less. Everything else (likelihoods, ELBO terms, eval
decodes the posterior mean, sampling, scorers) is inherited unchanged from ConvVAE/ConvAE; only the
encoder and decoder modules differ, hence different weight names, and checkpoints say which arch they are.
"""

from __future__ import annotations

from torch import nn

from vaedx.models.config import ModelConfig
from vaedx.models.vae import ConvAE, ConvVAE, ResBlock, _level, make_norm

FAST_ARCH = "conv-fast"
_SCALE = 2  # the stem and the head change the resolution by this factor (one level)


def fast_encoder(cfg: ModelConfig, channels: int) -> nn.Sequential:
    """Space-to-depth stem at half resolution, then ConvVAE's stride-2 levels: ``len(widths)`` halvings."""
    ws = cfg.widths
    stem = [
        nn.PixelUnshuffle(_SCALE),
        nn.Conv2d(channels * _SCALE**2, ws[0], 3, padding=1),
        make_norm(cfg.norm, ws[0]),
        nn.SiLU(),
        *[ResBlock(ws[0], cfg.norm) for _ in range(cfg.residual)],
    ]
    levels = [_level(a, b, cfg, up=False) for a, b in zip(ws[:-1], ws[1:], strict=True)]
    return nn.Sequential(nn.Sequential(*stem), *levels)


def fast_decoder(cfg: ModelConfig, channels: int) -> nn.Sequential:
    """ConvVAE's transposed-convolution levels down to ``widths[0]`` at half resolution, then a sub-pixel
    head: 3x3 convolution to ``channels * 4`` and depth-to-space."""
    rev = cfg.widths[::-1]
    levels = [_level(a, b, cfg, up=True) for a, b in zip(rev[:-1], rev[1:], strict=True)]
    head = nn.Sequential(nn.Conv2d(rev[-1], channels * _SCALE**2, 3, padding=1), nn.PixelShuffle(_SCALE))
    return nn.Sequential(*levels, head)


class FastConvVAE(ConvVAE):
    """ConvVAE (stochastic latent, posterior mean in eval mode) with the space-to-depth stem and sub-pixel
    head: the same bottleneck at a fraction of the full-resolution work."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        c = self.image_shape[0]
        self.encoder = fast_encoder(cfg, c)
        self.decoder = fast_decoder(cfg, c)


class FastConvAE(ConvAE):
    """The deterministic twin of :class:`FastConvVAE` (kind ae), the baseline it must beat."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        c = self.image_shape[0]
        self.encoder = fast_encoder(cfg, c)
        self.decoder = fast_decoder(cfg, c)
