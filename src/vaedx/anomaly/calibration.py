"""Calibrate per-scorer thresholds on the validation split and keep them in ``<run>/thresholds.json``.

Why in the run folder: a threshold belongs to one model, one scorer with its options and one
post-processing; saving them together lets ``vaedx detect`` reuse the exact cut and notice when the
requested scorer/options differ (then the entry counts as missing). Image thresholds come from held-out
NORMAL validation images only (target specificity); pixel thresholds from best Dice on the validation
split, never on test.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaedx.anomaly.scoring import PostSpec, run_scorers, store_inputs
from vaedx.atomic import atomic_write_text
from vaedx.data.store import TensorStore
from vaedx.errors import InputError
from vaedx.metrics.thresholds import Thresholds, threshold_best_dice

THRESHOLDS_FILE = "thresholds.json"


class ScorerCalibration(BaseModel):
    """One scorer's thresholds plus everything that must match for them to apply."""

    model_config = ConfigDict(extra="forbid")

    options: dict[str, Any] = Field(default_factory=dict)
    postprocess: dict[str, Any] = Field(default_factory=dict)
    split: str = "val"
    normal_label: str = ""
    store: str = ""
    thresholds: Thresholds

    def matches(self, options: dict[str, Any], post: PostSpec) -> bool:
        return self.options == options and self.postprocess == post.as_dict()


class CalibrationFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    scorers: dict[str, ScorerCalibration] = Field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: str | Path) -> CalibrationFile:
        """The run's thresholds.json, or an empty one when the run has none yet."""
        path = thresholds_path(run_dir)
        if not path.is_file():
            return cls()
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"unreadable thresholds file ({e.__class__.__name__})", path) from None
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "file"
            raise InputError(f"invalid thresholds: {where}: {err['msg']}", path) from None

    def save(self, run_dir: str | Path) -> Path:
        return atomic_write_text(thresholds_path(run_dir), self.model_dump_json(indent=2) + "\n")

    def lookup(self, name: str, options: dict[str, Any], post: PostSpec) -> Thresholds | None:
        entry = self.scorers.get(name)
        return entry.thresholds if entry is not None and entry.matches(options, post) else None


def thresholds_path(run_dir: str | Path) -> Path:
    """thresholds.json lives in the run folder (the parent of a best/ or last/ checkpoint folder)."""
    p = Path(run_dir)
    return (p.parent if p.name in ("best", "last") else p) / THRESHOLDS_FILE


def default_normal_label(label_names: Sequence[str]) -> str:
    """'normal' / 'no_tumour' / 'healthy' when present, else label code 0 (how vaedx stores are ordered)."""
    for name in ("normal", "no_tumour", "healthy"):
        if name in label_names:
            return name
    if not label_names:
        raise InputError("the store has no label names, so normal validation images cannot be chosen")
    return label_names[0]


def calibrate(
    loaded: Any,
    store: TensorStore,
    scorer_names: Sequence[str],
    *,
    split: str = "val",
    normal_label: str | None = None,
    specificity: float = 0.95,
    options: dict[str, dict[str, Any]] | None = None,
    post: PostSpec = PostSpec(),
    save: bool = True,
) -> CalibrationFile:
    """Score ``split`` of ``store`` with ``loaded.model``; update and save the run's thresholds.json.

    ``loaded`` is a :class:`vaedx.api.LoadedModel`. Entries for other scorers in the file are kept.
    """
    options = options or {}
    normal = normal_label or default_normal_label(store.label_names)
    inputs = store_inputs(store, loaded.preprocess, loaded.image_shape, split)
    is_normal = np.array([r["label"] == normal for r in inputs.rows])
    if not is_normal.any():
        raise InputError(f"split '{split}' has no '{normal}' images to calibrate on", store.root)
    scored = run_scorers(loaded.model, inputs.images, scorer_names, options, post)
    has_lesions = inputs.masks is not None and bool(inputs.masks.any())
    cal = CalibrationFile.load(loaded.path)
    for name in scorer_names:
        pixel = None
        if has_lesions:
            pixel = threshold_best_dice(scored.maps[name], inputs.masks, valid=scored.valid)
        thr = Thresholds.from_normal_scores(scored.scores[name][is_normal], specificity, pixel)
        cal.scorers[name] = ScorerCalibration(
            options=options.get(name, {}),
            postprocess=post.as_dict(),
            split=split,
            normal_label=normal,
            store=str(store.root),
            thresholds=thr,
        )
    if save:
        cal.save(loaded.path)
    return cal
