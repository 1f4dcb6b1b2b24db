"""Response models: they make /openapi.json describe exactly what clients get back.

``extra="allow"`` on the nested ones so a richer payload (more calibration details, more metrics) does not
break responses; the documented fields are always present.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Diagnosis(_Open):
    class_: str = Field(alias="class", description="Most probable class.")
    probability: float
    probabilities: dict[str, float] = Field(default_factory=dict)


class ImageFacts(_Open):
    format: str
    modality: str | None = None
    original_size: list[int]
    original_channels: int
    n_slices: int
    slice_index: int
    model_size: list[int] = Field(description="(height, width) after preprocessing, as the model saw it.")
    channels: int
    channel_mapping: str | None = Field(
        default=None,
        description="Set when a one-channel image stands for the one channel the model was trained on.",
    )


class Region(BaseModel):
    x: int
    y: int
    width: int
    height: int
    area: int


class Contour(_Open):
    level: float = Field(description="Pixel-map value the contour is drawn at.")
    source: str = Field(description="Whether the level is a calibrated pixel threshold or a fallback.")
    n_pixels: int
    fraction: float
    regions: list[Region]
    png: str = Field(description="Base64 PNG (RGBA) with the outline only; transparent elsewhere.")


class Prediction(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    scorer: str
    score: float = Field(description="Image anomaly score: higher is more anomalous.")
    threshold: float | None = Field(description="Calibrated image threshold; null when not calibrated.")
    flag: bool | None = Field(description="score > threshold; null when there is no calibrated threshold.")
    diagnosis: Diagnosis | None
    image: ImageFacts
    input_png: str = Field(description="Base64 PNG of the preprocessed input.")
    reconstruction_png: str
    heatmap_png: str = Field(description="Base64 RGBA PNG: anomaly map layer to overlay on input_png.")
    overlay_png: str = Field(description="Base64 RGB PNG: input with heatmap and contour composited.")
    heatmap_scale: dict[str, float]
    contour: Contour
    caveat: str


class BatchItem(BaseModel):
    index: int = Field(description="Position of the file in the request.")
    ok: bool
    status: int = Field(description="HTTP status this file alone would have had.")
    result: Prediction | None = None
    error: str | None = None


class BatchResponse(BaseModel):
    items: list[BatchItem]
    n_ok: int
    n_failed: int


class ModelInfo(_Open):
    kind: str
    image_shape: list[int]
    model: dict[str, Any]
    preprocess: dict[str, Any]
    label_names: list[str]
    scorer: str
    calibration: dict[str, Any]
    diagnosis: dict[str, Any]
    training_data: dict[str, Any]
    checkpoint: dict[str, Any]
    metrics: dict[str, Any] | None
    caveat: str


class Health(BaseModel):
    status: str
    model_kind: str


class ErrorBody(BaseModel):
    detail: str


class VolumeSlice(BaseModel):
    index: int = Field(description="Slice k of the volume, in the order of `slice_order`.")
    score: float
    flag: bool | None = Field(description="score > threshold; null when there is no calibrated threshold.")


class VolumeResult(_Open):
    volume_id: str = Field(description="Random token naming the upload's results (never the file name).")
    kind: str = Field(description="nifti or dicom-series.")
    n_slices: int
    shape: list[int] = Field(description="Shape of the input as stored (the NIfTI files have it too).")
    spacing_mm: list[float] = Field(description="(slice, row, column) spacing of the slices shown, mm.")
    spacing_assumed: bool = Field(description="True when the file gave no spacing and 1 mm was assumed.")
    orientation: str | None
    slice_order: str
    model_size: list[int] = Field(description="(height, width) of the model's inputs.")
    display_size: list[int] = Field(description="(height, width) of the overlay PNGs.")
    scorer: str
    threshold: float | None = Field(description="Calibrated image threshold; null when not calibrated.")
    pixel_threshold: float | None = Field(description="Calibrated pixel threshold behind the lesion mask.")
    slices: list[VolumeSlice]
    n_flagged: int | None
    lesion_volume_mm3: float | None = Field(description="Voxels above the pixel threshold, in mm³.")
    n_components: int | None = Field(description="3-D connected components of the lesion mask.")
    components: list[dict[str, Any]]
    heatmap_scale: dict[str, float]
    contour_source: str
    overlay_url: str = Field(description="Template of the per-slice overlay PNG URLs ({index} = slice).")
    map_url: str = Field(description="Anomaly map as .nii.gz in the input's own space.")
    mask_url: str | None = Field(description="Lesion mask as .nii.gz; null without a pixel threshold.")
    expires_after_idle_s: float
    caveat: str
