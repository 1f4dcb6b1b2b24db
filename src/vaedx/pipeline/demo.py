"""`vaedx demo`: the whole pipeline on PneumoniaMNIST, runnable offline when the data is present.

The data is looked up where :func:`vaedx.data.locate.find_data_file` looks (``--data``, ``$VAEDX_DATA_DIR``,
``../shared/data``, the user cache); only when it is nowhere is the official MedMNIST file downloaded, into
the user cache, and kept only if its MD5 matches, because a silently corrupted or substituted download
would make every later number meaningless.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console

from vaedx.data.inspect import render, summarize
from vaedx.data.locate import find_data_file, user_cache_dir
from vaedx.data.prepare import prepare, prepare_config
from vaedx.errors import ConfigError, InputError

MEDMNIST_RELATIVE = "pneumoniamnist/pneumoniamnist.npz"
MEDMNIST_URL = "https://zenodo.org/records/10519652/files/pneumoniamnist.npz?download=1"
MEDMNIST_MD5 = "28209eda62fecd6e6a2d98b1501bb15f"


def download_medmnist(
    dest: str | Path, url: str = MEDMNIST_URL, md5: str = MEDMNIST_MD5, timeout: float = 60
) -> Path:
    """Download ``url`` to ``dest`` (a file path, or a folder to put pneumoniamnist.npz in), verified by MD5.

    The bytes go to a temporary file beside ``dest`` and are renamed only after the checksum matches, so a
    failed or tampered download never leaves a file that a later run would trust. ``file://`` URLs work.
    """
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / Path(MEDMNIST_RELATIVE).name
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".download", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.md5()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5.lower():
            raise InputError(
                f"checksum mismatch: MD5 {digest.hexdigest()}, expected {md5}; file discarded", url
            )
        tmp.replace(dest)
    except (urllib.error.URLError, OSError) as e:
        raise InputError(f"download failed ({getattr(e, 'reason', e)})", url) from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def find_or_download(data: Path | None, console: Console) -> Path:
    found = find_data_file(MEDMNIST_RELATIVE, data)
    if found is not None:
        return found
    dest = user_cache_dir() / "data" / MEDMNIST_RELATIVE
    console.print(
        f"PneumoniaMNIST not found locally; downloading it to {dest}", highlight=False, soft_wrap=True
    )
    return download_medmnist(dest)


DEMO_MARKER = ".vaedx-demo"
DEMO_OUTPUTS = (
    "store",
    "models",
    "detect",
    "diagnosis",
    "report.html",
    "report_figures",
    "summary.json",
    DEMO_MARKER,
)


def prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty folder the demo did not write; replace a demo folder only with ``--overwrite``.

    Why only the demo's own entries are deleted: ``--out`` could be mistyped as a folder of real work.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError("--out exists and is not a folder", out)
    if out.is_dir() and any(out.iterdir()):
        if not (out / DEMO_MARKER).is_file():
            raise ConfigError(
                "folder is not empty and was not written by vaedx demo; choose another --out", out
            )
        if not overwrite:
            raise ConfigError("folder already holds a demo run; use --overwrite to replace it", out)
        for name in DEMO_OUTPUTS:
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARKER).write_text(
        "written by vaedx demo; `vaedx demo --overwrite` may replace this folder\n"
    )


def run_demo(
    out: Path,
    *,
    data: Path | None = None,
    quick: bool = False,
    epochs: int | None = None,
    threads: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    console: Console | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """The whole pipeline on PneumoniaMNIST into ``out`` (pipeline-folder layout); returns the summary.

    ``device`` (``auto``: CUDA when present) runs every training, detection, encoding and report figure."""
    import torch

    from vaedx.models.device import resolve_device
    from vaedx.pipeline import stages as ds

    console = console or Console()
    s = ds.Settings.make(quick, epochs, seed, threads, str(resolve_device(device)))
    prepare_out(out, overwrite)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        summary = _pipeline(out, data, quick, s, console)
    finally:
        torch.set_num_threads(before)
    return summary


def _pipeline(out: Path, data: Path | None, quick: bool, s: Any, console: Console) -> dict[str, Any]:
    from vaedx.pipeline import stages as ds

    st, load0 = ds.Stages(console), round(os.getloadavg()[0], 2)  # other jobs on the CPU slow every stage
    store, models, detect_dir = out / "store", out / "models", out / "detect"
    with st.stage("data", "PneumoniaMNIST"):
        npz = find_or_download(data, console)
        prepare(npz, store, prepare_config())
    render(summarize(store), console)
    what = f"{s.epochs} epochs, normal training images" + (
        f" (at most {s.max_images})" if s.max_images else ""
    )
    for kind in ("vae", "ae", "pca"):
        with st.stage(f"train {kind}", what if kind != "pca" else "normal training images") as update:
            ds.train_model(
                store,
                models / kind,
                kind,
                s,
                update,
                label_filter=[ds.NORMAL],
                latent_dim=s.latent_dim,
                widths=s.widths,
            )
    anomaly: dict[str, Any] = {}
    for kind in ("vae", "ae", "pca"):
        with st.stage(f"detect + evaluate {kind}", ", ".join(ds.SCORERS[kind]) + " on the test split"):
            anomaly[kind] = ds.detect_and_evaluate(models / kind, store, detect_dir / kind, kind, s)
    with st.stage("compare", "VAE minus AE and PCA, paired bootstrap"):
        paired = ds.paired_rows(detect_dir, store, s)
    with st.stage("train vae_all", f"{s.epochs_all} epochs, all training images, no labels") as update:
        ds.train_model(
            store, models / "vae_all", "vae", s, update, epochs=s.epochs_all, latent_dim=s.latent_dim_all
        )
    with st.stage("diagnose", f"fit ({', '.join(s.classifiers)}) on train, calibrate on val, evaluate test"):
        diag = ds.diagnose(models / "vae_all", store, out / "diagnosis", s)
    first = next(iter(anomaly.values()))
    summary: dict[str, Any] = {
        "dataset": "PneumoniaMNIST",
        "data": str(npz),
        "quick": quick,
        "settings": ds.settings_dict(s),
        "anomaly": {
            "dataset": "PneumoniaMNIST",
            "n_test": first["n_labelled"],
            "n_abnormal": first["n_abnormal"],
            "ci_unit": first["bootstrap"]["unit"],
            "rows": ds.anomaly_rows(anomaly),
            "paired": paired,
        },
        "diagnosis": {
            "encoder": "vae_all",
            "classifier": diag["chosen"]["classifier"],
            "cv_auc": diag["chosen"]["cv_auc"],
            "test": ds.diagnosis_row(diag),
        },
    }
    with st.stage("report"):
        report = ds.build_report(out, s.seed, s.device)
    summary["report"] = str(report)
    summary["timings_s"] = st.timings
    summary["load_average_1min"] = {"start": load0, "end": round(os.getloadavg()[0], 2)}
    summary["total_s"] = round(sum(st.timings.values()), 1)
    ds.write_summary(out, summary)
    ds.print_headline(summary, console)
    where = f"report: {report}"
    console.print(
        f"{where}; headline figures in {out / 'summary.json'}; total {summary['total_s']:.0f} s",
        highlight=False,
    )
    return summary
