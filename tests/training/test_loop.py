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


CONTEXT = {"context_encoding": True, "ce_weight": 0.5, "ce_patches": 2, "ce_fill": "zero"}


@pytest.fixture(scope="module")
def lgg_store(lgg_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real FLAIR slices of two LGG patients at 32 px (the second is the val split)."""
    from lgg_volume_model import make_lgg_volume_store

    return make_lgg_volume_store(lgg_dir, tmp_path_factory.mktemp("lgg") / "store", n_patients=2)


def _lgg(store, out, **kw):
    opts = {**FAST, "store": store, "out": out, "epochs": 1, "max_images": 24, "batch_size": 8, **kw}
    return run_training(None, opts, quiet=True)


def test_context_encoding_trains_on_real_slices_with_masked_copies_and_saves_the_option(
    lgg_store, tmp_path, monkeypatch
):
    """Each training step feeds the clean batch and its masked copy in one forward pass; the loss gets
    the clean images and the masked copy's output; validation sees clean images only."""
    from vaedx.anomaly.registry import build_scorer
    from vaedx.data.store import TensorStore
    from vaedx.runs.loaded import load_model

    masked_batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    inputs: list[torch.Tensor] = []
    losses: list[dict] = []
    real_mask, real_loss, real_build = loop.mask_patches, loop.vae_loss, loop.build_model

    def mask_spy(x, patches, lo, hi, fill, gen=None):
        assert (patches, lo, hi, fill) == (2, 0.1, 0.3, "zero")
        y = real_mask(x, patches, lo, hi, fill, gen)
        masked_batches.append((x.clone(), y.clone()))
        return y

    def loss_spy(model, x, out, **kw):
        losses.append({"x": x.detach().clone(), "n_out": len(out.x_hat), **kw})
        return real_loss(model, x, out, **kw)

    def build_spy(cfg):
        model = real_build(cfg)
        model.register_forward_pre_hook(lambda _m, args: inputs.append(args[0].detach().clone()))
        return model

    monkeypatch.setattr(loop, "mask_patches", mask_spy)
    monkeypatch.setattr(loop, "vae_loss", loss_spy)
    monkeypatch.setattr(loop, "build_model", build_spy)
    out = _lgg(lgg_store, tmp_path / "ce", **CONTEXT)

    steps = int(json.loads((out / "last" / "state.json").read_text())["run"]["global_step"])
    assert steps == 3 and len(masked_batches) == len(losses) == steps  # 24 images, batches of 8
    for (x, y), seen, got in zip(masked_batches, inputs, losses, strict=False):
        assert (y != x).any() and (y[y != x] == 0).all()  # zero-filled rectangles
        assert torch.equal(seen, torch.cat([x, y]))  # one forward pass over both
        assert torch.equal(got["x"], x) and got["n_out"] == len(x)  # the loss compares with the clean x
        assert got["ce_weight"] == 0.5 and len(got["out_ce"].x_hat) == len(x)
    store = TensorStore.open(lgg_store)
    val = torch.from_numpy(store.images[store.select(split="val")[:24]].copy())
    assert torch.equal(torch.cat(inputs[steps:]), val)  # validation: clean images, once

    saved = json.loads((out / "best" / "config.json").read_text())["train"]
    assert {k: saved[k] for k in CONTEXT} == CONTEXT
    loaded = load_model(out)
    assert loaded.config.context_encoding and loaded.config.ce_weight == 0.5
    maps = build_scorer("combi", loaded.model).score(val[:4]).maps  # the scorer the recipe recommends
    assert maps.shape == (4, 32, 32) and (maps.reshape(4, -1).max(1) > 0).all()


def test_zero_ce_weight_trains_exactly_as_the_plain_vae(lgg_store, tmp_path):
    plain = _lgg(lgg_store, tmp_path / "plain")
    zero = _lgg(lgg_store, tmp_path / "zero", **{**CONTEXT, "ce_weight": 0.0})
    ce = _lgg(lgg_store, tmp_path / "ce", **CONTEXT)
    wp, wz, wc = _weights(plain), _weights(zero), _weights(ce)
    assert all(torch.equal(wp[k], wz[k]) for k in wp)
    assert any(not torch.equal(wp[k], wc[k]) for k in wp)
    # a run saved before these options existed loads with context encoding off
    old = json.loads((plain / "config.json").read_text())["train"]
    old = {k: v for k, v in old.items() if not k.startswith("ce_") and k != "context_encoding"}
    assert build_config(None, old).context_encoding is False


def test_a_resumed_context_encoding_run_matches_an_uninterrupted_one(lgg_store, tmp_path):
    ref = _lgg(lgg_store, tmp_path / "ref", epochs=2, **CONTEXT)
    out = _lgg(lgg_store, tmp_path / "r", **CONTEXT)
    for change in ({"ce_weight": 1.0}, {"context_encoding": False}, {"ce_max_cover": 0.5}):
        with pytest.raises(ConfigError, match=f"cannot change {next(iter(change))}"):
            run_training(None, {"out": out, "epochs": 2, **change}, resume=True, quiet=True)
    run_training(None, {"out": out, "epochs": 2}, resume=True, quiet=True)
    wr, wo = _weights(ref), _weights(out)
    assert all(torch.equal(wr[k], wo[k]) for k in wr)


@pytest.mark.parametrize(
    ("opts", "said"),
    [
        ({"kind": "pca"}, "context_encoding applies to vae/ae"),
        ({"denoise": "coarse"}, "context_encoding and denoise are separate recipes"),
        ({"ce_min_cover": 0.4, "ce_max_cover": 0.2}, "ce_min_cover must not exceed ce_max_cover"),
        ({"ce_max_cover": 1.5}, "ce_max_cover"),
        ({"ce_fill": "blur"}, "ce_fill"),
    ],
)
def test_context_encoding_refusals(opts, said):
    with pytest.raises(ConfigError, match=said) as e:
        build_config(None, {"context_encoding": True, **opts})
    assert "\n" not in str(e.value)
