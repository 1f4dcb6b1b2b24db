"""``vaedx detect``: the command-line face of :func:`vaedx.anomaly.detect.detect`.

Kept free of heavy imports (torch, the scorers) so that every ``vaedx`` command starts quickly; the work is
imported when the command runs.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console(stderr=True)


def detect_command(
    model: Path = typer.Option(..., "--model", "-m", help="Trained run folder (vaedx train --out)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    store: Path | None = typer.Option(None, "--store", "-s", help="Tensor store to score."),
    split: str = typer.Option("test", help="Store split to score ('all' for every row)."),
    inputs: list[Path] | None = typer.Option(None, "--input", "-i", help="Image files or folders (repeat)."),
    scorer: list[str] | None = typer.Option(None, "--scorer", help="Scorer name (repeat); default residual."),
    option: list[str] | None = typer.Option(
        None, "--option", help="SCORER.NAME=VALUE, e.g. restoration.steps=20"
    ),
    postprocess: str | None = typer.Option(None, help="e.g. foreground,median=3,gaussian=1"),
    max_overlays: int = typer.Option(50, help="Overlay PNGs per scorer (0 = none)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Detect anomalies: anomaly maps, image scores and flags at calibrated thresholds."""
    from vaedx.anomaly.detect import detect, parse_options

    path = detect(
        model,
        out,
        store=store,
        split=None if split == "all" else split,
        inputs=inputs,
        scorers=scorer or ["residual"],
        options=parse_options(option),
        postprocess=postprocess,
        max_overlays=max_overlays,
        quiet=quiet,
    )
    if not quiet:
        console.print(f"wrote {path / 'scores.csv'}, maps/, overlays/ and detect.json")
