"""Training throughput of the vaedx engine against a bare PyTorch loop, and how epochs scale with store size.

Why: the engine adds a memmapped batch reader, per-step logging, divergence checks and a checkpoint per epoch
on top of a plain ``for x in batches: loss.backward(); opt.step()``. This script shows what that costs
(target: engine/bare >= 0.95 in images/s) and that RAM stays flat as the store grows (rows are read from
the memmap per batch, never loaded whole).

Run: ``.venv/bin/python benchmarks/train_speed.py [--quick] [--threads 1] [--work /tmp/vaedx_speed]``.

Method. Both sides train the same network, the default (arch auto: conv at 28 px, conv-fast at 128; same
config, Gaussian likelihood, beta=1 so the loss is the negative ELBO), AdamW, batch 64, the same number of
torch threads. The bare loop gets its data already in memory as one float32 tensor; the engine reads from a
store written to ``--work``. A "round" measures the engine, then the bare loop (then its channels_last and
MONAI variants), so slow phases of a shared machine hit all of them; the table reports medians over rounds and
the ratio of medians. The engine's first epoch is excluded (warm-up): its steady epoch time is the interval
between the first batch of consecutive epochs, so it includes validation-free checkpointing and every per-
epoch cost of the real ``run_training`` path.

Scaling: each store size (1k, 5k, 20k images of 28x28) is trained for a few epochs in its own subprocess,
which prints its peak RSS (``resource.getrusage``), so peaks do not leak between configurations.

Architectures (``--sections archs``): the ConvVAE (arch conv), ``--arch conv-fast`` and MONAI's
VarAutoEncoder, same widths and latent size, each trained by the bare loop for the same epochs on the same
real images in the same order: PneumoniaMNIST (train split, scored on its val split) at 28 px and LGG FLAIR
slices at 128 px (24 patients to train, 6 others to score). Epochs are interleaved (epoch e of every network,
then epoch e + 1), so load on the shared machine hits all three. Reported: FLOPs per trained image (forward
and backward, ``torch.utils.flop_counter``), images/s (median epoch after the first), the GFLOP/s that makes
and its share of the machine limit (the better of detect_speed.py's matmul and 3x3-convolution GFLOP/s,
measured before every epoch round), and validation MSE and SSIM of the posterior-mean reconstruction, so
speed is never bought with quality. Memory format follows the engine's rule (channels_last from 96 px).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
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
from vaedx.models.config import DEFAULT_ARCH
from vaedx.models.ssim import ssim
from vaedx.training.engine import run_training
from vaedx.training.loop import use_channels_last

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


def vaedx_model(
    size: int, arch: str = DEFAULT_ARCH
) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    cfg = CONFIGS[size]
    torch.manual_seed(0)
    mc = ModelConfig(
        arch=arch, in_channels=1, image_size=size, widths=cfg["widths"], latent_dim=cfg["latent_dim"]
    )  # type: ignore[arg-type]
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
            params["vaedx"] = n_params(m)
            return bare_epoch_seconds(m, loss, data, epochs, channels_last=cl, engine_numerics=numerics)

        return f

    variants.append(("bare loop, same network", bare(False)))
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
    bare_s = statistics.median(res["bare loop, same network"])
    for name, _ in variants:
        s = statistics.median(res[name])
        p = params.get("MONAI" if "MONAI" in name else "vaedx", 0)
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


# -- part 3: architectures, speed beside quality ----------------------------------------------------------
ARCH_NAMES = ("ConvVAE (conv)", "conv-fast", "MONAI VarAutoEncoder")
LGG_VAL_PATIENTS = 6


def _sibling(name: str) -> Any:
    """A sibling benchmark script as a module, under a private name."""
    key = f"_vaedx_bench_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, Path(__file__).resolve().parent / f"{name}.py")
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[key] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules[key]


def real_split(size: int, quick: bool) -> tuple[torch.Tensor, torch.Tensor, str] | None:
    """(train, val, what) real images at ``size`` px: PneumoniaMNIST's own splits at 28, LGG FLAIR slices
    (middle three fifths of each volume, split by patient) at other sizes; None without the data."""
    if size == 28:
        npz = find_data_file("pneumoniamnist/pneumoniamnist.npz", None)
        if npz is None:
            return None
        raw = np.load(npz)
        train, val = (
            torch.from_numpy(raw[k][:, None].astype(np.float32) / 255.0)
            for k in ("train_images", "val_images")
        )
        if quick:
            train, val = train[:640], val[:128]
        return train, val, f"PneumoniaMNIST {len(train)} train / {len(val)} val"
    from vaedx.data.preprocess import apply
    from vaedx.io.slice_stack import read_lgg_patient

    lgg = find_data_file("brain_lgg", None)
    if lgg is None:
        return None
    cases = sorted(p for p in lgg.iterdir() if p.name.startswith("TCGA"))
    if quick:
        cases = cases[:4] + cases[-2:]
    pre = PreprocessConfig(size=(size, size))

    def slices(case: Path) -> list[np.ndarray]:
        vol, mask = read_lgg_patient(case)
        n = len(mask)
        return [apply(vol.data[z], pre, mask[z])[0] for z in range(n // 5, 4 * n // 5)]

    n_val = 2 if quick else LGG_VAL_PATIENTS
    train = torch.from_numpy(np.stack([s for c in cases[:-n_val] for s in slices(c)])).float()
    val = torch.from_numpy(np.stack([s for c in cases[-n_val:] for s in slices(c)])).float()
    n_train = len(cases) - n_val
    return train, val, f"LGG FLAIR {len(train)} train slices ({n_train} patients) / {len(val)} val ({n_val})"


def _arch_models(size: int) -> dict[str, tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]]:
    out = {ARCH_NAMES[0]: vaedx_model(size, "conv"), ARCH_NAMES[1]: vaedx_model(size, "conv-fast")}
    built = monai_model(size)
    if built is not None:
        out[ARCH_NAMES[2]] = built
    return out


def _posterior_mean(m: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The deterministic reconstruction decode(mu); MONAI's forward would sample even in eval mode."""
    if hasattr(m, "reconstruct"):
        return m.reconstruct(x)  # type: ignore[operator]
    mu, _ = m.encode_forward(x)  # type: ignore[operator]
    return m.decode_forward(mu)  # type: ignore[operator]


