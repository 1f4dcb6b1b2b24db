"""The HTML report of a run or pipeline folder: ``build_report(run_dir, out)``.

Imported lazily, so registering ``vaedx report`` with the CLI does not load matplotlib and scikit-learn.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_report"]


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from vaedx.report.build import build_report

        return build_report
    raise AttributeError(f"module 'vaedx.report' has no attribute {name!r}")
