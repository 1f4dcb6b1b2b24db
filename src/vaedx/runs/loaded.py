"""A trained model read back from its run folder, with the preprocessing and label names it was made with.

Why here: anomaly scoring, diagnosis, serving, export and the report all need a trained model plus the exact
preprocessing it was trained with, without knowing the checkpoint layout. Everything is read with
safetensors/JSON, never unpickled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from vaedx.data.preprocess import PreprocessConfig
from vaedx.errors import InputError
from vaedx.models.baselines import PCABaseline
from vaedx.models.device import resolve_device
from vaedx.models.registry import build_model
from vaedx.runs import checkpoint as ck
from vaedx.runs.config import TrainConfig, describe_validation_error


@dataclass
class LoadedModel:
    """A trained model ready for inference (eval mode) with what is needed to feed it correctly."""

    model: Any  # ConvVAE | ConvAE (torch, eval mode) | PCABaseline
    config: TrainConfig
    preprocess: PreprocessConfig
    label_names: list[str]
    path: Path
    state: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.config.model.kind

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.config.model.require_shape()

    def require_decoder(self) -> None:
        """Anomaly scores need a decoder matching the encoder; a run fine-tuned for diagnosis has none."""
        tuned = self.meta.get("finetune")
        if tuned:
            raise InputError(
                "this run's encoder was fine-tuned for diagnosis, so its decoder no longer matches it; "
                f"score anomalies with the VAE it came from ({tuned.get('source')})",
                self.path,
            )


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a run folder (its best/ checkpoint, else last/) or one checkpoint folder onto ``device``
    (``auto``: CUDA when present)."""
    ckpt = ck.resolve_checkpoint(path)
    cfg_file = ckpt / ck.CONFIG_FILE
    meta = ck.read_run_config(cfg_file)
    try:
        cfg = TrainConfig.model_validate(meta["train"])
        pre = PreprocessConfig.model_validate(meta["preprocess"])
        labels = [str(n) for n in meta["label_names"]]
    except ValidationError as e:
        raise InputError(f"invalid run config ({describe_validation_error(e)})", cfg_file) from None
    except KeyError as e:
        raise InputError(f"run config lacks {e}", cfg_file) from None
    state = ck.read_json(ckpt / ck.STATE_FILE)
    expected = state.get("sha256", {}).get(ck.MODEL_FILE)
    if cfg.model.kind == "pca":
        if expected is not None and ck.sha256(ckpt / ck.MODEL_FILE) != expected:
            raise InputError("checksum mismatch: the file was modified or truncated", ckpt / ck.MODEL_FILE)
        model: Any = PCABaseline.load(ckpt)
    else:
        model = build_model(cfg.model)
        ck.load_weights(model, ckpt / ck.MODEL_FILE, expected)
        model = model.to(resolve_device(device)).eval()
    return LoadedModel(model, cfg, pre, labels, ckpt, state=state.get("run", {}), meta=meta)
