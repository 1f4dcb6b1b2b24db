"""The HTML report of a pipeline folder or a training run: ``build_report`` and ``vaedx report``."""

from vaedx.report.build import build_report

__all__ = ["build_report"]
