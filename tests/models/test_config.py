"""ModelConfig.arch: saved with the run; conv-fast for new runs, conv for configs saved before it existed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from vaedx.models.config import ModelConfig, with_saved_arch


def test_new_configs_default_to_conv_fast_and_pca_to_no_network() -> None:
    assert ModelConfig().arch == "conv-fast"
    assert ModelConfig(kind="ae").arch == "conv-fast"
    assert ModelConfig(kind="pca").arch == "conv"


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
