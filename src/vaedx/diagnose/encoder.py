"""The encoder a diagnosis stands on: load it (a run folder or an M2 folder), record its weights' hash, and
refuse a different one later, so a retrained encoder is never silently paired with an old classifier.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaedx.data.preprocess import PreprocessConfig
from vaedx.diagnose.model import DiagnosisModel
from vaedx.errors import InputError, ModelMismatchError
from vaedx.runs import checkpoint as ck


def as_loaded(model: Any, device: str = "cpu") -> Any:
    """A LoadedModel from a run/checkpoint path, a LoadedSemi from an M2 folder, or the object itself."""
    if isinstance(model, str | Path):
        from vaedx.runs.networks import SEMI_JSON, load_semi

        if (Path(model) / SEMI_JSON).is_file():
            return load_semi(model, device=device)
        from vaedx.runs.loaded import load_model

        return load_model(model, device=device)
    if not hasattr(model, "preprocess") or not hasattr(model, "path"):
        raise ModelMismatchError(
            "diagnosis needs a trained model from vaedx.load_model (with its preprocessing)"
        )
    return model


def encoder_record(loaded: Any) -> dict[str, Any]:
    """Where the encoder lives and the hash of its weights, so a retrained one is never silently used."""
    weights = Path(loaded.path) / ck.MODEL_FILE
    return {"path": str(Path(loaded.path).resolve()), "sha256": ck.sha256(weights), "kind": loaded.kind}



def check_encoder(diag: DiagnosisModel, loaded: Any) -> None:
    """Refuse an encoder whose weights or preprocessing differ from the one the diagnosis was fitted on."""
    want = diag.encoder.get("sha256")
    got = ck.sha256(Path(loaded.path) / ck.MODEL_FILE)
    if want and got != want:
        raise ModelMismatchError(
            f"encoder weights differ from the ones this diagnosis was fitted on (sha256 {got[:12]} vs "
            f"{want[:12]}); refit the diagnosis for this encoder",
            loaded.path,
        )
    if diag.preprocess:
        diffs = loaded.preprocess.describe_difference(PreprocessConfig.model_validate(diag.preprocess))
        if diffs:
            raise ModelMismatchError(f"encoder preprocessing differs from the diagnosis: {'; '.join(diffs)}")


def load_encoder(diag: DiagnosisModel, path: str | Path | None = None, device: str = "cpu") -> Any:
    """The encoder recorded in the diagnosis (or at ``path``), checked against the recorded hash."""
    where = path or diag.encoder.get("path")
    if not where:
        raise InputError("the diagnosis does not record its encoder; pass the encoder's run folder")
    loaded = as_loaded(where, device=device)
    check_encoder(diag, loaded)
    return loaded
