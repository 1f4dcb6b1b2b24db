"""Training throughput of the vaedx engine against a bare PyTorch loop, and how epochs scale with store size.

Why: the engine adds a memmapped batch reader, per-step logging, divergence checks and a checkpoint per epoch
on top of a plain ``for x in batches: loss.backward(); opt.step()``. This script shows what that costs
(target: engine/bare >= 0.95 in images/s) and that RAM stays flat as the store grows (rows are read from
the memmap per batch, never loaded whole).

Run: ``.venv/bin/python benchmarks/train_speed.py [--quick] [--threads 1] [--work /tmp/vaedx_speed]``.

Method. Both sides train the same ConvVAE (same config, Gaussian likelihood, beta=1 so the loss is the
negative ELBO), AdamW, batch 64, the same number of torch threads. The bare loop gets its data already in
memory as one float32 tensor; the engine reads from a store written to ``--work``. A "round" measures the
engine, then the bare loop (then its channels_last and MONAI variants), so slow phases of a shared machine
hit all of them; the table reports medians over rounds and the ratio of medians. The engine's first epoch is
excluded (warm-up): its steady epoch time is the interval between the first batch of consecutive epochs,
so it includes validation-free checkpointing and every per-epoch cost of the real ``run_training`` path.

Scaling: each store size (1k, 5k, 20k images of 28x28) is trained for a few epochs in its own subprocess,
which prints its peak RSS (``resource.getrusage``), so peaks do not leak between configurations.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaedx.data.locate import find_data_file
from vaedx.data.preprocess import PreprocessConfig
from vaedx.data.store import StoreWriter
from vaedx.models import ModelConfig, build_model
from vaedx.training.engine import run_training

BATCH = 64
SIGMA = 0.1  # ModelConfig default for the fixed-sigma Gaussian likelihood
# (image size, model options, MONAI strides): 28 cannot be halved three times by MONAI, hence a stride 1
CONFIGS: dict[int, dict[str, Any]] = {
    28: {"widths": [32, 64, 128], "latent_dim": 32, "monai_strides": (2, 2, 1)},
    128: {"widths": [32, 64, 128, 256], "latent_dim": 128, "monai_strides": (2, 2, 2, 2)},
}


# -- data --------------------------------------------------------------------------------------------------
def source_images(size: int, n: int, seed: int = 0) -> np.ndarray:
    """(n, 1, size, size) float32 in [0, 1]: real pneumonia X-rays when available (resized/replicated).

    Real images matter for CPU speed: synthetic noise has no near-zero backgrounds, and denormal floats
    are one of the effects the engine guards against.
    """
    rng = np.random.default_rng(seed)
    npz = find_data_file("pneumoniamnist/pneumoniamnist.npz", None)
    if npz is not None:
        base = torch.from_numpy(np.load(npz)["train_images"][:, None].astype(np.float32) / 255.0)
    else:  # smooth synthetic blobs
        base = torch.rand(512, 1, 7, 7)
    if base.shape[-1] != size:
        base = torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    pick = rng.integers(0, len(base), n)
    return base[torch.from_numpy(pick)].clamp(0, 1).numpy()


def write_store(path: Path, images: np.ndarray) -> Path:
    """A train-only store of ``images`` (written once, reused by every round)."""
    if (path / "store.json").exists():
        return path
    w = StoreWriter(path, len(images), images.shape[1:], with_masks=False)
    for i in range(0, len(images), 4096):
        chunk = images[i : i + 4096]
        labels = np.zeros(len(chunk), dtype=np.int64)
        w.add_batch(chunk, labels=labels, records={"split": ["train"] * len(chunk)})
    w.finish(["normal"], PreprocessConfig())
    return path


# -- the two training paths --------------------------------------------------------------------------------
def engine_epoch_seconds(store: Path, out: Path, size: int, epochs: int, threads: int) -> tuple[float, float]:
    """(steady seconds per epoch, first-epoch seconds) of the real run_training path.

    An epoch's time is the interval between the first batch of consecutive epochs, measured with the
    engine's own on_batch hook, so it covers training, the per-epoch checkpoint and all bookkeeping.
    """
    stamps: dict[int, float] = {}
    t_start = time.perf_counter()

    def hook(epoch: int, rows: np.ndarray) -> None:
        stamps.setdefault(epoch, time.perf_counter())

    cfg = CONFIGS[size]
    run_training(
        None,
        {
            "store": store, "out": out, "epochs": epochs, "batch_size": BATCH, "val_split": None,
            "widths": cfg["widths"], "latent_dim": cfg["latent_dim"], "num_threads": threads, "seed": 0,
        },
        overwrite=True, quiet=True, on_batch=hook,
    )  # fmt: skip
    t_end = time.perf_counter()
    # the hook fires after a step, so stamps[e] - stamps[e-1] is exactly one epoch period
    periods = [stamps[e + 1] - stamps[e] for e in range(2, epochs)]
    periods.append(t_end - stamps[epochs])  # last epoch: minus one batch, plus the final save
    first = stamps[2] - t_start  # includes set-up, model build, first epoch
    return statistics.median(periods), first


def bare_epoch_seconds(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    data: torch.Tensor,
    epochs: int,
    channels_last: bool = False,
    engine_numerics: bool = True,
) -> float:
    """Median seconds per epoch of the plain loop; the first epoch is warm-up and not counted.

    ``engine_numerics`` mirrors the engine's CPU settings (flush denormals, deterministic algorithms) so
    the comparison isolates the engine's overhead; off = plain torch defaults.
    """
    torch.set_flush_denormal(engine_numerics)
    torch.use_deterministic_algorithms(engine_numerics, warn_only=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    times = []
    for e in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(len(data))
        for i in range(0, len(data), BATCH):
            x = data[perm[i : i + BATCH]]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = loss_fn(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if e > 0:
            times.append(time.perf_counter() - t0)
    torch.set_flush_denormal(False)
    torch.use_deterministic_algorithms(False)
    return statistics.median(times)


def vaedx_model(size: int) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    cfg = CONFIGS[size]
    torch.manual_seed(0)
    mc = ModelConfig(in_channels=1, image_size=size, widths=cfg["widths"], latent_dim=cfg["latent_dim"])
    m = build_model(mc)

    def loss(x: torch.Tensor) -> torch.Tensor:
        t = m.elbo_terms(x, m(x))  # type: ignore[operator]
        return (t["recon_nll"] + t["kl"]).mean()

    return m, loss  # type: ignore[return-value]


def monai_model(size: int) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]] | None:
    """MONAI VarAutoEncoder of similar width, with the same Gaussian (sigma 0.1) negative ELBO."""
    try:
        from monai.networks.nets import VarAutoEncoder
    except ImportError:
        return None
    cfg = CONFIGS[size]
    torch.manual_seed(0)
    m = VarAutoEncoder(
        spatial_dims=2, in_shape=(1, size, size), out_channels=1, latent_size=cfg["latent_dim"],
        channels=tuple(cfg["widths"]), strides=cfg["monai_strides"],
    )  # fmt: skip

    def loss(x: torch.Tensor) -> torch.Tensor:
        recon, mu, logvar, _ = m(x)
        nll = (0.5 * ((x - recon) / SIGMA) ** 2 + np.log(SIGMA) + 0.5 * np.log(2 * np.pi)).flatten(1).sum(1)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)
        return (nll + kl).mean()

    return m, loss


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# -- part 1: engine vs bare --------------------------------------------------------------------------------
def compare(size: int, n: int, epochs: int, rounds: int, threads: int, work: Path) -> list[dict[str, Any]]:
    torch.set_num_threads(threads)
    images = source_images(size, n)
    store = write_store(work / f"speed_{size}_{n}", images)
    data = torch.from_numpy(images.copy())
    res: dict[str, list[float]] = {}
    params: dict[str, int] = {}
    variants: list[tuple[str, Callable[[], float]]] = []

    def eng() -> float:
        steady, first = engine_epoch_seconds(store, work / f"run_{size}", size, epochs, threads)
        res.setdefault("engine first epoch", []).append(first)
        return steady

    variants.append(("vaedx engine (run_training)", eng))

    def bare(cl: bool, numerics: bool = True) -> Callable[[], float]:
        def f() -> float:
            m, loss = vaedx_model(size)
            params["ConvVAE"] = n_params(m)
            return bare_epoch_seconds(m, loss, data, epochs, channels_last=cl, engine_numerics=numerics)

        return f

    variants.append(("bare loop, same ConvVAE", bare(False)))
    variants.append(("bare, torch defaults (denormals)", bare(False, numerics=False)))
    if size >= 128:
        variants.append(("bare loop, channels_last", bare(True)))
    if monai_model(size) is not None:

        def mon() -> float:
            built = monai_model(size)
            assert built is not None
            params["MONAI"] = n_params(built[0])
            return bare_epoch_seconds(*built, data, epochs)

        variants.append(("bare loop, MONAI VarAutoEncoder", mon))
    for r in range(rounds):
        for name, fn in variants:  # interleaved: every round runs every variant once
            res.setdefault(name, []).append(fn())
        print(f"  {size}x{size} round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    rows = []
    bare_s = statistics.median(res["bare loop, same ConvVAE"])
    for name, _ in variants:
        s = statistics.median(res[name])
        p = params.get("MONAI" if "MONAI" in name else "ConvVAE", 0)
        rows.append(
            {"size": size, "variant": name, "params": p, "s_per_epoch": s, "img_s": n / s,
             "ratio": bare_s / s, "spread": (n / max(res[name]), n / min(res[name]))}
        )  # fmt: skip
    rows[0]["first_epoch_s"] = statistics.median(res["engine first epoch"])
    return rows


# -- part 2: scaling with store size, one subprocess per size ----------------------------------------------
def scaling_child(n: int, epochs: int, threads: int, work: Path) -> None:
    """Runs in a fresh interpreter: write the store, train, print JSON with epoch times and peak RSS."""
    store = write_store(work / f"scale_{n}", source_images(28, n, seed=n))
    rss_before = vm_kib("VmRSS")
    out = work / f"scale_run_{n}"
    t0 = time.perf_counter()
    run_training(
        None,
        {"store": store, "out": out, "epochs": epochs, "batch_size": BATCH, "val_split": None,
         "widths": CONFIGS[28]["widths"], "latent_dim": 32, "num_threads": threads},
        overwrite=True, quiet=True,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    import csv

    with open(out / "metrics.csv") as f:
        secs = [float(r["seconds"]) for r in csv.DictReader(f)]
    peak = vm_kib("VmHWM")
    print(json.dumps({"n": n, "epoch_s": secs, "wall": wall, "peak_kib": peak, "before_kib": rss_before}))


def vm_kib(field: str) -> int:
    """VmHWM (peak) or VmRSS of this process in KiB.

    Why not getrusage: on Linux ru_maxrss survives fork+exec, so a child would report its parent's peak
    (here ~2 GB from the 128x128 runs); VmHWM belongs to the process's own address space.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: best effort


