"""`TrainConfig`: every option of a training run, from YAML and/or the command line.

Why one pydantic model: the same object is validated once, drives the loop, and is saved verbatim in each
checkpoint's config.json, so a run can be reproduced or resumed from its output folder alone.
Precedence: defaults < YAML file < command-line options / keyword overrides.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vaedx.data.augment import AugmentConfig, as_augment
from vaedx.errors import ConfigError
from vaedx.models.config import ModelConfig
from vaedx.runs.checkpoint import with_saved_train_arch
from vaedx.runs.presets import PRESETS, DetectDefaults, PresetName, preset_values

MODEL_FIELDS = frozenset(ModelConfig.model_fields)


class TrainConfig(BaseModel):
    """One training run. Unknown keys are errors, so a typo never silently trains with a default."""

    model_config = ConfigDict(extra="forbid")

    store: Path | None = Field(default=None, description="Tensor store folder (vaedx data prepare).")
    out: Path | None = Field(default=None, description="Run folder for checkpoints, metrics and logs.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    # Epochs are chosen on validation by default: up to 200, ended by --patience (10 epochs without a better
    # validation loss; best/ keeps the best one) or by the 10-minute --budget, whichever comes first. On all
    # 28 LGG patients (128 px, 2-fold CV) this gave the defaults' VAE 47-73 epochs instead of 20, with no
    # clear effect on localisation: AUPRC +0.019 [+0.008, +0.031] with the skull left in, Dice -0.025
    # [-0.063, +0.016] skull-stripped (docs/comparison.md).
    epochs: int = Field(
        default=200,
        ge=1,
        description=(
            "Most passes over the training images; --patience and --budget usually end training sooner "
            "(--patience 0 --budget 0: exactly this many)."
        ),
    )
    batch_size: int = Field(default=64, ge=1, description="Images per optimiser step.")
    lr: float = Field(default=1e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW decoupled weight decay.")
    scheduler: Literal["none", "cosine", "plateau"] = Field(
        default="none", description="Learning-rate schedule."
    )
    grad_clip: float | None = Field(default=None, gt=0, description="Max global gradient norm; None = off.")
    beta: float = Field(default=1.0, ge=0, description="Weight of the summed KL against the summed NLL.")
    kl_anneal: Literal["none", "linear", "cyclical"] = Field(
        default="none", description="KL warm-up schedule."
    )
    anneal_epochs: int = Field(default=5, ge=0, description="Epochs of one KL warm-up (or cycle).")
    cycles: int = Field(default=4, ge=1, description="Warm-up cycles of --kl-anneal cyclical.")
    free_bits: float = Field(default=0.0, ge=0, description="Nats per latent dim (Kingma et al. 2016).")
    patience: int = Field(
        default=10, ge=0, description="Stop after this many epochs without a better val loss; 0 = off."
    )
    min_delta: float = Field(default=0.0, ge=0, description="Least val-loss gain that resets patience.")
    budget: float = Field(
        default=10.0,
        ge=0,
        description=(
            "Minutes of training: stop before an epoch that would end past them (its length estimated as "
            "the mean epoch so far, validation included); 0 = no limit. best/ stays the best validation "
            "epoch, and state.json records why training stopped."
        ),
    )
    seed: int = Field(default=0, description="Seed of initialisation, batches and augmentation.")
    train_split: str = Field(default="train", description="Store split to train on.")
    val_split: str | None = Field(default="val", description="Store split for validation; None = none.")
    label_filter: list[str | int] | None = Field(
        default=None, description="Train and validate only on these labels, e.g. ['normal']."
    )
    max_images: int | None = Field(default=None, ge=1, description="Cap per split, for quick runs.")
    augment: AugmentConfig | None = Field(
        default=None, description="Random rotation/zoom/shift of training batches (true = defaults)."
    )
    denoise: Literal["none", "coarse"] = Field(
        default="none",
        description="coarse: train to give back the clean image from one plus low-resolution Gaussian "
        "noise inside the head (Kascenas et al., MIDL 2022).",
    )
    noise_resolution: int = Field(
        default=16, ge=1, description="Coarse noise: side of the grid it is drawn on (paper: 16 for 128 px)."
    )
    noise_std: float = Field(default=0.2, gt=0, description="Coarse noise: std on its grid (paper: 0.2).")
    context_encoding: bool = Field(
        default=False,
        description="ceVAE (Zimmerer et al., MIDL 2019): the model also inpaints the clean image from a copy "
        "with rectangles inside the head masked out; configs saved before this field existed load as off.",
    )
    ce_weight: float = Field(default=1.0, ge=0, description="Context encoding: weight of the inpainting NLL.")
    ce_patches: int = Field(default=3, ge=1, description="Context encoding: most rectangles per image.")
    ce_min_cover: float = Field(
        default=0.1, gt=0, le=1, description="Context encoding: least fraction of the head masked."
    )
    ce_max_cover: float = Field(
        default=0.3, gt=0, le=1, description="Context encoding: largest fraction of the head masked."
    )
    ce_fill: Literal["noise", "zero"] = Field(
        default="noise", description="Context encoding: uniform noise in the image's range, or zeros."
    )
    preset: PresetName | None = Field(
        default=None,
        description="A measured recipe (brain-mri: U-Net denoising autoencoder with coarse noise of 8-pixel "
        "cells, scored by residual_signed inside the head); typed options win over its values.",
    )
    detect: DetectDefaults | None = Field(
        default=None,
        description="How vaedx detect scores this model when no scorer is named and validation cannot "
        "choose (set by --preset).",
    )
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N.")
    amp: bool | None = Field(default=None, description="Mixed precision; None = on for CUDA.")
    channels_last: bool | None = Field(default=None, description="None = on for CUDA and CPU images >= 96px.")
    num_threads: int | None = Field(default=None, ge=1, description="CPU threads for torch.")
    compile: bool = Field(default=False, description="torch.compile the model.")
    log_every: int = Field(default=50, ge=1, description="Steps between train.log lines.")

    @field_validator("augment", mode="before")
    @classmethod
    def _augment(cls, v: Any) -> AugmentConfig | None:
        return as_augment(v)

    @field_validator("budget", mode="before")
    @classmethod
    def _no_budget(cls, v: Any) -> Any:
        """``null`` (a YAML ``budget:`` left empty) means no limit, as 0 does."""
        return 0.0 if v is None else v

    @model_validator(mode="after")
    def _needs_gradient_training(self) -> TrainConfig:
        if self.augment is not None and self.model.kind == "pca":
            raise ValueError("augment applies to vae/ae training; PCA is fitted once on the images as stored")
        if self.denoise != "none" and self.model.kind == "pca":
            raise ValueError("denoise applies to vae/ae training; PCA is fitted once on the images as stored")
        if self.model.kind == "dae" and self.denoise == "none":
            # skip connections let the network copy its input, anomalies included: without a corruption to
            # remove it learns the identity, so denoising is its default and cannot be switched off
            if "denoise" in self.model_fields_set:
                raise ValueError(
                    "a dae (arch conv-unet) trained without corruption learns to copy its input, anomalies "
                    "included: use denoise coarse (its default)"
                )
            self.denoise = "coarse"
        if self.context_encoding:
            if self.model.kind not in ("vae", "ae"):
                raise ValueError("context_encoding applies to vae/ae training (the ceVAE recipe)")
            if self.denoise != "none":
                raise ValueError("context_encoding and denoise are separate recipes: choose one")
            if self.ce_min_cover > self.ce_max_cover:
                raise ValueError("ce_min_cover must not exceed ce_max_cover")
        return self

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
            raise ValueError("device must be auto, cpu, cuda or cuda:N")
        return v


# Options that may change when resuming: they do not alter what the next epochs compute.
RESUMABLE_FIELDS = frozenset(
    {"epochs", "patience", "min_delta", "budget", "log_every", "device", "amp", "channels_last"}
    | {"num_threads", "compile", "store", "out"}
)


def describe_validation_error(e: ValidationError) -> str:
    """One line: 'model.latent_dim: Input should be greater than or equal to 1 (got 0)'."""
    parts = []
    for err in e.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        # a whole-config check (no loc) would echo the entire config as its input: leave that out
        shown = err.get("type") != "missing" and "input" in err and bool(err["loc"])
        got = f" (got {err['input']!r})" if shown else ""
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}{got}"[:200])
    return "; ".join(parts)


def split_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Nest flat model options (latent_dim=16) under 'model' so one flat dict of overrides serves all."""
    out: dict[str, Any] = {}
    for k, v in overrides.items():
        if k in MODEL_FIELDS and k not in TrainConfig.model_fields:
            out.setdefault("model", {})[k] = v
        elif k == "model" and isinstance(v, ModelConfig):
            out.setdefault("model", {}).update(v.model_dump(exclude_unset=True))
        elif k == "model" and isinstance(v, dict):
            out.setdefault("model", {}).update(v)
        else:
            out[k] = v
    return out


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = {**base}
    for k, v in split_overrides(overrides).items():
        merged[k] = {**merged.get(k, {}), **v} if k == "model" else v
    return merged


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read config ({str(e).splitlines()[0]})", p) from None
    if not isinstance(data, dict):
        raise ConfigError("config must be a mapping of option: value", p)
    if isinstance(data.get("train"), dict) and "format" in data:
        # a run's config.json: its training settings reproduce the run (JSON is YAML, so it reads as one)
        data = with_saved_train_arch(data)["train"]
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_config(
    yaml_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> TrainConfig:
    """defaults < base (e.g. a saved run) < YAML < overrides; errors become one-line ConfigErrors."""
    data = merge(base or {}, read_yaml(yaml_path)) if yaml_path else dict(base or {})
    data = merge(data, overrides or {})
    if data.get("preset") in PRESETS:  # the preset fills only what nothing above set
        data = merge(merge({}, preset_values(data["preset"], data)), data)
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"invalid training config: {describe_validation_error(e)}", yaml_path) from None
