"""Reproduce the anomaly-detection tables: PneumoniaMNIST (image level) and LGG FLAIR 128x128 (pixel level).

Run: ``.venv/bin/python benchmarks/anomaly.py --out /tmp/vaedx_bench [--quick] [--restoration-steps 10]``.
Models (VAE, AE of the same size, PCA) are trained on normal training images only; thresholds are
calibrated on validation normals (pixel threshold: best Dice on val); the test split is scored and
evaluated with patient-level bootstrap CIs. Existing runs under --out are reused, so a second call only
re-scores. Nothing is asserted: numbers are printed for the record.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

import vaedx
from vaedx.anomaly.commands import detect
from vaedx.anomaly.registry import available_scorers
from vaedx.api import load_model
from vaedx.data.index import index_source
from vaedx.data.manifest import write_manifest
from vaedx.data.prepare import build_config, prepare
from vaedx.data.store import TensorStore
from vaedx.evaluate.anomaly import evaluate_anomaly, table_rows, undefined_notes
from vaedx.evaluate.tables import format_table, to_markdown
from vaedx.paths import find_data_file

console = Console()
IMAGE_COLS = ("model", "scorer", "AUROC", "AUPRC", "FPR@95TPR")
PIXEL_COLS = (
    "model",
    "scorer",
    "pixel AUROC",
    "pixel AUPRC",
    "Dice (val thr)",
    "best Dice (optimistic)",
    "AUROC",
)


def _store(source: Path, out: Path, **cfg: object) -> TensorStore:
    if not (out / "store.json").is_file():
        prepare(source, out, build_config(**cfg))
    return TensorStore.open(out)


def _train(store: Path, out: Path, kind: str, normal: str, epochs: int, **model: object) -> Path:
    if not (out / "best").exists() and not (out / "last").exists():
        vaedx.train(
            store, out, kind=kind, label_filter=[normal], epochs=epochs, seed=0, num_threads=1, **model
        )
    return out


def _run(name: str, store: Path, runs: dict[str, Path], out: Path, scorers: list[str], **kw: object) -> list:
    rows = []
    for kind, run in runs.items():
        offered = available_scorers(load_model(run).model)
        use = [s for s in scorers if s in offered and (s != "intensity" or kind == "vae")]
        pred = detect(
            run, out / f"det_{name}_{kind}", store=store, split="test", scorers=use, quiet=True, **kw
        )
        res = evaluate_anomaly(pred, store, n_boot=1000)
        rows += table_rows(res, {"model": kind})
        for note in undefined_notes(res):
            console.print(f"[dim]{kind} {note}[/]")
    for r in rows:
        if r["scorer"] == "intensity":
            r["model"] = "none (baseline)"
    return rows


def _print(rows: list[dict], cols: tuple[str, ...], title: str) -> None:
    picked = [{c: r[c] for c in cols if c in r} for r in rows]
    console.print(format_table(picked, title=title))
    print(to_markdown(picked))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/vaedx_bench"))
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="Few epochs (smoke run; numbers not meaningful).")
    ap.add_argument("--restoration-steps", type=int, default=0, help="Add the restoration scorer (0 = off).")
    ap.add_argument("--only", choices=("pneumonia", "lgg"), default=None)
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    ep_p, ep_l = (2, 1) if args.quick else (30, 12)
    vae_scorers = ["residual", "ssim", "elbo", "kl", "grad_elbo", "combi", "intensity"]
    if args.restoration_steps:
        vae_scorers.insert(-1, "restoration")
    opts = (
        {"restoration": {"steps": args.restoration_steps, "batch_size": 16}} if args.restoration_steps else {}
    )

    if args.only in (None, "pneumonia"):
        npz = find_data_file("pneumoniamnist/pneumoniamnist.npz", args.data)
        _store(npz, out / "pneu_store")
        m = {"latent_dim": 16, "widths": [32, 64]}
        runs = {
            k: _train(out / "pneu_store", out / f"pneu_{k}", k, "normal", ep_p, **m)
            for k in ("vae", "ae", "pca")
        }
        rows = _run("pneu", out / "pneu_store", runs, out, vae_scorers, options=opts, max_overlays=20)
        _print(rows, IMAGE_COLS, f"PneumoniaMNIST test (image level), {ep_p} epochs")

    if args.only in (None, "lgg"):
        lgg = find_data_file("brain_lgg/manifest.csv", args.data)
        if not (out / "lgg.csv").is_file():
            write_manifest(index_source(lgg), out / "lgg.csv")
        ts = _store(out / "lgg.csv", out / "lgg_store", size=128, channels=[1])
        for split in ("train", "val", "test"):
            pats = sorted(set(ts.patient_ids[ts.select(split=split)]))
            console.print(f"LGG {split} patients ({len(pats)}): {', '.join(map(str, pats))}")
        m = {"latent_dim": 64, "widths": [16, 32, 64, 128]}
        runs = {
            k: _train(out / "lgg_store", out / f"lgg_{k}", k, "no_tumour", ep_l, **m)
            for k in ("pca", "ae", "vae")
        }
        lgg_scorers = ["residual", "residual_signed", "ssim", "elbo", "grad_elbo", "combi", "intensity"]
        if args.restoration_steps:
            lgg_scorers.insert(-1, "restoration")
        rows = _run(
            "lgg",
            out / "lgg_store",
            runs,
            out,
            lgg_scorers,
            options=opts,
            postprocess="foreground",
            max_overlays=20,
        )
        _print(rows, PIXEL_COLS, f"LGG FLAIR 128x128 test patients (brain foreground), {ep_l} epochs")


if __name__ == "__main__":
    main()
