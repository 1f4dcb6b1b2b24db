"""The notebook API: the functions behind the commands, for notebooks and scripts.

``vaedx.train(store, out, **options)``, ``vaedx.load_model(path)``,
``vaedx.detect(model, out, inputs=[...])``, and for volumes ``vaedx.read_volume(path)`` (NIfTI,
DICOM series folder or zip, numbered slices),
``vaedx.prepare_volume(volume, preprocess)`` (model inputs and the way back to the input's space) and
``vaedx.volume_metrics(maps, truth, threshold)`` (per-volume Dice, voxel AUPRC, lesion-wise detection).
A facade over the layers below it, beside the CLI at the top: nothing inside vaedx imports it.
"""

from __future__ import annotations

from vaedx.anomaly.detect import detect
from vaedx.data.volume_prep import PreparedVolume, prepare_volume
from vaedx.io.volume import Volume
from vaedx.io.volume_source import read_volume
from vaedx.metrics.volume import volume_metrics
from vaedx.runs.loaded import LoadedModel, load_model
from vaedx.training.engine import train

__all__ = [
    "LoadedModel",
    "PreparedVolume",
    "Volume",
    "detect",
    "load_model",
    "prepare_volume",
    "read_volume",
    "train",
    "volume_metrics",
]
