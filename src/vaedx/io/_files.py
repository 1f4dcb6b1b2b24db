"""Checks shared by every reader, so a missing or empty file gives the same message whatever its format."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from vaedx.errors import InputError, VaedxError

T = TypeVar("T")


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


def read_guarded(kind: str, path: str | Path, reader: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``reader(path, ...)``, with any library exception on a damaged file turned into one InputError line.

    The readers catch what they expect (truncation, missing pixel data, bad geometry); a file damaged in a
    way nobody foresaw (a corrupted transfer-syntax UID, a number field holding text, an affine that cannot
    be decomposed) makes pydicom, nibabel or PIL raise something else. Callers are promised one line naming
    the file, so this boundary turns the rest into that line too, with the library's own words. Only errors
    of the caller's making (ConfigError, a VaedxError already) and running out of memory pass through.
    """
    try:
        return reader(path, *args, **kwargs)
    except (VaedxError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:
        raise InputError(f"cannot read this {kind} file ({describe(e)})", path) from e
