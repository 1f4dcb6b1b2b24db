"""Anomaly scorers: a trained reconstruction model + a batch of images -> pixel maps and image scores.

Why one interface: evaluation, diagnosis, report and serve compare many scoring rules (residual, SSIM,
likelihood, gradient, restoration, uncertainty, plain intensity) on the same models and data; they only call
``scorer.score(x, valid=None) -> ScoreResult`` and never branch on the rule.

Conventions shared by every scorer:

- higher means more anomalous, for maps and scores alike;
- ``maps`` are (N, H, W) float32; channels are reduced by ``channel_reduce`` - "mean" by default, "max" to
  flag a lesion visible in one channel only (e.g. FLAIR in a FLAIR/T1/T2 stack);
- image scores come from :func:`vaedx.anomaly.postprocess.image_score` applied to the map (``image_method``,
  ``topk_percent``, optional ``valid`` foreground mask) - except for the likelihood scorers (ELBO, KL), whose
  score is the likelihood quantity itself;
- models are put in eval mode (restored afterwards) and run on their own device in batches of ``batch_size``;
  only the gradient and restoration scorers build a graph, and they differentiate w.r.t. the input only, so
  model weights and their ``.grad`` are never touched;
- a non-finite input pixel, map value or score raises :class:`InputError` naming the image index, because a
  silent NaN would sort arbitrarily in every ROC curve downstream.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from vaedx.anomaly.postprocess import image_score
from vaedx.errors import ConfigError, InputError, ModelMismatchError
from vaedx.models.base import ModelOutput
from vaedx.models.ssim import ssim_map

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class ScoreResult:
    """maps (N,H,W) float32 pixel anomaly maps; scores (N,) float64 image scores; extra: per-scorer arrays
    whose first axis is N (variance maps, reconstructions, restored images, objective traces)."""

    maps: np.ndarray
    scores: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)


@runtime_checkable
class Scorer(Protocol):
    name: str

    def score(self, x: torch.Tensor | np.ndarray, valid: np.ndarray | None = None) -> ScoreResult:
        """Score a batch (N, C, H, W); ``valid`` (N, H, W) bool restricts the image score to foreground."""


# ----------------------------------------------------------------------------------------------- input checks
def model_config(model: Any) -> Any:
    """The model's ModelConfig (ConvVAE keeps it as ``cfg``), or None."""
    return getattr(model, "cfg", None) or getattr(model, "config", None)


def _expected_shape(spec: Any) -> tuple[int, int, int] | None:
    """(C, H, W) a model or config expects, or None when it does not say (then any shape is accepted)."""
    if spec is None:
        return None
    if isinstance(spec, tuple | list):
        dims = tuple(int(v) for v in spec)
        return dims if len(dims) == 3 else None
    if getattr(spec, "image_shape", None) is not None:  # ConvVAE, ConvAE, fitted PCABaseline
        c, h, w = spec.image_shape
        return int(c), int(h), int(w)
    cfg = model_config(spec) or spec
    channels, size = getattr(cfg, "in_channels", None), getattr(cfg, "image_size", None)
    if channels is None or size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return int(channels), int(h), int(w)


def check_input(model_cfg_or_shape: Any, x: torch.Tensor | np.ndarray) -> None:
    """Raise InputError unless x is a non-empty (N,C,H,W) batch, ModelMismatchError naming what differs
    (channels, size) when it does not fit. Accepts a model, a ModelConfig, a (C,H,W) tuple or None (any)."""
    shape = tuple(x.shape)
    if len(shape) != 4:
        raise InputError(f"expected a batch of images shaped (N, C, H, W), got shape {shape}")
    if shape[0] == 0:
        raise InputError("no images to score (empty batch)")
    expected = _expected_shape(model_cfg_or_shape)
    if expected is None:
        return
    (c, h, w), (ec, eh, ew) = shape[1:], expected
    diffs = []
    if c != ec:
        diffs.append(f"{c} channels but the model expects {ec}")
    if (h, w) != (eh, ew):
        diffs.append(f"size {h}x{w} but the model expects {eh}x{ew}")
    if diffs:
        raise ModelMismatchError("input does not fit the model: " + "; ".join(diffs))


def _first_bad(values: np.ndarray) -> int | None:
    """Index of the first image (axis 0) holding a non-finite value, or None."""
    bad = ~np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1)
    return int(np.argmax(bad)) if bad.any() else None


def _check_finite_input(x: torch.Tensor) -> None:
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    if bad.any():
        raise InputError(f"image {int(bad.nonzero()[0])} contains NaN or infinite pixel values")


