"""A fitted diagnosis model: feature recipe + scikit-learn classifier (calibrated) + threshold, no pickle.

Layout of a diagnosis folder::

    diagnosis.json          format, classifier kind, calibration method, classes and label names,
                            threshold and its rule, feature spec, encoder path and sha256, preprocessing,
                            validation metrics, cross-validation table, training rows
    diagnosis.skops         the fitted classifier (and calibrator), saved by skops.io: loading refuses
                            any type outside :data:`vaedx.diagnose.portable.TRUSTED`
    diagnosis.safetensors   the training features and labels ('train.*') used for nearest-neighbour
                            explanations
    MODEL_CARD.md           counts, settings, validation and test figures (vaedx.diagnose.card)

Why the encoder's sha256: the classifier is only meaningful on the latent space it was fitted on; a
retrained encoder at the same path would silently give nonsense, so loading checks the hash.

Folders of the earlier format (``vaedx-diagnosis-1``: the classifier as numpy arrays) are refused with a
line saying to refit: refitting takes seconds, and keeping a second implementation of every estimator's
predict_proba alive only to read them would be the fragile code this format replaced.
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
from vaedx.diagnose.card import write_diagnosis_card
from vaedx.diagnose.features import FeatureSpec
from vaedx.diagnose.portable import describe, dump_estimator, load_estimator
from vaedx.errors import InputError

DIAGNOSIS_FORMAT = "vaedx-diagnosis-2"
OLD_FORMATS = ("vaedx-diagnosis-1",)
JSON_FILE, ESTIMATOR_FILE, ARRAYS_FILE = "diagnosis.json", "diagnosis.skops", "diagnosis.safetensors"


@dataclass
class DiagnosisModel:
    """Everything needed to turn an encoder's features into a calibrated diagnosis."""

    estimator: Any  # Pipeline(StandardScaler, classifier), or CalibratedClassifierCV around it
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
        return np.asarray(self.estimator.classes_, dtype=np.int64)

    @property
    def kind(self) -> str:
        """Short name of the classifier (logreg, knn, mlp, hgb)."""
        return str(describe(self.estimator)["kind"])

    @property
    def calibration(self) -> str:
        """sigmoid, isotonic or none."""
        return str(describe(self.estimator)["calibration"])

    @property
    def n_features(self) -> int:
        return int(self.estimator.n_features_in_)

    @property
    def class_names(self) -> list[str]:
        return [self.label_names[int(c)] if 0 <= c < len(self.label_names) else str(c) for c in self.classes]

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(N, K) calibrated probabilities (uncalibrated when calibration was 'none')."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise InputError(f"classifier expects (N, {self.n_features}) features, got shape {x.shape}")
        return np.asarray(self.estimator.predict_proba(x), dtype=np.float64)

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """Label codes: binary cases above the threshold are positive; multi-class takes the argmax."""
        if self.binary and self.threshold is not None:
            return np.where(proba[:, 1] > self.threshold, self.classes[1], self.classes[0])
        return self.classes[np.argmax(proba, axis=1)]

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.decide(self.predict_proba(features))

    # -- persistence ------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write diagnosis.json, .skops and .safetensors into ``directory`` (each file atomically)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        dump_estimator(self.estimator, d / ESTIMATOR_FILE)
        arrays: dict[str, np.ndarray] = {}
        if self.train_features is not None and self.train_labels is not None:
            arrays["train.features"] = np.ascontiguousarray(self.train_features, dtype=np.float64)
            arrays["train.labels"] = np.ascontiguousarray(self.train_labels, dtype=np.int64)
        arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        atomic_write(
            d / ARRAYS_FILE, lambda p: save_file(arrays, str(p), metadata={"format": DIAGNOSIS_FORMAT})
        )
        doc = {
            "format": DIAGNOSIS_FORMAT,
            "classifier": {**describe(self.estimator), "file": ESTIMATOR_FILE},
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
        write_diagnosis_card(d)  # rendered from the JSON just written
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
        estimator = load_estimator(d / ESTIMATOR_FILE)
        try:
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
                estimator=estimator,
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
        if model.n_features != len(spec.names):
            raise InputError("classifier and feature spec disagree on the number of features", d / JSON_FILE)
        return model


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("not a diagnosis folder (diagnosis.json missing)", path.parent) from None
    except (OSError, ValueError) as e:
        raise InputError(f"unreadable JSON ({e})", path) from None
    if isinstance(doc, dict) and doc.get("format") in OLD_FORMATS:
        raise InputError(
            f"diagnosis model of the old array format {doc['format']} is no longer read; "
            "refit it with `vaedx diagnose fit`",
            path,
        )
    if not isinstance(doc, dict) or doc.get("format") != DIAGNOSIS_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise InputError(f"not a diagnosis model of format {DIAGNOSIS_FORMAT} (found {found!r})", path)
    return doc
