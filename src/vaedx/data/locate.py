"""Where vaedx looks for the real data sets and keeps its cache."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vaedx"


def data_dir_candidates(explicit: str | Path | None = None) -> list[Path]:
    """Search order: explicit ``--data``, ``$VAEDX_DATA_DIR``, ``../shared/data``, the user cache."""
    out: list[Path] = []
    if explicit:
        out.append(Path(explicit))
    env = os.environ.get("VAEDX_DATA_DIR")
    if env:
        out.append(Path(env))
    out.append(Path.cwd().parent / "shared" / "data")
    out.append(user_cache_dir() / "data")
    return out


def find_data_file(relative: str, explicit: str | Path | None = None) -> Path | None:
    """First existing ``<candidate>/<relative>``, or None."""
    for base in data_dir_candidates(explicit):
        p = base / relative
        if p.exists():
            return p
    return None
