"""Scoring speed: images/s of every scorer at 28, 64 and 128 px, beside what this CPU can do.

Why: detection, calibration and the service all run ``run_scorers``; restoration (many gradient steps per
image) is the slowest by far. Each figure is printed with the share of the machine's limit it reaches, so a
slow scorer is told apart from a slow machine.

Method. The limit is measured in the same run, with the same threads and dtype: sustained float32 GFLOP/s
of a square matmul (2048) and of a 3x3 convolution (64 -> 64 channels, 64x64, batch 32), best of 5. Each
scorer's cost is its FLOPs per image (``torch.utils.flop_counter.FlopCounterMode`` over one scoring call of
a batch, divided by the batch) and its images/s the median of 3 timed calls on real PneumoniaMNIST X-rays
(resized; replicated when too few), after one warm-up call. The VAE is the default ``ConvVAE`` of each size,
untrained: speed does not depend on the weights. Results stream to stdout and to ``--out`` (JSON lines).

    .venv/bin/python benchmarks/detect_speed.py [--threads 2] [--sizes 28,64,128] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

SCORERS = ("intensity", "residual", "ssim", "elbo", "kl", "grad_elbo", "combi", "restoration")
WIDTHS = {28: [32, 64, 128], 64: [32, 64, 128, 256], 128: [32, 64, 128, 256]}


def machine_limit(reps: int = 5) -> dict[str, float]:
    """Sustained float32 GFLOP/s of a matmul and a 3x3 convolution, best of ``reps``."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    x, w = torch.randn(32, 64, 64, 64), torch.randn(64, 64, 3, 3)
    conv_flops = 2 * 32 * 64 * 64 * 64 * 64 * 9

    def best(fn, flops: float) -> float:
        fn()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return flops / min(times) / 1e9

    with torch.inference_mode():
        return {
            "matmul_gflops": best(lambda: a @ b, 2 * 2048**3),
            "conv3x3_gflops": best(lambda: torch.nn.functional.conv2d(x, w, padding=1), conv_flops),
        }


def images(size: int, n: int) -> np.ndarray:
    """(n, 1, size, size) real chest X-rays in [0, 1] (PneumoniaMNIST, resized), or noise without the data."""
    from vaedx.data.locate import find_data_file

    try:
        path = find_data_file("pneumoniamnist.npz")
        raw = np.load(path)["test_images"][:n].astype(np.float32) / 255.0
    except Exception:
        raw = np.random.default_rng(0).random((n, 28, 28), dtype=np.float32)
    t = torch.from_numpy(raw)[:, None]
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    reps = -(-n // len(t))
    return t.repeat(reps, 1, 1, 1)[:n].numpy()


def flops_per_image(scorer, x: np.ndarray) -> float | None:
    """FLOPs per image of one scoring call; None where the counter cannot follow the scorer (it does not
    support ``torch.autograd.grad``, which the gradient and restoration scorers call)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    try:
        with counter:
            scorer.score(x)
    except RuntimeError:
        return None
    return counter.get_total_flops() / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="28,64,128")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--restoration-steps", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="batch 16, restoration 5 steps, one timed call")
    ap.add_argument("--out", type=Path, default=Path("/tmp/vaedx_detect_speed.jsonl"))
    a = ap.parse_args()
    from vaedx.anomaly.registry import build_scorer
    from vaedx.models import ModelConfig, build_model

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.quick:
        a.batch, a.restoration_steps = 16, 5
    limit = machine_limit()
    peak = max(limit.values())
    print(json.dumps({"threads": a.threads, **{k: round(v, 1) for k, v in limit.items()}}), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in (int(s) for s in a.sizes.split(",")):
        cfg = ModelConfig(in_channels=1, image_size=(size, size), widths=WIDTHS[size], latent_dim=64)
        model = build_model(cfg).eval()
        x = images(size, a.batch)
        for name in SCORERS:
            opts = {"steps": a.restoration_steps} if name == "restoration" else {}
            scorer = build_scorer(name, model, **opts)
            flops = flops_per_image(scorer, x[:4])
            scorer.score(x)  # warm-up
            times = []
            for _ in range(1 if a.quick else 3):
                t0 = time.perf_counter()
                scorer.score(x)
                times.append(time.perf_counter() - t0)
            ips = a.batch / statistics.median(times)
            achieved = None if flops is None else ips * flops / 1e9
            row = {
                "size": size, "scorer": name, "options": opts, "images_per_s": round(ips, 1),
                "gflop_per_image": None if flops is None else round(flops / 1e9, 4),
                "achieved_gflops": None if achieved is None else round(achieved, 1),
                "share_of_limit": None if achieved is None else round(achieved / peak, 3),
            }  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
            with a.out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
    mm, cv = limit["matmul_gflops"], limit["conv3x3_gflops"]
    print(f"\nlimit: matmul {mm:.0f} GFLOP/s, conv3x3 {cv:.0f} GFLOP/s ({a.threads} threads, float32)")
    print("| size | scorer | images/s | GFLOP/image | GFLOP/s | share of limit |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        share = "n/a" if r["share_of_limit"] is None else f"{r['share_of_limit']:.0%}"
        print(f"| {r['size']} | {r['scorer']} | {r['images_per_s']} | {r['gflop_per_image'] or 'n/a'} | "
              f"{r['achieved_gflops'] or 'n/a'} | {share} |")  # fmt: skip


if __name__ == "__main__":
    main()
