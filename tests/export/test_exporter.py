"""Export to ONNX and TorchScript: outputs equal PyTorch's, any batch size, sidecar, PCA and the CLI.

Tolerances: onnxruntime within atol 1e-4 of PyTorch (different kernels and op fusion), TorchScript within
atol 1e-5 (the same kernels, so it is in practice exact).

TorchScript is deprecated in torch 2.13: the export's own warning is asserted once (test_torchscript_export_
warns_once) and filtered elsewhere, as is torch's DeprecationWarning from ``torch.jit.load`` in these tests.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import vaedx
from vaedx.data.preprocess import PreprocessConfig
from vaedx.data.store import StoreWriter
from vaedx.export.exporter import TorchScriptDeprecated, export_model

pytestmark = pytest.mark.filterwarnings(
    "ignore::vaedx.export.exporter.TorchScriptDeprecated",
    "ignore:`torch.jit.load` is deprecated:DeprecationWarning",
)
FAST = {"widths": [8, 16], "latent_dim": 4, "batch_size": 16, "lr": 3e-3, "num_threads": 1}


def _store(out: Path, c: int = 1, h: int = 12, w: int = 20) -> Path:
    """Non-square, not a power of two: exercises the VAE's pad/crop inside the exported graph."""
    rng = np.random.default_rng(0)
    writer = StoreWriter(out, 24, (c, h, w), with_masks=False)
    for i in range(24):
        split = "val" if i % 6 == 5 else "train"
        writer.add(rng.random((c, h, w), dtype=np.float32), label=i % 2, split=split, path=f"{i}.png")
    writer.finish(["normal", "abnormal"], PreprocessConfig(size=(h, w)))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    store = _store(root / "store")
    vaedx.train(store, root / "vae", epochs=1, **FAST)
    vaedx.train(_store(root / "store2", c=2), root / "ae", epochs=1, kind="ae", **FAST)
    vaedx.train(store, root / "pca", kind="pca", latent_dim=4)
    vaedx.train(store, root / "dae", epochs=1, arch="conv-unet", noise_resolution=4, **FAST)
    return {"vae": root / "vae", "ae": root / "ae", "pca": root / "pca", "dae": root / "dae"}


