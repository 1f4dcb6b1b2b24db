"""Summaries of a tensor store or a manifest: what is in it and what looks wrong.

Why: most failed experiments on medical images trace back to the data (a patient in two splits, a class
missing from val, masks that did not survive resizing, half the files skipped). ``summarize`` gathers the
facts as a plain dict (``--json``), ``render`` prints them for people. Pixel statistics come from a fixed
random sample when the data is large, so inspecting stays fast on any size. Rows that carry a ``volume``
are also counted as volumes (slices per volume, per split, with masks / lesions, spacing known or assumed),
because a split, a lesion count or a Dice per patient is about volumes, not slices.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from vaedx.data.manifest import Manifest, read_manifest
from vaedx.data.prepare import RowDecoder, is_series
from vaedx.data.splits import patient_overlap
from vaedx.data.store import SPLITS, TensorStore
from vaedx.errors import InputError, VaedxError

IMBALANCE_RATIO = 2.0  # largest / smallest class count in a split above which imbalance is reported
MAX_SAMPLE = 2000
MAX_HASH_BYTES = 2 << 30  # duplicate search reads every image; skipped for stores above 2 GB


def summarize(path: str | Path, sample: int = MAX_SAMPLE, seed: int = 0) -> dict[str, Any]:
    """Summary of a store folder, a manifest CSV, or any source ``vaedx data index`` reads.

    Why every source: looking at the data before preparing it is when problems are cheapest to fix, so
    inspect takes the same npz files, image folders, label tables and volumes as indexing does.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("not found", path)
    if path.is_dir() and (path / "store.json").is_file():
        return summarize_store(TensorStore.open(path), sample, seed)
    if path.suffix.lower() == ".csv":
        try:
            manifest = read_manifest(path, on_error="skip")
        except VaedxError:  # not a manifest: a labels or LGG table that indexing understands
            manifest = _indexed(path)
        return summarize_manifest(manifest, min(sample, 64), seed)
    return summarize_manifest(_indexed(path), min(sample, 64), seed)


def _indexed(path: Path) -> Manifest:
    from vaedx.data.index import IndexOptions
    from vaedx.data.sources import index_source

    try:
        manifest = index_source(path, IndexOptions(on_error="skip"))
    except VaedxError as e:
        if path.is_dir():
            raise InputError(
                f"not a vaedx tensor store (store.json missing) and not indexable: {e.problem}", path
            ) from None
        raise InputError(
            f"expected a tensor store folder, a manifest .csv or an image source: {e.problem}", path
        ) from None
    if not manifest.rows:
        what = "not a vaedx tensor store (store.json missing) and" if path.is_dir() else "expected images;"
        raise InputError(f"{what} no images found to index", path)
    return manifest


def _order(splits: set[str]) -> list[str]:
    return [s for s in SPLITS if s in splits] + sorted(splits - set(SPLITS))


def _table(
    splits: list[str], labels: list[str], patients: list[str], label_names: list[str]
) -> dict[str, Any]:
    counts: dict[str, dict[str, int]] = {}
    for s, lab in zip(splits, labels, strict=True):
        counts.setdefault(s or "none", {}).setdefault(lab, 0)
        counts[s or "none"][lab] += 1
    names = [n for n in label_names if any(n in c for c in counts.values())]
    names += sorted({lab for c in counts.values() for lab in c} - set(names))
    order = _order(set(counts))
    per_split = {
        s: len({p for ss, p in zip(splits, patients, strict=True) if (ss or "none") == s}) for s in order
    }
    return {
        "label_names": names,
        "counts": {s: {n: counts[s].get(n, 0) for n in names} for s in order},
        "patients": {**per_split, "total": len(set(patients))},
    }


