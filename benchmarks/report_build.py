"""Time ``vaedx report`` on a demo-sized pipeline folder (PneumoniaMNIST 28x28), section by section.

Why: the report must build in well under a minute for the demo pipeline, and the expensive parts (bootstrap
bands: one sklearn curve per resample; t-SNE; matplotlib drawing) should be visible when it does not.

Either give ``--pipeline DIR`` (e.g. the output of ``vaedx demo``), or the script builds a small one under
``--out`` with the project's API: PneumoniaMNIST store, VAE (ssim/residual/elbo) and PCA (ssim/residual)
trained on normal images, detect + evaluate anomaly on the 624 test images, a logreg diagnosis on the VAE.

Run: ``.venv/bin/python benchmarks/report_build.py [--pipeline DIR] [--out /tmp/vaedx_report_bench]
[--threads 1] [--n-boot 200]``. The report itself is written to ``--out/report.html``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from vaedx.data.locate import find_data_file


def build_pipeline(out: Path, threads: int) -> Path:
    import vaedx
    from vaedx.anomaly.detect import detect
    from vaedx.atomic import atomic_write_json
    from vaedx.cli import main
    from vaedx.data.prepare import prepare, prepare_config
    from vaedx.diagnose.fit import fit_diagnosis
    from vaedx.evaluate.anomaly import evaluate_anomaly, to_json

    npz = find_data_file("pneumoniamnist/pneumoniamnist.npz")
    if npz is None:
        raise SystemExit("PneumoniaMNIST not found (set VAEDX_DATA_DIR)")
    store = out / "store"
    if not (store / "store.json").is_file():
        prepare(npz, store, prepare_config())
    opts = {"epochs": 3, "max_images": 600, "label_filter": ["normal"], "num_threads": threads}
    scorers = {"vae": ("ssim", "residual", "elbo"), "pca": ("ssim", "residual")}
    for kind, extra in (("vae", {"widths": [32, 64], "latent_dim": 16}), ("pca", {"latent_dim": 16})):
        run = out / "models" / kind
        if not (run / "best").is_dir():
            vaedx.train(store, run, kind=kind, overwrite=True, **opts, **extra)
        det = out / "detect" / kind
        if not (det / "evaluation.json").is_file():
            detect(run, det, store=store, scorers=scorers[kind], max_overlays=0, quiet=True)
            atomic_write_json(det / "evaluation.json", to_json(evaluate_anomaly(det, store, n_boot=200)))
    diag = out / "diagnosis"
    if not (diag / "evaluation_test.json").is_file():
        fit_diagnosis(out / "models" / "vae", store, out=diag, candidates=("logreg",))
        main(["evaluate", "diagnosis", "--model", str(diag), "--truth", str(store), "--n-boot", "200"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", type=Path, default=None, help="existing pipeline folder (not modified)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/vaedx_report_bench"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-boot", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from threadpoolctl import threadpool_limits

    from vaedx.report import build_report

    with threadpool_limits(limits=args.threads):
        pipe = args.pipeline or build_pipeline(args.out, args.threads)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        html = build_report(pipe, args.out / "report.html", n_boot=args.n_boot, timings=timings)
        total = time.perf_counter() - t0
    figures = sorted((html.parent / f"{html.stem}_figures").glob("*.png"))
    print(f"pipeline {pipe}: report {html} ({html.stat().st_size / 1e6:.1f} MB, {len(figures)} figures)")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"threads {args.threads}, n_boot {args.n_boot}, load average {load} on {os.cpu_count()} cores")
    print("| section | seconds |\n|---|---|")
    for name, sec in timings.items():
        print(f"| {name} | {sec:.2f} |")
    print(f"| **total build_report** | **{total:.2f}** |")


if __name__ == "__main__":
    main()
