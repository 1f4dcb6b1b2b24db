"""Time `vaedx data prepare` and opening a store + reading a first batch, on both real data sets.

Run: ``.venv/bin/python benchmarks/data_store.py [--data DIR] [--size 128] [--batch 64]``. Prints one line per
data set; nothing is asserted, because wall-clock bounds in tests fail on busy shared machines.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vaedx.data.locate import find_data_file
from vaedx.data.manifest import write_manifest
from vaedx.data.prepare import prepare, prepare_config
from vaedx.data.sources import index_source
from vaedx.data.store import TensorStore


def open_and_first_batch(store_dir: Path, batch: int) -> tuple[float, tuple[int, ...]]:
    t0 = time.perf_counter()
    store = TensorStore.open(store_dir)
    idx = store.select(split="train")[:batch]
    x = torch.from_numpy(np.ascontiguousarray(store.images[idx]))
    return time.perf_counter() - t0, tuple(x.shape)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--size", type=int, default=128, help="LGG output size")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    npz = find_data_file("pneumoniamnist/pneumoniamnist.npz", args.data)
    lgg = find_data_file("brain_lgg/manifest.csv", args.data)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        jobs = []
        if npz:
            jobs.append(("pneumoniamnist (npz, 28x28)", npz, prepare_config()))
        if lgg:
            manifest = write_manifest(index_source(lgg.parent), out / "lgg.csv")
            jobs.append(
                (
                    f"brain_lgg (PNG+masks, FLAIR, {args.size}px)",
                    manifest,
                    prepare_config(size=args.size, channels=[1]),
                )
            )
        if not jobs:
            raise SystemExit("no real data found (set VAEDX_DATA_DIR or pass --data)")
        for i, (name, source, cfg) in enumerate(jobs):
            t0 = time.perf_counter()
            store = prepare(source, out / f"s{i}", cfg)
            prep = time.perf_counter() - t0
            opened, shape = open_and_first_batch(out / f"s{i}", args.batch)
            ms = opened * 1000
            print(f"{name}: {len(store)} images, prepare {prep:.2f} s, open+first batch {shape} {ms:.1f} ms")


if __name__ == "__main__":
    main()
