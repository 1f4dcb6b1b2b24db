"""``kill -9`` during `vaedx data prepare`, `detect`, `diagnose finetune` and `report`, on PneumoniaMNIST.

Each command is run in a child process and killed (SIGKILL, see kill_at) at the steps of its writing that
matter: mid-build and mid-swap, on a fresh output and over a complete earlier one. Then the command that
reads that output must refuse it in one line naming the folder (or find no output at all), and rerunning
the command as documented must give exactly what an uninterrupted run gives.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from kill_at import run_killed
from vaedx.cli import main

pytestmark = pytest.mark.realdata

PER_LABEL = {"train": 24, "val": 12, "test": 12}  # images of each label per split: 96 in all
TRAIN = ["--epochs", "1", "--batch-size", "16", "--latent-dim", "4", "--widths", "8,16", "--threads", "1",
         "--quiet"]  # fmt: skip


def run_ok(argv: list[str]) -> None:
    assert main([str(a) for a in argv]) == 0, f"vaedx {' '.join(map(str, argv))} failed"


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], folder: Path) -> str:
    """Run a reader that must refuse ``folder``: exit 2 and one line naming it; returns that line."""
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(folder) in err, err
    return err


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory, pneumonia_npz: Path) -> Path:
    """The first images of each label and split of PneumoniaMNIST, under the archive's own name."""
    src = np.load(pneumonia_npz)
    keep = {}
    for split, n in PER_LABEL.items():
        labels = src[f"{split}_labels"].reshape(-1)
        rows = np.sort(np.concatenate([np.flatnonzero(labels == c)[:n] for c in (0, 1)]))
        for kind in ("images", "labels"):
            keep[f"{split}_{kind}"] = src[f"{split}_{kind}"][rows]
    path = tmp_path_factory.mktemp("faults") / "pneumoniamnist.npz"
    np.savez(path, **keep)
    return path


@pytest.fixture(scope="module")
def store(npz: Path) -> Path:
    run_ok(["data", "prepare", npz, "-o", npz.parent / "store"])
    return npz.parent / "store"


@pytest.fixture(scope="module")
def vae(store: Path) -> Path:
    run_ok(["train", "--store", store, "--out", store.parent / "vae", "--label-filter", "normal", *TRAIN])
    return store.parent / "vae"


@pytest.fixture(scope="module")
def detected(vae: Path, store: Path) -> Path:
    out = store.parent / "detect"
    run_ok(["detect", "-m", vae, "-s", store, "-o", out, "--max-overlays", "2", "--threads", "1", "-q",
            "--scorer", "residual"])  # fmt: skip
    return out


def same_store(a: Path, b: Path) -> None:
    for name in ("images.npy", "labels.npy"):
        np.testing.assert_array_equal(np.load(a / name), np.load(b / name))
    for name in ("records.json", "store.json"):
        assert json.loads((a / name).read_text()) == json.loads((b / name).read_text())


