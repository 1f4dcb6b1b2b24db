"""Paired comparison of two anomaly scorers (possibly of two models) on the same images.

Why: "the VAE is ahead of the AE" needs more than two point estimates whose marginal CIs overlap. Both
detect outputs are lined up row by row with the store, the same patients are resampled for both, and the
difference of each metric gets its own interval and a one-sided bootstrap p-value (share of resamples in
which A is not better). A side is written ``FOLDER:SCORER`` on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaedx.data.store import TensorStore
from vaedx.errors import ConfigError, InputError
from vaedx.evaluate.anomaly import ScoredPrediction, read_prediction
from vaedx.metrics.bootstrap import (
    PairedDifference,
    bootstrap_dice_paired,
    bootstrap_paired,
    bootstrap_pixel_paired,
)
from vaedx.metrics.measures import dice_counts


@dataclass(frozen=True)
class Side:
    """One scorer of one detect output folder."""

    pred: Path
    scorer: str
    label: str

    @classmethod
    def parse(cls, text: str) -> Side:
        """``FOLDER:SCORER`` (the last colon splits, so Windows drive letters survive)."""
        folder, sep, scorer = text.rpartition(":")
        if not sep or not folder or not scorer:
            raise ConfigError(f"expected FOLDER:SCORER, got {text!r}")
        return cls(Path(folder), scorer, f"{Path(folder).name}:{scorer}")


def compare_scorers(
    a: Side, b: Side, truth: str | Path | TensorStore, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """{"a", "b", "n_images", "unit", "differences": {metric: PairedDifference | None}, "undefined": {...}}.

    Image AUROC/AUPRC always; pixel AUROC/AUPRC and Dice at each side's validation-chosen pixel threshold
    too when the store has masks. Both folders must score the same store rows in the same order.
    """
    store = truth if isinstance(truth, TensorStore) else TensorStore.open(truth)
    pa, pb = read_prediction(a.pred, store), read_prediction(b.pred, store)
    if not np.array_equal(pa.index, pb.index):
        raise InputError(f"{a.pred} and {b.pred} scored different images; run both on the same split")
    groups = pa.groups[pa.labelled] if pa.groups is not None else None
    s_a, s_b = pa.scores(a.scorer), pb.scores(b.scorer)  # a missing scorer is an error, not "n/a"
    diffs: dict[str, PairedDifference | None] = {}
    undefined: dict[str, str] = {}
    for metric in ("auroc", "auprc"):
        try:
            diffs[metric] = bootstrap_paired(metric, pa.y, s_a, s_b, groups, n_boot, seed=seed)
        except InputError as e:
            diffs[metric], undefined[metric] = None, e.problem
    if store.masks is not None:
        _pixel(pa, pb, a, b, store, n_boot, seed, diffs, undefined)
    return {
        "a": a.label,
        "b": b.label,
        "n_images": int(pa.labelled.sum()),
        "unit": "patient" if pa.groups is not None else "image",
        "differences": diffs,
        "undefined": undefined,
    }


def _pixel(
    pa: ScoredPrediction,
    pb: ScoredPrediction,
    a: Side,
    b: Side,
    store: TensorStore,
    n_boot: int,
    seed: int,
    diffs: dict[str, PairedDifference | None],
    undefined: dict[str, str],
) -> None:
    masks = np.asarray(store.masks[pa.index, 0])
    ma, mb = pa.maps(a.scorer), pb.maps(b.scorer)
    if ma.shape != masks.shape or mb.shape != masks.shape:
        raise InputError(f"maps {ma.shape} / {mb.shape} do not match the masks {masks.shape}")
    va, vb = pa.valid(), pb.valid()
    for metric in ("auroc", "auprc"):
        key = f"pixel_{metric}"
        try:
            diffs[key] = bootstrap_pixel_paired(metric, ma, mb, masks, va, vb, pa.groups, n_boot, seed=seed)
        except InputError as e:
            diffs[key], undefined[key] = None, e.problem
    thr_a, thr_b = pa.pixel_threshold(a.scorer), pb.pixel_threshold(b.scorer)
    if thr_a is None or thr_b is None:
        diffs["dice_val_threshold"] = None
        undefined["dice_val_threshold"] = "no pixel threshold calibrated on val for one side"
    else:
        ca, cb = dice_counts(ma, masks, thr_a, va), dice_counts(mb, masks, thr_b, vb)
        diffs["dice_val_threshold"] = bootstrap_dice_paired(ca, cb, pa.groups, n_boot, seed=seed)


def comparison_row(result: dict[str, Any]) -> dict[str, Any]:
    """One table row: A, B and every difference as '+0.012 [-0.010, +0.030] p=0.140' text."""
    row: dict[str, Any] = {"A": result["a"], "B": result["b"]}
    for k, d in result["differences"].items():
        row[f"Δ {k.replace('_', ' ')}"] = "n/a" if d is None else str(d)
    return row


def to_json(result: dict[str, Any]) -> dict[str, Any]:
    def one(d: PairedDifference | None) -> Any:
        if d is None:
            return None
        keys = ("point", "low", "high", "p_not_better", "n_boot", "n_skipped", "alpha")
        return {k: getattr(d, k) for k in keys}

    return {**result, "differences": {k: one(v) for k, v in result["differences"].items()}}