def _problems(info: dict[str, Any], splits: list[str], patients: list[str]) -> list[str]:
    out = []
    overlap = patient_overlap(splits, patients)
    if overlap:
        ex = ", ".join(f"{p} ({'/'.join(s)})" for p, s in list(overlap.items())[:3])
        out.append(f"{len(overlap)} patient(s) in more than one split, e.g. {ex}")
    for s, c in info["counts"].items():
        named = {k: v for k, v in c.items() if k != "unlabelled"}
        if len(named) > 1:
            lo_name, lo = min(named.items(), key=lambda kv: kv[1])
            hi_name, hi = max(named.items(), key=lambda kv: kv[1])
            if lo == 0:
                out.append(f"split {s} has no '{lo_name}' images")
            elif hi / lo >= IMBALANCE_RATIO:
                out.append(f"label imbalance in {s}: {hi_name} {hi} vs {lo_name} {lo} ({hi / lo:.1f}:1)")
        if c.get("unlabelled"):
            out.append(f"{c['unlabelled']} unlabelled image(s) in {s}")
    if "none" in info["counts"]:
        out.append("some rows have no split; `vaedx data prepare` assigns them by patient")
    vols = info.get("volumes")
    if vols and vols["in_several_splits"]:
        out.append(f"{vols['in_several_splits']} volume(s) have slices in more than one split")
    if info["skipped"]:
        out.append(f"{len(info['skipped'])} file(s) skipped or missing (listed below)")
    return out


def _intensity(x: np.ndarray) -> list[dict[str, float]]:
    """Per-channel min/max/mean of an (N, C, H, W) sample."""
    axes = (0, 2, 3)
    return [
        {"min": float(lo), "max": float(hi), "mean": float(mu)}
        for lo, hi, mu in zip(
            x.min(axis=axes), x.max(axis=axes), x.mean(axis=axes, dtype=np.float64), strict=True
        )
    ]


def _sample(n: int, k: int, seed: int) -> np.ndarray:
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def summarize_store(store: TensorStore, sample: int = MAX_SAMPLE, seed: int = 0) -> dict[str, Any]:
    names = [*store.label_names, "unlabelled"]
    labels = [names[c] if c >= 0 else "unlabelled" for c in store.labels.tolist()]
    splits = [str(s or "") for s in store.splits]
    patients = [str(p) for p in store.patient_ids]
    info = {
        "kind": "store",
        "path": str(store.root),
        "n": len(store),
        "skipped": store.meta.get("skipped", []),
    }
    info.update(_table(splits, labels, patients, store.label_names))
    idx = _sample(len(store), sample, seed)
    c, h, w = store.image_shape
    info["image"] = {"sizes": {f"{h}x{w}": len(store)}, "channels": c, "dtype": str(store.images.dtype)}
    info["intensity"] = {"sampled": len(idx), "channels": _intensity(np.asarray(store.images[idx]))}
    fractions = _mask_fractions(store)
    info["masks"] = _store_masks(store, fractions)
    info["volumes"] = _store_volumes(store, splits, fractions)
    info["preprocess"] = store.preprocess.model_dump(mode="json")
    info["source"] = store.meta.get("source", "")
    info["notes"] = list(store.meta.get("notes", []))
    info["problems"] = _problems(info, splits, patients)
    info["duplicates"] = _duplicates(store, splits)
    if info["duplicates"]["across_splits"]:
        d = info["duplicates"]
        info["problems"].append(
            f"{d['across_splits']} image(s) appear identically in more than one split "
            f"({', '.join(d['split_pairs'])}): possible leakage"
        )
    return info


