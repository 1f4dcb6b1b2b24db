"""Scaling out on one machine: torchrun training and sharded detect with 2 processes, and a 100k-image store.

Why: ``vaedx train`` and ``vaedx detect`` are torchrun-aware (docs/scaling.md), and the same commands run
across nodes with ``torchrun --nnodes``. Whether two processes help depends on the machine: on a CPU two
processes each with one thread compete with one process using two threads for the same cores. This script
measures it here, with the real CLI commands a user types, rather than asserting it.

Method.
1. Training: the default VAE on the PneumoniaMNIST training images (28 px, a store written by ``vaedx data
   prepare``), three layouts: 1 process x 1 thread, 1 process x 2 threads, ``torchrun --nproc_per_node=2``
   x 1 thread each (DDP over gloo, each rank trains half of every epoch). The steady epoch time is the
   median of ``metrics.csv``'s per-epoch seconds after the first epoch, so process start-up and the
   process-group join are left out. Layouts are run in alternation for ``--rounds`` rounds, so slow phases of
   a shared machine hit each of them; medians over rounds are reported, with the load average at each run.
2. Detect: the trained model scores every row of the store (``--quick``: the test split) with the residual
   scorer (no overlays), one process x 2 threads vs torchrun 2 x 1 thread (each rank a contiguous shard,
   rank 0 merges); images/s from the command's wall time (start-up included, as a user waits for it).
3. A store of ``--big`` images (default 100,000 real X-rays replicated, 28 px, 314 MB float32) trained for 2
   epochs by the engine in its own process: seconds per epoch and peak RSS (VmHWM), from
   ``benchmarks/train_speed.py --child-scaling``. The rows are read from the memory-mapped store per batch,
   so the peak stays near that of a small store.

Run: ``.venv/bin/python benchmarks/scale_out.py [--quick] [--rounds 2] [--big 100000] [--work DIR]``; the
figures go to ``--work/scale_out.jsonl`` as they are measured. ``--quick`` is a CI-sized smoke run (a
few hundred images, one round, a 2,000-image "big" store).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def load() -> float:
    """The 1-minute load average: a shared machine's figures mean little without it."""
    return os.getloadavg()[0]


def vaedx_cmd(procs: int) -> list[str]:
    """The CLI entry, under torchrun when ``procs`` > 1 (the same command a user runs across nodes)."""
    if procs == 1:
        return [str(BIN / "vaedx")]
    return [str(BIN / "torchrun"), "--standalone", f"--nproc_per_node={procs}", "-m", "vaedx.cli"]


