"""Paired comparison of two diagnosis models (e.g. a fine-tuned VAE encoder and a supervised CNN) on the
same labelled images.

Why paired: both models are scored on the same images, and images that are hard for one are usually hard
for the other, so their errors are correlated and two overlapping marginal intervals say little about
which is better. Each resample draws the same images (or patients) for both models and the difference of
the metric gets its own interval and a one-sided bootstrap p-value (share of resamples in which A is not
better). The metrics are the ones ``vaedx evaluate diagnosis`` reports: binary AUC and accuracy at each
model's own validation-chosen threshold, or macro one-vs-rest AUC and argmax accuracy for three or more
classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaedx.data.store import TensorStore
from vaedx.diagnose.encoder import load_encoder
from vaedx.diagnose.fit import split_probabilities
from vaedx.diagnose.model import DiagnosisModel
from vaedx.errors import InputError
from vaedx.evaluate.compare import comparison_row as _difference_cells
from vaedx.evaluate.compare import to_json
from vaedx.evaluate.diagnosis import _accuracy, _binary_metric, _macro_auc
from vaedx.metrics.bootstrap import PairedDifference, bootstrap_paired_fn
from vaedx.metrics.measures import auroc

Metric = Callable[[np.ndarray, np.ndarray], float | None]

__all__ = [
    "DiagnosisSide",
    "compare_diagnoses",
    "compare_sides",
    "comparison_rows",
    "notes",
    "score_side",
    "short_names",
    "title",
    "to_json",
]


@dataclass(frozen=True)
class DiagnosisSide:
    """One diagnosis folder's calibrated probabilities on one split of one store."""

    folder: Path
    diag: DiagnosisModel
    store: Path
    split: str
    y: np.ndarray  # label codes, one per scored row
    proba: np.ndarray  # (N, K) calibrated probabilities, columns in diag.classes order
    rows: np.ndarray  # store rows scored, in order
    patient_ids: np.ndarray


