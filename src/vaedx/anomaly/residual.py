"""Reconstruction scorers (residual, SSIM) and the model-free intensity baseline: work for VAE, AE and PCA."""

from __future__ import annotations

from typing import Any

import torch

from vaedx.anomaly.base import BaseScorer, _Batch, check_input, reconstruct
from vaedx.errors import ConfigError, ModelMismatchError
from vaedx.models.ssim import ssim_map


class ResidualScorer(BaseScorer):
    """|x - x_hat| (l1) or (x - x_hat)^2 (l2); works for VAE, AE and PCA alike.

    ``signed=True`` keeps only x - x_hat > 0: lesions that are hyper-intense (e.g. in FLAIR) are brighter than
    the healthy reconstruction, while dark residuals there are mostly blurred edges and CSF.
    ``intensity_weight=True`` multiplies the residual by the image itself: a pixel scores high only when it is
    both bright and not explained by the healthy model. Why: on FLAIR the intensity alone is a strong
    detector whose false positives are healthy bright tissue (cortex, CSF artefacts) that the model does
    reconstruct, while the residual's false positives are dark, blurred edges; the product keeps what the two
    agree on. It is a hybrid of the model and the intensity baseline and is reported as such.
    """

    name = "residual"

    def __init__(
        self,
        model: Any,
        norm: str = "l1",
        signed: bool = False,
        intensity_weight: bool = False,
        **opts: Any,
    ) -> None:
        super().__init__(model, **opts)
        if norm not in ("l1", "l2"):
            raise ConfigError(f"norm must be 'l1' or 'l2', got '{norm}'")
        self.norm, self.signed, self.intensity_weight = norm, signed, intensity_weight
        self.name = "residual_signed" if signed else "residual"
        if intensity_weight:
            self.name = "residual_intensity"

    def _score_batch(self, x: torch.Tensor, generator: torch.Generator) -> _Batch:
        x_hat = reconstruct(self.model, x)
        r = x - x_hat
        r = r.clamp(min=0) if self.signed else r.abs()
        r = r**2 if self.norm == "l2" else r
        if self.intensity_weight:
            r = r * x.clamp(min=0)
        return _Batch(self._reduce(r), extra=self._recon_extra(x_hat))


class SSIMScorer(BaseScorer):
    """1 - local SSIM(x, x_hat), optionally mixed with L1: (1 - w)(1 - SSIM) + w|x - x_hat|.

    SSIM compares local structure rather than intensity, so it tolerates the global blur of VAE
    reconstructions that swamps plain residual maps; the L1 part keeps sensitivity to uniform bright lesions.
    """

    name = "ssim"

    def __init__(
        self,
        model: Any,
        l1_weight: float = 0.0,
        window: int = 11,
        sigma: float = 1.5,
        data_range: float = 1.0,
        **opts: Any,
    ) -> None:
        super().__init__(model, **opts)
        if not 0.0 <= l1_weight <= 1.0:
            raise ConfigError(f"l1_weight must be in [0, 1], got {l1_weight}")
        self.l1_weight, self.window, self.sigma, self.data_range = l1_weight, window, sigma, data_range
        self.name = "ssim_l1" if l1_weight > 0 else "ssim"

    def _score_batch(self, x: torch.Tensor, generator: torch.Generator) -> _Batch:
        x_hat = reconstruct(self.model, x)
        s = ssim_map(x, x_hat, window=self.window, sigma=self.sigma, data_range=self.data_range)
        m = 1.0 - s[:, 0]
        if self.l1_weight > 0:
            m = (1 - self.l1_weight) * m + self.l1_weight * self._reduce((x - x_hat).abs())
        return _Batch(m, extra=self._recon_extra(x_hat))


class IntensityScorer(BaseScorer):
    """The image intensity itself as the anomaly map - the baseline every autoencoder must beat.

    On brain FLAIR, hyper-intensity alone beats most published autoencoders (Meissen et al. 2021/2022).
    ``channel`` picks one channel (e.g. FLAIR), otherwise channels are reduced; ``percentile`` divides each
    map by that percentile of its own intensities so images with different gains are comparable.
    Needs no model.
    """

    name = "intensity"

    def __init__(
        self, model: Any = None, channel: int | None = None, percentile: float | None = None, **opts: Any
    ) -> None:
        super().__init__(model, **opts)
        if percentile is not None and not 0.0 < percentile <= 100.0:
            raise ConfigError(f"percentile must be in (0, 100], got {percentile}")
        self.channel, self.percentile = channel, percentile

    def _check(self, x: torch.Tensor) -> None:
        check_input(None, x)
        if self.channel is not None and not -x.shape[1] <= self.channel < x.shape[1]:
            raise ModelMismatchError(
                f"channel {self.channel} requested but the input has {x.shape[1]} channels"
            )

    def _score_batch(self, x: torch.Tensor, generator: torch.Generator) -> _Batch:
        m = x[:, self.channel] if self.channel is not None else self._reduce(x)
        if self.percentile is not None:
            scale = torch.quantile(m.flatten(1), self.percentile / 100.0, dim=1).abs()
            m = m / torch.where(scale > 1e-8, scale, torch.ones_like(scale))[:, None, None]
        return _Batch(m)


