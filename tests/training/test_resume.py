"""A run killed with SIGKILL and resumed ends bit-identical to one that was never interrupted (CPU),
augmented batches included (their random draws are derived from seed and epoch, not from a running stream)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from train_helpers import FAST, cli_module, make_store
from vaedx.training.engine import run_training

EPOCHS = 4
OPTS = {**FAST, "batch_size": 8, "epochs": EPOCHS, "kl_anneal": "linear", "anneal_epochs": 2,
        "scheduler": "cosine", "seed": 3, "augment": True}  # fmt: skip


def _cli_args(store, out) -> list[str]:
    args = [sys.executable, "-m", cli_module(), "train", "--store", str(store), "--out", str(out), "-q"]
    for k, v in OPTS.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            args.append(flag)
            continue
        args += [flag, ",".join(map(str, v)) if isinstance(v, list) else str(v)]
    return args


def _epoch_done(out) -> int:
    try:
        return json.loads((out / "last" / "state.json").read_text())["run"]["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    store = tmp_path / "store"
    make_store(store, n=320)
    ref = run_training(None, {**OPTS, "store": store, "out": tmp_path / "ref"}, quiet=True)

    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli_args(store, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _epoch_done(out) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _epoch_done(out)
    assert 1 <= killed_at < EPOCHS, f"run was not interrupted mid-way (epoch {killed_at})"

    r = subprocess.run([*_cli_args(store, out), "--resume"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert _epoch_done(out) == EPOCHS
    for name in ("model.safetensors", "optimizer.safetensors"):
        a, b = load_file(ref / "last" / name), load_file(out / "last" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    lines = (out / "metrics.csv").read_text().splitlines()
    assert [ln.split(",")[0] for ln in lines[1:]] == ["1", "2", "3", "4"]  # no duplicated epochs
