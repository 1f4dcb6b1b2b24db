"""Anomaly scorers: a trained reconstruction model + a batch of images -> pixel maps and image scores.

Thin re-export kept so ``from vaedx.anomaly.scorers import ...`` keeps working; the code lives in
``base`` (ScoreResult, BaseScorer, checks), ``residual``, ``likelihood``, ``gradient``, ``restoration``
and ``registry`` (build_scorer, available_scorers).
"""

from __future__ import annotations

from vaedx.anomaly.base import (
    BaseScorer,
    Scorer,
    ScoreResult,
    check_input,
    is_torch_model,
    is_variational,
    model_config,
    reconstruct,
)
from vaedx.anomaly.gradient import GradientScorer
from vaedx.anomaly.likelihood import (
    ELBOScorer,
    KLScorer,
    UncertaintyScorer,
    decode_output,
    importance_log_weights,
    iwae_nll,
    likelihood_nll,
    log_likelihood,
    pixel_nll,
)
from vaedx.anomaly.registry import SCORER_NAMES, available_scorers, build_scorer
from vaedx.anomaly.residual import IntensityScorer, ResidualScorer, SSIMScorer
from vaedx.anomaly.restoration import RestorationScorer

__all__ = [
    "SCORER_NAMES",
    "BaseScorer",
    "ELBOScorer",
    "GradientScorer",
    "IntensityScorer",
    "KLScorer",
    "ResidualScorer",
    "RestorationScorer",
    "SSIMScorer",
    "ScoreResult",
    "Scorer",
    "UncertaintyScorer",
    "available_scorers",
    "build_scorer",
    "check_input",
    "decode_output",
    "importance_log_weights",
    "is_torch_model",
    "is_variational",
    "iwae_nll",
    "likelihood_nll",
    "log_likelihood",
    "model_config",
    "pixel_nll",
    "reconstruct",
]
