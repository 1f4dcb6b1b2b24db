"""SupervisedCNN: built from the encoder of the VAE's own architecture (conv or conv-fast), started from a
trained VAE's encoder exactly, written back into a VAE state dict exactly, and refused for networks whose
encoder it cannot copy."""

from __future__ import annotations

import pytest
import torch

from vaedx.errors import ConfigError
from vaedx.models import ModelConfig
from vaedx.models.cnn import SupervisedCNN
from vaedx.models.registry import build_model


def _cfg(arch: str) -> ModelConfig:
    return ModelConfig(kind="vae", arch=arch, in_channels=1, image_size=(32, 32), widths=[8, 16],
                       latent_dim=4)


@pytest.mark.parametrize("arch", ["conv", "conv-fast"])
def test_cnn_starts_from_the_vae_encoder_and_gives_its_posterior_mean_back(arch: str) -> None:
    torch.manual_seed(0)
    cfg = _cfg(arch)
    vae = build_model(cfg).eval()
    cnn = SupervisedCNN(cfg, n_classes=3).eval()
    cnn.load_vae_encoder(vae)
    x = torch.rand(5, 1, 32, 32)
    with torch.no_grad():
        mu, _ = vae.encode(x)
        h = cnn.encoder(torch.nn.functional.pad(x, cnn._pad) if any(cnn._pad) else x)
        torch.testing.assert_close(cnn.to_latent(h.flatten(1)), mu)
        assert cnn(x).shape == (5, 3)
    state = cnn.encoder_into(vae.state_dict())
    assert state.keys() == vae.state_dict().keys()  # the VAE's own layout, so the run loads as before
    again = build_model(cfg)
    again.load_state_dict(state)


@pytest.mark.parametrize("arch", ["conv-unet", "monai-varautoencoder"])
def test_cnn_refuses_networks_whose_encoder_it_cannot_copy(arch: str) -> None:
    kind = "dae" if arch == "conv-unet" else "vae"
    cfg = ModelConfig(kind=kind, arch=arch, in_channels=1, image_size=(32, 32), widths=[8, 16], latent_dim=4)
    with pytest.raises(ConfigError, match="need a conv or conv-fast network"):
        SupervisedCNN(cfg, n_classes=2)
