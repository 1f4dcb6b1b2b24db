"""Latent features for diagnosis: what a trained reconstruction model says about each image, as a row.

Why the posterior: a VAE trained without labels on every image arranges them in its latent space, so a
small classifier on (mu, logvar) of a few labelled images needs far fewer labels than a CNN trained from
pixels. Anomaly scores can be appended as extra columns. The features are returned *raw*: standardisation
is the first step of each classifier pipeline, so it is fitted on the training rows only and saved with
the classifier.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vaedx.anomaly.base import check_input
from vaedx.errors import ConfigError, InputError

FEATURE_PARTS = ("mu", "logvar")

#: Test-time augmentation of the latent features: the posterior of each image is averaged over these fixed
#: views of it (the image itself always included). ``hflip`` mirrors left-right, which suits axial brain
#: MRI; ``affine`` is four small rotations and zooms, the kind of change the training augmentation already
#: taught the encoder to ignore. Which one, if any, is chosen on validation by ``diagnose fit``: on a chest
#: X-ray a mirrored heart is not a normal image, and the numbers, not a rule, decide.
TTA_VIEWS: dict[str, tuple[tuple[float, float, bool], ...]] = {  # (degrees, zoom, mirror) per extra view
    "none": (),
    "hflip": ((0.0, 1.0, True),),
    "affine": ((5.0, 1.0, False), (-5.0, 1.0, False), (0.0, 1.05, False), (0.0, 0.95, False)),
}


def check_tta(tta: str) -> str:
    if tta not in TTA_VIEWS:
        raise ConfigError(f"tta must be one of {', '.join(TTA_VIEWS)}, got {tta!r}")
    return tta


def tta_view(x: torch.Tensor, degrees: float, zoom: float, mirror: bool) -> torch.Tensor:
    """One fixed view of a batch: rotation by ``degrees`` and zoom about the centre (border pixels
    repeated, as in the training augmentation), then an optional left-right mirror."""
    import math

    from vaedx.data.augment import warp

    if degrees or zoom != 1.0:
        a = math.radians(degrees)
        theta = torch.tensor(
            [[math.cos(a) / zoom, -math.sin(a) / zoom, 0.0], [math.sin(a) / zoom, math.cos(a) / zoom, 0.0]],
            dtype=x.dtype, device=x.device,
        ).expand(x.shape[0], 2, 3)  # fmt: skip
        x = warp(x, theta)
    return torch.flip(x, dims=(-1,)) if mirror else x


def unwrap(model: Any) -> Any:
    """The network inside a :class:`vaedx.api.LoadedModel`, or the model itself."""
    return model.model if hasattr(model, "model") and hasattr(model, "preprocess") else model


def is_torch_model(model: Any) -> bool:
    return isinstance(model, torch.nn.Module)


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Eval mode (posterior mean, frozen norm statistics) while encoding; the caller's mode is restored."""
    was = getattr(model, "training", None)
    if is_torch_model(model):
        model.eval()
    try:
        yield
    finally:
        if was is not None and is_torch_model(model):
            model.train(was)


def placement(model: Any) -> tuple[torch.device, torch.dtype]:
    """Device and dtype of the weights: inputs move there, the model never moves."""
    for p in model.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def _check_include(include: Sequence[str]) -> tuple[str, ...]:
    bad = [p for p in include if p not in FEATURE_PARTS]
    if bad:
        raise ConfigError(f"unknown feature part(s) {', '.join(bad)}; choose from {', '.join(FEATURE_PARTS)}")
    return tuple(p for p in FEATURE_PARTS if p in include)


def _encode(model: Any, xb: np.ndarray, tta: str = "none") -> tuple[np.ndarray, np.ndarray | None]:
    """Posterior mean and log-variance of a batch, each averaged over the ``tta`` views and the image."""
    views = TTA_VIEWS[check_tta(tta)]
    if not is_torch_model(model):  # PCA baseline: numpy in, numpy out
        if views:
            raise ConfigError("test-time augmentation needs a torch encoder; PCA has none")
        mu, logvar = model.encode(xb)
        return np.asarray(mu, dtype=np.float64), None if logvar is None else np.asarray(logvar, np.float64)
    device, dtype = placement(model)
    # float32 on every device, never autocast: a classifier fitted on these features must see the same
    # numbers wherever it later runs (CUDA scoring's half precision would move calibrated probabilities)
    x = torch.from_numpy(xb).to(device=device, dtype=dtype)
    mu, logvar = model.encode(x)
    mu = mu.double()
    logvar = None if logvar is None else logvar.double()
    for view in views:
        m, lv = model.encode(tta_view(x, *view))
        mu = mu + m.double()
        logvar = None if logvar is None else logvar + lv.double()
    k = 1 + len(views)
    return (mu / k).cpu().numpy(), None if logvar is None else (logvar / k).cpu().numpy()


def _as_extra(extra: np.ndarray, n: int) -> np.ndarray:
    e = np.asarray(extra, dtype=np.float64)
    e = e[:, None] if e.ndim == 1 else e
    if e.ndim != 2 or e.shape[0] != n:
        raise InputError(f"extra features must be (N,) or (N, k) with N = {n} images, got shape {e.shape}")
    if not np.isfinite(e).all():
        raise InputError("extra features contain NaN or infinite values")
    return e