def _duplicates(store: TensorStore, splits: list[str]) -> dict[str, Any]:
    """Exact duplicates after preprocessing, by hashing each image: leakage between splits shows here.

    Blank (constant) images, such as the empty top and bottom slices of a head, are counted apart: they are
    identical without being the same scan.
    """
    if store.images.nbytes > MAX_HASH_BYTES:
        return {"checked": False, "across_splits": 0, "within_splits": 0, "split_pairs": [], "blank": 0}
    seen: dict[bytes, set[str]] = {}
    within = blank = 0
    for i in range(len(store)):
        img = np.ascontiguousarray(store.images[i])
        if img.min() == img.max():
            blank += 1
            continue
        where = seen.setdefault(hashlib.blake2b(img.tobytes(), digest_size=16).digest(), set())
        within += splits[i] in where
        where.add(splits[i])
    multi = [sorted(v, key=_split_rank) for v in seen.values() if len(v) > 1]
    return {
        "checked": True,
        "across_splits": len(multi),
        "within_splits": within,
        "split_pairs": sorted({"/".join(v) for v in multi}),
        "blank": blank,
    }


def _split_rank(s: str) -> tuple[int, str]:
    return (SPLITS.index(s) if s in SPLITS else len(SPLITS), s)


def _mask_fractions(store: TensorStore) -> np.ndarray | None:
    """Fraction of each row's mask that is lesion (None without masks)."""
    if store.masks is None:
        return None
    frac = np.zeros(len(store))
    for start in range(0, len(store), 1024):  # chunked: masks of a big store need not fit in RAM
        m = np.asarray(store.masks[start : start + 1024])
        frac[start : start + len(m)] = m.reshape(len(m), -1).mean(axis=1)
    return frac


def _store_masks(store: TensorStore, frac: np.ndarray | None) -> dict[str, Any] | None:
    if frac is None:
        return None
    has = np.asarray(store.records.get("has_mask", [True] * len(store)), dtype=bool)
    return _mask_stats(int(has.sum()), frac[has], len(store))


def _store_volumes(store: TensorStore, splits: list[str], frac: np.ndarray | None) -> dict[str, Any] | None:
    ids = [str(v or "") for v in store.records.get("volume", [""] * len(store))]
    has = [bool(v) for v in store.records.get("has_mask", [False] * len(store))]
    lesion = None if frac is None else [bool(f > 0) for f in frac]
    geometry = store.meta.get("volumes") or {}
    paths = store.paths
    assumed = {
        v: geometry[v]["spacing_assumed"] if v in geometry else _assumed_by_kind(paths[i])
        for i, v in enumerate(ids)
        if v
    }
    return _volume_summary(ids, splits, has, lesion, assumed, "volumes read" if geometry else "file kinds")


def _assumed_by_kind(path: str) -> bool:
    """Spacing is in NIfTI headers and DICOM series; slices stored as 2-D files (LGG PNGs) have none."""
    name = path.partition("#")[0].lower()
    return not (name.endswith((".nii", ".nii.gz", ".zip")) or "." not in Path(name).name)


def _volume_summary(
    ids: list[str],
    splits: list[str],
    has_mask: list[bool],
    lesion: list[bool] | None,
    assumed: dict[str, bool],
    spacing_from: str,
) -> dict[str, Any] | None:
    """Volume counts from the per-row volume ids ('' = a row outside any volume); None without volumes."""
    rows_of: dict[str, list[int]] = {}
    for i, v in enumerate(ids):
        if v:
            rows_of.setdefault(v, []).append(i)
    if not rows_of:
        return None
    sizes = np.array([len(r) for r in rows_of.values()])
    per_split: Counter[str] = Counter()
    several = 0
    for rows in rows_of.values():
        found = {splits[i] or "none" for i in rows}
        per_split.update(found)
        several += len(found - {"none"}) > 1
    return {
        "n": len(rows_of),
        "slices": {"min": int(sizes.min()), "median": float(np.median(sizes)), "max": int(sizes.max())},
        "per_split": {s: per_split[s] for s in _order(set(per_split))},
        "in_several_splits": several,
        "with_masks": sum(any(has_mask[i] for i in rows) for rows in rows_of.values()),
        "with_lesion": None if lesion is None else sum(any(lesion[i] for i in r) for r in rows_of.values()),
        "spacing": {
            "known": sum(not assumed[v] for v in rows_of),
            "assumed": sum(bool(assumed[v]) for v in rows_of),
            "from": spacing_from,
        },
        "rows_outside_volumes": int(len(ids) - sizes.sum()),
    }


