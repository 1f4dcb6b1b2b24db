"""Comparison tables (terminal and Markdown) with one number format everywhere.

A metric with a bootstrap interval prints as ``0.873 [0.84, 0.90]``: three decimals for the estimate, two for
the bounds, since the interval is rarely narrower than 0.01. Undefined metrics (None) print as ``n/a``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

from rich.table import Table

from vaedx.metrics.bootstrap import BootstrapCI

NA = "n/a"


def _is_ci(v: Any) -> bool:
    return isinstance(v, BootstrapCI) or (
        isinstance(v, tuple | list) and len(v) == 3 and all(isinstance(x, Real) for x in v)
    )


def format_value(v: Any, digits: int = 3, ci_digits: int = 2) -> str:
    """One cell: CI triples/BootstrapCI as ``point [low, high]``, floats rounded, None as ``n/a``."""
    if v is None:
        return NA
    if _is_ci(v):
        p, lo, hi = (float(x) for x in v)
        return f"{p:.{digits}f} [{lo:.{ci_digits}f}, {hi:.{ci_digits}f}]"
    if isinstance(v, bool) or isinstance(v, Integral):
        return str(v)
    if isinstance(v, Real):
        return f"{float(v):.{digits}f}" if math.isfinite(float(v)) else NA
    return str(v)


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def _numeric(rows: Sequence[dict[str, Any]], col: str) -> bool:
    vals = [r[col] for r in rows if r.get(col) is not None]
    return bool(vals) and all(_is_ci(v) or (isinstance(v, Real) and not isinstance(v, bool)) for v in vals)


def format_table(rows: Sequence[dict[str, Any]], title: str | None = None) -> Table:
    """rich Table with the union of the rows' keys as columns (first-seen order); numbers right-aligned."""
    table = Table(title=title)
    cols = _columns(rows)
    for c in cols:
        table.add_column(c, justify="right" if _numeric(rows, c) else "left")
    for r in rows:
        table.add_row(*(format_value(r[c]) if c in r else "" for c in cols))
    return table


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """GitHub-flavoured Markdown table of the same cells as :func:`format_table` (``|`` escaped)."""
    cols = _columns(rows)
    if not cols:
        return ""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        "| " + " | ".join(cell(c) for c in cols) + " |",
        "| " + " | ".join("---:" if _numeric(rows, c) else "---" for c in cols) + " |",
    ]
    for r in rows:
        lines.append("| " + " | ".join(cell(format_value(r[c])) if c in r else "" for c in cols) + " |")
    return "\n".join(lines) + "\n"