def latent_features(
    model: Any,
    images: Any,
    batch_size: int = 256,
    include: Sequence[str] = ("mu", "logvar"),
    extra: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
    tta: str = "none",
) -> np.ndarray:
    """(N, F) float64: posterior mean, log-variance (VAEs only) and ``extra`` columns, side by side.

    ``images`` is any (N, C, H, W) array, tensor, memmap or lazily sliced row view; it is read
    ``batch_size`` rows at a time so a memory-mapped store is never loaded whole. Works for the VAE, the AE
    and PCA (which have no log-variance: those columns are simply absent, see :class:`FeatureSpec`).
    ``progress(done, total)`` is called with the images encoded so far after every batch. ``tta`` (a key
    of :data:`TTA_VIEWS`) averages each image's posterior over those fixed views of it.
    """
    net = unwrap(model)
    parts = _check_include(include)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    check_input(net, images)
    n = int(images.shape[0])
    cols: list[np.ndarray] = []
    with torch.no_grad(), eval_mode(net):
        for s in range(0, n, batch_size):
            chunk = images[s : s + batch_size]
            xb = chunk.detach().cpu().float().numpy() if isinstance(chunk, torch.Tensor) else chunk
            xb = np.array(xb, dtype=np.float32)  # a copy: memmap rows are read-only
            if not np.isfinite(xb).all():
                bad = s + int(np.argmax(~np.isfinite(xb.reshape(len(xb), -1)).all(1)))
                raise InputError(f"image {bad} contains NaN or infinite pixel values")
            mu, logvar = _encode(net, xb, tta)
            row = [mu] if "mu" in parts else []
            if "logvar" in parts and logvar is not None:
                row.append(logvar)
            cols.append(np.concatenate(row, axis=1) if row else np.zeros((len(xb), 0)))
            if progress is not None:
                progress(s + len(xb), n)
    feats = np.concatenate(cols, axis=0)
    if extra is not None:
        feats = np.concatenate([feats, _as_extra(extra, n)], axis=1)
    if feats.shape[1] == 0:
        raise ConfigError(f"no features: {type(net).__name__} has no {', '.join(parts)} and no extra columns")
    return feats


def anomaly_columns(
    model: Any, images: Any, scorers: Sequence[str], batch_size: int = 64
) -> np.ndarray | None:
    """(N, len(scorers)) image anomaly scores (vaedx.anomaly registry names), or None without scorers.

    Scored chunk by chunk, so features for a whole store need no more memory than one batch.
    """
    if not scorers:
        return None
    from vaedx.anomaly.registry import build_scorer

    net = unwrap(model)
    built = [build_scorer(name, net, batch_size=batch_size) for name in scorers]
    n, out = int(images.shape[0]), []
    for s in range(0, n, 1024):
        xb = np.array(images[s : s + 1024], dtype=np.float32)
        out.append(np.stack([sc.score(xb).scores for sc in built], axis=1))
    return np.concatenate(out, axis=0)


@dataclass
class FeatureSpec:
    """How a diagnosis model's feature columns were made, so prediction recomputes exactly the same ones."""

    include: tuple[str, ...] = ("mu", "logvar")
    latent_dim: int = 0
    has_logvar: bool = False
    scorers: list[str] = field(default_factory=list)
    tta: str = "none"  # test-time augmentation of the latent columns (TTA_VIEWS), chosen by diagnose fit

    @classmethod
    def for_model(cls, model: Any, include: Sequence[str], scorers: Sequence[str] = ()) -> FeatureSpec:
        net = unwrap(model)
        parts = _check_include(include)
        variational = bool(getattr(net, "stochastic", False))
        return cls(parts, int(net.latent_dim), variational and "logvar" in parts, list(scorers))

    @property
    def names(self) -> list[str]:
        names = [f"mu{i}" for i in range(self.latent_dim)] if "mu" in self.include else []
        names += [f"logvar{i}" for i in range(self.latent_dim)] if self.has_logvar else []
        return names + [f"score_{s}" for s in self.scorers]

    def compute(
        self,
        model: Any,
        images: Any,
        batch_size: int = 256,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """The feature matrix for ``images`` (anomaly scores computed here when the spec has scorers);
        ``progress(done, total)`` follows the encoding batches."""
        extra = anomaly_columns(model, images, self.scorers)
        feats = latent_features(model, images, batch_size, self.include, extra, progress, self.tta)
        if feats.shape[1] != len(self.names):
            raise InputError(
                f"model gives {feats.shape[1]} feature columns, the spec expects {len(self.names)}"
            )
        return feats

    def to_json(self) -> dict[str, Any]:
        return {
            "include": list(self.include),
            "latent_dim": self.latent_dim,
            "has_logvar": self.has_logvar,
            "scorers": list(self.scorers),
            "names": self.names,
            "tta": self.tta,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(
            tuple(d["include"]), int(d["latent_dim"]), bool(d["has_logvar"]), list(d.get("scorers", [])),
            check_tta(d.get("tta", "none")),  # files written before TTA existed had none
        )
