"""FastConvVAE / FastConvAE (arch conv-fast): no convolution at full resolution, the same latent and
bottleneck as ConvVAE, weights that round-trip through a real ``vaedx train --arch conv-fast`` run, real
training that lowers the loss, and every scorer on the trained run."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from monai_runs import check_trained_run_scores, pneumonia_store, train_run  # noqa: F401
from vaedx.anomaly.registry import SCORER_NAMES
from vaedx.data.store import TensorStore
from vaedx.models import ModelConfig, build_model
from vaedx.models.fastconv import FastConvAE, FastConvVAE
from vaedx.models.protocol import check_network
from vaedx.runs.loaded import load_model
from vaedx.training.batches import select_indices

ARCH = "conv-fast"
WIDTHS = {28: [8, 16, 32], 64: [8, 16, 32, 64], 128: [8, 16, 32, 64]}


def _model(size: int, kind: str = "vae", arch: str = ARCH, **kw: object) -> nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(kind=kind, arch=arch, in_channels=1, image_size=size, latent_dim=6, widths=WIDTHS[size],
                      **kw)  # type: ignore[arg-type]  # fmt: skip
    return build_model(cfg)


def _conv_maps(model: nn.Module, x: torch.Tensor) -> list[tuple[int, int]]:
    """(input side, output side) of every convolution the forward pass runs."""
    seen: list[tuple[int, int]] = []
    hooks = [m.register_forward_hook(lambda _m, i, o: seen.append((i[0].shape[-1], o.shape[-1])))
             for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]  # fmt: skip
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("size", [28, 64, 128])
@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_output_shape_latent_and_bottleneck_match_convvae(size: int, kind: str) -> None:
    model, conv = _model(size, kind).eval(), _model(size, kind, arch="conv")
    assert isinstance(model, FastConvVAE if kind == "vae" else FastConvAE)
    x = torch.rand(3, 1, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x)
    assert out.x_hat.shape == x.shape and out.mu.shape == (3, 6)
    assert (out.logvar is None) == (kind == "ae")
    assert model._bottleneck == conv._bottleneck  # type: ignore[attr-defined]
    assert model.to_latent.weight.shape == conv.to_latent.weight.shape  # type: ignore[union-attr]
    check_network(model)


@pytest.mark.parametrize("size", [28, 64, 128])
def test_no_convolution_runs_at_full_resolution(size: int) -> None:
    """The point of the arch: the padded image side (32 for 28 px) is never a convolution's input or output,
    where ConvVAE has its stem and head."""
    padded = -(-size // 2 ** len(WIDTHS[size])) * 2 ** len(WIDTHS[size])
    x = torch.rand(2, 1, size, size)
    fast, conv = _conv_maps(_model(size).eval(), x), _conv_maps(_model(size, arch="conv").eval(), x)
    assert all(max(i, o) <= padded // 2 for i, o in fast), fast
    assert sum(max(i, o) == padded for i, o in conv) >= 3  # stem, last up-sampling level, head


def test_every_output_pixel_depends_on_the_latent() -> None:
    """The sub-pixel head fills all four phases of each 2x2 block from the code: no pixel is a constant."""
    model = _model(64).eval()
    z = torch.randn(1, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # the code, then the code moved along each latent axis in turn
        out = model.decode(torch.cat([z, z + 0.5 * torch.eye(6)]))
    moved = (out[1:] - out[:1]).abs().amax(dim=0)[0]  # (64, 64): the largest change of each pixel
    assert bool((moved > 1e-6).all())


def test_eval_decodes_the_mean_and_train_samples() -> None:
    model = _model(28)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        model.eval()
        a, b = model(x), model(x)
        torch.testing.assert_close(a.x_hat, b.x_hat, rtol=0, atol=0)
        torch.testing.assert_close(a.x_hat, model.decode(model.encode(x)[0]))
        model.train()
        c, d = model(x), model(x)
    assert not torch.allclose(c.z, d.z)
    assert model.sample(5, torch.Generator().manual_seed(0)).shape == (5, 1, 28, 28)  # type: ignore[operator]


def test_real_training_steps_lower_the_loss(pneumonia_npz: Path) -> None:
    """40 AdamW steps on real chest X-rays lower the negative ELBO of 128 held-out validation images."""
    raw = np.load(pneumonia_npz)
    train = torch.from_numpy(raw["train_images"][:640, None].astype(np.float32) / 255)
    val = torch.from_numpy(raw["val_images"][:128, None].astype(np.float32) / 255)
    model = _model(28)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)

    def val_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(model.elbo_terms(val, model(val))["neg_elbo"].mean())  # type: ignore[operator]

    before = val_loss()
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(40):
        x = train[torch.randint(len(train), (32,), generator=gen)]
        loss = model.elbo_terms(x, model(x))["neg_elbo"].mean()  # type: ignore[operator]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = val_loss()
    assert after < 0.5 * before, (before, after)


# -- a real run: vaedx train --arch conv-fast, saved and loaded back -----------------------------------------
@pytest.fixture(scope="module")
def run(pneumonia_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return train_run(pneumonia_store, tmp_path_factory.mktemp("fast") / "run", ARCH)


@pytest.mark.realdata
def test_trained_run_loads_back_from_safetensors(run: Path, pneumonia_store: Path) -> None:  # noqa: F811
    """The run folder's config.json + model.safetensors rebuild the same network: its validation loss is
    the one training logged for the best epoch."""
    assert (run / "best" / "model.safetensors").exists()
    loaded = load_model(run)
    assert isinstance(loaded.model, FastConvVAE) and not loaded.model.training
    assert loaded.config.model.arch == ARCH
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    best = min(rows, key=lambda r: float(r["val_loss"]))
    store = TensorStore.open(pneumonia_store)
    idx = select_indices(store, "val", None, 64, loaded.config.seed + 1)
    x = torch.from_numpy(np.asarray(store.images[np.sort(idx)]))
    with torch.no_grad():
        terms = loaded.model.elbo_terms(x, loaded.model(x))
    assert float(terms["neg_elbo"].double().mean()) == pytest.approx(float(best["val_loss"]), rel=1e-4)


@pytest.mark.realdata
def test_conv_weights_do_not_load_into_conv_fast(run: Path) -> None:
    """The layers differ, so a checkpoint is rebuilt only by the arch it names: loading fails loudly."""
    from safetensors.torch import load_file

    loaded = load_model(run)
    conv = build_model(loaded.config.model.model_copy(update={"arch": "conv"}))
    with pytest.raises(RuntimeError, match="state_dict"):
        conv.load_state_dict(load_file(str(run / "best" / "model.safetensors")))


@pytest.mark.realdata
@pytest.mark.parametrize("scorer", SCORER_NAMES)
def test_every_scorer_works_on_the_trained_run(run: Path, pneumonia_store: Path, scorer: str) -> None:  # noqa: F811
    check_trained_run_scores(run, pneumonia_store, scorer)
