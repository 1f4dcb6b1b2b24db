"""Results of uploaded volumes, kept for a while so the page can scroll slices and download NIfTIs.

Why a bounded cache on disk: a volume is scored once on upload, but its overlays and NIfTI files are fetched
many times afterwards, one request each. Keeping them in memory would let a few large uploads exhaust the
server, so each entry lives in its own folder under the service's private (0700) temporary folder, and the
cache holds at most ``max_entries`` entries and ``max_bytes`` bytes on disk, each for at most ``ttl_s``
seconds since it was last used. The least recently used entries go first; an evicted or expired entry's
folder is deleted at once, and everything is deleted when the service shuts down.

Files are handed out as open file objects taken under the lock, so an entry evicted while a download is
under way still finishes (an open file outlives its deleted name on POSIX systems).
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

DEFAULT_MAX_ENTRIES = 8
DEFAULT_MAX_BYTES = 4 << 30
DEFAULT_TTL_S = 3600.0


@dataclass
class CachedVolume:
    """One scored volume: its folder, the JSON returned on upload, and the arrays the overlays are drawn
    from (memory-mapped, so holding many entries costs disk, not memory)."""

    id: str
    folder: Path
    result: dict[str, Any]
    arrays: dict[str, Any] = field(default_factory=dict, repr=False)
    size: int = 0
    used: float = 0.0


class TooLargeForCache(Exception):
    """The results of one volume alone exceed the cache's byte limit."""


class VolumeCache:
    """Thread-safe LRU of :class:`CachedVolume` bounded by count, bytes on disk and idle time."""

    def __init__(
        self,
        root: Path,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_entries < 1 or max_bytes < 1 or ttl_s <= 0:
            raise ValueError("the volume cache needs a positive entry count, byte limit and expiry")
        self.root = Path(root)
        self.max_entries, self.max_bytes, self.ttl_s = max_entries, max_bytes, ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, CachedVolume] = OrderedDict()
        self._lock = threading.Lock()

    # -- writing ---------------------------------------------------------------------------------------
    def new_folder(self) -> tuple[str, Path]:
        """A fresh random id and a private folder for its files (not yet an entry: see :meth:`add`)."""
        vid = secrets.token_urlsafe(16)
        return vid, Path(tempfile.mkdtemp(prefix="vol-", dir=self.root))

    def add(self, entry: CachedVolume) -> None:
        """Make ``entry`` available, evicting the least recently used ones to stay within the limits."""
        entry.size = folder_size(entry.folder)
        if entry.size > self.max_bytes:
            shutil.rmtree(entry.folder, ignore_errors=True)
            raise TooLargeForCache(
                f"the results of this volume ({_mib(entry.size)}) exceed the result cache "
                f"({_mib(self.max_bytes)}); start the service with a larger --volume-cache-mb"
            )
        with self._lock:
            entry.used = self._clock()
            self._entries[entry.id] = entry
            self._expire()
            while len(self._entries) > self.max_entries or self.total_bytes() > self.max_bytes:
                self._drop(next(iter(self._entries)))

    # -- reading ---------------------------------------------------------------------------------------
    def get(self, vid: str) -> CachedVolume | None:
        """The entry (marked as just used), or None when it is unknown, evicted or expired."""
        with self._lock:
            self._expire()
            entry = self._entries.get(vid)
            if entry is not None:
                entry.used = self._clock()
                self._entries.move_to_end(vid)
            return entry

    def open(self, vid: str, relative: str) -> BinaryIO | None:
        """An open binary file of the entry, or None when the entry or the file is gone."""
        with self._lock:
            entry = self._entries.get(vid)
            if entry is None:
                return None
            try:
                return open(entry.folder / relative, "rb")  # noqa: SIM115 - the response closes it
            except OSError:
                return None

    def total_bytes(self) -> int:
        return sum(e.size for e in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    # -- removal ---------------------------------------------------------------------------------------
    def remove(self, vid: str) -> bool:
        with self._lock:
            if vid not in self._entries:
                return False
            self._drop(vid)
            return True

    def clear(self) -> None:
        """Delete every entry and its files (at shutdown)."""
        with self._lock:
            for vid in list(self._entries):
                self._drop(vid)

    def close(self) -> None:
        """Delete every entry and the cache's own folder (at shutdown)."""
        self.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def _expire(self) -> None:
        now = self._clock()
        for vid in [v for v, e in self._entries.items() if now - e.used > self.ttl_s]:
            self._drop(vid)

    def _drop(self, vid: str) -> None:
        entry = self._entries.pop(vid)
        # the memory maps stay usable by a request still drawing from them; they go with the last reference
        shutil.rmtree(entry.folder, ignore_errors=True)


def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"
