"""What a training run reports: a rich progress bar, train.log, metrics.csv and the --tracker's copy.

Why three outputs: the bar is for the person watching, train.log for whoever reads the run later, and
metrics.csv is the machine-readable record that plots and reports read. A tracker (TensorBoard, MLflow:
:mod:`vaedx.training.tracker`) gets the same rows only when asked for. Only rank 0 creates any of them.

:func:`task_progress` is the one bar the other long jobs (data prepare, diagnose, report) use, so every
command shows progress the same way: on stderr, only when it is a terminal, never with --quiet.
"""

from __future__ import annotations

import csv
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from vaedx.atomic import atomic_write_text
from vaedx.runs.checkpoint import make_readable
from vaedx.training.tracker import Tracker

log = logging.getLogger("vaedx.training")

METRIC_COLUMNS = [
    "epoch", "step", "lr", "beta", "train_loss", "train_recon", "train_kl",
    "val_loss", "val_recon", "val_kl", "val_mse", "images_per_s", "seconds",
]  # fmt: skip


class MetricsLog:
    """Appends one row per epoch to metrics.csv; on resume drops rows past the resumed epoch."""

    def __init__(self, out: Path, resume_epoch: int | None, tracker: Tracker | None = None):
        self.out, self.path = out, out / "metrics.csv"
        rows: list[dict[str, Any]] = []
        if resume_epoch is not None and self.path.exists():
            with open(self.path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) <= resume_epoch]
        self._rewrite(rows)
        self.tracker = tracker or Tracker()

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        lines = [",".join(METRIC_COLUMNS)]
        lines += [",".join(str(r.get(c, "")) for c in METRIC_COLUMNS) for r in rows]
        atomic_write_text(self.path, "\n".join(lines) + "\n")
        make_readable(self.path)

    def append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as fh:
            csv.writer(fh).writerow([_fmt(row.get(c)) for c in METRIC_COLUMNS])
        self.tracker.log_metrics(row, int(row["epoch"]))

    def close(self, ok: bool = True) -> None:
        """``ok``: the run completed (the tracker then keeps the run folder as an artefact)."""
        self.tracker.finish(self.out, ok)


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


class TaskProgress:
    """Handle of :func:`task_progress`: ``advance()`` a step, ``describe()`` the current stage."""

    def __init__(self, progress: Progress | None, task: Any):
        self.progress, self.task = progress, task

    @property
    def shown(self) -> bool:
        return self.progress is not None

    def advance(self, steps: int = 1) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=steps)

    def describe(self, text: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=text)

    def stage(self, description: str, total: int | None = None) -> None:
        """Start the bar again for the next stage of a job (say, training a model, then the runs that use
        it): one bar on screen at a time, and a time estimate that forgets the earlier stage's speed."""
        if self.progress is not None:
            self.progress.reset(self.task, total=total, description=description)

    def update(self, done: int, total: int | None = None) -> None:
        """Set the bar to ``done`` of ``total``: the ``progress(done, total)`` callback that library loops
        (prepare, features, fine-tuning, evaluation, report) call, so the bar follows their real work."""
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total)

    def print(self, text: str) -> None:
        """A line above the bar (on stderr), shown even when the bar is not."""
        (self.progress.console if self.progress is not None else Console(stderr=True)).print(
            text, highlight=False, soft_wrap=True
        )


def on_terminal() -> bool:
    """Whether stderr is a terminal (a function, so tests can stand in for one)."""
    return sys.stderr.isatty()


@contextmanager
def task_progress(
    description: str, total: int | None = None, *, quiet: bool = False
) -> Iterator[TaskProgress]:
    """A progress bar (``total`` steps) or spinner (``total=None``: stages of unknown length) on stderr.

    Shown only when stderr is a terminal and not ``quiet``: a log file or a pipe gets no control codes.
    The bar disappears when the block ends, leaving what the command prints.
    """
    if quiet or not on_terminal():
        yield TaskProgress(None, None)
        return
    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield TaskProgress(progress, progress.add_task(description, total=total))
