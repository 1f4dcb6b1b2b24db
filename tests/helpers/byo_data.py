"""Real LGG FLAIR slices and masks (VAEDX_DATA_DIR/brain_lgg) laid out as MVTec-AD and as a MONAI
datalist in a tmp folder, by symlinks (the data are never copied, and never into the repository)."""

from __future__ import annotations

import csv
import json
from pathlib import Path


def lgg_slices(lgg_dir: Path, case: int, tumour: bool, n: int) -> list[tuple[Path, Path]]:
    """(image, mask) of ``n`` slices of the case-th patient folder, with or without tumour."""
    with (lgg_dir / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    cases = sorted({r["case_folder"] for r in rows})
    mine = [r for r in rows if r["case_folder"] == cases[case] and (r["tumour"] == "1") == tumour]
    mine.sort(key=lambda r: int(r["slice"]))
    step = max(1, len(mine) // n)
    return [(lgg_dir / r["image"], lgg_dir / r["mask"]) for r in mine[::step][:n]]


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target.resolve())


def lay_out_mvtec(lgg_dir: Path, root: Path) -> Path:
    """train/good: 6 tumour-free slices of each of patients 0 and 1; test/good: 3 of patient 2;
    test/tumour: 3 tumour slices each of patients 2 and 3, masks in ground_truth/tumour."""
    for case in (0, 1):
        for image, _ in lgg_slices(lgg_dir, case, False, 6):
            _link(image, root / "train" / "good" / image.name)
    for image, _ in lgg_slices(lgg_dir, 2, False, 3):
        _link(image, root / "test" / "good" / image.name)
    for case in (2, 3):
        for image, mask in lgg_slices(lgg_dir, case, True, 3):
            _link(image, root / "test" / "tumour" / image.name)
            _link(mask, root / "ground_truth" / "tumour" / f"{image.stem}_mask.png")
    return root


def write_datalist(lgg_dir: Path, base: Path, with_validation: bool = True) -> Path:
    """Four patients' case folders linked under ``base``; training: patients 0-1 (or 0-2 without a
    validation list), validation: patient 2, test: patient 3 as plain strings. Labels are the masks."""
    entries: dict[int, list[dict[str, str]]] = {}
    for case in range(4):
        slices = lgg_slices(lgg_dir, case, True, 2) + lgg_slices(lgg_dir, case, False, 2)
        folder = slices[0][0].parent
        if not (base / folder.name).exists():
            _link(folder, base / folder.name)
        entries[case] = [
            {"image": f"{folder.name}/{i.name}", "label": f"{folder.name}/{m.name}", "fold": case % 2}
            for i, m in slices
        ]  # fmt: skip
    doc: dict[str, list[object]] = {"training": [*entries[0], *entries[1]]}
    if with_validation:
        doc["validation"] = list(entries[2])
    else:
        doc["training"] += entries[2]
    doc["test"] = [e["image"] for e in entries[3]]
    path = base / "datalist.json"
    path.write_text(json.dumps(doc, indent=1))
    return path
