from __future__ import annotations

import numpy as np
import pytest
import torch

from vaedx.diagnose.features import FeatureSpec, latent_features
from vaedx.errors import ConfigError, InputError, ModelMismatchError
from vaedx.models import ConvAE, ModelConfig
from vaedx.training.batches import RowView


def test_vae_features_are_posterior_mean_then_logvar(vae, store):
    x = np.array(store.images[:10])
    feats = latent_features(vae, x, batch_size=3)  # several batches
    assert feats.shape == (10, 8) and feats.dtype == np.float64
    with torch.no_grad():
        mu, logvar = vae.model.eval().encode(torch.from_numpy(x))
    np.testing.assert_allclose(feats[:, :4], mu.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats[:, 4:], logvar.numpy(), rtol=1e-5, atol=1e-6)
    # same result from a tensor, a lazy row view of the memmap and mu only
    np.testing.assert_allclose(latent_features(vae.model, torch.from_numpy(x)), feats, atol=1e-6)
    np.testing.assert_allclose(latent_features(vae, RowView(store.images, np.arange(10))), feats, atol=1e-6)
    assert latent_features(vae, x, include=("mu",)).shape == (10, 4)


def test_encoding_is_deterministic_and_restores_training_mode(vae, store):
    net = vae.model.train()
    x = np.asarray(store.images[:4])
    a, b = latent_features(net, x), latent_features(net, x)
    assert np.array_equal(a, b) and net.training
    net.eval()


def test_ae_and_pca_give_mu_only_and_extra_columns_are_appended(pca, store):
    ae = ConvAE(ModelConfig(in_channels=1, image_size=16, widths=[8], latent_dim=3))
    x = np.asarray(store.images[:5])
    assert latent_features(ae, x).shape == (5, 3)  # no logvar for a deterministic AE
    feats = latent_features(pca, x, extra=np.arange(5.0))
    assert feats.shape == (5, 7)
    assert np.array_equal(feats[:, -1], np.arange(5.0))
    assert FeatureSpec.for_model(pca, ("mu", "logvar"), ["residual"]).names[-1] == "score_residual"


def test_feature_spec_round_trip_and_recompute_with_anomaly_scores(vae, store):
    spec = FeatureSpec.for_model(vae, ("mu", "logvar"), ["residual"])
    assert spec.names[:2] == ["mu0", "mu1"] and spec.names[4] == "logvar0" and len(spec.names) == 9
    again = FeatureSpec.from_json(spec.to_json())
    x = np.asarray(store.images[:6])
    np.testing.assert_array_equal(spec.compute(vae, x), again.compute(vae, x))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"include": ("mu", "sigma")}, ConfigError, "unknown feature part"),
        ({"batch_size": 0}, ConfigError, "batch_size"),
        ({"extra": np.zeros(3)}, InputError, "extra features must be"),
        ({"extra": np.full(4, np.nan)}, InputError, "NaN"),
    ],
)
def test_bad_arguments(vae, store, kwargs, error, message):
    with pytest.raises(error, match=message):
        latent_features(vae, np.asarray(store.images[:4]), **kwargs)


def test_bad_images(vae, pca):
    with pytest.raises(ModelMismatchError, match="size 20x20 but the model expects 16x16"):
        latent_features(vae, np.zeros((2, 1, 20, 20), np.float32))
    x = np.zeros((3, 1, 16, 16), np.float32)
    x[2, 0, 5, 5] = np.inf
    with pytest.raises(InputError, match="image 2 contains NaN or infinite"):
        latent_features(vae, x)
    with pytest.raises(ConfigError, match="no features"):
        latent_features(pca, x[:2], include=("logvar",))


def test_tta_views_are_the_named_geometry():
    """hflip mirrors left-right exactly; a 0-degree, zoom-1 view is the image itself; a 90-degree rotation
    of a square image moves the pixels as a rotation does (interior pixels, away from the border)."""
    from vaedx.diagnose.features import tta_view

    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    assert torch.equal(tta_view(x, 0.0, 1.0, True), torch.flip(x, dims=(-1,)))
    assert torch.equal(tta_view(x, 0.0, 1.0, False), x)
    turned = tta_view(x, 90.0, 1.0, False)
    assert torch.allclose(turned, torch.rot90(x, k=1, dims=(-2, -1)), atol=1e-3) or torch.allclose(
        turned, torch.rot90(x, k=-1, dims=(-2, -1)), atol=1e-3
    )


def test_tta_features_are_the_posterior_averaged_over_the_views(vae, store):
    x = np.array(store.images[:6])
    flipped = latent_features(vae, x, tta="hflip")
    with torch.no_grad():
        t = torch.from_numpy(x)
        mu_a, lv_a = vae.model.eval().encode(t)
        mu_b, lv_b = vae.model.encode(torch.flip(t, dims=(-1,)))
    np.testing.assert_allclose(flipped[:, :4], ((mu_a + mu_b) / 2).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(flipped[:, 4:], ((lv_a + lv_b) / 2).numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(flipped, latent_features(vae, x))  # the view changes the features
    assert latent_features(vae, x, tta="affine").shape == (6, 8)
    spec = FeatureSpec.for_model(vae, ("mu",))
    spec.tta = "hflip"
    again = FeatureSpec.from_json(spec.to_json())
    assert again.tta == "hflip"
    np.testing.assert_allclose(again.compute(vae, x), flipped[:, :4], atol=1e-6)
    old = {k: v for k, v in spec.to_json().items() if k != "tta"}  # written before TTA existed
    assert FeatureSpec.from_json(old).tta == "none"


def test_tta_is_refused_where_it_cannot_apply(vae, pca, store):
    x = np.array(store.images[:4])
    with pytest.raises(ConfigError, match="tta must be one of"):
        latent_features(vae, x, tta="mixup")
    with pytest.raises(ConfigError, match="needs a torch encoder"):
        latent_features(pca, x, tta="hflip")
