"""A hand-made detect output folder whose figures are known exactly, for the evaluation tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from vaedx.anomaly.scoring import Scored, write_scores_csv
from vaedx.data.preprocess import PreprocessConfig
from vaedx.data.store import StoreWriter


def toy_detect_output(tmp: Path, patients: list[str] | None = None) -> tuple[Path, Path]:
    """4 normal + 4 abnormal images; normal 0.6 outranks abnormal 0.5 and 0.55 -> AUROC 14/16."""
    patients = patients or [f"p{i}" for i in range(8)]
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    writer = StoreWriter(tmp / "store", 8, (1, 4, 4), with_masks=True)
    for i, lab in enumerate(labels):
        mask = np.zeros((4, 4), np.uint8)
        mask[0, 0] = lab
        writer.add(
            np.zeros((1, 4, 4), np.float32),
            label=lab,
            mask=mask,
            split="test",
            path=f"i{i}.png",
            patient_id=patients[i],
        )
    writer.finish(["normal", "lesion"], PreprocessConfig())
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.5, 0.55, 0.7, 0.8])
    maps = np.zeros((8, 4, 4), np.float32)
    maps[4:, 0, 0] = 1.0  # perfect pixel maps on abnormal images
    pred = tmp / "pred"
    (pred / "maps").mkdir(parents=True)
    rows = [
        {"index": i, "path": f"i{i}.png", "split": "test", "label": "", "patient_id": f"p{i}"}
        for i in range(8)
    ]
    write_scores_csv(pred / "scores.csv", rows, Scored({"toy": maps}, {"toy": scores}), {"toy": 0.5})
    np.save(pred / "maps" / "toy.npy", maps)
    meta = {"source": "store", "normal_label": "normal", "thresholds": {"toy": {"pixel_threshold": 0.5}}}
    (pred / "detect.json").write_text(json.dumps(meta))
    return pred, tmp / "store"


def second_scorer_output(
    pred: Path, dest: Path, scores: np.ndarray, maps: np.ndarray, name: str = "other"
) -> Path:
    """A copy of the toy prediction folder with another scorer's scores and maps (for paired comparisons)."""
    shutil.copytree(pred, dest)
    rows = [{"index": i, "path": f"i{i}.png", "split": "test", "label": "", "patient_id": f"p{i}"}
            for i in range(8)]  # fmt: skip
    (dest / "scores.csv").unlink()
    write_scores_csv(dest / "scores.csv", rows, Scored({name: maps}, {name: scores}), {name: 0.5})
    np.save(dest / "maps" / f"{name}.npy", maps)
    return dest
