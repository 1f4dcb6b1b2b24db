"""MONAI VarAutoEncoder adapter: eval mode decodes mu (MONAI's own forward does not), and a run trained
on real images through ``vaedx train --arch monai-varautoencoder`` loads back and scores with every scorer."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_runs import check_trained_run_scores, pneumonia_store, seeded_model, train_run  # noqa: F401
from vaedx.anomaly.registry import SCORER_NAMES
from vaedx.data.store import TensorStore
from vaedx.models import ModelConfig, build_model
from vaedx.models.monai_varautoencoder import MonaiVarAutoEncoder
from vaedx.models.protocol import check_network
from vaedx.runs.loaded import load_model
from vaedx.training.batches import select_indices

ARCH = "monai-varautoencoder"


def _model(**kw: object) -> MonaiVarAutoEncoder:
    return seeded_model(ARCH, 4, **kw)


def test_monai_default_forward_does_not_decode_the_mean_in_eval_mode() -> None:
    """The installed MONAI's reason for the adapter (issue 8413): eval-mode forward decodes mu + std."""
    from monai.networks.nets import VarAutoEncoder

    torch.manual_seed(0)
    net = VarAutoEncoder(2, (1, 28, 28), 1, 4, (8, 16), (2, 2)).eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        mu, logvar = net.encode_forward(x)
        z = net(x)[3]
    torch.testing.assert_close(z, mu + torch.exp(0.5 * logvar))
    assert not torch.allclose(z, mu)


def test_eval_reconstruction_is_deterministic_and_decodes_mu() -> None:
    model = _model().eval()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out1, out2 = model(x), model(x)
        mu, logvar = model.encode(x)
        expected = model.decode(mu)
    assert logvar is not None
    torch.testing.assert_close(out1.z, mu)
    torch.testing.assert_close(out1.x_hat, expected)
    torch.testing.assert_close(out2.x_hat, out1.x_hat, rtol=0, atol=0)
    torch.testing.assert_close(model.reconstruct(x), expected)
    check_network(model)


def test_train_mode_samples_the_posterior() -> None:
    model = _model().train()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        a, b = model(x), model(x)
    assert not torch.allclose(a.z, b.z)
    torch.testing.assert_close(a.mu, b.mu)


@pytest.mark.parametrize("norm", ["group", "batch", "instance", "none"])
@pytest.mark.parametrize("residual", [0, 1])
def test_norms_residual_units_and_odd_sizes_meet_the_protocol(norm: str, residual: int) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(arch=ARCH, in_channels=3, image_size=(30, 36), latent_dim=5, widths=[8, 16],
                      norm=norm, residual=residual)  # fmt: skip
    check_network(build_model(cfg))


def test_bernoulli_decoder_gives_probabilities_and_logits() -> None:
    model = _model(likelihood="bernoulli").eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, 28, 28))
    assert out.logits is not None
    torch.testing.assert_close(out.x_hat, torch.sigmoid(out.logits))


@pytest.fixture(scope="module")
def run(pneumonia_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return train_run(pneumonia_store, tmp_path_factory.mktemp("vae") / "run", ARCH)


@pytest.mark.realdata
def test_trained_run_loads_back_with_its_saved_validation_loss(run: Path, pneumonia_store: Path) -> None:  # noqa: F811
    loaded = load_model(run)
    assert isinstance(loaded.model, MonaiVarAutoEncoder) and not loaded.model.training
    assert loaded.config.model.arch == ARCH
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert len(rows) == 2
    best = min(rows, key=lambda r: float(r["val_loss"]))
    store = TensorStore.open(pneumonia_store)
    idx = select_indices(store, "val", None, 64, loaded.config.seed + 1)
    x = torch.from_numpy(np.asarray(store.images[np.sort(idx)]))
    with torch.no_grad():
        terms = loaded.model.elbo_terms(x, loaded.model(x))
    assert float(terms["neg_elbo"].double().mean()) == pytest.approx(float(best["val_loss"]), rel=1e-4)


@pytest.mark.realdata
@pytest.mark.parametrize("scorer", SCORER_NAMES)
def test_every_scorer_works_on_the_trained_run(run: Path, pneumonia_store: Path, scorer: str) -> None:  # noqa: F811
    check_trained_run_scores(run, pneumonia_store, scorer)
