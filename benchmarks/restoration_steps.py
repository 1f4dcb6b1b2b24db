"""Restoration's step count on PneumoniaMNIST: images/s and image-level figures at each step count, paired.

Why: the restoration scorer's default number of Adam steps sets its speed, and fewer steps only count if
the figures hold. ``restoration_speed.py`` answers that for LGG FLAIR slices (pixel level); this script
answers it for a 28-px chest X-ray set (image level), with a VAE trained as a new user trains one
(``vaedx train --label-filter normal``, every other setting the default) and the restoration scorer's
other options at their defaults. Each step count scores the same ``--split`` images with one
``vaedx detect --scorer restoration`` call (timed, calibration on val included; the 1-minute load average
is printed beside it); the
image AUROC/AUPRC of each and the paired bootstrap against the first step count (same images resampled
for both, 1,000 resamples) are printed and written to ``--out/results.json``. Nothing is asserted.

    .venv/bin/python benchmarks/restoration_steps.py --steps 100,50 --threads 1 --out /tmp/vaedx_rsteps
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="100,50", help="comma list; the first is the one compared against")
    ap.add_argument("--split", choices=("val", "test"), default="test")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, default=None, help="folder holding pneumoniamnist/")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default: the defaults')")
    ap.add_argument("--out", type=Path, default=Path("/tmp/vaedx_restoration_steps"))
    a = ap.parse_args(argv)
    steps = [int(s) for s in a.steps.split(",")]
    torch.set_num_threads(a.threads)

    import vaedx
    from vaedx.anomaly.detect import detect
    from vaedx.atomic import atomic_write_json
    from vaedx.data.locate import find_data_file
    from vaedx.data.prepare import prepare, prepare_config
    from vaedx.evaluate.anomaly import evaluate_anomaly, table_rows
    from vaedx.evaluate.compare import Side, compare_scorers, comparison_row

    out: Path = a.out
    store, run = out / "store", out / "vae_defaults"
    if not (store / "store.json").is_file():
        prepare(find_data_file("pneumoniamnist/pneumoniamnist.npz", a.data), store, prepare_config())
    t0 = time.perf_counter()
    if not (run / "best").exists():
        extra = {"epochs": a.epochs} if a.epochs else {}
        vaedx.train(store, run, label_filter=["normal"], num_threads=a.threads, seed=0, **extra)
    train_s = time.perf_counter() - t0
    result: dict = {"settings": vars(a) | {"out": str(a.out), "data": str(a.data)}, "train_seconds": train_s}
    rows, folders = [], {}
    for n in steps:
        folder = out / f"det_{a.split}_steps{n}"
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        detect(
            run, folder, store=store, split=a.split, scorers=["restoration"],
            options={"restoration": {"steps": n}}, quiet=True, max_overlays=0,
        )  # fmt: skip
        sec = time.perf_counter() - t0
        res = evaluate_anomaly(folder, store, n_boot=1000)
        row = table_rows(res, {"steps": n})[0]
        n_img = res.get("n_images") or json.loads((folder / "detect.json").read_text()).get("n_images")
        row.update({"seconds": round(sec, 1), "load": round(load, 2), "n_images": n_img})
        rows.append(row)
        folders[n] = folder
        shown = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("steps", "scorer"))
        print(f"steps {n}: {shown}", flush=True)
    paired = [
        comparison_row(
            compare_scorers(
                Side(folders[n], "restoration", f"steps {n}"),
                Side(folders[steps[0]], "restoration", f"steps {steps[0]}"),
                store,
            )
        )
        for n in steps[1:]
    ]
    for p in paired:
        print(p, flush=True)
    result.update({"rows": rows, "paired": paired})
    atomic_write_json(out / "results.json", result)
    return result


if __name__ == "__main__":
    main()
