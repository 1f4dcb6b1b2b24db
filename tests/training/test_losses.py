from __future__ import annotations

import pytest
import torch

from vaedx.models import ConvAE, ConvVAE, ModelConfig
from vaedx.training.losses import free_bits_kl, kl_weight, vae_loss


def _model(kind=ConvVAE):
    torch.manual_seed(0)
    return kind(ModelConfig(in_channels=1, image_size=16, widths=[8, 16], latent_dim=4))


def test_beta_zero_vs_one_differs_by_the_summed_kl():
    m = _model().eval()
    x = torch.rand(5, 1, 16, 16)
    out = m(x)
    l0, _ = vae_loss(m, x, out, beta=0.0)
    l1, logs = vae_loss(m, x, out, beta=1.0)
    terms = m.elbo_terms(x, out)
    assert torch.allclose(l0, terms["recon_nll"].mean())
    assert torch.allclose(l1 - l0, terms["kl"].mean(), atol=1e-3)  # KL summed over dims, not averaged
    assert torch.allclose(l1, terms["neg_elbo"].mean())  # beta=1 is the negative ELBO
    assert logs["kl"] > 0


def test_ae_loss_has_no_kl_and_ssim_term_adds():
    m = _model(ConvAE)
    x = torch.rand(3, 1, 16, 16)
    out = m(x)
    plain, _ = vae_loss(m, x, out, beta=5.0)
    assert torch.allclose(plain, m.elbo_terms(x, out)["recon_nll"].mean())
    assert torch.equal(vae_loss(m, x, out, beta=5.0, free_bits=1.0)[0], plain)  # no KL floor for the AE
    with_ssim, _ = vae_loss(m, x, out, beta=5.0, ssim_weight=2.0)
    assert with_ssim > plain


@pytest.mark.parametrize(
    ("step", "expected"), [(0, 0.0), (10, 0.5), (15, 0.75), (20, 1.0), (500, 1.0)]
)
def test_linear_annealing(step, expected):
    # 2 epochs x 10 steps of warm-up to beta=1, updated every step
    got = kl_weight(step, beta=1.0, schedule="linear", steps_per_epoch=10, anneal_epochs=2)
    assert got == pytest.approx(expected)


def test_cyclical_annealing_restarts_each_cycle():
    kw = {"beta": 2.0, "schedule": "cyclical", "steps_per_epoch": 10, "total_steps": 100, "cycles": 4}
    values = [kl_weight(s, **kw) for s in range(100)]
    period = 25  # 100 steps / 4 cycles; ramp over the first half (12.5 steps)
    assert values[0] == values[period] == values[2 * period] == 0.0
    assert values[5] == pytest.approx(2.0 * 5 / 12.5)
    assert values[13] == values[24] == 2.0
    assert kl_weight(7, beta=3.0, schedule="none", steps_per_epoch=10) == 3.0


def test_free_bits_floor_per_dimension():
    kl = torch.tensor([[0.01, 0.02, 2.0, 5.0], [0.03, 0.0, 4.0, 5.0]])  # batch mean: .02 .01 3 5
    assert free_bits_kl(kl, 0.0).item() == pytest.approx(8.03)
    assert free_bits_kl(kl, 0.5).item() == pytest.approx(0.5 + 0.5 + 3 + 5)
    # below the floor there is no gradient pushing the KL further down
    k = kl.clone().requires_grad_()
    free_bits_kl(k, 0.5).backward()
    assert torch.all(k.grad[:, :2] == 0) and torch.all(k.grad[:, 2:] == 0.5)


def test_the_inpainting_term_is_the_nll_of_the_masked_reconstruction_against_the_clean_image():
    m = _model().eval()
    x = torch.rand(4, 1, 16, 16)
    masked = x.clone()
    masked[:, :, 4:10, 4:10] = 0.0
    out, out_ce = m(x), m(masked)
    plain, plain_logs = vae_loss(m, x, out, beta=1.0)
    with_ce, logs = vae_loss(m, x, out, beta=1.0, out_ce=out_ce, ce_weight=0.5)
    against_clean = m.elbo_terms(x, out_ce)["recon_nll"].mean()
    against_masked = m.elbo_terms(masked, out_ce)["recon_nll"].mean()
    assert torch.allclose(with_ce - plain, 0.5 * against_clean)
    assert not torch.allclose(against_clean, against_masked)
    assert torch.equal(logs["ce"], against_clean.detach()) and logs["recon"] == plain_logs["recon"]


def test_zero_inpainting_weight_is_exactly_the_plain_loss():
    m = _model().train()
    x = torch.rand(4, 1, 16, 16)
    torch.manual_seed(1)
    out = m(x)
    out_ce = m(x.flip(-1))
    plain, plain_logs = vae_loss(m, x, out, beta=2.0, free_bits=0.1, ssim_weight=0.5)
    zero, logs = vae_loss(m, x, out, beta=2.0, free_bits=0.1, ssim_weight=0.5, out_ce=out_ce, ce_weight=0.0)
    assert torch.equal(zero, plain) and logs.keys() == plain_logs.keys()
    grads = torch.autograd.grad(zero, list(m.parameters()), allow_unused=True, retain_graph=True)
    ref = torch.autograd.grad(plain, list(m.parameters()), allow_unused=True)
    assert all(torch.equal(a, b) for a, b in zip(grads, ref, strict=True) if a is not None)
