"""RunFolder: one checkpoint writer whose folders load_model reads; the layout named once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vaedx.errors import InputError
from vaedx.runs import checkpoint as ck
from vaedx.runs.folder import BEST, LAST, RunFolder


def test_of_finds_the_run_folder_of_a_checkpoint(tmp_path: Path) -> None:
    for p in (tmp_path, tmp_path / BEST, tmp_path / LAST):
        assert RunFolder.of(p).root == tmp_path
    run = RunFolder(tmp_path)
    assert run.thresholds == tmp_path / "thresholds.json" and run.metrics == tmp_path / "metrics.csv"
    assert (run.best, run.last) == (tmp_path / "best", tmp_path / "last")
    assert run.finetune == tmp_path / "finetune.json"


def test_write_checkpoint_records_format_and_checksums_and_copies(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    config = {"format": ck.RUN_FORMAT, "format_version": ck.RUN_FORMAT_VERSION, "train": {}}

    def weights(tmp: Path) -> None:
        ck.save_tensors(tmp / ck.MODEL_FILE, {"w": torch.ones(2)})
        ck.save_tensors(tmp / ck.OPTIM_FILE, {"m": torch.zeros(1)})

    path = run.write_checkpoint(LAST, weights, config, {"run": {"epoch": 3}}, (ck.MODEL_FILE, ck.OPTIM_FILE))
    state = json.loads((path / ck.STATE_FILE).read_text())
    assert state["format"] == "vaedx-state" and state["format_version"] == ck.RUN_FORMAT_VERSION
    assert state["run"] == {"epoch": 3}
    assert state["sha256"] == {f: ck.sha256(path / f) for f in (ck.MODEL_FILE, ck.OPTIM_FILE)}
    assert run.checkpoint() == run.last  # no best/ yet
    run.copy_checkpoint(LAST, BEST)
    assert run.checkpoint() == run.best and run.read_config() == config
    assert run.read_state(LAST)["run"]["epoch"] == 3
    with pytest.raises(InputError, match="no checkpoint found"):
        RunFolder(tmp_path).checkpoint()


def test_a_run_trained_by_the_loop_and_by_pca_loads(tiny_store: Path, tmp_path: Path) -> None:
    import vaedx
    from vaedx.runs.loaded import load_model

    fast = {"widths": [8], "latent_dim": 2, "batch_size": 16, "num_threads": 1}
    for kind in ("vae", "pca"):
        vaedx.train(tiny_store, tmp_path / kind, epochs=1, kind=kind, **fast)
        run = RunFolder(tmp_path / kind)
        assert run.metrics.is_file() and run.read_state()["sha256"][ck.MODEL_FILE]
        assert load_model(run.root).kind == kind
