"""``DetectOutput``: the folder ``vaedx detect`` writes, with its layout in one place.

Why one class: detection writes the folder and three readers (``vaedx evaluate anomaly``, ``vaedx evaluate
compare``, the report) read it back; naming every file once keeps them from drifting apart. The folder
holds ``scores.csv`` (one row per image), ``maps/<scorer>.npy`` (+ ``maps/valid.npy``),
``overlays/<scorer>/``, ``thresholds.json`` (the calibration used, in the schema of
:mod:`vaedx.anomaly.calibration`) and ``detect.json`` (what was run, with the thresholds applied). Folders
written before ``thresholds.json`` was put there still read: the thresholds come from ``detect.json``.

``detect.json`` is also the folder's completion mark: detection removes an earlier one before writing
anything and writes its own last, so readers refuse a folder a kill left half-written (scores without
maps, maps of an earlier run) instead of evaluating it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaedx.anomaly.calibration import THRESHOLDS_FILE, CalibrationFile
from vaedx.anomaly.scoring import Scored, read_scores_csv, write_scores_csv
from vaedx.atomic import atomic_write_json
from vaedx.errors import InputError

SCORES_FILE = "scores.csv"
META_FILE = "detect.json"
MAPS_DIR = "maps"
OVERLAYS_DIR = "overlays"
VALID_FILE = "valid.npy"
EVALUATION_FILE = "evaluation.json"


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; unreadable or non-object content is an InputError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"corrupt or unreadable JSON ({e.__class__.__name__}: {e})", path) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", path)
    return data


@dataclass
class DetectOutput:
    """One detect output folder; :meth:`open` reads scores.csv and detect.json, the maps load on demand."""

    path: Path
    rows: list[dict[str, str]] = field(default_factory=list)
    scorers: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------ reading
    @classmethod
    def open(cls, path: str | Path) -> DetectOutput:
        """The folder's scores and metadata; InputError naming the file when one is absent or corrupt."""
        path = Path(path)
        if not path.is_dir():
            raise InputError("no such detect output folder", path)
        started = any((path / f).exists() for f in (SCORES_FILE, THRESHOLDS_FILE, MAPS_DIR))
        if started and not (path / META_FILE).is_file():
            raise InputError(
                f"incomplete detect output ({META_FILE} missing: `vaedx detect` was interrupted or is still "
                "running); rerun it with --overwrite",
                path,
            )
        rows, scorers = read_scores_csv(path / SCORES_FILE)
        return cls(path, rows, scorers, read_json_object(path / META_FILE))

    @property
    def index(self) -> np.ndarray:
        """Store row of each scores.csv row."""
        return np.array([int(r["index"]) for r in self.rows])

    @property
    def from_files(self) -> bool:
        return self.meta.get("source") == "files"

    @property
    def normal_label(self) -> str:
        return str(self.meta.get("normal_label") or "")

    def check_scorer(self, name: str) -> None:
        if name not in self.scorers:
            where = self.path / SCORES_FILE
            raise InputError(f"no scorer '{name}' in scores.csv (has {', '.join(self.scorers)})", where)

    def scores(self, name: str) -> np.ndarray:
        """Image scores of one scorer, every row."""
        self.check_scorer(name)
        return np.array([float(r[name]) for r in self.rows])

    def flags(self, name: str) -> np.ndarray | None:
        """1/0 per image at the calibrated threshold, None when detect had no threshold for the scorer."""
        vals = [r.get(f"{name}_flag", "") for r in self.rows]
        return None if any(v == "" for v in vals) else np.array([int(v) for v in vals])

    def map_path(self, name: str) -> Path:
        return self.path / MAPS_DIR / f"{name}.npy"

    def overlay_dir(self, name: str) -> Path:
        return self.path / OVERLAYS_DIR / name

    def load_maps(self, name: str, mmap: bool = False) -> np.ndarray | None:
        """(N, H, W) maps of one scorer, None when the folder has none; a corrupt file is an InputError."""
        path = self.map_path(name)
        if not path.is_file():
            return None
        try:
            maps = np.load(path, mmap_mode="r" if mmap else None)
        except (OSError, ValueError) as e:
            raise InputError(f"unreadable anomaly maps ({e})", path) from None
        if maps.ndim != 3 or len(maps) != len(self.rows):
            raise InputError(f"maps have shape {maps.shape}, expected ({len(self.rows)}, H, W)", path)
        return maps

    def valid(self) -> np.ndarray | None:
        """Per-pixel validity mask (foreground post-processing), when detect wrote one."""
        path = self.path / MAPS_DIR / VALID_FILE
        return np.load(path) if path.is_file() else None

    def calibration(self) -> CalibrationFile:
        """The calibration detect used: ``thresholds.json`` here (empty when detect had none)."""
        return CalibrationFile.load(self.path)

    def thresholds(self, name: str) -> dict[str, Any]:
        """The thresholds detect applied for ``name`` as recorded in detect.json ({} when none)."""
        return dict((self.meta.get("thresholds") or {}).get(name) or {})

    def pixel_threshold(self, name: str) -> float | None:
        """The pixel threshold detect used for ``name`` (best Dice on the validation split), if any."""
        value = self.thresholds(name).get("pixel_threshold")
        return None if value is None else float(value)

    def read_evaluation(self) -> dict[str, Any] | None:
        """evaluation.json, when ``vaedx evaluate anomaly`` was run on this folder."""
        path = self.path / EVALUATION_FILE
        if not path.is_file():
            return None
        data = read_json_object(path)
        if not isinstance(data.get("scorers"), dict):
            raise InputError("not an anomaly evaluation (no 'scorers' object)", path)
        return data

    # ------------------------------------------------------------------------------------------ writing
    @classmethod
    def create(cls, path: str | Path) -> DetectOutput:
        """An empty folder to write into (made with its maps/ folder)."""
        out = cls(Path(path))
        (out.path / MAPS_DIR).mkdir(parents=True, exist_ok=True)
        return out

    def start(self) -> DetectOutput:
        """Unmark the folder before a run writes into it: until :meth:`write_meta` marks it again, readers
        refuse it, and an evaluation of the earlier scores cannot be shown beside the new ones. The
        temporary files of atomic writes a killed run left unfinished go too."""
        for name in (META_FILE, EVALUATION_FILE):
            (self.path / name).unlink(missing_ok=True)
        for tmp in self.path.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        return self

    def write_calibration(self, cal: CalibrationFile, scorers: Sequence[str]) -> Path:
        """thresholds.json with the entries for ``scorers`` only (what this run used)."""
        self.path.mkdir(parents=True, exist_ok=True)
        return cal.subset(scorers).save(self.path)

    def write_scores(
        self, rows: Sequence[dict[str, Any]], scored: Scored, image_thresholds: dict[str, float]
    ) -> None:
        """scores.csv, maps/<scorer>.npy and maps/valid.npy."""
        (self.path / MAPS_DIR).mkdir(parents=True, exist_ok=True)
        write_scores_csv(self.path / SCORES_FILE, rows, scored, image_thresholds)
        for name, maps in scored.maps.items():
            np.save(self.map_path(name), maps.astype(np.float32))
        if scored.valid is not None:
            np.save(self.path / MAPS_DIR / VALID_FILE, scored.valid)

    def write_meta(self, meta: dict[str, Any]) -> Path:
        """detect.json, atomically and last: it marks the folder complete."""
        self.meta = dict(meta)
        return atomic_write_json(self.path / META_FILE, meta)


__all__ = ["THRESHOLDS_FILE", "DetectOutput"]
