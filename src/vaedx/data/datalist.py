"""MONAI / Medical Segmentation Decathlon datalist JSON as a manifest (``vaedx data index --datalist``).

The format MONAI's ``load_decathlon_datalist`` reads::

    {"training":   [{"image": "imagesTr/a.nii.gz", "label": "labelsTr/a.nii.gz"}, ...],
     "validation": [{"image": ..., "label": ...}],
     "test":       ["imagesTs/c.nii.gz", {"image": ...}]}

Lists map to splits (training -> train, validation -> val, test -> test). Paths are relative to the base
folder (the JSON's folder unless one is given) or absolute. ``label`` is a mask when it is a path, a class
when it is a number or a name (``"mask"`` then gives the mask path); a ``patient_id`` (or ``patient``,
``subject``) key names the patient, otherwise the first folder of the image path, or the file stem. Other
scalar keys (``fold``, ...) become manifest columns. Volumes give one row per slice as any NIfTI does.
Without a ``validation`` list a val split is carved out of ``training`` by the patient-level splitter
(train:val ratio of ``--fractions``), so no training patient leaks into it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vaedx.data.index import IndexOptions, _default_patient, _expand, _problem, carve_validation
from vaedx.data.manifest import Manifest, validate
from vaedx.errors import InputError, VaedxError
from vaedx.io import detect_format

LISTS = {"training": "train", "validation": "val", "test": "test"}
PATIENT_KEYS = ("patient_id", "patient", "subject", "subject_id", "case")


def is_datalist(path: Path) -> bool:
    """A .json file whose top-level object has a training, validation or test list."""
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(doc, dict) and any(isinstance(doc.get(k), list) for k in LISTS)


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("datalist not found", path) from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"not a readable JSON datalist ({str(e).splitlines()[0]})", path) from None
    if not isinstance(doc, dict) or not any(isinstance(doc.get(k), list) for k in LISTS):
        raise InputError("not a datalist: expected a JSON object with training/validation/test lists", path)
    return doc


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _row(entry: Any, split: str, where: str) -> dict[str, str]:
    """One manifest row (before slicing volumes) for one datalist entry."""
    if isinstance(entry, str):
        entry = {"image": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("image"), str) or not entry["image"]:
        raise InputError(f"{where} needs an 'image' path (got {json.dumps(entry)[:80]})")
    label, mask = entry.get("label"), entry.get("mask", "")
    if not isinstance(mask, str):
        raise InputError(f"{where}: 'mask' must be a path")
    if isinstance(label, list):
        raise InputError(f"{where}: list labels (several label files or one-hot vectors) are not supported")
    cls = ""
    if isinstance(label, bool | int | float):
        cls = str(int(label)) if float(label).is_integer() else str(label)
    elif isinstance(label, str) and label:
        looks_like_path = not _number(label) and ("/" in label or "." in Path(label).name)
        if looks_like_path and not mask:
            mask = label
        else:
            cls = label
    patient = next((str(entry[k]) for k in PATIENT_KEYS if entry.get(k) not in (None, "")), "")
    row = {
        "path": entry["image"],
        "label": cls,
        "mask": mask,
        "split": split,
        "patient_id": patient or _default_patient(entry["image"]),
    }
    skip = {"image", "label", "mask", *PATIENT_KEYS}
    extra = {k: v for k, v in entry.items() if k not in skip and k not in row}
    row.update({k: str(v) for k, v in extra.items() if isinstance(v, str | int | float)})
    return row


def index_datalist(path: Path, base: Path | None, opts: IndexOptions) -> Manifest:
    """Rows of a datalist JSON, paths resolved against ``base`` (default: the JSON's folder)."""
    doc = _read(path)
    root = Path(base) if base is not None else path.parent
    if not root.is_dir():
        raise InputError("datalist base folder not found", root)
    m = Manifest(rows=[], root=root, source=path)
    for key, split in LISTS.items():
        entries = doc.get(key, [])
        if not isinstance(entries, list):
            raise InputError(f"'{key}' must be a list of entries", path)
        for i, entry in enumerate(entries):
            base_row = _row(entry, split, f"{path}: {key}[{i}]")
            file = m.resolve(base_row["path"]).file
            if not file.is_file():
                _problem(m, opts, f"{key}[{i}]: image file not found", file)
                continue
            try:
                m.rows.extend(_expand(file, detect_format(file), base_row, opts))
            except VaedxError as e:
                _problem(m, opts, f"{key}[{i}]: {e.problem}", file)
    if not m.rows:
        raise InputError("datalist lists no readable images", path)
    if not doc.get("validation"):
        carve_validation(m, [r for r in m.rows if r["split"] == "train"], opts)
    return validate(m, opts.on_error)
