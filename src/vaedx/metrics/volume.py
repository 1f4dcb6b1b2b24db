"""Volume-level lesion metrics: per-patient Dice, voxel AUPRC, 3-D lesion-wise detection, patient bootstrap.

Why volumes: slice figures weight a patient by how many slices show the lesion and cannot say whether a
tumour was found at all. Here one patient's stacked slices (a volume) is the unit: Dice is computed per
volume and averaged over patients, lesions are 3-D connected components, and the intervals resample whole
volumes, because the voxels and slices of one patient are not independent.

Conventions, shared with :mod:`vaedx.metrics.measures`: a voxel is predicted abnormal when its score is
``> threshold``; where ``valid`` masks are given only valid voxels count, for truth and prediction alike;
a figure that is undefined is None with its reason under ``"undefined"``.

Lesion-wise rule: a ground-truth lesion (a 3-D connected component of the truth) is *detected* when at
least one of its voxels is predicted; a predicted component is a *false positive* when it touches no
ground-truth voxel. One predicted blob over two lesions detects both, and a lesion hit by a one-voxel
speck counts as found: the rule measures whether the map points at the lesion, Dice measures how well.

Connected components use ``scipy.ndimage.label`` rather than connected-components-3d: scipy is already a
dependency, and :func:`components` of a 256 x 256 x 88 LGG tumour mask takes about 0.06 s of CPU time, far
below the cost of reading the volume.

Voxel AUPRC over tens of millions of voxels is computed exactly on binned scores, not on a subsample:
sklearn would have to sort every voxel (several GB for 30 brain volumes), and an even subsample thins out
the few lesion voxels that decide the figure. Scores go on a uniform grid of ``FINE_BINS`` levels between
the lowest and highest score (ties inside a level are treated as ties, so the result is the exact average
precision of scores rounded to a millionth of their range); per-volume histograms on a coarser grid
(quantile edges of all voxels and of lesion voxels, so the bins are narrow where the lesions score) make
each bootstrap resample one matrix product, as in :func:`vaedx.metrics.bootstrap.bootstrap_pixel_ci`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from vaedx.errors import ConfigError, InputError
from vaedx.metrics.bootstrap import BootstrapCI, _auprc_from_counts, _check_options, _count_chunks, _interval
from vaedx.metrics.measures import as_binary, check_finite, dice_from_counts

Spacing = tuple[float, float, float]
#: neighbourhood name -> scipy structuring-element rank (faces, + edges, + corners)
CONNECTIVITY = {6: 1, 18: 2, 26: 3}
FINE_BINS = 1 << 20
COARSE_EDGES = 4096  # quantile edges taken from all voxels, and as many from lesion voxels
_SAMPLE = 50_000  # scores per volume behind the coarse quantile edges
_BOOT_CHUNK = 128  # resamples per matrix product (memory: chunk x coarse bins)
DETECTION_RULE = (
    "a ground-truth lesion (3-D connected component) is detected when at least one of its voxels is "
    "predicted (score > threshold); a predicted component touching no ground-truth voxel is a false positive"
)
AUPRC_METHOD = (
    f"exact average precision of scores binned on {FINE_BINS} uniform levels over their range; "
    "bootstrap resamples use per-volume histograms on quantile bins"
)


# ------------------------------------------------------------------------------------ components
def _spacing(spacing: ArrayLike | None, what: str = "spacing") -> Spacing:
    if spacing is None:
        return (1.0, 1.0, 1.0)
    sp = np.asarray(spacing, dtype=np.float64).ravel()
    if sp.shape != (3,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ConfigError(f"{what} must be three positive millimetre values (z, y, x), got {spacing!r}")
    return (float(sp[0]), float(sp[1]), float(sp[2]))


def _mask3d(mask: ArrayLike, name: str = "mask") -> np.ndarray:
    m = as_binary(mask, name)
    if m.ndim != 3:
        raise InputError(f"{name} must be a (z, y, x) volume, got shape {m.shape}")
    return m


def label_components(mask: ArrayLike, connectivity: int = 26) -> tuple[np.ndarray, int]:
    """(labels, n): scipy's 3-D component labels (0 = background, 1..n) of a (z, y, x) mask.

    ``connectivity`` 26 (default) joins voxels touching at a face, edge or corner, 18 at a face or edge,
    6 at a face only.
    """
    if connectivity not in CONNECTIVITY:
        raise ConfigError(f"connectivity must be 6, 18 or 26, got {connectivity!r}")
    structure = ndimage.generate_binary_structure(3, CONNECTIVITY[connectivity])
    labels, n = ndimage.label(_mask3d(mask), structure=structure)
    return labels, int(n)


def components(
    mask: ArrayLike, spacing: ArrayLike | None = (1.0, 1.0, 1.0), connectivity: int = 26
) -> list[dict[str, Any]]:
    """3-D connected components of a (z, y, x) mask, largest first.

    Each is ``{label, voxels, volume_mm3, centroid_voxel (z, y, x), bbox [[z0, z1], [y0, y1], [x0, x1]]}``
    with half-open bounding boxes and ``label`` as in :func:`label_components`. ``spacing`` is (z, y, x)
    in mm; with None (or the default) 1 mm is assumed, so mm³ are voxels.
    """
    sp = _spacing(spacing)
    labels, n = label_components(mask, connectivity)
    if n == 0:
        return []
    out = []
    for i, box in enumerate(ndimage.find_objects(labels)):  # coordinates inside each box only: cheap
        where = np.nonzero(labels[box] == i + 1)
        out.append(
            {
                "label": i + 1,
                "voxels": int(where[0].size),
                "volume_mm3": float(where[0].size * np.prod(sp)),
                "centroid_voxel": [float(w.mean() + b.start) for w, b in zip(where, box, strict=True)],
                "bbox": [[int(b.start), int(b.stop)] for b in box],
            }
        )
    return sorted(out, key=lambda c: (-c["voxels"], c["label"]))


def lesion_volume_mm3(mask: ArrayLike, spacing: ArrayLike | None = (1.0, 1.0, 1.0)) -> float:
    """Volume of the mask's voxels in mm³ (``spacing`` (z, y, x) mm; None: 1 mm assumed)."""
    return float(_mask3d(mask).sum() * np.prod(_spacing(spacing)))


