"""MODEL_CARD.md: one renderer for run folders and diagnosis folders, always rebuilt from the folder's JSON.

Why rebuilt and never patched: a card edited in place drifts from the files it describes. Each writer
(training, calibration, ``vaedx evaluate``) first updates a JSON file in the folder (config.json,
thresholds.json, evaluations.json, diagnosis.json) and then re-renders the whole card from those files.
Why here, in ``runs``: this is the lowest layer that knows a run folder's layout; the diagnosis layer builds
its card from the same :class:`Card` pieces, and the evaluate layer only records figures with
:func:`record_evaluation` and asks the folder's writer to re-render.

Privacy: a card holds counts and settings only. Patient ids, file paths of images and the store's source
folder (which may be named after a patient) are never written; the store is named by its folder name.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaedx.atomic import atomic_write_json, atomic_write_text
from vaedx.data.splits import patient_overlap
from vaedx.data.store import TensorStore
from vaedx.models.config import KIND_NAMES
from vaedx.runs.folder import RunFolder

CARD_FILE = "MODEL_CARD.md"
EVALUATIONS_FILE = "evaluations.json"
KEY_FACTS = "Key facts"
INTENDED_USE = (
    "Research use only: for studying anomaly detection and diagnosis methods on medical images. "
    "Not a medical device and not for clinical decisions about any patient; figures below come from "
    "the data sets named here and do not transfer to other scanners, sites or populations."
)
FEW_PATIENTS = 50  # below this many training patients the card says the figures rest on few patients
PATHS = frozenset({"store", "out"})  # settings that are paths: never shown (a folder may name a patient)


# ------------------------------------------------------------------------------------------ rendering
def fmt(v: Any) -> str:
    """A markdown cell: 4 significant digits, a (point, low, high) or {point, low, high} with its CI.

    A triple is read as a CI only when it holds a float: three integers are a list (widths 32, 64, 128).
    """
    if isinstance(v, dict) and "point" in v:
        v = (v["point"], v.get("low"), v.get("high")) if v.get("low") is not None else v["point"]
    numbers = isinstance(v, list | tuple) and all(isinstance(x, int | float) for x in v)
    if numbers and len(v) == 3 and any(isinstance(x, float) for x in v):
        return f"{v[0]:.4g} (95% CI {v[1]:.4g} to {v[2]:.4g})"
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        return ", ".join(fmt(x) for x in v) or "none"
    if isinstance(v, dict):
        return json.dumps(v, default=str)
    return str(v).replace("|", "/").replace("\n", " ")


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]


@dataclass
class Card:
    """A title, key facts and titled sections of markdown lines, rendered in that order."""

    title: str
    intro: str
    facts: list[tuple[str, Any]] = field(default_factory=list)
    sections: list[tuple[str, list[str]]] = field(default_factory=list)

    def add(self, heading: str, lines: list[str]) -> None:
        self.sections.append((heading, lines))

    def render(self) -> str:
        out = [
            f"# {self.title}",
            "",
            self.intro,
            "",
            f"## {KEY_FACTS}",
            "",
            *md_table(["fact", "value"], self.facts),
        ]
        for heading, lines in self.sections:
            out += ["", f"## {heading}", "", *lines]
        return "\n".join(out) + "\n"

    def write(self, folder: str | Path) -> Path:
        return atomic_write_text(Path(folder) / CARD_FILE, self.render())


def bullets(items: Iterable[str]) -> list[str]:
    return [f"- {s}" for s in items]


def settings_table(settings: dict[str, Any], skip: frozenset[str] = PATHS) -> list[str]:
    return md_table(["setting", "value"], [(k, v) for k, v in settings.items() if k not in skip])


# ------------------------------------------------------------------------------------------ data facts
def label_counts(store: TensorStore, idx: np.ndarray) -> dict[str, int]:
    """Images per label name among rows ``idx`` ('unlabelled' for -1)."""
    names = [*store.label_names, "unlabelled"]
    labs, n = np.unique(store.labels[idx], return_counts=True)
    return {names[int(lab)]: int(c) for lab, c in zip(labs, n, strict=True)}


def store_facts(store: TensorStore) -> dict[str, Any]:
    """Counts and settings of a store that a card may show: no patient id, no path, no source folder."""
    pids = np.asarray([str(p or "") for p in store.patient_ids], dtype=object)
    splits = np.asarray([str(s or "none") for s in store.splits], dtype=object)
    known = pids != ""
    per_split = {str(s): len(set(pids[(splits == s) & known])) for s in dict.fromkeys(splits)}
    volumes = store.meta.get("volumes") or {}
    return {
        "name": Path(store.root).name,
        "n": len(store),
        "image_shape": list(store.image_shape),
        "label_names": list(store.label_names),
        "counts": store.counts(),
        "has_masks": store.masks is not None,
        "n_with_mask": int(sum(bool(m) for m in store.records.get("has_mask", []))),
        "patients": {
            "total": len(set(pids[known])),
            "per_split": per_split,
            "missing_ids": int((~known).sum()),
            "one_image_each": bool(known.all()) and len(set(pids)) == len(pids),
            "in_several_splits": len(patient_overlap(list(splits), list(pids))),
        },
        "splits_assigned": int(store.meta.get("splits_assigned", 0) or 0),
        "n_skipped": len(store.meta.get("skipped") or []),
        "n_volumes": len(volumes),
        "n_spacing_assumed": sum(bool(v.get("spacing_assumed")) for v in volumes.values()),
    }


def data_lines(facts: dict[str, Any] | None, used: dict[str, dict[str, int]]) -> list[str]:
    """The store's images per split x label, the images this model used, and patients per split."""
    lines: list[str] = []
    if facts:
        counts = facts["counts"]
        labels = list(dict.fromkeys([*facts["label_names"], *(lab for c in counts.values() for lab in c)]))
        rows = [[s, *[c.get(lab, 0) for lab in labels], sum(c.values())] for s, c in counts.items()]
        shape = "x".join(map(str, facts["image_shape"]))
        lines += [f"Store `{facts['name']}`: {facts['n']} images of {shape} (channels x height x width).", ""]
        lines += [
            "Images in the store per split and label:",
            "",
            *md_table(["split", *labels, "total"], rows),
        ]
        pats = facts["patients"]
        per = ", ".join(f"{s} {n}" for s, n in pats["per_split"].items())
        lines += ["", f"Patients (distinct patient ids, never listed): {pats['total']} ({per})."]
    if used:
        labels = list(dict.fromkeys(lab for c in used.values() for lab in c))
        rows = [[role, *[c.get(lab, 0) for lab in labels], sum(c.values())] for role, c in used.items()]
        lines += ["", "Images this model used:", "", *md_table(["used for", *labels, "total"], rows)]
    return lines or ["No data summary was recorded with this model."]


