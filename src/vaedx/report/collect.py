"""Find and read what a pipeline folder (or one training run plus its outputs) holds, for the report.

Why one place: every section of the report is optional, so discovery decides once what exists and reads it
with checks; a corrupt file stops the report with an :class:`InputError` naming it, while an absent part
only drops its section. Models and stores are opened lazily, because the cheap sections should not pay
for loading weights.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from vaedx.anomaly.output import DetectOutput, read_json_object
from vaedx.data.store import TensorStore
from vaedx.errors import InputError
from vaedx.runs.folder import BEST, LAST, METRICS_FILE

MAIN_MODEL = "vae"
METRIC_FILE = METRICS_FILE


def read_metrics_csv(path: Path) -> dict[str, np.ndarray]:
    """Columns of a training run's metrics.csv as float arrays (blank cells are NaN), one row per epoch."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows, cols = list(reader), list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"unreadable metrics.csv ({e})", path) from None
    if "epoch" not in cols or "train_loss" not in cols:
        raise InputError("not a vaedx metrics.csv (needs epoch and train_loss columns)", path)
    out: dict[str, np.ndarray] = {}
    for c in cols:
        try:
            out[c] = np.array([float(r[c]) if r.get(c) not in ("", None) else np.nan for r in rows])
        except ValueError:
            raise InputError(f"column '{c}' of metrics.csv holds a non-number", path) from None
    return out


@dataclass
class RunInfo:
    """One training run folder: its name (models/<name>), metrics per epoch and run config."""

    name: str
    path: Path
    metrics: dict[str, np.ndarray] | None
    config: dict[str, Any]
    device: str = "cpu"  # where the figures that run the model load it

    @cached_property
    def loaded(self) -> Any:
        from vaedx.runs.loaded import load_model

        return load_model(self.path, device=self.device)

    @property
    def kind(self) -> str:
        return str(self.config.get("train", {}).get("model", {}).get("kind", "?"))


@dataclass
class DetectInfo(DetectOutput):
    """One `vaedx detect` output: scores per scorer, truth (1 = abnormal, -1 = unlabelled), flags, meta."""

    name: str = ""
    evaluation: dict[str, Any] | None = None

    @property
    def truth(self) -> np.ndarray:
        normal = self.normal_label
        return np.array([-1 if not r["label"] else int(r["label"] != normal) for r in self.rows])

    @property
    def groups(self) -> np.ndarray | None:
        """Patient ids when every row has one and they repeat (then the bootstrap resamples patients)."""
        pids = np.array([r.get("patient_id", "") for r in self.rows], dtype=object)
        return pids if all(pids) and len(set(pids)) < len(pids) else None

    def maps(self, scorer: str) -> np.ndarray | None:
        """Memory-mapped maps of one scorer, None when detect wrote none."""
        return self.load_maps(scorer, mmap=True)


@dataclass
class DiagnosisInfo:
    """A `vaedx diagnose fit` folder and the evaluation JSON files `vaedx evaluate diagnosis` wrote."""

    path: Path
    evaluations: dict[str, dict[str, Any]]


@dataclass
class Pipeline:
    """Everything the report can use; absent parts are None/empty."""

    root: Path
    runs: dict[str, RunInfo]
    main: str
    store_path: Path | None
    detects: list[DetectInfo] = field(default_factory=list)
    diagnosis: DiagnosisInfo | None = None
    summary: dict[str, Any] | None = None
    device: str = "cpu"  # where models (runs, the diagnosis encoder) are loaded for figures

    @property
    def main_run(self) -> RunInfo:
        return self.runs[self.main]

    @cached_property
    def store(self) -> TensorStore | None:
        return TensorStore.open(self.store_path) if self.store_path is not None else None


def _is_run(path: Path) -> bool:
    return path.is_dir() and any((path / p).exists() for p in (METRIC_FILE, BEST, LAST, "config.json"))


def read_run(name: str, path: Path, device: str = "cpu") -> RunInfo:
    metrics = read_metrics_csv(path / METRIC_FILE) if (path / METRIC_FILE).is_file() else None
    cfg_path = next((p for p in (path / "config.json", path / "best" / "config.json") if p.is_file()), None)
    config = read_json_object(cfg_path) if cfg_path is not None else {}
    return RunInfo(name, path, metrics, config, device)


def read_detect(path: Path, name: str | None = None) -> DetectInfo:
    """A detect folder; its evaluation.json when `vaedx evaluate anomaly` was run on it."""
    out = DetectOutput.open(path)
    return DetectInfo(out.path, out.rows, out.scorers, out.meta, name or out.path.name, out.read_evaluation())


def read_diagnosis(path: Path) -> DiagnosisInfo:
    if not (path / "diagnosis.json").is_file():
        raise InputError("not a diagnosis folder (diagnosis.json missing); see `vaedx diagnose fit`", path)
    evals = {}
    for f in sorted(path.glob("evaluation_*.json")):
        data = read_json_object(f)
        if not isinstance(data.get("report"), dict):
            raise InputError("not a diagnosis evaluation (no 'report' object)", f)
        evals[f.stem.removeprefix("evaluation_")] = data
    return DiagnosisInfo(path, evals)


def _store_from_config(run: RunInfo) -> Path | None:
    where = run.config.get("train", {}).get("store")
    return Path(where) if where and (Path(where) / "store.json").is_file() else None


def collect(
    run_dir: Path,
    *,
    store: Path | None = None,
    detect_dirs: list[Path] | None = None,
    diagnosis_dir: Path | None = None,
    device: str = "cpu",
) -> Pipeline:
    """A pipeline folder (models/<name>/ ...) or one training run; explicit arguments override discovery.

    ``device`` (``auto``: CUDA when present) is where the sections that run a model load it."""
    from vaedx.models.device import resolve_device

    device = str(resolve_device(device))
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError("no such folder", run_dir)
    models = run_dir / "models"
    if models.is_dir() and any(_is_run(p) for p in models.iterdir()):
        runs = {p.name: read_run(p.name, p, device) for p in sorted(models.iterdir()) if _is_run(p)}
        store = store or (run_dir / "store" if (run_dir / "store" / "store.json").is_file() else None)
        if detect_dirs is None and (run_dir / "detect").is_dir():
            detect_dirs = [p for p in sorted((run_dir / "detect").iterdir()) if (p / "scores.csv").is_file()]
        if diagnosis_dir is None and (run_dir / "diagnosis" / "diagnosis.json").is_file():
            diagnosis_dir = run_dir / "diagnosis"
    elif _is_run(run_dir):
        runs = {run_dir.name: read_run(run_dir.name, run_dir, device)}
        store = store or _store_from_config(runs[run_dir.name])  # one run: the store it was trained on
    else:
        raise InputError(
            "not a vaedx pipeline folder (models/<name>/) nor a training run (metrics.csv, best/ or last/)",
            run_dir,
        )
    main = MAIN_MODEL if MAIN_MODEL in runs else next(iter(runs))
    runs = {main: runs[main], **runs}  # the main model first in every section
    detects = sorted((read_detect(Path(d)) for d in detect_dirs or []), key=lambda d: d.name != main)
    diagnosis = read_diagnosis(Path(diagnosis_dir)) if diagnosis_dir is not None else None
    summary = read_json_object(run_dir / "summary.json") if (run_dir / "summary.json").is_file() else None
    return Pipeline(run_dir, runs, main, Path(store) if store else None, detects, diagnosis, summary, device)
