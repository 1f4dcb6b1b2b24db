"""Which reader a source needs: a datalist JSON, an MVTec-AD folder, a CSV, a folder, a zip, npz or one file.

Why a module of its own: the MVTec-AD and datalist readers reuse the folder rules of ``index``, so the
dispatch over all of them sits above the three instead of inside ``index`` (which would make a cycle).
"""

from __future__ import annotations

from pathlib import Path

from vaedx.data import datalist, mvtec
from vaedx.data.index import (
    IndexOptions,
    _index_files,
    _recognised,
    _series_rows,
    _sniff,
    _stem,
    index_csv,
    index_folder,
    index_npz,
)
from vaedx.data.manifest import Manifest, unique_volume_ids
from vaedx.errors import ConfigError, InputError
from vaedx.io import detect_format


def index_source(source: str | Path | None, opts: IndexOptions | None = None) -> Manifest:
    """Dispatch on what ``source`` is; see the module docstring. ``source`` may be None only with
    ``opts.datalist`` (the base folder is then the datalist's own)."""
    opts = opts or IndexOptions()
    if opts.datalist is not None:
        m = datalist.index_datalist(Path(opts.datalist), Path(source) if source is not None else None, opts)
        unique_volume_ids(m)
        return m
    if source is None:
        raise ConfigError("a source folder or file is needed (or --datalist)")
    source = Path(source)
    if not source.exists():
        raise InputError("source not found", source)
    if source.is_dir() and opts.labels is None and mvtec.is_mvtec(source):
        m = mvtec.index_mvtec(source, opts)
    elif source.is_dir() and opts.labels is None and (why := mvtec.looks_like_mvtec(source)):
        raise InputError(why, source)
    elif datalist.is_datalist(source):
        m = datalist.index_datalist(source, None, opts)
    elif source.is_dir():
        table = source / "manifest.csv"
        if opts.labels is None and table.is_file() and (opts.from_csv or _recognised(table)):
            m = index_csv(table, opts)
        elif opts.from_csv:
            raise ConfigError(f"--from-csv given but {table} does not exist")
        else:
            m = index_folder(source, opts)
    elif opts.from_csv or source.suffix.lower() in (".csv", ".tsv"):
        m = index_csv(source, opts)
    elif source.suffix.lower() == ".zip":
        m = Manifest(rows=[], root=source.parent)
        base = {"path": source.name, "label": "", "mask": "", "split": "", "patient_id": _stem(source)}
        m.rows = _series_rows(source, base, opts)
    else:
        if detect_format(source) == "npz":
            m = index_npz(source, opts)
        else:
            m = Manifest(rows=[], root=source.parent)
            _index_files(_sniff([source], m, opts), source.parent, opts, 0, m)
    if not m.rows:
        raise InputError(
            f"no images found in {source}" + (f" ({len(m.skipped)} skipped)" if m.skipped else "")
        )
    unique_volume_ids(m)
    return m
