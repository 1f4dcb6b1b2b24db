"""Anomaly detection: scoring rules that turn a reconstruction model and images into pixel maps and image
scores, map post-processing, threshold calibration and ``vaedx detect``.

The scorer API (``build_scorer``, ``available_scorers``, the scorer classes) is re-exported lazily, on first
attribute access, for notebooks: an eager import here would load torch for every command that imports a
module of this package.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "BaseScorer": "base", "Scorer": "base", "ScoreResult": "base", "check_input": "base",
    "is_torch_model": "base", "is_variational": "base", "model_config": "base", "reconstruct": "base",
    "GradientScorer": "gradient",
    "ELBOScorer": "likelihood", "KLScorer": "likelihood", "UncertaintyScorer": "likelihood",
    "decode_output": "likelihood", "importance_log_weights": "likelihood", "iwae_nll": "likelihood",
    "likelihood_nll": "likelihood", "log_likelihood": "likelihood",
    "SCORER_NAMES": "registry", "available_scorers": "registry", "build_scorer": "registry",
    "IntensityScorer": "residual", "ResidualScorer": "residual", "SSIMScorer": "residual",
    "RestorationScorer": "restoration",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"vaedx.anomaly.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'vaedx.anomaly' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
