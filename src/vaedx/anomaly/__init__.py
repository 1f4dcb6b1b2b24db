"""Anomaly detection: scoring rules that turn a reconstruction model and images into pixel maps and image
scores (``scorers``), plus map post-processing and thresholds (``postprocess``, ``thresholds``).

The scorer API is re-exported lazily (on first attribute access): ``vaedx detect --help`` and every other
command import ``vaedx.anomaly.commands`` at start-up, and an eager import here would load torch for all
of them.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    scorers = importlib.import_module("vaedx.anomaly.scorers")
    if name == "__all__" or name in scorers.__all__:
        return getattr(scorers, name)
    raise AttributeError(f"module 'vaedx.anomaly' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(importlib.import_module("vaedx.anomaly.scorers").__all__)
