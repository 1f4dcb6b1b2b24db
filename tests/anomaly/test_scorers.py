"""Anomaly scorers: shapes, finiteness, localisation on synthetic lesions, likelihood identities, registry."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

import vaedx.anomaly as sc
from cuda_fixtures import AUROC_TOL, FP32_RTOL, relative_gap
from vaedx.errors import ConfigError, InputError, ModelMismatchError
from vaedx.models import ConvAE, ConvVAE, PCABaseline
from vaedx.models.base import ModelOutput
from vaedx.models.config import ModelConfig

S = 16  # image side used throughout: tiny, so the whole file runs in seconds on a shared CPU


# ------------------------------------------------------------------------------------------ tiny test models
class TinyVAE(nn.Module):
    """MLP VAE with the documented interface only (encode/decode/forward/reconstruct/elbo_terms, ``config``),
    no pixel_nll/cfg/image_shape: scorers must not depend on ConvVAE internals."""

    def __init__(self, latent: int = 4) -> None:
        super().__init__()
        self.config = ModelConfig(in_channels=1, image_size=S, latent_dim=latent, sigma=0.1)
        self.latent_dim = latent
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(S * S, 32), nn.Tanh(), nn.Linear(32, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, 32), nn.Tanh(), nn.Linear(32, S * S))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        mu, logvar = self.enc(x).chunk(2, dim=1)
        return mu, logvar.clamp(-8, 4)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.dec(z)).view(-1, 1, S, S)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if self.training else mu
        return ModelOutput(self.decode(z), z, mu, logvar)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)[0])

    def elbo_terms(self, x: torch.Tensor, out: ModelOutput) -> dict[str, torch.Tensor]:
        sigma = self.config.sigma
        nll = 0.5 * ((x - out.x_hat) / sigma) ** 2 + math.log(sigma) + 0.5 * math.log(2 * math.pi)
        kl = 0.5 * (out.mu**2 + out.logvar.exp() - 1 - out.logvar).sum(1)
        return {"recon_nll": nll.flatten(1).sum(1), "kl": kl}


def smooth_images(n: int, seed: int = 0) -> torch.Tensor:
    """Healthy stand-ins: a constant level plus gentle ramps - nothing square-shaped."""
    g = torch.Generator().manual_seed(seed)
    level = 0.25 + 0.3 * torch.rand(n, 1, 1, 1, generator=g)
    ramp = torch.linspace(-1, 1, S)
    a, b = (0.1 * (torch.rand(n, 1, 1, 1, generator=g) - 0.5) for _ in range(2))
    return (level + a * ramp.view(1, 1, S, 1) + b * ramp.view(1, 1, 1, S)).clamp(0, 1)


def with_square(x: torch.Tensor, value: float) -> tuple[torch.Tensor, np.ndarray]:
    """Copy of x with a 5x5 square set to ``value``, and the (H, W) bool mask of the square."""
    mask = np.zeros((S, S), dtype=bool)
    mask[5:10, 6:11] = True
    out = x.clone()
    out[:, :, 5:10, 6:11] = value
    return out, mask


def train(model: nn.Module, x: torch.Tensor, steps: int = 100) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        out = model(x)
        terms = model.elbo_terms(x, out)
        loss = (terms["recon_nll"] + terms["kl"]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)  # so tests can check that scoring leaves .grad alone
    return model.eval()


@pytest.fixture(scope="module")
def healthy() -> torch.Tensor:
    return smooth_images(32)


def conv_cfg(**cfg: object) -> ModelConfig:
    """The real conv models at their smallest: 16x16, two levels of 8 and 16 channels, 4 latents."""
    return ModelConfig(**{"in_channels": 1, "image_size": S, "latent_dim": 4, "widths": [8, 16], **cfg})


@pytest.fixture(scope="module")
def vae(healthy: torch.Tensor) -> ConvVAE:
    torch.manual_seed(0)
    return train(ConvVAE(conv_cfg()), healthy)


@pytest.fixture(scope="module")
def ae(healthy: torch.Tensor) -> ConvAE:
    torch.manual_seed(0)
    return train(ConvAE(conv_cfg(kind="ae")), healthy)


@pytest.fixture(scope="module")
def pca(healthy: torch.Tensor) -> PCABaseline:
    return PCABaseline(3).fit(healthy)


@pytest.fixture(scope="module")
def tiny(healthy: torch.Tensor) -> TinyVAE:
    """Stand-in without pixel_nll and with ``.config``: exercises the scorers' own likelihood code."""
    torch.manual_seed(0)
    return train(TinyVAE(), healthy)


