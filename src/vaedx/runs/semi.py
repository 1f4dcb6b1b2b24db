"""Saved networks that are not training runs (the M2 semi-supervised VAE): weights in safetensors plus one
JSON file with config, preprocessing and the weights' checksum, written and read here beside the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from vaedx.data.preprocess import PreprocessConfig
from vaedx.errors import InputError
from vaedx.models.semi import SemiConfig, SemiVAE
from vaedx.runs import checkpoint as ck

SEMI_FORMAT = "vaedx-semi-1"
SEMI_JSON, SEMI_WEIGHTS = "semi.json", "model.safetensors"


@dataclass
class LoadedSemi:
    """A saved M2 model, with what is needed to feed it (same fields the diagnosis code reads)."""

    model: SemiVAE
    config: SemiConfig
    preprocess: PreprocessConfig
    path: Path
    meta: dict[str, Any]

    kind = "m2"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.config.model.require_shape()

    @property
    def label_names(self) -> list[str]:
        return self.config.label_names


def save_semi(
    model: SemiVAE, config: SemiConfig, preprocess: PreprocessConfig, directory: str | Path, **meta: Any
) -> Path:
    """``model.safetensors`` (weights) + ``semi.json`` (config, preprocessing, checksum, ``meta``)."""
    doc = {"semi": config.model_dump(mode="json"), "preprocess": preprocess.model_dump(mode="json"), **meta}
    return ck.save_net(Path(directory), model, SEMI_FORMAT, (SEMI_JSON, SEMI_WEIGHTS), doc)


def load_semi(directory: str | Path, device: str | torch.device = "cpu") -> LoadedSemi:
    d = Path(directory)
    doc = ck.read_net_json(d / SEMI_JSON, SEMI_FORMAT, "an M2 model")
    try:
        cfg = SemiConfig.model_validate(doc["semi"])
        pre = PreprocessConfig.model_validate(doc["preprocess"])
    except (KeyError, ValidationError) as e:
        raise InputError(f"invalid M2 config ({str(e).splitlines()[0]})", d / SEMI_JSON) from None
    model = SemiVAE(cfg.model, len(cfg.classes), cfg.classifier_hidden)
    ck.load_weights(model, d / SEMI_WEIGHTS, doc.get("sha256"))
    meta = {k: v for k, v in doc.items() if k not in ("format", "semi", "preprocess")}
    return LoadedSemi(model.to(device).eval(), cfg, pre, d, meta)
