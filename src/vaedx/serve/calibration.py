"""What sits beside a model: the scorer set-up from ``thresholds.json`` and an optional diagnosis classifier.

The scorer set-up is :mod:`vaedx.anomaly.calibrated` (shared with ``vaedx diagnose predict --anomaly-model``):
the service scores with exactly the scorer, options and post-processing its thresholds were calibrated
with, so its score and flag for an image equal ``vaedx detect``'s; an unreadable thresholds.json is
refused at start-up. A diagnosis folder that is unusable gives ``diagnosis: null`` with the reason in
``GET /v1/model``; one that is unreadable or was fitted on another encoder is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vaedx.anomaly.calibrated import DEFAULT_SCORER, Calibration, resolve_scoring

__all__ = ["DEFAULT_SCORER", "Calibration", "DiagnosisAdapter", "resolve_scoring"]


# --------------------------------------------------------------------------------------------- diagnosis
def _diagnosis_encoder(diag: Any, loaded: Any, check_encoder: Any) -> Any:
    """The encoder whose features the diagnosis reads: the served model itself, or an encoder fine-tuned
    from it (``vaedx diagnose finetune``), loaded from the path the diagnosis records and hash-checked.

    Any other encoder is refused: its latent space has nothing to do with the model's anomaly maps.
    """
    from vaedx.diagnose.encoder import load_encoder
    from vaedx.errors import ModelMismatchError, VaedxError
    from vaedx.models.device import model_device
    from vaedx.runs import checkpoint as ck

    try:
        check_encoder(diag, loaded)
        return loaded
    except ModelMismatchError as mismatch:
        try:
            # checks its hash and preprocessing against the diagnosis; on the served model's device
            tuned = load_encoder(diag, device=str(model_device(loaded.model)))
        except VaedxError:
            raise mismatch from None
        source = (tuned.meta.get("finetune") or {}).get("source_sha256")
        if source != ck.sha256(Path(loaded.path) / ck.MODEL_FILE):
            raise
    if tuned.image_shape != loaded.image_shape:
        raise ModelMismatchError(
            f"fine-tuned encoder takes {tuned.image_shape}, the model {loaded.image_shape}"
        )
    return tuned


class DiagnosisAdapter:
    """``predict(x (1, C, H, W)) -> {class, probability, probabilities}`` through ``DiagnosisModel.load`` +
    ``diagnose_images``, which compute the features the classifier was fitted on and check the encoder's
    hash and preprocessing. Nearest training cases are never returned: their references are store paths,
    which may name patients.
    """

    def __init__(self, predict: Any, label_names: list[str], info: dict[str, Any]):
        self._predict = predict
        self.label_names = label_names
        self.info = info

    @classmethod
    def load(cls, folder: Path, loaded: Any) -> tuple[DiagnosisAdapter | None, str | None]:
        """(adapter, None): the second slot is the reason a diagnosis is left out, kept for the caller's
        ``GET /v1/model`` field. Raises VaedxError when the folder is unreadable or was fitted on a
        different encoder.
        """
        from vaedx.diagnose.encoder import check_encoder
        from vaedx.diagnose.model import DiagnosisModel
        from vaedx.diagnose.predict import diagnose_images

        diag = DiagnosisModel.load(folder)
        encoder = _diagnosis_encoder(diag, loaded, check_encoder)

        def predict(x: np.ndarray) -> dict[str, Any]:
            row = diagnose_images(diag, encoder, x, k=0)[0]
            return {k: row[k] for k in ("class", "probability", "probabilities")}

        info = {
            "threshold": diag.threshold,
            "threshold_rule": diag.threshold_rule,
            "classes": diag.class_names,
        }
        return cls(predict, diag.class_names, info), None

    def predict(self, x: np.ndarray) -> dict[str, Any]:
        return self._predict(x)
