"""The one place ``--device`` is resolved and CUDA inference is autocast (vaedx.models.device)."""

from __future__ import annotations

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