def data_limitations(facts: dict[str, Any] | None, preprocess: dict[str, Any], n_train: int) -> list[str]:
    """Known limitations that follow from the data and its preprocessing."""
    if not facts:
        return ["The data summary was not recorded, so patient counts and split rules are unknown."]
    out = []
    pats = facts["patients"]
    if pats["one_image_each"] or pats["total"] == 0:
        out.append(
            "No patient ids group the images (each image is its own id), so splits are by image: images of "
            "one patient may sit in both the training and the test split, which flatters test figures."
        )
    else:
        train = pats["per_split"].get("train", pats["total"])
        few = " (few: the figures may not hold for other patients)" if train < FEW_PATIENTS else ""
        out.append(f"Trained on {n_train} images from {train} patient(s){few}.")
    if pats["missing_ids"]:
        out.append(f"{pats['missing_ids']} images have no patient id.")
    if pats["in_several_splits"]:
        out.append(f"{pats['in_several_splits']} patients have images in more than one split.")
    if facts["splits_assigned"]:
        out.append(
            f"Splits of {facts['splits_assigned']} images were assigned by vaedx (seeded, by patient)."
        )
    if facts["n_spacing_assumed"]:
        out.append(
            f"Pixel spacing was unknown for {facts['n_spacing_assumed']} of {facts['n_volumes']} volumes: "
            "1 mm was assumed."
        )
    if preprocess.get("brain_extraction", "none") == "none":
        out.append(
            "Skull not stripped (brain_extraction: none): in head images, tissue outside the brain is "
            "modelled and scored too."
        )
    if preprocess.get("size"):
        side = "x".join(map(str, preprocess["size"]))
        out.append(f"Images were resized to {side} pixels: detail finer than that is lost.")
    if facts["n_skipped"]:
        out.append(f"{facts['n_skipped']} source files could not be read and are not in the store.")
    return out


