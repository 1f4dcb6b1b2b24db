"""thresholds.json: files of the previous version still load; entries match only the same request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vaedx.anomaly.calibration import (
    CalibrationFile,
    ScorerCalibration,
    choose_normal_label,
    default_normal_label,
    thresholds_path,
)
from vaedx.anomaly.scoring import PostSpec
from vaedx.errors import ConfigError, InputError
from vaedx.metrics.thresholds import Thresholds

OLD_FILE = {
    "version": 1,
    "scorers": {
        "residual": {
            "options": {},
            "postprocess": PostSpec().as_dict(),
            "split": "val",
            "normal_label": "normal",
            "store": "/data/store",
            "thresholds": {
                "image_threshold": 0.25,
                "target_specificity": 0.95,
                "pixel_threshold": 0.5,
                "method": "specificity",
                "n_calibration": 12,
            },
        }
    },
}


def test_a_thresholds_file_of_the_previous_version_loads_from_the_run_or_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "best").mkdir()
    (tmp_path / "thresholds.json").write_text(json.dumps(OLD_FILE))
    for where in (tmp_path, tmp_path / "best"):
        cal = CalibrationFile.load(where)
        assert cal.lookup("residual", {}, PostSpec()).image_threshold == 0.25
    assert thresholds_path(tmp_path / "last") == tmp_path / "thresholds.json"
    assert CalibrationFile.load(tmp_path / "elsewhere") == CalibrationFile()


def test_lookup_matches_options_postprocessing_specificity_and_normal_label() -> None:
    cal = CalibrationFile.model_validate(OLD_FILE)
    post = PostSpec()
    assert cal.lookup("residual", {}, post, 0.95, "normal") is not None
    assert cal.lookup("residual", {}, post, 0.9) is None
    assert cal.lookup("residual", {}, post, None, "lesion") is None
    assert cal.lookup("residual", {"x": 1}, post) is None
    assert cal.lookup("residual", {}, PostSpec.parse("median=3")) is None
    assert cal.lookup("ssim", {}, post) is None
    thr = Thresholds(image_threshold=1.0, n_calibration=3)
    bare = ScorerCalibration(postprocess=post.as_dict(), thresholds=thr)
    assert CalibrationFile(scorers={"kl": bare}).lookup("kl", {}, post, 0.8, "lesion") is not None
    assert set(cal.subset(["residual", "ssim"]).scorers) == {"residual"}


def test_normal_label_is_checked_or_guessed() -> None:
    assert default_normal_label(["tumour", "no_tumour"]) == "no_tumour"
    assert default_normal_label(["lesion", "no_lesion"]) == "lesion"  # label code 0
    assert choose_normal_label(["lesion", "no_lesion"], "no_lesion") == "no_lesion"
    with pytest.raises(ConfigError, match="'healthy'.*lesion, no_lesion"):
        choose_normal_label(["lesion", "no_lesion"], "healthy")
    with pytest.raises(InputError, match="no label names"):
        choose_normal_label([], None)


def test_invalid_thresholds_file_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "thresholds.json").write_text(json.dumps({"scorers": {"residual": {}}}))
    with pytest.raises(InputError, match="invalid thresholds: scorers.residual.thresholds"):
        CalibrationFile.load(tmp_path)
