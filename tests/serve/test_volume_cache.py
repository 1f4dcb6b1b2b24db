"""The volume result cache: bounded by count, bytes and idle time; files deleted on eviction and at exit."""

from __future__ import annotations

from pathlib import Path

import pytest

from vaedx.serve.volume_cache import CachedVolume, TooLargeForCache, VolumeCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def put(cache: VolumeCache, size: int = 1000) -> CachedVolume:
    vid, folder = cache.new_folder()
    (folder / "map.nii.gz").write_bytes(b"x" * size)
    entry = CachedVolume(vid, folder, {"volume_id": vid})
    cache.add(entry)
    return entry


def test_least_recently_used_go_first_and_their_folders_are_deleted(tmp_path: Path) -> None:
    cache = VolumeCache(tmp_path, max_entries=2, max_bytes=10_000)
    a, b = put(cache), put(cache)
    assert cache.get(a.id) is a  # a is now the most recently used
    c = put(cache)
    assert cache.get(b.id) is None and not b.folder.exists()
    assert cache.get(a.id) is a and cache.get(c.id) is c and len(cache) == 2


def test_byte_limit_and_an_entry_larger_than_the_whole_cache(tmp_path: Path) -> None:
    cache = VolumeCache(tmp_path, max_entries=10, max_bytes=2500)
    a, b = put(cache), put(cache)
    c = put(cache)
    assert cache.get(a.id) is None and not a.folder.exists() and cache.total_bytes() == 2000
    with pytest.raises(TooLargeForCache, match="--volume-cache-mb"):
        put(cache, size=3000)
    assert {p.name for p in tmp_path.iterdir()} == {b.folder.name, c.folder.name}


def test_idle_entries_expire(tmp_path: Path) -> None:
    clock = Clock()
    cache = VolumeCache(tmp_path, ttl_s=60, clock=clock)
    a, b = put(cache), put(cache)
    clock.now = 50
    assert cache.get(b.id) is b  # used again: its idle time restarts
    clock.now = 100
    assert cache.get(a.id) is None and not a.folder.exists()
    assert cache.get(b.id) is b


def test_an_open_download_survives_eviction_and_clear_removes_everything(tmp_path: Path) -> None:
    cache = VolumeCache(tmp_path, max_entries=1)
    a = put(cache, size=5000)
    f = cache.open(a.id, "map.nii.gz")
    assert f is not None and cache.open(a.id, "missing.nii.gz") is None
    put(cache)  # evicts a while its file is open
    assert not a.folder.exists() and len(f.read()) == 5000
    f.close()
    cache.clear()
    assert len(cache) == 0 and not any(tmp_path.iterdir())


def test_an_evicted_entry_still_draws_for_a_request_holding_it(tmp_path: Path) -> None:
    import numpy as np

    cache = VolumeCache(tmp_path, max_entries=1)
    vid, folder = cache.new_folder()
    np.save(folder / "heat.npy", np.arange(12, dtype=np.uint8).reshape(3, 4))
    entry = CachedVolume(vid, folder, {}, {"heat": np.load(folder / "heat.npy", mmap_mode="r")})
    cache.add(entry)
    held = cache.get(vid)
    put(cache)  # evicts it
    assert cache.get(vid) is None and not folder.exists()
    assert held is not None and int(held.arrays["heat"][2, 3]) == 11
