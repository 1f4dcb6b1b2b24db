"""Presets fill only what nothing else set: defaults < preset < YAML < typed options; conflicts resolved."""

from __future__ import annotations

import json

import pytest
import yaml

from vaedx.errors import ConfigError
from vaedx.runs.config import TrainConfig, build_config
from vaedx.runs.presets import PRESETS, noise_resolution_for


def test_brain_mri_preset_sets_the_measured_recipe_and_its_scoring_defaults():
    cfg = build_config(None, {"preset": "brain-mri"})
    values = PRESETS["brain-mri"].values
    assert (cfg.model.kind, cfg.model.arch, cfg.denoise) == (
        values["kind"],
        values["arch"],
        values["denoise"],
    )
    assert cfg.model.widths == values["widths"] and cfg.epochs == values["epochs"]
    assert cfg.detect is not None and cfg.detect.scorer == "residual_signed"
    assert "foreground" in cfg.detect.postprocess
    plain = build_config(None, {})
    assert plain.preset is None and plain.detect is None and plain.model.kind == "vae"
    # saved and reloaded as a run's config.json: the preset's name and values come back unchanged
    assert TrainConfig.model_validate(json.loads(cfg.model_dump_json())) == cfg


def test_yaml_and_typed_options_win_over_the_preset(tmp_path):
    f = tmp_path / "cfg.yaml"
    f.write_text(yaml.safe_dump({"preset": "brain-mri", "epochs": 7, "model": {"latent_dim": 8}}))
    cfg = build_config(f, {"widths": [8, 16]})
    assert (cfg.epochs, cfg.model.latent_dim, cfg.model.widths) == (7, 8, [8, 16])
    assert cfg.model.kind == "dae" and cfg.denoise == "coarse"  # what nothing else set
    # another model kind drops the preset's arch and noise instead of failing on a VAE with a U-Net
    vae = build_config(None, {"preset": "brain-mri", "kind": "vae"})
    assert (vae.model.kind, vae.model.arch, vae.denoise) == ("vae", "auto", "none")
    pca = build_config(None, {"preset": "brain-mri", "kind": "pca"})
    assert (pca.model.kind, pca.denoise) == ("pca", "none")
    ce = build_config(None, {"preset": "brain-mri", "kind": "vae", "context_encoding": True})
    assert ce.context_encoding and ce.denoise == "none"
    with pytest.raises(ConfigError, match="preset"):
        build_config(None, {"preset": "lung-ct"})


@pytest.mark.parametrize(("side", "grid"), [(128, 16), (64, 8), (32, 4), (4, 1)])
def test_preset_noise_has_8_pixel_cells_at_any_size(side, grid):
    assert noise_resolution_for("brain-mri", side) == grid