def _mask_stats(with_mask: int, fractions: np.ndarray, n: int) -> dict[str, Any]:
    nonempty = fractions[fractions > 0]
    return {
        "with_mask": with_mask,
        "non_empty": int(len(nonempty)),
        "fraction_non_empty": float(len(nonempty) / n) if n else 0.0,
        "median_mask_fraction": float(np.median(nonempty)) if len(nonempty) else 0.0,
        "sampled": int(len(fractions)) if with_mask else 0,
    }


def summarize_manifest(m: Manifest, sample: int = 64, seed: int = 0) -> dict[str, Any]:
    """Counts from the CSV; sizes, intensities and mask coverage from ``sample`` decoded rows (0: none)."""
    names = m.label_names()
    labels = [r.get("label") or "unlabelled" for r in m.rows]
    splits = [r.get("split", "") for r in m.rows]
    patients = [r.get("patient_id") or r["path"] for r in m.rows]
    info = {"kind": "manifest", "path": m.where, "n": len(m), "skipped": list(m.skipped)}
    info.update(_table(splits, labels, patients, names))
    ids = [r.get("volume", "") for r in m.rows]
    assumed = {r["volume"]: _manifest_assumed(m, r) for r in m.rows if r.get("volume")}
    has = [bool(r.get("mask")) for r in m.rows]
    info["volumes"] = _volume_summary(ids, splits, has, None, assumed, "file kinds")
    if sample:
        info.update(_decode_sample(m, sample, seed))
    info["problems"] = _problems(info, splits, patients)
    return info


def _manifest_assumed(m: Manifest, row: dict[str, str]) -> bool:
    ref = m.resolve(row["path"])
    return False if ref.split is None and is_series(ref.file) else _assumed_by_kind(row["path"])


def _decode_sample(m: Manifest, sample: int, seed: int) -> dict[str, Any]:
    decoder = RowDecoder(m, {})
    sizes: Counter[str] = Counter()
    channels: Counter[int] = Counter()
    stats, fracs, failures = [], [], []
    idx = _sample(len(m), sample, seed)
    for i in idx:
        row = m.rows[int(i)]
        try:
            img = decoder.image(row)
            mask = decoder.mask(row, img.shape[-2:])
        except VaedxError as e:
            failures.append({"path": row["path"], "reason": e.problem})
            continue
        sizes[f"{img.shape[1]}x{img.shape[2]}"] += 1
        channels[img.shape[0]] += 1
        stats.append((img.min(axis=(1, 2)), img.max(axis=(1, 2)), img.mean(axis=(1, 2))))
        if mask is not None:
            fracs.append(float(mask.mean()))
    c = channels.most_common(1)[0][0] if channels else 0
    same = [s for s in stats if len(s[0]) == c]
    chans = [
        {"min": float(np.min([s[0][k] for s in same])), "max": float(np.max([s[1][k] for s in same])),
         "mean": float(np.mean([s[2][k] for s in same]))}
        for k in range(c)
    ]  # fmt: skip
    with_mask = sum(1 for r in m.rows if r.get("mask"))
    fr = np.asarray(fracs)
    masks = _mask_stats(with_mask, fr, len(fr)) if with_mask else None
    return {
        "image": {"sizes": dict(sizes), "channels": c, "dtype": "float32", "sampled": len(idx)},
        "intensity": {"sampled": len(stats), "channels": chans},
        "masks": masks,
        "unreadable_in_sample": failures,
    }


