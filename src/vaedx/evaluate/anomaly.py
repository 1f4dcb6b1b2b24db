"""Evaluate ``vaedx detect`` output against a store's labels and masks, every scorer side by side.

Why the reasons: a metric can be undefined (one class only, no lesion pixels, no calibrated pixel
threshold); it is then reported as None with the reason instead of NaN, so tables and JSON never carry a
number that is not one. Best Dice is chosen on the evaluated (test) data and is labelled optimistic; the
honest one is Dice at the pixel threshold calibrated on the validation split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaedx.anomaly.output import DetectOutput
from vaedx.anomaly.scoring import file_name
from vaedx.data.store import TensorStore
from vaedx.errors import InputError
from vaedx.metrics.bootstrap import BootstrapCI, bootstrap_ci, bootstrap_pixel_ci
from vaedx.metrics.measures import (
    auprc,
    auroc,
    best_dice,
    dice_counts,
    dice_from_counts,
    fpr_at_tpr,
    pixel_auprc,
    pixel_auroc,
    undefined_reason,
)

IMAGE_METRICS = {"auroc": auroc, "auprc": auprc, "fpr@95tpr": fpr_at_tpr}


def _ci(fn: Any, y: np.ndarray, s: np.ndarray, groups: np.ndarray | None, n_boot: int, seed: int) -> Any:
    """BootstrapCI, or None when the point estimate is undefined."""
    if fn(y, s) is None:
        return None
    try:
        return bootstrap_ci(fn, y, s, groups=groups, n_boot=n_boot, seed=seed)
    except InputError:
        return fn(y, s)


def _global_dice(inter: np.ndarray, den: np.ndarray) -> float:
    return float(dice_from_counts(inter.sum(), den.sum()))


def image_metrics(
    y: np.ndarray, s: np.ndarray, groups: np.ndarray | None, n_boot: int, seed: int = 0
) -> tuple[dict[str, Any], dict[str, str]]:
    """AUROC, AUPRC, FPR@95%TPR with bootstrap CIs (resampling ``groups`` = patients when given)."""
    reason = undefined_reason(y)
    values = {k: _ci(fn, y, s, groups, n_boot, seed) for k, fn in IMAGE_METRICS.items()}
    reasons = {k: reason or "undefined" for k, v in values.items() if v is None}
    return values, reasons


def pixel_metrics(
    maps: np.ndarray,
    masks: np.ndarray,
    valid: np.ndarray | None,
    pixel_threshold: float | None,
    groups: np.ndarray | None,
    n_boot: int,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Pixel AUROC/AUPRC (floats, plus ``*_ci`` with image/patient-level bootstrap CIs), Dice at the
    val-chosen threshold (with CI), best Dice (optimistic)."""
    out: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    if not masks.any():
        for k in ("pixel_auroc", "pixel_auprc", "dice_val_threshold", "best_dice_optimistic"):
            out[k], reasons[k] = None, "no lesion pixels in the ground-truth masks"
        return out, reasons
    out["pixel_auroc"] = pixel_auroc(maps, masks, valid)
    out["pixel_auprc"] = pixel_auprc(maps, masks, valid)
    for k in ("auroc", "auprc"):  # CIs under new keys: the float keys stay as they were for readers
        if out[f"pixel_{k}"] is not None:
            try:
                out[f"pixel_{k}_ci"] = bootstrap_pixel_ci(k, maps, masks, valid, groups, n_boot, seed=seed)
            except InputError:  # undefined on every resample: the point estimate stands alone
                reasons[f"pixel_{k}_ci"] = "undefined on every bootstrap resample"
    if pixel_threshold is None:
        out["dice_val_threshold"], reasons["dice_val_threshold"] = (
            None,
            "no pixel threshold calibrated on val",
        )
    else:
        inter, den = dice_counts(maps, masks, pixel_threshold, valid)
        point = _global_dice(inter, den)
        ci = bootstrap_ci(_global_dice, inter, den, groups=groups, n_boot=n_boot, seed=seed)
        out["dice_val_threshold"] = BootstrapCI(point, ci.low, ci.high, ci.n_boot, ci.n_skipped, ci.alpha)
    out["best_dice_optimistic"] = best_dice(maps, masks, valid=valid)[0]
    for k in ("pixel_auroc", "pixel_auprc"):
        if out[k] is None:
            reasons[k] = "masks have a single class within the valid pixels"
    return out, reasons


