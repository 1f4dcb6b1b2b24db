"""Anomaly detection: scoring rules that turn a reconstruction model and images into pixel maps and image
scores (``scorers``), plus map post-processing and thresholds (``postprocess``, ``thresholds``)."""

from vaedx.anomaly.scorers import *  # noqa: F403 - the package re-exports the scorer API as is
from vaedx.anomaly.scorers import __all__  # noqa: F401
