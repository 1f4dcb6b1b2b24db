from __future__ import annotations

import torch

from vaedx.runs import checkpoint as ck


def test_optimizer_and_scheduler_state_round_trip_without_pickle(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
    model(torch.rand(4, 3)).sum().backward()
    opt.step()
    sched.step(1.0)
    tensors: dict[str, torch.Tensor] = {}
    meta = {
        "opt": ck.flatten_state(opt.state_dict(), tensors, "o"),
        "sched": ck.flatten_state(sched.state_dict(), tensors, "s"),
    }
    ck.write_json(tmp_path / "s.json", meta)
    ck.save_tensors(tmp_path / "t.safetensors", tensors)
    meta2 = ck.read_json(tmp_path / "s.json")
    t2 = ck.load_tensors(tmp_path / "t.safetensors")
    opt2 = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.5)
    opt2.load_state_dict(ck.unflatten_state(meta2["opt"], t2))
    sd, sd2 = opt.state_dict(), opt2.state_dict()
    assert sd2["param_groups"] == sd["param_groups"] and isinstance(sd2["param_groups"][0]["betas"], tuple)
    assert all(torch.equal(sd["state"][0][k], sd2["state"][0][k]) for k in sd["state"][0])
    assert ck.unflatten_state(meta2["sched"], t2) == sched.state_dict()


def test_interrupted_folder_swap_is_recovered(tmp_path):
    final = tmp_path / "last"

    def write(d):
        (d / "model.safetensors").write_bytes(b"1")
        (d / "config.json").write_text("{}")

    ck.write_folder(final, write)
    # simulate a kill between "move old away" and "move new in"
    final.rename(tmp_path / ".last.old")
    assert ck.resolve_checkpoint(tmp_path, prefer="last") == final
    assert (final / "model.safetensors").read_bytes() == b"1" and not (tmp_path / ".last.old").exists()
    ck.write_folder(final, lambda d: (d / "model.safetensors").write_bytes(b"2"))
    assert (final / "model.safetensors").read_bytes() == b"2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_half_written_folders_of_killed_writers_are_removed(tmp_path):
    import os
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for pid in (gone.pid, os.getppid()):  # a writer that is gone, one that may still be writing
        (tmp_path / f".best.tmp-{pid}").mkdir()
        (tmp_path / f".best.tmp-{pid}" / "model.safetensors").write_bytes(b"half")
    ck.write_folder(tmp_path / "best", lambda d: (d / "model.safetensors").write_bytes(b"1"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".best.tmp-{os.getppid()}", "best"]


def test_run_configs_saved_before_arch_existed_read_as_conv(tmp_path):
    """Such a run holds ConvVAE weights; reading it with today's default arch would build the wrong layout."""
    import json

    from vaedx.runs.config import build_config, read_yaml

    train = build_config(None, {"store": "s", "out": "o"}).model_dump(mode="json")
    assert train["model"]["arch"] == "auto"
    del train["model"]["arch"]
    path = tmp_path / "config.json"
    doc = {"format": ck.RUN_FORMAT, "format_version": ck.RUN_FORMAT_VERSION, "train": train}
    path.write_text(json.dumps(doc))
    assert ck.read_run_config(path)["train"]["model"]["arch"] == "conv"
    assert read_yaml(path)["model"]["arch"] == "conv"  # --config RUN/config.json reproduces the old run
    train["model"]["arch"] = "conv-fast"
    path.write_text(json.dumps(doc))
    assert ck.read_run_config(path)["train"]["model"]["arch"] == "conv-fast"
