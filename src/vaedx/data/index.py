"""Build a manifest from what people actually have on disk.

Sources understood (``index_source`` picks one):

* a folder of class sub-folders (label = sub-folder name), or a plain folder (unlabelled);
* split folders (``train/``, ``val/``, ``test/``, also ``training``, ``validation``, ``testing``) each holding
  either of those: the split comes from the folder; without a ``val/`` folder there is no validation split;
* a folder plus a labels CSV (columns ``file,label[,patient_id][,mask][,split]``);
* images with masks beside them: ``X_mask.png`` next to ``X.png`` is the mask of ``X`` (not a row itself);
* a MedMNIST ``.npz`` (one row per image, split and label from the archive);
* NIfTI volumes and multi-frame DICOM (one row per kept slice/frame);
* DICOM series: a folder whose DICOM images, in it and below it, are one series (one SeriesInstanceUID,
  at least two files: :mod:`vaedx.io.series_folder`, the rule ``vaedx detect --input`` follows too), or a
  ``.zip`` of one series given as the source, is one volume with one row per kept slice of the series in
  model orientation; any other folder of DICOM files (one image per patient, several series mixed in one
  folder) keeps one row per file;
* a CSV table: a vaedx manifest, the LGG layout (``brain_lgg/manifest.csv``, recognised by its columns), or
  any table with ``--path-col``/``--label-col``/``--mask-col``/``--patient-col`` naming its columns.

Rows of a volume carry ``volume`` (the NIfTI file name, the LGG case folder, the DICOM series folder or zip
name; a relative path where two volumes would share a name) and ``slice_index``, the slice's index in the
volume in model orientation (see :mod:`vaedx.data.manifest`), so ``vaedx data prepare`` can rebuild the
volume and normalise it as a whole.

Labels come from sub-folder names when that is likely (no masks, no DICOM/NIfTI, at most
``MAX_CLASS_FOLDERS`` sub-folders, no images loose in the top folder); ``--folder-labels`` or
``--no-folder-labels`` decides explicitly.

Patient id, in order: a patient column; otherwise the first folder below the source folder (below the
class folder when labels come from folders), which is how per-patient DICOM/PNG trees are laid out;
otherwise the file stem (each file its own patient). Splits later keep every patient in one split, so the
rule matters: check the ``patients`` line of ``vaedx data inspect``.

Indexing only sniffs formats; pixels are decoded (and corrupt files found) by ``vaedx data prepare``, except
for volumes and DICOM, whose slice/frame count must be known to make the rows.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vaedx.data.manifest import Manifest, OnError, check_labels, validate
from vaedx.data.splits import DEFAULT_FRACTIONS, assign_splits
from vaedx.errors import ConfigError, InputError, VaedxError
from vaedx.io import detect_format, is_dicom_series, read_any, read_dicom_series, read_npz
from vaedx.io.slice_stack import slice_number

# Columns of brain_lgg/manifest.csv and what they mean in a vaedx manifest.
LGG_COLUMNS = {"image": "path", "tumour": "label", "mask": "mask", "patient": "patient_id"}
LGG_LABEL_NAMES = ["no_tumour", "tumour"]
# With more sub-folders than this, sub-folders are taken for patients rather than classes (unless told).
MAX_CLASS_FOLDERS = 10
# MedMNIST archives carry integer labels only; names from the MedMNIST v2 documentation.
KNOWN_LABEL_NAMES = {"pneumoniamnist": ["normal", "pneumonia"]}
# Files that live beside images but are never images: ignored rather than reported.
NOT_IMAGES = {
    ".csv", ".tsv", ".txt", ".md", ".json", ".yaml", ".yml", ".html", ".pdf", ".py", ".xlsx", ".xls",
    ".zip", ".log", ".ini", ".xml",
}  # fmt: skip


@dataclass
class Columns:
    """Which CSV column holds each manifest field (None = not present / use the default rule)."""

    path: str | None = None
    label: str | None = None
    mask: str | None = None
    patient: str | None = None
    split: str | None = None


@dataclass
class IndexOptions:
    labels: Path | None = None
    label_names: list[str] | None = None
    folder_labels: bool | None = None  # None: decide as _looks_like_classes does
    mask_suffix: str = "_mask"
    axis: int = 2
    min_foreground: float = 0.0
    from_csv: bool = False
    columns: Columns = field(default_factory=Columns)
    on_error: OnError = "fail"
    datalist: Path | None = None  # a MONAI/Decathlon datalist JSON; the source is then its base folder
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS  # train:val ratio of a carved val split
    seed: int = 0


# ----------------------------------------------------------------------------------------------- folders
def _natural(p: Path) -> list[object]:
    """Sort ``_2`` before ``_10`` so slices keep their order."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.as_posix())]