# ------------------------------------------------------------------------------------ stacking
@dataclass(frozen=True)
class SliceLayout:
    """Where one volume's slices sit among the rows: ``rows[k]`` holds slice ``slices[k]`` (ascending).

    Slice ``s`` goes to plane ``s - slices[0]`` of the stacked volume, so a slice that is not among the
    rows leaves an empty plane (``present`` is False there) instead of making its neighbours adjacent.
    """

    rows: np.ndarray
    slices: np.ndarray

    @property
    def depth(self) -> int:
        return int(self.slices[-1] - self.slices[0] + 1)

    @property
    def present(self) -> np.ndarray:
        """(depth,) bool: which planes of the stacked volume come from a row."""
        out = np.zeros(self.depth, dtype=bool)
        out[self.slices - self.slices[0]] = True
        return out

    @property
    def n_gaps(self) -> int:
        return self.depth - len(self.rows)

    def stack(self, arrays: np.ndarray, fill: float = 0) -> np.ndarray:
        """(depth, H, W) planes of ``arrays`` (N, H, W) in slice order; absent slices hold ``fill``."""
        a = np.asarray(arrays[self.rows])
        if self.n_gaps == 0:
            return a
        out = np.full((self.depth, *a.shape[1:]), fill, dtype=a.dtype)
        out[self.slices - self.slices[0]] = a
        return out


def _slice_number(value: Any, volume: str) -> int:
    try:
        f = float(value)
        ok = np.isfinite(f) and f == int(f) and f >= 0 and not isinstance(value, bool)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"volume {volume}: slice index {value!r} is not a non-negative integer")
    return int(f)


