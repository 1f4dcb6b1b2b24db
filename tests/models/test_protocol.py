"""check_network: vaedx's own models meet the protocol; each broken promise is named in one line."""

from __future__ import annotations

import pytest
import torch

from vaedx.errors import ModelMismatchError
from vaedx.models import ConvAE, ConvVAE, ModelConfig
from vaedx.models.protocol import VaedxNetwork, check_network

CFG = ModelConfig(in_channels=1, image_size=16, latent_dim=3, widths=[8, 16])


@pytest.mark.parametrize("cls", [ConvVAE, ConvAE])
def test_vaedx_models_meet_the_protocol(cls: type) -> None:
    model = cls(CFG.model_copy(update={"kind": "vae" if cls is ConvVAE else "ae"}))
    assert isinstance(model, VaedxNetwork)
    model.train()
    check_network(model)
    assert model.training  # the caller's mode is given back


class _SamplesInEval(ConvVAE):
    """What MONAI's VarAutoEncoder does by default: z = mu + std outside training."""

    def _latent(self, mu: torch.Tensor, logvar: torch.Tensor | None) -> torch.Tensor:
        return mu + torch.exp(0.5 * logvar)  # type: ignore[operator]


class _WrongLatent(ConvVAE):
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        mu, logvar = super().encode(x)
        return mu[:, :2], logvar


class _NoLogvar(ConvVAE):
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return super().encode(x)[0], None


@pytest.mark.parametrize(
    ("cls", "problem"),
    [
        (_SamplesInEval, "must decode the posterior mean"),
        (_WrongLatent, r"mu of shape \(2, 2\), not \(N, latent_dim=3\)"),
        (_NoLogvar, "stochastic is True but encode gave logvar=None"),
    ],
)
def test_broken_promises_are_named(cls: type, problem: str) -> None:
    with pytest.raises(ModelMismatchError, match=problem):
        check_network(cls(CFG))


def test_a_plain_module_lacks_the_members() -> None:
    with pytest.raises(ModelMismatchError, match="lacks cfg, latent_dim, image_shape, stochastic, encode"):
        check_network(torch.nn.Linear(2, 2))
    with pytest.raises(ModelMismatchError, match="not a torch.nn.Module"):
        check_network(object())