def _stem(p: Path) -> str:
    name = p.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else p.stem


def _candidates(folder: Path) -> list[Path]:
    out = []
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        if p.suffix.lower() in NOT_IMAGES:
            continue
        out.append(p)
    return sorted(out, key=_natural)


def _split_masks(files: list[Path], suffix: str) -> tuple[list[Path], dict[tuple[Path, str], Path]]:
    images, masks = [], {}
    for f in files:
        stem = _stem(f)
        if suffix and stem.endswith(suffix) and len(stem) > len(suffix):
            masks[(f.parent, stem[: -len(suffix)])] = f
        else:
            images.append(f)
    return images, masks


# Top-level folder names that mean a split (the layout data/{train,val,test}/{class}/ of many public sets).
SPLIT_FOLDERS = {
    "train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}  # fmt: skip


def _split_folders(folder: Path) -> dict[Path, str] | None:
    """{sub-folder: split} when the folder's sub-folders are split folders (train/, test/, ...), else None.

    A mix of split folders and other folders is refused: guessing would put data in the wrong split.
    """
    subs = [d for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    named = {d: SPLIT_FOLDERS[d.name.lower()] for d in subs if d.name.lower() in SPLIT_FOLDERS}
    if not named:
        return None
    others = [d.name for d in subs if d not in named and any(f.is_file() for f in d.rglob("*"))]
    if others:
        splits = ", ".join(sorted(d.name for d in named))
        raise InputError(
            f"folder mixes split folders ({splits}) with other folders ({', '.join(others[:3])}); "
            "put every image under a split folder, or none",
            folder,
        )
    return named


def _index_split_folders(folder: Path, splits: dict[Path, str], opts: IndexOptions) -> Manifest:
    """Each split folder indexed as a folder of its own (class sub-folders give labels), paths kept
    relative to ``folder`` and the split taken from the folder name."""
    m = Manifest(rows=[], root=folder)
    for sub, split in splits.items():
        part = index_folder(sub, opts)
        prefix = sub.relative_to(folder).as_posix()
        for r in part.rows:
            r["path"] = f"{prefix}/{r['path']}"
            if r.get("mask"):
                r["mask"] = f"{prefix}/{r['mask']}"
            r["split"] = split
        m.rows += part.rows
        m.skipped += part.skipped
    return m


def index_folder(folder: Path, opts: IndexOptions) -> Manifest:
    if opts.labels is None:
        splits = _split_folders(folder)
        if splits is not None:
            return _index_split_folders(folder, splits, opts)
    images, masks = _split_masks(_candidates(folder), opts.mask_suffix)
    if opts.labels is not None:
        return _index_labels_csv(folder, opts, masks)
    m = Manifest(rows=[], root=folder)
    formats = _sniff(images, m, opts)
    loose = any(f.parent == folder for f in formats)
    use_folders = opts.folder_labels
    if use_folders is None:
        use_folders = _looks_like_classes(folder, formats, loose, bool(masks))
    if use_folders and loose:
        raise InputError(
            "labels from class folders requested, but some images sit directly in the folder", folder
        )
    depth = 1 if use_folders else 0
    series = {d for d in _series_folders(formats) if _index_series(d, folder, depth, m, opts)}
    rest = {f: fmt for f, fmt in formats.items() if not _in_series(f, series)}
    _index_files(rest, folder, opts, depth, m, masks)
    paired = {r["mask"] for r in m.rows if r.get("mask")}
    for mask in masks.values():
        rel = mask.relative_to(folder).as_posix()
        if rel not in paired:
            _problem(m, opts, "mask has no image beside it", mask)
    return m


def _looks_like_classes(folder: Path, formats: dict[Path, str], loose: bool, masks: bool) -> bool:
    """Sub-folders are classes unless they look like patients: masks beside images (segmentation sets),
    DICOM/NIfTI (patient/study/series trees), or more than MAX_CLASS_FOLDERS of them."""
    tops = {f.relative_to(folder).parts[0] for f in formats}
    volumetric = any(fmt in ("dicom", "nifti") for fmt in formats.values())
    return bool(formats) and not loose and not masks and not volumetric and len(tops) <= MAX_CLASS_FOLDERS


def _problem(m: Manifest, opts: IndexOptions, reason: str, path: Path) -> None:
    if opts.on_error == "fail":
        raise InputError(reason, path)
    m.skipped.append({"path": str(path), "reason": reason})


def _sniff(files: Sequence[Path], m: Manifest, opts: IndexOptions) -> dict[Path, str]:
    """Format of each file from its first bytes; unreadable or unsupported files are problems."""
    out = {}
    for f in files:
        try:
            fmt = detect_format(f)
        except VaedxError as e:
            _problem(m, opts, e.problem, f)
            continue
        if fmt == "npz":
            _problem(m, opts, "npz archive inside a folder; index it on its own", f)
        else:
            out[f] = fmt
    return out


def _index_files(
    formats: dict[Path, str],
    root: Path,
    opts: IndexOptions,
    label_depth: int,
    m: Manifest,
    masks: dict[tuple[Path, str], Path] | None = None,
) -> Manifest:
    """Rows for image files; ``label_depth`` 1 means the first folder below ``root`` is the class."""
    masks = masks or {}
    for f, fmt in formats.items():
        rel = f.relative_to(root)
        parts = rel.parts
        label = parts[0] if label_depth else ""
        patient = parts[label_depth] if len(parts) - 1 > label_depth else _stem(f)
        mask = masks.get((f.parent, _stem(f)))
        base = {
            "path": rel.as_posix(),
            "label": label,
            "mask": mask.relative_to(root).as_posix() if mask else "",
            "split": "",
            "patient_id": patient,
        }
        try:
            m.rows.extend(_expand(f, fmt, base, opts))
        except VaedxError as e:
            _problem(m, opts, e.problem, f)
    return m


def _expand(f: Path, fmt: str, base: dict[str, str], opts: IndexOptions) -> list[dict[str, str]]:
    """One row for a 2-D image; one per kept slice/frame for volumes and multi-frame DICOM."""
    if fmt not in ("nifti", "dicom"):
        return [base]
    images = read_any(f, axis=opts.axis, min_foreground=opts.min_foreground)
    if fmt == "dicom" and len(images) == 1:
        return [base]
    rows = []
    for i, im in enumerate(images):
        row = dict(base)
        if fmt == "nifti":
            row["volume"] = f.name
            row["slice_index"] = str(im.meta.get("slice_index", i))
            row["axis"] = str(im.meta.get("axis", opts.axis))
        else:
            row["frame"] = str(im.meta.get("frame_index", i))
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------- DICOM series
def _series_folders(formats: dict[Path, str]) -> list[Path]:
    """Folders holding DICOM files that are one series by :func:`vaedx.io.is_dicom_series` (the rule
    ``vaedx detect --input`` uses), in file order; a folder inside a series folder is part of that series
    (outer folders are asked first).

    Only folders that hold DICOM files themselves are asked, so a patient folder around a series folder
    stays the patient and the series keeps its own name.
    """
    holders = list(dict.fromkeys(f.parent for f, fmt in formats.items() if fmt == "dicom"))  # file order
    series: list[Path] = []
    for folder in sorted(holders, key=lambda d: len(d.parts)):
        if not _in_series(folder, series) and is_dicom_series(folder):
            series.append(folder)
    return [d for d in holders if d in series]


def _in_series(path: Path, series: Iterable[Path]) -> bool:
    return any(path.is_relative_to(s) for s in series)


def _index_series(folder: Path, root: Path, label_depth: int, m: Manifest, opts: IndexOptions) -> bool:
    """Rows of the series in ``folder``; False (no rows) when its slices do not form one regular volume
    (a gap, mixed orientations), whose files are then indexed one by one as 2-D images."""
    rel = folder.relative_to(root)
    parts = rel.parts
    base = {
        "path": rel.as_posix(),
        "label": parts[0] if label_depth and parts else "",
        "mask": "",
        "split": "",
        "patient_id": parts[label_depth] if len(parts) - 1 > label_depth else folder.name,
    }
    try:
        m.rows.extend(_series_rows(folder, base, opts))
    except VaedxError:
        return False
    return True


def _series_rows(source: Path, base: dict[str, str], opts: IndexOptions) -> list[dict[str, str]]:
    """One row per axial slice of the series in model orientation that keeps ``min_foreground``."""
    data = read_dicom_series(source).reoriented("LPS").data
    lo, hi = float(data.min()), float(data.max())
    fraction = (data > lo).reshape(len(data), -1).mean(axis=1) if hi > lo else np.zeros(len(data))
    keep = [k for k in range(len(data)) if fraction[k] >= opts.min_foreground]
    return [{**base, "volume": source.name, "slice_index": str(k)} for k in keep]


# ------------------------------------------------------------------------------------------- CSV tables
def _read_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            sample = fh.read(4096)
            fh.seek(0)
            dialect = (
                csv.excel_tab if path.suffix.lower() == ".tsv" or "\t" in sample.split("\n")[0] else csv.excel
            )
            reader = csv.DictReader(fh, dialect=dialect)
            header = list(reader.fieldnames or [])
            rows = [{k: (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"not a readable CSV ({e})", path) from None
    if not header:
        raise InputError("empty CSV (no header row)", path)
    return header, rows


def _recognised(table: Path) -> bool:
    header, _ = _read_table(table)
    return "path" in header or set(LGG_COLUMNS) <= set(header)


def _columns_for(header: list[str], opts: IndexOptions, where: Path) -> tuple[Columns, list[str] | None]:
    """Explicit columns win; the rest come from the recognised layout (vaedx manifest, LGG, file,label)."""
    explicit = opts.columns
    lgg = set(LGG_COLUMNS) <= set(header)
    names = opts.label_names
    if lgg and not names and explicit.label in (None, "tumour") and explicit.path in (None, "image"):
        names = LGG_LABEL_NAMES
    if explicit.path is not None:
        base = Columns()
    elif "path" in header:
        base = Columns("path", "label", "mask", "patient_id", "split")
    elif lgg:
        base = Columns("image", "tumour", "mask", "patient", None)
    elif "file" in header:
        base = Columns("file", "label", "mask", "patient_id", "split")
    else:
        raise ConfigError(
            f"{where}: cannot tell which column holds the image path (columns: {', '.join(header)}); "
            "name it with --path-col"
        )
    merged = {}
    for key, col in vars(base).items():
        mine = getattr(explicit, key)
        merged[key] = mine if mine is not None else (col if col in header else None)
    return _checked(Columns(**merged), header, where), names


def _checked(c: Columns, header: list[str], where: Path) -> Columns:
    for name, col in vars(c).items():
        if col is not None and col not in header:
            raise ConfigError(f"{where}: no column {col!r} for {name} (columns: {', '.join(header)})")
    return c


def index_csv(path: Path, opts: IndexOptions) -> Manifest:
    """Turn any table of file paths (relative to the CSV's folder) into a manifest."""
    header, table = _read_table(path)
    cols, names = _columns_for(header, opts, path)
    used = {v for v in vars(cols).values() if v}
    rows = []
    for r in table:
        p = r.get(cols.path or "", "")
        row = {
            "path": p,
            "label": r.get(cols.label, "") if cols.label else "",
            "mask": r.get(cols.mask, "") if cols.mask else "",
            "split": r.get(cols.split, "") if cols.split else "",
            "patient_id": (r.get(cols.patient, "") if cols.patient else "") or _default_patient(p),
        }
        row.update({k: v for k, v in r.items() if k not in used and k not in row})
        rows.append(row)
    m = Manifest(rows=rows, root=path.parent, source=path)
    if set(LGG_COLUMNS) <= set(header) and cols.path == "image" and "volume" not in header:
        _lgg_volumes(m.rows)
    apply_label_names(m, names)
    return validate(m, opts.on_error)


def _lgg_volumes(rows: list[dict[str, str]]) -> None:
    """LGG rows as slices of their case folder's volume: ``slice_index`` = slice number - the case's first,
    the index into ``vaedx.io.read_lgg_patient(case folder).data``."""
    numbers = []
    for r in rows:
        r["volume"] = r.get("case_folder") or Path(r["path"]).parent.name
        text = r.get("slice", "")
        numbers.append(int(text) if text.isdigit() else slice_number(r["path"]))
    first: dict[str, int] = {}
    for r, n in zip(rows, numbers, strict=True):
        first[r["volume"]] = min(n, first.get(r["volume"], n))
    for r, n in zip(rows, numbers, strict=True):
        r["slice_index"] = str(n - first[r["volume"]])


def _default_patient(path: str) -> str:
    parts = Path(path.partition("#")[0]).parts
    return parts[0] if len(parts) > 1 else _stem(Path(path))


def _index_labels_csv(folder: Path, opts: IndexOptions, masks: dict[tuple[Path, str], Path]) -> Manifest:
    """Folder + ``labels.csv`` (``file,label[,patient_id][,mask][,split]``, files relative to the folder)."""
    labels = Path(opts.labels)  # type: ignore[arg-type]
    header, table = _read_table(labels)
    file_col = "file" if "file" in header else "path" if "path" in header else None
    if file_col is None or "label" not in header:
        raise InputError(f"labels CSV needs columns 'file' and 'label' (has: {', '.join(header)})", labels)
    rows = []
    for r in table:
        f = r.get(file_col, "")
        mask = r.get("mask", "")
        if not mask and f:
            found = masks.get(((folder / f).parent, _stem(Path(f))))
            mask = found.relative_to(folder).as_posix() if found else ""
        rows.append(
            {
                "path": f,
                "label": r.get("label", ""),
                "mask": mask,
                "split": r.get("split", ""),
                "patient_id": r.get("patient_id", "") or _default_patient(f),
            }
        )
    m = Manifest(rows=rows, root=folder, source=labels)
    apply_label_names(m, opts.label_names)
    return validate(m, opts.on_error)


def apply_label_names(m: Manifest, names: Sequence[str] | None) -> None:
    """Write class names instead of integer codes (code i -> names[i]); text labels must be among them."""
    if not names:
        return
    kind = check_labels(m.rows, m.where)
    m.label_names(names)  # raises on codes without a name / unknown text labels
    if kind == "numeric":
        for r in m.rows:
            if r.get("label"):
                r["label"] = names[int(float(r["label"]))]


def carve_validation(m: Manifest, rows: list[dict[str, str]], opts: IndexOptions) -> None:
    """Give some of ``rows`` (all of one fixed training split) to val by the patient-level splitter, with
    the train:val ratio of ``opts.fractions``; the source's own test split is left as it is."""
    train, val, _ = opts.fractions
    if val <= 0 or not rows:
        return
    for r in rows:
        r["split"] = ""
    ratio = (train / (train + val), val / (train + val), 0.0)
    assign_splits(Manifest(rows=rows, root=m.root, source=m.source), ratio, opts.seed)


# ------------------------------------------------------------------------------------------------- npz
def known_label_names(path: Path) -> list[str] | None:
    """Names for a MedMNIST archive known by file name (``pneumoniamnist.npz``, ``pneumoniamnist_64.npz``)."""
    return KNOWN_LABEL_NAMES.get(re.sub(r"_\d+$", "", _stem(path).lower()))


def index_npz(path: Path, opts: IndexOptions) -> Manifest:
    """One row per image; the patient id is the image's own reference (MedMNIST has no patient ids)."""
    data = read_npz(path)
    names = opts.label_names or known_label_names(path)
    rows = []
    for split, (images, labels) in data.splits.items():
        for i in range(len(images)):
            ref = f"{split}/{i}"
            rows.append(
                {"path": f"{path.name}#{ref}", "label": str(int(labels[i])), "mask": "", "split": split,
                 "patient_id": ref}
            )  # fmt: skip
    m = Manifest(rows=rows, root=path.parent, source=path)
    apply_label_names(m, names)
    return m