def slice_layout(
    volume_ids: Sequence[Any], slice_index: Sequence[Any], axes: Sequence[Any] | None = None
) -> dict[str, SliceLayout]:
    """Rows grouped by volume id and ordered by slice index, refusing data that cannot be one volume.

    Errors (InputError naming the volume): a blank volume id, a slice index that is not a non-negative
    integer, the same slice twice, and, when ``axes`` is given, one volume sliced along two axes (its
    slice numbers would mix two stacks).
    """
    n = len(volume_ids)
    if len(slice_index) != n or (axes is not None and len(axes) != n):
        lens = [n, len(slice_index)] + ([] if axes is None else [len(axes)])
        raise InputError(f"volume ids, slice indices (and axes) differ in length: {lens}")
    groups: dict[str, list[tuple[int, int]]] = {}
    seen_axis: dict[str, Any] = {}
    for row, (vid, s) in enumerate(zip(volume_ids, slice_index, strict=True)):
        if vid is None or str(vid) == "":
            raise InputError(f"row {row} has no volume id")
        vid = str(vid)
        if axes is not None:
            a = str(axes[row])
            if seen_axis.setdefault(vid, a) != a:
                raise InputError(f"volume {vid} has slices along axis {seen_axis[vid]} and axis {a}")
        groups.setdefault(vid, []).append((_slice_number(s, vid), row))
    out = {}
    for vid in sorted(groups):
        items = sorted(groups[vid])
        numbers = np.array([s for s, _ in items])
        dup = numbers[1:][numbers[1:] == numbers[:-1]]
        if dup.size:
            raise InputError(f"volume {vid}: slice {int(dup[0])} appears more than once")
        out[vid] = SliceLayout(np.array([r for _, r in items]), numbers)
    return out


def stack_volumes(
    volume_ids: Sequence[Any], slice_index: Sequence[Any], arrays: ArrayLike, fill: float = 0
) -> dict[str, np.ndarray]:
    """{volume id: (Z, H, W) planes of ``arrays`` (N, H, W) in slice order} (see :func:`slice_layout`)."""
    a = np.asarray(arrays)
    if a.ndim != 3 or len(a) != len(volume_ids):
        raise InputError(f"arrays must be (N, H, W) with N = {len(volume_ids)} rows, got shape {a.shape}")
    return {vid: lay.stack(a, fill) for vid, lay in slice_layout(volume_ids, slice_index).items()}


# ------------------------------------------------------------------------------------ metrics
@dataclass(frozen=True)
class _Grid:
    """Uniform fine grid of FINE_BINS score levels over [lo, hi]."""

    lo: float
    scale: float

    @classmethod
    def over(cls, lo: float, hi: float) -> _Grid:
        return cls(lo, (FINE_BINS - 1) / (hi - lo) if hi > lo else 0.0)

    def index(self, s: np.ndarray) -> np.ndarray:
        """Level of each score, in float32 arithmetic (monotone: order and ties are kept; twice as fast)."""
        s32 = s.astype(np.float32, copy=False)
        f = ((s32 - np.float32(self.lo)) * np.float32(self.scale)).astype(np.int32)
        return np.clip(f, 0, FINE_BINS - 1, out=f)

    def score(self, level: float) -> float:
        return self.lo + level / self.scale if self.scale else self.lo


def _ap(pos: np.ndarray, tot: np.ndarray) -> float | None:
    """Average precision from lesion / all voxel counts at ascending score levels; None without lesions."""
    keep = tot > 0
    p = pos[keep].astype(np.float64)[None]
    v = _auprc_from_counts(p, tot[keep].astype(np.float64)[None] - p)[0]
    return float(v) if np.isfinite(v) else None


def _ci(ci: BootstrapCI) -> dict[str, Any]:
    return {k: getattr(ci, k) for k in ("point", "low", "high", "n_boot", "n_skipped", "alpha")}


def _check_maps(
    maps: Mapping[str, Any], truth: Mapping[str, Any], valid: Mapping[str, Any] | None
) -> list[str]:
    ids = list(maps)
    if not ids:
        raise InputError("no volumes to evaluate")
    for name, other in (("truth", truth), ("valid", valid)):
        if other is not None and set(other) != set(ids):
            diff = sorted(set(ids) ^ set(other))
            raise InputError(f"maps and {name} cover different volumes (e.g. {diff[0]})")
    return ids