def test_prepare_killed_mid_build_and_mid_swap(
    npz: Path, store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "store"
    # mid-build: the store is made in a hidden sibling, so there is no output at all
    run_killed(["data", "prepare", npz, "-o", out], tmp_path / ".store.partial" / "records.json")
    assert not out.exists()
    run_ok(["data", "prepare", npz, "-o", out])
    same_store(out, store)
    # mid-swap over that complete store: its arrays are moved in, store.json (moved in last) is not
    run_killed(["data", "prepare", npz, "-o", out, "--overwrite"], out / "store.json")
    assert (out / "images.npy").is_file() and not (out / "store.json").exists()
    err = refused(["train", "--store", out, "--out", tmp_path / "run", *TRAIN], capsys, out)
    assert "incomplete tensor store" in err and not (tmp_path / "run").exists()
    run_ok(["data", "prepare", npz, "-o", out, "--overwrite"])
    same_store(out, store)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # nothing half-built left beside it


def same_detect(a: Path, b: Path) -> None:
    assert (a / "scores.csv").read_text() == (b / "scores.csv").read_text()
    np.testing.assert_array_equal(np.load(a / "maps" / "residual.npy"), np.load(b / "maps" / "residual.npy"))
    for name in ("thresholds.json", "detect.json"):
        assert json.loads((a / name).read_text()) == json.loads((b / name).read_text())
    overlays = [sorted(p.relative_to(d).as_posix() for p in (d / "overlays").rglob("*")) for d in (a, b)]
    assert overlays[0] == overlays[1] and overlays[0]


def test_detect_killed_at_start_and_before_its_completion_mark(
    vae: Path, store: Path, detected: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "det"
    args = ["detect", "-m", vae, "-s", store, "-o", out, "--max-overlays", "2", "--threads", "1", "-q",
            "--scorer", "residual"]  # fmt: skip
    evaluate = ["evaluate", "anomaly", "--pred", out, "--store", store, "--n-boot", "10"]
    run_killed(args, out / "thresholds.json")  # calibrated, nothing in place yet
    assert "scores.csv not found" in refused(evaluate, capsys, out)
    run_ok([*args, "--overwrite"])
    same_detect(out, detected)
    run_ok(evaluate)  # an evaluation of the earlier scores, which must not outlive them
    # over that complete output: scores, maps and overlays rewritten, detect.json (the mark) not yet
    run_killed([*args, "--overwrite"], out / "detect.json")
    assert (out / "scores.csv").is_file() and not (out / "evaluation.json").exists()
    assert "incomplete detect output" in refused(evaluate, capsys, out)
    refused(["report", vae, "-o", tmp_path / "r.html", "--detect", out, "--n-boot", "10"], capsys, out)
    run_ok([*args, "--overwrite"])
    same_detect(out, detected)
    assert not list(out.rglob(".*"))  # nor any unfinished file of the killed runs


def same_weights(a: Path, b: Path) -> None:
    from safetensors.numpy import load_file

    wa, wb = load_file(a / "best" / "model.safetensors"), load_file(b / "best" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
    assert json.loads((a / "finetune.json").read_text()) == json.loads((b / "finetune.json").read_text())


def test_finetune_killed_before_its_run_is_in_place(
    vae: Path, store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["diagnose", "finetune", "-m", vae, "-s", store, "--epochs", "1", "--min-steps", "3",
            "--threads", "1"]  # fmt: skip
    ref, out = tmp_path / "ref", tmp_path / "tuned"
    run_ok([*args, "-o", ref])
    fit = ["diagnose", "fit", "-m", out, "-s", store, "--features", "mu", "-o", tmp_path / "diag"]
    # fresh: history written, best/ (what loaders look for) not yet swapped in
    run_killed([*args, "-o", out], out / "best")
    assert (out / "finetune.json").is_file() and not (out / "best").exists()
    assert "no checkpoint found" in refused(fit, capsys, out)
    run_ok([*args, "-o", out])  # no run there, so no --overwrite needed
    same_weights(out, ref)
    assert not list(out.glob(".best.tmp-*"))  # the killed writer's half-written copy is gone too
    # over that complete run: the earlier best/ goes first, so its weights never sit beside new history
    run_killed([*args, "-o", out, "--overwrite"], out / "finetune.json")
    assert "no checkpoint found" in refused(fit, capsys, out)
    assert not (tmp_path / "diag").exists()
    run_ok([*args, "-o", out, "--overwrite"])
    same_weights(out, ref)
    assert not list(out.glob(".*"))  # no unfinished file of the killed runs is left


def page(html: Path) -> str:
    """The report without its build time and the name of its figure folder."""
    text = html.read_text().replace(f"{html.stem}_figures", "<figures>")
    return re.sub(r"built \d{4}-\d\d-\d\d \d\d:\d\d UTC", "built <time>", text)


def test_report_killed_mid_figures_and_before_the_page(
    vae: Path, store: Path, detected: Path, tmp_path: Path
) -> None:
    ref, html = tmp_path / "ref.html", tmp_path / "report.html"
    args = [vae, "--store", store, "--detect", detected, "--n-boot", "10"]
    run_ok(["report", *args, "-o", ref])
    figures = sorted(p.name for p in (tmp_path / "ref_figures").iterdir())
    assert len(figures) >= 2
    run_killed(["report", *args, "-o", html], tmp_path / "report_figures" / figures[1])
    assert not html.exists()
    kept = [p.name for p in (tmp_path / "report_figures").iterdir() if not p.name.startswith(".")]
    assert kept == figures[:1]  # the first figure whole, the second not in place
    run_killed(["report", *args, "-o", html], html)
    assert not html.exists()  # every figure written, the page (moved in last) not
    run_ok(["report", *args, "-o", html])  # nothing there, so no --overwrite needed
    assert page(html) == page(ref)
    assert sorted(p.name for p in (tmp_path / "report_figures").iterdir()) == figures  # no half figure left
    for name in figures:
        new, old = tmp_path / "report_figures" / name, tmp_path / "ref_figures" / name
        assert new.read_bytes() == old.read_bytes(), name
