"""Manifests: one CSV row per image, the explicit list every later step works from.

Why a CSV: people open, edit and diff it, and a split or a relabelling is then a reviewable change rather
than a side effect of where files happen to sit. Columns::

    path, label, mask, split, patient_id, [source metadata: volume, slice_index, axis, frame, ...]

``path`` and ``mask`` are relative to the manifest's folder (or absolute), so a data folder and its manifest
move together. A path may point inside a file: ``pneumoniamnist.npz#train/17`` is image 17 of the npz's
``train`` split; slices of a volume share the volume's path and differ in ``slice_index`` (with ``axis``).

Rows of a volume name it in ``volume``: an id (the NIfTI file name, the LGG case folder, the DICOM series
folder or zip name), never a full path. ``slice_index`` is the slice's index in the volume in model
orientation: the LPS-reoriented array of a NIfTI or DICOM series (axial planes, as
:func:`vaedx.io.volume.model_plane` cuts them), the slice-number order of a stack of 2-D slice files. The
``path`` of a DICOM series row is its folder or zip. Every row of a volume has the same patient (and the
same split), so a split can never cut a volume in two; a volume row without a patient id takes the volume's.
Labels are either all integer codes or all class names (blank = unlabelled); a mix is almost always a
spreadsheet accident, so it is refused rather than guessed at.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vaedx.atomic import atomic_write
from vaedx.data.store import SPLITS
from vaedx.errors import InputError

STANDARD_COLUMNS = ("path", "label", "mask", "split", "patient_id")
OnError = Literal["fail", "skip"]


@dataclass(frozen=True)
class Ref:
    """Where a row's pixels live: a file, or one image inside an npz (``split``/``index``)."""

    file: Path
    split: str | None = None
    index: int | None = None


def parse_ref(value: str, root: Path) -> Ref:
    """``a/b.png`` or ``x.npz#train/17``, resolved against ``root`` unless absolute."""
    name, _, member = value.partition("#")
    file = Path(name) if Path(name).is_absolute() else root / name
    if not member:
        return Ref(file)
    split, _, idx = member.partition("/")
    if not split or not idx.isdigit():
        raise InputError(f"bad reference {value!r}; expected FILE.npz#SPLIT/INDEX", file)
    return Ref(file, split, int(idx))


def relative_ref(file: Path, folder: Path, member: str = "") -> str:
    """Relative to ``folder`` when the file lies inside it (the pair can move), absolute otherwise."""
    file = Path(os.path.abspath(file))
    folder = Path(os.path.abspath(folder))
    text = file.relative_to(folder).as_posix() if file.is_relative_to(folder) else str(file)
    return f"{text}#{member}" if member else text


def _as_int(text: str) -> int | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return int(v) if v.is_integer() else None


@dataclass
class Manifest:
    """Rows of strings (as in the CSV) plus the folder their relative paths start from."""

    rows: list[dict[str, str]]
    root: Path
    source: Path | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def columns(self) -> list[str]:
        extra: dict[str, None] = {}
        for r in self.rows:
            extra.update(dict.fromkeys(k for k in r if k not in STANDARD_COLUMNS))
        return [*STANDARD_COLUMNS, *extra]

    def resolve(self, value: str) -> Ref:
        return parse_ref(value, self.root)

    @property
    def where(self) -> str:
        return str(self.source) if self.source else str(self.root)

    def label_kind(self) -> Literal["numeric", "text", "none"]:
        return check_labels(self.rows, self.where)

    def label_names(self, explicit: Sequence[str] | None = None) -> list[str]:
        """Class names in code order: ``explicit`` if given, else sorted numbers or sorted names.

        With explicit names, integer labels are codes into them (0 -> first name) and text labels must be
        among them, so ``--label-names normal,pneumonia`` fixes the order whatever the CSV holds.
        """
        kind = self.label_kind()
        values = {r.get("label", "") for r in self.rows} - {""}
        if explicit:
            names = list(explicit)
            if kind == "numeric":
                bad = sorted({v for v in values if not 0 <= (_as_int(v) or 0) < len(names)})
                if bad:
                    raise InputError(f"label codes {bad} have no name in {names}", self.where)
            else:
                bad = sorted(values - set(names))
                if bad:
                    raise InputError(f"labels {bad} are not among the given names {names}", self.where)
            return names
        if kind == "numeric":
            return [str(v) for v in sorted({_as_int(v) for v in values})]  # type: ignore[type-var]
        return sorted(values)

    def label_codes(self, names: Sequence[str], explicit: bool = False) -> list[int]:
        """Integer code per row (-1 = unlabelled) for the given ``label_names`` order."""
        numeric = self.label_kind() == "numeric"
        index = {n: i for i, n in enumerate(names)}
        out = []
        for r in self.rows:
            v = r.get("label", "")
            if not v:
                out.append(-1)
            elif numeric and explicit:
                out.append(_as_int(v))  # type: ignore[arg-type]
            else:
                out.append(index[str(_as_int(v)) if numeric else v])
        return out


def check_labels(rows: Iterable[dict[str, str]], where: str | Path) -> Literal["numeric", "text", "none"]:
    """All integer codes or all names; raise naming the CSV and one example of each kind."""
    first_num: tuple[int, str] | None = None
    first_text: tuple[int, str] | None = None
    for line, r in enumerate(rows, start=2):
        v = r.get("label", "")
        if not v:
            continue
        if _as_int(v) is not None:
            first_num = first_num or (line, v)
        else:
            first_text = first_text or (line, v)
        if first_num and first_text:
            raise InputError(
                f"labels mix numbers and text (e.g. {first_num[1]!r} on line {first_num[0]} and "
                f"{first_text[1]!r} on line {first_text[0]}); use one kind",
                where,
            )
    return "numeric" if first_num else "text" if first_text else "none"


