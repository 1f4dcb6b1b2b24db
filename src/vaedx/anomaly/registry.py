"""Scorer registry: names -> classes with fixed options, and which scorers a model supports.

Why a registry: the CLI, evaluation and serving pick scorers by name and must learn which apply to a model
(VAE vs AE/PCA vs none) without importing every class.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vaedx.anomaly.base import BaseScorer, is_variational, model_config
from vaedx.anomaly.gradient import GradientScorer
from vaedx.anomaly.likelihood import ELBOScorer, KLScorer, UncertaintyScorer
from vaedx.anomaly.residual import IntensityScorer, ResidualScorer, SSIMScorer
from vaedx.anomaly.restoration import RestorationScorer
from vaedx.errors import ConfigError, ModelMismatchError


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
    "residual_intensity": _Entry(ResidualScorer, {"signed": True, "intensity_weight": True}, {}, "recon"),
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
        if getattr(model_config(model), "kind", None) == "dae":
            kind += " (a denoising autoencoder: skip connections bypass its latent, so it has no likelihood)"
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
