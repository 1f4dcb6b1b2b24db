"""Diagnosis from VAE latent spaces: latent features, calibrated classifiers saved without pickle,
nearest-neighbour explanations, the M2 semi-supervised VAE, a supervised CNN baseline and the
label-fraction study that compares them.

Names are imported lazily (on first use), so ``import vaedx.diagnose.labels`` from lower layers such as
:mod:`vaedx.models.semi` does not pull in torch training code or scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "latent_features": "features",
    "FeatureSpec": "features",
    "select_classifier": "classifiers",
    "make_pipeline": "classifiers",
    "CLASSIFIERS": "classifiers",
    "fit_probability_calibration": "calibration",
    "ThresholdRule": "calibration",
    "dump_estimator": "portable",
    "load_estimator": "portable",
    "DiagnosisModel": "model",
    "fit_diagnosis": "fit",
    "evaluate_diagnosis": "fit",
    "diagnose_images": "predict",
    "load_encoder": "encoder",
    "read_image_files": "predict",
    "LatentNeighbours": "explain",
    "nearest_training": "explain",
    "labelled_subset": "labels",
    "labelled_rows": "labels",
    "train_semi": "semi_train",
    "SemiResult": "semi_train",
    "train_supervised": "supervised",
    "label_fraction_study": "study",
    "StudyResult": "study",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"vaedx.diagnose.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'vaedx.diagnose' has no attribute {name!r}")
