"""MONAI AutoencoderKL adapter: a flat view of the spatial latent, eval mode decodes mu (MONAI's forward
samples), and a run trained on real images through ``vaedx train --arch monai-autoencoderkl`` loads back
and scores with every scorer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from monai_runs import check_trained_run_scores, pneumonia_store, seeded_model, train_run  # noqa: F401
from vaedx.anomaly.registry import SCORER_NAMES
from vaedx.errors import ConfigError
from vaedx.models import ModelConfig, build_model
from vaedx.models.monai_autoencoderkl import MonaiAutoencoderKL
from vaedx.models.protocol import check_network
from vaedx.runs.loaded import load_model

ARCH = "monai-autoencoderkl"


def _model(**kw: object) -> MonaiAutoencoderKL:
    return seeded_model(ARCH, 3, **kw)


def test_latent_is_the_flattened_spatial_latent() -> None:
    model = _model()
    assert model.latent_grid == (3, 14, 14) and model.latent_dim == 3 * 14 * 14
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        z_mu, z_sigma = model.net.encode(x)
    torch.testing.assert_close(mu, z_mu.flatten(1))
    assert logvar is not None
    torch.testing.assert_close(torch.exp(0.5 * logvar), z_sigma.flatten(1))


def test_eval_reconstruction_is_deterministic_and_decodes_mu() -> None:
    model = _model().eval()
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out1, out2 = model(x), model(x)
        mu, _ = model.encode(x)
        expected = model.decode(mu)
        monai_recon = model.net(x)[0]  # MONAI's forward samples z even in eval mode
    torch.testing.assert_close(out1.x_hat, expected)
    torch.testing.assert_close(out2.x_hat, out1.x_hat, rtol=0, atol=0)
    torch.testing.assert_close(model.net.reconstruct(x), expected)
    assert not torch.allclose(monai_recon, expected)
    check_network(model)


@pytest.mark.parametrize("size", [28, (30, 36)])
def test_odd_sizes_and_kind_ae_meet_the_protocol(size: object) -> None:
    torch.manual_seed(0)
    for kind in ("vae", "ae"):
        check_network(build_model(ModelConfig(arch=ARCH, kind=kind, in_channels=2, image_size=size,
                                              latent_dim=2, widths=[8, 16, 16], residual=2)))  # fmt: skip


def test_norm_other_than_group_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="GroupNorm built in"):
        _model(norm="batch")


@pytest.fixture(scope="module")
def run(pneumonia_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return train_run(pneumonia_store, tmp_path_factory.mktemp("kl") / "run", ARCH, "--latent-dim", "2")


@pytest.mark.realdata
def test_trained_run_loads_back(run: Path) -> None:
    loaded = load_model(run)
    assert isinstance(loaded.model, MonaiAutoencoderKL) and not loaded.model.training
    assert loaded.config.model.arch == ARCH and loaded.model.latent_grid == (2, 14, 14)
    torch.manual_seed(loaded.config.seed)  # the engine's initialisation: the weights before training
    fresh = build_model(loaded.config.model).state_dict()
    trained = loaded.model.state_dict()
    assert fresh.keys() == trained.keys()
    key = "net.encoder.blocks.0.conv.weight"
    assert not torch.equal(fresh[key], trained[key])


@pytest.mark.realdata
@pytest.mark.parametrize("scorer", SCORER_NAMES)
def test_every_scorer_works_on_the_trained_run(run: Path, pneumonia_store: Path, scorer: str) -> None:  # noqa: F811
    check_trained_run_scores(run, pneumonia_store, scorer)
