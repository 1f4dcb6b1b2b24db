"""What every report section is handed: the collected pipeline, the seed, the bootstrap size and where
figures go. In a module of its own so the section modules and the page builder import it from below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from vaedx.atomic import atomic_write
from vaedx.report.collect import Pipeline
from vaedx.report.figures import to_png
from vaedx.report.html import Section

FIGURE_DPI = 100


@dataclass
class Context:
    """The collected pipeline, the report's seed and bootstrap size, and where figures are written."""

    pipe: Pipeline
    figure_dir: Path
    seed: int = 0
    n_boot: int = 200
    written: list[Path] = field(default_factory=list)

    def add_figure(self, section: Section, fig: Figure, name: str, caption: str) -> None:
        """Save ``fig`` as <figure_dir>/NN_<name>.png and embed the same bytes in the section."""
        png = to_png(fig, FIGURE_DPI)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")
        path = self.figure_dir / f"{len(self.written) + 1:02d}_{slug}.png"
        atomic_write(path, lambda tmp: tmp.write_bytes(png))  # a kill never leaves half a PNG
        self.written.append(path)
        section.figure(png, caption, alt=name)

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)
