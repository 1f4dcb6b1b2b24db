from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from vaedx.demo import download_medmnist, find_or_download
from vaedx.errors import InputError


@pytest.fixture
def served(tmp_path: Path) -> tuple[str, str]:
    src = tmp_path / "server" / "pneumoniamnist.npz"
    src.parent.mkdir()
    np.savez_compressed(
        src, train_images=np.zeros((2, 4, 4), np.uint8), train_labels=np.zeros((2, 1), np.uint8)
    )
    return src.as_uri(), hashlib.md5(src.read_bytes()).hexdigest()


def test_download_with_matching_checksum(served: tuple[str, str], tmp_path: Path) -> None:
    url, md5 = served
    dest = download_medmnist(tmp_path / "cache" / "pneumoniamnist" / "pneumoniamnist.npz", url=url, md5=md5)
    assert hashlib.md5(dest.read_bytes()).hexdigest() == md5
    assert sorted(p.name for p in dest.parent.iterdir()) == ["pneumoniamnist.npz"]  # no temporary left


def test_download_with_wrong_checksum_leaves_nothing(served: tuple[str, str], tmp_path: Path) -> None:
    url, _ = served
    dest_dir = tmp_path / "cache"
    with pytest.raises(InputError, match="checksum mismatch"):
        download_medmnist(dest_dir / "pneumoniamnist.npz", url=url, md5="0" * 32)
    assert list(dest_dir.iterdir()) == []


def test_download_failure_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="download failed"):
        download_medmnist(tmp_path / "x.npz", url=(tmp_path / "absent.npz").as_uri(), md5="0" * 32)
    assert list(tmp_path.iterdir()) == []


def test_local_data_is_found_before_any_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "d" / "pneumoniamnist" / "pneumoniamnist.npz"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    monkeypatch.setattr("vaedx.demo.download_medmnist", lambda *a, **k: pytest.fail("must not download"))
    from rich.console import Console

    assert find_or_download(tmp_path / "d", Console()) == target