@dataclass
class ScoredPrediction:
    """A ``vaedx detect`` folder (:class:`DetectOutput`) lined up with the store it was run on (labelled
    rows only for ``y``)."""

    output: DetectOutput
    store: TensorStore
    labelled: np.ndarray  # bool per row: has a label
    y: np.ndarray  # 1 = abnormal, per labelled row
    groups: np.ndarray | None  # patient id per row, when patients have several images
    normal: str

    @property
    def path(self) -> Path:
        return self.output.path

    @property
    def rows(self) -> list[dict[str, str]]:
        return self.output.rows

    @property
    def scorers(self) -> list[str]:
        return self.output.scorers

    @property
    def meta(self) -> dict[str, Any]:
        return self.output.meta

    @property
    def index(self) -> np.ndarray:
        """Store row of each scores.csv row."""
        return self.output.index

    def scores(self, name: str) -> np.ndarray:
        """Image scores of one scorer for the labelled rows."""
        return self.output.scores(name)[self.labelled]

    def maps(self, name: str) -> np.ndarray:
        maps = self.output.load_maps(name)
        if maps is None:
            raise InputError(f"maps for scorer '{name}' missing", self.output.map_path(name))
        return maps.astype(np.float32)

    def pixel_threshold(self, name: str) -> float | None:
        """The pixel threshold detect used for ``name`` (best Dice on the validation split), if any."""
        return self.output.pixel_threshold(name)

    def valid(self) -> np.ndarray | None:
        return self.output.valid()


def read_prediction(pred: str | Path, truth: str | Path | TensorStore) -> ScoredPrediction:
    """Read the detect folder ``pred`` and check it belongs to the store ``truth``."""
    out = DetectOutput.open(pred)
    pred = out.path
    if out.from_files:
        raise InputError("predictions were made on files, not a store; evaluation needs a store", pred)
    store = truth if isinstance(truth, TensorStore) else TensorStore.open(truth)
    rows, idx = out.rows, out.index
    if idx.size == 0 or idx.max() >= len(store) or idx.min() < 0:
        raise InputError("scores.csv row indices do not fit the store; was it run on this store?", pred)
    if [file_name(str(store.paths[i])) for i in idx] != [r["path"] for r in rows]:
        raise InputError(f"scores.csv paths differ from the store {store.root}'s; wrong --truth?", pred)
    normal = out.normal_label or store.label_names[0]
    codes = store.labels[idx]
    labelled = codes >= 0
    y = (codes[labelled] != store.label_index(normal)).astype(np.int64)
    pids = store.patient_ids[idx]
    groups = pids if all(str(p) for p in pids) and len(set(pids)) < len(pids) else None
    return ScoredPrediction(out, store, labelled, y, groups, normal)


def evaluate_anomaly(
    pred: str | Path, truth: str | Path, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Metrics per scorer from a detect folder ``pred`` and the store ``truth`` it was run on."""
    p = read_prediction(pred, truth)
    store, idx, labelled, y, groups, normal = p.store, p.index, p.labelled, p.y, p.groups, p.normal
    has_masks = store.masks is not None
    masks = np.asarray(store.masks[idx, 0]) if has_masks else None
    valid = p.valid()
    result: dict[str, Any] = {
        "pred": str(p.path),
        "truth": str(store.root),
        "n_images": int(idx.size),
        "n_labelled": int(labelled.sum()),
        "n_abnormal": int(y.sum()),
        "normal_label": normal,
        "bootstrap": {"n_boot": n_boot, "unit": "patient" if groups is not None else "image"},
        "scorers": {},
    }
    for name in p.scorers:
        g = groups[labelled] if groups is not None else None
        values, reasons = image_metrics(y, p.scores(name), g, n_boot, seed)
        if has_masks:
            maps = p.maps(name)
            if maps.shape != masks.shape:
                where = p.path / "maps" / f"{name}.npy"
                raise InputError(f"maps have shape {maps.shape} but the masks {masks.shape}", where)
            pixel_thr = p.pixel_threshold(name)
            pv, pr = pixel_metrics(maps, masks, valid, pixel_thr, groups, n_boot, seed)
            values, reasons = {**values, **pv}, {**reasons, **pr}
        result["scorers"][name] = {"metrics": values, "undefined": reasons}
    return result


def to_json(obj: Any) -> Any:
    """BootstrapCI -> {point, low, high, ...}; everything else as is (no NaN can appear: None is used)."""
    if isinstance(obj, BootstrapCI):
        return {
            "point": obj.point,
            "low": obj.low,
            "high": obj.high,
            "n_boot": obj.n_boot,
            "n_skipped": obj.n_skipped,
            "alpha": obj.alpha,
        }
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    return obj


LABELS = {
    "auroc": "AUROC",
    "auprc": "AUPRC",
    "fpr@95tpr": "FPR@95TPR",
    "pixel_auroc": "pixel AUROC",
    "pixel_auprc": "pixel AUPRC",
    "dice_val_threshold": "Dice (val thr)",
    "best_dice_optimistic": "best Dice (optimistic)",
}


def table_rows(result: dict[str, Any], prefix: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per scorer for :func:`vaedx.evaluate.tables.format_table`; a metric with a ``*_ci``
    companion shows the interval."""
    rows = []
    for name, entry in result["scorers"].items():
        row = {**(prefix or {}), "scorer": name}
        m = entry["metrics"]
        row.update({LABELS.get(k, k): m.get(f"{k}_ci", v) for k, v in m.items() if not k.endswith("_ci")})
        rows.append(row)
    return rows


def undefined_notes(result: dict[str, Any]) -> list[str]:
    return [
        f"{name}: {LABELS.get(k, k)} n/a - {why}"
        for name, entry in result["scorers"].items()
        for k, why in entry["undefined"].items()
    ]
