"""Calibrate per-scorer thresholds on the validation split; one ``thresholds.json`` schema for them.

A threshold belongs to one model, one scorer with its options and one post-processing, and to the target
specificity and normal label it was chosen with; keeping all of these together lets ``vaedx detect`` reuse
the exact cut and notice when the request differs (then the entry counts as missing). The same file format
is written into a detect output folder (always) and into the model's run folder (only on request), where
``vaedx serve`` and ``vaedx diagnose predict --anomaly-model`` find it. Image thresholds come from held-out
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
from vaedx.errors import ConfigError, InputError
from vaedx.metrics.thresholds import Thresholds, threshold_best_dice
from vaedx.runs.folder import THRESHOLDS_FILE, RunFolder
from vaedx.runs.model_card import write_run_card

__all__ = [
    "THRESHOLDS_FILE",
    "CalibrationFile",
    "RestorationTuning",
    "ScorerCalibration",
    "ScoringChoice",
    "calibrate_thresholds",
    "choose_normal_label",
    "default_normal_label",
    "thresholds_path",
]


class ScorerCalibration(BaseModel):
    """One scorer's thresholds plus everything that must match for them to apply."""

    model_config = ConfigDict(extra="forbid")

    options: dict[str, Any] = Field(default_factory=dict)
    postprocess: dict[str, Any] = Field(default_factory=dict)
    split: str = "val"
    normal_label: str = ""
    store: str = ""
    thresholds: Thresholds

    def matches(
        self,
        options: dict[str, Any],
        post: PostSpec,
        target_specificity: float | None = None,
        normal_label: str | None = None,
    ) -> bool:
        """Same options and post-processing; and, when asked for, the same specificity and normal label.

        Entries that do not record a specificity or a normal label (hand-written files) match any request.
        """
        if self.options != options or self.postprocess != post.as_dict():
            return False
        recorded = self.thresholds.target_specificity
        if target_specificity is not None and recorded is not None:
            if not np.isclose(recorded, target_specificity, rtol=0, atol=1e-12):
                return False
        return normal_label is None or not self.normal_label or self.normal_label == normal_label


class RestorationTuning(BaseModel):
    """The restoration scorer's lam and steps chosen on the validation split
    (:func:`vaedx.anomaly.restoration_tuning.tune_restoration`), with the grid it was chosen from."""

    model_config = ConfigDict(extra="forbid")

    lam: float
    steps: int = Field(ge=1)
    metric: str  # pixel_auprc (val has lesion masks) or image_auroc
    value: float | None  # None: undefined on val (e.g. no lesion pixel inside the foreground)
    split: str = "val"
    store: str = ""
    n_images: int = Field(default=0, ge=0)
    grid: list[dict[str, float | None]] = Field(default_factory=list)


class ScoringChoice(BaseModel):
    """The scorer and post-processing ``vaedx detect`` chose itself because none was named
    (:func:`vaedx.anomaly.selection.choose_scoring`): the winner, the figure it won by on the validation
    split, and every candidate tried (or left out when the time budget ran out)."""

    model_config = ConfigDict(extra="forbid")

    scorer: str
    postprocess: str  # as typed: foreground,median=5 ('' = none)
    options: dict[str, Any] = Field(default_factory=dict)
    metric: str  # pixel_auprc (val has lesion masks), image_auroc (val has labels) or recorded_default
    value: float | None = None
    dice: float | None = None  # best Dice on val (pixel_auprc only)
    reason: str = ""
    split: str = "val"
    store: str = ""
    n_images: int = Field(default=0, ge=0)
    seconds: float = 0.0
    budget_s: float = 0.0
    candidates: list[dict[str, Any]] = Field(default_factory=list)
    skipped: list[dict[str, Any]] = Field(default_factory=list)


class CalibrationFile(BaseModel):
    """``thresholds.json``: the calibrated thresholds of one model, by scorer."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    scorers: dict[str, ScorerCalibration] = Field(default_factory=dict)
    restoration: RestorationTuning | None = None
    selection: ScoringChoice | None = None

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

    def lookup(
        self,
        name: str,
        options: dict[str, Any],
        post: PostSpec,
        target_specificity: float | None = None,
        normal_label: str | None = None,
    ) -> Thresholds | None:
        entry = self.scorers.get(name)
        ok = entry is not None and entry.matches(options, post, target_specificity, normal_label)
        return entry.thresholds if ok and entry is not None else None

    def subset(self, names: Sequence[str]) -> CalibrationFile:
        """The entries for ``names`` only (those present), e.g. what one detect run used."""
        tuning = self.restoration if "restoration" in names else None
        picked = {n: self.scorers[n] for n in names if n in self.scorers}
        chosen = self.selection if self.selection is not None and self.selection.scorer in names else None
        return CalibrationFile(scorers=picked, restoration=tuning, selection=chosen)


def thresholds_path(run_dir: str | Path) -> Path:
    """thresholds.json lives in the run folder (the parent of a best/ or last/ checkpoint folder), or in a
    detect output folder."""
    return RunFolder.of(run_dir).thresholds


def default_normal_label(label_names: Sequence[str]) -> str:
    """'normal' / 'no_tumour' / 'healthy' when present, else label code 0 (how vaedx stores are ordered)."""
    for name in ("normal", "no_tumour", "healthy"):
        if name in label_names:
            return name
    if not label_names:
        raise InputError("the store has no label names, so normal validation images cannot be chosen")
    return label_names[0]


def choose_normal_label(label_names: Sequence[str], requested: str | None) -> str:
    """``requested`` when it is one of ``label_names`` (else a ConfigError listing them), or the guess."""
    if requested is None:
        return default_normal_label(label_names)
    if requested not in label_names:
        names = ", ".join(label_names) or "(none)"
        raise ConfigError(f"normal label '{requested}' is not a label of the store; its labels: {names}")
    return requested


def calibrate_thresholds(
    loaded: Any,
    store: TensorStore,
    scorer_names: Sequence[str],
    *,
    split: str = "val",
    normal_label: str | None = None,
    target_specificity: float = 0.95,
    options: dict[str, dict[str, Any]] | None = None,
    post: PostSpec = PostSpec(),
    save: bool = True,
) -> CalibrationFile:
    """Score ``split`` of ``store`` with ``loaded.model``; return the run's thresholds.json updated.

    ``loaded`` is a :class:`vaedx.runs.loaded.LoadedModel`. Entries for other scorers in the file are kept;
    ``save`` writes the result back into the run folder.
    """
    if not 0 < target_specificity <= 1:
        raise ConfigError(f"target specificity must be in (0, 1], got {target_specificity}")
    options = options or {}
    normal = choose_normal_label(store.label_names, normal_label)
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
        thr = Thresholds.from_normal_scores(scored.scores[name][is_normal], target_specificity, pixel)
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
        write_run_card(loaded.path)  # the card lists the run's calibrated thresholds
    return cal
