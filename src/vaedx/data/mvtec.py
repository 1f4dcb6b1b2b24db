"""The MVTec-AD folder layout, recognised by ``vaedx data index`` (and ``data prepare`` on the folder).

One category folder of MVTec-AD (``bottle/``, ``carpet/``, ...) or anything laid out like it::

    train/good/*.png                       defect-free training images
    test/good/*.png                        defect-free test images
    test/<defect>/*.png                    defective test images, one folder per defect type
    ground_truth/<defect>/<stem>_mask.png  pixel mask of test/<defect>/<stem>.png

Rows: label ``good`` or ``defect``, the defect type in column ``defect_type`` (``good`` for
good images), ``split`` train or test from the top folder, and the mask from ``ground_truth``. A
validation split is carved out of ``train/`` by the patient-level splitter with the train:val ratio of
``--fractions`` (default 0.7:0.15) and ``--seed``, so the test images stay exactly MVTec's; each image is
its own patient (MVTec has no patients). A defect image without its mask, or a mask without its image, is
a problem (``--on-error``). A folder holding several categories is refused: index one at a time.
"""

from __future__ import annotations

from pathlib import Path

from vaedx.data.index import IndexOptions, _problem, apply_label_names, carve_validation
from vaedx.data.manifest import Manifest, validate
from vaedx.errors import InputError

LABEL_NAMES = ["good", "defect"]
TOP_FOLDERS = {"train", "test", "ground_truth"}
MASK_SUFFIX = "_mask"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def _subdirs(folder: Path) -> list[Path]:
    return [d for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")]


def _images(folder: Path) -> list[Path]:
    files = [f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")]
    return sorted((f for f in files if f.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: p.name)


def is_mvtec(folder: Path) -> bool:
    """A folder with ``train/good/`` and ``test/`` and no top folder other than train, test, ground_truth."""
    if not (folder / "train" / "good").is_dir() or not (folder / "test").is_dir():
        return False
    return {d.name for d in _subdirs(folder)} <= TOP_FOLDERS


def looks_like_mvtec(folder: Path) -> str | None:
    """Why a folder resembling MVTec-AD is not one (a problem line), or None when it does not resemble it."""
    subs = _subdirs(folder)
    names = {d.name for d in subs}
    if subs and all(is_mvtec(d) for d in subs):
        shown = ", ".join(d.name for d in subs[:4]) + (", ..." if len(subs) > 4 else "")
        return (
            f"folder holds {len(subs)} MVTec-AD categories ({shown}); index one category folder at a time, "
            f"e.g. {subs[0]}"
        )
    if "ground_truth" in names and not is_mvtec(folder):
        others = sorted(names - TOP_FOLDERS)
        if others:
            return f"MVTec-AD layout has only train/, test/ and ground_truth/, not {', '.join(others[:3])}"
        return "MVTec-AD layout needs train/good/ and test/ beside ground_truth/"
    return None


def index_mvtec(folder: Path, opts: IndexOptions) -> Manifest:
    """Rows of an MVTec-AD category folder; see the module docstring."""
    m = Manifest(rows=[], root=folder)
    gt = folder / "ground_truth"
    masks = {
        (d.name, f.stem[: -len(MASK_SUFFIX)]): f
        for d in (_subdirs(gt) if gt.is_dir() else [])
        for f in _images(d)
        if f.stem.endswith(MASK_SUFFIX)
    }
    used: set[Path] = set()
    train_dirs = _subdirs(folder / "train")
    if [d.name for d in train_dirs] != ["good"]:
        extra = ", ".join(d.name for d in train_dirs if d.name != "good")
        raise InputError(f"MVTec-AD train/ holds only good/, not {extra}", folder / "train")
    for split, top in (("train", folder / "train"), ("test", folder / "test")):
        for d in _subdirs(top):
            for f in _images(d):
                rel = f.relative_to(folder).as_posix()
                mask = masks.get((d.name, f.stem)) if d.name != "good" else None
                if d.name != "good" and mask is None:
                    want = f"ground_truth/{d.name}/{f.stem}{MASK_SUFFIX}.png"
                    _problem(m, opts, f"defect image has no mask {want}", f)
                    continue
                if mask is not None:
                    used.add(mask)
                m.rows.append({
                    "path": rel,
                    "label": "good" if d.name == "good" else "defect",
                    "mask": mask.relative_to(folder).as_posix() if mask is not None else "",
                    "split": split,
                    "patient_id": rel.rsplit(".", 1)[0],
                    "defect_type": d.name,
                })  # fmt: skip
    for mask in sorted(set(masks.values()) - used):
        _problem(m, opts, "mask has no image in test/", mask)
    if not m.rows:
        raise InputError("MVTec-AD folder has no images in train/good or test/", folder)
    carve_validation(m, [r for r in m.rows if r["split"] == "train"], opts)
    apply_label_names(m, LABEL_NAMES)
    return validate(m, opts.on_error)