def run(cmd: list[str], threads: int) -> float:
    """Runs ``cmd`` with ``threads`` OpenMP threads per process; returns its wall time in seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"command failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - t0


def prepare_store(work: Path) -> Path:
    """The PneumoniaMNIST store (28 px), written once by ``vaedx data prepare``."""
    from vaedx.data.locate import find_data_file

    npz = find_data_file("pneumoniamnist/pneumoniamnist.npz", None)
    if npz is None:
        raise SystemExit("pneumoniamnist/pneumoniamnist.npz not found: set VAEDX_DATA_DIR")
    store = work / "store"
    if not (store / "store.json").exists():
        cmd = [str(BIN / "vaedx"), "data", "prepare", str(npz), "--out", str(store), "--quiet", "--overwrite"]
        run(cmd, 2)
    return store


def train_epochs(store: Path, out: Path, procs: int, threads: int, epochs: int, cap: int | None) -> dict:
    """One training run of the default VAE; its steady and first epoch seconds from metrics.csv."""
    cmd = vaedx_cmd(procs) + ["train", "--store", str(store), "--out", str(out), "--epochs", str(epochs),
                              "--threads", str(threads), "--quiet", "--overwrite"]  # fmt: skip
    if cap:
        cmd += ["--max-images", str(cap)]
    before = load()
    wall = run(cmd, threads)
    with open(out / "metrics.csv") as f:
        secs = [float(r["seconds"]) for r in csv.DictReader(f)]
    steady = statistics.median(secs[1:]) if len(secs) > 1 else secs[0]
    return {"wall_s": wall, "first_epoch_s": secs[0], "steady_epoch_s": steady, "load": before}


def detect_seconds(model: Path, store: Path, out: Path, procs: int, threads: int, split: str) -> dict:
    """Wall seconds of ``vaedx detect`` over a split of the store, residual scorer, no overlays."""
    cmd = vaedx_cmd(procs) + ["detect", "--model", str(model), "--store", str(store), "--split", split,
                              "--scorer", "residual", "--max-overlays", "0", "--out", str(out),
                              "--threads", str(threads), "--overwrite", "--quiet"]  # fmt: skip
    before = load()
    return {"wall_s": run(cmd, threads), "load": before}


def big_store(n: int, threads: int, work: Path) -> dict[str, Any]:
    """Epoch seconds and peak RSS of the engine on an ``n``-image store, in its own process."""
    cmd = [sys.executable, str(HERE / "train_speed.py"), "--child-scaling", str(n), "--epochs", "2",
           "--threads", str(threads), "--work", str(work)]  # fmt: skip
    before = load()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"big-store run failed:\n{done.stderr[-2000:]}")
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    return {**doc, "load": before}


def record(path: Path, row: dict[str, Any]) -> None:
    """Appends one measurement as a JSON line, so a long run leaves its figures as it goes."""
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), file=sys.stderr, flush=True)


LAYOUTS = [(1, 1), (1, 2), (2, 1)]  # (processes, threads per process)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few hundred images, one round: a smoke run")
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds of the layouts (default 2)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per training run (default 3)")
    ap.add_argument("--big", type=int, default=None, help="images in the large store (default 100000)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/vaedx_scale_out"))
    args = ap.parse_args()
    if shutil.which("torchrun", path=str(BIN)) is None:
        raise SystemExit(f"torchrun not found beside {sys.executable}")
    q = args.quick
    rounds, epochs = args.rounds or (1 if q else 2), args.epochs or (2 if q else 3)
    big, max_images = args.big or (2000 if q else 100_000), (256 if q else None)
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "scale_out.jsonl"
    log.unlink(missing_ok=True)
    t0 = time.perf_counter()
    store = prepare_store(args.work)
    train: dict[tuple[int, int], list[dict]] = {}
    for r in range(rounds):
        for procs, threads in LAYOUTS:
            out = args.work / f"train_{procs}x{threads}"
            res = train_epochs(store, out, procs, threads, epochs, max_images)
            train.setdefault((procs, threads), []).append(res)
            record(log, {"part": "train", "round": r + 1, "procs": procs, "threads": threads, **res})
    model = args.work / "train_1x2"
    det: dict[int, list[dict]] = {}
    for r in range(rounds):
        for procs, threads in ((1, 2), (2, 1)):
            out = args.work / f"detect_{procs}x{threads}"
            res = detect_seconds(model, store, out, procs, threads, "test" if q else "all")
            det.setdefault(procs, []).append(res)
            record(log, {"part": "detect", "round": r + 1, "procs": procs, "threads": threads, **res})
    n_rows = sum(1 for _ in open(args.work / "detect_1x2" / "scores.csv")) - 1
    scale = big_store(big, 1, args.work)
    record(log, {"part": "big_store", **scale})

    print(f"\nTraining, default VAE, PneumoniaMNIST 28 px, {epochs} epochs, medians over {rounds} round(s)")
    print(f"{'layout':<22} {'steady epoch s':>15} {'first epoch s':>14} {'speed-up vs 1x1':>16} {'load':>6}")
    base = statistics.median(x["steady_epoch_s"] for x in train[(1, 1)])
    for (procs, threads), rows in train.items():
        s = statistics.median(x["steady_epoch_s"] for x in rows)
        first = statistics.median(x["first_epoch_s"] for x in rows)
        name = f"{procs} proc x {threads} thread" + ("s" if threads > 1 else "")
        ld = statistics.mean(x["load"] for x in rows)
        print(f"{name:<22} {s:>15.2f} {first:>14.2f} {base / s:>16.2f} {ld:>6.1f}")
    print(f"\nDetect (residual), {'the test split' if q else 'every row'} of the store ({n_rows} images), "
          "wall time incl. start-up")  # fmt: skip
    print(f"{'layout':<22} {'wall s':>8} {'img/s':>8} {'speed-up vs 1x2':>16} {'load':>6}")
    one = statistics.median(x["wall_s"] for x in det[1])
    for procs, rows in det.items():
        w = statistics.median(x["wall_s"] for x in rows)
        name = "1 proc x 2 threads" if procs == 1 else "torchrun 2 x 1 thread"
        ld = statistics.mean(x["load"] for x in rows)
        print(f"{name:<22} {w:>8.2f} {n_rows / w:>8.0f} {one / w:>16.2f} {ld:>6.1f}")
    later = statistics.median(scale["epoch_s"][1:]) if len(scale["epoch_s"]) > 1 else scale["epoch_s"][0]
    print(f"\nStore of {big} images (28 px, {big * 28 * 28 * 4 / 1e6:.0f} MB float32), engine, 1 thread")
    print(f"epoch 1 {scale['epoch_s'][0]:.1f} s, later epochs {later:.1f} s ({big / later:.0f} img/s); "
          f"RSS before training {scale['before_kib'] / 1024:.0f} MB, peak {scale['peak_kib'] / 1024:.0f} MB; "
          f"load {scale['load']:.1f}")  # fmt: skip
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; figures in {log}")


if __name__ == "__main__":
    main()
