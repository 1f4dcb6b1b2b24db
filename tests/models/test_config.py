"""ModelConfig.arch: saved with the run, defaults to conv for configs written before it existed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from vaedx.models.config import ModelConfig


def test_old_configs_without_arch_load_as_conv() -> None:
    old = ModelConfig().model_dump(mode="json")
    del old["arch"]
    assert ModelConfig.model_validate(old).arch == "conv"


def test_arch_round_trips_through_json() -> None:
    cfg = ModelConfig(arch="monai-autoencoderkl")
    assert ModelConfig.model_validate_json(cfg.model_dump_json()).arch == "monai-autoencoderkl"


def test_unknown_arch_and_pca_with_an_arch_are_refused() -> None:
    with pytest.raises(ValidationError, match="monai-varautoencoder"):
        ModelConfig(arch="unet")
    with pytest.raises(ValidationError, match="the pca baseline takes no arch"):
        ModelConfig(kind="pca", arch="monai-varautoencoder")