def score_side(
    folder: str | Path,
    store: str | Path,
    split: str = "test",
    *,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> DiagnosisSide:
    """Load the diagnosis and its recorded encoder and score the labelled images of ``split``, exactly as
    ``vaedx evaluate diagnosis`` does (same probabilities, so the same point values)."""
    folder = Path(folder)
    diag = DiagnosisModel.load(folder)
    loaded = load_encoder(diag, device=device)
    diag, y, proba, rows = split_probabilities(diag, loaded, store, split, progress=progress)
    ids = TensorStore.open(store).patient_ids[rows]
    return DiagnosisSide(folder, diag, Path(store), split, y, proba, rows, ids)


def _check_pair(a: DiagnosisSide, b: DiagnosisSide) -> None:
    """A difference is only meaningful on the same images with the same labels and the same classes."""
    if (a.store.resolve(), a.split) != (b.store.resolve(), b.split):
        where = f"split {b.split!r} of {b.store}, A on split {a.split!r} of {a.store}"
        raise InputError(f"was scored on {where}; score both on the same split", b.folder)
    if not np.array_equal(a.rows, b.rows) or not np.array_equal(a.y, b.y):
        why = f"scored other images or labels than {a.folder}; score both on the same split"
        raise InputError(why, b.folder)
    if not np.array_equal(a.diag.classes, b.diag.classes) or a.diag.class_names != b.diag.class_names:
        raise InputError(
            f"predicts classes {b.diag.class_names}, {a.folder} predicts {a.diag.class_names}", b.folder
        )


def _metrics(side: DiagnosisSide) -> tuple[np.ndarray, np.ndarray, dict[str, Metric]]:
    """(labels, predictions, {name: metric}) as ``evaluate_probabilities`` computes them for this side.

    Binary AUC uses :func:`auroc` (the value ``binary_report`` reports), whose bootstrap runs batched;
    binary accuracy is taken at the side's own threshold, so each model is judged by its own decision rule.
    """
    d = side.diag
    if d.binary:
        thr = d.threshold if d.threshold is not None else 0.5
        y = (side.y == d.classes[1]).astype(np.int8)
        return y, side.proba[:, 1], {"auc": auroc, "accuracy": _binary_metric("accuracy", thr)}
    index = np.searchsorted(d.classes, side.y)
    return index, side.proba, {"macro_auc": _macro_auc, "accuracy": _accuracy}


def compare_sides(
    a: DiagnosisSide,
    b: DiagnosisSide,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """{"a", "b", "split", "n_images", "unit", "n_units", "values": {"a": {...}, "b": {...}},
    "differences": {metric: PairedDifference | None}, "undefined": {metric: reason}, ...}.

    Raises a one-line InputError naming B's folder when the two did not score the same rows with the same
    labels and classes. Resamples patients when patient ids repeat, else images.
    """
    _check_pair(a, b)
    groups: np.ndarray | None = a.patient_ids
    if len(np.unique(groups)) == len(groups):
        groups = None  # one row per patient: plain bootstrap is the same thing, and faster
    y, p_a, fns_a = _metrics(a)
    _, p_b, fns_b = _metrics(b)
    values: dict[str, dict[str, float | None]] = {"a": {}, "b": {}}
    diffs: dict[str, PairedDifference | None] = {}
    undefined: dict[str, str] = {}
    for name, fn_a in fns_a.items():
        fn_b = fns_b[name]
        values["a"][name], values["b"][name] = _value(fn_a(y, p_a)), _value(fn_b(y, p_b))
        try:
            diffs[name] = bootstrap_paired_fn(
                fn_a, y, p_a, p_b, groups, n_boot, alpha, seed=seed, metric_fn_b=fn_b
            )
        except InputError as e:  # undefined on this split (e.g. one class only): reported as n/a
            diffs[name], undefined[name] = None, e.problem
    thresholds = {"a": a.diag.threshold, "b": b.diag.threshold} if a.diag.binary else None
    return {
        "a": str(a.folder),
        "b": str(b.folder),
        "store": str(a.store),
        "split": a.split,
        "classes": a.diag.class_names,
        "thresholds": thresholds,
        "n_images": len(y),
        "unit": "patient" if groups is not None else "image",
        "n_units": len(np.unique(groups)) if groups is not None else len(y),
        "n_boot": n_boot,
        "seed": seed,
        "values": values,
        "differences": diffs,
        "undefined": undefined,
    }


def _value(v: float | None) -> float | None:
    return None if v is None else float(v)


def compare_diagnoses(
    a: str | Path,
    b: str | Path,
    store: str | Path,
    split: str = "test",
    *,
    n_boot: int = 1000,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Diagnosis A minus diagnosis B on the labelled images of one split, with paired bootstrap CIs
    (see :func:`compare_sides`)."""
    side_a = score_side(a, store, split, device=device)
    side_b = score_side(b, store, split, device=device)
    return compare_sides(side_a, side_b, n_boot=n_boot, seed=seed)


def short_names(folders: list[str]) -> list[str]:
    """The shortest path tails that still tell the folders apart (``ft_diag``, or ``lgg/diagnosis`` when
    two folders share a name): full paths make the table too wide to read; the JSON keeps them."""
    parts = [Path(f).parts for f in folders]
    for k in range(1, max(len(p) for p in parts) + 1):
        names = [str(Path(*p[-k:])) for p in parts]
        if len(set(names)) == len(set(folders)):
            return names
    return list(folders)


def comparison_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One table row per comparison: A, B, then per metric A's value, B's value and the difference as
    '+0.012 [-0.010, +0.030] p=0.140' text."""
    labels = short_names([results[0]["a"], *(r["b"] for r in results)]) if results else []
    rows = []
    for r, b_label in zip(results, labels[1:], strict=True):
        cells = _difference_cells(r)
        row: dict[str, Any] = {"A": labels[0], "B": b_label}
        for name in r["differences"]:
            label = name.replace("_", " ")
            row[f"A {label}"] = r["values"]["a"][name]
            row[f"B {label}"] = r["values"]["b"][name]
            row[f"Δ {label}"] = cells[f"Δ {label}"]
        rows.append(row)
    return rows


FEW_UNITS = 10


def notes(result: dict[str, Any]) -> list[str]:
    """Warnings to print under the table: undefined differences, and a resampling unit too rare to trust.

    Why the second: with a handful of patients the bootstrap has only a handful of distinct resamples
    (4 patients: 35), so the interval is coarse and p cannot go below a floor; a p of 0.004 then says
    only that A did no worse on each of those patients, not much about new ones.
    """
    out = [f"{result['b']}: {k} n/a - {why}" for k, why in result["undefined"].items()]
    if result["n_units"] < FEW_UNITS:
        out.append(
            f"only {result['n_units']} {result['unit']}s to resample: the intervals and p are coarse "
            "and say little beyond these cases"
        )
    return out


def title(results: list[dict[str, Any]]) -> str:
    """Table title: images, split, resampling unit and what p means."""
    r = results[0]
    unit = f"by patient, {r['n_units']} patients" if r["unit"] == "patient" else "by image"
    return f"A minus B on {r['n_images']} {r['split']} images (paired bootstrap {unit}; p = P(A not better))"
