from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from vaedx.errors import ConfigError, InputError
from vaedx.pipeline.demo import DEMO_MARKER, download_medmnist, find_or_download, prepare_out


@pytest.fixture
def served(tmp_path: Path) -> tuple[str, str]:
    src = tmp_path / "server" / "pneumoniamnist.npz"
    src.parent.mkdir()
    np.savez_compressed(
        src, train_images=np.zeros((2, 4, 4), np.uint8), train_labels=np.zeros((2, 1), np.uint8)
    )
    return src.as_uri(), hashlib.md5(src.read_bytes()).hexdigest()


def test_download_with_matching_checksum(served: tuple[str, str], tmp_path: Path) -> None:
    url, md5 = served
    dest = download_medmnist(tmp_path / "cache" / "pneumoniamnist" / "pneumoniamnist.npz", url=url, md5=md5)
    assert hashlib.md5(dest.read_bytes()).hexdigest() == md5
    assert sorted(p.name for p in dest.parent.iterdir()) == ["pneumoniamnist.npz"]  # no temporary left


def test_download_with_wrong_checksum_leaves_nothing(served: tuple[str, str], tmp_path: Path) -> None:
    url, _ = served
    dest_dir = tmp_path / "cache"
    with pytest.raises(InputError, match="checksum mismatch"):
        download_medmnist(dest_dir / "pneumoniamnist.npz", url=url, md5="0" * 32)
    assert list(dest_dir.iterdir()) == []


def test_download_failure_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="download failed"):
        download_medmnist(tmp_path / "x.npz", url=(tmp_path / "absent.npz").as_uri(), md5="0" * 32)
    assert list(tmp_path.iterdir()) == []


def test_local_data_is_found_before_any_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "d" / "pneumoniamnist" / "pneumoniamnist.npz"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    fail = lambda *a, **k: pytest.fail("must not download")  # noqa: E731
    monkeypatch.setattr("vaedx.pipeline.demo.download_medmnist", fail)
    from rich.console import Console

    assert find_or_download(tmp_path / "d", Console()) == target


def test_out_folder_of_other_work_is_refused_even_with_overwrite(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match="not written by vaedx demo"):
            prepare_out(tmp_path, overwrite)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_demo_folder_is_replaced_only_with_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    prepare_out(out, overwrite=False)  # a new folder is fine
    (out / "models" / "vae").mkdir(parents=True)
    (out / "summary.json").write_text("{}")
    (out / "kept.txt").write_text("not a demo output")
    with pytest.raises(ConfigError, match="use --overwrite"):
        prepare_out(out, overwrite=False)
    prepare_out(out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [DEMO_MARKER, "kept.txt"]


def test_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        prepare_out(tmp_path / "f", overwrite=True)


def _finite_ci(v: dict, lo: float = 0.0, hi: float = 1.0) -> bool:
    return lo <= v["low"] <= v["point"] <= v["high"] <= hi


@pytest.mark.slow
def test_quick_demo_end_to_end(
    pneumonia_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`vaedx demo --quick` through the CLI: the pipeline-folder layout, real figures, the report."""
    from vaedx.cli import main

    out = tmp_path / "demo"
    data = pneumonia_npz.parents[1]
    assert main(["demo", "--quick", "--data", str(data), "--out", str(out), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "5856 images" in printed and "3494" in printed  # the data summary of the full store
    for part in ("store/store.json", "models/vae/best", "models/ae", "models/pca", "models/vae_all/best"):
        assert (out / part).exists(), part
    for kind in ("vae", "ae", "pca"):
        for name in ("scores.csv", "detect.json", "evaluation.json"):
            assert (out / "detect" / kind / name).is_file(), (kind, name)
    assert (out / "diagnosis" / "diagnosis.json").is_file()
    assert (out / "diagnosis" / "evaluation_test.json").is_file()
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["anomaly"]["rows"]
    assert {(r["model"], r["scorer"]) for r in rows} >= {("vae", "ssim"), ("ae", "ssim"), ("pca", "ssim")}
    assert summary["anomaly"]["n_test"] == 624 and summary["anomaly"]["n_abnormal"] == 390
    for r in rows:
        assert _finite_ci(r["auroc"]) and _finite_ci(r["auprc"]), r
    # paired differences: one per scorer VAE shares with AE and PCA, point = difference of the AUROCs
    auc = {(r["model"], r["scorer"]): r["auroc"]["point"] for r in rows}
    paired = summary["anomaly"]["paired"]
    want = [(f"vae:{s}", f"{b}:{s}") for b in ("ae", "pca") for s in ("ssim", "residual")]
    assert [(p["a"], p["b"]) for p in paired] == want
    for p in paired:
        other, scorer = p["b"].split(":")
        assert p["auroc_diff"]["point"] == pytest.approx(auc[("vae", scorer)] - auc[(other, scorer)])
        assert p["auroc_diff"]["low"] <= p["auroc_diff"]["point"] <= p["auroc_diff"]["high"]
        assert 0 <= p["p_not_better"] <= 1
    assert "paired bootstrap" in printed
    # even 3 epochs of an SSIM-scored reconstruction model must beat chance on pneumonia vs normal
    assert max(r["auroc"]["point"] for r in rows if r["scorer"] == "ssim") > 0.6
    test = summary["diagnosis"]["test"]
    assert test["n"] == 624
    for k in ("auc", "accuracy", "sensitivity", "specificity"):
        assert _finite_ci(test[k]), k
    assert test["auc"]["point"] > 0.7
    assert summary["report"] is None or Path(summary["report"]).is_file()
    from vaedx.report import build_report  # noqa: F401  (the report exists: the demo must have written it)

    assert (out / "report.html").is_file() and summary["report"] == str(out / "report.html")
    # a second run without --overwrite is refused, leaving the first intact
    assert main(["demo", "--quick", "--data", str(data), "--out", str(out)]) == 2
    assert (out / "summary.json").is_file()