@pytest.fixture()
def batch() -> torch.Tensor:
    return smooth_images(3, seed=1)


FAST = {"restoration": {"steps": 5}, "uncertainty": {"m": 3}}


# ---------------------------------------------------------------------------------------- shapes and values
@pytest.mark.parametrize("name", sc.SCORER_NAMES)
def test_every_scorer_gives_finite_maps_and_scores_of_the_right_shape(name, vae, batch):
    result = sc.build_scorer(name, vae, **FAST.get(name, {})).score(batch)
    assert result.maps.shape == (3, S, S) and result.maps.dtype == np.float32
    assert result.scores.shape == (3,)
    assert np.isfinite(result.maps).all() and np.isfinite(result.scores).all()
    assert all(v.shape[0] == 3 for v in result.extra.values())


@pytest.mark.parametrize("name", sc.SCORER_NAMES)
def test_every_scorer_works_with_an_interface_only_vae(name, tiny, batch):
    result = sc.build_scorer(name, tiny, **FAST.get(name, {})).score(batch)
    assert result.maps.shape == (3, S, S) and np.isfinite(result.scores).all()
    if name == "elbo":  # the scorers' own Gaussian NLL map sums to the model's recon_nll
        with torch.no_grad():
            recon_nll = tiny.elbo_terms(batch, tiny(batch))["recon_nll"].numpy()
        np.testing.assert_allclose(result.maps.sum((1, 2)), recon_nll, rtol=1e-4)


@pytest.mark.parametrize("name", ["residual", "ssim", "elbo", "grad_kl"])
def test_constant_images_score_finite(name, vae):
    x = torch.stack([torch.zeros(1, S, S), torch.ones(1, S, S), torch.full((1, S, S), 0.5)])
    result = sc.build_scorer(name, vae).score(x)
    assert np.isfinite(result.maps).all() and np.isfinite(result.scores).all()


def test_batching_does_not_change_results(vae, healthy):
    whole = sc.build_scorer("elbo", vae, batch_size=64).score(healthy[:7])
    split = sc.build_scorer("elbo", vae, batch_size=3).score(healthy[:7])
    np.testing.assert_allclose(whole.scores, split.scores, rtol=1e-5)
    np.testing.assert_allclose(whole.maps, split.maps, rtol=1e-5, atol=1e-6)


def test_scoring_restores_training_mode_and_leaves_weights_alone(vae, batch):
    before = [p.detach().clone() for p in vae.parameters()]
    vae.train()
    try:
        sc.build_scorer("restoration", vae, steps=3).score(batch)
        sc.build_scorer("combi", vae).score(batch)
        assert vae.training
    finally:
        vae.eval()
    assert all(p.grad is None for p in vae.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, vae.parameters(), strict=True))


