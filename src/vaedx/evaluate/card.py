"""Test figures into the evaluated model's MODEL_CARD.md, after ``vaedx evaluate anomaly|diagnosis``.

Why a record and a re-render: the card is never patched. The figures (points with their 95 % CIs, how the
bootstrap resampled, the thresholds detect applied) go into the model folder's evaluations.json, keyed by
the evaluation file they summarise, and the folder's card is rendered again from its JSON files. The model
of an anomaly evaluation is the run that ``vaedx detect`` recorded in detect.json; a diagnosis evaluation
belongs to the diagnosis folder it evaluated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaedx.anomaly.output import META_FILE, read_json_object
from vaedx.diagnose.card import write_diagnosis_card
from vaedx.evaluate.anomaly import LABELS, to_json, undefined_notes, volume_notes, volume_table_rows
from vaedx.runs.folder import RunFolder
from vaedx.runs.model_card import fmt, record_evaluation, write_run_card


def _bootstrap(b: dict[str, Any]) -> str:
    return f"95% CIs by bootstrap over {b.get('unit', 'image')}s ({b.get('n_boot', '?')} resamples)"


def anomaly_entries(result: dict[str, Any], source: Path, meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The card's record of one ``evaluate_anomaly`` result: image/pixel figures, and volume figures."""
    res = to_json(result)
    split = meta.get("split") or "test"
    rows = []
    for name, entry in res["scorers"].items():
        m = entry["metrics"]
        rows.append(
            {
                "name": name,
                "metrics": {
                    LABELS.get(k, k): m.get(f"{k}_ci", v) for k, v in m.items() if not k.endswith("_ci")
                },
            }
        )
    summary = (
        f"{res['n_labelled']} labelled images of the {split} split, {res['n_abnormal']} abnormal "
        f"(normal label '{res.get('normal_label')}'); {_bootstrap(res['bootstrap'])}."
    )
    key = str(source)
    out = {
        key: {
            "kind": "anomaly",
            "title": "Anomaly detection",
            "split": split,
            "summary": summary,
            "row_name": "scorer",
            "rows": rows,
            "notes": _threshold_notes(meta) + undefined_notes(res),
        }
    }
    volume_rows = volume_table_rows(res)
    if volume_rows:
        out[f"{key}#volumes"] = {
            "kind": "anomaly-volumes",
            "headline": False,
            "title": "Anomaly detection per volume (patient)",
            "split": split,
            "summary": "CIs by bootstrap over volumes.",
            "row_name": "scorer",
            "rows": [{"name": r.pop("scorer"), "metrics": r} for r in volume_rows],
            "notes": volume_notes(res),
        }
    return out


def _threshold_notes(meta: dict[str, Any]) -> list[str]:
    """The thresholds detect applied (calibrated on normal validation images), one line per scorer."""
    notes = []
    for name, t in (meta.get("thresholds") or {}).items():
        if not t:
            notes.append(f"{name}: no calibrated threshold was applied")
            continue
        pixel = (
            f", pixel threshold {fmt(t['pixel_threshold'])}" if t.get("pixel_threshold") is not None else ""
        )
        notes.append(
            f"{name}: image threshold {fmt(t.get('image_threshold'))} at target specificity "
            f"{fmt(t.get('target_specificity'))} ({t.get('n_calibration')} normal validation images){pixel}"
        )
    return notes


def record_anomaly_evaluation(pred: str | Path, target: str | Path, result: dict[str, Any]) -> Path | None:
    """Record ``result`` (of ``evaluate_anomaly(pred, ...)``, saved at ``target``) in the card of the run
    that detect used; returns the card, or None when that run folder is no longer there."""
    meta_file = Path(pred) / META_FILE
    meta = read_json_object(meta_file) if meta_file.is_file() else {}
    if not meta.get("model"):
        return None
    run = RunFolder.of(meta["model"])
    if not any((run.root / n / "config.json").is_file() for n in ("best", "last")):
        return None
    for key, entry in anomaly_entries(result, Path(target).resolve(), meta).items():
        record_evaluation(run.root, key, entry)
    return write_run_card(run.root)


def diagnosis_entry(result: dict[str, Any]) -> dict[str, Any]:
    """The card's record of one ``evaluate_probabilities`` result (with its ``split``)."""
    ci, report, split = result.get("ci", {}), result.get("report", {}), result.get("split", "test")
    n = (result.get("table") or [{}])[0].get("n")
    notes = []
    if report.get("confusion_matrix") is not None:
        notes.append(f"confusion matrix (rows true, columns predicted): {report['confusion_matrix']}")
    if report.get("confusion_matrix_normalised") is not None:
        shares = [
            [round(v, 3) for v in r] if r is not None else None for r in report["confusion_matrix_normalised"]
        ]
        notes.append(f"row-normalised (share of each true class): {shares}")
    per_class = [  # three or more classes: one-vs-rest AUC and argmax sensitivity/specificity per class
        {"name": r["class"], "metrics": {k: r[k] for k in ("auc", "sensitivity", "specificity")}}
        for r in result.get("per_class") or []
    ]
    return {
        "kind": "diagnosis",
        "title": "Diagnosis",
        "split": split,
        "summary": f"{n} images of the {split} split; {_bootstrap(result['bootstrap'])}.",
        "row_name": "model",
        "rows": [{"name": "diagnosis", "metrics": dict(ci)}, *per_class],
        "notes": notes,
    }


def record_diagnosis_evaluation(folder: str | Path, target: str | Path, result: dict[str, Any]) -> Path:
    """Record ``result`` (saved at ``target``) in the diagnosis folder's card; returns the card."""
    record_evaluation(folder, str(Path(target).resolve()), diagnosis_entry(result))
    return write_diagnosis_card(folder)
