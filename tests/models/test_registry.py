"""build_model: kind and arch pick the class; unknown or impossible combinations are one-line errors."""

from __future__ import annotations

import pytest

from vaedx.errors import ConfigError
from vaedx.models import ConvAE, ConvVAE, ModelConfig, PCABaseline, build_model
from vaedx.models.monai_autoencoderkl import MonaiAutoencoderKL
from vaedx.models.monai_varautoencoder import MonaiVarAutoEncoder
from vaedx.models.unet import ConvUNet

SHAPE = {"in_channels": 1, "image_size": 16, "latent_dim": 2, "widths": [8, 16]}


@pytest.mark.parametrize(
    ("kind", "arch", "cls"),
    [
        ("vae", "conv", ConvVAE),
        ("ae", "conv", ConvAE),
        ("pca", "conv", PCABaseline),
        ("vae", "monai-varautoencoder", MonaiVarAutoEncoder),
        ("ae", "monai-varautoencoder", MonaiVarAutoEncoder),
        ("vae", "monai-autoencoderkl", MonaiAutoencoderKL),
        ("dae", "conv-unet", ConvUNet),
    ],
)
def test_kind_and_arch_pick_the_class(kind: str, arch: str, cls: type) -> None:
    model = build_model(ModelConfig(kind=kind, arch=arch, **SHAPE))
    assert type(model) is cls
    if kind != "pca":
        assert model.stochastic == (kind == "vae")


def test_an_unknown_arch_is_refused() -> None:
    cfg = ModelConfig(**SHAPE).model_copy(update={"arch": "unet"})  # past validation, as a bad file could be
    with pytest.raises(ConfigError, match="unknown arch 'unet'; choose one of auto, conv, monai-varautoenc"):
        build_model(cfg)
