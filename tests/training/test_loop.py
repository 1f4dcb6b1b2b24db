"""Training-time input changes (augmentation, coarse noise) reach training batches only, never validation."""

from __future__ import annotations

import json
from pathlib import Path

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


DENOISE = {"denoise": "coarse", "noise_resolution": 4, "noise_std": 0.3}


def test_denoise_corrupts_the_training_input_only(tiny_store, tmp_path, monkeypatch):
    """The network sees noisy training images; the loss gets the clean ones; validation sees clean ones."""
    from vaedx.data.store import TensorStore

    corrupted: list[tuple[torch.Tensor, torch.Tensor]] = []
    targets: list[torch.Tensor] = []
    inputs: list[torch.Tensor] = []
    real_noise, real_loss, real_build = loop.add_coarse_noise, loop.vae_loss, loop.build_model

    def noise_spy(x, resolution, std, gen=None):
        assert (resolution, std) == (4, 0.3)
        y = real_noise(x, resolution, std, gen)
        corrupted.append((x.clone(), y.clone()))
        return y

    def loss_spy(model, x, out, **kw):
        targets.append(x.detach().clone())
        return real_loss(model, x, out, **kw)

    def build_spy(cfg):
        model = real_build(cfg)
        model.register_forward_pre_hook(lambda _m, args: inputs.append(args[0].detach().clone()))
        return model

    monkeypatch.setattr(loop, "add_coarse_noise", noise_spy)
    monkeypatch.setattr(loop, "vae_loss", loss_spy)
    monkeypatch.setattr(loop, "build_model", build_spy)
    out = _run(tiny_store, tmp_path / "d", **DENOISE)

    steps = int(json.loads((out / "last" / "state.json").read_text())["run"]["global_step"])
    assert len(corrupted) == len(targets) == steps  # once per training step, never for validation
    assert all(not torch.equal(x, y) for x, y in corrupted)
    assert all(torch.equal(t, x) for t, (x, _) in zip(targets, corrupted, strict=True))  # clean target
    store = TensorStore.open(tiny_store)
    val_rows = torch.from_numpy(store.images[store.select(split="val")].copy())
    trained = [y for _, y in corrupted]
    validated = [x for x in inputs if not any(x.shape == y.shape and torch.equal(x, y) for y in trained)]
    assert len(inputs) - len(validated) == steps
    assert torch.equal(torch.cat(validated), torch.cat([val_rows] * 2))  # 2 epochs of clean val batches


def test_denoise_settings_are_saved_and_runs_repeat(tiny_store, tmp_path):
    a = _run(tiny_store, tmp_path / "a", **DENOISE)
    saved = json.loads((a / "config.json").read_text())["train"]
    assert {k: saved[k] for k in DENOISE} == DENOISE
    assert json.loads((a / "best" / "config.json").read_text())["train"]["denoise"] == "coarse"
    b = _run(tiny_store, tmp_path / "b", **DENOISE)
    plain = _run(tiny_store, tmp_path / "plain")
    wa, wb, wp = _weights(a), _weights(b), _weights(plain)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # the noise comes from the run's seed
    assert any(not torch.equal(wa[k], wp[k]) for k in wa)
    # a run saved before these options existed loads with them off
    old = json.loads((plain / "config.json").read_text())["train"]
    assert build_config(None, {k: v for k, v in old.items() if k not in DENOISE}).denoise == "none"


def test_a_resumed_denoising_run_matches_an_uninterrupted_one(tiny_store, tmp_path):
    ref = _run(tiny_store, tmp_path / "ref", kind="ae", **DENOISE)
    opts = {**FAST, "store": tiny_store, "out": tmp_path / "r", "epochs": 1, "kind": "ae", **DENOISE}
    out = run_training(None, opts, quiet=True)
    with pytest.raises(ConfigError, match="cannot change noise_std"):
        run_training(None, {"out": out, "epochs": 2, "noise_std": 0.1}, resume=True, quiet=True)
    run_training(None, {"out": out, "epochs": 2}, resume=True, quiet=True)
    wr, wo = _weights(ref), _weights(out)
    assert all(torch.equal(wr[k], wo[k]) for k in wr)


def test_denoise_refusals(tiny_store, tmp_path):
    with pytest.raises(ConfigError, match="denoise applies to vae/ae") as e:
        build_config(None, {"denoise": "coarse", "kind": "pca"})
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="denoise"):
        build_config(None, {"denoise": "fine"})
    with pytest.raises(ConfigError, match="noise_resolution 32 is finer than the 16 px images"):
        _run(tiny_store, tmp_path / "fine", denoise="coarse", noise_resolution=32)


def test_a_monai_transform_reaches_training_and_repeats_with_the_seed(tmp_path: Path) -> None:
    """vaedx.train(..., transform=...): seeded MONAI randomness gives the same weights twice, and the
    transform changes what is learnt; its repr is recorded in config.json."""
    from monai.transforms import RandGaussianNoise

    from train_helpers import make_store
    from vaedx.training.engine import train

    make_store(tmp_path / "s")
    kw = {**FAST, "epochs": 1}
    noise = RandGaussianNoise(prob=1.0, std=0.3)
    a = train(tmp_path / "s", tmp_path / "a", transform=noise, **kw).model.state_dict()
    b = train(tmp_path / "s", tmp_path / "b", transform=noise, **kw).model.state_dict()
    c = train(tmp_path / "s", tmp_path / "c", **kw).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert "RandGaussianNoise" in json.loads((tmp_path / "a" / "config.json").read_text())["transform"]


def test_a_torchio_transform_reaches_training_and_repeats_with_the_seed(tmp_path: Path) -> None:
    """torchio takes 4-D images; the hook gives each 2-D image a depth axis, and torchio's draws follow the
    loop's seeded torch RNG, so two runs give the same weights and differ from a run without it."""
    import torchio as tio

    from train_helpers import make_store
    from vaedx.training.engine import train

    make_store(tmp_path / "s")
    kw = {**FAST, "epochs": 1}
    flip = tio.Compose([tio.RandomFlip(axes=(0, 1), flip_probability=0.5), tio.RandomNoise(std=(0.1, 0.3))])
    a = train(tmp_path / "s", tmp_path / "a", transform=flip, **kw).model.state_dict()
    b = train(tmp_path / "s", tmp_path / "b", transform=flip, **kw).model.state_dict()
    c = train(tmp_path / "s", tmp_path / "c", **kw).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert "RandomFlip" in json.loads((tmp_path / "a" / "config.json").read_text())["transform"]
