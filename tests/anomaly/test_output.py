"""DetectOutput: what detect writes reads back; folders of the previous layout (no thresholds.json) read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detect_outputs import toy_detect_output
from vaedx.anomaly.calibration import CalibrationFile, ScorerCalibration
from vaedx.anomaly.output import DetectOutput
from vaedx.anomaly.scoring import PostSpec, Scored
from vaedx.errors import InputError
from vaedx.metrics.thresholds import Thresholds


def test_a_folder_of_the_previous_layout_reads(tmp_path: Path) -> None:
    pred, _ = toy_detect_output(tmp_path)
    out = DetectOutput.open(pred)
    assert out.scorers == ["toy"] and out.index.tolist() == list(range(8)) and out.normal_label == "normal"
    assert out.scores("toy")[3] == 0.6 and out.flags("toy").tolist() == [0, 0, 0, 1, 0, 1, 1, 1]
    assert out.pixel_threshold("toy") == 0.5 and out.load_maps("toy").shape == (8, 4, 4)
    assert out.load_maps("other") is None and out.valid() is None and out.read_evaluation() is None
    assert out.calibration() == CalibrationFile()  # written before detect put thresholds.json there
    with pytest.raises(InputError, match="no scorer 'nope' in scores.csv"):
        out.scores("nope")


def test_what_is_written_reads_back(tmp_path: Path) -> None:
    target = DetectOutput.create(tmp_path / "o")
    maps = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    rows = [{"index": i, "path": f"f{i}.png", "split": "", "label": "", "patient_id": ""} for i in range(2)]
    scored = Scored({"r": maps}, {"r": np.array([1.0, 3.0])}, np.ones_like(maps, bool))
    target.write_scores(rows, scored, {"r": 2})
    thr = Thresholds(image_threshold=2.0, target_specificity=0.9, n_calibration=5)
    entry = ScorerCalibration(postprocess=PostSpec().as_dict(), normal_label="normal", thresholds=thr)
    target.write_calibration(CalibrationFile(scorers={"r": entry, "unused": entry}), ["r"])
    target.write_meta({"source": "files", "normal_label": "normal", "thresholds": {"r": thr.model_dump()}})
    back = DetectOutput.open(tmp_path / "o")
    assert back.from_files and back.flags("r").tolist() == [0, 1]
    np.testing.assert_array_equal(back.load_maps("r"), maps)
    assert back.valid().all() and set(back.calibration().scorers) == {"r"}
    assert back.calibration().lookup("r", {}, PostSpec(), 0.9, "normal") == thr


def test_corrupt_parts_are_one_line_naming_the_file(tmp_path: Path) -> None:
    pred, _ = toy_detect_output(tmp_path)
    with pytest.raises(InputError, match="no such detect output folder"):
        DetectOutput.open(tmp_path / "missing")
    (pred / "evaluation.json").write_text(json.dumps({"nothing": 1}))
    with pytest.raises(InputError, match="no 'scorers' object"):
        DetectOutput.open(pred).read_evaluation()
    np.save(pred / "maps" / "toy.npy", np.zeros((3, 4, 4), np.float32))
    with pytest.raises(InputError, match=r"maps have shape \(3, 4, 4\), expected \(8, H, W\)"):
        DetectOutput.open(pred).load_maps("toy")
    (pred / "detect.json").write_text("{broken")
    with pytest.raises(InputError, match="detect.json: corrupt or unreadable JSON"):
        DetectOutput.open(pred)
