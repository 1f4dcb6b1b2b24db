"""Experiment tracking for training runs (``--tracker none|tensorboard|mlflow``), one module for all trainers.

Why explicit: metrics.csv in the run folder is always written and is what reports read; a tracker is an
extra copy for people who compare many runs in a tool. Logging to one only because its package happened
to be installed surprised users (files appeared, or did not, depending on the environment), so the default
is ``none`` and asking for a tracker whose package is missing is one line naming the extra to install.

MLflow logs the parameters (the run's settings, flattened as ``model.latent_dim``), one metric row per
epoch (step = epoch) and, when the run ends, the run folder as the artefact ``run``. Where: the URI in
``MLFLOW_TRACKING_URI`` when set, else a local SQLite store ``./mlruns/mlflow.db`` with artefacts in
``./mlruns/artifacts`` (nothing leaves the machine). The experiment is ``MLFLOW_EXPERIMENT_NAME`` or
``vaedx``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vaedx.errors import ConfigError

TRACKERS = ("none", "tensorboard", "mlflow")
LOCAL_STORE = Path("mlruns")


class Tracker:
    """No tracking: the interface every tracker has."""

    def log_metrics(self, row: dict[str, Any], step: int) -> None:
        """One epoch's numbers."""

    def finish(self, out: Path | None, ok: bool) -> None:
        """The run ended (``ok``: it completed); ``out`` is the run folder to keep as an artefact."""


class TensorBoardTracker(Tracker):
    def __init__(self, out: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "--tracker tensorboard needs the tensorboard package: pip install 'vaedx[tensorboard]'"
            ) from None
        self.writer = SummaryWriter(log_dir=str(out / "tensorboard"))

    def log_metrics(self, row: dict[str, Any], step: int) -> None:
        for k, v in _numbers(row).items():
            self.writer.add_scalar(k, v, step)

    def finish(self, out: Path | None, ok: bool) -> None:
        self.writer.close()


def local_uri(root: Path = LOCAL_STORE) -> tuple[str, str]:
    """(tracking URI, artefact location) of the local store under ``root``."""
    root = root.resolve()
    return f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri()


class MlflowTracker(Tracker):
    def __init__(self, params: dict[str, Any], run_name: str):
        try:
            import mlflow
        except ImportError:
            raise ConfigError("--tracker mlflow needs MLflow: pip install 'vaedx[mlflow]'") from None
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        artifacts = None
        if not uri:
            LOCAL_STORE.mkdir(exist_ok=True)
            uri, artifacts = local_uri()
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "vaedx"
        self.client = MlflowClient(uri)
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            exp_id = self.client.create_experiment(name, artifact_location=artifacts)
        else:
            exp_id = exp.experiment_id
        self.run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id
        self.uri, self._mlflow = uri, mlflow
        flat = _flatten(params)
        keys = sorted(flat)
        for i in range(0, len(keys), 100):  # MLflow takes at most 100 parameters per call
            batch = [mlflow.entities.Param(k, flat[k]) for k in keys[i : i + 100]]
            self.client.log_batch(self.run_id, params=batch)

    def log_metrics(self, row: dict[str, Any], step: int) -> None:
        import time

        now = int(time.time() * 1000)
        metrics = [self._mlflow.entities.Metric(k, v, now, step) for k, v in _numbers(row).items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, out: Path | None, ok: bool) -> None:
        if ok and out is not None and out.is_dir():
            self.client.log_artifacts(self.run_id, str(out), artifact_path="run")
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


def open_tracker(kind: str, out: Path, params: dict[str, Any]) -> Tracker:
    """The tracker named by ``--tracker``; ``params`` are the run's settings (logged by MLflow)."""
    if kind not in TRACKERS:
        raise ConfigError(f"--tracker must be one of {', '.join(TRACKERS)}, not {kind!r}")
    if kind == "tensorboard":
        return TensorBoardTracker(out)
    if kind == "mlflow":
        return MlflowTracker(params, run_name=out.name)
    return Tracker()


def check_tracker(kind: str) -> str:
    """Checked before any work starts, so a typo does not surface after an hour of training."""
    if kind not in TRACKERS:
        raise ConfigError(f"--tracker must be one of {', '.join(TRACKERS)}, not {kind!r}")
    return kind


def _numbers(row: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in row.items()
        if k not in ("epoch", "step") and isinstance(v, int | float) and not isinstance(v, bool)
    }


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as ``a.b: text`` (MLflow parameters are strings of at most 6000 characters)."""
    flat: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat |= _flatten(v, f"{key}.")
        else:
            flat[key] = str(v)[:6000]
    return flat
