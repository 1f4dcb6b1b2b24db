"""``vaedx export``: the command-line face of :mod:`vaedx.export.exporter`, free of torch for a fast start."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from vaedx.errors import ConfigError


def export_command(
    model: Path = typer.Option(..., "--model", "-m", help="Run folder or checkpoint folder."),
    fmt: str = typer.Option(
        "onnx", "--format", "-f", help="onnx (default, recommended) or torchscript (deprecated in PyTorch)."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="File to write; FILE.json is written beside it."),
) -> None:
    """Export a model as x -> (reconstruction, mu, logvar) to ONNX (default) or TorchScript (deprecated)."""
    from vaedx.export.exporter import TOLERANCE, TORCHSCRIPT_NOTE, TorchScriptDeprecated, export_model

    if fmt not in TOLERANCE:
        raise ConfigError(f"unknown export format '{fmt}'; choose onnx or torchscript")
    with warnings.catch_warnings():  # said once, as a plain line, instead of a Python warning
        warnings.simplefilter("ignore", TorchScriptDeprecated)
        path = export_model(model, fmt, output)  # type: ignore[arg-type]
    if fmt == "torchscript":
        typer.secho(f"note: {TORCHSCRIPT_NOTE}", err=True, fg="yellow")
    typer.echo(f"wrote {path} and {path}.json")
