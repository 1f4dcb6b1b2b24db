"""`ModelConfig`: everything needed to rebuild a model's architecture from a checkpoint's config.json.

Why a pydantic model with ``extra="forbid"``: a misspelt option in a YAML file must fail loudly instead of
silently training the default architecture.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# dae: the skip-connection network (arch conv-unet); its latent does not constrain what it gives back, so it
# is a denoising autoencoder, trained on corrupted inputs and scored by its residuals, never by a likelihood.
ModelKind = Literal["vae", "ae", "pca", "dae"]
# How reports, cards and logs name each kind.
KIND_NAMES = {"vae": "vae", "ae": "ae", "pca": "pca", "dae": "denoising autoencoder (dae)"}
Likelihood = Literal["gaussian", "gaussian_learned", "bernoulli", "laplace"]
Norm = Literal["batch", "group", "instance", "none"]
# The network behind the model: vaedx's own ConvVAE/ConvAE, its U-Net twin (conv-unet: encoder feature maps
# concatenated into the decoder at each resolution), its faster twin (conv-fast: no full-resolution feature
# map, see vaedx.models.fastconv), or a MONAI network through its adapter.
Arch = Literal["auto", "conv", "monai-varautoencoder", "monai-autoencoderkl", "conv-unet", "conv-fast"]
ARCHS: tuple[str, ...] = (
    "auto", "conv", "monai-varautoencoder", "monai-autoencoderkl", "conv-unet", "conv-fast"
)  # fmt: skip
UNET_ARCH = "conv-unet"
# auto: conv-fast from FAST_ARCH_MIN_SIDE px, conv below. conv-fast trains 2.6-2.7x faster than conv at the
# same widths (benchmarks/train_speed.py --sections archs) and, at 128 px, restored LGG slices as well as conv
# (benchmarks/restoration_speed.py); below that it cost quality: PneumoniaMNIST's fine-tuned diagnosis AUC
# 0.963 vs 0.971 (28 px, paired on the same test images) and LGG restoration pixel AUPRC 0.046 vs 0.103
# (64 px). Small images are cheap with conv anyway, so speed is taken only where it is free.
DEFAULT_ARCH = "auto"
FAST_ARCH_MIN_SIDE = 128
LEGACY_ARCH = "conv"


def resolve_arch(arch: str, image_size: tuple[int, int] | None) -> str:
    """The network ``arch`` names: ``auto`` becomes conv-fast for images of at least ``FAST_ARCH_MIN_SIDE``
    px a side and conv below; any other arch is itself. ``auto`` needs the image size."""
    if arch != DEFAULT_ARCH:
        return arch
    if image_size is None:
        raise ValueError("arch auto needs the image size (it is taken from the store)")
    return "conv-fast" if min(image_size) >= FAST_ARCH_MIN_SIDE else "conv"


def with_saved_arch(model: dict[str, object]) -> dict[str, object]:
    """A saved model config with ``arch`` filled in as it was when saved: before the field existed every
    network was conv, so a config without it must not pick up today's default and load the wrong layout."""
    return model if "arch" in model else {**model, "arch": LEGACY_ARCH}


