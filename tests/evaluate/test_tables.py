"""Table formatting: one number format for estimates with intervals, n/a for undefined metrics."""

from __future__ import annotations

import numpy as np
from rich.console import Console

from vaedx.evaluate.tables import format_table, format_value, to_markdown
from vaedx.metrics.bootstrap import BootstrapCI

ROWS = [
    {"model": "vae", "auroc": (0.8731, 0.8412, 0.8999), "n": 600},
    {"model": "a|e", "auroc": BootstrapCI(0.5, 0.45, 0.551, 1000, 0, 0.05), "dice": None},
]


def test_format_value():
    assert format_value((0.8731, 0.8412, 0.8999)) == "0.873 [0.84, 0.90]"
    assert format_value(None) == "n/a"
    assert format_value(np.float64(0.12345)) == "0.123"
    assert format_value(np.int64(7)) == "7"
    assert format_value(float("nan")) == "n/a"
    assert format_value("pca") == "pca"


def test_to_markdown():
    assert to_markdown(ROWS) == (
        "| model | auroc | n | dice |\n"
        "| --- | ---: | ---: | --- |\n"
        "| vae | 0.873 [0.84, 0.90] | 600 |  |\n"
        "| a\\|e | 0.500 [0.45, 0.55] |  | n/a |\n"
    )
    assert to_markdown([]) == ""


def test_format_table_renders():
    table = format_table(ROWS, title="Comparison")
    assert [c.header for c in table.columns] == ["model", "auroc", "n", "dice"]
    console = Console(record=True, width=100)
    console.print(table)
    text = console.export_text()
    assert "Comparison" in text and "0.873 [0.84, 0.90]" in text and "n/a" in text
