"""Two CPU processes under torchrun (gloo): the same command trains with DDP and rank 0 writes the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from train_helpers import cli_module, make_store
from vaedx.runs.loaded import load_model


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_two_process_ddp_run_writes_a_loadable_checkpoint(tmp_path):
    store, out = tmp_path / "store", tmp_path / "run"
    make_store(store, n=40)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", cli_module(), "train", "--store", str(store), "--out", str(out), "--epochs", "2",
           "--widths", "8,16", "--latent-dim", "4", "--batch-size", "8", "--threads", "1",
           "-q"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((out / "config.json").read_text())
    assert meta["data"]["world_size"] == 2 and meta["data"]["n_train"] == 30
    state = json.loads((out / "last" / "state.json").read_text())["run"]
    # 30 images, 15 per rank, batch 8 -> 2 steps per epoch on each rank
    assert state["epoch"] == 2 and state["global_step"] == 4
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3  # header + one row per epoch, written once (rank 0)
    loaded = load_model(out)
    x = torch.rand(2, 1, 16, 16)
    assert loaded.model.reconstruct(x).shape == x.shape
    assert not any(p.name.startswith(".") for p in out.iterdir())

