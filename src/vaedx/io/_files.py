"""Checks shared by every reader, so a missing or empty file gives the same message whatever its format."""

from __future__ import annotations

from pathlib import Path

from vaedx.errors import InputError


def existing_file(path: str | Path) -> Path:
    """Return ``path`` as a Path after making sure it is a readable, non-empty regular file."""
    p = Path(path)
    try:
        if not p.exists():
            raise InputError("file not found", p)
        if not p.is_file():
            raise InputError("not a regular file", p)
        if p.stat().st_size == 0:
            raise InputError("file is empty", p)
    except OSError as e:  # e.g. permission denied on a parent directory
        raise InputError(f"cannot access file ({e.strerror or e})", p) from e
    return p


def read_head(path: Path, n: int) -> bytes:
    """First ``n`` bytes of a file, with OS errors turned into an InputError."""
    try:
        with path.open("rb") as f:
            return f.read(n)
    except OSError as e:
        raise InputError(f"cannot read file ({e.strerror or e})", path) from e


def describe(e: BaseException) -> str:
    """A library exception as a short single line, so InputError messages stay one line."""
    text = " ".join(str(e).split()) or "no details"
    return f"{type(e).__name__}: {text[:200]}"
