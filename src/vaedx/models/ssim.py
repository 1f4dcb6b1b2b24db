"""Structural similarity (SSIM) with a Gaussian window, in plain torch so it is differentiable.

Why here: the VAE loss can add an SSIM term, and the anomaly scorers use the same per-pixel map
(1 - SSIM highlights structural changes that a per-pixel error misses), so both share one implementation.
Follows Wang et al. 2004 (window 11, sigma 1.5, K1=0.01, K2=0.03).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_window(window: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Normalised 1-D Gaussian of odd length ``window``."""
    if window < 1 or window % 2 == 0:
        raise ValueError("SSIM window must be a positive odd number")
    r = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable depthwise Gaussian blur; replicate padding keeps (H, W) for images of any size."""
    c, k = x.shape[1], g.numel()
    p = k // 2
    x = F.pad(x, (p, p, p, p), mode="replicate")
    x = F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def ssim_map(
    x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0
) -> torch.Tensor:
    """Per-pixel SSIM of two (N, C, H, W) batches, averaged over channels -> (N, 1, H, W).

    Identical images give 1 everywhere; values fall towards 0 (or below) where local structure differs.
    Computed in float32 at least, with autocast turned off here: the local variances are differences of
    blurred squares (E[x^2] - E[x]^2), which half precision would cancel into noise larger than ``c2``.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim_map needs two (N, C, H, W) tensors of one shape, got {x.shape} and {y.shape}")
    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(device_type=x.device.type, enabled=False):
            return ssim_map(x, y, window, sigma, data_range)
    dtype = torch.promote_types(x.dtype, torch.float32)
    x, y = x.to(dtype), y.to(dtype)
    g = gaussian_window(window, sigma, dtype, x.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = _blur(x, g), _blur(y, g)
    sxx = _blur(x * x, g) - mu_x**2
    syy = _blur(y * y, g) - mu_y**2
    sxy = _blur(x * y, g) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean(dim=1, keepdim=True)


def ssim(x: torch.Tensor, y: torch.Tensor, **kwargs: float) -> torch.Tensor:
    """Mean SSIM per image -> (N,)."""
    return ssim_map(x, y, **kwargs).flatten(1).mean(dim=1)  # type: ignore[arg-type]
