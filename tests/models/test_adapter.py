"""NetworkAdapter: a user's own encoder/decoder becomes a vaedx model that every scorer accepts, and the
MONAI import fails in one line naming the extra."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

from monai_runs import check_scorer
from vaedx.anomaly.registry import SCORER_NAMES, available_scorers
from vaedx.errors import ConfigError
from vaedx.models import ConvVAE, ModelConfig
from vaedx.models.adapter import NetworkAdapter, import_monai_nets
from vaedx.models.protocol import check_network


class MLPVAE(NetworkAdapter):
    """The smallest network a user might bring: two linear maps."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, multiple=4)
        flat = int(np.prod(self.padded_shape))
        self.enc = nn.Linear(flat, 2 * cfg.latent_dim)
        self.dec = nn.Linear(cfg.latent_dim, flat)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.enc(x.flatten(1)).chunk(2, dim=1)
        return mu, logvar

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z).view(-1, *self.padded_shape)


CFG = ModelConfig(in_channels=1, image_size=(14, 18), latent_dim=3)


def _images() -> torch.Tensor:
    return torch.rand(5, 1, 14, 18, generator=torch.Generator().manual_seed(0))


def test_padding_is_cropped_back_and_the_protocol_holds() -> None:
    torch.manual_seed(0)
    model = MLPVAE(CFG)
    assert model.padded_shape == (1, 16, 20)
    check_network(model)
    assert model.sample(4).shape == (4, 1, 14, 18)
    assert model.interpolate(_images()[0], _images()[1], steps=5).shape == (5, 1, 14, 18)


def test_elbo_is_convvae_s_formula() -> None:
    """The adapter's likelihood and KL are ConvVAE's code: the same output gives the same terms."""
    torch.manual_seed(0)
    model, ref = MLPVAE(CFG).eval(), ConvVAE(CFG)
    x = _images()
    with torch.no_grad():
        out = model(x)
        mine, theirs = model.elbo_terms(x, out), ref.elbo_terms(x, out)
    for k in mine:
        torch.testing.assert_close(mine[k], theirs[k])


@pytest.mark.parametrize("scorer", SCORER_NAMES)
def test_every_scorer_accepts_a_user_network(scorer: str) -> None:
    torch.manual_seed(0)
    model = MLPVAE(CFG)
    assert scorer in available_scorers(model)
    check_scorer(model, scorer, _images())


def test_kind_ae_has_no_posterior_variance_and_fewer_scorers() -> None:
    model = MLPVAE(CFG.model_copy(update={"kind": "ae"}))
    check_network(model)
    assert model.encode(_images())[1] is None
    assert "elbo" not in available_scorers(model) and "residual" in available_scorers(model)


def test_pca_kind_is_refused() -> None:
    with pytest.raises(ConfigError, match="kind must be vae or ae"):
        MLPVAE(CFG.model_copy(update={"kind": "pca"}))


def test_missing_monai_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "monai", None)  # import monai now raises ImportError
    monkeypatch.delitem(sys.modules, "monai.networks", raising=False)
    with pytest.raises(ConfigError, match=r"needs MONAI: pip install 'vaedx\[monai\]'"):
        import_monai_nets("monai-varautoencoder")
