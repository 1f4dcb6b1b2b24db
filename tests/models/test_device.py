"""The one place ``--device`` is resolved and CUDA inference is autocast (vaedx.models.device), and
benchmarks/gpu_check.sh, which checks every stage on a GPU against the CPU (here: its --cpu-only dry run)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from vaedx.errors import ConfigError
from vaedx.models.device import amp_enabled, inference_autocast, model_device, resolve_device


def test_auto_and_none_follow_cuda_availability() -> None:
    want = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("auto") == want
    assert resolve_device(None) == want
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "mps0", ""])
def test_unknown_device_text_is_one_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="--device must be cpu, cuda, cuda:N or auto"):
        resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_says_so() -> None:
    for spec in ("cuda", "cuda:1", torch.device("cuda:0")):
        with pytest.raises(ConfigError, match="CUDA is not available on this machine; use --device cpu"):
            resolve_device(spec)


def test_amp_only_on_cuda_and_env_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAEDX_AMP", raising=False)
    assert not amp_enabled("cpu")
    assert not amp_enabled(torch.device("cpu"))
    assert amp_enabled("cuda:0")
    assert amp_enabled(torch.device("cuda", 0))
    for off in ("0", "off", "False", " no "):
        monkeypatch.setenv("VAEDX_AMP", off)
        assert not amp_enabled("cuda")
    monkeypatch.setenv("VAEDX_AMP", "1")
    assert amp_enabled("cuda")


def test_cpu_inference_is_untouched_float32() -> None:
    """The CPU path must stay bit-identical: no autocast, not even CPU bfloat16 autocast."""
    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(1, 4, 3).eval()
    x = torch.rand(2, 1, 12, 12, generator=g)
    with torch.no_grad():
        plain = conv(x)
        with inference_autocast("cpu"):
            assert not torch.is_autocast_enabled("cpu")
            inside = conv(x)
    assert inside.dtype == torch.float32
    assert torch.equal(inside, plain)


def test_model_device_of_torch_and_other_models() -> None:
    assert model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")  # no parameters
    assert model_device(object()) == torch.device("cpu")


@pytest.mark.cuda
def test_cuda_inference_is_autocast_to_half_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAEDX_AMP", raising=False)
    conv = torch.nn.Conv2d(1, 4, 3).cuda().eval()
    x = torch.rand(2, 1, 12, 12, device="cuda")
    with torch.no_grad(), inference_autocast(resolve_device("auto")):
        y = conv(x)
    assert y.dtype in (torch.bfloat16, torch.float16)
    monkeypatch.setenv("VAEDX_AMP", "0")
    with torch.no_grad(), inference_autocast("cuda"):
        assert conv(x).dtype == torch.float32


SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"


def _gpu_check(*args: str, data: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VAEDX_DATA_DIR": str(data), "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}
    cmd = ["bash", str(SCRIPT), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)


def test_gpu_check_script_parses_and_refuses_bad_input(tmp_path: Path) -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    bad = _gpu_check("--frobnicate", data=tmp_path, tmp=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip() == "FAIL: unknown argument --frobnicate (see --help)"
    missing = _gpu_check("--cpu-only", data=tmp_path / "nowhere", tmp=tmp_path)
    assert missing.returncode == 1
    assert "FAIL: PneumoniaMNIST not found at" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.slow
@pytest.mark.realdata
def test_gpu_check_dry_run_runs_every_stage_on_the_cpu(data_dir: Path, tmp_path: Path) -> None:
    """--cpu-only: the same stages as on a GPU, tiny; both legs on the CPU must agree exactly."""
    r = _gpu_check("--cpu-only", data=data_dir, tmp=tmp_path)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    legs = ("dev", "cpu")
    stages = ["prepare"] + [f"{s}_{leg}" for s in ("train", "detect", "finetune", "serve") for leg in legs]
    for stage in stages:
        assert f"ok  {stage} (" in r.stdout, stage
    assert "pytest -m cuda\nskipped (--cpu-only)" in r.stdout
    for scorer in ("residual", "restoration"):
        assert f"detect {scorer:<12} max |diff| 0 (0.00% of the score range)" in r.stdout
    assert "(0.00% apart)" in r.stdout  # the served score
    assert r.stdout.rstrip().endswith("gpu_check: all stages passed (device cpu)")
    # the work folder and the servers' upload folders are removed (torch may leave its own caches)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("vaedx-")]
