from __future__ import annotations

import numpy as np
import pytest
import torch

from vaedx.models.ssim import gaussian_window, ssim, ssim_map


def test_identical_images_give_one_everywhere():
    x = torch.rand(2, 3, 20, 24)
    m = ssim_map(x, x)
    assert m.shape == (2, 1, 20, 24)
    assert torch.allclose(m, torch.ones_like(m), atol=1e-5)


def test_ssim_falls_with_noise_and_is_symmetric():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 32, 32)
    small, big = x + 0.05 * torch.randn_like(x), x + 0.3 * torch.randn_like(x)
    assert 1 > ssim(x, small).item() > ssim(x, big).item()
    assert torch.allclose(ssim_map(x, big), ssim_map(big, x), atol=1e-6)


def test_centre_pixel_matches_the_wang_formula():
    """Interior pixel (no padding involved) against a direct numpy evaluation of the SSIM formula."""
    rng = np.random.default_rng(0)
    x, y = rng.random((21, 21)), rng.random((21, 21))
    g = gaussian_window(11, 1.5, torch.float64, torch.device("cpu")).numpy()
    w = np.outer(g, g)
    px, py = x[5:16, 5:16], y[5:16, 5:16]
    mx, my = (w * px).sum(), (w * py).sum()
    vx, vy = (w * px**2).sum() - mx**2, (w * py**2).sum() - my**2
    cxy = (w * px * py).sum() - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ref = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    got = ssim_map(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None])[0, 0, 10, 10].item()
    assert got == pytest.approx(ref, rel=1e-9)


def test_is_differentiable_and_rejects_mismatched_shapes():
    x = torch.rand(1, 1, 8, 8, requires_grad=True)
    (1 - ssim_map(x, torch.rand(1, 1, 8, 8))).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(ValueError):
        ssim_map(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))


def test_ssim_is_float32_and_unchanged_under_autocast():
    """Scorers run under autocast on CUDA; SSIM's variances (E[x^2] - E[x]^2) must not be half precision.
    CPU bfloat16 autocast stands in for CUDA's here: it lowers conv2d the same way."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 1, 16, 16, generator=g), torch.rand(2, 1, 16, 16, generator=g)
    plain = ssim_map(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = ssim_map(x, y)
    assert inside.dtype == torch.float32
    assert torch.equal(inside, plain)
