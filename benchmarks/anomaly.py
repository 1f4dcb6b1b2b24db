"""Reproduce the anomaly-detection tables: PneumoniaMNIST (image level) and LGG FLAIR (pixel level).

Run: ``.venv/bin/python benchmarks/anomaly.py --out /tmp/vaedx_bench [--quick] [--restoration-steps N]``.
LGG VAE and AE train with the same recipe: 300 epochs, cosine schedule, training-time augmentation
(``--lgg-epochs``, ``--no-augment`` change it; the run folders are named after the recipe).
Models (VAE, AE of the same size, PCA) are trained on normal training images only (LGG: tumour-free slices
of the training patients); thresholds are calibrated on validation normals (pixel threshold: best Dice on
val); ``--split test`` (default) is scored and evaluated with patient-level bootstrap CIs. The LGG patient
split is the store's seeded patient-level split and is printed. LGG post-processing (brain foreground,
median filter, top-k image score) was chosen on the validation patients only; ``--split val`` prints the
validation tables (there Dice at the val threshold is optimistic too). Existing runs under --out are
reused, so a second call only re-scores. Nothing is asserted: numbers are printed for the record.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

import vaedx
from vaedx.anomaly.detect import detect
from vaedx.anomaly.registry import available_scorers
from vaedx.data.locate import find_data_file
from vaedx.data.manifest import write_manifest
from vaedx.data.prepare import prepare, prepare_config
from vaedx.data.sources import index_source
from vaedx.data.store import TensorStore
from vaedx.evaluate.anomaly import evaluate_anomaly, table_rows, undefined_notes
from vaedx.evaluate.compare import Side, compare_scorers, comparison_row
from vaedx.evaluate.tables import format_table, to_markdown
from vaedx.runs.loaded import load_model

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
        prepare(source, out, prepare_config(**cfg))
    return TensorStore.open(out)


def _train(store: Path, out: Path, kind: str, normal: str, epochs: int, **model: object) -> Path:
    if not (out / "best").exists() and not (out / "last").exists():
        vaedx.train(
            store, out, kind=kind, label_filter=[normal], epochs=epochs, seed=0, num_threads=1, **model
        )
    return out


# LGG choices made on the validation patients (see the closing note of issue 4): brain foreground,
# median 5x5 filter; image score = mean of the top 1 % of brain pixels.
LGG_POST = "foreground,median=5"
LGG_IMAGE = {"image_method": "topk", "topk_percent": 1.0}
# Restoration for FLAIR, chosen on the validation patients (100 steps, TV data term; lam 0.01, 0.1,
# 1, 10; unsigned vs signed): keep only what the restoration darkened, as residual_signed does.
LGG_RESTORATION = {"steps": 100, "lam": 0.1, "data_term": "tv", "signed": True}


def _run(
    name: str, store: Path, runs: dict[str, Path], out: Path, scorers: list[str], split: str, **kw: object
) -> list:
    rows = []
    for kind, run in runs.items():
        offered = available_scorers(load_model(run).model)
        use = [s for s in scorers if s in offered and (s != "intensity" or kind == "vae")]
        pred = detect(
            run, out / f"det_{name}_{split}_{kind}", store=store, split=split, scorers=use, quiet=True, **kw
        )
        res = evaluate_anomaly(pred, store, n_boot=1000)
        rows += table_rows(res, {"model": kind})
        for note in undefined_notes(res):
            console.print(f"[dim]{kind} {note}[/]")
    for r in rows:
        if r["scorer"] == "intensity":
            r["model"] = "none (baseline)"
    return rows


def _paired(name: str, store: Path, out: Path, split: str, rows: list[dict]) -> None:
    """VAE minus AE and VAE minus PCA for every scorer they share, the VAE's restoration minus every AE/PCA
    scorer, and every VAE scorer minus the intensity baseline: paired bootstrap on the same resampled
    patients (p = P(VAE not better))."""
    det = {k: out / f"det_{name}_{split}_{k}" for k in ("vae", "ae", "pca")}
    have = {k: {r["scorer"] for r in rows if r["model"] == k} for k in det}
    pairs = [(s, k, s) for k in ("ae", "pca") for s in sorted(have["vae"] & have[k])]
    # a scorer only the VAE has (restoration) against every scorer of the other models
    if "restoration" in have["vae"]:
        pairs += [("restoration", k, b) for k in ("ae", "pca") for b in sorted(have[k])]
    if any(r["scorer"] == "intensity" for r in rows):
        pairs += [(s, "vae", "intensity") for s in sorted(have["vae"])]
    results = [
        compare_scorers(Side(det["vae"], sa, f"vae:{sa}"), Side(det[kb], sb, f"{kb}:{sb}"), store)
        for sa, kb, sb in pairs
    ]
    picked = [comparison_row(r) for r in results]
    unit = results[0]["unit"] if results else "image"
    _print(picked, tuple(picked[0]) if picked else (), f"{name} {split}: paired differences (by {unit})")


def _print(rows: list[dict], cols: tuple[str, ...], title: str) -> None:
    picked = [{c: r[c] for c in cols if c in r} for r in rows]
    console.print(format_table(picked, title=title))
    print(to_markdown(picked))


def _pneumonia_as_typed(args: argparse.Namespace, out: Path) -> None:
    """VAE, AE and PCA trained with the defaults; each scored with the scorer and post-processing that
    ``vaedx detect`` chose on val for it; then paired: VAE minus AE and minus PCA on the same test images."""
    npz = find_data_file("pneumoniamnist/pneumoniamnist.npz", args.data)
    store = out / "pneu_store"
    _store(npz, store)
    rows, det = [], {}
    for kind in ("vae", "ae", "pca"):
        run = out / f"pneu_typed_{kind}"
        if not (run / "best").exists() and not (run / "last").exists():
            typed: dict = {"epochs": 2} if args.quick else {}
            vaedx.train(store, run, kind=kind, label_filter=["normal"], **typed)
        det[kind] = detect(
            run, out / f"det_pneu_typed_{args.split}_{kind}", store=store, split=args.split, scorers=None,
            quiet=True, max_overlays=0,
        )  # fmt: skip
        res = evaluate_anomaly(det[kind], store, n_boot=1000)
        rows += table_rows(res, {"model": kind})
    _print(rows, IMAGE_COLS, f"PneumoniaMNIST {args.split}, defaults (scorer chosen on val)")
    chosen = {k: next(r["scorer"] for r in rows if r["model"] == k) for k in det}
    paired = [
        comparison_row(
            compare_scorers(
                Side(det["vae"], chosen["vae"], f"vae:{chosen['vae']}"),
                Side(det[k], chosen[k], f"{k}:{chosen[k]}"),
                store,
            )
        )  # fmt: skip
        for k in ("ae", "pca")
    ]
    _print(paired, tuple(paired[0]), f"PneumoniaMNIST {args.split}, defaults: paired differences (by image)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/vaedx_bench"))
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="Few epochs (smoke run; numbers not meaningful).")
    ap.add_argument(
        "--restoration-steps",
        type=int,
        default=None,
        help="Restoration steps (LGG: 100 unless given; PneumoniaMNIST: off unless given; 0 = off).",
    )
    ap.add_argument(
        "--as-typed", action="store_true",
        help="PneumoniaMNIST as a new user runs it: `vaedx train --kind K --label-filter normal` with every "
        "other setting the default, then `vaedx detect` without --scorer (chosen on val)",
    )  # fmt: skip
    ap.add_argument("--only", choices=("pneumonia", "lgg"), default=None)
    ap.add_argument("--split", choices=("test", "val"), default="test", help="Split to evaluate.")
    ap.add_argument("--lgg-size", type=int, default=64, help="LGG slice size (64: chosen for CPU time).")
    ap.add_argument("--lgg-epochs", type=int, default=300, help="LGG VAE/AE epochs.")
    ap.add_argument(
        "--no-augment", action="store_true", help="LGG VAE/AE without training-time augmentation."
    )
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    ep_p, ep_l = (2, 1) if args.quick else (30, args.lgg_epochs)
    steps = args.restoration_steps
    restoration = {"steps": steps, "batch_size": 16} if steps else None

    if args.as_typed and args.only != "lgg":
        _pneumonia_as_typed(args, out)
    elif args.only in (None, "pneumonia"):
        npz = find_data_file("pneumoniamnist/pneumoniamnist.npz", args.data)
        _store(npz, out / "pneu_store")
        m = {"latent_dim": 16, "widths": [32, 64]}
        runs = {
            k: _train(out / "pneu_store", out / f"pneu_{k}", k, "normal", ep_p, **m)
            for k in ("vae", "ae", "pca")
        }
        scorers = ["residual", "ssim", "ssim_l1", "elbo", "kl", "grad_elbo", "combi", "intensity"]
        opts: dict = {}
        if restoration:
            scorers.insert(-1, "restoration")
            opts["restoration"] = restoration
        rows = _run("pneu", out / "pneu_store", runs, out, scorers, args.split, options=opts, max_overlays=20)
        _print(rows, IMAGE_COLS, f"PneumoniaMNIST {args.split} (image level), {ep_p} epochs")
        _paired("pneu", out / "pneu_store", out, args.split, rows)

    if args.only in (None, "lgg"):
        lgg = find_data_file("brain_lgg/manifest.csv", args.data)
        if not (out / "lgg.csv").is_file():
            write_manifest(index_source(lgg), out / "lgg.csv")
        size = args.lgg_size
        name = "lgg" if size == 128 else f"lgg{size}"
        ts = _store(out / "lgg.csv", out / f"{name}_store", size=size, channels=[1])
        for split in ("train", "val", "test"):
            pats = sorted(set(ts.patient_ids[ts.select(split=split)]))
            console.print(f"LGG {split} patients ({len(pats)}): {', '.join(map(str, pats))}")
        m = {"latent_dim": 64, "widths": [16, 32, 64, 128], "scheduler": "cosine"}
        aug = not args.no_augment
        recipe = f"e{ep_l}{'a' if aug else ''}"  # the run folder names the recipe, so runs are not mixed up
        runs = {
            k: _train(
                out / f"{name}_store",
                out / f"{name}_{k}_{recipe}",
                k,
                "no_tumour",
                ep_l,
                **m,
                **({"augment": True} if aug and k != "pca" else {}),
            )  # fmt: skip
            for k in ("pca", "ae", "vae")
        }
        scorers = ["residual", "residual_signed", "residual_intensity", "ssim", "ssim_l1", "elbo"]
        scorers += ["grad_elbo", "combi", "intensity"]
        opts = {s: dict(LGG_IMAGE) for s in scorers if s != "elbo"}
        lgg_steps = (5 if args.quick else LGG_RESTORATION["steps"]) if steps is None else steps
        if lgg_steps:
            scorers.insert(-1, "restoration")
            opts["restoration"] = {**LGG_RESTORATION, "steps": lgg_steps, "batch_size": 32, **LGG_IMAGE}
        rows = _run(
            f"{name}_{recipe}",
            out / f"{name}_store",
            runs,
            out,
            scorers,
            args.split,
            options=opts,
            postprocess=LGG_POST,
            max_overlays=20,
        )
        title = f"LGG FLAIR {size}x{size} {args.split} patients ({LGG_POST}, top-1% image score)"
        title += f", {ep_l} epochs{' with augmentation' if aug else ''}"
        _print(rows, PIXEL_COLS, title)
        _paired(f"{name}_{recipe}", out / f"{name}_store", out, args.split, rows)


if __name__ == "__main__":
    main()
