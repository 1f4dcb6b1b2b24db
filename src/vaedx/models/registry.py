"""Build a model from its config: the single place that maps ``kind`` to a class.

Why: checkpoints store only a ModelConfig, and every stage (training, loading, serving) must rebuild the
same architecture from it without knowing the classes.
"""

from __future__ import annotations

from vaedx.errors import ConfigError
from vaedx.models.baselines import PCABaseline
from vaedx.models.config import ModelConfig
from vaedx.models.vae import ConvAE, ConvVAE

MODEL_KINDS = ("vae", "ae", "pca")


def build_model(cfg: ModelConfig) -> ConvVAE | ConvAE | PCABaseline:
    """A fresh, untrained model (weights drawn from torch's global RNG, so seed first)."""
    if cfg.kind == "vae":
        return ConvVAE(cfg)
    if cfg.kind == "ae":
        return ConvAE(cfg)
    if cfg.kind == "pca":
        return PCABaseline(cfg.latent_dim, cfg.require_shape())
    raise ConfigError(f"unknown model kind {cfg.kind!r}; choose one of {', '.join(MODEL_KINDS)}")
