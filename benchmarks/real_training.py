"""Train the VAE, the AE and the PCA baseline on the real data sets and compare their reconstructions.

Why: synthetic tests show the code runs; only real images show whether the VAE earns its complexity over
a deterministic AE of the same architecture and over PCA with as many components as latent dimensions.
Everything goes through the public API (``vaedx.api.train`` / ``load_model``), so this is also an
end-to-end check of the path users take.

Experiments (each with vae, ae, pca):

* ``pneu_all``: PneumoniaMNIST 28x28, every training image (normal and pneumonia).
* ``pneu_normal``: PneumoniaMNIST, normals only (``label_filter=["normal"]``), the anomaly-detection set-up.
* ``lgg_no_tumour``: LGG FLAIR 128x128, tumour-free slices of the 20 training patients.

Columns: epochs run (best epoch), wall time of ``vaedx.api.train`` (store already prepared), the last
epoch's validation -ELBO per image in nats (VAE, beta=1; Gaussian likelihood with fixed sigma, a density,
so it can be negative), and test-split reconstruction MSE and mean SSIM (``vaedx.models.ssim_map``) from
the best checkpoint: on the training labels (in-distribution) and, for filtered runs, on the held-out label
(how much worse anomalies reconstruct).

Run: ``.venv/bin/python benchmarks/real_training.py [--quick] [--out /tmp/vaedx_real] [--threads N]``.
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaedx.api import LoadedModel, load_model, train
from vaedx.data.locate import find_data_file
from vaedx.data.prepare import prepare, prepare_config
from vaedx.data.store import TensorStore
from vaedx.models import ssim_map


@dataclass
class Experiment:
    name: str
    store: str  # key into the prepared stores
    label_filter: list[str] | None
    held_out: list[str] | None  # labels never trained on, scored on the test split too
    options: dict[str, Any] = field(default_factory=dict)  # model/training options for vae and ae


PNEU = {"epochs": 30, "latent_dim": 32, "widths": [32, 64, 128]}
LGG = {"epochs": 15, "latent_dim": 128, "widths": [32, 64, 128, 256]}


def experiments(quick: bool, pneu_epochs: int | None, lgg_epochs: int | None) -> list[Experiment]:
    pneu, lgg = dict(PNEU), dict(LGG)
    pneu["epochs"] = pneu_epochs or (2 if quick else pneu["epochs"])
    lgg["epochs"] = lgg_epochs or (1 if quick else lgg["epochs"])
    if quick:
        pneu["max_images"], lgg["max_images"] = 512, 64
    return [
        Experiment("pneu_all", "pneu", None, None, pneu),
        Experiment("pneu_normal", "pneu", ["normal"], ["pneumonia"], pneu),
        Experiment("lgg_no_tumour", "lgg", ["no_tumour"], ["tumour"], lgg),
    ]


def prepare_stores(out: Path, data: Path | None, lgg_size: int) -> dict[str, Path]:
    """Prepare each store once (reused across runs of this script: delete --out to rebuild)."""
    stores: dict[str, Path] = {}
    npz = find_data_file("pneumoniamnist/pneumoniamnist.npz", data)
    lgg = find_data_file("brain_lgg/manifest.csv", data)
    if npz is not None:
        stores["pneu"] = out / "stores" / "pneumoniamnist"
        if not (stores["pneu"] / "store.json").exists():
            prepare(npz, stores["pneu"], prepare_config())
    if lgg is not None:
        stores["lgg"] = out / "stores" / f"lgg_flair_{lgg_size}"
        if not (stores["lgg"] / "store.json").exists():
            prepare(lgg.parent, stores["lgg"], prepare_config(size=lgg_size, channels=[1]))
    if not stores:
        raise SystemExit("no real data found (set VAEDX_DATA_DIR or pass --data)")
    return stores


@torch.no_grad()
def test_scores(m: LoadedModel, store: TensorStore, labels: list[str] | None) -> tuple[float, float, int]:
    """(mean per-image MSE, mean SSIM, n) of the test split, reconstructing with the posterior mean."""
    idx = store.select(split="test", labels=labels)
    if len(idx) == 0:
        return float("nan"), float("nan"), 0
    mse, ssim = [], []
    for i in range(0, len(idx), 128):
        x = torch.from_numpy(np.ascontiguousarray(store.images[idx[i : i + 128]], dtype=np.float32))
        x_hat = m.model.reconstruct(x).float()
        mse.append((x_hat - x).pow(2).flatten(1).mean(1))
        ssim.append(ssim_map(x_hat, x).flatten(1).mean(1))
    return float(torch.cat(mse).mean()), float(torch.cat(ssim).mean()), len(idx)


def last_metrics(run: Path) -> dict[str, str]:
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return rows[-1] if rows else {}


def run_one(exp: Experiment, kind: str, store: Path, out: Path, threads: int | None) -> dict[str, Any]:
    opts: dict[str, Any] = {"kind": kind, "label_filter": exp.label_filter, "seed": 0}
    if kind == "pca":  # PCA: as many components as the networks have latent dimensions
        opts["latent_dim"] = exp.options["latent_dim"]
        if "max_images" in exp.options:
            opts["max_images"] = exp.options["max_images"]
    else:
        opts.update(exp.options)
        if threads:
            opts["num_threads"] = threads
    run = out / "runs" / f"{exp.name}_{kind}"
    t0 = time.perf_counter()
    train(store, run, overwrite=True, **opts)
    wall = time.perf_counter() - t0
    m = load_model(run)  # best/ checkpoint, read back from disk as any later stage would
    last = last_metrics(run)
    ts = TensorStore.open(store)
    mse, ssim, n = test_scores(m, ts, exp.label_filter)
    row: dict[str, Any] = {
        "experiment": exp.name, "model": kind, "epochs": int(last.get("epoch", 1)),
        "best": int(m.state.get("best_epoch", 1)), "wall": wall,
        "img_s": float(last.get("images_per_s") or "nan"),
        "val_nelbo": float(last["val_loss"]) if kind == "vae" and last.get("val_loss") else None,
        "test_mse": mse, "test_ssim": ssim, "n_test": n, "held_mse": None, "held_ssim": None,
    }  # fmt: skip
    if exp.held_out:
        row["held_mse"], row["held_ssim"], _ = test_scores(m, ts, exp.held_out)
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    def f(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    hdr = (
        f"{'experiment':<14} {'model':<5} {'epochs':>6} {'best':>4} {'wall s':>7} {'img/s':>6} "
        f"{'val -ELBO':>10} {'n test':>6} {'test MSE':>9} {'SSIM':>6} {'held-out MSE':>12} {'SSIM':>6}"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(
            f"{r['experiment']:<14} {r['model']:<5} {r['epochs']:>6} {r['best']:>4} {r['wall']:>7.1f} "
            f"{f(r['img_s'], '.0f'):>6} {f(r['val_nelbo'], '.1f'):>10} {r['n_test']:>6} "
            f"{r['test_mse']:>9.5f} {r['test_ssim']:>6.3f} {f(r['held_mse'], '.5f'):>12} "
            f"{f(r['held_ssim'], '.3f'):>6}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few images, 1-2 epochs: a smoke test")
    ap.add_argument("--out", type=Path, default=Path("/tmp/vaedx_real"))
    ap.add_argument("--data", type=Path, default=None, help="data folder (default: VAEDX_DATA_DIR)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--pneu-epochs", type=int, default=None, help=f"default {PNEU['epochs']}")
    ap.add_argument("--lgg-epochs", type=int, default=None, help=f"default {LGG['epochs']}")
    ap.add_argument("--lgg-size", type=int, default=128)
    ap.add_argument("--only", nargs="*", default=None, help="experiment names to run (default: all)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    stores = prepare_stores(args.out, args.data, args.lgg_size)
    print(f"stores ready in {time.perf_counter() - t0:.1f} s", flush=True)
    rows = []
    for exp in experiments(args.quick, args.pneu_epochs, args.lgg_epochs):
        if exp.store not in stores or (args.only and exp.name not in args.only):
            continue
        for kind in ("vae", "ae", "pca"):
            rows.append(run_one(exp, kind, stores[exp.store], args.out, args.threads))
            r = rows[-1]
            print(f"  {exp.name} {kind}: {r['wall']:.1f} s, test MSE {r['test_mse']:.5f}", flush=True)
    print()
    print_table(rows)
    print(
        f"\ntotal {time.perf_counter() - t0:.0f} s; torch {torch.__version__}, "
        f"{args.threads or torch.get_num_threads()} thread(s); shared machine"
    )


if __name__ == "__main__":
    main()
