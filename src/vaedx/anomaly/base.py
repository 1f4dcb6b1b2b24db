"""Scorer foundations: ScoreResult, the BaseScorer batching loop, input checks and model helpers.

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from vaedx.anomaly.postprocess import image_score
from vaedx.errors import ConfigError, InputError, ModelMismatchError
from vaedx.models.device import inference_autocast


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
    amp = True  # autocast on CUDA (vaedx.models.device); False on a scorer, or VAEDX_AMP=0, scores in float32

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
                with inference_autocast(device, enabled=self.amp):
                    parts.append(self._score_batch(xb, generator))
        # .float() first: numpy has no bfloat16, and autocast may leave half-precision maps on CUDA
        maps = torch.cat([p.maps.detach().float() for p in parts]).cpu().numpy().astype(np.float32)
        _check_finite_output(self.name, "map", maps)
        if parts[0].scores is not None:
            scores = torch.cat([p.scores.detach().double() for p in parts]).cpu().numpy().astype(np.float64)
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