def reference(run: Path, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = vaedx.load_model(run).model
    with torch.no_grad():
        mu, logvar = m.encode(x)
        rec = m.reconstruct(x)  # decode(mu), and for a U-Net (dae) with its skips as well
    mu_t = torch.as_tensor(mu)
    lv = torch.zeros_like(mu_t) if logvar is None else logvar
    return torch.as_tensor(rec).numpy(), mu_t.numpy(), lv.numpy()


@pytest.mark.parametrize("kind", ["vae", "ae", "pca", "dae"])
def test_onnx_matches_pytorch_for_any_batch_size(runs, kind, tmp_path):
    import onnxruntime as ort

    out = export_model(runs[kind], "onnx", tmp_path / "m.onnx")
    shape = json.loads(Path(f"{out}.json").read_text())["image_shape"]
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["reconstruction", "mu", "logvar"]
    for n in (1, 5):  # traced with 2: the batch axis must be dynamic
        x = torch.rand(n, *shape, generator=torch.Generator().manual_seed(n))
        got = sess.run(None, {"x": x.numpy()})
        for a, b in zip(got, reference(runs[kind], x), strict=True):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", ["vae", "pca"])
def test_torchscript_matches_pytorch(runs, kind, tmp_path):
    out = export_model(runs[kind], "torchscript", tmp_path / "m.pt")
    module = torch.jit.load(str(out))
    x = torch.rand(3, 1, 12, 20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = module(x)
    for a, b in zip(got, reference(runs[kind], x), strict=True):
        np.testing.assert_allclose(a.numpy(), b, atol=1e-5, rtol=0)


def test_vae_export_is_deterministic_posterior_mean(runs, tmp_path):
    out = export_model(runs["vae"], "torchscript", tmp_path / "m.pt")
    module = torch.jit.load(str(out))
    x = torch.rand(2, 1, 12, 20)
    a, b = module(x)[0], module(x)[0]
    assert torch.equal(a, b)  # decode(mu), never a sample


def test_sidecar_describes_preprocessing_and_outputs(runs, tmp_path):
    out = export_model(runs["vae"], "onnx", tmp_path / "sub" / "model.onnx")
    meta = json.loads(Path(f"{out}.json").read_text())
    assert meta["file"] == "model.onnx" and meta["format"] == "onnx"
    assert meta["image_shape"] == [1, 12, 20] and meta["label_names"] == ["normal", "abnormal"]
    assert meta["preprocess"]["size"] == [12, 20] and meta["tolerance_vs_pytorch"] == 1e-4
    assert meta["output_names"] == ["reconstruction", "mu", "logvar"] and meta["logvar_meaningful"] is True
    pca_meta = json.loads(
        Path(f"{export_model(runs['pca'], 'torchscript', tmp_path / 'p.pt')}.json").read_text()
    )
    assert pca_meta["logvar_meaningful"] is False and pca_meta["tolerance_vs_pytorch"] == 1e-5
    assert not list(tmp_path.glob("**/.*.tmp"))


def test_torchscript_export_warns_once_and_the_cli_says_so(runs, tmp_path, capsys):
    from vaedx.cli import main

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_model(runs["pca"], "torchscript", tmp_path / "p.pt")
    assert [w.category for w in caught] == [TorchScriptDeprecated], [str(w.message) for w in caught]
    assert "prefer --format onnx" in str(caught[0].message)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        args = ["--model", str(runs["pca"]), "--format", "torchscript", "-o", str(tmp_path / "c.pt")]
        code = main(["export", *args])
    assert code == 0 and not caught  # a plain line instead of a Python warning
    assert capsys.readouterr().err.count("TorchScript is deprecated") == 1


def test_cli_export_defaults_to_onnx_and_errors(runs, tmp_path, capsys):
    from vaedx.cli import main

    target = tmp_path / "cli.onnx"
    assert main(["export", "--model", str(runs["vae"]), "-o", str(target)]) == 0
    assert target.is_file() and json.loads(Path(f"{target}.json").read_text())["format"] == "onnx"
    assert main(["export", "--model", str(runs["vae"]), "--format", "tflite", "-o", str(target)]) == 2
    assert "unknown export format 'tflite'" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    assert main(["export", "--model", str(broken), "-o", str(tmp_path / "x.onnx")]) == 2


@pytest.mark.cuda
def test_onnx_traced_on_cuda_runs_on_the_cpu(runs, tmp_path):
    """Traced on the GPU (device="cuda"), the ONNX file carries no device and matches the CPU model."""
    import onnxruntime as ort

    out = export_model(runs["vae"], "onnx", tmp_path / "m.onnx", device="cuda")
    shape = json.loads(Path(f"{out}.json").read_text())["image_shape"]
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.rand(3, *shape, generator=torch.Generator().manual_seed(0))
    got = sess.run(None, {"x": x.numpy()})
    for a, b in zip(got, reference(runs["vae"], x), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-3, rtol=0)  # traced in float32 (no autocast), TF32 aside


@pytest.mark.cuda
def test_torchscript_is_traced_on_the_cpu_even_when_cuda_is_asked(runs, tmp_path):
    out = export_model(runs["ae"], "torchscript", tmp_path / "m.pt", device="cuda")
    module = torch.jit.load(str(out), map_location="cpu")
    x = torch.rand(2, *json.loads(Path(f"{out}.json").read_text())["image_shape"])
    with torch.no_grad():
        rec, mu, logvar = module(x)
    assert rec.device.type == "cpu" and torch.equal(logvar, torch.zeros_like(mu))