def volume_source(m: Manifest, row: dict[str, str]) -> Path:
    """What a volume row's volume is read from: its NIfTI file or DICOM series folder/zip, or for slices
    stored as 2-D files (LGG PNGs) the folder that holds them."""
    file = m.resolve(row["path"]).file
    name = file.name.lower()
    if name.endswith((".nii", ".nii.gz", ".zip")) or file.is_dir():
        return file
    return file.parent


def unique_volume_ids(m: Manifest) -> None:
    """Volume ids are names (file, case folder, series folder); where two volumes share one (``T1.nii.gz``
    of every patient), those volumes are named by their path relative to the manifest's folder instead."""
    sources: dict[str, set[Path]] = {}
    for r in m.rows:
        if r.get("volume"):
            sources.setdefault(r["volume"], set()).add(volume_source(m, r))
    shared = {v for v, found in sources.items() if len(found) > 1}
    for r in m.rows:
        if r.get("volume") in shared:
            where = volume_source(m, r)
            root = Path(os.path.abspath(m.root))
            where = Path(os.path.abspath(where))
            r["volume"] = where.relative_to(root).as_posix() if where.is_relative_to(root) else where.name


def _check_volumes(manifest: Manifest) -> None:
    """One patient and at most one split per volume; blank patient ids become the volume id."""
    unique_volume_ids(manifest)
    patients: dict[str, str] = {}
    splits: dict[str, str] = {}
    for line, r in enumerate(manifest.rows, start=2):
        volume = r.get("volume", "")
        if not volume:
            continue
        if not r.get("patient_id"):
            r["patient_id"] = volume
        if not r.get("slice_index", "0").lstrip("-").isdigit():
            raise InputError(
                f"slice_index {r['slice_index']!r} is not a whole number (line {line})", manifest.where
            )
        first = patients.setdefault(volume, r["patient_id"])
        if first != r["patient_id"]:
            raise InputError(
                f"volume {volume!r} has rows of patients {first!r} and {r['patient_id']!r} (line {line}); "
                "a volume belongs to one patient",
                manifest.where,
            )
        split = r.get("split", "")
        if split and splits.setdefault(volume, split) != split:
            raise InputError(
                f"volume {volume!r} is in splits {splits[volume]!r} and {split!r} (line {line}); "
                "keep a volume in one split",
                manifest.where,
            )


def validate(manifest: Manifest, on_error: OnError = "fail", check_files: bool = True) -> Manifest:
    """Check labels, split names, volumes and that every file exists; drop (and record) bad rows when
    skipping."""
    where = manifest.where
    check_labels(manifest.rows, where)
    _check_volumes(manifest)
    kept: list[dict[str, str]] = []
    for line, r in enumerate(manifest.rows, start=2):
        problem, bad = _row_problem(manifest, r, line, check_files)
        if problem is None:
            kept.append(r)
        elif on_error == "skip":
            manifest.skipped.append({"path": r.get("path", ""), "reason": problem})
        else:
            raise InputError(f"{problem} (line {line} of {where})", bad)
    manifest.rows = kept
    return manifest


def _row_problem(m: Manifest, r: dict[str, str], line: int, check_files: bool) -> tuple[str | None, str]:
    if not r.get("path"):
        return "empty path", m.where
    split = r.get("split", "")
    if split and split not in SPLITS:
        return f"unknown split {split!r} (use {', '.join(SPLITS)} or leave blank)", m.where
    if not check_files:
        return None, ""
    for col in ("path", "mask"):
        if not r.get(col):
            continue
        ref = m.resolve(r[col])
        if col == "path" and r.get("volume") and ref.file.is_dir():
            continue  # a DICOM series folder
        if not ref.file.is_file():
            what = "image" if col == "path" else "mask"
            return f"{what} file does not exist", str(ref.file)
    return None, ""


def read_manifest(path: str | Path, on_error: OnError = "fail", check_files: bool = True) -> Manifest:
    """Read and validate a manifest CSV (see the module docstring for the columns)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("manifest not found", path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames
            rows = [{k: (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
    except (UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"not a readable CSV ({e})", path) from None
    if not header:
        raise InputError("empty CSV (no header row)", path)
    if "path" not in header:
        raise InputError(
            f"manifest has no 'path' column (columns: {', '.join(header)}); "
            "to index another table use `vaedx data index FILE --path-col COLUMN`",
            path,
        )
    m = Manifest(rows=rows, root=path.parent, source=path)
    return validate(m, on_error, check_files)


def write_manifest(manifest: Manifest, path: str | Path) -> Path:
    """Write with paths re-expressed relative to the new file's folder."""
    path = Path(path)
    folder = path.parent
    cols = manifest.columns

    def rebase(value: str) -> str:
        if not value:
            return value
        ref_name, _, member = value.partition("#")
        file = Path(ref_name) if Path(ref_name).is_absolute() else manifest.root / ref_name
        return relative_ref(file, folder, member)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            for r in manifest.rows:
                out = {c: r.get(c, "") for c in cols}
                out["path"], out["mask"] = rebase(out["path"]), rebase(out["mask"])
                w.writerow(out)

    return atomic_write(path, write)
