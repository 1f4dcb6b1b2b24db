"""Choose the restoration scorer's lambda and step count on the validation split; recorded with calibration.

Why: lambda trades the healthy prior against the data term, and its scale depends on the model's likelihood
(1/sigma^2 per pixel for a Gaussian), so no default fits every model; and fewer steps is faster when the
maps are as good. A small grid is scored on the store's **val** split only - never test, which would leak
into every figure reported on it - and ranked by pixel AUPRC inside the foreground when val has lesion
masks (best Dice breaks ties), else by image AUROC of normal vs the rest when it has both. The choice is
kept in ``thresholds.json`` (``CalibrationFile.restoration``), so later ``vaedx detect`` runs, and the
thresholds calibrated with it (their options record lambda and steps, which ``vaedx serve`` reuses), apply
the same setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vaedx.anomaly.calibration import CalibrationFile, RestorationTuning, choose_normal_label
from vaedx.anomaly.scoring import PostSpec, run_scorers, store_inputs
from vaedx.data.store import TensorStore
from vaedx.errors import ConfigError, InputError
from vaedx.metrics.measures import auprc, auroc, best_dice

GRID_LAM: tuple[float, ...] = (0.25, 1.0, 4.0)
GRID_STEPS: tuple[int, ...] = (25, 50, 100)
TUNED = ("lam", "steps")
SPLIT = "val"


def _pixel_figure(maps: np.ndarray, masks: np.ndarray, valid: np.ndarray | None) -> tuple[Any, float]:
    """(pixel AUPRC, best Dice) inside ``valid`` (all pixels without it)."""
    keep = np.ones(masks.shape, dtype=bool) if valid is None else valid
    return auprc(masks[keep].astype(bool), maps[keep]), float(best_dice(maps, masks, valid=valid)[0])


def _rank(g: dict[str, Any]) -> tuple[float, float, int, float]:
    """Best figure, then best Dice, then fewest steps (faster at equal quality), then the smaller lam."""
    value = -1.0 if g["value"] is None else g["value"]
    return -value, -g.get("dice", 0.0), g["steps"], g["lam"]


def tune_restoration(
    loaded: Any,
    store: TensorStore,
    *,
    lams: Sequence[float] | None = None,
    steps: Sequence[int] | None = None,
    options: dict[str, Any] | None = None,
    post: PostSpec = PostSpec(),
    normal_label: str | None = None,
) -> RestorationTuning:
    """Score the val split with every (lam, steps) of the grid (default ``GRID_LAM`` x ``GRID_STEPS``; other
    ``options`` fixed); return the best.

    ``loaded`` is a :class:`vaedx.runs.loaded.LoadedModel`. Raises InputError when val is empty or has
    neither lesion masks nor both normal and abnormal images to rank by.
    """
    lams = GRID_LAM if lams is None else lams
    steps = GRID_STEPS if steps is None else steps
    if not lams or not steps:
        raise ConfigError("the restoration grid needs at least one lam and one steps value")
    base = {k: v for k, v in (options or {}).items() if k not in TUNED}
    inputs = store_inputs(store, loaded.preprocess, loaded.image_shape, SPLIT)
    if not inputs.rows:
        raise InputError(f"the store has no '{SPLIT}' images to tune restoration on", store.root)
    masks = inputs.masks if inputs.masks is not None and bool(inputs.masks.any()) else None
    labels = None
    if masks is None:
        normal = choose_normal_label(store.label_names, normal_label)
        labels = np.array([r["label"] != normal for r in inputs.rows])
        if labels.all() or not labels.any():
            why = "no lesion masks and not both normal and abnormal images"
            raise InputError(f"cannot tune restoration on split '{SPLIT}': {why}", store.root)
    metric = "pixel_auprc" if masks is not None else "image_auroc"
    grid: list[dict[str, Any]] = []
    for lam in lams:
        for n_steps in steps:
            opts = {**base, "lam": float(lam), "steps": int(n_steps)}
            scored = run_scorers(loaded.model, inputs.images, ["restoration"], {"restoration": opts}, post)
            if masks is not None:
                value, dice = _pixel_figure(scored.maps["restoration"], masks, scored.valid)
                grid.append({"lam": float(lam), "steps": int(n_steps), "value": value, "dice": dice})
            else:
                value = auroc(labels, scored.scores["restoration"])
                grid.append({"lam": float(lam), "steps": int(n_steps), "value": value})
    best = min(grid, key=_rank)
    return RestorationTuning(
        lam=best["lam"], steps=int(best["steps"]), metric=metric, value=best["value"], split=SPLIT,
        store=str(store.root), n_images=len(inputs.rows), grid=grid,
    )  # fmt: skip


def restoration_options(
    loaded: Any,
    store: TensorStore | None,
    options: dict[str, Any],
    *,
    tune: bool,
    post: PostSpec = PostSpec(),
    normal_label: str | None = None,
) -> tuple[dict[str, Any], RestorationTuning | None]:
    """The restoration options to score with: lam and steps from a fresh tuning (``tune``) or the run's saved
    one, unless given explicitly (explicit options always win); and the tuning applied, or None."""
    if tune:
        if store is None:
            raise ConfigError("--tune-restoration needs --store (it tunes on the store's val split)")
        tuning = tune_restoration(loaded, store, options=options, post=post, normal_label=normal_label)
    else:
        tuning = CalibrationFile.load(loaded.path).restoration
    if tuning is None:
        return options, None
    chosen = {"lam": tuning.lam, "steps": tuning.steps}
    return {**chosen, **options}, tuning