# ------------------------------------------------------------------------------------------ evaluations
def read_evaluations(folder: str | Path) -> dict[str, dict[str, Any]]:
    """evaluations.json: test figures recorded by ``vaedx evaluate``, keyed by the evaluation file."""
    path = Path(folder) / EVALUATIONS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # a damaged record loses its figures from the card, never the card itself
    return data.get("entries", {}) if isinstance(data, dict) else {}


def record_evaluation(folder: str | Path, key: str, entry: dict[str, Any]) -> Path:
    """Add or replace one evaluation's figures in the folder's evaluations.json (atomically)."""
    entries = {**read_evaluations(folder), key: entry}
    return atomic_write_json(Path(folder) / EVALUATIONS_FILE, {"version": 1, "entries": entries})


def evaluation_lines(entries: dict[str, dict[str, Any]], hint: str) -> list[str]:
    """One table per recorded evaluation: figures with their 95% bootstrap CIs."""
    if not entries:
        return [f"No test figures yet: {hint}."]
    lines: list[str] = []
    for key, e in entries.items():
        rows = e.get("rows") or []
        metrics = list(dict.fromkeys(m for r in rows for m in r.get("metrics", {})))
        lines += [f"**{e.get('title', 'evaluation')}** (`{key}`): {e.get('summary', '')}", ""]
        table = [[r.get("name", ""), *[r["metrics"].get(m) for m in metrics]] for r in rows]
        lines += [*md_table([e.get("row_name", "model"), *metrics], table), ""]
        lines += [f"- {n}" for n in e.get("notes", [])]
        if e.get("notes"):
            lines.append("")
    return lines[:-1] if lines and lines[-1] == "" else lines


def headline(entries: dict[str, dict[str, Any]]) -> str:
    """The first metric of the first row of each evaluation, for the key facts (an entry marked
    ``"headline": false``, such as per-volume figures beside the per-image ones, is left out)."""
    parts = []
    for e in entries.values():
        rows = e.get("rows") or []
        if rows and rows[0].get("metrics") and e.get("headline", True):
            name, value = next(iter(rows[0]["metrics"].items()))
            parts.append(f"{e.get('split', 'test')} {rows[0].get('name', '')} {name} {fmt(value)}".strip())
    return "; ".join(parts) or "none yet"


