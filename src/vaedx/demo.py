"""`vaedx demo`: the whole pipeline on PneumoniaMNIST, runnable offline when the data is present.

The data is looked up where :func:`vaedx.paths.find_data_file` looks (``--data``, ``$VAEDX_DATA_DIR``,
``../shared/data``, the user cache); only when it is nowhere is the official MedMNIST file downloaded, into
the user cache, and kept only if its MD5 matches, because a silently corrupted or substituted download
would make every later number meaningless.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from vaedx.data.inspect import render, summarize
from vaedx.data.prepare import build_config, prepare
from vaedx.errors import InputError
from vaedx.paths import find_data_file, user_cache_dir

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


def demo(
    data: Annotated[
        Path | None, typer.Option("--data", help="Folder holding pneumoniamnist/pneumoniamnist.npz.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything the demo writes.")] = Path(
        "runs/demo"
    ),
    size: Annotated[int | None, typer.Option(help="Image size; default: the native 28x28.")] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Fewer images and epochs in the later stages.")
    ] = False,
) -> None:
    """Run vaedx end to end on PneumoniaMNIST (data stage so far)."""
    console = Console()
    npz = find_or_download(data, console)
    console.print(f"[bold]1. data[/]: {npz}", highlight=False, soft_wrap=True)
    store_dir = out / "store"
    prepare(npz, store_dir, build_config(size=size))
    render(summarize(store_dir), console)
    # later stages (train, detect, diagnose, report) plug in here, each reading store_dir and writing under
    # `out`; `quick` is meant for them (fewer images and epochs).
