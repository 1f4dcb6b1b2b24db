"""Anomaly detection: scoring rules that turn a reconstruction model and images into pixel maps and image
scores (``scorers``), plus map post-processing and thresholds (``postprocess``, ``thresholds``)."""

from vaedx.anomaly.scorers import (
    SCORER_NAMES,
    BaseScorer,
    ELBOScorer,
    GradientScorer,
    IntensityScorer,
    KLScorer,
    ResidualScorer,
    RestorationScorer,
    Scorer,
    ScoreResult,
    SSIMScorer,
    UncertaintyScorer,
    available_scorers,
    build_scorer,
    check_input,
)

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
]
