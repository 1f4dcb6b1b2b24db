from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from train_helpers import cli_module
from vaedx.errors import ConfigError
from vaedx.models.config import ModelConfig
from vaedx.runs.config import TrainConfig, build_config


def test_overrides_beat_yaml_beat_defaults(tmp_path):
    f = tmp_path / "cfg.yaml"
    f.write_text(yaml.safe_dump({"epochs": 7, "beta": 3.0, "model": {"latent_dim": 8, "kind": "ae"}}))
    cfg = build_config(f, {"epochs": 2, "latent_dim": 16, "label_filter": ["normal"]})
    assert (cfg.epochs, cfg.beta, cfg.model.latent_dim, cfg.model.kind) == (2, 3.0, 16, "ae")
    assert cfg.label_filter == ["normal"] and cfg.lr == TrainConfig().lr


def test_unknown_or_invalid_options_are_one_line_config_errors(tmp_path):
    f = tmp_path / "cfg.yaml"
    f.write_text("epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate") as e:
        build_config(f)
    assert "\n" not in str(e.value) and "cfg.yaml" in str(e.value)
    with pytest.raises(ConfigError, match="latent_dim"):
        build_config(None, {"latent_dim": 0})


def test_a_dae_trains_on_coarse_noise_by_default_and_never_without_a_corruption(tmp_path):
    cfg = build_config(None, {"arch": "conv-unet"})
    assert (cfg.model.kind, cfg.denoise) == ("dae", "coarse")
    again = TrainConfig.model_validate(json.loads(cfg.model_dump_json()))  # as a run's config.json reloads
    assert again == cfg
    assert build_config(None, {"kind": "dae", "noise_std": 0.1}).model.arch == "conv-unet"
    f = tmp_path / "cfg.yaml"
    f.write_text("denoise: none\nmodel:\n  arch: conv-unet\n")
    with pytest.raises(ConfigError, match="learns to copy its input, anomalies included") as e:
        build_config(f)
    assert "\n" not in str(e.value) and "cfg.yaml" in str(e.value)
    with pytest.raises(ConfigError, match="is a denoising autoencoder, kind dae"):
        build_config(None, {"arch": "conv-unet", "kind": "ae"})
    assert build_config(None, {"kind": "ae"}).denoise == "none"  # other kinds keep their default


def test_every_config_field_has_a_cli_option():
    import inspect

    from vaedx.cli.train import train_command

    params = set(inspect.signature(train_command).parameters)
    fields = set(TrainConfig.model_fields) - {"model"} | set(ModelConfig.model_fields)
    # in_channels and image_size come from the store; detect (how to score the model) from --preset or YAML
    assert fields - params == {"in_channels", "image_size", "detect"}


def test_cli_overrides_yaml(tiny_store, tmp_path):
    f = tmp_path / "cfg.yaml"
    f.write_text(yaml.safe_dump({"epochs": 5, "widths": [8], "latent_dim": 3, "batch_size": 32, "beta": 4.0}))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", cli_module(), "train", "--store", str(tiny_store), "--config", str(f),
           "--out", str(out), "--epochs", "1", "--latent-dim", "5", "--kind", "ae",
           "--label-filter", "normal", "--likelihood", "bernoulli", "--widths", "4,8",
           "--val-split", "none", "--no-amp", "--augment", "-q"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    saved = json.loads((out / "config.json").read_text())["train"]
    assert (saved["epochs"], saved["beta"], saved["batch_size"]) == (1, 4.0, 32)
    assert saved["model"]["latent_dim"] == 5 and saved["model"]["kind"] == "ae"
    assert saved["model"]["widths"] == [4, 8] and saved["model"]["likelihood"] == "bernoulli"
    assert saved["label_filter"] == ["normal"] and saved["val_split"] is None and saved["amp"] is False
    assert saved["augment"]["rotate_deg"] == 10.0


def test_cli_errors_are_one_line(tiny_store, tmp_path):
    cmd = [sys.executable, "-m", cli_module(), "train", "--store", str(tiny_store), "--out",
           str(tmp_path / "r"), "--likelihood", "poisson"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "likelihood" in r.stderr and "Traceback" not in r.stderr


def test_epochs_are_chosen_on_validation_within_a_time_budget_by_default(tmp_path):
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.patience, cfg.budget) == (200, 10, 10.0)  # a cap, early stopping, 10 minutes
    f = tmp_path / "cfg.yaml"
    f.write_text("budget:\n")  # an empty value, as YAML writes None: no limit
    assert build_config(f).budget == 0.0
    with pytest.raises(ConfigError, match="budget"):
        build_config(None, {"budget": -1})