def _check_finite_output(name: str, what: str, values: np.ndarray) -> None:
    idx = _first_bad(values)
    if idx is not None:
        raise InputError(f"image {idx} gave a non-finite {name} {what}; check it for extreme values")


# ---------------------------------------------------------------------------------------------- model helpers
def is_torch_model(model: Any) -> bool:
    return isinstance(model, torch.nn.Module)


def is_variational(model: Any) -> bool:
    """True for models with a posterior and an ELBO - the ones likelihood/gradient scorers need."""
    if not is_torch_model(model) or not hasattr(model, "elbo_terms"):
        return False
    if hasattr(model, "stochastic"):  # ConvVAE / ConvAE say so themselves
        return bool(model.stochastic)
    return str(getattr(model_config(model), "kind", "vae")).lower() != "ae"


def _placement(model: Any) -> tuple[torch.device, torch.dtype]:
    """Device and float dtype of the model's weights: inputs are moved there, never the model."""
    if is_torch_model(model):
        for p in model.parameters():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """Eval mode (posterior mean, frozen batch-norm statistics) for scoring, restoring the caller's mode."""
    if not is_torch_model(model):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def reconstruct(model: Any, x: torch.Tensor) -> torch.Tensor:
    """model.reconstruct for torch models; a numpy round trip for PCABaseline, so every scorer takes both."""
    if is_torch_model(model):
        return model.reconstruct(x)
    out = model.reconstruct(x.detach().cpu().numpy())
    return torch.as_tensor(np.asarray(out, dtype=np.float32)).reshape(x.shape).to(x.device)


def _require_vae(model: Any, name: str) -> None:
    if not is_variational(model):
        raise ModelMismatchError(
            f"scorer '{name}' needs a VAE (posterior and ELBO); got {type(model).__name__}"
        )


def _reduce_channels(t: torch.Tensor, how: str) -> torch.Tensor:
    return t.amax(dim=1) if how == "max" else t.mean(dim=1)


def _neg_elbo(model: Any, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], Any]:
    """Deterministic -ELBO per image (eval mode decodes the posterior mean), its terms and the output."""
    out = model(x)
    terms = model.elbo_terms(x, out)
    return terms["recon_nll"] + terms["kl"], terms, out


# ----------------------------------------------------------------------------------------------- likelihoods
def _logscale(model: Any, out: ModelOutput) -> torch.Tensor | None:
    if out.recon_logscale is not None:
        return out.recon_logscale
    fn = getattr(model, "recon_logscale", None)
    return fn() if callable(fn) else None