# ------------------------------------------------------------------------------------------ run folders
def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _metrics_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _num(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def run_card(root: str | Path) -> Card:
    """The card of a training run (or fine-tuned encoder run) from the JSON and CSV files in its folder."""
    run = RunFolder.of(root)
    ckpt = next((run.root / n for n in ("best", "last") if (run.root / n / "config.json").is_file()), None)
    config = _read_json(run.root / "config.json") or (_read_json(ckpt / "config.json") if ckpt else {})
    state = _read_json(ckpt / "state.json").get("run", {}) if ckpt else {}
    train, data = config.get("train", {}), config.get("data", {})
    # best/ holds the state of the best epoch; how far training went and why it stopped are in last/
    last = _read_json(run.root / "last" / "state.json").get("run", {})
    ended = {**state, **last, "budget": train.get("budget")}
    model, preprocess = train.get("model", {}), config.get("preprocess", {})
    facts, finetune = config.get("store_facts"), config.get("finetune")
    entries = read_evaluations(run.root)
    kind = KIND_NAMES.get(model.get("kind", "?"), model.get("kind", "?"))
    card = Card(
        f"Model card: {run.root.name}",
        f"A {kind} trained by vaedx {config.get('vaedx_version', '?')}. This card is generated from the "
        "files in this folder (config.json, metrics.csv, state.json, thresholds.json, evaluations.json) and "
        "is rewritten whenever they change; edit those, not this file.",
    )
    rows = _metrics_rows(run.metrics)
    best_epoch = state.get("best_epoch")
    best = next((r for r in rows if _num(r.get("epoch")) == best_epoch), rows[-1] if rows else {})
    label_filter = train.get("label_filter")
    card.facts = [
        ("model", f"{kind}, latent dim {model.get('latent_dim')}, widths {fmt(model.get('widths'))}"),
        ("input", "x".join(map(str, data.get("image_shape", []))) or "n/a"),
        ("trained on", f"{data.get('n_train', 'n/a')} images, labels {fmt(label_filter or 'all')}"),
        ("validated on", f"{data.get('n_val', 'n/a')} images"),
        ("epochs", f"{ended.get('epoch', 'n/a')} of {train.get('epochs', 'n/a')}, best {best_epoch}"),
        ("best validation loss", _num(best.get("val_loss")) if best else None),
        ("test figures", headline(entries)),
        ("intended use", "research only, not for clinical decisions"),
    ]
    card.add("Intended use", [INTENDED_USE])
    used = {k: data[f"{k}_labels"] for k in ("train", "val") if data.get(f"{k}_labels")}
    if finetune and finetune.get("labels"):
        used["encoder fine-tuning (labelled)"] = finetune["labels"]
    card.add("Data", data_lines(facts, used))
    card.add("Preprocessing", settings_table(preprocess))
    card.add("Model settings", settings_table(model))
    card.add("Training settings", settings_table({k: v for k, v in train.items() if k != "model"}))
    if train.get("preset") or train.get("detect"):
        card.add("Preset and scoring defaults", _preset_lines(train))
    card.add("Validation figures", _validation_lines(rows, best, ended, finetune))
    recipe = _read_json(run.root / "recipe.json")
    if recipe.get("trials"):
        card.add("Recipe", _recipe_lines(recipe))
    card.add("Calibrated thresholds", _threshold_lines(_read_json(run.thresholds)))
    card.add("Test figures", evaluation_lines(entries, "run `vaedx detect` then `vaedx evaluate anomaly`"))
    limits = data_limitations(facts, preprocess, int(data.get("n_train", 0) or 0))
    limits += _training_limitations(train, data, finetune)
    if model.get("kind") == "dae":
        limits.append(
            "A denoising autoencoder, not a VAE: its skip connections bypass the latent, so it has no ELBO; "
            "only the residual and SSIM scorers apply, and it finds anomalies only because it was trained "
            f"to remove {train.get('denoise', '?')} noise."
        )
    card.add("Known limitations", bullets(limits))
    return card


def _preset_lines(train: dict[str, Any]) -> list[str]:
    """The preset the run was trained with and how `vaedx detect` scores it when no scorer is named, so a
    reader of the card knows which values came from the preset (the tables above show the values used)."""
    lines = []
    if train.get("preset"):
        lines.append(
            f"Trained with `--preset {train['preset']}`; options typed on the command line or in a YAML file "
            "won over its values. The settings tables above show every value used."
        )
    det = train.get("detect") or {}
    if det:
        lines.append(
            f"`vaedx detect` without `--scorer` chooses scorer and post-processing on the validation split "
            f"and falls back to scorer {det.get('scorer')}, "
            f"post-processing {det.get('postprocess') or 'none'}, "
            f"options {fmt(det.get('options') or {})} when validation cannot decide."
        )
    return lines


def _validation_lines(
    rows: list[dict[str, str]], best: dict[str, str], state: dict[str, Any], finetune: dict[str, Any] | None
) -> list[str]:
    lines: list[str] = []
    if best and _num(best.get("val_loss")) is not None:
        cols = ("val_loss", "val_recon", "val_kl", "val_mse", "train_loss")
        lines += [f"Epoch {best.get('epoch')} (the checkpoint in best/), on the validation split:", ""]
        lines += md_table(["figure", "value"], [(c, _num(best.get(c))) for c in cols])
    elif rows:
        lines.append("No validation split: best/ was chosen on the training loss.")
    if state.get("stopped_early"):
        lines.append(f"Training stopped early after epoch {state.get('epoch')}.")
    elif state.get("stopped_by") == "budget":
        lines.append(
            f"Training stopped after epoch {state.get('epoch')}: another epoch would have passed the time "
            f"budget of {fmt(state.get('budget'))} minutes."
        )
    if finetune and finetune.get("encoder") == "frozen":
        lines += [
            "",
            "Encoder kept as the VAE trained it: on validation it beat every fine-tuning trial (see Recipe); "
            "validation AUC of a logistic regression on its posterior mean "
            f"{fmt(finetune.get('final_val_auc'))}.",
        ]
    elif finetune:
        lines += [
            "",
            f"Encoder fine-tuned on {finetune.get('n_labelled')} labelled images "
            f"({finetune.get('epochs')} epochs); final validation AUC {fmt(finetune.get('final_val_auc'))}.",
        ]
    return lines or ["No validation figures were recorded."]


def _recipe_lines(doc: dict[str, Any]) -> list[str]:
    """The settings search of ``diagnose finetune --recipe auto`` (recipe.json): each trial, its validation
    AUC and the winner, so a reader sees what the chosen settings beat and what the budget allowed."""
    lines = [
        f"Settings chosen on the validation split by {doc.get('selection', 'validation AUC')}: "
        f"{doc.get('trials_run')} trials in {fmt(doc.get('seconds_spent'))} s of a "
        f"{fmt(doc.get('budget_minutes'))}-minute budget; the winner is trial {doc.get('winner')}.",
        "",
    ]
    keys = ("encoder", "lr", "augment", "weight_decay", "class_weight", "best_epoch", "val_auc", "status")
    rows = [[t.get("trial"), *(t.get(k) for k in keys)] for t in doc["trials"]]
    return lines + md_table(["trial", *keys], rows)


def _threshold_lines(cal: dict[str, Any]) -> list[str]:
    scorers = cal.get("scorers") or {}
    if not scorers:
        return ["None saved in this folder (`vaedx detect --save-calibration` writes them)."]
    rows = []
    for name, entry in scorers.items():
        t = entry.get("thresholds", {})
        rows.append(
            [
                name,
                t.get("image_threshold"),
                t.get("target_specificity"),
                t.get("pixel_threshold"),
                t.get("n_calibration"),
                entry.get("split"),
                entry.get("normal_label"),
            ]
        )
    header = [
        "scorer",
        "image threshold",
        "target specificity",
        "pixel threshold",
        "calibration images",
        "split",
        "normal label",
    ]
    lines = [*md_table(header, rows), "", "Image thresholds come from normal validation images only."]
    chosen = cal.get("selection") or {}
    if chosen:
        value = chosen.get("value")
        figure = (
            f" {chosen.get('metric')} {fmt(value)}" if value is not None else f" ({chosen.get('metric')})"
        )
        lines += [
            "",
            f"Chosen by `vaedx detect` without `--scorer` on the {chosen.get('split', 'val')} split: "
            f"{chosen.get('scorer')} with post-processing {chosen.get('postprocess') or 'none'}:{figure}, "
            f"best of {len(chosen.get('candidates') or [])} candidates in {fmt(chosen.get('seconds'))} s.",
        ]
    return lines


def _training_limitations(train: dict[str, Any], data: dict[str, Any], finetune: Any) -> list[str]:
    out = []
    if train.get("label_filter"):
        out.append(f"Trained only on labels {fmt(train['label_filter'])}: other findings are out of scope.")
    if train.get("max_images"):
        out.append(f"Training was capped at {train['max_images']} images per split (a quick run).")
    if not data.get("n_val"):
        out.append("No validation images: the best checkpoint was chosen on the training loss.")
    if finetune:
        out.append(
            "The encoder was fine-tuned on labels; the decoder no longer matches it, so this run is "
            "for `vaedx diagnose fit` only, not for anomaly detection."
        )
    out.append("Not validated on external data, other scanners or a prospective cohort.")
    return out


def write_run_card(root: str | Path) -> Path:
    """Re-render ``<run>/MODEL_CARD.md`` from the run folder's files; returns its path."""
    run = RunFolder.of(root)
    return run_card(run.root).write(run.root)


def key_facts(folder: str | Path) -> list[tuple[str, str]]:
    """The key facts table of a folder's MODEL_CARD.md, read back (for the HTML report)."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        start = lines.index(f"## {KEY_FACTS}") + 4  # heading, blank, header row, separator
    except ValueError:
        return []
    out = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if len(cells) == 2:
            out.append((cells[0], cells[1]))
    return out