def test_numpy_input_and_channel_reduction(vae, batch):
    np.testing.assert_array_equal(
        sc.ResidualScorer(vae).score(batch.numpy()).maps, sc.ResidualScorer(vae).score(batch).maps
    )
    x2 = torch.cat([batch, 0.5 * batch], dim=1)
    np.testing.assert_allclose(sc.IntensityScorer().score(x2).maps, 0.75 * batch[:, 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(
        sc.IntensityScorer(channel_reduce="max").score(x2).maps, batch[:, 0].numpy(), rtol=1e-6
    )


# ------------------------------------------------------------------------------------------ residual family
@pytest.mark.parametrize("model_name", ["ae", "pca"])
def test_residual_is_higher_inside_a_bright_square(model_name, request, batch):
    model = request.getfixturevalue(model_name)
    x, mask = with_square(batch, 0.95)
    maps = sc.ResidualScorer(model).score(x).maps
    inside, outside = maps[:, mask].mean(1), maps[:, ~mask].mean(1)
    assert (inside > 3 * outside).all()
    scorer = sc.ResidualScorer(model, image_method="max")
    assert (
        scorer.score(x).scores > scorer.score(batch).scores
    ).all()  # lesioned images rank above clean ones


def test_signed_residual_ignores_a_dark_square(ae, batch):
    x, mask = with_square(batch, 0.0)
    unsigned = sc.build_scorer("residual", ae).score(x).maps
    signed = sc.build_scorer("residual_signed", ae).score(x).maps
    assert unsigned[:, mask].mean() > 0.15
    assert signed[:, mask].max() == 0.0


def test_intensity_weighted_residual_is_signed_residual_times_the_image(ae, batch):
    x, mask = with_square(batch, 0.95)
    signed = sc.build_scorer("residual_signed", ae).score(x).maps
    weighted = sc.build_scorer("residual_intensity", ae).score(x).maps
    np.testing.assert_allclose(weighted, signed * x[:, 0].numpy(), rtol=1e-5, atol=1e-7)
    # a dark lesion scores nothing; a bright one keeps most of its signed residual
    dark, dmask = with_square(batch, 0.0)
    assert sc.build_scorer("residual_intensity", ae).score(dark).maps[:, dmask].max() == 0.0
    assert weighted[:, mask].mean() > 0.9 * signed[:, mask].mean()
    with pytest.raises(ConfigError, match="fixes"):
        sc.build_scorer("residual_intensity", ae, intensity_weight=False)


def test_l2_residual_is_square_of_l1(ae, batch):
    l1 = sc.ResidualScorer(ae, norm="l1").score(batch).maps
    l2 = sc.ResidualScorer(ae, norm="l2").score(batch).maps
    np.testing.assert_allclose(l2, l1**2, rtol=1e-5, atol=1e-7)


def test_ssim_map_is_zero_for_a_perfect_reconstruction_and_l1_mix(batch):
    class Identity(TinyVAE):
        def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
            return x.clone()

    result = sc.SSIMScorer(Identity()).score(batch)
    assert np.abs(result.maps).max() < 1e-5
    assert np.abs(sc.SSIMScorer(Identity(), l1_weight=0.5).score(batch).maps).max() < 1e-5


def test_ssim_l1_map_is_the_convex_mix(ae, batch):
    x, _ = with_square(batch, 0.95)
    ssim = sc.SSIMScorer(ae).score(x).maps
    l1 = sc.ResidualScorer(ae).score(x).maps
    mixed = sc.SSIMScorer(ae, l1_weight=0.25).score(x).maps
    np.testing.assert_allclose(mixed, 0.75 * ssim + 0.25 * l1, rtol=1e-5, atol=1e-6)


def test_intensity_scorer_peaks_at_the_bright_square(batch):
    x, mask = with_square(batch, 0.95)
    x2 = torch.cat([x, 0.2 * x], dim=1)  # two channels; the second is dim
    result = sc.IntensityScorer(channel=0).score(x2)
    for m in result.maps:
        assert mask[np.unravel_index(np.argmax(m), m.shape)]
    np.testing.assert_allclose(result.maps, x[:, 0].numpy())
    scaled = sc.IntensityScorer(channel=1, percentile=99).score(x2).maps
    np.testing.assert_allclose(scaled.max(axis=(1, 2)), 1.0, rtol=1e-5)  # the square is > 1% of the image


# ---------------------------------------------------------------------------------------- likelihood family
def test_elbo_k1_equals_recon_nll_plus_kl(vae, batch):
    result = sc.ELBOScorer(vae).score(batch)
    with torch.no_grad():
        terms = vae.elbo_terms(batch, vae(batch))
    np.testing.assert_allclose(result.scores, (terms["recon_nll"] + terms["kl"]).numpy(), rtol=1e-5)
    np.testing.assert_allclose(result.extra["kl"], terms["kl"].numpy(), rtol=1e-5)
    # the map is the per-pixel NLL, so it sums to the model's own recon_nll
    np.testing.assert_allclose(result.maps.sum((1, 2)), terms["recon_nll"].numpy(), rtol=1e-4)


@pytest.mark.parametrize("likelihood", ["gaussian", "gaussian_learned", "bernoulli", "laplace"])
def test_importance_weights_use_the_models_likelihood(likelihood, batch):
    """At z = mu, log p(x|z) from decode_output must equal the model's own -recon_nll."""
    torch.manual_seed(0)
    model = ConvVAE(conv_cfg(likelihood=likelihood)).eval()
    with torch.no_grad():
        out = model(batch)
        ll = sc.log_likelihood(model, batch, sc.decode_output(model, out.mu, out.mu, out.logvar))
        torch.testing.assert_close(ll, -model.elbo_terms(batch, out)["recon_nll"], rtol=1e-5, atol=1e-3)
    assert np.isfinite(sc.ELBOScorer(model, k=3).score(batch).scores).all()


def test_kl_scorer_scores_the_kl_term(vae, batch):
    np.testing.assert_allclose(
        sc.KLScorer(vae).score(batch).scores, sc.ELBOScorer(vae).score(batch).extra["kl"], rtol=1e-6
    )


def test_iwae_is_below_the_mean_single_sample_bound(vae, batch):
    with torch.no_grad():
        log_w = sc.importance_log_weights(vae, batch, 5, torch.Generator().manual_seed(3))
    assert log_w.shape == (5, 3)
    # Jensen, sample by sample: -log mean exp(log w) <= mean(-log w), the single-sample -ELBO estimate
    assert (sc.iwae_nll(log_w) <= (-log_w).mean(0) + 1e-4).all()


def test_iwae_scorer_is_seeded_and_not_worse_than_elbo_on_average(vae, healthy):
    x = healthy[:8]
    a = sc.ELBOScorer(vae, k=5, seed=1).score(x).scores
    np.testing.assert_array_equal(a, sc.ELBOScorer(vae, k=5, seed=1).score(x).scores)
    with torch.no_grad():  # -ELBO estimated with 50 single samples per image
        single = -sc.importance_log_weights(vae, x, 50, torch.Generator().manual_seed(7)).mean(0).numpy()
    assert a.mean() <= single.mean() + 1.0  # 1 nat of Monte Carlo slack; the gap is ~5 nats here


@pytest.mark.parametrize("likelihood", ["gaussian", "gaussian_learned", "bernoulli", "laplace"])
def test_config_likelihoods_match_the_conv_vae(likelihood, batch):
    torch.manual_seed(0)
    model = ConvVAE(conv_cfg(likelihood=likelihood, sigma=0.2)).eval()
    with torch.no_grad():
        out = model(batch)
        ours = sc.likelihood_nll(model.cfg, batch, out)
        torch.testing.assert_close(ours, model.pixel_nll(batch, out), rtol=1e-5, atol=1e-5)
        no_logits = sc.likelihood_nll(
            model.cfg, batch, ModelOutput(out.x_hat, out.z, out.mu, out.logvar, out.recon_logscale)
        )
        assert torch.isfinite(no_logits).all()


# ------------------------------------------------------------------------------------------ gradient family
def test_grad_elbo_map_matches_finite_differences(vae, batch):
    model = copy.deepcopy(vae).double()  # float64 model: inputs follow the model's dtype
    x = batch.double()
    maps = sc.build_scorer("grad_elbo", model).score(x).maps
    h, (i, r, c) = 1e-2, (1, 7, 4)  # ConvVAE sums its NLL in float32: a larger step beats rounding

    def neg_elbo(xx: torch.Tensor) -> float:
        with torch.no_grad():
            return float(model.elbo_terms(xx, model(xx))["neg_elbo"][i])

    up, down = x.clone(), x.clone()
    up[i, 0, r, c] += h
    down[i, 0, r, c] -= h
    assert maps[i, r, c] == pytest.approx(abs(neg_elbo(up) - neg_elbo(down)) / (2 * h), rel=1e-2)


@pytest.mark.parametrize("name", ["grad_elbo", "grad_kl", "combi"])
def test_gradient_maps_are_nonzero_and_deterministic(name, vae, batch):
    x, _ = with_square(batch, 0.95)
    a, b = (sc.build_scorer(name, vae).score(x) for _ in range(2))
    assert (a.maps.reshape(3, -1).max(1) > 0).all()
    np.testing.assert_array_equal(a.maps, b.maps)


def test_combi_is_residual_times_kl_gradient(vae, batch):
    grad_kl = sc.build_scorer("grad_kl", vae).score(batch).maps
    residual = sc.build_scorer("residual", vae).score(batch).maps
    np.testing.assert_allclose(sc.build_scorer("combi", vae).score(batch).maps, residual * grad_kl, rtol=1e-4)


def test_restoration_lowers_the_objective_and_restores_towards_lower_neg_elbo(vae, batch):
    x, mask = with_square(batch, 0.95)
    result = sc.RestorationScorer(vae, steps=30, lr=1e-2, lam=4.0).score(x)
    obj = result.extra["objective"]
    assert obj.shape == (3, 31)
    assert (obj[:, -1] < obj[:, 0] - 50).all()  # the lesion costs hundreds of nats; most of it is removed
    np.testing.assert_allclose(result.extra["best_objective"], obj.min(1), rtol=1e-6)
    before = sc.ELBOScorer(vae).score(x).scores
    after = sc.ELBOScorer(vae).score(result.extra["restored"]).scores
    assert (after < before).all()
    assert (result.maps[:, mask].mean(1) > 1.8 * result.maps[:, ~mask].mean(1)).all()


def test_signed_restoration_keeps_only_what_was_darkened(vae, batch):
    x, _ = with_square(batch, 0.95)
    both = sc.RestorationScorer(vae, steps=10, lr=1e-2, lam=4.0).score(x)
    signed = sc.RestorationScorer(vae, steps=10, lr=1e-2, lam=4.0, signed=True).score(x)
    change = x[:, 0].numpy() - np.asarray(both.extra["restored"])[:, 0]
    np.testing.assert_allclose(signed.maps, np.clip(change, 0, None), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(both.maps, np.abs(change), rtol=1e-5, atol=1e-6)
    assert (change < 0).any()  # there was something to drop


@pytest.mark.parametrize("data_term", ["l1", "tv"])
def test_restoration_never_returns_a_worse_image(data_term, vae, batch):
    """Healthy images sit near the optimum; Adam's first steps overshoot, the best iterate is kept."""
    scorer = sc.RestorationScorer(vae, steps=5, lr=2e-2, data_term=data_term)
    result = scorer.score(batch)
    obj = result.extra["objective"]
    assert (result.extra["best_objective"] <= obj[:, 0]).all()
    lesioned, mask = with_square(batch, 0.95)
    moved = scorer.score(lesioned).maps[:, mask].mean(1)
    assert (result.maps[:, mask].mean(1) < 0.5 * moved).all()  # healthy tissue moves far less than a lesion


def test_uncertainty_variance_is_nonnegative_and_zero_for_a_deterministic_model(vae, ae, batch):
    var = sc.UncertaintyScorer(vae, m=5).score(batch).extra["variance"]
    assert var.shape == (3, S, S) and (var >= 0).all() and var.max() > 0
    det = sc.UncertaintyScorer(ae, m=5).score(batch)
    assert np.all(det.extra["variance"] == 0)
    np.testing.assert_allclose(det.maps, sc.ResidualScorer(ae).score(batch).maps, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------- registry, errors
def test_registry_and_available_scorers(vae, ae, pca):
    assert sc.available_scorers(vae) == list(sc.SCORER_NAMES)
    recon = ["residual", "residual_signed", "residual_intensity", "ssim", "ssim_l1", "intensity"]
    assert sc.available_scorers(pca) == recon
    assert sc.available_scorers(ae) == sc.available_scorers(pca)
    assert sc.available_scorers(None) == ["intensity"]
    for name in sc.SCORER_NAMES:
        scorer = sc.build_scorer(name, vae)
        assert isinstance(scorer, sc.Scorer) and scorer.name == name
    with pytest.raises(ModelMismatchError, match="elbo"):
        sc.build_scorer("elbo", pca)
    with pytest.raises(ConfigError, match="unknown scorer 'nope'"):
        sc.build_scorer("nope", vae)
    with pytest.raises(ConfigError, match="scorer 'elbo' has no option kk"):
        sc.build_scorer("elbo", vae, kk=3)
    with pytest.raises(ConfigError, match="fixes signed"):
        sc.build_scorer("residual_signed", vae, signed=False)
    assert sc.build_scorer("ssim_l1", vae).l1_weight == 0.5
    assert sc.build_scorer("ssim_l1", vae, l1_weight=0.2).l1_weight == 0.2
    assert sc.build_scorer("intensity", None).name == "intensity"


@pytest.mark.parametrize("name", ["elbo", "kl", "grad_elbo", "combi", "restoration", "uncertainty"])
def test_vae_only_scorers_refuse_an_ae_and_pca(name, ae, pca):
    for model in (ae, pca):
        with pytest.raises(ModelMismatchError, match=f"'{name}'"):
            sc.build_scorer(name, model)


def test_a_denoising_autoencoder_gets_residual_scorers_and_refuses_likelihood_ones_in_one_line(batch):
    from vaedx.models import build_model

    torch.manual_seed(0)
    dae = build_model(conv_cfg(arch="conv-unet"))
    recon = ["residual", "residual_signed", "residual_intensity", "ssim", "ssim_l1", "intensity"]
    assert sc.available_scorers(dae) == recon
    for name in recon:
        assert sc.build_scorer(name, dae).score(batch).maps.shape == (3, S, S)
    for name in ("elbo", "kl", "grad_elbo", "grad_kl", "combi", "restoration", "uncertainty"):
        with pytest.raises(ModelMismatchError, match="denoising autoencoder: skip connections") as e:
            sc.build_scorer(name, dae)
        assert "\n" not in str(e.value)


def test_valid_mask_and_image_methods(ae, batch):
    x, mask = with_square(batch, 0.95)
    valid = np.broadcast_to(mask, (3, S, S))
    res = sc.ResidualScorer(ae).score(x, valid=valid)
    np.testing.assert_allclose(res.scores, res.maps[:, mask].mean(1), rtol=1e-5)
    top = sc.ResidualScorer(ae, image_method="topk", topk_percent=10).score(x)
    k = int(np.ceil(0.1 * S * S))
    np.testing.assert_allclose(top.scores, np.sort(top.maps.reshape(3, -1), 1)[:, -k:].mean(1), rtol=1e-5)
    with pytest.raises(ConfigError, match="image_method"):
        sc.ResidualScorer(ae, image_method="median")


def test_reconstructions_are_kept_only_on_request(vae, batch):
    assert "reconstruction" not in sc.ResidualScorer(vae).score(batch).extra
    kept = sc.ResidualScorer(vae, keep_reconstructions=True).score(batch).extra["reconstruction"]
    with torch.no_grad():
        np.testing.assert_allclose(kept, vae.reconstruct(batch).numpy(), rtol=1e-5, atol=1e-6)


def test_mismatch_errors_name_channels_and_size(vae):
    with pytest.raises(ModelMismatchError, match=r"3 channels but the model expects 1"):
        sc.build_scorer("residual", vae).score(torch.zeros(2, 3, S, S))
    with pytest.raises(ModelMismatchError, match=r"size 32x32 but the model expects 16x16"):
        sc.check_input(vae.cfg, torch.zeros(2, 1, 32, 32))
    with pytest.raises(ModelMismatchError, match="channels.*size"):
        sc.check_input((1, S, S), torch.zeros(1, 2, 8, 8))
    with pytest.raises(InputError, match=r"\(N, C, H, W\)"):
        sc.check_input(vae, torch.zeros(S, S))
    sc.check_input((1, S, S), torch.zeros(1, 1, S, S))


def test_non_finite_input_and_scores_name_the_image(vae, batch):
    bad = batch.clone()
    bad[2, 0, 3, 3] = float("nan")
    with pytest.raises(InputError, match="image 2"):
        sc.build_scorer("residual", vae).score(bad)

    class Exploding(TinyVAE):
        def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
            out = x.clone()
            out[1] = float("inf")
            return out

    with pytest.raises(InputError, match="image 1 gave a non-finite residual"):
        sc.ResidualScorer(Exploding()).score(batch)


def test_half_precision_batches_come_back_as_float32_maps_and_float64_scores() -> None:
    """Under CUDA autocast a scorer's maps and scores can be bfloat16, which numpy cannot hold."""
    from vaedx.anomaly.base import _Batch

    class Half(sc.ResidualScorer):
        def _score_batch(self, x: torch.Tensor, generator: torch.Generator) -> _Batch:
            maps = super()._score_batch(x, generator).maps
            return _Batch(maps.bfloat16(), maps.mean((1, 2)).bfloat16())

    model = ConvAE(ModelConfig(kind="ae", in_channels=1, image_size=(16, 16), widths=[8, 16], latent_dim=4))
    x = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    res = Half(model, batch_size=2).score(x)
    plain = sc.ResidualScorer(model, batch_size=2).score(x)
    assert res.maps.dtype == np.float32 and res.scores.dtype == np.float64
    np.testing.assert_allclose(res.maps, plain.maps, rtol=1e-2, atol=1e-2)  # bfloat16 keeps ~3 digits
    np.testing.assert_allclose(res.scores, plain.scores, rtol=1e-2)


def test_each_batch_asks_for_autocast_on_the_model_device_with_the_scorer_amp_flag(monkeypatch) -> None:
    """The scorer, not the caller, decides: autocast where the weights are, unless its ``amp`` is off."""
    import contextlib

    import vaedx.anomaly.base as base

    calls = []

    @contextlib.contextmanager
    def spy(device, enabled=True):
        calls.append((torch.device(device).type, enabled))
        yield

    monkeypatch.setattr(base, "inference_autocast", spy)
    model = ConvAE(ModelConfig(kind="ae", in_channels=1, image_size=(16, 16), widths=[8, 16], latent_dim=4))
    x = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    scorer = sc.ResidualScorer(model, batch_size=2)
    scorer.score(x)
    assert calls == [("cpu", True)] * 3  # one per batch of 2
    calls.clear()
    scorer.amp = False
    scorer.score(x)
    assert calls == [("cpu", False)] * 3


# scorers whose CPU/GPU agreement is checked: reconstruction, likelihood, gradient and restoration families
CUDA_SCORERS: dict[str, dict] = {
    "residual": {},
    "ssim": {},
    "elbo": {},
    "grad_elbo": {},
    "restoration": {"steps": 30},
}


@pytest.mark.cuda
@pytest.mark.parametrize("amp", ["0", "1"], ids=["float32", "autocast"])
def test_scores_on_cuda_agree_with_cpu(cuda_run, amp: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same weights score real test images alike on both devices: in float32 (TF32 off) nearly equal
    scores, under autocast the same ranking (AUROC) of pneumonia against normal images."""
    from vaedx.anomaly.scoring import run_scorers
    from vaedx.data.store import TensorStore
    from vaedx.metrics.measures import auroc
    from vaedx.runs.loaded import load_model

    monkeypatch.setenv("VAEDX_AMP", amp)
    st = TensorStore.open(cuda_run.store)
    rows = st.select(split="test")
    x = np.asarray(st.images[rows], dtype=np.float32)
    y = (st.labels[rows] == st.label_names.index("pneumonia")).astype(np.int8)
    assert 0 < y.sum() < len(y)
    cpu = run_scorers(load_model(cuda_run.run, device="cpu").model, x, list(CUDA_SCORERS), CUDA_SCORERS)
    model = load_model(cuda_run.run, device="cuda").model
    assert next(model.parameters()).device.type == "cuda"
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # plain float32
    try:
        gpu = run_scorers(model, x, list(CUDA_SCORERS), CUDA_SCORERS)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    for name in CUDA_SCORERS:
        a, b = cpu.scores[name], gpu.scores[name]
        assert b.dtype == np.float64 and np.isfinite(b).all(), name
        assert gpu.maps[name].dtype == np.float32 and gpu.maps[name].shape == cpu.maps[name].shape, name
        if amp == "0":
            assert relative_gap(a, b) < FP32_RTOL, name
        assert abs(auroc(y, a) - auroc(y, b)) < AUROC_TOL, name
