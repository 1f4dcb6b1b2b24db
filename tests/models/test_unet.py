"""ConvUNet (arch conv-unet, kind dae): shapes, skips that matter, weights that round-trip, refusals, and the
honesty check on real LGG FLAIR slices: trained on clean images it copies a planted bright blob, trained to
remove coarse noise it does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from vaedx.data.preprocess import PreprocessConfig, apply
from vaedx.errors import ModelMismatchError
from vaedx.io.slice_stack import read_lgg_patient
from vaedx.models import ModelConfig, build_model
from vaedx.models.unet import ConvUNet
from vaedx.training.noise import add_coarse_noise

SMALL = {"in_channels": 1, "latent_dim": 8, "widths": [8, 16, 32]}
SIZE = 64


def _unet(size: int, **kw: object) -> ConvUNet:
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="conv-unet", image_size=size, **{**SMALL, **kw}))
    assert isinstance(model, ConvUNet)
    return model.eval()


def test_arch_conv_unet_is_a_dae_and_other_kinds_are_refused() -> None:
    assert ModelConfig(arch="conv-unet").kind == "dae"
    assert ModelConfig(kind="dae").arch == "conv-unet"
    for bad in ({"kind": "vae", "arch": "conv-unet"}, {"kind": "ae", "arch": "conv-unet"},
                {"kind": "dae", "arch": "conv"}):  # fmt: skip
        with pytest.raises(ValueError, match="denoising autoencoder, kind dae"):
            ModelConfig(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [64, 128, 100])
def test_output_has_the_input_shape(size: int) -> None:
    model = _unet(size)
    x = torch.rand(2, 1, size, size)
    with torch.no_grad():
        out = model(x)
        assert out.x_hat.shape == x.shape and out.mu.shape == (2, 8) and out.logvar is None
        assert torch.equal(model.reconstruct(x), out.x_hat)  # reconstruct passes the skips too
        terms = model.elbo_terms(x, out)
    assert not model.stochastic and float(terms["kl"].abs().sum()) == 0.0
    padded = -(-size // 8) * 8  # three levels: padded to a multiple of 8, one map per resolution
    assert [s.shape[-1] for s in model.features(x)[1]] == [padded // 2**k for k in range(4)]


def test_the_skip_paths_are_used() -> None:
    model = _unet(SIZE)
    x = torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mu, skips = model.features(x)
        full = model.decode_skips(mu, skips)
        for k in range(len(skips)):  # zeroing any one resolution's map changes the output
            cut = [torch.zeros_like(s) if i == k else s for i, s in enumerate(skips)]
            assert (model.decode_skips(mu, cut) - full).abs().max() > 1e-3, k
        other = model.features(torch.rand_like(x))[1]
        assert (model.decode_skips(mu, other) - full).abs().max() > 1e-3  # same code, other maps


def test_decoding_a_latent_alone_is_refused() -> None:
    model = _unet(SIZE)
    with pytest.raises(ModelMismatchError, match="decodes from its encoder's feature maps"):
        model.decode(torch.zeros(1, 8))
    x = torch.rand(1, 1, SIZE, SIZE)
    with pytest.raises(ModelMismatchError, match="cannot decode, sample or interpolate"):
        model.interpolate(x[0], x[0])
    assert not hasattr(model, "sample")


def test_weights_round_trip_through_safetensors(tmp_path: Path) -> None:
    model = _unet(SIZE, residual=1)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "m.safetensors"))
    cfg = ModelConfig.model_validate_json(model.cfg.model_dump_json())
    assert cfg.kind == "dae" and cfg.arch == "conv-unet"
    torch.manual_seed(1)  # a different initialisation, overwritten by the saved weights
    again = build_model(cfg).eval()
    again.load_state_dict(load_file(str(tmp_path / "m.safetensors")))
    x = torch.rand(3, 1, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(again.reconstruct(x), model.reconstruct(x))


# -- the honesty check, on real slices -----------------------------------------------------------------------
def _slices(case: Path, every: int) -> torch.Tensor:
    """Tumour-free slices of the middle three fifths of one FLAIR volume, prepared as `vaedx data prepare`."""
    vol, mask = read_lgg_patient(case)
    cfg, n = PreprocessConfig(size=(SIZE, SIZE)), len(mask)
    out = [apply(vol.data[z], cfg, mask[z])[0] for z in range(n // 5, 4 * n // 5, every) if not mask[z].any()]
    return torch.from_numpy(np.stack(out)).float()


@pytest.fixture(scope="module")
def lgg(lgg_dir: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train, test, test with a bright blob, blob mask): 6 patients to train on, 2 others to test on."""
    cases = sorted(p for p in lgg_dir.iterdir() if p.name.startswith("TCGA"))
    train = torch.cat([_slices(c, 1) for c in cases[:6]])
    test = torch.cat([_slices(c, 3) for c in cases[6:8]])
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    blobs = []
    for img in test[:, 0]:  # a Gaussian blob of peak 0.8 at the head's centre of mass
        fg = (img > 0.2 * img.max()).float()
        cy, cx = (fg * yy).sum() / fg.sum(), (fg * xx).sum() / fg.sum()
        blobs.append(0.8 * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (SIZE / 20) ** 2)))
    blob = torch.stack(blobs)[:, None]
    return train, test, test + blob, blob > 0.4


def _train(train: torch.Tensor, noise: bool, steps: int = 150) -> ConvUNet:
    """A short training with the network's own loss; coarse noise on the inputs when ``noise``."""
    model = _unet(SIZE, widths=[8, 16], latent_dim=16).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = train[torch.randint(len(train), (8,), generator=gen)]
        x_in = add_coarse_noise(x, 16, 0.2, gen) if noise else x
        loss = model.elbo_terms(x, model(x_in))["recon_nll"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _blob_kept(model: ConvUNet, with_blob: torch.Tensor, clean: torch.Tensor, where: torch.Tensor) -> float:
    """Fraction of the planted intensity that the reconstruction gives back inside the blob."""
    with torch.no_grad():
        given_back = model.reconstruct(with_blob) - model.reconstruct(clean)
    return float(given_back[where].sum() / (with_blob - clean)[where].sum())


def test_without_corruption_it_copies_the_input_anomaly_included(lgg: tuple[torch.Tensor, ...]) -> None:
    """Why the arch is a denoising autoencoder only: nothing stops the skips from copying."""
    train, test, with_blob, where = lgg
    model = _train(train, noise=False)
    with torch.no_grad():
        err = (model.reconstruct(test) - test).abs()
    assert float(err.mean()) < 0.05  # on slices of patients it never saw
    assert _blob_kept(model, with_blob, test, where) > 0.8  # and the "lesion" comes back: measured 0.89


def test_trained_to_remove_coarse_noise_it_does_not_copy_a_bright_blob(lgg: tuple[torch.Tensor, ...]) -> None:
    train, test, with_blob, where = lgg
    kept = _blob_kept(_train(train, noise=True), with_blob, test, where)
    assert kept < 0.6  # measured 0.37 here against 0.89 without the noise
