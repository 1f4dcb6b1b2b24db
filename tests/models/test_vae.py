from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from torch.distributions import Bernoulli, Laplace, Normal, kl_divergence

from vaedx.errors import ModelMismatchError
from vaedx.models import ConvAE, ConvVAE, ModelConfig, ModelOutput, ReconstructionModel, build_model


def cfg(c: int = 1, size: int | tuple[int, int] = 16, **kw) -> ModelConfig:
    return ModelConfig(in_channels=c, image_size=size, widths=kw.pop("widths", [8, 16]), latent_dim=6, **kw)


SHAPES = [(1, 28, [8, 16, 16]), (3, 28, [8, 16]), (1, 32, [8, 16, 32]), (3, 32, [8]), (1, 64, [4, 8, 8]),
          (1, (20, 36), [8, 8])]  # fmt: skip


@pytest.mark.parametrize(("c", "size", "widths"), SHAPES)
@pytest.mark.parametrize("cls", [ConvVAE, ConvAE])
def test_shapes(cls, c, size, widths):
    m = cls(cfg(c, size, widths=widths))
    x = torch.rand(3, c, *((size, size) if isinstance(size, int) else size))
    out = m(x)
    assert isinstance(m, ReconstructionModel)
    assert out.x_hat.shape == x.shape and out.mu.shape == out.z.shape == (3, 6)
    assert (out.logvar is None) == (cls is ConvAE)
    assert m.reconstruct(x).shape == x.shape and m.decode(out.mu).shape == x.shape
    assert m.interpolate(x[0], x[1], steps=5).shape == (5, *x.shape[1:])
    terms = m.elbo_terms(x, out)
    assert terms["recon_nll"].shape == terms["kl"].shape == terms["mse"].shape == (3,)


def test_wrong_input_shape_is_a_clear_error():
    with pytest.raises(ModelMismatchError, match=r"expects \(N, 1, 16, 16\)"):
        ConvVAE(cfg())(torch.rand(2, 1, 28, 28))


def test_eval_uses_posterior_mean_and_train_samples():
    torch.manual_seed(0)
    m = ConvVAE(cfg())
    x = torch.rand(4, 1, 16, 16)
    m.eval()
    a, b = m(x), m(x)
    assert torch.equal(a.x_hat, b.x_hat) and torch.equal(a.z, a.mu)
    assert torch.equal(a.x_hat, m.decode(m.encode(x)[0]))
    m.train()
    c, d = m(x), m(x)
    assert not torch.equal(c.z, d.z) and not torch.equal(c.z, c.mu)
    assert torch.allclose(c.mu, d.mu)
    assert torch.equal(m.reconstruct(x), m.reconstruct(x))  # reconstruct is decode(mu) in any mode


def test_ae_is_deterministic_in_train_mode():
    m = ConvAE(cfg()).train()
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(m(x).x_hat, m(x).x_hat)
    assert torch.all(m.elbo_terms(x, m(x))["kl"] == 0)


def _out(mu: torch.Tensor, logvar: torch.Tensor | None, x_hat: torch.Tensor, **kw) -> ModelOutput:
    return ModelOutput(x_hat=x_hat, z=mu, mu=mu, logvar=logvar, **kw)


def test_kl_standard_normal_is_zero_and_known_gaussian_matches_closed_form():
    m = ConvVAE(cfg())
    x = torch.rand(2, 1, 16, 16)
    zero = m.elbo_terms(x, _out(torch.zeros(2, 6), torch.zeros(2, 6), x))
    assert torch.allclose(zero["kl"], torch.zeros(2))
    mu = torch.tensor([[0.5, -1.0, 2.0, 0.0, 0.3, 1.0]] * 2)
    sd = torch.tensor([[0.5, 2.0, 1.0, 0.1, 1.0, 3.0]] * 2)
    kl = m.elbo_terms(x, _out(mu, 2 * sd.log(), x))["kl"]
    closed = 0.5 * (mu**2 + sd**2 - 1 - 2 * sd.log()).sum(1)
    ref = kl_divergence(Normal(mu, sd), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(kl, closed, atol=1e-5) and torch.allclose(kl, ref, atol=1e-5)


@pytest.mark.parametrize("lik", ["gaussian", "laplace", "bernoulli", "gaussian_learned"])
def test_recon_nll_is_a_proper_negative_log_likelihood(lik):
    torch.manual_seed(1)
    m = ConvVAE(cfg(likelihood=lik, sigma=0.2)).eval()
    x = (torch.rand(3, 1, 16, 16) > 0.5).float() if lik == "bernoulli" else torch.rand(3, 1, 16, 16)
    out = m(x)
    nll = m.elbo_terms(x, out)["recon_nll"]
    if lik == "gaussian":
        ref = -Normal(out.x_hat, 0.2).log_prob(x)
    elif lik == "gaussian_learned":
        assert out.recon_logscale is not None
        assert math.isclose(out.recon_logscale.item(), math.log(0.2), rel_tol=1e-6)
        ref = -Normal(out.x_hat, out.recon_logscale.exp()).log_prob(x)
    elif lik == "laplace":
        ref = -Laplace(out.x_hat, 0.2).log_prob(x)
    else:
        assert out.logits is not None and torch.allclose(out.x_hat, torch.sigmoid(out.logits))
        assert out.x_hat.min() >= 0 and out.x_hat.max() <= 1
        ref = -Bernoulli(logits=out.logits).log_prob(x)
    assert torch.allclose(nll, ref.flatten(1).sum(1), rtol=1e-5)


def test_learned_sigma_gets_gradients_per_pixel():
    m = ConvVAE(cfg(likelihood="gaussian_learned", learned_sigma="pixel"))
    x = torch.rand(2, 1, 16, 16)
    m.elbo_terms(x, m(x))["recon_nll"].sum().backward()
    assert m.log_sigma is not None and m.log_sigma.shape == (1, 16, 16)
    assert m.log_sigma.grad is not None and m.log_sigma.grad.abs().sum() > 0


@pytest.mark.parametrize("norm", ["batch", "group", "instance", "none"])
def test_norms_and_residual_blocks(norm):
    m = ConvVAE(cfg(norm=norm, residual=True, widths=[8, 16])).train()
    assert m.cfg.residual == 1
    x = torch.rand(4, 1, 16, 16)
    m.elbo_terms(x, m(x))["neg_elbo"].mean().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_sample_is_reproducible_with_a_generator():
    m = ConvVAE(cfg()).eval()
    a = m.sample(3, generator=torch.Generator().manual_seed(5))
    b = m.sample(3, generator=torch.Generator().manual_seed(5))
    assert a.shape == (3, 1, 16, 16) and torch.equal(a, b)


def test_interpolation_ends_at_the_reconstructions():
    m = ConvVAE(cfg()).eval()
    x = torch.rand(2, 1, 16, 16)
    path = m.interpolate(x[0], x[1], steps=4)
    assert torch.allclose(path[0], m.reconstruct(x[:1])[0], atol=1e-5)
    assert torch.allclose(path[-1], m.reconstruct(x[1:])[0], atol=1e-5)


def test_config_validation():
    with pytest.raises(ValidationError):
        ModelConfig(latent_dim=8, wdiths=[8])  # misspelt option is refused, not ignored
    with pytest.raises(ValidationError):
        ModelConfig(widths=[])
    assert ModelConfig(image_size=28).image_size == (28, 28)
    assert isinstance(build_model(cfg(kind="ae")), ConvAE)
