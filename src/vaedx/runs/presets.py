"""Named training presets: the best measured recipe for a kind of data, so a user need not read the papers.

Why a preset is data, not code: ``vaedx train --preset brain-mri`` only fills in option values (below the
YAML file and the typed options, which always win), and the run's config.json records the preset's name
beside the values it produced, so a run is reproduced from its folder alone and a later change of the
preset never changes an old run. The preset also records how to score the model (``DetectDefaults``), which
``vaedx detect`` falls back to when the user names no scorer and the validation split cannot choose one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PresetName = Literal["brain-mri"]


class DetectDefaults(BaseModel):
    """How a model is meant to be scored: what ``vaedx detect`` uses when the user names no scorer and the
    validation split cannot decide (no lesion masks, no labels), and what it tries first otherwise."""

    model_config = ConfigDict(extra="forbid")

    scorer: str = Field(description="Scorer name, e.g. residual_signed.")
    postprocess: str = Field(default="", description="Post-processing, e.g. foreground,median=5.")
    options: dict[str, Any] = Field(default_factory=dict, description="Scorer options (image score).")


@dataclass(frozen=True)
class Preset:
    """Option values (flat, as typed on the command line), the slice size the recipe was measured at, the
    side in pixels of one coarse-noise cell (the grid follows the image size), and the scoring defaults."""

    values: dict[str, Any]
    size: int
    noise_cell: int | None
    detect: DetectDefaults
    why: str
    measured: dict[str, Any] = field(default_factory=dict)


# brain-mri: the U-Net denoising autoencoder with coarse noise (Kascenas et al., MIDL 2022) scored by the
# signed residual: on 4 held-out LGG patients at 64 px (docs/anomaly-brain-mri.md) it was the only learned
# method ahead of the FLAIR intensity threshold on pixel AUPRC (0.314 vs 0.110) and Dice (0.220 vs 0.119),
# with 8-pixel noise cells beating 4-pixel ones (16 x 16 grid at 64 px: AUPRC 0.121). Noise of 8-pixel
# cells is also the paper's (16 x 16 at 128 px), and 128 px is the literature's slice size. LGG lesions are
# bright in FLAIR, hence the signed residual; foreground + median 5 and a top-1 % image score were chosen on
# LGG validation patients for every scorer (benchmarks/anomaly.py).
PRESETS: dict[str, Preset] = {
    "brain-mri": Preset(
        values={
            "kind": "dae",
            "arch": "conv-unet",
            "denoise": "coarse",
            "noise_std": 0.2,
            "widths": [16, 32, 64],
            "latent_dim": 32,
            "epochs": 20,
            "patience": 0,  # measured as 20 fixed epochs
            "budget": 0,
            "label_filter": None,
        },  # fmt: skip
        size=128,
        noise_cell=8,
        detect=DetectDefaults(
            scorer="residual_signed",
            postprocess="foreground,median=5",
            options={"image_method": "topk", "topk_percent": 1.0},
        ),
        why="U-Net denoising autoencoder trained to remove coarse noise of 8-pixel cells (Kascenas et al., "
        "MIDL 2022), scored by the signed residual inside the head; 128 px slices",
        measured={"pixel_auprc": 0.314, "dice": 0.220, "intensity_pixel_auprc": 0.110, "size": 64},
    ),
}
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)
# values that only make sense together with the preset's model kind: dropped when the user picks another
_TIED_TO_KIND = ("arch", "denoise", "noise_std")


def preset_values(name: str, explicit: dict[str, Any]) -> dict[str, Any]:
    """The preset's option values that ``explicit`` (flat or nested under 'model') does not set.

    An explicit ``kind`` other than the preset's drops the preset's arch and noise (a VAE with a U-Net, or
    PCA with denoising, would be refused); an explicit ``context_encoding`` drops its denoising (the two are
    separate recipes); ``label_filter`` None means the preset leaves it to the user.
    """
    preset = PRESETS[name]
    given = {**explicit, **(explicit.get("model") or {})}
    out = {k: v for k, v in preset.values.items() if k not in given and v is not None}
    if given.get("kind") not in (None, preset.values["kind"]):
        for k in _TIED_TO_KIND:
            out.pop(k, None)
    if given.get("arch") not in (None, preset.values.get("arch")) and "kind" not in given:
        out.pop("kind", None)
    if given.get("context_encoding"):
        out.pop("denoise", None)
        out.pop("noise_std", None)
    if "detect" not in given:
        out["detect"] = preset.detect.model_dump()
    return out


def noise_resolution_for(name: str, image_size: int) -> int | None:
    """The preset's coarse-noise grid for this image side (cells of ``noise_cell`` pixels), or None."""
    cell = PRESETS[name].noise_cell
    return None if cell is None else max(1, image_size // cell)
