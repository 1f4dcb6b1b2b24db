"""Tiny synthetic stores for the diagnosis tests: classes that differ visibly, so a few epochs suffice."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaedx.data.preprocess import PreprocessConfig
from vaedx.data.store import StoreWriter, TensorStore

SIZE = 16
# Small, fast settings for every network trained in these tests.
FAST = {"widths": [8, 16], "latent_dim": 4, "batch_size": 16, "lr": 3e-3, "num_threads": 1, "log_every": 1}
ARCH = {"widths": [8, 16], "latent_dim": 4}


def draw(label: int, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """0: dim noise only; 1: noise + a bright blob; 2: noise + a horizontal bar."""
    img = rng.uniform(0.0, 0.15, (size, size))
    yy, xx = np.mgrid[:size, :size]
    if label == 1:
        cy, cx = rng.uniform(size / 4, 3 * size / 4, 2)
        img += 0.9 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 16.0)
    elif label == 2:
        row = int(rng.integers(size // 4, 3 * size // 4))
        img[row - 2 : row + 2, 1:-1] += 0.8
    return np.clip(img, 0, 1).astype(np.float32)[None]


def make_store(
    out: Path,
    counts: dict[str, int] | None = None,
    n_classes: int = 2,
    seed: int = 0,
    unlabelled: int = 0,
    preprocess: PreprocessConfig | None = None,
    label_of: dict[str, list[int]] | None = None,
) -> TensorStore:
    """Per split, ``counts[split]`` images cycling through the classes; ``unlabelled`` extra train images
    with label -1. ``label_of`` overrides the label sequence of a split (e.g. all -1)."""
    counts = counts or {"train": 40, "val": 16, "test": 16}
    rng = np.random.default_rng(seed)
    total = sum(counts.values()) + unlabelled
    w = StoreWriter(out, total, (1, SIZE, SIZE), with_masks=False)
    i = 0
    for split, n in counts.items():
        labels = (label_of or {}).get(split) or [k % n_classes for k in range(n)]
        for lab in labels:
            img = draw(lab if lab >= 0 else int(rng.integers(n_classes)), rng)
            w.add(img, label=lab, split=split, path=f"{split}/img{i}.png", patient_id=f"p{i}")
            i += 1
    for _ in range(unlabelled):
        w.add(
            draw(int(rng.integers(n_classes)), rng),
            label=-1,
            split="train",
            path=f"train/u{i}.png",
            patient_id=f"p{i}",
        )
        i += 1
    names = ["normal", "blob", "bar"][:n_classes]
    return w.finish(names, preprocess or PreprocessConfig(size=(SIZE, SIZE)))


CHENG_CLASSES = ("meningioma", "glioma", "pituitary")


def cheng_manifest(data_dir: Path, out: Path, per_class: int = 60) -> Path:
    """Manifest CSV of ``per_class`` Cheng T1-CE images per tumour type, evenly spaced through each class
    folder, split 60/20/20 per class. The set has no patient ids, so each image is its own "patient":
    these splits are by image and their figures optimistic (slices of one patient can sit in train and
    test)."""
    import csv

    root = data_dir / "brain_cheng_figshare"
    with open(root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    lines = []
    for name in CHENG_CLASSES:
        files = sorted((r["image"] for r in rows if r["class"] == name), key=lambda p: int(Path(p).stem))
        picked = [files[int(i)] for i in np.linspace(0, len(files) - 1, per_class)]
        for j, rel in enumerate(picked):
            split = "train" if j % 5 < 3 else ("val" if j % 5 == 3 else "test")
            lines.append({"path": str(root / rel), "label": name, "split": split, "patient_id": rel})
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "split", "patient_id"])
        w.writeheader()
        w.writerows(lines)
    return out
