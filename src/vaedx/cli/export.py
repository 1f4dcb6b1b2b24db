"""``vaedx export``: the command-line face of :mod:`vaedx.export.exporter`, free of torch for a fast start."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from vaedx.cli.options import (
    DEVICE_HELP,
    OVERWRITE_HELP,
    THREADS_HELP,
    check_device,
    pick,
    refuse_existing,
    required,
    set_threads,
)
from vaedx.errors import ConfigError


def export_command(
    model: Path = typer.Option(..., "--model", "-m", help="Run folder or checkpoint folder."),
    fmt: str = typer.Option(
        "onnx", "--format", "-f", help="onnx (default, recommended) or torchscript (deprecated in PyTorch)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="File to write; FILE.json is written beside it."
    ),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    output: Path | None = typer.Option(None, "--output", hidden=True, help="Old spelling of --out."),
) -> None:
    """Export a model as x -> (reconstruction, mu, logvar) to ONNX (default) or TorchScript (deprecated)."""
    target = required(pick(out, output, "--output", "--out"), "--out")
    from vaedx.export.exporter import TOLERANCE, TORCHSCRIPT_NOTE, TorchScriptDeprecated, export_model

    if fmt not in TOLERANCE:
        raise ConfigError(f"unknown export format '{fmt}'; choose onnx or torchscript")
    refuse_existing(target, overwrite)
    set_threads(threads)
    with warnings.catch_warnings():  # said once, as a plain line, instead of a Python warning
        warnings.simplefilter("ignore", TorchScriptDeprecated)
        path = export_model(model, fmt, target, device=check_device(device))  # type: ignore[arg-type]
    if fmt == "torchscript":
        typer.secho(f"note: {TORCHSCRIPT_NOTE}", err=True, fg="yellow")
    typer.echo(f"wrote {path} and {path}.json")