# ------------------------------------------------------------------------------------------- rendering
def render(info: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    kind = "Tensor store" if info["kind"] == "store" else "Manifest"
    console.print(f"[bold]{kind}[/] {info['path']}: {info['n']} images", highlight=False, soft_wrap=True)
    t = Table(show_header=True, header_style="bold")
    t.add_column("split")
    for name in info["label_names"]:
        t.add_column(name, justify="right")
    t.add_column("total", justify="right")
    t.add_column("patients", justify="right")
    for s, c in info["counts"].items():
        t.add_row(
            s, *(str(c[n]) for n in info["label_names"]), str(sum(c.values())), str(info["patients"][s])
        )
    totals = [sum(c[n] for c in info["counts"].values()) for n in info["label_names"]]
    t.add_row("all", *(str(v) for v in totals), str(info["n"]), str(info["patients"]["total"]), style="bold")
    console.print(t)
    for line in _facts(info):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if info["problems"]:
        console.print("[bold yellow]problems:[/]")
        for p in info["problems"]:
            console.print(f"  - {p}", highlight=False, markup=False, soft_wrap=True)
    else:
        console.print("[green]no problems found[/]")
    for s in [*info["skipped"], *info.get("unreadable_in_sample", [])]:
        console.print(f"  skipped {s['path']}: {s['reason']}", highlight=False, markup=False, soft_wrap=True)


def _facts(info: dict[str, Any]) -> list[str]:
    out = []
    img = info.get("image")
    if img:
        sizes = ", ".join(f"{k} ({v})" for k, v in img["sizes"].items())
        note = f", from {img['sampled']} sampled rows" if "sampled" in img else ""
        out.append(f"image size (HxW): {sizes}; channels: {img['channels']}{note}")
    inten = info.get("intensity")
    if inten and inten["channels"]:
        ch = "; ".join(
            f"ch{k}: min {c['min']:.3g} max {c['max']:.3g} mean {c['mean']:.3g}"
            for k, c in enumerate(inten["channels"])
        )
        out.append(f"intensity ({inten['sampled']} images): {ch}")
    masks = info.get("masks")
    if masks:
        area = f"median area of non-empty masks {masks['median_mask_fraction']:.2%} of the image"
        if info["kind"] == "manifest":
            out.append(
                f"masks: {masks['with_mask']} rows have one; non-empty in {masks['non_empty']} of "
                f"{masks['sampled']} sampled ({masks['fraction_non_empty']:.1%}); {area}"
            )
        else:
            out.append(
                f"masks: {masks['with_mask']} images have one; non-empty in {masks['non_empty']} "
                f"({masks['fraction_non_empty']:.1%} of all images); {area}"
            )
    elif "masks" in info:
        out.append("masks: none")
    vols = info.get("volumes")
    if vols:
        out.append(_volume_line(vols))
    dup = info.get("duplicates")
    if dup and dup["checked"]:
        out.append(
            f"exact duplicates: {dup['within_splits']} within a split, {dup['across_splits']} across splits; "
            f"blank images: {dup['blank']}"
        )
    if info.get("preprocess"):
        p = info["preprocess"]
        keys = ("size", "channels", "grey", "normalize", "keep_aspect", "foreground_mask")
        keys += ("normalize_scope", "brain_extraction", "target_spacing", "context_slices")
        out.append("preprocess: " + ", ".join(f"{k} {p[k]}" for k in keys if k in p))
    out += [f"note: {n}" for n in info.get("notes", [])]
    return out


def _volume_line(v: dict[str, Any]) -> str:
    s = v["slices"]
    splits = ", ".join(f"{k} {n}" for k, n in v["per_split"].items())
    lesion = "unknown before prepare" if v["with_lesion"] is None else str(v["with_lesion"])
    sp = v["spacing"]
    outside = f"; {v['rows_outside_volumes']} rows outside volumes" if v["rows_outside_volumes"] else ""
    return (
        f"volumes: {v['n']} (slices per volume min {s['min']}, median {s['median']:g}, max {s['max']}); "
        f"per split: {splits}; with masks {v['with_masks']}, with lesion {lesion}; "
        f"spacing known {sp['known']}, assumed {sp['assumed']} (from {sp['from']}){outside}"
    )
