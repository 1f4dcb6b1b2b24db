"""Training-time augmentation: random affine copies of each training batch, never of validation batches."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from train_helpers import FAST
from vaedx.data.augment import AugmentConfig
from vaedx.errors import ConfigError
from vaedx.runs.config import build_config
from vaedx.training import loop
from vaedx.training.engine import run_training


def _run(store, out, **kw):
    return run_training(None, {**FAST, "store": store, "out": out, "epochs": 2, **kw}, quiet=True)


def _weights(out):
    return load_file(out / "last" / "model.safetensors")


def test_augment_option_forms():
    assert build_config(None, {"augment": True}).augment == AugmentConfig()
    assert build_config(None, {"augment": False}).augment is None
    assert build_config(None, {"augment": {"rotate_deg": 5}}).augment.rotate_deg == 5
    assert build_config(None, {"augment": {"rotate_deg": 0, "scale": 0, "translate": 0}}).augment is None
    with pytest.raises(ConfigError, match="augment.rotate_deg"):
        build_config(None, {"augment": {"rotate_deg": 500}})
    with pytest.raises(ConfigError, match="PCA"):
        build_config(None, {"augment": True, "kind": "pca"})


def test_only_training_batches_are_augmented_and_runs_repeat(tiny_store, tmp_path, monkeypatch):
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real = loop.random_affine

    def spy(x, cfg, gen=None):
        y = real(x, cfg, gen)
        seen.append((x.clone(), y.clone()))
        return y

    monkeypatch.setattr(loop, "random_affine", spy)
    a = _run(tiny_store, tmp_path / "a", augment=True)
    steps = int(json.loads((a / "last" / "state.json").read_text())["run"]["global_step"])
    assert len(seen) == steps  # once per training step, not for validation
    assert all(x.shape == y.shape and not torch.equal(x, y) for x, y in seen)
    saved = json.loads((a / "config.json").read_text())["train"]["augment"]
    assert saved == AugmentConfig().model_dump()

    b = _run(tiny_store, tmp_path / "b", augment=True)
    plain = _run(tiny_store, tmp_path / "plain")
    wa, wb, wp = _weights(a), _weights(b), _weights(plain)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # same seed, same augmented batches
    assert any(not torch.equal(wa[k], wp[k]) for k in wa)  # and they differ from the plain run's
