"""`vaedx detect` calibration flags, --scorer spellings and --overwrite, as a user types them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vaedx.cli import main


@pytest.fixture
def run(vae, tmp_path: Path) -> Path:
    """A private copy of the trained run: --save-calibration writes into it."""
    return shutil.copytree(vae.path.parent, tmp_path / "run")


def test_calibration_flags_reach_detect(run: Path, store, tmp_path: Path, capsys) -> None:
    (run / "thresholds.json").unlink(missing_ok=True)
    out = tmp_path / "det"
    normal = store.label_names[0]
    args = ["detect", "-m", str(run), "-s", str(store.root), "-o", str(out), "--max-overlays", "0",
            "--target-specificity", "0.8", "--normal-label", normal, "--save-calibration"]  # fmt: skip
    assert main(args) == 0
    assert "calibration also saved in the model's run folder" in capsys.readouterr().err
    saved = json.loads((run / "thresholds.json").read_text())
    assert json.loads((out / "thresholds.json").read_text()) == saved
    assert normal in json.dumps(saved) and "0.8" in json.dumps(saved)


def test_detect_twice_needs_overwrite_and_old_scorers_warns(run: Path, store, tmp_path: Path, capsys) -> None:
    out = tmp_path / "det"
    args = ["detect", "-m", str(run), "-s", str(store.root), "-o", str(out), "--max-overlays", "0", "-q"]
    assert main([*args, "--scorers", "residual"]) == 0
    assert "--scorers is deprecated; use --scorer" in capsys.readouterr().err
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--overwrite" in err
    assert main([*args, "--overwrite", "--threads", "1", "--device", "cpu"]) == 0


def test_detect_json_summary_matches_scores_csv(run: Path, store, tmp_path: Path, capsys) -> None:
    from vaedx.anomaly.output import DetectOutput

    out = tmp_path / "det"
    args = ["detect", "-m", str(run), "-s", str(store.root), "-o", str(out), "--max-overlays", "0",
            "--scorer", "residual"]  # fmt: skip
    assert main([*args, "--json", "--quiet"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # the one object on stdout; messages stay on stderr
    assert "calibrating residual" in captured.err and "wrote" not in captured.err  # --quiet: no closing line
    done = DetectOutput.open(out)
    flags = done.flags("residual")
    assert doc["out"] == str(out) and doc["n_images"] == len(done.rows) == 24
    residual = doc["scorers"]["residual"]
    assert residual["flagged"] == (None if flags is None else int(flags.sum()))
    assert residual["mean_score"] == pytest.approx(float(done.scores("residual").mean()))
    assert residual["threshold"] == done.thresholds("residual").get("image_threshold")
