"""What 2.5-D input (``--context-slices K``) costs per training epoch on the LGG FLAIR volumes.

Why: a slice with its K neighbours above and below is a (2K+1)-channel image, so the store is 2K+1 times
larger and the model's first and last convolutions see 2K+1 channels; the rest of the network is the same.
This script measures what that adds to one epoch of the real training path at 64 and 128 px.

Run: ``.venv/bin/python benchmarks/slice_context.py [--threads 2] [--rounds 2] [--work /tmp/vaedx_ctx]``.

Method. One store per (size, K) is prepared from all 28 patients with ``vaedx.data.prepare`` (FLAIR channel,
volume-scope normalisation, every slice kept so that neighbours are real slices) under ``--work`` and reused
on later runs. Training uses the no-tumour slices of all patients (``label_filter``), no validation split,
the default ConvVAE (widths 32/64/128, latent 32), batch 64, AdamW, ``--threads`` torch threads. An
epoch's time is the interval from the first batch of epoch 1 to the first batch of epoch 2 (the engine's
``on_batch`` hook fires after each step): one epoch's worth of steps and the per-epoch checkpoint, without
the set-up, the model build and the first step's warm-up. The hook then stops the run, so each
measurement costs one epoch. The four
configurations are run in turn within each round, so a busy phase of a shared machine hits all of them;
the table gives the median over rounds, and the 1-minute load average before and after each round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaedx.data.locate import find_data_file
from vaedx.data.manifest import write_manifest
from vaedx.data.prepare import prepare, prepare_config
from vaedx.data.sources import index_source
from vaedx.data.store import TensorStore
from vaedx.training.engine import run_training

EPOCHS = 2
BATCH = 64
LABEL = "no_tumour"


class _Measured(Exception):
    """Raised by the batch hook once the epoch is timed: the rest of the run is not needed."""


def load() -> str:
    """The 1-, 5- and 15-minute load averages, as ``uptime`` prints them."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def lgg_store(work: Path, size: int, k: int) -> tuple[TensorStore, float]:
    """The store of (size, K), prepared once; (store, seconds it took to prepare, 0.0 when reused)."""
    out = work / f"lgg_{size}_k{k}"
    if (out / "store.json").is_file():
        return TensorStore.open(out), 0.0
    lgg = find_data_file("brain_lgg", None)
    if lgg is None:
        raise SystemExit("brain_lgg not found: set VAEDX_DATA_DIR")
    manifest = work / "lgg.csv"
    if not manifest.is_file():
        work.mkdir(parents=True, exist_ok=True)
        write_manifest(index_source(lgg), manifest)
    cfg = prepare_config(size=size, channels=[1], normalize_scope="volume", context_slices=k)
    t0 = time.perf_counter()
    store = prepare(manifest, out, cfg, fractions=(1.0, 0.0, 0.0))
    return store, time.perf_counter() - t0


def epoch_seconds(store: TensorStore, out: Path, threads: int) -> float:
    """Seconds of one epoch of the real run_training path (first batch of epoch 1 to first of epoch 2)."""
    stamps: dict[int, float] = {}

    def hook(epoch: int, rows: np.ndarray) -> None:
        stamps.setdefault(epoch, time.perf_counter())
        if epoch == 2:
            raise _Measured

    try:
        run_training(
        None,
            {
                "store": store.root, "out": out, "epochs": EPOCHS, "batch_size": BATCH, "val_split": None,
                "label_filter": [LABEL], "num_threads": threads, "seed": 0,
            },
            overwrite=True, quiet=True, on_batch=hook,
        )  # fmt: skip
    except _Measured:
        pass
    return stamps[2] - stamps[1]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sizes", default="64,128")
    ap.add_argument("--context", default="0,1", help="values of K to compare")
    ap.add_argument("--work", type=Path, default=Path("/tmp/vaedx_slice_context"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    configs = [(int(s), int(k)) for s in args.sizes.split(",") for k in args.context.split(",")]
    stores, prep = {}, {}
    for size, k in configs:
        stores[size, k], prep[size, k] = lgg_store(args.work, size, k)
    n = {c: int(np.isin(s.labels, [s.label_index(LABEL)]).sum()) for c, s in stores.items()}
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs (shared), load {load()}")
    times: dict[tuple[int, int], list[float]] = {c: [] for c in configs}
    for r in range(args.rounds):
        before = load()
        for c in configs:
            times[c].append(epoch_seconds(stores[c], args.work / "runs" / f"{c[0]}_k{c[1]}", args.threads))
            print(f"  {c[0]} px, K={c[1]}: {times[c][-1]:.2f} s, load {load()}", flush=True)
        print(f"round {r + 1}: load average {before} before, {load()} after", flush=True)
    print()
    print("| size | K | channels | store MB | no-tumour slices | s/epoch | images/s | vs K=0 | runs (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = {}
    for size, k in configs:
        sec = statistics.median(times[size, k])
        base = statistics.median(times.get((size, 0), [sec]))
        mb = stores[size, k].images.nbytes / 1e6
        rows[size, k] = {"seconds": sec, "images_per_s": n[size, k] / sec, "prepare_s": prep[size, k]}
        runs = ", ".join(f"{t:.1f}" for t in times[size, k])
        print(
            f"| {size} | {k} | {2 * k + 1} | {mb:.0f} | {n[size, k]} | {sec:.2f} | "
            f"{n[size, k] / sec:.0f} | {sec / base:.2f}x | {runs} |"
        )
    return {f"{s}_k{k}": v for (s, k), v in rows.items()}


if __name__ == "__main__":
    main()