def flops_per_image(loss: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    """FLOPs of one training step's forward and backward pass, per image."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        loss(x).backward()
    return counter.get_total_flops() / len(x)


def arch_compare(size: int, epochs: int, threads: int, quick: bool) -> list[dict[str, Any]]:
    """Train every architecture for ``epochs`` interleaved epochs; speed, FLOPs, machine share, quality."""
    torch.set_num_threads(threads)
    split = real_split(size, quick)
    if split is None:
        print(f"  {size}x{size}: real data not found, architecture comparison skipped", file=sys.stderr)
        return []
    train, val, what = split
    cl = use_channels_last(None, False, (size, size))
    fmt = torch.channels_last if cl else torch.contiguous_format
    models = _arch_models(size)
    flops = {k: flops_per_image(loss, train[:BATCH]) for k, (_, loss) in models.items()}
    for m, _ in models.values():
        m.zero_grad(set_to_none=True)
        m.to(memory_format=fmt).train()
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-3) for k, (m, _) in models.items()}
    machine = _sibling("detect_speed").machine_limit
    torch.set_flush_denormal(True)
    torch.use_deterministic_algorithms(True, warn_only=True)
    secs: dict[str, list[float]] = {k: [] for k in models}
    limits, loads = [], []
    for e in range(epochs):
        limits.append(max(machine().values()))
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(e))  # same batches for all
        for name, (_, loss) in models.items():
            torch.manual_seed(1000 + e)  # same reparameterisation noise stream for every network
            t0 = time.perf_counter()
            for i in range(0, len(train), BATCH):
                x = train[order[i : i + BATCH]].contiguous(memory_format=fmt)
                loss_value = loss(x)
                opts[name].zero_grad(set_to_none=True)
                loss_value.backward()
                opts[name].step()
            secs[name].append(time.perf_counter() - t0)
            loads.append(os.getloadavg()[0])
        print(
            f"  {size}x{size} archs epoch {e + 1}/{epochs} done, load {loads[-1]:.2f}",
            file=sys.stderr,
            flush=True,
        )
    torch.set_flush_denormal(False)
    torch.use_deterministic_algorithms(False)
    limit = statistics.median(limits)
    rows = []
    for name, (m, _) in models.items():
        m.eval()
        with torch.no_grad():
            rec = torch.cat(
                [
                    _posterior_mean(m, val[i : i + 256].contiguous(memory_format=fmt))
                    for i in range(0, len(val), 256)
                ]
            ).clamp(0, 1)
        steady = statistics.median(secs[name][1:] if epochs > 1 else secs[name])
        img_s = len(train) / steady
        gflops = flops[name] * img_s / 1e9
        rows.append(
            {"size": size, "arch": name, "data": what, "params": n_params(m), "mflop_img": flops[name] / 1e6,
             "img_s": img_s, "gflops": gflops, "limit_gflops": limit, "share": gflops / limit,
             "val_mse": float((rec - val).pow(2).mean()), "val_ssim": float(ssim(rec, val).mean()),
             "epochs": epochs, "channels_last": cl, "load": statistics.mean(loads)}
        )  # fmt: skip
    base = next((r["img_s"] for r in rows if r["arch"] == ARCH_NAMES[2]), None)
    for r in rows:
        r["vs_monai"] = r["img_s"] / base if base else float("nan")
    return rows


def print_arch_table(rows: list[dict[str, Any]], threads: int) -> None:
    print(
        f"\nArchitectures: bare loop, batch {BATCH}, AdamW 1e-3, {threads} torch thread(s), same images, "
        "same order"
    )
    hdr = (
        f"{'size':>7} {'arch':<22} {'params':>10} {'MFLOP/img':>10} {'img/s':>7} {'vs MONAI':>8} "
        f"{'GFLOP/s':>8} {'limit':>6} {'share':>6} {'val MSE':>8} {'val SSIM':>8} {'load':>5}"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        sz = f"{r['size']}x{r['size']}"
        print(
            f"{sz:>7} {r['arch']:<22} {r['params']:>10,} {r['mflop_img']:>10.1f} {r['img_s']:>7.1f} "
            f"{r['vs_monai']:>8.2f} {r['gflops']:>8.1f} {r['limit_gflops']:>6.1f} {r['share']:>6.1%} "
            f"{r['val_mse']:>8.5f} {r['val_ssim']:>8.4f} {r['load']:>5.2f}"
        )
    for size in sorted({r["size"] for r in rows}):
        r = next(r for r in rows if r["size"] == size)
        print(f"{size}x{size}: {r['data']}, {r['epochs']} epochs, channels_last {r['channels_last']}")
    print(
        "img/s: median epoch after the first; FLOPs: forward + backward of one step; limit: median over "
        "epoch rounds of the better of matmul and 3x3-conv GFLOP/s; load: mean 1-min load average."
    )


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


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 1 round: a smoke test (~1 min)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for every variant (default 1)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None, help="epochs per measurement (first is warm-up)")
    ap.add_argument("--arch-epochs", type=int, default=None, help="training epochs of the archs section")
    ap.add_argument("--arch-sizes", default="28,128", help="image sizes of the archs section (28, 128)")
    ap.add_argument(
        "--sections", default="engine,scaling,archs",
        help="comma-separated: engine (engine vs bare), scaling (store size), archs (conv, conv-fast, MONAI)",
    )  # fmt: skip
    ap.add_argument("--work", type=Path, default=Path("/tmp/vaedx_speed"))
    ap.add_argument("--child-scaling", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.child_scaling is not None:
        scaling_child(args.child_scaling, args.epochs or 3, args.threads, args.work)
        return
    sections = set(args.sections.split(","))
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
    speed: list[dict[str, Any]] = []
    scale: list[dict[str, Any]] = []
    archs: list[dict[str, Any]] = []
    if "engine" in sections:
        speed = compare(28, 640 if q else 2560, epochs, rounds, args.threads, args.work)
        speed += compare(128, 128, epochs, rounds, args.threads, args.work)
    if "scaling" in sections:
        sizes = [1000, 2000] if q else [1000, 5000, 20000]
        scale = scaling(sizes, 2, args.threads, args.work)
    if "archs" in sections:
        arch_epochs = args.arch_epochs or (2 if q else 5)
        for size in _ints(args.arch_sizes):
            archs += arch_compare(size, arch_epochs, args.threads, q)
    if speed or scale:
        print_tables(speed, scale, args.threads)
    if archs:
        print_arch_table(archs, args.threads)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; torch {torch.__version__}; shared machine, 2 cores")


if __name__ == "__main__":
    main()
