"""ModelConfig.arch: saved with the run; auto (by image size) for new runs, conv for configs older than it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from vaedx.models.config import ModelConfig, with_saved_arch


@pytest.mark.parametrize(
    ("kind", "size", "arch"),
    [
        ("vae", None, "auto"),  # resolved once the trainer knows the image size
        ("vae", 28, "conv"),
        ("vae", 127, "conv"),
        ("vae", 128, "conv-fast"),
        ("ae", 256, "conv-fast"),
        ("vae", (64, 256), "conv"),  # the shorter side decides
        ("pca", None, "conv"),  # no network: the record keeps the old value
        ("pca", 128, "conv"),
        ("dae", 128, "conv-unet"),
    ],
)
def test_auto_arch_is_conv_fast_from_128_px_and_conv_below(kind, size, arch) -> None:
    assert ModelConfig(kind=kind, image_size=size).arch == arch


def test_an_explicit_arch_is_kept_and_auto_without_a_size_cannot_be_built() -> None:
    from vaedx.errors import ConfigError
    from vaedx.models import build_model

    assert ModelConfig(arch="conv", image_size=256).arch == "conv"
    assert ModelConfig(arch="conv-fast", image_size=28).arch == "conv-fast"
    with pytest.raises(ConfigError, match="arch auto needs the image size"):
        build_model(ModelConfig(in_channels=1))


def test_old_configs_without_arch_load_as_conv() -> None:
    old = ModelConfig().model_dump(mode="json")
    del old["arch"]
    assert ModelConfig.model_validate(with_saved_arch(old)).arch == "conv"
    assert with_saved_arch({"arch": "conv-fast"}) == {"arch": "conv-fast"}


def test_arch_round_trips_through_json() -> None:
    cfg = ModelConfig(arch="monai-autoencoderkl")
    assert ModelConfig.model_validate_json(cfg.model_dump_json()).arch == "monai-autoencoderkl"


def test_unknown_arch_and_pca_with_an_arch_are_refused() -> None:
    with pytest.raises(ValidationError, match="monai-varautoencoder"):
        ModelConfig(arch="unet")
    with pytest.raises(ValidationError, match="the pca baseline takes no arch"):
        ModelConfig(kind="pca", arch="monai-varautoencoder")