class ModelConfig(BaseModel):
    """Architecture and likelihood of a reconstruction model.

    ``in_channels`` and ``image_size`` are normally filled in from the tensor store by the trainer, so a
    config file only has to say what is a real choice.
    """

    model_config = ConfigDict(extra="forbid")

    kind: ModelKind = "vae"
    arch: Arch = Field(
        default=DEFAULT_ARCH,
        description="Network: auto (the default: conv-fast for images of 128 px a side or more, conv below; "
        "the run records which), conv-fast (vaedx's ConvVAE/ConvAE with a space-to-depth stem and a "
        "sub-pixel head, no full-resolution feature map, 2.6-2.7x faster to train than conv), conv (the "
        "same widths with full-resolution stem and head), conv-unet (skip connections at every resolution: "
        "a denoising autoencoder, kind dae) or a MONAI network (needs the monai extra); run configs saved "
        "before this field existed load as conv.",
    )
    in_channels: int | None = Field(default=None, ge=1)
    image_size: tuple[int, int] | None = Field(default=None, description="(height, width) of the inputs.")
    latent_dim: int = Field(default=32, ge=1)
    widths: list[int] = Field(
        default_factory=lambda: [32, 64, 128],
        description="Channels per encoder level; each level halves the resolution with a stride-2 conv.",
    )
    norm: Norm = Field(
        default="group",
        description="GroupNorm by default: BatchNorm makes a single image's score depend on its batch.",
    )
    residual: int = Field(default=0, ge=0, description="Residual blocks per level (True = 1).")
    likelihood: Likelihood = "gaussian"
    sigma: float = Field(
        default=0.1,
        gt=0,
        description="Fixed std for 'gaussian', scale b for 'laplace', initial std for 'gaussian_learned'.",
    )
    learned_sigma: Literal["global", "pixel"] = Field(
        default="global", description="One learned log-sigma, or one per pixel and channel."
    )
    ssim_weight: float = Field(
        default=0.0, ge=0, description="Adds weight * sum over pixels of (1 - SSIM) to the recon loss."
    )

    @field_validator("image_size", mode="before")
    @classmethod
    def _square(cls, v: object) -> object:
        return (v, v) if isinstance(v, int) else v

    @field_validator("residual", mode="before")
    @classmethod
    def _bool_count(cls, v: object) -> object:
        return int(v) if isinstance(v, bool) else v

    @field_validator("widths")
    @classmethod
    def _widths(cls, v: list[int]) -> list[int]:
        if not v or any(w < 1 for w in v):
            raise ValueError("widths must be a non-empty list of positive channel counts")
        return v

    @model_validator(mode="before")
    @classmethod
    def _unet_is_dae(cls, data: object) -> object:
        """arch conv-unet alone means kind dae and kind dae alone means arch conv-unet, so one option does;
        kind pca alone takes no network arch."""
        if isinstance(data, dict):
            if data.get("arch") == UNET_ARCH and "kind" not in data:
                data = {**data, "kind": "dae"}
            elif data.get("kind") == "dae" and "arch" not in data:
                data = {**data, "arch": UNET_ARCH}
            elif data.get("kind") == "pca" and "arch" not in data:
                data = {**data, "arch": LEGACY_ARCH}  # PCA has no network; its record keeps the old value
        return data

    @model_validator(mode="after")
    def _arch_fits_kind(self) -> ModelConfig:
        if (self.kind == "dae") != (self.arch == UNET_ARCH):
            raise ValueError(
                f"arch {UNET_ARCH} (skip connections: it can copy its input, so it has no ELBO) is a "
                f"denoising autoencoder, kind dae; kind {self.kind!r} with arch {self.arch!r} is not"
            )
        if self.kind == "pca" and self.arch not in (LEGACY_ARCH, DEFAULT_ARCH):
            raise ValueError(f"arch {self.arch!r} is a torch network; the pca baseline takes no arch")
        if self.kind == "pca" and self.arch == DEFAULT_ARCH:
            self.arch = LEGACY_ARCH  # PCA has no network; its record keeps the old value
        elif self.arch == DEFAULT_ARCH and self.image_size is not None:
            self.arch = resolve_arch(self.arch, self.image_size)  # type: ignore[assignment]
        return self

    @property
    def depth(self) -> int:
        return len(self.widths)

    def network(self) -> str:
        """The concrete arch to build (``auto`` resolved by the image size)."""
        from vaedx.errors import ConfigError

        try:
            return resolve_arch(self.arch, self.image_size)
        except ValueError as e:
            raise ConfigError(str(e)) from None

    def require_shape(self) -> tuple[int, int, int]:
        """(C, H, W); raises when the trainer has not filled the shape in from a store."""
        from vaedx.errors import ConfigError

        if self.in_channels is None or self.image_size is None:
            raise ConfigError("model config needs in_channels and image_size (they are taken from the store)")
        return (self.in_channels, *self.image_size)
