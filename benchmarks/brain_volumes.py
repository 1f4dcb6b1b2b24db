"""Skull stripping and per-volume normalisation on LGG FLAIR volumes: the intensity baseline and a VAE.

What it measures, on ``<data>/brain_lgg`` (28 patients as volumes, FLAIR channel, split by patient: the
first 16 patient ids sorted train, the next 4 val, the last 8 test): for each brain-extraction method
(``--methods``), a store of every patient's slices prepared per volume at ``--size`` px, a VAE trained on
the no-tumour slices of the train patients, pixel thresholds calibrated on the val patients by
``vaedx detect`` (target specificity 0.95 on normal slices), and on the test patients, per volume: Dice at
that threshold, its mean over patients with a patient-bootstrap CI, ⌈Dice⌉ (best threshold on the test
volumes themselves, optimistic), voxel AUPRC and lesion-wise detection (``vaedx.volume_metrics``), for the
VAE's residual map and for the FLAIR intensity itself. Figures are at model resolution. Each result is
appended to ``--out`` (JSON lines) as soon as it is measured, and a table is printed at the end.

    python benchmarks/brain_volumes.py                      # none vs the default skull stripper
    python benchmarks/brain_volumes.py --quick              # 6 patients, 32 px, 3 epochs (a smoke run)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("VAEDX_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def split_patients(cases: list[Path], quick: bool) -> dict[str, str]:
    names = sorted(c.name for c in cases)
    if quick:
        return {n: ("train", "train", "train", "val", "test", "test")[i] for i, n in enumerate(names)}
    return {n: "train" if i < 16 else "val" if i < 20 else "test" for i, n in enumerate(names)}


def build_store(cases: list[Path], splits: dict[str, str], cfg, out: Path) -> tuple[Path, float]:
    """Every patient's slices prepared per volume (the product's prepare_volume), split by patient."""
    from vaedx.data.store import StoreWriter
    from vaedx.data.volume_prep import prepare_volume
    from vaedx.io.slice_stack import read_lgg_patient

    t0 = time.perf_counter()
    prepared = []
    for case in cases:
        vol, mask = read_lgg_patient(case)
        prepared.append((case.name, prepare_volume(vol, cfg, mask)))
    seconds = time.perf_counter() - t0
    total = sum(p.slices.shape[0] for _, p in prepared)
    writer = StoreWriter(out, total, prepared[0][1].slices.shape[1:], with_masks=True)
    for name, p in prepared:
        for z in range(p.slices.shape[0]):
            writer.add(
                p.slices[z], label=int(p.masks[z].any()), mask=p.masks[z], split=splits[name],
                path=f"{name}/{name}_{z + 1}.png", patient_id=name, volume=name, slice_index=z,
            )  # fmt: skip
    writer.finish(["no_tumour", "tumour"], cfg)
    return out, seconds


def evaluate_volumes(out_dir: Path, store_dir: Path, scorer: str, n_boot: int) -> dict:
    """Volume metrics of one scorer's test maps at its calibrated pixel threshold."""
    import vaedx
    from vaedx.anomaly.output import DetectOutput
    from vaedx.data.store import TensorStore
    from vaedx.metrics.volume import stack_volumes

    store, det = TensorStore.open(store_dir), DetectOutput.open(out_dir)
    idx = det.index
    vids = [store.records["volume"][i] for i in idx]
    zs = [store.records["slice_index"][i] for i in idx]
    maps = stack_volumes(vids, zs, det.load_maps(scorer))
    truth = stack_volumes(vids, zs, np.asarray(store.masks[idx, 0]) > 0)
    return vaedx.volume_metrics(maps, truth, det.pixel_threshold(scorer), n_boot=n_boot)


def summary(m: dict) -> dict:
    ci = m.get("dice_mean") or {}
    best = m.get("dice_best_threshold_optimistic") or {}
    les = m.get("lesions") or {}
    au = m.get("voxel_auprc") or {}
    return {
        "dice_mean": ci.get("point"), "dice_ci": [ci.get("low"), ci.get("high")],
        "dice_best_optimistic": best.get("dice_mean"),
        "voxel_auprc": au.get("point"), "auprc_ci": [au.get("low"), au.get("high")],
        "lesion_sensitivity": (les.get("sensitivity") or {}).get("point"),
        "fp_components_per_volume": les.get("false_positive_components_per_volume"),
        "per_patient_dice": {r["volume"]: r.get("dice") for r in m.get("per_volume", [])},
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=None, help="comma list of brain-extraction methods (default: all)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--work", type=Path, default=Path("/tmp/vaedx_brain_volumes"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/vaedx_brain_volumes/results.jsonl"))
    a = ap.parse_args()
    import torch

    import vaedx
    from vaedx.anomaly.detect import detect
    from vaedx.data.preprocess import PreprocessConfig

    torch.set_num_threads(a.threads)
    if a.methods:
        methods = a.methods.split(",")
    else:
        from vaedx.data.brain import METHODS

        methods = list(METHODS)
    cases = sorted(p for p in (DATA / "brain_lgg").iterdir() if p.is_dir() and p.name.startswith("TCGA"))
    if a.quick:
        cases, a.size, a.epochs, a.n_boot = cases[:6], 32, 3, 200
    splits = split_patients(cases, a.quick)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for method in methods:
        cfg = PreprocessConfig(
            size=(a.size, a.size), channels=[1], normalize_scope="volume", brain_extraction=method
        )
        work = a.work / method
        store, prep_s = build_store(cases, splits, cfg, work / "store")
        fast = {"widths": [32, 64, 128, 256], "latent_dim": 64, "batch_size": 64, "num_threads": a.threads}
        t0 = time.perf_counter()
        vaedx.train(store, work / "run", epochs=a.epochs, label_filter=["no_tumour"], **fast)
        train_s = time.perf_counter() - t0
        scorers = ["residual", "intensity"]
        post = "foreground,median=5"
        common = {"scorers": scorers, "postprocess": post, "quiet": True, "max_overlays": 0}
        detect(work / "run", work / "val", store=store, split="val", save_calibration=True, **common)
        detect(work / "run", work / "test", store=store, split="test", **common)
        for scorer in scorers:
            m = evaluate_volumes(work / "test", store, scorer, a.n_boot)
            row = {
                "method": method, "scorer": scorer, "size": a.size, "epochs": a.epochs,
                "prepare_seconds": round(prep_s, 1), "train_seconds": round(train_s, 1),
                "n_test_volumes": len(m.get("per_volume", [])), **summary(m),
            }  # fmt: skip
            results.append(row)
            with a.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps({k: v for k, v in row.items() if k != "per_patient_dice"}), flush=True)
    head = "brain extraction | scorer | mean Dice [95% CI] | ⌈Dice⌉ (optimistic) | voxel AUPRC | lesion sens."
    print(f"\n| {head} |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        lo, hi = r["dice_ci"]
        print(
            f"| {r['method']} | {r['scorer']} | {_f(r['dice_mean'])} [{_f(lo)}, {_f(hi)}] | "
            f"{_f(r['dice_best_optimistic'])} | {_f(r['voxel_auprc'])} | {_f(r['lesion_sensitivity'])} |"
        )


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


if __name__ == "__main__":
    main()
