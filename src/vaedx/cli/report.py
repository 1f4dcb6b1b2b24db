"""``vaedx report RUN_DIR -o report.html``: the self-contained HTML report of a pipeline folder or run."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from vaedx.cli.options import DEVICE_HELP, OVERWRITE_HELP, QuietOpt, check_device, refuse_existing

console = Console(stderr=True)


def report_command(
    run_dir: Path = typer.Argument(..., help="Pipeline folder (models/, detect/, ...) or one training run."),
    out: Path | None = typer.Option(None, "--out", "-o", help="HTML file to write [RUN_DIR/report.html]."),
    store: Path | None = typer.Option(None, "--store", "-s", help="Tensor store (default: discovered)."),
    detect: list[Path] | None = typer.Option(None, "--detect", help="`vaedx detect` output folder (repeat)."),
    diagnosis: Path | None = typer.Option(None, "--diagnosis", help="`vaedx diagnose fit` output folder."),
    seed: int = typer.Option(0, help="Seed of the bootstrap bands, example picks, t-SNE and prior samples."),
    n_boot: int = typer.Option(200, "--n-boot", help="Bootstrap resamples for the ROC/PR bands."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    quiet: bool = QuietOpt,
) -> None:
    """Write one HTML file (figures embedded, no network needed) plus the figures as PNG files."""
    from vaedx.report import build_report
    from vaedx.training.progress import task_progress

    target = out or (run_dir / "report.html" if run_dir.is_dir() else None)
    refuse_existing(target, overwrite)

    with task_progress("report", quiet=quiet) as bar:

        def section(done: int, total: int, name: str) -> None:
            bar.update(done, total)
            bar.describe(f"report: {name}")

        path = build_report(
            run_dir,
            out,
            store=store,
            detect_dirs=detect or None,
            diagnosis_dir=diagnosis,
            seed=seed,
            n_boot=n_boot,
            device=check_device(device),
            progress=section,
        )
    console.print(f"wrote {path} and {path.stem}_figures/", highlight=False, soft_wrap=True)