def pixel_nll(model: Any, x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
    """Per-pixel -log p(x|z) (N,C,H,W): ``model.pixel_nll`` when the model offers it (ConvVAE does), so the
    map always sums to the model's own recon_nll; otherwise :func:`likelihood_nll` from its config."""
    if hasattr(model, "pixel_nll"):
        return model.pixel_nll(x, out)
    return likelihood_nll(model_config(model), x, out, _logscale(model, out))


def likelihood_nll(
    cfg: Any, x: torch.Tensor, out: ModelOutput, logscale: torch.Tensor | None = None
) -> torch.Tensor:
    """-log p(x|z) per pixel for cfg.likelihood (gaussian, gaussian_learned, bernoulli, laplace) and
    cfg.sigma, for models that do not compute it themselves."""
    kind, sigma = getattr(cfg, "likelihood", "gaussian"), float(getattr(cfg, "sigma", 1.0))
    if kind == "bernoulli":
        logits = out.logits if out.logits is not None else torch.logit(out.x_hat, eps=1e-6)
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    if kind == "laplace":
        return (x - out.x_hat).abs() / sigma + math.log(2 * sigma)
    if kind == "gaussian_learned":
        ls = out.recon_logscale if out.recon_logscale is not None else logscale
        if ls is None:
            raise ModelMismatchError("model has a 'gaussian_learned' likelihood but no learned log-sigma")
        return 0.5 * ((x - out.x_hat) * torch.exp(-ls)) ** 2 + ls + 0.5 * _LOG_2PI
    if kind == "gaussian":
        return 0.5 * ((x - out.x_hat) / sigma) ** 2 + math.log(sigma) + 0.5 * _LOG_2PI
    raise ConfigError(f"unknown decoder likelihood '{kind}' (gaussian, gaussian_learned, bernoulli, laplace)")


def decode_output(model: Any, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor | None) -> ModelOutput:
    """ModelOutput for an arbitrary latent z (forward() only decodes the posterior mean in eval mode).

    Bernoulli models keep their logits (``decode_raw``) so the NLL is exact, not logit(sigmoid) clamped.
    """
    logits = None
    if getattr(model_config(model), "likelihood", None) == "bernoulli" and hasattr(model, "decode_raw"):
        logits = model.decode_raw(z)
        x_hat = torch.sigmoid(logits)
    else:
        x_hat = model.decode(z)
    out = ModelOutput(x_hat=x_hat, z=z, mu=mu, logvar=logvar, logits=logits)
    out.recon_logscale = _logscale(model, out)
    return out


def log_likelihood(model: Any, x: torch.Tensor, out: ModelOutput) -> torch.Tensor:
    """log p(x|z) per image (N,); the model's own ``log_likelihood(x, x_hat)`` when it has one."""
    if hasattr(model, "log_likelihood"):
        return model.log_likelihood(x, out.x_hat)
    return -pixel_nll(model, x, out).flatten(1).sum(1)


def _gaussian_logpdf(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return (-0.5 * ((z - mu) ** 2 * torch.exp(-logvar) + logvar + _LOG_2PI)).flatten(1).sum(1)


def importance_log_weights(model: Any, x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """log p(x|z_k) + log p(z_k) - log q(z_k|x) for K posterior samples, shape (K, N).

    -logmeanexp over K is the IWAE estimate of -log p(x) (Burda et al. 2016); its mean over K is the
    single-sample -ELBO estimate, so -logmeanexp <= mean(-log w) holds sample by sample (Jensen).
    """
    mu, logvar = model.encode(x)
    if logvar is None:
        raise ModelMismatchError(
            f"importance weights need a posterior variance; {type(model).__name__} has none"
        )
    std = torch.exp(0.5 * logvar)
    rows = []
    for _ in range(k):
        eps = torch.randn(mu.shape, generator=generator).to(mu)
        z = mu + std * eps
        log_px = log_likelihood(model, x, decode_output(model, z, mu, logvar))
        log_pz = _gaussian_logpdf(z, torch.zeros_like(z), torch.zeros_like(z))
        rows.append(log_px + log_pz - _gaussian_logpdf(z, mu, logvar))
    return torch.stack(rows)


def iwae_nll(log_w: torch.Tensor) -> torch.Tensor:
    """-log (1/K sum_k w_k) per image from (K, N) log-weights, computed stably with logsumexp."""
    return -(torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0]))


# ----------------------------------------------------------------------------------------------- base class
@dataclass
class _Batch:
    """What one batch contributes: maps (n,H,W), scores (n,) or None (-> image_score), extras (n,...)."""

    maps: torch.Tensor
    scores: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


class BaseScorer:
    """Batching, eval mode, device, input checks, image scoring and finiteness checks for every scorer."""

    name = "base"
    needs_grad = False  # gradient scorers differentiate w.r.t. the input
    seed = 0  # sampling scorers draw from torch.Generator().manual_seed(seed) anew at every score() call

    def __init__(
        self,
        model: Any = None,
        *,
        batch_size: int = 32,
        channel_reduce: str = "mean",
        image_method: str = "mean",
        topk_percent: float = 1.0,
        keep_reconstructions: bool = False,
    ) -> None:
        """``keep_reconstructions`` puts x_hat in ``extra`` (off by default: doubles memory on big sets)."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if image_method not in ("mean", "max", "topk"):
            raise ConfigError(f"image_method must be 'mean', 'max' or 'topk', got '{image_method}'")
        if channel_reduce not in ("mean", "max"):
            raise ConfigError(f"channel_reduce must be 'mean' or 'max', got '{channel_reduce}'")
        self.model = model
        self.batch_size = batch_size
        self.channel_reduce = channel_reduce
        self.image_method = image_method
        self.topk_percent = topk_percent
        self.keep_reconstructions = keep_reconstructions

    def _recon_extra(self, x_hat: torch.Tensor, key: str = "reconstruction") -> dict[str, torch.Tensor]:
        return {key: x_hat} if self.keep_reconstructions else {}

    def _reduce(self, t: torch.Tensor) -> torch.Tensor:
        return _reduce_channels(t, self.channel_reduce)

    def _score_batch(self, x: torch.Tensor, generator: torch.Generator) -> _Batch:
        raise NotImplementedError

    def _check(self, x: torch.Tensor) -> None:
        check_input(self.model, x)

    def score(self, x: torch.Tensor | np.ndarray, valid: np.ndarray | None = None) -> ScoreResult:
        x = torch.as_tensor(x).float()
        self._check(x)
        _check_finite_input(x)
        (device, dtype), generator = _placement(self.model), torch.Generator().manual_seed(self.seed)
        parts: list[_Batch] = []
        with _eval_mode(self.model), torch.enable_grad() if self.needs_grad else torch.no_grad():
            for start in range(0, x.shape[0], self.batch_size):
                xb = x[start : start + self.batch_size].to(device=device, dtype=dtype)
                parts.append(self._score_batch(xb, generator))
        maps = torch.cat([p.maps.detach() for p in parts]).cpu().numpy().astype(np.float32)
        _check_finite_output(self.name, "map", maps)
        if parts[0].scores is not None:
            scores = torch.cat([p.scores.detach() for p in parts]).cpu().numpy().astype(np.float64)
        else:
            scores = np.asarray(
                image_score(maps, method=self.image_method, topk_percent=self.topk_percent, valid=valid),
                dtype=np.float64,
            )
        extra = {
            k: torch.cat([p.extra[k].detach() for p in parts]).float().cpu().numpy() for k in parts[0].extra
        }
        _check_finite_output(self.name, "score", scores)
        return ScoreResult(maps=maps, scores=scores, extra=extra)


# ------------------------------------------------------------------------------------------ residual family
class ResidualScorer(BaseScorer):
    """|x - x_hat| (l1) or (x - x_hat)^2 (l2); works for VAE, AE and PCA alike.

    ``signed=True`` keeps only x - x_hat > 0: lesions that are hyper-intense (e.g. in FLAIR) are brighter than
    the healthy reconstruction, while dark residuals there are mostly blurred edges and CSF.
    """

    name = "residual"

    def __init__(self, model: Any, norm: str = "l1", signed: bool = False, **opts: Any) -> None:
        super().__init__(model, **opts)
        if norm not in ("l1", "l2"):
            raise ConfigError(f"norm must be 'l1' or 'l2', got '{norm}'")
        self.norm, self.signed = norm, signed
        self.name = "residual_signed" if signed else "residual"

    def _score_batch(self, x: torch.Tensor, generator: torch.Generator) -> _Batch:
        x_hat = reconstruct(self.model, x)
        r = x - x_hat
        r = r.clamp(min=0) if self.signed else r.abs()
        r = r**2 if self.norm == "l2" else r
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


# ---------------------------------------------------------------------------------------- likelihood family
class ELBOScorer(BaseScorer):
    """Image score -ELBO = recon_nll + KL (k=1, posterior mean, deterministic) or, for k > 1, the IWAE
    estimate of -log p(x) from k seeded posterior samples, which is tighter. Map: per-pixel NLL of the
    reconstruction. ``extra``: recon_nll, kl (per image)."""

    name = "elbo"

    def __init__(self, model: Any, k: int = 1, seed: int = 0, **opts: Any) -> None:
        _require_vae(model, "elbo")
        super().__init__(model, **opts)
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        self.k, self.seed = k, seed

    def _score_batch(self, x: torch.Tensor, generator: torch.Generator) -> _Batch:
        neg_elbo, terms, out = _neg_elbo(self.model, x)
        m = self._reduce(pixel_nll(self.model, x, out))
        scores = (
            neg_elbo if self.k == 1 else iwae_nll(importance_log_weights(self.model, x, self.k, generator))
        )
        return _Batch(m, scores, {"recon_nll": terms["recon_nll"], "kl": terms["kl"]})


class KLScorer(BaseScorer):
    """Image score KL(q(z|x) || p(z)) alone: how far from the healthy prior the encoder puts the image.

    KL has no pixel map of its own, so the map is the L1 residual (use 'grad_kl' for a KL-based map).
    """

    name = "kl"

    def __init__(self, model: Any, **opts: Any) -> None:
        _require_vae(model, "kl")
        super().__init__(model, **opts)

    def _score_batch(self, x: torch.Tensor, generator: torch.Generator) -> _Batch:
        _, terms, out = _neg_elbo(self.model, x)
        return _Batch(self._reduce((x - out.x_hat).abs()), terms["kl"])


class GradientScorer(BaseScorer):
    """|d(-ELBO)/dx| ("elbo"), |dKL/dx| ("kl") or |x - x_hat| * |dKL/dx| ("combi", Zimmerer et al. 2019).

    The gradient says which pixels would have to change to make the image more probable under the healthy
    model. The posterior mean is used (eval mode), so maps are deterministic.
    """

    name = "grad_elbo"
    needs_grad = True
    _NAMES = {"elbo": "grad_elbo", "kl": "grad_kl", "combi": "combi"}

    def __init__(self, model: Any, target: str = "elbo", **opts: Any) -> None:
        if target not in self._NAMES:
            raise ConfigError(f"target must be one of {', '.join(self._NAMES)}, got '{target}'")
        _require_vae(model, self._NAMES[target])
        super().__init__(model, **opts)
        self.target, self.name = target, self._NAMES[target]

    def _score_batch(self, x: torch.Tensor, generator: torch.Generator) -> _Batch:
        x = x.detach().clone().requires_grad_(True)
        neg_elbo, terms, out = _neg_elbo(self.model, x)
        objective = neg_elbo if self.target == "elbo" else terms["kl"]
        (grad,) = torch.autograd.grad(objective.sum(), x)  # images are independent in eval mode
        g = grad.abs()
        if self.target == "combi":
            g = (x - out.x_hat).abs().detach() * g
        return _Batch(self._reduce(g).detach(), extra=self._recon_extra(out.x_hat.detach()))


class RestorationScorer(BaseScorer):
    """MAP restoration (Chen, You, Tezcan, Konukoglu 2020): starting at x_r = x, minimise
    -ELBO(x_r) + lam * D(x_r - x) over x_r by Adam steps with the model frozen; map = |x - x_r|.

    The healthy prior pulls lesions towards normal tissue while the data term D ("tv": total variation of the
    change, as in the paper; "l1": its L1 norm) keeps healthy pixels where they are. Adam makes ``lr`` a step
    in intensity units whatever the likelihood's scale; its first steps can overshoot on already-healthy
    images, so each image keeps its lowest-objective iterate (never worse than x itself). ``lam`` trades
    against the NLL's pixel weight (1/sigma^2 for a Gaussian), so tune it per model on healthy validation
    images, as the paper does; TV leaves a global intensity shift free, L1 does not. ``extra``: restored
    images (N,C,H,W), the objective per step (N, steps + 1) and the best objective reached (N,).
    """

    name = "restoration"
    needs_grad = True

    def __init__(
        self,
        model: Any,
        steps: int = 100,
        lr: float = 5e-3,
        lam: float = 1.0,
        data_term: str = "tv",
        **opts: Any,
    ) -> None:
        _require_vae(model, "restoration")
        super().__init__(model, **opts)
        if steps < 1:
            raise ConfigError(f"steps must be >= 1, got {steps}")
        if data_term not in ("tv", "l1"):
            raise ConfigError(f"data_term must be 'tv' or 'l1', got '{data_term}'")
        self.steps, self.lr, self.lam, self.data_term = steps, lr, lam, data_term

    def _data_term(self, d: torch.Tensor) -> torch.Tensor:
        if self.data_term == "l1":
            return d.abs().flatten(1).sum(1)
        dh = (d[..., 1:, :] - d[..., :-1, :]).abs().flatten(1).sum(1)
        return dh + (d[..., :, 1:] - d[..., :, :-1]).abs().flatten(1).sum(1)

    def _objective(self, x_r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return _neg_elbo(self.model, x_r)[0] + self.lam * self._data_term(x_r - x)

    def _score_batch(self, x: torch.Tensor, generator: torch.Generator) -> _Batch:
        x = x.detach()
        x_r = x.clone().requires_grad_(True)
        opt = torch.optim.Adam([x_r], lr=self.lr)
        best, best_obj, history = x.clone(), torch.full((x.shape[0],), math.inf, device=x.device), []
        for step in range(self.steps + 1):
            obj = self._objective(x_r, x)
            history.append(obj.detach())
            better = obj.detach() < best_obj
            best[better], best_obj[better] = x_r.detach()[better], obj.detach()[better]
            if step < self.steps:
                (x_r.grad,) = torch.autograd.grad(obj.sum(), x_r)  # weights stay frozen: no .backward()
                opt.step()
        m = self._reduce((x - best).abs())
        extra = {"restored": best, "objective": torch.stack(history, dim=1), "best_objective": best_obj}
        return _Batch(m, extra=extra)


class UncertaintyScorer(BaseScorer):
    """Decode m seeded samples z ~ q(z|x): map = mean residual |x - x_hat_m|; ``extra["variance"]`` =
    per-pixel variance of the decoded samples (zero for deterministic models), and "mean_reconstruction".

    Pixels the model is unsure about (high variance) are where residuals are least trustworthy; the variance
    map lets callers discount them.
    """

    name = "uncertainty"

    def __init__(self, model: Any, m: int = 10, seed: int = 0, **opts: Any) -> None:
        if not is_torch_model(model):
            raise ModelMismatchError(f"scorer 'uncertainty' needs a torch model; got {type(model).__name__}")
        super().__init__(model, **opts)
        if m < 1:
            raise ConfigError(f"m must be >= 1, got {m}")
        self.m, self.seed = m, seed

    def _score_batch(self, x: torch.Tensor, generator: torch.Generator) -> _Batch:
        mu, logvar = self.model.encode(x)
        std = torch.zeros_like(mu) if logvar is None else torch.exp(0.5 * logvar)
        samples = []
        for _ in range(self.m):
            eps = torch.randn(mu.shape, generator=generator).to(mu)
            samples.append(self.model.decode(mu + std * eps))
        x_hats = torch.stack(samples)  # (m, n, C, H, W)
        residual = self._reduce((x.unsqueeze(0) - x_hats).abs().mean(0))
        variance = self._reduce(x_hats.var(0, unbiased=False))
        extra = {"variance": variance, **self._recon_extra(x_hats.mean(0), "mean_reconstruction")}
        return _Batch(residual, extra=extra)


# ------------------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class _Entry:
    """cls; fixed: the options that define the name; defaults: overridable; needs: "any", "recon" or "vae"."""

    cls: Callable[..., BaseScorer]
    fixed: dict[str, Any]
    defaults: dict[str, Any]
    needs: str


_REGISTRY: dict[str, _Entry] = {
    "residual": _Entry(ResidualScorer, {"signed": False}, {}, "recon"),
    "residual_signed": _Entry(ResidualScorer, {"signed": True}, {}, "recon"),
    "ssim": _Entry(SSIMScorer, {"l1_weight": 0.0}, {}, "recon"),
    "ssim_l1": _Entry(SSIMScorer, {}, {"l1_weight": 0.5}, "recon"),
    "elbo": _Entry(ELBOScorer, {}, {}, "vae"),
    "kl": _Entry(KLScorer, {}, {}, "vae"),
    "grad_elbo": _Entry(GradientScorer, {"target": "elbo"}, {}, "vae"),
    "grad_kl": _Entry(GradientScorer, {"target": "kl"}, {}, "vae"),
    "combi": _Entry(GradientScorer, {"target": "combi"}, {}, "vae"),
    "restoration": _Entry(RestorationScorer, {}, {}, "vae"),
    "uncertainty": _Entry(UncertaintyScorer, {}, {}, "vae"),
    "intensity": _Entry(IntensityScorer, {}, {}, "any"),
}
SCORER_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def available_scorers(model: Any) -> list[str]:
    """Scorer names that make sense for this model: likelihood/gradient/sampling ones only for VAEs; AE and
    PCA get residual, SSIM and intensity; no model gets intensity only."""
    ok = {"any"}
    if model is not None and hasattr(model, "reconstruct"):
        ok.add("recon")
    if is_variational(model):
        ok.add("vae")
    return [name for name, entry in _REGISTRY.items() if entry.needs in ok]


def build_scorer(name: str, model: Any, **opts: Any) -> BaseScorer:
    """Scorer by registry name; ``opts`` go to its constructor (batch_size, image_method, k, steps, ...)."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown scorer '{name}'; choose from {', '.join(SCORER_NAMES)}")
    offers = available_scorers(model)
    if name not in offers:
        kind = type(model).__name__ if model is not None else "no model"
        raise ModelMismatchError(f"scorer '{name}' does not work with {kind}; it offers {', '.join(offers)}")
    entry = _REGISTRY[name]
    clash = sorted(set(entry.fixed) & set(opts))
    if clash:
        raise ConfigError(f"scorer '{name}' fixes {', '.join(clash)}; use the scorer class to change it")
    kwargs = {**entry.defaults, **opts, **entry.fixed}
    allowed = _option_names(entry.cls) | _option_names(BaseScorer)
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ConfigError(
            f"scorer '{name}' has no option {', '.join(unknown)}; it takes {', '.join(sorted(allowed))}"
        )
    return entry.cls(model, **kwargs)


def _option_names(cls: Callable[..., Any]) -> set[str]:
    params = inspect.signature(cls).parameters.values()
    skip = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    return {p.name for p in params if p.kind not in skip and p.name != "model"}
