"""A fitted diagnosis model: feature recipe + array classifier + calibrator + threshold, saved without pickle.

Layout of a diagnosis folder::

    diagnosis.json          format, classifier kind and settings, classes and label names, threshold and
                            its rule, calibration method, feature spec, encoder path and sha256,
                            preprocessing, validation metrics, cross-validation table, training rows
    diagnosis.safetensors   the arrays: classifier ('clf.*'), calibrator ('cal.*'), and the training
                            features and labels ('train.*') used for nearest-neighbour explanations

Why the encoder's sha256: the classifier is only meaningful on the latent space it was fitted on; a
retrained encoder at the same path would silently give nonsense, so loading checks the hash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from vaedx.atomic import atomic_write, atomic_write_json
from vaedx.diagnose.features import FeatureSpec
from vaedx.diagnose.portable import PortableCalibrator, PortableClassifier, from_arrays, to_arrays
from vaedx.errors import InputError

DIAGNOSIS_FORMAT = "vaedx-diagnosis-1"
JSON_FILE, ARRAYS_FILE = "diagnosis.json", "diagnosis.safetensors"


@dataclass
class DiagnosisModel:
    """Everything needed to turn an encoder's features into a calibrated diagnosis."""

    classifier: PortableClassifier
    calibrator: PortableCalibrator | None
    label_names: list[str]
    features: FeatureSpec
    threshold: float | None = None  # binary: positive when P(classes[1]) > threshold
    threshold_rule: str | None = None
    encoder: dict[str, Any] = field(default_factory=dict)  # path, sha256, kind
    preprocess: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    selection: list[dict[str, Any]] = field(default_factory=list)
    train_features: np.ndarray | None = None
    train_labels: np.ndarray | None = None
    train_refs: list[str] = field(default_factory=list)  # store path of each training row, for explanations
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> np.ndarray:
        """Label codes of the probability columns (indices into ``label_names``)."""
        return self.classifier.classes

    @property
    def class_names(self) -> list[str]:
        return [self.label_names[int(c)] if 0 <= c < len(self.label_names) else str(c) for c in self.classes]

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(N, K) calibrated probabilities (uncalibrated when calibration was 'none')."""
        if self.calibrator is None:
            return self.classifier.predict_proba(features)
        return self.calibrator.predict_proba(self.classifier.response(features), len(self.classes))

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """Label codes: binary cases above the threshold are positive; multi-class takes the argmax."""
        if self.binary and self.threshold is not None:
            return np.where(proba[:, 1] > self.threshold, self.classes[1], self.classes[0])
        return self.classes[np.argmax(proba, axis=1)]

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.decide(self.predict_proba(features))

    # -- persistence ------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write diagnosis.json and diagnosis.safetensors into ``directory`` (each file atomically)."""
        d = Path(directory)
        desc, arrays = to_arrays(self.classifier, self.calibrator)
        if self.train_features is not None and self.train_labels is not None:
            arrays["train.features"] = np.ascontiguousarray(self.train_features, dtype=np.float64)
            arrays["train.labels"] = np.ascontiguousarray(self.train_labels, dtype=np.int64)
        arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        atomic_write(
            d / ARRAYS_FILE, lambda p: save_file(arrays, str(p), metadata={"format": DIAGNOSIS_FORMAT})
        )
        doc = {
            "format": DIAGNOSIS_FORMAT,
            "classifier": desc,
            "classes": self.classes.tolist(),
            "class_names": self.class_names,
            "label_names": self.label_names,
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "features": self.features.to_json(),
            "encoder": self.encoder,
            "preprocess": self.preprocess,
            "validation": self.metrics,
            "selection": self.selection,
            "train_refs": self.train_refs,
            **self.meta,
        }
        atomic_write_json(d / JSON_FILE, doc)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> DiagnosisModel:
        d = Path(directory)
        doc = _read_json(d / JSON_FILE)
        try:
            flat = load_file(str(d / ARRAYS_FILE))
        except FileNotFoundError:
            raise InputError("file missing from diagnosis folder", d / ARRAYS_FILE) from None
        except (OSError, SafetensorError, ValueError) as e:
            raise InputError(f"damaged or truncated safetensors file ({e})", d / ARRAYS_FILE) from None
        try:
            clf, cal = from_arrays(doc["classifier"], flat)
            spec = FeatureSpec.from_json(doc["features"])
            known = {
                "format",
                "classifier",
                "classes",
                "class_names",
                "label_names",
                "threshold",
                "threshold_rule",
                "features",
                "encoder",
                "preprocess",
                "validation",
                "selection",
                "train_refs",
            }
            model = cls(
                classifier=clf,
                calibrator=cal,
                label_names=[str(n) for n in doc["label_names"]],
                features=spec,
                threshold=doc.get("threshold"),
                threshold_rule=doc.get("threshold_rule"),
                encoder=dict(doc.get("encoder", {})),
                preprocess=dict(doc.get("preprocess", {})),
                metrics=dict(doc.get("validation", {})),
                selection=list(doc.get("selection", [])),
                train_features=flat.get("train.features"),
                train_labels=flat.get("train.labels"),
                train_refs=[str(r) for r in doc.get("train_refs", [])],
                meta={k: v for k, v in doc.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"diagnosis config is incomplete ({e})", d / JSON_FILE) from None
        if clf.arrays["scaler_mean"].shape[0] != len(spec.names):
            raise InputError("classifier and feature spec disagree on the number of features", d / JSON_FILE)
        return model


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("not a diagnosis folder (diagnosis.json missing)", path.parent) from None
    except (OSError, ValueError) as e:
        raise InputError(f"unreadable JSON ({e})", path) from None
    if not isinstance(doc, dict) or doc.get("format") != DIAGNOSIS_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise InputError(f"not a diagnosis model of format {DIAGNOSIS_FORMAT} (found {found!r})", path)
    return doc
