"""Evaluate ``vaedx detect`` output against a store's labels and masks, every scorer side by side.

Why the reasons: a metric can be undefined (one class only, no lesion pixels, no calibrated pixel
threshold); it is then reported as None with the reason instead of NaN, so tables and JSON never carry a
number that is not one. Best Dice is chosen on the evaluated (test) data and is labelled optimistic; the
honest one is Dice at the pixel threshold calibrated on the validation split.

When the store's records say which volume and slice each scored row is (``volume`` and ``slice_index``
columns), the scored slices are stacked back into volumes and :func:`vaedx.metrics.volume.volume_metrics`
adds per-patient figures (mean Dice, voxel AUPRC, 3-D lesion-wise detection) with CIs over volumes. A
volume is then only its scored slices: its slices in other splits are absent, not guessed. Without those
columns the volume figures are left out and ``volumes.absent`` says why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
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
from vaedx.metrics.volume import SliceLayout, slice_layout, volume_metrics

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


VOLUME_NOTE = "a volume is its scored slices: slices of it outside the scored rows are absent"


@dataclass(frozen=True)
class StackedVolumes(Mapping[str, np.ndarray]):
    """{volume id: (Z, H, W)} view of per-row arrays, stacked when read, so no second copy is held."""

    layouts: dict[str, SliceLayout]
    arrays: np.ndarray
    fill: float = 0

    def __getitem__(self, vid: str) -> np.ndarray:
        return self.layouts[vid].stack(self.arrays, self.fill)

    def __iter__(self) -> Iterator[str]:
        return iter(self.layouts)

    def __len__(self) -> int:
        return len(self.layouts)


def scored_volumes(store: TensorStore, idx: np.ndarray) -> tuple[dict[str, SliceLayout] | None, str]:
    """The scored rows grouped into volumes, or (None, why not) when the records cannot say."""
    rec = store.records
    missing = [c for c in ("volume", "slice_index") if c not in rec]
    if store.masks is None:
        return None, "the store has no masks"
    if missing:
        return None, f"the store records have no {' or '.join(missing)} column"
    vols, slices = [rec["volume"][i] for i in idx], [rec["slice_index"][i] for i in idx]
    blank = sum(v in (None, "") or s in (None, "") for v, s in zip(vols, slices, strict=True))
    if blank:
        return None, f"{blank} of {len(idx)} scored rows have no volume or slice index"
    axes = [rec["axis"][i] for i in idx] if "axis" in rec else None
    try:
        return slice_layout(vols, slices, axes), ""
    except InputError as e:
        return None, e.problem


def _volume_inputs(
    layouts: dict[str, SliceLayout], masks: np.ndarray, valid: np.ndarray | None
) -> tuple[StackedVolumes, StackedVolumes | None]:
    """Truth volumes, and valid volumes when some voxels must not count (post-processing, absent slices)."""
    truth = StackedVolumes(layouts, masks)
    if valid is None and not any(lay.n_gaps for lay in layouts.values()):
        return truth, None
    base = np.ones(masks.shape, dtype=bool) if valid is None else np.asarray(valid).astype(bool)
    return truth, StackedVolumes(layouts, base, fill=False)


def evaluate_anomaly(
    pred: str | Path,
    truth: str | Path,
    n_boot: int = 1000,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Metrics per scorer from a detect folder ``pred`` and the store ``truth`` it was run on;
    ``progress(done, total)`` is called as each scorer's bootstraps finish."""
    p = read_prediction(pred, truth)
    store, idx, labelled, y, groups, normal = p.store, p.index, p.labelled, p.y, p.groups, p.normal
    has_masks = store.masks is not None
    masks = np.asarray(store.masks[idx, 0]) if has_masks else None
    valid = p.valid()
    layouts, why_not = scored_volumes(store, idx)
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
    if layouts is None:
        result["volumes"] = {"absent": why_not}
    else:
        vol_truth, vol_valid = _volume_inputs(layouts, masks, valid)
        result["volumes"] = {
            "n_volumes": len(layouts),
            "n_slices": int(idx.size),
            "n_absent_slices": int(sum(lay.n_gaps for lay in layouts.values())),
            "note": VOLUME_NOTE,
            "spacing": "unknown: 1 mm assumed, so mm3 are voxels",
        }
    for done, name in enumerate(p.scorers, 1):
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
        if layouts is not None:
            vol_maps = StackedVolumes(layouts, maps)
            result["scorers"][name]["volume"] = volume_metrics(
                vol_maps, vol_truth, pixel_thr, None, vol_valid, n_boot=n_boot, seed=seed
            )
        if progress is not None:
            progress(done, len(p.scorers))
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


def _triple(ci: dict[str, Any] | None) -> tuple[float, float, float] | None:
    return None if ci is None else (ci["point"], ci["low"], ci["high"])


def volume_table_rows(result: dict[str, Any], prefix: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per scorer of the volume figures (live result or its JSON), for ``format_table`` /
    ``to_markdown``; empty when the evaluation has none."""
    rows = []
    for name, entry in result["scorers"].items():
        v = entry.get("volume")
        if v is None:
            continue
        les = v["lesions"]
        found = None if les["detected"] is None else f"{les['detected']}/{les['n']}"
        best = v["dice_best_threshold_optimistic"]
        rows.append(
            {
                **(prefix or {}),
                "scorer": name,
                "volumes": v["n_volumes"],
                "mean Dice (val thr)": _triple(v["dice_mean"]),
                "best Dice (optimistic)": None if best is None else best["dice_mean"],
                "voxel AUPRC": _triple(v["voxel_auprc"]),
                "lesions found": found,
                "lesion sensitivity": _triple(les["sensitivity"]),
                "FP lesions/volume": les["false_positive_components_per_volume"],
            }
        )
    return rows


def volume_notes(result: dict[str, Any]) -> list[str]:
    """What the volume table needs said: what a volume is, or why there are no volume figures."""
    vols = result.get("volumes")
    if vols is None:
        return []
    if "absent" in vols:
        return [f"no volume metrics: {vols['absent']}"]
    notes = [f"{vols['n_volumes']} volumes from {vols['n_slices']} scored slices; {vols['note']}"]
    if vols["n_absent_slices"]:
        notes.append(f"{vols['n_absent_slices']} slices inside the volumes were not scored and do not count")
    notes.append(f"spacing {vols['spacing']}; lesions are 3-D connected components (26-connectivity)")
    notes.append("a lesion is found when any voxel of it is predicted; FP = predicted lesion touching none")
    for name, entry in result["scorers"].items():
        for k, why in (entry.get("volume") or {}).get("undefined", {}).items():
            notes.append(f"{name}: volume {k} n/a - {why}")
    return notes
