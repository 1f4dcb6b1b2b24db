"""What a training run reports: a rich progress bar, train.log, metrics.csv and (optionally) TensorBoard.

Why three outputs: the bar is for the person watching, train.log for whoever reads the run later, and
metrics.csv is the machine-readable record that plots and reports read (TensorBoard only when installed,
so it never becomes a hard dependency). Only rank 0 creates any of them.
"""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vaedx.atomic import atomic_write_text
from vaedx.runs.checkpoint import make_readable

log = logging.getLogger("vaedx.training")

METRIC_COLUMNS = [
    "epoch", "step", "lr", "beta", "train_loss", "train_recon", "train_kl",
    "val_loss", "val_recon", "val_kl", "val_mse", "images_per_s", "seconds",
]  # fmt: skip


class MetricsLog:
    """Appends one row per epoch to metrics.csv; on resume drops rows past the resumed epoch."""

    def __init__(self, out: Path, resume_epoch: int | None):
        self.path = out / "metrics.csv"
        rows: list[dict[str, Any]] = []
        if resume_epoch is not None and self.path.exists():
            with open(self.path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) <= resume_epoch]
        self._rewrite(rows)
        self.tb: Any = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(out / "tensorboard"))
        except Exception:  # tensorboard not installed: the CSV is enough
            self.tb = None

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        lines = [",".join(METRIC_COLUMNS)]
        lines += [",".join(str(r.get(c, "")) for c in METRIC_COLUMNS) for r in rows]
        atomic_write_text(self.path, "\n".join(lines) + "\n")
        make_readable(self.path)

    def append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as fh:
            csv.writer(fh).writerow([_fmt(row.get(c)) for c in METRIC_COLUMNS])
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("epoch", "step") and isinstance(v, float | int):
                    self.tb.add_scalar(k, v, row["epoch"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def attach_log_file(out: Path) -> logging.Handler:
    handler = logging.FileHandler(out / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


class Reporter:
    """Progress bar + console lines for rank 0; silent elsewhere, with --quiet, or when not on a terminal."""

    def __init__(self, enabled: bool, quiet: bool):
        self.console = Console(stderr=True)
        self.echo = enabled and not quiet
        self.bar_on = self.echo and sys.stderr.isatty()
        self.progress: Progress | None = None
        self.task: Any = None

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        if not self.bar_on:
            return
        if self.progress is None:
            self.progress = Progress(
                TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}  {task.fields[speed]} img/s"), TimeRemainingColumn(),
                console=self.console, transient=True,
            )  # fmt: skip
            self.progress.start()
        if self.task is not None:
            self.progress.remove_task(self.task)
        fields = {"epoch": f"{epoch}/{epochs}", "loss": "-", "speed": "-"}
        self.task = self.progress.add_task("train", total=steps, **fields)

    def step(self, loss: float, images_per_s: float) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, advance=1, loss=f"{loss:.4g}", speed=f"{images_per_s:.0f}")

    def line(self, text: str) -> None:
        log.info(text)
        if self.echo:
            if self.progress is not None:
                self.progress.console.print(text, highlight=False)
            else:
                self.console.print(text, highlight=False)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
