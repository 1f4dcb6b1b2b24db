"""LatentAutoencoder: the one forward / reconstruct / interpolate behind ConvVAE, ConvAE and every
NetworkAdapter, checked on a model whose encoder and decoder are known in closed form."""

from __future__ import annotations

import pytest
import torch

from vaedx.models import ConvAE, ConvVAE, ModelConfig
from vaedx.models.adapter import NetworkAdapter
from vaedx.models.base import LatentAutoencoder


class _Affine(LatentAutoencoder):
    """mu = x (flattened), logvar = log(0.25) (std 0.5), decode_raw(z) = 2 z: every output is known."""

    def __init__(self, likelihood: str = "gaussian", stochastic: bool = True):
        super().__init__()
        self.cfg = ModelConfig(in_channels=1, image_size=(2, 2), latent_dim=4, likelihood=likelihood)
        self.image_shape = (1, 2, 2)
        self.stochastic = stochastic
        self.scale = torch.nn.Parameter(torch.tensor(2.0))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        mu = x.flatten(1)
        return mu, (torch.full_like(mu, torch.log(torch.tensor(0.25)).item()) if self.stochastic else None)

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        return (self.scale * z).view(-1, *self.image_shape)

    def recon_logscale(self) -> torch.Tensor | None:
        return None


def test_every_torch_model_runs_the_same_forward() -> None:
    for cls in (ConvVAE, ConvAE, NetworkAdapter):
        assert cls.forward is LatentAutoencoder.forward and cls.reconstruct is LatentAutoencoder.reconstruct


def test_train_mode_draws_from_the_posterior_and_eval_mode_decodes_its_mean() -> None:
    model = _Affine()
    x = torch.arange(4.0).view(1, 1, 2, 2).expand(20000, 1, 2, 2)
    torch.manual_seed(0)
    out = model.train()(x)
    assert out.z.mean(0).tolist() == pytest.approx([0, 1, 2, 3], abs=0.02)
    assert out.z.std(0).tolist() == pytest.approx([0.5] * 4, abs=0.02)
    torch.testing.assert_close(out.x_hat, 2 * out.z.view(-1, 1, 2, 2))
    torch.testing.assert_close(out.mu, x.flatten(1))
    ev = model.eval()(x[:2])
    torch.testing.assert_close(ev.z, x[:2].flatten(1))
    torch.testing.assert_close(ev.x_hat, 2 * x[:2])
    assert ev.logits is None and ev.recon_logscale is None


def test_a_deterministic_model_decodes_the_mean_in_train_mode_too() -> None:
    model = _Affine(stochastic=False).train()
    x = torch.rand(3, 1, 2, 2)
    out = model(x)
    assert out.logvar is None
    torch.testing.assert_close(out.z, x.flatten(1))
    torch.testing.assert_close(model.reconstruct(x), 2 * x)


def test_bernoulli_outputs_probabilities_and_keeps_the_logits() -> None:
    model = _Affine("bernoulli").eval()
    x = torch.rand(2, 1, 2, 2)
    out = model(x)
    torch.testing.assert_close(out.logits, 2 * x)
    torch.testing.assert_close(out.x_hat, torch.sigmoid(2 * x))
    torch.testing.assert_close(model.train().reconstruct(x), torch.sigmoid(2 * x))  # decode(mu) in any mode


def test_interpolation_runs_between_the_posterior_means() -> None:
    model = _Affine().eval()
    a, b = torch.zeros(1, 2, 2), torch.ones(1, 2, 2)
    path = model.interpolate(a, b, steps=5)
    assert path.shape == (5, 1, 2, 2)
    torch.testing.assert_close(path[:, 0, 0, 0], 2 * torch.linspace(0, 1, 5))
