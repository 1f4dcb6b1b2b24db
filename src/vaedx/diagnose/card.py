"""MODEL_CARD.md of a diagnosis folder, rendered from diagnosis.json and evaluations.json alone.

Why from the files: ``vaedx diagnose fit`` writes the card with the folder, and ``vaedx evaluate diagnosis``
re-renders it after recording its test figures, so both produce the same card for the same files. The
encoder run's settings are read from its config.json when it is still where it was; the card says so when
it is not. ``train_refs`` (image paths) and ``train_rows`` are never shown: only counts and settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vaedx.runs.model_card import (
    INTENDED_USE,
    Card,
    bullets,
    data_limitations,
    data_lines,
    evaluation_lines,
    fmt,
    headline,
    md_table,
    read_evaluations,
    settings_table,
)

DIAGNOSIS_JSON = "diagnosis.json"
VALIDATION_FIGURES = ("auc", "accuracy", "sensitivity", "specificity", "f1", "macro_auc", "n")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def diagnosis_card(folder: str | Path) -> Card:
    """The card of a ``vaedx diagnose fit`` folder."""
    folder = Path(folder)
    doc = _read(folder / DIAGNOSIS_JSON)
    data, chosen, enc = doc.get("data", {}), doc.get("chosen", {}), doc.get("encoder", {})
    clf, val = doc.get("classifier", {}), doc.get("validation", {})
    facts, entries = data.get("store_facts"), read_evaluations(folder)
    enc_config = _read(Path(enc.get("path", "")) / "config.json") if enc.get("path") else {}
    classes = fmt(doc.get("class_names"))
    card = Card(
        f"Model card: {folder.name} (diagnosis)",
        "A calibrated classifier on the latent features of a vaedx encoder. This card is generated from "
        "diagnosis.json and evaluations.json in this folder and rewritten when they change; edit those, "
        "not this file.",
    )
    thr = doc.get("threshold")
    card.facts = [
        (
            "classifier",
            f"{clf.get('kind', '?')} ({clf.get('calibration', '?')} calibration), classes {classes}",
        ),
        ("encoder", f"{enc.get('kind', '?')}, weights sha256 {str(enc.get('sha256', ''))[:12] or 'n/a'}"),
        (
            "trained on",
            f"{data.get('n_labelled', 'n/a')} labelled images ({_share(data.get('labelled_fraction'))} "
            "of the training labels)",
        ),
        ("validated on", f"{data.get('n_val', 'n/a')} images (calibration and threshold)"),
        ("decision threshold", f"{fmt(thr)} ({doc.get('threshold_rule') or 'argmax'})"),
        ("validation AUC", val.get("auc", val.get("macro_auc"))),
        ("test figures", headline(entries)),
        ("intended use", "research only, not for clinical decisions"),
    ]
    card.add("Intended use", [INTENDED_USE])
    used = {k: data[f"{k}_labels"] for k in ("train", "val") if data.get(f"{k}_labels")}
    card.add("Data", data_lines(facts, used))
    card.add("Preprocessing", settings_table(doc.get("preprocess", {})))
    card.add("Model settings", _model_lines(doc, chosen, enc_config))
    figures = [(k, val[k]) for k in VALIDATION_FIGURES if k in val]
    card.add(
        "Validation figures",
        [
            f"On the {val.get('split', 'validation')} split; calibration and threshold were fitted on these "
            "very images, so the figures are optimistic. Report the test figures.",
            "",
            *md_table(["figure", "value"], figures),
        ],
    )
    card.add(
        "Calibrated thresholds",
        [
            f"Decision threshold {fmt(thr)} on P({doc.get('class_names', ['', '?'])[-1]}), "
            f"chosen by {doc.get('threshold_rule') or 'n/a'} on the validation split."
        ],
    )
    card.add("Test figures", evaluation_lines(entries, "run `vaedx evaluate diagnosis` on this folder"))
    limits = data_limitations(facts, doc.get("preprocess", {}), int(data.get("n_labelled", 0) or 0))
    if float(data.get("labelled_fraction", 1) or 1) < 1:
        limits.append(f"Only {_share(data['labelled_fraction'])} of the training labels were used.")
    if not enc_config:
        limits.append("The encoder run is not where it was when fitted; its settings are not shown.")
    limits.append("Not validated on external data, other scanners or a prospective cohort.")
    card.add("Known limitations", bullets(limits))
    return card


def _share(fraction: Any) -> str:
    return "n/a" if fraction is None else f"{float(fraction):.0%}"


def _model_lines(doc: dict[str, Any], chosen: dict[str, Any], enc_config: dict[str, Any]) -> list[str]:
    features = doc.get("features", {})
    rows = [
        ("classifier", chosen.get("classifier")),
        ("parameters", chosen.get("params")),
        ("cross-validated AUC", chosen.get("cv_auc")),
        ("cross-validation folds", chosen.get("cv_folds")),
        (
            "features",
            f"{fmt(features.get('include'))} of a {features.get('latent_dim')}-d latent"
            + (f", scorers {fmt(features['scorers'])}" if features.get("scorers") else ""),
        ),
        ("test-time augmentation", _tta_line(doc.get("tta") or {}, features.get("tta", "none"))),
        ("seed", doc.get("data", {}).get("seed")),
    ]
    lines = md_table(["setting", "value"], rows)
    model = enc_config.get("train", {}).get("model")
    if model:
        lines += ["", "Encoder settings (from the encoder run's config.json):", "", *settings_table(model)]
    return lines


def _tta_line(record: dict[str, Any], used: str) -> str:
    """The view set in use and, when it was chosen on validation, the AUC of each one tried."""
    tried = record.get("tried") or {}
    if record.get("mode") != "auto" or not tried:
        return used
    aucs = ", ".join(f"{k} {fmt(v.get('val_auc'))}" for k, v in tried.items())
    return f"{used} (chosen on validation; AUC {aucs}; kept only with a paired-bootstrap gain, p < 0.05)"


def write_diagnosis_card(folder: str | Path) -> Path:
    """Re-render ``<folder>/MODEL_CARD.md`` from the folder's JSON files; returns its path."""
    return diagnosis_card(folder).write(folder)
