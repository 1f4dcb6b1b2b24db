"""`vaedx demo`: the whole pipeline on PneumoniaMNIST (the work is in :mod:`vaedx.pipeline.demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vaedx.cli.options import DEVICE_HELP, check_device


def demo(
    data: Annotated[
        Path | None, typer.Option("--data", help="Folder holding pneumoniamnist/pneumoniamnist.npz.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything the demo writes.")] = Path(
        "runs/demo"
    ),
    quick: Annotated[
        bool, typer.Option("--quick", help="Smoke run: 3 epochs, at most 600 images per split.")
    ] = False,
    epochs: Annotated[
        int | None, typer.Option(help="Epochs of every trained network (default 30/15).")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch (default: torch's). On a busy CPU 1 is faster.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of training, classifier folds and bootstrap.")] = 0,
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)] = "auto",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier demo run in --out.")
    ] = False,
) -> None:
    """Run vaedx end to end on PneumoniaMNIST: train VAE/AE/PCA, detect, diagnose, evaluate, report."""
    from vaedx.pipeline.demo import run_demo

    dev = check_device(device)
    run_demo(out, data=data, quick=quick, epochs=epochs, threads=threads, seed=seed, overwrite=overwrite,
             device=dev)  # fmt: skip
