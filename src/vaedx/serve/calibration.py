"""Tolerant readers for what may sit beside a model: ``thresholds.json`` and a diagnosis classifier.

Why tolerant: both are produced by other stages (``vaedx.anomaly.calibrate``, ``vaedx.diagnose``). A side
file the service cannot use gives "no calibrated threshold" / ``diagnosis: null``, with the reason in
``GET /v1/model``, rather than a service that will not start. Two things are not tolerated, because the
answers would be silently wrong: a diagnosis folder that is unreadable or was fitted on another encoder.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("vaedx.serve")
THRESHOLDS_FILE = "thresholds.json"


@dataclass
class Calibration:
    """Image/pixel thresholds for one scorer; all None when the model was never calibrated."""

    scorer: str | None = None
    image_threshold: float | None = None
    pixel_threshold: float | None = None
    source: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def _from_dict(d: dict[str, Any], source: str) -> Calibration | None:
    inner = d["thresholds"] if isinstance(d.get("thresholds"), dict) else d  # calibrate's nesting
    image = _finite(inner.get("image_threshold", inner.get("threshold")))
    if image is None:
        return None
    scorer = d.get("scorer") if isinstance(d.get("scorer"), str) else None
    keep = ("method", "target_specificity", "n_calibration", "specificity")
    details = {k: inner[k] for k in keep if k in inner and isinstance(inner[k], str | int | float | None)}
    details.update({k: d[k] for k in ("split", "normal_label") if isinstance(d.get(k), str)})
    return Calibration(scorer, image, _finite(inner.get("pixel_threshold")), source, details)


def _mismatch(entry: dict[str, Any]) -> str | None:
    """Why a calibrated entry does not fit the service's maps (default options, no post-processing)."""
    options = entry.get("options") or {}
    post = entry.get("postprocess") or {}
    if options:
        return f"scorer options {options}"
    active = (
        {k: v for k, v in post.items() if v not in (False, 0, 0.0, None)} if isinstance(post, dict) else {}
    )
    return f"postprocess {active}" if active else None


def load_calibration(folders: list[Path], preferred_scorer: str = "residual") -> Calibration:
    """First readable thresholds.json in ``folders``.

    Accepts a flat object ({image_threshold, pixel_threshold?, scorer?}) or one keyed by scorer name, as
    vaedx.anomaly.calibrate writes it ({"scorers": {name: {options, postprocess, thresholds: {...}}}}),
    preferring ``preferred_scorer``. Entries calibrated with scorer options or map post-processing are
    skipped: the service scores raw maps with default options, on which such a cut means nothing.
    """
    for folder in folders:
        path = folder / THRESHOLDS_FILE
        if not path.is_file():
            continue
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            return Calibration(problem=f"unreadable {THRESHOLDS_FILE} ({e.__class__.__name__})")
        if not isinstance(raw, dict):
            return Calibration(problem=f"{THRESHOLDS_FILE} is not a JSON object")
        flat = _from_dict(raw, THRESHOLDS_FILE)
        if flat is not None:
            return flat
        nested = raw.get("scorers", raw)
        skipped: list[str] = []
        if isinstance(nested, dict):
            for name in [preferred_scorer, *sorted(k for k in nested if k != preferred_scorer)]:
                entry = nested.get(name)
                if not isinstance(entry, dict) or (cal := _from_dict(entry, THRESHOLDS_FILE)) is None:
                    continue
                if (why := _mismatch(entry)) is not None:
                    skipped.append(f"{name} was calibrated with {why}")
                    continue
                cal.scorer = cal.scorer or name
                return cal
        reason = "; ".join(skipped) if skipped else "no finite image_threshold"
        return Calibration(problem=f"{THRESHOLDS_FILE} not used: {reason}")
    return Calibration()


# --------------------------------------------------------------------------------------------- diagnosis
_GENERIC_LOADERS = ("load_diagnosis", "load_classifier", "load_diagnoser")


class DiagnosisAdapter:
    """``predict(x (1, C, H, W)) -> {class, probability, probabilities}`` over whatever vaedx.diagnose offers.

    Preferred: the real API (``DiagnosisModel.load`` + ``diagnose_images``), which computes the features the
    classifier was fitted on and checks the encoder's hash and preprocessing. Fallback: a module-level
    loader returning an object with ``predict_proba(posterior means (N, d))``. Nearest training cases are
    never returned: their references are store paths, which may name patients.
    """

    def __init__(self, predict: Any, label_names: list[str], info: dict[str, Any]):
        self._predict = predict
        self.label_names = label_names
        self.info = info

    @classmethod
    def load(cls, folder: Path, loaded: Any) -> tuple[DiagnosisAdapter | None, str | None]:
        """(adapter, None) or (None, reason) when vaedx.diagnose is absent or offers nothing usable.

        Raises VaedxError when the folder is unreadable or was fitted on a different encoder.
        """
        try:
            from vaedx.diagnose.model import DiagnosisModel
            from vaedx.diagnose.predict import check_encoder, diagnose_images
        except Exception as e:  # the module may be absent or mid-edit: fall back, then give up quietly
            log.info("vaedx.diagnose API unavailable (%s); trying a generic loader", e.__class__.__name__)
            return cls._generic(folder, loaded)
        diag = DiagnosisModel.load(folder)
        check_encoder(diag, loaded)

        def predict(x: np.ndarray) -> dict[str, Any]:
            row = diagnose_images(diag, loaded, x, k=0)[0]
            return {k: row[k] for k in ("class", "probability", "probabilities")}

        info = {
            "threshold": diag.threshold,
            "threshold_rule": diag.threshold_rule,
            "classes": diag.class_names,
        }
        return cls(predict, diag.class_names, info), None

    @classmethod
    def _generic(cls, folder: Path, loaded: Any) -> tuple[DiagnosisAdapter | None, str | None]:
        try:
            module = importlib.import_module("vaedx.diagnose")
        except Exception as e:
            return None, f"vaedx.diagnose unavailable ({e.__class__.__name__})"
        loader = next(
            (getattr(module, n) for n in _GENERIC_LOADERS if callable(getattr(module, n, None))), None
        )
        if loader is None:
            return None, "vaedx.diagnose offers no loader"
        obj = loader(folder)
        if not callable(getattr(obj, "predict_proba", None)):
            return None, "the diagnosis model has no predict_proba"
        names = [str(n) for n in (getattr(obj, "label_names", None) or loaded.label_names)]

        def predict(x: np.ndarray) -> dict[str, Any]:
            import torch

            with torch.no_grad():
                mu = loaded.model.encode(torch.from_numpy(x))[0]
            z = mu.numpy() if isinstance(mu, torch.Tensor) else np.asarray(mu)
            p = np.asarray(obj.predict_proba(z), dtype=np.float64)[0]
            labels = names if len(names) == p.size else [str(i) for i in range(p.size)]
            k = int(np.argmax(p))
            probs = {n: float(v) for n, v in zip(labels, p, strict=True)}
            return {"class": labels[k], "probability": float(p[k]), "probabilities": probs}

        return cls(predict, names, {"loader": loader.__name__}), None

    def predict(self, x: np.ndarray) -> dict[str, Any]:
        return self._predict(x)
