"""Build a model from its config: the single place that maps ``kind`` and ``arch`` to a class.

Why: checkpoints store only a ModelConfig, and every stage (training, loading, serving) must rebuild the
same architecture from it without knowing the classes. MONAI adapters are imported only when their arch is
asked for, so vaedx without the monai extra loads as fast as before and fails in one line only then.
"""

from __future__ import annotations

from typing import Any

from vaedx.errors import ConfigError
from vaedx.models.baselines import PCABaseline
from vaedx.models.config import ARCHS, UNET_ARCH, ModelConfig
from vaedx.models.fastconv import FAST_ARCH, FastConvAE, FastConvVAE
from vaedx.models.unet import ConvUNet
from vaedx.models.vae import ConvAE, ConvVAE

MODEL_KINDS = ("vae", "ae", "pca", "dae")
MODEL_ARCHS = ARCHS


def build_model(cfg: ModelConfig) -> Any:
    """A fresh, untrained model (weights drawn from torch's global RNG, so seed first).

    ConvVAE | ConvAE | FastConvVAE | FastConvAE (arch conv-fast) | ConvUNet (kind dae) | PCABaseline, or a
    :class:`vaedx.models.adapter.NetworkAdapter` for a MONAI arch.
    """
    if cfg.kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model kind {cfg.kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    arch = cfg.network()
    if arch == "monai-varautoencoder":
        from vaedx.models.monai_varautoencoder import MonaiVarAutoEncoder

        return MonaiVarAutoEncoder(cfg)
    if arch == "monai-autoencoderkl":
        from vaedx.models.monai_autoencoderkl import MonaiAutoencoderKL

        return MonaiAutoencoderKL(cfg)
    if arch == UNET_ARCH:
        return ConvUNet(cfg)
    if arch == FAST_ARCH:
        return FastConvVAE(cfg) if cfg.kind == "vae" else FastConvAE(cfg)
    if arch != "conv":
        raise ConfigError(f"unknown arch {arch!r}; choose one of {', '.join(MODEL_ARCHS)}")
    if cfg.kind == "vae":
        return ConvVAE(cfg)
    if cfg.kind == "ae":
        return ConvAE(cfg)
    return PCABaseline(cfg.latent_dim, cfg.require_shape())
