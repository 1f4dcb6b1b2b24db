"""Export a trained model to ONNX or TorchScript for inference outside vaedx.

Why a wrapper module: deployment runtimes need one fixed signature, so every model kind is exported as
``x (N, C, H, W) -> (reconstruction, mu, logvar)`` in eval mode, where the reconstruction is decode(mu) -
deterministic, exactly what the anomaly scorers use. The AE and the PCA baseline have no posterior variance;
their ``logvar`` output is all zeros and the sidecar says ``"logvar_meaningful": false``. PCA is exported as
two linear maps (project, reconstruct), so the baseline can be deployed beside the VAE it is compared with.

Every export writes ``FILE`` and ``FILE.json`` (preprocessing, image shape, label names, output names and
the tolerance the export was checked to): a runtime must apply the same preprocessing as training did.

ONNX is the default and the recommended format. TorchScript (``torch.jit``) is deprecated in PyTorch 2.13
and every ``torch.jit`` call warns; the export still works, and says so once with
:class:`TorchScriptDeprecated` (a FutureWarning, so users see it) while torch's own DeprecationWarnings from
the export are silenced. TorchScript files are for trusted use only: load only files you produced yourself.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from vaedx.atomic import atomic_write_text
from vaedx.errors import ConfigError, InputError
from vaedx.models.baselines import PCABaseline
from vaedx.models.device import resolve_device
from vaedx.runs.loaded import LoadedModel, load_model

Format = Literal["onnx", "torchscript"]
OUTPUT_NAMES = ("reconstruction", "mu", "logvar")
# Tolerances the exports are checked to against PyTorch (tests/test_export.py); recorded in the sidecar.
TOLERANCE: dict[str, float] = {"onnx": 1e-4, "torchscript": 1e-5}
OPSET = 18
TORCHSCRIPT_NOTE = (
    "TorchScript is deprecated in PyTorch (torch.jit); the file works, but torch.jit.load warns and may be "
    "removed in a future PyTorch: prefer --format onnx (the default)"
)


class TorchScriptDeprecated(FutureWarning):
    """Issued once per TorchScript export: the format works today but PyTorch is phasing it out."""


class ExportWrapper(nn.Module):
    """x -> (decode(mu), mu, logvar) for a ConvVAE/ConvAE; logvar is zeros for the AE.

    Through ``model(x)`` in eval mode (z is the posterior mean), so a U-Net (kind dae), whose decoder needs
    the encoder's feature maps as well as mu, exports its real reconstruction too.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(x)
        logvar = torch.zeros_like(out.mu) if out.logvar is None else out.logvar
        return out.x_hat, out.mu, logvar


class PCAModule(nn.Module):
    """The PCA baseline as two linear maps, numerically the same as PCABaseline.reconstruct."""

    def __init__(self, pca: PCABaseline):
        super().__init__()
        comp, mean = pca._fitted()
        if pca.image_shape is None:
            raise InputError("PCA baseline has no image shape; refit it")
        self.image_shape = tuple(int(s) for s in pca.image_shape)
        self.register_buffer("components", torch.from_numpy(comp.copy()))
        self.register_buffer("mean", torch.from_numpy(mean.copy()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = (x.flatten(1) - self.mean) @ self.components.T
        rec = (z @ self.components + self.mean).reshape(-1, *self.image_shape)
        return rec, z, torch.zeros_like(z)


def export_module(loaded: LoadedModel, device: str | torch.device = "cpu") -> nn.Module:
    """The module that is exported, in eval mode, on ``device`` (the CPU unless told otherwise)."""
    if isinstance(loaded.model, PCABaseline):
        return PCAModule(loaded.model).to(device).eval()
    return ExportWrapper(loaded.model.to(device)).eval()


def sidecar(loaded: LoadedModel, fmt: Format, file: Path) -> dict[str, Any]:
    """What a runtime needs besides the graph; no paths other than the file's own name."""
    return {
        "format": fmt,
        "file": file.name,
        "vaedx_model_kind": loaded.kind,
        "image_shape": list(loaded.image_shape),
        "input_name": "x",
        "output_names": list(OUTPUT_NAMES),
        "logvar_meaningful": loaded.kind == "vae",
        "dynamic_batch": True,
        "preprocess": loaded.preprocess.model_dump(mode="json"),
        "label_names": list(loaded.label_names),
        "likelihood": loaded.config.model.likelihood,
        "latent_dim": loaded.config.model.latent_dim,
        "tolerance_vs_pytorch": TOLERANCE[fmt],
        "opset": OPSET if fmt == "onnx" else None,
        "note": "Apply `preprocess` exactly as in training. Research use only, not for clinical decisions."
        + (" TorchScript: load only files you trust." if fmt == "torchscript" else ""),
    }


def _export_onnx(module: nn.Module, example: torch.Tensor, out: Path) -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ConfigError("ONNX export needs onnx and onnxscript: pip install 'vaedx[export]'") from e
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        module,
        (example,),
        dynamo=True,
        input_names=["x"],
        output_names=list(OUTPUT_NAMES),
        dynamic_shapes={"x": {0: batch}},
        opset_version=OPSET,
        external_data=False,
        verbose=False,
    )
    program.save(str(out))


def _export_torchscript(module: nn.Module, example: torch.Tensor, out: Path) -> None:
    traced = torch.jit.trace(module, (example,), check_trace=False, strict=False)
    traced.save(str(out))


def export_model(model_dir: str | Path, fmt: Format, out: str | Path, device: str = "cpu") -> Path:
    """Export the model of a run folder (or checkpoint folder) to ``out`` and write ``out.json``.

    ONNX is traced on ``device`` (``auto``: CUDA when present): an ONNX graph carries no device, so the file
    is the same wherever it was traced. TorchScript is always traced on the CPU, because a trace records the
    device of every tensor it creates and a file traced on a GPU would then not run without one.
    """
    if fmt not in TOLERANCE:
        raise ConfigError(f"unknown export format '{fmt}'; choose onnx or torchscript")
    dev = resolve_device(device) if fmt == "onnx" else torch.device("cpu")
    loaded = load_model(model_dir, device=dev)
    module = export_module(loaded, dev)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # batch of 2: tracing with 1 lets some exporters specialise the batch axis to a constant
    example = torch.rand(2, *loaded.image_shape, device=dev)
    tmp = out.with_name(f".{out.name}.tmp")
    # the exporters warn about torchvision ops and the model's Python-side shape check; neither applies
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (_export_onnx if fmt == "onnx" else _export_torchscript)(module, example, tmp)
    finally:
        onnx_log.setLevel(level)
    tmp.replace(out)
    atomic_write_text(Path(f"{out}.json"), json.dumps(sidecar(loaded, fmt, out), indent=2) + "\n")
    if fmt == "torchscript":
        warnings.warn(TORCHSCRIPT_NOTE, TorchScriptDeprecated, stacklevel=2)
    return out
