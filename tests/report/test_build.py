"""build_report and `vaedx report` on a real (small) pipeline: self-contained page, PNGs, notes, errors."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from progress_spy import bars  # noqa: F401
from vaedx.cli import main
from vaedx.errors import ConfigError, InputError
from vaedx.report import build_report

SECTIONS = (
    "overview",
    "training",
    "reconstructions",
    "detection",
    "diagnosis",
    "latent",
    "generative",
    "repro",
)


def _imgs(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', html)


def test_report_is_self_contained_and_pngs_decode(report: Path):
    html = report.read_text(encoding="utf-8")
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)
    assert "http://" not in html and "https://" not in html
    srcs = _imgs(html)
    figures = sorted((report.parent / "report_figures").glob("*.png"))
    assert len(srcs) == len(figures) >= 12
    for src, png in zip(srcs, figures, strict=True):
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == png.read_bytes()  # the same figure, embedded
        with Image.open(io.BytesIO(png.read_bytes())) as im:
            im.load()
            assert im.width > 100 and im.height > 100


def test_report_has_every_section_with_its_figures_and_tables(report: Path):
    html = report.read_text(encoding="utf-8")
    for key in SECTIONS:
        assert f'<section id="{key}">' in html
    names = {p.stem.split("_", 1)[1] for p in (report.parent / "report_figures").glob("*.png")}
    expected = {
        *("training_vae", "training_pca", "reconstructions_vae", "roc", "pr", "overlays_vae_residual"),
        *("confusion_matrix", "reliability", "latent_vae", "latent_pca", "prior_samples", "interpolation"),
    }
    assert expected <= names
    assert html.count("<table>") >= 6
    assert "vae/residual" in html and "pca/ssim" in html  # every model/scorer on the curves
    assert "AUROC" in html and "software versions" in html and "torch" in html
    assert "no detect output" not in html and "no diagnosis" not in html
    assert "p1" not in re.sub(r"<img[^>]*>", "", html).split()  # no patient ids in the text


def test_single_run_with_explicit_parts_via_cli(pipeline: Path, tmp_path: Path, bars):  # noqa: F811
    out = tmp_path / "single.html"
    argv = ["report", str(pipeline / "models" / "vae"), "-o", str(out), "--store", str(pipeline / "store"),
            "--detect", str(pipeline / "detect" / "vae"), "--diagnosis", str(pipeline / "diagnosis"),
            "--n-boot", "20"]  # fmt: skip
    assert main(argv) == 0
    html = out.read_text(encoding="utf-8")
    assert "vae/residual" in html and "pca/residual" not in html
    assert (tmp_path / "single_figures").is_dir()
    assert len(_imgs(html)) == len(list((tmp_path / "single_figures").glob("*.png")))
    assert bars == [(i, len(SECTIONS)) for i in range(len(SECTIONS) + 1)]  # a step per section


def test_missing_parts_become_notes_not_crashes(pipeline: Path, tmp_path: Path):
    root = tmp_path / "bare"
    shutil.copytree(pipeline / "models" / "vae", root / "models" / "vae")
    rows = [{"model": "vae", "scorer": "ssim", "auroc": {"point": 0.81, "low": 0.77, "high": 0.85}}]
    summary = {"settings": {"widths": [32, 64, 128]}, "anomaly": {"rows": rows}}
    (root / "summary.json").write_text(json.dumps(summary))
    calls: list[tuple[int, int, str]] = []
    html = build_report(root, n_boot=10, progress=lambda *c: calls.append(c)).read_text(encoding="utf-8")
    names = ["overview", "training", "reconstruction", "detection", "diagnosis", "latent", "generative"]
    assert calls == [(i, 8, n) for i, n in enumerate([*names, "reproducibility", "page"])]
    assert "32, 64, 128" in html  # a list of three numbers is not shown as an interval
    assert "summary.json: anomaly.rows" in html and '0.810 <span class="ci">[0.770, 0.850]</span>' in html
    assert "no detect output: run `vaedx detect" in html
    assert "no diagnosis: run `vaedx diagnose fit" in html
    assert "no tensor store: pass --store" in html
    assert 'id="training"' in html and len(_imgs(html)) == 2  # training curves + prior samples


def test_bad_inputs_name_the_file(pipeline: Path, tmp_path: Path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="not a vaedx pipeline folder") as e:
        build_report(empty)
    assert e.value.path == str(empty)
    assert main(["report", str(empty)]) == 2
    assert "not a vaedx pipeline folder" in capsys.readouterr().err

    bad = tmp_path / "bad"
    shutil.copytree(pipeline / "models" / "vae", bad / "models" / "vae")
    (bad / "models" / "vae" / "metrics.csv").write_text("epoch,train_loss\n1,abc\n")
    with pytest.raises(InputError, match="non-number") as e:
        build_report(bad)
    assert e.value.path.endswith("metrics.csv")
    (bad / "models" / "vae" / "metrics.csv").write_text("garbage\n")
    with pytest.raises(InputError, match="not a vaedx metrics.csv"):
        build_report(bad)

    shutil.copy(pipeline / "models" / "vae" / "metrics.csv", bad / "models" / "vae" / "metrics.csv")
    shutil.copytree(pipeline / "detect" / "vae", bad / "detect" / "vae")
    (bad / "detect" / "vae" / "evaluation.json").write_text('{"scorers": {"residual": ')
    with pytest.raises(InputError, match="corrupt or unreadable JSON") as e:
        build_report(bad)
    assert e.value.path.endswith("evaluation.json")
    with pytest.raises(ConfigError):
        build_report(pipeline, tmp_path / "x.html", n_boot=0)


def test_moved_pipeline_finds_the_diagnosis_encoder_by_its_hash(pipeline: Path, tmp_path: Path):
    """The diagnosis records its encoder's absolute path; after a move the report finds the run by sha256."""
    from vaedx.report.collect import collect
    from vaedx.report.context import Context
    from vaedx.report.eval_sections import diagnosis_section

    moved = tmp_path / "moved"
    for part in ("store", "models", "diagnosis"):
        shutil.copytree(pipeline / part, moved / part)
    meta_path = moved / "diagnosis" / "diagnosis.json"
    meta = json.loads(meta_path.read_text())
    meta["encoder"]["path"] = str(tmp_path / "gone" / "best")
    meta_path.write_text(json.dumps(meta))
    (tmp_path / "figs").mkdir()
    ctx = Context(collect(moved), tmp_path / "figs")
    html = "".join(diagnosis_section(ctx).blocks)
    assert "unavailable" not in html
    assert [p.name for p in ctx.written] == ["01_confusion_matrix.png", "02_reliability.png"]


def test_report_links_each_model_card_with_its_key_facts(report: Path, pipeline: Path):
    html = report.read_text(encoding="utf-8")
    for folder in ("models/vae", "models/pca", "diagnosis"):
        assert f'<a href="{folder}/MODEL_CARD.md">' in html  # relative to report.html
        assert (report.parent / folder / "MODEL_CARD.md").is_file()
    assert "vae: key facts of the model card" in html and "research only, not for clinical decisions" in html
    # the pipeline's `vaedx evaluate` runs put their test figures into the cards the report links
    card = (pipeline / "models" / "vae" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "No test figures yet" not in card and "| residual |" in card and "| ssim |" in card
    assert "No test figures yet" not in (pipeline / "diagnosis" / "MODEL_CARD.md").read_text(encoding="utf-8")
