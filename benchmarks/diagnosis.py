"""Diagnosis from VAE latents on the real data: every table of issue 5 from one command.

Tables (all test figures are on splits never used for fitting, calibration, thresholds or model choice):

1. PneumoniaMNIST, all training labels, official test split (624 images), MedMNIST v2 anchors beside:
   encoders (the unsupervised VAE, and the same VAE with its encoder fine-tuned on the training labels by
   ``vaedx diagnose finetune``) x feature sets x classifier candidates (chosen by 5-fold CV on train) x
   threshold rules (chosen on val), all through ``fit_diagnosis`` (Platt calibration on val). Each row
   shows val and test, so a rule that only looks good on val shows.
2. PneumoniaMNIST label-fraction study (1/5/10/100 % of the training labels, several seeds, mean ± sd):
   VAE latent + logistic regression, M2 (Kingma et al. 2014), the VAE's encoder fine-tuned, and the
   supervised CNN with the VAE's encoder architecture, each on the same stratified labelled subset and
   with the same recipe (augmentation, one-cycle lr schedule, final weights). Decisions at P > 0.5.
2b. PneumoniaMNIST at 1 % and 10 % labels: FixMatch on the VAE encoder (``vae_fixmatch``), the fine-tuned
   encoder and the supervised CNN on the same subsets with the same optimiser steps, and each one's test
   AUC minus the CNN's with a 95 % t interval over the seeded subsets.
3. LGG FLAIR slice-level tumour / no-tumour on the held-out test patients (bootstrap CI by patient):
   VAE latent + CV-chosen classifier, the fine-tuned encoder + logistic regression, and the supervised
   CNN (same recipe), several seeds.
4. As a new user gets it (``diagnosis_new_user.py``): the README's commands with their defaults, one
   command line for PneumoniaMNIST, LGG (tumour / no tumour, by patient) and Cheng (three tumour types,
   by image), the VAE's auto recipe beside the CNN of the same architecture with the same search and budget.
5. Seconds per epoch at 64, 128 and 224 px on the Cheng set.

If several unsupervised encoders are listed, the one for tables 2 and 3 is chosen by validation AUC in
table 1, never by test.

Run: ``.venv/bin/python benchmarks/diagnosis.py [--jobs 2] [--quick] [--out /tmp/vaedx_diag]``.
``--jobs 2`` runs two lanes of sections in parallel (1 torch thread each); the tables are
printed at the end from the JSON every section writes to ``--out/results``; ``--tables`` only prints them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diagnosis_new_user import SECTIONS as NEW_USER_SECTIONS
from diagnosis_new_user import print_new_user_tables
from results_io import load, save

from vaedx.data.locate import find_data_file
from vaedx.data.prepare import prepare, prepare_config
from vaedx.data.store import TensorStore
from vaedx.diagnose.calibration import ThresholdRule
from vaedx.diagnose.classifiers import CLASSIFIERS
from vaedx.diagnose.fit import fit_diagnosis, split_probabilities
from vaedx.diagnose.study import label_fraction_study, paired_comparison, split_metrics, summarise
from vaedx.diagnose.supervised import train_supervised
from vaedx.evaluate.diagnosis import evaluate_probabilities
from vaedx.metrics.measures import binary_report

ANCHORS = [("ResNet-18 (28) [MedMNIST v2]", 0.944, 0.854), ("ResNet-50 (224) [MedMNIST v2]", 0.962, 0.884)]
ARCH = {"widths": [16, 32, 64], "latent_dim": 32}  # VAE encoders and the supervised CNN (same encoder)
M2_ARCH = {"widths": [16, 32, 64], "latent_dim": 16}  # smaller: M2 decodes every image once per class
ENCODERS = {"vae_b1": {"beta": 1.0, "scheduler": "cosine"}}  # beta 0.25 was within 0.01 AUC: dropped
RECIPE = {"augment": True, "schedule": "onecycle", "lr": 2e-3}  # every network trained with labels
FEATURES = [  # (name, posterior parts, anomaly scores, classifier candidates)
    ("mu+logvar / logreg", ("mu", "logvar"), (), ("logreg",)),
    ("mu+logvar / CV all", ("mu", "logvar"), (), CLASSIFIERS),
    ("mu+logvar+scores / CV all", ("mu", "logvar"), ("residual", "elbo", "kl"), CLASSIFIERS),
]
RULES = ("youden", "fixed:0.5", "sens:0.95", "spec:0.9")
NEW_USER = ["new_user_cheng", "new_user_lgg", "new_user_pneu", "resolution"]
NEW_USER += ["new_user_cheng_64", "new_user_cheng_224"]  # diagnosis AUC by size (128 px: new_user_cheng_128)
LANES = [["pneu_enc_vae_b1", "pneu_study", "pneu_fixmatch", "pneu_m2_all"], ["lgg", "pneu_m2_few", *NEW_USER]]
SEQUENTIAL = ["pneu_enc_vae_b1", "pneu_study", "lgg", "pneu_m2_few", "pneu_m2_all", "pneu_fixmatch"]
SEQUENTIAL += NEW_USER


class Cfg:
    """Run sizes; ``--quick`` shrinks everything to a smoke test of the code path."""

    def __init__(self, quick: bool, seeds: list[int], study_encoder: str | None = None):
        self.quick, self.seeds, self.study_encoder = quick, seeds, study_encoder
        self.vae_epochs = 1 if quick else 30
        self.lgg_epochs = 1 if quick else 20
        self.m2_epochs = 1 if quick else 10
        self.cnn_epochs = 1 if quick else 20  # fine-tuning and the supervised CNN
        self.min_steps = 10 if quick else 300
        self.fractions = [0.05, 1.0] if quick else [0.01, 0.05, 0.1, 1.0]
        self.fixmatch_fractions = [0.05] if quick else [0.01, 0.1]  # 100 %: nothing left unlabelled
        self.n_boot = 50 if quick else 200
        self.max_images = 600 if quick else None


# ------------------------------------------------------------------------------------------------ helpers
def stores(out: Path) -> dict[str, Path]:
    paths = {"pneu": out / "stores" / "pneumoniamnist", "lgg": out / "stores" / "lgg_flair_64"}
    npz = find_data_file("pneumoniamnist/pneumoniamnist.npz", None)
    lgg = find_data_file("brain_lgg/manifest.csv", None)
    if npz is None or lgg is None:
        raise SystemExit("real data not found (set VAEDX_DATA_DIR)")
    if not (paths["pneu"] / "store.json").exists():
        prepare(npz, paths["pneu"], prepare_config())
    if not (paths["lgg"] / "store.json").exists():
        prepare(lgg.parent, paths["lgg"], prepare_config(size=64, channels=[1]))
    return paths


def train_vae(store: Path, run: Path, cfg: Cfg, epochs: int, **opts: Any) -> Any:
    from vaedx.api import load_model, train

    if (run / "best" / "model.safetensors").exists() and (run / "done").exists():
        return load_model(run)  # reuse across reruns of the script (delete --out to retrain)
    extra = {"max_images": cfg.max_images} if cfg.max_images else {}
    t0 = time.perf_counter()
    m = train(store, run, epochs=epochs, seed=0, overwrite=True, num_threads=1, **ARCH, **opts, **extra)
    (run / "done").write_text(f"{time.perf_counter() - t0:.1f}")
    return m


def ci_row(result: dict[str, Any]) -> dict[str, Any]:
    """point and 95 % CI of the headline metrics from evaluate_probabilities."""
    keys = ("auc", "accuracy", "sensitivity", "specificity", "f1", "ece")
    return {k: result["ci"].get(k) for k in keys}


def val_metrics(y: np.ndarray, p: np.ndarray, thr: float) -> dict[str, Any]:
    r = binary_report(y, p, thr)
    return {k: r[k] for k in ("auc", "accuracy", "sensitivity", "specificity")}


def diagnosis_rows(
    enc: Any, store: Path, cfg: Cfg, label: str, groups: bool, features: list[Any] = FEATURES
) -> list[dict[str, Any]]:
    """Every feature set x threshold rule for one encoder: val metrics and test metrics with CIs."""
    rows = []
    st = TensorStore.open(store)
    for fname, include, scorers, cands in features:
        t0 = time.perf_counter()
        diag = fit_diagnosis(enc, st, include=include, scorers=scorers, candidates=cands, seed=0)
        _, yv, pv, _ = split_probabilities(diag, enc, st, "val")
        _, yt, pt, trow = split_probabilities(diag, enc, st, "test")
        yvb = (yv == diag.classes[1]).astype(np.int8)
        chosen = diag.meta["chosen"]
        for rule in RULES:
            diag.threshold = ThresholdRule.parse(rule).choose(yvb, pv[:, 1])
            res = evaluate_probabilities(
                diag, yt, pt, groups=st.patient_ids[trow] if groups else None, n_boot=cfg.n_boot
            )
            rows.append(
                {
                    "encoder": label,
                    "features": fname,
                    "classifier": f"{chosen['classifier']} {json.dumps(chosen['params'])}",
                    "cv_auc": chosen["cv_auc"],
                    "rule": rule,
                    "threshold": diag.threshold,
                    "val": val_metrics(yvb, pv[:, 1], diag.threshold),
                    "test": ci_row(res),
                    "seconds": time.perf_counter() - t0,
                }
            )
        print(f"  {label} {fname}: {chosen['classifier']} cv {chosen['cv_auc']:.3f}", flush=True)
    return rows


def encoder_rows(out: Path) -> list[dict[str, Any]]:
    return [r for name in ENCODERS for r in load(out, f"pneu_enc_{name}") or []]


def best_encoder(out: Path, wait: float = 7200.0) -> str:
    """The encoder whose best feature set has the highest *validation* AUC (test never consulted); waits
    for the encoder sections running in other lanes."""
    t0 = time.perf_counter()
    while any(load(out, f"pneu_enc_{n}") is None for n in ENCODERS):
        if time.perf_counter() - t0 > wait:
            raise SystemExit("encoder sections did not finish")
        time.sleep(10)
    rows = [r for r in encoder_rows(out) if r["encoder"] in ENCODERS]  # unsupervised ones only
    return max(rows, key=lambda r: r["val"]["auc"])["encoder"]


# ----------------------------------------------------------------------------------------------- sections
def finetuned(vae: Any, store: Path, run: Path, cfg: Cfg) -> Any:
    """``vaedx diagnose finetune`` on all training labels (reused across reruns like train_vae)."""
    from vaedx.diagnose.finetune import finetune_encoder
    from vaedx.runs.loaded import load_model

    if (run / "finetune.json").exists():
        return load_model(run)
    return finetune_encoder(vae, store, run, epochs=cfg.cnn_epochs, min_steps=cfg.min_steps, lr=RECIPE["lr"],
                            augment=RECIPE["augment"], overwrite=True, num_threads=1)  # fmt: skip


FINETUNED_FEATURES = [("mu / logreg", ("mu",), (), ("logreg",))]


def sec_pneu_encoder(name: str) -> Any:
    def run(out: Path, cfg: Cfg, paths: dict[str, Path]) -> None:
        enc = train_vae(paths["pneu"], out / "runs" / f"pneu_{name}", cfg, cfg.vae_epochs, **ENCODERS[name])
        rows = diagnosis_rows(enc, paths["pneu"], cfg, name, groups=False)
        tuned = finetuned(enc, paths["pneu"], out / "runs" / f"pneu_{name}_ft", cfg)
        rows += diagnosis_rows(tuned, paths["pneu"], cfg, f"{name}+ft", False, FINETUNED_FEATURES)
        save(out, f"pneu_enc_{name}", rows)

    return run


def sec_pneu_study(out: Path, cfg: Cfg, paths: dict[str, Path]) -> None:
    """VAE latent + LR and the supervised CNN (same encoder architecture) on the same subsets."""
    name = cfg.study_encoder or best_encoder(out)
    rows: list[dict[str, Any]] = []

    def keep(r: dict[str, Any]) -> None:
        rows.append(r)
        save(out, "pneu_study", {"encoder": name, "rows": rows})
        print(f"  study {r['method']} {r['fraction']} seed {r['seed']}: AUC {r['auc']:.3f}", flush=True)

    label_fraction_study(
        paths["pneu"], cfg.fractions, cfg.seeds, ("vae_latent_lr", "vae_finetune", "supervised_cnn"),
        cfg.cnn_epochs, vae=out / "runs" / f"pneu_{name}", model=ARCH, batch_size=64, num_threads=1,
        supervised_min_steps=cfg.min_steps, progress=keep, **RECIPE,
    )  # fmt: skip


def sec_pneu_fixmatch(out: Path, cfg: Cfg, paths: dict[str, Path]) -> None:
    """FixMatch on the VAE encoder vs the fine-tuned encoder vs the supervised CNN at few labels, same
    subsets, same optimiser steps (``min_steps``) and recipe; the paired interval is printed with table 2b."""
    name = cfg.study_encoder or "vae_b1"
    run = out / "runs" / f"pneu_{name}"
    train_vae(paths["pneu"], run, cfg, cfg.vae_epochs, **ENCODERS[name])  # reused when table 1 trained it
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def keep(r: dict[str, Any]) -> None:
        rows.append({**r, "seconds": time.perf_counter() - t0})
        save(out, "pneu_fixmatch", {"encoder": name, "rows": rows})
        what = f"{r['method']} {r['fraction']} seed {r['seed']}"
        print(f"  fixmatch study {what}: AUC {r['auc']:.3f}", flush=True)

    label_fraction_study(
        paths["pneu"], cfg.fixmatch_fractions, cfg.seeds, ("vae_fixmatch", "vae_finetune", "supervised_cnn"),
        cfg.cnn_epochs, vae=run, model=ARCH, batch_size=64, num_threads=1,
        supervised_min_steps=cfg.min_steps, progress=keep, **RECIPE,
    )  # fmt: skip


def sec_pneu_m2(part: str) -> Any:
    """M2 at the small fractions ("few") or at 100 % ("all"): two sections so they can run in two lanes
    (an M2 epoch costs the same at any fraction: the unlabelled images drive it)."""

    def run(out: Path, cfg: Cfg, paths: dict[str, Path]) -> None:
        fractions = [f for f in cfg.fractions if (f < 1.0) == (part == "few")]
        rows: list[dict[str, Any]] = []

        def keep(r: dict[str, Any]) -> None:
            rows.append(r)
            save(out, f"pneu_m2_{part}", {"rows": rows})
            print(f"  M2 {r['fraction']} seed {r['seed']}: AUC {r['auc']:.3f}", flush=True)

        label_fraction_study(
            paths["pneu"], fractions, cfg.seeds, ("m2",), cfg.m2_epochs, model=M2_ARCH, batch_size=64,
            num_threads=1, progress=keep, **RECIPE,
        )  # fmt: skip

    return run


def sec_lgg(out: Path, cfg: Cfg, paths: dict[str, Path]) -> None:
    """Slice-level tumour / no-tumour: VAE (all training slices, no labels) + classifier vs supervised CNN."""
    name = "vae_b1"
    enc = train_vae(paths["lgg"], out / "runs" / f"lgg_{name}", cfg, cfg.lgg_epochs, **ENCODERS[name])
    rows = diagnosis_rows(enc, paths["lgg"], cfg, name, groups=True)
    save(out, "lgg", {"latent": rows, "cnn": []})
    tuned = finetuned(enc, paths["lgg"], out / "runs" / f"lgg_{name}_ft", cfg)
    rows += diagnosis_rows(tuned, paths["lgg"], cfg, f"{name}+ft", True, FINETUNED_FEATURES)
    save(out, "lgg", {"latent": rows, "cnn": []})
    st = TensorStore.open(paths["lgg"])
    test = st.select(split="test")
    cnn = []
    for seed in cfg.seeds:
        res = train_supervised(st, 1.0, seed, cfg.cnn_epochs, model=ARCH, batch_size=32,
                               min_steps=cfg.min_steps, num_threads=1, **RECIPE)  # fmt: skip
        proba = res.model.predict_proba(st.images[np.sort(test)])
        yt = st.labels[np.sort(test)]
        n = len(res.labelled_rows)
        cnn.append({"seed": seed, "n_labelled": n, "best_epoch": res.best_epoch,
                    **split_metrics(yt, proba, res.classes)})  # fmt: skip
        print(f"  lgg cnn seed {seed}: AUC {cnn[-1]['auc']:.3f}", flush=True)
        save(out, "lgg", {"latent": rows, "cnn": cnn})


SECTIONS = {f"pneu_enc_{n}": sec_pneu_encoder(n) for n in ENCODERS}
SECTIONS |= {"pneu_study": sec_pneu_study, "pneu_fixmatch": sec_pneu_fixmatch, "lgg": sec_lgg}
SECTIONS |= {f"pneu_m2_{part}": sec_pneu_m2(part) for part in ("few", "all")}
SECTIONS |= NEW_USER_SECTIONS


# ------------------------------------------------------------------------------------------------- tables
def f(v: Any, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def fci(ci: list[float] | None) -> str:
    return "n/a" if ci is None else f"{ci[0]:.3f} [{ci[1]:.3f}, {ci[2]:.3f}]"


def print_diag_table(rows: list[dict[str, Any]], title: str) -> None:
    print(f"\n{title}")
    hdr = (f"{'encoder':<10} {'features / classifiers':<26} {'chosen':<22} {'rule':<9} {'thr':>5} | "
           f"{'val AUC':>7} {'ACC':>5} {'sens':>5} {'spec':>5} | {'test AUC [95% CI]':<22} "
           f"{'ACC [95% CI]':<22} {'sens':>5} {'spec':>5} {'F1':>5} {'ECE':>5}")  # fmt: skip
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        v = r["val"]
        t = {k: c[0] if isinstance(c, list) and k not in ("auc", "accuracy") else c
             for k, c in r["test"].items()}  # fmt: skip
        print(
            f"{r['encoder']:<10} {r['features']:<26} {r['classifier'][:22]:<22} {r['rule']:<9} "
            f"{r['threshold']:>5.3f} | {f(v['auc']):>7} {f(v['accuracy']):>5} {f(v['sensitivity']):>5} "
            f"{f(v['specificity']):>5} | {fci(t['auc']):<22} {fci(t['accuracy']):<22} "
            f"{f(t['sensitivity']):>5} {f(t['specificity']):>5} {f(t['f1']):>5} {f(t['ece']):>5}"
        )


def print_study(rows: list[dict[str, Any]], title: str) -> None:
    print(f"\n{title}")
    hdr = (f"{'method':<15} {'fraction':>8} {'labelled':>8} {'seeds':>5} {'AUC':>13} {'ACC':>13} "
           f"{'sens':>13} {'spec':>13}")  # fmt: skip
    print(hdr)
    print("-" * len(hdr))
    order = {"vae_latent_lr": 0, "m2": 1, "vae_finetune": 2, "vae_fixmatch": 3, "supervised_cnn": 4}
    for s in sorted(summarise(rows), key=lambda s: (s["fraction"], order.get(s["method"], 9))):
        print(
            f"{s['method']:<15} {s['fraction']:>8g} {s['n_labelled']:>8.0f} {s['n_seeds']:>5} {s['auc']:>13} "
            f"{s['acc']:>13} {s['sens']:>13} {s['spec']:>13}"
        )


def print_tables(out: Path) -> None:
    enc = encoder_rows(out)
    print("\nPublished anchors (MedMNIST v2, PneumoniaMNIST test): "
          + "; ".join(f"{n}: AUC {a:.3f} / ACC {c:.3f}" for n, a, c in ANCHORS)
          + ". Goal: AUC >= 0.97, ACC >= 0.90.")  # fmt: skip
    if enc:
        print_diag_table(enc, "Table 1. PneumoniaMNIST, all 4708 training labels; val = official val (524), "
                         "test = official test (624); CI: 95 % bootstrap")  # fmt: skip
    study = load(out, "pneu_study")
    rows = (study or {}).get("rows", [])
    rows += [r for part in ("few", "all") for r in (load(out, f"pneu_m2_{part}") or {}).get("rows", [])]
    if rows:
        print_study(rows, f"Table 2. PneumoniaMNIST label-fraction study, official test split (624); "
                    f"encoder for vae_latent_lr: {(study or {}).get('encoder')}; mean ± sd over seeds; "
                    f"decision P > 0.5")  # fmt: skip
    fm = load(out, "pneu_fixmatch")
    if fm and fm["rows"]:
        print_study(fm["rows"], f"Table 2b. PneumoniaMNIST few labels: FixMatch on the VAE encoder "
                    f"({fm['encoder']}) vs fine-tuned encoder vs supervised CNN (same subsets, steps and "
                    "recipe); official test split (624); mean ± sd over seeds; decision P > 0.5")  # fmt: skip
        print("\ntest AUC minus supervised_cnn on the same subsets (95 % t interval over seeds)")
        for p in paired_comparison(fm["rows"]):
            ci = "n/a" if p["ci_low"] is None else f"[{p['ci_low']:+.3f}, {p['ci_high']:+.3f}]"
            diff = f"{p['diff_mean']:+.3f} ± {f(p['diff_sd'])}"
            print(f"  {p['method']:<14} {p['fraction']:>5g}  {diff}  {ci}  wins {p['wins']}/{p['n_seeds']}")
        print(f"  wall time {max(r['seconds'] for r in fm['rows']):.0f} s for {len(fm['rows'])} runs")
    lgg = load(out, "lgg")
    if lgg:
        print_diag_table(lgg["latent"], "Table 3a. LGG FLAIR 64x64 slice-level tumour vs no tumour, "
                         "VAE latents; test = 4 held-out patients; CI: bootstrap by patient")  # fmt: skip
        if lgg["cnn"]:
            cnn = [{**r, "method": "supervised_cnn", "fraction": 1.0} for r in lgg["cnn"]]
            print_study(cnn, "Table 3b. LGG supervised CNN (same encoder), all training labels, "
                        "test patients, decision P > 0.5")  # fmt: skip
    print_new_user_tables(out)


# --------------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/vaedx_diag"))
    ap.add_argument("--quick", action="store_true", help="1 epoch, few images: a smoke test")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--jobs", type=int, default=1, choices=(1, 2), help="lanes run in parallel")
    ap.add_argument("--section", choices=sorted(SECTIONS), help="run one section only (used by --jobs)")
    ap.add_argument("--study-encoder", choices=sorted(ENCODERS), default=None,
                    help="encoder for the study's vae_latent_lr (default: best validation AUC of table 1)")
    ap.add_argument("--tables", action="store_true", help="only print the tables from --out/results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = Cfg(args.quick, [int(s) for s in args.seeds.split(",")], args.study_encoder)
    if args.tables:
        print_tables(args.out)
        return
    t0 = time.perf_counter()
    paths = stores(args.out)
    if args.section:
        SECTIONS[args.section](args.out, cfg, paths)
        print(f"section {args.section} done in {time.perf_counter() - t0:.0f} s", flush=True)
        return
    base = [sys.executable, __file__, "--out", str(args.out), "--seeds", args.seeds]
    base += ["--quick"] if args.quick else []
    base += ["--study-encoder", args.study_encoder] if args.study_encoder else []
    lanes = [[base + ["--section", s] for s in lane] for lane in (LANES if args.jobs > 1 else [SEQUENTIAL])]
    procs = [subprocess.Popen(["bash", "-c", "; ".join(" ".join(map(str, c)) for c in lane)])
             for lane in lanes]  # fmt: skip
    codes = [p.wait() for p in procs]
    print_tables(args.out)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; torch {torch.__version__}, 1 thread per lane, "
          f"{args.jobs} lane(s); exit codes {codes}; shared machine")  # fmt: skip


if __name__ == "__main__":
    main()