def scaling(sizes: list[int], epochs: int, threads: int, work: Path) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--child-scaling", str(n), "--epochs", str(epochs)]
        cmd += ["--threads", str(threads), "--work", str(work)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"  scaling n={n} done", file=sys.stderr, flush=True)
    return rows


# -- output ------------------------------------------------------------------------------------------------
def print_tables(speed: list[dict[str, Any]], scale: list[dict[str, Any]], threads: int) -> None:
    print(f"\nTraining throughput, batch {BATCH}, {threads} torch thread(s), medians over interleaved rounds")
    hdr = f"{'size':>7} {'variant':<33} {'params':>9} {'s/epoch':>8} {'img/s':>8} {'vs bare':>8}  img/s range"
    print(hdr)
    print("-" * len(hdr))
    for r in speed:
        lo, hi = r["spread"]
        sz = f"{r['size']}x{r['size']}"
        print(
            f"{sz:>7} {r['variant']:<33} {r['params']:>9,} {r['s_per_epoch']:>8.2f} {r['img_s']:>8.0f} "
            f"{r['ratio']:>8.3f}  {lo:.0f}-{hi:.0f}"
        )
        if "first_epoch_s" in r:
            print(f"{'':>7} {'  engine start-up + first epoch':<33} {'':>9} {r['first_epoch_s']:>8.2f}")
    print("'vs bare' = bare-loop seconds per epoch / this variant's (engine row: the engine/bare ratio).")
    if scale:
        print(f"\nEpoch time and peak RSS vs store size (28x28, engine, {threads} thread(s), 1 process each)")
        hdr = (
            f"{'images':>7} {'store MB':>9} {'epoch 1 s':>10} {'later s':>8} {'img/s':>7} {'s/1k img':>9} "
            f"{'RSS before MB':>14} {'peak RSS MB':>12}"
        )
        print(hdr)
        print("-" * len(hdr))
        for r in scale:
            later = statistics.median(r["epoch_s"][1:]) if len(r["epoch_s"]) > 1 else r["epoch_s"][0]
            print(
                f"{r['n']:>7} {r['n'] * 28 * 28 * 4 / 1e6:>9.1f} {r['epoch_s'][0]:>10.2f} {later:>8.2f} "
                f"{r['n'] / later:>7.0f} {later / r['n'] * 1000:>9.3f} {r['before_kib'] / 1024:>14.0f} "
                f"{r['peak_kib'] / 1024:>12.0f}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 1 round: a smoke test (~1 min)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for every variant (default 1)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None, help="epochs per measurement (first is warm-up)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/vaedx_speed"))
    ap.add_argument("--child-scaling", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.child_scaling is not None:
        scaling_child(args.child_scaling, args.epochs or 3, args.threads, args.work)
        return
    t0 = time.perf_counter()
    try:
        import monai

        print(f"MONAI {monai.__version__}: measuring VarAutoEncoder with the bare loop", file=sys.stderr)
    except ImportError:
        print(
            "MONAI not installed, skipped. To include it without touching torch:\n"
            "  .venv/bin/pip install --no-deps monai   (monai needs only torch and numpy)",
            file=sys.stderr,
        )
    q = args.quick
    rounds = args.rounds or (1 if q else 3)
    epochs = args.epochs or 3
    speed = compare(28, 640 if q else 2560, epochs, rounds, args.threads, args.work)
    speed += compare(128, 128, epochs, rounds, args.threads, args.work)
    sizes = [1000, 2000] if q else [1000, 5000, 20000]
    scale = scaling(sizes, 2, args.threads, args.work)
    print_tables(speed, scale, args.threads)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; torch {torch.__version__}; shared machine, 2 cores")


if __name__ == "__main__":
    main()
