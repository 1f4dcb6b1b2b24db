"""Lesion localisation on all 28 LGG FLAIR patients, cross-validated by patient: which method is better?

Why cross-validation: a fixed 8-patient test split (``brain_volumes.py``) leaves CIs so wide that no two
methods can be told apart. Here every patient is a test patient exactly once (``--folds`` folds, default 7
of 4 patients); in each fold ``--val-patients`` of the remaining patients are validation patients (pixel
thresholds calibrated by ``vaedx detect`` on them, never on test patients) and the rest train.

Every method (``--methods``, names in ``METHODS``) sees the same store: ``vaedx data index`` + ``prepare``
once (FLAIR, ``--size`` px, volume-scope normalisation, ``--brain-extraction``), one store per fold that
shares its arrays and only re-labels the split column, the same post-processing (``anomaly.LGG_POST``) and
slice score (``anomaly.LGG_IMAGE``). Reported per method over all folds: per-patient Dice at the validation
threshold, mean Dice, ⌈Dice⌉ (best threshold chosen on the test volumes: optimistic, an upper bound), voxel
AUPRC, lesion-wise detection (found / all, false-positive components per volume), slice-level AUROC
(tumour vs no-tumour slices) and paired bootstrap differences by patient against ``intensity``.

Results go to ``--out/results.json`` and ``results.md`` after every fold (atomically); a rerun with the
same settings skips finished folds. Nothing is asserted.

    python benchmarks/brain_mri.py --out /tmp/vaedx_brain_mri --size 64 --epochs 15 --threads 1
    python benchmarks/brain_mri.py --quick --out /tmp/vaedx_brain_mri_quick      # CI-sized smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def _sibling(name: str) -> Any:
    """A sibling benchmark script as a module, under a private name (``anomaly`` is also a test package)."""
    key = f"_vaedx_bench_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, Path(__file__).resolve().parent / f"{name}.py")
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[key] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules[key]


_anomaly, _volumes = _sibling("anomaly"), _sibling("brain_volumes")
LGG_POST, LGG_IMAGE = _anomaly.LGG_POST, _anomaly.LGG_IMAGE  # post-processing and slice score chosen on val
DATA, evaluate_volumes = _volumes.DATA, _volumes.evaluate_volumes
BASELINE = "intensity"


@dataclass(frozen=True)
class Method:
    """A localisation method: the model it trains (runs are shared by recipe) and the scorer it reads."""

    kind: str  # vae | ae | pca | dae
    scorer: str = "residual"  # AUTO: vaedx detect chooses scorer and post-processing on val itself
    train: dict[str, Any] = field(default_factory=dict)
    as_typed: bool = False  # trained as a user types it: no model size or epochs from this benchmark

    def recipe(self) -> str:
        extra = "_".join(f"{k}-{v}" for k, v in sorted(self.train.items()))
        return self.kind + ("_typed" if self.as_typed else "") + (f"_{extra}" if extra else "")


AUTO = "auto"


# Add a method here and it can be named in --methods. The intensity baseline reads the FLAIR value of the
# prepared image; it needs some model to run detect with, so it borrows the cheapest one (PCA).
METHODS: dict[str, Method] = {
    "vae": Method("vae"),
    "vae_coarse": Method("vae", train={"denoise": "coarse"}),
    "ae": Method("ae"),
    "pca": Method("pca"),
    "intensity": Method("pca", scorer="intensity"),
    # as a new user types it: `vaedx train --label-filter no_tumour` then `vaedx detect` without --scorer
    "vae_defaults": Method("vae", scorer=AUTO, as_typed=True),
    # the baselines a VAE must beat, also as typed: `vaedx train --kind ae|pca`, then `vaedx detect`
    "ae_defaults": Method("ae", scorer=AUTO, as_typed=True, train={"kind": "ae"}),
    "pca_defaults": Method("pca", scorer=AUTO, as_typed=True, train={"kind": "pca"}),
    # `vaedx train --preset brain-mri --label-filter no_tumour` then `vaedx detect` without --scorer
    "preset_brain_mri": Method("dae", scorer=AUTO, train={"preset": "brain-mri"}, as_typed=True),
    # the same with its epochs chosen on validation, as the training defaults choose them (the preset itself
    # trains 20 fixed epochs, as it was measured)
    "preset_brain_mri_long": Method(
        "dae",
        scorer=AUTO,
        as_typed=True,
        train={"preset": "brain-mri", "epochs": 200, "patience": 10, "budget": 10},
    ),  # fmt: skip
}


def make_folds(patients: list[str], k: int, n_val: int, seed: int = 0) -> list[dict[str, list[str]]]:
    """K folds by patient: the seeded shuffle is cut into k test groups (sizes differ by at most one), so
    every patient is tested exactly once; each fold's validation patients are the first ``n_val`` of its
    remaining patients in the shuffled order after its test group, the rest train."""
    names = sorted(set(patients))
    if not 2 <= k <= len(names):
        raise ValueError(f"need 2 <= folds <= patients ({len(names)}), got {k}")
    if n_val < 1 or len(names) - math.ceil(len(names) / k) - n_val < 1:
        raise ValueError(f"{len(names)} patients in {k} folds leave no training patient with {n_val} val")
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    groups = np.array_split(np.arange(len(order)), k)
    folds = []
    for g in groups:
        rest = [order[(g[-1] + 1 + j) % len(order)] for j in range(len(order) - len(g))]
        folds.append(
            {"test": sorted(order[i] for i in g), "val": sorted(rest[:n_val]), "train": sorted(rest[n_val:])}
        )
    return folds


def build_base_store(work: Path, size: int, brain_extraction: str, patients: int | None) -> Path:
    """``vaedx data index`` + ``vaedx data prepare`` of the LGG FLAIR channel, once for every fold."""
    from vaedx.data.manifest import write_manifest
    from vaedx.data.prepare import prepare, prepare_config
    from vaedx.data.sources import index_source

    store = work / "store"
    if (store / "store.json").is_file():
        return store
    manifest = index_source(DATA / "brain_lgg" / "manifest.csv")
    if patients:
        keep = sorted({r["patient_id"] for r in manifest.rows})[:patients]
        manifest.rows = [r for r in manifest.rows if r["patient_id"] in keep]
    csv = write_manifest(manifest, work / "lgg.csv")
    cfg = prepare_config(size=size, channels=[1], normalize_scope="volume", brain_extraction=brain_extraction)
    prepare(csv, store, cfg)
    return store


def fold_store(base: Path, out: Path, fold: dict[str, list[str]]) -> Path:
    """A store whose arrays are the base store's (linked, not copied) and whose split column is the fold's."""
    from vaedx.atomic import atomic_write_json

    split_of = {p: s for s, ps in fold.items() for p in ps}
    records = json.loads((base / "records.json").read_text())
    records["split"] = [split_of.get(p, "") for p in records["patient_id"]]
    out.mkdir(parents=True, exist_ok=True)
    for name in ("images.npy", "masks.npy", "labels.npy"):
        link = out / name
        if not link.exists():
            link.symlink_to((base / name).resolve())
    atomic_write_json(out / "records.json", records)
    shutil.copyfile(base / "store.json", out / "store.json")
    return out


def run_fold(base: Path, work: Path, fold: dict, methods: list[str], a: argparse.Namespace) -> dict:
    """Train each needed run on the fold's training patients, calibrate on val, measure on test."""
    import vaedx
    from vaedx.anomaly.detect import detect
    from vaedx.anomaly.output import DetectOutput
    from vaedx.data.store import TensorStore
    from vaedx.metrics.measures import auroc

    store = fold_store(base, work / "store", fold)
    model = {"latent_dim": 64, "widths": a.widths, "batch_size": 64, "num_threads": a.threads, "seed": 0}
    by_run: dict[str, list[str]] = {}
    for name in methods:
        by_run.setdefault(METHODS[name].recipe(), []).append(name)
    out: dict[str, Any] = {"patients": fold, "methods": {}, "seconds": {}}
    for recipe, names in by_run.items():
        m, run = METHODS[names[0]], work / f"run_{recipe}"
        t0 = time.perf_counter()
        if not (run / "best").exists():
            train = {**m.train}
            if train.get("denoise") == "coarse":
                train.setdefault("noise_resolution", max(1, a.size // 8))  # paper: 16 for 128 px
            if m.as_typed:  # only what the user would type; epochs only when the run is sized down
                typed = {"num_threads": a.threads, **({"epochs": a.typed_epochs} if a.typed_epochs else {})}
                vaedx.train(store, run, label_filter=["no_tumour"], **{**train, **typed})  # sized down wins
            else:
                vaedx.train(
                    store, run, kind=m.kind, epochs=a.epochs, label_filter=["no_tumour"], **model, **train
                )
        out["seconds"][f"train {recipe}"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        if m.scorer == AUTO:  # detect chooses on val (and calibrates there) before it scores test
            common: dict[str, Any] = {"scorers": None, "quiet": True, "max_overlays": 0}
        else:
            scorers = sorted({METHODS[n].scorer for n in names})
            common = {
                "scorers": scorers, "postprocess": LGG_POST, "quiet": True, "max_overlays": 0,
                "options": {s: dict(LGG_IMAGE) for s in scorers},
            }  # fmt: skip
            detect(run, work / f"val_{recipe}", store=store, split="val", save_calibration=True, **common)
        detect(run, work / f"test_{recipe}", store=store, split="test", **common)
        out["seconds"][f"detect {recipe}"] = round(time.perf_counter() - t0, 1)
        det = DetectOutput.open(work / f"test_{recipe}")
        opened = TensorStore.open(store)
        labels, tumour = np.asarray(opened.labels)[det.index], opened.label_names.index("tumour")
        chosen = det.meta.get("selection")
        for n in names:
            s = det.scorers[0] if METHODS[n].scorer == AUTO else METHODS[n].scorer
            vm = evaluate_volumes(work / f"test_{recipe}", store, s, a.n_boot)
            best = vm.get("dice_best_threshold_optimistic") or {}
            out["methods"][n] = {
                "threshold": det.pixel_threshold(s),
                "per_patient": {
                    r["volume"]: {
                        k: r.get(k)
                        for k in ("dice", "auprc", "lesions", "lesions_detected", "false_positive_components")
                    }
                    for r in vm["per_volume"]
                },
                "dice_best_optimistic": best.get("dice_mean"),
                "n_lesion_volumes": sum(1 for r in vm["per_volume"] if r.get("lesion_voxels")),
                "voxel_auprc": (vm.get("voxel_auprc") or {}).get("point"),
                "slice_auroc": auroc(labels == tumour, det.scores(s)),
            }
            if METHODS[n].scorer == AUTO and chosen:
                keep = ("scorer", "postprocess", "options", "metric", "value", "dice", "seconds", "n_images")
                out["methods"][n]["selection"] = {k: chosen.get(k) for k in keep}
    return out


def paired(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int = 0) -> dict[str, float]:
    """Mean of per-patient (a - b), percentile CI from patients resampled with replacement, and
    p = share of resamples where a is not better (difference <= 0)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    d = d[np.isfinite(d)]
    idx = np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))
    boots = d[idx].mean(axis=1)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return {
        "diff": float(d.mean()),
        "low": float(lo),
        "high": float(hi),
        "p_not_better": float(np.mean(boots <= 0)),
        "n": int(len(d)),
    }


def summarise(folds: dict[str, dict], methods: list[str], n_boot: int) -> dict[str, dict]:
    """Per-method figures over all finished folds (per-patient values pooled, per-fold values averaged
    with each fold weighted by its tumour patients)."""
    rows: dict[str, dict] = {}
    for n in methods:
        per = {p: v for f in folds.values() for p, v in f["methods"][n]["per_patient"].items()}
        dice = {p: v["dice"] for p, v in per.items() if v.get("lesions")}
        w = [f["methods"][n]["n_lesion_volumes"] for f in folds.values()]

        def wmean(key: str, n=n, w=w) -> float | None:
            vals = [f["methods"][n][key] for f in folds.values()]
            ok = [(v, x) for v, x in zip(vals, w, strict=True) if v is not None]
            return float(np.average([v for v, _ in ok], weights=[x or 1 for _, x in ok])) if ok else None

        lesions = sum(v.get("lesions") or 0 for v in per.values())
        found = sum(v.get("lesions_detected") or 0 for v in per.values())
        fp = [v.get("false_positive_components") or 0 for v in per.values()]
        rows[n] = {
            "n_patients": len(per), "per_patient_dice": dice,
            "dice_mean": float(np.mean(list(dice.values()))) if dice else None,
            "dice_best_optimistic": wmean("dice_best_optimistic"),
            "voxel_auprc": wmean("voxel_auprc"),
            "slice_auroc": wmean("slice_auroc"),
            "lesions_found": found, "lesions": lesions,
            "fp_components_per_volume": float(np.mean(fp)) if fp else None,
            "selections": [f["methods"][n]["selection"] for f in folds.values()
                           if "selection" in f["methods"][n]],
        }  # fmt: skip
    if BASELINE in rows:
        for n in methods:
            if n != BASELINE:
                rows[n]["dice_vs_intensity"], rows[n]["auprc_vs_intensity"] = versus(
                    folds, n, BASELINE, n_boot
                )
    return rows


def versus(folds: dict[str, dict], a: str, b: str, n_boot: int) -> tuple[dict | None, dict | None]:
    """Paired by patient, a minus b: (Dice over the patients with tumour, voxel AUPRC)."""
    per_a = {p: v for f in folds.values() for p, v in f["methods"][a]["per_patient"].items()}
    per_b = {p: v for f in folds.values() for p, v in f["methods"][b]["per_patient"].items()}
    common = sorted(p for p in set(per_a) & set(per_b) if per_a[p].get("lesions") and per_b[p].get("lesions"))
    if not common:
        return None, None
    dice = paired(
        np.array([per_a[p]["dice"] for p in common]), np.array([per_b[p]["dice"] for p in common]), n_boot
    )
    ap = [(per_a[p].get("auprc"), per_b[p].get("auprc")) for p in common]
    ap = [(x, y) for x, y in ap if x is not None and y is not None]
    return dice, (paired(np.array([x for x, _ in ap]), np.array([y for _, y in ap]), n_boot) if ap else None)


def compare_pairs(folds: dict[str, dict], pairs: list[tuple[str, ...]], n_boot: int) -> dict[str, dict]:
    """``{"A − B": {"dice": ..., "auprc": ...}}`` for every --versus pair."""
    out = {}
    for a, b in pairs:
        dice, auprc = versus(folds, a, b, n_boot)
        out[f"{a} − {b}"] = {"dice": dice, "auprc": auprc}
    return out


def to_markdown(
    rows: dict[str, dict], settings: dict, n_folds: int, seconds: float, pairs: dict[str, dict] | None = None
) -> str:
    f = _f
    lines = [
        f"Folds finished: {n_folds} of {settings['folds']}; settings: {json.dumps(settings)}; "
        f"wall time {seconds / 60:.1f} min",
        "",
        "| method | patients | mean Dice | ⌈Dice⌉ (optimistic) | voxel AUPRC | lesions found "
        "| FP comp./volume | slice AUROC | Dice − intensity [95% CI] p | AUPRC − intensity [95% CI] p |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n, r in rows.items():
        lines.append(
            f"| {n} | {r['n_patients']} | {f(r['dice_mean'])} | {f(r['dice_best_optimistic'])} | "
            f"{f(r['voxel_auprc'])} | {r['lesions_found']}/{r['lesions']} | "
            f"{f(r['fp_components_per_volume'], 2)} | "
            f"{f(r['slice_auroc'])} | {_d(r.get('dice_vs_intensity'))} | {_d(r.get('auprc_vs_intensity'))} |"
        )
    if pairs:
        head = (
            "Paired by patient (A − B, patients with tumour; p = share of resamples where A is not better):"
        )
        lines += ["", head, "", "| A − B | Dice [95% CI] p | voxel AUPRC [95% CI] p |", "| --- | --- | --- |"]
        lines += [f"| {k} | {_d(v['dice'])} | {_d(v['auprc'])} |" for k, v in pairs.items()]
    chosen = [(n, r["selections"]) for n, r in rows.items() if r.get("selections")]
    if chosen:
        lines += ["", "Chosen by `vaedx detect` on each fold's validation patients (no --scorer):", ""]
        for n, sel in chosen:
            picks = "; ".join(
                f"{c['scorer']} + {c['postprocess'] or 'none'} ({c['metric']} {f(c['value'])})" for c in sel
            )
            lines.append(f"- {n}: {picks}")
    pats = sorted({p for r in rows.values() for p in r["per_patient_dice"]})
    if pats:
        lines += [
            "",
            "Per-patient Dice (patients with tumour):",
            "",
            "| patient | " + " | ".join(rows) + " |",
        ]
        lines.append("| --- |" + " --- |" * len(rows))
        for p in pats:
            lines.append(
                f"| {p} | " + " | ".join(f(r["per_patient_dice"].get(p)) for r in rows.values()) + " |"
            )
    return "\n".join(lines) + "\n"


def _f(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _d(d: dict | None) -> str:
    if not d:
        return "—"
    return f"{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] p={d['p_not_better']:.3f}"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    ap.add_argument("--folds", type=int, default=7)
    ap.add_argument("--val-patients", type=int, default=3)
    ap.add_argument("--patients", type=int, default=None, help="only the first N patients (sorted ids)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument(
        "--typed-epochs", type=int, default=None,
        help="epochs of the methods trained as typed (vae_defaults, preset_brain_mri); default: their own",
    )  # fmt: skip
    ap.add_argument("--widths", default="16,32,64,128")
    ap.add_argument("--brain-extraction", choices=("none", "deepbet"), default="none")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0, help="seed of the patient shuffle")
    ap.add_argument(
        "--versus", default="", help="comma list of A:B method pairs to compare paired by patient, e.g. "
        "vae_defaults:pca_defaults (every method is compared with intensity anyway)",
    )  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="2 folds, 6 patients, 32 px, 1 epoch (a smoke run)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/vaedx_brain_mri"))
    a = ap.parse_args(argv)
    if a.quick:
        a.folds, a.patients, a.size, a.epochs, a.n_boot, a.val_patients = 2, 6, 32, 1, 100, 1
        a.widths, a.typed_epochs = "8,16", 1
    a.widths = [int(w) for w in a.widths.split(",")]
    methods = a.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        ap.error(f"unknown method(s) {', '.join(unknown)}: use {', '.join(METHODS)}")
    pairs = [tuple(p.split(":")) for p in a.versus.split(",") if p]
    if any(len(p) != 2 or not set(p) <= set(methods) for p in pairs):
        ap.error(f"--versus takes A:B pairs of the methods run ({', '.join(methods)}), got {a.versus!r}")
    import torch

    from vaedx.atomic import atomic_write_json, atomic_write_text

    torch.set_num_threads(a.threads)
    settings = {
        "folds": a.folds, "val_patients": a.val_patients, "patients": a.patients, "size": a.size,
        "epochs": a.epochs, "typed_epochs": a.typed_epochs, "widths": a.widths,
        "brain_extraction": a.brain_extraction, "seed": a.seed,
        "methods": methods, "postprocess": LGG_POST, "image_score": LGG_IMAGE, "n_boot": a.n_boot,
    }  # fmt: skip
    tag = f"s{a.size}_e{a.epochs}_{a.brain_extraction}_w{'-'.join(map(str, a.widths))}_p{a.patients or 'all'}"
    tag += f"_t{a.typed_epochs}" if a.typed_epochs else ""
    work = a.out / tag
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    base = build_base_store(work, a.size, a.brain_extraction, a.patients)
    from vaedx.data.store import TensorStore

    patients = sorted(set(TensorStore.open(base).records["patient_id"]))
    try:
        folds = make_folds(patients, a.folds, a.val_patients, a.seed)
    except ValueError as e:
        ap.error(str(e))
    res_path = a.out / "results.json"
    old = json.loads(res_path.read_text()) if res_path.is_file() else {}
    done: dict[str, dict] = old.get("folds", {}) if old.get("settings") == settings else {}
    elapsed0 = old.get("wall_seconds", 0.0) if done else 0.0
    for i, fold in enumerate(folds):
        if str(i) in done and done[str(i)]["patients"] == fold:
            print(f"fold {i + 1}/{len(folds)}: done before, skipped", flush=True)
            continue
        t0 = time.perf_counter()
        shutil.rmtree(work / f"fold{i}", ignore_errors=True)  # an unfinished fold starts afresh
        done[str(i)] = run_fold(base, work / f"fold{i}", fold, methods, a)
        done[str(i)]["seconds"]["fold"] = round(time.perf_counter() - t0, 1)
        rows, vs = summarise(done, methods, a.n_boot), compare_pairs(done, pairs, a.n_boot)
        wall = elapsed0 + time.perf_counter() - t_start
        result = {
            "settings": settings,
            "folds": done,
            "summary": rows,
            "pairs": vs,
            "wall_seconds": round(wall, 1),
        }
        atomic_write_json(res_path, result)
        atomic_write_text(a.out / "results.md", to_markdown(rows, settings, len(done), wall, vs))
        print(
            f"fold {i + 1}/{len(folds)} ({', '.join(fold['test'])}): {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    rows, vs = summarise(done, methods, a.n_boot), compare_pairs(done, pairs, a.n_boot)
    wall = elapsed0 + time.perf_counter() - t_start
    result = {
        "settings": settings,
        "folds": done,
        "summary": rows,
        "pairs": vs,
        "wall_seconds": round(wall, 1),
    }
    atomic_write_json(res_path, result)
    text = to_markdown(rows, settings, len(done), wall, vs)
    atomic_write_text(a.out / "results.md", text)
    print(text)
    print(f"wall time {wall:.0f} s ({wall / 60:.1f} min); results in {res_path}", flush=True)
    return result


if __name__ == "__main__":
    main()