def _read(
    vid: str,
    maps: Mapping[str, Any],
    truth: Mapping[str, Any],
    valid: Mapping[str, Any] | None,
    check: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(scores, truth inside valid, valid) of one volume; ``check`` scans the scores for NaN/inf."""
    m = np.asarray(maps[vid])
    if m.ndim != 3 or not np.issubdtype(m.dtype, np.number):
        raise InputError(f"volume {vid}: maps must be a numeric (z, y, x) array, got shape {m.shape}")
    m = m if np.issubdtype(m.dtype, np.floating) else m.astype(np.float32)
    if check:
        check_finite(m, f"maps of volume {vid}")
    g = _mask3d(truth[vid], f"truth of volume {vid}")
    v = None if valid is None else _mask3d(valid[vid], f"valid of volume {vid}")
    for name, a in (("truth", g), ("valid", v)):
        if a is not None and a.shape != m.shape:
            raise InputError(f"volume {vid}: maps have shape {m.shape} but {name} has {a.shape}")
    if v is not None:
        if not v.any():
            raise InputError(f"volume {vid}: valid selects no voxels")
        g = g & v
    return m, g, v


def _flat(a: np.ndarray, v: np.ndarray | None) -> np.ndarray:
    return a.ravel() if v is None else a[v]


def _per_volume(
    vid: str,
    m: np.ndarray,
    g: np.ndarray,
    v: np.ndarray | None,
    threshold: float | None,
    conn: int,
    sp: Spacing,
) -> dict[str, Any]:
    """Figures of one volume at the threshold (lesion sizes and counts also without one)."""
    voxel_mm3 = float(np.prod(sp))
    lab, n_les = label_components(g, conn)
    sizes = np.bincount(lab.ravel(), minlength=n_les + 1)[1:]
    order = np.argsort(-sizes, kind="stable")  # lesion lists largest first, as components() lists them
    row: dict[str, Any] = {
        "volume": vid,
        "slices": int(m.shape[0]),
        "voxels": int(m.size if v is None else v.sum()),
        "lesion_voxels": int(sizes.sum()),
        "lesion_volume_mm3": float(sizes.sum() * voxel_mm3),
        "lesions": n_les,
        "lesion_sizes_voxels": [int(s) for s in sizes[order]],
    }
    if threshold is None:
        return row
    pred = m > threshold
    if v is not None:
        pred &= v
    both = pred & g
    inter, n_pred = int(both.sum()), int(pred.sum())
    hit = np.zeros(n_les + 1, dtype=bool)
    hit[lab[both]] = True
    plab, n_comp = label_components(pred, conn)
    touching = np.unique(plab[both]).size
    row.update(
        predicted_voxels=n_pred,
        predicted_volume_mm3=float(n_pred * voxel_mm3),
        dice=float(dice_from_counts(inter, n_pred + row["lesion_voxels"])),
        lesions_detected=int(hit[1:].sum()),
        lesion_detected=[bool(h) for h in hit[1:][order]],
        predicted_components=n_comp,
        false_positive_components=n_comp - touching,
    )
    return row


def _coarse_lut(grid: _Grid, sample_all: np.ndarray, sample_lesion: np.ndarray) -> tuple[np.ndarray, int]:
    """Fine level -> coarse bin, with bin starts at quantiles of all and of lesion scores."""
    q = np.linspace(0, 1, COARSE_EDGES + 1)[1:-1]
    edges = [np.quantile(sample_all, q)]
    if sample_lesion.size:
        edges.append(np.quantile(sample_lesion, q))
    starts = np.unique(grid.index(np.concatenate(edges)) + 1)
    starts = starts[(starts > 0) & (starts < FINE_BINS)]
    lut = np.zeros(FINE_BINS, dtype=np.int32)
    lut[starts] = 1
    return np.cumsum(lut, out=lut), int(starts.size + 1)


def _best_threshold(pos: np.ndarray, tot: np.ndarray, lesion: np.ndarray) -> int | None:
    """Coarse bin c maximising mean Dice over lesion volumes when bins >= c are predicted."""
    if not lesion.any() or pos.shape[1] < 2:
        return None
    p, t = pos[lesion], tot[lesion]
    tp = np.cumsum(p[:, ::-1], axis=1)[:, ::-1]  # voxels in bins >= c
    n_pred = np.cumsum(t[:, ::-1], axis=1)[:, ::-1]
    d = dice_from_counts(tp, n_pred + p.sum(axis=1, keepdims=True)).mean(axis=0)
    return int(np.argmax(d[1:]) + 1)  # c = 0 (everything predicted) is not a threshold


def _bootstrap(
    rows: list[dict[str, Any]],
    pos: np.ndarray,
    tot: np.ndarray,
    points: dict[str, float | None],
    n_boot: int,
    alpha: float,
    seed: int,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Intervals of mean Dice, voxel AUPRC and lesion sensitivity from the same volume resamples."""
    n = len(rows)
    lesion = np.array([r["lesion_voxels"] > 0 for r in rows], dtype=np.float64)
    dice = np.array([r.get("dice") or 0.0 for r in rows]) * lesion
    hits = np.array([r.get("lesions_detected", 0) for r in rows], dtype=np.float64)
    n_les = np.array([r["lesions"] for r in rows], dtype=np.float64)
    neg = tot - pos
    vals: dict[str, list[np.ndarray]] = {k: [] for k in points}
    for counts in _count_chunks(n, None, n_boot, np.random.default_rng(seed)):
        c = counts.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            vals["dice_mean"].append((c @ dice) / (c @ lesion))
            vals["lesion_sensitivity"].append((c @ hits) / (c @ n_les))
        for i in range(0, len(c), _BOOT_CHUNK):
            part = c[i : i + _BOOT_CHUNK]
            vals["voxel_auprc"].append(_auprc_from_counts(part @ pos, part @ neg))
    out, reasons = {}, {}
    for k, point in points.items():
        if point is None:
            continue
        try:
            out[k] = _ci(_interval(point, np.concatenate(vals[k]), n_boot, alpha))
        except InputError:
            out[k], reasons[k] = None, "undefined on every bootstrap resample"
    return out, reasons


def volume_metrics(
    maps: Mapping[str, ArrayLike],
    truth: Mapping[str, ArrayLike],
    threshold: float | None,
    spacing: Mapping[str, ArrayLike] | ArrayLike | None = None,
    valid: Mapping[str, ArrayLike] | None = None,
    *,
    connectivity: int = 26,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Volume-level figures of anomaly maps ``{volume id: (z, y, x)}`` against ``truth`` masks, JSON-ready.

    ``threshold`` should be fixed on other data (the validation split); with None only the threshold-free
    figures are given. ``spacing`` is one (z, y, x) mm triple, one per volume id, or None (1 mm assumed:
    ``spacing_assumed`` is then True and mm³ are voxels). Keys:

    * ``dice_mean``: mean over volumes *with lesion voxels* of each volume's Dice at ``threshold`` (volumes
      without lesions would add 1 or 0 by convention, not agreement; their false positives are counted
      below), with a CI; per-volume figures under ``per_volume``.
    * ``dice_best_threshold_optimistic``: the best mean Dice over one threshold shared by all volumes,
      chosen on these very volumes (an upper bound, not a result), with that threshold.
    * ``voxel_auprc``: average precision pooled over all voxels of all volumes (see the module docstring
      for the binning), with a CI; per volume under ``per_volume``.
    * ``lesions``: ground-truth components detected / missed, ``sensitivity`` (detected / all, pooled) with
      a CI, false-positive predicted components in total and per volume; ``rule`` states the rule.

    CIs (``{point, low, high, n_boot, n_skipped, alpha}``) resample whole volumes (patients) with
    replacement; all three use the same seeded resamples.
    """
    _check_options(n_boot, alpha)
    ids = _check_maps(maps, truth, valid)
    if threshold is not None and not np.isfinite(threshold):
        raise ConfigError(f"threshold must be a finite number, got {threshold!r}")
    if isinstance(spacing, Mapping):
        missing = [vid for vid in ids if vid not in spacing]
        if missing:
            raise ConfigError(f"no spacing for volume {missing[0]}")
        spacings = {vid: _spacing(spacing[vid], f"spacing of volume {vid}") for vid in ids}
    else:
        spacings = dict.fromkeys(ids, _spacing(spacing))

    # pass 1: figures at the threshold, score range, samples for the coarse bins
    rows, lo, hi, samples, lesion_samples = [], np.inf, -np.inf, [], []
    for vid in ids:
        m, g, v = _read(vid, maps, truth, valid)
        rows.append(_per_volume(vid, m, g, v, threshold, connectivity, spacings[vid]))
        s, gt = _flat(m, v), _flat(g, v)
        lo, hi = min(lo, float(s.min())), max(hi, float(s.max()))
        samples.append(s[:: max(1, s.size // _SAMPLE)])
        les = s[gt]
        lesion_samples.append(les[:: max(1, les.size // _SAMPLE)])
    grid = _Grid.over(lo, hi)
    lut, k = _coarse_lut(grid, np.concatenate(samples), np.concatenate(lesion_samples))

    # pass 2: fine histograms (pooled and per-volume AP), coarse per-volume histograms (bootstrap, best Dice)
    fine_pos, fine_tot = np.zeros(FINE_BINS, np.int64), np.zeros(FINE_BINS, np.int64)
    pos, tot = np.zeros((len(ids), k)), np.zeros((len(ids), k))
    for i, vid in enumerate(ids):
        m, g, v = _read(vid, maps, truth, valid, check=False)
        f, gt = grid.index(_flat(m, v)), _flat(g, v)
        fp, ft = np.bincount(f[gt], minlength=FINE_BINS), np.bincount(f, minlength=FINE_BINS)
        fine_pos += fp
        fine_tot += ft
        rows[i]["auprc"] = _ap(fp, ft)
        pos[i], tot[i] = np.bincount(lut, fp, k), np.bincount(lut, ft, k)  # fine levels summed into bins

    lesion = np.array([r["lesion_voxels"] > 0 for r in rows])
    best = _best_threshold(pos, tot, lesion)
    best_entry = None
    if best is not None:
        t = grid.score(int(np.flatnonzero(lut == best)[0]) - 0.5)  # just below the bin's first level
        with_lesion = [vid for vid, les in zip(ids, lesion, strict=True) if les]
        best_entry = {"dice_mean": _mean_dice_at(t, with_lesion, maps, truth, valid), "threshold": t}
    points = {
        "dice_mean": _mean([r.get("dice") for r, les in zip(rows, lesion, strict=True) if les]),
        "voxel_auprc": _ap(fine_pos, fine_tot),
        "lesion_sensitivity": _ratio([r.get("lesions_detected") for r in rows], [r["lesions"] for r in rows]),
    }
    cis, undefined = _bootstrap(rows, pos, tot, points, n_boot, alpha, seed)
    why = "no lesion voxels in any volume" if not lesion.any() else "no pixel threshold calibrated on val"
    undefined.update({k: why for k, v in points.items() if v is None})
    if best_entry is None:
        undefined["dice_best_threshold_optimistic"] = "no lesion voxels, or every voxel scores the same"
    return {
        "n_volumes": len(ids),
        "n_volumes_with_lesion": int(lesion.sum()),
        "threshold": threshold,
        "connectivity": connectivity,
        "spacing_assumed": spacing is None,
        "dice_mean": cis.get("dice_mean"),
        "dice_best_threshold_optimistic": best_entry,
        "voxel_auprc": cis.get("voxel_auprc"),
        "voxel_auprc_method": AUPRC_METHOD,
        "lesions": _lesion_summary(rows, threshold is not None, cis.get("lesion_sensitivity")),
        "bootstrap": {"unit": "volume", "n_boot": n_boot, "alpha": alpha, "seed": seed},
        "per_volume": rows,
        "undefined": undefined,
    }


def _mean(values: list[Any]) -> float | None:
    return None if not values or None in values else float(np.mean(values))


def _ratio(num: list[Any], den: list[int]) -> float | None:
    return None if None in num or sum(den) == 0 else float(sum(num) / sum(den))


def _mean_dice_at(
    t: float,
    ids: list[str],
    maps: Mapping[str, ArrayLike],
    truth: Mapping[str, ArrayLike],
    valid: Mapping[str, ArrayLike] | None,
) -> float:
    """Exact mean Dice of ``maps > t`` over ``ids``."""
    dices = []
    for vid in ids:
        m, g, v = _read(vid, maps, truth, valid, check=False)
        pred = m > t if v is None else (m > t) & v
        dices.append(float(dice_from_counts(int((pred & g).sum()), int(pred.sum()) + int(g.sum()))))
    return float(np.mean(dices))


def _lesion_summary(
    rows: list[dict[str, Any]], thresholded: bool, ci: dict[str, Any] | None
) -> dict[str, Any]:
    n = sum(r["lesions"] for r in rows)
    out: dict[str, Any] = {"n": n, "detected": None, "missed": None, "sensitivity": ci}
    out.update(false_positive_components=None, false_positive_components_per_volume=None)
    if thresholded:
        detected = sum(r["lesions_detected"] for r in rows)
        fp = [r["false_positive_components"] for r in rows]
        out.update(detected=detected, missed=n - detected, false_positive_components=int(sum(fp)))
        out["false_positive_components_per_volume"] = float(np.mean(fp))
    out["rule"] = DETECTION_RULE
    return out
